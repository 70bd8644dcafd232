/** One conversation: messages with every message feature, the composer, files, and the chat's menu. */
import { useEffect, useRef, useState } from 'preact/hooks';
import type { FileAttachment, HistoryEntry, MessageState } from '@meshwhisper/sdk';
import type { ComponentChildren } from 'preact';
import type { GroupLogLine, Messenger } from '../lib/messenger.js';
import { GROUP_PREFIX, isGroupKey } from '../lib/messenger.js';
import { makeThumbnail } from '../lib/thumbnail.js';
import { equalBytes, formatDuration, formatSize, formatTime, saveBlob, toHex } from '../lib/util.js';
import { ConnectionChip, Dialog, ErrorText, ScreenHeader, useAction, useAsync, useScrollToEnd, useVersion } from './common.js';

const REACTIONS = ['👍', '❤️', '😂', '😮', '😢'];
const TIMERS = [0, 30, 300, 3600, 86_400, 7 * 86_400];
const STATE_TEXT: Record<MessageState, string> = { queued: 'Queued', sent: 'Sent', delivered: 'Delivered', read: 'Read', failed: 'Failed' };
const STATE_ICON: Record<MessageState, string> = { queued: '🕓', sent: '✓', delivered: '✓✓', read: '✓✓', failed: '⚠' };

/**
 * A direct chat (`peer` = the contact's account key hex) or a group (`peer` = `g:` + group id hex):
 * the SDK takes either as the conversation, so every message feature is the same code. A group
 * adds authors on incoming messages, "seen by" on own ones, and membership changes as system lines.
 */
export function Chat({ m, peer, groupButtons }: { m: Messenger; peer: string; groupButtons?: ComponentChildren }) {
  const version = useVersion(m);
  const group = isGroupKey(peer) ? peer.slice(GROUP_PREFIX.length) : undefined;
  const data = useAsync(async () => {
    const entries = await m.history(peer);
    const states = m.states(entries);
    if (group !== undefined) {
      const [timer, info, log] = await Promise.all([m.timer(peer), m.groupInfo(group), m.groupLog(group)]);
      return { entries, states, timer, state: undefined, blocked: false, info, log };
    }
    const [timer, state, blocked] = await Promise.all([m.timer(peer), m.client.contactState(hexKey(peer)), m.client.isBlocked(hexKey(peer))]);
    return { entries, states, timer, state, blocked, info: undefined, log: [] as GroupLogLine[] };
  }, [version, peer]);
  const [replyTo, setReplyTo] = useState<HistoryEntry | undefined>(undefined);
  const [editing, setEditing] = useState<HistoryEntry | undefined>(undefined);
  const [actionsFor, setActionsFor] = useState<HistoryEntry | undefined>(undefined);
  const [forwarding, setForwarding] = useState<HistoryEntry | undefined>(undefined);
  const [menu, setMenu] = useState(false);
  const logRef = useRef<HTMLDivElement>(null);
  useScrollToEnd(logRef, data?.entries.length);
  const info = data?.info;
  const name = group !== undefined ? (info?.name ?? 'Group') : m.nameOf(peer);
  const presence = group !== undefined ? undefined : m.presence.get(peer);
  const keyChange = group !== undefined ? undefined : m.keyChangeFor(peer);
  const uploads = [...m.uploads.values()].filter((u) => u.peer === peer);
  const typingWho = m.typingWho.get(peer);
  const status = m.isTyping(peer)
    ? group !== undefined && typingWho
      ? `${m.nameOf(typingWho)} is typing…`
      : 'typing…'
    : group !== undefined
      ? info
        ? `${info.members.length} members`
        : ''
      : presence?.online
        ? 'online'
        : presence?.lastSeen
          ? `last seen ${formatTime(presence.lastSeen)}`
          : '';
  const left = info !== undefined && !info.isMember;
  const items = interleave(data?.entries ?? [], data?.log ?? []);
  return (
    <>
      <ScreenHeader
        back="#/"
        title={
          <span class="chat-title">
            <span data-testid="chat-name">{name}</span>
            {m.verified.has(peer) ? (
              <span class="verified" title="Safety number verified" aria-label="verified">
                ✔
              </span>
            ) : null}
            <span class="presence" aria-live="polite" data-testid="presence">
              {status}
            </span>
          </span>
        }
      >
        {group !== undefined ? (
          groupButtons
        ) : (
          <a class="icon" href={`#/safety/${peer}`} aria-label="Safety number">
            🛡
          </a>
        )}
        <button type="button" class="icon" aria-label="Conversation settings" onClick={() => setMenu(true)}>
          ⋮
        </button>
      </ScreenHeader>
      <main class="chat">
        <div class="chat-info">
          <ConnectionChip m={m} />
          {data && data.timer > 0 ? <span class="chip">⏱ Disappearing after {formatDuration(data.timer)}</span> : null}
        </div>
        {keyChange ? <KeyChangeBanner m={m} peer={peer} /> : null}
        {data?.state === 'request' ? <RequestBanner m={m} peer={peer} name={name} /> : null}
        {left ? (
          <p class="warning" role="status">
            You are no longer in this group.
          </p>
        ) : null}
        {data?.blocked ? (
          <p class="warning" role="status">
            You blocked {name}. Nothing they send is shown.
          </p>
        ) : null}
        <div class="messages" ref={logRef} role="log" aria-label={`Messages with ${name}`} aria-live="polite" tabIndex={0}>
          <ol>
          {items.map((item) =>
            'change' in item ? (
              <li key={`log-${item.at}-${item.change.type}-${item.change.accountKey ?? ''}`} class="system" data-testid="system-line">
                {describeChange(m, item)}
              </li>
            ) : (
              <Message
                key={`${toHex(item.author)}/${item.id}`}
                m={m}
                e={item}
                state={data?.states.get(item.id)}
                peerName={group !== undefined ? m.nameOf(toHex(item.author)) : name}
                showAuthor={group !== undefined}
                onActions={() => setActionsFor(item)}
              />
            ),
          )}
          {uploads.map((u) => (
            <li key={u.key} class="message outgoing">
              <div class="bubble">
                <p>📎 {u.name}</p>
                <label class="progress">
                  <span>{u.phase === 'encrypting' ? 'Encrypting' : u.phase === 'uploading' ? 'Uploading' : 'Failed'}</span>
                  <progress max={u.size} value={u.done} aria-label={`Upload of ${u.name}`} data-testid="upload-progress" />
                </label>
                <ErrorText error={u.error} />
              </div>
            </li>
          ))}
          </ol>
        </div>
        {data?.entries.length === 0 && uploads.length === 0 ? (
          <p class="empty">{group !== undefined ? 'No messages yet. Everything here is end-to-end encrypted for the members only.' : 'No messages yet. Say hello — it is end-to-end encrypted.'}</p>
        ) : null}
        <Composer
          m={m}
          peer={peer}
          disabled={data?.blocked === true || left}
          replyTo={replyTo}
          editing={editing}
          onDone={() => {
            setReplyTo(undefined);
            setEditing(undefined);
          }}
        />
      </main>
      <MessageActions
        m={m}
        peer={peer}
        entry={actionsFor}
        onClose={() => setActionsFor(undefined)}
        onReply={(e) => {
          setEditing(undefined);
          setReplyTo(e);
        }}
        onEdit={(e) => {
          setReplyTo(undefined);
          setEditing(e);
        }}
        onForward={(e) => setForwarding(e)}
      />
      <ForwardDialog m={m} entry={forwarding} onClose={() => setForwarding(undefined)} />
      <ChatMenu m={m} peer={peer} open={menu} onClose={() => setMenu(false)} timer={data?.timer ?? 0} blocked={data?.blocked ?? false} />
    </>
  );
}

/** History entries and system lines in time order (the history's own order kept). */
function interleave(entries: readonly HistoryEntry[], log: readonly GroupLogLine[]): (HistoryEntry | GroupLogLine)[] {
  const out: (HistoryEntry | GroupLogLine)[] = [];
  let i = 0;
  for (const e of entries) {
    while (i < log.length && log[i]!.at <= e.receivedAt) out.push(log[i++]!);
    out.push(e);
  }
  return [...out, ...log.slice(i)];
}

/** A system line from a typed `groupChange` event. */
function describeChange(m: Messenger, { change }: GroupLogLine): string {
  const me = toHex(m.client.accountKey);
  const who = change.accountKey === me ? 'You' : change.accountKey ? m.nameOf(change.accountKey) : '';
  switch (change.type) {
    case 'joined':
      return `You joined “${change.name ?? ''}”.`;
    case 'memberAdded':
      return `${who} joined the group.`;
    case 'memberRemoved':
      return `${who} left or was removed.`;
    case 'renamed':
      return `The group is now called “${change.name ?? ''}”.`;
    case 'adminGranted':
      return `${who} ${who === 'You' ? 'are' : 'is'} now an admin.`;
    case 'adminRevoked':
      return `${who} ${who === 'You' ? 'are' : 'is'} no longer an admin.`;
    case 'policyChanged':
      return change.policy === 'admin-less' ? 'The group is now admin-less: every member may add people and rename it.' : 'The group has admins again.';
    default:
      return 'The group changed.';
  }
}

const hexKey = (peer: string): Uint8Array => Uint8Array.from(peer.match(/../g)!, (h) => parseInt(h, 16));

function RequestBanner({ m, peer, name }: { m: Messenger; peer: string; name: string }) {
  const action = useAction();
  return (
    <section class="request" aria-label="Contact request">
      <p>
        <strong>{name}</strong> wants to chat with you. They will not see read receipts, typing or presence until you accept.
      </p>
      <div class="row">
        <button type="button" class="primary" disabled={action.busy} onClick={() => void action.run(() => m.acceptRequest(peer))}>
          Accept
        </button>
        <button type="button" disabled={action.busy} onClick={() => void action.run(async () => ((await m.declineRequest(peer, false)), (location.hash = '#/')))}>
          Decline
        </button>
        <button type="button" class="danger" disabled={action.busy} onClick={() => void action.run(async () => ((await m.declineRequest(peer, true)), (location.hash = '#/')))}>
          Block
        </button>
      </div>
      <ErrorText error={action.error} />
    </section>
  );
}

function KeyChangeBanner({ m, peer }: { m: Messenger; peer: string }) {
  const change = m.keyChangeFor(peer)!;
  const action = useAction();
  return (
    <section class="warning" role="alert" aria-label="Safety number changed">
      <p>
        <strong>{change.username}</strong> now has a different key on this node. They may have reinstalled Prudence — or someone may be impersonating them. Messages
        to them are held until you decide.
      </p>
      <div class="row">
        <a class="button" href={`#/safety/${change.next}`}>
          Compare the new safety number
        </a>
        <button type="button" disabled={action.busy} onClick={() => void action.run(async () => (location.hash = `#/chat/${await m.acceptKeyChange(change)}`))}>
          Accept the new key
        </button>
      </div>
      <ErrorText error={action.error} />
    </section>
  );
}

function Message({ m, e, state, peerName, showAuthor, onActions }: { m: Messenger; e: HistoryEntry; state: MessageState | undefined; peerName: string; showAuthor?: boolean; onActions: () => void }) {
  const who = e.outgoing ? 'You' : peerName;
  const retry = useAction();
  return (
    <li class={`message ${e.outgoing ? 'outgoing' : 'incoming'}`} data-id={e.id} data-state={state}>
      <div class="bubble">
        {showAuthor && !e.outgoing ? (
          <p class="meta author" data-testid="author">
            {who}
          </p>
        ) : (
          <span class="visually-hidden">{who}: </span>
        )}
        {e.forwarded ? <p class="meta">↪ Forwarded</p> : null}
        {e.replyTo ? (
          <blockquote class="quote">
            <span class="visually-hidden">In reply to: </span>
            {e.replyTo.snippet || 'a message'}
          </blockquote>
        ) : null}
        {e.deleted ? <p class="deleted">This message was deleted.</p> : null}
        {e.text !== undefined ? <p class="text">{e.text}</p> : null}
        {e.file ? <FileView m={m} file={e.file} /> : null}
        {e.reactions.length > 0 ? (
          <p class="reactions" aria-label="Reactions">
            {summarise(e.reactions.map((r) => r.emoji)).map(([emoji, n]) => (
              <span key={emoji} class="reaction">
                {emoji}
                {n > 1 ? ` ${n}` : ''}
              </span>
            ))}
          </p>
        ) : null}
        <p class="meta">
          <time dateTime={new Date(e.sentAt).toISOString()}>{formatTime(e.sentAt)}</time>
          {e.edited ? ' · edited' : ''}
          {e.expiresAt ? ` · ⏱ ${formatTime(e.expiresAt)}` : ''}
          {state ? (
            <span class={`state ${state}`} aria-label={STATE_TEXT[state]} title={STATE_TEXT[state]} data-testid="state">
              {' '}
              {STATE_ICON[state]}
            </span>
          ) : null}
        </p>
        {state === 'failed' ? (
          <button type="button" class="small" disabled={retry.busy} onClick={() => void retry.run(() => m.retry(e.id))}>
            Retry
          </button>
        ) : null}
        <ErrorText error={retry.error} />
      </div>
      {!e.deleted ? (
        <button type="button" class="icon small" aria-label={`Actions for ${who}'s message${e.text ? `: ${e.text.slice(0, 40)}` : ''}`} onClick={onActions}>
          ⋯
        </button>
      ) : null}
    </li>
  );
}

function summarise(emojis: string[]): [string, number][] {
  const counts = new Map<string, number>();
  for (const e of emojis) counts.set(e, (counts.get(e) ?? 0) + 1);
  return [...counts];
}

function FileView({ m, file }: { m: Messenger; file: FileAttachment }) {
  const [thumb, setThumb] = useState<string | undefined>(undefined);
  const [full, setFull] = useState<string | undefined>(undefined);
  const [received, setReceived] = useState<number | undefined>(undefined);
  const action = useAction();
  useEffect(() => {
    if (!file.thumbnail) return;
    const url = URL.createObjectURL(new Blob([file.thumbnail.data as BlobPart], { type: file.thumbnail.mimeType }));
    setThumb(url);
    return () => URL.revokeObjectURL(url);
  }, [file]);
  useEffect(() => () => void (full && URL.revokeObjectURL(full)), [full]);
  const download = (): Promise<void> =>
    action.run(async () => {
      setReceived(0);
      const blob = await m.download(file, setReceived);
      if (file.mimeType.startsWith('image/')) setFull(URL.createObjectURL(blob));
      saveBlob(blob, file.name);
    });
  return (
    <div class="file">
      {full || thumb ? <img src={full ?? thumb} alt={`Preview of ${file.name}`} class={full ? 'full' : 'thumb'} data-testid={full ? 'image' : 'thumbnail'} /> : null}
      <p>
        📎 <span class="file-name">{file.name}</span> <span class="meta">{formatSize(file.size)}</span>
      </p>
      {received !== undefined && received < file.size ? <progress max={file.size} value={received} aria-label={`Download of ${file.name}`} data-testid="download-progress" /> : null}
      <button type="button" class="small" disabled={action.busy} onClick={() => void download()} data-testid="download">
        {received !== undefined && received >= file.size && !action.busy ? 'Saved — download again' : action.busy ? 'Downloading…' : 'Download'}
      </button>
      <ErrorText error={action.error} />
    </div>
  );
}

function Composer({ m, peer, disabled, replyTo, editing, onDone }: { m: Messenger; peer: string; disabled: boolean; replyTo?: HistoryEntry | undefined; editing?: HistoryEntry | undefined; onDone: () => void }) {
  const [text, setText] = useState('');
  const action = useAction();
  const fileRef = useRef<HTMLInputElement>(null);
  const inputRef = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    if (editing) setText(editing.text ?? '');
    if (editing || replyTo) inputRef.current?.focus();
  }, [editing, replyTo]);
  const submit = (): Promise<void> =>
    action.run(async () => {
      const body = text.trim();
      if (body === '') return;
      // Cleared at once: what is typed while the send runs is the next message, never wiped by this one.
      setText('');
      try {
        if (editing) await m.edit(peer, editing.id, body);
        else await m.sendText(peer, body, replyTo ? { replyTo } : {});
      } catch (e) {
        setText((now) => (now === '' ? body : now));
        throw e;
      }
      onDone();
    });
  return (
    <form
      class="composer"
      onSubmit={(e) => {
        e.preventDefault();
        void submit();
      }}
    >
      {replyTo || editing ? (
        <div class="composing">
          <span>{editing ? 'Editing your message' : `Replying to: ${(replyTo?.text ?? replyTo?.file?.name ?? '').slice(0, 80)}`}</span>
          <button
            type="button"
            class="icon small"
            aria-label={editing ? 'Cancel editing' : 'Cancel reply'}
            onClick={() => {
              setText('');
              onDone();
            }}
          >
            ✕
          </button>
        </div>
      ) : null}
      <div class="row">
        <input
          ref={fileRef}
          id="attach"
          type="file"
          multiple
          hidden
          tabIndex={-1}
          aria-label="File to send"
          disabled={disabled}
          onChange={(e) => {
            const files = [...(e.currentTarget.files ?? [])];
            e.currentTarget.value = '';
            for (const f of files) void action.run(async () => m.sendFile(peer, f, await makeThumbnail(f)));
          }}
        />
        <button type="button" class="icon" aria-label="Attach a file" title="Attach a file" disabled={disabled} onClick={() => fileRef.current?.click()}>
          📎
        </button>
        <label for="message" class="visually-hidden">
          Message
        </label>
        <textarea
          ref={inputRef}
          id="message"
          rows={1}
          placeholder="Message"
          value={text}
          disabled={disabled}
          onInput={(e) => {
            setText(e.currentTarget.value);
            void m.setTyping(peer, e.currentTarget.value !== '');
          }}
          onBlur={() => void m.setTyping(peer, false)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey) {
              e.preventDefault();
              void submit();
            }
          }}
        />
        <button type="submit" class="primary" disabled={disabled || action.busy || text.trim() === ''}>
          {editing ? 'Save' : 'Send'}
        </button>
      </div>
      <ErrorText error={action.error} />
    </form>
  );
}

function MessageActions({
  m,
  peer,
  entry,
  onClose,
  onReply,
  onEdit,
  onForward,
}: {
  m: Messenger;
  peer: string;
  entry: HistoryEntry | undefined;
  onClose: () => void;
  onReply: (e: HistoryEntry) => void;
  onEdit: (e: HistoryEntry) => void;
  onForward: (e: HistoryEntry) => void;
}) {
  const action = useAction();
  const own = entry?.outgoing === true;
  const act = (fn: () => Promise<unknown>): void => void action.run(async () => ((await fn()), onClose()));
  return (
    <Dialog open={entry !== undefined} onClose={onClose} title="Message actions">
      {entry ? (
        <div class="dialog-body">
          <div class="row" role="group" aria-label="React">
            {REACTIONS.map((emoji) => {
              const mine = entry.reactions.some((r) => r.emoji === emoji && equalBytes(r.author, m.client.accountKey));
              return (
                <button key={emoji} type="button" class={`emoji${mine ? ' chosen' : ''}`} aria-pressed={mine} aria-label={`React ${emoji}`} onClick={() => act(() => m.react(peer, entry, emoji))}>
                  {emoji}
                </button>
              );
            })}
          </div>
          {own && isGroupKey(peer) ? <SeenBy m={m} group={peer.slice(GROUP_PREFIX.length)} id={entry.id} /> : null}
          <div class="stack">
            <button type="button" onClick={() => ((onReply(entry)), onClose())}>
              Reply
            </button>
            {entry.text !== undefined ? (
              <button type="button" onClick={() => ((onForward(entry)), onClose())}>
                Forward
              </button>
            ) : null}
            {entry.text !== undefined ? (
              <button type="button" onClick={() => void navigator.clipboard?.writeText(entry.text ?? '').then(onClose)}>
                Copy text
              </button>
            ) : null}
            {own && entry.text !== undefined ? (
              <button type="button" onClick={() => ((onEdit(entry)), onClose())}>
                Edit
              </button>
            ) : null}
            {own ? (
              <button type="button" class="danger" onClick={() => act(() => m.remove(peer, entry.id))}>
                Delete for everyone
              </button>
            ) : null}
          </div>
          <ErrorText error={action.error} />
        </div>
      ) : null}
    </Dialog>
  );
}

const RECEIPT_TEXT = { sent: 'Sent', delivered: 'Received', read: 'Read' } as const;

/** Per-member receipts of an own group message (groups.receipts): who has received it and who has read it. */
function SeenBy({ m, group, id }: { m: Messenger; group: string; id: string }) {
  const version = useVersion(m);
  const receipts = useAsync(() => m.groupReceipts(group, id), [version, group, id]);
  return (
    <section class="seen-by" aria-label="Seen by">
      <h3>Seen by</h3>
      <ul data-testid="seen-by">
        {receipts?.map((r) => {
          const key = toHex(r.accountKey);
          return (
            <li key={key} data-state={r.state}>
              {m.nameOf(key)}: {RECEIPT_TEXT[r.state]}
            </li>
          );
        })}
      </ul>
    </section>
  );
}

function ForwardDialog({ m, entry, onClose }: { m: Messenger; entry: HistoryEntry | undefined; onClose: () => void }) {
  const version = useVersion(m);
  const list = useAsync(() => m.conversations(), [version, entry]);
  const action = useAction();
  return (
    <Dialog open={entry !== undefined} onClose={onClose} title="Forward to">
      <ul class="stack">
        {list
          ?.filter((c) => c.state !== 'request' && !c.blocked)
          .map((c) => (
            <li key={c.peer}>
              <button
                type="button"
                disabled={action.busy}
                onClick={() =>
                  void action.run(async () => {
                    await m.forward(c.kind === 'group' ? GROUP_PREFIX + c.peer : c.peer, entry!);
                    onClose();
                    location.hash = c.kind === 'group' ? `#/group/${c.peer}` : `#/chat/${c.peer}`;
                  })
                }
              >
                {c.name}
              </button>
            </li>
          ))}
      </ul>
      <ErrorText error={action.error} />
    </Dialog>
  );
}

function ChatMenu({ m, peer, open, onClose, timer, blocked }: { m: Messenger; peer: string; open: boolean; onClose: () => void; timer: number; blocked: boolean }) {
  const action = useAction();
  return (
    <Dialog open={open} onClose={onClose} title="Conversation">
      <div class="dialog-body stack">
        <label for="timer">Disappearing messages</label>
        <select id="timer" value={String(timer)} disabled={action.busy} onChange={(e) => void action.run(() => m.setTimer(peer, Number(e.currentTarget.value)))}>
          {TIMERS.map((s) => (
            <option key={s} value={String(s)}>
              {s === 0 ? 'Off' : `After ${formatDuration(s)}`}
            </option>
          ))}
        </select>
        <button type="button" onClick={() => void action.run(async () => saveBlob(new Blob([await m.exportText(peer)], { type: 'text/plain' }), `prudence-${m.nameOf(peer).replace(/[^a-z0-9._-]+/gi, '_')}.txt`))}>
          Export conversation
        </button>
        {isGroupKey(peer) ? null : (
          <>
            <a class="button" href={`#/safety/${peer}`}>
              Verify safety number
            </a>
            <button type="button" class={blocked ? '' : 'danger'} disabled={action.busy} onClick={() => void action.run(async () => ((await m.setBlocked(peer, !blocked)), onClose()))}>
              {blocked ? 'Unblock' : 'Block'}
            </button>
          </>
        )}
        <ErrorText error={action.error} />
      </div>
    </Dialog>
  );
}

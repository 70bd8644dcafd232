/** Groups (docs/api.md §Groups): create one from usernames, then write and read in it. */
import { useRef, useState } from 'preact/hooks';
import type { Messenger } from '../lib/messenger.js';
import { formatTime, toHex } from '../lib/util.js';
import { ConnectionChip, Dialog, ErrorText, ScreenHeader, useAction, useAsync, useScrollToEnd, useVersion } from './common.js';

export function NewGroup({ m }: { m: Messenger }) {
  useVersion(m);
  const [name, setName] = useState('');
  const [chosen, setChosen] = useState<Set<string>>(new Set());
  const [more, setMore] = useState('');
  const action = useAction();
  const contacts = [...m.names.values()].filter((n) => n !== m.username).sort();
  const toggle = (n: string, on: boolean): void => {
    const next = new Set(chosen);
    if (on) next.add(n);
    else next.delete(n);
    setChosen(next);
  };
  return (
    <>
      <ScreenHeader title="New group" back="#/" />
      <main class="page">
        <form
          class="stack"
          onSubmit={(e) => {
            e.preventDefault();
            void action.run(async () => {
              const id = await m.createGroup(name, [...chosen, ...more.split(',')]);
              location.hash = `#/group/${id}`;
            });
          }}
        >
          <label for="group-name">Group name</label>
          <input id="group-name" required maxLength={64} value={name} onInput={(e) => setName(e.currentTarget.value)} />
          {contacts.length > 0 ? (
            <fieldset class="members">
              <legend>Members</legend>
              {contacts.map((n) => (
                <label class="check" key={n}>
                  <input type="checkbox" checked={chosen.has(n)} onChange={(e) => toggle(n, e.currentTarget.checked)} /> {n}
                </label>
              ))}
            </fieldset>
          ) : null}
          <label for="group-more">Other members (usernames, separated by commas)</label>
          <input id="group-more" autocapitalize="none" spellcheck={false} value={more} onInput={(e) => setMore(e.currentTarget.value)} />
          <p class="help">Everyone is added at once, with all their devices; you are the group’s admin. Only members can read what is written here.</p>
          <button type="submit" class="primary" disabled={action.busy}>
            {action.busy ? 'Creating…' : 'Create group'}
          </button>
          <ErrorText error={action.error} />
        </form>
      </main>
    </>
  );
}

export function GroupChat({ m, group }: { m: Messenger; group: string }) {
  const version = useVersion(m);
  const data = useAsync(async () => ({ info: await m.groupInfo(group), entries: await m.groupHistory(group) }), [version, group]);
  const [text, setText] = useState('');
  const [members, setMembers] = useState(false);
  const send = useAction();
  const logRef = useRef<HTMLDivElement>(null);
  useScrollToEnd(logRef, data?.entries.length);
  const info = data?.info;
  const name = info?.name ?? 'Group';
  const me = toHex(m.client.accountKey);
  const states = m.states(data?.entries ?? []);
  return (
    <>
      <ScreenHeader
        back="#/"
        title={
          <span class="chat-title">
            <span data-testid="chat-name">{name}</span>
            <span class="presence">{info ? `${info.members.length} members` : ''}</span>
          </span>
        }
      >
        <button type="button" class="button" aria-label="Group members" onClick={() => setMembers(true)}>
          Members
        </button>
      </ScreenHeader>
      <main class="chat">
        <div class="chat-info">
          <ConnectionChip m={m} />
        </div>
        {info && !info.isMember ? (
          <p class="warning" role="status">
            You are no longer in this group.
          </p>
        ) : null}
        <div class="messages" ref={logRef} role="log" aria-label={`Messages in ${name}`} aria-live="polite" tabIndex={0}>
          <ol>
            {data?.entries.map((e) => {
              const author = toHex(e.author);
              const state = states.get(e.id);
              return (
                <li key={`${author}/${e.id}`} class={`message ${e.outgoing ? 'outgoing' : 'incoming'}`} data-state={state}>
                  <div class="bubble">
                    {e.outgoing ? null : <p class="meta author">{author === me ? 'You' : m.nameOf(author)}</p>}
                    {e.deleted ? <p class="deleted">This message was deleted.</p> : <p class="text">{e.text ?? (e.file ? `📎 ${e.file.name}` : '')}</p>}
                    <p class="meta">
                      <time>{formatTime(e.sentAt)}</time>
                      {state ? <span class={`state ${state}`}> {state}</span> : null}
                    </p>
                  </div>
                </li>
              );
            })}
          </ol>
        </div>
        {data?.entries.length === 0 ? <p class="empty">No messages yet. Everything here is end-to-end encrypted for the members only.</p> : null}
        <form
          class="composer"
          onSubmit={(e) => {
            e.preventDefault();
            const body = text.trim();
            if (body === '') return;
            void send.run(async () => {
              await m.sendGroupText(group, body);
              setText('');
            });
          }}
        >
          <div class="row">
            <textarea aria-label="Message" rows={1} value={text} disabled={info?.isMember === false} onInput={(e) => setText(e.currentTarget.value)} />
            <button type="submit" class="primary" disabled={send.busy || info?.isMember === false}>
              Send
            </button>
          </div>
          <ErrorText error={send.error} />
        </form>
      </main>
      <Members m={m} group={group} open={members} onClose={() => setMembers(false)} />
    </>
  );
}

function Members({ m, group, open, onClose }: { m: Messenger; group: string; open: boolean; onClose: () => void }) {
  const version = useVersion(m);
  const info = useAsync(() => m.groupInfo(group), [version, group, open]);
  const leave = useAction();
  const me = toHex(m.client.accountKey);
  return (
    <Dialog open={open} onClose={onClose} title="Group members">
      <div class="dialog-body stack">
        <ul class="stack" data-testid="group-members">
          {info?.members.map((p) => {
            const key = toHex(p.accountKey);
            return (
              <li key={key}>
                {key === me ? 'You' : m.nameOf(key)}
                {p.admin ? <span class="meta"> (admin)</span> : null}
              </li>
            );
          })}
        </ul>
        {info?.isMember ? (
          <button
            type="button"
            class="danger"
            disabled={leave.busy}
            onClick={() =>
              void leave.run(async () => {
                await m.leaveGroup(group);
                onClose();
              })
            }
          >
            Leave the group
          </button>
        ) : null}
        <ErrorText error={leave.error} />
      </div>
    </Dialog>
  );
}

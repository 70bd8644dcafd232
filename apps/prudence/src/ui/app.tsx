/** The root: opens the account, then routes by location.hash (so a reload reopens the same screen). */
import { useEffect, useState } from 'preact/hooks';
import type { ConversationSummary } from '../lib/messenger.js';
import type { FreshDevice } from '../lib/messenger.js';
import { Messenger, describeError } from '../lib/messenger.js';
import { formatTime } from '../lib/util.js';
import { Chat } from './chat.js';
import { AddContact, Safety } from './contacts.js';
import { Backup, RestoreThisDevice } from './backup.js';
import { Devices, LinkThisDevice } from './devices.js';
import { GroupChat, GroupInvitations, NewGroup } from './groups.js';
import { Avatar, ConnectionChip, ErrorText, ScreenHeader, useAction, useAsync, useVersion } from './common.js';
import { Search, Settings } from './settings.js';

type Route = { screen: 'list' } | { screen: 'add' } | { screen: 'search' } | { screen: 'settings' } | { screen: 'devices' } | { screen: 'backup' } | { screen: 'new-group' } | { screen: 'group'; group: string } | { screen: 'chat'; peer: string } | { screen: 'safety'; peer: string };

function parseRoute(hash: string): Route {
  const [, screen, arg] = hash.replace(/^#/, '').split('/');
  const peer = arg && /^[0-9a-f]{64}$/.test(arg) ? arg : undefined;
  if ((screen === 'chat' || screen === 'safety') && peer) return { screen, peer };
  if (screen === 'group' && arg && /^[0-9a-f]{2,128}$/.test(arg)) return { screen, group: arg };
  if (screen === 'add' || screen === 'search' || screen === 'settings' || screen === 'devices' || screen === 'backup' || screen === 'new-group') return { screen };
  return { screen: 'list' };
}

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = (): void => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

export function App() {
  const [opened, setOpened] = useState<Messenger | FreshDevice | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    let live = true;
    setError(undefined);
    Messenger.open().then(
      (o) => (live ? setOpened(o) : void o.close()),
      (e: unknown) => live && setError(describeError(e)),
    );
    return () => {
      live = false;
    };
  }, [attempt]);
  useEffect(() => {
    // Back online: a failed start tries again; a running client reconnects now instead of after its backoff.
    const online = (): void => {
      if (error) setAttempt((n) => n + 1);
      else if (opened instanceof Messenger && !opened.stopped && opened.client.connectionState === 'offline') opened.client.connect();
    };
    addEventListener('online', online);
    return () => removeEventListener('online', online);
  }, [error, opened]);
  if (error) {
    return (
      <main class="center">
        <h1>Prudence</h1>
        <p role="alert" data-testid="start-error">
          {navigator.onLine ? `Prudence could not reach your node: ${error}` : 'You are offline. Prudence will connect again as soon as the network is back.'}
        </p>
        <button type="button" onClick={() => setAttempt((n) => n + 1)}>
          Try again
        </button>
      </main>
    );
  }
  if (!opened) {
    return (
      <main class="center">
        <p role="status">Opening your encrypted storage…</p>
      </main>
    );
  }
  if (opened instanceof Messenger) return <Opened m={opened} />;
  return <Start fresh={opened} onOpened={setOpened} />;
}

/** A browser without an account: create one, or link this browser to an account used elsewhere. */
function Start({ fresh, onOpened }: { fresh: FreshDevice; onOpened: (m: Messenger) => void }) {
  const [other, setOther] = useState<'link' | 'restore' | undefined>(undefined);
  if (other === 'link') return <LinkThisDevice fresh={fresh} onLinked={onOpened} onCancel={() => setOther(undefined)} />;
  if (other === 'restore') return <RestoreThisDevice fresh={fresh} onRestored={onOpened} onCancel={() => setOther(undefined)} />;
  return (
    <Welcome
      create={async (name) => {
        const m = await fresh.createAccount();
        try {
          await m.register(name);
        } catch (e) {
          m.welcomeError = describeError(e);
        }
        onOpened(m);
      }}
      onLink={() => setOther('link')}
      onRestore={() => setOther('restore')}
    />
  );
}

function Opened({ m }: { m: Messenger }) {
  useVersion(m);
  const route = useRoute();
  useEffect(() => {
    const onVisibility = (): void => void m.visibility(document.visibilityState === 'visible');
    document.addEventListener('visibilitychange', onVisibility);
    // The service worker fetched mail while this page was asleep: re-read the history.
    const onWake = (e: MessageEvent): void => {
      if ((e.data as { type?: string } | null)?.type === 'prudence:wake') m.changed();
    };
    navigator.serviceWorker?.addEventListener('message', onWake);
    return () => {
      document.removeEventListener('visibilitychange', onVisibility);
      navigator.serviceWorker?.removeEventListener('message', onWake);
    };
  }, [m]);
  useEffect(() => {
    m.openPeer = route.screen === 'chat' ? route.peer : undefined;
    m.openGroup = route.screen === 'group' ? route.group : undefined;
    if (m.openPeer) void m.markRead(m.openPeer);
    if (m.openGroup) void m.markGroupRead(m.openGroup);
  }, [m, route]);
  if (!m.registered) return <Welcome create={(name) => m.register(name)} initialError={m.welcomeError} />;
  return (
    <div class="shell">
      <Notices m={m} />
      {route.screen === 'list' ? <ChatList m={m} /> : null}
      {route.screen === 'add' ? <AddContact m={m} /> : null}
      {route.screen === 'search' ? <Search m={m} /> : null}
      {route.screen === 'settings' ? <Settings m={m} /> : null}
      {route.screen === 'devices' ? <Devices m={m} /> : null}
      {route.screen === 'backup' ? <Backup m={m} /> : null}
      {route.screen === 'new-group' ? <NewGroup m={m} /> : null}
      {route.screen === 'group' ? <GroupChat key={route.group} m={m} group={route.group} /> : null}
      {route.screen === 'chat' ? <Chat key={route.peer} m={m} peer={route.peer} /> : null}
      {route.screen === 'safety' ? <Safety key={route.peer} m={m} peer={route.peer} /> : null}
    </div>
  );
}

function Notices({ m }: { m: Messenger }) {
  if (m.stopped) {
    return (
      <div class="notices" role="alert" data-testid="stopped">
        <p>{m.stopped}</p>
        {m.removed ? (
          <button type="button" onClick={() => void m.erase().then(() => ((location.hash = ''), location.reload()))}>
            Start over in this browser
          </button>
        ) : (
          <button type="button" onClick={() => m.takeOver()}>
            Use Prudence here
          </button>
        )}
      </div>
    );
  }
  if (m.notices.length === 0) return null;
  return (
    <div class="notices" role="status">
      {m.notices.map((n, i) => (
        <p key={i}>{n}</p>
      ))}
      <button
        type="button"
        onClick={() => {
          m.notices = [];
          m.changed();
        }}
      >
        Dismiss
      </button>
    </div>
  );
}

function Welcome({ create, onLink, onRestore, initialError }: { create: (name: string) => Promise<void>; onLink?: () => void; onRestore?: () => void; initialError?: string | undefined }) {
  const [name, setName] = useState('');
  const action = useAction();
  return (
    <main class="center welcome">
      <img src="/icons/icon.svg" alt="" width={72} height={72} />
      <h1>Prudence</h1>
      <p>
        End-to-end encrypted messages through your own MeshWhisper node. Your keys are made in this browser and never leave it; the node only relays
        sealed envelopes.
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void action.run(() => create(name));
        }}
      >
        <label for="username">Choose a username</label>
        <input
          id="username"
          name="username"
          autocomplete="username"
          autocapitalize="none"
          spellcheck={false}
          required
          minLength={3}
          maxLength={32}
          pattern="[a-zA-Z0-9][a-zA-Z0-9_.\-]{2,31}"
          aria-describedby="username-help"
          value={name}
          onInput={(e) => setName(e.currentTarget.value)}
        />
        <p id="username-help" class="help">
          3–32 letters, digits, dots, dashes or underscores. Others find you by it.
        </p>
        <button type="submit" class="primary" disabled={action.busy}>
          {action.busy ? 'Creating…' : 'Create account'}
        </button>
        <ErrorText error={action.error ?? (action.busy ? undefined : initialError)} />
      </form>
      {onLink ? (
        <section class="link-choice" aria-labelledby="link-h">
          <h2 id="link-h">Already use Prudence?</h2>
          <p class="help">Use the same account here: another of your devices scans a code this browser shows. Lost every device? Restore your backup with its recovery key or passphrase.</p>
          <div class="stack">
            <button type="button" onClick={onLink}>
              Link this browser to an existing account
            </button>
            <button type="button" onClick={onRestore}>
              Restore from a backup
            </button>
          </div>
        </section>
      ) : null}
    </main>
  );
}

function ChatList({ m }: { m: Messenger }) {
  const version = useVersion(m);
  const list = useAsync(() => m.conversations(), [version]);
  const total = list?.reduce((n, c) => n + c.unread, 0) ?? 0;
  useEffect(() => {
    document.title = total > 0 ? `(${total}) Prudence` : 'Prudence';
  }, [total]);
  const requests = list?.filter((c) => c.state === 'request') ?? [];
  const chats = list?.filter((c) => c.state !== 'request') ?? [];
  return (
    <>
      <ScreenHeader title="Chats">
        <a class="button" href="#/add">
          New chat
        </a>
        <a class="icon" href="#/search" aria-label="Search messages">
          🔍
        </a>
        <a class="icon" href="#/settings" aria-label="Settings">
          ⚙
        </a>
      </ScreenHeader>
      <main class="list">
        <p class="me">
          Signed in as <strong data-testid="me">{m.username}</strong> <ConnectionChip m={m} />
          <a href="#/new-group" class="new-group">
            New group
          </a>
        </p>
        {[...m.keyChanges.values()].map((k) => (
          <p key={k.username} class="warning" role="alert">
            The safety number with <strong>{k.username}</strong> has changed.{' '}
            <a href={`#/chat/${k.previous}`}>Review</a>
          </p>
        ))}
        <GroupInvitations m={m} />
        {requests.length > 0 ? (
          <section aria-labelledby="requests-h">
            <h2 id="requests-h">Contact requests</h2>
            <ul class="conversations">
              {requests.map((c) => (
                <ConversationItem key={c.peer} c={c} />
              ))}
            </ul>
          </section>
        ) : null}
        <section aria-labelledby="chats-h">
          <h2 id="chats-h" class="visually-hidden">
            Conversations
          </h2>
          {list && chats.length === 0 ? <p class="empty">No conversations yet. Start one with “New chat”.</p> : null}
          <ul class="conversations">
            {chats.map((c) => (
              <ConversationItem key={c.peer} c={c} />
            ))}
          </ul>
        </section>
      </main>
    </>
  );
}

function snippet(c: ConversationSummary): string {
  const e = c.last;
  if (!e) return c.state === 'request' ? 'Wants to chat' : 'No messages yet';
  const body = e.deleted ? 'Message deleted' : e.file ? `📎 ${e.file.name}` : (e.text ?? '');
  return `${e.outgoing ? 'You: ' : ''}${body}`;
}

function ConversationItem({ c }: { c: ConversationSummary }) {
  return (
    <li>
      <a href={c.kind === 'group' ? `#/group/${c.peer}` : `#/chat/${c.peer}`} class="conversation" data-peer={c.peer} data-kind={c.kind}>
        <Avatar name={c.name} />
        <span class="conv-main">
          <span class="conv-name">
            {c.name}
            {c.blocked ? <span class="meta"> (blocked)</span> : null}
          </span>
          <span class="conv-snippet">{snippet(c)}</span>
        </span>
        <span class="conv-side">
          {c.last ? <time>{formatTime(c.last.receivedAt)}</time> : null}
          {c.unread > 0 ? (
            <span class="badge">
              <span data-testid="unread">{c.unread}</span>
              <span class="visually-hidden"> unread</span>
            </span>
          ) : null}
        </span>
      </a>
    </li>
  );
}

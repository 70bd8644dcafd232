/** Settings (privacy, notifications, account deletion) and message search. */
import { useState } from 'preact/hooks';
import type { Messenger, Settings as SettingsRecord } from '../lib/messenger.js';
import { enablePush, pushState } from '../lib/push.js';
import { formatTime, toHex } from '../lib/util.js';
import { Dialog, ErrorText, ScreenHeader, useAction, useAsync, useVersion } from './common.js';

export function Settings({ m }: { m: Messenger }) {
  useVersion(m);
  const action = useAction();
  const push = useAction();
  const [pushVersion, setPushVersion] = useState(0);
  const pushStatus = useAsync(() => pushState(m), [pushVersion]);
  const [confirming, setConfirming] = useState(false);
  const toggle = (key: keyof SettingsRecord) => (e: Event) => void action.run(() => m.saveSettings({ ...m.settings, [key]: (e.currentTarget as HTMLInputElement).checked }));
  return (
    <>
      <ScreenHeader title="Settings" back="#/" />
      <main class="page">
        <section aria-labelledby="account-h">
          <h2 id="account-h">Account</h2>
          <p>
            Username: <strong>{m.username}</strong>
          </p>
          <p class="help mono">
            Account key: <span>{toHex(m.client.accountKey).slice(0, 32)}…</span>
          </p>
        </section>
        <section aria-labelledby="devices-h">
          <h2 id="devices-h">Devices</h2>
          <p class="help">Use this account on another browser or phone too: link it by QR code. Remove devices you no longer use.</p>
          <a class="button" href="#/devices">
            Linked devices
          </a>
        </section>
        <section aria-labelledby="backup-h">
          <h2 id="backup-h">Backup</h2>
          <p class="help">An encrypted copy of your account on your node, to restore it on a new device if you lose all of yours.</p>
          <a class="button" href="#/backup">
            Backup and recovery key
          </a>
        </section>
        <section aria-labelledby="privacy-h">
          <h2 id="privacy-h">Privacy</h2>
          <label class="check">
            <input type="checkbox" checked={m.settings.readReceipts} onChange={toggle('readReceipts')} /> Send read receipts
          </label>
          <label class="check">
            <input type="checkbox" checked={m.settings.typingIndicators} onChange={toggle('typingIndicators')} /> Send “typing…”
          </label>
          <label class="check">
            <input type="checkbox" checked={m.settings.sharePresence} onChange={toggle('sharePresence')} /> Show contacts when I am online
          </label>
          <ErrorText error={action.error} />
        </section>
        <section aria-labelledby="notify-h">
          <h2 id="notify-h">Notifications</h2>
          <p role="status" data-testid="push-status">
            {pushStatus ?? 'Checking…'}
          </p>
          <button type="button" disabled={push.busy} onClick={() => void push.run(async () => ((await enablePush(m)), setPushVersion((v) => v + 1)))}>
            Enable notifications
          </button>
          <ErrorText error={push.error} />
        </section>
        <section aria-labelledby="danger-h">
          <h2 id="danger-h">Delete account</h2>
          <p class="help">Deletes your account, username, keys and queued mail from the node, and everything Prudence stored in this browser. It cannot be undone.</p>
          <button type="button" class="danger" onClick={() => setConfirming(true)}>
            Delete account…
          </button>
        </section>
      </main>
      <DeleteAccount m={m} open={confirming} onClose={() => setConfirming(false)} />
    </>
  );
}

function DeleteAccount({ m, open, onClose }: { m: Messenger; open: boolean; onClose: () => void }) {
  const [typed, setTyped] = useState('');
  const action = useAction();
  return (
    <Dialog open={open} onClose={onClose} title="Delete your account?">
      <form
        class="dialog-body stack"
        onSubmit={(e) => {
          e.preventDefault();
          void action.run(async () => {
            await m.deleteAccount();
            location.hash = '';
            location.reload();
          });
        }}
      >
        <label for="confirm-name">Type your username ({m.username}) to confirm</label>
        <input id="confirm-name" autocapitalize="none" spellcheck={false} value={typed} onInput={(e) => setTyped(e.currentTarget.value)} />
        <button type="submit" class="danger" disabled={typed !== m.username || action.busy}>
          Delete everything
        </button>
        <ErrorText error={action.error} />
      </form>
    </Dialog>
  );
}

export function Search({ m }: { m: Messenger }) {
  const [query, setQuery] = useState('');
  const [submitted, setSubmitted] = useState('');
  const version = useVersion(m);
  const results = useAsync(() => m.search(submitted), [submitted, version]);
  return (
    <>
      <ScreenHeader title="Search" back="#/" />
      <main class="page">
        <form
          role="search"
          onSubmit={(e) => {
            e.preventDefault();
            setSubmitted(query);
          }}
        >
          <label for="search">Search your messages (on this device only)</label>
          <div class="row">
            <input id="search" type="search" value={query} onInput={(e) => setQuery(e.currentTarget.value)} />
            <button type="submit" class="primary">
              Search
            </button>
          </div>
        </form>
        {submitted !== '' && results ? (
          <>
            <p role="status">
              {results.length} result{results.length === 1 ? '' : 's'}
            </p>
            <ul class="results">
              {results.map(({ peer, entry }) => (
                <li key={`${peer}/${entry.id}`}>
                  <a href={`#/chat/${peer}`} data-testid="search-result">
                    <strong>{entry.outgoing ? 'You' : m.nameOf(peer)}</strong> <time>{formatTime(entry.sentAt)}</time>
                    <span class="snippet">{entry.text ?? entry.file?.name}</span>
                  </a>
                </li>
              ))}
            </ul>
          </>
        ) : null}
      </main>
    </>
  );
}

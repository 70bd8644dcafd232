/**
 * The account backup (docs/api.md §Recovery): turned on with a recovery key (shown once) or a
 * passphrase on a device that holds the account key, stored again on demand; and restoring it on a
 * browser that has nothing else.
 */
import { useState } from 'preact/hooks';
import type { FreshDevice, Messenger } from '../lib/messenger.js';
import { describeError, passphraseProblem } from '../lib/messenger.js';
import { formatTime } from '../lib/util.js';
import { CopyButton, ErrorText, ScreenHeader, useAction, useAsync, useVersion } from './common.js';

export function Backup({ m }: { m: Messenger }) {
  const version = useVersion(m);
  const status = useAsync(() => m.archiveStatus(), [version]);
  const [mode, setMode] = useState<'key' | 'passphrase'>('key');
  const [passphrase, setPassphrase] = useState('');
  const [history, setHistory] = useState(true);
  const [recoveryKey, setRecoveryKey] = useState<string | undefined>(undefined);
  const [done, setDone] = useState<string | undefined>(undefined);
  const action = useAction();
  const weak = mode === 'passphrase' && passphrase !== '' ? passphraseProblem(passphrase) : undefined;
  return (
    <>
      <ScreenHeader title="Backup" back="#/settings" />
      <main class="page">
        <p class="help">
          The backup holds your account key, contacts, settings and, if you choose, recent messages — encrypted in this browser under a key only you have,
          then stored on your node. With it you can get your account back on a new device after losing all of them.
        </p>
        {recoveryKey ? (
          <section class="success" aria-labelledby="key-h">
            <h2 id="key-h">Your recovery key</h2>
            <p>Write it down and keep it somewhere safe. It is shown only now; without it (or your devices) the backup cannot be opened.</p>
            <p class="mono recovery-key" data-testid="recovery-key">
              {recoveryKey}
            </p>
            <div class="row">
              <CopyButton text={recoveryKey} label="Copy" />
              <button type="button" class="primary" onClick={() => setRecoveryKey(undefined)}>
                I wrote it down
              </button>
            </div>
          </section>
        ) : null}
        {!status ? (
          <p role="status">Reading the backup status…</p>
        ) : status.enabled ? (
          <section aria-labelledby="status-h">
            <h2 id="status-h">Backup is on</h2>
            <p data-testid="backup-status">
              Protected by {status.protection === 'passphrase' ? 'a passphrase' : 'a recovery key'}; version {status.version}
              {status.lastBackupAt > 0 ? `, stored ${formatTime(status.lastBackupAt)}` : ''}
              {status.historyPerConversation > 0 ? `; up to ${status.historyPerConversation} messages per chat` : '; no messages'}.
            </p>
            <button type="button" disabled={action.busy} onClick={() => void action.run(async () => setDone(`Backup version ${await m.backupNow()} stored.`))}>
              {action.busy ? 'Backing up…' : 'Back up now'}
            </button>
            {done ? (
              <p role="status" class="success">
                {done}
              </p>
            ) : null}
          </section>
        ) : !m.isManager ? (
          <p class="help">Turn the backup on from a device that can link devices (your first device): the backup carries the account key.</p>
        ) : (
          <form
            class="stack"
            aria-labelledby="enable-h"
            onSubmit={(e) => {
              e.preventDefault();
              void action.run(async () => {
                const key = await m.enableBackup({ history, ...(mode === 'passphrase' ? { passphrase } : {}) });
                setPassphrase('');
                setRecoveryKey(key);
              });
            }}
          >
            <h2 id="enable-h">Turn the backup on</h2>
            <fieldset class="members">
              <legend>Protect it with</legend>
              <label class="check">
                <input type="radio" name="protection" checked={mode === 'key'} onChange={() => setMode('key')} /> A recovery key (recommended: it cannot be guessed)
              </label>
              <label class="check">
                <input type="radio" name="protection" checked={mode === 'passphrase'} onChange={() => setMode('passphrase')} /> A passphrase I choose
              </label>
            </fieldset>
            {mode === 'passphrase' ? (
              <>
                <label for="backup-passphrase">Passphrase (at least 16 characters; four random words work)</label>
                <input id="backup-passphrase" type="password" autocomplete="new-password" required value={passphrase} onInput={(e) => setPassphrase(e.currentTarget.value)} aria-describedby="passphrase-help" />
                <p id="passphrase-help" class="help" aria-live="polite">
                  {weak ? `Not yet: ${weak}.` : passphrase ? 'Long enough. Whoever runs the node could try guesses: make it one nobody knows.' : ''}
                </p>
              </>
            ) : null}
            <label class="check">
              <input type="checkbox" checked={history} onChange={(e) => setHistory(e.currentTarget.checked)} /> Include recent messages (the newest 1,000 of each chat)
            </label>
            <button type="submit" class="primary" disabled={action.busy || weak !== undefined}>
              {action.busy ? 'Encrypting and storing…' : 'Turn backup on'}
            </button>
          </form>
        )}
        <ErrorText error={action.error} />
      </main>
    </>
  );
}

/** On a browser without an account: restore it from its backup with the recovery key or the passphrase. */
export function RestoreThisDevice({ fresh, onRestored, onCancel }: { fresh: FreshDevice; onRestored: (m: Messenger) => void; onCancel: () => void }) {
  const [mode, setMode] = useState<'key' | 'passphrase'>('key');
  const [recoveryKey, setRecoveryKey] = useState('');
  const [username, setUsername] = useState('');
  const [passphrase, setPassphrase] = useState('');
  const [revoke, setRevoke] = useState(false);
  const [progress, setProgress] = useState<number | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  return (
    <main class="page link-device">
      <h1>Restore from a backup</h1>
      <p class="help">Get your account back in this browser: your contacts, settings and the messages the backup holds. This browser becomes one of your devices.</p>
      <form
        class="stack"
        onSubmit={(e) => {
          e.preventDefault();
          setBusy(true);
          setError(undefined);
          setProgress(0);
          fresh
            .restore(
              { ...(mode === 'key' ? { recoveryKey } : { passphrase, username }), revokeOtherDevices: revoke, onProgress: (f) => setProgress(f) },
              'Restored browser',
            )
            .then(onRestored, (err: unknown) => {
              setError(describeError(err));
              setBusy(false);
              setProgress(undefined);
            });
        }}
      >
        <fieldset class="members">
          <legend>The backup is protected by</legend>
          <label class="check">
            <input type="radio" name="restore-with" checked={mode === 'key'} onChange={() => setMode('key')} /> A recovery key
          </label>
          <label class="check">
            <input type="radio" name="restore-with" checked={mode === 'passphrase'} onChange={() => setMode('passphrase')} /> A passphrase
          </label>
        </fieldset>
        {mode === 'key' ? (
          <>
            <label for="restore-key">Recovery key</label>
            <textarea id="restore-key" rows={3} autocapitalize="characters" spellcheck={false} required value={recoveryKey} onInput={(e) => (setRecoveryKey(e.currentTarget.value), setError(undefined))} />
          </>
        ) : (
          <>
            <label for="restore-username">Your username</label>
            <input id="restore-username" autocapitalize="none" spellcheck={false} required value={username} onInput={(e) => setUsername(e.currentTarget.value)} />
            <label for="restore-passphrase">Passphrase</label>
            <input id="restore-passphrase" type="password" autocomplete="current-password" required value={passphrase} onInput={(e) => setPassphrase(e.currentTarget.value)} />
          </>
        )}
        <label class="check">
          <input type="checkbox" checked={revoke} onChange={(e) => setRevoke(e.currentTarget.checked)} /> Remove all my other devices (one was lost or stolen)
        </label>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Restoring…' : 'Restore'}
        </button>
        {progress !== undefined ? (
          <label class="progress">
            <span>Opening the backup</span>
            <progress max={1} value={progress} aria-label="Restore progress" data-testid="restore-progress" />
          </label>
        ) : null}
      </form>
      <ErrorText error={error} />
      <button type="button" onClick={onCancel} disabled={busy}>
        Back
      </button>
    </main>
  );
}

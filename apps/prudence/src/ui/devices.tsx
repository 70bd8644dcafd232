/**
 * Linking devices (docs/api.md §Devices): the new browser shows a link code (QR and text), a device
 * of the account scans or pastes it and chooses whether recent messages go along; the device list
 * shows the account's devices from its signed list, and a manager device removes them.
 */
import { useEffect, useState } from 'preact/hooks';
import type { LinkOfferHandle, MeshWhisper } from '@meshwhisper/sdk';
import type { DeviceInfo, Messenger } from '../lib/messenger.js';
import { FreshDevice, LINK_TEXT_PREFIX, describeError } from '../lib/messenger.js';
import { svgDataUrl, toHex } from '../lib/util.js';
import { Scanner } from './contacts.js';
import { CopyButton, Dialog, ErrorText, ScreenHeader, useAction, useAsync, useVersion } from './common.js';

type Offer = { handle: LinkOfferHandle<MeshWhisper>; text: string; svg: string };

/** On a browser without an account: show a link code and wait for a device of the account to scan it. */
export function LinkThisDevice({ fresh, onLinked, onCancel }: { fresh: FreshDevice; onLinked: (m: Messenger) => void; onCancel: () => void }) {
  const [name, setName] = useState('Browser');
  const [offer, setOffer] = useState<Offer | undefined>(undefined);
  const [joining, setJoining] = useState<string | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  // Leaving the screen abandons an offer nobody used.
  useEffect(() => () => void offer?.handle.cancel(), [offer]);
  const start = async (): Promise<void> => {
    setBusy(true);
    setError(undefined);
    setJoining(undefined);
    try {
      const handle = await fresh.offer(name.trim(), ({ accountKey, deviceName }) =>
        setJoining(`Joining the account ${toHex(accountKey).slice(0, 8)}… (scanned by “${deviceName || 'another device'}”). Receiving contacts and messages…`),
      );
      setOffer({ handle, text: FreshDevice.offerText(handle), svg: handle.qrSvg({ margin: 4, moduleSize: 3 }) });
      setBusy(false);
      const m = await fresh.linked(handle, name.trim() || 'Browser');
      onLinked(m);
    } catch (e) {
      setOffer(undefined);
      setJoining(undefined);
      setError(describeError(e));
      setBusy(false);
    }
  };
  return (
    <main class="page link-device">
      <h1>Link this browser</h1>
      <p class="help">
        Use Prudence here with the account of another of your devices. That device scans this browser’s link code (or you paste the code there), then
        sends your contacts and, if you choose, recent messages — end-to-end encrypted; the node relays sealed bytes only.
      </p>
      {offer ? (
        <section aria-labelledby="link-code-h">
          <h2 id="link-code-h">Your link code</h2>
          <img class="qr link-qr" src={svgDataUrl(offer.svg)} alt="Link code as a QR code: scan it with Prudence on your other device (Settings → Devices)" width={320} height={320} />
          <label for="link-text">The code as text (paste it on your other device)</label>
          <div class="row">
            <input id="link-text" readOnly value={offer.text} data-testid="link-offer" onFocus={(e) => e.currentTarget.select()} />
            <CopyButton text={offer.text} label="Copy" />
          </div>
          <p role="status" data-testid="link-status">
            {joining ?? `Waiting for your other device… The code works once, until ${new Date(offer.handle.expiresAt).toLocaleTimeString()}.`}
          </p>
        </section>
      ) : (
        <form
          class="stack"
          onSubmit={(e) => {
            e.preventDefault();
            void start();
          }}
        >
          <label for="device-name">A name for this browser (your other devices show it)</label>
          <input id="device-name" maxLength={64} value={name} onInput={(e) => setName(e.currentTarget.value)} />
          <button type="submit" class="primary" disabled={busy}>
            {error ? 'Show a new link code' : 'Show a link code'}
          </button>
        </form>
      )}
      <ErrorText error={error} />
      <button
        type="button"
        onClick={() => {
          void offer?.handle.cancel();
          onCancel();
        }}
      >
        Back
      </button>
    </main>
  );
}

/** The account's devices; on a manager device, linking a new one and removing others. */
export function Devices({ m }: { m: Messenger }) {
  const version = useVersion(m);
  const devices = useAsync(() => m.devices(), [version]);
  const [removing, setRemoving] = useState<DeviceInfo | undefined>(undefined);
  return (
    <>
      <ScreenHeader title="Devices" back="#/settings" />
      <main class="page">
        <section aria-labelledby="devices-h">
          <h2 id="devices-h">Your devices</h2>
          {devices ? (
            <ul class="devices" data-testid="device-list">
              {devices.map((d) => (
                <li key={d.index} class="device" data-testid="device">
                  <span class="device-name">
                    {d.name}
                    {d.self ? <span class="meta"> (this device)</span> : null}
                    {d.manager ? <span class="meta"> · can link devices</span> : null}
                  </span>
                  {!d.self && m.isManager ? (
                    <button type="button" class="danger small" onClick={() => setRemoving(d)} aria-label={`Remove ${d.name}`}>
                      Remove
                    </button>
                  ) : null}
                </li>
              ))}
            </ul>
          ) : (
            <p role="status">Reading your device list…</p>
          )}
        </section>
        {m.isManager ? <LinkNewDevice m={m} /> : <p class="help">Only a device that can link devices (the first one, or one linked as such) links or removes devices.</p>}
      </main>
      <RemoveDevice m={m} device={removing} onClose={() => setRemoving(undefined)} />
    </>
  );
}

function LinkNewDevice({ m }: { m: Messenger }) {
  const [code, setCode] = useState('');
  const [history, setHistory] = useState(true);
  const [manager, setManager] = useState(false);
  const [result, setResult] = useState<string | undefined>(undefined);
  const action = useAction();
  const link = (offer: Uint8Array | string): Promise<void> =>
    action.run(async () => {
      setResult(undefined);
      const r = await m.linkDevice(offer, { history, manager });
      setCode('');
      setResult(`Linked “${r.deviceName || `device ${r.deviceIndex + 1}`}”${history ? `; ${r.historyEntries} recent message${r.historyEntries === 1 ? '' : 's'} copied` : ''}.`);
    });
  return (
    <section aria-labelledby="link-new-h">
      <h2 id="link-new-h">Link a new device</h2>
      <p class="help">On the new device, open Prudence and choose “Link this browser to an existing account”: it shows a link code. Scan it here, or paste its text.</p>
      <label class="check">
        <input type="checkbox" checked={history} onChange={(e) => setHistory(e.currentTarget.checked)} /> Copy recent messages (the newest 200 of each chat)
      </label>
      <label class="check">
        <input type="checkbox" checked={manager} onChange={(e) => setManager(e.currentTarget.checked)} /> Let it link and remove devices too
      </label>
      <Scanner onResult={(r) => void link(r.bytes ?? r.text)} label="Scan the link code" wantBytes testId="scan-link" />
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void link(code);
        }}
      >
        <label for="paste-link">Or paste the link code ({LINK_TEXT_PREFIX}…)</label>
        <div class="row">
          <input id="paste-link" autocapitalize="none" spellcheck={false} required value={code} onInput={(e) => setCode(e.currentTarget.value)} />
          <button type="submit" class="primary" disabled={action.busy}>
            Link
          </button>
        </div>
      </form>
      {action.busy ? (
        <p role="status" data-testid="link-progress">
          Linking… certifying the device, publishing your device list{history ? ', sending recent messages' : ''}. Keep both screens open.
        </p>
      ) : null}
      {result ? (
        <p class="success" role="status" data-testid="link-result">
          {result}
        </p>
      ) : null}
      <ErrorText error={action.error} />
    </section>
  );
}

function RemoveDevice({ m, device, onClose }: { m: Messenger; device: DeviceInfo | undefined; onClose: () => void }) {
  const action = useAction();
  return (
    <Dialog open={device !== undefined} onClose={onClose} title={`Remove ${device?.name ?? 'device'}?`}>
      <div class="dialog-body stack">
        <p>It stops receiving your messages at once and cannot send as you. Prudence data stays on it until it is reset there.</p>
        <button type="button" class="danger" disabled={action.busy} onClick={() => void action.run(async () => (device ? (await m.revokeDevice(device.index), onClose()) : undefined))}>
          Remove the device
        </button>
        <ErrorText error={action.error} />
      </div>
    </Dialog>
  );
}

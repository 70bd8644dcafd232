/** Adding contacts (username, QR code shown and scanned, pasted code) and the safety-number screen. */
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Messenger } from '../lib/messenger.js';
import { hasCamera, startScan } from '../lib/qr-scan.js';
import type { ScanResult } from '../lib/qr-scan.js';
import { svgDataUrl } from '../lib/util.js';
import { CopyButton, ErrorText, ScreenHeader, useAction, useAsync } from './common.js';

export function AddContact({ m }: { m: Messenger }) {
  const [username, setUsername] = useState('');
  const [code, setCode] = useState('');
  const byName = useAction();
  const byCode = useAction();
  const card = useAsync(() => m.myCard(), [m]);
  const open = (peer: string): void => void (location.hash = `#/chat/${peer}`);
  return (
    <>
      <ScreenHeader title="New chat" back="#/" />
      <main class="page">
        <section aria-labelledby="by-name">
          <h2 id="by-name">By username</h2>
          <form
            onSubmit={(e) => {
              e.preventDefault();
              void byName.run(async () => open(await m.addByUsername(username)));
            }}
          >
            <label for="contact-username">Their username</label>
            <div class="row">
              <input id="contact-username" autocapitalize="none" spellcheck={false} required value={username} onInput={(e) => setUsername(e.currentTarget.value)} />
              <button type="submit" class="primary" disabled={byName.busy}>
                Start chat
              </button>
            </div>
            <ErrorText error={byName.error} />
          </form>
        </section>
        <section aria-labelledby="my-code">
          <h2 id="my-code">Your code</h2>
          <p class="help">Let them scan this, or send them the text below. It names your account on this node; it holds no secret.</p>
          {card ? (
            <>
              <img class="qr" src={svgDataUrl(card.svg)} alt={`Your contact QR code (${m.username ?? 'no username'})`} width={240} height={240} />
              <label for="my-card">Your code as text</label>
              <div class="row">
                <input id="my-card" readOnly value={card.text} data-testid="my-card" onFocus={(e) => e.currentTarget.select()} />
                <CopyButton text={card.text} label="Copy" />
              </div>
            </>
          ) : (
            <p role="status">Making your code…</p>
          )}
        </section>
        <section aria-labelledby="their-code">
          <h2 id="their-code">Their code</h2>
          <Scanner onResult={(r) => void byCode.run(async () => open(await m.addByCard(r.text)))} label="Scan their code" />
          <form
            onSubmit={(e) => {
              e.preventDefault();
              void byCode.run(async () => open(await m.addByCard(code)));
            }}
          >
            <label for="paste-card">Or paste their code (mwc1:…)</label>
            <div class="row">
              <input id="paste-card" autocapitalize="none" spellcheck={false} required value={code} onInput={(e) => setCode(e.currentTarget.value)} />
              <button type="submit" class="primary" disabled={byCode.busy}>
                Add
              </button>
            </div>
            <ErrorText error={byCode.error} />
          </form>
        </section>
      </main>
    </>
  );
}

/** A camera QR reader where the browser has a camera; otherwise nothing (the paste field remains). */
export function Scanner({ onResult, label, wantBytes = false, testId }: { onResult: (r: ScanResult) => void; label: string; wantBytes?: boolean; testId?: string }) {
  const [scanning, setScanning] = useState(false);
  const [read, setRead] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);
  const video = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    if (!scanning || !video.current) return;
    let stop: (() => void) | undefined;
    let live = true;
    startScan(
      video.current,
      (r) => {
        setScanning(false);
        setRead(true);
        onResult(r);
      },
      wantBytes,
    ).then(
      (s) => (live ? (stop = s) : s()),
      (e: unknown) => {
        setScanning(false);
        setError(`The camera could not be opened (${e instanceof Error ? e.message : String(e)}). Paste the code instead.`);
      },
    );
    return () => {
      live = false;
      stop?.();
    };
  }, [scanning]);
  if (!hasCamera()) return null;
  return (
    <div class="scanner">
      {scanning ? <video ref={video} muted playsInline aria-label="Camera view" /> : null}
      <button
        type="button"
        data-testid={testId}
        onClick={() => {
          setRead(false);
          setError(undefined);
          setScanning(!scanning);
        }}
      >
        {scanning ? 'Stop the camera' : label}
      </button>
      {read ? (
        <p role="status" class="help" data-testid="scan-read">
          Code read from the camera.
        </p>
      ) : null}
      <ErrorText error={error} />
    </div>
  );
}

export function Safety({ m, peer }: { m: Messenger; peer: string }) {
  const name = m.nameOf(peer);
  const number = m.safetyNumber(peer);
  const [pasted, setPasted] = useState('');
  const [result, setResult] = useState<string | undefined>(undefined);
  const action = useAction();
  const check = (scanned: Uint8Array | string): Promise<void> =>
    action.run(async () => {
      const status = await m.verify(peer, scanned);
      setResult(
        status === 'match'
          ? `Safety numbers match: your conversation with ${name} is end-to-end encrypted with the keys you both see.`
          : status === 'mismatch'
            ? `The safety numbers do NOT match. Someone may be between you and ${name}; do not trust this conversation until you find out why.`
            : status === 'version-mismatch'
              ? 'Their app uses another safety-number version: both of you should update.'
              : 'That is not a safety-number code.',
      );
    });
  const change = m.keyChangeFor(peer);
  return (
    <>
      <ScreenHeader title={`Safety number with ${name}`} back={`#/chat/${peer}`} />
      <main class="page">
        {change ? (
          <p class="warning" role="alert">
            This safety number belongs to the new key of {change.username}. Compare it in person before accepting it.
          </p>
        ) : null}
        <p class="help">
          Compare these digits with the ones on {name}’s screen, or scan each other’s code. If they match, nobody — not even the node — can read your messages.
        </p>
        <p class="digits" aria-label={`Safety number: ${number.groups.join(' ')}`} data-testid="safety-digits">
          {number.groups.map((g, i) => (
            <span key={i}>{g}</span>
          ))}
        </p>
        <img class="qr" src={svgDataUrl(number.svg)} alt={`Safety number QR code for your conversation with ${name}`} width={220} height={220} />
        <label for="my-safety">This code as text (for pasting)</label>
        <div class="row">
          <input id="my-safety" readOnly value={number.code} data-testid="safety-code" onFocus={(e) => e.currentTarget.select()} />
          <CopyButton text={number.code} label="Copy" />
        </div>
        <h2>Check theirs</h2>
        <Scanner onResult={(r) => void check(r.bytes ?? r.text)} label="Scan their safety code" wantBytes />
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void check(pasted);
          }}
        >
          <label for="paste-safety">Or paste their code</label>
          <div class="row">
            <input id="paste-safety" autocapitalize="none" spellcheck={false} required value={pasted} onInput={(e) => setPasted(e.currentTarget.value)} />
            <button type="submit" class="primary" disabled={action.busy}>
              Compare
            </button>
          </div>
        </form>
        {result ? (
          <p class={m.verified.has(peer) ? 'success' : 'warning'} role="status" data-testid="safety-result">
            {result}
          </p>
        ) : null}
        <ErrorText error={action.error} />
      </main>
    </>
  );
}

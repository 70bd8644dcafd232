/**
 * Runs in a real browser page (bundled by browser-e2e.test.ts): one MeshWhisper client with
 * IndexedDB storage, the browser's own WebSocket and fetch, and the node reached at the page's own
 * origin. Node drives it through window.__mwClient (page.evaluate) and asserts on what it returns;
 * every incoming message and undecryptable envelope is recorded here until Node collects it.
 */
import type { FileAttachment, IncomingMessage } from '../../../src/index.js';
import { MeshWhisper, openIndexedDbStorage } from '../../../src/index.js';

/** An incoming message as it crosses page.evaluate: bytes as hex (mailbox id) or base64 (payload). */
export interface PageMessage {
  readonly id: string;
  readonly from: string;
  readonly fromMailboxId: string;
  readonly sentAt: number;
  readonly text?: string;
  readonly binary?: { readonly mimeType: string; readonly base64: string; readonly length: number };
  /** An attachment's metadata (the attachment itself stays in the page: downloadFile(id)). */
  readonly file?: { readonly name: string; readonly mimeType: string; readonly size: number };
}

export interface PageStarted {
  readonly mailboxId: string;
  readonly address: string;
  /** Whether the storage held a device identity before this start (false: a new identity was created). */
  readonly resumed: boolean;
  /** The WebSocket the client uses: the browser's own. */
  readonly nativeWebSocket: boolean;
}

export interface PageApi {
  start(db: string): Promise<PageStarted>;
  /** Resolves once the node reported the backlog delivered (`synced`), or false after `ms`. */
  synced(ms: number): Promise<boolean>;
  /** Waits until `count` messages have been recorded (or `ms` passed) and hands them over. */
  messages(count: number, ms: number): Promise<PageMessage[]>;
  undecryptable(): { envelopeId: string; code: string; message: string }[];
  sendText(toMailboxHex: string, text: string): Promise<string>;
  sendBinary(toMailboxHex: string, base64: string, mimeType: string): Promise<string>;
  /** Sends a file (sendFile with the browser's default upload mode); resolves with the message id. */
  sendFile(toMailboxHex: string, base64: string, mimeType: string, name: string): Promise<string>;
  /** Downloads the attachment of a received message as a verified stream; returns the bytes (base64) and how many chunks the stream gave. */
  downloadFile(messageId: string): Promise<{ base64: string; chunks: number }>;
  connectionState(): string;
  close(): Promise<void>;
  /** Probe: can the page call the node cross-origin (CORS)? Returns the outcome, never throws. */
  crossOriginProbe(nodeUrl: string): Promise<{ simpleGet: string; authedPreflight: string }>;
}

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const unhex = (s: string): Uint8Array => Uint8Array.from(s.match(/../g) ?? [], (x) => parseInt(x, 16));
function toBase64(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}
const fromBase64 = (s: string): Uint8Array => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

let client: MeshWhisper | undefined;
let syncedOnce: Promise<void> | undefined;
const inbox: PageMessage[] = [];
const bad: { envelopeId: string; code: string; message: string }[] = [];
const files = new Map<string, FileAttachment>();

function record(m: IncomingMessage): void {
  inbox.push({
    id: m.id,
    from: m.from,
    fromMailboxId: hex(m.fromMailboxId),
    sentAt: m.sentAt,
    ...(m.text !== undefined ? { text: m.text } : {}),
    ...(m.binary ? { binary: { mimeType: m.binary.mimeType, base64: toBase64(m.binary.data), length: m.binary.data.length } } : {}),
    ...(m.file ? { file: { name: m.file.name, mimeType: m.file.mimeType, size: m.file.size } } : {}),
  });
  if (m.file) files.set(m.id, m.file);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const need = (): MeshWhisper => {
  if (!client) throw new Error('client not started');
  return client;
};

const api: PageApi = {
  async start(db) {
    const storage = await openIndexedDbStorage({ name: db });
    const resumed = await storage.hasLocalIdentity();
    // Subscribed before the socket opens, so no delivery or `synced` can slip past.
    client = await MeshWhisper.create({ node: location.origin, namespace: 'browser-e2e', storage, connect: false });
    client.on('message', record);
    client.on('undecryptable', (u) => bad.push({ ...u }));
    syncedOnce = client.once('synced', undefined, 60_000).then(() => undefined);
    syncedOnce.catch(() => undefined);
    client.connect();
    return { mailboxId: hex(client.mailboxId), address: client.address, resumed, nativeWebSocket: typeof WebSocket === 'function' };
  },
  async synced(ms) {
    const s = syncedOnce;
    if (!s) throw new Error('client not started');
    return Promise.race([s.then(() => true), sleep(ms).then(() => false)]);
  },
  async messages(count, ms) {
    const end = Date.now() + ms;
    while (inbox.length < count && Date.now() < end) await sleep(20);
    await need().idle();
    return inbox.splice(0, inbox.length);
  },
  undecryptable: () => bad.slice(),
  async sendText(to, text) {
    return (await need().sendText(unhex(to), text)).id;
  },
  async sendBinary(to, base64, mimeType) {
    return (await need().sendBinary(unhex(to), fromBase64(base64), mimeType)).id;
  },
  async sendFile(to, base64, mimeType, name) {
    return (await need().sendFile(unhex(to), fromBase64(base64), { mimeType, name })).id;
  },
  async downloadFile(messageId) {
    const file = files.get(messageId);
    if (!file) throw new Error(`no file received with message ${messageId}`);
    const reader = (await need().downloadFile(file)).getReader();
    const parts: Uint8Array[] = [];
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      parts.push(r.value);
    }
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return { base64: toBase64(all), chunks: parts.length };
  },
  connectionState: () => need().connectionState,
  async close() {
    await client?.close();
    client = undefined;
  },
  async crossOriginProbe(nodeUrl) {
    const outcome = async (p: Promise<Response>): Promise<string> => {
      try {
        const r = await p;
        return `HTTP ${r.status}`;
      } catch (e) {
        return `blocked (${(e as Error).name}: ${(e as Error).message})`;
      }
    };
    return {
      // A "simple" request (no preflight): readable only if the node sends Access-Control-Allow-Origin.
      simpleGet: await outcome(fetch(new URL('/v1/auth/challenge', nodeUrl))),
      // What the SDK actually sends for authenticated calls: a custom header and a protobuf body, so a preflight.
      authedPreflight: await outcome(
        fetch(new URL('/v1/keys', nodeUrl), { method: 'PUT', headers: { 'content-type': 'application/vnd.meshwhisper.v1+proto', 'mw-auth': 'probe' }, body: new Uint8Array(1) }),
      ),
    };
  },
};

(window as unknown as { __mwClient: PageApi }).__mwClient = api;
document.title = 'ready';

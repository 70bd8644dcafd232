/**
 * Where a device-link channel's requests go (docs/spec/linking.md §Provisioning channel,
 * docs/scale-out.md §Device linking).
 *
 * One process: straight to its LinkChannels. A cluster: a channel lives in the instance that opened
 * it (its state is minutes long and up to 2 × 8 MiB: not worth PostgreSQL's WAL); that instance
 * answers NATS requests on PREFIX.rpc.link-<channel id hex> while it holds the channel, and any other
 * instance that receives a request for a channel it does not hold forwards it there. So the new
 * device and the scanner may reach any instances behind the load balancer.
 *
 * Failure behaviour: the instance holding a channel dies → the channel is gone (NOT_FOUND), as on a
 * node restart: the user shows a new QR code. NATS down → a request that lands on another instance
 * answers MW_UNAVAILABLE (retriable); requests landing on the holder keep working.
 *
 * The forwarded request and answer are JSON (bytes as base64url): they stay inside the cluster and
 * carry only what the HTTP request carried. A forwarded read returns at most
 * LINK_FORWARD_MAX_BYTES of messages (NATS's 1 MiB default payload limit); the reader goes on from `last`.
 */
import type { CryptoContext } from '@meshwhisper/crypto';
import { ErrorCode, ProtocolError } from '@meshwhisper/protocol';
import type { LinkChannelStats } from './channels.js';
import { LINK_CHANNEL_ID_BYTES, LinkChannels } from './channels.js';

/** Bytes of relayed messages one forwarded read carries at most (base64 and JSON fit in 1 MiB). */
export const LINK_FORWARD_MAX_BYTES = 512 * 1024;
/** A forwarded request waits this much longer than the read's own wait for its answer. */
export const LINK_FORWARD_SLACK_MS = 5_000;

export interface LinkCreated {
  readonly channelId: Uint8Array;
  readonly ownerToken: Uint8Array;
  readonly expiresAt: number;
}
export interface LinkClaimed {
  readonly scannerToken: Uint8Array;
  readonly expiresAt: number;
}
export interface LinkRead {
  readonly messages: Uint8Array[];
  readonly last: number;
  readonly closed: boolean;
}

/** The operations of the /v1/link routes, wherever the channel lives. */
export interface LinkRelay {
  create(): Promise<LinkCreated>;
  claim(id: Uint8Array, hello: Uint8Array): Promise<LinkClaimed>;
  post(id: Uint8Array, token: Uint8Array | undefined, data: Uint8Array): Promise<void>;
  read(id: Uint8Array, token: Uint8Array | undefined, after: number, waitMs: number, signal?: AbortSignal): Promise<LinkRead>;
  close(id: Uint8Array, token: Uint8Array | undefined): Promise<void>;
  readonly stats: LinkChannelStats;
  dispose(): void;
}

/**
 * Request/answer between the processes of a node: the NATS bus of a cluster, or the primary-brokered
 * IPC bus of a multi-process SQLite node (workers/ipc-bus.ts).
 */
export interface RpcBus {
  serve(topic: string, handler: (data: Uint8Array) => Promise<Uint8Array>): Promise<() => void>;
  call(topic: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array | 'none' | 'unreachable'>;
}

/** One process: every channel is here. */
export class LocalLinkRelay implements LinkRelay {
  readonly channels: LinkChannels;
  constructor(ctx: CryptoContext) {
    this.channels = new LinkChannels(ctx);
  }
  get stats(): LinkChannelStats {
    return this.channels.stats;
  }
  async create(): Promise<LinkCreated> {
    return this.channels.create();
  }
  async claim(id: Uint8Array, hello: Uint8Array): Promise<LinkClaimed> {
    return this.channels.claim(id, hello);
  }
  async post(id: Uint8Array, token: Uint8Array | undefined, data: Uint8Array): Promise<void> {
    this.channels.post(id, token, data);
  }
  read(id: Uint8Array, token: Uint8Array | undefined, after: number, waitMs: number, signal?: AbortSignal): Promise<LinkRead> {
    return this.channels.read(id, token, after, waitMs, signal);
  }
  async close(id: Uint8Array, token: Uint8Array | undefined): Promise<void> {
    this.channels.close(id, token);
  }
  dispose(): void {
    this.channels.dispose();
  }
}

type Op =
  | { op: 'claim'; hello: string }
  | { op: 'post'; token?: string; data: string }
  | { op: 'read'; token?: string; after: number; wait: number }
  | { op: 'close'; token?: string };

type Answer = { ok: unknown } | { err: { code: string; message: string } };

const enc = new TextEncoder();
const dec = new TextDecoder();
const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));
const topicOf = (idHex: string): string => `link-${idHex}`;
const toBase64Url = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('base64url');
const b64 = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : toBase64Url(b));
const BASE64URL_RE = /^[A-Za-z0-9_-]*$/;

function hexOf(id: Uint8Array): string {
  if (id.length !== LINK_CHANNEL_ID_BYTES) throw new ProtocolError(ErrorCode.BAD_REQUEST, `a link channel id is ${LINK_CHANNEL_ID_BYTES} bytes`);
  return Buffer.from(id).toString('hex');
}

function bytes(v: unknown): Uint8Array {
  if (typeof v !== 'string' || !BASE64URL_RE.test(v)) throw new ProtocolError(ErrorCode.BAD_REQUEST, 'malformed forwarded link request');
  return new Uint8Array(Buffer.from(v, 'base64url'));
}

/** A cluster instance or a worker process: channels it opened are here; others are asked for over the bus. */
export class ClusterLinkRelay implements LinkRelay {
  readonly channels: LinkChannels;
  readonly #unserve = new Map<string, () => void>();
  #disposed = false;

  constructor(
    ctx: CryptoContext,
    private readonly bus: RpcBus,
  ) {
    this.channels = new LinkChannels(ctx, {}, (idHex) => {
      const stop = this.#unserve.get(idHex);
      this.#unserve.delete(idHex);
      if (!stop) return;
      if (this.#disposed) return stop();
      // Requests already on their way (a long poll racing the close) still get their NOT_FOUND:
      // a subscription dropped at once would leave them to time out.
      setTimeout(stop, LINK_FORWARD_SLACK_MS).unref();
    });
  }

  get stats(): LinkChannelStats {
    return this.channels.stats;
  }

  async create(): Promise<LinkCreated> {
    const c = this.channels.create();
    const idHex = hexOf(c.channelId);
    // Answer only once NATS routes the channel's topic here: the new device's next request may land elsewhere.
    const stop = await this.bus.serve(topicOf(idHex), (data) => this.#answer(c.channelId, data));
    if (this.channels.has(c.channelId)) this.#unserve.set(idHex, stop);
    else stop(); // disposed meanwhile
    return c;
  }

  /** Runs a forwarded request on a channel held here. */
  async #answer(id: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
    let answer: Answer;
    try {
      const req = JSON.parse(dec.decode(data)) as Op;
      let ok: unknown;
      switch (req.op) {
        case 'claim': {
          const r = this.channels.claim(id, bytes(req.hello));
          ok = { scannerToken: toBase64Url(r.scannerToken), expiresAt: r.expiresAt };
          break;
        }
        case 'post':
          this.channels.post(id, req.token === undefined ? undefined : bytes(req.token), bytes(req.data));
          ok = true;
          break;
        case 'read': {
          if (!Number.isSafeInteger(req.after) || !Number.isSafeInteger(req.wait)) throw new ProtocolError(ErrorCode.BAD_REQUEST, 'malformed forwarded link read');
          const r = await this.channels.read(id, req.token === undefined ? undefined : bytes(req.token), req.after, req.wait, undefined, LINK_FORWARD_MAX_BYTES);
          ok = { messages: r.messages.map((m) => toBase64Url(m)), last: r.last, closed: r.closed };
          break;
        }
        case 'close':
          this.channels.close(id, req.token === undefined ? undefined : bytes(req.token));
          ok = true;
          break;
        default:
          throw new ProtocolError(ErrorCode.BAD_REQUEST, 'unknown forwarded link operation');
      }
      answer = { ok };
    } catch (e) {
      answer = e instanceof ProtocolError ? { err: { code: e.code, message: e.message } } : { err: { code: ErrorCode.BAD_REQUEST, message: 'malformed forwarded link request' } };
    }
    return enc.encode(JSON.stringify(answer));
  }

  /** Sends `req` to the instance holding channel `id`; its answer's `ok` part, or its error rethrown here. */
  async #forward(id: Uint8Array, req: Op, timeoutMs: number): Promise<unknown> {
    const r = await this.bus.call(topicOf(hexOf(id)), enc.encode(JSON.stringify(req)), timeoutMs);
    if (r === 'none') throw new ProtocolError(ErrorCode.NOT_FOUND, 'no such link channel (never opened, expired, or closed)');
    if (r === 'unreachable') throw new ProtocolError(ErrorCode.UNAVAILABLE, 'the node instance holding this link channel cannot be reached; retry', 1_000);
    let answer: Answer;
    try {
      answer = JSON.parse(dec.decode(r)) as Answer;
    } catch {
      throw new ProtocolError(ErrorCode.INTERNAL, 'malformed answer from another node instance');
    }
    if ('err' in answer) {
      const code = KNOWN_CODES.has(answer.err.code) ? (answer.err.code as ErrorCode) : ErrorCode.INTERNAL;
      throw new ProtocolError(code, String(answer.err.message));
    }
    return answer.ok;
  }

  async claim(id: Uint8Array, hello: Uint8Array): Promise<LinkClaimed> {
    if (this.channels.has(id)) return this.channels.claim(id, hello);
    const ok = (await this.#forward(id, { op: 'claim', hello: toBase64Url(hello) }, LINK_FORWARD_SLACK_MS)) as { scannerToken: string; expiresAt: number };
    return { scannerToken: bytes(ok.scannerToken), expiresAt: Number(ok.expiresAt) };
  }

  async post(id: Uint8Array, token: Uint8Array | undefined, data: Uint8Array): Promise<void> {
    if (this.channels.has(id)) return this.channels.post(id, token, data);
    await this.#forward(id, { op: 'post', token: b64(token), data: toBase64Url(data) } as Op, LINK_FORWARD_SLACK_MS);
  }

  async read(id: Uint8Array, token: Uint8Array | undefined, after: number, waitMs: number, signal?: AbortSignal): Promise<LinkRead> {
    if (this.channels.has(id)) return this.channels.read(id, token, after, waitMs, signal);
    const ok = (await this.#forward(id, { op: 'read', token: b64(token), after, wait: waitMs } as Op, waitMs + LINK_FORWARD_SLACK_MS)) as { messages: unknown[]; last: number; closed: boolean };
    if (!Array.isArray(ok.messages)) throw new ProtocolError(ErrorCode.INTERNAL, 'malformed answer from another node instance');
    return { messages: ok.messages.map(bytes), last: Number(ok.last), closed: ok.closed === true };
  }

  async close(id: Uint8Array, token: Uint8Array | undefined): Promise<void> {
    if (this.channels.has(id)) return this.channels.close(id, token);
    await this.#forward(id, { op: 'close', token: b64(token) } as Op, LINK_FORWARD_SLACK_MS);
  }

  dispose(): void {
    this.#disposed = true;
    this.channels.dispose();
  }
}

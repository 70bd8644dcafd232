/**
 * The device WebSocket (docs/spec/node-protocol.md §3): hello, authentication, then delivery.
 * Reconnects with exponential backoff and full jitter while the client is open; every delivered
 * envelope is handed to `onDeliver`, and acknowledged only after that resolves (at-least-once).
 */
import type { CryptoContext, LocalIdentity } from '@meshwhisper/crypto';
import { encodeDeviceCertificate } from '@meshwhisper/crypto';
import type { Envelope, Frame, FrameInit } from '@meshwhisper/protocol';
import { DEVICE_SOCKET_METHOD, DEVICE_SOCKET_PATH, ErrorCode, PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS, decodeFrame, encodeFrame, requestDigest, signDeviceAuth } from '@meshwhisper/protocol';
import { SdkError, SdkErrorCode } from './errors.js';
import type { StopReason } from './transport.js';

/** The subset of the WHATWG WebSocket the connection uses (browsers, Node's `ws`). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ConnectionEvents {
  /** Delivery tokens to register with the node after each login (the node stores only their hashes). */
  deliveryTokens(): Uint8Array[];
  onDeliver(envelopes: Envelope[]): Promise<void>;
  onGap(expired: number, evicted: number): void;
  onState(state: ConnectionState): void;
  onQueueEmpty(): void;
  /**
   * The connection stopped and will not reconnect by itself: replaced by a newer login of this
   * device (another tab or process), authentication refused, the device deleted, or a node that
   * speaks only a newer protocol (`error` set). start() tries again.
   */
  onStopped(reason: StopReason, message: string, error?: SdkError): void;
  /** Handling a frame failed (e.g. storage refused the batch): it is not acknowledged, so the node redelivers it. */
  onHandlerError(error: unknown): void;
}

export type ConnectionState = 'connecting' | 'online' | 'offline' | 'closed';

/** Backoff: 0.5 s doubling to 30 s, full jitter (AWS architecture blog's "full jitter"). */
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;

/** Close codes after which reconnecting cannot help (docs/spec/node-protocol.md §3). */
const STOP_CODES: Partial<Record<number, { reason: StopReason; message: string }>> = {
  4001: { reason: 'replaced', message: 'another connection of this device (another tab, window or process using the same storage) took over' },
  4003: { reason: 'auth-failed', message: 'the node refused this device\'s authentication' },
  4004: { reason: 'device-deleted', message: 'this device was deleted from the node' },
};

export class DeviceConnection {
  #ws: WebSocketLike | undefined;
  #closed = false;
  /** A fatal error stopped reconnecting (start() tries again). */
  #stopped = false;
  #attempt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #queue: Promise<void> = Promise.resolve();
  state: ConnectionState = 'offline';

  private readonly ctx: CryptoContext;
  private readonly url: string;
  private readonly identity: LocalIdentity;
  private readonly WS: WebSocketConstructor;

  constructor(
    options: { readonly ctx: CryptoContext; readonly url: string; readonly identity: LocalIdentity; readonly WebSocket: WebSocketConstructor },
    private readonly events: ConnectionEvents,
  ) {
    this.ctx = options.ctx;
    this.url = options.url;
    this.identity = options.identity;
    this.WS = options.WebSocket;
  }

  start(): void {
    this.#stopped = false;
    // A reconnect waiting out its backoff happens now instead (e.g. the app saw the network return).
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!this.#closed && !this.#ws) this.#open();
  }

  #setState(s: ConnectionState): void {
    if (this.state !== s) {
      this.state = s;
      this.events.onState(s);
    }
  }

  #open(): void {
    this.#setState('connecting');
    const ws = new this.WS(new URL(DEVICE_SOCKET_PATH, this.url.replace(/^http/, 'ws')).toString());
    ws.binaryType = 'arraybuffer';
    this.#ws = ws;
    ws.onopen = () => this.#send({ body: { case: 'clientHello', value: { versions: [...SUPPORTED_PROTOCOL_VERSIONS] } } });
    ws.onmessage = (ev) => {
      // Closing: a frame that still comes in is neither handled (the storage closes next) nor
      // acknowledged — the node delivers it again at the next start.
      if (this.#closed) return;
      const bytes = ev.data instanceof ArrayBuffer ? new Uint8Array(ev.data) : ev.data instanceof Uint8Array ? ev.data : undefined;
      if (!bytes) return;
      const d = decodeFrame(bytes);
      if (!d.ok) {
        // A frame in a protocol version this SDK does not speak: the node is newer. Say so, clearly.
        if (d.error.code === ErrorCode.UNSUPPORTED_VERSION) this.#fatal(`the node sent a frame in a protocol version this SDK does not speak (${d.error.message}): update the SDK`);
        return; // anything else undecodable is ignored rather than crashing
      }
      // Frames are handled strictly in order: a delivery is acknowledged only after it was processed.
      this.#queue = this.#queue.then(() => this.#handle(d.value)).catch((e: unknown) => this.events.onHandlerError(e));
    };
    ws.onerror = () => undefined;
    ws.onclose = (ev) => {
      this.#ws = undefined;
      if (this.#closed) return this.#setState('closed');
      this.#setState('offline');
      if (this.#stopped) return;
      // 4001: replaced by a newer login of this device; 4003/4004: auth failed / device deleted.
      // Reconnecting would only fight the other login (or fail again): stop, and say why.
      const stop = STOP_CODES[ev.code];
      if (stop) {
        this.#stopped = true;
        this.events.onStopped(stop.reason, stop.message);
        return;
      }
      const delay = Math.random() * Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.#attempt++);
      this.#timer = setTimeout(() => this.#open(), delay);
    };
  }

  #fatal(message: string): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#ws?.close(1000, 'unsupported protocol version');
    this.events.onStopped('unsupported-version', message, new SdkError(SdkErrorCode.UNSUPPORTED_VERSION, message));
  }

  #send(init: FrameInit): void {
    if (this.#ws && this.#ws.readyState === 1) this.#ws.send(encodeFrame({ version: PROTOCOL_VERSION, ...init }));
  }

  async #handle(f: Frame): Promise<void> {
    switch (f.body.case) {
      case 'serverHello': {
        if (!SUPPORTED_PROTOCOL_VERSIONS.includes(f.body.value.version)) {
          this.#fatal(`the node chose protocol version ${f.body.value.version}; this SDK speaks ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')}: update the SDK`);
          return;
        }
        const digest = requestDigest(this.ctx, DEVICE_SOCKET_METHOD, DEVICE_SOCKET_PATH);
        const auth = signDeviceAuth(this.ctx, this.identity.device, encodeDeviceCertificate(this.identity.certificate), f.body.value.challenge, digest);
        this.#send({ body: { case: 'authenticate', value: auth } });
        return;
      }
      case 'authenticated': {
        this.#attempt = 0;
        const tokens = this.events.deliveryTokens();
        if (tokens.length) this.#send({ requestId: 0, body: { case: 'setDeliveryTokens', value: { tokens } } });
        this.#setState('online');
        return;
      }
      case 'deliver': {
        const envelopes = f.body.value.envelopes;
        await this.events.onDeliver(envelopes);
        const ids = envelopes.filter((e) => e.id.length > 0).map((e) => e.id);
        if (ids.length) this.#send({ body: { case: 'ack', value: { ids } } });
        return;
      }
      case 'gapNotice':
        this.events.onGap(f.body.value.expired, f.body.value.evicted);
        this.#send({ requestId: f.requestId, body: { case: 'ok', value: {} } });
        return;
      case 'error':
        if (f.body.value.code === ErrorCode.UNSUPPORTED_VERSION) {
          this.#fatal(`the node speaks no protocol version this SDK speaks (${SUPPORTED_PROTOCOL_VERSIONS.join(', ')}): ${f.body.value.message}`);
        }
        return;
      case 'queueEmpty':
        this.events.onQueueEmpty();
        return;
      default:
        return;
    }
  }

  /** Waits until frames received so far are processed (tests, orderly shutdown). */
  idle(): Promise<void> {
    return this.#queue;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#ws?.close(1000, 'client closed');
    await this.#queue;
    this.#setState('closed');
  }
}

/**
 * Shared plumbing of both WebSocket endpoints: binary-only frames, the safe decoder, per-frame
 * rate limiting, error frames, and version negotiation.
 */
import type { Frame, FrameInit } from '@meshwhisper/protocol';
import { ErrorCode, MAX_FRAME_BYTES, PROTOCOL_VERSION, ProtocolError, decodeFrame, encodeFrame, negotiateVersion } from '@meshwhisper/protocol';
import type { RawData, WebSocket } from 'ws';
import type { RateLimiter } from '../rate-limit.js';

/** WebSocket close codes we use (4000–4999 are application codes). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  UNSUPPORTED_DATA: 1003,
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  REPLACED: 4001,
  PROTOCOL: 4002,
  AUTH_FAILED: 4003,
  /** The handshake (hello; on the device socket also authenticate) did not finish in time. */
  HANDSHAKE_TIMEOUT: 4005,
} as const;

/** Frames a client may send before it is told to slow down; after this many RATE_LIMITED replies in a row we close. */
export const MAX_RATE_LIMITED_FRAMES = 50;

export interface FrameLog {
  warn(obj: object, msg: string): void;
}

export abstract class FrameConnection {
  protected version: number | undefined;
  #limitedInARow = 0;
  #closed = false;
  #handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  #corked = false;

  constructor(
    protected readonly ws: WebSocket,
    protected readonly limiter: RateLimiter,
    protected readonly clientKey: string,
    protected readonly log: FrameLog,
  ) {
    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary));
    ws.on('close', () => {
      this.#closed = true;
      clearTimeout(this.#handshakeTimer);
      this.onClosed();
    });
    ws.on('error', () => {
      // 'close' follows; errors (bad frames at the ws layer, resets) carry nothing to report to the peer.
    });
  }

  get closed(): boolean {
    return this.#closed || this.ws.readyState !== this.ws.OPEN;
  }

  /**
   * Closes the connection (4005) unless the subclass calls handshakeDone() within `ms`: an idle
   * socket that never says hello (or never authenticates) would otherwise hold memory and a slot
   * of the per-address cap forever (WS_HANDSHAKE_TIMEOUT_SECONDS).
   */
  expectHandshakeWithin(ms: number): void {
    clearTimeout(this.#handshakeTimer);
    this.#handshakeTimer = setTimeout(() => this.close(CloseCode.HANDSHAKE_TIMEOUT, 'handshake timeout'), ms);
    this.#handshakeTimer.unref();
  }

  protected handshakeDone(): void {
    clearTimeout(this.#handshakeTimer);
    this.#handshakeTimer = undefined;
  }

  protected abstract onFrame(frame: Frame): void;
  protected abstract onClosed(): void;

  send(init: FrameInit, cb?: (err?: Error) => void): void {
    if (this.closed) return;
    this.#write(encodeFrame({ version: this.version ?? PROTOCOL_VERSION, ...init }), cb);
  }

  /** Writes an already encoded frame (the hot-path encoders in @meshwhisper/protocol's fast-frames.ts). */
  sendBytes(bytes: Uint8Array): void {
    if (this.closed) return;
    this.#write(bytes);
  }

  /**
   * Frames written in one run of callbacks (e.g. every send result of a group commit) leave in one
   * socket write: the socket is corked at the first frame and uncorked on the next tick, which
   * runs after the current microtasks — no frame waits for I/O or a timer.
   */
  #write(bytes: Uint8Array, cb?: (err?: Error) => void): void {
    const socket = (this.ws as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
    if (socket && !this.#corked) {
      this.#corked = true;
      socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        socket.uncork();
      });
    }
    this.ws.send(bytes, { binary: true }, cb);
  }

  /** The version frames on this connection are written in. */
  protected get frameVersion(): number {
    return this.version ?? PROTOCOL_VERSION;
  }

  sendError(requestId: number, err: ProtocolError): void {
    this.send({ requestId, body: { case: 'error', value: { code: err.code, message: err.message, retryAfterMs: err.retryAfterMs } } });
  }

  /** Sends the error and closes the connection. */
  fail(requestId: number, err: ProtocolError, closeCode: number): void {
    this.sendError(requestId, err);
    this.close(closeCode, err.code);
  }

  close(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#handshakeTimer);
    try {
      this.ws.close(code, reason.slice(0, 120));
    } catch {
      this.ws.terminate();
    }
    this.onClosed();
  }

  /** Handles ClientHello (the only frame allowed first); true when the version is settled. */
  protected hello(frame: Frame): boolean {
    if (frame.body.case !== 'clientHello') {
      this.fail(frame.requestId, new ProtocolError(ErrorCode.UNEXPECTED_FRAME, 'the first frame must be clientHello'), CloseCode.PROTOCOL);
      return false;
    }
    const v = negotiateVersion(frame.body.value.versions);
    if (!v.ok) {
      this.fail(frame.requestId, v.error, CloseCode.PROTOCOL);
      return false;
    }
    this.version = v.value;
    return true;
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    if (this.closed) return;
    if (!isBinary) {
      this.fail(0, new ProtocolError(ErrorCode.MALFORMED, 'frames must be binary protobuf'), CloseCode.UNSUPPORTED_DATA);
      return;
    }
    const bytes = toUint8(data);
    const decision = this.limiter.take('ws-frame', this.clientKey);
    if (!decision.allowed) {
      if (++this.#limitedInARow > MAX_RATE_LIMITED_FRAMES) {
        this.fail(0, new ProtocolError(ErrorCode.RATE_LIMITED, 'too many frames', decision.retryAfterMs), CloseCode.POLICY);
      } else {
        this.sendError(0, new ProtocolError(ErrorCode.RATE_LIMITED, 'too many frames; slow down', decision.retryAfterMs));
      }
      return;
    }
    this.#limitedInARow = 0;
    const d = decodeFrame(bytes, this.version === undefined ? {} : { version: this.version });
    if (!d.ok) {
      // Oversize and undecodable frames end the connection: the stream can no longer be trusted.
      if (d.error.code === ErrorCode.TOO_LARGE) this.fail(0, d.error, CloseCode.TOO_BIG);
      else if (d.error.code === ErrorCode.MALFORMED) this.fail(0, d.error, CloseCode.PROTOCOL);
      else this.sendError(0, d.error);
      return;
    }
    this.dispatch(d.value);
  }

  /** Runs the frame handler; a ProtocolError becomes an error frame, anything else closes the connection. */
  protected dispatch(frame: Frame): void {
    if (this.closed) return;
    try {
      this.onFrame(frame);
    } catch (e) {
      if (e instanceof ProtocolError) this.sendError(frame.requestId, e);
      else {
        this.log.warn({ err: e instanceof Error ? e.name : 'unknown' }, 'frame handler failed');
        this.fail(frame.requestId, new ProtocolError(ErrorCode.INTERNAL, 'internal error'), CloseCode.INTERNAL);
      }
    }
  }
}

function toUint8(data: RawData): Uint8Array {
  if (Array.isArray(data)) return new Uint8Array(Buffer.concat(data));
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** ws's own limit: a little above MAX_FRAME_BYTES so that slightly oversize frames get a typed TOO_LARGE error frame. */
export const WS_MAX_PAYLOAD = MAX_FRAME_BYTES + 64 * 1024;

/**
 * Shared plumbing of both WebSocket endpoints: binary-only frames, the safe decoder, per-frame
 * rate limiting, error frames, and version negotiation.
 */
import type { Frame, FrameBuffer, FrameInit } from '@meshwhisper/protocol';
import { ErrorCode, MAX_FRAME_BYTES, PROTOCOL_VERSION, ProtocolError, decodeFrameFast, encodeFrame, negotiateVersion } from '@meshwhisper/protocol';
import type { RawData, WebSocket } from 'ws';
import type { RateLimiter } from '../rate-limit.js';
import { readBinaryFrames } from './ws-frames.js';

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

/** Room for the longest WebSocket frame header a server writes (2 + 8 bytes of length, no mask). */
const WS_HEADROOM = 10;

/**
 * For the hot-path encoders (encodeDeliverFrame, encodeSendResultFrame): the frame is written after
 * WS_HEADROOM bytes into a pooled, unzeroed Buffer, and the connection puts the WebSocket header in
 * front of it — one buffer per frame, no header allocation, no typed-array backing store per frame.
 */
export const WS_FRAME_BUFFER: FrameBuffer = { headroom: WS_HEADROOM, alloc: (n) => Buffer.allocUnsafe(n) };

/**
 * Writes the header of an unmasked, final, binary WebSocket frame (RFC 6455 §5.2) of `len` payload
 * bytes so that it ends at WS_HEADROOM; returns where the frame starts.
 */
function putWsHeader(buf: Uint8Array, len: number): number {
  if (len < 126) {
    buf[8] = 0x82;
    buf[9] = len;
    return 8;
  }
  if (len < 0x10000) {
    buf[6] = 0x82;
    buf[7] = 126;
    buf[8] = len >>> 8;
    buf[9] = len & 0xff;
    return 6;
  }
  buf[0] = 0x82;
  buf[1] = 127;
  buf[2] = buf[3] = buf[4] = buf[5] = 0; // frames stay far below 2^32 bytes (MAX_FRAME_BYTES)
  buf[6] = len >>> 24;
  buf[7] = (len >>> 16) & 0xff;
  buf[8] = (len >>> 8) & 0xff;
  buf[9] = len & 0xff;
  return 0;
}

/** Connections with frames waiting for the end of this turn (flushed by one nextTick for all). */
let dirty: FrameConnection[] = [];
function flushDirty(): void {
  const list = dirty;
  dirty = [];
  for (const c of list) c.flushFrames();
}

export abstract class FrameConnection {
  protected version: number | undefined;
  #limitedInARow = 0;
  #closed = false;
  #handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  /** WebSocket frames (header included) written in this turn, not yet handed to the socket. */
  #out: Uint8Array[] = [];

  constructor(
    protected readonly ws: WebSocket,
    protected readonly limiter: RateLimiter,
    protected readonly clientKey: string,
    protected readonly log: FrameLog,
  ) {
    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary));
    // Whole binary frames are read off the socket's bytes here (ws-frames.ts); ws emits the rest.
    readBinaryFrames(ws, (bytes) => this.#onBinary(bytes));
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
    const bytes = encodeFrame({ version: this.version ?? PROTOCOL_VERSION, ...init });
    if (cb) {
      // With a completion callback: through ws, after what is already queued (order is kept).
      this.flushFrames();
      this.ws.send(bytes, { binary: true }, cb);
      return;
    }
    const buf = Buffer.allocUnsafe(WS_HEADROOM + bytes.length);
    buf.set(bytes, WS_HEADROOM);
    this.#queue(buf);
  }

  /**
   * Writes a frame encoded into WS_FRAME_BUFFER (WS_HEADROOM free bytes, then the frame) by the
   * hot-path encoders in @meshwhisper/protocol's fast-frames.ts.
   */
  sendFramed(buf: Uint8Array): void {
    if (this.closed) return;
    this.#queue(buf);
  }

  /**
   * Frames written in one run of callbacks (e.g. every send result and delivery of a group commit)
   * leave in ONE socket write per connection, straight to the socket (the WebSocket header is
   * written here: ws's sender would allocate a header and write two buffers per frame), on the
   * next tick — after the current microtasks, so no frame waits for I/O or a timer. The server
   * runs without permessage-deflate, so ws never holds frames of its own that these could overtake;
   * its control frames (pong, close) are whole frames between ours. close() flushes first.
   */
  #queue(buf: Uint8Array): void {
    const start = putWsHeader(buf, buf.length - WS_HEADROOM);
    const frame = start === 0 ? buf : buf.subarray(start);
    if (this.#out.length === 0) {
      dirty.push(this);
      if (dirty.length === 1) process.nextTick(flushDirty);
    }
    this.#out.push(frame);
  }

  /** Hands this turn's frames to the socket (one write). Called at the end of the turn, and before a close. */
  flushFrames(): void {
    const out = this.#out;
    if (out.length === 0) return;
    this.#out = [];
    const socket = (this.ws as unknown as { _socket?: { write(b: Uint8Array): boolean } })._socket;
    if (this.ws.readyState !== this.ws.OPEN || !socket) return;
    socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
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
    this.flushFrames(); // an error frame written just before must go out ahead of the close frame
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
    this.#onBinary(toUint8(data));
  }

  #onBinary(bytes: Uint8Array): void {
    if (this.closed) return;
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
    // send and ack frames (one per message) by hand; anything else, and every error, by decodeFrame.
    const d = decodeFrameFast(bytes, this.version === undefined ? {} : { version: this.version });
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

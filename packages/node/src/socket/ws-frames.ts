/**
 * Reading a client's WebSocket frames on the hot path (RFC 6455 §5.2, §5.3) without ws's parser.
 *
 * Each message costs the node two frames from clients (a send, an ack). Through ws, every frame went
 * through its Receiver — a Writable stream per connection (write, writeOrBuffer, a parsing loop with
 * a state per header field), a byte-by-byte unmask (2 µs per KiB: Node 20 has no native one and the
 * optional `bufferutil` addon is not installed), and two 'message' emits — about an eighth of the
 * event loop's busy time in bench/node's profile.
 *
 * The splitter sits in front of ws's Receiver, on the bytes the socket delivers, and takes only the
 * frame every client sends: a complete, final, masked, binary frame without RSV bits and within ws's
 * own maxPayload, outside a fragmented message. It unmasks that frame four bytes at a time and hands
 * the payload to `onBinary` — exactly what ws would have emitted as a binary message, at the same
 * point of the stream. Everything else stays ws's:
 * - complete ping and pong frames are passed to ws whole (its Receiver handles a complete control
 *   frame synchronously, so it is back at a frame boundary after it, and so is the splitter);
 * - anything else (text, close, continuation and reserved opcodes, a first fragment, an unmasked
 *   frame, RSV bits, an oversize or 64-bit length, a control frame over 125 bytes) switches the
 *   connection to pass-through for good: that frame and every byte after it go to ws's Receiver,
 *   which validates, fails (with its close codes) or closes as it always did.
 * ws's Receiver therefore only ever sees whole frames in order until pass-through, and the complete
 * stream from pass-through on. Its `write` is the one place the socket's data enters it (ws calls
 * it from its 'data' listener and, for bytes still buffered, when the socket closes), so replacing
 * that method on the one Receiver leaves ws's own life cycle (pause on backpressure, listener
 * removal after a close frame or an error, end) untouched.
 */
import type { WebSocket } from 'ws';

/** The part of ws's Receiver (a Writable) this module uses. */
interface Receiver {
  write(chunk: Buffer, ...rest: unknown[]): boolean;
  _maxPayload?: unknown;
}

/**
 * Routes `ws`'s complete binary frames to `onBinary` (payload unmasked) instead of its 'message'
 * event; returns false (nothing changed) if this ws build does not have the Receiver this relies on.
 * Call it right after the upgrade, before the first data event.
 */
export function readBinaryFrames(ws: WebSocket, onBinary: (payload: Uint8Array) => void): boolean {
  const receiver = (ws as unknown as { _receiver?: Receiver })._receiver;
  if (!receiver || typeof receiver.write !== 'function' || typeof receiver._maxPayload !== 'number') return false;
  const write = receiver.write.bind(receiver);
  const splitter = new FrameSplitter(receiver._maxPayload, onBinary, (bytes) => write(bytes));
  receiver.write = (chunk: Buffer, encoding?: unknown, cb?: unknown): boolean =>
    encoding === undefined && cb === undefined ? splitter.push(chunk) : splitter.passOn(chunk, [encoding, cb], write);
  return true;
}

/** The splitter itself (exported for tests): bytes in, binary payloads and ws-bound bytes out. */
export class FrameSplitter {
  #through = false;
  /** Bytes of an incomplete frame, waiting for the rest. */
  #held: Buffer[] = [];
  #heldBytes = 0;
  /** Length of the incomplete frame once its header has arrived (0: not known yet). */
  #need = 0;

  constructor(
    /** ws's maxPayload (0: no limit): a longer frame is ws's to refuse. */
    private readonly maxPayload: number,
    private readonly onBinary: (payload: Uint8Array) => void,
    private readonly forward: (bytes: Buffer) => boolean,
  ) {}

  /** True once everything goes to ws. */
  get passThrough(): boolean {
    return this.#through;
  }

  /** A write with an encoding or callback (ws never makes one): from here on, ws's alone. */
  passOn(chunk: Buffer, rest: unknown[], write: (chunk: Buffer, ...rest: unknown[]) => boolean): boolean {
    if (!this.#through) {
      this.#through = true;
      const held = this.#takeHeld();
      if (held) this.forward(held);
    }
    return write(chunk, ...rest);
  }

  push(chunk: Buffer): boolean {
    if (this.#through) return this.forward(chunk);
    let buf = chunk;
    if (this.#heldBytes > 0) {
      this.#held.push(chunk);
      this.#heldBytes += chunk.length;
      // The rest of a frame whose length is known: wait for all of it (one copy, not one per chunk).
      if (this.#need > 0 && this.#heldBytes < this.#need) return true;
      buf = this.#takeHeld()!;
    }
    const end = buf.length;
    let off = 0;
    /** Bytes the frame at `off` needs when the loop stops for lack of them (0: its header is not complete). */
    let need = 0;
    while (off < end) {
      const avail = end - off;
      if (avail < 2) break;
      const b0 = buf[off]!;
      const b1 = buf[off + 1]!;
      const opcode = b0 & 0x0f;
      // FIN set, RSV clear, masked, and an opcode taken here (binary, ping, pong); else ws's from here.
      if ((b0 & 0xf0) !== 0x80 || (b1 & 0x80) === 0 || (opcode !== 2 && opcode !== 9 && opcode !== 10)) return this.#passFrom(buf, off);
      let len = b1 & 0x7f;
      let hdr = 2;
      if (len === 126) {
        if (avail < 4) break;
        len = (buf[off + 2]! << 8) | buf[off + 3]!;
        hdr = 4;
      } else if (len === 127) {
        if (avail < 10) break;
        // Lengths of 2^32 and more (and ws's own 2^53 check) are ws's to refuse.
        if ((buf[off + 2]! | buf[off + 3]! | buf[off + 4]! | buf[off + 5]!) !== 0) return this.#passFrom(buf, off);
        len = buf.readUInt32BE(off + 6);
        hdr = 10;
      }
      if (opcode === 2 ? this.maxPayload > 0 && len > this.maxPayload : len > 125) return this.#passFrom(buf, off);
      const total = hdr + 4 + len;
      if (avail < total) {
        need = total;
        break;
      }
      if (opcode === 2) {
        const at = off + hdr + 4;
        unmask(buf, at, len, off + hdr);
        off += total;
        this.onBinary(new Uint8Array(buf.buffer, buf.byteOffset + at, len));
      } else {
        // A whole ping or pong: ws answers or reports it, synchronously, and is at a frame boundary again.
        this.forward(buf.subarray(off, off + total));
        off += total;
      }
    }
    if (off < end) {
      const rest = off === 0 ? buf : buf.subarray(off);
      this.#held.push(rest);
      this.#heldBytes = rest.length;
      this.#need = need;
    }
    return true;
  }

  /** Everything from `off` on (and all later bytes) goes to ws. */
  #passFrom(buf: Buffer, off: number): boolean {
    this.#through = true;
    this.#need = 0;
    return this.forward(off === 0 ? buf : buf.subarray(off));
  }

  #takeHeld(): Buffer | undefined {
    if (this.#heldBytes === 0) return undefined;
    const held = this.#held;
    const out = held.length === 1 ? held[0]! : Buffer.concat(held, this.#heldBytes);
    this.#held = [];
    this.#heldBytes = 0;
    this.#need = 0;
    return out;
  }
}

/**
 * XORs `len` bytes of `buf` from `at` with the 4-byte mask at `maskAt` (RFC 6455 §5.3), in place —
 * a word at a time over the 4-byte-aligned middle (4× faster than byte by byte for 1 KiB).
 */
export function unmask(buf: Uint8Array, at: number, len: number, maskAt: number): void {
  const m0 = buf[maskAt]!;
  const m1 = buf[maskAt + 1]!;
  const m2 = buf[maskAt + 2]!;
  const m3 = buf[maskAt + 3]!;
  const end = at + len;
  let i = at;
  let k = 0;
  if (len >= 32) {
    // Byte-wise up to an aligned address, then words, then the tail.
    while (((buf.byteOffset + i) & 3) !== 0) {
      buf[i]! ^= k === 0 ? m0 : k === 1 ? m1 : k === 2 ? m2 : m3;
      k = (k + 1) & 3;
      i++;
    }
    const words = (end - i) >>> 2;
    // The mask as the word that starts at mask byte k (rotated by k bytes), in the platform's byte order.
    const sh = k << 3;
    const w = LITTLE_ENDIAN
      ? ((m0 | (m1 << 8) | (m2 << 16) | (m3 << 24)) >>> sh) | ((m0 | (m1 << 8) | (m2 << 16) | (m3 << 24)) << (32 - sh))
      : (((m0 << 24) | (m1 << 16) | (m2 << 8) | m3) << sh) | (((m0 << 24) | (m1 << 16) | (m2 << 8) | m3) >>> (32 - sh));
    const view = new Int32Array(buf.buffer, buf.byteOffset + i, words);
    for (let j = 0; j < words; j++) view[j]! ^= w;
    i += words << 2;
  }
  for (; i < end; i++) {
    buf[i]! ^= k === 0 ? m0 : k === 1 ? m1 : k === 2 ? m2 : m3;
    k = (k + 1) & 3;
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

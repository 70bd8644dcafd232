import { CryptoError, CryptoErrorCode } from './errors.js';

/**
 * Bounds-checked big-endian reader for the crypto core's fixed binary encodings. Every failure is a
 * CryptoError(MALFORMED) naming the operation; nothing is read past the end, and `finish()` rejects
 * trailing bytes, so each encoding has exactly one valid byte form.
 */
export class ByteReader {
  private off = 0;
  constructor(
    private readonly buf: Uint8Array,
    private readonly operation: string,
  ) {}

  get remaining(): number {
    return this.buf.length - this.off;
  }

  private fail(what: string): never {
    throw new CryptoError(CryptoErrorCode.MALFORMED, this.operation, what);
  }

  private need(n: number, what: string): void {
    if (this.remaining < n) this.fail(`truncated: ${what}`);
  }

  u8(what = 'byte'): number {
    this.need(1, what);
    return this.buf[this.off++]!;
  }

  u16(what = 'u16'): number {
    this.need(2, what);
    const v = (this.buf[this.off]! << 8) | this.buf[this.off + 1]!;
    this.off += 2;
    return v;
  }

  u32(what = 'u32'): number {
    this.need(4, what);
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.off, 4).getUint32(0, false);
    this.off += 4;
    return v;
  }

  u64(what = 'u64'): number {
    this.need(8, what);
    const dv = new DataView(this.buf.buffer, this.buf.byteOffset + this.off, 8);
    const hi = dv.getUint32(0, false);
    const lo = dv.getUint32(4, false);
    if (hi > 0x1fffff) this.fail(`${what} exceeds 2^53`);
    this.off += 8;
    return hi * 2 ** 32 + lo;
  }

  /** A copy of the next `n` bytes (copies, so later wiping of the input cannot alias results). */
  bytes(n: number, what = 'bytes'): Uint8Array {
    this.need(n, what);
    const out = this.buf.slice(this.off, this.off + n);
    this.off += n;
    return out;
  }

  /** u16 length prefix, then that many bytes; `max` bounds the length. */
  vec16(what: string, max = 0xffff): Uint8Array {
    const n = this.u16(`${what} length`);
    if (n > max) this.fail(`${what} longer than ${max}`);
    return this.bytes(n, what);
  }

  /** u32 length prefix, then that many bytes; `max` bounds the length. */
  vec32(what: string, max: number): Uint8Array {
    const n = this.u32(`${what} length`);
    if (n > max) this.fail(`${what} longer than ${max}`);
    return this.bytes(n, what);
  }

  rest(): Uint8Array {
    const out = this.buf.slice(this.off);
    this.off = this.buf.length;
    return out;
  }

  finish(): void {
    if (this.remaining !== 0) this.fail(`${this.remaining} trailing bytes`);
  }
}

/** Growable big-endian writer, the counterpart of ByteReader. */
export class ByteWriter {
  private buf = new Uint8Array(256);
  private len = 0;

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf.fill(0);
    this.buf = next;
  }

  u8(v: number): this {
    this.ensure(1);
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  u16(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`ByteWriter.u16: ${v} out of range`);
    this.ensure(2);
    this.buf[this.len++] = v >>> 8;
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`ByteWriter.u32: ${v} out of range`);
    this.ensure(4);
    new DataView(this.buf.buffer).setUint32(this.len, v, false);
    this.len += 4;
    return this;
  }

  u64(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`ByteWriter.u64: ${v} out of range`);
    this.ensure(8);
    const dv = new DataView(this.buf.buffer);
    dv.setUint32(this.len, Math.floor(v / 2 ** 32), false);
    dv.setUint32(this.len + 4, v >>> 0, false);
    this.len += 8;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }

  vec16(b: Uint8Array): this {
    return this.u16(b.length).bytes(b);
  }

  vec32(b: Uint8Array): this {
    return this.u32(b.length).bytes(b);
  }

  /** The written bytes (a fresh copy); the internal buffer is wiped, as it may hold secrets. */
  finish(): Uint8Array {
    const out = this.buf.slice(0, this.len);
    this.buf.fill(0);
    this.len = 0;
    return out;
  }
}

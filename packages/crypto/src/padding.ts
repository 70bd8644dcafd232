/**
 * Size padding for sealed envelopes (docs/spec/sealed-sender.md §Padding).
 *
 * Two separate concerns:
 *  - Buckets: the lengths a sealed envelope may have on the wire. Powers of two from
 *    MIN_PADDED_ENVELOPE (2 KiB) to MAX_ENVELOPE_SIZE (256 KiB), eight sizes in all, so an observer
 *    of envelope lengths learns at most 3 bits per message, and never whether it opens a session.
 *  - The padding itself: ISO/IEC 7816-4 style, data ‖ 0x80 ‖ 0x00…, applied inside the layer-2 AEAD
 *    of the sealed envelope and removed only after that AEAD has verified.
 *
 * Why 0x80-then-zeros rather than a length prefix: it costs one byte instead of four; there is no
 * length field whose value could disagree with the frame (so there is no "length exceeds buffer"
 * case to get wrong); and it is the scheme Signal uses for the same purpose. Exactly one padded form
 * exists for each (data, length) pair — the last non-zero byte must be the 0x80 marker — so a
 * verified plaintext has one meaning.
 */
import { MAX_ENVELOPE_SIZE, MIN_PADDED_ENVELOPE } from './constants.js';
import { CryptoError, CryptoErrorCode, assertBytes } from './errors.js';

/** The ISO/IEC 7816-4 padding marker: the first padding byte. */
export const PADDING_MARKER = 0x80;

function buildBuckets(): readonly number[] {
  const out: number[] = [];
  for (let b = MIN_PADDED_ENVELOPE; b <= MAX_ENVELOPE_SIZE; b *= 2) out.push(b);
  if (out[out.length - 1] !== MAX_ENVELOPE_SIZE) throw new Error('constants: MAX_ENVELOPE_SIZE must be MIN_PADDED_ENVELOPE × 2^k');
  return Object.freeze(out);
}

/** Every length a sealed envelope may have, ascending: 2048, 4096, …, 262144. */
export const PADDING_BUCKETS: readonly number[] = buildBuckets();

/** Whether `length` is one of PADDING_BUCKETS. */
export function isPaddingBucket(length: number): boolean {
  return PADDING_BUCKETS.includes(length);
}

/**
 * The smallest bucket that holds `minimumLength` bytes (an envelope that needs at least that many
 * bytes, padding marker included). Throws CryptoError(LIMIT_EXCEEDED) above MAX_ENVELOPE_SIZE.
 */
export function paddingBucketFor(minimumLength: number, operation = 'paddingBucketFor'): number {
  if (!Number.isSafeInteger(minimumLength) || minimumLength < 0) {
    throw new RangeError(`${operation}: length must be a non-negative integer, got ${minimumLength}`);
  }
  for (const b of PADDING_BUCKETS) if (b >= minimumLength) return b;
  throw new CryptoError(CryptoErrorCode.LIMIT_EXCEEDED, operation, `${minimumLength} bytes exceed the largest envelope (${MAX_ENVELOPE_SIZE})`);
}

/**
 * data ‖ 0x80 ‖ 0x00 × (paddedLength − data.length − 1): exactly `paddedLength` bytes. The caller's
 * `data` is copied, never retained. RangeError if `data` does not leave room for the marker.
 */
export function applyPadding(data: Uint8Array, paddedLength: number): Uint8Array {
  assertBytes(data, 'applyPadding', 'data');
  if (!Number.isSafeInteger(paddedLength) || paddedLength < data.length + 1) {
    throw new RangeError(`applyPadding: padded length ${paddedLength} cannot hold ${data.length} bytes and the marker`);
  }
  const out = new Uint8Array(paddedLength);
  out.set(data, 0);
  out[data.length] = PADDING_MARKER;
  return out;
}

/**
 * Inverse of applyPadding: the bytes before the last non-zero byte, which must be 0x80. Throws
 * CryptoError(MALFORMED) otherwise (all zero, empty, or a last non-zero byte that is not 0x80).
 *
 * The scan touches every byte and does not branch on their values, so its timing depends only on
 * the length. Padding is only ever removed from AEAD-verified plaintext, so there is no padding
 * oracle to begin with; the constant-time scan is cheap insurance.
 */
export function removePadding(padded: Uint8Array, operation = 'removePadding'): Uint8Array {
  assertBytes(padded, operation, 'padded');
  let last = -1;
  for (let i = 0; i < padded.length; i++) {
    const b = padded[i]!;
    // mask = -1 if b ≠ 0 else 0, without a data-dependent branch.
    const mask = -((b | -b) >>> 31);
    last = (i & mask) | (last & ~mask);
  }
  if (last < 0 || padded[last] !== PADDING_MARKER) {
    throw new CryptoError(CryptoErrorCode.MALFORMED, operation, 'invalid padding');
  }
  return padded.slice(0, last);
}

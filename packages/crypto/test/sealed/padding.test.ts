import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toHex } from '../../src/bytes.js';
import { MAX_ENVELOPE_SIZE, MIN_PADDED_ENVELOPE } from '../../src/constants.js';
import { CryptoErrorCode } from '../../src/errors.js';
import { PADDING_BUCKETS, PADDING_MARKER, applyPadding, isPaddingBucket, paddingBucketFor, removePadding } from '../../src/padding.js';
import { DEEP, cryptoErrorOf } from './_helpers.js';

const FC_SEED = Number(process.env['MW_FC_SEED'] ?? 0x9add);

describe('padding buckets', () => {
  it('are the powers of two from MIN_PADDED_ENVELOPE to MAX_ENVELOPE_SIZE', () => {
    expect(PADDING_BUCKETS).toEqual([2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144]);
    expect(PADDING_BUCKETS[0]).toBe(MIN_PADDED_ENVELOPE);
    expect(PADDING_BUCKETS[PADDING_BUCKETS.length - 1]).toBe(MAX_ENVELOPE_SIZE);
    expect(Object.isFrozen(PADDING_BUCKETS)).toBe(true);
  });

  it('paddingBucketFor picks the smallest bucket that fits, and LIMIT_EXCEEDED above the largest', () => {
    expect(paddingBucketFor(0)).toBe(2048);
    expect(paddingBucketFor(2048)).toBe(2048);
    expect(paddingBucketFor(2049)).toBe(4096);
    expect(paddingBucketFor(131073)).toBe(262144);
    expect(paddingBucketFor(262144)).toBe(262144);
    expect(cryptoErrorOf(() => paddingBucketFor(262145)).code).toBe(CryptoErrorCode.LIMIT_EXCEEDED);
    expect(() => paddingBucketFor(-1)).toThrow(RangeError);
    expect(() => paddingBucketFor(1.5)).toThrow(RangeError);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_ENVELOPE_SIZE }), (n) => {
        const b = paddingBucketFor(n);
        expect(isPaddingBucket(b)).toBe(true);
        expect(b).toBeGreaterThanOrEqual(n);
        const i = PADDING_BUCKETS.indexOf(b);
        if (i > 0) expect(PADDING_BUCKETS[i - 1]!).toBeLessThan(n);
      }),
      { seed: FC_SEED, numRuns: DEEP ? 20000 : 500 },
    );
  });

  it('isPaddingBucket accepts exactly the buckets', () => {
    for (const b of PADDING_BUCKETS) {
      expect(isPaddingBucket(b)).toBe(true);
      expect(isPaddingBucket(b - 1)).toBe(false);
      expect(isPaddingBucket(b + 1)).toBe(false);
    }
    expect(isPaddingBucket(1024)).toBe(false);
    expect(isPaddingBucket(524288)).toBe(false);
  });
});

describe('ISO/IEC 7816-4 padding', () => {
  it('is data ‖ 0x80 ‖ zeros, and removes back to the data', () => {
    expect(toHex(applyPadding(Uint8Array.of(1, 2), 6))).toBe('010280000000');
    expect(toHex(applyPadding(new Uint8Array(0), 1))).toBe('80');
    expect(toHex(applyPadding(Uint8Array.of(0x80, 0), 3))).toBe('800080');
    expect(toHex(removePadding(Uint8Array.of(0x80, 0, 0x80, 0, 0)))).toBe('8000');
    expect(PADDING_MARKER).toBe(0x80);
  });

  it('round-trips any data (including trailing zeros and 0x80 bytes) at any padded length', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 600 }).chain((d) => fc.tuple(fc.constant(d), fc.integer({ min: d.length + 1, max: d.length + 700 }))),
        ([data, len]) => {
          const before = toHex(data);
          const padded = applyPadding(data, len);
          expect(padded.length).toBe(len);
          expect(toHex(data)).toBe(before); // input untouched
          expect(toHex(removePadding(padded))).toBe(before);
        },
      ),
      { seed: FC_SEED, numRuns: DEEP ? 10000 : 300 },
    );
  });

  it('refuses a padded length without room for the marker', () => {
    expect(() => applyPadding(Uint8Array.of(1, 2), 2)).toThrow(RangeError);
    expect(() => applyPadding(new Uint8Array(0), 0)).toThrow(RangeError);
  });

  it('rejects invalid padding with MALFORMED: empty, all zero, last non-zero byte not 0x80', () => {
    for (const bad of [new Uint8Array(0), new Uint8Array(10), Uint8Array.of(1, 2, 0, 0), Uint8Array.of(0x80, 0x01), Uint8Array.of(0x81), Uint8Array.of(0x80, 0, 0x7f, 0)]) {
      const e = cryptoErrorOf(() => removePadding(bad, 'test'));
      expect(e.code).toBe(CryptoErrorCode.MALFORMED);
      expect(e.operation).toBe('test');
    }
  });

  it('removePadding never throws anything but MALFORMED on arbitrary bytes, and accepts exactly the canonical forms', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          // Biased toward (near-)valid forms: data ‖ 0x80 ‖ zeros, sometimes with one byte changed.
          fc
            .tuple(fc.uint8Array({ maxLength: 32 }), fc.nat(16), fc.option(fc.tuple(fc.nat(60), fc.integer({ min: 1, max: 255 }))))
            .map(([d, z, change]) => {
              const b = new Uint8Array(d.length + 1 + z);
              b.set(d);
              b[d.length] = 0x80;
              if (change) b[change[0] % b.length]! ^= change[1];
              return b;
            }),
        ),
        (b) => {
        let last = -1;
        for (let i = 0; i < b.length; i++) if (b[i] !== 0) last = i;
        const valid = last >= 0 && b[last] === 0x80;
        if (valid) {
          expect(toHex(applyPadding(removePadding(b), b.length))).toBe(toHex(b));
        } else {
          expect(cryptoErrorOf(() => removePadding(b)).code).toBe(CryptoErrorCode.MALFORMED);
        }
        },
      ),
      { seed: FC_SEED, numRuns: DEEP ? 20000 : 500 },
    );
  });
});

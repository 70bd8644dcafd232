import { readFileSync, writeFileSync } from 'node:fs';
import { inspect } from 'node:util';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { concatBytes, fromHex, toHex, u32be, utf8 } from '../../src/bytes.js';
import { MEDIA_CHUNK_SIZE, MEDIA_MAX_CHUNK_SIZE } from '../../src/constants.js';
import type { CryptoContext } from '../../src/context.js';
import { createContext } from '../../src/context.js';
import { CryptoError, CryptoErrorCode } from '../../src/errors.js';
import {
  MEDIA_HEADER_LENGTH,
  MediaDecryptor,
  MediaEncryptor,
  decryptMedia,
  decryptMediaIterable,
  encryptMedia,
  encryptMediaIterable,
  generateMediaKey,
  mediaCiphertextLength,
  mediaDecryptTransform,
  mediaEncryptTransform,
} from '../../src/media.js';
import { nobleBackend } from '../../src/primitives/noble.js';
import { deterministicRng } from '../../src/testing.js';
import { specChunkKey, specChunks, specCommitment, specDecrypt, specHeader, specNonce, specPad, specPaddedLength, specSeal } from './_spec.js';

const DEEP = process.env['MW_DEEP'] === '1';
const FC_SEED = Number(process.env['MW_FC_SEED'] ?? 0x3ed1a);
const VECTORS = fileURLToPath(new URL('../../../../test-vectors/media.json', import.meta.url));

// Hex seeds are used as bytes (as in the vectors); any other label is used as its UTF-8 bytes.
const seedOf = (s: string): string | Uint8Array => (/^(?:[0-9a-f]{2})+$/.test(s) ? s : utf8(s));
const ctxFor = (seed: string): CryptoContext => createContext({ backend: nobleBackend, random: deterministicRng(seedOf(seed)) });
const ctx = ctxFor('00');
const KEY = deterministicRng('6b6579')(32);
/**
 * The first `n` bytes of deterministicRng(seed), i.e. SHA-256(seed ‖ be32(i)) blocks, written straight
 * into one buffer (deterministicRng's pool re-copies on every block: quadratic for large n).
 */
function rngBytes(seed: string | Uint8Array, n: number): Uint8Array {
  const s = typeof seed === 'string' ? fromHex(seed) : seed;
  const out = new Uint8Array(n);
  for (let i = 0, off = 0; off < n; i++, off += 32) out.set(nobleBackend.sha256(concatBytes(s, u32be(i))).subarray(0, Math.min(32, n - off)), off);
  return out;
}
const bytes = (seed: string, n: number): Uint8Array => rngBytes(seedOf(seed), n);

function expectCode(f: () => unknown, code: CryptoErrorCode): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a CryptoError').toBeInstanceOf(CryptoError);
  expect((err as CryptoError).code).toBe(code);
}

/** Pushes `data` through `s` in pieces of the given sizes (cycled), then final(). */
function push(s: { update(b: Uint8Array): Uint8Array; final(): Uint8Array }, data: Uint8Array, pieces: number[] = [data.length || 1]): Uint8Array {
  const out: Uint8Array[] = [];
  let off = 0;
  let i = 0;
  while (off < data.length) {
    const n = Math.max(1, pieces[i++ % pieces.length]!);
    out.push(s.update(data.subarray(off, off + n)));
    off += n;
  }
  out.push(s.final());
  return concatBytes(...out);
}

/** Splits a ciphertext into header and chunk ciphertexts for chunk size `cs`. */
function split(ct: Uint8Array, cs: number): { header: Uint8Array; chunks: Uint8Array[] } {
  const chunks: Uint8Array[] = [];
  for (let off = MEDIA_HEADER_LENGTH; off < ct.length; off += cs + 16) chunks.push(ct.slice(off, off + cs + 16));
  return { header: ct.slice(0, MEDIA_HEADER_LENGTH), chunks };
}

describe('round trip', () => {
  it('at sizes around chunk boundaries (chunk size 16) and the spec decoder agrees', () => {
    const cs = 16;
    for (const n of [0, 1, 15, 16, 17, 31, 32, 33, 48, 64, 65, 100, 160, 1000]) {
      const pt = bytes(`${n}`, n);
      const { ciphertext, digest } = encryptMedia(ctxFor(`e${n}`), KEY, pt, { chunkSize: cs });
      expect(ciphertext.length, `n=${n}`).toBe(mediaCiphertextLength(n, cs));
      expect(digest).toEqual(nobleBackend.sha256(ciphertext));
      expect(decryptMedia(ctx, KEY, ciphertext, { expectedDigest: digest })).toEqual(pt);
      expect(specDecrypt(KEY, ciphertext)).toEqual(pt);
    }
  });

  it('at production chunk size: 0, 1, exact multiples and ±1', () => {
    const cs = MEDIA_CHUNK_SIZE;
    for (const n of [0, 1, cs - 1, cs, cs + 1, 2 * cs, 3 * cs + 5]) {
      const pt = bytes(`p${n}`, n);
      const { ciphertext, digest } = encryptMedia(ctx, KEY, pt);
      expect(ciphertext.length, `n=${n}`).toBe(mediaCiphertextLength(n));
      expect(split(ciphertext, cs).chunks.length).toBe(Math.ceil(specPaddedLength(n + 1) / cs));
      expect(decryptMedia(ctx, KEY, ciphertext, { expectedDigest: digest })).toEqual(pt);
    }
  });

  it('independent of how input is split on either side (seeded property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 0, max: 600 }),
        fc.array(fc.integer({ min: 1, max: 90 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 90 }), { minLength: 1, maxLength: 8 }),
        (cs, n, inPieces, outPieces) => {
          const pt = bytes(`${cs}.${n}`, n);
          const whole = encryptMedia(ctxFor('aa'), KEY, pt, { chunkSize: cs });
          const enc = MediaEncryptor.create(ctxFor('aa'), KEY, { chunkSize: cs });
          const ct = push(enc, pt, inPieces);
          // Same RNG → same nonce prefix → byte-identical output however the input was fed.
          expect(ct).toEqual(whole.ciphertext);
          expect(enc.digest).toEqual(whole.digest);
          expect(enc.ciphertextLength).toBe(ct.length);
          const dec = MediaDecryptor.create(ctx, KEY, { expectedDigest: whole.digest });
          expect(push(dec, ct, outPieces)).toEqual(pt);
          expect(dec.digest).toEqual(whole.digest);
        },
      ),
      { seed: FC_SEED, numRuns: DEEP ? 3000 : 80 },
    );
  });

  it('update() holds back only the last chunk: output is ready as soon as the next byte arrives', () => {
    const cs = 16;
    const enc = MediaEncryptor.create(ctx, KEY, { chunkSize: cs });
    expect(enc.update(new Uint8Array(16)).length).toBe(MEDIA_HEADER_LENGTH); // header only, chunk 0 held
    expect(enc.update(new Uint8Array(1)).length).toBe(cs + 16); // chunk 0 sealed as non-final
    // The rest: 1 data byte, the 0x80 marker and zeros up to the 256-byte bucket (16 chunks in all).
    const ct = concatBytes(enc.final());
    expect(ct.length).toBe(256 - 16 + 15 * 16);
  });

  it('fresh nonce prefix per file: same key and plaintext give different ciphertexts', () => {
    const pt = bytes('x', 100);
    const a = encryptMedia(ctxFor('01'), KEY, pt).ciphertext;
    const b = encryptMedia(ctxFor('02'), KEY, pt).ciphertext;
    expect(toHex(a.subarray(5, 12))).not.toBe(toHex(b.subarray(5, 12)));
    expect(a).not.toEqual(b);
  });

  it('async-iterable helpers', async () => {
    const pt = bytes('it', 5000);
    async function* source(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < pt.length; i += 333) yield pt.subarray(i, i + 333);
    }
    const enc = MediaEncryptor.create(ctx, KEY, { chunkSize: 256 });
    const ctParts: Uint8Array[] = [];
    for await (const c of encryptMediaIterable(enc, source())) ctParts.push(c);
    const ct = concatBytes(...ctParts);
    const dec = MediaDecryptor.create(ctx, KEY, { expectedDigest: enc.digest });
    const ptParts: Uint8Array[] = [];
    for await (const p of decryptMediaIterable(dec, [ct.subarray(0, 7), ct.subarray(7)])) ptParts.push(p);
    expect(concatBytes(...ptParts)).toEqual(pt);

    const bad = ct.slice(0, ct.length - 1);
    const dec2 = MediaDecryptor.create(ctx, KEY);
    await expect(async () => {
      for await (const _ of decryptMediaIterable(dec2, [bad])) void _;
    }).rejects.toMatchObject({ code: CryptoErrorCode.MEDIA_CORRUPT });
  });

  const streamOf = (b: Uint8Array, piece = 1000): ReadableStream<Uint8Array> =>
    new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < b.length; i += piece) c.enqueue(b.slice(i, i + piece));
        c.close();
      },
    });
  async function collect(r: ReadableStream<Uint8Array>): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    for await (const p of r) parts.push(p);
    return concatBytes(...parts);
  }

  it('web TransformStream helpers', async () => {
    const pt = bytes('ts', 3000);
    const enc = MediaEncryptor.create(ctx, KEY, { chunkSize: 200 });
    const ct = await collect(streamOf(pt).pipeThrough(mediaEncryptTransform(enc)));
    expect(ct.length).toBe(mediaCiphertextLength(3000, 200));
    const dec = MediaDecryptor.create(ctx, KEY, { expectedDigest: enc.digest });
    const back = await collect(streamOf(ct, 777).pipeThrough(mediaDecryptTransform(dec)));
    expect(back).toEqual(pt);

    const tampered = ct.slice();
    tampered[100] = tampered[100]! ^ 1;
    const dec2 = MediaDecryptor.create(ctx, KEY);
    await expect(collect(streamOf(tampered).pipeThrough(mediaDecryptTransform(dec2)))).rejects.toMatchObject({
      code: CryptoErrorCode.MEDIA_CORRUPT,
    });
  });
});

describe('tampering is detected (MEDIA_CORRUPT)', () => {
  const cs = 16;
  const pt = bytes('tamper', 70); // 4 full chunks + 6 bytes
  const { ciphertext: ct, digest } = encryptMedia(ctxFor('t1'), KEY, pt, { chunkSize: cs });
  const { header, chunks } = split(ct, cs);
  const exact = encryptMedia(ctxFor('t2'), KEY, bytes('exact', 64), { chunkSize: cs }).ciphertext; // 4 full chunks
  const dec = (c: Uint8Array, opts = {}): Uint8Array => decryptMedia(ctx, KEY, c, opts);
  const join = (...c: Uint8Array[]): Uint8Array => concatBytes(header, ...c);

  it('sanity: the untampered stream decrypts', () => {
    expect(chunks).toHaveLength(16); // 70 bytes padded to the 256-byte bucket
    expect(dec(join(...chunks))).toEqual(pt);
  });

  it('truncation at every length, including chunk boundaries and exact-multiple files', () => {
    for (const c of [ct, exact]) {
      for (let n = 0; n < c.length; n++) expectCode(() => dec(c.subarray(0, n)), CryptoErrorCode.MEDIA_CORRUPT);
    }
  });

  it('reordering, duplication and dropping of chunks', () => {
    const [c0, c1, c2, c3, c4] = chunks as [Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array];
    const variants = [
      join(c1, c0, c2, c3, c4),
      join(c0, c2, c1, c3, c4),
      join(c0, c1, c2, c4, c3),
      join(c0, c1, c1, c2, c3, c4),
      join(c0, c0, c1, c2, c3, c4),
      join(c0, c2, c3, c4),
      join(c1, c2, c3, c4),
    ];
    for (const v of variants) expectCode(() => dec(v), CryptoErrorCode.MEDIA_CORRUPT);
  });

  it('extension after the final chunk', () => {
    const [c0, c4] = [chunks[0]!, chunks[4]!];
    for (const v of [join(...chunks, c4), join(...chunks, c0), concatBytes(ct, new Uint8Array(1)), concatBytes(ct, new Uint8Array(16)), concatBytes(exact, exact.subarray(44, 76))]) {
      expectCode(() => dec(v), CryptoErrorCode.MEDIA_CORRUPT);
    }
  });

  it('cross-file splicing (same key reused by mistake, or different keys)', () => {
    const other = encryptMedia(ctxFor('t3'), KEY, bytes('other', 70), { chunkSize: cs }).ciphertext;
    const o = split(other, cs);
    expectCode(() => dec(join(chunks[0]!, o.chunks[1]!, ...chunks.slice(2))), CryptoErrorCode.MEDIA_CORRUPT);
    expectCode(() => dec(concatBytes(o.header, ...chunks)), CryptoErrorCode.MEDIA_CORRUPT);
    expectCode(() => dec(concatBytes(header, ...o.chunks)), CryptoErrorCode.MEDIA_CORRUPT);
    expectCode(() => decryptMedia(ctx, bytes('wrong key', 32), ct), CryptoErrorCode.MEDIA_CORRUPT);
  });

  it('every single-bit flip fails (header flips too; the version byte reports UNSUPPORTED_VERSION)', () => {
    for (let i = 0; i < ct.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const t = ct.slice();
        t[i] = t[i]! ^ (1 << bit);
        expectCode(() => dec(t), i === 0 ? CryptoErrorCode.UNSUPPORTED_VERSION : CryptoErrorCode.MEDIA_CORRUPT);
      }
    }
  });

  it('header chunk size out of range is refused before anything is buffered', () => {
    for (const bad of [0, MEDIA_MAX_CHUNK_SIZE + 1, 0xffffffff]) {
      const d = MediaDecryptor.create(ctx, KEY);
      const h = specHeader(bad, header.subarray(5), specCommitment(KEY));
      expectCode(() => d.update(h), CryptoErrorCode.MEDIA_CORRUPT);
    }
  });

  it('an empty final chunk after data chunks is rejected (non-canonical), though correctly sealed', () => {
    const h = specHeader(cs, bytes('pfx', 7), specCommitment(KEY));
    const padded = specPad(bytes('a', 16));
    const nonFinal = specChunks(padded, cs).map((c) => ({ ...c, final: false }));
    const sealed = specSeal(KEY, h, [...nonFinal, { pt: new Uint8Array(0), index: nonFinal.length, final: true }]);
    expectCode(() => dec(concatBytes(h, ...sealed)), CryptoErrorCode.MEDIA_CORRUPT);
    // The same data encoded canonically decrypts.
    const ok = specSeal(KEY, h, specChunks(padded, cs));
    expect(dec(concatBytes(h, ...ok))).toEqual(bytes('a', 16));
  });

  it('non-canonical padding is rejected though correctly sealed: no marker, a longer bucket, a shorter one', () => {
    const h = specHeader(cs, bytes('pfx', 7), specCommitment(KEY));
    const file = bytes('b', 20);
    const noMarker = new Uint8Array(256);
    noMarker.set(file);
    const tooLong = new Uint8Array(268); // the next bucket: the file would fit the first
    tooLong.set(file);
    tooLong[20] = 0x80;
    const tooShort = new Uint8Array(32);
    tooShort.set(file);
    tooShort[20] = 0x80;
    for (const p of [noMarker, tooLong, tooShort]) {
      expectCode(() => dec(concatBytes(h, ...specSeal(KEY, h, specChunks(p, cs)))), CryptoErrorCode.MEDIA_CORRUPT);
    }
  });

  it('a stream that never reaches its final chunk fails in final()', () => {
    const d = MediaDecryptor.create(ctx, KEY);
    expect(d.update(join(chunks[0]!, chunks[1]!, new Uint8Array(1))).length).toBeLessThanOrEqual(2 * cs);
    expectCode(() => d.final(), CryptoErrorCode.MEDIA_CORRUPT);
  });

  it('digest mismatch fails in final() even when every chunk authenticates', () => {
    const wrong = digest.slice();
    wrong[0] = wrong[0]! ^ 1;
    expectCode(() => dec(ct, { expectedDigest: wrong }), CryptoErrorCode.MEDIA_CORRUPT);
    expect(dec(ct, { expectedDigest: digest })).toEqual(pt);
  });

  it('a failed decryptor stays failed', () => {
    const d = MediaDecryptor.create(ctx, KEY);
    const t = ct.slice();
    t[20] = t[20]! ^ 1;
    expectCode(() => d.update(t), CryptoErrorCode.MEDIA_CORRUPT);
    expectCode(() => d.update(new Uint8Array(1)), CryptoErrorCode.MEDIA_CORRUPT);
    expectCode(() => d.final(), CryptoErrorCode.MEDIA_CORRUPT);
  });
});

describe('key commitment (issue 10 §1.6)', () => {
  const cs = 16;
  const other = bytes('other key', 32);
  it('the header commits to the key: HKDF(key, "MeshWhisper_MediaCommitment_v2") at bytes 12..43', () => {
    const { ciphertext } = encryptMedia(ctxFor('k1'), KEY, bytes('f', 10), { chunkSize: cs });
    expect(toHex(ciphertext.subarray(12, 44))).toBe(toHex(specCommitment(KEY)));
  });

  it('a blob whose chunks authenticate under the given key is refused when the header commits to another key', () => {
    // What a cheating sender would need for "one blob, two files": chunks that open under the key
    // she gives one recipient, in a stream whose header names another key. The commitment check
    // refuses it before any chunk is opened.
    const file = bytes('g', 40);
    const h = specHeader(cs, bytes('pfx', 7), specCommitment(other));
    const blob = concatBytes(h, ...specSeal(KEY, h, specChunks(specPad(file), cs)));
    expectCode(() => decryptMedia(ctx, KEY, blob), CryptoErrorCode.MEDIA_CORRUPT);
    const honest = specHeader(cs, bytes('pfx', 7), specCommitment(KEY));
    expect(decryptMedia(ctx, KEY, concatBytes(honest, ...specSeal(KEY, honest, specChunks(specPad(file), cs))))).toEqual(file);
  });

  it('a wrong key fails at the header, before any chunk is decrypted', () => {
    const { ciphertext } = encryptMedia(ctxFor('k2'), KEY, bytes('h', 100), { chunkSize: cs });
    let opened = 0;
    const spy = { ...nobleBackend, aes256GcmDecrypt: (...a: Parameters<typeof nobleBackend.aes256GcmDecrypt>) => (opened++, nobleBackend.aes256GcmDecrypt(...a)) };
    const d = MediaDecryptor.create(createContext({ backend: spy }), other);
    expectCode(() => d.update(ciphertext), CryptoErrorCode.MEDIA_CORRUPT);
    expect(opened).toBe(0);
  });
});

describe('padding to size buckets (issue 10 §1.6)', () => {
  it('buckets start at 256 and grow by ⌊b/20⌋ (≤ 5 %): the series and the bound', () => {
    expect([0, 1, 256, 257, 268, 269].map((n) => specPaddedLength(n))).toEqual([256, 256, 256, 268, 268, 281]);
    for (let n = 1; n < 5_000_000; n = Math.ceil(n * 1.37) + 1) {
      const b = specPaddedLength(n);
      expect(b).toBeGreaterThanOrEqual(n);
      if (n > 256) expect(b / n).toBeLessThanOrEqual(1.05);
    }
  });

  it('two files in one bucket have the same ciphertext length; the exact size is not visible', () => {
    const lengths = new Set([1000, 1001, 1010, 1020].map((n) => encryptMedia(ctx, KEY, bytes(`s${n}`, n)).ciphertext.length));
    expect(lengths.size).toBe(1);
    expect(mediaCiphertextLength(1000)).toBe(MEDIA_HEADER_LENGTH + specPaddedLength(1001) + 16);
  });

  it('files that end in 0x80 or in zeros round-trip (the padding is found from the end)', () => {
    for (const tail of [[0x80], [0x80, 0], [0, 0, 0], [0x80, 0x80, 0, 0]]) {
      for (const n of [0, 15, 16, 254, 255, 300]) {
        const file = concatBytes(bytes(`t${n}`, n), Uint8Array.from(tail));
        for (const cs of [1, 16, 64]) {
          const { ciphertext } = encryptMedia(ctx, KEY, file, { chunkSize: cs });
          expect(decryptMedia(ctx, KEY, ciphertext), `n=${n} cs=${cs} tail=${tail}`).toEqual(file);
        }
      }
    }
  });

  it('padding a large file is streamed one chunk at a time (finalParts)', () => {
    const enc = MediaEncryptor.create(ctx, KEY, { chunkSize: 1024 });
    enc.update(new Uint8Array(200_000));
    const parts = [...enc.finalParts()];
    expect(parts.length).toBeGreaterThan(3);
    for (const p of parts) expect(p.length).toBeLessThanOrEqual(2 * (1024 + 16));
  });
});

describe('API guards and hygiene', () => {
  it('misuse of a finished encryptor or decryptor', () => {
    const enc = MediaEncryptor.create(ctx, KEY);
    expectCode(() => enc.digest, CryptoErrorCode.INVALID_ARGUMENT);
    const ct = push(enc, bytes('m', 10));
    expectCode(() => enc.update(new Uint8Array(1)), CryptoErrorCode.INVALID_ARGUMENT);
    expectCode(() => enc.final(), CryptoErrorCode.INVALID_ARGUMENT);
    const d = MediaDecryptor.create(ctx, KEY);
    push(d, ct);
    expectCode(() => d.final(), CryptoErrorCode.INVALID_ARGUMENT);
  });

  it('argument guards', () => {
    expect(() => MediaEncryptor.create(ctx, new Uint8Array(31))).toThrow(RangeError);
    expect(() => MediaEncryptor.create(ctx, KEY, { chunkSize: 0 })).toThrow(RangeError);
    expect(() => MediaEncryptor.create(ctx, KEY, { chunkSize: MEDIA_MAX_CHUNK_SIZE + 1 })).toThrow(RangeError);
    expect(() => MediaDecryptor.create(ctx, KEY, { expectedDigest: new Uint8Array(31) })).toThrow(RangeError);
    expect(() => MediaEncryptor.create(ctx, KEY).update('x' as unknown as Uint8Array)).toThrow(TypeError);
    expect(generateMediaKey(ctxFor('k'))).toEqual(bytes('k', 32));
    expect(rngBytes('abcd', 1000)).toEqual(deterministicRng('abcd')(1000));
  });

  it('the caller\'s key buffer is neither retained nor wiped', () => {
    const key = KEY.slice();
    const enc = MediaEncryptor.create(ctx, key);
    key.fill(0);
    const ct = push(enc, bytes('r', 50));
    expect(decryptMedia(ctx, KEY, ct)).toEqual(bytes('r', 50));
    expect(KEY.some((b) => b !== 0)).toBe(true);
  });

  it('no secret in inspect / toString / JSON', () => {
    const enc = MediaEncryptor.create(ctx, KEY, { chunkSize: 16 });
    const dec = MediaDecryptor.create(ctx, KEY);
    dec.update(enc.update(bytes('s', 40)));
    const chunkKeyHex = toHex(specChunkKey(KEY));
    for (const o of [enc, dec]) {
      for (const s of [inspect(o, { depth: 10, showHidden: true }), String(o), JSON.stringify(o)]) {
        expect(s).not.toContain(toHex(KEY));
        expect(s).not.toContain(chunkKeyHex);
        expect(s).not.toContain(toHex(KEY).slice(0, 16));
      }
    }
    expect(JSON.parse(JSON.stringify(enc))).toMatchObject({ type: 'MediaEncryptor', secret: '[redacted]' });
  });
});

// ── Published vectors ────────────────────────────────────────────────────────────────────────

interface MediaCase {
  name: string;
  keySeed: string;
  rngSeed: string;
  chunkSize: number;
  plaintextSeed: string;
  plaintextLength: number;
  key: string;
  plaintext?: string;
  intermediates: { chunkKey: string; commitment: string; paddedLength: number; header: string; nonces: string[]; tags: string[] };
  ciphertext?: string;
  ciphertextLength: number;
  digest: string;
}

function makeCase(name: string, chunkSize: number, plaintextLength: number, inline: boolean, n: number): MediaCase {
  const nn = n.toString(16).padStart(2, '0');
  const keySeed = `c0${nn}`;
  const rngSeed = `c1${nn}`;
  const plaintextSeed = `c2${nn}`;
  const key = deterministicRng(keySeed)(32);
  const pt = rngBytes(plaintextSeed, plaintextLength);
  const { ciphertext, digest } = encryptMedia(ctxFor(rngSeed), key, pt, { chunkSize });
  const { header, chunks } = split(ciphertext, chunkSize);
  const prefix = header.subarray(5);
  return {
    name,
    keySeed,
    rngSeed,
    chunkSize,
    plaintextSeed,
    plaintextLength,
    key: toHex(key),
    ...(inline ? { plaintext: toHex(pt) } : {}),
    intermediates: {
      chunkKey: toHex(specChunkKey(key)),
      commitment: toHex(specCommitment(key)),
      paddedLength: specPaddedLength(plaintextLength + 1),
      header: toHex(header),
      nonces: chunks.map((_, i) => toHex(specNonce(prefix, i, i === chunks.length - 1))),
      tags: chunks.map((c) => toHex(c.subarray(c.length - 16))),
    },
    ...(inline ? { ciphertext: toHex(ciphertext) } : {}),
    ciphertextLength: ciphertext.length,
    digest: toHex(digest),
  };
}

describe('test-vectors/media.json', () => {
  it('matches the implementation and the independent spec decoder', () => {
    const cases = [
      makeCase('empty file', 16, 0, true, 0),
      makeCase('one partial chunk', 16, 5, true, 1),
      makeCase('padded plaintext an exact multiple of the chunk size (256 = 16 × 16)', 16, 255, true, 2),
      makeCase('second bucket (257 → 268), short last chunk', 16, 257, true, 3),
      makeCase('production chunk size, 2 chunks + 10 bytes', MEDIA_CHUNK_SIZE, 2 * MEDIA_CHUNK_SIZE + 10, false, 4),
    ];
    const doc = {
      description:
        'MeshWhisper streaming media AEAD v2 with key commitment and size-bucket padding (docs/spec/media.md). key = deterministicRng(keySeed)(32); the nonce prefix is the first 7 bytes of deterministicRng(rngSeed); plaintext = deterministicRng(plaintextSeed)(plaintextLength) (also inline when short). digest = SHA-256(ciphertext).',
      cases,
    };
    if (process.env['MW_WRITE_VECTORS'] === '1') writeFileSync(VECTORS, `${JSON.stringify(doc, null, 2)}\n`);
    const committed = JSON.parse(readFileSync(VECTORS, 'utf8')) as typeof doc;
    for (const v of committed.cases) {
      const key = fromHex(v.key);
      const pt = rngBytes(v.plaintextSeed, v.plaintextLength);
      if (v.plaintext !== undefined) expect(v.plaintext).toBe(toHex(pt));
      const { ciphertext, digest } = encryptMedia(ctxFor(v.rngSeed), key, pt, { chunkSize: v.chunkSize });
      expect(toHex(digest), v.name).toBe(v.digest);
      expect(ciphertext.length).toBe(v.ciphertextLength);
      if (v.ciphertext !== undefined) expect(toHex(ciphertext), v.name).toBe(v.ciphertext);
      expect(specDecrypt(key, ciphertext), v.name).toEqual(pt);
      expect(decryptMedia(ctx, key, ciphertext, { expectedDigest: fromHex(v.digest) }), v.name).toEqual(pt);
    }
    expect(committed).toEqual(doc);
  });
});

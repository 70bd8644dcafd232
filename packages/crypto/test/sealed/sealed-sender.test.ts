import { inspect } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { concatBytes, toHex } from '../../src/bytes.js';
import { MAX_ENVELOPE_SIZE, MIN_PADDED_ENVELOPE } from '../../src/constants.js';
import { createContext } from '../../src/context.js';
import { CryptoErrorCode } from '../../src/errors.js';
import { AccountKeyPair, encodeDeviceCertificate, issueDeviceCertificate, sameDevice } from '../../src/keys.js';
import { PADDING_BUCKETS, isPaddingBucket } from '../../src/padding.js';
import { nobleBackend } from '../../src/primitives/noble.js';
import { platformBackend } from '../../src/primitives/index.js';
import type { OpenedEnvelope } from '../../src/sealed-sender.js';
import {
  MAX_SEALED_CONTENT_LENGTH,
  SEALED_ENVELOPE_OVERHEAD,
  SEALED_LAYER1_LENGTH,
  openEnvelope,
  sealEnvelope,
  sealedEnvelopeLength,
} from '../../src/sealed-sender.js';
import { deterministicRng } from '../../src/testing.js';
import { DEEP, SPEC, cryptoErrorOf, makeIdentity, memoBackend, specPlaintext2, specSeal, testContext } from './_helpers.js';

const FC_SEED = Number(process.env['MW_FC_SEED'] ?? 0x5ea1ed);
const ctx = testContext('5ea1ed0001', memoBackend(nobleBackend));
const alice = makeIdentity(ctx);
const bob = makeIdentity(ctx);
const carol = makeIdentity(ctx);
const mallory = makeIdentity(ctx);
const stranger = makeIdentity(ctx);

function seal(content: Uint8Array, contentType = 2, from = alice, toKey = bob.device.dhPublicKey, c = ctx): Uint8Array {
  return sealEnvelope(c, { sender: { certificate: from.certificate, device: from.device }, recipientDhKey: toKey, contentType, content });
}

const contentRng = deterministicRng('c0'); // content bytes only; independent of key/ephemeral RNG
const sample = seal(contentRng(100));

describe('sealEnvelope / openEnvelope round trip', () => {
  for (const [name, backend] of [
    ['noble', nobleBackend],
    ['platform', platformBackend()],
  ] as const) {
    it(`round-trips content, type and sender (${name} backend)`, () => {
      const c = createContext({ backend, now: () => 1_750_000_001_000 });
      for (const [type, len] of [
        [1, 0],
        [2, 1],
        [255, 1500],
        [0, 5000],
      ] as const) {
        const content = contentRng(len);
        const env = seal(content, type, alice, bob.device.dhPublicKey, c);
        const opened = openEnvelope(c, bob.device, env);
        expect(opened.contentType).toBe(type);
        expect(toHex(opened.content)).toBe(toHex(content));
        expect(sameDevice(opened.sender, alice.certificate)).toBe(true);
        expect(toHex(opened.sender.signature)).toBe(toHex(alice.certificate.signature));
      }
    });
  }

  it('uses a fresh ephemeral key per envelope: same inputs, different bytes, both open', () => {
    const content = contentRng(50);
    const a = seal(content);
    const b = seal(content);
    expect(toHex(a.subarray(1, 34))).not.toBe(toHex(b.subarray(1, 34)));
    expect(toHex(a)).not.toBe(toHex(b));
    expect(toHex(openEnvelope(ctx, bob.device, a).content)).toBe(toHex(content));
    expect(toHex(openEnvelope(ctx, bob.device, b).content)).toBe(toHex(content));
  });

  it('consumes exactly 32 bytes of ctx.random and wipes the ephemeral secret afterwards', () => {
    const handed: Uint8Array[] = [];
    const rng = deterministicRng('e1');
    const c = createContext({ backend: nobleBackend, random: (n) => (handed.push(rng(n)), handed[handed.length - 1]!) });
    seal(contentRng(10), 2, alice, bob.device.dhPublicKey, c);
    expect(handed.map((h) => h.length)).toEqual([32]);
    expect(handed[0]!.every((x) => x === 0)).toBe(true);
  });

  it('does not mutate its inputs', () => {
    const content = contentRng(300);
    const before = toHex(content);
    const key = Uint8Array.from(bob.device.dhPublicKey);
    const env = seal(content, 2, alice, key);
    expect(toHex(content)).toBe(before);
    expect(toHex(key)).toBe(toHex(bob.device.dhPublicKey));
    const envCopy = toHex(env);
    openEnvelope(ctx, bob.device, env);
    expect(toHex(env)).toBe(envCopy);
  });

  it('opens an envelope that is a view into a larger buffer (non-zero byteOffset)', () => {
    const content = contentRng(77);
    const env = seal(content);
    const big = new Uint8Array(env.length + 13);
    big.set(env, 7);
    expect(toHex(openEnvelope(ctx, bob.device, big.subarray(7, 7 + env.length)).content)).toBe(toHex(content));
  });

  it('is the wire layout of the spec: version ‖ E ‖ u16 len ‖ c1 (206) ‖ c2', () => {
    expect(sample[0]).toBe(0x02);
    expect(sample[1]).toBe(0x02);
    expect((sample[34]! << 8) | sample[35]!).toBe(206);
    expect(SEALED_LAYER1_LENGTH).toBe(206);
    expect(SEALED_ENVELOPE_OVERHEAD).toBe(SPEC.overhead);
    expect(sample.length).toBe(MIN_PADDED_ENVELOPE);
  });
});

describe('envelope length is always a padding bucket', () => {
  it('for content sizes 0..70000 (bucket edges and seeded samples)', () => {
    const sizes = new Set<number>([0, 1, 2, 100, 1000]);
    for (const b of PADDING_BUCKETS) {
      for (const d of [-2, -1, 0, 1]) {
        const n = b - SPEC.overhead + d;
        if (n >= 0 && n <= 70_000) sizes.add(n);
      }
    }
    const pick = deterministicRng('512e05');
    const samples = DEEP ? 400 : 40;
    for (let i = 0; i < samples; i++) {
      const r = pick(4);
      sizes.add(((r[0]! << 16) | (r[1]! << 8) | r[2]!) % 70_001);
    }
    for (const n of sizes) {
      const env = seal(new Uint8Array(n).fill(0xa5));
      expect(isPaddingBucket(env.length), `content ${n}`).toBe(true);
      // The smallest bucket that fits: never a larger one than needed.
      const expected = PADDING_BUCKETS.find((b) => b >= n + SPEC.overhead);
      expect(env.length, `content ${n}`).toBe(expected);
      expect(sealedEnvelopeLength(n)).toBe(expected);
    }
    // The edges themselves: 1788 bytes fill 2 KiB exactly, one more byte needs 4 KiB.
    expect(seal(new Uint8Array(1788)).length).toBe(2048);
    expect(seal(new Uint8Array(1789)).length).toBe(4096);
  });

  it('carries the largest content in the largest bucket and refuses one byte more with LIMIT_EXCEEDED', () => {
    expect(MAX_SEALED_CONTENT_LENGTH).toBe(MAX_ENVELOPE_SIZE - 260);
    const big = new Uint8Array(MAX_SEALED_CONTENT_LENGTH).fill(7);
    const env = seal(big);
    expect(env.length).toBe(MAX_ENVELOPE_SIZE);
    expect(openEnvelope(ctx, bob.device, env).content.length).toBe(MAX_SEALED_CONTENT_LENGTH);
    const e = cryptoErrorOf(() => seal(new Uint8Array(MAX_SEALED_CONTENT_LENGTH + 1)));
    expect(e.code).toBe(CryptoErrorCode.LIMIT_EXCEEDED);
    expect(cryptoErrorOf(() => seal(new Uint8Array(MAX_ENVELOPE_SIZE * 2))).code).toBe(CryptoErrorCode.LIMIT_EXCEEDED);
  });
});

describe('sender authentication', () => {
  // Mallory seals with her own device's static key but puts another certificate in layer 1.
  const forge = (certificate: Parameters<typeof specSeal>[1]['certificate'], content = contentRng(40)): Uint8Array =>
    specSeal(ctx, {
      ephemeralSecret: ctx.random(32),
      recipientDhKey: bob.device.dhPublicKey,
      certificate,
      staticDh: (pub) => mallory.device.dh(ctx, pub),
      plaintext2: specPlaintext2(2, content),
    }).envelope;

  it('the spec re-implementation opens when honest (so the forgeries below fail for the forgery alone)', () => {
    const honest = specSeal(ctx, {
      ephemeralSecret: ctx.random(32),
      recipientDhKey: bob.device.dhPublicKey,
      certificate: mallory.certificate,
      staticDh: (pub) => mallory.device.dh(ctx, pub),
      plaintext2: specPlaintext2(2, Uint8Array.of(1, 2, 3)),
    }).envelope;
    const opened = openEnvelope(ctx, bob.device, honest);
    expect(sameDevice(opened.sender, mallory.certificate)).toBe(true);
    expect(Array.from(opened.content)).toEqual([1, 2, 3]);
  });

  it("rejects the victim's certificate altered to carry the attacker's DH key (BAD_SIGNATURE)", () => {
    const altered = { ...alice.certificate, deviceDhKey: mallory.device.dhPublicKey };
    const e = cryptoErrorOf(() => openEnvelope(ctx, bob.device, forge(altered)));
    expect(e.code).toBe(CryptoErrorCode.BAD_SIGNATURE);
    expect(e.operation).toBe('openEnvelope');
  });

  it("rejects the victim's unaltered certificate used by someone without the victim's DH key (BAD_MAC)", () => {
    expect(cryptoErrorOf(() => openEnvelope(ctx, bob.device, forge(alice.certificate))).code).toBe(CryptoErrorCode.BAD_MAC);
  });

  it("rejects a stranger's valid certificate (BAD_MAC)", () => {
    expect(cryptoErrorOf(() => openEnvelope(ctx, bob.device, forge(stranger.certificate))).code).toBe(CryptoErrorCode.BAD_MAC);
  });

  it("rejects the attacker's own account certifying the victim's device keys (BAD_MAC: the DH key is not hers)", () => {
    const malloryAccount = AccountKeyPair.generate(ctx);
    const cert = issueDeviceCertificate(ctx, malloryAccount, { signingPublicKey: alice.device.signingPublicKey, dhPublicKey: alice.device.dhPublicKey });
    expect(cryptoErrorOf(() => openEnvelope(ctx, bob.device, forge(cert))).code).toBe(CryptoErrorCode.BAD_MAC);
  });

  it("rejects a certificate claiming the victim's account key but signed by the attacker (BAD_SIGNATURE)", () => {
    const malloryAccount = AccountKeyPair.generate(ctx);
    const cert = { ...issueDeviceCertificate(ctx, malloryAccount, mallory.device), accountKey: alice.account.publicKey };
    expect(cryptoErrorOf(() => openEnvelope(ctx, bob.device, forge(cert))).code).toBe(CryptoErrorCode.BAD_SIGNATURE);
  });

  it('refuses to seal with a certificate that does not certify the sending device', () => {
    const e = cryptoErrorOf(() =>
      sealEnvelope(ctx, { sender: { certificate: alice.certificate, device: mallory.device }, recipientDhKey: bob.device.dhPublicKey, contentType: 2, content: new Uint8Array(1) }),
    );
    expect(e.code).toBe(CryptoErrorCode.INVALID_ARGUMENT);
  });

  it('rejects splicing one envelope’s header onto another’s layer 2 (BAD_MAC)', () => {
    const a = seal(contentRng(10));
    const m = seal(contentRng(10), 2, mallory);
    const spliced = concatBytes(a.subarray(0, SPEC.headerLength), m.subarray(SPEC.headerLength));
    expect(cryptoErrorOf(() => openEnvelope(ctx, bob.device, spliced)).code).toBe(CryptoErrorCode.BAD_MAC);
    const spliced2 = concatBytes(m.subarray(0, SPEC.headerLength), a.subarray(SPEC.headerLength));
    expect(cryptoErrorOf(() => openEnvelope(ctx, bob.device, spliced2)).code).toBe(CryptoErrorCode.BAD_MAC);
  });
});

describe('wrong recipient', () => {
  it('fails with BAD_MAC for any other device, including the sender itself', () => {
    for (const who of [carol, alice, mallory]) {
      expect(cryptoErrorOf(() => openEnvelope(ctx, who.device, sample)).code).toBe(CryptoErrorCode.BAD_MAC);
    }
  });
});

describe('tampering', () => {
  const allowed = new Set<string>([
    CryptoErrorCode.MALFORMED,
    CryptoErrorCode.UNSUPPORTED_VERSION,
    CryptoErrorCode.INVALID_KEY,
    CryptoErrorCode.LOW_ORDER_POINT,
    CryptoErrorCode.BAD_MAC,
    CryptoErrorCode.BAD_SIGNATURE,
    CryptoErrorCode.LIMIT_EXCEEDED,
  ]);

  it('every single-bit flip of a 2 KiB envelope fails with a typed CryptoError', () => {
    const codes = new Map<string, number>();
    for (let i = 0; i < sample.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = sample.slice();
        bad[i]! ^= 1 << bit;
        const e = cryptoErrorOf(() => openEnvelope(ctx, bob.device, bad));
        expect(allowed.has(e.code), `byte ${i} bit ${bit}: ${e.code}`).toBe(true);
        codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
      }
    }
    // Spot-check the layering: version flips → UNSUPPORTED_VERSION, key-tag flips → INVALID_KEY,
    // layer-1 length flips → MALFORMED (out of range) or BAD_MAC (in range: the AAD covers it), the rest → BAD_MAC.
    expect(codes.get(CryptoErrorCode.UNSUPPORTED_VERSION)).toBe(8);
    expect(codes.get(CryptoErrorCode.INVALID_KEY)).toBe(8);
    expect(codes.get(CryptoErrorCode.MALFORMED) ?? 0).toBeLessThanOrEqual(16);
    expect((codes.get(CryptoErrorCode.BAD_MAC) ?? 0) + (codes.get(CryptoErrorCode.LOW_ORDER_POINT) ?? 0) + (codes.get(CryptoErrorCode.MALFORMED) ?? 0)).toBe(
      sample.length * 8 - 16,
    );
  });

  it('every truncation and every extension up to the next bucket fails with a typed CryptoError', () => {
    for (let n = 0; n < sample.length; n++) {
      expect(cryptoErrorOf(() => openEnvelope(ctx, bob.device, sample.subarray(0, n))).code).toBe(CryptoErrorCode.MALFORMED);
    }
    const longer = concatBytes(sample, new Uint8Array(sample.length));
    for (let n = sample.length + 1; n <= longer.length; n++) {
      const e = cryptoErrorOf(() => openEnvelope(ctx, bob.device, longer.subarray(0, n)));
      // Non-bucket lengths are rejected before any crypto; the next bucket fails at layer 2.
      expect(e.code, `length ${n}`).toBe(n === 2 * sample.length ? CryptoErrorCode.BAD_MAC : CryptoErrorCode.MALFORMED);
    }
    expect(cryptoErrorOf(() => openEnvelope(ctx, bob.device, new Uint8Array(MAX_ENVELOPE_SIZE + 1))).code).toBe(CryptoErrorCode.LIMIT_EXCEEDED);
    // A 4 KiB envelope cut down to the 2 KiB bucket.
    const env4k = seal(new Uint8Array(2000));
    expect(env4k.length).toBe(4096);
    expect(cryptoErrorOf(() => openEnvelope(ctx, bob.device, env4k.subarray(0, 2048))).code).toBe(CryptoErrorCode.BAD_MAC);
  });

  it('tampering with the padding region of the ciphertext fails (the AEAD covers the padding)', () => {
    const env = seal(Uint8Array.of(1, 2, 3));
    // Plaintext offset 0 is the type, 1..3 the content, 4 the marker; padding from 5 on. c2 starts at 242.
    for (const off of [5, 100, env.length - SPEC.headerLength - 17]) {
      const bad = env.slice();
      bad[SPEC.headerLength + off]! ^= 0x01;
      expect(cryptoErrorOf(() => openEnvelope(ctx, bob.device, bad)).code).toBe(CryptoErrorCode.BAD_MAC);
    }
  });

  it('authentic but malformed padding is rejected after the AEAD verifies (MALFORMED)', () => {
    const build = (plaintext2: Uint8Array): Uint8Array =>
      specSeal(ctx, {
        ephemeralSecret: ctx.random(32),
        recipientDhKey: bob.device.dhPublicKey,
        certificate: alice.certificate,
        staticDh: (pub) => alice.device.dh(ctx, pub),
        plaintext2,
      }).envelope;
    const good = specPlaintext2(2, Uint8Array.of(9, 9));
    expect(Array.from(openEnvelope(ctx, bob.device, build(good)).content)).toEqual([9, 9]);
    const nonZeroPadding = good.slice();
    nonZeroPadding[good.length - 1] = 0x01;
    const noMarker = good.slice();
    noMarker[3] = 0x00;
    const wrongMarker = good.slice();
    wrongMarker[3] = 0x81;
    const allZero = new Uint8Array(good.length);
    const noContentType = new Uint8Array(good.length);
    noContentType[0] = 0x80;
    for (const p of [nonZeroPadding, noMarker, wrongMarker, allZero, noContentType]) {
      expect(cryptoErrorOf(() => openEnvelope(ctx, bob.device, build(p))).code).toBe(CryptoErrorCode.MALFORMED);
    }
  });

  it('fuzz: anyone can build layer 1, so arbitrary certificate bytes inside it yield typed CryptoErrors only', () => {
    const certCodes = new Set<string>([CryptoErrorCode.MALFORMED, CryptoErrorCode.UNSUPPORTED_VERSION, CryptoErrorCode.INVALID_KEY, CryptoErrorCode.BAD_SIGNATURE, CryptoErrorCode.LOW_ORDER_POINT, CryptoErrorCode.BAD_MAC]);
    const good = encodeDeviceCertificate(alice.certificate);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ minLength: 190, maxLength: 190 }),
          // Structurally valid (version, key tags, empty extension area in place), random keys/times/signature.
          fc.uint8Array({ minLength: 190, maxLength: 190 }).map((b) => ((b[0] = 2), (b[1] = 1), (b[34] = 1), (b[67] = 2), (b[124] = 0), (b[125] = 0), b)),
          // The genuine certificate with a few bytes changed.
          fc.array(fc.tuple(fc.nat(189), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 3 }).map((edits) => {
            const b = good.slice();
            for (const [at, x] of edits) b[at]! ^= x;
            return b;
          }),
        ),
        (certBytes) => {
          const env = specSeal(ctx, {
            ephemeralSecret: ctx.random(32),
            recipientDhKey: bob.device.dhPublicKey,
            certificate: certBytes,
            staticDh: (pub) => alice.device.dh(ctx, pub),
            plaintext2: specPlaintext2(2, Uint8Array.of(1)),
          }).envelope;
          const e = cryptoErrorOf(() => openEnvelope(ctx, bob.device, env));
          expect(certCodes.has(e.code), e.code).toBe(true);
        },
      ),
      { seed: FC_SEED, numRuns: DEEP ? 2000 : 60 },
    );
  });

  it('a low-order ephemeral key fails with LOW_ORDER_POINT', () => {
    const bad = sample.slice();
    bad.fill(0, 2, 34); // E = 0: the identity point
    expect(cryptoErrorOf(() => openEnvelope(ctx, bob.device, bad)).code).toBe(CryptoErrorCode.LOW_ORDER_POINT);
  });

  it('fuzz: random and mutated envelopes yield typed CryptoErrors only', () => {
    const numRuns = DEEP ? 5000 : 150;
    const typedOnly = (bytes: Uint8Array): void => {
      const e = cryptoErrorOf(() => openEnvelope(ctx, bob.device, bytes));
      expect(allowed.has(e.code)).toBe(true);
    };
    // Random bytes, biased toward bucket lengths so the decoder gets past the length check.
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.constantFrom(2048, 4096).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
          fc.uint8Array({ minLength: 2048, maxLength: 2048 }).map((b) => ((b[0] = 1), (b[1] = 2), b)),
        ),
        typedOnly,
      ),
      { seed: FC_SEED, numRuns },
    );
    // Mutations of a valid envelope: overwrite a run of bytes, insert, delete.
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), at: fc.nat(sample.length - 1), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(sample.length), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
      fc.record({ kind: fc.constant('delete' as const), at: fc.nat(sample.length - 1), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
    );
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (ms) => {
        let b: Uint8Array = sample.slice();
        for (const m of ms) {
          if (m.kind === 'set') {
            const patch = m.bytes.subarray(0, b.length - Math.min(m.at, b.length));
            b.set(patch, Math.min(m.at, b.length));
          } else if (m.kind === 'insert') {
            b = concatBytes(b.subarray(0, m.at), m.bytes, b.subarray(m.at));
          } else {
            b = concatBytes(b.subarray(0, m.at), b.subarray(m.at + m.bytes.length));
          }
        }
        if (toHex(b) === toHex(sample)) return; // a no-op mutation (same bytes written back)
        typedOnly(b);
      }),
      { seed: FC_SEED, numRuns },
    );
  });
});

describe('secret hygiene', () => {
  it('nothing returned or thrown by open/seal shows any secret', () => {
    const ephemeralSecret = deterministicRng('ee')(32);
    const c = createContext({ backend: nobleBackend, random: () => Uint8Array.from(ephemeralSecret), now: () => 1_750_000_001_000 });
    const content = Uint8Array.of(0xde, 0xad);
    const env = seal(content, 2, alice, bob.device.dhPublicKey, c);
    const trace = specSeal(c, {
      ephemeralSecret,
      recipientDhKey: bob.device.dhPublicKey,
      certificate: alice.certificate,
      staticDh: (pub) => alice.device.dh(c, pub),
      plaintext2: specPlaintext2(2, content),
    });
    expect(toHex(trace.envelope)).toBe(toHex(env)); // the trace is this envelope's
    const secrets = [
      ephemeralSecret,
      trace.dh1,
      trace.okm1,
      trace.dh2,
      trace.okm2,
      bob.device.exportSecrets().dhSecret,
      bob.device.exportSecrets().signingSeed,
      alice.device.exportSecrets().dhSecret,
      alice.device.exportSecrets().signingSeed,
      alice.account.exportSeed(),
    ];
    const leaks = (s: string): string[] =>
      secrets.flatMap((k) => {
        const forms = [toHex(k), toHex(k.subarray(0, 12)), Array.from(k.subarray(0, 8)).join(', '), Array.from(k.subarray(0, 8)).join(','), `"0":${k[0]},"1":${k[1]},"2":${k[2]},"3":${k[3]}`];
        return forms.filter((f) => s.toLowerCase().includes(f));
      });
    const opened: OpenedEnvelope = openEnvelope(c, bob.device, env);
    const shown = [JSON.stringify(opened), inspect(opened, { depth: 10, maxArrayLength: null }), String(opened)];
    const bad = env.slice();
    bad[500]! ^= 1;
    const err = cryptoErrorOf(() => openEnvelope(c, bob.device, bad));
    shown.push(JSON.stringify(err), inspect(err), String(err), err.message, inspect(err.cause));
    const wrong = cryptoErrorOf(() => openEnvelope(c, carol.device, env));
    shown.push(JSON.stringify(wrong), inspect(wrong), String(wrong));
    for (const s of shown) expect(leaks(s)).toEqual([]);
  });

  it('wipes the derived keys it owns', () => {
    const outputs: Uint8Array[] = [];
    const spy = { ...nobleBackend, hkdfSha256: (...a: Parameters<typeof nobleBackend.hkdfSha256>) => (outputs.push(nobleBackend.hkdfSha256(...a)), outputs[outputs.length - 1]!) };
    const c = createContext({ backend: spy, now: () => 1_750_000_001_000 });
    const env = seal(Uint8Array.of(1), 2, alice, bob.device.dhPublicKey, c);
    expect(outputs.length).toBe(2);
    openEnvelope(c, bob.device, env);
    expect(outputs.length).toBe(4);
    for (const o of outputs) expect(o.every((x) => x === 0)).toBe(true);
  });

  it('rejects bad argument types with TypeError/RangeError, not CryptoError', () => {
    expect(() => openEnvelope(ctx, bob.device, 'nope' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => seal(Uint8Array.of(1), 256)).toThrow(RangeError);
    expect(() => seal(Uint8Array.of(1), 1.5)).toThrow(RangeError);
    expect(() => seal(Uint8Array.of(1), 2, alice, new Uint8Array(31))).toThrow(RangeError);
  });
});

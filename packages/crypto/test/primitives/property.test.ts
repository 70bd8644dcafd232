// Property tests: node and noble are byte-identical — same output, or the same error class, code
// and message — on random inputs for every method, valid and invalid alike. Seeded and bounded;
// MW_DEEP=1 runs 50× more cases, MW_FC_SEED=n changes the seed.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { _ED25519_SMALL_ORDER_ENCODINGS, nobleBackend } from '../../src/primitives/noble.js';
import { FC_SEED, both, hex, nodeBackend, runs } from './_backends.js';

const bytes = (min: number, max: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: min, maxLength: max });
const b32 = bytes(32, 32);
const opts = (n: number): fc.Parameters<unknown> => ({ seed: FC_SEED, numRuns: runs(n) });
const flip = (b: Uint8Array, bit: number): Uint8Array => {
  const c = b.slice();
  const i = Math.floor(bit / 8) % c.length;
  c[i] = (c[i] ?? 0) ^ (1 << bit % 8);
  return c;
};
const same = (f: Parameters<typeof both>[0]): void => {
  const [a, n] = both(f);
  expect(n).toEqual(a);
};

/** Public keys that hit the edge cases as well as random ones. */
const edPublicKey = fc.oneof(
  b32,
  fc.constantFrom(..._ED25519_SMALL_ORDER_ENCODINGS.map(hex)),
  b32.map((k) => {
    const c = k.slice();
    c[31] = (c[31] ?? 0) | 0x7f; // often y ≥ p
    c[0] = 0xff;
    for (let i = 1; i < 31; i++) c[i] = 0xff;
    return c;
  }),
);

describe('hashes, HMAC, HKDF', () => {
  it('sha256 / sha512 / hmacSha256', () => {
    fc.assert(
      fc.property(bytes(0, 300), bytes(0, 200), (m, k) => {
        same((b) => b.sha256(m));
        same((b) => b.sha512(m));
        same((b) => b.hmacSha256(k, m));
      }),
      opts(100),
    );
  });
  it('hkdfSha256 over lengths, salts and infos (including info > 1024 bytes)', () => {
    fc.assert(
      fc.property(bytes(0, 80), bytes(0, 80), bytes(0, 1100), fc.integer({ min: -2, max: 255 * 32 + 2 }), (ikm, salt, info, len) => {
        same((b) => b.hkdfSha256(ikm, salt, info, len));
      }),
      opts(60),
    );
  });
});

describe('X25519', () => {
  it('x25519PublicKey on random secrets', () => {
    fc.assert(fc.property(b32, (sk) => same((b) => b.x25519PublicKey(sk))), opts(60));
  });
  it('x25519 on random secrets and random 32-byte public keys (incl. twist, non-canonical, low order)', () => {
    const pk = fc.oneof(
      b32,
      b32.map((k) => {
        const c = k.slice();
        c[31] = (c[31] ?? 0) | 0x80; // top bit set: must be masked
        return c;
      }),
      fc.integer({ min: 0, max: 40 }).map((d) => {
        // p + d for small d: non-canonical u (RFC 7748 §5); also 0, 1 (low order)
        const c = new Uint8Array(32).fill(0xff);
        c[31] = 0x7f;
        c[0] = 0xed + d > 0xff ? 0xff : 0xed + d;
        return d > 18 ? new Uint8Array(32).map((_, i) => (i === 0 ? d - 19 : 0)) : c;
      }),
    );
    fc.assert(fc.property(b32, pk, (sk, p) => same((b) => b.x25519(sk, p))), opts(80));
  });
  it('x25519 agreement: both sides of a DH get the same secret on both backends', () => {
    fc.assert(
      fc.property(b32, b32, (a, c) => {
        const A = nobleBackend.x25519PublicKey(a);
        const C = nodeBackend.x25519PublicKey(c);
        expect(nodeBackend.x25519(a, C)).toEqual(nobleBackend.x25519(c, A));
      }),
      opts(30),
    );
  });
});

describe('Ed25519', () => {
  it('public keys and signatures are byte-identical', () => {
    fc.assert(
      fc.property(b32, bytes(0, 300), (seed, msg) => {
        same((b) => b.ed25519PublicKey(seed));
        same((b) => b.ed25519Sign(seed, msg));
      }),
      opts(60),
    );
  });
  it('verification of valid signatures and of every single-bit flip of them', () => {
    fc.assert(
      fc.property(b32, bytes(0, 100), fc.integer({ min: 0, max: 64 * 8 + 32 * 8 - 1 }), (seed, msg, bit) => {
        const pk = nobleBackend.ed25519PublicKey(seed);
        const sig = nobleBackend.ed25519Sign(seed, msg);
        same((b) => b.ed25519Verify(pk, msg, sig));
        if (bit < 512) same((b) => b.ed25519Verify(pk, msg, flip(sig, bit)));
        else same((b) => b.ed25519Verify(flip(pk, bit - 512), msg, sig));
      }),
      opts(80),
    );
  });
  it('verification of random public keys and random signatures', () => {
    fc.assert(
      fc.property(edPublicKey, bytes(0, 50), bytes(60, 68), (pk, msg, sig) => {
        same((b) => b.ed25519Verify(pk, msg, sig));
      }),
      opts(150),
    );
  });
});

describe('AES-256-GCM', () => {
  it('encryption is byte-identical and round-trips', () => {
    fc.assert(
      fc.property(b32, bytes(12, 12), bytes(0, 300), bytes(0, 64), (k, n, pt, aad) => {
        same((b) => b.aes256GcmEncrypt(k, n, pt, aad));
        same((b) => b.aes256GcmDecrypt(k, n, nobleBackend.aes256GcmEncrypt(k, n, pt, aad), aad));
      }),
      opts(80),
    );
  });
  it('any flipped bit in ciphertext or tag, or a changed AAD, fails identically with BAD_MAC', () => {
    fc.assert(
      fc.property(b32, bytes(12, 12), bytes(0, 100), bytes(0, 32), fc.nat(), fc.boolean(), (k, n, pt, aad, bit, inAad) => {
        const ct = nobleBackend.aes256GcmEncrypt(k, n, pt, aad);
        const [a, m] = inAad
          ? both((b) => b.aes256GcmDecrypt(k, n, ct, aad.length ? flip(aad, bit % (aad.length * 8)) : new Uint8Array([0])))
          : both((b) => b.aes256GcmDecrypt(k, n, flip(ct, bit % (ct.length * 8)), aad));
        expect(m).toEqual(a);
        expect(a).toMatchObject({ code: 'MW_CRYPTO_BAD_MAC' });
      }),
      opts(80),
    );
  });
  it('random garbage ciphertexts of every length fail identically', () => {
    fc.assert(fc.property(b32, bytes(12, 12), bytes(0, 80), (k, n, ct) => same((b) => b.aes256GcmDecrypt(k, n, ct, new Uint8Array(0)))), opts(60));
  });
});

describe('ML-KEM-768 (node delegates to noble: a light check)', () => {
  it('keygen / encapsulate / decapsulate, including random ciphertexts', () => {
    fc.assert(
      fc.property(bytes(64, 64), b32, bytes(1088, 1088), (seed, m, junk) => {
        const kp = nobleBackend.mlKem768KeyGen(seed);
        same((b) => b.mlKem768KeyGen(seed) as unknown as { [k: string]: Uint8Array });
        same((b) => b.mlKem768Encapsulate(kp.publicKey, m) as unknown as { [k: string]: Uint8Array });
        same((b) => b.mlKem768Decapsulate(junk, kp.secretKey));
      }),
      opts(5),
    );
  });
});

import { gcm } from '@noble/ciphers/aes.js';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import { randomBytes } from '@noble/hashes/utils.js';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { concatBytes } from '../bytes.js';
import { CryptoError, CryptoErrorCode, assertBytes } from '../errors.js';
import type { CryptoBackend } from './backend.js';

const op = (name: string): string => `noble.${name}`;

/** Largest request Web Crypto's getRandomValues serves in one call. */
const RANDOM_CHUNK = 65536;

function isAllZero(b: Uint8Array): boolean {
  let acc = 0;
  for (const x of b) acc |= x;
  return acc === 0;
}

// ── Ed25519 strict verification (docs/spec/primitives.md §1.4) ──────────────
// Both backends apply the same byte-level rules before any curve arithmetic, so they accept and
// reject exactly the same (A, R, S): OpenSSL and noble disagree on several edge cases otherwise.

/** Group order L = 2^252 + 27742317777372353535851937790883648493, little-endian. */
const ED25519_L_LE = Uint8Array.from([
  0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
]);

/**
 * Every 32-byte string that noble's strict decoder (or OpenSSL's) maps to one of the 8 points of
 * small order: the canonical encodings of the 8 torsion points plus the "negative zero" variants
 * (sign bit set, x = 0) of the two points with x = 0. Non-canonical y (≥ p) is rejected
 * separately, so no other encoding of a small-order point can reach the arithmetic.
 * Completeness is pinned by test/primitives/ed25519-rules.test.ts.
 */
export const _ED25519_SMALL_ORDER_ENCODINGS: readonly string[] = [
  '0100000000000000000000000000000000000000000000000000000000000000', // identity (order 1)
  '0100000000000000000000000000000000000000000000000000000000000080', // identity, x = -0
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // (0, -1), order 2
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff', // (0, -1), x = -0
  '0000000000000000000000000000000000000000000000000000000000000000', // order 4
  '0000000000000000000000000000000000000000000000000000000000000080', // order 4
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a', // order 8
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa', // order 8
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05', // order 8
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85', // order 8
];
const SMALL_ORDER = _ED25519_SMALL_ORDER_ENCODINGS.map((h) => Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16)));

function equal32(a: Uint8Array, aOff: number, b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < 32; i++) acc |= (a[aOff + i] ?? 0) ^ (b[i] ?? 0);
  return acc === 0;
}

/** y (the low 255 bits, little-endian) < p = 2^255 - 19. */
function isCanonicalY(b: Uint8Array, off: number): boolean {
  if (((b[off + 31] ?? 0) & 0x7f) !== 0x7f) return true;
  for (let i = 30; i >= 1; i--) if (b[off + i] !== 0xff) return true;
  return (b[off] ?? 0) < 0xed;
}

/** S (little-endian at off) < L. */
function isScalarBelowL(b: Uint8Array, off: number): boolean {
  for (let i = 31; i >= 0; i--) {
    const x = b[off + i] ?? 0;
    const l = ED25519_L_LE[i] ?? 0;
    if (x !== l) return x < l;
  }
  return false; // S == L
}

function isSmallOrderEncoding(b: Uint8Array, off: number): boolean {
  let hit = false;
  for (const e of SMALL_ORDER) hit = equal32(b, off, e) || hit;
  return hit;
}

/**
 * The byte-level Ed25519 rules shared by every backend (pk is 32 bytes, sig 64 bytes): A has a
 * canonical y and is not a small-order point; R is not a small-order point; S < L. Returns false
 * when the signature must be rejected without further work. @internal
 */
export function _ed25519StrictPrecheck(pk: Uint8Array, sig: Uint8Array): boolean {
  if (!isCanonicalY(pk, 0)) return false;
  if (isSmallOrderEncoding(pk, 0)) return false;
  if (isSmallOrderEncoding(sig, 0)) return false;
  return isScalarBelowL(sig, 32);
}

function bytesToBigLE(b: Uint8Array): bigint {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i] ?? 0);
  return n;
}

const ED25519_L = bytesToBigLE(ED25519_L_LE);

/**
 * RFC 8032 §5.1.7 with the cofactorless equation, checked on encodings: accept iff
 * encode([S]B - [k]A) == R (the byte string), k = SHA-512(R ‖ A ‖ M) mod L. This is exactly what
 * OpenSSL computes; noble's own verify() uses the cofactored equation, which differs for R or A
 * with a torsion component. Assumes _ed25519StrictPrecheck passed. Throws on an undecodable A.
 */
function ed25519VerifyCofactorless(pk: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  const Point = ed25519.Point;
  const A = Point.fromBytes(pk, false);
  const r = sig.subarray(0, 32);
  const s = bytesToBigLE(sig.subarray(32, 64));
  const k = bytesToBigLE(sha512(concatBytes(r, pk, msg))) % ED25519_L;
  const check = Point.BASE.multiplyUnsafe(s).subtract(A.multiplyUnsafe(k)).toBytes();
  return equal32(check, 0, r);
}

/** The reference backend: `@noble/*` only, runs in every JavaScript environment. */
export const nobleBackend: CryptoBackend = {
  name: 'noble',
  randomBytes(n) {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${op('randomBytes')}: bad length ${n}`);
    // Web Crypto's getRandomValues refuses more than 65536 bytes per call; fill larger requests
    // in chunks so both backends accept the same lengths.
    if (n <= RANDOM_CHUNK) return randomBytes(n);
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += RANDOM_CHUNK) out.set(randomBytes(Math.min(RANDOM_CHUNK, n - i)), i);
    return out;
  },
  sha256: (m) => (assertBytes(m, op('sha256'), 'msg'), sha256(m)),
  sha512: (m) => (assertBytes(m, op('sha512'), 'msg'), sha512(m)),
  hmacSha256(key, msg) {
    assertBytes(key, op('hmacSha256'), 'key');
    assertBytes(msg, op('hmacSha256'), 'msg');
    return hmac(sha256, key, msg);
  },
  hkdfSha256(ikm, salt, info, length) {
    assertBytes(ikm, op('hkdfSha256'), 'ikm');
    assertBytes(salt, op('hkdfSha256'), 'salt');
    assertBytes(info, op('hkdfSha256'), 'info');
    if (!Number.isSafeInteger(length) || length < 1 || length > 255 * 32) {
      throw new RangeError(`${op('hkdfSha256')}: length ${length} out of range`);
    }
    return hkdf(sha256, ikm, salt, info, length);
  },
  x25519PublicKey(sk) {
    assertBytes(sk, op('x25519PublicKey'), 'secretKey', 32);
    return x25519.getPublicKey(sk);
  },
  x25519(sk, pk) {
    assertBytes(sk, op('x25519'), 'secretKey', 32);
    assertBytes(pk, op('x25519'), 'publicKey', 32);
    let out: Uint8Array;
    try {
      out = x25519.scalarMult(sk, pk);
    } catch {
      // noble rejects the all-zero result itself; normalise to our error.
      throw new CryptoError(CryptoErrorCode.LOW_ORDER_POINT, op('x25519'), 'shared secret is all zero (low-order public key)');
    }
    if (isAllZero(out)) {
      throw new CryptoError(CryptoErrorCode.LOW_ORDER_POINT, op('x25519'), 'shared secret is all zero (low-order public key)');
    }
    return out;
  },
  ed25519PublicKey(seed) {
    assertBytes(seed, op('ed25519PublicKey'), 'seed', 32);
    return ed25519.getPublicKey(seed);
  },
  ed25519Sign(seed, msg) {
    assertBytes(seed, op('ed25519Sign'), 'seed', 32);
    assertBytes(msg, op('ed25519Sign'), 'msg');
    return ed25519.sign(msg, seed);
  },
  ed25519Verify(pk, msg, sig) {
    assertBytes(pk, op('ed25519Verify'), 'publicKey');
    assertBytes(msg, op('ed25519Verify'), 'msg');
    assertBytes(sig, op('ed25519Verify'), 'signature');
    if (pk.length !== 32 || sig.length !== 64) return false;
    if (!_ed25519StrictPrecheck(pk, sig)) return false;
    try {
      return ed25519VerifyCofactorless(pk, msg, sig);
    } catch {
      return false;
    }
  },
  mlKem768KeyGen(seed) {
    assertBytes(seed, op('mlKem768KeyGen'), 'seed', 64);
    const { publicKey, secretKey } = ml_kem768.keygen(seed);
    return { publicKey, secretKey };
  },
  mlKem768Encapsulate(pk, m) {
    assertBytes(pk, op('mlKem768Encapsulate'), 'publicKey');
    assertBytes(m, op('mlKem768Encapsulate'), 'm', 32);
    if (pk.length !== 1184) {
      throw new CryptoError(CryptoErrorCode.INVALID_KEY, op('mlKem768Encapsulate'), 'encapsulation key must be 1184 bytes');
    }
    try {
      const { cipherText, sharedSecret } = ml_kem768.encapsulate(pk, m);
      return { ciphertext: cipherText, sharedSecret };
    } catch (cause) {
      // FIPS 203 §7.2 modulus check failed: coefficients not reduced mod q.
      throw new CryptoError(CryptoErrorCode.INVALID_KEY, op('mlKem768Encapsulate'), 'encapsulation key failed the modulus check', { cause });
    }
  },
  mlKem768Decapsulate(ct, sk) {
    assertBytes(ct, op('mlKem768Decapsulate'), 'ciphertext');
    assertBytes(sk, op('mlKem768Decapsulate'), 'secretKey');
    if (ct.length !== 1088) throw new CryptoError(CryptoErrorCode.MALFORMED, op('mlKem768Decapsulate'), 'ciphertext must be 1088 bytes');
    if (sk.length !== 2400) throw new CryptoError(CryptoErrorCode.INVALID_KEY, op('mlKem768Decapsulate'), 'decapsulation key must be 2400 bytes');
    try {
      return ml_kem768.decapsulate(ct, sk);
    } catch (cause) {
      throw new CryptoError(CryptoErrorCode.INVALID_KEY, op('mlKem768Decapsulate'), 'decapsulation key failed its hash check', { cause });
    }
  },
  aes256GcmEncrypt(key, nonce, pt, aad) {
    assertBytes(key, op('aes256GcmEncrypt'), 'key', 32);
    assertBytes(nonce, op('aes256GcmEncrypt'), 'nonce', 12);
    assertBytes(pt, op('aes256GcmEncrypt'), 'plaintext');
    assertBytes(aad, op('aes256GcmEncrypt'), 'aad');
    return gcm(key, nonce, aad).encrypt(pt);
  },
  aes256GcmDecrypt(key, nonce, ct, aad) {
    assertBytes(key, op('aes256GcmDecrypt'), 'key', 32);
    assertBytes(nonce, op('aes256GcmDecrypt'), 'nonce', 12);
    assertBytes(ct, op('aes256GcmDecrypt'), 'ciphertext');
    assertBytes(aad, op('aes256GcmDecrypt'), 'aad');
    if (ct.length < 16) throw new CryptoError(CryptoErrorCode.BAD_MAC, op('aes256GcmDecrypt'), 'ciphertext shorter than the tag');
    try {
      return gcm(key, nonce, aad).decrypt(ct);
    } catch {
      throw new CryptoError(CryptoErrorCode.BAD_MAC, op('aes256GcmDecrypt'), 'authentication tag mismatch');
    }
  },
};

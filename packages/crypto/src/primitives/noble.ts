import { gcm } from '@noble/ciphers/aes.js';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import { randomBytes } from '@noble/hashes/utils.js';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { CryptoError, CryptoErrorCode, assertBytes } from '../errors.js';
import type { CryptoBackend } from './backend.js';

const op = (name: string): string => `noble.${name}`;

function isAllZero(b: Uint8Array): boolean {
  let acc = 0;
  for (const x of b) acc |= x;
  return acc === 0;
}

/** The reference backend: `@noble/*` only, runs in every JavaScript environment. */
export const nobleBackend: CryptoBackend = {
  name: 'noble',
  randomBytes(n) {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${op('randomBytes')}: bad length ${n}`);
    return randomBytes(n);
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
    try {
      return ed25519.verify(sig, msg, pk, { zip215: false });
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

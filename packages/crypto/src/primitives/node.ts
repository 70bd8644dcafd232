import type * as NodeCrypto from 'node:crypto';
import { CryptoError, CryptoErrorCode, assertBytes } from '../errors.js';
import type { CryptoBackend } from './backend.js';
import { _ed25519StrictPrecheck, nobleBackend } from './noble.js';
import type { MlKem768 } from './oqs-ml-kem.js';

export interface NodeBackendOptions {
  /**
   * A faster ML-KEM-768 (liboqs WebAssembly, see ./oqs-ml-kem.ts) to use instead of noble's.
   * It must be byte-identical to noble's; platformBackend() passes one only after its self-test.
   */
  readonly mlKem768?: MlKem768;
}

/**
 * The accelerated backend: node:crypto (OpenSSL) for X25519, Ed25519, AES-256-GCM, SHA-2 and
 * HMAC (and HKDF built on that HMAC); for ML-KEM-768 (not in node:crypto on Node 20) noble, or
 * `options.mlKem768` (liboqs WebAssembly) when given. It is byte-identical to `nobleBackend` on every input — the
 * same outputs, the same accept/reject decisions, the same error types and codes — which
 * test/primitives/ checks with official vectors, Wycheproof and property tests.
 *
 * node:crypto is passed in rather than imported, so that this module never names it at run time
 * and bundlers for browsers never see it (see `platformBackend()` in ./index.ts).
 *
 * Raw keys are imported as JWK: node hands the bytes straight to
 * `EVP_PKEY_new_raw_*_key`, about ten times faster than going through OpenSSL's DER decoders.
 * For private keys node ignores the JWK `x` member (the public key is recomputed from `d`); the
 * backend checks this once at creation and falls back to PKCS#8 DER if a future Node starts
 * validating `x`. Secret JWK members are strings and cannot be wiped: the secret lives on in the
 * KeyObject (OpenSSL memory, freed on GC) exactly as long as noble's bigint scalars do.
 */
export function createNodeBackend(nodeCrypto: typeof NodeCrypto, options: NodeBackendOptions = {}): CryptoBackend {
  const c = nodeCrypto;
  const op = (name: string): string => `node.${name}`;

  type Curve = 'X25519' | 'Ed25519';
  const b64u = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');
  // RFC 8410 PKCS#8 prefixes for a 32-byte raw private key (fallback path only).
  const PKCS8_PREFIX: Record<Curve, Uint8Array> = {
    X25519: Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]),
    Ed25519: Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]),
  };
  const privateJwk = (crv: Curve, d: Uint8Array): NodeCrypto.KeyObject =>
    c.createPrivateKey({ key: { kty: 'OKP', crv, d: b64u(d), x: '' }, format: 'jwk' });
  const privateDer = (crv: Curve, d: Uint8Array): NodeCrypto.KeyObject => {
    const der = new Uint8Array(48);
    der.set(PKCS8_PREFIX[crv]);
    der.set(d, 16);
    try {
      return c.createPrivateKey({ key: Buffer.from(der.buffer), format: 'der', type: 'pkcs8' });
    } finally {
      der.fill(0);
    }
  };
  // Probe once: RFC 8032 test 1 (Ed25519) and RFC 7748 §6.1 Alice (X25519) must round-trip.
  const jwkWorks = ((): boolean => {
    try {
      const ed = c.createPublicKey(privateJwk('Ed25519', hex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60')));
      const xk = c.createPublicKey(privateJwk('X25519', hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a')));
      return (
        ed.export({ format: 'jwk' }).x === b64u(hex('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a')) &&
        xk.export({ format: 'jwk' }).x === b64u(hex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a'))
      );
    } catch {
      return false;
    }
  })();
  const importRaw = jwkWorks ? privateJwk : privateDer;

  // Importing a raw X25519 or Ed25519 private key makes OpenSSL derive its public key: a full
  // scalar multiplication, as costly as the Diffie–Hellman itself (profile in docs/benchmarks.md).
  // The same secret array is often used several times in a row — a fresh ratchet key gives its
  // public key and then one or two DHs, an ephemeral key three PQXDH DHs, a prekey or identity key
  // several — so an import is remembered per input array (WeakMap: it neither keeps the array
  // alive nor outlives it). An entry is used only while the array still holds exactly the bytes
  // it was made from (compared in constant time against the entry's own copy), so a wiped or
  // reused array gets a fresh import. The copy is wiped when the array is collected. Secret
  // lifetime: the KeyObject already held the secret until garbage collection; now it is held as
  // long as the caller's array is reachable, which is where the secret lives anyway.
  interface Cached {
    readonly curve: Curve;
    readonly bytes: Uint8Array;
    readonly key: NodeCrypto.KeyObject;
  }
  const imported = new WeakMap<Uint8Array, Cached>();
  const wipeOnCollect = typeof FinalizationRegistry === 'function' ? new FinalizationRegistry<Uint8Array>((b) => b.fill(0)) : undefined;
  const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => {
    if (a.length !== b.length) return false;
    let acc = 0;
    for (let i = 0; i < a.length; i++) acc |= (a[i] ?? 0) ^ (b[i] ?? 0);
    return acc === 0;
  };
  const importPrivate = (crv: Curve, d: Uint8Array): NodeCrypto.KeyObject => {
    const hit = imported.get(d);
    if (hit && hit.curve === crv && sameBytes(hit.bytes, d)) return hit.key;
    const key = importRaw(crv, d);
    const bytes = Uint8Array.from(d);
    if (hit) hit.bytes.fill(0);
    imported.set(d, { curve: crv, bytes, key });
    wipeOnCollect?.register(d, bytes);
    return key;
  };
  const importPublic = (crv: Curve, x: Uint8Array): NodeCrypto.KeyObject =>
    c.createPublicKey({ key: { kty: 'OKP', crv, x: b64u(x) }, format: 'jwk' });
  const publicOf = (key: NodeCrypto.KeyObject): Uint8Array => {
    const x = c.createPublicKey(key).export({ format: 'jwk' }).x;
    if (typeof x !== 'string') throw new Error('node:crypto returned a JWK without x');
    return toU8(Buffer.from(x, 'base64url'));
  };

  const lowOrder = (): CryptoError =>
    new CryptoError(CryptoErrorCode.LOW_ORDER_POINT, op('x25519'), 'shared secret is all zero (low-order public key)');

  const kem: MlKem768 = options.mlKem768 ?? nobleBackend;
  const hashOneShot = typeof c.hash === 'function' ? c.hash : undefined;

  return {
    name: options.mlKem768 ? 'node+oqs' : 'node',
    randomBytes(n) {
      if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${op('randomBytes')}: bad length ${n}`);
      return c.randomFillSync(new Uint8Array(n));
    },
    sha256(m) {
      assertBytes(m, op('sha256'), 'msg');
      return toU8(hashOneShot ? hashOneShot('sha256', m, 'buffer') : c.createHash('sha256').update(m).digest());
    },
    sha512(m) {
      assertBytes(m, op('sha512'), 'msg');
      return toU8(hashOneShot ? hashOneShot('sha512', m, 'buffer') : c.createHash('sha512').update(m).digest());
    },
    hmacSha256(key, msg) {
      assertBytes(key, op('hmacSha256'), 'key');
      assertBytes(msg, op('hmacSha256'), 'msg');
      return toU8(c.createHmac('sha256', key).update(msg).digest());
    },
    // RFC 5869 over node's HMAC: ~35% faster than noble for the ratchet's 44-byte outputs, while
    // node's own hkdfSync is no faster than noble and caps info at 1024 bytes. An empty salt is
    // HMAC's all-zero key, exactly as RFC 5869 §2.2 prescribes.
    hkdfSha256(ikm, salt, info, length) {
      assertBytes(ikm, op('hkdfSha256'), 'ikm');
      assertBytes(salt, op('hkdfSha256'), 'salt');
      assertBytes(info, op('hkdfSha256'), 'info');
      if (!Number.isSafeInteger(length) || length < 1 || length > 255 * 32) {
        throw new RangeError(`${op('hkdfSha256')}: length ${length} out of range`);
      }
      const prk = c.createHmac('sha256', salt).update(ikm).digest();
      const out = new Uint8Array(length);
      let t: Uint8Array = new Uint8Array(0);
      for (let i = 1, off = 0; off < length; i++, off += 32) {
        const next = c.createHmac('sha256', prk).update(t).update(info).update(Uint8Array.of(i)).digest();
        t.fill(0);
        t = next;
        out.set(t.subarray(0, Math.min(32, length - off)), off);
      }
      t.fill(0);
      prk.fill(0);
      return out;
    },
    x25519PublicKey(sk) {
      assertBytes(sk, op('x25519PublicKey'), 'secretKey', 32);
      return publicOf(importPrivate('X25519', sk));
    },
    x25519(sk, pk) {
      assertBytes(sk, op('x25519'), 'secretKey', 32);
      assertBytes(pk, op('x25519'), 'publicKey', 32);
      const privateKey = importPrivate('X25519', sk);
      const publicKey = importPublic('X25519', pk);
      let out: Uint8Array;
      try {
        out = toU8(c.diffieHellman({ privateKey, publicKey }));
      } catch {
        // OpenSSL refuses the all-zero output itself (RFC 7748 §6.1); it fails for no other reason
        // on 32-byte inputs.
        throw lowOrder();
      }
      let acc = 0;
      for (const x of out) acc |= x;
      if (acc === 0) throw lowOrder();
      return out;
    },
    ed25519PublicKey(seed) {
      assertBytes(seed, op('ed25519PublicKey'), 'seed', 32);
      return publicOf(importPrivate('Ed25519', seed));
    },
    ed25519Sign(seed, msg) {
      assertBytes(seed, op('ed25519Sign'), 'seed', 32);
      assertBytes(msg, op('ed25519Sign'), 'msg');
      return toU8(c.sign(null, msg, importPrivate('Ed25519', seed)));
    },
    ed25519Verify(pk, msg, sig) {
      assertBytes(pk, op('ed25519Verify'), 'publicKey');
      assertBytes(msg, op('ed25519Verify'), 'msg');
      assertBytes(sig, op('ed25519Verify'), 'signature');
      if (pk.length !== 32 || sig.length !== 64) return false;
      // The shared byte-level rules (canonical A, no small-order A or R, S < L); after them
      // OpenSSL's cofactorless check agrees with noble.ts on every input.
      if (!_ed25519StrictPrecheck(pk, sig)) return false;
      try {
        return c.verify(null, msg, importPublic('Ed25519', pk), sig);
      } catch {
        return false;
      }
    },
    mlKem768KeyGen: kem.mlKem768KeyGen,
    mlKem768Encapsulate: kem.mlKem768Encapsulate,
    mlKem768Decapsulate: kem.mlKem768Decapsulate,
    aes256GcmEncrypt(key, nonce, pt, aad) {
      assertBytes(key, op('aes256GcmEncrypt'), 'key', 32);
      assertBytes(nonce, op('aes256GcmEncrypt'), 'nonce', 12);
      assertBytes(pt, op('aes256GcmEncrypt'), 'plaintext');
      assertBytes(aad, op('aes256GcmEncrypt'), 'aad');
      const cipher = c.createCipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 });
      cipher.setAAD(aad);
      const out = new Uint8Array(pt.length + 16);
      const body = cipher.update(pt);
      const tail = cipher.final();
      out.set(body, 0);
      out.set(tail, body.length);
      out.set(cipher.getAuthTag(), pt.length);
      return out;
    },
    aes256GcmDecrypt(key, nonce, ct, aad) {
      assertBytes(key, op('aes256GcmDecrypt'), 'key', 32);
      assertBytes(nonce, op('aes256GcmDecrypt'), 'nonce', 12);
      assertBytes(ct, op('aes256GcmDecrypt'), 'ciphertext');
      assertBytes(aad, op('aes256GcmDecrypt'), 'aad');
      if (ct.length < 16) throw new CryptoError(CryptoErrorCode.BAD_MAC, op('aes256GcmDecrypt'), 'ciphertext shorter than the tag');
      const n = ct.length - 16;
      const decipher = c.createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 });
      decipher.setAAD(aad);
      decipher.setAuthTag(ct.subarray(n));
      const out = new Uint8Array(n);
      // update() releases plaintext before the tag is checked: it stays in our buffer and is wiped
      // unless final() authenticates it.
      const body = decipher.update(ct.subarray(0, n));
      out.set(body, 0);
      body.fill(0);
      try {
        const tail = decipher.final();
        out.set(tail, body.length);
      } catch {
        out.fill(0);
        throw new CryptoError(CryptoErrorCode.BAD_MAC, op('aes256GcmDecrypt'), 'authentication tag mismatch');
      }
      return out;
    },
  };
}

/** A fresh plain Uint8Array (not a Buffer, not a view into node's shared pool). */
function toU8(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

function hex(h: string): Uint8Array {
  return Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16));
}

/**
 * Test helpers for sealed sender: identities, a memoising backend (so exhaustive bit-flip tests stay
 * fast on a shared machine), and an independent re-implementation of the envelope written from
 * docs/spec/sealed-sender.md alone — it imports nothing from sealed-sender.ts or padding.ts, so the
 * vector test checks the implementation against the spec, and forgery tests can build envelopes the
 * real sealEnvelope refuses to build.
 */
import { concatBytes, toHex, utf8 } from '../../src/bytes.js';
import type { CryptoContext } from '../../src/context.js';
import { createContext } from '../../src/context.js';
import { CryptoError } from '../../src/errors.js';
import type { DeviceCertificate } from '../../src/keys.js';
import { AccountKeyPair, DeviceKeyPair, encodeDeviceCertificate, issueDeviceCertificate } from '../../src/keys.js';
import type { CryptoBackend } from '../../src/primitives/backend.js';
import { nobleBackend } from '../../src/primitives/noble.js';
import { deterministicRng, manualClock } from '../../src/testing.js';

export const DEEP = process.env['MW_DEEP'] === '1';

export interface Identity {
  account: AccountKeyPair;
  device: DeviceKeyPair;
  certificate: DeviceCertificate;
}

export function makeIdentity(ctx: CryptoContext, issuedAt = 1_750_000_000_000): Identity {
  const account = AccountKeyPair.generate(ctx);
  const device = DeviceKeyPair.generate(ctx);
  return { account, device, certificate: issueDeviceCertificate(ctx, account, device, issuedAt) };
}

/** A deterministic context over the given backend. */
export function testContext(seed: string, backend: CryptoBackend = nobleBackend): CryptoContext {
  return createContext({ backend, random: deterministicRng(seed), now: manualClock().now });
}

/**
 * Caches the pure, expensive primitives (X25519, Ed25519 verify). Returns fresh copies so that the
 * code under test may wipe what it receives without poisoning the cache.
 */
export function memoBackend(base: CryptoBackend): CryptoBackend {
  const dh = new Map<string, Uint8Array | CryptoError>();
  const ver = new Map<string, boolean>();
  return {
    ...base,
    name: `memo(${base.name})`,
    x25519(secretKey, publicKey) {
      const k = toHex(secretKey) + toHex(publicKey);
      let v = dh.get(k);
      if (v === undefined) {
        try {
          v = base.x25519(secretKey, publicKey);
        } catch (e) {
          if (!(e instanceof CryptoError)) throw e;
          v = e;
        }
        dh.set(k, v);
      }
      if (v instanceof CryptoError) throw v;
      return Uint8Array.from(v);
    },
    ed25519Verify(publicKey, msg, signature) {
      const k = toHex(publicKey) + toHex(signature) + toHex(base.sha256(msg));
      let v = ver.get(k);
      if (v === undefined) {
        v = base.ed25519Verify(publicKey, msg, signature);
        ver.set(k, v);
      }
      return v;
    },
  };
}

// ── Independent implementation from docs/spec/sealed-sender.md ─────────────────────────────────

export interface SpecTrace {
  ephemeralSecret: Uint8Array;
  ephemeralPublic: Uint8Array; // encoded: 0x02 ‖ 32
  dh1: Uint8Array;
  salt1: Uint8Array;
  okm1: Uint8Array;
  chainKey: Uint8Array;
  key1: Uint8Array;
  nonce1: Uint8Array;
  plaintext1: Uint8Array; // the encoded certificate
  aad1: Uint8Array;
  c1: Uint8Array;
  dh2: Uint8Array;
  salt2: Uint8Array;
  okm2: Uint8Array;
  key2: Uint8Array;
  nonce2: Uint8Array;
  plaintext2: Uint8Array;
  aad2: Uint8Array;
  c2: Uint8Array;
  envelope: Uint8Array;
}

export const SPEC = {
  version: 0x02,
  salt: 'MeshWhisper_Sealed_v1',
  info1: 'MeshWhisper_Sealed_v1_Layer1',
  info2: 'MeshWhisper_Sealed_v1_Layer2',
  overhead: 260,
  headerLength: 242,
  buckets: [2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144],
};

/** The spec's padded layer-2 plaintext: contentType ‖ content ‖ 0x80 ‖ 0…0, sized to fill the bucket. */
export function specPlaintext2(contentType: number, content: Uint8Array): Uint8Array {
  const bucket = SPEC.buckets.find((b) => b >= content.length + SPEC.overhead);
  if (bucket === undefined) throw new Error('too large');
  const out = new Uint8Array(bucket - SPEC.headerLength - 16); // for an extension-free certificate
  out[0] = contentType;
  out.set(content, 1);
  out[1 + content.length] = 0x80;
  return out;
}

/**
 * Seals per the spec. `staticDh(pub)` is the sender's X25519 with its identity key; `certificate`
 * is whatever the (possibly lying) sender puts in layer 1; `plaintext2` may be malformed on purpose.
 */
export function specSeal(
  ctx: CryptoContext,
  p: {
    ephemeralSecret: Uint8Array;
    recipientDhKey: Uint8Array;
    certificate: DeviceCertificate | Uint8Array;
    staticDh: (publicKey: Uint8Array) => Uint8Array;
    plaintext2: Uint8Array;
  },
): SpecTrace {
  const b = ctx.backend;
  const ephemeralPublic = concatBytes(Uint8Array.of(0x02), b.x25519PublicKey(p.ephemeralSecret));
  const dh1 = b.x25519(p.ephemeralSecret, p.recipientDhKey);
  const salt1 = concatBytes(utf8(SPEC.salt), Uint8Array.of(0x02), p.recipientDhKey, ephemeralPublic);
  const okm1 = b.hkdfSha256(dh1, salt1, utf8(SPEC.info1), 76);
  const chainKey = okm1.slice(0, 32);
  const key1 = okm1.slice(32, 64);
  const nonce1 = okm1.slice(64, 76);
  const certBytes = p.certificate instanceof Uint8Array ? p.certificate : encodeDeviceCertificate(p.certificate);
  const c1Length = certBytes.length + 16;
  const aad1 = concatBytes(Uint8Array.of(SPEC.version), ephemeralPublic, Uint8Array.of(c1Length >> 8, c1Length & 0xff));
  const c1 = b.aes256GcmEncrypt(key1, nonce1, certBytes, aad1);
  const dh2 = p.staticDh(p.recipientDhKey);
  const salt2 = concatBytes(chainKey, c1);
  const okm2 = b.hkdfSha256(dh2, salt2, utf8(SPEC.info2), 44);
  const key2 = okm2.slice(0, 32);
  const nonce2 = okm2.slice(32, 44);
  const aad2 = concatBytes(aad1, c1);
  const c2 = b.aes256GcmEncrypt(key2, nonce2, p.plaintext2, aad2);
  const envelope = concatBytes(aad2, c2);
  return {
    ephemeralSecret: p.ephemeralSecret,
    ephemeralPublic,
    dh1,
    salt1,
    okm1,
    chainKey,
    key1,
    nonce1,
    plaintext1: certBytes,
    aad1,
    c1,
    dh2,
    salt2,
    okm2,
    key2,
    nonce2,
    plaintext2: p.plaintext2,
    aad2,
    c2,
    envelope,
  };
}

/** Runs `f` and returns the CryptoError it throws; fails the test on success or on any other throw. */
export function cryptoErrorOf(f: () => unknown): CryptoError {
  try {
    f();
  } catch (e) {
    if (e instanceof CryptoError) return e;
    throw new Error(`expected a CryptoError, got ${String(e)}`, { cause: e });
  }
  throw new Error('expected a CryptoError, but the call succeeded');
}

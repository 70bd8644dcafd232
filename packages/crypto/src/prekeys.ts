/**
 * Prekeys and prekey bundles (docs/protocol.md §3): the signed prekey (X25519), one-time prekeys
 * (X25519, unsigned as in Signal: the node's authenticated batch upload protects them), signed
 * one-time KEM prekeys and a signed last-resort KEM prekey (ML-KEM-768). Every signature is made by
 * the device signing key over a domain-separated message, so a prekey cannot be replayed as another
 * kind of object, and a KEM prekey cannot be substituted or stripped without detection.
 */
import { _Redacted } from './_secret.js';
import { copyBytes, toHex, wipe } from './bytes.js';
import {
  ED25519_SIGNATURE_LENGTH,
  MAX_PREKEY_FUTURE_SKEW_MS,
  MAX_SIGNED_PREKEY_AGE_MS,
  WIRE_VERSION,
} from './constants.js';
import type { CryptoContext } from './context.js';
import { ByteReader, ByteWriter } from './encoding.js';
import { CryptoError, CryptoErrorCode } from './errors.js';
import type { DeviceCertificate, DeviceKeyPair } from './keys.js';
import { KeyType, SignatureLabel, encodePublicKey, readDeviceCertificate, readPublicKey, signedMessage, verifyDeviceCertificate, writeDeviceCertificate } from './keys.js';

export interface SignedPreKey {
  readonly id: number; // u32
  readonly publicKey: Uint8Array; // X25519
  readonly createdAt: number; // ms since epoch
  readonly signature: Uint8Array;
}
export interface OneTimePreKey {
  readonly id: number;
  readonly publicKey: Uint8Array; // X25519
}
export interface KemPreKey {
  readonly id: number;
  /** true for the last-resort key (served when no one-time KEM prekey is left; rotated, not consumed). */
  readonly lastResort: boolean;
  readonly publicKey: Uint8Array; // ML-KEM-768 encapsulation key
  readonly createdAt: number;
  readonly signature: Uint8Array;
}
export interface PreKeyBundle {
  readonly certificate: DeviceCertificate;
  readonly signedPreKey: SignedPreKey;
  readonly oneTimePreKey?: OneTimePreKey;
  readonly kemPreKey: KemPreKey;
}

// ── Private halves (held by the owning device's stores) ─────────────────────────────────────

/** An X25519 key pair held by a store (signed or one-time prekey, or a ratchet key). */
export class X25519PreKeyPair extends _Redacted {
  readonly #secret: Uint8Array;
  constructor(
    readonly id: number,
    secretKey: Uint8Array,
    readonly publicKey: Uint8Array,
    readonly createdAt: number,
  ) {
    super();
    this.#secret = copyBytes(secretKey);
  }
  static generate(ctx: CryptoContext, id: number): X25519PreKeyPair {
    const sk = ctx.random(32);
    const kp = new X25519PreKeyPair(id, sk, ctx.backend.x25519PublicKey(sk), ctx.now());
    wipe(sk);
    return kp;
  }
  get secretKey(): Uint8Array {
    return this.#secret;
  }
  /** Wipes the private key (after a one-time prekey is consumed). The object is unusable afterwards. */
  destroy(): void {
    wipe(this.#secret);
  }
  protected describe(): Record<string, unknown> {
    return { id: this.id, publicKey: toHex(this.publicKey) };
  }
}

export class KemPreKeyPair extends _Redacted {
  readonly #secret: Uint8Array;
  constructor(
    readonly id: number,
    readonly lastResort: boolean,
    secretKey: Uint8Array,
    readonly publicKey: Uint8Array,
    readonly createdAt: number,
  ) {
    super();
    this.#secret = copyBytes(secretKey);
  }
  static generate(ctx: CryptoContext, id: number, lastResort: boolean): KemPreKeyPair {
    const seed = ctx.random(64);
    const { publicKey, secretKey } = ctx.backend.mlKem768KeyGen(seed);
    wipe(seed);
    const kp = new KemPreKeyPair(id, lastResort, secretKey, publicKey, ctx.now());
    wipe(secretKey);
    return kp;
  }
  get secretKey(): Uint8Array {
    return this.#secret;
  }
  /** Wipes the private key (after a one-time KEM prekey is consumed). The object is unusable afterwards. */
  destroy(): void {
    wipe(this.#secret);
  }
  protected describe(): Record<string, unknown> {
    return { id: this.id, lastResort: this.lastResort, publicKeyPrefix: toHex(this.publicKey.subarray(0, 8)) };
  }
}

// ── Signing ─────────────────────────────────────────────────────────────────────────────────

function signedPreKeyBody(id: number, createdAt: number, publicKey: Uint8Array): Uint8Array {
  return new ByteWriter().u32(id).u64(createdAt).bytes(encodePublicKey(KeyType.X25519, publicKey)).finish();
}

function kemPreKeyBody(id: number, lastResort: boolean, createdAt: number, publicKey: Uint8Array): Uint8Array {
  return new ByteWriter()
    .u32(id)
    .u8(lastResort ? 1 : 0)
    .u64(createdAt)
    .bytes(encodePublicKey(KeyType.MlKem768, publicKey))
    .finish();
}

export function signSignedPreKey(ctx: CryptoContext, device: DeviceKeyPair, kp: X25519PreKeyPair): SignedPreKey {
  const signature = device.sign(ctx, SignatureLabel.SignedPreKey, signedPreKeyBody(kp.id, kp.createdAt, kp.publicKey));
  return { id: kp.id, publicKey: copyBytes(kp.publicKey), createdAt: kp.createdAt, signature };
}

export function signKemPreKey(ctx: CryptoContext, device: DeviceKeyPair, kp: KemPreKeyPair): KemPreKey {
  const signature = device.sign(ctx, SignatureLabel.KemPreKey, kemPreKeyBody(kp.id, kp.lastResort, kp.createdAt, kp.publicKey));
  return { id: kp.id, lastResort: kp.lastResort, publicKey: copyBytes(kp.publicKey), createdAt: kp.createdAt, signature };
}

export function publicOneTimePreKey(kp: X25519PreKeyPair): OneTimePreKey {
  return { id: kp.id, publicKey: copyBytes(kp.publicKey) };
}

export function verifySignedPreKey(ctx: CryptoContext, deviceSigningKey: Uint8Array, spk: SignedPreKey): void {
  const ok = ctx.backend.ed25519Verify(deviceSigningKey, signedMessage(SignatureLabel.SignedPreKey, signedPreKeyBody(spk.id, spk.createdAt, spk.publicKey)), spk.signature);
  if (!ok) throw new CryptoError(CryptoErrorCode.BAD_SIGNATURE, 'verifySignedPreKey', 'signed prekey signature does not verify');
}

export function verifyKemPreKey(ctx: CryptoContext, deviceSigningKey: Uint8Array, kpk: KemPreKey): void {
  const ok = ctx.backend.ed25519Verify(
    deviceSigningKey,
    signedMessage(SignatureLabel.KemPreKey, kemPreKeyBody(kpk.id, kpk.lastResort, kpk.createdAt, kpk.publicKey)),
    kpk.signature,
  );
  if (!ok) throw new CryptoError(CryptoErrorCode.BAD_SIGNATURE, 'verifyKemPreKey', 'KEM prekey signature does not verify');
}

/**
 * Everything an initiator must check before PQXDH (docs/protocol.md §3.3): the device certificate
 * chains to its account key (and to `expectedAccountKey` when the caller already knows the peer),
 * both prekey signatures verify under the certified device key, the signed prekey is neither
 * expired nor from the future. A bundle without a valid KEM prekey cannot be represented: there is
 * no classical fallback.
 */
export function verifyPreKeyBundle(ctx: CryptoContext, bundle: PreKeyBundle, expectedAccountKey?: Uint8Array): void {
  const op = 'verifyPreKeyBundle';
  verifyDeviceCertificate(ctx, bundle.certificate, expectedAccountKey);
  verifySignedPreKey(ctx, bundle.certificate.deviceSigningKey, bundle.signedPreKey);
  verifyKemPreKey(ctx, bundle.certificate.deviceSigningKey, bundle.kemPreKey);
  const now = ctx.now();
  for (const [what, createdAt] of [
    ['signed prekey', bundle.signedPreKey.createdAt],
    ['KEM prekey', bundle.kemPreKey.createdAt],
  ] as const) {
    if (createdAt > now + MAX_PREKEY_FUTURE_SKEW_MS) throw new CryptoError(CryptoErrorCode.INVALID_BUNDLE, op, `${what} is dated in the future`);
  }
  if (now - bundle.signedPreKey.createdAt > MAX_SIGNED_PREKEY_AGE_MS) {
    throw new CryptoError(CryptoErrorCode.INVALID_BUNDLE, op, 'signed prekey has expired');
  }
  if (bundle.kemPreKey.lastResort && now - bundle.kemPreKey.createdAt > MAX_SIGNED_PREKEY_AGE_MS) {
    throw new CryptoError(CryptoErrorCode.INVALID_BUNDLE, op, 'last-resort KEM prekey has expired');
  }
}

// ── Encodings (version byte first; docs/protocol.md §3.4) ───────────────────────────────────

function writeSignedPreKey(w: ByteWriter, spk: SignedPreKey): void {
  w.u32(spk.id).u64(spk.createdAt).bytes(encodePublicKey(KeyType.X25519, spk.publicKey)).bytes(spk.signature);
}
function readSignedPreKey(r: ByteReader, op: string): SignedPreKey {
  const id = r.u32('signed prekey id');
  const createdAt = r.u64('createdAt');
  const publicKey = readPublicKey(r, KeyType.X25519, op);
  const signature = r.bytes(ED25519_SIGNATURE_LENGTH, 'signature');
  return { id, createdAt, publicKey, signature };
}
function writeOneTimePreKey(w: ByteWriter, k: OneTimePreKey): void {
  w.u32(k.id).bytes(encodePublicKey(KeyType.X25519, k.publicKey));
}
function readOneTimePreKey(r: ByteReader, op: string): OneTimePreKey {
  const id = r.u32('one-time prekey id');
  return { id, publicKey: readPublicKey(r, KeyType.X25519, op) };
}
function writeKemPreKey(w: ByteWriter, k: KemPreKey): void {
  w.u32(k.id)
    .u8(k.lastResort ? 1 : 0)
    .u64(k.createdAt)
    .bytes(encodePublicKey(KeyType.MlKem768, k.publicKey))
    .bytes(k.signature);
}
function readKemPreKey(r: ByteReader, op: string): KemPreKey {
  const id = r.u32('KEM prekey id');
  const flag = r.u8('lastResort flag');
  if (flag > 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'lastResort flag must be 0 or 1');
  const createdAt = r.u64('createdAt');
  const publicKey = readPublicKey(r, KeyType.MlKem768, op);
  const signature = r.bytes(ED25519_SIGNATURE_LENGTH, 'signature');
  return { id, lastResort: flag === 1, createdAt, publicKey, signature };
}

function checkVersion(r: ByteReader, op: string): void {
  const v = r.u8('version');
  if (v !== WIRE_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `version ${v}`);
}

function decodeWith<T>(bytes: Uint8Array, op: string, read: (r: ByteReader, op: string) => T): T {
  const r = new ByteReader(bytes, op);
  checkVersion(r, op);
  const v = read(r, op);
  r.finish();
  return v;
}

export const encodeSignedPreKey = (k: SignedPreKey): Uint8Array => {
  const w = new ByteWriter().u8(WIRE_VERSION);
  writeSignedPreKey(w, k);
  return w.finish();
};
export const decodeSignedPreKey = (b: Uint8Array): SignedPreKey => decodeWith(b, 'decodeSignedPreKey', readSignedPreKey);
export const encodeOneTimePreKey = (k: OneTimePreKey): Uint8Array => {
  const w = new ByteWriter().u8(WIRE_VERSION);
  writeOneTimePreKey(w, k);
  return w.finish();
};
export const decodeOneTimePreKey = (b: Uint8Array): OneTimePreKey => decodeWith(b, 'decodeOneTimePreKey', readOneTimePreKey);
export const encodeKemPreKey = (k: KemPreKey): Uint8Array => {
  const w = new ByteWriter().u8(WIRE_VERSION);
  writeKemPreKey(w, k);
  return w.finish();
};
export const decodeKemPreKey = (b: Uint8Array): KemPreKey => decodeWith(b, 'decodeKemPreKey', readKemPreKey);

/** version ‖ vec16(certificate) ‖ signed prekey ‖ has-one-time (u8) ‖ [one-time prekey] ‖ KEM prekey. */
export function encodePreKeyBundle(b: PreKeyBundle): Uint8Array {
  const w = writeDeviceCertificate(new ByteWriter().u8(WIRE_VERSION), b.certificate);
  writeSignedPreKey(w, b.signedPreKey);
  if (b.oneTimePreKey) {
    w.u8(1);
    writeOneTimePreKey(w, b.oneTimePreKey);
  } else {
    w.u8(0);
  }
  writeKemPreKey(w, b.kemPreKey);
  return w.finish();
}

export function decodePreKeyBundle(bytes: Uint8Array): PreKeyBundle {
  return decodeWith(bytes, 'decodePreKeyBundle', (r, op) => {
    const certificate = readDeviceCertificate(r, op);
    const signedPreKey = readSignedPreKey(r, op);
    const has = r.u8('one-time prekey flag');
    if (has > 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'one-time prekey flag must be 0 or 1');
    const oneTimePreKey = has === 1 ? readOneTimePreKey(r, op) : undefined;
    const kemPreKey = readKemPreKey(r, op);
    return oneTimePreKey ? { certificate, signedPreKey, oneTimePreKey, kemPreKey } : { certificate, signedPreKey, kemPreKey };
  });
}

/**
 * The key model (docs/protocol.md §2): account key → device certificate → device keys → mailbox id.
 *
 *  - Account key (Ed25519): long-term identity of a person; certifies devices; the basis of
 *    safety numbers. Never used for Diffie–Hellman.
 *  - Device signing key (Ed25519): signs the device's prekeys, authenticates its mailbox at the
 *    node. Device DH identity key (X25519): the PQXDH identity key IK. A second key certified next
 *    to the first (not an Ed25519→X25519 conversion): no key is used in two algorithms, both
 *    backends support it natively, and the certificate binds them together.
 *  - Mailbox id = SHA-256("MeshWhisper_MailboxId_v1" ‖ encoded device signing key).
 */
import { _Redacted } from './_secret.js';
import { concatBytes, copyBytes, equalBytes, toHex, utf8, wipe } from './bytes.js';
import {
  CERTIFICATE_RENEW_BEFORE_MS,
  CERTIFICATE_VALIDITY_MS,
  CERTIFICATE_VERSION,
  ED25519_KEY_LENGTH,
  ED25519_SIGNATURE_LENGTH,
  MAILBOX_ID_LENGTH,
  MAX_CERTIFICATE_EXTENSIONS_LENGTH,
  MAX_CERTIFICATE_FUTURE_SKEW_MS,
  MAX_CERTIFICATE_VALIDITY_MS,
  MAX_DEVICE_CERTIFICATE_LENGTH,
  ML_KEM_768_PUBLIC_KEY_LENGTH,
  X25519_KEY_LENGTH,
} from './constants.js';
import type { CryptoContext } from './context.js';
import { ByteReader, ByteWriter } from './encoding.js';
import { CryptoError, CryptoErrorCode, assertBytes } from './errors.js';

/** Type tags carried by every encoded public key (docs/protocol.md §2.1). */
export const KeyType = { Ed25519: 0x01, X25519: 0x02, MlKem768: 0x03 } as const;
export type KeyType = (typeof KeyType)[keyof typeof KeyType];

const KEY_LENGTHS: Record<KeyType, number> = {
  [KeyType.Ed25519]: ED25519_KEY_LENGTH,
  [KeyType.X25519]: X25519_KEY_LENGTH,
  [KeyType.MlKem768]: ML_KEM_768_PUBLIC_KEY_LENGTH,
};

/** type tag ‖ raw key bytes. */
export function encodePublicKey(type: KeyType, key: Uint8Array): Uint8Array {
  assertBytes(key, 'encodePublicKey', 'key', KEY_LENGTHS[type]);
  return concatBytes(Uint8Array.of(type), key);
}

/** Decodes a type-tagged public key, requiring the expected type. */
export function decodePublicKey(expected: KeyType, encoded: Uint8Array, operation = 'decodePublicKey'): Uint8Array {
  assertBytes(encoded, operation, 'encoded key');
  if (encoded.length < 1 || encoded[0] !== expected) {
    throw new CryptoError(CryptoErrorCode.INVALID_KEY, operation, `expected key type ${expected}, got ${encoded[0] ?? 'nothing'}`);
  }
  if (encoded.length !== 1 + KEY_LENGTHS[expected]) {
    throw new CryptoError(CryptoErrorCode.INVALID_KEY, operation, `key of type ${expected} must be ${1 + KEY_LENGTHS[expected]} bytes encoded`);
  }
  return encoded.slice(1);
}

export function readPublicKey(r: ByteReader, type: KeyType, operation: string): Uint8Array {
  const tag = r.u8('key type');
  if (tag !== type) throw new CryptoError(CryptoErrorCode.INVALID_KEY, operation, `expected key type ${type}, got ${tag}`);
  return r.bytes(KEY_LENGTHS[type], 'key');
}

/** Domain-separation labels for signatures: a signature made for one purpose never verifies for another. */
export const SignatureLabel = {
  DeviceCertificate: 'MeshWhisper_DeviceCertificate_v2',
  SignedPreKey: 'MeshWhisper_SignedPreKey_v1',
  KemPreKey: 'MeshWhisper_KemPreKey_v1',
  DeviceList: 'MeshWhisper_DeviceList_v2',
  Succession: 'MeshWhisper_Succession_v2',
  SuccessionConsent: 'MeshWhisper_SuccessionConsent_v2',
  AccountDeletion: 'MeshWhisper_AccountDeletion_v2',
} as const;

export function signedMessage(label: string, body: Uint8Array): Uint8Array {
  const l = utf8(label);
  return concatBytes(Uint8Array.of(l.length), l, body);
}

// ── Account key ──────────────────────────────────────────────────────────────────────────────

export class AccountKeyPair extends _Redacted {
  readonly #seed: Uint8Array;
  readonly publicKey: Uint8Array;
  private constructor(seed: Uint8Array, publicKey: Uint8Array) {
    super();
    this.#seed = seed;
    this.publicKey = publicKey;
  }
  static generate(ctx: CryptoContext): AccountKeyPair {
    return AccountKeyPair.fromSeed(ctx, ctx.random(32));
  }
  /** From a 32-byte Ed25519 seed (copied; the caller's buffer is not retained). */
  static fromSeed(ctx: CryptoContext, seed: Uint8Array): AccountKeyPair {
    assertBytes(seed, 'AccountKeyPair.fromSeed', 'seed', 32);
    const s = copyBytes(seed);
    return new AccountKeyPair(s, ctx.backend.ed25519PublicKey(s));
  }
  get encodedPublicKey(): Uint8Array {
    return encodePublicKey(KeyType.Ed25519, this.publicKey);
  }
  sign(ctx: CryptoContext, label: string, body: Uint8Array): Uint8Array {
    return ctx.backend.ed25519Sign(this.#seed, signedMessage(label, body));
  }
  /** The secret seed, for storage adapters. Handle with care; wipe your copy when done. */
  exportSeed(): Uint8Array {
    return copyBytes(this.#seed);
  }
  destroy(): void {
    wipe(this.#seed);
  }
  protected describe(): Record<string, unknown> {
    return { publicKey: toHex(this.publicKey) };
  }
}

// ── Device keys ──────────────────────────────────────────────────────────────────────────────

export class DeviceKeyPair extends _Redacted {
  readonly #signingSeed: Uint8Array;
  readonly #dhSecret: Uint8Array;
  readonly signingPublicKey: Uint8Array;
  readonly dhPublicKey: Uint8Array;
  private constructor(signingSeed: Uint8Array, dhSecret: Uint8Array, signingPublicKey: Uint8Array, dhPublicKey: Uint8Array) {
    super();
    this.#signingSeed = signingSeed;
    this.#dhSecret = dhSecret;
    this.signingPublicKey = signingPublicKey;
    this.dhPublicKey = dhPublicKey;
  }
  static generate(ctx: CryptoContext): DeviceKeyPair {
    return DeviceKeyPair.fromSecrets(ctx, ctx.random(32), ctx.random(32));
  }
  static fromSecrets(ctx: CryptoContext, signingSeed: Uint8Array, dhSecret: Uint8Array): DeviceKeyPair {
    assertBytes(signingSeed, 'DeviceKeyPair.fromSecrets', 'signingSeed', 32);
    assertBytes(dhSecret, 'DeviceKeyPair.fromSecrets', 'dhSecret', 32);
    const s = copyBytes(signingSeed);
    const d = copyBytes(dhSecret);
    return new DeviceKeyPair(s, d, ctx.backend.ed25519PublicKey(s), ctx.backend.x25519PublicKey(d));
  }
  get encodedSigningKey(): Uint8Array {
    return encodePublicKey(KeyType.Ed25519, this.signingPublicKey);
  }
  get encodedDhKey(): Uint8Array {
    return encodePublicKey(KeyType.X25519, this.dhPublicKey);
  }
  sign(ctx: CryptoContext, label: string, body: Uint8Array): Uint8Array {
    return ctx.backend.ed25519Sign(this.#signingSeed, signedMessage(label, body));
  }
  /** X25519 with the device's DH identity key. */
  dh(ctx: CryptoContext, publicKey: Uint8Array): Uint8Array {
    return ctx.backend.x25519(this.#dhSecret, publicKey);
  }
  exportSecrets(): { signingSeed: Uint8Array; dhSecret: Uint8Array } {
    return { signingSeed: copyBytes(this.#signingSeed), dhSecret: copyBytes(this.#dhSecret) };
  }
  destroy(): void {
    wipe(this.#signingSeed, this.#dhSecret);
  }
  protected describe(): Record<string, unknown> {
    return { signingPublicKey: toHex(this.signingPublicKey), dhPublicKey: toHex(this.dhPublicKey) };
  }
}

/** SHA-256("MeshWhisper_MailboxId_v1" ‖ encoded device signing key): the node-visible address of a device. */
export function mailboxIdOf(ctx: CryptoContext, deviceSigningPublicKey: Uint8Array): Uint8Array {
  const out = ctx.backend.sha256(concatBytes(utf8('MeshWhisper_MailboxId_v1'), encodePublicKey(KeyType.Ed25519, deviceSigningPublicKey)));
  if (out.length !== MAILBOX_ID_LENGTH) throw new Error('unreachable');
  return out;
}

// ── Device certificate (v2) ──────────────────────────────────────────────────────────────────

/**
 * Capability bits a device announces in its certificate (docs/spec/02-keys.md §2.4). The bits are
 * signed by the account key and the whole certificate is bound into the PQXDH transcript, so a
 * node cannot strip a bit to force a downgrade: a feature is used between two devices exactly when
 * both certificates set its bit (negotiatedCapabilities). Unknown bits are kept and ignored.
 */
export const Capability = {
  /** Understands the decryption-error message (issue 10 §1.2) and answers it by re-sending. */
  DecryptionError: 1 << 0,
  /** Reserved: a post-quantum ratchet step. Never set by this version. */
  PqRatchet: 1 << 1,
  /** Reserved: group messaging. Never set by this version. */
  Groups: 1 << 2,
} as const;
/** What this version sets in the certificates it issues by default. */
export const DEFAULT_CAPABILITIES = Capability.DecryptionError;

/** An account key's statement that a device's two keys belong to it (docs/spec/02-keys.md §2.3). */
export interface DeviceCertificate {
  readonly version: number;
  readonly accountKey: Uint8Array; // Ed25519, 32
  readonly deviceSigningKey: Uint8Array; // Ed25519, 32
  readonly deviceDhKey: Uint8Array; // X25519, 32
  /** The device's index in the account's device list (never reused within an account). */
  readonly deviceIndex: number;
  /** ms since epoch when the account key certified the device. */
  readonly issuedAt: number;
  /** ms since epoch after which the certificate must be renewed (see CERTIFICATE_EXPIRY_GRACE_MS). */
  readonly expiresAt: number;
  /** u32 of Capability bits. */
  readonly capabilities: number;
  /** The extension area: a sequence of (u16 type ‖ vec16 value), types strictly ascending. */
  readonly extensions: Uint8Array;
  readonly signature: Uint8Array; // 64
}

/** Bytes of an encoded certificate with an empty extension area. */
export const DEVICE_CERTIFICATE_LENGTH = 1 + 33 + 33 + 33 + 4 + 8 + 8 + 4 + 2 + ED25519_SIGNATURE_LENGTH;

function certificateBody(c: Omit<DeviceCertificate, 'signature'>): Uint8Array {
  return new ByteWriter()
    .u8(c.version)
    .bytes(encodePublicKey(KeyType.Ed25519, c.accountKey))
    .bytes(encodePublicKey(KeyType.Ed25519, c.deviceSigningKey))
    .bytes(encodePublicKey(KeyType.X25519, c.deviceDhKey))
    .u32(c.deviceIndex)
    .u64(c.issuedAt)
    .u64(c.expiresAt)
    .u32(c.capabilities)
    .vec16(c.extensions)
    .finish();
}

/**
 * Checks an extension area: (u16 type ‖ vec16 value)*, types strictly ascending (one canonical
 * encoding), at most MAX_CERTIFICATE_EXTENSIONS_LENGTH bytes. A type with the high bit set
 * (0x8000) is critical: this version knows none, so a certificate carrying one is refused
 * (a later version can add a rule older devices must not silently ignore).
 */
export function checkExtensions(ext: Uint8Array, operation: string): void {
  if (ext.length > MAX_CERTIFICATE_EXTENSIONS_LENGTH) {
    throw new CryptoError(CryptoErrorCode.MALFORMED, operation, `extension area longer than ${MAX_CERTIFICATE_EXTENSIONS_LENGTH} bytes`);
  }
  const r = new ByteReader(ext, operation);
  let last = -1;
  while (r.remaining > 0) {
    const type = r.u16('extension type');
    r.vec16('extension value');
    if (type <= last) throw new CryptoError(CryptoErrorCode.MALFORMED, operation, 'extension types must be strictly ascending');
    if (type & 0x8000) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, operation, `unknown critical extension ${type}`);
    last = type;
  }
}

export interface IssueCertificateOptions {
  /** Default ctx.now(). */
  readonly issuedAt?: number;
  /** Default CERTIFICATE_VALIDITY_MS; at most MAX_CERTIFICATE_VALIDITY_MS. */
  readonly validityMs?: number;
  /** Default 0 (the account's first device). */
  readonly deviceIndex?: number;
  /** Default DEFAULT_CAPABILITIES. */
  readonly capabilities?: number;
  /** Default empty. */
  readonly extensions?: Uint8Array;
}

/**
 * Certifies a device under `account`. Only a device that holds the account key can do this (a
 * "manager" in the device list, docs/spec/02-keys.md §2.6); other devices ask one. The fourth
 * argument may be a bare issuedAt (ms) for brevity in tests and vectors.
 */
export function issueDeviceCertificate(
  ctx: CryptoContext,
  account: AccountKeyPair,
  device: { signingPublicKey: Uint8Array; dhPublicKey: Uint8Array },
  options: IssueCertificateOptions | number = {},
): DeviceCertificate {
  const op = 'issueDeviceCertificate';
  const o: IssueCertificateOptions = typeof options === 'number' ? { issuedAt: options } : options;
  const issuedAt = o.issuedAt ?? ctx.now();
  const validity = o.validityMs ?? CERTIFICATE_VALIDITY_MS;
  if (!Number.isSafeInteger(validity) || validity < 1 || validity > MAX_CERTIFICATE_VALIDITY_MS) {
    throw new RangeError(`${op}: validityMs must be 1..${MAX_CERTIFICATE_VALIDITY_MS}`);
  }
  const deviceIndex = o.deviceIndex ?? 0;
  if (!Number.isInteger(deviceIndex) || deviceIndex < 0 || deviceIndex > 0xffffffff) throw new RangeError(`${op}: deviceIndex must be a u32`);
  const capabilities = o.capabilities ?? DEFAULT_CAPABILITIES;
  if (!Number.isInteger(capabilities) || capabilities < 0 || capabilities > 0xffffffff) throw new RangeError(`${op}: capabilities must be a u32`);
  const extensions = copyBytes(o.extensions ?? new Uint8Array(0));
  checkExtensions(extensions, op);
  const unsigned = {
    version: CERTIFICATE_VERSION,
    accountKey: copyBytes(account.publicKey),
    deviceSigningKey: copyBytes(device.signingPublicKey),
    deviceDhKey: copyBytes(device.dhPublicKey),
    deviceIndex,
    issuedAt,
    expiresAt: issuedAt + validity,
    capabilities,
    extensions,
  };
  return { ...unsigned, signature: account.sign(ctx, SignatureLabel.DeviceCertificate, certificateBody(unsigned)) };
}

/** The certificate's own bytes (body ‖ signature), without the length prefix it carries on the wire. */
export function encodeDeviceCertificate(c: DeviceCertificate): Uint8Array {
  return new ByteWriter().bytes(certificateBody(c)).bytes(c.signature).finish();
}

/** Writes vec16(certificate): every structure that embeds a certificate length-prefixes it. */
export function writeDeviceCertificate(w: ByteWriter, c: DeviceCertificate): ByteWriter {
  return w.vec16(encodeDeviceCertificate(c));
}

/** Reads vec16(certificate) (the embedded form). */
export function readDeviceCertificate(r: ByteReader, operation: string): DeviceCertificate {
  return decodeCertificateBytes(r.vec16('certificate', MAX_DEVICE_CERTIFICATE_LENGTH), operation);
}

function decodeCertificateBytes(bytes: Uint8Array, operation: string): DeviceCertificate {
  const r = new ByteReader(bytes, operation);
  const version = r.u8('certificate version');
  if (version !== CERTIFICATE_VERSION) {
    throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, operation, `device certificate version ${version} (this version speaks ${CERTIFICATE_VERSION})`);
  }
  const accountKey = readPublicKey(r, KeyType.Ed25519, operation);
  const deviceSigningKey = readPublicKey(r, KeyType.Ed25519, operation);
  const deviceDhKey = readPublicKey(r, KeyType.X25519, operation);
  const deviceIndex = r.u32('deviceIndex');
  const issuedAt = r.u64('issuedAt');
  const expiresAt = r.u64('expiresAt');
  const capabilities = r.u32('capabilities');
  const extensions = r.vec16('extensions', MAX_CERTIFICATE_EXTENSIONS_LENGTH);
  checkExtensions(extensions, operation);
  const signature = r.bytes(ED25519_SIGNATURE_LENGTH, 'signature');
  r.finish();
  if (expiresAt <= issuedAt) throw new CryptoError(CryptoErrorCode.MALFORMED, operation, 'certificate expires before it is issued');
  return { version, accountKey, deviceSigningKey, deviceDhKey, deviceIndex, issuedAt, expiresAt, capabilities, extensions, signature };
}

/** Decodes the certificate's own bytes (as returned by encodeDeviceCertificate). */
export function decodeDeviceCertificate(bytes: Uint8Array): DeviceCertificate {
  assertBytes(bytes, 'decodeDeviceCertificate', 'bytes');
  if (bytes.length > MAX_DEVICE_CERTIFICATE_LENGTH) {
    throw new CryptoError(CryptoErrorCode.MALFORMED, 'decodeDeviceCertificate', `certificate longer than ${MAX_DEVICE_CERTIFICATE_LENGTH} bytes`);
  }
  return decodeCertificateBytes(bytes, 'decodeDeviceCertificate');
}

export interface VerifyCertificateOptions {
  /** The certificate must belong to this account (UNTRUSTED_IDENTITY otherwise). */
  readonly expectedAccountKey?: Uint8Array | undefined;
  /**
   * How long past expiresAt the certificate is still accepted. 0 (the default) for anything that
   * starts something new — a bundle, a login, a key upload; CERTIFICATE_EXPIRY_GRACE_MS for
   * envelopes, which may have waited that long in a queue after being sealed under a valid one.
   */
  readonly graceMs?: number;
}

/**
 * Verifies the account's signature and the validity period; with `expectedAccountKey`, also that
 * the certificate belongs to that account. Throws CryptoError(UNTRUSTED_IDENTITY | BAD_SIGNATURE |
 * CERTIFICATE_EXPIRED | INVALID_KEY). The third argument may be the expected account key directly.
 */
export function verifyDeviceCertificate(ctx: CryptoContext, c: DeviceCertificate, options?: VerifyCertificateOptions | Uint8Array): void {
  const op = 'verifyDeviceCertificate';
  const o: VerifyCertificateOptions = options instanceof Uint8Array ? { expectedAccountKey: options } : (options ?? {});
  if (o.expectedAccountKey && !equalBytes(o.expectedAccountKey, c.accountKey)) {
    throw new CryptoError(CryptoErrorCode.UNTRUSTED_IDENTITY, op, 'certificate is for a different account');
  }
  if (c.version !== CERTIFICATE_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `device certificate version ${c.version}`);
  const ok = ctx.backend.ed25519Verify(c.accountKey, signedMessage(SignatureLabel.DeviceCertificate, certificateBody(c)), c.signature);
  if (!ok) throw new CryptoError(CryptoErrorCode.BAD_SIGNATURE, op, 'account signature does not verify');
  const now = ctx.now();
  if (c.issuedAt > now + MAX_CERTIFICATE_FUTURE_SKEW_MS) throw new CryptoError(CryptoErrorCode.CERTIFICATE_EXPIRED, op, 'certificate is dated in the future');
  if (c.expiresAt - c.issuedAt > MAX_CERTIFICATE_VALIDITY_MS) {
    throw new CryptoError(CryptoErrorCode.CERTIFICATE_EXPIRED, op, 'certificate validity exceeds the maximum');
  }
  if (now > c.expiresAt + (o.graceMs ?? 0)) throw new CryptoError(CryptoErrorCode.CERTIFICATE_EXPIRED, op, 'certificate has expired');
}

/** Whether a device should ask for a new certificate now (less than CERTIFICATE_RENEW_BEFORE_MS left). */
export function certificateNeedsRenewal(c: DeviceCertificate, now: number): boolean {
  return c.expiresAt - now < CERTIFICATE_RENEW_BEFORE_MS;
}

/** The capabilities two devices may use together: the AND of both certificates' bits. */
export function negotiatedCapabilities(a: DeviceCertificate, b: DeviceCertificate): number {
  return (a.capabilities & b.capabilities) >>> 0;
}

/**
 * SHA-256("MeshWhisper_CertificateHash_v2" ‖ certificate bytes): names one exact certificate
 * (re-issuing the same keys gives a different hash). Bound into the PQXDH transcript hash.
 */
export function certificateHash(ctx: CryptoContext, c: DeviceCertificate): Uint8Array {
  return ctx.backend.sha256(concatBytes(utf8('MeshWhisper_CertificateHash_v2'), encodeDeviceCertificate(c)));
}

/**
 * Checks that `renewal` may replace `current` as the certificate of one device (docs/spec/02-keys.md
 * §2.4, §2.6): it verifies now under its account key (no grace: a renewal starts something), it
 * names the same account, both device keys and the same deviceIndex (UNTRUSTED_IDENTITY
 * otherwise: a renewal never moves a device to other keys or another slot of the list), and it is
 * issued after and expires after `current` (STALE_CERTIFICATE otherwise: an older certificate
 * re-offered). Used by the node before it holds a renewal for a device, and by the device before it
 * adopts one. Throws CryptoError(BAD_SIGNATURE | CERTIFICATE_EXPIRED | UNTRUSTED_IDENTITY |
 * STALE_CERTIFICATE | UNSUPPORTED_VERSION).
 */
export function verifyCertificateRenewal(ctx: CryptoContext, current: DeviceCertificate, renewal: DeviceCertificate): void {
  const op = 'verifyCertificateRenewal';
  verifyDeviceCertificate(ctx, renewal, { expectedAccountKey: current.accountKey });
  if (!sameDevice(current, renewal) || current.deviceIndex !== renewal.deviceIndex) {
    throw new CryptoError(CryptoErrorCode.UNTRUSTED_IDENTITY, op, 'the certificate is not a renewal of this device (other device keys or index)');
  }
  if (!(renewal.issuedAt > current.issuedAt && renewal.expiresAt > current.expiresAt)) {
    throw new CryptoError(CryptoErrorCode.STALE_CERTIFICATE, op, 'the certificate is not issued and expiring after the one it would replace');
  }
}

/** Whether two certificates name the same device (same account and both keys), whatever their dates. */
export function sameDevice(a: DeviceCertificate, b: DeviceCertificate): boolean {
  return equalBytes(a.accountKey, b.accountKey) && equalBytes(a.deviceSigningKey, b.deviceSigningKey) && equalBytes(a.deviceDhKey, b.deviceDhKey);
}

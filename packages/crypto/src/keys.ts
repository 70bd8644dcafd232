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
import { ED25519_KEY_LENGTH, ED25519_SIGNATURE_LENGTH, MAILBOX_ID_LENGTH, ML_KEM_768_PUBLIC_KEY_LENGTH, WIRE_VERSION, X25519_KEY_LENGTH } from './constants.js';
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
  DeviceCertificate: 'MeshWhisper_DeviceCertificate_v1',
  SignedPreKey: 'MeshWhisper_SignedPreKey_v1',
  KemPreKey: 'MeshWhisper_KemPreKey_v1',
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

// ── Device certificate ───────────────────────────────────────────────────────────────────────

/** An account key's statement that a device's two keys belong to it (docs/protocol.md §2.3). */
export interface DeviceCertificate {
  readonly version: number;
  readonly accountKey: Uint8Array; // Ed25519, 32
  readonly deviceSigningKey: Uint8Array; // Ed25519, 32
  readonly deviceDhKey: Uint8Array; // X25519, 32
  /** ms since epoch when the account key certified the device. */
  readonly issuedAt: number;
  readonly signature: Uint8Array; // 64
}

function certificateBody(c: Omit<DeviceCertificate, 'signature'>): Uint8Array {
  return new ByteWriter()
    .u8(c.version)
    .bytes(encodePublicKey(KeyType.Ed25519, c.accountKey))
    .bytes(encodePublicKey(KeyType.Ed25519, c.deviceSigningKey))
    .bytes(encodePublicKey(KeyType.X25519, c.deviceDhKey))
    .u64(c.issuedAt)
    .finish();
}

export function issueDeviceCertificate(
  ctx: CryptoContext,
  account: AccountKeyPair,
  device: { signingPublicKey: Uint8Array; dhPublicKey: Uint8Array },
  issuedAt: number = ctx.now(),
): DeviceCertificate {
  const unsigned = {
    version: WIRE_VERSION,
    accountKey: copyBytes(account.publicKey),
    deviceSigningKey: copyBytes(device.signingPublicKey),
    deviceDhKey: copyBytes(device.dhPublicKey),
    issuedAt,
  };
  return { ...unsigned, signature: account.sign(ctx, SignatureLabel.DeviceCertificate, certificateBody(unsigned)) };
}

export function encodeDeviceCertificate(c: DeviceCertificate): Uint8Array {
  return new ByteWriter().bytes(certificateBody(c)).bytes(c.signature).finish();
}

export const DEVICE_CERTIFICATE_LENGTH = 1 + 33 + 33 + 33 + 8 + ED25519_SIGNATURE_LENGTH;

export function readDeviceCertificate(r: ByteReader, operation: string): DeviceCertificate {
  const version = r.u8('certificate version');
  if (version !== WIRE_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, operation, `device certificate version ${version}`);
  const accountKey = readPublicKey(r, KeyType.Ed25519, operation);
  const deviceSigningKey = readPublicKey(r, KeyType.Ed25519, operation);
  const deviceDhKey = readPublicKey(r, KeyType.X25519, operation);
  const issuedAt = r.u64('issuedAt');
  const signature = r.bytes(ED25519_SIGNATURE_LENGTH, 'signature');
  return { version, accountKey, deviceSigningKey, deviceDhKey, issuedAt, signature };
}

export function decodeDeviceCertificate(bytes: Uint8Array): DeviceCertificate {
  const r = new ByteReader(bytes, 'decodeDeviceCertificate');
  const c = readDeviceCertificate(r, 'decodeDeviceCertificate');
  r.finish();
  return c;
}

/**
 * Verifies the account's signature; with `expectedAccountKey`, also that the certificate belongs to
 * that account. Throws CryptoError(BAD_SIGNATURE | UNTRUSTED_IDENTITY).
 */
export function verifyDeviceCertificate(ctx: CryptoContext, c: DeviceCertificate, expectedAccountKey?: Uint8Array): void {
  const op = 'verifyDeviceCertificate';
  if (expectedAccountKey && !equalBytes(expectedAccountKey, c.accountKey)) {
    throw new CryptoError(CryptoErrorCode.UNTRUSTED_IDENTITY, op, 'certificate is for a different account');
  }
  const ok = ctx.backend.ed25519Verify(c.accountKey, signedMessage(SignatureLabel.DeviceCertificate, certificateBody(c)), c.signature);
  if (!ok) throw new CryptoError(CryptoErrorCode.BAD_SIGNATURE, op, 'account signature does not verify');
}

/** Whether two certificates name the same device (same account and both keys). */
export function sameDevice(a: DeviceCertificate, b: DeviceCertificate): boolean {
  return equalBytes(a.accountKey, b.accountKey) && equalBytes(a.deviceSigningKey, b.deviceSigningKey) && equalBytes(a.deviceDhKey, b.deviceDhKey);
}

/**
 * One error type for the whole crypto core. Every failure carries a stable `code` (documented in
 * docs/protocol.md §Errors) and the `operation` that raised it. Messages never contain key
 * material, plaintext or any other secret: they name what was wrong, not the bytes that were.
 */
export const CryptoErrorCode = {
  /** An argument has the wrong type (a programming error in the caller). */
  INVALID_ARGUMENT: 'MW_CRYPTO_INVALID_ARGUMENT',
  /** A public key, signature or ciphertext is not a valid encoding (wrong length, bad point, …). */
  INVALID_KEY: 'MW_CRYPTO_INVALID_KEY',
  /** A Diffie–Hellman produced the all-zero output (low-order peer point). */
  LOW_ORDER_POINT: 'MW_CRYPTO_LOW_ORDER_POINT',
  /** A signature did not verify. */
  BAD_SIGNATURE: 'MW_CRYPTO_BAD_SIGNATURE',
  /** An AEAD tag did not verify (tampered, truncated or wrong key). */
  BAD_MAC: 'MW_CRYPTO_BAD_MAC',
  /** Bytes could not be decoded: truncated, trailing data, unknown tag, impossible length. */
  MALFORMED: 'MW_CRYPTO_MALFORMED',
  /** An encoding carries a version this implementation does not speak. */
  UNSUPPORTED_VERSION: 'MW_CRYPTO_UNSUPPORTED_VERSION',
  /** A prekey bundle is incomplete (e.g. no KEM prekey: no classical downgrade) or expired. */
  INVALID_BUNDLE: 'MW_CRYPTO_INVALID_BUNDLE',
  /** An initial message names a prekey this device does not hold (consumed, rotated away). */
  UNKNOWN_PREKEY: 'MW_CRYPTO_UNKNOWN_PREKEY',
  /** A PQXDH initial message was seen before. */
  REPLAYED_INITIAL_MESSAGE: 'MW_CRYPTO_REPLAYED_INITIAL_MESSAGE',
  /** No session with that peer device, or no stored session decrypts the message. */
  UNKNOWN_SESSION: 'MW_CRYPTO_UNKNOWN_SESSION',
  /** The message key was already used: the message is a duplicate (safe to ignore). */
  DUPLICATE_MESSAGE: 'MW_CRYPTO_DUPLICATE_MESSAGE',
  /** The message's skipped key was evicted by a storage limit: the message is lost for this session. */
  SKIPPED_KEY_EVICTED: 'MW_CRYPTO_SKIPPED_KEY_EVICTED',
  /** The message's skipped key was older than SKIPPED_KEY_MAX_AGE_MS: the message is lost for this session. */
  SKIPPED_KEY_EXPIRED: 'MW_CRYPTO_SKIPPED_KEY_EXPIRED',
  /** An ephemeral message is older than the last one accepted, or outside the allowed clock skew (replay or stale). */
  STALE_EPHEMERAL: 'MW_CRYPTO_STALE_EPHEMERAL',
  /** The message is further ahead in its chain than MAX_SKIP allows. */
  TOO_FAR_AHEAD: 'MW_CRYPTO_TOO_FAR_AHEAD',
  /** The sender inside a sealed envelope does not match the session that decrypted it. */
  SENDER_MISMATCH: 'MW_CRYPTO_SENDER_MISMATCH',
  /** A device certificate or identity does not chain to the expected account key. */
  UNTRUSTED_IDENTITY: 'MW_CRYPTO_UNTRUSTED_IDENTITY',
  /** A media stream was truncated, reordered, extended or otherwise tampered with. */
  MEDIA_CORRUPT: 'MW_CRYPTO_MEDIA_CORRUPT',
  /** A key-source record asks for KDF costs below the accepted minimum (a downgrade by whoever served it). */
  WEAK_KDF_PARAMS: 'MW_CRYPTO_WEAK_KDF_PARAMS',
  /** A device certificate is past its expiry (plus any grace the operation allows) or dated in the future. */
  CERTIFICATE_EXPIRED: 'MW_CRYPTO_CERTIFICATE_EXPIRED',
  /** A device is not on its account's current device list (never added, or revoked). */
  DEVICE_NOT_LISTED: 'MW_CRYPTO_DEVICE_NOT_LISTED',
  /**
   * A device list is older than (lower epoch) or conflicts with (same epoch, other content; an index
   * reused for another key) the one already known: a rollback or a fork, refused.
   */
  STALE_DEVICE_LIST: 'MW_CRYPTO_STALE_DEVICE_LIST',
  /** A certificate offered as a renewal is not issued after, or does not expire after, the certificate it would replace. */
  STALE_CERTIFICATE: 'MW_CRYPTO_STALE_CERTIFICATE',
  /** A size or count limit (see constants.ts) was exceeded. */
  LIMIT_EXCEEDED: 'MW_CRYPTO_LIMIT_EXCEEDED',
  /**
   * No sender key for this (group, sending device, key id): it was never distributed to this device
   * (not a member when it was sent, or the distribution has not arrived yet) or it was dropped as
   * superseded (docs/spec/groups.md §G2.5).
   */
  UNKNOWN_SENDER_KEY: 'MW_CRYPTO_UNKNOWN_SENDER_KEY',
  /** A group message, sender-key distribution or control operation names another group than the one it is applied to. */
  GROUP_MISMATCH: 'MW_CRYPTO_GROUP_MISMATCH',
  /**
   * A group control operation whose author may not perform it in the group's state (not a member,
   * not an admin in an admin-ful group, a kick in an admin-less group, …) (docs/spec/groups.md §G4.4).
   */
  GROUP_NOT_AUTHORIZED: 'MW_CRYPTO_GROUP_NOT_AUTHORIZED',
  /** A human-entered code (recovery key) failed its checksum: almost certainly a typo. */
  BAD_CHECKSUM: 'MW_CRYPTO_BAD_CHECKSUM',
} as const;
export type CryptoErrorCode = (typeof CryptoErrorCode)[keyof typeof CryptoErrorCode];

export class CryptoError extends Error {
  override readonly name = 'CryptoError';
  constructor(
    readonly code: CryptoErrorCode,
    readonly operation: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${operation}: ${message}`, options);
  }
  toJSON(): { name: string; code: CryptoErrorCode; operation: string; message: string } {
    return { name: this.name, code: this.code, operation: this.operation, message: this.message };
  }
}

/** Throws CryptoError(INVALID_ARGUMENT) unless `value` is a Uint8Array of `length` (if given). */
export function assertBytes(value: unknown, operation: string, name: string, length?: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(`${operation}: ${name} must be a Uint8Array`);
  }
  if (length !== undefined && value.length !== length) {
    throw new RangeError(`${operation}: ${name} must be ${length} bytes, got ${value.length}`);
  }
}

/**
 * What every SDK storage adapter offers on top of the crypto core's ProtocolStore: a device
 * identity that is created once and then only loaded, and a lifetime (close / `await using`).
 */
import type { CryptoContext, LocalIdentity, ProtocolStore } from '@meshwhisper/crypto';
import { DeviceKeyPair, decodeDeviceCertificate, encodeDeviceCertificate, equalBytes, wipe } from '@meshwhisper/crypto';
import { StorageError, StorageErrorCode } from './errors.js';

export type StorageKind = 'memory' | 'sqlite' | 'indexeddb';

/**
 * A ProtocolStore the SDK can own. Everything it stores is committed atomically by transaction();
 * calls made outside a transaction behave as one-operation transactions.
 *
 * Inside `transaction(fn)`, use only the `tx` view passed to `fn`: calling the storage itself from
 * inside `fn` waits for `fn` to finish, which never happens (the same rule as any serialised store).
 */
export interface ProtocolStorage extends ProtocolStore {
  readonly kind: StorageKind;
  /** Whether setLocalIdentity() has been called on this storage (in this or an earlier session). */
  hasLocalIdentity(): Promise<boolean>;
  /**
   * Stores this device's identity. Once: a storage that already holds an identity rejects with
   * MW_SDK_STORAGE_IDENTITY_EXISTS (replacing it would orphan every session and prekey).
   */
  setLocalIdentity(identity: LocalIdentity): Promise<void>;
  /** Waits for running transactions, then releases the storage (and its one-writer lock). Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

// ── Identity codec shared by the persistent adapters ────────────────────────────────────────

/** The storage form of a LocalIdentity. Secrets are raw bytes: wipe them after writing. */
export interface StoredIdentity {
  readonly certificate: Uint8Array;
  readonly signingSeed: Uint8Array;
  readonly dhSecret: Uint8Array;
}

/** Throws RangeError unless the identity's device keys are the ones its certificate certifies. */
export function checkIdentity(identity: LocalIdentity, operation: string): void {
  const { certificate: c, device: d } = identity;
  if (!equalBytes(c.deviceSigningKey, d.signingPublicKey) || !equalBytes(c.deviceDhKey, d.dhPublicKey)) {
    throw new RangeError(`${operation}: the certificate does not certify this device's keys`);
  }
}

export function exportIdentity(identity: LocalIdentity): StoredIdentity {
  return { certificate: encodeDeviceCertificate(identity.certificate), ...identity.device.exportSecrets() };
}

/** Rebuilds a LocalIdentity, checking that the stored secrets still match the certificate. */
export function importIdentity(ctx: CryptoContext, stored: StoredIdentity, operation: string): LocalIdentity {
  let identity: LocalIdentity;
  try {
    identity = { certificate: decodeDeviceCertificate(stored.certificate), device: DeviceKeyPair.fromSecrets(ctx, stored.signingSeed, stored.dhSecret) };
  } catch (e) {
    throw new StorageError(StorageErrorCode.CORRUPT, operation, 'stored identity cannot be decoded', { cause: e });
  } finally {
    wipe(stored.signingSeed, stored.dhSecret);
  }
  try {
    checkIdentity(identity, operation);
  } catch {
    throw new StorageError(StorageErrorCode.CORRUPT, operation, 'stored device keys do not match the stored certificate');
  }
  return identity;
}

/** Throws CORRUPT unless `b` is a byte array of `length` (stored blobs are checked before use). */
export function checkBlob(b: unknown, length: number | undefined, what: string, operation: string): Uint8Array {
  if (!(b instanceof Uint8Array) || (length !== undefined && b.length !== length)) {
    throw new StorageError(StorageErrorCode.CORRUPT, operation, `stored ${what} has the wrong type or length`);
  }
  return b;
}

/**
 * What every SDK storage adapter offers on top of the crypto core's ProtocolStore: a device
 * identity that is created once and then only loaded, and a lifetime (close / `await using`).
 */
import type { CryptoContext, DeviceCertificate, LocalIdentity, ProtocolStore, ProtocolStores } from '@meshwhisper/crypto';
import { DeviceKeyPair, decodeDeviceCertificate, encodeDeviceCertificate, equalBytes, sameDevice, wipe } from '@meshwhisper/crypto';
import { StorageError, StorageErrorCode } from './errors.js';

export type StorageKind = 'memory' | 'sqlite' | 'indexeddb';

/** One app item, as listItems() returns it. */
export interface AppItem {
  readonly key: string;
  readonly value: Uint8Array;
}

export interface ListItemsOptions {
  /** Only keys that start with this string (which may be empty). */
  readonly prefix?: string;
  /** At most this many items (a non-negative integer); all when absent. */
  readonly limit?: number;
  /**
   * Only keys strictly greater than this one (same byte order): a cursor, so a long table is read a
   * page at a time — the next page starts after the last key of the previous one.
   */
  readonly after?: string;
}

/**
 * The app-level key/value area of a storage: opaque byte values in named tables, written in the
 * same transactions as the protocol stores (an outbound ciphertext commits with the ratchet advance
 * that produced it). Table names are non-empty, well-formed strings of at most APP_TABLE_MAX_BYTES
 * UTF-8 bytes; keys likewise, at most APP_KEY_MAX_BYTES; values at most APP_VALUE_MAX_BYTES bytes.
 * A malformed argument rejects with MW_SDK_STORAGE_INVALID_ARGUMENT, an oversized value with
 * MW_SDK_STORAGE_LIMIT; neither changes anything, nor poisons the transaction it happens in.
 * Values are copied in and out. Nothing is encrypted at rest.
 */
export interface AppStore {
  /** The value stored under (table, key), if any. */
  getItem(table: string, key: string): Promise<Uint8Array | undefined>;
  /** Stores (or replaces) the value under (table, key). */
  setItem(table: string, key: string, value: Uint8Array): Promise<void>;
  /** Removes (table, key); removing a missing item is not an error. */
  deleteItem(table: string, key: string): Promise<void>;
  /** Items of `table` ordered by key (byte order of the UTF-8 key), optionally only keys starting with `prefix`, at most `limit`. */
  listItems(table: string, options?: ListItemsOptions): Promise<AppItem[]>;
}

/** The view an SDK storage hands to `transaction(fn)`: the protocol stores and the app items, one transaction. */
export type StorageTx = ProtocolStores & AppStore;

/** Transaction views created by this SDK's adapters (so that a view typed ProtocolStores can be recognised). */
const storageTxViews = new WeakSet<object>();

/** @internal Called by each adapter for every view it hands to `transaction(fn)`. */
export function markStorageTx(view: StorageTx): void {
  storageTxViews.add(view);
}

/** Whether `tx` is a transaction view of an SDK storage (and so also offers the app-item methods). */
export function isStorageTx(tx: ProtocolStores): tx is StorageTx {
  return typeof tx === 'object' && tx !== null && storageTxViews.has(tx);
}

/**
 * The app-item view of a transaction that the crypto layer passed on typed as ProtocolStores (for
 * example to the `persist` hook of encryptMessage or sealMessage): writes through it commit or roll
 * back with the session. Rejects, with MW_SDK_STORAGE_INVALID_ARGUMENT, a view that is not an SDK
 * storage's (the session functions were given another ProtocolStore), rather than writing outside
 * the transaction.
 */
export function asStorageTx(tx: ProtocolStores): StorageTx {
  if (!isStorageTx(tx)) {
    throw new StorageError(StorageErrorCode.INVALID_ARGUMENT, 'asStorageTx', 'not a transaction view of an SDK storage (was the session function given an SDK storage?)');
  }
  return tx;
}

/**
 * A ProtocolStore the SDK can own. Everything it stores is committed atomically by transaction();
 * calls made outside a transaction behave as one-operation transactions.
 *
 * Inside `transaction(fn)`, use only the `tx` view passed to `fn`: calling the storage itself from
 * inside `fn` waits for `fn` to finish, which never happens (the same rule as any serialised store).
 */
export interface ProtocolStorage extends ProtocolStore, AppStore {
  readonly kind: StorageKind;
  /**
   * Runs `fn` with a view of the protocol stores and the app items; everything it writes commits
   * together when `fn` resolves and is discarded when it throws (docs/api-storage.md).
   */
  transaction<T>(fn: (tx: StorageTx) => Promise<T>): Promise<T>;
  /** Whether setLocalIdentity() has been called on this storage (in this or an earlier session). */
  hasLocalIdentity(): Promise<boolean>;
  /**
   * Stores this device's identity. Once: a storage that already holds an identity rejects with
   * MW_SDK_STORAGE_IDENTITY_EXISTS (replacing it would orphan every session and prekey).
   */
  setLocalIdentity(identity: LocalIdentity): Promise<void>;
  /**
   * Replaces this device's certificate with a renewal of it (docs/spec/02-keys.md §2.4): the same
   * account and device keys, issued later. The device keys, sessions and prekeys stay; from the
   * next transaction on, getLocalIdentity() returns the new certificate. Rejects with RangeError
   * for a certificate of another device or one not issued after the stored one, and with
   * MW_SDK_STORAGE_NO_IDENTITY before setLocalIdentity().
   */
  renewCertificate(certificate: DeviceCertificate): Promise<void>;
  /** Waits for running transactions, then releases the storage (and its one-writer lock). Idempotent. */
  close(): Promise<void>;
  /**
   * Closes the storage and erases everything it holds: the SQLite file (with its -wal/-shm files),
   * the IndexedDB database, or the in-memory tables. Used when an account or device is deleted.
   */
  erase(): Promise<void>;
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

/** The identity with `certificate` in place of its own; RangeError unless it renews the same device. */
export function renewedIdentity(current: LocalIdentity, certificate: DeviceCertificate, operation: string): LocalIdentity {
  if (!sameDevice(current.certificate, certificate)) throw new RangeError(`${operation}: the certificate is for another account or other device keys`);
  if (!(certificate.issuedAt > current.certificate.issuedAt)) throw new RangeError(`${operation}: a renewal must be issued after the stored certificate`);
  return { certificate, device: current.device };
}

/**
 * The `identity` option of the persistent adapters' open functions: store it in a new storage, or
 * check that the storage already holds exactly it (else MW_SDK_STORAGE_IDENTITY_EXISTS). On any
 * failure the storage is closed before the error is rethrown.
 */
export async function adoptIdentity<S extends ProtocolStorage>(storage: S, identity: LocalIdentity | undefined, operation: string): Promise<S> {
  if (!identity) return storage;
  try {
    if (await storage.hasLocalIdentity()) {
      if (!sameIdentity(await storage.getLocalIdentity(), identity)) throw new StorageError(StorageErrorCode.IDENTITY_EXISTS, operation, 'this storage holds a different device identity');
    } else {
      await storage.setLocalIdentity(identity);
    }
  } catch (e) {
    await storage.close();
    throw e;
  }
  return storage;
}

/** Whether two identities are the same device identity (certificate and both secrets); wipes its copies. */
export function sameIdentity(a: LocalIdentity, b: LocalIdentity): boolean {
  const x = exportIdentity(a);
  const y = exportIdentity(b);
  const same = equalBytes(x.certificate, y.certificate) && equalBytes(x.signingSeed, y.signingSeed) && equalBytes(x.dhSecret, y.dhSecret);
  wipe(x.signingSeed, x.dhSecret, y.signingSeed, y.dhSecret);
  return same;
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

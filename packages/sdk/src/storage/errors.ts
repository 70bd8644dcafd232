/**
 * Storage errors. Every failure of a storage adapter carries a stable `code` (documented in
 * docs/api-storage.md) and the `operation` that raised it. Messages name what went wrong, never a
 * key, a session record or any other stored byte.
 */
export const StorageErrorCode = {
  /** Another writer holds this storage: a second process or a second store instance opened the same SQLite file. */
  LOCKED: 'MW_SDK_STORAGE_LOCKED',
  /** The storage was closed; open it again. */
  CLOSED: 'MW_SDK_STORAGE_CLOSED',
  /** A transaction view was used after its transaction had committed or rolled back. */
  TRANSACTION_CLOSED: 'MW_SDK_STORAGE_TRANSACTION_CLOSED',
  /** getLocalIdentity() before setLocalIdentity(): this storage holds no device identity yet. */
  NO_IDENTITY: 'MW_SDK_STORAGE_NO_IDENTITY',
  /** setLocalIdentity() on a storage that already holds one (an identity is never silently replaced). */
  IDENTITY_EXISTS: 'MW_SDK_STORAGE_IDENTITY_EXISTS',
  /** The storage was written by a newer version of the SDK (its schema version is unknown here). */
  SCHEMA_TOO_NEW: 'MW_SDK_STORAGE_SCHEMA_TOO_NEW',
  /** Stored data fails a consistency check, or the file is not a MeshWhisper storage. */
  CORRUPT: 'MW_SDK_STORAGE_CORRUPT',
  /** The platform lacks what the adapter needs (better-sqlite3 not installed, no IndexedDB, no Web Locks). */
  UNAVAILABLE: 'MW_SDK_STORAGE_UNAVAILABLE',
  /** The database engine failed (disk full, I/O error, quota exceeded, aborted IndexedDB transaction). */
  IO: 'MW_SDK_STORAGE_IO',
  /** An app-item argument is malformed: a table or key name that is empty, too long or not well-formed Unicode; a value that is not a Uint8Array; a bad list option; a transaction view that is not the SDK's. */
  INVALID_ARGUMENT: 'MW_SDK_STORAGE_INVALID_ARGUMENT',
  /** An app-item value is larger than APP_VALUE_MAX_BYTES. */
  LIMIT: 'MW_SDK_STORAGE_LIMIT',
} as const;
export type StorageErrorCode = (typeof StorageErrorCode)[keyof typeof StorageErrorCode];

export class StorageError extends Error {
  override readonly name = 'StorageError';
  constructor(
    readonly code: StorageErrorCode,
    readonly operation: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${operation}: ${message}`, options);
  }
  toJSON(): { name: string; code: StorageErrorCode; operation: string; message: string } {
    return { name: this.name, code: this.code, operation: this.operation, message: this.message };
  }
}

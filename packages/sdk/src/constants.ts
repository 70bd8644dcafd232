/**
 * Named limits and identifiers of the SDK, each with its reason (STYLE.md habit 9).
 */

// ── Storage ─────────────────────────────────────────────────────────────────────────────────

/**
 * PRAGMA application_id of a MeshWhisper SQLite storage ("MWSD"). Opening another application's
 * SQLite file fails with MW_SDK_STORAGE_CORRUPT instead of creating our tables inside it.
 */
export const SQLITE_APPLICATION_ID = 0x4d575344;

/**
 * How long a SQLite opener waits for a lock held by someone else: 0. The only holder can be the
 * storage's one writer, which keeps its exclusive lock for as long as it is open; waiting cannot
 * help, and failing at once gives the second opener a clear MW_SDK_STORAGE_LOCKED.
 */
export const SQLITE_BUSY_TIMEOUT_MS = 0;

/**
 * Prefix of the Web Lock name that serialises writers of one IndexedDB storage across every
 * context of the origin (pages, workers, the service worker); the database name follows it.
 */
export const STORAGE_WEB_LOCK_PREFIX = 'meshwhisper-storage:';

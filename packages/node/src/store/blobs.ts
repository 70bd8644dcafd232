/**
 * SQLite media and archive metadata (the bytes live in files under DATA_DIR). A media record
 * names no device; each device's upload budget per window lives apart in media_budget.
 */
import type { Sqlite } from './db.js';
import type { ArchiveReplaced, ArchiveReplacement, ArchiveRow, MediaRow, MediaUpload } from './node-store.js';

interface ArchiveDbRow {
  account_key: Buffer;
  archive_key: Buffer;
  version: number;
  blob_name: string | null;
  size: number;
  updated_at: number;
}
const archiveRow = (r: ArchiveDbRow | undefined): ArchiveRow | undefined =>
  r && { accountKey: new Uint8Array(r.account_key), archiveKey: new Uint8Array(r.archive_key), size: r.size, updatedAt: r.updated_at, version: r.version, blobName: r.blob_name ?? undefined };

export class SqliteBlobs {
  readonly #media;
  readonly #budget;
  readonly #charge;
  readonly #insertMedia;
  readonly #expired;
  readonly #anyToExpire;
  readonly #deleteMedia;
  readonly #dropBudgets;
  readonly #dropBudgetOf;
  readonly #byKey;
  readonly #keySource;
  readonly #setKey;
  readonly #setStored;
  readonly #deleteArchive;
  readonly #archiveFiles;
  constructor(db: Sqlite) {
    this.#media = db.prepare<[string], { id: string; size: number; expires_at: number }>('SELECT id, size, expires_at FROM media WHERE id = ?');
    this.#budget = db.prepare<[Uint8Array, number], { bytes: number }>('SELECT bytes FROM media_budget WHERE mailbox = ? AND budget_window = ?');
    this.#charge = db.prepare(
      'INSERT INTO media_budget (mailbox, budget_window, bytes) VALUES (?, ?, ?) ON CONFLICT (mailbox, budget_window) DO UPDATE SET bytes = bytes + excluded.bytes',
    );
    this.#insertMedia = db.prepare('INSERT INTO media (id, size, expires_at) VALUES (?, ?, ?)');
    this.#expired = db.prepare<[number, number], { id: string }>('SELECT id FROM media WHERE expires_at <= ? LIMIT ?');
    this.#deleteMedia = db.prepare('DELETE FROM media WHERE id = ?');
    this.#dropBudgets = db.prepare('DELETE FROM media_budget WHERE budget_window < ?');
    this.#anyToExpire = db
      .prepare<[number, number], number>('SELECT EXISTS (SELECT 1 FROM media WHERE expires_at <= ?) OR EXISTS (SELECT 1 FROM media_budget WHERE budget_window < ?)')
      .pluck();
    this.#dropBudgetOf = db.prepare('DELETE FROM media_budget WHERE mailbox = ?');
    this.#byKey = db.prepare<[Uint8Array], ArchiveDbRow>('SELECT account_key, archive_key, size, updated_at, version, blob_name FROM archives WHERE archive_key = ?');
    this.#keySource = db.prepare<[Uint8Array], { key_source: Buffer | null }>('SELECT key_source FROM archives WHERE account_key = ?');
    this.#setKey = db.prepare(
      'INSERT INTO archives (account_key, archive_key, key_source) VALUES (?, ?, ?) ON CONFLICT (account_key) DO UPDATE SET archive_key = excluded.archive_key, key_source = excluded.key_source',
    );
    this.#setStored = db.prepare('UPDATE archives SET size = ?, updated_at = ?, blob_name = ?, version = version + 1 WHERE archive_key = ? AND version = ?');
    this.#deleteArchive = db.prepare('DELETE FROM archives WHERE account_key = ?');
    this.#archiveFiles = db.prepare<[], { account_key: Buffer; blob_name: string | null }>('SELECT account_key, blob_name FROM archives WHERE updated_at > 0');
  }
  media(id: string): MediaRow | undefined {
    const r = this.#media.get(id);
    return r && { id: r.id, size: r.size, expiresAt: r.expires_at };
  }
  budgetUsed(uploader: Uint8Array, window: number): number {
    return this.#budget.get(uploader, window)?.bytes ?? 0;
  }
  /** Inside a transaction: charge and record, or false when the budget is spent. */
  addMedia(m: MediaUpload): boolean {
    if (this.budgetUsed(m.uploader, m.window) + m.size > m.budgetBytes) return false;
    this.#charge.run(m.uploader, m.window, m.size);
    this.#insertMedia.run(m.id, m.size, m.expiresAt);
    return true;
  }
  /** Would expireMedia delete anything? A plain read: no write lock. */
  anyMediaToExpire(now: number, oldestWindow: number): boolean {
    return this.#anyToExpire.get(now, oldestWindow) === 1;
  }
  expireMedia(now: number, oldestWindow: number, limit: number): string[] {
    const ids = this.#expired.all(now, limit).map((r) => r.id);
    for (const id of ids) this.#deleteMedia.run(id);
    this.#dropBudgets.run(oldestWindow);
    return ids;
  }
  dropBudgetOf(mailbox: Uint8Array): void {
    this.#dropBudgetOf.run(mailbox);
  }
  archiveByKey(archiveKey: Uint8Array): ArchiveRow | undefined {
    return archiveRow(this.#byKey.get(archiveKey));
  }
  archiveKeySource(accountKey: Uint8Array): Uint8Array | undefined {
    const r = this.#keySource.get(accountKey);
    return r?.key_source ? new Uint8Array(r.key_source) : undefined;
  }
  setArchiveKey(accountKey: Uint8Array, archiveKey: Uint8Array, keySource: Uint8Array | undefined): void {
    this.#setKey.run(accountKey, archiveKey, keySource ?? null);
  }
  /** Inside a transaction: the compare-and-swap of NodeStore.replaceArchive. */
  replaceArchive(archiveKey: Uint8Array, r: ArchiveReplacement): ArchiveReplaced | undefined {
    const row = this.archiveByKey(archiveKey);
    if (!row) return undefined;
    if (row.version !== r.expectedVersion) return { stored: false, version: row.version };
    this.#setStored.run(r.size, r.now, r.blobName, archiveKey, r.expectedVersion);
    return { stored: true, version: row.version + 1, previousBlob: row.blobName, hadPrevious: row.updatedAt > 0 };
  }
  archiveFileNames(): Set<string> {
    const names = new Set<string>();
    for (const r of this.#archiveFiles.iterate()) names.add(r.blob_name ?? r.account_key.toString('hex'));
    return names;
  }
  deleteArchive(accountKey: Uint8Array): void {
    this.#deleteArchive.run(accountKey);
  }
}

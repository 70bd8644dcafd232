/** Metadata of media blobs and archive blobs (the bytes live in files under DATA_DIR). */
import type { Sqlite } from './db.js';

export interface MediaRow {
  readonly id: string;
  readonly owner: Uint8Array;
  readonly size: number;
  readonly expiresAt: number;
}

export interface ArchiveRow {
  readonly accountKey: Uint8Array;
  readonly archiveKey: Uint8Array;
  readonly size: number;
  readonly updatedAt: number;
}

interface ArchiveDbRow {
  account_key: Buffer;
  archive_key: Buffer;
  size: number;
  updated_at: number;
}
const archiveRow = (r: ArchiveDbRow | undefined): ArchiveRow | undefined =>
  r && { accountKey: new Uint8Array(r.account_key), archiveKey: new Uint8Array(r.archive_key), size: r.size, updatedAt: r.updated_at };

export class BlobReader {
  readonly #media;
  readonly #usage;
  readonly #byAccount;
  readonly #byKey;
  constructor(protected readonly db: Sqlite) {
    this.#media = db.prepare<[string], { id: string; owner: Buffer; size: number; expires_at: number }>('SELECT id, owner, size, expires_at FROM media WHERE id = ?');
    this.#usage = db.prepare<[Uint8Array], { total: number | null }>('SELECT sum(size) AS total FROM media WHERE owner = ?');
    this.#byAccount = db.prepare<[Uint8Array], ArchiveDbRow>('SELECT account_key, archive_key, size, updated_at FROM archives WHERE account_key = ?');
    this.#byKey = db.prepare<[Uint8Array], ArchiveDbRow>('SELECT account_key, archive_key, size, updated_at FROM archives WHERE archive_key = ?');
  }
  media(id: string): MediaRow | undefined {
    const r = this.#media.get(id);
    return r && { id: r.id, owner: new Uint8Array(r.owner), size: r.size, expiresAt: r.expires_at };
  }
  mediaUsage(owner: Uint8Array): number {
    return this.#usage.get(owner)?.total ?? 0;
  }
  mediaOwnedBy(owner: Uint8Array): string[] {
    return this.db.prepare<[Uint8Array], { id: string }>('SELECT id FROM media WHERE owner = ?').all(owner).map((r) => r.id);
  }
  expiredMedia(now: number, limit: number): string[] {
    return this.db.prepare<[number, number], { id: string }>('SELECT id FROM media WHERE expires_at <= ? LIMIT ?').all(now, limit).map((r) => r.id);
  }
  archiveOfAccount(accountKey: Uint8Array): ArchiveRow | undefined {
    return archiveRow(this.#byAccount.get(accountKey));
  }
  archiveByKey(archiveKey: Uint8Array): ArchiveRow | undefined {
    return archiveRow(this.#byKey.get(archiveKey));
  }
  /** The public key-source record of an account's archive, if one was registered. */
  archiveKeySource(accountKey: Uint8Array): Uint8Array | undefined {
    const r = this.db.prepare<[Uint8Array], { key_source: Buffer | null }>('SELECT key_source FROM archives WHERE account_key = ?').get(accountKey);
    return r?.key_source ? new Uint8Array(r.key_source) : undefined;
  }
}

export class BlobTransactor extends BlobReader {
  insertMedia(m: { id: string; owner: Uint8Array; size: number; createdAt: number; expiresAt: number }): void {
    this.db.prepare('INSERT INTO media (id, owner, size, created_at, expires_at) VALUES (?, ?, ?, ?, ?)').run(m.id, m.owner, m.size, m.createdAt, m.expiresAt);
  }
  deleteMedia(id: string): void {
    this.db.prepare('DELETE FROM media WHERE id = ?').run(id);
  }
  /** Registers (or replaces) the archive-access key of an account. */
  setArchiveKey(accountKey: Uint8Array, archiveKey: Uint8Array, keySource: Uint8Array | undefined): void {
    this.db
      .prepare(
        'INSERT INTO archives (account_key, archive_key, key_source) VALUES (?, ?, ?) ON CONFLICT (account_key) DO UPDATE SET archive_key = excluded.archive_key, key_source = excluded.key_source',
      )
      .run(accountKey, archiveKey, keySource ?? null);
  }
  setArchiveStored(archiveKey: Uint8Array, size: number, now: number): void {
    this.db.prepare('UPDATE archives SET size = ?, updated_at = ? WHERE archive_key = ?').run(size, now, archiveKey);
  }
  deleteArchive(accountKey: Uint8Array): void {
    this.db.prepare('DELETE FROM archives WHERE account_key = ?').run(accountKey);
  }
}

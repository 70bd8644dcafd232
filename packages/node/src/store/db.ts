/**
 * The SQLite database (better-sqlite3): durability settings, migrations, and the split between
 * readers (plain SELECTs, usable anywhere) and transactors (writes, only inside `transact`).
 *
 * Durability: WAL with synchronous=FULL fsyncs the WAL on every commit, so a commit that
 * returned survives power loss; the node acknowledges a send only after its commit returned.
 * secure_delete=ON overwrites deleted content, so acknowledged envelopes do not linger in free pages.
 * temp_store=MEMORY keeps statement journals and RETURNING tables in memory: by default SQLite
 * writes them to unlinked files in /var/tmp — outside the data directory, with copies of deleted
 * rows in them — and an ack's `DELETE … RETURNING` wrote ~25 KiB there per envelope (issue 12).
 * New databases use 8 KiB pages (PAGE_SIZE): a 1 KiB envelope row then fits in its WITHOUT ROWID
 * leaf; with 4 KiB pages it spilled into an overflow page of its own, so every send and every ack
 * wrote a whole extra page (measured with bench/node/store.ts: 11.5 → 4.2 KiB written per
 * envelope, writer CPU about halved). An existing database with smaller pages is converted when the
 * node opens it (convertPageSize, below), if that is safe and bounded in time.
 */
import { chmodSync, closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS } from './migrations.js';
import type { Migration } from './migrations.js';

export type Sqlite = Database.Database;

/** The pragmas the node requires; a test asserts they are in force. */
export const REQUIRED_PRAGMAS = {
  journal_mode: 'wal',
  synchronous: 2, // FULL
  secure_delete: 1,
  foreign_keys: 1,
  temp_store: 2, // MEMORY
} as const;

/** busy_timeout of every connection the node opens (ms): how long a statement waits for a lock SQLite holds elsewhere. */
export const BUSY_TIMEOUT_MS = 5000;

/** Page size of a newly created database (see above). */
export const PAGE_SIZE = 8192;

/**
 * WAL frames per cycle: an automatic checkpoint runs once a commit leaves the WAL this long, and the
 * next commit restarts the log from its first frame; journal_size_limit cuts the file back to that
 * many frames at the restart. Set on every connection that writes: the store writer relies on it
 * to know when a deletion's old page images have been overwritten (sqlite-writer.worker.js).
 */
export const WAL_CYCLE_FRAMES = 1000;

/** journal_size_limit for WAL_CYCLE_FRAMES frames of `pageSize` (32-byte header, 24-byte frame headers). */
export function walSizeLimit(pageSize: number): number {
  return 32 + WAL_CYCLE_FRAMES * (pageSize + 24);
}

export interface OpenOptions {
  readonly migrations?: readonly Migration[];
  readonly readonly?: boolean;
}

export function openDatabase(file: string, options: OpenOptions = {}): Sqlite {
  const db = new Database(file, { readonly: options.readonly ?? false });
  try {
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.pragma('temp_store = MEMORY');
    if (!options.readonly) {
      if ((db.pragma('page_count', { simple: true }) as number) === 0) db.pragma(`page_size = ${PAGE_SIZE}`);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('secure_delete = ON');
      db.pragma('foreign_keys = ON');
      migrate(db, options.migrations ?? MIGRATIONS);
      db.pragma(`wal_autocheckpoint = ${WAL_CYCLE_FRAMES}`);
      db.pragma(`journal_size_limit = ${walSizeLimit(db.pragma('page_size', { simple: true }) as number)}`);
    }
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

/** fsync of a file or directory by path (its data and metadata on disk; throws what open or fsync throws). */
export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Applies every migration newer than PRAGMA user_version, each in its own transaction. */
export function migrate(db: Sqlite, migrations: readonly Migration[] = MIGRATIONS): number {
  let current = db.pragma('user_version', { simple: true }) as number;
  const latest = migrations.at(-1)?.version ?? 0;
  if (current > latest) throw new Error(`database schema version ${current} is newer than this node (${latest}); refusing to start`);
  for (const m of migrations) {
    if (m.version <= current) continue;
    if (m.version !== current + 1) throw new Error(`migration ${m.version} does not follow ${current}`);
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
    current = m.version;
  }
  return current;
}

/** The pragmas actually in force (for the durability test and /ready diagnostics). */
export function pragmasInForce(db: Sqlite): Record<keyof typeof REQUIRED_PRAGMAS, string | number> {
  return {
    journal_mode: db.pragma('journal_mode', { simple: true }) as string,
    synchronous: db.pragma('synchronous', { simple: true }) as number,
    secure_delete: db.pragma('secure_delete', { simple: true }) as number,
    foreign_keys: db.pragma('foreign_keys', { simple: true }) as number,
    temp_store: db.pragma('temp_store', { simple: true }) as number,
  };
}

/**
 * Largest database converted to PAGE_SIZE at start. VACUUM INTO copies the whole file; on this
 * project's bench machine (a shared virtual disk) it ran at ~70 MB/s, so the bound keeps a start-up
 * under ~15 s. A larger database keeps its pages (the log says so, and how to convert it by hand).
 */
export const PAGE_SIZE_CONVERT_MAX_BYTES = 1024 * 1024 * 1024;

export type PageSizeConversion =
  | { readonly converted: true; readonly from: number; readonly to: number; readonly bytes: number; readonly ms: number }
  | { readonly converted: false; readonly from: number; readonly reason: 'too-large' | 'no-space' | 'wal-kept' | 'failed' };

/**
 * Rewrites a database with pages smaller than PAGE_SIZE into PAGE_SIZE pages, before any other
 * connection opens it (the data directory is locked: one node). VACUUM INTO a temporary file next
 * to it (fsynced, 0600, checked), the old database closed — its WAL checkpointed and removed — and
 * the copy renamed over it: a crash at any point leaves either the old or the new file whole (a
 * leftover temporary file is removed on the next start). Skipped when the database is larger than
 * `maxBytes` or the disk lacks room for the copy; a failure leaves the old database in use.
 * Returns undefined when nothing was to be done.
 */
export function convertPageSize(file: string, maxBytes = PAGE_SIZE_CONVERT_MAX_BYTES, spareBytes = 0): PageSizeConversion | undefined {
  const tmp = `${file}.page-size-tmp`;
  rmSync(tmp, { force: true });
  if (!existsSync(file)) return undefined;
  const db = new Database(file, { fileMustExist: true });
  let from = 0;
  let bytes: number;
  const started = performance.now();
  try {
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    from = db.pragma('page_size', { simple: true }) as number;
    const pages = db.pragma('page_count', { simple: true }) as number;
    if (from >= PAGE_SIZE || pages === 0) return undefined;
    bytes = from * pages;
    if (bytes > maxBytes) return { converted: false, from, reason: 'too-large' };
    const fs = statfsSync(dirname(file));
    if (fs.bavail * fs.bsize < bytes * 1.1 + spareBytes) return { converted: false, from, reason: 'no-space' };
    db.pragma('temp_store = MEMORY');
    db.pragma(`page_size = ${PAGE_SIZE}`); // the page size VACUUM INTO gives its output
    db.prepare('VACUUM INTO ?').run(tmp);
  } catch {
    db.close();
    rmSync(tmp, { force: true });
    // The old database is untouched: the node starts with it.
    return { converted: false, from, reason: 'failed' };
  } finally {
    if (db.open) db.close(); // the last connection: checkpoints and removes the WAL
  }
  try {
    chmodSync(tmp, 0o600);
    fsyncPath(tmp); // VACUUM INTO does not fsync its output
    const check = new Database(tmp, { fileMustExist: true });
    try {
      if (check.pragma('page_size', { simple: true }) !== PAGE_SIZE || check.pragma('quick_check', { simple: true }) !== 'ok') throw new Error('page-size conversion: the copy did not check out');
    } finally {
      check.close();
    }
    // The last connection's close removes -wal and -shm. If they are still there, another
    // connection has the file open (or the WAL could not be folded in): a WAL left next to the
    // new file would be replayed into it, so the old database stays.
    if (existsSync(`${file}-wal`) || existsSync(`${file}-shm`)) {
      rmSync(tmp, { force: true });
      return { converted: false, from, reason: 'wal-kept' };
    }
    renameSync(tmp, file);
    fsyncPath(dirname(file));
  } catch {
    rmSync(tmp, { force: true });
    if (existsSync(file)) return { converted: false, from, reason: 'failed' };
    throw new Error('page-size conversion: the database file is missing');
  }
  return { converted: true, from, to: PAGE_SIZE, bytes, ms: performance.now() - started };
}

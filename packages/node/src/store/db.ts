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
 * envelope, writer CPU about halved). Existing databases keep their page size.
 */
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

/** Page size of a newly created database (see above). */
export const PAGE_SIZE = 8192;

export interface OpenOptions {
  readonly migrations?: readonly Migration[];
  readonly readonly?: boolean;
}

export function openDatabase(file: string, options: OpenOptions = {}): Sqlite {
  const db = new Database(file, { readonly: options.readonly ?? false });
  try {
    db.pragma('busy_timeout = 5000');
    db.pragma('temp_store = MEMORY');
    if (!options.readonly) {
      if ((db.pragma('page_count', { simple: true }) as number) === 0) db.pragma(`page_size = ${PAGE_SIZE}`);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('secure_delete = ON');
      db.pragma('foreign_keys = ON');
      migrate(db, options.migrations ?? MIGRATIONS);
    }
    return db;
  } catch (e) {
    db.close();
    throw e;
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

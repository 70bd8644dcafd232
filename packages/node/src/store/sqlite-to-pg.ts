/**
 * `meshwhisper-node migrate-to-postgres`: copies a stopped single node's SQLite database into an
 * empty PostgreSQL schema, so it can grow into a cluster (docs/scale-out.md §Growing).
 *
 * - The data directory is locked for the whole copy (a running node holds the lock: refused).
 * - The SQLite file is brought to the latest SQLite migration first, then every table is copied
 *   in ONE PostgreSQL transaction: either everything arrives or nothing does.
 * - The target must be empty (no device, envelope, username or media row): refused otherwise.
 * - Afterwards the row counts of both sides are compared inside the same transaction.
 * Media and archive blobs are files in DATA_DIR and stay there: the cluster's instances mount
 * that same directory (node key included).
 */
import { existsSync } from 'node:fs';
import pg from 'pg';
import type { Sqlite } from './db.js';
import { openDatabase } from './db.js';
import { lockDataDir } from './data-dir.js';
import { migratePg } from './pg-store.js';

export const MigrateErrorCode = {
  /** The PostgreSQL schema already holds data. */
  TARGET_NOT_EMPTY: 'MW_MIGRATE_TARGET_NOT_EMPTY',
  /** Row counts differ after the copy (nothing was committed). */
  COUNT_MISMATCH: 'MW_MIGRATE_COUNT_MISMATCH',
  /** No SQLite database at the given path. */
  NO_SOURCE: 'MW_MIGRATE_NO_SOURCE',
} as const;

export class MigrateError extends Error {
  override readonly name = 'MigrateError';
  constructor(
    readonly code: (typeof MigrateErrorCode)[keyof typeof MigrateErrorCode],
    message: string,
  ) {
    super(message);
  }
}

type PgType = 'bytea' | 'bigint' | 'text' | 'boolean';
interface TableSpec {
  readonly table: string;
  readonly columns: readonly (readonly [name: string, type: PgType])[];
}

/** Every table of the SQLite schema (after its migration 8) with its PostgreSQL column types. */
const TABLES: readonly TableSpec[] = [
  {
    table: 'devices',
    columns: [
      ['mailbox', 'bytea'],
      ['account_key', 'bytea'],
      ['certificate', 'bytea'],
      ['issued_at', 'bigint'],
      ['signed_prekey', 'bytea'],
      ['last_resort_kem_prekey', 'bytea'],
      ['updated_at', 'bigint'],
      ['renewal_certificate', 'bytea'],
      ['renewal_issued_at', 'bigint'],
    ],
  },
  { table: 'one_time_prekeys', columns: [['mailbox', 'bytea'], ['key_id', 'bigint'], ['encoded', 'bytea']] },
  { table: 'kem_prekeys', columns: [['mailbox', 'bytea'], ['key_id', 'bigint'], ['encoded', 'bytea']] },
  {
    table: 'messages',
    columns: [
      ['mailbox', 'bytea'],
      ['seq', 'bigint'],
      ['id', 'bytea'],
      ['payload', 'bytea'],
      ['received_at', 'bigint'],
      ['with_token', 'boolean'],
    ],
  },
  {
    table: 'mailbox_stats',
    columns: [
      ['mailbox', 'bytea'],
      ['messages', 'bigint'],
      ['bytes', 'bigint'],
      ['tokenless', 'bigint'],
      ['gap_expired', 'bigint'],
      ['gap_evicted', 'bigint'],
      ['next_seq', 'bigint'],
    ],
  },
  { table: 'delivery_tokens', columns: [['mailbox', 'bytea'], ['token_hash', 'bytea']] },
  { table: 'usernames', columns: [['namespace', 'text'], ['username', 'text'], ['owner_key', 'bytea'], ['updated_at', 'bigint']] },
  { table: 'media', columns: [['id', 'text'], ['size', 'bigint'], ['expires_at', 'bigint']] },
  { table: 'media_budget', columns: [['mailbox', 'bytea'], ['budget_window', 'bigint'], ['bytes', 'bigint']] },
  { table: 'archives', columns: [['account_key', 'bytea'], ['archive_key', 'bytea'], ['size', 'bigint'], ['updated_at', 'bigint'], ['key_source', 'bytea'], ['version', 'bigint'], ['blob_name', 'text']] },
  { table: 'device_lists', columns: [['account_key', 'bytea'], ['epoch', 'bigint'], ['encoded', 'bytea'], ['updated_at', 'bigint']] },
  {
    table: 'push_registrations',
    columns: [
      ['mailbox', 'bytea'],
      ['kind', 'text'],
      ['token', 'text'],
      ['p256dh', 'bytea'],
      ['auth', 'bytea'],
      ['apns_mode', 'text'],
      ['updated_at', 'bigint'],
    ],
  },
];

/** Rows per INSERT (bounded memory for large mailboxes). */
const BATCH = 500;

export interface MigrateOptions {
  /** DATA_DIR of the stopped node (locked during the copy). */
  readonly dataDir: string;
  /** The SQLite file (DATA_DIR/meshwhisper.sqlite3). */
  readonly sqliteFile: string;
  readonly connectionString: string;
  readonly schema: string;
  /** Progress lines (table, rows). */
  readonly progress?: (line: string) => void;
}

export interface MigrateResult {
  readonly tables: Record<string, number>;
}

function convert(value: unknown, type: PgType): unknown {
  if (value === null || value === undefined) return null;
  if (type === 'boolean') return value === 1 || value === true;
  if (type === 'bigint') return typeof value === 'bigint' ? value.toString() : value;
  return value;
}

async function copyTable(db: Sqlite, client: pg.Client, spec: TableSpec): Promise<number> {
  const names = spec.columns.map(([n]) => n);
  const select = db.prepare(`SELECT ${names.join(', ')} FROM ${spec.table}`).raw(true);
  const insert = `INSERT INTO ${spec.table} (${names.join(', ')}) SELECT * FROM unnest(${spec.columns.map(([, t], i) => `$${i + 1}::${t}[]`).join(', ')})`;
  let batch: unknown[][] = spec.columns.map(() => []);
  let pending = 0;
  let total = 0;
  const flush = async (): Promise<void> => {
    if (pending === 0) return;
    await client.query(insert, batch);
    total += pending;
    batch = spec.columns.map(() => []);
    pending = 0;
  };
  for (const row of select.iterate() as Iterable<unknown[]>) {
    spec.columns.forEach(([, t], i) => batch[i]!.push(convert(row[i], t)));
    if (++pending >= BATCH) await flush();
  }
  await flush();
  return total;
}

export async function migrateSqliteToPostgres(o: MigrateOptions): Promise<MigrateResult> {
  const lock = lockDataDir(o.dataDir); // refuses while a node runs on this DATA_DIR
  let db: Sqlite | undefined;
  const client = new pg.Client({ connectionString: o.connectionString, application_name: 'meshwhisper-migrate' });
  try {
    if (!existsSync(o.sqliteFile)) throw new MigrateError(MigrateErrorCode.NO_SOURCE, `no SQLite database at ${o.sqliteFile}`);
    db = openDatabase(o.sqliteFile);
    await client.connect();
    await migratePg(client, o.schema);
    await client.query(`SET search_path TO ${o.schema}`);
    await client.query('BEGIN');
    try {
      const busy = await client.query<{ n: string }>('SELECT ((SELECT count(*) FROM devices) + (SELECT count(*) FROM messages) + (SELECT count(*) FROM usernames) + (SELECT count(*) FROM media))::text AS n');
      if (busy.rows[0]!.n !== '0') throw new MigrateError(MigrateErrorCode.TARGET_NOT_EMPTY, `schema ${o.schema} already holds data; migrate into an empty schema (nothing was written)`);
      const tables: Record<string, number> = {};
      for (const spec of TABLES) {
        tables[spec.table] = await copyTable(db, client, spec);
        o.progress?.(`${spec.table}: ${tables[spec.table]} rows`);
      }
      for (const spec of TABLES) {
        const want = (db.prepare(`SELECT count(*) AS n FROM ${spec.table}`).get() as { n: number }).n;
        const got = Number((await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${spec.table}`)).rows[0]!.n);
        if (want !== got) throw new MigrateError(MigrateErrorCode.COUNT_MISMATCH, `${spec.table}: ${want} rows in SQLite, ${got} copied (nothing was committed)`);
      }
      await client.query('COMMIT');
      return { tables };
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
  } finally {
    db?.close();
    await client.end().catch(() => undefined);
    lock.release();
  }
}

/**
 * A ProtocolStore in one SQLite file (Node; better-sqlite3 12, an optional dependency).
 *
 * Guarantees (docs/api-storage.md):
 *  - Durability: WAL journal with synchronous=FULL — a transaction that resolved survives a power
 *    cut; one that did not is rolled back on the next open.
 *  - Atomicity: transaction(fn) is a real SQLite transaction (BEGIN IMMEDIATE … COMMIT, or ROLLBACK
 *    when fn throws or any statement inside it failed). better-sqlite3 is synchronous and the one
 *    connection is shared, so callers are serialised by an in-process queue: while fn awaits, no
 *    other caller's statement can slip into its transaction.
 *  - One writer per storage: the connection runs in locking_mode=EXCLUSIVE and takes the write lock
 *    at open, so a second opener — another process, or another instance in this process — fails at
 *    once with MW_SDK_STORAGE_LOCKED. The lock is the operating system's file lock, which the kernel
 *    drops when the owning process dies: a crash can never leave a stale lock behind (a pid lock
 *    file can, and a recycled pid can make it look alive). See docs/api-storage.md for the
 *    trade-offs (no concurrent readers, no network file systems).
 *  - Versioned schema: PRAGMA user_version counts applied migrations; application_id marks the file
 *    as ours. A file from a newer SDK fails with MW_SDK_STORAGE_SCHEMA_TOO_NEW, never with garbage.
 *  - Secrets are stored as raw BLOB columns (not encrypted at rest: protect the file like an SSH
 *    key). Buffers read from the database that held secrets are wiped after use.
 */
import type * as NodeFs from 'node:fs';
import type * as NodePath from 'node:path';
import type { CryptoContext, DeviceAddress, DeviceCertificate, LocalIdentity, SeenInitialMessage } from '@meshwhisper/crypto';
import {
  KemPreKeyPair,
  ML_KEM_768_PUBLIC_KEY_LENGTH,
  ML_KEM_768_SECRET_KEY_LENGTH,
  X25519PreKeyPair,
  X25519_KEY_LENGTH,
  createContext,
  encodeDeviceCertificate,
  wipe,
} from '@meshwhisper/crypto';
import { SQLITE_APPLICATION_ID, SQLITE_BUSY_TIMEOUT_MS } from '../constants.js';
import { checkKey, checkListOptions, checkTable, checkValue, lowerBound, prefixUpperBound } from './app-items.js';
import { StorageError, StorageErrorCode } from './errors.js';
import { SingleOperationStorage } from './single-op.js';
import type { AppItem, ListItemsOptions, ProtocolStorage, StorageTx } from './types.js';
import { adoptIdentity, checkBlob, checkIdentity, exportIdentity, importIdentity, markStorageTx, renewedIdentity } from './types.js';

/**
 * The part of better-sqlite3's API this adapter uses, declared here so that the SDK's published
 * types do not require @types/better-sqlite3 (the driver is an optional dependency).
 */
export interface SqliteStatement {
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}
export interface SqliteDatabase {
  readonly inTransaction: boolean;
  prepare(sql: string): SqliteStatement;
  exec(sql: string): unknown;
  pragma(source: string, options?: { simple?: boolean }): unknown;
  close(): unknown;
}
/** better-sqlite3's default export (the Database constructor). */
export type SqliteDriver = new (path: string, options?: { timeout?: number }) => SqliteDatabase;
type Database = SqliteDatabase;
type Statement = SqliteStatement;

/**
 * Numbered migrations: migration i (1-based) takes the schema from version i-1 to i. Append only —
 * never edit a released entry; a change is a new migration.
 */
export const SQLITE_MIGRATIONS: readonly { readonly description: string; readonly sql: string }[] = [
  {
    description: 'protocol stores: identity, prekeys, sessions, replay cache',
    sql: `
      CREATE TABLE identity (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        certificate BLOB NOT NULL,
        signing_seed BLOB NOT NULL,
        dh_secret BLOB NOT NULL
      );
      CREATE TABLE prekey (
        id INTEGER PRIMARY KEY,
        secret_key BLOB NOT NULL,
        public_key BLOB NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE signed_prekey (
        id INTEGER PRIMARY KEY,
        secret_key BLOB NOT NULL,
        public_key BLOB NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE kem_prekey (
        id INTEGER PRIMARY KEY,
        last_resort INTEGER NOT NULL CHECK (last_resort IN (0, 1)),
        secret_key BLOB NOT NULL,
        public_key BLOB NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE session (
        address TEXT PRIMARY KEY,
        record BLOB NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE seen_initial_message (
        digest BLOB PRIMARY KEY,
        signed_prekey_id INTEGER NOT NULL,
        kem_prekey_id INTEGER NOT NULL,
        seen_at INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
  {
    description: 'app items: opaque values in named tables, written in the protocol transactions',
    // TEXT keys in the BINARY collation (memcmp of UTF-8) give the byte order listItems promises.
    sql: `
      CREATE TABLE app_items (
        tbl TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (tbl, key)
      ) WITHOUT ROWID;
    `,
  },
];

export interface SqliteStorageOptions {
  /** The database file (created if missing). Its directory must exist. */
  readonly path: string;
  /** Crypto context used to rebuild the device key pair from its stored secrets. */
  readonly ctx?: CryptoContext;
  /** Sets the identity on a new storage; on an existing one it must be the identity already stored. */
  readonly identity?: LocalIdentity;
  /** The better-sqlite3 constructor, if the app loads it itself (Electron rebuilds, bundlers); imported otherwise. */
  readonly driver?: SqliteDriver;
}

/** Resolved paths opened by this process: a second instance gets a clear error before touching SQLite. */
const openInThisProcess = new Set<string>();

function resolvePath(p: string): string {
  if (p === ':memory:' || p === '') return p;
  const path = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule?.('node:path') as typeof NodePath | undefined;
  return path ? path.resolve(p) : p;
}

function sqliteCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined;
}

/** Maps an engine error to a StorageError; leaves our own and the caller's errors alone. */
function engineError(e: unknown, operation: string): unknown {
  const code = sqliteCode(e);
  if (code === undefined) return e;
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new StorageError(StorageErrorCode.LOCKED, operation, 'the storage is open in another process (one writer per storage)', { cause: e });
  }
  if (code.startsWith('SQLITE_CORRUPT') || code.startsWith('SQLITE_NOTADB')) {
    return new StorageError(StorageErrorCode.CORRUPT, operation, `the database file is damaged or not a database (${code})`, { cause: e });
  }
  return new StorageError(StorageErrorCode.IO, operation, `database engine error ${code}`, { cause: e });
}

async function loadDriver(): Promise<SqliteDriver> {
  // A computed specifier keeps bundlers from pulling a native Node module into browser builds.
  const specifier = ['better', 'sqlite3'].join('-');
  try {
    const mod = (await import(specifier)) as { default?: SqliteDriver };
    if (typeof mod.default !== 'function') throw new TypeError('unexpected module shape');
    return mod.default;
  } catch (e) {
    throw new StorageError(StorageErrorCode.UNAVAILABLE, 'openSqliteStorage', 'better-sqlite3 is not installed (npm install better-sqlite3)', { cause: e });
  }
}

interface PreKeyRow {
  id: number;
  secret_key: Uint8Array;
  public_key: Uint8Array;
  created_at: number;
}
interface KemRow extends PreKeyRow {
  last_resort: number;
}

function statements(db: Database) {
  const p = (sql: string): Statement => db.prepare(sql);
  return {
    identityGet: p('SELECT certificate, signing_seed, dh_secret FROM identity WHERE id = 1'),
    identityHas: p('SELECT 1 AS x FROM identity WHERE id = 1'),
    identityPut: p('INSERT INTO identity (id, certificate, signing_seed, dh_secret) VALUES (1, ?, ?, ?)'),
    identityRenew: p('UPDATE identity SET certificate = ? WHERE id = 1'),
    preKeyGet: p('SELECT id, secret_key, public_key, created_at FROM prekey WHERE id = ?'),
    preKeyPut: p('INSERT OR REPLACE INTO prekey (id, secret_key, public_key, created_at) VALUES (?, ?, ?, ?)'),
    preKeyDel: p('DELETE FROM prekey WHERE id = ?'),
    preKeyCount: p('SELECT count(*) AS n FROM prekey'),
    spkGet: p('SELECT id, secret_key, public_key, created_at FROM signed_prekey WHERE id = ?'),
    spkPut: p('INSERT OR REPLACE INTO signed_prekey (id, secret_key, public_key, created_at) VALUES (?, ?, ?, ?)'),
    spkDel: p('DELETE FROM signed_prekey WHERE id = ?'),
    spkList: p('SELECT id, secret_key, public_key, created_at FROM signed_prekey ORDER BY id'),
    kemGet: p('SELECT id, last_resort, secret_key, public_key, created_at FROM kem_prekey WHERE id = ?'),
    kemPut: p('INSERT OR REPLACE INTO kem_prekey (id, last_resort, secret_key, public_key, created_at) VALUES (?, ?, ?, ?, ?)'),
    kemDel: p('DELETE FROM kem_prekey WHERE id = ?'),
    kemList: p('SELECT id, last_resort, secret_key, public_key, created_at FROM kem_prekey ORDER BY id'),
    sessionGet: p('SELECT record FROM session WHERE address = ?'),
    sessionPut: p('INSERT OR REPLACE INTO session (address, record) VALUES (?, ?)'),
    sessionDel: p('DELETE FROM session WHERE address = ?'),
    sessionList: p('SELECT address FROM session ORDER BY address'),
    seenHas: p('SELECT 1 AS x FROM seen_initial_message WHERE digest = ?'),
    seenPut: p('INSERT OR REPLACE INTO seen_initial_message (digest, signed_prekey_id, kem_prekey_id, seen_at) VALUES (?, ?, ?, ?)'),
    itemGet: p('SELECT value FROM app_items WHERE tbl = ? AND key = ?'),
    itemPut: p('INSERT OR REPLACE INTO app_items (tbl, key, value) VALUES (?, ?, ?)'),
    itemDel: p('DELETE FROM app_items WHERE tbl = ? AND key = ?'),
    // LIMIT -1 is no limit. The key range uses the (tbl, key) primary key.
    itemListFrom: p('SELECT key, value FROM app_items WHERE tbl = ? AND key >= ? ORDER BY key LIMIT ?'),
    itemListRange: p('SELECT key, value FROM app_items WHERE tbl = ? AND key >= ? AND key < ? ORDER BY key LIMIT ?'),
    itemListAfter: p('SELECT key, value FROM app_items WHERE tbl = ? AND key > ? ORDER BY key LIMIT ?'),
    itemListAfterRange: p('SELECT key, value FROM app_items WHERE tbl = ? AND key > ? AND key < ? ORDER BY key LIMIT ?'),
    seenPrune: p(
      `DELETE FROM seen_initial_message
        WHERE signed_prekey_id NOT IN (SELECT value FROM json_each(?))
           OR kem_prekey_id NOT IN (SELECT value FROM json_each(?))`,
    ),
  };
}
type Statements = ReturnType<typeof statements>;

function x25519FromRow(r: PreKeyRow, op: string): X25519PreKeyPair {
  try {
    return new X25519PreKeyPair(
      r.id,
      checkBlob(r.secret_key, X25519_KEY_LENGTH, 'prekey secret', op),
      Uint8Array.from(checkBlob(r.public_key, X25519_KEY_LENGTH, 'prekey public key', op)),
      r.created_at,
    );
  } finally {
    wipe(r.secret_key);
  }
}

function kemFromRow(r: KemRow, op: string): KemPreKeyPair {
  try {
    return new KemPreKeyPair(
      r.id,
      r.last_resort === 1,
      checkBlob(r.secret_key, ML_KEM_768_SECRET_KEY_LENGTH, 'KEM prekey secret', op),
      Uint8Array.from(checkBlob(r.public_key, ML_KEM_768_PUBLIC_KEY_LENGTH, 'KEM prekey public key', op)),
      r.created_at,
    );
  } finally {
    wipe(r.secret_key);
  }
}

/**
 * The view a transaction's function gets. Every statement runs inside the open SQLite transaction;
 * a statement the engine rejects poisons the transaction, so it rolls back even if fn swallows the error.
 */
class SqliteTxView implements StorageTx {
  open = true;
  failure: unknown = undefined;
  constructor(
    private readonly storage: SqliteStorage,
    private readonly st: Statements,
  ) {
    markStorageTx(this);
  }

  private run<T>(operation: string, f: (st: Statements) => T): Promise<T> {
    if (!this.open) return Promise.reject(new StorageError(StorageErrorCode.TRANSACTION_CLOSED, operation, 'this transaction has already ended'));
    try {
      return Promise.resolve(f(this.st));
    } catch (e) {
      const err = engineError(e, operation);
      // Only an engine failure poisons the transaction (SQLite may have undone part of it);
      // NO_IDENTITY or CORRUPT from a read leaves it intact, and fn may handle those.
      if (sqliteCode(e) !== undefined) this.failure ??= err;
      return Promise.reject(err);
    }
  }

  getLocalIdentity(): Promise<LocalIdentity> {
    return this.run('getLocalIdentity', () => this.storage.identityOrThrow());
  }
  loadPreKey(id: number): Promise<X25519PreKeyPair | undefined> {
    return this.run('loadPreKey', (st) => {
      const r = st.preKeyGet.get(id) as PreKeyRow | undefined;
      return r && x25519FromRow(r, 'loadPreKey');
    });
  }
  storePreKey(key: X25519PreKeyPair): Promise<void> {
    return this.run('storePreKey', (st) => void st.preKeyPut.run(key.id, key.secretKey, key.publicKey, key.createdAt));
  }
  removePreKey(id: number): Promise<void> {
    return this.run('removePreKey', (st) => void st.preKeyDel.run(id));
  }
  countPreKeys(): Promise<number> {
    return this.run('countPreKeys', (st) => (st.preKeyCount.get() as { n: number }).n);
  }
  loadSignedPreKey(id: number): Promise<X25519PreKeyPair | undefined> {
    return this.run('loadSignedPreKey', (st) => {
      const r = st.spkGet.get(id) as PreKeyRow | undefined;
      return r && x25519FromRow(r, 'loadSignedPreKey');
    });
  }
  storeSignedPreKey(key: X25519PreKeyPair): Promise<void> {
    return this.run('storeSignedPreKey', (st) => void st.spkPut.run(key.id, key.secretKey, key.publicKey, key.createdAt));
  }
  removeSignedPreKey(id: number): Promise<void> {
    return this.run('removeSignedPreKey', (st) => void st.spkDel.run(id));
  }
  listSignedPreKeys(): Promise<X25519PreKeyPair[]> {
    return this.run('listSignedPreKeys', (st) => (st.spkList.all() as PreKeyRow[]).map((r) => x25519FromRow(r, 'listSignedPreKeys')));
  }
  loadKemPreKey(id: number): Promise<KemPreKeyPair | undefined> {
    return this.run('loadKemPreKey', (st) => {
      const r = st.kemGet.get(id) as KemRow | undefined;
      return r && kemFromRow(r, 'loadKemPreKey');
    });
  }
  storeKemPreKey(key: KemPreKeyPair): Promise<void> {
    return this.run('storeKemPreKey', (st) => void st.kemPut.run(key.id, key.lastResort ? 1 : 0, key.secretKey, key.publicKey, key.createdAt));
  }
  removeKemPreKey(id: number): Promise<void> {
    return this.run('removeKemPreKey', (st) => void st.kemDel.run(id));
  }
  listKemPreKeys(): Promise<KemPreKeyPair[]> {
    return this.run('listKemPreKeys', (st) => (st.kemList.all() as KemRow[]).map((r) => kemFromRow(r, 'listKemPreKeys')));
  }
  loadSession(address: DeviceAddress): Promise<Uint8Array | undefined> {
    return this.run('loadSession', (st) => {
      const r = st.sessionGet.get(address) as { record: Uint8Array } | undefined;
      if (!r) return undefined;
      const out = Uint8Array.from(checkBlob(r.record, undefined, 'session record', 'loadSession'));
      wipe(r.record);
      return out;
    });
  }
  storeSession(address: DeviceAddress, record: Uint8Array): Promise<void> {
    return this.run('storeSession', (st) => void st.sessionPut.run(address, record));
  }
  removeSession(address: DeviceAddress): Promise<void> {
    return this.run('removeSession', (st) => void st.sessionDel.run(address));
  }
  listSessionAddresses(): Promise<DeviceAddress[]> {
    return this.run('listSessionAddresses', (st) => (st.sessionList.all() as { address: string }[]).map((r) => r.address));
  }
  hasSeenInitialMessage(digest: Uint8Array): Promise<boolean> {
    return this.run('hasSeenInitialMessage', (st) => st.seenHas.get(digest) !== undefined);
  }
  addSeenInitialMessage(digest: Uint8Array, info: SeenInitialMessage): Promise<void> {
    return this.run('addSeenInitialMessage', (st) => void st.seenPut.run(digest, info.signedPreKeyId, info.kemPreKeyId, info.seenAt));
  }
  pruneSeenInitialMessages(liveSignedPreKeyIds: ReadonlySet<number>, liveKemPreKeyIds: ReadonlySet<number>): Promise<number> {
    return this.run('pruneSeenInitialMessages', (st) => st.seenPrune.run(JSON.stringify([...liveSignedPreKeyIds]), JSON.stringify([...liveKemPreKeyIds])).changes);
  }
  getItem(table: string, key: string): Promise<Uint8Array | undefined> {
    const op = 'getItem';
    return this.run(op, (st) => {
      const r = st.itemGet.get(checkTable(table, op), checkKey(key, op)) as { value: Uint8Array } | undefined;
      return r && valueFromRow(r.value, op);
    });
  }
  setItem(table: string, key: string, value: Uint8Array): Promise<void> {
    const op = 'setItem';
    return this.run(op, (st) => void st.itemPut.run(checkTable(table, op), checkKey(key, op), checkValue(value, op)));
  }
  deleteItem(table: string, key: string): Promise<void> {
    const op = 'deleteItem';
    return this.run(op, (st) => void st.itemDel.run(checkTable(table, op), checkKey(key, op)));
  }
  listItems(table: string, options?: ListItemsOptions): Promise<AppItem[]> {
    const op = 'listItems';
    return this.run(op, (st) => {
      const t = checkTable(table, op);
      const { prefix, limit, after } = checkListOptions(options, op);
      const upper = prefixUpperBound(prefix);
      const n = limit ?? -1;
      const lo = lowerBound(prefix, after);
      const rows = (
        lo.exclusive
          ? upper === undefined
            ? st.itemListAfter.all(t, lo.key, n)
            : st.itemListAfterRange.all(t, lo.key, upper, n)
          : upper === undefined
            ? st.itemListFrom.all(t, lo.key, n)
            : st.itemListRange.all(t, lo.key, upper, n)
      ) as { key: unknown; value: Uint8Array }[];
      try {
        return rows.map((r) => {
          if (typeof r.key !== 'string') throw new StorageError(StorageErrorCode.CORRUPT, op, 'stored app item key is not text');
          return { key: r.key, value: valueFromRow(r.value, op) };
        });
      } finally {
        for (const r of rows) if (r.value instanceof Uint8Array) wipe(r.value);
      }
    });
  }
}

/** A plain copy of a value blob (better-sqlite3 hands out Buffers); the driver's buffer is wiped, values may be secret. */
function valueFromRow(b: Uint8Array, op: string): Uint8Array {
  const out = Uint8Array.from(checkBlob(b, undefined, 'app item value', op));
  wipe(b);
  return out;
}

export class SqliteStorage extends SingleOperationStorage implements ProtocolStorage {
  readonly kind = 'sqlite';
  readonly #db: Database;
  readonly #st: Statements;
  readonly #ctx: CryptoContext;
  readonly #key: string;
  #identity: LocalIdentity | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  /** @internal Use openSqliteStorage(). */
  constructor(db: Database, ctx: CryptoContext, key: string) {
    super();
    this.#db = db;
    this.#ctx = ctx;
    this.#key = key;
    this.#st = statements(db);
  }

  /** The resolved database path. */
  get path(): string {
    return this.#key;
  }

  /** @internal */
  identityOrThrow(): LocalIdentity {
    if (this.#identity) return this.#identity;
    const row = this.#st.identityGet.get() as { certificate: Uint8Array; signing_seed: Uint8Array; dh_secret: Uint8Array } | undefined;
    if (!row) throw new StorageError(StorageErrorCode.NO_IDENTITY, 'getLocalIdentity', 'this storage holds no device identity yet');
    const op = 'getLocalIdentity';
    this.#identity = importIdentity(
      this.#ctx,
      {
        certificate: Uint8Array.from(checkBlob(row.certificate, undefined, 'certificate', op)),
        signingSeed: checkBlob(row.signing_seed, 32, 'signing seed', op),
        dhSecret: checkBlob(row.dh_secret, 32, 'DH secret', op),
      },
      op,
    );
    return this.#identity;
  }

  transaction<T>(fn: (tx: StorageTx) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new StorageError(StorageErrorCode.CLOSED, 'transaction', 'the storage is closed'));
    const run = async (): Promise<T> => {
      const db = this.#db;
      try {
        db.exec('BEGIN IMMEDIATE');
      } catch (e) {
        throw engineError(e, 'transaction');
      }
      const view = new SqliteTxView(this, this.#st);
      try {
        const result = await fn(view);
        view.open = false;
        if (view.failure !== undefined) throw view.failure;
        try {
          db.exec('COMMIT');
        } catch (e) {
          throw engineError(e, 'transaction');
        }
        return result;
      } catch (e) {
        view.open = false;
        // A failed COMMIT may already have rolled back (SQLite does so on some I/O errors).
        try {
          if (db.inTransaction) db.exec('ROLLBACK');
        } catch {
          // The connection is unusable; the caller still learns the first error.
        }
        throw e;
      }
    };
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  async hasLocalIdentity(): Promise<boolean> {
    return this.transaction(async () => this.#identity !== undefined || this.#st.identityHas.get() !== undefined);
  }

  async setLocalIdentity(identity: LocalIdentity): Promise<void> {
    const op = 'setLocalIdentity';
    checkIdentity(identity, op);
    await this.transaction(async () => {
      if (this.#st.identityHas.get() !== undefined) throw new StorageError(StorageErrorCode.IDENTITY_EXISTS, op, 'this storage already holds a device identity');
      const s = exportIdentity(identity);
      try {
        this.#st.identityPut.run(s.certificate, s.signingSeed, s.dhSecret);
      } catch (e) {
        throw engineError(e, op);
      } finally {
        wipe(s.signingSeed, s.dhSecret);
      }
    });
    this.#identity = identity;
  }

  async renewCertificate(certificate: DeviceCertificate): Promise<void> {
    const op = 'renewCertificate';
    // The cached identity changes only once the new certificate has committed.
    this.#identity = await this.transaction(async () => {
      const renewed = renewedIdentity(this.identityOrThrow(), certificate, op);
      try {
        this.#st.identityRenew.run(encodeDeviceCertificate(certificate));
      } catch (e) {
        throw engineError(e, op);
      }
      return renewed;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queue;
    try {
      this.#db.close();
    } finally {
      openInThisProcess.delete(this.#key);
    }
  }
  async erase(): Promise<void> {
    await this.close();
    if (this.#key === ':memory:' || this.#key === '') return;
    const fs = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule?.('node:fs') as typeof NodeFs | undefined;
    if (!fs) throw new StorageError(StorageErrorCode.UNAVAILABLE, 'erase', 'node:fs is not available');
    for (const suffix of ['', '-wal', '-shm', '-journal']) fs.rmSync(this.#key + suffix, { force: true });
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Applies the pragmas, takes the exclusive lock and brings the schema up to date. */
function prepareDatabase(db: Database, op: string): void {
  // EXCLUSIVE before WAL: the WAL index then lives in heap memory (no -shm file), and the lock,
  // once taken, is held until close.
  db.pragma('locking_mode = EXCLUSIVE');
  const mode = db.pragma('journal_mode = WAL', { simple: true });
  if (mode !== 'wal' && mode !== 'memory') {
    throw new StorageError(StorageErrorCode.UNAVAILABLE, op, `the file system does not support SQLite WAL mode (got ${String(mode)})`);
  }
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  // Deleted content (disappearing messages, declined requests, used prekeys) is overwritten in the
  // file rather than left in free pages.
  db.pragma('secure_delete = ON');
  // The first write transaction takes the exclusive lock now, so a second opener fails at open
  // rather than at its first write.
  db.exec('BEGIN IMMEDIATE');
  try {
    const appId = db.pragma('application_id', { simple: true }) as number;
    const version = db.pragma('user_version', { simple: true }) as number;
    const tables = (db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number }).n;
    if (appId !== SQLITE_APPLICATION_ID && (appId !== 0 || version !== 0 || tables !== 0)) {
      throw new StorageError(StorageErrorCode.CORRUPT, op, 'the file is not a MeshWhisper storage');
    }
    if (version > SQLITE_MIGRATIONS.length) {
      throw new StorageError(
        StorageErrorCode.SCHEMA_TOO_NEW,
        op,
        `storage schema version ${version} is newer than this SDK supports (${SQLITE_MIGRATIONS.length}); upgrade the SDK`,
      );
    }
    for (let v = version; v < SQLITE_MIGRATIONS.length; v++) {
      db.exec(SQLITE_MIGRATIONS[v]!.sql);
      db.pragma(`user_version = ${v + 1}`);
    }
    db.pragma(`application_id = ${SQLITE_APPLICATION_ID}`);
    db.exec('COMMIT');
  } catch (e) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw e;
  }
}

/**
 * Opens (creating if needed) the SQLite storage at `options.path`. Rejects with
 * MW_SDK_STORAGE_LOCKED when another process or another instance in this process has it open.
 */
export async function openSqliteStorage(options: SqliteStorageOptions): Promise<SqliteStorage> {
  const op = 'openSqliteStorage';
  if (typeof options?.path !== 'string') throw new TypeError(`${op}: path must be a string`);
  if (options.identity) checkIdentity(options.identity, op);
  const key = resolvePath(options.path);
  const shared = key !== ':memory:' && key !== '';
  if (shared && openInThisProcess.has(key)) {
    throw new StorageError(StorageErrorCode.LOCKED, op, 'this storage is already open in this process (one writer per storage)');
  }
  const Driver = options.driver ?? (await loadDriver());
  if (shared && openInThisProcess.has(key)) {
    throw new StorageError(StorageErrorCode.LOCKED, op, 'this storage is already open in this process (one writer per storage)');
  }
  let db: Database;
  try {
    db = new Driver(options.path, { timeout: SQLITE_BUSY_TIMEOUT_MS });
  } catch (e) {
    throw engineError(e, op);
  }
  try {
    prepareDatabase(db, op);
  } catch (e) {
    db.close();
    throw engineError(e, op);
  }
  if (shared) openInThisProcess.add(key);
  const storage = new SqliteStorage(db, options.ctx ?? createContext(), key);
  return adoptIdentity(storage, options.identity, op);
}

/**
 * PgNodeStore: the NodeStore of a cluster (docs/scale-out.md). Several node instances share one
 * PostgreSQL database through a connection pool each; every method is one transaction
 * (READ COMMITTED), durable when it resolves (PostgreSQL's default synchronous_commit = on).
 *
 * Concurrency rules (the conformance suite checks them with two instances on one schema):
 * - The mailbox_stats row of a mailbox is its writer lock. Every transaction that adds or deletes
 *   a mailbox's envelopes takes it first (upsert … RETURNING or SELECT … FOR UPDATE), so writers of
 *   one mailbox are serialised and commit in seq order: a reader that saw seq n never later finds
 *   a newly committed envelope with a lower seq. Quotas are checked on the locked counters.
 * - Lock order, to keep deadlocks rare: devices row (KEY SHARE by writers, FOR UPDATE by
 *   deletions) before mailbox_stats, mailboxes in byte order. A deadlock or serialisation failure
 *   that still happens rolls the transaction back and it is retried (RETRY_CODES).
 * - Prekey claims take rows with FOR UPDATE SKIP LOCKED: two claims never get one key, and a
 *   claim never falls back to the last-resort key while the pool still has unclaimed keys.
 * - Sweeps count what their DELETE … RETURNING actually removed: two instances sweeping at once
 *   never count a gap twice. `tryLease` keeps it to one instance at a time anyway.
 *
 * Forgetting: PostgreSQL keeps a deleted row's bytes in its heap page until (auto)vacuum reuses
 * the space and in WAL segments until they are recycled after a checkpoint. The store cannot
 * promise to erase them within a bound as the SQLite store does: `forgetWithinMs` is the
 * documented best effort (FORGET_WITHIN_MS); docs/scale-out.md says to put the database on an
 * encrypted volume.
 */
import pg from 'pg';
import type { CustomTypesConfig, PoolClient, QueryResult, QueryResultRow } from 'pg';
import { PG_MIGRATIONS } from './pg-migrations.js';
import type { PgMigration } from './pg-migrations.js';
import type { PushTarget } from './push-types.js';
import { targetToken } from './push-types.js';
import { fromHex } from '@meshwhisper/crypto';
import type {
  AckRequest,
  ArchiveReplaced,
  ArchiveReplacement,
  ArchiveRow,
  CertificateRenewalOffer,
  CertificateRenewalOutcome,
  ClaimedKeys,
  DeviceListOutcome,
  DeviceListPublication,
  DeviceRecord,
  EnqueueItem,
  EnqueueOutcome,
  KeyPublication,
  MailboxLimits,
  MailboxStats,
  MediaRow,
  MediaUpload,
  NodeStore,
  PoolCounts,
  StoreHealth,
  StoredCertificateRenewal,
  StoredDeviceList,
  StoredEnvelope,
  UsernameRow,
} from './node-store.js';

/** Best-effort bound for deleted rows to leave the database files (autovacuum + checkpoints; see above). */
export const PG_FORGET_WITHIN_MS = 24 * 3600 * 1000;
/** GET /ready probes a write at most this often. */
export const PG_HEALTH_PROBE_INTERVAL_MS = 5_000;
/** Default connections per instance. */
export const PG_DEFAULT_POOL_SIZE = 10;

/** PostgreSQL SQLSTATEs after which a transaction is rolled back and run again. */
const RETRY_CODES = new Set(['40001', '40P01']);
const MAX_RETRIES = 5;
/** Connection-level failures: the database is down or unreachable (the caller answers UNAVAILABLE, retriable). */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', '57P01', '57P02', '57P03', '08000', '08003', '08006', '08001', '08004']);

export const PgStoreErrorCode = {
  /** The database schema was written by a newer node. */
  SCHEMA_NEWER: 'MW_PG_SCHEMA_NEWER',
  /** A bad option (schema name, URL). */
  INVALID: 'MW_PG_INVALID',
  /** The store was closed. */
  CLOSED: 'MW_STORE_CLOSED',
} as const;

export class PgStoreError extends Error {
  override readonly name = 'PgStoreError';
  constructor(
    readonly code: (typeof PgStoreErrorCode)[keyof typeof PgStoreErrorCode],
    message: string,
  ) {
    super(message);
  }
}

export interface PgStoreOptions {
  /** postgres://user@host:port/database (DATABASE_URL). */
  readonly connectionString: string;
  /** Schema holding the tables (created if missing); default public. Tests use one schema each. */
  readonly schema?: string;
  /** Connections in this instance's pool. */
  readonly poolSize?: number;
  /** Clock (tests inject one). */
  readonly now?: () => number;
  /** Called when the store's health changes. */
  readonly onHealth?: (h: StoreHealth) => void;
  /** Connection timeout (ms); default 5000. */
  readonly connectTimeoutMs?: number;
}

type Query = <R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]) => Promise<QueryResult<R>>;

const codeOf = (e: unknown): string | undefined => (e as { code?: unknown } | undefined)?.code as string | undefined;
/** True when the error means "the database cannot be reached", not "this statement failed". */
export const isConnectionError = (e: unknown): boolean => {
  const c = codeOf(e);
  if (c !== undefined && CONNECTION_CODES.has(c)) return true;
  const m = e instanceof Error ? e.message : '';
  return /Connection terminated|connection timeout|Client has encountered a connection error|timeout exceeded when trying to connect/i.test(m);
};

/** int8 as a JS number (every value the store keeps is far below 2^53); the rest as pg parses them. */
const TYPES: CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => (oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format))) as CustomTypesConfig['getTypeParser'],
};

const buf = (u: Uint8Array): Buffer => (Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength));
const u8 = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
const u8copy = (b: Buffer): Uint8Array => new Uint8Array(b);
const key = (u: Uint8Array): string => buf(u).toString('hex');
const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;

const EMPTY_STATS: MailboxStats = { messages: 0, bytes: 0, tokenless: 0, gapExpired: 0, gapEvicted: 0 };

interface DeviceRow {
  mailbox: Buffer;
  account_key: Buffer;
  certificate: Buffer;
  issued_at: number;
  signed_prekey: Buffer | null;
  last_resort_kem_prekey: Buffer | null;
}

interface PushRow {
  kind: string;
  token: string;
  p256dh: Buffer | null;
  auth: Buffer | null;
  apns_mode: string | null;
}

function pushFromRow(r: PushRow): PushTarget | undefined {
  switch (r.kind) {
    case 'webpush':
      return r.p256dh && r.auth ? { kind: 'webpush', endpoint: r.token, p256dh: u8copy(r.p256dh), auth: u8copy(r.auth) } : undefined;
    case 'apns':
      return { kind: 'apns', deviceToken: fromHex(r.token), mode: r.apns_mode === 'alert' ? 'alert' : 'background' };
    case 'fcm':
      return { kind: 'fcm', registrationToken: r.token };
    default:
      return undefined;
  }
}

/** Applies PG_MIGRATIONS (or `migrations`) under an advisory lock; refuses a schema from a newer node. */
export async function migratePg(client: PoolClient | pg.Client, schema: string, migrations: readonly PgMigration[] = PG_MIGRATIONS): Promise<number> {
  if (!SCHEMA_RE.test(schema)) throw new PgStoreError(PgStoreErrorCode.INVALID, `schema name ${JSON.stringify(schema)} is not a plain lower-case identifier`);
  // One migrator per schema at a time, across every instance: the lock is held until COMMIT.
  await client.query('BEGIN');
  try {
    await client.query("SELECT pg_advisory_xact_lock(hashtext('meshwhisper-migrate:' || $1))", [schema]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${schema}.mw_schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`);
    const r = await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${schema}.mw_schema_migrations`);
    const current = r.rows[0]?.v ?? 0;
    const latest = migrations.at(-1)?.version ?? 0;
    if (current > latest) throw new PgStoreError(PgStoreErrorCode.SCHEMA_NEWER, `the database schema (version ${current}) is newer than this node (${latest}): upgrade the node`);
    await client.query(`SET LOCAL search_path TO ${schema}`);
    for (const m of migrations) {
      if (m.version <= current) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO mw_schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
    }
    await client.query('COMMIT');
    return latest;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

export class PgNodeStore implements NodeStore {
  readonly kind = 'postgres';
  readonly forgetWithinMs = PG_FORGET_WITHIN_MS;
  readonly schema: string;
  readonly #pool: pg.Pool;
  readonly #now: () => number;
  readonly #onHealth: ((h: StoreHealth) => void) | undefined;
  #health: StoreHealth = { writable: true };
  #probedAt = -Infinity;
  #closed = false;
  #challengeCount = 0;

  private constructor(pool: pg.Pool, schema: string, options: PgStoreOptions) {
    this.#pool = pool;
    this.schema = schema;
    this.#now = options.now ?? Date.now;
    this.#onHealth = options.onHealth;
  }

  /** Connects, applies migrations, and returns the store. */
  static async open(options: PgStoreOptions): Promise<PgNodeStore> {
    const schema = options.schema ?? 'public';
    if (!SCHEMA_RE.test(schema)) throw new PgStoreError(PgStoreErrorCode.INVALID, `schema name ${JSON.stringify(schema)} is not a plain lower-case identifier`);
    const pool = new pg.Pool({
      connectionString: options.connectionString,
      max: options.poolSize ?? PG_DEFAULT_POOL_SIZE,
      types: TYPES,
      options: `-c search_path=${schema}`,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
      idleTimeoutMillis: 30_000,
      application_name: 'meshwhisper-node',
    });
    // An idle connection that breaks (database restarted) must not crash the process: the pool
    // drops it and the next call opens a new one.
    pool.on('error', () => undefined);
    try {
      const client = await pool.connect();
      try {
        await migratePg(client, schema);
      } finally {
        client.release();
      }
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw e;
    }
    return new PgNodeStore(pool, schema, options);
  }

  #check(): void {
    if (this.#closed) throw new PgStoreError(PgStoreErrorCode.CLOSED, 'store is closed');
  }

  #setHealth(h: StoreHealth): void {
    const changed = h.writable !== this.#health.writable || (!h.writable && !this.#health.writable && h.reason !== this.#health.reason);
    this.#health = h;
    this.#probedAt = Date.now();
    if (changed) this.#onHealth?.(h);
  }

  #noteFailure(e: unknown): void {
    if (isConnectionError(e)) this.#setHealth({ writable: false, reason: 'io-error' });
    else if (codeOf(e) === '53100') this.#setHealth({ writable: false, reason: 'disk-full' });
    else if (codeOf(e) === '25006') this.#setHealth({ writable: false, reason: 'read-only' });
  }

  /** One statement outside a transaction (reads). */
  async #q<R extends QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>> {
    this.#check();
    try {
      return await this.#pool.query<R>(text, values);
    } catch (e) {
      this.#noteFailure(e);
      throw e;
    }
  }

  /** Runs `fn` in one transaction; retried on deadlock or serialisation failure (it rolled back). */
  async #tx<T>(fn: (q: Query) => Promise<T>, retryOn: ReadonlySet<string> = RETRY_CODES): Promise<T> {
    this.#check();
    for (let attempt = 0; ; attempt++) {
      let client: PoolClient;
      try {
        client = await this.#pool.connect();
      } catch (e) {
        this.#noteFailure(e);
        throw e;
      }
      // A connection that dies between two statements emits 'error' on the checked-out client;
      // unheard, it would crash the process. The next statement fails and the catch below handles it.
      const onError = (): void => undefined;
      client.on('error', onError);
      const q: Query = (text, values) => client.query(text, values);
      try {
        await client.query('BEGIN');
        const result = await fn(q);
        await client.query('COMMIT');
        client.off('error', onError);
        client.release();
        if (!this.#health.writable && this.#health.reason === 'io-error') this.#setHealth({ writable: true });
        return result;
      } catch (e) {
        let broken = isConnectionError(e);
        if (!broken) await client.query('ROLLBACK').catch(() => (broken = true));
        client.off('error', onError);
        client.release(broken ? (e instanceof Error ? e : new Error('connection broken')) : undefined);
        const c = codeOf(e);
        if (c !== undefined && retryOn.has(c) && attempt < MAX_RETRIES) continue;
        this.#noteFailure(e);
        throw e;
      }
    }
  }

  // ── Mailboxes ──

  async enqueue(items: readonly EnqueueItem[], limits: MailboxLimits): Promise<EnqueueOutcome[]> {
    this.#check();
    if (items.length === 0) return [];
    // Mailboxes in byte order (lock order); within one mailbox the items keep their order (seq order).
    const order = items.map((_, i) => i).sort((i, j) => Buffer.compare(buf(items[i]!.mailbox), buf(items[j]!.mailbox)) || i - j);
    const groups: { mailbox: Buffer; key: string; members: number[] }[] = [];
    for (const i of order) {
      const mailbox = buf(items[i]!.mailbox);
      const last = groups.at(-1);
      if (last && last.mailbox.equals(mailbox)) last.members.push(i);
      else groups.push({ mailbox, key: mailbox.toString('hex'), members: [i] });
    }
    const boxes = groups.map((g) => g.mailbox);
    return this.#tx(async (q) => {
      const outcomes: EnqueueOutcome[] = new Array<EnqueueOutcome>(items.length);
      // A handful of statements per group commit, whatever its size (each is a round trip):
      // KEY SHARE on the recipients' device rows (a concurrent deletion waits for us, or we for it),
      const known = new Set((await q<{ mailbox: Buffer }>('SELECT mailbox FROM devices WHERE mailbox = ANY($1::bytea[]) ORDER BY mailbox FOR KEY SHARE', [boxes])).rows.map((r) => r.mailbox.toString('hex')));
      const live = groups.filter((g) => known.has(g.key));
      for (const g of groups) if (!known.has(g.key)) for (const i of g.members) outcomes[i] = { ok: false, reason: 'unknown-mailbox' };
      if (live.length === 0) return outcomes;
      const liveBoxes = live.map((g) => g.mailbox);
      const tokens = new Set((await q<{ mailbox: Buffer; token_hash: Buffer }>('SELECT mailbox, token_hash FROM delivery_tokens WHERE mailbox = ANY($1::bytea[])', [liveBoxes])).rows.map((r) => `${r.mailbox.toString('hex')}:${r.token_hash.toString('hex')}`));
      // the mailboxes' writer locks (see the header), taken in byte order,
      const locked = await q<{ mailbox: Buffer; messages: number; bytes: number; tokenless: number; next_seq: number }>(
        `INSERT INTO mailbox_stats (mailbox) SELECT m FROM unnest($1::bytea[]) AS m ORDER BY m
         ON CONFLICT (mailbox) DO UPDATE SET next_seq = mailbox_stats.next_seq
         RETURNING mailbox, messages, bytes, tokenless, next_seq`,
        [liveBoxes],
      );
      const stats = new Map(locked.rows.map((r) => [r.mailbox.toString('hex'), { messages: r.messages, bytes: r.bytes, tokenless: r.tokenless, next_seq: r.next_seq }]));
      const rows: { mailbox: Buffer; seq: number; id: Buffer; payload: Buffer; receivedAt: number; withToken: boolean }[] = [];
      const updates: { mailbox: Buffer; s: { messages: number; bytes: number; tokenless: number; next_seq: number }; evicted: number }[] = [];
      for (const g of live) {
        const s = stats.get(g.key)!;
        let evictedTotal = 0;
        // Without eviction every envelope fits: one multi-row INSERT at the end. A mailbox that
        // may need evictions takes them statement by statement, in order (oldest tokenless first).
        let addBytes = 0;
        for (const i of g.members) addBytes += buf(items[i]!.payload).length;
        const mayEvict = s.messages + g.members.length > limits.maxMessages || s.bytes + addBytes > limits.maxBytes;
        for (const i of g.members) {
          const e = items[i]!;
          if (e.tokenHash && !tokens.has(`${g.key}:${key(e.tokenHash)}`)) {
            outcomes[i] = { ok: false, reason: 'bad-token' };
            continue;
          }
          const payload = buf(e.payload);
          const size = payload.length;
          const withToken = e.tokenHash !== undefined;
          if (!withToken) {
            if (s.tokenless >= limits.firstContactMaxMessages) {
              outcomes[i] = { ok: false, reason: 'lane-full' };
              continue;
            }
            if (s.messages + 1 > limits.maxMessages || s.bytes + size > limits.maxBytes) {
              outcomes[i] = { ok: false, reason: 'mailbox-full' };
              continue;
            }
          }
          let evicted = 0;
          while (mayEvict && (s.messages + 1 > limits.maxMessages || s.bytes + size > limits.maxBytes)) {
            const victim = await q<{ size: number; with_token: boolean }>(
              `DELETE FROM messages WHERE mailbox = $1 AND seq = (
                 SELECT seq FROM messages WHERE mailbox = $1 ORDER BY with_token, seq LIMIT 1
               ) RETURNING length(payload)::bigint AS size, with_token`,
              [g.mailbox],
            );
            const v = victim.rows[0];
            if (!v) break;
            s.messages--;
            s.bytes -= v.size;
            if (!v.with_token) s.tokenless--;
            evicted++;
          }
          const seq = s.next_seq;
          const row = { mailbox: g.mailbox, seq, id: buf(e.id), payload, receivedAt: e.receivedAt, withToken };
          // On the eviction path a later eviction may pick this envelope: it must be in the table now.
          if (mayEvict) await q('INSERT INTO messages (mailbox, seq, id, payload, received_at, with_token) VALUES ($1, $2, $3, $4, $5, $6)', [row.mailbox, row.seq, row.id, row.payload, row.receivedAt, row.withToken]);
          else rows.push(row);
          s.next_seq++;
          s.messages++;
          s.bytes += size;
          if (!withToken) s.tokenless++;
          evictedTotal += evicted;
          outcomes[i] = { ok: true, envelope: { seq, id: e.id, payload: e.payload, receivedAt: e.receivedAt }, evicted };
        }
        updates.push({ mailbox: g.mailbox, s, evicted: evictedTotal });
      }
      // the envelopes, in one statement,
      if (rows.length > 0) {
        await q(
          `INSERT INTO messages (mailbox, seq, id, payload, received_at, with_token)
           SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bytea[], $4::bytea[], $5::bigint[], $6::boolean[])`,
          [rows.map((r) => r.mailbox), rows.map((r) => r.seq), rows.map((r) => r.id), rows.map((r) => r.payload), rows.map((r) => r.receivedAt), rows.map((r) => r.withToken)],
        );
      }
      // and the counters, in one statement.
      await q(
        `UPDATE mailbox_stats AS s SET messages = u.messages, bytes = u.bytes, tokenless = u.tokenless, next_seq = u.next_seq, gap_evicted = s.gap_evicted + u.evicted
         FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) AS u (mailbox, messages, bytes, tokenless, next_seq, evicted)
         WHERE s.mailbox = u.mailbox`,
        [updates.map((u) => u.mailbox), updates.map((u) => u.s.messages), updates.map((u) => u.s.bytes), updates.map((u) => u.s.tokenless), updates.map((u) => u.s.next_seq), updates.map((u) => u.evicted)],
      );
      const empty = updates.filter((u) => u.s.messages <= 0).map((u) => u.mailbox);
      if (empty.length > 0) await q('DELETE FROM mailbox_stats WHERE mailbox = ANY($1::bytea[]) AND messages <= 0 AND gap_expired <= 0 AND gap_evicted <= 0', [empty]);
      return outcomes;
    });
  }

  async fetch(mailbox: Uint8Array, afterSeq: number, limit: number, maxBytes: number): Promise<StoredEnvelope[]> {
    const r = await this.#q<{ seq: number; id: Buffer; payload: Buffer; received_at: number }>(
      'SELECT seq, id, payload, received_at FROM messages WHERE mailbox = $1 AND seq > $2 ORDER BY seq LIMIT $3',
      [buf(mailbox), afterSeq, limit],
    );
    const out: StoredEnvelope[] = [];
    let bytes = 0;
    for (const row of r.rows) {
      if (out.length > 0 && bytes + row.payload.length > maxBytes) break;
      bytes += row.payload.length;
      out.push({ seq: row.seq, id: u8(row.id), payload: u8(row.payload), receivedAt: row.received_at });
    }
    return out;
  }

  /** Locks the stats rows of these mailboxes (byte order): the mailboxes' writer locks. */
  async #lockMailboxes(q: Query, mailboxes: readonly Buffer[]): Promise<void> {
    if (mailboxes.length === 0) return;
    await q('SELECT 1 FROM mailbox_stats WHERE mailbox = ANY($1::bytea[]) ORDER BY mailbox FOR UPDATE', [mailboxes]);
  }

  async ack(requests: readonly AckRequest[]): Promise<number[]> {
    this.#check();
    if (requests.length === 0) return [];
    // Every (mailbox, id) pair of the group in one DELETE; each deleted row counts for the first
    // request that named it (an id of another mailbox matches nothing).
    const pairs: { mailbox: Buffer; id: Buffer }[] = [];
    for (const r of requests) for (const id of r.ids) pairs.push({ mailbox: buf(r.mailbox), id: buf(id) });
    return this.#tx(async (q) => {
      await this.#lockMailboxes(q, requests.map((r) => buf(r.mailbox)));
      const out = requests.map(() => 0);
      if (pairs.length === 0) return out;
      const deleted = await q<{ mailbox: Buffer; id: Buffer; size: number; with_token: boolean }>(
        `DELETE FROM messages AS m USING unnest($1::bytea[], $2::bytea[]) AS a (mailbox, id)
         WHERE m.mailbox = a.mailbox AND m.id = a.id
         RETURNING m.mailbox, m.id, length(m.payload)::bigint AS size, m.with_token`,
        [pairs.map((x) => x.mailbox), pairs.map((x) => x.id)],
      );
      const gone = new Map(deleted.rows.map((r) => [`${r.mailbox.toString('hex')}:${r.id.toString('hex')}`, r]));
      const perBox = new Map<string, { mailbox: Buffer; n: number; bytes: number; tokenless: number }>();
      requests.forEach((r, i) => {
        const m = buf(r.mailbox);
        const mk = m.toString('hex');
        for (const id of r.ids) {
          const k = `${mk}:${buf(id).toString('hex')}`;
          const row = gone.get(k);
          if (!row) continue;
          gone.delete(k); // counted once, for the first request naming it
          out[i]!++;
          const t = perBox.get(mk) ?? { mailbox: m, n: 0, bytes: 0, tokenless: 0 };
          t.n++;
          t.bytes += row.size;
          if (!row.with_token) t.tokenless++;
          perBox.set(mk, t);
        }
      });
      const touched = [...perBox.values()];
      if (touched.length > 0) {
        await q(
          `UPDATE mailbox_stats AS s SET messages = s.messages - u.n, bytes = s.bytes - u.bytes, tokenless = s.tokenless - u.tokenless
           FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::bigint[]) AS u (mailbox, n, bytes, tokenless) WHERE s.mailbox = u.mailbox`,
          [touched.map((t) => t.mailbox), touched.map((t) => t.n), touched.map((t) => t.bytes), touched.map((t) => t.tokenless)],
        );
        await q('DELETE FROM mailbox_stats WHERE mailbox = ANY($1::bytea[]) AND messages <= 0 AND gap_expired <= 0 AND gap_evicted <= 0', [touched.map((t) => t.mailbox)]);
      }
      return out;
    });
  }

  async mailboxStats(mailbox: Uint8Array): Promise<MailboxStats> {
    const r = await this.#q<{ messages: number; bytes: number; tokenless: number; gap_expired: number; gap_evicted: number }>(
      'SELECT messages, bytes, tokenless, gap_expired, gap_evicted FROM mailbox_stats WHERE mailbox = $1',
      [buf(mailbox)],
    );
    const s = r.rows[0];
    return s ? { messages: s.messages, bytes: s.bytes, tokenless: s.tokenless, gapExpired: s.gap_expired, gapEvicted: s.gap_evicted } : EMPTY_STATS;
  }

  async clearGap(mailbox: Uint8Array, expired: number, evicted: number): Promise<void> {
    await this.#tx(async (q) => {
      await q('UPDATE mailbox_stats SET gap_expired = greatest(0, gap_expired - $2), gap_evicted = greatest(0, gap_evicted - $3) WHERE mailbox = $1', [buf(mailbox), expired, evicted]);
      await q('DELETE FROM mailbox_stats WHERE mailbox = $1 AND messages <= 0 AND gap_expired <= 0 AND gap_evicted <= 0', [buf(mailbox)]);
    });
  }

  async setDeliveryTokens(mailbox: Uint8Array, hashes: readonly Uint8Array[]): Promise<void> {
    await this.#tx(async (q) => {
      await q('DELETE FROM delivery_tokens WHERE mailbox = $1', [buf(mailbox)]);
      if (hashes.length > 0) await q('INSERT INTO delivery_tokens (mailbox, token_hash) SELECT $1, h FROM unnest($2::bytea[]) AS h ON CONFLICT DO NOTHING', [buf(mailbox), hashes.map(buf)]);
    });
  }

  async checkRecipient(mailbox: Uint8Array, tokenHash: Uint8Array | undefined): Promise<'ok' | 'unknown-mailbox' | 'bad-token'> {
    const r = await this.#q<{ known: boolean; token_ok: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM devices WHERE mailbox = $1) AS known,
              ($2::bytea IS NULL OR EXISTS (SELECT 1 FROM delivery_tokens WHERE mailbox = $1 AND token_hash = $2)) AS token_ok`,
      [buf(mailbox), tokenHash ? buf(tokenHash) : null],
    );
    const row = r.rows[0]!;
    if (!row.known) return 'unknown-mailbox';
    return row.token_ok ? 'ok' : 'bad-token';
  }

  async expireEnvelopes(before: number, maxMailboxes: number): Promise<{ envelopes: number; mailboxes: number }> {
    return this.#tx(async (q) => {
      const boxes = (await q<{ mailbox: Buffer }>('SELECT DISTINCT mailbox FROM messages WHERE received_at < $1 ORDER BY mailbox LIMIT $2', [before, maxMailboxes])).rows.map((r) => r.mailbox);
      await this.#lockMailboxes(q, boxes);
      let envelopes = 0;
      let mailboxes = 0;
      for (const mailbox of boxes) {
        // What this DELETE removed, not what the SELECT saw: a concurrent sweep never double counts.
        const d = await q<{ n: number; bytes: number; tokenless: number }>(
          `WITH d AS (DELETE FROM messages WHERE mailbox = $1 AND received_at < $2 RETURNING length(payload) AS size, with_token)
           SELECT count(*)::bigint AS n, coalesce(sum(size), 0)::bigint AS bytes, count(*) FILTER (WHERE NOT with_token)::bigint AS tokenless FROM d`,
          [mailbox, before],
        );
        const { n, bytes, tokenless } = d.rows[0]!;
        if (n === 0) continue;
        await q(
          `UPDATE mailbox_stats SET messages = messages - $2, bytes = bytes - $3, tokenless = tokenless - $4, gap_expired = gap_expired + $2 WHERE mailbox = $1`,
          [mailbox, n, bytes, tokenless],
        );
        envelopes += n;
        mailboxes++;
      }
      return { envelopes, mailboxes };
    });
  }

  async queueTotals(): Promise<{ envelopes: number; bytes: number }> {
    const r = await this.#q<{ envelopes: number | null; bytes: number | null }>('SELECT sum(messages)::bigint AS envelopes, sum(bytes)::bigint AS bytes FROM mailbox_stats');
    return { envelopes: r.rows[0]?.envelopes ?? 0, bytes: r.rows[0]?.bytes ?? 0 };
  }

  // ── Key directory ──

  async device(mailbox: Uint8Array): Promise<DeviceRecord | undefined> {
    const r = await this.#q<DeviceRow>('SELECT mailbox, account_key, certificate, issued_at, signed_prekey, last_resort_kem_prekey FROM devices WHERE mailbox = $1', [buf(mailbox)]);
    const d = r.rows[0];
    if (!d) return undefined;
    return {
      mailbox: u8(d.mailbox),
      accountKey: u8(d.account_key),
      certificate: u8(d.certificate),
      issuedAt: d.issued_at,
      signedPreKey: d.signed_prekey ? u8(d.signed_prekey) : undefined,
      lastResortKemPreKey: d.last_resort_kem_prekey ? u8(d.last_resort_kem_prekey) : undefined,
    };
  }

  async devicesOfAccount(accountKey: Uint8Array): Promise<Uint8Array[]> {
    const r = await this.#q<{ mailbox: Buffer }>('SELECT mailbox FROM devices WHERE account_key = $1 ORDER BY issued_at, mailbox', [buf(accountKey)]);
    return r.rows.map((x) => u8(x.mailbox));
  }

  async preKeyCounts(mailbox: Uint8Array): Promise<PoolCounts> {
    const r = await this.#q<{ otk: number; kem: number }>(
      'SELECT (SELECT count(*) FROM one_time_prekeys WHERE mailbox = $1) AS otk, (SELECT count(*) FROM kem_prekeys WHERE mailbox = $1) AS kem',
      [buf(mailbox)],
    );
    return { oneTimePreKeys: r.rows[0]!.otk, kemPreKeys: r.rows[0]!.kem };
  }

  async publishKeys(p: KeyPublication): Promise<'ok' | 'other-account' | 'list-changed'> {
    const mailbox = buf(p.mailbox);
    return this.#tx(async (q): Promise<'ok' | 'other-account' | 'list-changed'> => {
      // The list row stays share-locked to the commit: a publishDeviceList (FOR UPDATE) waits for
      // this upload and then deletes the device if its list drops it; one that committed first is
      // seen here (READ COMMITTED reads the newest version of a row it locks).
      const list = (await q<{ epoch: string | number }>('SELECT epoch FROM device_lists WHERE account_key = $1 FOR SHARE', [buf(p.accountKey)])).rows[0];
      if (!list || Number(list.epoch) !== p.deviceListEpoch) return 'list-changed';
      for (;;) {
        const existing = (await q<{ account_key: Buffer; issued_at: number }>('SELECT account_key, issued_at FROM devices WHERE mailbox = $1 FOR NO KEY UPDATE', [mailbox])).rows[0];
        if (!existing) {
          const ins = await q(
            'INSERT INTO devices (mailbox, account_key, certificate, issued_at, updated_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (mailbox) DO NOTHING',
            [mailbox, buf(p.accountKey), buf(p.certificate), p.issuedAt, p.now],
          );
          if (ins.rowCount === 0) continue; // another instance registered it meanwhile: check its account
        } else {
          if (!existing.account_key.equals(buf(p.accountKey))) return 'other-account';
          if (p.issuedAt >= existing.issued_at) {
            // A certificate at least as new as a held renewal: the renewal is done.
            await q(
              `UPDATE devices SET certificate = $2, issued_at = $3, updated_at = $4,
                 renewal_certificate = CASE WHEN renewal_issued_at <= $3 THEN NULL ELSE renewal_certificate END,
                 renewal_issued_at = CASE WHEN renewal_issued_at <= $3 THEN NULL ELSE renewal_issued_at END
               WHERE mailbox = $1`,
              [mailbox, buf(p.certificate), p.issuedAt, p.now],
            );
          }
        }
        break;
      }
      if (p.signedPreKey) await q('UPDATE devices SET signed_prekey = $2, updated_at = $3 WHERE mailbox = $1', [mailbox, buf(p.signedPreKey), p.now]);
      if (p.lastResortKemPreKey) await q('UPDATE devices SET last_resort_kem_prekey = $2, updated_at = $3 WHERE mailbox = $1', [mailbox, buf(p.lastResortKemPreKey), p.now]);
      // A key id already in the pool keeps its first upload.
      if (p.oneTimePreKeys.length > 0) {
        await q('INSERT INTO one_time_prekeys (mailbox, key_id, encoded) SELECT $1, k, e FROM unnest($2::bigint[], $3::bytea[]) AS t (k, e) ON CONFLICT DO NOTHING', [
          mailbox,
          p.oneTimePreKeys.map((k) => k.id),
          p.oneTimePreKeys.map((k) => buf(k.encoded)),
        ]);
      }
      if (p.kemPreKeys.length > 0) {
        await q('INSERT INTO kem_prekeys (mailbox, key_id, encoded) SELECT $1, k, e FROM unnest($2::bigint[], $3::bytea[]) AS t (k, e) ON CONFLICT DO NOTHING', [
          mailbox,
          p.kemPreKeys.map((k) => k.id),
          p.kemPreKeys.map((k) => buf(k.encoded)),
        ]);
      }
      return 'ok';
    });
  }

  async offerCertificateRenewal(o: CertificateRenewalOffer): Promise<CertificateRenewalOutcome> {
    const mailbox = buf(o.mailbox);
    return this.#tx(async (q): Promise<CertificateRenewalOutcome> => {
      // As publishKeys: the list row share-locked to the commit orders this against a revocation.
      const list = (await q<{ epoch: string | number }>('SELECT epoch FROM device_lists WHERE account_key = $1 FOR SHARE', [buf(o.accountKey)])).rows[0];
      if (!list || Number(list.epoch) !== o.deviceListEpoch) return 'list-changed';
      const d = (
        await q<{ account_key: Buffer; issued_at: number; renewal_certificate: Buffer | null; renewal_issued_at: number | null }>(
          'SELECT account_key, issued_at, renewal_certificate, renewal_issued_at FROM devices WHERE mailbox = $1 FOR NO KEY UPDATE',
          [mailbox],
        )
      ).rows[0];
      if (!d || !d.account_key.equals(buf(o.accountKey))) return 'unknown-device';
      if (o.issuedAt <= d.issued_at) return 'stale';
      if (d.renewal_certificate && d.renewal_issued_at !== null) {
        if (o.issuedAt === d.renewal_issued_at && d.renewal_certificate.equals(buf(o.certificate))) return 'ok'; // a re-offer
        if (o.issuedAt <= d.renewal_issued_at) return 'stale';
      }
      await q('UPDATE devices SET renewal_certificate = $2, renewal_issued_at = $3 WHERE mailbox = $1', [mailbox, buf(o.certificate), o.issuedAt]);
      return 'ok';
    });
  }

  async certificateRenewal(mailbox: Uint8Array): Promise<StoredCertificateRenewal | undefined> {
    const r = await this.#q<{ renewal_certificate: Buffer | null; renewal_issued_at: number | null }>('SELECT renewal_certificate, renewal_issued_at FROM devices WHERE mailbox = $1', [buf(mailbox)]);
    const d = r.rows[0];
    return d?.renewal_certificate && d.renewal_issued_at !== null ? { certificate: u8copy(d.renewal_certificate), issuedAt: Number(d.renewal_issued_at) } : undefined;
  }

  async claimPreKeys(mailbox: Uint8Array, consume: boolean): Promise<ClaimedKeys | undefined> {
    const m = buf(mailbox);
    return this.#tx(async (q) => {
      const d = (await q<{ certificate: Buffer; signed_prekey: Buffer | null; last_resort_kem_prekey: Buffer | null }>(
        'SELECT certificate, signed_prekey, last_resort_kem_prekey FROM devices WHERE mailbox = $1',
        [m],
      )).rows[0];
      if (!d || !d.signed_prekey) return undefined;
      // SKIP LOCKED: a concurrent claim takes the next key instead of waiting and finding none.
      const take = (table: string) =>
        q<{ encoded: Buffer }>(
          `DELETE FROM ${table} WHERE mailbox = $1 AND key_id = (SELECT key_id FROM ${table} WHERE mailbox = $1 ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING encoded`,
          [m],
        );
      const kem = consume ? (await take('kem_prekeys')).rows[0] : undefined;
      const kemPreKey = kem ? u8(kem.encoded) : d.last_resort_kem_prekey ? u8(d.last_resort_kem_prekey) : undefined;
      if (!kemPreKey) return undefined;
      const otk = consume ? (await take('one_time_prekeys')).rows[0] : undefined;
      return { certificate: u8(d.certificate), signedPreKey: u8(d.signed_prekey), oneTimePreKey: otk ? u8(otk.encoded) : undefined, kemPreKey };
    });
  }

  async #deleteDevicesTx(q: Query, mailboxes: readonly Buffer[]): Promise<void> {
    if (mailboxes.length === 0) return;
    // Devices first (lock order): a writer holding KEY SHARE finishes before the rows go.
    await q('SELECT 1 FROM devices WHERE mailbox = ANY($1::bytea[]) ORDER BY mailbox FOR UPDATE', [mailboxes]);
    await this.#lockMailboxes(q, mailboxes);
    for (const t of ['messages', 'mailbox_stats', 'delivery_tokens', 'push_registrations', 'media_budget', 'one_time_prekeys', 'kem_prekeys', 'devices']) {
      await q(`DELETE FROM ${t} WHERE mailbox = ANY($1::bytea[])`, [mailboxes]);
    }
  }

  async deleteDevices(mailboxes: readonly Uint8Array[]): Promise<void> {
    await this.#tx((q) => this.#deleteDevicesTx(q, mailboxes.map(buf)));
  }

  async deleteAccount(accountKey: Uint8Array): Promise<Uint8Array[]> {
    const account = buf(accountKey);
    return this.#tx(async (q) => {
      const boxes = (await q<{ mailbox: Buffer }>('SELECT mailbox FROM devices WHERE account_key = $1 ORDER BY issued_at, mailbox', [account])).rows.map((r) => r.mailbox);
      await this.#deleteDevicesTx(q, boxes);
      await q('DELETE FROM usernames WHERE owner_key = $1', [account]);
      await q('DELETE FROM archives WHERE account_key = $1', [account]);
      await q('DELETE FROM device_lists WHERE account_key = $1', [account]);
      return boxes.map(u8);
    });
  }

  // ── Device lists ──

  async deviceList(accountKey: Uint8Array): Promise<StoredDeviceList | undefined> {
    const r = await this.#q<{ epoch: string | number; encoded: Buffer }>('SELECT epoch, encoded FROM device_lists WHERE account_key = $1', [buf(accountKey)]);
    const row = r.rows[0];
    return row ? { epoch: Number(row.epoch), encoded: u8copy(row.encoded) } : undefined;
  }

  async publishDeviceList(p: DeviceListPublication): Promise<DeviceListOutcome> {
    const account = buf(p.accountKey);
    const listed = new Set(p.listedMailboxes.map((m) => buf(m).toString('hex')));
    return this.#tx(async (q): Promise<DeviceListOutcome> => {
      // Compare-and-set on the epoch; the row lock orders this against concurrent key uploads.
      const written =
        p.expectedEpoch === undefined
          ? await q('INSERT INTO device_lists (account_key, epoch, encoded, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (account_key) DO NOTHING', [account, p.epoch, buf(p.encoded), p.now])
          : await q('UPDATE device_lists SET epoch = $2, encoded = $3, updated_at = $4 WHERE account_key = $1 AND epoch = $5', [account, p.epoch, buf(p.encoded), p.now, p.expectedEpoch]);
      if (written.rowCount === 0) return { ok: false, reason: 'conflict' };
      const boxes = (await q<{ mailbox: Buffer }>('SELECT mailbox FROM devices WHERE account_key = $1 ORDER BY mailbox', [account])).rows.map((r) => r.mailbox);
      const removed = boxes.filter((m) => !listed.has(m.toString('hex')));
      await this.#deleteDevicesTx(q, removed);
      return { ok: true, removed: removed.map(u8copy) };
    });
  }

  // ── Usernames ──

  async username(namespace: string, username: string): Promise<UsernameRow | undefined> {
    const r = await this.#q<{ owner_key: Buffer; updated_at: number }>('SELECT owner_key, updated_at FROM usernames WHERE namespace = $1 AND username = $2', [namespace, username]);
    const row = r.rows[0];
    return row ? { ownerKey: u8(row.owner_key), updatedAt: row.updated_at } : undefined;
  }

  async setUsername(namespace: string, username: string, expected: Uint8Array | undefined, owner: Uint8Array | undefined, now: number): Promise<boolean> {
    return this.#tx(async (q) => {
      const current = (await q<{ owner_key: Buffer }>('SELECT owner_key FROM usernames WHERE namespace = $1 AND username = $2 FOR UPDATE', [namespace, username])).rows[0]?.owner_key;
      if (current === undefined) {
        if (expected !== undefined) return false;
        if (!owner) return true;
        // Unowned: the first insert wins; a racing one finds the conflict and changes nothing.
        const ins = await q('INSERT INTO usernames (namespace, username, owner_key, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [namespace, username, buf(owner), now]);
        return ins.rowCount === 1;
      }
      if (expected === undefined || !current.equals(buf(expected))) return false;
      if (owner) await q('UPDATE usernames SET owner_key = $3, updated_at = $4 WHERE namespace = $1 AND username = $2', [namespace, username, buf(owner), now]);
      else await q('DELETE FROM usernames WHERE namespace = $1 AND username = $2', [namespace, username]);
      return true;
    });
  }

  // ── Media and archives ──

  async media(id: string): Promise<MediaRow | undefined> {
    const r = await this.#q<{ id: string; size: number; expires_at: number }>('SELECT id, size, expires_at FROM media WHERE id = $1', [id]);
    const row = r.rows[0];
    return row && { id: row.id, size: row.size, expiresAt: row.expires_at };
  }

  async addMedia(m: MediaUpload): Promise<boolean> {
    if (m.size > m.budgetBytes) {
      this.#check();
      return false;
    }
    return this.#tx(async (q) => {
      // Charge only if the budget holds it, in one statement on the (locked) budget row.
      const charged = await q(
        `INSERT INTO media_budget (mailbox, budget_window, bytes) VALUES ($1, $2, $3)
         ON CONFLICT (mailbox, budget_window) DO UPDATE SET bytes = media_budget.bytes + excluded.bytes
         WHERE media_budget.bytes + excluded.bytes <= $4`,
        [buf(m.uploader), m.window, m.size, m.budgetBytes],
      );
      if (charged.rowCount === 0) return false;
      await q('INSERT INTO media (id, size, expires_at) VALUES ($1, $2, $3)', [m.id, m.size, m.expiresAt]);
      return true;
    });
  }

  async mediaBudgetUsed(uploader: Uint8Array, window: number): Promise<number> {
    const r = await this.#q<{ bytes: number }>('SELECT bytes FROM media_budget WHERE mailbox = $1 AND budget_window = $2', [buf(uploader), window]);
    return r.rows[0]?.bytes ?? 0;
  }

  async expireMedia(now: number, oldestWindow: number, limit: number): Promise<string[]> {
    return this.#tx(async (q) => {
      const r = await q<{ id: string }>(
        'DELETE FROM media WHERE id IN (SELECT id FROM media WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id',
        [now, limit],
      );
      await q('DELETE FROM media_budget WHERE budget_window < $1', [oldestWindow]);
      return r.rows.map((x) => x.id);
    });
  }

  async archiveByKey(archiveKey: Uint8Array): Promise<ArchiveRow | undefined> {
    const r = await this.#q<{ account_key: Buffer; archive_key: Buffer; size: number; updated_at: number; version: number; blob_name: string | null }>(
      'SELECT account_key, archive_key, size, updated_at, version, blob_name FROM archives WHERE archive_key = $1',
      [buf(archiveKey)],
    );
    const row = r.rows[0];
    return row && { accountKey: u8copy(row.account_key), archiveKey: u8copy(row.archive_key), size: row.size, updatedAt: row.updated_at, version: Number(row.version), blobName: row.blob_name ?? undefined };
  }

  async archiveKeySource(accountKey: Uint8Array): Promise<Uint8Array | undefined> {
    const r = await this.#q<{ key_source: Buffer | null }>('SELECT key_source FROM archives WHERE account_key = $1', [buf(accountKey)]);
    const s = r.rows[0]?.key_source;
    return s ? u8copy(s) : undefined;
  }

  async registerArchiveKey(accountKey: Uint8Array, archiveKey: Uint8Array, keySource: Uint8Array | undefined): Promise<'ok' | 'key-taken' | 'no-device'> {
    // A unique violation means another account registered the key meanwhile: run again, it answers key-taken.
    return this.#tx(
      async (q) => {
        const holder = (await q<{ account_key: Buffer }>('SELECT account_key FROM archives WHERE archive_key = $1', [buf(archiveKey)])).rows[0];
        if (holder && !holder.account_key.equals(buf(accountKey))) return 'key-taken';
        const devices = await q('SELECT 1 FROM devices WHERE account_key = $1 LIMIT 1', [buf(accountKey)]);
        if (devices.rowCount === 0) return 'no-device';
        await q(
          'INSERT INTO archives (account_key, archive_key, key_source) VALUES ($1, $2, $3) ON CONFLICT (account_key) DO UPDATE SET archive_key = excluded.archive_key, key_source = excluded.key_source',
          [buf(accountKey), buf(archiveKey), keySource ? buf(keySource) : null],
        );
        return 'ok';
      },
      new Set([...RETRY_CODES, '23505']),
    );
  }

  async replaceArchive(archiveKey: Uint8Array, r: ArchiveReplacement): Promise<ArchiveReplaced | undefined> {
    return this.#tx(async (q) => {
      // The row lock makes the compare and the swap one step: a racing replacement waits, then sees the new version.
      const cur = (await q<{ version: string; blob_name: string | null; updated_at: string }>('SELECT version, blob_name, updated_at FROM archives WHERE archive_key = $1 FOR UPDATE', [buf(archiveKey)])).rows[0];
      if (!cur) return undefined;
      const version = Number(cur.version);
      if (version !== r.expectedVersion) return { stored: false, version };
      await q('UPDATE archives SET size = $2, updated_at = $3, blob_name = $4, version = version + 1 WHERE archive_key = $1', [buf(archiveKey), r.size, r.now, r.blobName]);
      return { stored: true, version: version + 1, previousBlob: cur.blob_name ?? undefined, hadPrevious: Number(cur.updated_at) > 0 };
    });
  }

  async archiveFileNames(): Promise<Set<string>> {
    const r = await this.#q<{ account_key: Buffer; blob_name: string | null }>('SELECT account_key, blob_name FROM archives WHERE updated_at > 0');
    return new Set(r.rows.map((row) => row.blob_name ?? row.account_key.toString('hex')));
  }

  // ── Push endpoints ──

  async pushTarget(mailbox: Uint8Array): Promise<PushTarget | undefined> {
    const r = await this.#q<PushRow>('SELECT kind, token, p256dh, auth, apns_mode FROM push_registrations WHERE mailbox = $1', [buf(mailbox)]);
    return r.rows[0] ? pushFromRow(r.rows[0]) : undefined;
  }

  async setPushTarget(mailbox: Uint8Array, target: PushTarget, now: number): Promise<boolean> {
    const m = buf(mailbox);
    return this.#tx(async (q) => {
      if ((await q('SELECT 1 FROM devices WHERE mailbox = $1 FOR KEY SHARE', [m])).rowCount === 0) return false;
      const web = target.kind === 'webpush' ? target : undefined;
      await q(
        `INSERT INTO push_registrations (mailbox, kind, token, p256dh, auth, apns_mode, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (mailbox) DO UPDATE SET kind = excluded.kind, token = excluded.token, p256dh = excluded.p256dh, auth = excluded.auth,
           apns_mode = excluded.apns_mode, updated_at = excluded.updated_at`,
        [m, target.kind, targetToken(target), web ? buf(web.p256dh) : null, web ? buf(web.auth) : null, target.kind === 'apns' ? target.mode : null, now],
      );
      return true;
    });
  }

  async deletePushTarget(mailbox: Uint8Array): Promise<boolean> {
    const r = await this.#tx((q) => q('DELETE FROM push_registrations WHERE mailbox = $1', [buf(mailbox)]));
    return (r.rowCount ?? 0) > 0;
  }

  async deletePushTargetIf(mailbox: Uint8Array, target: PushTarget): Promise<boolean> {
    const r = await this.#tx((q) => q('DELETE FROM push_registrations WHERE mailbox = $1 AND kind = $2 AND token = $3', [buf(mailbox), target.kind, targetToken(target)]));
    return (r.rowCount ?? 0) > 0;
  }

  // ── Authentication ──

  async consumeChallenge(nonce: Uint8Array, _issuedAt: number, expiresAt: number): Promise<boolean> {
    // The used set is in the database: every instance sees it, and it survives restarts.
    const r = await this.#q('INSERT INTO used_challenges (nonce, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING', [buf(nonce), expiresAt]);
    if (++this.#challengeCount % 1024 === 0) void this.#forgetChallenges().catch(() => undefined);
    return r.rowCount === 1;
  }

  async #forgetChallenges(): Promise<void> {
    await this.#q('DELETE FROM used_challenges WHERE expires_at < $1', [this.#now()]);
  }

  // ── Operations ──

  async health(): Promise<StoreHealth> {
    if (this.#closed) return { writable: false, reason: 'closed' };
    if (Date.now() - this.#probedAt < PG_HEALTH_PROBE_INTERVAL_MS) return this.#health;
    let h: StoreHealth;
    try {
      await this.#tx((q) => q("INSERT INTO meta (key, value) VALUES ('ready_probe', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value", [String(Date.now())]));
      await this.#forgetChallenges();
      h = { writable: true };
    } catch (e) {
      const c = codeOf(e);
      h = { writable: false, reason: c === '53100' ? 'disk-full' : c === '25006' ? 'read-only' : 'io-error' };
    }
    this.#setHealth(h);
    return h;
  }

  async tryLease(job: string, holder: string, ttlMs: number): Promise<boolean> {
    // Database time, so that instances with skewed clocks agree on when a lease ran out.
    const r = await this.#q<{ holder: string }>(
      `INSERT INTO leases (job, holder, expires_at) VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond')
       ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
       WHERE leases.holder = excluded.holder OR leases.expires_at < clock_timestamp()
       RETURNING holder`,
      [job, holder, ttlMs],
    );
    return r.rowCount === 1;
  }

  /** Releases a lease this instance holds (on shutdown), so another instance takes the job at once. */
  async releaseLease(job: string, holder: string): Promise<void> {
    await this.#q('DELETE FROM leases WHERE job = $1 AND holder = $2', [job, holder]);
  }

  /** Pool statistics for metrics and doctor. */
  get poolStats(): { total: number; idle: number; waiting: number } {
    return { total: this.#pool.totalCount, idle: this.#pool.idleCount, waiting: this.#pool.waitingCount };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }
}

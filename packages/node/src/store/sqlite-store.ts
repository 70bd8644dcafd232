/**
 * SqliteNodeStore: the default NodeStore, one SQLite file (better-sqlite3) owned by one process
 * (the data directory is locked: data-dir.ts). Every method is one IMMEDIATE transaction, durable
 * when it returns (WAL; the writer thread's commits fsync — synchronous=FULL —, the main
 * connection's commits are fsynced by the writer thread before their call resolves: #tx).
 *
 * Two connections: the hot-path writes — `enqueue` and `ack` — and the scheduled WAL checkpoints
 * run on a writer thread (sqlite-writer.worker.js, its own connection), which group-commits the
 * calls that arrive while it is busy and fsyncs off the event loop; everything else (reads, rare
 * writes) runs on the main connection. Both are serialised by SQLite's write lock; per-mailbox
 * sequence numbers are assigned only by the writer thread, so they still commit in order.
 *
 * Forgetting (docs/threat-model.md §Seized disk): secure_delete overwrites deleted rows in the
 * database file, but their old versions stay in WAL frames until the WAL is rewritten. After any
 * deletion the store checkpoints with TRUNCATE within FORGET_WITHIN_MS (at once after a device or
 * account deletion), so acknowledged and deleted data leaves every file of the data directory.
 *
 * Disk full: a deletion in WAL mode still appends frames. The store keeps a reserve file
 * (RESERVE_BYTES) in the data directory; when a write fails with SQLITE_FULL it releases the
 * reserve so that acks and deletions can commit, refuses new mail (the caller answers
 * UNAVAILABLE), reports `health()` = disk-full, and re-creates the reserve once space is back.
 */
import { closeSync, fsyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { backupDatabase } from '../backup.js';
import type { BackupOptions, BackupResult, BackupSource } from '../backup.js';
import type { Sqlite } from './db.js';
import { BUSY_TIMEOUT_MS, WAL_CYCLE_FRAMES, convertPageSize, fsyncPath, openDatabase } from './db.js';
import type { PageSizeConversion } from './db.js';
import { SqliteBlobs } from './blobs.js';
import { SqliteDeviceLists } from './device-lists.js';
import { SqliteDirectory } from './directory.js';
import { SqliteMailbox } from './mailbox.js';
import { SqlitePush } from './push.js';
import { SqliteUsernames } from './usernames.js';
import { SqliteReader } from './sqlite-reader.js';
import { SqliteWriter } from './sqlite-writer.js';
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
  PushTarget,
  StoreHealth,
  StoredCertificateRenewal,
  StoredDeviceList,
  StoredEnvelope,
  UsernameRow,
} from './node-store.js';

/** Deleted data leaves the WAL within this time (a TRUNCATE checkpoint runs at most this long after a deletion). */
export const FORGET_WITHIN_MS = 1_000;
/** GET /ready probes a write at most this often; between probes it answers from the last result. */
export const HEALTH_PROBE_INTERVAL_MS = 5_000;
/** Space held back for acks and deletions on a full disk. */
export const RESERVE_BYTES = 8 * 1024 * 1024;
/** The reserve file's name in the database's directory. */
export const RESERVE_FILE = 'disk-reserve';
/**
 * A writer thread that died is replaced after this long, doubled after each death that no
 * successful call separated from the previous one, up to WRITER_RESTART_MAX_MS. Meanwhile sends
 * and acks fail with a retriable error and health() reports 'writer-failed' (GET /ready → 503).
 */
export const WRITER_RESTART_MS = HEALTH_PROBE_INTERVAL_MS;
export const WRITER_RESTART_MAX_MS = 60_000;
/** Longest a main-connection write waits for SQLite's write lock before it fails with SQLITE_BUSY (the main connection's busy_timeout, db.ts, which its reads keep and its writes do not use: #tx). */
export const MAIN_LOCK_WAIT_MS = BUSY_TIMEOUT_MS;
/**
 * PRAGMA synchronous of the store's main connection: NORMAL (1) — its commits are fsynced by the
 * writer thread before their calls resolve (#tx). Every other connection keeps FULL (db.ts).
 */
export const MAIN_CONNECTION_SYNCHRONOUS = 1;
/** A main-connection write that found the lock taken tries again after the writer's yield notice, or after this long. */
const MAIN_LOCK_RETRY_MS = 2;

export interface SqliteStoreOptions {
  /** Clock (tests inject one). */
  readonly now?: () => number;
  /** Bytes of the disk-full reserve (0: none). */
  readonly reserveBytes?: number;
  /** Deleted data leaves every file within this (default FORGET_WITHIN_MS; tests lengthen it). */
  readonly forgetWithinMs?: number;
  /** How much the writer thread raises its nice value above the process's (config STORE_WRITER_NICE; default 0). */
  readonly writerNice?: number;
  /** Called when the store's health changes (node.ts logs it and sets a metric). */
  readonly onHealth?: (h: StoreHealth) => void;
  /** Told whether an existing database with small pages was converted to PAGE_SIZE at open (node.ts logs it). */
  readonly onPageSize?: (c: PageSizeConversion) => void;
  /** Largest database converted (default PAGE_SIZE_CONVERT_MAX_BYTES; tests lower it). */
  readonly pageSizeConvertMaxBytes?: number;
  /** Called when the writer thread died (node.ts logs it and counts it); `restartInMs`: when a new one starts. */
  readonly onWriterDead?: (e: Error, restartInMs: number) => void;
  /** Called when the reader thread died (node.ts logs it); fetches then run on the main connection. */
  readonly onReaderDead?: (e: Error) => void;
  /**
   * A worker process of a multi-process node (docs/architecture.md §Process model): the database
   * is shared with the other workers. The primary converted and migrated it before forking (no
   * page-size conversion here), holds the used challenge nonces (`consumeChallenge`), and lets one
   * worker (`leases`) run the sweeps; each worker keeps its own disk-full reserve file.
   */
  readonly shared?: {
    readonly consumeChallenge: (nonce: Uint8Array, issuedAt: number, expiresAt: number) => Promise<boolean>;
    readonly leases: boolean;
    readonly reserveFile: string;
  };
}

const isBusy = (e: unknown): boolean => {
  const code = (e as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY');
};
const isFull = (e: unknown): boolean => (e as { code?: string } | undefined)?.code === 'SQLITE_FULL' || (e as { code?: string } | undefined)?.code === 'ENOSPC';

export class SqliteNodeStore implements NodeStore, BackupSource {
  readonly kind = 'sqlite';
  /** An ack group handed over just before a send group joins its writer-thread transaction (sqlite-writer.worker.js, runGroup). */
  readonly acksShareSendCommits = true;
  readonly forgetWithinMs = FORGET_WITHIN_MS;
  readonly #db: Sqlite;
  readonly #mailbox: SqliteMailbox;
  readonly #directory: SqliteDirectory;
  readonly #usernames: SqliteUsernames;
  readonly #blobs: SqliteBlobs;
  readonly #push: SqlitePush;
  readonly #lists: SqliteDeviceLists;
  readonly #now: () => number;
  readonly #openedAt: number;
  readonly #reserveFile: string;
  readonly #reserveBytes: number;
  readonly #forgetWithinMs: number;
  readonly #writerNice: number;
  readonly #onHealth: ((h: StoreHealth) => void) | undefined;
  /** Challenge nonces used (hex → expiresAt). In memory: one process owns this store. */
  readonly #usedChallenges = new Map<string, number>();
  readonly #shared: SqliteStoreOptions['shared'];
  #health: StoreHealth = { writable: true };
  #probedAt = -Infinity;
  #closed = false;
  /** Main-connection transactions waiting (#tx), and the tail of their queue. */
  #mainQueue = 0;
  #mainTail: Promise<void> = Promise.resolve();
  readonly #probe;
  readonly #file: string;
  readonly #onWriterDead: ((e: Error, restartInMs: number) => void) | undefined;
  #writer: SqliteWriter;
  /**
   * The delivery pump's reads (fetch), off the event loop; started by the first fetch (a store that
   * never delivers, e.g. a test's or a tool's, starts no thread). Once it died, fetches read on the
   * main connection.
   */
  #reader: SqliteReader | undefined;
  readonly #onReaderDead: ((e: Error) => void) | undefined;
  /** Deaths of the writer thread since the last call it answered (the restart backs off). */
  #writerDeaths = 0;
  #writerRestart: ReturnType<typeof setTimeout> | undefined;

  constructor(file: string, options: SqliteStoreOptions = {}) {
    const conversion = options.shared ? undefined : convertPageSize(file, options.pageSizeConvertMaxBytes, options.reserveBytes ?? RESERVE_BYTES);
    if (conversion) options.onPageSize?.(conversion);
    this.#shared = options.shared;
    this.#db = openDatabase(file);
    // Main-connection commits do not fsync on the event loop: #tx has the writer thread fsync the
    // WAL before it resolves. (A checkpoint still syncs: the WAL before, the database after.)
    this.#db.pragma(`synchronous = ${MAIN_CONNECTION_SYNCHRONOUS}`);
    this.#mailbox = new SqliteMailbox(this.#db);
    this.#directory = new SqliteDirectory(this.#db);
    this.#usernames = new SqliteUsernames(this.#db);
    this.#blobs = new SqliteBlobs(this.#db);
    this.#push = new SqlitePush(this.#db);
    this.#lists = new SqliteDeviceLists(this.#db);
    this.#now = options.now ?? Date.now;
    this.#openedAt = this.#now();
    this.#onHealth = options.onHealth;
    this.#reserveFile = join(dirname(file), options.shared?.reserveFile ?? RESERVE_FILE);
    this.#reserveBytes = options.reserveBytes ?? RESERVE_BYTES;
    this.#forgetWithinMs = options.forgetWithinMs ?? FORGET_WITHIN_MS;
    this.#writerNice = options.writerNice ?? 0;
    this.#probe = this.#db.prepare("INSERT INTO meta (key, value) VALUES ('ready_probe', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    this.#ensureReserve();
    this.#file = file;
    this.#onWriterDead = options.onWriterDead;
    this.#writer = this.#startWriter();
    this.#onReaderDead = options.onReaderDead;
  }

  /** The writer thread's nice value once it is running (STORE_WRITER_NICE); undefined before, or where threads cannot be told apart (not Linux). */
  get writerNice(): number | undefined {
    return this.#writer.nice;
  }

  #startReader(): SqliteReader {
    return new SqliteReader({
      file: this.#file,
      schemaVersion: this.#db.pragma('user_version', { simple: true }) as number,
      onDead: (e) => {
        if (!this.#closed) this.#onReaderDead?.(e);
      },
    });
  }

  #startWriter(): SqliteWriter {
    const w: SqliteWriter = new SqliteWriter({
      file: this.#file,
      reserveFile: this.#reserveFile,
      forgetWithinMs: this.#forgetWithinMs,
      walCycleFrames: WAL_CYCLE_FRAMES,
      nice: this.#writerNice,
      schemaVersion: this.#db.pragma('user_version', { simple: true }) as number,
      onFull: () => this.#setHealth({ writable: false, reason: 'disk-full' }),
      onDead: (e) => this.#writerDied(w, e),
    });
    return w;
  }

  /**
   * The writer thread died (a bug in it, or it ran out of memory). It holds no state of its own —
   * every call it answered had committed, every call it had not answered was rejected to its
   * caller, and SQLite rolled back its open transaction when its connection closed — so a new
   * thread on the same file is as good as a restarted process, without dropping every connection
   * of the node. Until then sends and acks fail (retriable) and /ready answers 503.
   */
  #writerDied(w: SqliteWriter, e: Error): void {
    if (this.#closed || w !== this.#writer) return;
    const delay = Math.min(WRITER_RESTART_MAX_MS, WRITER_RESTART_MS * 2 ** Math.min(this.#writerDeaths, 10));
    this.#writerDeaths++;
    this.#setHealth({ writable: false, reason: 'writer-failed' });
    this.#onWriterDead?.(e, delay);
    this.#writerRestart = setTimeout(() => {
      this.#writerRestart = undefined;
      if (this.#closed) return;
      const next = (this.#writer = this.#startWriter());
      void next.ready.then(() => {
        if (this.#closed || next !== this.#writer || !next.alive) return;
        // A checkpoint asked of the dead thread (after a deletion) was lost with it.
        next.scheduleCheckpoint();
        this.#probedAt = -Infinity; // probe now, not from the cached 'writer-failed'
        void this.health();
      });
    }, delay);
    this.#writerRestart.unref();
  }

  /** How the writer thread made deleted data leave the WAL so far: cut it (TRUNCATE) or saw it overwritten. */
  walForgetStats(): Promise<{ truncates: number; overwritten: number }> {
    return this.#writer.forgetStats();
  }

  /** TEST ONLY: the writer thread dies as it would from a bug in its own code (SqliteWriter.crashForTest). */
  crashWriterForTest(): void {
    this.#writer.crashForTest();
  }

  /**
   * A hot backup of the live database (backup.ts: SQLite's online backup API on this store's own
   * connection, verified, published atomically, older ones pruned). The node's backup schedule
   * calls this: the store alone touches the database handle.
   */
  hotBackup(options: BackupOptions): Promise<BackupResult> {
    if (this.#closed) return Promise.reject(new Error('store is closed'));
    return backupDatabase(this.#db, options);
  }

  /** TEST ONLY: the better-sqlite3 handle, for tests that inspect or damage the file's contents. The node's code never uses it. */
  get database(): Sqlite {
    return this.#db;
  }

  /**
   * One IMMEDIATE transaction on the main connection (the writes other than sends and acks).
   *
   * SQLite's write lock is often held by the writer thread (a group commit and its fsync, up to
   * milliseconds under load). The connection's busy handler would wait for it by sleeping — on
   * the event loop, stopping every socket of the node (measured with bench/node/main-write.ts:
   * 1.6–1.7 ms per write at the median while the writer was busy). So the BEGIN does not wait:
   * on SQLITE_BUSY the call asks the writer thread to hold back its next transaction and waits
   * asynchronously for it (SqliteWriter.lockWanted), then tries again, for at most
   * MAIN_LOCK_WAIT_MS (the busy_timeout it replaces). Calls run in the order they were made
   * (a queue), as they did when each ran to completion at once: two token updates from one device
   * keep their order.
   *
   * The transaction runs on the event loop; its COMMIT does not fsync (synchronous=NORMAL) — that
   * held the loop 0.5 ms at the median, up to 4 ms (bench/node/main-write.ts). The call resolves
   * only after the writer thread has fsynced the WAL (#durable), so nothing is answered before it
   * is on disk; other readers may see the change up to that fsync earlier than its caller does.
   */
  #tx<T>(fn: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(new Error('store is closed'));
    if (this.#mainQueue === 0) {
      // Nothing queued: try at once (the common case: no lock wait).
      let result: T;
      try {
        result = this.#txNow(fn);
      } catch (e) {
        if (!isBusy(e)) return Promise.reject(e);
        return this.#txQueued(fn);
      }
      return this.#durable().then(() => result);
    }
    return this.#txQueued(fn);
  }

  #txQueued<T>(fn: () => T): Promise<T> {
    this.#mainQueue++;
    const run = this.#mainTail.then(() => this.#txWaiting(fn));
    this.#mainTail = run.then(
      () => undefined,
      () => undefined,
    );
    // The queue orders the transactions; their fsyncs overlap with the next one.
    return run.finally(() => this.#mainQueue--).then((result) => this.#durable().then(() => result));
  }

  /**
   * Resolves when every commit made so far is on disk: the writer thread fsyncs the WAL. If the
   * thread is dead or restarting, the event loop fsyncs it itself (as before the writer existed).
   * A failed fsync is not retried: on Linux a second fsync after an error can succeed although the
   * data never reached the disk, so the error goes to the caller.
   */
  async #durable(): Promise<void> {
    if (this.#writer.alive) {
      try {
        return await this.#writer.sync();
      } catch (e) {
        if ((e as { code?: string }).code !== 'WRITER_DEAD') throw e;
        // The thread died before it answered: below.
      }
    }
    // The WAL exists while a connection is open (SQLite removes it with the last one).
    fsyncPath(`${this.#file}-wal`);
  }

  async #txWaiting<T>(fn: () => T): Promise<T> {
    const started = performance.now();
    let asked = false;
    try {
      for (;;) {
        if (this.#closed) throw new Error('store is closed');
        try {
          return this.#txNow(fn);
        } catch (e) {
          if (!isBusy(e) || performance.now() - started >= MAIN_LOCK_WAIT_MS) throw e;
        }
        asked = true;
        await this.#writer.lockWanted(MAIN_LOCK_RETRY_MS);
      }
    } finally {
      if (asked) this.#writer.mainDone();
    }
  }

  /** The transaction now, or SQLITE_BUSY at once if another connection holds the write lock. */
  #txNow<T>(fn: () => T): T {
    this.#db.pragma('busy_timeout = 0');
    try {
      return this.#db.transaction(fn).immediate();
    } catch (e) {
      if (isFull(e)) this.#setHealth({ writable: false, reason: 'disk-full' });
      throw e;
    } finally {
      this.#db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    }
  }

  /** A deletion that must commit even on a full disk: on SQLITE_FULL, release the reserve and retry once. */
  async #deleting<T>(fn: () => T, checkpointNow = false): Promise<T> {
    let result: T;
    try {
      result = await this.#tx(fn);
    } catch (e) {
      if (!isFull(e) || !this.#releaseReserve()) throw e;
      this.#checkpoint();
      result = await this.#tx(fn);
    }
    if (checkpointNow) this.#checkpoint();
    else this.#scheduleCheckpoint();
    return result;
  }

  /** The writer thread checkpoints within FORGET_WITHIN_MS (off the event loop). */
  #scheduleCheckpoint(): void {
    if (!this.#closed) this.#writer.scheduleCheckpoint();
  }

  /** Copies the WAL into the database and truncates it to zero bytes: old frames are gone. */
  #checkpoint(): void {
    if (this.#closed) return;
    try {
      const r = this.#db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
      if (r[0]?.busy) this.#scheduleCheckpoint(); // a reader or the writer held it: try again
    } catch {
      this.#scheduleCheckpoint();
    }
  }

  #setHealth(h: StoreHealth): void {
    const changed = h.writable !== this.#health.writable || (!h.writable && !this.#health.writable && h.reason !== this.#health.reason);
    this.#health = h;
    this.#probedAt = Date.now();
    if (changed) this.#onHealth?.(h);
  }

  #ensureReserve(): boolean {
    if (this.#reserveBytes <= 0) return true;
    let fd: number | undefined;
    try {
      fd = openSync(this.#reserveFile, 'w', 0o600);
      const chunk = Buffer.alloc(Math.min(this.#reserveBytes, 1024 * 1024));
      for (let left = this.#reserveBytes; left > 0; left -= chunk.length) writeSync(fd, chunk, 0, Math.min(left, chunk.length));
      fsyncSync(fd);
      return true;
    } catch {
      rmSync(this.#reserveFile, { force: true });
      return false;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  #releaseReserve(): boolean {
    try {
      rmSync(this.#reserveFile);
      return true;
    } catch {
      return false;
    }
  }

  // ── Mailboxes ──

  async enqueue(items: readonly EnqueueItem[], limits: MailboxLimits): Promise<EnqueueOutcome[]> {
    if (!this.#health.writable && this.#health.reason === 'disk-full') {
      // Refuse new mail while the reserve is spent; re-probe at most every HEALTH_PROBE_INTERVAL_MS.
      if ((await this.health()).writable === false) throw Object.assign(new Error('disk full'), { code: 'SQLITE_FULL' });
    }
    if (this.#closed) throw new Error('store is closed');
    try {
      const out = await this.#writer.enqueue(items, limits);
      this.#writerDeaths = 0;
      return out;
    } catch (e) {
      if (isFull(e)) this.#setHealth({ writable: false, reason: 'disk-full' });
      throw e;
    }
  }

  async fetch(mailbox: Uint8Array, afterSeq: number, limit: number, maxBytes: number): Promise<StoredEnvelope[]> {
    if (this.#closed) throw new Error('store is closed');
    const reader = (this.#reader ??= this.#startReader());
    if (reader.alive) {
      try {
        // A copy of the 32 bytes: postMessage would clone the whole buffer a view of it lies in.
        return await reader.fetch(mailbox.slice(), afterSeq, limit, maxBytes);
      } catch (e) {
        if ((e as { code?: string }).code !== 'READER_DEAD') throw e;
        if (this.#closed) throw new Error('store is closed', { cause: e });
        // The thread died before it answered: read here (below).
      }
    }
    return this.#mailbox.fetch(mailbox, afterSeq, limit, maxBytes);
  }

  /** TEST ONLY: the reader thread dies as it would from a bug in its own code; fetches then read on the main connection. */
  crashReaderForTest(): void {
    (this.#reader ??= this.#startReader()).crashForTest();
  }

  async ack(requests: readonly AckRequest[]): Promise<number[]> {
    if (this.#closed) throw new Error('store is closed');
    return this.#writer.ack(requests);
  }

  async mailboxStats(mailbox: Uint8Array): Promise<MailboxStats> {
    return this.#mailbox.stats(mailbox);
  }

  async clearGap(mailbox: Uint8Array, expired: number, evicted: number): Promise<void> {
    await this.#deleting(() => this.#mailbox.clearGap(mailbox, expired, evicted));
  }

  async setDeliveryTokens(mailbox: Uint8Array, hashes: readonly Uint8Array[]): Promise<void> {
    await this.#deleting(() => this.#mailbox.setTokenHashes(mailbox, hashes));
  }

  async checkRecipient(mailbox: Uint8Array, tokenHash: Uint8Array | undefined): Promise<'ok' | 'unknown-mailbox' | 'bad-token'> {
    if (!this.#directory.exists(mailbox)) return 'unknown-mailbox';
    if (tokenHash && !this.#mailbox.hasTokenHash(mailbox, tokenHash)) return 'bad-token';
    return 'ok';
  }

  async expireEnvelopes(before: number, maxMailboxes: number): Promise<{ envelopes: number; mailboxes: number }> {
    // The sweep runs every minute and almost always finds nothing: a read first. The write
    // transaction below takes SQLite's write lock on the event loop, waiting (SQLite's busy
    // handler sleeps 1, 2, 5, 10… ms) while the writer thread commits, and tells the writer that
    // something was deleted (a forget deadline, a slot resync) — for nothing, if nothing expired.
    if (this.#closed) throw new Error('store is closed');
    if (!this.#mailbox.anyExpired(before)) return { envelopes: 0, mailboxes: 0 };
    return this.#deleting(() => this.#mailbox.expire(before, maxMailboxes));
  }

  async queueTotals(): Promise<{ envelopes: number; bytes: number }> {
    return this.#mailbox.totals();
  }

  // ── Key directory ──

  async device(mailbox: Uint8Array): Promise<DeviceRecord | undefined> {
    return this.#directory.device(mailbox);
  }

  async devicesOfAccount(accountKey: Uint8Array): Promise<Uint8Array[]> {
    return this.#directory.devicesOfAccount(accountKey);
  }

  async preKeyCounts(mailbox: Uint8Array): Promise<PoolCounts> {
    return this.#directory.counts(mailbox);
  }

  async publishKeys(p: KeyPublication): Promise<'ok' | 'other-account' | 'list-changed'> {
    return this.#tx(() => {
      if (this.#lists.get(p.accountKey)?.epoch !== p.deviceListEpoch) return 'list-changed';
      return this.#directory.publish(p);
    });
  }

  async offerCertificateRenewal(o: CertificateRenewalOffer): Promise<CertificateRenewalOutcome> {
    return this.#tx(() => {
      if (this.#lists.get(o.accountKey)?.epoch !== o.deviceListEpoch) return 'list-changed';
      return this.#directory.offerRenewal(o);
    });
  }

  async certificateRenewal(mailbox: Uint8Array): Promise<StoredCertificateRenewal | undefined> {
    return this.#directory.renewal(mailbox);
  }

  async claimPreKeys(mailbox: Uint8Array, consume: boolean): Promise<ClaimedKeys | undefined> {
    return this.#deleting(() => this.#directory.claim(mailbox, consume));
  }

  #deleteDevicesTx(mailboxes: readonly Uint8Array[]): void {
    for (const m of mailboxes) {
      this.#mailbox.deleteMailbox(m);
      this.#push.delete(m);
      this.#blobs.dropBudgetOf(m);
      this.#directory.deleteDevice(m);
    }
  }

  async deleteDevices(mailboxes: readonly Uint8Array[]): Promise<void> {
    await this.#deleting(() => this.#deleteDevicesTx(mailboxes), true);
  }

  async deleteAccount(accountKey: Uint8Array): Promise<Uint8Array[]> {
    return this.#deleting(() => {
      const mailboxes = this.#directory.devicesOfAccount(accountKey);
      this.#deleteDevicesTx(mailboxes);
      this.#usernames.deleteOwnedBy(accountKey);
      this.#blobs.deleteArchive(accountKey);
      this.#lists.delete(accountKey);
      return mailboxes;
    }, true);
  }

  // ── Device lists ──

  async deviceList(accountKey: Uint8Array): Promise<StoredDeviceList | undefined> {
    return this.#lists.get(accountKey);
  }

  async publishDeviceList(p: DeviceListPublication): Promise<DeviceListOutcome> {
    const listed = new Set(p.listedMailboxes.map((m) => Buffer.from(m).toString('hex')));
    // A revocation is a deletion: it must commit on a full disk, and leaves the WAL within FORGET_WITHIN_MS.
    return this.#deleting((): DeviceListOutcome => {
      if (this.#lists.get(p.accountKey)?.epoch !== p.expectedEpoch) return { ok: false, reason: 'conflict' };
      this.#lists.put(p.accountKey, p.epoch, p.encoded, p.now);
      const removed = this.#directory.devicesOfAccount(p.accountKey).filter((m) => !listed.has(Buffer.from(m).toString('hex')));
      this.#deleteDevicesTx(removed);
      return { ok: true, removed };
    });
  }

  // ── Usernames ──

  async username(namespace: string, username: string): Promise<UsernameRow | undefined> {
    return this.#usernames.get(namespace, username);
  }

  async setUsername(namespace: string, username: string, expected: Uint8Array | undefined, owner: Uint8Array | undefined, now: number): Promise<boolean> {
    return this.#deleting(() => this.#usernames.set(namespace, username, expected, owner, now));
  }

  // ── Media and archives ──

  async media(id: string): Promise<MediaRow | undefined> {
    return this.#blobs.media(id);
  }

  async addMedia(m: MediaUpload): Promise<boolean> {
    return this.#tx(() => this.#blobs.addMedia(m));
  }

  async mediaBudgetUsed(uploader: Uint8Array, window: number): Promise<number> {
    return this.#blobs.budgetUsed(uploader, window);
  }

  async expireMedia(now: number, oldestWindow: number, limit: number): Promise<string[]> {
    if (this.#closed) throw new Error('store is closed');
    if (!this.#blobs.anyMediaToExpire(now, oldestWindow)) return []; // a read first (expireEnvelopes)
    return this.#deleting(() => this.#blobs.expireMedia(now, oldestWindow, limit));
  }

  async archiveByKey(archiveKey: Uint8Array): Promise<ArchiveRow | undefined> {
    return this.#blobs.archiveByKey(archiveKey);
  }

  async archiveKeySource(accountKey: Uint8Array): Promise<Uint8Array | undefined> {
    return this.#blobs.archiveKeySource(accountKey);
  }

  async registerArchiveKey(accountKey: Uint8Array, archiveKey: Uint8Array, keySource: Uint8Array | undefined): Promise<'ok' | 'key-taken' | 'no-device'> {
    return this.#tx(() => {
      const holder = this.#blobs.archiveByKey(archiveKey);
      if (holder && Buffer.compare(holder.accountKey, accountKey) !== 0) return 'key-taken';
      if (this.#directory.devicesOfAccount(accountKey).length === 0) return 'no-device';
      this.#blobs.setArchiveKey(accountKey, archiveKey, keySource);
      return 'ok';
    });
  }

  async replaceArchive(archiveKey: Uint8Array, r: ArchiveReplacement): Promise<ArchiveReplaced | undefined> {
    return this.#tx(() => this.#blobs.replaceArchive(archiveKey, r));
  }

  async archiveFileNames(): Promise<Set<string>> {
    return this.#blobs.archiveFileNames();
  }

  // ── Push endpoints ──

  async pushTarget(mailbox: Uint8Array): Promise<PushTarget | undefined> {
    return this.#push.get(mailbox);
  }

  async setPushTarget(mailbox: Uint8Array, target: PushTarget, now: number): Promise<boolean> {
    return this.#deleting(() => {
      if (!this.#directory.exists(mailbox)) return false;
      this.#push.put(mailbox, target, now);
      return true;
    });
  }

  async deletePushTarget(mailbox: Uint8Array): Promise<boolean> {
    return this.#deleting(() => this.#push.delete(mailbox));
  }

  async deletePushTargetIf(mailbox: Uint8Array, target: PushTarget): Promise<boolean> {
    return this.#deleting(() => this.#push.deleteIf(mailbox, target));
  }

  // ── Authentication ──

  async consumeChallenge(nonce: Uint8Array, issuedAt: number, expiresAt: number): Promise<boolean> {
    if (this.#closed) throw new Error('store is closed');
    if (this.#shared) return this.#shared.consumeChallenge(nonce, issuedAt, expiresAt);
    // Nonces used before this store opened are unknown to it: refuse the challenges of that time.
    if (issuedAt < this.#openedAt) return false;
    const key = Buffer.from(nonce.buffer, nonce.byteOffset, nonce.byteLength).toString('hex');
    if (this.#usedChallenges.has(key)) return false;
    this.#usedChallenges.set(key, expiresAt);
    if (this.#usedChallenges.size % 1024 === 0) this.#forgetChallenges();
    return true;
  }

  #forgetChallenges(): void {
    const now = this.#now();
    for (const [k, at] of this.#usedChallenges) if (at < now) this.#usedChallenges.delete(k);
  }

  // ── Operations ──

  async health(): Promise<StoreHealth> {
    if (this.#closed) return { writable: false, reason: 'closed' };
    // The main connection could still write, but sends and acks go through the writer thread.
    if (!this.#writer.alive) return this.#health;
    if (Date.now() - this.#probedAt < HEALTH_PROBE_INTERVAL_MS) return this.#health;
    this.#forgetChallenges();
    let h: StoreHealth;
    try {
      if (!this.#health.writable && this.#health.reason === 'disk-full' && !this.#ensureReserve()) throw Object.assign(new Error('disk full'), { code: 'ENOSPC' });
      await this.#tx(() => this.#probe.run(String(Date.now())));
      h = { writable: true };
    } catch (e) {
      h = { writable: false, reason: isFull(e) ? 'disk-full' : (e as { code?: string }).code === 'SQLITE_READONLY' ? 'read-only' : 'io-error' };
    }
    // The writer thread died while the probe waited for its fsync: its 'writer-failed' stands.
    if (!this.#writer.alive) return this.#health;
    this.#setHealth(h);
    return h;
  }

  async tryLease(_job: string, _holder: string, _ttlMs: number): Promise<boolean> {
    // One process owns a SQLite store; of a multi-process node's workers, the one the primary chose.
    return !this.#closed && (this.#shared?.leases ?? true);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#writerRestart);
    await this.#reader?.close();
    await this.#writer.close(); // commits what it holds, then checkpoints
    try {
      this.#db.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      this.#db.close();
      rmSync(this.#reserveFile, { force: true });
    }
  }
}

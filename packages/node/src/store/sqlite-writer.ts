/**
 * The main-thread side of SqliteNodeStore's writer thread (sqlite-writer.worker.js): durable sends
 * and acks are packed into one transferred buffer per call (writer-wire.ts), committed by the
 * worker on its own connection (group commit, fsync off the event loop) and answered after the
 * commit. The worker keeps the process alive only while a call is outstanding.
 */
import type { AckRequest, EnqueueItem, EnqueueOutcome, MailboxLimits } from './node-store.js';
import { REFUSALS, packAcks, packEnqueue } from './writer-wire.js';
import { trace } from '../latency-trace.js';
import { StoreThread } from './store-thread.js';
import type { ThreadReply } from './store-thread.js';

/** Reply number of the thread's notice "holding back for the main connection" (lockWanted). */
const YIELD_NOTICE = -3;

interface Reply extends ThreadReply {
  readonly ready?: boolean;
  /** With `ready`: the thread's nice value after it lowered its priority (undefined: not Linux, or it failed). */
  readonly nice?: number;
  readonly res?: Float64Array;
  readonly counts?: number[];
  readonly forget?: { truncates: number; overwritten: number };
  /** The transaction hit a full disk (acks were retried on the released reserve). */
  readonly full?: boolean;
  /** MW_LATENCY_TRACE only: when the writer posted this reply (performance.timeOrigin + now()). */
  readonly posted?: number;
}

export interface WriterOptions {
  readonly file: string;
  readonly reserveFile: string;
  readonly forgetWithinMs: number;
  /** wal_autocheckpoint / journal_size_limit in frames (db.ts WAL_CYCLE_FRAMES). */
  readonly walCycleFrames: number;
  /** How much the thread raises its own nice value (config STORE_WRITER_NICE; 0: it runs as the event loop does). */
  readonly nice?: number;
  readonly schemaVersion: number;
  /** The worker met a full disk (it released the reserve so that acks could commit). */
  readonly onFull: () => void;
  /** The thread died (an uncaught error, or it exited) other than by close(): every call rejects from now on. */
  readonly onDead?: (e: Error) => void;
}

/**
 * The most the thread holds back its next transaction for a main-connection write that waits for
 * the write lock (SqliteNodeStore's main-connection writes: tokens, keys, usernames, deletions…).
 */
export const MAIN_YIELD_MAX_MS = 20;

export class SqliteWriter extends StoreThread<Reply> {
  /**
   * Shared with the thread: 1 while a main-connection write waits for SQLite's write lock. The
   * thread then posts a yield notice and holds back its next transaction (≤ MAIN_YIELD_MAX_MS)
   * until mainDone(), so that the main connection gets the lock between two of its commits
   * instead of being starved by back-to-back group commits.
   */
  readonly #mainWaits: Int32Array;
  #yieldWaiters: (() => void)[] = [];
  readonly #onFull: () => void;
  #readyResolve!: () => void;
  /** Resolves when the thread has opened its connection and takes calls. */
  readonly ready = new Promise<void>((resolve) => (this.#readyResolve = resolve));
  /** The thread's nice value once ready (undefined before, or where it cannot be read: not Linux). */
  nice: number | undefined;

  constructor(options: WriterOptions) {
    const mainWaits = new Int32Array(new SharedArrayBuffer(4));
    super({
      // src/ (vitest, tsx) and dist/ both hold the worker as plain JavaScript (allowJs copies it).
      script: new URL('./sqlite-writer.worker.js', import.meta.url),
      workerData: {
        file: options.file,
        reserveFile: options.reserveFile,
        forgetWithinMs: options.forgetWithinMs,
        walCycleFrames: options.walCycleFrames,
        nice: options.nice ?? 0,
        schemaVersion: options.schemaVersion,
        mainWaits,
        mainYieldMaxMs: MAIN_YIELD_MAX_MS,
        yieldNotice: YIELD_NOTICE,
      },
      name: 'store writer',
      deadCode: 'WRITER_DEAD',
      onDead: options.onDead,
    });
    this.#mainWaits = mainWaits;
    this.#onFull = options.onFull;
  }

  protected override notice(r: Reply): boolean {
    if (r.n === 0) {
      this.nice = r.nice;
      this.#readyResolve();
      return true;
    }
    if (r.n === YIELD_NOTICE) {
      this.#wakeYieldWaiters();
      return true;
    }
    if (trace && r.posted !== undefined) trace.stage('writer.replyHandoff', performance.timeOrigin + performance.now() - r.posted);
    return false;
  }

  protected override answered(r: Reply): void {
    if (r.full) this.#onFull();
  }

  /**
   * TEST ONLY: makes the thread's own code throw outside any call's error handling — a stand-in
   * for a bug in the writer — so that it dies as it would then (tests of /ready and the restart).
   */
  crashForTest(): void {
    this.post({ t: 'e', n: -2, buf: null });
  }

  #call(msg: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<Reply> {
    return this.call(trace ? { ...msg, sent: performance.timeOrigin + performance.now() } : msg, transfer);
  }

  async enqueue(items: readonly EnqueueItem[], limits: MailboxLimits): Promise<EnqueueOutcome[]> {
    const buf = packEnqueue(items);
    const { maxMessages, maxBytes, firstContactMaxMessages } = limits;
    const r = await this.#call({ t: 'e', buf, limits: { maxMessages, maxBytes, firstContactMaxMessages } }, [buf]);
    const res = r.res!;
    return items.map((item, i): EnqueueOutcome => {
      const seq = res[2 * i]!;
      if (seq < 0) return { ok: false, reason: REFUSALS[-seq] as Exclude<EnqueueOutcome, { ok: true }>['reason'] };
      return { ok: true, envelope: { seq, id: item.id, payload: item.payload, receivedAt: item.receivedAt }, evicted: res[2 * i + 1]! };
    });
  }

  async ack(requests: readonly AckRequest[]): Promise<number[]> {
    const buf = packAcks(requests);
    return (await this.#call({ t: 'a', buf }, [buf])).counts!;
  }

  /**
   * Resolves once every commit made before the call — on any connection — is on disk: the thread
   * fsyncs the WAL file (after the group commit it may be running). The main connection commits
   * with synchronous=NORMAL and waits for this instead of fsyncing on the event loop.
   */
  async sync(): Promise<void> {
    await this.#call({ t: 'y' });
  }

  /** Counters of the writer's forgetting (sqlite-writer.worker.js). */
  async forgetStats(): Promise<{ truncates: number; overwritten: number }> {
    const r = await this.#call({ t: 's' });
    return r.forget!;
  }

  /**
   * A main-connection write found the write lock taken: the thread holds back its next transaction
   * for it. Resolves when the thread says it is holding back (its current commit is done), or after
   * `ms` (the lock may be another process's or connection's, or the thread may be idle or dead).
   * The caller then tries again, and calls mainDone() when it has committed or given up.
   */
  lockWanted(ms: number): Promise<void> {
    Atomics.store(this.#mainWaits, 0, 1);
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#yieldWaiters = this.#yieldWaiters.filter((w) => w !== done);
        resolve();
      }, ms);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.#yieldWaiters.push(done);
    });
  }

  /** The main connection's write is done (or gave up): the thread goes on. */
  mainDone(): void {
    Atomics.store(this.#mainWaits, 0, 0);
    Atomics.notify(this.#mainWaits, 0);
  }

  #wakeYieldWaiters(): void {
    const w = this.#yieldWaiters;
    this.#yieldWaiters = [];
    for (const f of w) f();
  }

  /** Asks the writer to checkpoint (TRUNCATE) within forgetWithinMs: a deletion on the main connection. */
  scheduleCheckpoint(): void {
    this.post({ t: 'c', n: -1 });
  }
}

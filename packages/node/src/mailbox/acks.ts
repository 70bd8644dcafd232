/**
 * Group commit for acknowledgements. Every ack frame used to be its own fsynced transaction, and a
 * device acks about once per delivered frame, so a busy node spent most of its time waiting for
 * fsyncs (bench/node: ~one fsync per delivered message). Acks that arrive in one event-loop turn,
 * from any connection, now share one transaction — the same pattern as durable sends.
 *
 * Semantics are unchanged: envelopes are deleted only after the device acknowledged them, and the
 * `ok` reply (for an ack with a request id) is sent only after the deletion committed. An ack lost
 * to a crash before its commit just means the envelope is delivered again (clients deduplicate).
 */
import type { NodeStore } from '../store/node-store.js';
import { trace } from '../latency-trace.js';

/** Most ack frames committed in one transaction: bounds the write lock's hold time. */
export const MAX_ACK_GROUP = 1024;
/**
 * While durable sends flow, a small ack group waits up to this long for the next send group, which
 * takes it along (`carry()`, called by SendService as it hands a group to the store). On a store
 * whose acks then share the send group's transaction (NodeStore.acksShareSendCommits: SQLite) that
 * is one commit and one fsync for both instead of two. Without sends (a drain, an idle node) acks
 * commit at once, as before. With a send commit interval (COMMIT_INTERVAL_MS) the wait is that
 * interval + 1 ms when longer.
 */
export const ACK_CARRY_MS = 3;
/** An ack group holding this many ids does not wait for a send group. */
export const ACK_CARRY_MAX_IDS = 256;
/** Sends count as flowing (a small group waits for a carrier) this long after the last `carry()` (longer with a commit interval). */
export const SENDS_FLOWING_MS = 10;

type Done = (result: number | Error) => void;
type Pending = { mailbox: Uint8Array; ids: Uint8Array[]; seqs: number[] | undefined; done: Done };

export class AckCommitter {
  #pending: Pending[] = [];
  #scheduled = false;
  /**
   * Commit bookkeeping without a promise or a collection entry per commit (this runs every turn a
   * device acks; a Set of in-flight promises cost ~10 % of the event loop's allocations at 10,000
   * msgs/s, and its table, re-made each time the Set emptied, was promoted to the old generation).
   */
  #started = 0;
  #running = 0;
  /** flush() callers: each waits for the `remaining` commits that were running when it was called (ids < upTo). */
  readonly #waiters: { upTo: number; remaining: number; resolve: () => void }[] = [];
  readonly #onImmediate = (): void => this.#commitPending();
  /** Ids in #pending (a large group does not wait for a carrier). */
  #pendingIds = 0;
  /** The ACK_CARRY_MS timer of a group waiting for a send group to carry it. */
  #carryTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the last send group went to the store (`carry()`); -Infinity: never. */
  #lastCarry = -Infinity;

  /**
   * `carried`: the store commits acks handed over just before a send group with that group
   * (NodeStore.acksShareSendCommits), so while sends flow a small group waits up to ACK_CARRY_MS
   * for one. Without it (the default) every group commits in the next turn.
   */
  constructor(
    private readonly store: Pick<NodeStore, 'ack'>,
    private readonly options: {
      readonly carried?: boolean;
      /**
       * The send side's COMMIT_INTERVAL_MS (SendOptions): send groups may come that far apart
       * under load, so a small ack group waits up to that long (+1 ms) for one, and sends count
       * as flowing for twice that long.
       */
      readonly commitIntervalMs?: number;
    } = {},
  ) {
    const interval = options.commitIntervalMs ?? 0;
    this.#carryMs = Math.max(ACK_CARRY_MS, interval + 1);
    this.#flowingMs = Math.max(SENDS_FLOWING_MS, 2 * interval);
  }

  readonly #carryMs: number;
  readonly #flowingMs: number;

  /** A durable send group is going to the store now (SendService): the queued acks go just before it. */
  carry(): void {
    if (!this.options.carried) return;
    this.#lastCarry = performance.now();
    if (this.#pending.length > 0) this.#commitPending();
  }

  /**
   * Queues the deletion; `done` gets the number deleted (or the error) once the group committed.
   * `seqs` (same order as `ids`): where the connection delivered them (AckRequest.seqs).
   */
  add(mailbox: Uint8Array, ids: Uint8Array[], seqs: number[] | undefined, done: Done): void {
    this.#pending.push({ mailbox, ids, seqs, done });
    this.#pendingIds += ids.length;
    if (this.#pending.length >= MAX_ACK_GROUP) {
      this.#commitPending();
      return;
    }
    if (this.#carryTimer !== undefined && this.#pendingIds >= ACK_CARRY_MAX_IDS) {
      // Grown too large to wait for a carrier: commit in the next turn instead.
      clearTimeout(this.#carryTimer);
      this.#carryTimer = undefined;
      this.#scheduled = false;
    }
    if (!this.#scheduled) {
      this.#scheduled = true;
      if (this.#pendingIds < ACK_CARRY_MAX_IDS && performance.now() - this.#lastCarry < this.#flowingMs) this.#carryTimer = setTimeout(this.#onImmediate, this.#carryMs);
      else setImmediate(this.#onImmediate);
    }
  }

  /** Commits everything queued now; resolves when every commit started so far has finished (shutdown). */
  flush(): Promise<void> {
    this.#commitPending();
    if (this.#running === 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ upTo: this.#started, remaining: this.#running, resolve }));
  }

  #commitPending(): void {
    // A setImmediate still queued finds nothing (or a later group) and is harmless; a carry timer
    // is cleared so that it cannot cut a later group's wait short.
    this.#scheduled = false;
    if (this.#carryTimer !== undefined) {
      clearTimeout(this.#carryTimer);
      this.#carryTimer = undefined;
    }
    const batch = this.#pending;
    if (batch.length === 0) return;
    this.#pending = [];
    this.#pendingIds = 0;
    void this.#commit(batch, this.#started++);
  }

  async #commit(batch: Pending[], id: number): Promise<void> {
    this.#running++;
    let result: number[] | Error;
    const t0 = trace ? performance.now() : 0;
    try {
      result = await this.store.ack(batch);
      if (trace) {
        trace.stage('ack.writerRoundTrip', performance.now() - t0);
        trace.stage('ack.groupSize', batch.length);
      }
    } catch (e) {
      result = e instanceof Error ? e : new Error(String(e));
    }
    try {
      for (let i = 0; i < batch.length; i++) batch[i]!.done(result instanceof Error ? result : result[i]!);
    } finally {
      this.#finished(id);
    }
  }

  #finished(id: number): void {
    this.#running--;
    for (let i = this.#waiters.length - 1; i >= 0; i--) {
      const w = this.#waiters[i]!;
      if (id < w.upTo && --w.remaining === 0) {
        this.#waiters.splice(i, 1);
        w.resolve();
      }
    }
  }
}

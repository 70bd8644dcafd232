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
 * takes it along (SendService calls carry() as it hands a group to the store): on SQLite both reach
 * the writer thread together and commit in one transaction — one fsync instead of two. At 1,000
 * msgs/s that is about one commit per message instead of two (docs/benchmarks.md). Without sends (a
 * drain, an idle node) acks commit at once, as before.
 */
export const ACK_CARRY_MS = 3;
/** An ack group of this many ids does not wait for a send group. */
export const ACK_CARRY_MAX_IDS = 256;

type Done = (result: number | Error) => void;

export class AckCommitter {
  #pending: { mailbox: Uint8Array; ids: Uint8Array[]; seqs: number[] | undefined; done: Done }[] = [];
  #scheduled = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #pendingIds = 0;
  readonly #inFlight = new Set<Promise<void>>();

  /** `sendsFlowing`: whether durable send groups are going to the store now (they carry acks along). */
  constructor(
    private readonly store: Pick<NodeStore, 'ack'>,
    private readonly sendsFlowing: () => boolean = () => false,
  ) {}

  /** A send group is going to the store now: the acks queued go with it (SendService). */
  carry(): void {
    if (this.#pending.length > 0) void this.flush();
  }

  /**
   * Queues the deletion; `done` gets the number deleted (or the error) once the group committed.
   * `seqs` (same order as `ids`): where the connection delivered them (AckRequest.seqs).
   */
  add(mailbox: Uint8Array, ids: Uint8Array[], seqs: number[] | undefined, done: Done): void {
    this.#pending.push({ mailbox, ids, seqs, done });
    this.#pendingIds += ids.length;
    if (this.#pending.length >= MAX_ACK_GROUP) {
      void this.flush();
      return;
    }
    if (this.#timer !== undefined && this.#pendingIds >= ACK_CARRY_MAX_IDS) {
      // Grown too large to wait for a carrier: commit in the next turn instead.
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#scheduled = false;
    }
    if (!this.#scheduled) {
      this.#scheduled = true;
      if (this.#pendingIds < ACK_CARRY_MAX_IDS && this.sendsFlowing()) this.#timer = setTimeout(() => void this.flush(), ACK_CARRY_MS);
      else setImmediate(() => void this.flush());
    }
  }

  /** Commits everything queued now; resolves when every commit started so far has finished (shutdown). */
  async flush(): Promise<void> {
    this.#scheduled = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#pending;
    this.#pending = [];
    this.#pendingIds = 0;
    if (batch.length > 0) {
      const p = this.#commit(batch);
      this.#inFlight.add(p);
      void p.finally(() => this.#inFlight.delete(p));
    }
    await Promise.all([...this.#inFlight]);
  }

  async #commit(batch: { mailbox: Uint8Array; ids: Uint8Array[]; seqs: number[] | undefined; done: Done }[]): Promise<void> {
    let counts: number[];
    const t0 = trace ? performance.now() : 0;
    try {
      counts = await this.store.ack(batch);
      if (trace) {
        trace.stage('ack.writerRoundTrip', performance.now() - t0);
        trace.stage('ack.groupSize', batch.length);
      }
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      for (const b of batch) b.done(err);
      return;
    }
    batch.forEach((b, i) => b.done(counts[i]!));
  }
}

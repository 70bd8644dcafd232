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

type Done = (result: number | Error) => void;

export class AckCommitter {
  #pending: { mailbox: Uint8Array; ids: Uint8Array[]; seqs: number[] | undefined; done: Done }[] = [];
  #scheduled = false;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(private readonly store: Pick<NodeStore, 'ack'>) {}

  /**
   * Queues the deletion; `done` gets the number deleted (or the error) once the group committed.
   * `seqs` (same order as `ids`): where the connection delivered them (AckRequest.seqs).
   */
  add(mailbox: Uint8Array, ids: Uint8Array[], seqs: number[] | undefined, done: Done): void {
    this.#pending.push({ mailbox, ids, seqs, done });
    if (this.#pending.length >= MAX_ACK_GROUP) void this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => void this.flush());
    }
  }

  /** Commits everything queued now; resolves when every commit started so far has finished (shutdown). */
  async flush(): Promise<void> {
    this.#scheduled = false;
    const batch = this.#pending;
    this.#pending = [];
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

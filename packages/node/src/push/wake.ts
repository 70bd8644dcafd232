/**
 * The wake scheduler: when durable mail is committed for a device with no live connection, ring
 * its push endpoint — once per burst.
 *
 * - Coalescing (leading edge): the first envelope of a burst rings at once; further envelopes for
 *   the same mailbox ring nothing until PUSH_COALESCE_MS have passed AND the previous wake is no
 *   longer being sent or retried. So 100 envelopes in the window ring once, and the device still
 *   gets a new ring for mail that arrives after it went back to sleep.
 * - Only durable envelopes reach here (SendService calls `notify` after the group commit, for
 *   mailboxes not live); ephemeral signals (typing, presence, receipts) never do.
 * - Retries on 429 / 5xx / network errors with exponential backoff and jitter, at most
 *   PUSH_MAX_ATTEMPTS, honouring Retry-After up to PUSH_MAX_RETRY_DELAY_MS.
 * - Pruning: an endpoint the push service reports gone is deleted — only if it is still the
 *   registered one (the device may have re-registered meanwhile).
 * - Bounded: PUSH_MAX_CONCURRENT sends at once, PUSH_MAX_QUEUED waiting; beyond that a wake is
 *   dropped and counted as failed.
 *
 * Nothing here logs or labels a mailbox id, token or endpoint.
 */
import { setMaxListeners } from 'node:events';
import { hexKey } from '../hex.js';
import type { NodeStore } from '../store/node-store.js';
import { PUSH_MAX_ATTEMPTS, PUSH_MAX_CONCURRENT, PUSH_MAX_QUEUED, PUSH_MAX_RETRY_DELAY_MS, PUSH_RETRY_BASE_MS } from './constants.js';
import type { PushOutcome, PushSender } from './outcome.js';
import type { PushKind, PushTarget } from '../store/push-types.js';

export interface PushEvents {
  /** A push service accepted a wake. */
  sent?(kind: PushKind): void;
  /** A wake was given up (refused, retries exhausted, queue full). */
  failed?(kind: PushKind, reason: string): void;
  /** A dead endpoint was deleted. */
  pruned?(kind: PushKind): void;
}

/** Default retry delay: PUSH_RETRY_BASE_MS · 2^(attempt−1) · U[0.5, 1.5), or the service's Retry-After; capped. */
export function defaultRetryDelayMs(attempt: number, retryAfterMs: number | undefined): number {
  const backoff = PUSH_RETRY_BASE_MS * 2 ** (attempt - 1) * (0.5 + Math.random());
  return Math.min(PUSH_MAX_RETRY_DELAY_MS, Math.max(backoff, retryAfterMs ?? 0));
}

export interface PushWakerOptions {
  readonly store: Pick<NodeStore, 'pushTarget' | 'deletePushTargetIf'>;
  readonly senders: Partial<Record<PushKind, PushSender>>;
  readonly coalesceMs: number;
  readonly now: () => number;
  readonly events?: PushEvents;
  /** Delay before retry number `attempt` (1-based count of failed attempts). Tests shorten it. */
  readonly retryDelayMs?: (attempt: number, retryAfterMs: number | undefined) => number;
  /**
   * A cluster's claim (DeliveryBus.claimWake): false when another instance already rang this
   * mailbox in the current window. Asked after the local coalescing said yes.
   */
  readonly claim?: (mailboxKey: string) => Promise<boolean>;
}

interface Job {
  readonly mailbox: Uint8Array;
  readonly key: string;
  readonly target: PushTarget;
  readonly sender: PushSender;
  attempt: number;
}

export class PushWaker {
  readonly #o: PushWakerOptions;
  /** mailbox hex → end of its coalescing window; insertion order is time order (re-set on refresh). */
  readonly #quietUntil = new Map<string, number>();
  /** Mailboxes with a wake queued, being sent, or waiting for a retry. */
  readonly #busy = new Set<string>();
  readonly #queue: Job[] = [];
  readonly #retryTimers = new Set<NodeJS.Timeout>();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #abort = new AbortController();
  #active = 0;
  #closed = false;

  constructor(options: PushWakerOptions) {
    this.#o = options;
    // Every send in flight listens for shutdown on this one signal.
    setMaxListeners(PUSH_MAX_CONCURRENT + 8, this.#abort.signal);
  }

  /** Wakes queued, in flight or awaiting a retry (for tests and /metrics). */
  get pending(): number {
    return this.#busy.size;
  }

  /**
   * Durable mail was committed for `mailbox` and it has no live connection. Never throws: a push
   * problem must not fail a send that has already committed.
   */
  notify(mailbox: Uint8Array): void {
    if (this.#closed) return;
    try {
      const key = hexKey(mailbox);
      const now = this.#o.now();
      this.#forgetExpired(now);
      if (this.#busy.has(key) || (this.#quietUntil.get(key) ?? -Infinity) > now) return;
      this.#busy.add(key);
      this.#o.store.pushTarget(mailbox).then(
        async (target) => {
          const sender = target && this.#o.senders[target.kind];
          // No endpoint, or registered while the service was configured and not any more.
          if (!target || !sender || this.#closed) return this.#busy.delete(key);
          this.#quietUntil.delete(key);
          this.#quietUntil.set(key, now + this.#o.coalesceMs);
          // Another instance of the cluster rang it in this window: the burst is covered.
          if (this.#o.claim && !(await this.#o.claim(key).catch(() => true))) return this.#busy.delete(key);
          if (this.#closed) return this.#busy.delete(key);
          if (this.#queue.length >= PUSH_MAX_QUEUED) {
            this.#busy.delete(key);
            this.#o.events?.failed?.(target.kind, 'queue_full');
            return;
          }
          this.#queue.push({ mailbox, key, target, sender, attempt: 0 });
          this.#pump();
        },
        () => this.#busy.delete(key), // the store may be closing; a lost wake only delays delivery
      );
    } catch {
      // The database may be closing; a lost wake only delays delivery to the next connection.
    }
  }

  #forgetExpired(now: number): void {
    for (const [k, until] of this.#quietUntil) {
      if (until > now) break;
      this.#quietUntil.delete(k);
    }
  }

  #pump(): void {
    while (!this.#closed && this.#active < PUSH_MAX_CONCURRENT && this.#queue.length > 0) {
      const job = this.#queue.shift()!;
      this.#active++;
      const p = this.#attempt(job).finally(() => {
        this.#active--;
        this.#inFlight.delete(p);
        this.#pump();
      });
      this.#inFlight.add(p);
    }
  }

  async #attempt(job: Job): Promise<void> {
    job.attempt++;
    let outcome: PushOutcome;
    try {
      outcome = await job.sender.send(job.target, this.#abort.signal);
    } catch {
      outcome = { result: 'retry', reason: 'exception' };
    }
    const { kind } = job.target;
    switch (outcome.result) {
      case 'sent':
        this.#o.events?.sent?.(kind);
        return this.#finish(job);
      case 'gone':
        this.#prune(job);
        return this.#finish(job);
      case 'failed':
        this.#o.events?.failed?.(kind, outcome.reason);
        return this.#finish(job);
      case 'retry': {
        if (this.#closed || job.attempt >= PUSH_MAX_ATTEMPTS) {
          this.#o.events?.failed?.(kind, this.#closed ? 'shutdown' : `retries_exhausted ${outcome.reason}`);
          return this.#finish(job);
        }
        const delay = (this.#o.retryDelayMs ?? defaultRetryDelayMs)(job.attempt, outcome.retryAfterMs);
        const timer = setTimeout(() => {
          this.#retryTimers.delete(timer);
          this.#queue.unshift(job);
          this.#pump();
        }, delay);
        timer.unref();
        this.#retryTimers.add(timer);
        return;
      }
    }
  }

  #prune(job: Job): void {
    this.#o.store.deletePushTargetIf(job.mailbox, job.target).then(
      (removed) => {
        if (removed) this.#o.events?.pruned?.(job.target.kind);
      },
      () => undefined, // store closed during shutdown: the endpoint is pruned at its next failed wake
    );
  }

  #finish(job: Job): void {
    this.#busy.delete(job.key);
  }

  /** Stops: no new wakes, pending retries dropped, requests in flight aborted and awaited. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#retryTimers) clearTimeout(t);
    this.#retryTimers.clear();
    this.#queue.length = 0;
    this.#abort.abort();
    await Promise.allSettled([...this.#inFlight]);
    this.#busy.clear();
    for (const s of Object.values(this.#o.senders)) s?.close();
  }
}

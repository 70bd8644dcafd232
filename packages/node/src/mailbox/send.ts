/**
 * Accepting anonymous sends (docs/spec/node-protocol.md §Sending). Shared by POST /v1/send and
 * the anonymous WebSocket. The node learns the recipient mailbox, the size, the time and the
 * client address (for rate limiting, in memory only) — never who sends.
 *
 * Admission lanes: a send that presents one of the recipient's delivery tokens (the node stores
 * only SHA-256 of each) goes through the generous token lane; a send without a token goes
 * through the small, strictly limited first-contact lane — per client address AND per recipient
 * — and can never displace stored mail (store/mailbox.ts).
 *
 * Durability (group commit): durable envelopes accepted in the same event-loop turn are written
 * in one transaction — one fsync with synchronous=FULL — and no sender is answered before that
 * transaction has committed, unless its recipient's device acknowledged the envelope (delivered
 * ahead) before its group commit started: then it is answered at that ack and never written
 * (retractAcked). Such a send waits up to aheadHoldMs for that ack before a group takes it
 * (SendOptions; #flush keeps each mailbox's envelopes in admission order).
 */
import { hash, randomFillSync } from 'node:crypto';
import type { CryptoContext } from '@meshwhisper/crypto';
import { hexKey } from '../hex.js';
import type { FastEnvelope, SendRequest, SendResult } from '@meshwhisper/protocol';
import { EnvelopeClass, EnvelopeSchema, ErrorCode, MESSAGE_ID_LENGTH, ProtocolError, create, sendRequestProblem } from '@meshwhisper/protocol';
import type { RateLimiter } from '../rate-limit.js';
import type { EnqueueOutcome, MailboxLimits, NodeStore, StoredEnvelope } from '../store/node-store.js';
import type { DeliveryBus } from './bus.js';
import { LocalDeliveryBus } from './bus.js';
import type { AheadDelivery } from './hub.js';
import { AHEAD_NO_SESSION, AHEAD_SENT } from './hub.js';
import { IpcDeliveryBus } from '../workers/ipc-bus.js';
import { trace } from '../latency-trace.js';

export interface SendEvents {
  accepted?(cls: 'durable' | 'ephemeral', lane: 'token' | 'first_contact', seconds?: number): void;
  rejected?(reason: 'quota' | 'bad_token' | 'rate_limited' | 'unknown_mailbox' | 'busy' | 'other'): void;
  /** The backlog of durable sends waiting for their commit reached SEND_BACKLOG_HIGH: sending connections pause their reads. */
  congested?(): void;
  evicted?(n: number): void;
  /** A group commit failed as a whole (disk full, I/O error): every sender in it got UNAVAILABLE. */
  storageFailed?(error: unknown): void;
  /** Durable mail was committed for a mailbox with no live connection (push wake); never for ephemeral sends. */
  storedOffline?(mailbox: Uint8Array): void;
  /** A durable envelope delivered ahead was acknowledged by its recipient before its group commit started: answered, never written (retractAcked). */
  unstored?(): void;
}

/**
 * Durable envelopes per group commit: bounds one transaction's lock time and memory. At saturation
 * every group is full, and fewer, larger groups cost less per envelope (one commit's fsync and
 * per-mailbox counter writes shared by more envelopes): bench/node at 2,000 in flight delivered
 * 21,400–21,700 msgs/s with 2,048 against 13,900–18,900 with 512, at 55–56 vs 69–78 µs of node CPU
 * per message (docs/benchmarks.md). At lower rates groups are far smaller than either bound.
 */
export const MAX_GROUP_COMMIT = 2048;
/** Payload bytes per group commit (at least one envelope): bounds the writer hand-off and the transaction for large envelopes. */
export const MAX_GROUP_BYTES = 8 * 1024 * 1024;
/**
 * Group commits running at once. While they run, new sends wait in the queue and go together in
 * the next group: on PostgreSQL every commit is a network round trip plus an fsync, and starting
 * one per event-loop turn gave groups of ~2.5 envelopes. Two overlap one commit with the
 * preparation (and the wake-ups) of the next. The SQLite writer thread groups what waits for it anyway.
 */
export const MAX_COMMITS_IN_FLIGHT = 2;
/**
 * A durable group this large or larger means sends from several clients are arriving faster than
 * commits finish: the next group then waits until COMMIT_INTERVAL_MS after this one started
 * (SendService options). Below it — one client sending and waiting for each answer, a light load —
 * nothing waits.
 */
export const COMMIT_INTERVAL_MIN_GROUP = 8;

/**
 * Backpressure: durable sends accepted and not yet answered (queued or in a commit) — the node's
 * backlog in front of the disk. Delivery ahead of the commit lets a node take sends faster than
 * its disk commits them (a slow or stalled disk, an overload); without a bound that backlog, and
 * the memory it holds, would grow for as long as the overload lasts. At SEND_BACKLOG_HIGH
 * envelopes or SEND_BACKLOG_HIGH_BYTES of payload the service is `congested`: anonymous
 * WebSockets stop reading (TCP pushes back on their senders) until the backlog is down to half.
 * Sends that still arrive — frames already read, HTTP sends — are accepted up to
 * SEND_BACKLOG_MAX / SEND_BACKLOG_MAX_BYTES and refused beyond with UNAVAILABLE (retry), never
 * dropped unanswered.
 */
export const SEND_BACKLOG_HIGH = 4 * MAX_GROUP_COMMIT;
export const SEND_BACKLOG_HIGH_BYTES = 4 * MAX_GROUP_BYTES;
export const SEND_BACKLOG_MAX = 4 * SEND_BACKLOG_HIGH;
export const SEND_BACKLOG_MAX_BYTES = 4 * SEND_BACKLOG_HIGH_BYTES;
/** How long a sender refused for a full backlog is asked to wait (retryAfterMs). */
export const SEND_BACKLOG_RETRY_MS = 200;

export interface SendOptions {
  /**
   * Under load (the previous group held COMMIT_INTERVAL_MIN_GROUP or more), a group commit starts
   * no sooner than this many ms after the previous one started, unless a full group is waiting:
   * more envelopes per transaction, fsync and writer hand-off, so less CPU per message (config
   * COMMIT_INTERVAL_MS; docs/architecture.md, "Commit interval"). 0: a group starts as soon as a commit
   * slot is free.
   */
  readonly commitIntervalMs?: number;
  /**
   * A durable send that went ahead to its recipient's live connection (and is not part of a batch
   * request) waits up to this many ms in the queue for that device's acknowledgement before it
   * joins a group commit: acknowledged in time, it is answered then and never written
   * (retractAcked); otherwise it is written as any other send, at most this much later. Sends that
   * did not go ahead are not held, and one of them pulls every held send to the same mailbox into
   * its group, in front of it (config AHEAD_HOLD_MS; docs/architecture.md). 0: nothing is held.
   */
  readonly aheadHoldMs?: number;
}

/** SHA-256 of a delivery token: what the node stores and compares. */
export function deliveryTokenHash(_ctx: CryptoContext, token: Uint8Array): Uint8Array {
  // node:crypto (OpenSSL), not the portable backend: this runs once per send on the hot path. The
  // one-shot hash() makes no Hash object (measured 0.7 vs 1.0–1.35 µs per call).
  return hash('sha256', token, 'buffer');
}

/** A token hash as one flat latin1 string (the set key of AheadDelivery; a 32-byte hash without a Buffer object). */
function tokenKey32(h: Uint8Array): string {
  if (h.length !== 32) return Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString('latin1');
  return String.fromCharCode(h[0]!, h[1]!, h[2]!, h[3]!, h[4]!, h[5]!, h[6]!, h[7]!, h[8]!, h[9]!, h[10]!, h[11]!, h[12]!, h[13]!, h[14]!, h[15]!, h[16]!, h[17]!, h[18]!, h[19]!, h[20]!, h[21]!, h[22]!, h[23]!, h[24]!, h[25]!, h[26]!, h[27]!, h[28]!, h[29]!, h[30]!, h[31]!);
}

/**
 * Envelope ids (MESSAGE_ID_LENGTH random bytes) cut from a 4 KiB block of CSPRNG output: one
 * randomFillSync per 256 ids instead of one per send. A block is never refilled (ids handed out
 * stay views of it), a new one is drawn when it is used up.
 */
class IdSource {
  #block = new Uint8Array(0);
  #at = 0;
  next(): Uint8Array {
    if (this.#at + MESSAGE_ID_LENGTH > this.#block.length) {
      this.#block = randomFillSync(new Uint8Array(256 * MESSAGE_ID_LENGTH));
      this.#at = 0;
    }
    return this.#block.subarray(this.#at, (this.#at += MESSAGE_ID_LENGTH));
  }
}

/**
 * Where a send's answer goes. The anonymous WebSocket (one send per frame) is its own sink: no
 * promise, closure or SendResult object per message; `tag` is its request id.
 */
export interface SendSink {
  /** Accepted: a durable envelope committed (fsynced), or an ephemeral one handed over or dropped. */
  sent(tag: number, id: Uint8Array, deliveredLive: boolean): void;
  /** Refused: a ProtocolError (or an unexpected error). */
  refused(tag: number, error: unknown): void;
}

/** The sink of a promise-returning send (HTTP and batch sends). */
class PromiseSink implements SendSink {
  constructor(
    private readonly resolve: (r: SendResult) => void,
    private readonly reject: (e: unknown) => void,
  ) {}
  sent(_tag: number, id: Uint8Array, deliveredLive: boolean): void {
    // The message object create(SendResultSchema, …) would build, without its generic machinery.
    this.resolve({ $typeName: 'meshwhisper.v1.SendResult', id, deliveredLive });
  }
  refused(_tag: number, error: unknown): void {
    this.reject(error);
  }
}

interface Pending {
  readonly id: Uint8Array;
  readonly mailbox: Uint8Array;
  readonly mailboxKey: string;
  readonly payload: Uint8Array;
  readonly receivedAt: number;
  readonly tokenHash: Uint8Array | undefined;
  readonly lane: 'token' | 'first_contact';
  readonly started: number;
  /** The batch request this envelope came in (it commits with the rest of it), if any. */
  readonly unit: object | undefined;
  /** The token hash as AheadDelivery names it (token lane only). */
  readonly tokenKey: string | undefined;
  /** What AheadDelivery.ahead answered: AHEAD_SENT, AHEAD_NO_SESSION or the connection's token epoch. */
  ahead: number;
  /** QUEUED, TAKEN or RETRACTED. */
  state: number;
  readonly sink: SendSink;
  readonly tag: number;
}

/** Pending.state: waiting in the queue for a group commit. */
const QUEUED = 0;
/** Pending.state: taken into a group commit. */
const TAKEN = 1;
/** Pending.state: acknowledged by its recipient while queued (retractAcked): answered, left out of every group. */
const RETRACTED = 2;

/** One item's answer in a batch: the SendResult, or the typed refusal (a ProtocolError). */
export type BatchOutcome = { readonly ok: true; readonly result: SendResult } | { readonly ok: false; readonly error: unknown };

type Admitted = { mailboxKey: string; tokenHash: Uint8Array | undefined; lane: 'token' | 'first_contact' };

export class SendService {
  #closed = false;
  #queue: Pending[] = [];
  /** Payload bytes in #queue (RETRACTED entries not counted). */
  #queuedBytes = 0;
  /** RETRACTED entries still in #queue (#flush leaves them out). */
  #retractedQueued = 0;
  /**
   * Entries the last group cut held back (aheadHoldMs), still in #queue: not counted towards a
   * full group. An estimate between cuts (a hold may end, or its send be retracted, meanwhile).
   */
  #heldQueued = 0;
  #heldQueuedBytes = 0;
  #scheduled = false;
  #inFlight = 0;
  /** Group commits whose store.enqueue has not returned yet (at most MAX_COMMITS_IN_FLIGHT). */
  #committing = 0;
  /** When the last group went to the store, and how many sends it held (COMMIT_INTERVAL_MS). */
  #lastGroupAt = -Infinity;
  #lastGroupSize = 0;
  /** The COMMIT_INTERVAL_MS wait of the next group, while one is pending. */
  #intervalTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #onInterval = (): void => {
    this.#intervalTimer = undefined;
    void this.#flush();
  };
  readonly #commitIntervalMs: number;
  readonly #aheadHoldMs: number;
  /** The flush due when the oldest held send's hold ends (aheadHoldMs). */
  #holdTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #onHoldEnd = (): void => {
    this.#holdTimer = undefined;
    void this.#flush();
  };
  #idle: (() => void)[] = [];
  readonly #ids = new IdSource();
  /** Durable sends accepted and not yet answered (queued or committing), and their payload bytes. */
  #backlog = 0;
  #backlogBytes = 0;
  #congested = false;
  /** Called once the backlog is down to half its high mark (whenRelieved). */
  #relief: (() => void)[] = [];
  /** Called as a durable group goes to the store, just before it (node.ts: queued acks go first, AckCommitter.carry). */
  beforeCommit: (() => void) | undefined;

  constructor(
    private readonly ctx: CryptoContext,
    private readonly store: NodeStore,
    private readonly bus: DeliveryBus,
    private readonly limiter: RateLimiter,
    private readonly limits: MailboxLimits,
    private readonly events: SendEvents = {},
    /** Live connections of this process that may take a durable envelope before its commit (mailbox/hub.ts). */
    private readonly aheadTo?: AheadDelivery,
    options: SendOptions = {},
  ) {
    this.#commitIntervalMs = options.commitIntervalMs ?? 0;
    this.#aheadHoldMs = options.aheadHoldMs ?? 0;
  }

  /** Durable sends accepted and not yet answered: queued for, or in, a group commit. */
  get backlog(): number {
    return this.#backlog;
  }

  /**
   * The backlog reached its high mark (SEND_BACKLOG_HIGH envelopes or SEND_BACKLOG_HIGH_BYTES):
   * a connection that can stop reading should, until whenRelieved() calls it back.
   */
  get congested(): boolean {
    return this.#congested;
  }

  /** `fn` runs once the service is not congested (at once, on a later turn, if it is not now). */
  whenRelieved(fn: () => void): void {
    if (this.#congested) this.#relief.push(fn);
    else queueMicrotask(fn);
  }

  /** After this, every new send fails with UNAVAILABLE; resolves when queued sends have committed. */
  async close(): Promise<void> {
    this.#closed = true;
    // Sends held for the commit interval go now (#flush does not hold them once closed).
    if (this.#intervalTimer !== undefined) {
      clearTimeout(this.#intervalTimer);
      this.#onInterval();
    }
    // So do held sends (#flush holds nothing once closed).
    if (this.#holdTimer !== undefined) {
      clearTimeout(this.#holdTimer);
      this.#onHoldEnd();
    }
    if (this.#queue.length === 0 && this.#inFlight === 0) return;
    await new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  /**
   * Validated request in, result out — or a ProtocolError. A durable envelope's result is
   * returned only after the transaction holding it has committed (fsynced).
   */
  send(req: SendRequest, clientKey: string): Promise<SendResult> {
    return new Promise<SendResult>((resolve, reject) => this.sendTo(req, clientKey, new PromiseSink(resolve, reject), 0));
  }

  /**
   * `send` for a caller that is its own SendSink (the anonymous WebSocket): the answer goes to
   * `sink` with `tag` — a refusal found without I/O (rate limit, shutdown) before this returns.
   */
  sendTo(req: SendRequest, clientKey: string, sink: SendSink, tag: number): void {
    let admitted: Admitted;
    try {
      admitted = this.#admitNow(req, clientKey);
    } catch (e) {
      sink.refused(tag, e);
      return;
    }
    if (req.class === EnvelopeClass.EPHEMERAL) {
      this.#ephemeral(req, admitted).then(
        (live) => sink.sent(tag, new Uint8Array(0), live), // ephemeral envelopes are not stored: no id
        (e: unknown) => sink.refused(tag, e),
      );
      return;
    }
    this.#enqueue(req, admitted, undefined, sink, tag);
    this.#kick();
  }

  /**
   * Several sends in one request (POST /v1/send/batch), each admitted, rate-limited and answered on
   * its own — the same checks and codes as `send`, in the request's order. Items refused before the
   * store (malformed, rate limited, not durable) never reach it; every admitted item joins the SAME
   * group commit (one transaction, one fsync; a group is never cut between two of its items), and
   * nothing is answered before it committed. A storage failure answers every admitted item
   * UNAVAILABLE: none of them was written.
   */
  async sendBatch(reqs: readonly SendRequest[], clientKey: string): Promise<BatchOutcome[]> {
    const out: (BatchOutcome | Promise<BatchOutcome>)[] = [];
    const unit = {};
    let queued = 0;
    for (const req of reqs) {
      const problem = sendRequestProblem(req) ?? (req.class === EnvelopeClass.DURABLE ? undefined : 'class must be DURABLE in a batch');
      if (problem !== undefined) {
        out.push({ ok: false, error: new ProtocolError(ErrorCode.BAD_REQUEST, `SendRequest: ${problem}`) });
        continue;
      }
      try {
        const admitted = this.#admitNow(req, clientKey);
        out.push(
          new Promise<SendResult>((resolve, reject) => this.#enqueue(req, admitted, unit, new PromiseSink(resolve, reject), 0)).then(
            (result) => ({ ok: true as const, result }),
            (error: unknown) => ({ ok: false as const, error }),
          ),
        );
        queued++;
      } catch (error) {
        out.push({ ok: false, error });
      }
    }
    if (queued > 0) this.#kick();
    return Promise.all(out);
  }

  /** The checks that cost no I/O (shutting down, rate limits); throws the refusal. */
  #admitNow(req: SendRequest, clientKey: string): Admitted {
    if (this.#closed) throw new ProtocolError(ErrorCode.UNAVAILABLE, 'node is shutting down', 1000);
    if (this.#backlog >= SEND_BACKLOG_MAX || this.#backlogBytes >= SEND_BACKLOG_MAX_BYTES) {
      this.events.rejected?.('busy');
      throw new ProtocolError(ErrorCode.UNAVAILABLE, 'node is busy: too many sends are waiting for the disk; retry', SEND_BACKLOG_RETRY_MS);
    }
    const mailboxKey = hexKey(req.mailboxId);
    const withToken = req.deliveryToken.length > 0;
    // Rate limits first: they cost no I/O. The recipient and token are checked by the store, in
    // the group-commit transaction (no per-message lookup before it).
    const decision = withToken
      ? this.limiter.take('send-token', clientKey)
      : this.limiter.takeAll([
          { bucket: 'send-first-contact', key: clientKey },
          { bucket: 'send-first-contact-target', key: mailboxKey },
        ]);
    if (!decision.allowed) {
      this.events.rejected?.('rate_limited');
      throw new ProtocolError(ErrorCode.RATE_LIMITED, `rate limit exceeded (${decision.bucket})`, decision.retryAfterMs);
    }
    const tokenHash = withToken ? deliveryTokenHash(this.ctx, req.deliveryToken) : undefined;
    return { mailboxKey, tokenHash, lane: withToken ? 'token' : 'first_contact' };
  }

  /** An ephemeral envelope: checked against the recipient, handed to a live connection or dropped; never stored. */
  async #ephemeral(req: SendRequest, admitted: Admitted): Promise<boolean> {
    const r = await this.store.checkRecipient(req.mailboxId, admitted.tokenHash);
    if (r !== 'ok') throw this.#refusal(r);
    const delivered = await this.bus.publishSignal(admitted.mailboxKey, create(EnvelopeSchema, { payload: req.payload, receivedAt: BigInt(this.ctx.now()), class: EnvelopeClass.EPHEMERAL }));
    this.events.accepted?.('ephemeral', admitted.lane);
    return delivered;
  }

  /** Queues a durable envelope for the next group commit (`unit`: the batch it must not be split from). */
  #enqueue(req: SendRequest, admitted: Admitted, unit: object | undefined, sink: SendSink, tag: number): void {
    this.#queuedBytes += req.payload.length;
    this.#backlog++;
    this.#backlogBytes += req.payload.length;
    if (!this.#congested && (this.#backlog >= SEND_BACKLOG_HIGH || this.#backlogBytes >= SEND_BACKLOG_HIGH_BYTES)) {
      this.#congested = true;
      this.events.congested?.();
    }
    const tokenHash = admitted.tokenHash;
    const tokenKey = tokenHash && this.aheadTo ? tokenKey32(tokenHash) : undefined;
    const p: Pending = {
      id: this.#ids.next(),
      mailbox: req.mailboxId,
      mailboxKey: admitted.mailboxKey,
      payload: req.payload,
      receivedAt: this.ctx.now(),
      tokenHash,
      lane: admitted.lane,
      started: performance.now(),
      unit,
      tokenKey,
      ahead: AHEAD_NO_SESSION,
      state: QUEUED,
      sink,
      tag,
    };
    // The recipient's live connection may take it now, before the commit (hub.ts AheadDelivery;
    // it holds `p` as the envelope: id, payload, receivedAt).
    if (tokenKey !== undefined) p.ahead = this.aheadTo!.ahead(admitted.mailboxKey, p, tokenKey);
    if (trace) trace.stage(p.ahead === AHEAD_SENT ? 'send.aheadSent' : p.ahead === AHEAD_NO_SESSION ? 'send.aheadNoSession' : 'send.aheadNotTaken', 0);
    this.#queue.push(p);
  }

  /**
   * The recipient's live connection took `envelope` ahead of its commit (AheadDelivery.ahead) and
   * the device has now acknowledged it with an ack that needs no answer. If the envelope is still
   * waiting for its group commit, it is never written: its sender is answered now (delivered live)
   * and the envelope leaves the queue. The node keeps an envelope only until its device
   * acknowledges it, so writing it and deleting it again in the next transaction would keep
   * nothing: what the sender's answer promises — the envelope is not lost — holds because the
   * device has it. False (the caller applies the ack after the commit, as before) when the
   * envelope is already in a commit, or came in a batch request (answered with its batch's commit).
   */
  retractAcked(envelope: FastEnvelope): boolean {
    // Every envelope offered ahead is a Pending of this service; anything else has no state and is refused.
    const p = envelope as Pending;
    if (p.state !== QUEUED || p.unit !== undefined) return false;
    p.state = RETRACTED;
    this.#retractedQueued++;
    const size = p.payload.length;
    this.#queuedBytes -= size;
    this.#backlog--;
    this.#backlogBytes -= size;
    const seconds = (performance.now() - p.started) / 1000;
    if (trace) trace.stage('send.ackedBeforeCommit', seconds * 1000);
    this.events.unstored?.();
    this.events.accepted?.('durable', p.lane, seconds);
    p.sink.sent(p.tag, p.id, true);
    this.#relieve();
    return true;
  }

  /** Starts a group commit now when the queue holds a full group, else on the next turn. */
  #kick(): void {
    if (this.#fullGroupWaiting()) void this.#flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => void this.#flush());
    }
  }

  /** The queue holds a full group (by count or bytes) besides retracted and held entries. */
  #fullGroupWaiting(): boolean {
    return this.#queue.length - this.#retractedQueued - this.#heldQueued >= MAX_GROUP_COMMIT || this.#queuedBytes - this.#heldQueuedBytes >= MAX_GROUP_BYTES;
  }

  #refusal(reason: Exclude<EnqueueOutcome, { ok: true }>['reason']): ProtocolError {
    switch (reason) {
      case 'unknown-mailbox':
        this.events.rejected?.('unknown_mailbox');
        return new ProtocolError(ErrorCode.NOT_FOUND, 'no such mailbox on this node');
      case 'bad-token':
        this.events.rejected?.('bad_token');
        return new ProtocolError(ErrorCode.FORBIDDEN, 'delivery token is not valid for this mailbox (send without it as first contact)');
      case 'lane-full':
        this.events.rejected?.('quota');
        return new ProtocolError(ErrorCode.QUOTA_EXCEEDED, 'the first-contact lane of this mailbox is full');
      case 'mailbox-full':
        this.events.rejected?.('quota');
        return new ProtocolError(ErrorCode.QUOTA_EXCEEDED, 'mailbox is full');
    }
  }

  async #flush(): Promise<void> {
    this.#scheduled = false;
    // Enough commits are running: the first to finish starts the next group (#committed).
    if (this.#committing >= MAX_COMMITS_IN_FLIGHT) return;
    if (this.#lastGroupSize >= COMMIT_INTERVAL_MIN_GROUP && !this.#fullGroupWaiting() && !this.#closed) {
      // Under load: this group waits for the rest of the interval (a full group does not).
      const wait = this.#lastGroupAt + this.#commitIntervalMs - performance.now();
      if (wait >= 0.5) {
        this.#scheduled = true; // #kick leaves it to the timer
        this.#intervalTimer ??= setTimeout(this.#onInterval, wait);
        return;
      }
    }
    if (this.#intervalTimer !== undefined) {
      // A full group went early: the pending wait is for a later group's own interval.
      clearTimeout(this.#intervalTimer);
      this.#intervalTimer = undefined;
    }
    const hold = this.#closed ? 0 : this.#aheadHoldMs;
    const now = hold > 0 ? performance.now() : 0;
    const q = this.#queue;
    const batch: Pending[] = [];
    let bytes = 0;
    let retracted = 0;
    /**
     * Sends held back by this scan (aheadHoldMs), by mailbox, until a later send to the same
     * mailbox that is not held takes them into the group in front of it: the store numbers a
     * mailbox's envelopes in the order they reach it, and that must stay their admission order.
     */
    let held: Map<string, Pending[]> | undefined;
    let heldCount = 0;
    let i = 0;
    while (i < q.length && batch.length < MAX_GROUP_COMMIT) {
      const p = q[i]!;
      if (p.state === RETRACTED) {
        retracted++;
        i++;
        continue;
      }
      if (hold > 0 && p.ahead === AHEAD_SENT && p.unit === undefined && now - p.started < hold) {
        const list = (held ??= new Map<string, Pending[]>()).get(p.mailboxKey);
        if (list) list.push(p);
        else held.set(p.mailboxKey, [p]);
        heldCount++;
        i++;
        continue;
      }
      // A batch request is taken whole or not at all: never split between two groups (it is
      // bounded far below both group bounds; the first in a group is taken even over them).
      let j = i + 1;
      if (p.unit !== undefined) while (j < q.length && q[j]!.unit === p.unit) j++;
      let size = 0;
      for (let k = i; k < j; k++) {
        const x = q[k]!;
        size += x.payload.length;
        const before = held?.get(x.mailboxKey);
        if (before) for (const h of before) size += h.payload.length;
      }
      if (batch.length > 0 && (bytes + size > MAX_GROUP_BYTES || (j - i > 1 && batch.length + (j - i) > MAX_GROUP_COMMIT))) break;
      for (let k = i; k < j; k++) {
        const x = q[k]!;
        const before = held?.get(x.mailboxKey);
        if (before) {
          held!.delete(x.mailboxKey);
          heldCount -= before.length;
          for (const h of before) {
            h.state = TAKEN;
            batch.push(h);
          }
        }
        x.state = TAKEN;
        batch.push(x);
      }
      bytes += size;
      i = j;
    }
    this.#queuedBytes -= bytes;
    this.#retractedQueued -= retracted; // answered by their recipients' acks (retractAcked): not written
    this.#heldQueued = heldCount;
    this.#heldQueuedBytes = 0;
    if (heldCount === 0) q.splice(0, i);
    else {
      // The held sends stay in front of the rest, in their order.
      const rest: Pending[] = [];
      for (let k = 0; k < i; k++) {
        const p = q[k]!;
        if (p.state !== QUEUED) continue;
        rest.push(p);
        this.#heldQueuedBytes += p.payload.length;
      }
      // The oldest held send's hold ends first (the queue is in admission order); a flush then takes it.
      this.#holdTimer ??= setTimeout(this.#onHoldEnd, Math.max(1, rest[0]!.started + hold - now));
      for (let k = i; k < q.length; k++) rest.push(q[k]!);
      this.#queue = rest;
      if (trace) trace.stage('send.heldAtCut', heldCount);
    }
    if (batch.length === 0) {
      // Nothing to commit: the queue holds only held sends (their timer is set) or nothing.
      return this.#checkIdle();
    }
    this.#lastGroupAt = performance.now();
    this.#lastGroupSize = batch.length;
    const tFlush = trace ? performance.now() : 0;
    if (trace) {
      for (const p of batch) trace.stage('send.queued', tFlush - p.started);
      trace.stage('send.groupSize', batch.length);
      trace.stage('send.commitsRunning', this.#committing);
    }
    this.#scheduleMore();
    this.#inFlight++;
    this.#committing++;
    try {
      await this.#commit(batch, tFlush);
    } finally {
      this.#backlog -= batch.length;
      this.#backlogBytes -= bytes;
      this.#inFlight--;
      this.#relieve();
      this.#checkIdle();
    }
  }

  /** Ends congestion once the backlog is down to half its high marks, and calls whoever waits for that. */
  #relieve(): void {
    if (!this.#congested || this.#backlog > SEND_BACKLOG_HIGH / 2 || this.#backlogBytes > SEND_BACKLOG_HIGH_BYTES / 2) return;
    this.#congested = false;
    for (const f of this.#relief.splice(0)) f();
  }

  /** One group's commit, and every answer of it (#flush accounts for it). */
  async #commit(batch: Pending[], tFlush: number): Promise<void> {
    let results: EnqueueOutcome[];
    try {
      this.beforeCommit?.();
      results = await this.store.enqueue(batch, this.limits);
    } catch (e) {
      for (const p of batch) {
        if (p.ahead === AHEAD_SENT) this.aheadTo!.aheadDropped(p.mailboxKey, p.id);
        p.sink.refused(p.tag, new ProtocolError(ErrorCode.UNAVAILABLE, 'storage failed; retry', 1000));
      }
      this.events.storageFailed?.(e);
      return;
    } finally {
      this.#committing--;
      this.#scheduleMore();
    }
    const tDone = trace ? performance.now() : 0;
    if (trace) {
      trace.stage('send.writerRoundTrip', tDone - tFlush);
      for (const p of batch) trace.stage('send.admitToCommitted', tDone - p.started);
    }
    // One wake per mailbox, carrying the committed envelopes (no re-read by the connection).
    const woken = new Map<string, { mailbox: Uint8Array; envelopes: StoredEnvelope[]; live: boolean }>();
    for (let i = 0; i < batch.length; i++) {
      const r = results[i]!;
      if (!r.ok) continue;
      const p = batch[i]!;
      const w = woken.get(p.mailboxKey);
      if (w) w.envelopes.push(r.envelope);
      else woken.set(p.mailboxKey, { mailbox: p.mailbox, envelopes: [r.envelope], live: false });
    }
    const bus = this.bus;
    if (bus instanceof LocalDeliveryBus || bus instanceof IpcDeliveryBus) {
      // One process, or a worker of one (its bus answers "live?" from memory): the hub is called
      // directly (no promise and microtask per mailbox).
      for (const [k, w] of woken) {
        try {
          w.live = bus.mailNow(k, w.envelopes);
        } catch {
          w.live = false;
        }
        if (!w.live) this.events.storedOffline?.(w.mailbox);
      }
    } else {
      // In a cluster each wake is a NATS round trip: ask for every mailbox at once.
      await Promise.all(
        [...woken].map(async ([k, w]) => {
          w.live = await bus.publishMail(k, w.envelopes).catch(() => false);
          if (!w.live) this.events.storedOffline?.(w.mailbox);
        }),
      );
    }
    if (trace) trace.stage('send.wakeAll', performance.now() - tDone);
    for (let i = 0; i < batch.length; i++) {
      const r = results[i]!;
      const p = batch[i]!;
      if (!r.ok) {
        if (p.ahead === AHEAD_SENT) this.aheadTo!.aheadDropped(p.mailboxKey, p.id);
        p.sink.refused(p.tag, this.#refusal(r.reason));
        continue;
      }
      // A token this commit accepted: the connection may take that sender's next envelopes ahead.
      if (p.ahead >= 0) this.aheadTo!.tokenAccepted(p.mailboxKey, p.tokenKey!, p.ahead);
      if (r.evicted > 0) this.events.evicted?.(r.evicted);
      this.events.accepted?.('durable', p.lane, (performance.now() - p.started) / 1000);
      p.sink.sent(p.tag, p.id, p.ahead === AHEAD_SENT || (woken.get(p.mailboxKey)?.live ?? false));
    }
  }

  /** Another group commit on a later turn, if sends are waiting and none is scheduled. */
  #scheduleMore(): void {
    if (this.#queue.length > 0 && !this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => void this.#flush());
    }
  }

  #checkIdle(): void {
    if (this.#queue.length === 0 && this.#inFlight === 0) for (const f of this.#idle.splice(0)) f();
  }
}

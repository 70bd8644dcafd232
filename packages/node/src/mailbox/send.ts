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
 * transaction has committed.
 */
import type { CryptoContext } from '@meshwhisper/crypto';
import { toHex } from '@meshwhisper/crypto';
import type { SendRequest, SendResult } from '@meshwhisper/protocol';
import { EnvelopeClass, EnvelopeSchema, ErrorCode, MESSAGE_ID_LENGTH, ProtocolError, SendResultSchema, create } from '@meshwhisper/protocol';
import type { RateLimiter } from '../rate-limit.js';
import type { MailboxLimits } from '../store/mailbox.js';
import type { Store } from '../store/store.js';
import type { DeliveryHub } from './hub.js';

export interface SendEvents {
  accepted?(cls: 'durable' | 'ephemeral', lane: 'token' | 'first_contact', seconds?: number): void;
  rejected?(reason: 'quota' | 'bad_token' | 'rate_limited' | 'unknown_mailbox' | 'other'): void;
  evicted?(n: number): void;
  /** A group commit failed as a whole (disk full, I/O error): every sender in it got UNAVAILABLE. */
  storageFailed?(error: unknown): void;
  /** Durable mail was committed for a mailbox with no live connection (push wake); never for ephemeral sends. */
  storedOffline?(mailbox: Uint8Array): void;
}

/** Durable envelopes per group commit: bounds one transaction's lock time and memory. */
export const MAX_GROUP_COMMIT = 512;

/** SHA-256 of a delivery token: what the node stores and compares. */
export function deliveryTokenHash(ctx: CryptoContext, token: Uint8Array): Uint8Array {
  return ctx.backend.sha256(token);
}

interface Pending {
  readonly id: Uint8Array;
  readonly mailbox: Uint8Array;
  readonly mailboxKey: string;
  readonly payload: Uint8Array;
  readonly receivedAt: number;
  readonly withToken: boolean;
  readonly lane: 'token' | 'first_contact';
  readonly started: number;
  readonly resolve: (r: SendResult) => void;
  readonly reject: (e: unknown) => void;
}

export class SendService {
  #closed = false;
  #queue: Pending[] = [];
  #scheduled = false;
  #inFlight = 0;
  #idle: (() => void)[] = [];

  constructor(
    private readonly ctx: CryptoContext,
    private readonly store: Store,
    private readonly hub: DeliveryHub,
    private readonly limiter: RateLimiter,
    private readonly limits: MailboxLimits,
    private readonly events: SendEvents = {},
  ) {}

  /** After this, every new send fails with UNAVAILABLE; resolves when queued sends have committed. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#queue.length === 0 && this.#inFlight === 0) return;
    await new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  /**
   * Validated request in, result out — or a ProtocolError. A durable envelope's result is
   * returned only after the transaction holding it has committed (fsynced).
   */
  send(req: SendRequest, clientKey: string): Promise<SendResult> {
    try {
      return this.#admit(req, clientKey);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #admit(req: SendRequest, clientKey: string): Promise<SendResult> {
    if (this.#closed) throw new ProtocolError(ErrorCode.UNAVAILABLE, 'node is shutting down', 1000);
    const mailboxKey = toHex(req.mailboxId);
    if (!this.store.directory.device(req.mailboxId)) {
      this.events.rejected?.('unknown_mailbox');
      throw new ProtocolError(ErrorCode.NOT_FOUND, 'no such mailbox on this node');
    }
    const withToken = req.deliveryToken.length > 0;
    if (withToken && !this.store.mailbox.hasTokenHash(req.mailboxId, deliveryTokenHash(this.ctx, req.deliveryToken))) {
      this.events.rejected?.('bad_token');
      throw new ProtocolError(ErrorCode.FORBIDDEN, 'delivery token is not valid for this mailbox (send without it as first contact)');
    }
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
    const lane = withToken ? 'token' : 'first_contact';
    const now = this.ctx.now();
    if (req.class === EnvelopeClass.EPHEMERAL) {
      const delivered = this.hub.signal(mailboxKey, create(EnvelopeSchema, { payload: req.payload, receivedAt: BigInt(now), class: EnvelopeClass.EPHEMERAL }));
      this.events.accepted?.('ephemeral', lane);
      return Promise.resolve(create(SendResultSchema, { deliveredLive: delivered }));
    }
    return new Promise<SendResult>((resolve, reject) => {
      this.#queue.push({
        id: this.ctx.random(MESSAGE_ID_LENGTH),
        mailbox: req.mailboxId,
        mailboxKey,
        payload: req.payload,
        receivedAt: now,
        withToken,
        lane,
        started: performance.now(),
        resolve,
        reject,
      });
      if (this.#queue.length >= MAX_GROUP_COMMIT) this.#flush();
      else if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#scheduled = false;
    const batch = this.#queue.splice(0, MAX_GROUP_COMMIT);
    if (batch.length === 0) return this.#checkIdle();
    if (this.#queue.length > 0 && !this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#flush());
    }
    this.#inFlight++;
    try {
      let results: ReturnType<Store['transactEach']>;
      try {
        results = this.store.transactEach(batch, (tx, p) =>
          tx.mailbox.insert({ id: p.id, mailbox: p.mailbox, payload: p.payload, receivedAt: p.receivedAt, withToken: p.withToken }, this.limits),
        );
      } catch (e) {
        for (const p of batch) p.reject(new ProtocolError(ErrorCode.UNAVAILABLE, 'storage failed; retry', 1000));
        this.events.storageFailed?.(e);
        return;
      }
      const woken = new Map<string, Uint8Array>();
      results.forEach((r, i) => {
        const p = batch[i]!;
        if (!r.ok) {
          if (r.error instanceof ProtocolError && r.error.code === ErrorCode.QUOTA_EXCEEDED) this.events.rejected?.('quota');
          p.reject(r.error);
          return;
        }
        if ((r.value as number) > 0) this.events.evicted?.(r.value as number);
        this.events.accepted?.('durable', p.lane, (performance.now() - p.started) / 1000);
        p.resolve(create(SendResultSchema, { id: p.id, deliveredLive: this.hub.isLive(p.mailboxKey) }));
        woken.set(p.mailboxKey, p.mailbox);
      });
      for (const [k, mailbox] of woken) {
        if (this.hub.isLive(k)) this.hub.wake(k);
        else this.events.storedOffline?.(mailbox);
      }
    } finally {
      this.#inFlight--;
      this.#checkIdle();
    }
  }

  #checkIdle(): void {
    if (this.#queue.length === 0 && this.#inFlight === 0) for (const f of this.#idle.splice(0)) f();
  }
}

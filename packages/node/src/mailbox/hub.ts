/**
 * The live-delivery hub of one process: its authenticated device connections, at most one per
 * mailbox across the node. A newer login of the same device replaces the older connection, here
 * or in another process (through the DeliveryBus); only the holder of the device key can log
 * in, so nobody else can take a mailbox's live delivery over.
 */
import type { Envelope, FastEnvelope } from '@meshwhisper/protocol';
import type { StoredEnvelope } from '../store/node-store.js';
import type { BusSubscriber, DeliveryBus } from './bus.js';

export interface LiveSession {
  /** Hex mailbox id. */
  readonly mailboxKey: string;
  /** Unique per connection (for "logged in elsewhere"). */
  readonly sessionId: string;
  /** New durable mail was committed for this mailbox: deliver `envelopes` if they follow on, else pull. */
  wake(envelopes?: readonly StoredEnvelope[]): void;
  /** Hand over an ephemeral signal now or drop it; true if written to the connection. */
  signal(envelope: Envelope): boolean;
  /**
   * A durable envelope whose group commit has not finished: deliver it now if this connection
   * may take it ahead (AheadDelivery.ahead). AHEAD_SENT if it did, else its token epoch (≥ 0).
   */
  ahead(envelope: FastEnvelope, tokenKey: string): number;
  /** An envelope delivered ahead was refused by its commit (or the commit failed): it is not stored. */
  aheadDropped(id: Uint8Array): void;
  /** A commit accepted the delivery token `tokenKey` of a send admitted at token epoch `epoch`. */
  tokenAccepted(tokenKey: string, epoch: number): void;
  /** Gap counters may have changed (sweeper). */
  checkGap(): void;
  /** Replaced by a newer login, the device was deleted, or the node is shutting down. */
  close(code: number, reason: string): void;
}

/** `ahead()`: the envelope was written to the recipient's connection. */
export const AHEAD_SENT = -1;
/** `ahead()`: no live connection for the mailbox in this process. */
export const AHEAD_NO_SESSION = -2;

/**
 * Delivery ahead of the commit (docs/spec/node-protocol.md §Device connection): a durable
 * envelope for a device that is connected to this process, caught up and below its window goes to
 * it as soon as its send is admitted, while its group commit runs. The sender is answered after
 * the commit, and the device's ack of such an envelope waits for that commit — unless the ack
 * comes before the commit has started and needs no answer: then the envelope is never written and
 * its sender is answered at the ack (SendService.retractAcked; the connection holds `envelope`,
 * which is the send, for that). Either way nothing is acknowledged to a sender before it is on
 * disk or acknowledged by its device. Only token-lane sends whose delivery token a commit has
 * accepted for that mailbox since its last token change are delivered ahead, so a send the commit
 * would refuse for its token never reaches the device; a token-lane send is never refused for
 * quota (it evicts). What is left — the commit fails (disk full, I/O error), the mailbox was
 * deleted meanwhile, a token revoked in between — reaches the device without being stored: its
 * sender is told UNAVAILABLE (or the refusal) and sends again, and the device drops the second
 * copy by the message id inside the sealed envelope, as after any resend.
 */
export interface AheadDelivery {
  /** AHEAD_SENT, AHEAD_NO_SESSION, or the live connection's token epoch (it did not take the envelope). */
  ahead(mailboxKey: string, envelope: FastEnvelope, tokenKey: string): number;
  aheadDropped(mailboxKey: string, id: Uint8Array): void;
  tokenAccepted(mailboxKey: string, tokenKey: string, epoch: number): void;
}

export class DeliveryHub implements BusSubscriber, AheadDelivery {
  readonly #live = new Map<string, LiveSession>();
  readonly #unsubscribe: () => void;

  constructor(readonly bus: DeliveryBus) {
    this.#unsubscribe = bus.subscribe(this);
  }

  /** Registers a freshly authenticated session and tells every process (older sessions close). */
  attach(session: LiveSession): void {
    this.login(session.mailboxKey, session.sessionId);
    this.#live.set(session.mailboxKey, session);
    this.bus.watch?.(session.mailboxKey);
    void this.bus.publishLogin(session.mailboxKey, session.sessionId);
  }

  detach(session: LiveSession): void {
    if (this.#live.get(session.mailboxKey) === session) this.#drop(session.mailboxKey);
  }

  #drop(mailboxKey: string): void {
    this.#live.delete(mailboxKey);
    this.bus.unwatch?.(mailboxKey);
  }

  // ── BusSubscriber ──
  mail(mailboxKey: string, envelopes: readonly StoredEnvelope[] | undefined): boolean {
    const s = this.#live.get(mailboxKey);
    if (!s) return false;
    s.wake(envelopes);
    return true;
  }

  signal(mailboxKey: string, envelope: Envelope): boolean {
    return this.#live.get(mailboxKey)?.signal(envelope) ?? false;
  }

  // ── AheadDelivery ──
  ahead(mailboxKey: string, envelope: FastEnvelope, tokenKey: string): number {
    return this.#live.get(mailboxKey)?.ahead(envelope, tokenKey) ?? AHEAD_NO_SESSION;
  }

  aheadDropped(mailboxKey: string, id: Uint8Array): void {
    this.#live.get(mailboxKey)?.aheadDropped(id);
  }

  tokenAccepted(mailboxKey: string, tokenKey: string, epoch: number): void {
    this.#live.get(mailboxKey)?.tokenAccepted(tokenKey, epoch);
  }

  login(mailboxKey: string, sessionId: string): void {
    const previous = this.#live.get(mailboxKey);
    if (previous && previous.sessionId !== sessionId) {
      this.#drop(mailboxKey);
      previous.close(4001, 'replaced by a newer connection of this device');
    }
  }

  deleted(mailboxKey: string): void {
    const s = this.#live.get(mailboxKey);
    if (s) {
      this.#drop(mailboxKey);
      s.close(4004, 'device deleted');
    }
  }

  gapsChanged(): void {
    for (const s of [...this.#live.values()]) s.checkGap();
  }

  get size(): number {
    return this.#live.size;
  }

  /** Closes every session of this process (shutdown). */
  closeAll(code: number, reason: string): void {
    for (const s of [...this.#live.values()]) s.close(code, reason);
  }

  dispose(): void {
    this.#unsubscribe();
  }
}

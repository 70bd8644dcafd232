/**
 * The live-delivery hub of one process: its authenticated device connections, at most one per
 * mailbox across the node. A newer login of the same device replaces the older connection, here
 * or in another process (through the DeliveryBus); only the holder of the device key can log
 * in, so nobody else can take a mailbox's live delivery over.
 */
import type { Envelope } from '@meshwhisper/protocol';
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
  /** Gap counters may have changed (sweeper). */
  checkGap(): void;
  /** Replaced by a newer login, the device was deleted, or the node is shutting down. */
  close(code: number, reason: string): void;
}

export class DeliveryHub implements BusSubscriber {
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

/**
 * The live-delivery hub: at most one authenticated connection per mailbox. A newer login of the
 * same device replaces the older connection (only the holder of the device key can log in, so
 * nobody else can take a mailbox's live delivery over).
 */
import type { Envelope } from '@meshwhisper/protocol';

export interface LiveSession {
  /** Hex mailbox id. */
  readonly mailboxKey: string;
  /** New durable mail was committed for this mailbox: pull it. */
  wake(): void;
  /** Hand over an ephemeral signal now or drop it; true if written to the connection. */
  signal(envelope: Envelope): boolean;
  /** Gap counters may have changed (sweeper). */
  checkGap(): void;
  /** Replaced by a newer login, or the node is shutting down. */
  close(code: number, reason: string): void;
}

export class DeliveryHub {
  readonly #live = new Map<string, LiveSession>();

  attach(session: LiveSession): void {
    const previous = this.#live.get(session.mailboxKey);
    this.#live.set(session.mailboxKey, session);
    if (previous && previous !== session) previous.close(4001, 'replaced by a newer connection of this device');
  }

  detach(session: LiveSession): void {
    if (this.#live.get(session.mailboxKey) === session) this.#live.delete(session.mailboxKey);
  }

  wake(mailboxKey: string): void {
    this.#live.get(mailboxKey)?.wake();
  }

  signal(mailboxKey: string, envelope: Envelope): boolean {
    return this.#live.get(mailboxKey)?.signal(envelope) ?? false;
  }

  isLive(mailboxKey: string): boolean {
    return this.#live.has(mailboxKey);
  }

  get size(): number {
    return this.#live.size;
  }

  forEach(fn: (s: LiveSession) => void): void {
    for (const s of [...this.#live.values()]) fn(s);
  }
}

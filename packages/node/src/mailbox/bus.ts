/**
 * DeliveryBus: how the processes of a node tell each other "mail arrived for mailbox X" and
 * "device X logged in elsewhere" (docs/architecture.md §Node storage). In-process today
 * (LocalDeliveryBus); a cluster implements it over its message system (PostgreSQL LISTEN/NOTIFY,
 * NATS, …), federation publishes mail that arrived from another node, and a LAN transport can
 * subscribe like any process. Events are hints: a lost one only delays delivery until the
 * device's next fetch, never loses mail (the store is the truth).
 */
import type { Envelope } from '@meshwhisper/protocol';
import type { StoredEnvelope } from '../store/node-store.js';

/** What a process does with bus events (the DeliveryHub of each process). */
export interface BusSubscriber {
  /**
   * Durable mail committed for `mailboxKey` (hex). `envelopes` are the committed envelopes, in seq
   * order, when the publisher has them in memory (a subscriber may deliver them without
   * re-reading); undefined means "fetch". True if a live connection here took the wake.
   */
  mail(mailboxKey: string, envelopes: readonly StoredEnvelope[] | undefined): boolean;
  /** An ephemeral envelope: true if handed to a live connection here. */
  signal(mailboxKey: string, envelope: Envelope): boolean;
  /** `mailboxKey` authenticated on connection `sessionId` somewhere: other connections of it close. */
  login(mailboxKey: string, sessionId: string): void;
  /** The device was deleted: its connections close. */
  deleted(mailboxKey: string): void;
  /** Gap counters may have changed (after a sweep). */
  gapsChanged(): void;
}

export interface DeliveryBus {
  /** Resolves true if some subscriber had a live connection for the mailbox. */
  publishMail(mailboxKey: string, envelopes?: readonly StoredEnvelope[]): Promise<boolean>;
  publishSignal(mailboxKey: string, envelope: Envelope): Promise<boolean>;
  publishLogin(mailboxKey: string, sessionId: string): Promise<void>;
  publishDeleted(mailboxKey: string): Promise<void>;
  publishGapsChanged(): Promise<void>;
  subscribe(subscriber: BusSubscriber): () => void;
  /**
   * A device connection for `mailboxKey` is live in this process (`unwatch`: not any more). A
   * cluster bus listens for that mailbox's events from other processes only while it is watched.
   */
  watch?(mailboxKey: string): void;
  unwatch?(mailboxKey: string): void;
  /**
   * Push wakes: true if this process should ring `mailboxKey` now — one process per burst across
   * a cluster. Without it every process decides alone (its own coalescing window).
   */
  claimWake?(mailboxKey: string): Promise<boolean>;
  close(): Promise<void>;
}

/** The bus of a single-process node: events go straight to the subscribers, synchronously. */
export class LocalDeliveryBus implements DeliveryBus {
  readonly #subscribers: BusSubscriber[] = [];

  /** Synchronous form of publishMail for the in-process hot path. */
  mailNow(mailboxKey: string, envelopes?: readonly StoredEnvelope[]): boolean {
    let live = false;
    for (const s of this.#subscribers) live = s.mail(mailboxKey, envelopes) || live;
    return live;
  }

  publishMail(mailboxKey: string, envelopes?: readonly StoredEnvelope[]): Promise<boolean> {
    return Promise.resolve(this.mailNow(mailboxKey, envelopes));
  }

  publishSignal(mailboxKey: string, envelope: Envelope): Promise<boolean> {
    let live = false;
    for (const s of this.#subscribers) live = s.signal(mailboxKey, envelope) || live;
    return Promise.resolve(live);
  }

  publishLogin(mailboxKey: string, sessionId: string): Promise<void> {
    for (const s of this.#subscribers) s.login(mailboxKey, sessionId);
    return Promise.resolve();
  }

  publishDeleted(mailboxKey: string): Promise<void> {
    for (const s of this.#subscribers) s.deleted(mailboxKey);
    return Promise.resolve();
  }

  publishGapsChanged(): Promise<void> {
    for (const s of this.#subscribers) s.gapsChanged();
    return Promise.resolve();
  }

  subscribe(subscriber: BusSubscriber): () => void {
    this.#subscribers.push(subscriber);
    return () => {
      const i = this.#subscribers.indexOf(subscriber);
      if (i >= 0) this.#subscribers.splice(i, 1);
    };
  }

  close(): Promise<void> {
    this.#subscribers.length = 0;
    return Promise.resolve();
  }
}

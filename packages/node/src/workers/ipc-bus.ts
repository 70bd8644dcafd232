/**
 * IpcDeliveryBus: the DeliveryBus of a worker process of a multi-process SQLite node
 * (docs/architecture.md §Process model), brokered by the primary over node:cluster IPC. The model
 * is the cluster's NatsDeliveryBus (nats-bus.ts), with two differences that make the hot path cheap:
 *
 * - The primary replicates its watch table (which worker holds a live connection for which
 *   mailbox) to every worker. "Is the device live anywhere?" is then answered synchronously
 *   (`mailNow`), with no round trip: mail for a mailbox watched elsewhere is queued for the primary
 *   and the answer is "live". A table a moment stale costs at most a push wake too many or too few,
 *   never mail (the store is the truth; a device reads it on (re)connect).
 * - Events are batched: one IPC message per event-loop turn, carrying the committed envelopes
 *   (the receiving worker delivers them without re-reading the store).
 *
 * Requests that need an answer — single-use challenges, push-wake claims, device-link rpc and
 * metrics — are round trips to the primary.
 */
import type { Envelope } from '@meshwhisper/protocol';
import { EnvelopeSchema, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { StoredEnvelope } from '../store/node-store.js';
import type { BusSubscriber, DeliveryBus } from '../mailbox/bus.js';
import type { RpcBus } from '../link/relay.js';
import type { BusEvent, IpcMessage, PrimaryRequest, WorkerRequest } from './wire.js';
import { isIpcMessage } from './wire.js';

/** The worker's end of the IPC channel (process.send / process.on('message') in a cluster worker). */
export interface IpcEndpoint {
  send(message: IpcMessage): void;
  onMessage(handler: (message: unknown) => void): () => void;
}

/** A cluster worker's channel to its primary. */
export function processEndpoint(): IpcEndpoint {
  return {
    send(message) {
      // The callback takes a send error (the primary just died: EPIPE) instead of an 'error' event on process.
      if (process.connected) process.send!(message, undefined, undefined, () => undefined);
    },
    onMessage(handler) {
      process.on('message', handler);
      return () => process.off('message', handler);
    },
  };
}

/** How long a request to the primary waits (it answers from memory; longer means it is gone). */
export const IPC_REQUEST_TIMEOUT_MS = 5_000;

export class IpcDeliveryBus implements DeliveryBus, RpcBus {
  readonly #subscribers: BusSubscriber[] = [];
  /** Mailboxes with a live connection here. */
  readonly #watched = new Set<string>();
  /** Mailboxes with a live connection in another worker → how many workers (normally 1). */
  readonly #elsewhere = new Map<string, number>();
  readonly #served = new Map<string, (data: Uint8Array) => Promise<Uint8Array>>();
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  #outbox: BusEvent[] = [];
  #flushScheduled = false;
  #next = 1;
  #closed = false;
  readonly #off: () => void;
  /** Answers the primary's request for this worker's metrics (node.ts sets it). */
  metricsJson: (() => Promise<unknown>) | undefined;

  constructor(private readonly ipc: IpcEndpoint) {
    this.#off = ipc.onMessage((m) => {
      if (isIpcMessage(m)) this.#receive(m);
    });
  }

  #receive(m: IpcMessage): void {
    switch (m.mw) {
      case 'ev':
        for (const e of m.ev) this.#apply(e);
        return;
      case 'res': {
        const p = this.#pending.get(m.id);
        if (!p) return;
        this.#pending.delete(m.id);
        clearTimeout(p.timer);
        if (m.error !== undefined) p.reject(new Error(m.error));
        else p.resolve(m.value);
        return;
      }
      case 'req':
        void this.#answer(m.id, m.req as PrimaryRequest);
        return;
      case 'resync':
        for (const key of this.#watched) for (const s of this.#subscribers) s.mail(key, undefined);
        return;
      case 'watched':
        this.#elsewhere.clear();
        for (const [key] of m.entries) this.#elsewhere.set(key, (this.#elsewhere.get(key) ?? 0) + 1);
        return;
    }
  }

  #apply(e: BusEvent): void {
    switch (e[0]) {
      case 'm':
        for (const s of this.#subscribers) s.mail(e[1], e[2]);
        return;
      case 's': {
        let envelope: Envelope;
        try {
          envelope = fromBinary(EnvelopeSchema, e[2]);
        } catch {
          return;
        }
        for (const s of this.#subscribers) s.signal(e[1], envelope);
        return;
      }
      case 'l':
        for (const s of this.#subscribers) s.login(e[1], e[2]);
        return;
      case 'd':
        for (const s of this.#subscribers) s.deleted(e[1]);
        return;
      case 'g':
        for (const s of this.#subscribers) s.gapsChanged();
        return;
      case 'w':
        this.#elsewhere.set(e[1], (this.#elsewhere.get(e[1]) ?? 0) + 1);
        // Mail this worker committed for that mailbox before it learnt of the new connection was
        // announced to nobody, and the connection's first read may have come before the commit:
        // tell it to read once more (one store read per login and worker; `mailNow` sees the watch from now on).
        this.#queue(['m', e[1], undefined]);
        return;
      case 'u': {
        const n = (this.#elsewhere.get(e[1]) ?? 1) - 1;
        if (n <= 0) this.#elsewhere.delete(e[1]);
        else this.#elsewhere.set(e[1], n);
        return;
      }
    }
  }

  async #answer(id: number, req: PrimaryRequest): Promise<void> {
    try {
      let value: unknown;
      if (req.op === 'rpc') {
        const handler = this.#served.get(req.topic);
        value = handler ? await handler(req.data) : 'none';
      } else if (req.op === 'metrics-json') {
        value = this.metricsJson ? await this.metricsJson() : [];
      }
      this.ipc.send({ mw: 'res', id, value });
    } catch (e) {
      this.ipc.send({ mw: 'res', id, value: undefined, error: e instanceof Error ? e.message : 'failed' });
    }
  }

  #queue(e: BusEvent): void {
    if (this.#closed) return;
    this.#outbox.push(e);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      const ev = this.#outbox;
      this.#outbox = [];
      if (ev.length > 0) this.ipc.send({ mw: 'ev', ev });
    });
  }

  /** A round trip to the primary; rejects when it does not answer within `timeoutMs`. */
  request<T>(req: WorkerRequest, timeoutMs = IPC_REQUEST_TIMEOUT_MS): Promise<T> {
    if (this.#closed) return Promise.reject(new Error('bus closed'));
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error('the primary process did not answer'));
      }, timeoutMs);
      timer.unref();
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.ipc.send({ mw: 'req', id, req });
    });
  }

  /** True if a worker other than this one holds a live connection for `mailboxKey`. */
  liveElsewhere(mailboxKey: string): boolean {
    return this.#elsewhere.has(mailboxKey);
  }

  /** Synchronous publishMail (the send path's hot loop: no promise per mailbox). */
  mailNow(mailboxKey: string, envelopes?: readonly StoredEnvelope[]): boolean {
    let live = false;
    for (const s of this.#subscribers) live = s.mail(mailboxKey, envelopes) || live;
    if (live) return true;
    if (!this.#elsewhere.has(mailboxKey)) return false;
    this.#queue(['m', mailboxKey, envelopes]);
    return true;
  }

  publishMail(mailboxKey: string, envelopes?: readonly StoredEnvelope[]): Promise<boolean> {
    return Promise.resolve(this.mailNow(mailboxKey, envelopes));
  }

  publishSignal(mailboxKey: string, envelope: Envelope): Promise<boolean> {
    let live = false;
    for (const s of this.#subscribers) live = s.signal(mailboxKey, envelope) || live;
    if (live) return Promise.resolve(true);
    if (!this.#elsewhere.has(mailboxKey)) return Promise.resolve(false);
    this.#queue(['s', mailboxKey, toBinary(EnvelopeSchema, envelope)]);
    return Promise.resolve(true);
  }

  publishLogin(mailboxKey: string, sessionId: string): Promise<void> {
    for (const s of this.#subscribers) s.login(mailboxKey, sessionId);
    this.#queue(['l', mailboxKey, sessionId]);
    return Promise.resolve();
  }

  publishDeleted(mailboxKey: string): Promise<void> {
    for (const s of this.#subscribers) s.deleted(mailboxKey);
    this.#queue(['d', mailboxKey]);
    return Promise.resolve();
  }

  publishGapsChanged(): Promise<void> {
    for (const s of this.#subscribers) s.gapsChanged();
    this.#queue(['g']);
    return Promise.resolve();
  }

  watch(mailboxKey: string): void {
    if (this.#watched.has(mailboxKey)) return;
    this.#watched.add(mailboxKey);
    this.#queue(['w', mailboxKey]);
  }

  unwatch(mailboxKey: string): void {
    if (!this.#watched.delete(mailboxKey)) return;
    this.#queue(['u', mailboxKey]);
  }

  /** One push wake per mailbox per window across the workers (the primary keeps the claims). Fails open. */
  async claimWake(mailboxKey: string): Promise<boolean> {
    try {
      return await this.request<boolean>({ op: 'wake', key: mailboxKey });
    } catch {
      return true;
    }
  }

  /** Single-use challenges across workers: the primary holds the used nonces. */
  consumeChallenge(nonce: Uint8Array, issuedAt: number, expiresAt: number): Promise<boolean> {
    return this.request<boolean>({ op: 'challenge', nonce, issuedAt, expiresAt });
  }

  // ── rpc (device-link channels: link/relay.ts) ──

  async serve(topic: string, handler: (data: Uint8Array) => Promise<Uint8Array>): Promise<() => void> {
    this.#served.set(topic, handler);
    await this.request({ op: 'serve', topic }).catch(() => undefined);
    return () => {
      if (this.#served.get(topic) !== handler) return;
      this.#served.delete(topic);
      if (!this.#closed) this.ipc.send({ mw: 'req', id: 0, req: { op: 'unserve', topic } });
    };
  }

  async call(topic: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array | 'none' | 'unreachable'> {
    try {
      const r = await this.request<Uint8Array | 'none'>({ op: 'call', topic, data, timeoutMs }, timeoutMs + 1_000);
      return r === 'none' ? 'none' : r instanceof Uint8Array ? r : 'unreachable';
    } catch {
      return 'unreachable';
    }
  }

  /** Aggregated metrics of every worker (the primary collects them). */
  clusterMetrics(): Promise<string> {
    return this.request<string>({ op: 'metrics' }, 10_000);
  }

  subscribe(subscriber: BusSubscriber): () => void {
    this.#subscribers.push(subscriber);
    return () => {
      const i = this.#subscribers.indexOf(subscriber);
      if (i >= 0) this.#subscribers.splice(i, 1);
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // Events still queued (the last unwatch of each connection) go out before the channel closes.
    const ev = this.#outbox;
    this.#outbox = [];
    if (ev.length > 0) this.ipc.send({ mw: 'ev', ev });
    this.#closed = true;
    this.#subscribers.length = 0;
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error('bus closed'));
    }
    this.#pending.clear();
    this.#off();
  }
}

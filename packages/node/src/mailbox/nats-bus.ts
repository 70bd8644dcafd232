/**
 * NatsDeliveryBus: the DeliveryBus of a cluster (docs/scale-out.md). Node instances tell each
 * other "mail for mailbox X", "signal for X", "X logged in on session S", "X deleted" and "gap
 * counters changed" over NATS core subjects; push wakes are claimed once per burst cluster-wide in
 * a JetStream key-value bucket.
 *
 * Subjects (PREFIX defaults to "mw"):
 * - PREFIX.dev.<mailbox hex>.mail    request; body: the committed envelopes (or empty: "fetch"); reply "1" if live here
 * - PREFIX.dev.<mailbox hex>.signal  request; body: the ephemeral Envelope (protobuf); reply "1" if handed over
 * - PREFIX.dev.<mailbox hex>.login   publish; body: the new session id (older connections close)
 * - PREFIX.dev.<mailbox hex>.deleted publish
 * - PREFIX.gaps                      publish; body: the publishing instance's id
 * - PREFIX.resync                    publish on every (re)connect; body: the instance's id. Mail that
 *                                    an instance accepted while it had no NATS was announced to
 *                                    nobody: every other instance's live connections read the store.
 * - PREFIX.rpc.<topic>               request to whichever instance `serve`s the topic (a device-link
 *                                    channel lives in the instance that opened it: link/relay.ts)
 * An instance subscribes to PREFIX.dev.<X>.* only while a device connection for X is live on it
 * (`watch`), so traffic scales with the live devices of each instance, not with the cluster.
 * "Is the device live anywhere?" is the request's answer: NATS says "no responders" at once when
 * no instance holds it, and the sender then rings the device's push endpoint.
 *
 * NATS down (or not reachable at start): events stay local, and every live connection of this
 * instance is woken to read the store every `fallbackPollMs` (mail committed by another instance
 * arrives that much later, never lost); after NATS is back every live connection reads the store
 * once more, and it asks every other instance to do the same (resync). The store stays the truth throughout: bus events are hints (bus.ts).
 */
import { randomBytes } from 'node:crypto';
import { ErrorCode as NatsErrorCode, connect, Events, StorageType } from 'nats';
import type { KV, NatsConnection, Subscription } from 'nats';
import type { Envelope } from '@meshwhisper/protocol';
import { EnvelopeSchema, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { StoredEnvelope } from '../store/node-store.js';
import type { BusSubscriber, DeliveryBus } from './bus.js';

/** Envelopes ride along with a mail event up to this many payload bytes; beyond, the event says "fetch". */
export const NATS_INLINE_MAX_BYTES = 256 * 1024;
export const NATS_DEFAULT_REQUEST_TIMEOUT_MS = 1_000;
export const NATS_DEFAULT_FALLBACK_POLL_MS = 1_000;

export interface NatsBusOptions {
  /** nats://host:port[,nats://…] (NATS_URL). */
  readonly servers: string;
  /** Subject prefix and key-value bucket name part; instances of one cluster share it. Tests use one each. */
  readonly prefix?: string;
  /** How long a "mail"/"signal" request waits for the instance holding the device. */
  readonly requestTimeoutMs?: number;
  /** Store-read interval for live connections while NATS is unreachable. */
  readonly fallbackPollMs?: number;
  /** The push coalescing window (PUSH_COALESCE_MS): one wake per mailbox per window, cluster-wide. */
  readonly wakeWindowMs?: number;
  /** Told when the connection to NATS goes down or comes back (logs, metrics). */
  readonly onState?: (connected: boolean) => void;
}

const ONE = new Uint8Array([0x31]);
const ZERO = new Uint8Array([0x30]);
const PREFIX_RE = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const KEY_RE = /^[0-9a-f]{2,128}$/;
const RPC_TOPIC_RE = /^[A-Za-z0-9_-]{1,128}$/;

/** Mail events: count, then per envelope seq, receivedAt (float64), id and payload with lengths. */
export function encodeMailEvent(envelopes: readonly StoredEnvelope[] | undefined): Uint8Array {
  if (!envelopes || envelopes.length === 0) return new Uint8Array(0);
  let size = 4;
  for (const e of envelopes) size += 16 + 2 + e.id.length + 4 + e.payload.length;
  if (size > NATS_INLINE_MAX_BYTES) return new Uint8Array(0);
  const out = Buffer.allocUnsafe(size);
  let o = out.writeUInt32BE(envelopes.length, 0);
  for (const e of envelopes) {
    o = out.writeDoubleBE(e.seq, o);
    o = out.writeDoubleBE(e.receivedAt, o);
    o = out.writeUInt16BE(e.id.length, o);
    out.set(e.id, o);
    o += e.id.length;
    o = out.writeUInt32BE(e.payload.length, o);
    out.set(e.payload, o);
    o += e.payload.length;
  }
  return out;
}

/** Undefined for "fetch" (empty body) or anything malformed: the subscriber then reads the store. */
export function decodeMailEvent(data: Uint8Array): StoredEnvelope[] | undefined {
  if (data.length < 4) return undefined;
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  try {
    const n = b.readUInt32BE(0);
    const out: StoredEnvelope[] = [];
    let o = 4;
    for (let i = 0; i < n; i++) {
      const seq = b.readDoubleBE(o);
      const receivedAt = b.readDoubleBE(o + 8);
      const idLen = b.readUInt16BE(o + 16);
      o += 18;
      const id = new Uint8Array(b.subarray(o, o + idLen));
      o += idLen;
      const len = b.readUInt32BE(o);
      o += 4;
      if (o + len > b.length || id.length !== idLen) return undefined;
      const payload = new Uint8Array(b.subarray(o, o + len));
      o += len;
      out.push({ seq, id, payload, receivedAt });
    }
    return o === b.length ? out : undefined;
  } catch {
    return undefined;
  }
}

export class NatsDeliveryBus implements DeliveryBus {
  readonly #o: Required<Omit<NatsBusOptions, 'onState'>> & Pick<NatsBusOptions, 'onState'>;
  readonly #subscribers: BusSubscriber[] = [];
  /** Mailboxes with a live connection here → their NATS subscription (undefined while disconnected). */
  readonly #watched = new Map<string, Subscription | undefined>();
  /** Topics this instance answers (`serve`) → handler and NATS subscription (undefined while disconnected). */
  readonly #served = new Map<string, { readonly handler: (data: Uint8Array) => Promise<Uint8Array>; sub: Subscription | undefined }>();
  readonly #instance = randomBytes(8).toString('hex');
  #nc: NatsConnection | undefined;
  #kv: Promise<KV | undefined> | undefined;
  #connected = false;
  #closed = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #pollTimer: NodeJS.Timeout | undefined;

  constructor(options: NatsBusOptions) {
    const prefix = options.prefix ?? 'mw';
    if (!PREFIX_RE.test(prefix)) throw new RangeError(`NATS subject prefix ${JSON.stringify(prefix)} must be dot-separated words of letters, digits, _ and -`);
    this.#o = {
      servers: options.servers,
      prefix,
      requestTimeoutMs: options.requestTimeoutMs ?? NATS_DEFAULT_REQUEST_TIMEOUT_MS,
      fallbackPollMs: options.fallbackPollMs ?? NATS_DEFAULT_FALLBACK_POLL_MS,
      wakeWindowMs: options.wakeWindowMs ?? 60_000,
      onState: options.onState,
    };
  }

  /** Connects (one attempt); when NATS is unreachable the bus runs on store reads and keeps trying in the background. */
  async start(): Promise<boolean> {
    await this.#connectOnce();
    if (!this.#connected) this.#degraded();
    return this.#connected;
  }

  /** True while connected to NATS (doctor, metrics, tests). */
  get connected(): boolean {
    return this.#connected;
  }

  /** The JetStream key-value bucket of push claims. */
  get wakeBucket(): string {
    return `${this.#o.prefix.replace(/\./g, '_')}_push_wakes`;
  }

  async #connectOnce(): Promise<void> {
    if (this.#closed || this.#nc) return;
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers: this.#o.servers.split(',').map((s) => s.trim()),
        name: `meshwhisper-node-${this.#instance}`,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        timeout: 2_000,
        pingInterval: 5_000,
        maxPingOut: 2,
      });
    } catch {
      return;
    }
    if (this.#closed) {
      await nc.close().catch(() => undefined);
      return;
    }
    this.#nc = nc;
    nc.subscribe(`${this.#o.prefix}.gaps`, {
      callback: (err, msg) => {
        if (err || new TextDecoder().decode(msg.data) === this.#instance) return;
        for (const s of this.#subscribers) s.gapsChanged();
      },
    });
    nc.subscribe(`${this.#o.prefix}.resync`, {
      callback: (err, msg) => {
        if (!err && new TextDecoder().decode(msg.data) !== this.#instance) this.#wakeAllWatched();
      },
    });
    for (const key of this.#watched.keys()) this.#watched.set(key, this.#subscribeDevice(key));
    for (const [topic, s] of this.#served) s.sub = this.#subscribeServed(topic, s.handler);
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === Events.Disconnect) this.#setConnected(false);
        else if (s.type === Events.Reconnect) this.#setConnected(true);
      }
    })().catch(() => undefined);
    void nc.closed().then(() => {
      if (this.#nc === nc) {
        this.#nc = undefined;
        this.#kv = undefined;
        this.#setConnected(false);
        if (!this.#closed) this.#degraded();
      }
    });
    this.#setConnected(true);
  }

  #setConnected(up: boolean): void {
    if (up === this.#connected) return;
    this.#connected = up;
    this.#o.onState?.(up);
    if (up) {
      clearInterval(this.#pollTimer);
      this.#pollTimer = undefined;
      this.#wakeAllWatched(); // mail published while we were away
      this.#publish(`${this.#o.prefix}.resync`, new TextEncoder().encode(this.#instance)); // and mail we accepted meanwhile
    } else if (!this.#pollTimer && !this.#closed) {
      this.#pollTimer = setInterval(() => this.#wakeAllWatched(), this.#o.fallbackPollMs);
      this.#pollTimer.unref();
    }
  }

  /** Not connected at all (start failed, or the connection was closed for good): poll the store and retry. */
  #degraded(): void {
    if (this.#closed) return;
    if (!this.#pollTimer) {
      this.#pollTimer = setInterval(() => this.#wakeAllWatched(), this.#o.fallbackPollMs);
      this.#pollTimer.unref();
    }
    if (this.#retryTimer) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      void this.#connectOnce().then(() => {
        if (!this.#nc) this.#degraded();
      });
    }, 1_000);
    this.#retryTimer.unref();
  }

  #wakeAllWatched(): void {
    for (const key of this.#watched.keys()) for (const s of this.#subscribers) s.mail(key, undefined);
  }

  #subscribeDevice(key: string): Subscription | undefined {
    const nc = this.#nc;
    if (!nc) return undefined;
    return nc.subscribe(`${this.#o.prefix}.dev.${key}.*`, {
      callback: (err, msg) => {
        if (err) return;
        const kind = msg.subject.slice(msg.subject.lastIndexOf('.') + 1);
        let live = false;
        switch (kind) {
          case 'mail': {
            const envelopes = decodeMailEvent(msg.data);
            for (const s of this.#subscribers) live = s.mail(key, envelopes) || live;
            break;
          }
          case 'signal': {
            let envelope: Envelope;
            try {
              envelope = fromBinary(EnvelopeSchema, msg.data);
            } catch {
              break;
            }
            for (const s of this.#subscribers) live = s.signal(key, envelope) || live;
            break;
          }
          case 'login': {
            const session = new TextDecoder().decode(msg.data);
            for (const s of this.#subscribers) s.login(key, session);
            return;
          }
          case 'deleted':
            for (const s of this.#subscribers) s.deleted(key);
            return;
          default:
            return;
        }
        if (msg.reply) msg.respond(live ? ONE : ZERO);
      },
    });
  }

  #subscribeServed(topic: string, handler: (data: Uint8Array) => Promise<Uint8Array>): Subscription | undefined {
    const nc = this.#nc;
    if (!nc) return undefined;
    return nc.subscribe(`${this.#o.prefix}.rpc.${topic}`, {
      callback: (err, msg) => {
        if (err || !msg.reply) return;
        void handler(msg.data).then(
          (r) => msg.respond(r),
          () => undefined, // the handler answers its own errors; a throw here leaves the caller to time out
        );
      },
    });
  }

  /**
   * Answers requests on PREFIX.rpc.<topic> (one instance per topic) until the returned function is
   * called; kept across NATS reconnects. Topics are dot-free words (RPC_TOPIC_RE). Resolves once the
   * NATS server has the subscription (a round trip), so a request another instance sends after this
   * instance answered its client finds it; while NATS is down it resolves at once (subscribed on reconnect).
   */
  async serve(topic: string, handler: (data: Uint8Array) => Promise<Uint8Array>): Promise<() => void> {
    if (!RPC_TOPIC_RE.test(topic)) throw new RangeError(`rpc topic ${JSON.stringify(topic)} must be letters, digits, _ and -`);
    this.#served.get(topic)?.sub?.unsubscribe();
    const entry = { handler, sub: this.#subscribeServed(topic, handler) };
    this.#served.set(topic, entry);
    const stop = (): void => {
      if (this.#served.get(topic) !== entry) return;
      this.#served.delete(topic);
      entry.sub?.unsubscribe();
    };
    const nc = this.#nc;
    if (entry.sub && nc && this.#connected) await nc.flush().catch(() => undefined);
    return stop;
  }

  /**
   * Asks the instance that serves `topic`: its answer, `'none'` when no instance serves it, or
   * `'unreachable'` while NATS is down or the request timed out.
   */
  async call(topic: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array | 'none' | 'unreachable'> {
    const nc = this.#nc;
    if (!nc || !this.#connected || !RPC_TOPIC_RE.test(topic)) return 'unreachable';
    try {
      return (await nc.request(`${this.#o.prefix}.rpc.${topic}`, data, { timeout: timeoutMs })).data;
    } catch (e) {
      return (e as { code?: string }).code === NatsErrorCode.NoResponders ? 'none' : 'unreachable';
    }
  }

  /** A device connection for `mailboxKey` went live here: receive its events from the cluster. */
  watch(mailboxKey: string): void {
    if (!KEY_RE.test(mailboxKey) || this.#watched.has(mailboxKey)) return;
    // While reconnecting the client queues the subscription and sends it when NATS is back.
    this.#watched.set(mailboxKey, this.#subscribeDevice(mailboxKey));
  }

  unwatch(mailboxKey: string): void {
    const sub = this.#watched.get(mailboxKey);
    this.#watched.delete(mailboxKey);
    sub?.unsubscribe();
  }

  async #ask(subject: string, data: Uint8Array): Promise<boolean> {
    const nc = this.#nc;
    if (!nc || !this.#connected) return false;
    try {
      const reply = await nc.request(subject, data, { timeout: this.#o.requestTimeoutMs });
      return reply.data.length === 1 && reply.data[0] === ONE[0];
    } catch {
      return false; // no responders (nobody holds the device), timeout, or NATS went away
    }
  }

  #publish(subject: string, data: Uint8Array): void {
    if (!this.#nc || !this.#connected) return;
    try {
      this.#nc.publish(subject, data);
    } catch {
      // closed or draining: the event is a hint
    }
  }

  async publishMail(mailboxKey: string, envelopes?: readonly StoredEnvelope[]): Promise<boolean> {
    let live = false;
    for (const s of this.#subscribers) live = s.mail(mailboxKey, envelopes) || live;
    if (live || !KEY_RE.test(mailboxKey)) return live;
    return this.#ask(`${this.#o.prefix}.dev.${mailboxKey}.mail`, encodeMailEvent(envelopes));
  }

  async publishSignal(mailboxKey: string, envelope: Envelope): Promise<boolean> {
    let live = false;
    for (const s of this.#subscribers) live = s.signal(mailboxKey, envelope) || live;
    if (live || !KEY_RE.test(mailboxKey)) return live;
    return this.#ask(`${this.#o.prefix}.dev.${mailboxKey}.signal`, toBinary(EnvelopeSchema, envelope));
  }

  async publishLogin(mailboxKey: string, sessionId: string): Promise<void> {
    for (const s of this.#subscribers) s.login(mailboxKey, sessionId);
    if (KEY_RE.test(mailboxKey)) this.#publish(`${this.#o.prefix}.dev.${mailboxKey}.login`, new TextEncoder().encode(sessionId));
  }

  async publishDeleted(mailboxKey: string): Promise<void> {
    for (const s of this.#subscribers) s.deleted(mailboxKey);
    if (KEY_RE.test(mailboxKey)) this.#publish(`${this.#o.prefix}.dev.${mailboxKey}.deleted`, new Uint8Array(0));
  }

  async publishGapsChanged(): Promise<void> {
    for (const s of this.#subscribers) s.gapsChanged();
    this.#publish(`${this.#o.prefix}.gaps`, new TextEncoder().encode(this.#instance));
  }

  /**
   * One push wake per mailbox per window across the cluster: true for the first instance that
   * claims it. Fails open (true) when NATS or JetStream is unavailable: a duplicate wake is
   * better than none.
   */
  async claimWake(mailboxKey: string): Promise<boolean> {
    const kv = await this.#wakeKv();
    if (!kv) return true;
    try {
      await kv.create(mailboxKey, new Uint8Array(0));
      return true;
    } catch (e) {
      const msg = e instanceof Error ? e.message : '';
      return !/wrong last sequence|key exists/i.test(msg);
    }
  }

  #wakeKv(): Promise<KV | undefined> {
    const nc = this.#nc;
    if (!nc || !this.#connected) return Promise.resolve(undefined);
    this.#kv ??= nc
      .jetstream()
      .views.kv(this.wakeBucket, { ttl: this.#o.wakeWindowMs, history: 1, storage: StorageType.Memory })
      .catch(() => {
        this.#kv = undefined; // JetStream off or not ready: try again next time
        return undefined;
      });
    return this.#kv;
  }

  /** Removes the push-claim bucket (tests clean up after themselves). */
  async destroyWakeBucket(): Promise<void> {
    const kv = await this.#wakeKv();
    await kv?.destroy().catch(() => undefined);
    this.#kv = undefined;
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
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    clearInterval(this.#pollTimer);
    this.#subscribers.length = 0;
    this.#watched.clear();
    this.#served.clear();
    const nc = this.#nc;
    this.#nc = undefined;
    this.#connected = false;
    if (nc) await nc.drain().catch(() => nc.close().catch(() => undefined));
  }
}

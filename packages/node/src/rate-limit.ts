/**
 * Rate limiting for every endpoint, the WebSocket upgrade and per-frame sends: true token buckets
 * (not fixed windows, which let a client spend two windows' budget across a boundary), keyed per
 * client address — an IPv4 address, or an IPv6 /64 because one subscriber typically holds a whole
 * /64 and could otherwise rotate through 2^64 fresh buckets — and per target where a resource
 * belongs to someone else (one-time prekey claims per target mailbox, first-contact sends per
 * recipient).
 *
 * A bucket of `burst` tokens refills continuously at `rate` tokens per second; a request of cost c
 * passes iff the bucket holds ≥ c tokens, and then spends them. A full bucket carries no state
 * (it is indistinguishable from a fresh one), so idle buckets are dropped without changing any
 * decision; only a hard cap on tracked keys can forget a partially spent bucket, and it forgets
 * the least recently used one first.
 *
 * The IP addresses held here live only in memory, for at most the refill time of their bucket
 * (see docs/threat-model.md).
 */
import { BlockList, isIP, isIPv4 } from 'node:net';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

// ── Errors ──────────────────────────────────────────────────────────────────────────────────

export const RateLimitErrorCode = {
  /** A client exceeded a bucket; answered as HTTP 429 with Retry-After. */
  RATE_LIMITED: 'MW_RATE_LIMITED',
  /** A bucket spec, TRUST_PROXY value or RATE_LIMITS override is invalid (operator error). */
  CONFIG: 'MW_RATE_LIMIT_CONFIG',
  /** Code asked for a bucket that was never configured, or for a cost no bucket can ever hold. */
  INVALID_REQUEST: 'MW_RATE_LIMIT_INVALID_REQUEST',
} as const;
export type RateLimitErrorCode = (typeof RateLimitErrorCode)[keyof typeof RateLimitErrorCode];

export class RateLimitError extends Error {
  override readonly name = 'RateLimitError';
  /** HTTP status a route handler's error handler should answer with. */
  readonly statusCode: number;
  constructor(
    readonly code: RateLimitErrorCode,
    message: string,
    /** For RATE_LIMITED: how long until the request would pass. */
    readonly retryAfterMs = 0,
  ) {
    super(message);
    this.statusCode = code === RateLimitErrorCode.RATE_LIMITED ? 429 : 500;
  }
  /** Retry-After header value: whole seconds, at least 1. */
  get retryAfterSeconds(): number {
    return retryAfterSeconds(this.retryAfterMs);
  }
  toJSON(): { error: { code: RateLimitErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

// ── Buckets ─────────────────────────────────────────────────────────────────────────────────

/** A token bucket: `burst` tokens of capacity, refilled at `rate` tokens per second. */
export interface BucketSpec {
  readonly rate: number;
  readonly burst: number;
}

/**
 * Default buckets. Per-address budgets are generous where a NAT may put many honest users behind
 * one address, and strict where the operation is cheap to abuse and rare for honest clients.
 * Names are stable: routes and the RATE_LIMITS override refer to them.
 */
export const DEFAULT_BUCKETS = {
  /** Every HTTP request, per address: a busy client syncs in bursts, a NAT shares one address. */
  http: { rate: 20, burst: 100 },
  /** WebSocket upgrades, per address: reconnect loops of a buggy client must not cost us TLS+auth work. */
  'ws-upgrade': { rate: 1, burst: 10 },
  /** Every inbound WebSocket frame, per address: a reconnecting device drains acks and sends in bursts. */
  'ws-frame': { rate: 200, burst: 400 },
  /**
   * Authentication challenges, per address. Every device-authenticated HTTP request takes one, and
   * a device's start-up makes several (keys, device list, certificate, username, socket login); a
   * NAT or a proxy puts many devices behind one address. A challenge is one HMAC and the response
   * one signature check (~0.1 ms), so 5/s costs an attacker's target well under 1 ms of CPU a second.
   */
  auth: { rate: 5, burst: 60 },
  /** Sends that present a valid delivery token, per address: contacts are "generous" (issue 3). */
  'send-token': { rate: 100, burst: 500 },
  /** Tokenless first-contact sends, per address: the small, strict lane for strangers. */
  'send-first-contact': { rate: 0.1, burst: 5 },
  /** Tokenless sends per recipient mailbox: many addresses together cannot flood one inbox's first-contact lane. */
  'send-first-contact-target': { rate: 0.05, burst: 20 },
  /** Prekey bundle fetches (which claim one-time prekeys), per address. */
  'prekey-claim': { rate: 0.5, burst: 20 },
  /**
   * One-time prekey claims per target mailbox: one a minute on average after a burst of 10, so
   * draining a 100-key batch takes hours, long enough for the device to replenish; after that
   * initiators fall back to the last-resort KEM key, never to no key.
   */
  'prekey-claim-target': { rate: 1 / 60, burst: 10 },
  /** Directory writes (bundle, prekey batches, rotation), per address. */
  'directory-write': { rate: 0.5, burst: 20 },
  /** Username lookups, per address: bounds enumeration of a namespace. */
  'username-lookup': { rate: 1, burst: 20 },
  /** Username claims, transfers and releases, per address. */
  'username-write': { rate: 0.05, burst: 5 },
  /** Media blob uploads, per address (the per-device byte quota is enforced elsewhere). */
  'blob-upload': { rate: 0.2, burst: 10 },
  /** Media blob downloads, per address: ids are unguessable, this bounds bandwidth abuse. */
  'blob-download': { rate: 5, burst: 50 },
  /** Archive reads and writes, per address: each read hands out an offline-guessable blob (threat model). */
  archive: { rate: 0.02, burst: 5 },
  /** Link-channel requests (posts and long polls of a device link in progress), per address. */
  link: { rate: 5, burst: 200 },
  /** Opening a link channel, per address: unauthenticated and holds node memory for minutes. */
  'link-create': { rate: 1 / 30, burst: 5 },
  /** GET /ready, per address: orchestrator probes poll every few seconds; a flood gets 429, not disk work. */
  ready: { rate: 2, burst: 20 },
} as const satisfies Record<string, BucketSpec>;
export type DefaultBucketName = keyof typeof DEFAULT_BUCKETS;

/**
 * Cap on tracked (bucket, key) pairs. At ~230 bytes each (measured, IPv6 keys), 100k keys bound
 * this module to ~25 MB whatever an attacker does; past the cap the least recently used bucket
 * is forgotten.
 */
export const DEFAULT_MAX_TRACKED_KEYS = 100_000;
/** How often idle (refilled-to-full) buckets are swept; a sweep is O(tracked keys). */
export const DEFAULT_SWEEP_INTERVAL_MS = 60_000;

export interface RateLimiterOptions {
  /** Bucket specs by name; defaults to DEFAULT_BUCKETS. Merge overrides with `{ ...DEFAULT_BUCKETS, ...x }`. */
  readonly buckets?: Readonly<Record<string, BucketSpec>>;
  /** Milliseconds clock (injected for tests); defaults to performance.now-based monotonic time. */
  readonly now?: () => number;
  readonly maxTrackedKeys?: number;
  readonly sweepIntervalMs?: number;
}

/** The outcome of a take: allowed or not, tokens left, and when a denied request would pass. */
export interface RateLimitDecision {
  readonly allowed: boolean;
  /** Whole tokens left in the bucket after this take (for a denied take: before it). */
  readonly remaining: number;
  /** 0 when allowed; otherwise milliseconds until `cost` tokens will be available. */
  readonly retryAfterMs: number;
  /** The bucket that decided (for takeAll: the first bucket that denied). */
  readonly bucket: string;
}

export interface BucketTake {
  readonly bucket: string;
  readonly key: string;
  readonly cost?: number;
}

/** One configured bucket kind: its spec and its tracked keys. */
interface Bucket {
  readonly name: string;
  readonly spec: BucketSpec;
  readonly keys: Map<string, Entry>;
}

interface Entry {
  readonly bucket: Bucket;
  readonly key: string;
  tokens: number;
  /** Clock reading (ms) at which `tokens` was computed. */
  at: number;
  /** Neighbours in recency order (older, newer). */
  older: Entry | undefined;
  newer: Entry | undefined;
}

function validateSpec(name: string, spec: BucketSpec): void {
  if (!Number.isFinite(spec.rate) || spec.rate <= 0) {
    throw new RateLimitError(RateLimitErrorCode.CONFIG, `bucket ${name}: rate must be a positive number of tokens per second`);
  }
  if (!Number.isFinite(spec.burst) || spec.burst < 1) {
    throw new RateLimitError(RateLimitErrorCode.CONFIG, `bucket ${name}: burst must be a number ≥ 1`);
  }
}

/** Token buckets for any number of named bucket kinds, keyed by opaque strings. */
export class RateLimiter {
  /**
   * The tracked keys of each bucket kind, one Map per bucket: a lookup hashes the caller's key
   * string itself (a connection's address string keeps its hash), where a single Map keyed by
   * `bucket + '\0' + key` built and hashed a new string on every frame.
   */
  readonly #buckets: ReadonlyMap<string, Bucket>;
  readonly #now: () => number;
  readonly #maxKeys: number;
  readonly #sweepIntervalMs: number;
  #size = 0;
  /**
   * Recency order, least recently used first, as a list through the entries: every touch moves an
   * entry to the end in O(1). (It was the Map's insertion order, kept by delete + set on every take:
   * V8 makes that cost grow with the Map — 0.25 µs at 100 keys, 2 µs at 3,000, 68 µs at 100,000.)
   */
  #lru: Entry | undefined;
  #mru: Entry | undefined;
  #lastSweep: number;

  constructor(options: RateLimiterOptions = {}) {
    const buckets = new Map<string, Bucket>();
    for (const [name, spec] of Object.entries(options.buckets ?? DEFAULT_BUCKETS)) {
      validateSpec(name, spec);
      buckets.set(name, { name, spec: { rate: spec.rate, burst: spec.burst }, keys: new Map() });
    }
    this.#buckets = buckets;
    this.#now = options.now ?? (() => performance.now());
    this.#maxKeys = options.maxTrackedKeys ?? DEFAULT_MAX_TRACKED_KEYS;
    this.#sweepIntervalMs = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    if (!Number.isInteger(this.#maxKeys) || this.#maxKeys < 1) {
      throw new RateLimitError(RateLimitErrorCode.CONFIG, 'maxTrackedKeys must be a positive integer');
    }
    this.#lastSweep = this.#now();
  }

  /** The spec of a bucket, or undefined if it is not configured. */
  spec(bucket: string): BucketSpec | undefined {
    return this.#buckets.get(bucket)?.spec;
  }

  /** Number of (bucket, key) pairs currently tracked (for tests and a metrics gauge). */
  get trackedKeys(): number {
    return this.#size;
  }

  /** Spend `cost` tokens from `bucket` for `key`, if it holds them. */
  take(bucket: string, key: string, cost = 1): RateLimitDecision {
    const b = this.#checked(bucket, cost);
    const tokens = this.#spend(b, key, cost);
    return tokens >= cost
      ? { allowed: true, remaining: Math.floor(tokens - cost), retryAfterMs: 0, bucket }
      : { allowed: false, remaining: Math.floor(tokens), retryAfterMs: retryAfterMsOf(b.spec, tokens, cost), bucket };
  }

  /**
   * Spends `cost` from the key's bucket if it holds that much, and marks the key most recently used
   * either way (denied keys too: see takeAll). Returns the tokens before the spend.
   */
  #spend(b: Bucket, key: string, cost: number): number {
    const now = this.#now();
    this.#maybeSweep(now);
    const entry = b.keys.get(key);
    const tokens = this.#tokensAt(entry, b.spec, now);
    const left = tokens >= cost ? tokens - cost : tokens;
    if (entry === undefined) {
      this.#insert(b, key, left, now);
      this.#enforceCap();
    } else {
      entry.tokens = left;
      entry.at = now;
      this.#touch(entry);
    }
    return tokens;
  }

  /**
   * Spend from several buckets at once, all-or-nothing: if any bucket would deny, none is charged,
   * so a request denied by its endpoint bucket does not also eat the client's general budget.
   */
  takeAll(takes: readonly BucketTake[]): RateLimitDecision {
    const now = this.#now();
    this.#maybeSweep(now);
    // The same (bucket, key) named twice is charged the sum of its costs, once.
    const planned: { b: Bucket; key: string; tokens: number; cost: number }[] = [];
    for (const t of takes) {
      const prev = planned.find((p) => p.b.name === t.bucket && p.key === t.key);
      const cost = (prev?.cost ?? 0) + (t.cost ?? 1);
      const b = this.#checked(t.bucket, cost);
      if (prev) prev.cost = cost;
      else planned.push({ b, key: t.key, tokens: this.#tokensAt(b.keys.get(t.key), b.spec, now), cost });
    }
    let denied: RateLimitDecision | undefined;
    for (const p of planned) {
      if (p.tokens < p.cost) {
        const retryAfterMs = retryAfterMsOf(p.b.spec, p.tokens, p.cost);
        if (denied === undefined || retryAfterMs > denied.retryAfterMs) {
          denied = { allowed: false, remaining: Math.floor(p.tokens), retryAfterMs, bucket: p.b.name };
        }
      }
    }
    if (denied !== undefined) {
      // A denied key is still an active key: refresh its recency (state unchanged, re-based to
      // now) so that the LRU cap evicts idle clients before a client that is flooding.
      for (const p of planned) this.#store(p.b, p.key, p.tokens, now);
      this.#enforceCap();
      return denied;
    }
    let remaining = Number.POSITIVE_INFINITY;
    let bucket = '';
    for (const p of planned) {
      const left = p.tokens - p.cost;
      this.#store(p.b, p.key, left, now);
      if (left < remaining) {
        remaining = left;
        bucket = p.b.name;
      }
    }
    this.#enforceCap();
    return { allowed: true, remaining: Math.floor(remaining === Number.POSITIVE_INFINITY ? 0 : remaining), retryAfterMs: 0, bucket };
  }

  /** Like take(), but throws RateLimitError(RATE_LIMITED) when denied. */
  enforce(bucket: string, key: string, cost = 1): RateLimitDecision {
    const d = this.take(bucket, key, cost);
    if (!d.allowed) throw rateLimitedError(d);
    return d;
  }

  /** Drop every bucket that has refilled to full (such a bucket is equivalent to no bucket). */
  sweep(): number {
    const now = this.#now();
    this.#lastSweep = now;
    let dropped = 0;
    for (let entry = this.#lru; entry !== undefined; ) {
      const next = entry.newer;
      const { spec } = entry.bucket;
      if (entry.tokens + ((now - entry.at) * spec.rate) / 1000 >= spec.burst) {
        this.#remove(entry);
        dropped++;
      }
      entry = next;
    }
    return dropped;
  }

  #checked(bucket: string, cost: number): Bucket {
    const b = this.#buckets.get(bucket);
    if (b === undefined) {
      throw new RateLimitError(RateLimitErrorCode.INVALID_REQUEST, `unknown rate-limit bucket ${JSON.stringify(bucket)}`);
    }
    if (!Number.isFinite(cost) || cost < 0 || cost > b.spec.burst) {
      throw new RateLimitError(RateLimitErrorCode.INVALID_REQUEST, `bucket ${bucket}: cost ${cost} is outside [0, burst=${b.spec.burst}]`);
    }
    return b;
  }

  #tokensAt(entry: Entry | undefined, spec: BucketSpec, now: number): number {
    if (entry === undefined) return spec.burst;
    // A clock that steps backwards (it should not: the default is monotonic) refills nothing.
    const elapsed = Math.max(0, now - entry.at);
    return Math.min(spec.burst, entry.tokens + (elapsed * spec.rate) / 1000);
  }

  #maybeSweep(now: number): void {
    if (now - this.#lastSweep >= this.#sweepIntervalMs) this.sweep();
  }

  #enforceCap(): void {
    while (this.#size > this.#maxKeys && this.#lru !== undefined) this.#remove(this.#lru);
  }

  /** Sets an entry's state and makes it the most recently used (creating it if needed). */
  #store(b: Bucket, key: string, tokens: number, at: number): void {
    const entry = b.keys.get(key);
    if (entry === undefined) return this.#insert(b, key, tokens, at);
    entry.tokens = tokens;
    entry.at = at;
    this.#touch(entry);
  }

  #insert(bucket: Bucket, key: string, tokens: number, at: number): void {
    const entry: Entry = { bucket, key, tokens, at, older: this.#mru, newer: undefined };
    if (this.#mru) this.#mru.newer = entry;
    else this.#lru = entry;
    this.#mru = entry;
    bucket.keys.set(key, entry);
    this.#size++;
  }

  #touch(entry: Entry): void {
    if (entry === this.#mru) return;
    // Unlink (it has a newer neighbour, since it is not the most recent)…
    entry.newer!.older = entry.older;
    if (entry.older) entry.older.newer = entry.newer;
    else this.#lru = entry.newer;
    // …and append.
    entry.older = this.#mru;
    entry.newer = undefined;
    this.#mru!.newer = entry;
    this.#mru = entry;
  }

  #remove(entry: Entry): void {
    if (entry.older) entry.older.newer = entry.newer;
    else this.#lru = entry.newer;
    if (entry.newer) entry.newer.older = entry.older;
    else this.#mru = entry.older;
    entry.older = entry.newer = undefined;
    if (entry.bucket.keys.delete(entry.key)) this.#size--;
  }
}

/** Milliseconds until a bucket holding `tokens` holds `cost` (tokens < cost: at least 1). */
function retryAfterMsOf(spec: BucketSpec, tokens: number, cost: number): number {
  return Math.ceil(((cost - tokens) / spec.rate) * 1000);
}

export function retryAfterSeconds(retryAfterMs: number): number {
  return Math.max(1, Math.ceil(retryAfterMs / 1000));
}

export function rateLimitedError(decision: RateLimitDecision): RateLimitError {
  return new RateLimitError(
    RateLimitErrorCode.RATE_LIMITED,
    `rate limit exceeded (${decision.bucket}); retry after ${retryAfterSeconds(decision.retryAfterMs)} s`,
    decision.retryAfterMs,
  );
}

/**
 * Parse RATE_LIMITS overrides: `name=rate:burst` pairs separated by commas, rate in tokens per
 * second (decimals allowed), e.g. `http=50:200,send-first-contact=0.05:3`. Unknown names are
 * rejected so that a typo does not silently leave the default in force.
 */
export function parseBucketOverrides(value: string | undefined, known: Readonly<Record<string, BucketSpec>> = DEFAULT_BUCKETS): Record<string, BucketSpec> {
  const out: Record<string, BucketSpec> = { ...known };
  if (value === undefined || value.trim() === '') return out;
  for (const part of value.split(',')) {
    const item = part.trim();
    if (item === '') continue;
    const m = /^([a-z0-9-]+)=([0-9]*\.?[0-9]+):([0-9]+)$/.exec(item);
    if (m === null) {
      throw new RateLimitError(RateLimitErrorCode.CONFIG, `RATE_LIMITS: ${JSON.stringify(item)} is not name=rate:burst`);
    }
    const [, name = '', rate = '', burst = ''] = m;
    if (!Object.hasOwn(known, name)) {
      throw new RateLimitError(RateLimitErrorCode.CONFIG, `RATE_LIMITS: unknown bucket ${JSON.stringify(name)}`);
    }
    const spec = { rate: Number(rate), burst: Number(burst) };
    validateSpec(name, spec);
    out[name] = spec;
  }
  return out;
}

// ── Client addresses ────────────────────────────────────────────────────────────────────────

/**
 * Which X-Forwarded-For hops to believe. `false`: none (the socket peer is the client).
 * `true`: all (the leftmost entry; only behind a proxy that overwrites the header).
 * A number n: the n proxies nearest to us. A list: proxies whose address is in one of these
 * addresses, CIDR ranges or presets (`loopback`, `private`, `linklocal`).
 */
export type TrustProxy = boolean | number | TrustedProxyList;

/** A compiled list of trusted proxy ranges (see parseTrustProxy). */
export class TrustedProxyList {
  readonly #list = new BlockList();
  readonly entries: readonly string[];
  constructor(entries: readonly string[]) {
    this.entries = [...entries];
    for (const raw of entries) {
      const entry = raw.trim();
      const preset = TRUST_PRESETS[entry];
      for (const e of preset ?? [entry]) this.#add(e, raw);
    }
  }
  #add(entry: string, raw: string): void {
    const slash = entry.indexOf('/');
    const addr = slash === -1 ? entry : entry.slice(0, slash);
    const family = isIP(addr);
    if (family === 0) throw new RateLimitError(RateLimitErrorCode.CONFIG, `TRUST_PROXY: ${JSON.stringify(raw)} is not an address, CIDR or preset`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (slash === -1) {
      this.#list.addAddress(addr, type);
      return;
    }
    const prefixText = entry.slice(slash + 1);
    const prefix = Number(prefixText);
    if (!/^[0-9]+$/.test(prefixText) || prefix > (family === 4 ? 32 : 128)) {
      throw new RateLimitError(RateLimitErrorCode.CONFIG, `TRUST_PROXY: ${JSON.stringify(raw)} has an invalid prefix length`);
    }
    this.#list.addSubnet(addr, prefix, type);
  }
  has(address: string): boolean {
    const norm = normalizeAddress(address);
    if (norm === undefined) return false;
    return this.#list.check(norm, isIPv4(norm) ? 'ipv4' : 'ipv6');
  }
}

const TRUST_PRESETS: Readonly<Record<string, readonly string[]>> = {
  loopback: ['127.0.0.0/8', '::1/128'],
  private: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
  linklocal: ['169.254.0.0/16', 'fe80::/10'],
};

/**
 * Parse the TRUST_PROXY setting: unset/empty/`false` → false; `true` → true; an integer → that
 * many hops; otherwise a comma-separated list of addresses, CIDRs and presets.
 */
export function parseTrustProxy(value: string | undefined): TrustProxy {
  const v = (value ?? '').trim();
  if (v === '' || v.toLowerCase() === 'false') return false;
  if (v.toLowerCase() === 'true') return true;
  if (/^[0-9]+$/.test(v)) return Number(v);
  return new TrustedProxyList(v.split(',').map((s) => s.trim()).filter((s) => s !== ''));
}

/**
 * Strip an IPv6 zone, brackets and the IPv4-mapped prefix (a dual-stack socket reports IPv4 peers
 * as ::ffff:a.b.c.d, which must share the IPv4 peer's bucket). Undefined if not an IP address.
 */
export function normalizeAddress(address: string | undefined): string | undefined {
  if (address === undefined) return undefined;
  let a = address.trim();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  const zone = a.indexOf('%');
  if (zone !== -1) a = a.slice(0, zone);
  const family = isIP(a);
  if (family === 4) return a;
  if (family !== 6) return undefined;
  const groups = ipv6Groups(a);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const hi = groups[6] ?? 0;
    const lo = groups[7] ?? 0;
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return a.toLowerCase();
}

/** The eight 16-bit groups of a valid IPv6 address (RFC 4291 §2.2 text forms). */
function ipv6Groups(address: string): number[] {
  let a = address;
  const lastColon = a.lastIndexOf(':');
  const tail = a.slice(lastColon + 1);
  if (tail.includes('.')) {
    const o = tail.split('.').map(Number);
    const hi = (((o[0] ?? 0) << 8) | (o[1] ?? 0)).toString(16);
    const lo = (((o[2] ?? 0) << 8) | (o[3] ?? 0)).toString(16);
    a = `${a.slice(0, lastColon + 1)}${hi}:${lo}`;
  }
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => Number.parseInt(g, 16)));
  const dbl = a.indexOf('::');
  if (dbl === -1) return parse(a);
  const head = parse(a.slice(0, dbl));
  const rest = parse(a.slice(dbl + 2));
  return [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
}

/**
 * The rate-limit key of an address: `4:a.b.c.d` for IPv4 (and IPv4-mapped IPv6), `6:` plus the
 * /64 prefix for IPv6, `unknown` when there is no usable address (all such clients share one bucket).
 */
export function clientKey(address: string | undefined): string {
  const norm = normalizeAddress(address);
  if (norm === undefined) return 'unknown';
  if (isIPv4(norm)) return `4:${norm}`;
  const g = ipv6Groups(norm);
  return `6:${g.slice(0, 4).map((x) => x.toString(16)).join(':')}::/64`;
}

/**
 * The client's address: the socket peer, or — only if the peer is a trusted proxy — the nearest
 * untrusted hop of X-Forwarded-For. A malformed hop stops the walk at the last well-formed one,
 * so a client cannot pick its own bucket by writing garbage into the header.
 */
export function clientAddress(remoteAddress: string | undefined, forwardedFor: string | readonly string[] | undefined, trust: TrustProxy): string | undefined {
  const peer = normalizeAddress(remoteAddress);
  if (trust === false || trust === 0 || forwardedFor === undefined) return peer;
  const header = typeof forwardedFor === 'string' ? forwardedFor : forwardedFor.join(',');
  const hops = header.split(',').map((h) => h.trim()).filter((h) => h !== '');
  if (hops.length === 0) return peer;
  // chain[0] is the original client as claimed; the last element is the socket peer.
  const chain = [...hops, remoteAddress ?? ''];
  let i = chain.length - 1;
  let current = peer;
  if (current === undefined) return undefined;
  let hopsLeft = typeof trust === 'number' ? trust : Number.POSITIVE_INFINITY;
  while (i > 0 && hopsLeft > 0) {
    if (trust instanceof TrustedProxyList && !trust.has(current)) break;
    const next = normalizeAddress(chain[i - 1]);
    if (next === undefined) break;
    current = next;
    i--;
    hopsLeft--;
  }
  return current;
}

// ── Fastify plugin ──────────────────────────────────────────────────────────────────────────

/** Per-route setting, in the route's `config.rateLimit`: which bucket(s) a request spends from. */
export type RouteRateLimit = false | string | readonly (string | { readonly bucket: string; readonly cost?: number })[];

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Buckets this route spends from (default: the plugin's defaultBuckets); false: none. */
    rateLimit?: RouteRateLimit;
  }
}

export interface RateLimitPluginOptions {
  readonly limiter: RateLimiter;
  readonly trustProxy: TrustProxy;
  /** Buckets for routes without `config.rateLimit` (and for 404s). Default: ['http']. */
  readonly defaultBuckets?: readonly string[];
  /** Called for every denied request (e.g. to count it in metrics; the bucket name is a bounded label). */
  readonly onLimited?: (bucket: string) => void;
}

/** The rate-limit key of a fastify request, honouring the trust setting. */
export function requestClientKey(request: FastifyRequest, trust: TrustProxy): string {
  return clientKey(clientAddress(request.raw.socket.remoteAddress, request.headers['x-forwarded-for'], trust));
}

/** Answer a request with 429, Retry-After and the standard error body. */
export function sendRateLimited(reply: FastifyReply, decision: RateLimitDecision): FastifyReply {
  const err = rateLimitedError(decision);
  return reply.code(429).header('retry-after', String(err.retryAfterSeconds)).send(err.toJSON());
}

/**
 * Fastify plugin: every request spends from its route's buckets in onRequest (before the body is
 * read, so a limited client costs us no parsing). It is registered without encapsulation
 * (`skip-override`, what fastify-plugin does) so that it covers every route of the app.
 */
export async function rateLimitPlugin(app: FastifyInstance, options: RateLimitPluginOptions): Promise<void> {
  const { limiter, trustProxy, onLimited } = options;
  const defaults = options.defaultBuckets ?? ['http'];
  for (const b of defaults) {
    if (limiter.spec(b) === undefined) throw new RateLimitError(RateLimitErrorCode.CONFIG, `default bucket ${JSON.stringify(b)} is not configured`);
  }
  app.addHook('onRequest', async (request, reply) => {
    const cfg = request.routeOptions.config.rateLimit;
    if (cfg === false) return;
    const list = cfg === undefined ? defaults : typeof cfg === 'string' ? [cfg] : cfg;
    if (list.length === 0) return;
    const key = requestClientKey(request, trustProxy);
    const decision = limiter.takeAll(list.map((b) => (typeof b === 'string' ? { bucket: b, key } : { bucket: b.bucket, key, cost: b.cost ?? 1 })));
    if (!decision.allowed) {
      onLimited?.(decision.bucket);
      return sendRateLimited(reply, decision);
    }
  });
}
(rateLimitPlugin as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true;

/**
 * Refuse a WebSocket upgrade (handled on the raw 'upgrade' event, outside fastify's routing) with
 * a plain HTTP 429 and the standard error body, then close the socket.
 */
export function rejectUpgrade(socket: Duplex, decision: RateLimitDecision): void {
  const err = rateLimitedError(decision);
  const body = JSON.stringify(err.toJSON());
  socket.end(
    'HTTP/1.1 429 Too Many Requests\r\n' +
      `Retry-After: ${err.retryAfterSeconds}\r\n` +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}

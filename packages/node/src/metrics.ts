/**
 * Prometheus metrics of the node (prom-client, text exposition format 0.0.4).
 *
 * Privacy rule: no label ever carries a mailbox id, device id, username, token, address or any
 * other per-user value — only small fixed enums (envelope class, lane, reason, bucket name,
 * route template). Counts per user would let whoever scrapes the node (and every Prometheus
 * that stores the series forever) reconstruct who talks when. Label values are checked against
 * their enum at run time, so a caller passing a raw value by mistake gets `other`, not a new series.
 *
 * Exposure is never public by default: either a separate listener on METRICS_HOST:METRICS_PORT
 * (default loopback) or the main listener's /metrics behind a bearer token (METRICS_TOKEN).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { clientErrorHandler } from './http-errors.js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

// ── Errors ──────────────────────────────────────────────────────────────────────────────────

export const MetricsErrorCode = {
  /** /metrics was requested without the right bearer token. */
  UNAUTHORIZED: 'MW_METRICS_UNAUTHORIZED',
  /** Invalid METRICS_* settings (bad port, token too short to be a secret). */
  CONFIG: 'MW_METRICS_CONFIG',
} as const;
export type MetricsErrorCode = (typeof MetricsErrorCode)[keyof typeof MetricsErrorCode];

export class MetricsError extends Error {
  override readonly name = 'MetricsError';
  constructor(
    readonly code: MetricsErrorCode,
    message: string,
  ) {
    super(message);
  }
  toJSON(): { error: { code: MetricsErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

// ── Label enums (the only values a label may take) ──────────────────────────────────────────

export const ENVELOPE_CLASSES = ['durable', 'ephemeral'] as const;
export type EnvelopeClass = (typeof ENVELOPE_CLASSES)[number];
/** How a send was admitted: with a delivery token, or through the first-contact lane. */
export const SEND_LANES = ['token', 'first_contact'] as const;
export type SendLane = (typeof SEND_LANES)[number];
export const REJECT_REASONS = ['too_large', 'malformed', 'quota', 'bad_token', 'rate_limited', 'unknown_mailbox', 'busy', 'other'] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];
export const AUTH_FAILURE_REASONS = ['bad_signature', 'stale', 'replayed', 'wrong_node', 'unknown_device', 'malformed', 'other'] as const;
export type AuthFailureReason = (typeof AUTH_FAILURE_REASONS)[number];
export const CONNECTION_KINDS = ['device', 'anonymous'] as const;
export type ConnectionKind = (typeof CONNECTION_KINDS)[number];
export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'OTHER'] as const;
export const BACKUP_RESULTS = ['success', 'failure'] as const;
export type BackupResult = (typeof BACKUP_RESULTS)[number];

function oneOf<T extends string>(allowed: readonly T[], value: string, fallback: T): T {
  return (allowed as readonly string[]).includes(value) ? (value as T) : fallback;
}
/** The index of `value` in `allowed`, or of `fallback` (oneOf, as an index into per-label counts). */
function indexOf<T extends string>(allowed: readonly T[], value: string, fallback: T): number {
  const i = (allowed as readonly string[]).indexOf(value);
  return i >= 0 ? i : allowed.indexOf(fallback);
}

/** Seconds buckets for a durable send (fsync-bound: sub-millisecond to a slow disk's tens of ms). */
const SEND_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
/** Seconds from acceptance to delivery: immediate for live devices, hours or days for offline ones. */
const DELIVERY_SECONDS_BUCKETS = [0.005, 0.05, 0.5, 5, 60, 600, 3600, 6 * 3600, 86_400, 7 * 86_400, 30 * 86_400];
const HTTP_SECONDS_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30];

const PROMTOOL_INCOMPATIBLE_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export interface NodeMetricsOptions {
  /** Also export prom-client's process and Node.js runtime metrics (default true). */
  readonly defaultMetrics?: boolean;
}

/** Every metric of the node, on a private registry (never prom-client's global one). */
export class NodeMetrics {
  readonly registry = new Registry();

  readonly connectionsOpen = new Gauge({
    name: 'meshwhisper_connections_open',
    help: 'WebSocket connections currently open, by kind (authenticated device or anonymous sender)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly connectionsOpened = new Counter({
    name: 'meshwhisper_connections_opened_total',
    help: 'WebSocket connections accepted since start, by kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  /**
   * Counts of the two per-message counters, by label index, folded into prom-client when it reads
   * them (its `collect` hook: every scrape, get() and getMetricsAsJSON()). prom-client's inc() with
   * labels builds and hashes a label key on every call; at 10,000 msgs/s that was ~4 % of the event
   * loop's allocations.
   */
  readonly #accepted = new Float64Array(ENVELOPE_CLASSES.length * SEND_LANES.length);
  readonly #delivered = new Float64Array(ENVELOPE_CLASSES.length);
  readonly envelopesAccepted: Counter<'class' | 'lane'> = new Counter({
    name: 'meshwhisper_envelopes_accepted_total',
    help: 'Envelopes accepted from senders (durable ones after commit), by class and admission lane',
    labelNames: ['class', 'lane'] as const,
    registers: [this.registry],
    collect: () => {
      const a = this.#accepted;
      for (let c = 0; c < ENVELOPE_CLASSES.length; c++) {
        for (let l = 0; l < SEND_LANES.length; l++) {
          const n = a[c * SEND_LANES.length + l]!;
          if (n === 0) continue;
          a[c * SEND_LANES.length + l] = 0;
          this.envelopesAccepted.inc({ class: ENVELOPE_CLASSES[c]!, lane: SEND_LANES[l]! }, n);
        }
      }
    },
  });
  readonly envelopesRejected = new Counter({
    name: 'meshwhisper_envelopes_rejected_total',
    help: 'Envelopes refused, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly envelopesDelivered: Counter<'class'> = new Counter({
    name: 'meshwhisper_envelopes_delivered_total',
    help: 'Envelopes acknowledged by the recipient device (durable) or handed to a live connection (ephemeral)',
    labelNames: ['class'] as const,
    registers: [this.registry],
    collect: () => {
      const d = this.#delivered;
      for (let c = 0; c < ENVELOPE_CLASSES.length; c++) {
        const n = d[c]!;
        if (n === 0) continue;
        d[c] = 0;
        this.envelopesDelivered.inc({ class: ENVELOPE_CLASSES[c]! }, n);
      }
    },
  });
  readonly envelopesExpired = new Counter({
    name: 'meshwhisper_envelopes_expired_total',
    help: 'Stored envelopes deleted unread because their retention period ended',
    registers: [this.registry],
  });
  readonly sendCongestion = new Counter({
    name: 'meshwhisper_send_congestion_total',
    help: 'Times the backlog of durable sends waiting for their commit reached its high mark (sending WebSockets paused their reads until it was down to half)',
    registers: [this.registry],
  });
  readonly envelopesUnstored = new Counter({
    name: 'meshwhisper_envelopes_unstored_total',
    help: 'Durable envelopes delivered ahead of their group commit and acknowledged by their device before that commit started: the sender was answered and the envelope never written (WRITE_ACKED_AHEAD=false)',
    registers: [this.registry],
  });
  readonly envelopesEvicted = new Counter({
    name: 'meshwhisper_envelopes_evicted_total',
    help: 'Stored envelopes deleted unread to keep a mailbox within its quota',
    registers: [this.registry],
  });
  #queueSource: (() => Promise<{ envelopes: number; bytes: number }>) | undefined;
  #rateLimitKeysSource: (() => number) | undefined;

  readonly queueDepth: Gauge = new Gauge({
    name: 'meshwhisper_queue_envelopes',
    help: 'Durable envelopes stored and not yet acknowledged, over all mailboxes',
    // Workers of a multi-process node report the same database: not summed.
    aggregator: 'max',
    registers: [this.registry],
    collect: () => this.#readQueue(),
  });
  readonly queueBytes: Gauge = new Gauge({
    name: 'meshwhisper_queue_bytes',
    help: 'Bytes of stored, unacknowledged envelope ciphertext over all mailboxes',
    // Workers of a multi-process node report the same database: not summed.
    aggregator: 'max',
    registers: [this.registry],
    collect: () => this.#readQueue(),
  });
  readonly storeWritable = new Gauge({
    name: 'meshwhisper_store_writable',
    help: '1 while the store takes new mail; 0 when it cannot (reason label: disk_full, read_only, io_error, writer_failed) — acks still work on a full disk',
    labelNames: ['reason'] as const,
    // Workers of a multi-process node report the same database: not summed.
    aggregator: 'min',
    registers: [this.registry],
  });
  readonly storeWriterDeaths = new Counter({
    name: 'meshwhisper_store_writer_deaths_total',
    help: "Times the SQLite store's writer thread died and was restarted (each: sends and acks refused until the restart)",
    registers: [this.registry],
  });
  readonly busConnected = new Gauge({
    name: 'meshwhisper_bus_connected',
    help: 'Cluster (NATS_URL set): 1 while this instance is connected to NATS; 0 while live delivery between instances falls back to store reads',
    // Workers of a multi-process node report the same database: not summed.
    aggregator: 'min',
    registers: [this.registry],
  });
  readonly sendDuration = new Histogram({
    name: 'meshwhisper_send_duration_seconds',
    help: 'Time from receiving a send to acknowledging it to the sender (durable commit included)',
    buckets: SEND_SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly deliveryLatency = new Histogram({
    name: 'meshwhisper_delivery_latency_seconds',
    help: 'Time from accepting a durable envelope to the recipient acknowledging it',
    buckets: DELIVERY_SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly authFailures = new Counter({
    name: 'meshwhisper_auth_failures_total',
    help: 'Failed mailbox authentications, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly rateLimited = new Counter({
    name: 'meshwhisper_rate_limited_total',
    help: 'Requests, upgrades and frames refused by a rate-limit bucket, by bucket name',
    labelNames: ['bucket'] as const,
    registers: [this.registry],
  });
  readonly rateLimitKeys: Gauge = new Gauge({
    name: 'meshwhisper_rate_limit_tracked_keys',
    help: 'Client addresses and targets currently tracked by the rate limiter',
    registers: [this.registry],
    collect: () => {
      if (this.#rateLimitKeysSource !== undefined) this.rateLimitKeys.set(this.#rateLimitKeysSource());
    },
  });
  readonly httpRequests = new Histogram({
    name: 'meshwhisper_http_request_duration_seconds',
    help: 'HTTP request durations by method, route template and status class',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: HTTP_SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly pushSent = new Counter({
    name: 'meshwhisper_push_sent_total',
    help: 'Push wakes accepted by a push service (Web Push, APNs, FCM), one per burst per offline device',
    registers: [this.registry],
  });
  readonly pushFailed = new Counter({
    name: 'meshwhisper_push_failed_total',
    help: 'Push wakes given up: refused by the push service, retries exhausted, or dropped (queue full, shutdown)',
    registers: [this.registry],
  });
  readonly pushPruned = new Counter({
    name: 'meshwhisper_push_pruned_total',
    help: 'Push endpoints deleted because the push service reported them gone (404/410, APNs Unregistered, FCM UNREGISTERED)',
    registers: [this.registry],
  });
  readonly backups = new Counter({
    name: 'meshwhisper_backups_total',
    help: 'Database backups attempted, by result',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly backupDuration = new Histogram({
    name: 'meshwhisper_backup_duration_seconds',
    help: 'Duration of successful database backups',
    buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 1800],
    registers: [this.registry],
  });
  readonly backupLastSuccess = new Gauge({
    name: 'meshwhisper_backup_last_success_timestamp_seconds',
    help: 'Unix time of the last successful database backup (at start: the newest backup found in BACKUP_DIR; 0: none)',
    // Workers of a multi-process node report the same database: not summed.
    aggregator: 'max',
    registers: [this.registry],
  });

  constructor(options: NodeMetricsOptions = {}) {
    if (options.defaultMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry });
      // prom-client exports these sums as gauges named *_total, which `promtool check metrics`
      // rejects (only counters may end in _total); the per-type gauges without the suffix stay.
      for (const name of PROMTOOL_INCOMPATIBLE_DEFAULTS) this.registry.removeSingleMetric(name);
    }
    this.backupLastSuccess.set(0);
  }

  // Typed recorders: label values are clamped to their enums so no per-user value can become a series.

  connectionOpened(kind: ConnectionKind): void {
    const k = oneOf(CONNECTION_KINDS, kind, 'anonymous');
    this.connectionsOpened.inc({ kind: k });
    this.connectionsOpen.inc({ kind: k });
  }
  connectionClosed(kind: ConnectionKind): void {
    this.connectionsOpen.dec({ kind: oneOf(CONNECTION_KINDS, kind, 'anonymous') });
  }
  envelopeAccepted(cls: EnvelopeClass, lane: SendLane, sendSeconds?: number): void {
    const i = indexOf(ENVELOPE_CLASSES, cls, 'durable') * SEND_LANES.length + indexOf(SEND_LANES, lane, 'first_contact');
    this.#accepted[i] = this.#accepted[i]! + 1;
    if (sendSeconds !== undefined) this.sendDuration.observe(sendSeconds);
  }
  envelopeRejected(reason: RejectReason): void {
    this.envelopesRejected.inc({ reason: oneOf(REJECT_REASONS, reason, 'other') });
  }
  envelopesDeliveredCount(cls: EnvelopeClass, count = 1): void {
    const i = indexOf(ENVELOPE_CLASSES, cls, 'durable');
    this.#delivered[i] = this.#delivered[i]! + count;
  }
  authFailed(reason: AuthFailureReason): void {
    this.authFailures.inc({ reason: oneOf(AUTH_FAILURE_REASONS, reason, 'other') });
  }
  /** Count a refusal; `bucket` must be a configured bucket name (a bounded set), never a key. */
  rateLimitedBy(bucket: string): void {
    this.rateLimited.inc({ bucket: /^[a-z0-9-]{1,40}$/.test(bucket) ? bucket : 'other' });
  }
  backupFinished(result: BackupResult, seconds?: number, at: Date = new Date()): void {
    this.backups.inc({ result: oneOf(BACKUP_RESULTS, result, 'failure') });
    if (result === 'success') {
      if (seconds !== undefined) this.backupDuration.observe(seconds);
      this.backupLastSuccess.set(Math.floor(at.getTime() / 1000));
    }
  }

  /**
   * Read gauges from their source at scrape time (queue depth is a COUNT the store keeps cheap;
   * the rate limiter knows its size). A source that throws leaves the last value: a scrape must
   * not fail because the store is busy.
   */
  setSources(sources: { queue?: () => Promise<{ envelopes: number; bytes: number }>; rateLimitKeys?: () => number }): void {
    if (sources.queue !== undefined) this.#queueSource = sources.queue;
    if (sources.rateLimitKeys !== undefined) this.#rateLimitKeysSource = sources.rateLimitKeys;
  }

  async #readQueue(): Promise<void> {
    if (this.#queueSource === undefined) return;
    try {
      const q = await this.#queueSource();
      this.queueDepth.set(q.envelopes);
      this.queueBytes.set(q.bytes);
    } catch {
      /* keep the last values */
    }
  }

  /**
   * Fastify plugin recording request durations by route *template* (`/v1/keys/:mailbox`), never
   * the raw URL, which contains mailbox ids. Unmatched requests count as route "unmatched".
   */
  httpPlugin(): (app: FastifyInstance) => Promise<void> {
    const histogram = this.httpRequests;
    const plugin = async (app: FastifyInstance): Promise<void> => {
      app.addHook('onResponse', async (request, reply) => {
        const route = request.routeOptions.url ?? 'unmatched';
        const status = `${Math.floor(reply.statusCode / 100)}xx`;
        const method = oneOf(HTTP_METHODS, request.method, 'OTHER');
        histogram.observe({ method, route, status }, reply.elapsedTime / 1000);
      });
    };
    (plugin as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true;
    return plugin;
  }

  #renderer: (() => Promise<string>) | undefined;

  /** A worker of a multi-process node renders the primary's aggregate of every worker instead of its own registry. */
  renderWith(renderer: () => Promise<string>): void {
    this.#renderer = renderer;
  }

  /** The exposition text. */
  async render(): Promise<string> {
    return this.#renderer ? this.#renderer() : this.registry.metrics();
  }
}

// ── Exposure ────────────────────────────────────────────────────────────────────────────────

/**
 * A bearer token must be long enough not to be guessable online: 32 characters of e.g.
 * `openssl rand -hex 32` output carry ≥ 128 bits.
 */
export const METRICS_TOKEN_MIN_LENGTH = 32;
/** Default separate metrics listener: loopback, so nothing is exposed until the operator says so. */
export const DEFAULT_METRICS_HOST = '127.0.0.1';
export const DEFAULT_METRICS_PORT = 9464;

/** Where metrics are served, resolved from METRICS_HOST / METRICS_PORT / METRICS_TOKEN. */
export interface MetricsExposure {
  /** Separate listener (undefined: none). */
  readonly listener: { readonly host: string; readonly port: number } | undefined;
  /** Bearer token required on every /metrics request, on both listeners (undefined: none). */
  readonly token: string | undefined;
  /** Serve /metrics on the main (public) listener too — only ever when a token is set. */
  readonly onMainListener: boolean;
  /** Operator-facing warnings (e.g. a tokenless listener bound to a non-loopback address). */
  readonly warnings: readonly string[];
}

/**
 * Resolve the settings. METRICS_PORT: a port for the separate listener, `off` for none (default
 * 9464). METRICS_HOST: its bind address (default 127.0.0.1). METRICS_TOKEN: a bearer token; when
 * set, /metrics is also served on the main listener and every scrape must present it.
 */
export function resolveMetricsExposure(env: { METRICS_HOST?: string; METRICS_PORT?: string; METRICS_TOKEN?: string }): MetricsExposure {
  const warnings: string[] = [];
  const token = env.METRICS_TOKEN === undefined || env.METRICS_TOKEN === '' ? undefined : env.METRICS_TOKEN;
  if (token !== undefined && token.length < METRICS_TOKEN_MIN_LENGTH) {
    throw new MetricsError(MetricsErrorCode.CONFIG, `METRICS_TOKEN must be at least ${METRICS_TOKEN_MIN_LENGTH} characters`);
  }
  const portText = (env.METRICS_PORT ?? '').trim();
  let listener: MetricsExposure['listener'];
  if (portText.toLowerCase() !== 'off') {
    const port = portText === '' ? DEFAULT_METRICS_PORT : Number(portText);
    if (!/^[0-9]*$/.test(portText) || !Number.isInteger(port) || port < 0 || port > 65_535) {
      throw new MetricsError(MetricsErrorCode.CONFIG, 'METRICS_PORT must be a port number or "off"');
    }
    const host = (env.METRICS_HOST ?? '').trim() || DEFAULT_METRICS_HOST;
    listener = { host, port };
    if (token === undefined && !isLoopbackHost(host)) {
      warnings.push(`metrics are served without a token on ${host}:${port}; make sure only your Prometheus can reach it, or set METRICS_TOKEN`);
    }
  }
  return { listener, token, onMainListener: token !== undefined, warnings };
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

function tokenDigest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** Constant-time check of an Authorization header against the token (both hashed to equal length). */
export function bearerMatches(authorization: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  const presented = m?.[1] ?? '';
  return timingSafeEqual(tokenDigest(presented), tokenDigest(token)) && presented !== '';
}

const UNAUTHORIZED_BODY = JSON.stringify(new MetricsError(MetricsErrorCode.UNAUTHORIZED, 'a valid bearer token is required').toJSON());

async function answer(metrics: NodeMetrics, token: string | undefined, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
    res.writeHead(404, { 'content-type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify({ error: { code: 'MW_NOT_FOUND', message: 'only GET /metrics is served here' } }));
    return;
  }
  if (token !== undefined && !bearerMatches(req.headers.authorization, token)) {
    res.writeHead(401, { 'content-type': 'application/json; charset=utf-8', 'www-authenticate': 'Bearer' });
    res.end(UNAUTHORIZED_BODY);
    return;
  }
  const body = await metrics.render();
  res.writeHead(200, { 'content-type': metrics.registry.contentType });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** A running separate metrics listener. */
export interface MetricsServer extends AsyncDisposable {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

/** Start the separate metrics listener (GET /metrics only). */
export async function startMetricsServer(metrics: NodeMetrics, options: { host: string; port: number; token?: string | undefined }): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    answer(metrics, options.token, req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify({ error: { code: 'MW_INTERNAL', message: 'metrics collection failed' } }));
    });
  });
  // Requests Node's parser refuses get the documented error shape here too (not a bare 400).
  const quiet = { log: { error: () => undefined, debug: () => undefined } };
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => clientErrorHandler.call(quiet, err, socket));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const close = (): Promise<void> =>
    new Promise((resolve, reject) => {
      server.close((err) => (err ? reject(err) : resolve()));
      server.closeAllConnections();
    });
  return { address: server.address() as AddressInfo, close, [Symbol.asyncDispose]: close };
}

/**
 * Fastify plugin serving GET /metrics on the main listener behind the bearer token. Refuses to
 * register without a token: the main listener is public.
 */
export function metricsRoutePlugin(metrics: NodeMetrics, token: string): (app: FastifyInstance) => Promise<void> {
  if (token.length < METRICS_TOKEN_MIN_LENGTH) {
    throw new MetricsError(MetricsErrorCode.CONFIG, `METRICS_TOKEN must be at least ${METRICS_TOKEN_MIN_LENGTH} characters`);
  }
  return async (app) => {
    app.get('/metrics', async (request, reply) => {
      if (!bearerMatches(request.headers.authorization, token)) {
        return reply.code(401).header('www-authenticate', 'Bearer').type('application/json; charset=utf-8').send(UNAUTHORIZED_BODY);
      }
      return reply.type(metrics.registry.contentType).send(await metrics.render());
    });
  };
}

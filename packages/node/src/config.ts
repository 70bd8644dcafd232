/**
 * The node's configuration: ONE schema, every setting an environment variable with a default
 * (docs/self-hosting.md lists them all; a test fails if one is missing there).
 */
import { parseCorsOrigins } from './cors.js';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { resolveMetricsExposure } from './metrics.js';
import type { MetricsExposure } from './metrics.js';
import { parseBucketOverrides, parseTrustProxy } from './rate-limit.js';
import type { BucketSpec, TrustProxy } from './rate-limit.js';
import { DEFAULT_PUSH_COALESCE_MS, DEFAULT_WEBPUSH_ALLOWED_HOSTS } from './push/constants.js';
import { PRUDENCE_DIST } from './routes/web-app.js';
import type { WebAppOptions } from './routes/web-app.js';
import { parseAppleId, parseBundleId, parseHostPatterns, parseHttpsUrl, parseOptionalPath, parseVapidPrivateKey, parseVapidPublicKey, parseVapidSubject } from './push/settings.js';

export const NodeConfigErrorCode = {
  /** An environment variable has a value the schema does not accept (operator error, at startup). */
  INVALID: 'MW_NODE_CONFIG_INVALID',
} as const;

export class NodeConfigError extends Error {
  override readonly name = 'NodeConfigError';
  readonly code = NodeConfigErrorCode.INVALID;
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
  }
}

export interface Setting<T> {
  /** Environment variable name. */
  readonly env: string;
  /** Default, as the text an operator would write. */
  readonly default: string;
  readonly description: string;
  readonly parse: (raw: string, env: Readonly<Record<string, string | undefined>>) => T;
}

const setting = <T>(env: string, def: string, description: string, parse: Setting<T>['parse']): Setting<T> => ({ env, default: def, description, parse });

function int(min: number, max: number): (raw: string) => number {
  return (raw) => {
    const n = Number(raw);
    if (!/^[0-9]+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) throw new RangeError(`must be an integer in [${min}, ${max}]`);
    return n;
  };
}
const text = (raw: string): string => raw;
const bool = (raw: string): boolean => {
  const v = raw.trim().toLowerCase();
  if (v === 'true' || v === '1' || v === 'yes') return true;
  if (v === 'false' || v === '0' || v === 'no' || v === '') return false;
  throw new RangeError('must be true or false');
};
const HOUR = 3600 * 1000;
const DAY = 24 * HOUR;
const DEFAULT_DATA_DIR = './data';
const MB = 1024 * 1024;

/** LOG_LEVEL values (pino's levels, most severe first, and silent). */
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Username ownership policies (docs/spec/node-protocol.md §Usernames). */
export type UsernamePolicy = 'signed' | 'last-writer-wins';

function namespaces(raw: string): ReadonlyMap<string, UsernamePolicy> {
  const out = new Map<string, UsernamePolicy>();
  for (const part of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([a-z0-9][a-z0-9_.-]{0,63}):(signed|last-writer-wins)$/.exec(part);
    if (!m) throw new RangeError(`"${part}" is not namespace:signed or namespace:last-writer-wins`);
    out.set(m[1]!, m[2] as UsernamePolicy);
  }
  return out;
}

/**
 * Every setting. Sizes in bytes, durations in the unit the name says.
 */
export const CONFIG_SCHEMA = {
  port: setting('PORT', '8080', 'TCP port of the HTTP and WebSocket listener (0: any free port).', int(0, 65_535)),
  host: setting('HOST', '0.0.0.0', 'Address to listen on (0.0.0.0: all IPv4 interfaces; :: for IPv6 too).', text),
  dataDir: setting('DATA_DIR', DEFAULT_DATA_DIR, 'Directory for the SQLite database, the node key, media and archive blobs. Created if missing.', (raw) => resolve(raw)),
  logLevel: setting('LOG_LEVEL', 'info', 'fatal, error, warn, info, debug, trace or silent.', (raw) => {
    if (!(LOG_LEVELS as readonly string[]).includes(raw)) throw new RangeError(`unknown level ${JSON.stringify(raw)}; use one of ${LOG_LEVELS.join(', ')}`);
    return raw;
  }),
  retentionMs: setting('RETENTION_DAYS', '30', 'Days an undelivered envelope is kept before it expires (the device then gets a gap notice).', (raw) => int(1, 3650)(raw) * DAY),
  mailboxMaxMessages: setting('MAILBOX_MAX_MESSAGES', '10000', 'Stored envelopes per mailbox; beyond it the oldest tokenless, then the oldest envelopes are evicted (gap notice).', int(10, 10_000_000)),
  mailboxMaxBytes: setting('MAILBOX_MAX_BYTES', String(100 * MB), 'Stored envelope bytes per mailbox (same eviction rule).', int(MB, 2 ** 40)),
  firstContactMaxMessages: setting('FIRST_CONTACT_MAX_MESSAGES', '100', 'Stored tokenless (first-contact) envelopes per mailbox; further tokenless sends are refused until it drains.', int(1, 1_000_000)),
  wsMaxConnectionsPerAddress: setting(
    'WS_MAX_CONNECTIONS_PER_ADDRESS',
    '256',
    'Open WebSocket connections (device and anonymous) per client address (IPv6: per /64); further upgrades get 429 until one closes. 0 = unlimited. Raise it for many users behind one NAT or proxy address.',
    int(0, 10_000_000),
  ),
  wsHandshakeTimeoutMs: setting(
    'WS_HANDSHAKE_TIMEOUT_SECONDS',
    '10',
    'Seconds a new WebSocket has to finish its handshake (clientHello; on /v1/device also authenticate); then it is closed with code 4005.',
    (raw) => int(1, 600)(raw) * 1000,
  ),
  wsPingIntervalMs: setting(
    'WS_PING_INTERVAL_SECONDS',
    '30',
    'Seconds between WebSocket pings to each connection; one that has not answered the previous ping by the next is closed (its stored mail stays). The pings are spread over the interval. Keep it below the idle timeout of any proxy or NAT in front of the node.',
    (raw) => int(1, 3600)(raw) * 1000,
  ),
  commitIntervalMs: setting(
    'COMMIT_INTERVAL_MS',
    '5',
    'Under load (a group commit of 8 or more durable sends), the next group commit starts at least this many milliseconds after the previous one started, so that more envelopes share one transaction and fsync: less CPU per message. A sender then waits up to this much longer for its answer; a recipient connected to the same process gets its copy before the commit anyway. 0: each group commits as soon as the previous commit allows.',
    int(0, 1000),
  ),
  storeWriterNice: setting(
    'STORE_WRITER_NICE',
    '10',
    'STORE=sqlite on Linux: how much the store writer thread raises its own nice value above the process\'s (0–19), so that when more threads are runnable than there are cores the event loop gets the core first (its delays are every message\'s latency; the writer\'s work is batched). 0: the writer runs at the event loop\'s priority.',
    int(0, 19),
  ),
  writeAckedAhead: setting(
    'WRITE_ACKED_AHEAD',
    'false',
    'false: a durable envelope that reached its recipient ahead of its group commit, and that the device acknowledged before that commit started, is never written to disk; its sender is answered at the acknowledgement (the device has it). true: every durable envelope is written, and deleted again by its acknowledgement after the commit.',
    bool,
  ),
  aheadHoldMs: setting(
    'AHEAD_HOLD_MS',
    '40',
    'With WRITE_ACKED_AHEAD=false: a durable envelope that reached its recipient\'s live connection ahead of its group commit waits up to this many milliseconds for the device\'s acknowledgement before it is written; acknowledged in time, it is never written to disk and its sender is answered then. Otherwise it is written, and its sender answered, at most this much later than without the hold. Envelopes for a recipient that is not connected are never held. 0: nothing is held.',
    int(0, 200),
  ),
  deliveryWindow: setting('DELIVERY_WINDOW', '16384', 'Envelopes sent to a device and not yet acknowledged; delivery pauses at this bound (backpressure).', int(1, 100_000)),
  mediaMaxBytes: setting('MEDIA_MAX_BYTES', String(100 * MB), 'Largest media blob.', int(1, 2 ** 40)),
  mediaQuotaBytes: setting('MEDIA_QUOTA_BYTES', String(1024 * MB), 'Media bytes a device may upload per MEDIA_TTL window (so at most twice this is stored for it at once); the media record itself names no device.', int(1, 2 ** 44)),
  mediaTtlMs: setting('MEDIA_TTL_DAYS', '30', 'Days a media blob is kept.', (raw) => int(1, 3650)(raw) * DAY),
  archiveMaxBytes: setting('ARCHIVE_MAX_BYTES', String(512 * MB), 'Largest archive (encrypted backup) blob per account.', int(1, 2 ** 40)),
  usernameNamespaces: setting(
    'USERNAME_NAMESPACES',
    'default:signed',
    'Comma-separated namespace:policy pairs; policy is signed (claim, transfer and release must be signed by the owner) or last-writer-wins.',
    namespaces,
  ),
  sweepIntervalMs: setting('SWEEP_INTERVAL_SECONDS', '60', 'How often expired envelopes, media and challenges are purged.', (raw) => int(1, 86_400)(raw) * 1000),
  shutdownGraceMs: setting('SHUTDOWN_GRACE_SECONDS', '10', 'On SIGTERM/SIGINT: time given to in-flight requests before connections are cut.', (raw) => int(0, 600)(raw) * 1000),
  corsOrigins: setting('CORS_ORIGINS', '', 'Web app origins allowed to call this node from a browser (comma-separated, e.g. https://app.example.com; * for any). Empty: only same-origin pages and native clients. Also checked on WebSocket upgrades (403 for other origins).', parseCorsOrigins),
  trustProxy: setting<TrustProxy>('TRUST_PROXY', 'false', 'Which X-Forwarded-For hops to believe: false, true, a hop count, or a list of proxy addresses/CIDRs/presets (loopback, private, linklocal).', parseTrustProxy),
  rateLimits: setting<Record<string, BucketSpec>>('RATE_LIMITS', '', 'Token-bucket overrides, name=rate:burst,… (rate per second); names in docs/self-hosting.md.', (raw) => parseBucketOverrides(raw)),
  metricsHost: setting('METRICS_HOST', '127.0.0.1', 'Bind address of the separate Prometheus listener.', text),
  metricsPort: setting('METRICS_PORT', '9464', 'Port of the separate Prometheus listener, or off.', text),
  metricsToken: setting('METRICS_TOKEN', '', 'Bearer token for /metrics (≥ 32 characters); when set, /metrics is also served on the main listener.', text),
  webApp: setting<WebAppOptions>(
    'WEB_APP',
    'prudence',
    'The web app served at / with a strict Content-Security-Policy: prudence (the reference messenger built from apps/prudence by npm start / npm run build), off, or the directory of another built app (with an index.html).',
    (raw) => {
      const v = raw.trim();
      if (v === 'prudence') return { dir: PRUDENCE_DIST, isDefault: true };
      if (v === 'off' || v === '') return { dir: '', isDefault: false };
      const dir = resolve(v);
      if (!existsSync(join(dir, 'index.html'))) throw new RangeError(`no index.html in ${dir} (prudence, off, or a built app's directory)`);
      return { dir, isDefault: false };
    },
  ),
  logRequests: setting('LOG_REQUESTS', 'false', 'Log one line per HTTP request (method, route pattern, status, time; never ids, keys or addresses).', bool),
  // Backups (docs/backup-restore.md).
  backupDir: setting(
    'BACKUP_DIR',
    'backups',
    'Directory for database backups (scheduled ones and meshwhisper-node backup); a relative path is resolved against DATA_DIR, so the default is DATA_DIR/backups. Keep it on another disk in production.',
    (raw, env) => {
      if (raw.trim() === '') throw new RangeError('must not be empty');
      return resolve(resolve(env.DATA_DIR ?? DEFAULT_DATA_DIR), raw);
    },
  ),
  backupIntervalMs: setting('BACKUP_INTERVAL_HOURS', '24', 'Hours between the scheduled online backups of the database (0: no scheduled backups).', (raw) => int(0, 8760)(raw) * HOUR),
  backupRetention: setting('BACKUP_RETENTION', '7', 'Backups kept in BACKUP_DIR (newest first); older ones are deleted after each successful backup.', int(1, 10_000)),
  // Processes of one SQLite node (docs/architecture.md §Process model).
  workers: setting(
    'WORKERS',
    '1',
    'STORE=sqlite: processes serving the listener, all on the one database (node:cluster; a primary process holds the DATA_DIR lock, runs migrations and restarts a worker that dies). 1: one process (no primary; its writer thread already uses a second core) — measured faster than 2 on a 2-core machine (docs/benchmarks.md); auto: the machine\'s available parallelism; N: N workers. Rate limits and WS_MAX_CONNECTIONS_PER_ADDRESS count per process (× WORKERS). STORE=postgres: always 1 per instance (run more instances).',
    (raw) => {
      const v = raw.trim().toLowerCase();
      if (v === 'auto' || v === '') return Math.max(1, Math.min(64, availableParallelism()));
      return int(1, 64)(v);
    },
  ),
  // Cluster (docs/scale-out.md): several instances on one PostgreSQL database and one NATS.
  store: setting<'sqlite' | 'postgres'>('STORE', 'sqlite', 'Where state lives: sqlite (one machine, DATA_DIR/meshwhisper.sqlite3; WORKERS processes) or postgres (DATABASE_URL; several instances may share it — set NATS_URL too).', (raw) => {
    const v = raw.trim().toLowerCase();
    if (v !== 'sqlite' && v !== 'postgres') throw new RangeError('must be sqlite or postgres');
    return v;
  }),
  databaseUrl: setting('DATABASE_URL', '', 'STORE=postgres: the PostgreSQL connection URL, postgres://user[:password]@host:port/database (a secret when it holds a password; never logged).', (raw) => {
    const v = raw.trim();
    if (v !== '' && !/^postgres(ql)?:\/\//.test(v)) throw new RangeError('must be a postgres:// or postgresql:// URL');
    return v;
  }),
  databaseSchema: setting('DATABASE_SCHEMA', 'public', 'STORE=postgres: the schema holding the tables (created if missing).', (raw) => {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(raw.trim())) throw new RangeError('must be a lower-case identifier');
    return raw.trim();
  }),
  databasePoolSize: setting('DATABASE_POOL_SIZE', '10', 'STORE=postgres: connections this instance keeps open (instances × this must stay below the server\'s max_connections).', int(1, 1000)),
  natsUrl: setting('NATS_URL', '', 'STORE=postgres: NATS server(s) with JetStream, nats://host:4222 (comma-separated for a NATS cluster). Instances tell each other about new mail, logins and push wakes through it; empty: a single instance.', (raw) => {
    const v = raw.trim();
    for (const part of v === '' ? [] : v.split(',')) if (!/^(nats|tls):\/\/[^\s/]+$/.test(part.trim())) throw new RangeError(`"${part.trim()}" is not nats://host:port`);
    return v;
  }),
  natsSubjectPrefix: setting('NATS_SUBJECT_PREFIX', 'mw', 'NATS subject prefix (and JetStream bucket name part) shared by the instances of one cluster; give two clusters on one NATS different prefixes.', (raw) => {
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(raw.trim())) throw new RangeError('must be dot-separated words of letters, digits, _ and -');
    return raw.trim();
  }),
  // Push wake (docs/push.md): each service is off until its credentials are set.
  pushCoalesceMs: setting('PUSH_COALESCE_MS', String(DEFAULT_PUSH_COALESCE_MS), 'Milliseconds after a push wake during which further mail for the same offline device rings no new wake (one wake per burst).', int(0, 600_000)),
  vapidPublicKey: setting('VAPID_PUBLIC_KEY', '', 'Web Push: VAPID public key, base64url of the 65-byte P-256 point (npx web-push generate-vapid-keys). Web Push is on when the three VAPID_* are set.', parseVapidPublicKey),
  vapidPrivateKey: setting('VAPID_PRIVATE_KEY', '', 'Web Push: VAPID private key, base64url of 32 bytes (a secret).', parseVapidPrivateKey),
  vapidSubject: setting('VAPID_SUBJECT', '', 'Web Push: operator contact sent to push services, a mailto: address or https: URL.', parseVapidSubject),
  webPushAllowedHosts: setting('WEBPUSH_ALLOWED_HOSTS', DEFAULT_WEBPUSH_ALLOWED_HOSTS, 'Web Push: hosts a subscription endpoint may point at (comma-separated; *.domain for subdomains; * for any, which lets devices make the node POST anywhere).', parseHostPatterns),
  apnsKeyFile: setting('APNS_KEY_FILE', '', 'APNs: path of the .p8 token-signing key. APNs is on when APNS_KEY_FILE, APNS_KEY_ID, APNS_TEAM_ID and APNS_BUNDLE_ID are set.', parseOptionalPath),
  apnsKeyId: setting('APNS_KEY_ID', '', 'APNs: key id of the .p8 key (10 characters).', parseAppleId),
  apnsTeamId: setting('APNS_TEAM_ID', '', 'APNs: Apple developer team id (10 characters).', parseAppleId),
  apnsBundleId: setting('APNS_BUNDLE_ID', '', 'APNs: bundle id of the iOS app (the apns-topic).', parseBundleId),
  apnsUrl: setting('APNS_URL', 'https://api.push.apple.com', 'APNs: provider API base URL (https://api.sandbox.push.apple.com for development builds).', parseHttpsUrl),
  fcmServiceAccountFile: setting('FCM_SERVICE_ACCOUNT_FILE', '', 'FCM: path of the Firebase service-account JSON key. FCM is on when it is set.', parseOptionalPath),
  fcmApiUrl: setting('FCM_API_URL', 'https://fcm.googleapis.com', 'FCM: HTTP v1 API base URL.', parseHttpsUrl),
} as const;

export type ConfigSchema = typeof CONFIG_SCHEMA;
export type NodeConfig = { readonly [K in keyof ConfigSchema]: ReturnType<ConfigSchema[K]['parse']> } & {
  /** Derived from METRICS_*: where metrics are served. */
  readonly metrics: MetricsExposure;
};

/** Reads every setting from `env` (default: process.env); `overrides` win (tests). Throws NodeConfigError. */
export function loadConfig(env: Readonly<Record<string, string | undefined>> = process.env, overrides: Partial<NodeConfig> = {}): NodeConfig {
  const out: Record<string, unknown> = {};
  // Settings resolved against DATA_DIR (BACKUP_DIR) must see an overridden data directory too.
  const parseEnv = overrides.dataDir === undefined ? env : { ...env, DATA_DIR: overrides.dataDir };
  for (const [key, s] of Object.entries(CONFIG_SCHEMA) as [string, Setting<unknown>][]) {
    if (key in overrides) continue;
    const raw = env[s.env] ?? s.default;
    try {
      out[key] = s.parse(raw, parseEnv);
    } catch (e) {
      throw new NodeConfigError(s.env, e instanceof Error ? e.message : 'invalid value');
    }
  }
  let metrics: MetricsExposure;
  try {
    metrics = overrides.metrics ?? resolveMetricsExposure({ METRICS_HOST: env.METRICS_HOST, METRICS_PORT: env.METRICS_PORT, METRICS_TOKEN: env.METRICS_TOKEN });
  } catch (e) {
    throw new NodeConfigError('METRICS_*', e instanceof Error ? e.message : 'invalid value');
  }
  const config = { ...out, ...overrides, metrics } as NodeConfig;
  if (config.store === 'postgres' && config.databaseUrl === '') throw new NodeConfigError('DATABASE_URL', 'STORE=postgres needs DATABASE_URL (postgres://user@host:5432/database)');
  if (config.store === 'sqlite' && config.natsUrl !== '') throw new NodeConfigError('NATS_URL', 'NATS_URL is for a cluster on STORE=postgres; a SQLite node is one process (unset NATS_URL or set STORE=postgres)');
  return config;
}

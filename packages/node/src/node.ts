/**
 * Assembles a MeshWhisper node: data directory, node key, store, HTTP routes (fastify plugins),
 * the two WebSocket endpoints, the sweeper, and graceful shutdown.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync, statSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Duplex, Writable } from 'node:stream';
import Fastify, { LogController } from 'fastify';
import type { FastifyInstance } from 'fastify';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import type { CryptoContext } from '@meshwhisper/crypto';
import { createContext, toHex } from '@meshwhisper/crypto';
import { CONTENT_TYPE_PROTOBUF, DEVICE_SOCKET_PATH, ErrorCode, MAX_HTTP_BODY_BYTES, httpErrorBody } from '@meshwhisper/protocol';
import type { FastEnvelope } from '@meshwhisper/protocol';
import { ChallengeIssuer } from './auth.js';
import { registerCors, upgradeOriginAllowed } from './cors.js';
import { listBackups, scheduleBackups } from './backup.js';
import type { BackupSchedule, BackupScheduleOptions } from './backup.js';
import type { NodeConfig } from './config.js';
import { AckCommitter } from './mailbox/acks.js';
import { LocalDeliveryBus } from './mailbox/bus.js';
import type { DeliveryBus } from './mailbox/bus.js';
import { NatsDeliveryBus } from './mailbox/nats-bus.js';
import { IpcDeliveryBus } from './workers/ipc-bus.js';
import { DeliveryHub } from './mailbox/hub.js';
import { SendService } from './mailbox/send.js';
import { listenError } from './listen-error.js';
import { clientErrorHandler, frameworkErrorHandler, routeErrorHandler } from './http-errors.js';
import { NodeMetrics, metricsRoutePlugin, startMetricsServer } from './metrics.js';
import type { MetricsServer } from './metrics.js';
import type { NodeKey} from './node-key.js';
import { loadOrCreateNodeKey } from './node-key.js';
import { RateLimiter, clientAddress, clientKey, rateLimitPlugin, rejectUpgrade } from './rate-limit.js';
import { accountRoutes } from './routes/account.js';
import { blobRoutes, mediaBudgetWindow, removeMediaFiles, removeOrphanFiles } from './routes/blobs.js';
import { deviceListRoutes } from './routes/device-lists.js';
import { keyRoutes } from './routes/keys.js';
import { linkRoutes } from './routes/link.js';
import { ClusterLinkRelay, LocalLinkRelay } from './link/relay.js';
import { mailboxRoutes } from './routes/mailbox.js';
import { usernameRoutes } from './routes/usernames.js';
import { pushRoutes } from './routes/push.js';
import { webAppRoutes } from './routes/web-app.js';
import { createPush } from './push/setup.js';
import type { NodePush, PushTestOptions } from './push/setup.js';
import type { NodeServices } from './services.js';
import { AnonymousConnection } from './socket/anonymous.js';
import { WS_MAX_PAYLOAD } from './socket/connection.js';
import { DeviceConnection } from './socket/device.js';
import { Heartbeat } from './socket/heartbeat.js';
import { lockDataDir, secureDirectory, secureFile } from './store/data-dir.js';
import { SqliteNodeStore } from './store/sqlite-store.js';
import { PgNodeStore } from './store/pg-store.js';
import type { NodeStore, StoreHealth } from './store/node-store.js';
import type { PageSizeConversion } from './store/db.js';

/** The SQLite database file inside DATA_DIR. */
export const DATABASE_FILE = 'meshwhisper.sqlite3';
export const ANONYMOUS_SOCKET_PATH = '/v1/anonymous';
/** Mailboxes expired per sweep transaction: bounds how long one sweep holds the write lock. */
const EXPIRE_BATCH = 1000;
/**
 * STORE=postgres: DATA_DIR (node key, media, archives) is shared by the instances of a cluster, so
 * a partial upload in tmp/ may belong to a live instance; only files older than this are removed.
 */
const SHARED_TMP_MAX_AGE_MS = 6 * 3600 * 1000;
/** The orphan-file sweep (media and archive files no record names) runs at the first sweep and then this often. */
const ORPHAN_SWEEP_INTERVAL_MS = 24 * 3600 * 1000;
/** Files younger than this are never orphans: an upload may be between its rename and its commit. */
const ORPHAN_MIN_AGE_MS = 10 * 60 * 1000;
/** Retry-After sent when an address holds WS_MAX_CONNECTIONS_PER_ADDRESS sockets already. */
const WS_CAP_RETRY_AFTER_MS = 30_000;

export interface CreateNodeOptions {
  /** Crypto context (tests inject a clock); default createContext(). */
  readonly ctx?: CryptoContext;
  /** Log destination (tests capture it); default stdout. */
  readonly logStream?: Writable;
  /** Prometheus metrics (default on). */
  readonly metrics?: boolean;
  /**
   * TEST ONLY: replaces the backup schedule's interval (BACKUP_INTERVAL_HOURS is whole hours;
   * scheduleBackups accepts ≥ 1000 ms) and timer functions, so tests can run the schedule in
   * seconds or fire it by hand. Ignored when BACKUP_INTERVAL_HOURS is 0.
   */
  readonly backupSchedule?: Pick<BackupScheduleOptions, 'intervalMs' | 'setTimer' | 'clearTimer'>;
  /** TEST ONLY: trust a test CA for the push services and shorten push retry delays (docs/push.md). */
  readonly push?: PushTestOptions;
  /**
   * This process is worker `index` of a multi-process SQLite node (WORKERS > 1; workers/primary.ts
   * forks it). The primary holds the DATA_DIR lock, migrated the database and created the node key;
   * `bus` is the IPC bus to it. Worker 0 runs the sweeps and the scheduled backups.
   */
  readonly worker?: { readonly index: number; readonly bus: IpcDeliveryBus };
}

export interface MeshWhisperNode extends AsyncDisposable {
  readonly app: FastifyInstance;
  readonly services: NodeServices;
  readonly nodeKey: NodeKey;
  /** Starts listening on config.host:config.port; returns the bound address. */
  listen(): Promise<AddressInfo>;
  /** Graceful shutdown: refuses new work, lets in-flight requests finish, closes sockets, checkpoints and closes the database. */
  close(): Promise<void>;
  /** One sweep now (expiry of envelopes and media, challenge table); the timer runs it every SWEEP_INTERVAL_SECONDS. */
  sweep(): Promise<void>;
}

export async function createNode(config: NodeConfig, options: CreateNodeOptions = {}): Promise<MeshWhisperNode> {
  const ctx = options.ctx ?? createContext();
  const mediaDir = join(config.dataDir, 'media');
  const archiveDir = join(config.dataDir, 'archives');
  const tmpDir = join(config.dataDir, 'tmp');
  const looseMode = secureDirectory(config.dataDir);
  const clustered = config.store === 'postgres';
  const worker = clustered ? undefined : options.worker;
  // One node per data directory: a second one (or a restore under a live node) is refused. A
  // cluster's instances share DATA_DIR (node key and blobs) on purpose; PostgreSQL holds the state.
  // The workers of a multi-process node share it too: their primary holds the lock.
  const lock = clustered || worker ? { release: () => undefined } : lockDataDir(config.dataDir);
  let store: NodeStore;
  let sqliteStore: SqliteNodeStore | undefined;
  /** An existing database's page-size conversion at open (logged once the logger exists). */
  let pageSizeNote: PageSizeConversion | undefined;
  let keyCreated: boolean;
  let nodeKey: NodeKey;
  try {
    for (const d of [mediaDir, archiveDir, tmpDir]) secureDirectory(d);
    // Uploads interrupted by a crash left partial files; none of them was ever acknowledged.
    const staleBefore = Date.now() - SHARED_TMP_MAX_AGE_MS;
    for (const f of readdirSync(tmpDir)) {
      const file = join(tmpDir, f);
      if (worker) break; // the primary cleaned up before forking; other workers' uploads are in flight
      if (!clustered || (statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? 0) < staleBefore) rmSync(file, { force: true });
    }
    ({ key: nodeKey, created: keyCreated } = loadOrCreateNodeKey(ctx, config.dataDir));
    if (clustered) {
      store = await PgNodeStore.open({
        connectionString: config.databaseUrl,
        schema: config.databaseSchema,
        poolSize: config.databasePoolSize,
        now: () => ctx.now(),
        onHealth: (h) => onStoreHealth(h),
      });
    } else {
      const databaseFile = join(config.dataDir, DATABASE_FILE);
      secureFile(databaseFile); // SQLite creates -wal and -shm with the database file's mode
      store = sqliteStore = new SqliteNodeStore(databaseFile, {
        now: () => ctx.now(),
        writerNice: config.storeWriterNice,
        onHealth: (h) => onStoreHealth(h),
        onPageSize: (c) => {
          pageSizeNote = c;
        },
        ...(worker
          ? {
              shared: {
                consumeChallenge: (nonce: Uint8Array, issuedAt: number, expiresAt: number) => worker.bus.consumeChallenge(nonce, issuedAt, expiresAt),
                leases: worker.index === 0,
                reserveFile: `disk-reserve-w${worker.index}`,
              },
            }
          : {}),
        onWriterDead: (e, restartInMs) => {
          metrics?.storeWriterDeaths.inc();
          // The error's name and code only: its message may quote SQLite text and file paths.
          const cause = (e as { code?: unknown }).code;
          app.log.error(
            { err: e.name, ...(typeof cause === 'string' ? { code: cause } : {}), restartInMs },
            `the store's writer thread died: sends and acks are refused (MW_UNAVAILABLE, retriable) and /ready answers 503 until a new one starts in ${Math.round(restartInMs / 1000)} s; if this repeats, report it with the log`,
          );
        },
        onReaderDead: (e) => {
          const cause = (e as { code?: unknown }).code;
          app.log.error(
            { err: e.name, ...(typeof cause === 'string' ? { code: cause } : {}) },
            "the store's reader thread died: stored mail is now read on the event loop (delivery goes on, slower under drains) until the node restarts; report it with the log",
          );
        },
      });
    }
  } catch (e) {
    lock.release();
    throw e;
  }
  const limiter = new RateLimiter({ buckets: config.rateLimits });
  const metrics = options.metrics === false ? undefined : new NodeMetrics();
  if (metrics && worker) {
    // /metrics answers for the whole node: the primary gathers every worker's registry.
    worker.bus.metricsJson = () => metrics.registry.getMetricsAsJSON();
    metrics.renderWith(() => worker.bus.clusterMetrics());
  }
  metrics?.storeWritable.set({ reason: 'none' }, 1);
  const onStoreHealth = (h: StoreHealth): void => {
    metrics?.storeWritable.reset();
    if (h.writable) {
      metrics?.storeWritable.set({ reason: 'none' }, 1);
      app.log.info('store writable again: new mail accepted');
    } else {
      metrics?.storeWritable.set({ reason: h.reason.replace('-', '_') }, 0);
      app.log.error(
        { reason: h.reason },
        h.reason === 'disk-full'
          ? `disk full under ${config.dataDir}: new mail is refused (MW_UNAVAILABLE), acks and deletions still work; free or add disk space`
          : h.reason === 'writer-failed'
            ? "store not writable: the store's writer thread is not running (new mail and acks refused until it restarts)"
            : 'store not writable: new mail is refused',
      );
    }
  };
  let bus: DeliveryBus;
  if (worker) {
    bus = worker.bus;
  } else if (config.natsUrl !== '') {
    const nats = new NatsDeliveryBus({
      servers: config.natsUrl,
      prefix: config.natsSubjectPrefix,
      // The cluster-wide claim lasts the same window as the local coalescing (JetStream's shortest
      // key TTL is 100 ms; a TTL of 0 would mean "never expires"). A longer floor silently dropped the
      // wake for mail arriving after PUSH_COALESCE_MS but inside the floor.
      wakeWindowMs: Math.max(100, config.pushCoalesceMs),
      onState: (up) => {
        metrics?.busConnected.set(up ? 1 : 0);
        if (up) app.log.info('NATS connected: live delivery between instances');
        else app.log.warn('NATS unreachable: live connections read the store every second until it is back (no mail is lost)');
      },
    });
    bus = nats;
  } else {
    bus = new LocalDeliveryBus();
  }
  const hub = new DeliveryHub(bus);
  const issuer = new ChallengeIssuer(ctx, nodeKey, store);
  let push: NodePush;
  try {
    push = createPush(config, {
      ctx,
      store,
      events: {
        sent: () => metrics?.pushSent.inc(),
        // The service and a status or fixed reason word only: never a token, endpoint or mailbox.
        failed: (service, reason) => {
          metrics?.pushFailed.inc();
          app.log.warn({ service, reason }, 'push wake failed');
        },
        pruned: () => metrics?.pushPruned.inc(),
      },
      ...(options.push ? { test: options.push } : {}),
      ...(bus.claimWake ? { claim: (key: string) => bus.claimWake!(key) } : {}),
    });
  } catch (e) {
    await bus.close();
    await store.close();
    lock.release();
    throw e;
  }
  const sender = new SendService(
    ctx,
    store,
    bus,
    limiter,
    { maxMessages: config.mailboxMaxMessages, maxBytes: config.mailboxMaxBytes, firstContactMaxMessages: config.firstContactMaxMessages },
    {
      accepted: (cls, lane, seconds) => metrics?.envelopeAccepted(cls, lane, seconds),
      rejected: (reason) => metrics?.envelopeRejected(reason),
      evicted: (n) => metrics?.envelopesEvicted.inc(n),
      congested: () => metrics?.sendCongestion.inc(),
      storageFailed: (e) => app.log.error({ err: e instanceof Error ? e.message : 'unknown' }, 'group commit failed'),
      storedOffline: (mailbox) => push.waker.notify(mailbox),
      unstored: () => metrics?.envelopesUnstored.inc(),
    },
    hub,
    // Held sends only pay off when an ack can retract them (WRITE_ACKED_AHEAD=false).
    { commitIntervalMs: config.commitIntervalMs, aheadHoldMs: config.writeAckedAhead ? 0 : config.aheadHoldMs },
  );
  let shuttingDown = false;
  const services: NodeServices = { ctx, config, nodeKey, store, hub, issuer, limiter, sender, metrics, mediaDir, archiveDir, tmpDir, shuttingDown: () => shuttingDown };

  const app = Fastify({
    bodyLimit: MAX_HTTP_BODY_BYTES,
    logController: new LogController({ disableRequestLogging: !config.logRequests }),
    // Addresses are resolved by rate-limit.ts from TRUST_PROXY; fastify's own trust stays off.
    trustProxy: false,
    // While shutting down, the onRequest hook below answers 503 in the documented error shape;
    // fastify's own 503 (on by default) has another body ({ error, message, statusCode }).
    return503OnClosing: false,
    // Errors below the routes in the documented shape, never echoing the path (http-errors.ts).
    frameworkErrors: frameworkErrorHandler,
    clientErrorHandler,
    logger:
      config.logLevel === 'silent'
        ? false
        : {
            level: config.logLevel,
            ...(options.logStream ? { stream: options.logStream } : {}),
            // Never log credentials, URLs (media ids are capabilities, paths carry names) or addresses.
            redact: { paths: ['req.headers["mw-auth"]', 'req.headers.authorization', 'req.headers.cookie'], censor: '[redacted]' },
            serializers: {
              req: (req: { method?: string; routeOptions?: { url?: string } }) => ({ method: req.method, route: req.routeOptions?.url ?? 'unmatched' }),
              res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
            },
          },
  });

  // Connected once the logger exists (onState logs); unreachable NATS is not fatal (store reads).
  if (bus instanceof NatsDeliveryBus) await bus.start();

  if (pageSizeNote?.converted) {
    app.log.info({ from: pageSizeNote.from, to: pageSizeNote.to, bytes: pageSizeNote.bytes, ms: Math.round(pageSizeNote.ms) }, `database converted to ${pageSizeNote.to}-byte pages (a one-time rewrite; fewer bytes written per message)`);
  } else if (pageSizeNote) {
    app.log.warn(
      { pageSize: pageSizeNote.from, reason: pageSizeNote.reason },
      `database keeps its ${pageSizeNote.from}-byte pages (${pageSizeNote.reason === 'too-large' ? 'larger than the start-up conversion bound' : pageSizeNote.reason === 'no-space' ? 'not enough free disk for the copy' : pageSizeNote.reason === 'wal-kept' ? 'its WAL could not be folded in' : 'the rewrite failed'}): it works, with more disk writes per message; docs/self-hosting.md says how to convert it by hand`,
    );
  }
  if (looseMode !== undefined) app.log.warn({ dataDir: config.dataDir, was: looseMode.toString(8) }, 'DATA_DIR was readable by other users; its mode is now 700');

  // Bodies are protobuf (or blobs, in their routes' scope): no JSON or text body is parsed, so
  // those content types get 415 whether or not the body would parse (docs/spec/node-protocol.md §5).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(CONTENT_TYPE_PROTOBUF, { parseAs: 'buffer', bodyLimit: MAX_HTTP_BODY_BYTES }, (_request, body, done) => done(null, body));

  app.setErrorHandler(routeErrorHandler);
  app.setNotFoundHandler((_request, reply) => reply.code(404).send(httpErrorBody(ErrorCode.NOT_FOUND, 'no such endpoint')));

  registerCors(app, config.corsOrigins);
  // Shutdown refuses new work: requests still arriving (keep-alive, pipelined) get 503 here, in the
  // error shape, with Connection: close. /ready keeps its probe body ({ status: 'shutting down' }).
  app.addHook('onRequest', async (request, reply) => {
    if (!shuttingDown || request.routeOptions.url === '/ready') return;
    reply.header('connection', 'close');
    return reply.code(503).send(httpErrorBody(ErrorCode.UNAVAILABLE, 'node is shutting down'));
  });
  await app.register(rateLimitPlugin, { limiter, trustProxy: config.trustProxy, onLimited: (bucket) => metrics?.rateLimitedBy(bucket) });
  if (metrics) {
    metrics.setSources({
      queue: () => store.queueTotals(),
      rateLimitKeys: () => limiter.trackedKeys,
    });
    await app.register(metrics.httpPlugin());
    if (config.metrics.token && config.metrics.onMainListener) await app.register(metricsRoutePlugin(metrics, config.metrics.token));
  }
  await app.register(mailboxRoutes(services));
  await app.register(keyRoutes(services));
  await app.register(deviceListRoutes(services));
  await app.register(usernameRoutes(services));
  await app.register(blobRoutes(services));
  await app.register(accountRoutes(services));
  await app.register(pushRoutes(services, push));
  const linkRelay = bus instanceof NatsDeliveryBus || bus instanceof IpcDeliveryBus ? new ClusterLinkRelay(ctx, bus) : new LocalLinkRelay(ctx);
  await app.register(linkRoutes(linkRelay));
  await app.register(webAppRoutes(config.webApp));

  // ── WebSockets ──
  const wss = new WebSocketServer({ noServer: true, maxPayload: WS_MAX_PAYLOAD, perMessageDeflate: false });
  const frameLog = { warn: (obj: object, msg: string) => app.log.warn(obj, msg) };
  const deliveryWindow = config.deliveryWindow;
  // Delivered ahead and acknowledged before the group commit started: answered, never written (WRITE_ACKED_AHEAD).
  const retractAcked = config.writeAckedAhead ? undefined : (envelope: FastEnvelope): boolean => sender.retractAcked(envelope);
  // Every socket pinged once per WS_PING_INTERVAL_SECONDS, a slice of them at a time (socket/heartbeat.ts).
  const heartbeat = new Heartbeat<WebSocket>(config.wsPingIntervalMs);
  heartbeat.start();
  // On SQLite, while sends flow, small ack groups ride in the next send group's transaction (one
  // fsync for both; mailbox/acks.ts, ACK_CARRY_MS). Other stores commit acks at once.
  const acks = new AckCommitter(store, { carried: store.acksShareSendCommits === true, commitIntervalMs: config.commitIntervalMs });
  sender.beforeCommit = () => acks.carry();
  /** Open WebSocket connections per client key (WS_MAX_CONNECTIONS_PER_ADDRESS). */
  const openPerAddress = new Map<string, number>();
  /** An upgrade refused in the documented error shape (never ws's own text/html body). */
  const refuseUpgrade = (socket: Duplex, status: string, code: ErrorCode, message: string, headers = ''): void => {
    const body = JSON.stringify(httpErrorBody(code, message));
    socket.end(`HTTP/1.1 ${status}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${headers}Connection: close\r\n\r\n${body}`);
  };
  // A handshake ws refuses (method, Upgrade, Sec-WebSocket-Key/-Version/-Protocol headers): with a
  // listener here, ws hands it over instead of writing its own plain-text reply.
  wss.on('wsClientError', (err: Error, socket: Duplex) => {
    if (socket.destroyed) return;
    if (/method/i.test(err.message)) return refuseUpgrade(socket, '405 Method Not Allowed', ErrorCode.MALFORMED, 'a WebSocket handshake is a GET', 'Allow: GET\r\n');
    const version = /Sec-WebSocket-Version/i.test(err.message);
    refuseUpgrade(socket, '400 Bad Request', ErrorCode.MALFORMED, 'not a valid WebSocket handshake', version ? 'Sec-WebSocket-Version: 13\r\n' : '');
  });
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '/').split('?')[0];
    const refuse = (status: string, code: ErrorCode, message: string): void => refuseUpgrade(socket, status, code, message);
    if (path !== DEVICE_SOCKET_PATH && path !== ANONYMOUS_SOCKET_PATH) return refuse('404 Not Found', ErrorCode.NOT_FOUND, 'no such endpoint');
    if (shuttingDown) return refuse('503 Service Unavailable', ErrorCode.UNAVAILABLE, 'node is shutting down');
    if (!upgradeOriginAllowed(config.corsOrigins, req.headers.origin, req.headers.host)) return refuse('403 Forbidden', ErrorCode.FORBIDDEN, 'origin not allowed (CORS_ORIGINS)');
    const key = clientKey(clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], config.trustProxy));
    const decision = limiter.take('ws-upgrade', key);
    if (!decision.allowed) {
      metrics?.rateLimitedBy(decision.bucket);
      return rejectUpgrade(socket, decision);
    }
    // A cap on open sockets per address: the upgrade rate alone lets one address hold an unbounded
    // number of idle connections (memory) by opening them slowly.
    const open = openPerAddress.get(key) ?? 0;
    if (config.wsMaxConnectionsPerAddress > 0 && open >= config.wsMaxConnectionsPerAddress) {
      metrics?.rateLimitedBy('ws-connections');
      return rejectUpgrade(socket, { allowed: false, remaining: 0, bucket: 'ws-connections', retryAfterMs: WS_CAP_RETRY_AFTER_MS });
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      openPerAddress.set(key, (openPerAddress.get(key) ?? 0) + 1);
      ws.once('close', () => {
        const n = (openPerAddress.get(key) ?? 1) - 1;
        if (n <= 0) openPerAddress.delete(key);
        else openPerAddress.set(key, n);
      });
      heartbeat.add(ws);
      ws.on('pong', () => heartbeat.answered(ws));
      ws.once('close', () => heartbeat.remove(ws));
      const kind = path === DEVICE_SOCKET_PATH ? 'device' : 'anonymous';
      metrics?.connectionOpened(kind);
      ws.once('close', () => metrics?.connectionClosed(kind));
      if (kind === 'device') {
        const c = new DeviceConnection(ws, key, frameLog, {
          ctx,
          store,
          hub,
          issuer,
          limiter,
          deliveryWindow,
          acks,
          retractAcked,
          events: {
            authFailed: (code) => metrics?.authFailed(authReason(code)),
            delivered: (n) => metrics?.envelopesDeliveredCount('durable', n),
          },
        });
        c.expectHandshakeWithin(config.wsHandshakeTimeoutMs);
      } else {
        new AnonymousConnection(ws, key, frameLog, limiter, sender).expectHandshakeWithin(config.wsHandshakeTimeoutMs);
      }
    });
  });

  // ── Sweeper ──
  // Unique per instance (several instances may share a pid namespace, or one process in tests).
  const sweepHolder = `${process.pid}-${randomBytes(6).toString('hex')}`;
  let lastOrphanSweep: number | undefined;
  const sweep = async (): Promise<void> => {
    // One process of a cluster sweeps at a time (a SQLite store has one process).
    if (!(await store.tryLease('sweep', sweepHolder, config.sweepIntervalMs * 2))) return;
    const now = ctx.now();
    let expired = 0;
    for (;;) {
      const r = await store.expireEnvelopes(now - config.retentionMs, EXPIRE_BATCH);
      expired += r.envelopes;
      if (r.mailboxes < EXPIRE_BATCH) break;
    }
    if (expired > 0) {
      metrics?.envelopesExpired.inc(expired);
      await bus.publishGapsChanged();
    }
    for (;;) {
      const ids = await store.expireMedia(now, mediaBudgetWindow(now, config.mediaTtlMs) - 1, 1000);
      await removeMediaFiles(services, ids);
      if (ids.length < 1000) break;
    }
    if (lastOrphanSweep === undefined || now - lastOrphanSweep >= ORPHAN_SWEEP_INTERVAL_MS) {
      lastOrphanSweep = now;
      const orphans = await removeOrphanFiles(services, Date.now() - ORPHAN_MIN_AGE_MS);
      if (orphans.media + orphans.archives > 0) app.log.info(orphans, 'removed files no record names (left by a crash during an upload)');
    }
    await store.health(); // re-probes a full disk at most every HEALTH_PROBE_INTERVAL_MS
  };
  const timer = setInterval(() => {
    sweep().catch((e: unknown) => app.log.error({ err: e instanceof Error ? e.message : 'unknown' }, 'sweep failed'));
  }, config.sweepIntervalMs);
  timer.unref();

  // ── Scheduled backups (docs/backup-restore.md) ──
  // Through the node's own connection: its writes are folded into the copy, and the copy is
  // checked in a worker thread, so serving goes on meanwhile.
  if (metrics) {
    // The last-success gauge would read 0 for a whole interval after every restart (and fire the
    // staleness alert of docs/backup-restore.md): start it from the newest backup on disk.
    const newest = (await listBackups(config.backupDir).catch(() => []))[0];
    if (newest !== undefined) metrics.backupLastSuccess.set(Math.floor(newest.createdAt.getTime() / 1000));
  }
  const backups: BackupSchedule | undefined =
    config.backupIntervalMs === 0 || !sqliteStore || (worker && worker.index !== 0)
      ? undefined
      : scheduleBackups({
          db: sqliteStore,
          dir: config.backupDir,
          retention: config.backupRetention,
          intervalMs: config.backupIntervalMs,
          ...options.backupSchedule,
          onResult: (r) => {
            if (r.ok) {
              metrics?.backupFinished('success', r.backup.durationMs / 1000);
              app.log.info({ backup: r.backup.name, bytes: r.backup.bytes, durationMs: Math.round(r.backup.durationMs), pruned: r.backup.pruned.length }, 'database backup written');
            } else {
              metrics?.backupFinished('failure');
              // The code only: messages carry file-system paths and SQLite text.
              app.log.error({ code: r.error.code }, 'database backup failed');
            }
          },
        });

  let metricsServer: MetricsServer | undefined;
  let closing: Promise<void> | undefined;

  const close = (): Promise<void> =>
    (closing ??= (async () => {
      shuttingDown = true;
      clearInterval(timer);
      heartbeat.stop();
      // No new backup from now on; one already running finishes before the database closes.
      const backupsStopped = backups?.stop();
      await sender.close();
      // Retries pending are dropped and requests in flight aborted: a lost wake only delays delivery.
      await push.close();
      // Long polls on link channels end now (their links are abandoned; the user shows a new QR).
      linkRelay.dispose();
      // Device connections: every unacknowledged envelope is still stored and will be redelivered.
      for (const ws of wss.clients) ws.close(1001, 'node shutting down');
      const grace = new Promise<void>((resolve) => setTimeout(resolve, config.shutdownGraceMs).unref());
      await Promise.race([app.close(), grace.then(() => app.server.closeAllConnections())]);
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      await metricsServer?.close();
      await backupsStopped;
      await acks.flush(); // acks received before the sockets closed are committed, not lost
      hub.dispose();
      await bus.close();
      await store.close();
      lock.release();
    })());

  return {
    app,
    services,
    nodeKey,
    sweep,
    async listen() {
      await app.listen({ port: config.port, host: config.host }).catch((e: unknown) => {
        throw listenError('main listener', config.host, config.port, e);
      });
      const address = app.server.address() as AddressInfo;
      const ml = config.metrics.listener;
      // A worker's metrics listener is its primary's (workers/primary.ts).
      if (metrics && ml && !worker) {
        metricsServer = await startMetricsServer(metrics, { ...ml, token: config.metrics.token }).catch((e: unknown) => {
          throw listenError('metrics listener', ml.host, ml.port, e);
        });
      }
      for (const w of config.metrics.warnings) app.log.warn(w);
      app.log.info(
        {
          listen: `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
          dataDir: config.dataDir,
          // Never the DATABASE_URL: it may hold a password.
          database: clustered ? `postgres (schema ${config.databaseSchema})` : join(config.dataDir, DATABASE_FILE),
          bus: config.natsUrl !== '' ? 'nats' : worker ? 'ipc' : 'local',
          ...(worker ? { worker: worker.index } : {}),
          nodeKey: toHex(nodeKey.publicKey),
          nodeKeyCreated: keyCreated,
          metrics: metricsServer ? `http://${metricsServer.address.address}:${metricsServer.address.port}/metrics` : config.metrics.onMainListener ? 'main listener (token)' : 'off',
        },
        'MeshWhisper node listening',
      );
      return address;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

function authReason(code: string): 'bad_signature' | 'stale' | 'replayed' | 'wrong_node' | 'malformed' | 'other' {
  switch (code) {
    case ErrorCode.AUTH_INVALID:
      return 'bad_signature';
    case ErrorCode.AUTH_STALE:
      return 'stale';
    case ErrorCode.AUTH_REPLAYED:
      return 'replayed';
    case ErrorCode.AUTH_WRONG_NODE:
      return 'wrong_node';
    case ErrorCode.MALFORMED:
      return 'malformed';
    default:
      return 'other';
  }
}

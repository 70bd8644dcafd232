/**
 * The primary process of a multi-process SQLite node (WORKERS > 1; docs/architecture.md §Process
 * model). It serves no request itself:
 *
 * - before forking: takes the DATA_DIR lock, secures the directories, removes partial uploads,
 *   creates the node key, converts and migrates the database (once, before any worker opens it);
 * - forks WORKERS worker processes (node:cluster) that share the listener; a worker that dies is
 *   replaced (same index, backing off when it keeps dying); the others are told to read the store
 *   for their live connections (events the dead one had not sent yet are lost: hints only);
 * - brokers the IPC DeliveryBus (ipc-bus.ts): keeps the watch table (which worker holds which
 *   mailbox's live connection), forwards mail, signals, logins, deletions and gap changes to the
 *   workers concerned, routes device-link rpc, keeps the used challenge nonces (single-use across
 *   workers) and the push-wake claims;
 * - serves METRICS_PORT with the sum of every worker's metrics;
 * - on SIGTERM/SIGINT stops every worker gracefully, then releases the lock. Workers exit when the
 *   primary dies (their IPC channel closes).
 */
import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import type { ChildProcess } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { AggregatorRegistry } from 'prom-client';
import { createContext } from '@meshwhisper/crypto';
import type { NodeConfig } from '../config.js';
import { listenError } from '../listen-error.js';
import { NodeMetrics, startMetricsServer } from '../metrics.js';
import type { MetricsServer } from '../metrics.js';
import { loadOrCreateNodeKey } from '../node-key.js';
import { lockDataDir, secureDirectory, secureFile } from '../store/data-dir.js';
import { convertPageSize, openDatabase } from '../store/db.js';
import { RESERVE_BYTES } from '../store/sqlite-store.js';
import type { BusEvent, IpcMessage, PrimaryRequest, WorkerRequest } from './wire.js';
import { WORKER_ENV, isIpcMessage } from './wire.js';

/** First restart delay of a worker that died; doubled per death within RESTART_WINDOW_MS, up to RESTART_MAX_MS. */
export const RESTART_MS = 250;
export const RESTART_MAX_MS = 30_000;
const RESTART_WINDOW_MS = 60_000;
/** Beyond SHUTDOWN_GRACE_SECONDS, how long a stopping worker may take before it is killed. */
const STOP_SLACK_MS = 15_000;

export interface PrimaryOptions {
  readonly databaseFile: string;
  /**
   * The script a worker runs: bin.js (or bin.ts under tsx). Not process.argv[1], node:cluster's
   * default: `npm start` runs scripts/start.mjs, which builds and then imports bin.js.
   */
  readonly binFile: string;
  /** One JSON log line (stdout); the primary has no fastify logger. */
  readonly log: (level: 'info' | 'warn' | 'error', fields: Record<string, unknown>, msg: string) => void;
}

interface Slot {
  readonly index: number;
  worker: Worker | undefined;
  deaths: number[];
  restartTimer: NodeJS.Timeout | undefined;
}

/**
 * Sends a message to a worker process without risking the primary. A worker can die between the
 * check that its channel is up and the write (kill -9, out of memory, a stop): the write then
 * fails (EPIPE), and without a callback Node reports that as an 'error' event of the worker — one
 * nobody listens to, so an uncaught exception that took the primary, and every worker with it,
 * down (a CI run: exit code 1 at a clean stop after a kill -9). The failure goes to `failed`
 * instead; the worker's 'exit' handler cleans up after it.
 */
export function sendToWorker(child: Pick<ChildProcess, 'connected' | 'send'>, m: IpcMessage, failed?: () => void): void {
  if (!child.connected) {
    failed?.();
    return;
  }
  child.send(m, (err) => {
    if (err) failed?.();
  });
}

export async function runPrimary(config: NodeConfig, options: PrimaryOptions): Promise<void> {
  const { log } = options;
  const looseMode = secureDirectory(config.dataDir);
  const lock = lockDataDir(config.dataDir);
  let metricsServer: MetricsServer | undefined;
  try {
    for (const d of ['media', 'archives', 'tmp']) secureDirectory(join(config.dataDir, d));
    // Partial uploads of a previous run; no worker runs yet.
    for (const f of readdirSync(join(config.dataDir, 'tmp'))) rmSync(join(config.dataDir, 'tmp', f), { force: true });
    loadOrCreateNodeKey(createContext(), config.dataDir);
    secureFile(options.databaseFile);
    const conversion = convertPageSize(options.databaseFile, undefined, RESERVE_BYTES);
    if (conversion) log(conversion.converted ? 'info' : 'warn', { pageSize: conversion }, 'database page size at start');
    openDatabase(options.databaseFile).close(); // migrations, once
  } catch (e) {
    lock.release();
    throw e;
  }
  if (looseMode !== undefined) log('warn', { dataDir: config.dataDir, was: looseMode.toString(8) }, 'DATA_DIR was readable by other users; its mode is now 700');

  // ── broker state ──
  const slots: Slot[] = Array.from({ length: config.workers }, (_, index) => ({ index, worker: undefined, deaths: [], restartTimer: undefined }));
  /** mailbox hex → indexes of the workers holding a live connection for it. */
  const watch = new Map<string, Set<number>>();
  /** rpc topic → the index of the worker serving it. */
  const served = new Map<string, number>();
  const openedAt = Date.now();
  const usedChallenges = new Map<string, number>();
  const wakeClaims = new Map<string, number>();
  const wakeWindowMs = Math.max(100, config.pushCoalesceMs);
  const pending = new Map<number, { resolve: (v: unknown) => void; timer: NodeJS.Timeout; index: number }>();
  let nextId = 1;
  let stopping = false;
  /** Set once a worker listens: before that, a worker that dies failed to start (port taken, bad setting) and so would its replacement. */
  let started = false;
  let startFailed: ((code: number | null) => void) | undefined;
  const firstListen = new Promise<void>((resolve, reject) => {
    startFailed = (code) => reject(Object.assign(new Error(`a worker process failed to start (exit code ${code}); its error is above`), { code: 'MW_WORKER_START_FAILED' }));
    cluster.once('listening', () => {
      started = true;
      resolve();
    });
  });

  const send = (index: number, m: IpcMessage): void => {
    const w = slots[index]?.worker;
    if (w) sendToWorker(w.process, m);
  };
  const ask = (index: number, req: PrimaryRequest, timeoutMs: number): Promise<unknown> =>
    new Promise((resolve) => {
      const w = slots[index]?.worker;
      if (!w?.isConnected()) return resolve(undefined);
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        resolve(undefined);
      }, timeoutMs);
      pending.set(id, { resolve, timer, index });
      sendToWorker(w.process, { mw: 'req', id, req }, () => {
        // The worker died under the request: no answer will come.
        if (pending.delete(id)) clearTimeout(timer);
        resolve(undefined);
      });
    });

  const forgetOld = (): void => {
    const now = Date.now();
    for (const [k, at] of usedChallenges) if (at < now) usedChallenges.delete(k);
    for (const [k, at] of wakeClaims) if (at <= now) wakeClaims.delete(k);
  };
  const forgetTimer = setInterval(forgetOld, 30_000);
  forgetTimer.unref();

  const aggregateMetrics = async (): Promise<string> => {
    const all = await Promise.all(slots.map((s) => ask(s.index, { op: 'metrics-json' }, 5_000)));
    const got = all.filter((m): m is object[] => Array.isArray(m));
    return AggregatorRegistry.aggregate(got).metrics();
  };

  const onEvents = (from: number, events: readonly BusEvent[]): void => {
    const out = new Map<number, BusEvent[]>();
    const to = (i: number, e: BusEvent): void => {
      if (i === from) return;
      let a = out.get(i);
      if (!a) out.set(i, (a = []));
      a.push(e);
    };
    const others = (e: BusEvent): void => {
      for (const s of slots) to(s.index, e);
    };
    for (const e of events) {
      switch (e[0]) {
        case 'w': {
          let set = watch.get(e[1]);
          if (!set) watch.set(e[1], (set = new Set()));
          if (set.has(from)) break;
          set.add(from);
          others(['w', e[1], from]);
          break;
        }
        case 'u': {
          const set = watch.get(e[1]);
          if (!set?.delete(from)) break;
          if (set.size === 0) watch.delete(e[1]);
          others(['u', e[1], from]);
          break;
        }
        case 'm':
        case 's':
        case 'l':
        case 'd':
          for (const i of watch.get(e[1]) ?? []) to(i, e);
          break;
        case 'g':
          others(e);
          break;
      }
    }
    for (const [i, ev] of out) send(i, { mw: 'ev', ev });
  };

  const onRequest = async (from: number, id: number, req: WorkerRequest): Promise<void> => {
    let value: unknown;
    switch (req.op) {
      case 'challenge': {
        const key = Buffer.from(req.nonce).toString('hex');
        // Nonces used before this primary started are unknown to it: refuse the challenges of that time.
        if (req.issuedAt < openedAt || usedChallenges.has(key)) value = false;
        else {
          usedChallenges.set(key, req.expiresAt);
          value = true;
        }
        break;
      }
      case 'wake': {
        const now = Date.now();
        const until = wakeClaims.get(req.key);
        if (until !== undefined && until > now) value = false;
        else {
          wakeClaims.set(req.key, now + wakeWindowMs);
          value = true;
        }
        break;
      }
      case 'serve':
        served.set(req.topic, from);
        value = true;
        break;
      case 'unserve':
        if (served.get(req.topic) === from) served.delete(req.topic);
        return; // no answer expected
      case 'call': {
        const holder = served.get(req.topic);
        value = holder === undefined ? 'none' : ((await ask(holder, { op: 'rpc', topic: req.topic, data: req.data }, req.timeoutMs)) ?? 'unreachable');
        break;
      }
      case 'metrics':
        value = await aggregateMetrics().catch(() => '');
        break;
    }
    send(from, { mw: 'res', id, value });
  };

  const onMessage = (from: number, m: unknown): void => {
    if (!isIpcMessage(m)) return;
    if (m.mw === 'ev') onEvents(from, m.ev);
    else if (m.mw === 'req') void onRequest(from, m.id, m.req as WorkerRequest);
    else if (m.mw === 'res') {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      clearTimeout(p.timer);
      p.resolve(m.error === undefined ? m.value : undefined);
    }
  };

  /** A worker is gone: its watches and topics go, its pending answers resolve empty, the others read the store. */
  const forgetWorker = (index: number): void => {
    const gone: BusEvent[] = [];
    for (const [key, set] of watch) {
      if (!set.delete(index)) continue;
      if (set.size === 0) watch.delete(key);
      gone.push(['u', key, index]);
    }
    for (const [topic, i] of served) if (i === index) served.delete(topic);
    for (const [id, p] of pending) {
      if (p.index !== index) continue;
      pending.delete(id);
      clearTimeout(p.timer);
      p.resolve(undefined);
    }
    for (const s of slots) {
      if (s.index === index) continue;
      if (gone.length > 0) send(s.index, { mw: 'ev', ev: gone });
      send(s.index, { mw: 'resync' });
    }
  };

  cluster.setupPrimary({ serialization: 'advanced', exec: options.binFile, args: ['start'] });

  const fork = (slot: Slot): void => {
    const w = cluster.fork({ [WORKER_ENV.index]: String(slot.index) });
    slot.worker = w;
    const entries: [string, number][] = [];
    for (const [key, set] of watch) for (const i of set) if (i !== slot.index) entries.push([key, i]);
    // Anything else the worker's process reports (a failed kill…) is logged, never an uncaught 'error'.
    w.on('error', (e: Error) => log('warn', { worker: slot.index, err: e.name, code: (e as { code?: unknown }).code }, 'worker process error'));
    sendToWorker(w.process, { mw: 'watched', entries });
    w.on('message', (m: unknown) => onMessage(slot.index, m));
    w.on('exit', (code, signal) => {
      if (slot.worker !== w) return;
      slot.worker = undefined;
      forgetWorker(slot.index);
      if (stopping) return;
      if (!started) {
        stopping = true;
        for (const s of slots) s.worker?.process.kill('SIGKILL');
        startFailed?.(code);
        return;
      }
      const now = Date.now();
      slot.deaths = slot.deaths.filter((t) => now - t < RESTART_WINDOW_MS);
      const delay = Math.min(RESTART_MAX_MS, RESTART_MS * 2 ** slot.deaths.length);
      slot.deaths.push(now);
      log('error', { worker: slot.index, pid: w.process.pid, code, signal, restartInMs: delay }, `worker ${slot.index} died; a new one starts in ${delay} ms (connections it held reconnect to the other workers; nothing acknowledged is lost)`);
      slot.restartTimer = setTimeout(() => {
        slot.restartTimer = undefined;
        if (!stopping) fork(slot);
      }, delay);
    });
  };
  for (const s of slots) fork(s);
  log('info', { workers: config.workers, pid: process.pid }, `primary process started ${config.workers} workers`);
  try {
    await firstListen;
  } catch (e) {
    lock.release();
    throw e;
  }

  const ml = config.metrics.listener;
  if (ml) {
    const metrics = new NodeMetrics({ defaultMetrics: false });
    metrics.renderWith(aggregateMetrics);
    try {
      metricsServer = await startMetricsServer(metrics, { ...ml, token: config.metrics.token });
    } catch (e) {
      stopping = true;
      for (const s of slots) s.worker?.process.kill('SIGKILL');
      lock.release();
      throw listenError('metrics listener', ml.host, ml.port, e);
    }
  }

  let stopped: Promise<void> | undefined;
  const stop = (signal: string): Promise<void> =>
    (stopped ??= (async () => {
      stopping = true;
      log('info', { signal }, 'shutting down: stopping the workers');
      clearInterval(forgetTimer);
      for (const s of slots) clearTimeout(s.restartTimer);
      await Promise.all(
        slots.map(async (s) => {
          const w = s.worker;
          if (!w || w.process.exitCode !== null || w.process.signalCode !== null) return;
          const exited = new Promise<void>((r) => w.process.once('exit', () => r()));
          w.process.kill('SIGTERM');
          const killer = setTimeout(() => w.process.kill('SIGKILL'), config.shutdownGraceMs + STOP_SLACK_MS);
          await exited;
          clearTimeout(killer);
        }),
      );
      await metricsServer?.close().catch(() => undefined);
      lock.release();
    })());
  const onSignal = (signal: string): void => {
    stop(signal).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
}

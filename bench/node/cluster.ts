/**
 * Cluster overhead benchmark (issue 13): the same closed-loop workload against
 *   sqlite×1   one node on SQLite (the default),
 *   pg×1       one instance on PostgreSQL (+ NATS),
 *   pg×2, pg×3 two and three instances on one PostgreSQL schema and NATS,
 * each instance a separate process (packages/node/src/bin.ts under tsx) on 127.0.0.1.
 *
 *   cd bench/node && npm install && npm run cluster         (SECONDS=…, DEVICES=…, WINDOW=…)
 *
 * DEVICES devices register, log in spread over the instances (device i on instance i mod K) and
 * set a delivery token; anonymous sender sockets, one per instance, send 1 KiB envelopes (token
 * lane, durable) to random devices with WINDOW in flight end to end (sent, not yet delivered);
 * receivers ack every Deliver frame. Reported: delivered envelopes per second and the latency
 * from send to delivery (p50, p99), after WARMUP seconds, and what each delivered envelope cost
 * over the measured seconds (CPU time from /proc, so other load on the machine does not inflate it):
 * node CPU µs (all instances, and the busiest), PostgreSQL CPU µs (every process of its server),
 * WAL bytes and WAL syncs (pg_stat_wal), NATS messages in and out (/varz) and NATS CPU µs.
 *
 * PostgreSQL and NATS: by default a private PostgreSQL (initdb into a temporary directory, every
 * setting at its default: synchronous_commit on, fsync on; needs root and /usr/lib/postgresql/15)
 * and a private nats-server (JetStream on, monitoring port), so their counters belong to this run
 * alone. MW_BENCH_DATABASE_URL / NATS_URL use existing servers instead (their CPU, WAL and NATS
 * counters are then not reported: other clients share them). Each run uses a fresh schema and prefix.
 * On a shared 2-core machine the rates give a direction, not a capacity; the per-message costs hold.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import WebSocket from 'ws';
import { createContext } from '../../packages/crypto/src/index.js';
import {
  DEVICE_SOCKET_METHOD,
  DEVICE_SOCKET_PATH,
  PROTOCOL_VERSION,
  decodeFrame,
  encodeFrame,
  requestDigest,
  signDeviceAuth,
} from '../../packages/protocol/src/index.js';
import type { BenchDevice } from './devices.js';
import { makeDevice, registerDevice } from './devices.js';
import { Histogram } from './hist.js';
import { F, decodeDeliver, decodeTop, encodeAck, encodeSend } from './wire.js';
import { log, now, sleep } from '../lib/util.js';
import { cpuDelta, cpuSeconds, loadAverage, treeCpu } from '../lib/proc.js';
import type { PrivateNats, PrivatePg } from '../lib/services.js';
import { canStartPrivatePg, startPrivateNats, startPrivatePg } from '../lib/services.js';
import type { NodeProcess } from '../lib/node-process.js';
import { spawnNode } from '../lib/node-process.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '../..');
const env = process.env;
const num = (name: string, def: number): number => (env[name] ? Number(env[name]) : def);
const DEVICES = num('DEVICES', 60);
const WINDOW = num('WINDOW', 200);
const WARMUP_S = num('WARMUP', 2);
const MEASURE_S = num('SECONDS', 8);
const privatePg: PrivatePg | undefined = env['MW_BENCH_DATABASE_URL'] === undefined && canStartPrivatePg() ? await startPrivatePg() : undefined;
const privateNats: PrivateNats | undefined = env['NATS_URL'] === undefined ? await startPrivateNats() : undefined;
const PG_URL = privatePg?.url ?? env['MW_BENCH_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const NATS_URL = privateNats?.url ?? env['NATS_URL'] ?? 'nats://127.0.0.1:4222';
const PAYLOAD = new Uint8Array(1024).fill(7);
const BUCKETS = ['http', 'ws-upgrade', 'ws-frame', 'auth', 'send-token', 'send-first-contact', 'send-first-contact-target', 'prekey-claim', 'prekey-claim-target', 'directory-write'];
const ctx = createContext();

type Device = BenchDevice;

function open(port: number, path: string): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { perMessageDeflate: false });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function next(ws: WebSocket): Promise<ReturnType<typeof decodeFrame>> {
  return new Promise((resolve) => ws.once('message', (data: Buffer) => resolve(decodeFrame(new Uint8Array(data)))));
}

/** Logs `d` in on `port`, sets its token; `onPayload` sees every delivered envelope (acked per frame). */
async function login(port: number, d: Device, onPayload: (p: Uint8Array) => void): Promise<WebSocket> {
  const ws = await open(port, DEVICE_SOCKET_PATH);
  ws.send(encodeFrame({ version: PROTOCOL_VERSION, requestId: 1, body: { case: 'clientHello', value: { versions: [PROTOCOL_VERSION] } } }));
  const hello = await next(ws);
  if (!hello.ok || hello.value.body.case !== 'serverHello') throw new Error('no serverHello');
  ws.send(encodeFrame({ version: PROTOCOL_VERSION, requestId: 2, body: { case: 'authenticate', value: signDeviceAuth(ctx, d.device, d.certificate, hello.value.body.value.challenge, requestDigest(ctx, DEVICE_SOCKET_METHOD, DEVICE_SOCKET_PATH)) } }));
  const ok = await next(ws);
  if (!ok.ok || ok.value.body.case !== 'authenticated') throw new Error('not authenticated');
  const tokenSet = new Promise<void>((resolve) => {
    ws.on('message', (data: Buffer) => {
      const top = decodeTop(data);
      if (top.field === F.ok && top.requestId === 77) resolve();
      if (top.field !== F.deliver) return;
      const envs = decodeDeliver(top.body);
      const ids = envs.filter((e) => e.id.length === 16).map((e) => e.id);
      for (const e of envs) onPayload(e.payload);
      if (ids.length > 0) ws.send(encodeAck(0, ids));
    });
  });
  ws.send(encodeFrame({ version: PROTOCOL_VERSION, requestId: 77, body: { case: 'setDeliveryTokens', value: { tokens: [d.token] } } }));
  await tokenSet;
  return ws;
}

interface Costs {
  /** Node CPU µs per delivered envelope, all instances together, and the busiest instance's share. */
  nodeUs: number;
  nodeMaxUs: number;
  pgUs?: number;
  walBytes?: number;
  walSyncs?: number;
  natsIn?: number;
  natsOut?: number;
  natsUs?: number;
  load: string;
}

async function walStats(admin: pg.Client): Promise<{ lsn: string; syncs: number }> {
  const r = await admin.query<{ lsn: string; syncs: string }>('SELECT pg_current_wal_lsn()::text AS lsn, (SELECT wal_sync FROM pg_stat_wal)::text AS syncs');
  return { lsn: r.rows[0]!.lsn, syncs: Number(r.rows[0]!.syncs) };
}

async function runCase(name: string, store: 'sqlite' | 'postgres', instances: number): Promise<{ name: string; rate: number; p50: number; p99: number; errors: number; costs: Costs }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mw-bench-cluster-'));
  const schema = `mw_bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  if (store === 'postgres' || privatePg) await admin.connect();
  const nodes: NodeProcess[] = [];
  const sockets: WebSocket[] = [];
  try {
    const common: Record<string, string> = {
      HOST: '127.0.0.1',
      PORT: '0',
      METRICS_PORT: 'off',
      LOG_LEVEL: 'info',
      WEB_APP: 'off',
      DATA_DIR: dataDir,
      WS_MAX_CONNECTIONS_PER_ADDRESS: '0',
      BACKUP_INTERVAL_HOURS: '0',
      RATE_LIMITS: BUCKETS.map((b) => `${b}=1000000:10000000`).join(','),
      ...(store === 'postgres' ? { STORE: 'postgres', DATABASE_URL: PG_URL, DATABASE_SCHEMA: schema, NATS_URL, NATS_SUBJECT_PREFIX: schema } : {}),
    };
    // The first instance creates the node key and the schema; the others then start together.
    nodes.push(await spawnNode({ bin: join(ROOT, 'packages/node/src/bin.ts'), cwd: HERE, env: common, tsconfig: join(HERE, 'tsconfig.json') }));
    nodes.push(...(await Promise.all(Array.from({ length: instances - 1 }, () => spawnNode({ bin: join(ROOT, 'packages/node/src/bin.ts'), cwd: HERE, env: common, tsconfig: join(HERE, 'tsconfig.json') })))));
    const devices = Array.from({ length: DEVICES }, () => makeDevice(ctx));
    for (const d of devices) await registerDevice(ctx, `http://127.0.0.1:${nodes[0]!.port}`, d);
    const hist = new Histogram();
    let measuring = false;
    let delivered = 0;
    let inFlight = 0;
    let errors = 0;
    const onPayload = (p: Uint8Array): void => {
      inFlight--;
      if (measuring) {
        delivered++;
        hist.record(now() - Buffer.from(p.buffer, p.byteOffset, p.byteLength).readDoubleLE(0));
      }
    };
    for (const [i, d] of devices.entries()) sockets.push(await login(nodes[i % instances]!.port, d, onPayload));
    const senders = await Promise.all(
      nodes.map(async (n) => {
        const ws = await open(n.port, '/v1/anonymous');
        ws.send(encodeFrame({ version: PROTOCOL_VERSION, requestId: 1, body: { case: 'clientHello', value: { versions: [PROTOCOL_VERSION] } } }));
        await next(ws);
        ws.on('message', (data: Buffer) => {
          if (decodeTop(data).field === F.error) {
            errors++;
            inFlight--;
          }
        });
        sockets.push(ws);
        return ws;
      }),
    );
    let id = 1;
    const deadline = now() + (WARMUP_S + MEASURE_S) * 1000;
    type Snap = { node: number[]; pg?: Map<number, number>; wal?: { lsn: string; syncs: number }; nats?: { in_msgs: number; out_msgs: number }; natsCpu?: number; at: number };
    const snap = async (): Promise<Snap> => ({
      node: nodes.map((n) => cpuSeconds(n.child.pid!)),
      ...(privatePg ? { pg: treeCpu(privatePg.pid), wal: await walStats(admin) } : {}),
      ...(privateNats ? { nats: await privateNats.varz(), natsCpu: cpuSeconds(privateNats.pid) } : {}),
      at: now(),
    });
    let start: Snap | undefined;
    const load = loadAverage();
    setTimeout(() => {
      measuring = true;
      void snap().then((s0) => (start = s0));
    }, WARMUP_S * 1000);
    while (now() < deadline) {
      while (inFlight < WINDOW) {
        const d = devices[Math.floor(Math.random() * devices.length)]!;
        const payload = new Uint8Array(PAYLOAD);
        Buffer.from(payload.buffer).writeDoubleLE(now(), 0);
        senders[id % senders.length]!.send(encodeSend(id++, d.mailbox, payload, d.token));
        inFlight++;
      }
      await sleep(1);
    }
    measuring = false;
    const end = await snap();
    const s0 = start!;
    const per = (x: number): number => x / Math.max(1, delivered);
    const nodeDeltas = end.node.map((c, i) => c - s0.node[i]!);
    const costs: Costs = {
      nodeUs: per(nodeDeltas.reduce((a, b) => a + b, 0) * 1e6),
      nodeMaxUs: per(Math.max(...nodeDeltas) * 1e6),
      load,
    };
    if (s0.pg && end.pg) costs.pgUs = per(cpuDelta(s0.pg, end.pg) * 1e6);
    if (s0.wal && end.wal) {
      const r = await admin.query<{ d: string }>('SELECT pg_wal_lsn_diff($1, $2)::text AS d', [end.wal.lsn, s0.wal.lsn]);
      costs.walBytes = per(Number(r.rows[0]!.d));
      costs.walSyncs = per(end.wal.syncs - s0.wal.syncs);
    }
    if (s0.nats && end.nats) {
      costs.natsIn = per(end.nats.in_msgs - s0.nats.in_msgs);
      costs.natsOut = per(end.nats.out_msgs - s0.nats.out_msgs);
      costs.natsUs = per((end.natsCpu! - s0.natsCpu!) * 1e6);
    }
    return { name, rate: delivered / MEASURE_S, p50: hist.quantile(0.5), p99: hist.quantile(0.99), errors, costs };
  } finally {
    for (const s of sockets) s.terminate();
    for (const n of nodes) n.child.kill('SIGTERM');
    await sleep(1500);
    for (const n of nodes) if (n.child.exitCode === null) n.child.kill('SIGKILL');
    if (store === 'postgres') await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
    if (store === 'postgres' || privatePg) await admin.end();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const cases: [string, 'sqlite' | 'postgres', number][] = [
  ['sqlite×1', 'sqlite', 1],
  ['pg×1', 'postgres', 1],
  ['pg×2', 'postgres', 2],
  ['pg×3', 'postgres', 3],
];
/** CASES=pg×1,pg×3: run only these. */
const only = env['CASES'] ? new Set(env['CASES'].split(',')) : undefined;
const rows = [];
for (const [name, store, k] of cases.filter(([n]) => !only || only.has(n))) {
  log(`${name}: ${DEVICES} devices, window ${WINDOW}, ${MEASURE_S} s`);
  rows.push(await runCase(name, store, k));
}
const f = (x: number | undefined, d = 0): string => (x === undefined ? '—' : x.toFixed(d));
console.log(`PostgreSQL: ${privatePg ? 'private server, default settings' : PG_URL.replace(/\/\/[^@]*@/, '//')}; NATS: ${privateNats ? 'private server' : NATS_URL}; ${DEVICES} devices, window ${WINDOW}, ${MEASURE_S} s measured\n`);
console.log('| setup | delivered/s | p50 ms | p99 ms | errors | node CPU µs/msg (busiest instance) | PostgreSQL CPU µs/msg | WAL bytes/msg | WAL syncs/msg | NATS msgs in / out per msg | NATS CPU µs/msg | load avg at start |\n|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  const c = r.costs;
  const pgCase = r.name.startsWith('pg');
  console.log(
    `| ${r.name} | ${Math.round(r.rate)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.errors} | ${f(c.nodeUs)} (${f(c.nodeMaxUs)}) | ${pgCase ? f(c.pgUs) : '—'} | ${pgCase ? f(c.walBytes) : '—'} | ${pgCase ? f(c.walSyncs, 3) : '—'} | ${pgCase ? `${f(c.natsIn, 2)} / ${f(c.natsOut, 2)}` : '—'} | ${pgCase ? f(c.natsUs, 1) : '—'} | ${c.load} |`,
  );
}
privatePg?.close();
privateNats?.close();
process.exit(0);

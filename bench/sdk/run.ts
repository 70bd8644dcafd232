/**
 * SDK benchmark (issue "bench/sdk"): send-to-receive latency and messages/s per pair between two
 * SDK clients (Node), through a real meshwhisper-node on loopback.
 *
 *   cd bench/sdk && npm install && npm run bench            (QUICK=1 for a short run)
 *
 * The package sources' own dependencies (@noble/*, fastify, better-sqlite3, ws…) resolve from the
 * repository root, so run `npm ci` at the root first (as for bench/node).
 *
 * This process is the load generator and holds both clients, Alice and Bob (MeshWhisper.create
 * from packages/sdk/src, each with its own device identity, its own storage and its own device
 * WebSocket). It starts a real meshwhisper-node as a SEPARATE process (packages/node/src/bin.ts
 * under tsx) on 127.0.0.1 with a temporary DATA_DIR, its default durability (SQLite WAL,
 * synchronous=FULL: one fsync per commit) and every rate-limit bucket opened (all traffic comes
 * from one address). Each message is a real sendText: seal (Double Ratchet + sealed sender, ratchet
 * state and outbox committed to storage), POST /v1/send (the node commits it, then pushes a Deliver
 * frame to Bob's socket), Bob opens it (ratchet state committed), emits 'message', acks the frame
 * and sends a delivery receipt back (a sealed message of its own).
 *
 * Phases, run once per storage kind: SQLite files (openSqliteStorage, WAL + synchronous=FULL, the
 * realistic Node setup; temp files) and memory (memoryStorage()):
 *   0. warm-up: WARMUP messages each way, one at a time, so the PQXDH sessions exist and each side
 *      holds the other's delivery token (token lane, as in a running conversation)
 *   1. latency: N sequential messages Alice → Bob, one in flight; each from the call to sendText
 *      until Bob's 'message' event (p50/p90/p99/max), with when sendText resolved (the node has
 *      stored it durably) and when Bob's delivered receipt came back to Alice. The next message is
 *      sent only after that receipt, so each sample sees an otherwise idle pair.
 *   2. messages/s, one direction: M messages Alice → Bob as fast as the API allows, INFLIGHT
 *      sendText calls in flight; msgs/s = M ÷ (time from the first call to Bob's M-th message)
 *   3. messages/s, both directions at once: M messages Alice → Bob and M Bob → Alice concurrently
 *      (INFLIGHT in flight on each side); total and per direction
 * CPU seconds of the node process and of this process are read around each phase (per message).
 * A watchdog ends the run (and kills the node) if it exceeds WATCHDOG_S.
 *
 * Settings (env): QUICK=1, N, M, INFLIGHT (32), WARMUP, TEXT_BYTES (100), WATCHDOG_S,
 * STORAGES (sqlite,memory), PROFILE=1 (node child writes a .cpuprofile into bench/sdk/profile/).
 * Profile this process too with `node --cpu-prof --cpu-prof-dir=profile/gen --import tsx ./run.ts`;
 * summarise with `node --import tsx ../lib/profile-summary.ts profile/<file>.cpuprofile`.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WS from 'ws';
import { MeshWhisper, memoryStorage, openSqliteStorage } from '../../packages/sdk/src/index.js';
import type { ProtocolStorage, WebSocketConstructor } from '../../packages/sdk/src/index.js';
import { log, now, sleep, waitFor } from '../lib/util.js';
import type { NodeProcess } from '../lib/node-process.js';
import { spawnNode } from '../lib/node-process.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '../..');
const BIN = join(ROOT, 'packages/node/src/bin.ts');
const env = process.env;
const QUICK = env['QUICK'] === '1';
const num = (name: string, def: number): number => {
  const v = env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${name} must be a positive integer`);
  return n;
};
const N = num('N', QUICK ? 100 : 1000);
const M = num('M', QUICK ? 500 : 5000);
const INFLIGHT = num('INFLIGHT', 32);
const WARMUP = num('WARMUP', QUICK ? 10 : 30);
const TEXT_BYTES = num('TEXT_BYTES', 100);
const WATCHDOG_MS = num('WATCHDOG_S', QUICK ? 300 : 1800) * 1000;
const STORAGES = (env['STORAGES'] ?? 'sqlite,memory').split(',').filter(Boolean) as StorageKind[];
const PROFILE = env['PROFILE'] === '1';
/** Longest wait for one message, receipt or phase before the run is declared stuck. */
const STEP_TIMEOUT_MS = 30_000;
const PHASE_TIMEOUT_MS = 600_000;
const NAMESPACE = 'bench';

const BUCKETS = ['http', 'ws-upgrade', 'ws-frame', 'auth', 'send-token', 'send-first-contact', 'send-first-contact-target', 'prekey-claim', 'prekey-claim-target', 'directory-write', 'username-lookup', 'username-write', 'blob-upload', 'blob-download', 'archive'];
const NODE_ENV: Record<string, string> = {
  HOST: '127.0.0.1',
  PORT: '0',
  METRICS_PORT: 'off',
  LOG_LEVEL: 'info',
  USERNAME_NAMESPACES: `${NAMESPACE}:signed`,
  // One address (127.0.0.1) sends everything: open every bucket so the limiter is not measured.
  RATE_LIMITS: BUCKETS.map((b) => `${b}=1000000:10000000`).join(','),
};

type StorageKind = 'sqlite' | 'memory';


// ── statistics ──
interface Stats {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}
function stats(xs: readonly number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number): number => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]! : Number.NaN);
  return { n: s.length, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: s.at(-1) ?? Number.NaN, mean: s.reduce((a, b) => a + b, 0) / (s.length || 1) };
}

// ── process measurements (/proc) ──
const CLK_TCK = 100;
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime + stime
}
function machineBusySeconds(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return (user + nice + system + irq + softirq + steal) / CLK_TCK;
}
interface CpuWindow {
  seconds: number;
  nodeCpuS: number;
  clientsCpuS: number;
  /** Cores' worth of CPU used by everything else on the machine during the window. */
  otherCores: number;
}
function cpuWindow(pid: number): () => CpuWindow {
  const t0 = now();
  const n0 = cpuSeconds(pid);
  const g0 = process.cpuUsage();
  const b0 = machineBusySeconds();
  return () => {
    const seconds = (now() - t0) / 1000;
    const nodeCpuS = cpuSeconds(pid) - n0;
    const g = process.cpuUsage(g0);
    const clientsCpuS = (g.user + g.system) / 1e6;
    const busy = machineBusySeconds() - b0;
    return { seconds, nodeCpuS, clientsCpuS, otherCores: Math.max(0, busy - nodeCpuS - clientsCpuS) / seconds };
  };
}

// ── the node, a separate process ──
type NodeRun = NodeProcess;

async function startNode(dataDir: string): Promise<NodeRun> {
  const profDir = join(HERE, 'profile');
  if (PROFILE) mkdirSync(profDir, { recursive: true });
  return spawnNode({
    bin: BIN,
    cwd: HERE,
    env: { ...NODE_ENV, DATA_DIR: dataDir },
    nodeArgs: PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
    tsconfig: join(HERE, 'tsconfig.json'),
  });
}

async function stopNode(run: NodeRun): Promise<void> {
  if (run.child.exitCode !== null || run.child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => run.child.once('exit', () => resolve()));
  run.child.kill('SIGTERM');
  await Promise.race([exited, sleep(20_000)]);
  if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
}

// ── a client with probes ──
/** Timestamps taken around the SDK's I/O (its fetch and WebSocket are injectable options). */
interface Probe {
  /** When the latest POST /v1/send started and when its response arrived. */
  sendPostStart: number;
  sendPostEnd: number;
  sendPosts: number;
  sendBodyBytes: number;
  otherRequests: number;
  /** When the latest frame arrived on this client's device socket. */
  lastFrameAt: number;
  frames: number;
}

function probedFetch(p: Probe): typeof fetch {
  return async (input, init) => {
    const url = input instanceof URL ? input : new URL(typeof input === 'string' ? input : input.url);
    const isSend = url.pathname === '/v1/send' && init?.method === 'POST';
    const t = now();
    if (isSend) {
      p.sendPostStart = t;
      p.sendPosts++;
      const b = init.body;
      if (b instanceof Uint8Array) p.sendBodyBytes += b.byteLength;
    } else p.otherRequests++;
    const res = await fetch(input, init);
    if (isSend) p.sendPostEnd = now();
    return res;
  };
}

/** The `ws` client (what the SDK uses on Node 20 by default), with a frame-arrival timestamp. */
function probedWebSocket(p: Probe): WebSocketConstructor {
  class ProbedWebSocket extends WS {
    constructor(url: string) {
      super(url);
      // Registered before the SDK's onmessage handler, so it runs first for every frame.
      this.on('message', () => {
        p.lastFrameAt = now();
        p.frames++;
      });
    }
  }
  return ProbedWebSocket as unknown as WebSocketConstructor;
}

interface Party {
  name: string;
  client: MeshWhisper;
  probe: Probe;
  /** Text → arrival time (and the frame-arrival time then), for messages this party received. */
  arrived: Map<string, { at: number; frameAt: number }>;
  /** Message id → arrival time of the first delivered receipt for it. */
  receipts: Map<string, number>;
  /** Distinct messages received per tag (the key's part before its last ':'). */
  perTag: Map<string, number>;
  /** Called after every message or receipt event (event-driven waits, no polling). */
  notify: Set<() => void>;
}

/** Resolves once `pred()` holds, re-checked after each of the party's events. */
function until(p: Party, what: string, pred: () => boolean, timeoutMs: number): Promise<void> {
  if (pred()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (!pred()) return;
      clearTimeout(t);
      p.notify.delete(check);
      resolve();
    };
    const t = setTimeout(() => {
      p.notify.delete(check);
      reject(new Error(`timeout after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    p.notify.add(check);
  });
}

async function openParty(name: string, base: string, kind: StorageKind, dir: string): Promise<Party> {
  const probe: Probe = { sendPostStart: 0, sendPostEnd: 0, sendPosts: 0, sendBodyBytes: 0, otherRequests: 0, lastFrameAt: 0, frames: 0 };
  const storage: ProtocolStorage = kind === 'sqlite' ? await openSqliteStorage({ path: join(dir, `${kind}-${name}.db`) }) : await memoryStorage();
  const client = await MeshWhisper.create({ node: base, namespace: NAMESPACE, storage, fetch: probedFetch(probe), WebSocket: probedWebSocket(probe) });
  const party: Party = { name, client, probe, arrived: new Map(), receipts: new Map(), notify: new Set(), perTag: new Map() };
  const notify = (): void => {
    for (const f of [...party.notify]) f();
  };
  client.on('message', (m) => {
    const key = m.text?.slice(0, m.text.indexOf('|'));
    if (key !== undefined && !party.arrived.has(key)) {
      party.arrived.set(key, { at: now(), frameAt: probe.lastFrameAt });
      const tag = key.slice(0, key.lastIndexOf(':'));
      party.perTag.set(tag, (party.perTag.get(tag) ?? 0) + 1);
    }
    notify();
  });
  client.on('receipt', (r) => {
    if (r.state !== 'delivered') return;
    const t = now();
    for (const id of r.messageIds) if (!party.receipts.has(id)) party.receipts.set(id, t);
    notify();
  });
  client.on('undecryptable', (u) => log(`${name}: undecryptable envelope ${u.code}: ${u.message}`));
  client.on('gap', (g) => log(`${name}: gap notice expired=${g.expired} evicted=${g.evicted}`));
  await waitFor(`${name} online`, () => client.connectionState === 'online', STEP_TIMEOUT_MS, 2);
  return party;
}

/** A text of exactly TEXT_BYTES ASCII bytes whose key (before '|') names the phase and index. */
function makeText(key: string): string {
  const head = `${key}|`;
  if (head.length > TEXT_BYTES) throw new RangeError('TEXT_BYTES too small for the message key');
  return head + 'x'.repeat(TEXT_BYTES - head.length);
}

// ── phases ──
interface Sample {
  total: number;
  resolved: number;
  receipt: number;
  postStart: number;
  postEnd: number;
  frameAt: number;
}

/** One message, alone in flight: sent, received, and its delivered receipt back. */
async function oneMessage(from: Party, to: Party, key: string): Promise<Sample> {
  const text = makeText(key);
  from.probe.sendPostStart = from.probe.sendPostEnd = 0;
  const t0 = now();
  const { id } = await from.client.sendText(to.client.mailboxId, text);
  const resolved = now() - t0;
  const postStart = from.probe.sendPostStart - t0;
  const postEnd = from.probe.sendPostEnd - t0;
  await until(to, `message ${key}`, () => to.arrived.has(key), STEP_TIMEOUT_MS);
  const a = to.arrived.get(key)!;
  await until(from, `receipt for ${key}`, () => from.receipts.has(id), STEP_TIMEOUT_MS);
  return { total: a.at - t0, resolved, receipt: from.receipts.get(id)! - t0, postStart, postEnd, frameAt: a.frameAt - t0 };
}

interface LatencyResult {
  total: Stats;
  resolved: Stats;
  receipt: Stats;
  postStart: Stats;
  postEnd: Stats;
  frameAt: Stats;
  cpu: CpuWindow;
}

async function latencyPhase(a: Party, b: Party, tag: string, pid: number): Promise<LatencyResult> {
  const samples: Sample[] = [];
  const done = cpuWindow(pid);
  for (let i = 0; i < N; i++) samples.push(await oneMessage(a, b, `${tag}:${i}`));
  const cpu = done();
  const col = (k: keyof Sample): Stats => stats(samples.map((s) => s[k]));
  return { total: col('total'), resolved: col('resolved'), receipt: col('receipt'), postStart: col('postStart'), postEnd: col('postEnd'), frameAt: col('frameAt'), cpu };
}

interface FlowResult {
  /** Messages per second, M ÷ (first sendText call → M-th message at the receiver). */
  rate: number;
  seconds: number;
  /** Time until every sendText had resolved (node accepted all). */
  sentS: number;
  latency: Stats;
}

/** Sends M messages from → to with INFLIGHT calls in flight; resolves when all arrived. */
async function flow(from: Party, to: Party, tag: string): Promise<FlowResult> {
  const started: number[] = new Array<number>(M);
  let next = 0;
  const t0 = now();
  let sentAt = 0;
  const senders = (async () => {
    await Promise.all(
      Array.from({ length: Math.min(INFLIGHT, M) }, async () => {
        while (next < M) {
          const i = next++;
          started[i] = now();
          await from.client.sendText(to.client.mailboxId, makeText(`${tag}:${i}`));
        }
      }),
    );
    sentAt = now();
  })();
  await until(to, `${M} messages ${from.name} → ${to.name}`, () => to.perTag.get(tag) === M, PHASE_TIMEOUT_MS);
  const end = Math.max(...Array.from({ length: M }, (_, i) => to.arrived.get(`${tag}:${i}`)!.at));
  await senders;
  const lat = Array.from({ length: M }, (_, i) => to.arrived.get(`${tag}:${i}`)!.at - started[i]!);
  return { rate: M / ((end - t0) / 1000), seconds: (end - t0) / 1000, sentS: (sentAt - t0) / 1000, latency: stats(lat) };
}

/** Waits until the receipts for everything `p` sent have come back and both clients are idle. */
async function settle(a: Party, b: Party): Promise<void> {
  await Promise.all([a.client.idle(), b.client.idle()]);
  await sleep(500);
  await Promise.all([a.client.idle(), b.client.idle()]);
}

/** Envelopes POSTed and frames received by both clients per text message in a phase (receipts, batching). */
interface Wire {
  postsPerMsg: number;
  framesPerMsg: number;
}
function wireCounter(a: Party, b: Party, messages: number): () => Wire {
  const p0 = a.probe.sendPosts + b.probe.sendPosts;
  const f0 = a.probe.frames + b.probe.frames;
  return () => ({ postsPerMsg: (a.probe.sendPosts + b.probe.sendPosts - p0) / messages, framesPerMsg: (a.probe.frames + b.probe.frames - f0) / messages });
}

interface StorageResult {
  kind: StorageKind;
  warmupS: number;
  latency: LatencyResult;
  one: FlowResult & { cpu: CpuWindow; wire: Wire };
  both: { ab: FlowResult; ba: FlowResult; total: number; cpu: CpuWindow; wire: Wire };
  latencyWire: Wire;
  avgSendBodyBytes: number;
}

async function benchStorage(kind: StorageKind, base: string, dir: string, pid: number): Promise<StorageResult> {
  log(`${kind}: creating Alice and Bob (identity, prekeys, device socket)`);
  const alice = await openParty('alice', base, kind, dir);
  const bob = await openParty('bob', base, kind, dir);
  try {
    const w0 = now();
    for (let i = 0; i < WARMUP; i++) await oneMessage(alice, bob, `${kind}-warm-ab:${i}`);
    for (let i = 0; i < WARMUP; i++) await oneMessage(bob, alice, `${kind}-warm-ba:${i}`);
    const warmupS = (now() - w0) / 1000;
    await settle(alice, bob);

    log(`${kind}: latency, ${N} sequential messages Alice → Bob`);
    const bytes0 = alice.probe.sendBodyBytes;
    const alicePosts0 = alice.probe.sendPosts;
    let wire = wireCounter(alice, bob, N);
    const latency = await latencyPhase(alice, bob, `${kind}-lat`, pid);
    const latencyWire = wire();
    const avgSendBodyBytes = (alice.probe.sendBodyBytes - bytes0) / (alice.probe.sendPosts - alicePosts0);
    await settle(alice, bob);

    log(`${kind}: messages/s, ${M} messages Alice → Bob, ${INFLIGHT} in flight`);
    let done = cpuWindow(pid);
    wire = wireCounter(alice, bob, M);
    const oneFlow = await flow(alice, bob, `${kind}-one`);
    await settle(alice, bob);
    const one = { ...oneFlow, cpu: done(), wire: wire() };

    log(`${kind}: messages/s both directions at once, ${M} each way, ${INFLIGHT} in flight per side`);
    done = cpuWindow(pid);
    wire = wireCounter(alice, bob, 2 * M);
    const t0 = now();
    const [ab, ba] = await Promise.all([flow(alice, bob, `${kind}-ab`), flow(bob, alice, `${kind}-ba`)]);
    const total = (2 * M) / ((now() - t0) / 1000);
    await settle(alice, bob);
    const both = { ab, ba, total, cpu: done(), wire: wire() };
    return { kind, warmupS, latency, latencyWire, one, both, avgSendBodyBytes };
  } finally {
    await Promise.all([alice.client.close(), bob.client.close()]);
  }
}

// ── report ──
const f0 = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const f2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const quad = (s: Stats): string => `${f1(s.p50)} / ${f1(s.p90)} / ${f1(s.p99)} / ${f1(s.max)}`;
const pair = (s: Stats): string => `${f1(s.p50)} / ${f1(s.p99)}`;
const perMsg = (cpuS: number, n: number): string => f2((cpuS * 1000) / n);

function table(rs: readonly StorageResult[]): string {
  const head = `| | ${rs.map((r) => (r.kind === 'sqlite' ? 'SQLite files (WAL, synchronous=FULL)' : 'memory storage')).join(' | ')} |`;
  const sep = `| --- | ${rs.map(() => '---:').join(' | ')} |`;
  const row = (label: string, f: (r: StorageResult) => string): string => `| ${label} | ${rs.map(f).join(' | ')} |`;
  return [
    head,
    sep,
    row(`send → receive, one in flight (N=${N}), p50 / p90 / p99 / max, ms`, (r) => quad(r.latency.total)),
    row('send → sendText resolved (node stored it), p50 / p99, ms', (r) => pair(r.latency.resolved)),
    row('send → delivered receipt back at Alice, p50 / p99, ms', (r) => pair(r.latency.receipt)),
    row('of which, p50, ms: sendText call → POST /v1/send starts (seal + storage commit)', (r) => f1(r.latency.postStart.p50)),
    row('… → POST /v1/send response (node commit + fsync)', (r) => f1(r.latency.postEnd.p50)),
    row("… → Deliver frame at Bob's socket", (r) => f1(r.latency.frameAt.p50)),
    row("… → Bob's 'message' event (open + storage commit)", (r) => f1(r.latency.total.p50)),
    row('CPU per message in the latency phase, node / both clients, ms', (r) => `${perMsg(r.latency.cpu.nodeCpuS, N)} / ${perMsg(r.latency.cpu.clientsCpuS, N)}`),
    row(`messages/s per pair, one direction (M=${M}, ${INFLIGHT} in flight)`, (r) => f0(r.one.rate)),
    row('  latency under that load, p50 / p99, ms', (r) => pair(r.one.latency)),
    row('  CPU per message, node / both clients, ms', (r) => `${perMsg(r.one.cpu.nodeCpuS, M)} / ${perMsg(r.one.cpu.clientsCpuS, M)}`),
    row(`messages/s per pair, both directions at once (${M} each way): total (A→B + B→A)`, (r) => `${f0(r.both.total)} (${f0(r.both.ab.rate)} + ${f0(r.both.ba.rate)})`),
    row('  latency under that load A→B, p50 / p99, ms', (r) => pair(r.both.ab.latency)),
    row('  CPU per message, node / both clients, ms', (r) => `${perMsg(r.both.cpu.nodeCpuS, 2 * M)} / ${perMsg(r.both.cpu.clientsCpuS, 2 * M)}`),
    row('CPU used by other work on the machine (latency / one-way / both-ways phase), cores', (r) => `${f2(r.latency.cpu.otherCores)} / ${f2(r.one.cpu.otherCores)} / ${f2(r.both.cpu.otherCores)}`),
    row('POST /v1/send per text message (itself + delivered receipts), latency / one-way / both-ways', (r) => `${f2(r.latencyWire.postsPerMsg)} / ${f2(r.one.wire.postsPerMsg)} / ${f2(r.both.wire.postsPerMsg)}`),
    row('device-socket frames received per text message (Deliver frames carry batches), same phases', (r) => `${f2(r.latencyWire.framesPerMsg)} / ${f2(r.one.wire.framesPerMsg)} / ${f2(r.both.wire.framesPerMsg)}`),
    row('POST /v1/send body per text message, bytes', (r) => f0(r.avgSendBodyBytes)),
  ].join('\n');
}

// ── main, with a watchdog ──
let node: NodeRun | undefined;
let work: string | undefined;
const cleanup = (): void => {
  if (node && node.child.exitCode === null && node.child.signalCode === null) node.child.kill('SIGKILL');
  if (work) rmSync(work, { recursive: true, force: true });
};
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    log(`${sig}: stopping`);
    cleanup();
    process.exit(130);
  });
}
const watchdog = setTimeout(() => {
  log(`watchdog: run exceeded ${WATCHDOG_MS / 1000} s; stopping`);
  cleanup();
  process.exit(2);
}, WATCHDOG_MS);

async function main(): Promise<void> {
  const c = cpus();
  const machine = `${c.length} × ${c[0]?.model ?? '?'}, Node ${process.version}`;
  log(`machine: ${machine}; QUICK=${QUICK ? 1 : 0} N=${N} M=${M} INFLIGHT=${INFLIGHT} WARMUP=${WARMUP} TEXT_BYTES=${TEXT_BYTES} STORAGES=${STORAGES.join(',')}`);
  work = mkdtempSync(join(tmpdir(), 'mw-bench-sdk-'));
  const dataDir = join(work, 'node');
  log('starting meshwhisper-node (separate process)');
  node = await startNode(dataDir);
  const base = `http://127.0.0.1:${node.port}`;
  const pid = node.child.pid!;
  const results: StorageResult[] = [];
  for (const kind of STORAGES) {
    if (kind !== 'sqlite' && kind !== 'memory') throw new RangeError(`unknown storage ${String(kind)}`);
    results.push(await benchStorage(kind, base, work, pid));
  }
  const idle = cpuWindow(pid);
  await sleep(2000);
  const idleOther = idle().otherCores;
  await stopNode(node);
  console.log(
    [
      table(results),
      '',
      `Machine: ${machine}. Other work ran on the machine at the same time (row "CPU used by other work"; ${f2(idleOther)} cores busy with it in a 2 s idle window after the run).`,
      `Settings: text ${TEXT_BYTES} B (ASCII), N=${N} sequential messages, M=${M} messages per direction, ${INFLIGHT} sendText in flight per sender, ${WARMUP} warm-up messages each way; both clients in this process (one event loop), the node in its own process; node: SQLite WAL + synchronous=FULL (its default), rate-limit buckets opened (RATE_LIMITS every bucket 1000000:10000000), USERNAME_NAMESPACES=${NAMESPACE}:signed, DELIVERY_WINDOW default.`,
      ...results.map((r) => `${r.kind}: warm-up ${f1(r.warmupS)} s; one-way flow: all sendText resolved after ${f2(r.one.sentS)} s, all received after ${f2(r.one.seconds)} s; both-ways: ${f2(r.both.ab.seconds)} s / ${f2(r.both.ba.seconds)} s`),
      `Node warnings logged: ${node.warnings}`,
    ].join('\n'),
  );
}

main()
  .catch((e: unknown) => {
    console.error('bench failed:', e instanceof Error ? (e.stack ?? e.message) : e);
    if (node?.stderr.length) console.error(node.stderr.join('\n'));
    process.exitCode = 1;
  })
  .finally(() => {
    clearTimeout(watchdog);
    if (node) void stopNode(node);
    setTimeout(() => {
      cleanup();
      process.exit();
    }, 500);
  });

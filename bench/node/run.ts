/**
 * Node load benchmark (issue 3, "Benchmark (bench/node, not a test)"), side by side with core NATS.
 *
 *   cd bench/node && npm install && npm run bench            (QUICK=1 for a short run)
 *
 * This process is the load generator. It starts a real meshwhisper-node as a SEPARATE process
 * (packages/node/src/bin.ts under tsx) on 127.0.0.1 with a temporary DATA_DIR, registers DEVICES
 * devices over HTTP (PUT /v1/keys with a signed device auth), logs each one in on its own device
 * WebSocket (challenge signed with the device key), sets a delivery token per device, and sends
 * 1 KiB sealed-size envelopes between random pairs of devices over anonymous WebSockets (token
 * lane, class DURABLE). Receivers acknowledge every Deliver frame at once (one Ack per frame).
 * Then it pushes the same pattern through the NATS server on 127.0.0.1:4222 (core pub/sub, no
 * persistence): the physical-limit baseline.
 *
 * Phases (each bounded in count and time; a watchdog ends the run):
 *   1. RSS per idle authenticated connection: the node is restarted on the same DATA_DIR after the
 *      registrations (fresh baseline; one device logs in and out first, so that what the first
 *      login starts once for the node is in the baseline), then (RSS with DEVICES idle logins −
 *      before) ÷ DEVICES
 *   2. max throughput, closed loop: WINDOW envelopes in flight end to end (sent, and not yet both
 *      received and — node — answered to its sender, which happens after the commit's fsync, or when the recipient
 *      acknowledged it before its commit started: then it is never written);
 *      every completion releases the next send from the next device to a random other device
 *   3. fixed offered load RATE msgs/s, open loop; latency measured from the INTENDED send time
 *      (so a stalled generator or node cannot hide queueing: no coordinated omission)
 *   3b. the same at LIGHT_RATE msgs/s (default 1,000): latency when the node is not overloaded
 *   4. drain: DRAIN envelopes queued for one offline device, then it logs in; time until all are
 *      delivered and their acks have committed (the Ok to the last Ack)
 *   5. NATS: phases 1–3 with one NATS connection per device, one subject per device
 *   6. JetStream anchor (issue 12): DRAIN messages into a file stream, then drained by one consumer
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, existsSync, symlinkSync } from 'node:fs';
import { cpus, setPriority, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { AckPolicy, StorageType, connect as natsConnect } from 'nats';
import type { NatsConnection } from 'nats';
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
import { GenTrace, summarize } from './trace.js';
import type { SendTemplate } from './wire.js';
import { F, ackDeliver, readTop, selfCheck, sendFrame, sendTemplate, top } from './wire.js';
import { WsClient, terminateAll } from './rfc6455.js';
import { checkFraming } from './rfc6455-check.js';
import { log, now, sleep, waitFor } from '../lib/util.js';
import type { NodeProcess } from '../lib/node-process.js';
import { spawnNode } from '../lib/node-process.js';
import { NodeGc } from './full-gc.js';
import { loopDelay } from '../../packages/node/src/latency-trace.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** Sampling interval (ms) of the generator's event-loop delay monitor. */
const LAG_RESOLUTION_MS = 5;
const ROOT = join(HERE, '../..');
/** NODE_BIN: another build of the node's bin.ts (for before/after experiments); default the repository's. */
const BIN = process.env['NODE_BIN'] ?? join(ROOT, 'packages/node/src/bin.ts');
/**
 * BASELINE=<git ref>: also run the node phases against the packages of that commit (exported with
 * `git archive` into a temporary directory that shares this checkout's node_modules), and print
 * its column next to this checkout's: before/after in one run, on one machine state.
 */
const BASELINE = process.env['BASELINE'] ?? '';
const env = process.env;
/**
 * WORKERS=1,2 (default): the node phases once per setting of the node's WORKERS (processes on one
 * SQLite file; docs/architecture.md §Process model), a column each, in one run. A BASELINE runs
 * with the first setting (a build from before WORKERS ignores it: one process).
 */
const WORKER_SETTINGS = (env['WORKERS'] ?? '1,2').split(',').map((w) => w.trim()).filter(Boolean);
const QUICK = env['QUICK'] === '1';
const num = (name: string, def: number): number => {
  const v = env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new RangeError(`${name} must be a non-negative number`);
  return n;
};
const DEVICES = num('DEVICES', 1000);
const ANON_CONNS = Math.max(1, Math.min(DEVICES, num('ANON_CONNS', DEVICES)));
const PAYLOAD_BYTES = 1024;
const WARMUP_S = num('WARMUP', QUICK ? 1 : 3);
const MEASURE_S = num('SECONDS', QUICK ? 4 : 15);
const WINDOW = num('WINDOW', 2000);
const RATE = num('RATE', 10_000);
/** A second fixed load the node can sustain on this machine: latency without overload. */
const LIGHT_RATE = num('LIGHT_RATE', 1000);
/** OPEN_REPEAT=n: the fixed-load phase n times in a row, each printed (the table keeps the first): its run-to-run spread in one node. */
const OPEN_REPEAT = num('OPEN_REPEAT', 1);
/**
 * GEN_NICE=n: a diagnostic, not a measurement of the targets. The generator's main thread runs each
 * phase at nice n (restored to 0 after the phase, so processes it starts later do not inherit it):
 * the node under test and its clients share two cores here, and this shows how much of a tail is
 * the generator taking the core the node's event loop wants, or (negative) the generator waiting for it.
 * Needs root below 0, or to lower it back to 0.
 */
const GEN_NICE = Number(env['GEN_NICE'] ?? 0);
if (!Number.isInteger(GEN_NICE) || GEN_NICE < -20 || GEN_NICE > 19) throw new RangeError('GEN_NICE must be an integer from -20 to 19');
/** RSS_GC=0: read the idle-connection RSS without the full GCs before it (full-gc.ts; the node's inspector then never opens). */
const RSS_GC = env['RSS_GC'] !== '0';
const DRAIN = num('DRAIN', QUICK ? 20_000 : 100_000);
/** DRAIN_REPEAT=n: the drain (queue DRAIN, log in, drain) n times in a row in one node, each printed; the table keeps the median. */
const DRAIN_REPEAT = num('DRAIN_REPEAT', 1);
/** Open loop gives up (and says so) beyond this many envelopes in flight: the node is not keeping up. */
const OPEN_LOOP_MAX_IN_FLIGHT = Math.max(5000, RATE * 2);
/** After a phase stops sending: how long in-flight envelopes may take to arrive before they count as late. */
const SETTLE_MS = 15_000;
/** Idle time before each RSS reading, so that garbage of the previous step has been collected. */
const RSS_SETTLE_S = num('RSS_SETTLE_S', 15);
const NATS_URL = env['NATS_URL'] ?? '127.0.0.1:4222';
const SKIP_NATS = env['SKIP_NATS'] === '1';
const SKIP_NODE = env['SKIP_NODE'] === '1';
const PROFILE = env['PROFILE'] === '1';
/** The generator itself runs under `node --cpu-prof`: print each phase's window in its profile (performance.now() counts from process start, as the profile does). */
const GEN_PROFILED = process.execArgv.some((a) => a.startsWith('--cpu-prof'));
/** TRACE=1: the node traces its send path (MW_LATENCY_TRACE, packages/node/src/latency-trace.ts); per phase a stage table and a per-second timeline. */
const TRACE = env['TRACE'] === '1';
const genTrace = TRACE ? new GenTrace() : undefined;
/** PERF=1: `perf record` the node (on-CPU, with JIT symbols) during the fixed-load phase; report in bench/node/profile/. */
const PERF = env['PERF'] === '1';
/**
 * FSYNC_DELAY_US=<µs>: the node under test (not the generator) runs with slow-fsync.c preloaded,
 * compiled here with the machine's C compiler: each fsync/fdatasync returns that much later, as on
 * a slower disk (network-attached storage). Every column of the run gets it.
 */
const FSYNC_DELAY_US = num('FSYNC_DELAY_US', 0);
const WATCHDOG_MS = num('WATCHDOG_S', QUICK ? 480 : 900) * 1000;
/**
 * Rate limits raised so that the benchmark measures throughput, not the limiter: every bucket
 * (all load comes from one address, 127.0.0.1) gets rate 1e6/s and burst 1e7.
 */
const BUCKETS = ['http', 'ws-upgrade', 'ws-frame', 'auth', 'send-token', 'send-first-contact', 'send-first-contact-target', 'prekey-claim', 'prekey-claim-target', 'directory-write', 'username-lookup', 'username-write', 'blob-upload', 'blob-download', 'archive'];
const NODE_ENV: Record<string, string> = {
  HOST: '127.0.0.1',
  PORT: '0',
  METRICS_HOST: '127.0.0.1',
  METRICS_PORT: '0',
  LOG_LEVEL: 'info',
  RATE_LIMITS: BUCKETS.map((b) => `${b}=1000000:10000000`).join(','),
  // Every device and sender connects from 127.0.0.1: lift the per-address socket cap.
  WS_MAX_CONNECTIONS_PER_ADDRESS: '0',
  // The drain phase queues DRAIN × 1 KiB for ONE mailbox (defaults: 10,000 messages, 100 MiB).
  MAILBOX_MAX_MESSAGES: String(Math.max(10_000, DRAIN * 2)),
  MAILBOX_MAX_BYTES: String(1024 * 1024 * 1024),
};

if (FSYNC_DELAY_US > 0) {
  const dir = mkdtempSync(join(tmpdir(), 'mw-bench-fsync-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const so = join(dir, 'slow-fsync.so');
  execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', so, join(HERE, 'slow-fsync.c'), '-ldl'], { stdio: 'inherit' });
  NODE_ENV.LD_PRELOAD = so;
  NODE_ENV.MW_BENCH_FSYNC_DELAY_US = String(Math.round(FSYNC_DELAY_US));
}

const ctx = createContext();

/** Runs `fn` over items with at most `n` in flight. */
async function pool<T>(items: readonly T[], n: number, fn: (t: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
      }
    }),
  );
}

// ── process measurements (/proc) ──
/** `pid` and its descendants (a WORKERS > 1 node: the primary and its worker processes). */
function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(d));
      children.set(ppid, list);
    } catch {
      /* gone */
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]!) ?? []));
  return out;
}
/** RSS of the node: every process of it (one, or the primary and its workers). */
function rssKiB(pid: number): number {
  let sum = 0;
  for (const p of processTree(pid)) {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
    sum += m ? Number(m[1]) : Number.NaN;
  }
  return sum;
}
async function rssSettled(pid: number): Promise<number> {
  const s: number[] = [];
  for (let i = 0; i < 5; i++) {
    s.push(rssKiB(pid));
    await sleep(200);
  }
  return s.sort((a, b) => a - b)[2]!;
}
const CLK_TCK = 100;
function cpuSeconds(pid: number, tid?: number): number {
  const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime, stime
}
/** Busy CPU seconds of the whole machine (all cores), from /proc/stat. */
function machineBusySeconds(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return (user + nice + system + irq + softirq + steal) / CLK_TCK;
}
function findProcess(comm: string): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() === comm) return Number(d);
    } catch {
      /* gone */
    }
  }
  return undefined;
}

// ── the load engine, shared by both transports ──
interface Transport {
  /** Sends a payload (Engine.payload(intendedMs, tag) or the same bytes) from device s to device r. */
  send(s: number, r: number, intendedMs: number, tag: number): void;
  /**
   * Every send is answered at its sender (the node's sendResult, after its commit's fsync; core
   * NATS answers nothing): a send is then in flight until it has both arrived and been answered.
   */
  readonly answers: boolean;
}

interface PhaseResult {
  mode: 'closed' | 'open';
  offeredPerS: number;
  deliveredPerS: number;
  delivered: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** Node only: sends answered (committed) in the window, per second; NaN for a transport without answers. */
  answeredPerS: number;
  /** Node only: a send's intended time → its sender's answer (sendResult: after the commit, or at the recipient's ack before it), p50 / p99, ms (NaN: none). */
  answerP50: number;
  answerP99: number;
  late: number;
  sendErrors: number;
  skippedOffered: number;
  nodeCpu: number | undefined;
  /** The node's main (event-loop) thread alone; nodeCpu − this = its other threads (store writer, GC, I/O). With WORKERS > 1: every process's main thread. */
  nodeMainCpu: number | undefined;
  /** Per node process (the primary first, then its workers): [whole process, main thread] cores' worth. */
  nodeProcs: [number, number][];
  /** The measured window (now() clock). */
  measuredFrom: number;
  measuredTo: number;
  genCpu: number;
  /** Of genCpu, the part spent in the kernel (system time: the socket reads and writes, TCP over loopback included). */
  genSysCpu: number;
  peerCpu: number | undefined;
  /** Completions (node: answers, NATS: arrivals) in each whole second of the window. */
  perSecond: number[];
  /** p99 event-loop delay of this generator during the window, ms: how late it itself could send or read. */
  genLagP99: number;
  /** Cores' worth of CPU used by everything else on the machine (other engineers' work) during the window. */
  otherCpu: number;
}

class Engine {
  /** TRACE=1: the node's MW_LATENCY_TRACE file (undefined for NATS). */
  traceFile: string | undefined;
  tag = 0;
  running = false;
  measuring = false;
  /** Sent in this phase, not yet arrived at its recipient. */
  outstanding = 0;
  /** Sent in this phase, not yet answered at its sender (transport.answers only). */
  unanswered = 0;
  /** Answers of this phase in the measured window. */
  answeredInWindow = 0;
  /** Completions (node: answers; NATS: arrivals) in each whole second of the measured window: whether a rate holds or decays within it. */
  perSecond: number[] = [];
  #windowStart = 0;
  issued = 0;
  delivered = 0;
  stale = 0;
  sendErrors = 0;
  hist = new Histogram();
  /** Intended send time → the sender's answer (node: sendResult, sent after the commit or at the recipient's ack before it). */
  answers = new Histogram();
  mode: 'closed' | 'open' = 'closed';
  window = WINDOW;
  #rr = 0;
  /** What every payload carries (random), but for its first 12 bytes. */
  readonly template = new Uint8Array(PAYLOAD_BYTES);
  constructor(
    readonly n: number,
    readonly transport: Transport,
  ) {
    // Sealed envelopes look random; the first 12 bytes carry the intended send time and the phase tag.
    ctx.backend.randomBytes(PAYLOAD_BYTES).forEach((b, i) => (this.template[i] = b));
  }

  payload(intendedMs: number, tag: number): Uint8Array {
    const p = Buffer.allocUnsafe(PAYLOAD_BYTES);
    p.set(this.template);
    p.writeDoubleLE(intendedMs, 0);
    p.writeUInt32LE(tag, 8);
    return p;
  }

  issue(intendedMs = now()): void {
    if (genTrace && this.measuring && this.mode === 'open') genTrace.stage('sendLag', now() - intendedMs);
    const s = this.#rr++ % this.n;
    const r = (s + 1 + Math.floor(Math.random() * (this.n - 1))) % this.n;
    this.outstanding++;
    if (this.transport.answers) this.unanswered++;
    this.issued++;
    this.transport.send(s, r, intendedMs, this.tag);
  }

  /**
   * Closed loop: WINDOW sends in flight, a send being in flight until it has arrived AND (node) its
   * sender was answered — so the loop runs at the rate the node makes sends durable, not only at the
   * rate it delivers them ahead of their commits.
   */
  refill(): void {
    while (this.running && this.mode === 'closed' && Math.max(this.outstanding, this.unanswered) < this.window) this.issue();
  }

  #countSecond(t: number): void {
    const i = Math.floor((t - this.#windowStart) / 1000);
    this.perSecond[i] = (this.perSecond[i] ?? 0) + 1;
  }

  /** Nothing of this phase is in flight any more. */
  settled(): boolean {
    return this.outstanding <= 0 && this.unanswered <= 0;
  }

  /** A payload, b[start, end), arrived at its recipient. */
  received(b: Buffer, start: number, end: number): void {
    if (end - start < 12 || b.readUInt32LE(start + 8) !== this.tag) {
      this.stale++;
      return;
    }
    this.outstanding--;
    if (this.measuring) {
      this.delivered++;
      const t = now();
      if (!this.transport.answers) this.#countSecond(t);
      const ms = t - b.readDoubleLE(start);
      this.hist.record(ms);
      genTrace?.stage('e2e', ms);
    }
    if (this.mode === 'closed') this.refill();
  }

  /** A send of phase `tag` was answered (sendResult) at its sender. */
  answered(intendedMs: number, tag: number): void {
    if (tag !== this.tag) return;
    this.unanswered--;
    if (this.measuring) {
      this.answeredInWindow++;
      const t = now();
      this.#countSecond(t);
      this.answers.record(t - intendedMs);
    }
    if (this.mode === 'closed') this.refill();
  }

  /** A send of phase `tag` was refused (error frame): it will never arrive. */
  lost(tag: number): void {
    if (tag !== this.tag) return;
    this.sendErrors++;
    this.outstanding--;
    if (this.transport.answers) this.unanswered--;
    if (this.mode === 'closed') this.refill();
  }

  async phase(mode: 'closed' | 'open', rate: number, pids: { node?: number; peer?: number }): Promise<PhaseResult> {
    this.tag++;
    this.mode = mode;
    this.outstanding = 0;
    this.unanswered = 0;
    this.answeredInWindow = 0;
    this.delivered = 0;
    this.sendErrors = 0;
    this.hist = new Histogram();
    this.answers = new Histogram();
    this.running = true;
    if (GEN_NICE !== 0) setPriority(0, GEN_NICE);
    let skipped = 0;
    let timer: NodeJS.Timeout | undefined;
    const t0 = now();
    if (mode === 'closed') this.refill();
    else {
      let sent = 0;
      timer = setInterval(() => {
        const target = Math.floor(((now() - t0) * rate) / 1000);
        while (sent < target) {
          if (this.outstanding >= OPEN_LOOP_MAX_IN_FLIGHT) {
            skipped += target - sent;
            sent = target;
            break;
          }
          this.issue(t0 + (sent * 1000) / rate);
          sent++;
        }
      }, 1);
    }
    await sleep(WARMUP_S * 1000);
    const issued0 = this.issued;
    const procs = pids.node ? processTree(pids.node) : [];
    const cpuProc0 = procs.map((p) => [cpuSeconds(p), cpuSeconds(p, p)] as const);
    const cpuP0 = pids.peer ? cpuSeconds(pids.peer) : 0;
    const cpuG0 = process.cpuUsage();
    const busy0 = machineBusySeconds();
    const lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
    lag.enable();
    const m0 = now();
    const w0 = Date.now();
    this.perSecond = [];
    this.#windowStart = m0;
    this.measuring = true;
    await sleep(MEASURE_S * 1000);
    this.measuring = false;
    const w1 = Date.now();
    if (genTrace) setTimeout(() => log(`TRACE ${mode} ${mode === 'open' ? `${rate}/s` : ''} (window ${new Date(w0).toISOString().slice(11, 19)}–${new Date(w1).toISOString().slice(11, 19)}):\n${summarize(this.traceFile, genTrace, w0, w1)}`), 1600);
    const secs = (now() - m0) / 1000;
    const cpuG = process.cpuUsage(cpuG0);
    const busy = (machineBusySeconds() - busy0) / secs;
    lag.disable();
    const nodeProcs = procs.map((p, i): [number, number] => {
      try {
        return [(cpuSeconds(p) - cpuProc0[i]![0]) / secs, (cpuSeconds(p, p) - cpuProc0[i]![1]) / secs];
      } catch {
        return [Number.NaN, Number.NaN]; // the process died in the window
      }
    });
    const nodeCpu = pids.node ? nodeProcs.reduce((a, x) => a + x[0], 0) : undefined;
    const nodeMainCpu = pids.node ? nodeProcs.reduce((a, x) => a + x[1], 0) : undefined;
    const peerCpu = pids.peer ? (cpuSeconds(pids.peer) - cpuP0) / secs : undefined;
    const issuedInWindow = this.issued - issued0;
    this.running = false;
    if (timer) clearInterval(timer);
    if (GEN_NICE !== 0) setPriority(0, 0);
    const delivered = this.delivered;
    const answeredInWindow = this.answeredInWindow;
    const h = this.hist;
    const a = this.answers;
    try {
      await waitFor('in-flight envelopes to arrive and be answered', () => this.settled(), SETTLE_MS, 20);
    } catch {
      /* reported as late */
    }
    return {
      mode,
      offeredPerS: issuedInWindow / secs,
      deliveredPerS: delivered / secs,
      answeredPerS: this.transport.answers ? answeredInWindow / secs : Number.NaN,
      delivered,
      p50: h.quantile(0.5),
      p99: h.quantile(0.99),
      p999: h.quantile(0.999),
      max: h.max,
      answerP50: a.quantile(0.5),
      answerP99: a.quantile(0.99),
      late: Math.max(0, this.outstanding, this.unanswered),
      sendErrors: this.sendErrors,
      skippedOffered: skipped,
      nodeCpu,
      nodeMainCpu,
      nodeProcs,
      measuredFrom: m0,
      measuredTo: m0 + secs * 1000,
      genCpu: (cpuG.user + cpuG.system) / 1e6 / secs,
      genSysCpu: cpuG.system / 1e6 / secs,
      peerCpu,
      genLagP99: loopDelay(lag, LAG_RESOLUTION_MS).p99,
      // Whole seconds only (a timer may end the window a fraction of a millisecond early: 14.9995 s is 15).
      perSecond: Array.from({ length: Math.floor(secs + 0.01) }, (_x, i) => this.perSecond[i] ?? 0),
      otherCpu: Math.max(0, busy - (nodeCpu ?? 0) - (peerCpu ?? 0) - (cpuG.user + cpuG.system) / 1e6 / secs),
    };
  }
}

// ── MeshWhisper node side ──
type Device = BenchDevice;

/**
 * A WebSocket to the node: rfc6455.ts (hand-written, all-zero masking key, one socket write per
 * socket per turn), so that the generator takes as little CPU as it can from the node it shares the
 * machine with.
 */
function openSocket(port: number, path: string): Promise<WsClient> {
  return WsClient.connect('127.0.0.1', port, path);
}

/** Frames that arrived after the last nextFrame() and before the socket's handler was installed (handleWith). */
const held = new WeakMap<WsClient, Buffer[]>();

/** Next library-decoded frame on `ws` (setup path only: before the hot handler is installed). */
function nextFrame(ws: WsClient, timeoutMs = 20_000): Promise<ReturnType<typeof decodeFrame>> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${ws.label}: frame: timeout`)), timeoutMs);
    ws.reader.onMessage = (b, start, end) => {
      clearTimeout(t);
      // Frames right behind this one (e.g. the first Deliver behind Authenticated) wait for handleWith.
      const q: Buffer[] = [];
      held.set(ws, q);
      ws.reader.onMessage = (b2, s2, e2) => q.push(Buffer.from(b2.subarray(s2, e2)));
      resolve(decodeFrame(new Uint8Array(b.subarray(start, end))));
    };
  });
}

/** Installs the socket's frame handler, after handing it the frames held since the last nextFrame(). */
function handleWith(ws: WsClient, handler: (b: Buffer, start: number, end: number) => void): void {
  ws.reader.onMessage = handler;
  for (const m of held.get(ws) ?? []) handler(m, 0, m.length);
  held.delete(ws);
}

const errorCodes = new Map<string, number>();
/** Deliver frames and envelopes received (all devices): envelopes per frame = envelopes per Ack = per ack transaction. */
const deliverStats = { frames: 0, envelopes: 0 };
function countError(b: Buffer, start: number, end: number): void {
  const m = /MW_[A-Z_]+/.exec(b.toString('latin1', start, end));
  const code = m ? m[0] : 'unknown';
  errorCodes.set(code, (errorCodes.get(code) ?? 0) + 1);
}

/** A logged-in device connection; `onEnvelope` sees every envelope's payload, acks are sent per Deliver frame. */
class DeviceSocket {
  ws!: WsClient;
  okWaiters = new Map<number, () => void>();
  queueEmpty = false;
  onEnvelope: (b: Buffer, start: number, end: number) => void = () => {};
  ackRequestId: () => number = () => 0;

  /** `prepare` runs before any frame after Authenticated is handled (e.g. to set onEnvelope). */
  static async login(port: number, d: Device, prepare?: (s: DeviceSocket) => void): Promise<DeviceSocket> {
    const s = new DeviceSocket();
    const ws = await openSocket(port, DEVICE_SOCKET_PATH);
    s.ws = ws;
    const helloP = nextFrame(ws);
    ws.send(encodeFrame({ version: PROTOCOL_VERSION, requestId: 1, body: { case: 'clientHello', value: { versions: [PROTOCOL_VERSION] } } }));
    const hello = await helloP;
    if (!hello.ok || hello.value.body.case !== 'serverHello') throw new Error('device: no serverHello');
    const auth = signDeviceAuth(ctx, d.device, d.certificate, hello.value.body.value.challenge, requestDigest(ctx, DEVICE_SOCKET_METHOD, DEVICE_SOCKET_PATH));
    const okP = nextFrame(ws);
    ws.send(encodeFrame({ version: PROTOCOL_VERSION, requestId: 2, body: { case: 'authenticate', value: auth } }));
    const ok = await okP;
    if (!ok.ok || ok.value.body.case !== 'authenticated') throw new Error(`device: not authenticated (${ok.ok ? ok.value.body.case : ok.error.code})`);
    prepare?.(s);
    handleWith(ws, (b, start, end) => s.#onMessage(b, start, end));
    return s;
  }

  #onMessage(b: Buffer, start: number, end: number): void {
    switch (readTop(b, start, end)) {
      case F.deliver: {
        deliverStats.frames++;
        const ack = ackDeliver(b, top.start, top.end, this.onEnvelope, this.ackRequestId, deliverStats);
        if (ack) this.ws.sendFrame(ack);
        return;
      }
      case F.ok: {
        const id = top.requestId;
        this.okWaiters.get(id)?.();
        this.okWaiters.delete(id);
        return;
      }
      case F.queueEmpty:
        this.queueEmpty = true;
        return;
      case F.error:
        countError(b, top.start, top.end);
        return;
      default:
        return;
    }
  }

  async setToken(token: Uint8Array): Promise<void> {
    const done = new Promise<void>((resolve) => this.okWaiters.set(77, resolve));
    this.ws.send(encodeFrame({ version: PROTOCOL_VERSION, requestId: 77, body: { case: 'setDeliveryTokens', value: { tokens: [token] } } }));
    await Promise.race([done, sleep(20_000).then(() => Promise.reject(new Error('setDeliveryTokens: timeout')))]);
  }

  close(): Promise<void> {
    return this.ws.close();
  }
}

/** An anonymous sending connection; send results and errors are reported to the callbacks. */
class AnonSocket {
  ws!: WsClient;
  #nextId = 1;
  /** Intended send time by request id (mod 2^16: far more than are ever outstanding on one socket). */
  readonly sentAt = new Float64Array(1 << 16);
  /** The phase tag of each send, by request id (as sentAt). */
  readonly sentTag = new Uint32Array(1 << 16);
  onResult: (requestId: number) => void = () => {};
  onError: (requestId: number) => void = () => {};

  static async open(port: number): Promise<AnonSocket> {
    const s = new AnonSocket();
    const ws = await openSocket(port, '/v1/anonymous');
    s.ws = ws;
    const helloP = nextFrame(ws);
    ws.send(encodeFrame({ version: PROTOCOL_VERSION, requestId: 1, body: { case: 'clientHello', value: { versions: [PROTOCOL_VERSION] } } }));
    const hello = await helloP;
    if (!hello.ok || hello.value.body.case !== 'serverHello') throw new Error('anonymous: no serverHello');
    handleWith(ws, (b, start, end) => {
      const field = readTop(b, start, end);
      if (field === F.sendResult) s.onResult(top.requestId);
      else if (field === F.error) {
        countError(b, top.start, top.end);
        s.onError(top.requestId);
      }
    });
    return s;
  }

  /** Sends the payload of `t` stamped with `intendedMs` and `tag`; returns the request id. */
  send(t: SendTemplate, intendedMs: number, tag: number): number {
    const id = this.#nextId++;
    if (this.#nextId > 0x7fffffff) this.#nextId = 1;
    this.sentAt[id & 0xffff] = intendedMs;
    this.sentTag[id & 0xffff] = tag;
    this.ws.sendFrame(sendFrame(id, t, intendedMs, tag));
    return id;
  }
}

interface NodeRun extends NodeProcess {
  dataDir: string;
}

/** The node build under test: this checkout's, or a BASELINE export. */
let target = { bin: BIN, tsconfig: join(HERE, 'tsconfig.json') };

/** Exports `ref`'s packages into a temporary directory wired to this checkout's node_modules. */
function materializeBaseline(ref: string): { dir: string; bin: string; tsconfig: string } {
  const dir = mkdtempSync(join(tmpdir(), 'mw-bench-baseline-'));
  const tar = execFileSync('git', ['-C', ROOT, 'archive', '--format=tar', ref, 'packages', 'tsconfig.base.json', 'bench/node/tsconfig.json'], { maxBuffer: 1 << 30 });
  execFileSync('tar', ['-x', '-C', dir], { input: tar });
  mkdirSync(join(dir, 'node_modules/@meshwhisper'), { recursive: true });
  for (const e of readdirSync(join(ROOT, 'node_modules'))) if (e !== '@meshwhisper' && e !== '.bin') symlinkSync(join(ROOT, 'node_modules', e), join(dir, 'node_modules', e));
  for (const p of readdirSync(join(dir, 'packages'))) symlinkSync(join(dir, 'packages', p), join(dir, 'node_modules/@meshwhisper', p));
  return { dir, bin: join(dir, 'packages/node/src/bin.ts'), tsconfig: join(dir, 'bench/node/tsconfig.json') };
}

/** A loopback port p such that p … p + n − 1 are all free now (inspector ports of a node and its workers). */
async function freePortRun(n: number): Promise<number> {
  const tryListen = (port: number): Promise<number | undefined> =>
    new Promise((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(undefined));
      srv.listen(port, '127.0.0.1', () => {
        const p = (srv.address() as AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
  for (;;) {
    const base = await tryListen(0);
    if (base === undefined || base + n > 65535) continue;
    let ok = true;
    for (let i = 1; i < n && ok; i++) ok = (await tryListen(base + i)) !== undefined;
    if (ok) return base;
  }
}

/** `inspectable`: the node gets free inspector ports, for full-gc.ts (no other node needs one). */
async function startNode(existingDataDir?: string, inspectable = false): Promise<NodeRun> {
  const dataDir = existingDataDir ?? mkdtempSync(join(tmpdir(), 'mw-bench-node-'));
  const profDir = join(HERE, 'profile');
  const inspect = inspectable ? [`--inspect-port=${await freePortRun(9)}`] : [];
  const run = await spawnNode({
    bin: target.bin,
    cwd: HERE,
    env: { ...NODE_ENV, DATA_DIR: dataDir, ...(TRACE ? { MW_LATENCY_TRACE: `${dataDir}.trace.jsonl` } : {}) },
    // `--v8-pool-size=1` as the node's start commands pass it (npm start, Dockerfile); NODE_FLAGS come after and win.
    // `--inspect-port`: where SIGUSR1 opens each process's inspector (full-gc.ts; not open otherwise;
    // a WORKERS primary gives its workers the next ports).
    nodeArgs: ['--v8-pool-size=1', ...inspect, ...(env['NODE_FLAGS'] ? env['NODE_FLAGS'].split(/\s+/).filter(Boolean) : []), ...(PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []), ...(PERF ? ['--perf-basic-prof-only-functions'] : [])],
    tsconfig: target.tsconfig,
  });
  return Object.assign(run, { dataDir }); // the same object: its warning counter keeps counting
}

async function stopNode(run: NodeRun, keepData = false): Promise<void> {
  if (run.child.exitCode === null) {
    const exited = new Promise<void>((resolve) => run.child.once('exit', () => resolve()));
    run.child.kill('SIGTERM');
    await Promise.race([exited, sleep(30_000)]);
    if (run.child.exitCode === null) run.child.kill('SIGKILL');
  }
  if (!keepData) rmSync(run.dataDir, { recursive: true, force: true });
}

interface NodeResults {
  setupS: number;
  rssBaseKiB: number;
  rssConnKiB: number;
  rssPerConnKB: number;
  closed: PhaseResult;
  open: PhaseResult;
  light: PhaseResult;
  drain: { n: number; enqueueS: number; enqueuePerS: number; drainFromConnectS: number; drainFromLoginS: number; errors: number };
  anonConns: number;
  /** Envelopes per Deliver frame (so per Ack, per ack transaction) in the closed and open phases. */
  envelopesPerDeliver: [number, number];
  /** Share of the durable sends accepted in the closed and open phases (warm-up included) that were never written: acknowledged by their device before their commit (NaN: a build without the metric). */
  neverWritten: [number, number];
}

/** The node's counters of durable sends accepted and of those never written (meshwhisper_envelopes_unstored_total); NaN when not exported. */
async function writeCounters(run: NodeRun): Promise<{ accepted: number; unstored: number }> {
  if (!run.metricsUrl) return { accepted: NaN, unstored: NaN };
  const text = await (await fetch(run.metricsUrl)).text();
  let accepted = 0;
  let unstored = NaN;
  for (const line of text.split('\n')) {
    if (line.startsWith('meshwhisper_envelopes_accepted_total{') && line.includes('class="durable"')) accepted += Number(line.slice(line.lastIndexOf(' ') + 1));
    else if (line.startsWith('meshwhisper_envelopes_unstored_total ')) unstored = Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return { accepted, unstored };
}

const shareOf = (a: { accepted: number; unstored: number }, b: { accepted: number; unstored: number }): number => (b.unstored - a.unstored) / (b.accepted - a.accepted);

async function benchNode(): Promise<NodeResults> {
  const t0 = now();
  log(`generating ${DEVICES} devices (account key, certified device key, signed prekey, last-resort ML-KEM prekey)`);
  const devices = Array.from({ length: DEVICES }, () => makeDevice(ctx));
  log('starting meshwhisper-node (separate process)');
  const first = await startNode();
  active = first;
  try {
    log(`node pid ${first.child.pid} on port ${first.port}; registering devices (PUT /v1/keys, signed)`);
    await pool(devices, 16, (d) => registerDevice(ctx, `http://127.0.0.1:${first.port}`, d));
  } catch (e) {
    await stopNode(first);
    if (first.stderr.length > 0) log(`node warnings/stderr:\n${first.stderr.slice(0, 20).join('\n')}`);
    throw e;
  }
  const setupS = (now() - t0) / 1000;
  /** Every device logged in to the node on `port`, 32 at a time. */
  const loginAll = async (port: number): Promise<DeviceSocket[]> => {
    const out: DeviceSocket[] = new Array(DEVICES);
    await pool(devices, 32, async (d, i) => {
      out[i] = await DeviceSocket.login(port, d);
    });
    return out;
  };
  // Restart on the same DATA_DIR, so the RSS baseline is a fresh node without the registration's garbage.
  await stopNode(first, true);
  // RSS per idle connection, on a node of its own: both readings follow full GCs through the
  // node's inspector (full-gc.ts); that node then stops, so that the measured phases run on a node
  // whose inspector never opened.
  let rssBase: number;
  let rssConn: number;
  {
    const m = await startNode(first.dataDir, RSS_GC);
    active = m;
    const mpid = m.child.pid!;
    try {
      log(`node restarted for the memory reading: pid ${mpid} on port ${m.port}`);
      // One device logs in and out first: what the first login starts once for the whole node (the
      // store's reader thread, started at the first fetch, ~6 MB) belongs in the baseline, not in
      // the figure per connection.
      await (await DeviceSocket.login(m.port, devices[0]!)).close();
      await sleep(RSS_SETTLE_S * 1000);
      const nodeGc = RSS_GC ? new NodeGc(m) : undefined;
      await nodeGc?.collect(processTree(mpid));
      await sleep(1000);
      rssBase = await rssSettled(mpid);
      log(`node RSS before logins: ${rssBase} KiB; logging ${DEVICES} devices in`);
      const ms = await loginAll(m.port);
      // V8's memory reducer collects the logins' garbage once the node has been idle for a few seconds.
      const trail: number[] = [];
      for (let i = 0; i < RSS_SETTLE_S; i += 3) {
        await sleep(3000);
        trail.push(rssKiB(mpid));
      }
      await nodeGc?.collect(processTree(mpid));
      await sleep(1000);
      rssConn = await rssSettled(mpid);
      log(`node RSS every 3 s after the logins: ${trail.join(', ')} KiB`);
      log(`node RSS with ${DEVICES} idle authenticated connections: ${rssConn} KiB`);
      await pool(ms, 32, (s) => s.close());
      // The baseline once more, after the connections closed: native memory (SQLite's caches, malloc
      // arenas) can sit above its resting level at the first reading (121.9 MB once, against
      // 109–110 MB in other runs, which made the difference negative). The lower of the two
      // baselines is used: never a smaller figure per connection than either reading gives.
      await sleep(1000);
      await nodeGc?.collect(processTree(mpid));
      await sleep(1000);
      const rssAfter = await rssSettled(mpid);
      nodeGc?.detach();
      log(`node RSS after the ${DEVICES} connections closed: ${rssAfter} KiB${rssAfter < rssBase ? ' (below the first reading: the baseline used)' : ''}`);
      rssBase = Math.min(rssBase, rssAfter);
    } finally {
      await stopNode(m, true);
    }
  }
  const nodeStarted = now();
  const node = await startNode(first.dataDir);
  active = node;
  /** PROFILE=1: where a phase lies in the node's profiles (seconds since it started), for FROM_S/TO_S of profile-summary.ts. */
  const window = (name: string, p: PhaseResult): void => {
    if (PROFILE) log(`profile window of ${name}: FROM_S=${((p.measuredFrom - nodeStarted) / 1000).toFixed(1)} TO_S=${((p.measuredTo - nodeStarted) / 1000).toFixed(1)} (±0.5 s)`);
    if (GEN_PROFILED) log(`generator profile window of ${name}: FROM_S=${(p.measuredFrom / 1000).toFixed(1)} TO_S=${(p.measuredTo / 1000).toFixed(1)} (±0.5 s)`);
  };
  const pid = node.child.pid!;
  try {
    log(`node restarted for the measured phases: pid ${pid} on port ${node.port}`);
    const sockets = await loginAll(node.port);

    await pool(sockets, 32, (s, i) => s.setToken(devices[i]!.token));
    log(`opening ${ANON_CONNS} anonymous sending connections`);
    const anon: AnonSocket[] = new Array(ANON_CONNS);
    await pool(Array.from({ length: ANON_CONNS }), 32, async (_x, i) => {
      anon[i] = await AnonSocket.open(node.port);
    });

    // Each recipient's SendRequest, but for the 12 stamped bytes, built once (wire.ts sendTemplate).
    let templates: SendTemplate[] = [];
    const engine = new Engine(DEVICES, { send: (s, r, intendedMs, tag) => anon[s % ANON_CONNS]!.send(templates[r]!, intendedMs, tag), answers: true });
    templates = devices.map((d) => sendTemplate(d.mailbox, d.token, engine.template));
    if (TRACE) engine.traceFile = `${node.dataDir}.trace.jsonl`;
    for (const a of anon) {
      a.onError = (id) => engine.lost(a.sentTag[id & 0xffff]!);
      a.onResult = (id) => engine.answered(a.sentAt[id & 0xffff]!, a.sentTag[id & 0xffff]!);
    }
    const onEnvelope = (b: Buffer, start: number, end: number): void => engine.received(b, start, end);
    for (const s of sockets) s.onEnvelope = onEnvelope;

    log(`node: closed loop, ${WINDOW} in flight, ${WARMUP_S}+${MEASURE_S} s`);
    const ds0 = { ...deliverStats };
    const wc0 = await writeCounters(node);
    const closed = await engine.phase('closed', 0, { node: pid });
    const wc1 = await writeCounters(node);
    const perFrameClosed = (deliverStats.envelopes - ds0.envelopes) / Math.max(1, deliverStats.frames - ds0.frames);
    log('node closed loop:', fmtPhase(closed));
    window('closed', closed);
    log(`node: open loop at ${RATE} msgs/s, ${WARMUP_S}+${MEASURE_S} s`);
    let perf: ChildProcess | undefined;
    if (PERF) {
      mkdirSync(join(HERE, 'profile'), { recursive: true });
      perf = spawn('perf', ['record', '-F', '499', '-g', '-p', String(pid), '-o', join(HERE, 'profile', 'perf.data'), '--', 'sleep', String(WARMUP_S + MEASURE_S)], { stdio: 'ignore' });
    }
    const ds1 = { ...deliverStats };
    const wc2 = await writeCounters(node);
    const open = await engine.phase('open', RATE, { node: pid });
    const wc3 = await writeCounters(node);
    const perFrameOpen = (deliverStats.envelopes - ds1.envelopes) / Math.max(1, deliverStats.frames - ds1.frames);
    log('node open loop:', fmtPhase(open));
    window('open', open);
    if (perf && perf.exitCode === null) await new Promise((r) => perf.once('exit', r));
    for (let i = 2; i <= OPEN_REPEAT; i++) {
      await waitFor('the previous phase to settle', () => engine.settled(), 60_000, 20).catch(() => undefined);
      log(`node open loop, repeat ${i} of ${OPEN_REPEAT}:`, fmtPhase(await engine.phase('open', RATE, { node: pid })));
    }
    await waitFor('the overload backlog to drain', () => engine.settled(), 60_000, 20).catch(() => log(`${engine.outstanding} envelopes of the ${RATE}/s phase still in flight, ${engine.unanswered} unanswered`));
    log(`node: open loop at ${LIGHT_RATE} msgs/s`);
    const light = await engine.phase('open', LIGHT_RATE, { node: pid });
    log('node light load:', fmtPhase(light));
    window('light', light);

    // ── drain ──
    const drains: { n: number; enqueueS: number; enqueuePerS: number; drainFromConnectS: number; drainFromLoginS: number; errors: number }[] = [];
    let target0 = sockets[0]!;
    for (let rep = 1; rep <= DRAIN_REPEAT; rep++) {
      log(`drain: device 0 goes offline; queueing ${DRAIN} envelopes for it`);
      const target = devices[0]!;
      // Let the previous phase's stragglers arrive first, so they do not share the node with the drain.
      await waitFor('previous phase to settle', () => engine.settled(), 60_000, 20).catch(() => log(`drain: ${engine.outstanding} envelopes of the previous phase still in flight, ${engine.unanswered} unanswered`));
      await target0.close();
      await sleep(500);
      engine.tag++;
      const drainTag = engine.tag;
      let accepted = 0;
      let refused = 0;
      let issued = 0;
      const ENQ_WINDOW = 2000;
      // Only results of drain sends count (late results of the previous phase may still arrive).
      const pending = anon.map(() => new Set<number>());
      const pump = (): void => {
        while (issued < DRAIN && issued - accepted - refused < ENQ_WINDOW) {
          const k = issued % ANON_CONNS;
          pending[k]!.add(anon[k]!.send(templates[0]!, now(), drainTag));
          issued++;
        }
      };
      anon.forEach((a, k) => {
        a.onResult = (id) => {
          if (!pending[k]!.delete(id)) return;
          accepted++;
          pump();
        };
        a.onError = (id) => {
          if (!pending[k]!.delete(id)) return;
          refused++;
          pump();
        };
      });
      const e0 = now();
      pump();
      await waitFor('queued envelopes to be accepted', () => accepted + refused >= DRAIN, 300_000);
      const enqueueS = (now() - e0) / 1000;
      log(`drain: ${accepted} accepted (${refused} refused) in ${enqueueS.toFixed(2)} s; device 0 logs in`);
      let got = 0;
      let finalOk = false;
      const c0 = now();
      let l0 = 0;
      const s0: DeviceSocket = await DeviceSocket.login(node.port, target, (s) => {
        l0 = now();
        s.onEnvelope = (b, start, end) => {
          if (end - start >= 12 && b.readUInt32LE(start + 8) === drainTag) got++;
        };
        // The last Ack asks for an Ok: acks are applied in order, so its Ok means every deletion committed.
        s.ackRequestId = () => (got >= accepted && !finalOk ? 424242 : 0);
        s.okWaiters.set(424242, () => (finalOk = true));
      });
      await waitFor(`${accepted} queued envelopes to be delivered and acked`, () => finalOk, 120_000, 1);
      const c1 = now();
      log(`drain: ${got} delivered and acked in ${((c1 - c0) / 1000).toFixed(2)} s from connect`);
      drains.push({ n: accepted, enqueueS, enqueuePerS: accepted / enqueueS, drainFromConnectS: (c1 - c0) / 1000, drainFromLoginS: (c1 - l0) / 1000, errors: refused });
      target0 = s0;
    }
    const inOrder = drains.map((d) => d.drainFromConnectS.toFixed(2)).join(', ');
    drains.sort((a, b) => a.drainFromConnectS - b.drainFromConnectS);
    const drain = drains[Math.floor((drains.length - 1) / 2)]!;
    if (DRAIN_REPEAT > 1) log(`drain: median of ${DRAIN_REPEAT}: ${drain.drainFromConnectS.toFixed(2)} s from connect (in run order: ${inOrder})`);
    for (const a of anon) a.ws.terminate();
    for (const s of sockets.slice(1)) s.ws.terminate();
    target0.ws.terminate();
    return {
      setupS,
      rssBaseKiB: rssBase,
      rssConnKiB: rssConn,
      rssPerConnKB: ((rssConn - rssBase) * 1024) / DEVICES / 1000,
      closed,
      open,
      light,
      drain,
      anonConns: ANON_CONNS,
      envelopesPerDeliver: [perFrameClosed, perFrameOpen],
      neverWritten: [shareOf(wc0, wc1), shareOf(wc2, wc3)],
    };
  } finally {
    terminateAll();
    await stopNode(node);
    active = undefined;
    if (node.warnings > 0 || node.stderr.length > 0) log(`node warnings/stderr (${node.warnings} warn+):\n${node.stderr.slice(0, 20).join('\n')}`);
  }
}

// ── NATS side ──
interface NatsResults {
  rssPerConnKB: number | undefined;
  /** JetStream anchor: DRAIN messages published to a file-backed stream (2,000 in flight), then consumed and acked. */
  jetstream: { n: number; enqueuePerS: number; drainS: number } | undefined;
  closed: PhaseResult;
  open: PhaseResult;
  light: PhaseResult;
  serverPid: number | undefined;
}

/** DEVICES connections to the NATS server at `url`, client i subscribed to `subjects[i]` (payloads to `onMessage`), flushed. */
async function connectSubscribers(url: string, subjects: readonly string[], onMessage: (data: Uint8Array) => void): Promise<NatsConnection[]> {
  const conns: NatsConnection[] = new Array(subjects.length);
  await pool(subjects, 32, async (subject, i) => {
    const nc = await natsConnect({ servers: url, name: `mw-bench-${i}`, noEcho: false, maxReconnectAttempts: 0, timeout: 20_000 });
    nc.subscribe(subject, { callback: (_err, msg) => onMessage(msg.data) });
    conns[i] = nc;
  });
  await Promise.all(conns.map((c) => c.flush()));
  return conns;
}

/**
 * NATS server's memory per idle connection with one subscription, read on a nats-server of its
 * own (the shared one's RSS carries whatever earlier runs and JetStream left, and Go returns freed
 * memory to the OS lazily: the difference on it read 0.0 and −145 KB). GOGC=10 keeps the garbage
 * under 10 % of the live heap and GODEBUG=madvdontneed=1 returns freed pages at once — the
 * counterpart of the full GC before the node's reading. Undefined when no nats-server binary is installed.
 */
async function natsRssPerConnKB(): Promise<number | undefined> {
  const bin = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find((b) => existsSync(b));
  if (!bin) return undefined;
  const port = await freePortRun(1);
  const server = spawn(bin, ['-a', '127.0.0.1', '-p', String(port)], { stdio: 'ignore', env: { ...process.env, GOGC: '10', GODEBUG: 'madvdontneed=1' } });
  let conns: NatsConnection[] = [];
  try {
    const url = `127.0.0.1:${port}`;
    for (let t = 0; ; t++) {
      const probe = await natsConnect({ servers: url, maxReconnectAttempts: 0, timeout: 1000 }).catch(() => undefined);
      if (probe) {
        await probe.close();
        break;
      }
      if (t >= 100) throw new Error('the measuring nats-server did not start listening within 10 s');
      await sleep(100);
    }
    await sleep(2000);
    const base = await rssSettled(server.pid!);
    conns = await connectSubscribers(url, Array.from({ length: DEVICES }, (_x, i) => `mwbench.rss.${i}`), () => undefined);
    await sleep(RSS_SETTLE_S * 1000);
    const withConns = await rssSettled(server.pid!);
    log(`NATS (own nats-server for the memory reading, GOGC=10): RSS ${base} KiB → ${withConns} KiB with ${DEVICES} connections`);
    return ((withConns - base) * 1024) / DEVICES / 1000;
  } finally {
    await Promise.all(conns.map((c) => c.close().catch(() => undefined)));
    server.kill('SIGKILL');
  }
}

async function benchNats(): Promise<NatsResults> {
  const serverPid = findProcess('nats-server');
  const runId = ctx.random(4).reduce((s, b) => s + b.toString(16).padStart(2, '0'), '');
  const rssPerConnKB = await natsRssPerConnKB().catch((e: unknown) => {
    log(`NATS memory reading failed: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  });
  log(`NATS ${NATS_URL}: connecting ${DEVICES} clients, one subject each`);
  const subjects = Array.from({ length: DEVICES }, (_x, i) => `mwbench.${runId}.${i}`);
  const engine = new Engine(DEVICES, { send: (s, r, intendedMs, tag) => conns[s]!.publish(subjects[r]!, engine.payload(intendedMs, tag)), answers: false });
  const conns = await connectSubscribers(NATS_URL, subjects, (d) => engine.received(Buffer.from(d.buffer, d.byteOffset, d.byteLength), 0, d.byteLength));
  await sleep(3000);
  try {
    log(`NATS: closed loop, ${WINDOW} in flight`);
    const closed = await engine.phase('closed', 0, { peer: serverPid });
    log('NATS closed loop:', fmtPhase(closed));
    log(`NATS: open loop at ${RATE} msgs/s`);
    const open = await engine.phase('open', RATE, { peer: serverPid });
    log('NATS open loop:', fmtPhase(open));
    log(`NATS: open loop at ${LIGHT_RATE} msgs/s`);
    const light = await engine.phase('open', LIGHT_RATE, { peer: serverPid });
    log('NATS light load:', fmtPhase(light));
    const jetstream = await benchJetStream(runId).catch((e: unknown) => {
      log(`JetStream drain failed: ${e instanceof Error ? e.message : String(e)}`);
      return undefined;
    });
    return { rssPerConnKB, jetstream, closed, open, light, serverPid };
  } finally {
    await Promise.all(conns.map((c) => c.close().catch(() => undefined)));
  }
}

/**
 * The issue's JetStream anchor: DRAIN × 1 KiB published to a file-storage stream with 2,000
 * publishes in flight (each answered by the server once stored), then one durable consumer with
 * explicit acks drains them; the clock runs from consumer creation to the server's answer to the
 * last ack (acks on one connection are processed in order). NB: nats-server 2.9 syncs its file
 * store to disk every 2 minutes, not per publish — unlike the node, which fsyncs before answering.
 */
async function benchJetStream(runId: string): Promise<{ n: number; enqueuePerS: number; drainS: number }> {
  const nc = await natsConnect({ servers: NATS_URL, name: 'mw-bench-js', maxReconnectAttempts: 0, timeout: 20_000 });
  const jsm = await nc.jetstreamManager();
  const js = nc.jetstream();
  const stream = `MWBENCH_${runId}`;
  const subject = `mwbench.${runId}.js`;
  await jsm.streams.add({ name: stream, subjects: [subject], storage: StorageType.File, num_replicas: 1 });
  try {
    const payload = new Uint8Array(PAYLOAD_BYTES).fill(7);
    log(`JetStream: publishing ${DRAIN} to a file stream (2000 in flight)`);
    const e0 = now();
    await new Promise<void>((resolve, reject) => {
      let issued = 0;
      let acked = 0;
      const pump = (): void => {
        while (issued < DRAIN && issued - acked < 2000) {
          issued++;
          js.publish(subject, payload).then(() => {
            if (++acked === DRAIN) resolve();
            else pump();
          }, reject);
        }
      };
      pump();
    });
    const enqueueS = (now() - e0) / 1000;
    await jsm.consumers.add(stream, { durable_name: 'drain', ack_policy: AckPolicy.Explicit, max_ack_pending: 20_000 });
    const c0 = now();
    const consumer = await js.consumers.get(stream, 'drain');
    const msgs = await consumer.consume({ max_messages: 1000 });
    let got = 0;
    for await (const m of msgs) {
      if (++got === DRAIN) {
        await m.ackAck();
        break;
      }
      m.ack();
    }
    const drainS = (now() - c0) / 1000;
    log(`JetStream: enqueue ${f0(DRAIN / enqueueS)}/s; drained and acked ${got} in ${f2(drainS)} s`);
    return { n: got, enqueuePerS: DRAIN / enqueueS, drainS };
  } finally {
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
  }
}

// ── report ──
const f0 = (n: number | undefined): string => (n === undefined || Number.isNaN(n) ? 'n/a' : Math.round(n).toLocaleString('en-US'));
const f1 = (n: number | undefined): string => (n === undefined || Number.isNaN(n) ? 'n/a' : n.toFixed(1));
const f2 = (n: number | undefined): string => (n === undefined || Number.isNaN(n) ? 'n/a' : n.toFixed(2));
const pct = (n: number | undefined): string => (n === undefined || Number.isNaN(n) ? 'n/a' : `${Math.round(n * 100)} %`);

function fmtPhase(p: PhaseResult): string {
  return `offered ${f0(p.offeredPerS)}/s, delivered ${f0(p.deliveredPerS)}/s, p50 ${f2(p.p50)} ms, p99 ${f2(p.p99)} ms, p99.9 ${f2(p.p999)} ms, max ${f1(p.max)} ms, ${Number.isNaN(p.answeredPerS) ? '' : `answered ${f0(p.answeredPerS)}/s, `}${Number.isNaN(p.answerP50) ? '' : `sender answered p50 ${f2(p.answerP50)} / p99 ${f2(p.answerP99)} ms, `}late ${p.late}, errors ${p.sendErrors}, skipped ${p.skippedOffered}, generator loop delay p99 ${f1(p.genLagP99)} ms, cpu node ${pct(p.nodeCpu)} (main thread ${pct(p.nodeMainCpu)}) gen ${pct(p.genCpu)} (kernel ${pct(p.genSysCpu)}) peer ${pct(p.peerCpu)} other work ${pct(p.otherCpu)}${p.mode === 'closed' ? `; per second, thousands: ${p.perSecond.map((n) => (n / 1000).toFixed(1)).join(' ')}` : ''}`;
}

/** Per node process (primary first when WORKERS > 1): CPU µs per delivered message, whole process (main thread). */
function perProcess(p: PhaseResult | undefined): string {
  if (!p || p.deliveredPerS <= 0 || p.nodeProcs.length === 0) return 'n/a';
  const us = (c: number): string => f0((c / p.deliveredPerS) * 1e6);
  const name = (i: number): string => (p.nodeProcs.length === 1 ? 'process' : i === 0 ? 'primary' : `worker ${i}`);
  return p.nodeProcs.map(([all, main], i) => `${name(i)} ${us(all)} (${us(main)})`).join(', ');
}

/** CPU time the load generator spent per delivered message (or its kernel part), in µs. */
function genPerMsg(p: PhaseResult | undefined, kernel = false): string {
  return p && p.deliveredPerS > 0 ? f0(((kernel ? p.genSysCpu : p.genCpu) / p.deliveredPerS) * 1e6) : 'n/a';
}

/** CPU time the server process spent per delivered message, in µs (contention-robust, unlike msgs/s). */
function perMsg(p: PhaseResult | undefined, peer = false, mainThread = false): string {
  const cpu = peer ? p?.peerCpu : mainThread ? p?.nodeMainCpu : p?.nodeCpu;
  return p && cpu !== undefined && p.deliveredPerS > 0 ? f0((cpu / p.deliveredPerS) * 1e6) : 'n/a';
}

function table(n: NodeResults | undefined, s: NatsResults | undefined): string {
  const ratio = (a: number | undefined, b: number | undefined): string => (a && b ? `${((a / b) * 100).toFixed(0)} %` : 'n/a');
  const rows: string[] = [
    '| metric | MeshWhisper node (durable) | NATS core (non-durable) | node / NATS | target |',
    '|---|---|---|---|---|',
    `| delivered msgs/s, closed loop (${WINDOW} in flight: sent, not yet both arrived and answered) | ${f0(n?.closed.deliveredPerS)} | ${f0(s?.closed.deliveredPerS)} | ${ratio(n?.closed.deliveredPerS, s?.closed.deliveredPerS)} | ≥ 20,000 |`,
    `| … answered (committed and fsynced, or acknowledged by the recipient before the commit: never written) msgs/s in the same window | ${f0(n?.closed.answeredPerS)} | (core NATS: no answer) | | ≥ 20,000 |`,
    `| send→sender's answer p50 / p99 at max load, ms | ${f2(n?.closed.answerP50)} / ${f2(n?.closed.answerP99)} | | | |`,
    `| send→receive p50 / p99 at max load, ms | ${f2(n?.closed.p50)} / ${f2(n?.closed.p99)} | ${f2(s?.closed.p50)} / ${f2(s?.closed.p99)} | | |`,
    `| offered → delivered msgs/s at fixed ${f0(RATE)}/s | ${f0(n?.open.offeredPerS)} → ${f0(n?.open.deliveredPerS)} | ${f0(s?.open.offeredPerS)} → ${f0(s?.open.deliveredPerS)} | | |`,
    `| send→receive p50 / p99 / p99.9 at ${f0(RATE)}/s, ms | ${f2(n?.open.p50)} / ${f2(n?.open.p99)} / ${f2(n?.open.p999)} | ${f2(s?.open.p50)} / ${f2(s?.open.p99)} / ${f2(s?.open.p999)} | p99 ×${n && s ? (n.open.p99 / s.open.p99).toFixed(1) : 'n/a'} | 100 % delivered, p99 < 10 ms |`,
    `| send→sender's answer (after the commit, or at the recipient's ack) p50 / p99 at ${f0(RATE)}/s, ms | ${f2(n?.open.answerP50)} / ${f2(n?.open.answerP99)} | (core NATS: no answer) | | |`,
    `| offered → delivered msgs/s at fixed ${f0(LIGHT_RATE)}/s | ${f0(n?.light.offeredPerS)} → ${f0(n?.light.deliveredPerS)} | ${f0(s?.light.offeredPerS)} → ${f0(s?.light.deliveredPerS)} | | |`,
    `| send→receive p50 / p99 / p99.9 at ${f0(LIGHT_RATE)}/s, ms | ${f2(n?.light.p50)} / ${f2(n?.light.p99)} / ${f2(n?.light.p999)} | ${f2(s?.light.p50)} / ${f2(s?.light.p99)} / ${f2(s?.light.p999)} | | |`,
    `| send→sender's answer p50 / p99 at ${f0(LIGHT_RATE)}/s, ms | ${f2(n?.light.answerP50)} / ${f2(n?.light.answerP99)} | | | |`,
    `| RSS per idle authenticated connection, KB | ${f1(n?.rssPerConnKB)} | ${f1(s?.rssPerConnKB)} (own server, GOGC=10) | | < 20 KB |`,
    `| drain ${f0(n?.drain.n)} queued to one device (connect → last ack committed), s | ${f2(n?.drain.drainFromConnectS)} | JetStream: ${f2(s?.jetstream?.drainS)} (${f0(s?.jetstream?.n)}) | | ≤ 1.5 s |`,
    `| enqueue of those ${f0(n?.drain.n)} into one offline mailbox, msgs/s | ${f0(n?.drain.enqueuePerS)} | JetStream: ${f0(s?.jetstream?.enqueuePerS)} (not fsynced per message) | | ≥ 28,000 |`,
    `| CPU during max load: node / generator / nats-server | ${pct(n?.closed.nodeCpu)} / ${pct(n?.closed.genCpu)} | — / ${pct(s?.closed.genCpu)} / ${pct(s?.closed.peerCpu)} | | |`,
    `| CPU at ${f0(RATE)}/s: node / generator / nats-server | ${pct(n?.open.nodeCpu)} / ${pct(n?.open.genCpu)} | — / ${pct(s?.open.genCpu)} / ${pct(s?.open.peerCpu)} | | |`,
    `| load generator's own event-loop delay p99 (max load / ${f0(RATE)}/s), ms | ${f1(n?.closed.genLagP99)} / ${f1(n?.open.genLagP99)} | ${f1(s?.closed.genLagP99)} / ${f1(s?.open.genLagP99)} | | |`,
    `| node CPU per delivered message (max load / ${f0(RATE)}/s), µs | ${perMsg(n?.closed)} / ${perMsg(n?.open)} | ${perMsg(s?.closed, true)} / ${perMsg(s?.open, true)} (server) | | |`,
    `| … of which the node's main (event-loop) thread(s), µs | ${perMsg(n?.closed, false, true)} / ${perMsg(n?.open, false, true)} | | | |`,
    `| … per process at max load: whole (main thread), µs | ${perProcess(n?.closed)} | | | |`,
    `| … per process at ${f0(RATE)}/s: whole (main thread), µs | ${perProcess(n?.open)} | | | |`,
    `| load generator CPU per delivered message (max load / ${f0(RATE)}/s), µs | ${genPerMsg(n?.closed)} / ${genPerMsg(n?.open)} | ${genPerMsg(s?.closed)} / ${genPerMsg(s?.open)} | | |`,
    `| … of which in the kernel (socket reads and writes), µs | ${genPerMsg(n?.closed, true)} / ${genPerMsg(n?.open, true)} | ${genPerMsg(s?.closed, true)} / ${genPerMsg(s?.open, true)} | | |`,
    `| CPU used by other work on the machine (max load / ${f0(RATE)}/s), of ${cpus().length} cores | ${pct(n?.closed.otherCpu)} / ${pct(n?.open.otherCpu)} | ${pct(s?.closed.otherCpu)} / ${pct(s?.open.otherCpu)} | | |`,
    `| not arrived (node: or not answered) ${SETTLE_MS / 1000} s after sending stopped / send errors | ${n ? `${n.closed.late + n.open.late} / ${n.closed.sendErrors + n.open.sendErrors + n.drain.errors}` : 'n/a'} | ${s ? `${s.closed.late + s.open.late} / 0` : 'n/a'} | | 0 |`,
  ];
  return rows.join('\n');
}

/** Inserts the node column (column 2) of `other` as column `at` of `current`, headed `label`. */
function withColumn(current: string, other: string, label: string, at = 3): string {
  const b = other.split('\n');
  return current
    .split('\n')
    .map((row, i) => {
      const cells = row.split('|');
      const extra = i === 0 ? ` ${label} ` : i === 1 ? '---' : (b[i]?.split('|')[2] ?? ' n/a ');
      cells.splice(at, 0, extra);
      return cells.join('|');
    })
    .join('\n');
}

let active: NodeRun | undefined;
const watchdog = setTimeout(() => {
  log(`watchdog: run exceeded ${WATCHDOG_MS / 1000} s; stopping`);
  if (active?.child.exitCode === null) active.child.kill('SIGKILL');
  if (active) rmSync(active.dataDir, { recursive: true, force: true });
  process.exit(2);
}, WATCHDOG_MS);

// The hand-written WebSocket client throws from its socket handlers on anything unexpected (a
// protocol error, a close from the node): stop the run loudly, and leave no node process behind.
process.on('uncaughtException', (e) => {
  console.error('bench failed:', e.stack ?? e.message);
  if (active?.child.exitCode === null) active.child.kill('SIGKILL');
  if (active) rmSync(active.dataDir, { recursive: true, force: true });
  process.exit(1);
});

async function main(): Promise<void> {
  selfCheck();
  await checkFraming();
  genTrace?.start();
  const c = cpus();
  log(`machine: ${c.length} × ${c[0]?.model ?? '?'}, node ${process.version}; QUICK=${QUICK ? 1 : 0} DEVICES=${DEVICES} WINDOW=${WINDOW} RATE=${RATE} LIGHT_RATE=${LIGHT_RATE} DRAIN=${DRAIN} ANON_CONNS=${ANON_CONNS}`);
  let b: NodeResults | undefined;
  if (BASELINE && !SKIP_NODE) {
    const base = materializeBaseline(BASELINE);
    try {
      log(`BASELINE ${BASELINE}: the node phases against ${base.bin}`);
      target = { bin: base.bin, tsconfig: base.tsconfig };
      b = await benchNode();
      log(`BASELINE ${BASELINE} done; now this checkout`);
    } finally {
      target = { bin: BIN, tsconfig: join(HERE, 'tsconfig.json') };
      rmSync(base.dir, { recursive: true, force: true });
    }
  }
  const runs: { workers: string; n: NodeResults }[] = [];
  if (!SKIP_NODE) {
    for (const w of WORKER_SETTINGS) {
      NODE_ENV.WORKERS = w;
      log(`node phases with WORKERS=${w}`);
      runs.push({ workers: w, n: await benchNode() });
    }
  }
  const n = runs[0]?.n;
  const s = SKIP_NATS ? undefined : await benchNats();
  let main = table(n, s);
  if (runs.length > 0) main = main.replace('| MeshWhisper node (durable) |', `| node WORKERS=${runs[0]!.workers} (durable) |`);
  for (let i = runs.length - 1; i >= 1; i--) main = withColumn(main, table(runs[i]!.n, s), `node WORKERS=${runs[i]!.workers}`);
  if (b) main = withColumn(main, table(b, s), `node before (${BASELINE}), WORKERS=${WORKER_SETTINGS[0]}`);
  const out = [
    main,
    b ? `Baseline ${BASELINE}: envelopes per Deliver frame ${f2(b.envelopesPerDeliver[0])} / ${f2(b.envelopesPerDeliver[1])}; never written ${pct(b.neverWritten[0])} / ${pct(b.neverWritten[1])}; closed: ${fmtPhase(b.closed)}` : '',
    '',
    `Settings: DEVICES=${DEVICES}, payload ${PAYLOAD_BYTES} B, ANON_CONNS=${ANON_CONNS}, WINDOW=${WINDOW}, RATE=${RATE}, LIGHT_RATE=${LIGHT_RATE}, warm-up ${WARMUP_S} s + ${MEASURE_S} s measured per phase, DRAIN=${DRAIN}${GEN_NICE !== 0 ? `, GEN_NICE=${GEN_NICE} (diagnostic: the generator's nice value during phases)` : ''}; node env: ${Object.entries(NODE_ENV)
      .filter(([k]) => k !== 'RATE_LIMITS')
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')} RATE_LIMITS=<every bucket 1000000:10000000>`,
    n ? `Node: envelopes per Deliver frame (= per Ack = per ack transaction): ${f2(n.envelopesPerDeliver[0])} at max load, ${f2(n.envelopesPerDeliver[1])} at ${f0(RATE)}/s` : '',
    n ? `Node: durable sends never written (acknowledged by their device before their commit started; warm-up included): ${pct(n.neverWritten[0])} at max load, ${pct(n.neverWritten[1])} at ${f0(RATE)}/s` : '',
    n ? `Node: setup ${f1(n.setupS)} s (generate + register ${DEVICES} devices); RSS ${f0(n.rssBaseKiB)} KiB → ${f0(n.rssConnKiB)} KiB with ${DEVICES} logins; drain from login ${f2(n.drain.drainFromLoginS)} s` : '',
    ...runs.map(({ workers, n: r }) => `Node WORKERS=${workers} closed: ${fmtPhase(r.closed)}\nNode WORKERS=${workers} open:   ${fmtPhase(r.open)}\nNode WORKERS=${workers} light:  ${fmtPhase(r.light)}\nNode WORKERS=${workers}: drain ${f2(r.drain.drainFromConnectS)} s, enqueue ${f0(r.drain.enqueuePerS)}/s; per process closed: ${perProcess(r.closed)}; open: ${perProcess(r.open)}`),
    s ? `NATS closed: ${fmtPhase(s.closed)}\nNATS open:   ${fmtPhase(s.open)}\nNATS light:  ${fmtPhase(s.light)}` : '',
    errorCodes.size ? `Error frames: ${[...errorCodes].map(([k, v]) => `${k}×${v}`).join(', ')}` : 'Error frames: none',
  ];
  console.log(out.filter(Boolean).join('\n'));
}

main()
  .catch((e: unknown) => {
    console.error('bench failed:', e instanceof Error ? (e.stack ?? e.message) : e);
    process.exitCode = 1;
  })
  .finally(() => {
    clearTimeout(watchdog);
    if (existsSync(join(HERE, 'profile')) && PROFILE) log(`CPU profile of the node in ${join(HERE, 'profile')}`);
    // Keep-alive HTTP agents and closed sockets may linger; the run is over.
    setTimeout(() => process.exit(), 200);
  });

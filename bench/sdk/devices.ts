/**
 * Multi-device benchmark (issue 11 §Benchmark): device linking and fan-out through a real
 * meshwhisper-node process on loopback.
 *
 *   cd bench/sdk && npm install && npm run bench:devices        (QUICK=1 for a short run)
 *
 * Every client lives in this process (MeshWhisper from packages/sdk/src, memory storage unless
 * STORAGE=sqlite, each with its own device socket); the node is a separate process
 * (packages/node/src/bin.ts under tsx, SQLite WAL, synchronous=FULL), every rate-limit bucket open.
 *
 * Phases:
 *   1. link: LINKS times, a fresh account A and a contact C that already talk; a new device shows
 *      an offer, A accepts it ("scan"), and C sends to the account. Times: scan → link completed
 *      (both sides: certificate, list, state handed over, new client open and connected), and
 *      scan → the new device's first message from C.
 *   2. fan-out: C sends to an account with 1, 3 and 6 devices (linked as in 1; sessions warm).
 *      R sequential sends each: sendText resolved (every copy durably stored by the node) and
 *      the last of the account's devices received it. Two senders in the same run, alternating
 *      message by message: "batched" (all copies in one POST /v1/send/batch) and "one POST per
 *      copy" (its fetch answers the batch route 404, so the transport falls back to one concurrent
 *      POST /v1/send per copy — how copies were posted before batching). Both seal every copy in
 *      one storage transaction (the before-batching SDK committed each copy on its own; with
 *      memory storage, the default, that cost is small; STORAGE=sqlite shows it in neither column).
 *   3. mirror: an account with 3 devices (the sender + 2 own devices) sends to C (1 device): sendText
 *      resolved (C's copy and both mirror copies stored), C received, both own devices received.
 *
 * Loaded machines: the run prints the load average and the CPU time of this process and of the
 * node process per phase, so figures from a shared machine can be judged.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WS from 'ws';
import { MeshWhisper, memoryStorage, openSqliteStorage } from '../../packages/sdk/src/index.js';
import type { ProtocolStorage, WebSocketConstructor } from '../../packages/sdk/src/index.js';
import { log, now } from '../lib/util.js';
import type { NodeProcess } from '../lib/node-process.js';
import { spawnNode } from '../lib/node-process.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '../..');
const QUICK = process.env['QUICK'] === '1';
const LINKS = Number(process.env['LINKS'] ?? (QUICK ? 3 : 10));
const R = Number(process.env['R'] ?? (QUICK ? 10 : 50));
const STORAGE = process.env['STORAGE'] === 'sqlite' ? 'sqlite' : 'memory';
const BUCKETS = ['http', 'ws-upgrade', 'ws-frame', 'auth', 'send-token', 'send-first-contact', 'send-first-contact-target', 'prekey-claim', 'prekey-claim-target', 'directory-write', 'username-lookup', 'username-write', 'blob-upload', 'blob-download', 'archive', 'link', 'link-create'];

const work = mkdtempSync(join(tmpdir(), 'mw-bench-devices-'));
let files = 0;
async function storage(): Promise<ProtocolStorage> {
  return STORAGE === 'sqlite' ? openSqliteStorage({ path: join(work, `c${files++}.db`) }) : memoryStorage();
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] ?? Number.NaN;
}
const fmt = (xs: number[]): string => `p50 ${pct(xs, 0.5).toFixed(1)} / p90 ${pct(xs, 0.9).toFixed(1)} / max ${pct(xs, 1).toFixed(1)} ms (n=${xs.length})`;

/** A fetch that answers POST /v1/send/batch as a node without that route would (404 MW_NOT_FOUND). */
const unbatched: typeof fetch = async (input, init) => {
  if (init?.method === 'POST' && new URL(String(input)).pathname === '/v1/send/batch') {
    return new Response(JSON.stringify({ error: { code: 'MW_NOT_FOUND', message: 'no such route' } }), { status: 404, headers: { 'content-type': 'application/json' } });
  }
  return fetch(input, init);
};

/** CPU seconds (user + system) of a process, from /proc (Linux). */
function procCpu(pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return Number.NaN;
  }
}

async function main(): Promise<void> {
  log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, Node ${process.version}; LINKS=${LINKS} R=${R} STORAGE=${STORAGE}`);
  const node: NodeProcess = await spawnNode({
    bin: join(ROOT, 'packages/node/src/bin.ts'),
    cwd: HERE,
    env: { HOST: '127.0.0.1', PORT: '0', METRICS_PORT: 'off', LOG_LEVEL: 'info', WEB_APP: 'off', DATA_DIR: join(work, 'node'), RATE_LIMITS: BUCKETS.map((b) => `${b}=1000000:10000000`).join(',') },
    tsconfig: join(HERE, 'tsconfig.json'),
  });
  const url = `http://127.0.0.1:${node.port}`;
  const base = { node: url, namespace: 'bench', WebSocket: WS as unknown as WebSocketConstructor, receiptDelay: { minDelayMs: 0, maxDelayMs: 0 } };
  const open: MeshWhisper[] = [];
  const phase = (): (() => string) => {
    const self = process.cpuUsage();
    const nodeCpu = procCpu(node.child.pid);
    const t0 = now();
    return () => {
      const d = process.cpuUsage(self);
      return `[wall ${((now() - t0) / 1000).toFixed(1)} s; CPU: bench ${((d.user + d.system) / 1e6).toFixed(1)} s, node ${(procCpu(node.child.pid) - nodeCpu).toFixed(1)} s; load ${loadavg().map((x) => x.toFixed(2)).join(' ')}]`;
    };
  };
  log(`load average at start: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const client = async (extra: { fetch?: typeof fetch } = {}): Promise<MeshWhisper> => {
    const c = await MeshWhisper.create({ ...base, storage: await storage(), ...extra });
    open.push(c);
    return c;
  };
  const link = async (a: MeshWhisper): Promise<{ device: MeshWhisper; scanToLinked: number; scanAt: number }> => {
    const offer = await MeshWhisper.createLinkOffer({ ...base, storage: await storage() });
    const scanAt = now();
    const [, linked] = await Promise.all([a.acceptLinkOffer(offer.payload), offer.completed]);
    open.push(linked.client);
    return { device: linked.client, scanToLinked: now() - scanAt, scanAt };
  };
  const talk = async (from: MeshWhisper, to: MeshWhisper[], text: string): Promise<void> => {
    const got = Promise.all(to.map((c) => c.once('message', (m) => m.text === text, 30_000)));
    await from.sendText({ accountKey: to[0]!.accountKey }, text);
    await got;
  };

  try {
    // 1. link time
    let done = phase();
    const linked: number[] = [];
    const firstMessage: number[] = [];
    for (let i = 0; i < LINKS; i++) {
      const a = await client();
      const c = await client();
      await talk(a, [c], `hello ${i}`);
      await talk(c, [a], `hi ${i}`);
      const { device, scanToLinked, scanAt } = await link(a);
      const got = device.once('message', (m) => m.text === `after link ${i}`, 30_000);
      await c.sendText({ accountKey: a.accountKey }, `after link ${i}`);
      await got;
      linked.push(scanToLinked);
      firstMessage.push(now() - scanAt);
    }
    log(`link: scan → linked ${fmt(linked)}`);
    log(`link: scan → first message on the new device ${fmt(firstMessage)} ${done()}`);

    // 2. fan-out to an account with 1, 3, 6 devices: batched vs one POST per copy, alternating
    for (const n of [1, 3, 6]) {
      done = phase();
      const a = await client();
      const devices = [a];
      while (devices.length < n) devices.push((await link(a)).device);
      const senders = { batched: await client(), 'one POST per copy': await client({ fetch: unbatched }) };
      for (const c of Object.values(senders)) await talk(c, devices, 'warm-up'); // sessions to every device exist
      const durable: Record<string, number[]> = {};
      const all: Record<string, number[]> = {};
      const cpu: Record<string, { bench: number; node: number }> = {};
      for (let i = 0; i < R; i++) {
        for (const [mode, c] of Object.entries(senders)) {
          const text = `fan-out ${n} ${mode} #${i}`;
          const got = Promise.all(devices.map((d) => d.once('message', (m) => m.text === text, 30_000)));
          const cpu0 = process.cpuUsage();
          const node0 = procCpu(node.child.pid);
          const t0 = now();
          await c.sendText({ accountKey: a.accountKey }, text);
          (durable[mode] ??= []).push(now() - t0);
          await got;
          (all[mode] ??= []).push(now() - t0);
          const d = process.cpuUsage(cpu0);
          (cpu[mode] ??= { bench: 0, node: 0 }).bench += (d.user + d.system) / 1000;
          cpu[mode].node += (procCpu(node.child.pid) - node0) * 1000;
        }
      }
      for (const mode of Object.keys(senders)) {
        const c = cpu[mode]!;
        log(`fan-out to ${n} device(s), ${mode}: sendText resolved ${fmt(durable[mode]!)}; all devices received ${fmt(all[mode]!)}; CPU per message: clients ${(c.bench / R).toFixed(1)} ms, node ${(c.node / R).toFixed(1)} ms`);
      }
      log(`fan-out to ${n} device(s) ${done()}`);
    }

    // 3. mirror to 2 own devices
    {
      done = phase();
      const a = await client();
      const own = [(await link(a)).device, (await link(a)).device];
      const c = await client();
      await talk(a, [c], 'warm-up');
      await talk(c, [a, ...own], 'warm-up back');
      const durable: number[] = [];
      const atPeer: number[] = [];
      const mirrored: number[] = [];
      for (let i = 0; i < R; i++) {
        const text = `mirror #${i}`;
        const t0 = now();
        const peerGot = c.once('message', (m) => m.text === text, 30_000).then(() => atPeer.push(now() - t0));
        const ownGot = Promise.all(own.map((d) => d.once('message', (m) => m.outgoing && m.text === text, 30_000))).then(() => mirrored.push(now() - t0));
        await a.sendText({ accountKey: c.accountKey }, text);
        durable.push(now() - t0);
        await Promise.all([peerGot, ownGot]);
      }
      log(`mirror (1 peer device + 2 own devices): sendText resolved ${fmt(durable)}; peer received ${fmt(atPeer)}; both own devices received ${fmt(mirrored)} ${done()}`);
    }
  } finally {
    for (const c of open) await c.close().catch(() => undefined);
    node.child.kill('SIGTERM');
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);

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
 *      the last of the account's devices received it.
 *   3. mirror: an account with 3 devices (the sender + 2 own devices) sends to C (1 device): sendText
 *      resolved (C's copy and both mirror copies stored), C received, both own devices received.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
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
  const client = async (): Promise<MeshWhisper> => {
    const c = await MeshWhisper.create({ ...base, storage: await storage() });
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
    log(`link: scan → first message on the new device ${fmt(firstMessage)}`);

    // 2. fan-out to an account with 1, 3, 6 devices
    for (const n of [1, 3, 6]) {
      const a = await client();
      const devices = [a];
      while (devices.length < n) devices.push((await link(a)).device);
      const c = await client();
      await talk(c, devices, 'warm-up'); // sessions to every device exist
      const durable: number[] = [];
      const all: number[] = [];
      for (let i = 0; i < R; i++) {
        const text = `fan-out ${n} #${i}`;
        const got = Promise.all(devices.map((d) => d.once('message', (m) => m.text === text, 30_000)));
        const t0 = now();
        await c.sendText({ accountKey: a.accountKey }, text);
        durable.push(now() - t0);
        await got;
        all.push(now() - t0);
      }
      log(`fan-out to ${n} device(s): sendText resolved ${fmt(durable)}; all devices received ${fmt(all)}`);
    }

    // 3. mirror to 2 own devices
    {
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
      log(`mirror (1 peer device + 2 own devices): sendText resolved ${fmt(durable)}; peer received ${fmt(atPeer)}; both own devices received ${fmt(mirrored)}`);
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

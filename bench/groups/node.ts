/**
 * Group fan-out through a local node (issue 14 benchmark, end-to-end part): N SDK clients (one
 * device each, in this process, memory storage) and a real node (a separate process, SQLite, on
 * 127.0.0.1). For groups of N members it measures, with wall time and the CPU of both processes:
 *   - one member sending one text to the group: until `sendText` resolved (sealed once per device,
 *     committed, posted in one batch) and until every other member's client emitted it;
 *   - the same text as N−1 direct messages (one pairwise send per member, all started at once);
 *   - a removal: the admin kicks one member, then sends — the new key goes to the N−2 remaining
 *     devices first — until everyone remaining has it.
 * Receipts are held back (receiptDelay 10 min) so that only the measured traffic flows.
 *
 *   cd bench/groups && npm install && npm run bench:node          (SIZES=10,100,1000 to choose)
 *
 * PROFILE=<dir> also writes a V8 CPU profile of this process (all clients) per phase and size —
 * <dir>/<N>-create.cpuprofile, -send (the steady-state messages), -pairwise, -kick, -rekey — for
 * Chrome DevTools or `node --import tsx ../lib/profile-inclusive.ts <file>` (by call path) / `../lib/profile-summary.ts` (by area).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MeshWhisper, memoryStorage } from '../../packages/sdk/src/index.js';
import { spawnNode } from '../lib/node-process.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '../..');
const SIZES = (process.env['SIZES'] ?? '10,100').split(',').map(Number);
const MESSAGES = Number(process.env['MESSAGES'] ?? 5);
const PROFILE = process.env['PROFILE'];
const log = (...a: unknown[]): void => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a);

const BUCKETS = ['http', 'ws-upgrade', 'ws-frame', 'auth', 'send-token', 'send-first-contact', 'send-first-contact-target', 'prekey-claim', 'prekey-claim-target', 'directory-write', 'username-lookup', 'username-write', 'blob-upload', 'blob-download', 'archive', 'link', 'link-create'];
const dataDir = mkdtempSync(join(tmpdir(), 'mw-bench-groups-'));
const node = await spawnNode({
  bin: join(ROOT, 'packages/node/src/bin.ts'),
  cwd: HERE,
  // WORKERS=1: one node process, whose CPU /proc gives (the default, auto, forks workers the figure would miss).
  env: { PORT: '0', HOST: '127.0.0.1', WORKERS: '1', DATA_DIR: dataDir, METRICS_PORT: 'off', LOG_LEVEL: 'info', WEB_APP: 'off', WS_MAX_CONNECTIONS_PER_ADDRESS: '0', RATE_LIMITS: BUCKETS.map((b) => `${b}=1000000:10000000`).join(','), USERNAME_NAMESPACES: 'bench:signed' },
  tsconfig: join(HERE, 'tsconfig.json'),
});
const url = `http://127.0.0.1:${node.port}`;
const TICK = 100; // clock ticks per second (Linux USER_HZ)
const nodeCpuMs = (): number => {
  const f = readFileSync(`/proc/${node.child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / TICK;
};
const selfCpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

const inspector = PROFILE ? new Session() : undefined;
if (inspector && PROFILE) {
  mkdirSync(PROFILE, { recursive: true });
  inspector.connect();
  await inspector.post('Profiler.enable');
}

/** Runs `f` under the CPU profiler when PROFILE is set, writing <PROFILE>/<name>.cpuprofile. */
async function profiled<T>(name: string, f: () => Promise<T>): Promise<T> {
  if (!inspector || !PROFILE) return f();
  await inspector.post('Profiler.start');
  try {
    return await f();
  } finally {
    const { profile } = await inspector.post('Profiler.stop');
    writeFileSync(join(PROFILE, `${name}.cpuprofile`), JSON.stringify(profile));
  }
}

/** Runs `f`; wall ms, this process's CPU ms (all clients) and the node's CPU ms. */
async function measure<T>(f: () => Promise<T>): Promise<{ wall: number; cpu: number; nodeCpu: number; value: T }> {
  const [c0, n0, t0] = [selfCpuMs(), nodeCpuMs(), performance.now()];
  const value = await f();
  return { wall: performance.now() - t0, cpu: selfCpuMs() - c0, nodeCpu: nodeCpuMs() - n0, value };
}

/** Resolves when every client in `who` emitted a message with `text`. */
function allGet(who: readonly MeshWhisper[], text: string, timeoutMs = 600_000): Promise<unknown> {
  return Promise.all(who.map((c) => c.once('message', (m) => m.text === text, timeoutMs)));
}

const rows: string[] = [];
try {
  for (const n of SIZES) {
    log(`N = ${n}: creating ${n} clients`);
    const clients: MeshWhisper[] = [];
    for (let i = 0; i < n; i++) clients.push(await MeshWhisper.create({ node: url, namespace: 'bench', storage: await memoryStorage(), receiptDelay: { minDelayMs: 600_000, maxDelayMs: 600_000 } }));
    const [admin, ...members] = clients as [MeshWhisper, ...MeshWhisper[]];
    const joined = Promise.all(members.map((c) => c.once('groupChange', (e) => e.change.type === 'joined', 600_000)));
    joined.catch(() => undefined); // awaited below; a timeout while create() still runs must not crash the run unhandled
    const create = await profiled(`${n}-create`, () =>
      measure(async () => {
        const g = await admin.groups.create(`bench ${n}`, members.map((c) => c.accountKey));
        await joined;
        return g;
      }),
    );
    const g = create.value;
    const to = { kind: 'group' as const, groupId: g.groupId };
    log(`N = ${n}: group created and joined in ${create.wall.toFixed(0)} ms`);
    // First message: carries the admin's sender key to every device first.
    const first = await measure(async () => {
      const got = allGet(members, 'first');
      await admin.sendText(to, 'first');
      await got;
    });
    // Steady state.
    const send: number[] = [];
    const all: number[] = [];
    let cpu = 0;
    let nodeCpu = 0;
    await profiled(`${n}-send`, async () => {
      for (let i = 0; i < MESSAGES; i++) {
        const text = `m${i}`;
        const m = await measure(async () => {
          const got = allGet(members, text);
          const t0 = performance.now();
          await admin.sendText(to, text);
          send.push(performance.now() - t0);
          await got;
        });
        all.push(m.wall);
        cpu += m.cpu;
        nodeCpu += m.nodeCpu;
      }
    });
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    // The same text as N−1 pairwise sends (sessions exist already: the key distributions set them up).
    const pairwise = await profiled(`${n}-pairwise`, () =>
      measure(async () => {
        const got = allGet(members, 'pairwise');
        await Promise.all(members.map((c) => admin.sendText(c.mailboxId, 'pairwise')));
        await got;
      }),
    );
    // Removal: kick one member, then the next message (new key to N−2 devices first).
    const [gone, ...rest] = members as [MeshWhisper, ...MeshWhisper[]];
    const removed = Promise.all(rest.map((c) => c.once('groupChange', (e) => e.change.type === 'memberRemoved', 600_000)));
    const kick = await profiled(`${n}-kick`, () =>
      measure(async () => {
        await admin.groups.kick(g.groupId, gone.accountKey);
        await removed;
      }),
    );
    const rekey = await profiled(`${n}-rekey`, () =>
      measure(async () => {
        const got = allGet(rest, 'after the kick');
        await admin.sendText(to, 'after the kick');
        await got;
      }),
    );
    rows.push(
      `| ${n} | ${create.wall.toFixed(0)} | ${first.wall.toFixed(0)} | ${median(send).toFixed(1)} | ${median(all).toFixed(1)} | ${(cpu / MESSAGES).toFixed(1)} / ${(nodeCpu / MESSAGES).toFixed(1)} | ${pairwise.wall.toFixed(0)} (${pairwise.cpu.toFixed(0)} / ${pairwise.nodeCpu.toFixed(0)}) | ${kick.wall.toFixed(0)} | ${rekey.wall.toFixed(0)} (${rekey.cpu.toFixed(0)} / ${rekey.nodeCpu.toFixed(0)}) |`,
    );
    log(rows.at(-1));
    await Promise.all(clients.map((c) => c.close()));
  }
} finally {
  inspector?.disconnect();
  node.child.kill('SIGTERM');
  rmSync(dataDir, { recursive: true, force: true });
}

console.log(`\nnode ${process.version}, load average ${loadavg().map((x) => x.toFixed(2)).join(' / ')} (machine shared with other work: figures are indicative)\n`);
console.log('| members | create + all joined (ms) | first message, with key distribution, all have it (ms) | send: sendText resolved (ms, median) | send: all members have it (ms, median) | per message CPU ms: clients / node | N−1 pairwise sends, all have it (ms; CPU clients / node) | kick, all applied (ms) | next message after kick, with rekey, all have it (ms; CPU clients / node) |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) console.log(r);

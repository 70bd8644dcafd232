/**
 * What one hand-off between the event loop and a worker thread costs, the way the store's writer
 * thread is reached today (postMessage a request, postMessage a reply), against a SharedArrayBuffer
 * slot signalled with Atomics: the worker sleeps in Atomics.wait, the event loop awaits the reply
 * with Atomics.waitAsync (no serialization, no MessagePort event). N round trips, one at a time, each
 * carrying a 4 KiB request and a 64-byte reply (about one group of envelopes and its outcomes);
 * wall time and CPU (both threads, from process.cpuUsage) per round trip. No SQLite: the hand-off only.
 *
 *   cd bench/node && node --import tsx ./handoff.ts [N=20000]
 */
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';

const N = Number(process.argv[2] ?? 20_000);
/** Atomics.waitAsync (V8, Node ≥ 16) is not in this project's TypeScript lib (ES2022). */
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: Promise<string> | string } }).waitAsync;
const REQUEST = 4096;
const REPLY = 64;

const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
if (workerData.mode === 'post') {
  parentPort.on('message', (m) => {
    const reply = new Uint8Array(${REPLY});
    reply[0] = m.buf[0];
    parentPort.postMessage({ n: m.n, res: reply }, [reply.buffer]);
  });
} else {
  const ctl = new Int32Array(workerData.ctl); // [0]: request seq, [1]: reply seq
  const req = new Uint8Array(workerData.req);
  const rep = new Uint8Array(workerData.rep);
  let seen = 0;
  for (;;) {
    Atomics.wait(ctl, 0, seen);
    seen = Atomics.load(ctl, 0);
    if (seen < 0) break;
    rep[0] = req[0];
    Atomics.store(ctl, 1, seen);
    Atomics.notify(ctl, 1);
  }
}
`;

async function viaPostMessage(): Promise<void> {
  const w = new Worker(workerSource, { eval: true, workerData: { mode: 'post' } });
  const pending = new Map<number, () => void>();
  w.on('message', (m: { n: number }) => {
    pending.get(m.n)!();
    pending.delete(m.n);
  });
  const buf = new Uint8Array(REQUEST);
  const one = (n: number): Promise<void> =>
    new Promise((resolve) => {
      pending.set(n, resolve);
      const copy = buf.slice(); // the store packs each request into a fresh buffer and transfers it
      w.postMessage({ n, buf: copy }, [copy.buffer]);
    });
  for (let i = 0; i < 2000; i++) await one(i); // warm-up
  report('postMessage (today)', await timed(async () => {
    for (let i = 0; i < N; i++) await one(i);
  }));
  await w.terminate();
}

async function viaAtomics(): Promise<void> {
  const ctlBuf = new SharedArrayBuffer(8);
  const reqBuf = new SharedArrayBuffer(REQUEST);
  const repBuf = new SharedArrayBuffer(REPLY);
  const ctl = new Int32Array(ctlBuf);
  const req = new Uint8Array(reqBuf);
  const src = new Uint8Array(REQUEST);
  const w = new Worker(workerSource, { eval: true, workerData: { mode: 'atomics', ctl: ctlBuf, req: reqBuf, rep: repBuf } });
  let seq = 0;
  const one = async (): Promise<void> => {
    req.set(src);
    const n = ++seq;
    Atomics.store(ctl, 0, n);
    Atomics.notify(ctl, 0);
    while (Atomics.load(ctl, 1) !== n) {
      const r = waitAsync(ctl, 1, n - 1);
      if (r.async) await r.value;
    }
  };
  for (let i = 0; i < 2000; i++) await one(); // warm-up
  report('SharedArrayBuffer + Atomics.waitAsync', await timed(async () => {
    for (let i = 0; i < N; i++) await one();
  }));
  Atomics.store(ctl, 0, -1);
  Atomics.notify(ctl, 0);
  await w.terminate();
}

async function timed(fn: () => Promise<void>): Promise<{ wallMs: number; cpuMs: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const wallMs = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { wallMs, cpuMs: (c.user + c.system) / 1000 };
}

function report(name: string, r: { wallMs: number; cpuMs: number }): void {
  console.log(`${name}: ${N} round trips, ${((r.wallMs * 1000) / N).toFixed(1)} µs wall and ${((r.cpuMs * 1000) / N).toFixed(1)} µs CPU (both threads) each`);
}

await viaPostMessage();
await viaAtomics();
await viaPostMessage();
await viaAtomics();

/**
 * CPU profile of one MeshWhisper phase of the crypto benchmark (no libsignal), for
 * docs/benchmarks.md "where the time goes":
 *   PHASE=setup|oneway|pingpong BACKEND=oqs node --import tsx ./profile.ts
 *   node --import tsx ../lib/profile-summary.ts profile/<phase>-<backend>.cpuprofile 30
 * Only the timed loop is profiled (inspector Profiler, started after the fixtures are built).
 * BACKEND=node (node:crypto, noble ML-KEM) | oqs (node:crypto + liboqs WASM ML-KEM, the default) | noble.
 */
import { freshBundle as makeFreshBundle, mkDevice as mkBenchDevice } from './devices.js';
import type { BenchDevice } from './devices.js';
import * as nodeCrypto from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import {
  _nodeBackendWithOqs,
  createContext,
  createNodeBackend,
  decryptMessage,
  deviceAddress,
  encryptMessage,
  initiateSession,
  nobleBackend,
} from '../../packages/crypto/src/index.js';
import type { CryptoBackend, PreKeyBundle } from '../../packages/crypto/src/index.js';

const PHASE = process.env['PHASE'] ?? 'setup';
const N = Number(process.env['N'] ?? (PHASE === 'setup' ? 300 : 10000));
const which = process.env['BACKEND'] ?? 'oqs';
const backend: CryptoBackend =
  which === 'noble' ? nobleBackend : which === 'node' ? createNodeBackend(nodeCrypto) : (_nodeBackendWithOqs(nodeCrypto) ?? (() => { throw new Error('no oqs'); })());
const ctx = createContext({ backend });
const payload = new Uint8Array(1024).fill(0x61);

const inspector = new Session();
inspector.connect();
async function profiled(run: () => Promise<void>): Promise<void> {
  await inspector.post('Profiler.enable');
  await inspector.post('Profiler.setSamplingInterval', { interval: 100 });
  await inspector.post('Profiler.start');
  await run();
  const { profile } = await inspector.post('Profiler.stop');
  mkdirSync('profile', { recursive: true });
  writeFileSync(`profile/${PHASE}-${which}.cpuprofile`, JSON.stringify(profile));
}

const mkDevice = () => mkBenchDevice(ctx);
const freshBundle = (d: BenchDevice, id: number): Promise<PreKeyBundle> => makeFreshBundle(ctx, d, id);

if (PHASE === 'setup') {
  const pairs = [];
  for (let i = 0; i < N; i++) {
    const a = await mkDevice();
    const b = await mkDevice();
    pairs.push({ a, b, bundle: await freshBundle(b, 10) });
  }
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await profiled(async () => {
    for (const { a, b, bundle } of pairs) {
      await initiateSession(ctx, a.store, bundle);
      const m = await encryptMessage(ctx, a.store, deviceAddress(b.certificate), payload);
      await decryptMessage(ctx, b.store, a.certificate, m);
    }
  });
  const c = process.cpuUsage(c0);
  console.log(`${which} setup: ${((performance.now() - t0) / N).toFixed(3)} ms wall, ${((c.user + c.system) / 1000 / N).toFixed(3)} ms CPU`);
} else {
  const a = await mkDevice();
  const b = await mkDevice();
  await initiateSession(ctx, a.store, await freshBundle(b, 10));
  const toB = deviceAddress(b.certificate);
  const toA = deviceAddress(a.certificate);
  await decryptMessage(ctx, b.store, a.certificate, await encryptMessage(ctx, a.store, toB, payload));
  await decryptMessage(ctx, a.store, b.certificate, await encryptMessage(ctx, b.store, toA, payload));
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await profiled(async () => {
    for (let i = 0; i < N; i++) {
      const [from, to, addr] = PHASE === 'oneway' || i % 2 === 0 ? [a, b, toB] : [b, a, toA];
      await decryptMessage(ctx, to.store, from.certificate, await encryptMessage(ctx, from.store, addr, payload));
    }
  });
  const c = process.cpuUsage(c0);
  console.log(`${which} ${PHASE}: ${(N / ((performance.now() - t0) / 1000)).toFixed(0)} msgs/s wall, ${(N / ((c.user + c.system) / 1e6)).toFixed(0)} msgs/s of CPU`);
}

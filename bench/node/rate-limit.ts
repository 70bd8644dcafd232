/**
 * The rate limiter's per-frame call: RateLimiter.take(bucket, key) for 1,000 client keys in turn
 * (every inbound WebSocket frame takes one from 'ws-frame', every token send one more from
 * 'send-token'). Nanoseconds per call, three rounds of 2,000,000 calls each; with REF=<git ref>,
 * that commit's packages/node/src/rate-limit.ts first, in the same process (its source is written
 * beside this file for the run and removed after).
 *
 *   cd bench/node && node --import tsx ./rate-limit.ts            # this checkout
 *   cd bench/node && REF=de64abc node --import tsx ./rate-limit.ts  # … and that commit, side by side
 */
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { RateLimiter } from '../../packages/node/src/rate-limit.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const N = 2_000_000;
const keys = Array.from({ length: 1000 }, (_, i) => `127.0.${i >> 8}.${i & 255}`);
const buckets = { 'ws-frame': { rate: 1e6, burst: 1e7 }, 'send-token': { rate: 1e6, burst: 1e7 } };

type Limiter = { take(bucket: string, key: string): { allowed: boolean } };

function run(name: string, limiter: Limiter): void {
  let allowed = 0;
  for (let round = 1; round <= 3; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) if (limiter.take(i & 1 ? 'send-token' : 'ws-frame', keys[i % 1000]!).allowed) allowed++;
    const ns = Number(process.hrtime.bigint() - t0) / N;
    console.log(`${name}: round ${round}: ${ns.toFixed(1)} ns per take`);
  }
  if (allowed !== 3 * N) throw new Error('a take was denied: the buckets are meant never to run dry here');
}

const ref = process.env['REF'];
if (ref) {
  const src = execFileSync('git', ['show', `${ref}:packages/node/src/rate-limit.ts`], { cwd: HERE, encoding: 'utf8' });
  const file = join(HERE, `.rate-limit-${process.pid}.ts`);
  writeFileSync(file, src);
  try {
    const mod = (await import(pathToFileURL(file).href)) as { RateLimiter: new (o: { buckets: typeof buckets }) => Limiter };
    run(`${ref}`, new mod.RateLimiter({ buckets }));
  } finally {
    rmSync(file, { force: true });
  }
}
run('this checkout', new RateLimiter({ buckets }));

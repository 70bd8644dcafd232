/**
 * The disk's own floor for a durable commit: a 16 KiB write + fdatasync into a wrapping 8 MiB file
 * (what a WAL commit of two 8 KiB frames does), RATE times a second for SECONDS, on the file system
 * of DIR. No SQLite, no threads, no sockets: if these took tens of ms, no store on this disk could
 * answer a durable send within 10 ms at p99. Run it alone, or next to a load to see how the tail moves.
 *
 *   cd bench/node && node --import tsx ./fsync-probe.ts [DIR=.] [SECONDS=30] [RATE=1600]
 */
import { closeSync, fdatasyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const dir = process.argv[2] ?? '.';
const seconds = Number(process.argv[3] ?? 30);
const rate = Number(process.argv[4] ?? 1600);
const WRAP = 8 * 1024 * 1024;
const file = join(dir, `fsync-probe-${process.pid}`);
const fd = openSync(file, 'w+', 0o600);
const block = Buffer.alloc(16 * 1024, 7);
const lat: number[] = [];
const worstPerSecond: number[] = [];
const t0 = performance.now();
let next = t0;
let pos = 0;
try {
  for (;;) {
    const now = performance.now();
    if (now - t0 >= seconds * 1000) break;
    if (now < next) continue; // a steady RATE (busy wait: the probe owns its core)
    next += 1000 / rate;
    const a = performance.now();
    writeSync(fd, block, 0, block.length, pos);
    fdatasyncSync(fd);
    const ms = performance.now() - a;
    pos = (pos + block.length) % WRAP;
    lat.push(ms);
    const s = Math.floor((a - t0) / 1000);
    worstPerSecond[s] = Math.max(worstPerSecond[s] ?? 0, ms);
  }
} finally {
  closeSync(fd);
  unlinkSync(file);
}
lat.sort((x, y) => x - y);
const q = (p: number): string => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!.toFixed(2);
const over = (ms: number): number => lat.filter((x) => x > ms).length;
console.log(
  `${lat.length} × (16 KiB write + fdatasync) in ${seconds} s on ${dir}: p50 ${q(0.5)} / p99 ${q(0.99)} / p99.9 ${q(0.999)} / max ${lat.at(-1)!.toFixed(2)} ms; ` +
    `> 5 ms: ${over(5)}, > 10 ms: ${over(10)}, > 50 ms: ${over(50)}`,
);
console.log(`worst per second, ms: ${worstPerSecond.map((x) => x.toFixed(1)).join(' ')}`);

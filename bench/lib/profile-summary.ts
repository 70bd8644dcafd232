/**
 * Self time of a V8 .cpuprofile (node --cpu-prof), grouped three ways: by area (noble crypto,
 * the SDK's storage, the HTTP client…), by function and by file.
 *   node --import tsx ../lib/profile-summary.ts profile/<file>.cpuprofile [top]      (from bench/node or bench/sdk)
 * FROM_S / TO_S (seconds since the profile started) keep only the samples of that window, e.g. one
 * bench phase (bench/node prints each phase's window when PROFILE=1).
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, topArg] = process.argv.slice(2);
if (!file) throw new Error('usage: profile-summary.ts FILE.cpuprofile [top]');
const top = Number(topArg ?? 25);
const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
const selfUs = new Map<number, number>();
const fromUs = Number(process.env['FROM_S'] ?? 0) * 1e6;
const toUs = process.env['TO_S'] ? Number(process.env['TO_S']) * 1e6 : Infinity;
let at = 0;
profile.samples.forEach((id, i) => {
  at += profile.timeDeltas[i] ?? 0;
  if (at >= fromUs && at < toUs) selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
});

const short = (url: string): string => url.replace(/^file:\/\/.*?\/(node_modules|packages)\//, '$1/');
/** A coarse owner of the time, so the summary says where it goes in one glance. */
function area(f: CallFrame): string {
  const u = f.url;
  if (!u) return f.functionName.startsWith('(') ? f.functionName : `native ${f.functionName}`;
  if (u.includes('/node_modules/@noble/')) return 'noble crypto (@noble/*)';
  if (u.includes('/packages/crypto/')) return 'packages/crypto (protocol code)';
  if (u.includes('/node_modules/@bufbuild/')) return 'protobuf-es';
  if (u.includes('/packages/protocol/')) return 'packages/protocol';
  if (u.includes('/packages/sdk/src/storage/')) return 'sdk storage adapters';
  if (u.includes('/packages/sdk/')) return 'sdk client';
  if (u.includes('/node_modules/better-sqlite3/')) return 'better-sqlite3 (JS side)';
  if (u.includes('/packages/node/')) return 'packages/node';
  if (u.includes('/node_modules/fastify') || u.includes('/node_modules/@fastify/') || u.includes('/node_modules/find-my-way') || u.includes('/node_modules/light-my-request')) return 'fastify';
  if (u.includes('/node_modules/pino')) return 'pino (logging)';
  if (u.includes('/node_modules/ws/')) return 'ws';
  if (u.includes('undici')) return 'undici (fetch)';
  if (u.startsWith('node:')) return 'node: internals';
  if (u.includes('/node_modules/')) return short(u).split('/').slice(0, 2).join('/');
  return short(u);
}

const byArea = new Map<string, number>();
const byFn = new Map<string, number>();
const byFile = new Map<string, number>();
const add = (m: Map<string, number>, k: string, v: number): void => void m.set(k, (m.get(k) ?? 0) + v);
let total = 0;
let idle = 0;
for (const [id, us] of selfUs) {
  const f = frames.get(id)!;
  total += us;
  if (f.functionName === '(idle)') idle += us;
  add(byArea, area(f), us);
  add(byFn, `${f.functionName || '(anonymous)'}  ${short(f.url)}:${f.lineNumber + 1}`, us);
  add(byFile, f.url ? short(f.url) : f.functionName, us);
}
const busy = total - idle;
const show = (m: Map<string, number>, n: number): string =>
  [...m]
    .filter(([k]) => !k.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, us]) => `${((us / busy) * 100).toFixed(1).padStart(5)} %  ${(us / 1e6).toFixed(2).padStart(7)} s  ${k}`)
    .join('\n');
console.log(`sampled ${(total / 1e6).toFixed(1)} s, of which busy (not idle) ${(busy / 1e6).toFixed(1)} s; shares below are of busy time\n`);
console.log(`by area:\n${show(byArea, 30)}\n\nby function:\n${show(byFn, top)}\n\nby file:\n${show(byFile, 20)}`);

/**
 * Where the time goes in a V8 CPU profile (.cpuprofile, e.g. from bench/groups PROFILE=dir or
 * `node --cpu-prof`), by call path: the functions with the most self time and with the most
 * inclusive time (the function and everything it calls; counted once per sample however deep it
 * recurses), with their share of the sampled time (the profiler's own work in node:inspector left out). profile-summary.ts groups self time by area.
 *
 *   node --import tsx bench/lib/profile-inclusive.ts <file.cpuprofile> [top=30]
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, topArg] = process.argv.slice(2);
if (!file) throw new Error('usage: profile-inclusive.ts <file.cpuprofile> [top]');
const top = Number(topArg ?? 30);
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
/** Samples inside node:inspector are the profiler's own work (bench/groups starts and stops it in-process): left out. */
const inInspector = (id: number): boolean => {
  for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) if (byId.get(x)!.callFrame.url === 'node:inspector') return true;
  return false;
};
const perNode = new Map<number, number>();
p.samples.forEach((s, i) => {
  if (!inInspector(s)) perNode.set(s, (perNode.get(s) ?? 0) + (p.timeDeltas[i] ?? 0));
});
const total = [...perNode.values()].reduce((a, b) => a + b, 0);
const name = (n: ProfileNode): string => {
  const url = n.callFrame.url.replace(/^.*?\/(packages|node_modules|apps|bench)\//, '$1/').replace(/^file:\/\//, '');
  return `${n.callFrame.functionName || '(anonymous)'}${url ? ` ${url}:${n.callFrame.lineNumber + 1}` : ''}`;
};
const self = new Map<string, number>();
const inclusive = new Map<string, number>();
for (const [id, t] of perNode) {
  const k = name(byId.get(id)!);
  self.set(k, (self.get(k) ?? 0) + t);
  const seen = new Set<string>();
  for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) {
    const kx = name(byId.get(x)!);
    if (seen.has(kx)) continue;
    seen.add(kx);
    inclusive.set(kx, (inclusive.get(kx) ?? 0) + t);
  }
}
const show = (m: Map<string, number>): string =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, t]) => `${(t / 1000).toFixed(0).padStart(8)} ms ${((100 * t) / total).toFixed(1).padStart(5)} %  ${k}`)
    .join('\n');
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled\n── self ──\n${show(self)}\n── inclusive ──\n${show(inclusive)}`);

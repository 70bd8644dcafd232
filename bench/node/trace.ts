/**
 * TRACE=1 of run.ts: where a message's latency goes. The node under test appends a JSON line a
 * second to MW_LATENCY_TRACE (packages/node/src/latency-trace.ts, and its writer thread); the
 * generator keeps the same kind of per-second histograms of its own (send lag behind the intended
 * time, end-to-end latency, GC pauses, event-loop delay). After a phase, `summarize` merges the
 * lines of the measured window: per stage p50 / p99 / p99.9 / max, and a per-second timeline that
 * puts the generator's worst latency next to the node's GC pauses, loop delay, commits and
 * checkpoints of the same second.
 */
import { readFileSync } from 'node:fs';
import { PerformanceObserver, constants, monitorEventLoopDelay } from 'node:perf_hooks';
import { LOOP_RESOLUTION_MS, loopDelay } from '../../packages/node/src/latency-trace.js';

const LOG_G = Math.log(1.02);
const bucketOf = (ms: number): number => Math.max(0, Math.floor(Math.log(Math.max(1, ms * 1000)) / LOG_G));

export interface SparseJson {
  n: number;
  max: number;
  b: Record<string, number>;
}

function add(into: SparseJson, h: SparseJson): void {
  into.n += h.n;
  into.max = Math.max(into.max, h.max);
  for (const [k, v] of Object.entries(h.b)) into.b[k] = (into.b[k] ?? 0) + v;
}

function quantile(h: SparseJson, q: number): number {
  if (h.n === 0) return Number.NaN;
  const rank = Math.ceil(q * h.n);
  let seen = 0;
  for (const k of Object.keys(h.b).map(Number).sort((a, b) => a - b)) {
    seen += h.b[String(k)]!;
    if (seen >= rank) return Math.min(h.max, Math.exp((k + 1) * LOG_G) / 1000);
  }
  return h.max;
}

interface Line {
  t: number;
  src: string;
  stages?: Record<string, SparseJson>;
  gc?: Record<string, SparseJson>;
  loop?: { p50: number; p99: number; max: number };
}

/** The generator's own per-second histograms (same format as the node's lines). */
export class GenTrace {
  lines: Line[] = [];
  #stages = new Map<string, SparseJson>();
  #gc = new Map<string, SparseJson>();
  readonly #loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  #timer: NodeJS.Timeout | undefined;
  #obs: PerformanceObserver | undefined;

  start(): void {
    this.#loop.enable();
    const kinds: Record<number, string> = { [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor', [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major', [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental' };
    this.#obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) this.#rec(this.#gc, kinds[(e as unknown as { detail?: { kind?: number } }).detail?.kind ?? -1] ?? 'other', e.duration);
    });
    this.#obs.observe({ entryTypes: ['gc'] });
    this.#timer = setInterval(() => this.#flush(), 1000);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#obs?.disconnect();
    this.#loop.disable();
  }

  stage(name: string, ms: number): void {
    this.#rec(this.#stages, name, ms);
  }

  #rec(m: Map<string, SparseJson>, name: string, ms: number): void {
    let h = m.get(name);
    if (!h) m.set(name, (h = { n: 0, max: 0, b: {} }));
    const k = String(bucketOf(ms));
    h.b[k] = (h.b[k] ?? 0) + 1;
    h.n++;
    if (ms > h.max) h.max = ms;
  }

  #flush(): void {
    this.lines.push({
      t: Date.now(),
      src: 'gen',
      stages: Object.fromEntries(this.#stages),
      gc: Object.fromEntries(this.#gc),
      loop: loopDelay(this.#loop),
    });
    this.#stages = new Map();
    this.#gc = new Map();
    this.#loop.reset();
  }
}

const f2 = (n: number): string => (Number.isNaN(n) ? 'n/a' : n.toFixed(2));

/** Per-stage table and per-second timeline of the lines in [fromMs, toMs] (Date.now() clock). */
export function summarize(nodeFile: string | undefined, gen: GenTrace, fromMs: number, toMs: number): string {
  let lines: Line[] = [...gen.lines];
  if (nodeFile) {
    try {
      lines = lines.concat(
        readFileSync(nodeFile, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Line),
      );
    } catch {
      /* no node trace */
    }
  }
  // A line covers the second before its timestamp.
  lines = lines.filter((l) => l.t > fromMs + 500 && l.t <= toMs + 500);
  const merged = new Map<string, SparseJson>();
  const put = (name: string, h: SparseJson): void => {
    let m = merged.get(name);
    if (!m) merged.set(name, (m = { n: 0, max: 0, b: {} }));
    add(m, h);
  };
  const loopMax = { node: 0, gen: 0 };
  for (const l of lines) {
    for (const [k, h] of Object.entries(l.stages ?? {})) put(`${l.src} ${k}`, h);
    for (const [k, h] of Object.entries(l.gc ?? {})) put(`${l.src} gc.${k}`, h);
    if (l.loop && l.src !== 'writer') {
      if (l.src === 'main') loopMax.node = Math.max(loopMax.node, l.loop.max);
      else loopMax.gen = Math.max(loopMax.gen, l.loop.max);
    }
  }
  const out = ['| stage (ms) | n | p50 | p99 | p99.9 | max | sum |', '|---|---|---|---|---|---|---|'];
  for (const [k, h] of [...merged].sort(([a], [b]) => a.localeCompare(b))) {
    let sum = 0;
    for (const [b, c] of Object.entries(h.b)) sum += c * (Math.exp((Number(b) + 0.5) * LOG_G) / 1000);
    out.push(`| ${k} | ${h.n} | ${f2(quantile(h, 0.5))} | ${f2(quantile(h, 0.99))} | ${f2(quantile(h, 0.999))} | ${f2(h.max)} | ${k.includes('gc.') || k.includes('checkpoint') || k.includes('commit') ? f2(sum) : ''} |`);
  }
  out.push(`event-loop delay max: node main ${f2(loopMax.node)} ms, generator ${f2(loopMax.gen)} ms`);
  // Timeline: one row per second.
  const secs = new Map<number, Line[]>();
  for (const l of lines) {
    const s = Math.round(l.t / 1000);
    secs.set(s, [...(secs.get(s) ?? []), l]);
  }
  out.push('timeline (per second): gen e2e p99/max | gen sendLag max | gen loop max | node loop max | node gc max (kind) | writer commit max | checkpoint | writer queueWait max');
  for (const [s, ls] of [...secs].sort(([a], [b]) => a - b)) {
    const g = ls.find((l) => l.src === 'gen');
    const m = ls.find((l) => l.src === 'main');
    const w = ls.find((l) => l.src === 'writer');
    const e2e = g?.stages?.['e2e'];
    let gcMax = 0;
    let gcKind = '';
    for (const [k, h] of Object.entries(m?.gc ?? {}))
      if (h.max > gcMax) {
        gcMax = h.max;
        gcKind = k;
      }
    out.push(
      `  ${new Date(s * 1000).toISOString().slice(11, 19)}  ${e2e ? `${f2(quantile(e2e, 0.99))}/${f2(e2e.max)}` : '-'} | ${f2(g?.stages?.['sendLag']?.max ?? Number.NaN)} | ${f2(g?.loop?.max ?? Number.NaN)} | ${f2(m?.loop?.max ?? Number.NaN)} | ${f2(gcMax)} ${gcKind} | ${f2(w?.stages?.['writer.commit']?.max ?? Number.NaN)} | ${w?.stages?.['writer.checkpointTruncate'] ? f2(w.stages['writer.checkpointTruncate'].max) : '-'} | ${f2(w?.stages?.['writer.queueWait']?.max ?? Number.NaN)}`,
    );
  }
  return out.join('\n');
}

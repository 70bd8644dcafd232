/**
 * Latency tracing for benchmarks (bench/node TRACE=1), off unless MW_LATENCY_TRACE names a file.
 * Once a second the main thread appends one JSON line to that file: per-stage latency histograms
 * of the durable send path (sparse log buckets 2 % wide, in ms), its garbage-collection pauses and
 * its event-loop delay; the store's writer thread appends its own lines (commit and checkpoint
 * times, sqlite-writer.worker.js). bench/node/trace.ts merges the lines of a measured window.
 * Holds no message content, ids or addresses: only durations and counts.
 */
import { appendFileSync } from 'node:fs';
import { PerformanceObserver, monitorEventLoopDelay } from 'node:perf_hooks';
import type { IntervalHistogram } from 'node:perf_hooks';
import { constants } from 'node:perf_hooks';

const LOG_G = Math.log(1.02);

/** Bucket index of a duration in ms (bucket i covers 1.02^i … 1.02^(i+1) µs). */
const bucketOf = (ms: number): number => Math.max(0, Math.floor(Math.log(Math.max(1, ms * 1000)) / LOG_G));

class Sparse {
  readonly counts = new Map<number, number>();
  n = 0;
  max = 0;
  record(ms: number): void {
    const b = bucketOf(ms);
    this.counts.set(b, (this.counts.get(b) ?? 0) + 1);
    this.n++;
    if (ms > this.max) this.max = ms;
  }
  toJSON(): object {
    return { n: this.n, max: this.max, b: Object.fromEntries(this.counts) };
  }
}

/** Resolution (ms) of the event-loop delay monitors of a trace (the node's and bench/node's generator's). */
export const LOOP_RESOLUTION_MS = 1;

/**
 * p50 / p99 / max of an event-loop delay histogram, in ms beyond its sampling interval: the
 * histogram holds whole intervals between the monitor's timer callbacks (an idle loop reads ~1.1 ms
 * at a resolution of 1 ms), and only what exceeds the interval is delay.
 */
export function loopDelay(h: IntervalHistogram, resolutionMs = LOOP_RESOLUTION_MS): { p50: number; p99: number; max: number } {
  const ms = (ns: number): number => Math.max(0, ns / 1e6 - resolutionMs);
  return { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max) };
}

const GC_KIND: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

export class LatencyTrace {
  #stages = new Map<string, Sparse>();
  #gc = new Map<string, Sparse>();
  #loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });

  constructor(readonly file: string) {
    this.#loop.enable();
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const kind = GC_KIND[((e as unknown as { detail?: { kind?: number } }).detail)?.kind ?? -1] ?? 'other';
        let h = this.#gc.get(kind);
        if (!h) this.#gc.set(kind, (h = new Sparse()));
        h.record(e.duration);
      }
    });
    obs.observe({ entryTypes: ['gc'] });
    setInterval(() => this.#dump(), 1000).unref();
  }

  /** Records one duration (ms) of a named stage. */
  stage(name: string, ms: number): void {
    let h = this.#stages.get(name);
    if (!h) this.#stages.set(name, (h = new Sparse()));
    h.record(ms);
  }

  #dump(): void {
    const line = {
      t: Date.now(),
      src: 'main',
      stages: Object.fromEntries([...this.#stages].map(([k, v]) => [k, v.toJSON()])),
      gc: Object.fromEntries([...this.#gc].map(([k, v]) => [k, v.toJSON()])),
      loop: loopDelay(this.#loop),
    };
    this.#stages = new Map();
    this.#gc = new Map();
    this.#loop.reset();
    try {
      appendFileSync(this.file, `${JSON.stringify(line)}\n`);
    } catch {
      /* tracing is best effort */
    }
  }
}

const file = process.env['MW_LATENCY_TRACE'];
/** The process's tracer, or undefined (the default: no cost beyond one check per call site). */
export const trace: LatencyTrace | undefined = file ? new LatencyTrace(file) : undefined;

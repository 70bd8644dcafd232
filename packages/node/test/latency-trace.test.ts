// The latency trace's event-loop delay: monitorEventLoopDelay records whole intervals between its
// timer callbacks, so an idle loop would read as delayed by the sampling interval itself.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { IntervalHistogram } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { loopDelay } from '../src/latency-trace.js';

const fake = (p50: number, p99: number, max: number): IntervalHistogram =>
  ({ percentile: (q: number) => (q === 50 ? p50 : p99) * 1e6, max: max * 1e6 }) as unknown as IntervalHistogram;

describe('loopDelay', () => {
  it('reports what exceeds the sampling interval, never below zero', () => {
    expect(loopDelay(fake(1.25, 3.5, 9), 1)).toEqual({ p50: 0.25, p99: 2.5, max: 8 });
    expect(loopDelay(fake(4.1, 5.2, 7), 5)).toEqual({ p50: 0, p99: expect.closeTo(0.2, 9), max: 2 });
  });

  it('a loop blocked for 30 ms shows a delay of about 30 ms, not 30 + the interval', async () => {
    const h = monitorEventLoopDelay({ resolution: 5 });
    h.enable();
    await new Promise((r) => setTimeout(r, 20));
    const until = performance.now() + 30;
    while (performance.now() < until) {
      /* block the loop */
    }
    await new Promise((r) => setTimeout(r, 20));
    h.disable();
    const d = loopDelay(h, 5);
    expect(d.max).toBeGreaterThanOrEqual(25);
    expect(d.max).toBeCloseTo(h.max / 1e6 - 5, 9);
  });
});

// The node process turns off V8's parallel scavenging and allocation-site pretenuring and fixes the
// old generation's growing factor at start (src/v8-flags.ts). This checks that each setting really
// takes effect at run time in this Node (V8's trace lines show it) and that an operator's explicit
// choice wins.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { V8_FLAGS, applyV8Flags } from '../src/v8-flags.js';

/** Runs `body` in a child Node with `traceFlag`, after setting V8_FLAGS at run time as applyV8Flags does (or not); its stdout + stderr. */
function child(traceFlag: string, apply: boolean, body: string): string {
  const script = `
    const { setFlagsFromString } = await import('node:v8');
    if (${apply}) for (const f of ${JSON.stringify(V8_FLAGS)}) setFlagsFromString(f);
    ${body}`;
  const r = spawnSync(process.execPath, [traceFlag, '--input-type=module', '-e', script], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout + r.stderr;
}

/** `background.scavenge.parallel` of each scavenge in a child that allocates, with or without V8_FLAGS. */
function helperTimes(apply: boolean): number[] {
  const out = child('--trace-gc-nvp', apply, `
    let keep = [];
    for (let i = 0; i < 3e6; i++) { keep.push({ a: i, b: [i] }); if (keep.length > 200000) keep = []; }`);
  return [...out.matchAll(/gc=s .*?background\.scavenge\.parallel=([\d.]+)/g)].map((m) => Number(m[1]));
}

describe('V8 flags of the node process', () => {
  it('turns parallel scavenging off at run time: no helper-thread time in any scavenge', () => {
    const without = helperTimes(false);
    const with_ = helperTimes(true);
    expect(without.length).toBeGreaterThan(3);
    expect(with_.length).toBeGreaterThan(3);
    expect(without.some((t) => t > 0)).toBe(true); // the measure can see helper work
    expect(with_.every((t) => t === 0)).toBe(true);
  });

  it('turns allocation-site pretenuring off at run time: V8 makes no pretenuring decision', () => {
    // Every object survives, so with pretenuring V8 soon decides to allocate the site's objects
    // straight into the old generation ("… => tenure" in --trace-pretenuring-statistics); with the
    // flag applied at run time it collects no allocation-site statistics and decides nothing. (This
    // test used to compare the bytes scavenges promoted, 170–210 MB without pretenuring against
    // ~72 MB with it; on a loaded machine V8 once tenured late and promoted 313 MB with it.)
    const decisions = (apply: boolean): { tenure: number; lines: number } => {
      const out = child('--trace-pretenuring-statistics', apply, `
        function make(i) { return { a: i, b: { c: i } }; }
        const keep = [];
        for (let i = 0; i < 2e6; i++) keep.push(make(i));`);
      return { tenure: out.match(/pretenuring: AllocationSite.*=> tenure\b/g)?.length ?? 0, lines: out.match(/pretenuring:/g)?.length ?? 0 };
    };
    expect(decisions(false).tenure).toBeGreaterThan(0); // the trace can see a decision
    expect(decisions(true)).toEqual({ tenure: 0, lines: 0 });
  });

  it('fixes the old generation growing factor at 2 at run time', () => {
    // --trace-gc-verbose prints the factor of each new old-generation limit; this program, left to
    // V8, gets its dynamic factor (4.0 here: it fills the old generation fast).
    const factors = (apply: boolean): string[] => {
      const out = child('--trace-gc-verbose', apply, `
        const live = []; for (let i = 0; i < 3e5; i++) live.push({ a: i, b: [i] });
        let keep = [];
        for (let i = 0; i < 2e6; i++) { keep.push({ a: i }); if (keep.length > 50000) keep = []; }`);
      return [...out.matchAll(/\[HeapController\] Limit: .*\(([\d.]+)\)/g)].map((m) => m[1]!);
    };
    const dynamic = factors(false);
    const fixed = factors(true);
    expect(dynamic.length).toBeGreaterThan(0);
    expect(dynamic.some((f) => f !== '2.0')).toBe(true); // the trace can tell the two apart
    expect(fixed.length).toBeGreaterThan(0);
    expect(new Set(fixed)).toEqual(new Set(['2.0']));
  });

  it('leaves a setting alone when the command line or NODE_OPTIONS names it', () => {
    expect(applyV8Flags(['--parallel-scavenge', '--allocation-site-pretenuring', '--heap-growing-percent=0'], '')).toEqual([]);
    expect(applyV8Flags([], '--max-old-space-size=512 --no-parallel_scavenge --no-allocation_site_pretenuring --heap_growing_percent=50')).toEqual([]);
    expect(applyV8Flags(['--parallel-scavenge'], '')).toEqual(['--no-allocation-site-pretenuring', '--heap-growing-percent=100']);
  });
});

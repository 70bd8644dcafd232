/**
 * V8 settings the node process applies to itself at start (bin.ts), before it serves anything.
 *
 * `--no-parallel-scavenge`: a minor GC (scavenge) normally copies the surviving young objects with
 * helper threads. On the machines a node runs on — a few cores, already busy with the store writer
 * thread and the clients — the main thread then waits for helpers that are not scheduled: in
 * bench/node on 2 cores the scavenge pauses at 10,000 msgs/s were p50 5.6 / p99 13.5 ms with
 * helpers and 3.4 / 6.3 ms without, and CPU per delivered message fell (docs/benchmarks.md). The
 * flag takes effect at run time (Node keeps V8's flags writable).
 *
 * `--no-allocation-site-pretenuring`: V8 starts allocating the objects of a code site straight into
 * the old generation once most of them are seen to survive a scavenge. The node's send path has
 * such sites at moments (envelopes waiting for their group commit); pretenured, their objects die in
 * the old generation, where only a full mark-compact frees them, and until then they keep alive the
 * young objects they point to, which get copied and promoted in turn. In bench/node at 10,000
 * msgs/s: scavenges copied ~3.3 MB each (5–7 ms pauses) with pretenuring and ~0.6 MB (2–3 ms)
 * without, and the p99 of eight 8-second windows fell from a median of 48 to 29 ms
 * (docs/benchmarks.md).
 *
 * `--heap-growing-percent=100`: after each full (mark-compact) GC, V8 sets the old generation's
 * next limit at its live size times a factor it derives from how fast the program fills the old
 * generation relative to how fast V8 marks it, aiming at 3 % of the time spent marking. A node at
 * a steady 10,000 msgs/s promotes little (~1–2 MB/s) against a marker that does ~1 MB per ms, so
 * V8 chose its floor, 1.1: with ~40 MB live, marking restarted after ~4 MB of growth and a
 * mark-compact pause (4–12 ms, mostly evacuating the young generation) came every 0.8–1.7 s, one
 * continuous marking cycle after another. With a fixed factor of 2 the old generation may grow by
 * its live size first: in bench/node at 10,000 msgs/s, 1 mark-compact per 10-s window instead of
 * 9–13, and a p99 about half as large (docs/benchmarks.md, thirteenth session). The cost: the old
 * generation may reach twice its live size before it is collected (memory), and under saturation,
 * where V8 would choose a factor near its ceiling of 4, full GCs come 2–2.5× as often (8–10
 * instead of 4 in 10 s, throughput unchanged within run-to-run spread).
 *
 * An operator who wants a default back names it in NODE_OPTIONS or on the command line
 * (`--parallel-scavenge`, `--allocation-site-pretenuring`, `--heap-growing-percent=0` for V8's
 * dynamic factor): an explicit choice wins.
 */
import { setFlagsFromString } from 'node:v8';

export const V8_FLAGS = ['--no-parallel-scavenge', '--no-allocation-site-pretenuring', '--heap-growing-percent=100'] as const;

/** A V8 flag's name without `--`, `no-` and `=value`, with `-` for `_` (V8 accepts both). */
const flagName = (flag: string): string => flag.replace(/^--(no-)?/, '').replaceAll('_', '-').split('=')[0]!;

/** Applies V8_FLAGS unless the command line or NODE_OPTIONS names the same setting; returns what was applied. */
export function applyV8Flags(execArgv: readonly string[] = process.execArgv, nodeOptions: string = process.env['NODE_OPTIONS'] ?? ''): string[] {
  const given = [...execArgv, ...nodeOptions.split(/\s+/)];
  const applied: string[] = [];
  for (const flag of V8_FLAGS) {
    const name = flagName(flag);
    if (given.some((g) => flagName(g) === name)) continue;
    setFlagsFromString(flag);
    applied.push(flag);
  }
  return applied;
}

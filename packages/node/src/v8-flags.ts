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
 * An operator who wants a default back names it in NODE_OPTIONS or on the command line
 * (`--parallel-scavenge`, `--allocation-site-pretenuring`): an explicit choice wins.
 */
import { setFlagsFromString } from 'node:v8';

export const V8_FLAGS = ['--no-parallel-scavenge', '--no-allocation-site-pretenuring'] as const;

/** Applies V8_FLAGS unless the command line or NODE_OPTIONS names the same setting; returns what was applied. */
export function applyV8Flags(execArgv: readonly string[] = process.execArgv, nodeOptions: string = process.env['NODE_OPTIONS'] ?? ''): string[] {
  const given = [...execArgv, ...nodeOptions.split(/\s+/)];
  const applied: string[] = [];
  for (const flag of V8_FLAGS) {
    const name = flag.replace(/^--(no-)?/, '').replaceAll('_', '-');
    if (given.some((g) => g.replace(/^--(no-)?/, '').replaceAll('_', '-').split('=')[0] === name)) continue;
    setFlagsFromString(flag);
    applied.push(flag);
  }
  return applied;
}

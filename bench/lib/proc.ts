/**
 * Per-process CPU time from /proc (Linux), for benchmarks that report CPU cost per message on a
 * machine that may be busy with other work: CPU seconds of a process are its own, whatever else runs.
 */
import { readFileSync, readdirSync } from 'node:fs';

const CLK_TCK = 100;

/** utime + stime of a process (all its threads), in seconds; 0 if it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** Direct children of `ppid` (e.g. a PostgreSQL postmaster's backends and helpers). */
export function childPids(ppid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === ppid) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** CPU seconds of a process and its direct children, per pid (compare two snapshots with `cpuDelta`). */
export function treeCpu(pid: number): Map<number, number> {
  const m = new Map<number, number>([[pid, cpuSeconds(pid)]]);
  for (const c of childPids(pid)) m.set(c, cpuSeconds(c));
  return m;
}

/** CPU seconds spent between two `treeCpu` snapshots (a child that appeared counts from 0). */
export function cpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let s = 0;
  for (const [pid, t] of after) s += t - (before.get(pid) ?? 0);
  return s;
}

/** The 1, 5 and 15 minute load averages. */
export function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' / ');
}

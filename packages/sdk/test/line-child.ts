/**
 * A child process for the crash tests: runs a bundled script with Node, reads its stdout as one JSON
 * object per line, and lets the test wait for a line, write to its stdin and SIGKILL it.
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';

export type Line = Record<string, unknown>;

export interface LineChild {
  proc: ChildProcess;
  /** Writes one line to the child's stdin. */
  tell(line: string): void;
  lines: Line[];
  /** Resolves when a line satisfies `pred` (one already read counts); rejects on timeout or exit. */
  until(pred: (line: Line) => boolean, timeoutMs?: number): Promise<Line>;
  /** Resolves with the exit code once the child closed ('close', not 'exit': every line was read). */
  exited: Promise<number | null>;
}

export interface LineChildOptions {
  env?: NodeJS.ProcessEnv;
  /** The default of `until`'s timeout. */
  timeoutMs: number;
  /** Extra context for a timeout's message (e.g. the node's log tail). */
  context?: () => string;
}

export function spawnLineChild(script: string, args: string[], opts: LineChildOptions): LineChild {
  const proc = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'inherit'], env: opts.env ?? process.env });
  const lines: Line[] = [];
  const waiters: { pred: (l: Line) => boolean; resolve: (l: Line) => void }[] = [];
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, nl)) as Line;
      buf = buf.slice(nl + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (!w.pred(line)) continue;
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  const exited = new Promise<number | null>((r) => proc.once('close', (code) => r(code)));
  return {
    proc,
    tell: (line) => void proc.stdin!.write(`${line}\n`),
    lines,
    exited,
    until(pred, timeoutMs = opts.timeoutMs) {
      const hit = lines.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const context = opts.context ? `; ${opts.context()}` : '';
        const timer = setTimeout(() => reject(new Error(`child: no matching line within ${timeoutMs} ms (got ${lines.length} lines, last: ${JSON.stringify(lines.slice(-3))})${context}`)), timeoutMs);
        waiters.push({ pred, resolve: (l) => (clearTimeout(timer), resolve(l)) });
        void exited.then((code) => reject(new Error(`child exited (${code}) before a matching line; last lines: ${JSON.stringify(lines.slice(-3))}`)));
      });
    },
  };
}

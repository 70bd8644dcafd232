/**
 * Runs packages/node/src/bin.ts under tsx as a separate process for a benchmark: waits for its
 * "listening" log line, keeps the first lines of stderr and of warnings for error messages.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

export interface NodeProcess {
  child: ChildProcess;
  port: number;
  /** The node's Prometheus endpoint, from its start line ('' when metrics are off). */
  metricsUrl: string;
  /** First 50 stderr lines and warning-level log lines. */
  stderr: string[];
  /** Log lines at level warn or above. */
  warnings: number;
  /** Called with every stderr line of the node (and of its WORKERS processes, which share it). */
  stderrListeners: Set<(line: string) => void>;
}

export async function spawnNode(options: { bin: string; cwd: string; env: Record<string, string>; nodeArgs?: string[]; tsconfig: string }): Promise<NodeProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...(options.nodeArgs ?? []), options.bin], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env, TSX_TSCONFIG_PATH: options.tsconfig },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run: NodeProcess = { child, port: 0, metricsUrl: '', stderr: [], warnings: 0, stderrListeners: new Set() };
  createInterface({ input: child.stderr! }).on('line', (l) => {
    if (run.stderr.length < 50) run.stderr.push(l);
    for (const f of run.stderrListeners) f(l);
  });
  run.port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL'); // never leave a half-started node running behind a failed benchmark
      reject(new Error(`node did not start within 60 s: ${run.stderr.join('\n')}`));
    }, 60_000);
    child.once('exit', (code) => reject(new Error(`node exited (${code}): ${run.stderr.join('\n')}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const j = JSON.parse(line) as { msg?: string; listen?: string; level?: number; metrics?: string };
        if (j.msg === 'MeshWhisper node listening' && j.listen) {
          clearTimeout(t);
          if (j.metrics?.startsWith('http')) run.metricsUrl = j.metrics;
          resolve(Number(new URL(j.listen).port));
        } else if ((j.level ?? 0) >= 40) {
          run.warnings++;
          if (run.stderr.length < 50) run.stderr.push(line);
        }
      } catch {
        // not JSON (e.g. V8's --trace-gc lines): kept in NODE_STDOUT_FILE when set
        if (process.env['NODE_STDOUT_FILE']) appendFileSync(process.env['NODE_STDOUT_FILE'], line + '\n');
      }
    });
  });
  return run;
}

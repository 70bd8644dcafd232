// A multi-process SQLite node for tests: the built `meshwhisper-node` (buildNodeDist() first) run
// with WORKERS=N as operators run it — a primary process and N worker processes sharing one real
// listener on 127.0.0.1 and one SQLite file in a fresh DATA_DIR.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { nodeBin } from '../build-dist.js';
import { generousLimits } from '../helpers.js';

export interface WorkersNode {
  readonly port: number;
  readonly url: string;
  readonly dataDir: string;
  readonly primary: ChildProcess;
  /** Worker index → pid of the worker process now serving (updated when a replacement listens). */
  readonly workerPids: Map<number, number>;
  /** Every JSON log line of the primary and the workers, parsed. */
  readonly logs: Record<string, unknown>[];
  /** The same lines as text (with anything else they printed on stdout). */
  readonly lines: string[];
  /** The first 50 lines the processes printed on stderr. */
  readonly stderr: string[];
  /** Resolves once `n` more worker "listening" lines than now were logged. */
  waitListening(n: number, timeoutMs?: number): Promise<void>;
  /** SIGTERM to the primary; resolves with its exit code. */
  stop(): Promise<number | null>;
  /** Stops (if still running) and removes DATA_DIR unless `keepDataDir`. */
  close(): Promise<void>;
}

export interface WorkersNodeOptions {
  readonly workers?: number;
  readonly env?: Record<string, string>;
  /** Reuse a data directory (restart after a crash); default a fresh one, removed on close. */
  readonly dataDir?: string;
  readonly keepDataDir?: boolean;
}

export async function startWorkersNode(options: WorkersNodeOptions = {}): Promise<WorkersNode> {
  const workers = options.workers ?? 2;
  const work = options.dataDir === undefined ? mkdtempSync(join(tmpdir(), 'mw-workers-')) : undefined;
  const dataDir = options.dataDir ?? join(work!, 'node');
  const env: Record<string, string> = {
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    METRICS_PORT: 'off',
    LOG_LEVEL: 'info',
    WEB_APP: 'off',
    RATE_LIMITS: generousLimits(),
    USERNAME_NAMESPACES: 'test:signed',
    SHUTDOWN_GRACE_SECONDS: '1',
    ...options.env,
    WORKERS: String(workers),
  };
  const primary = spawn(process.execPath, [nodeBin], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  createInterface({ input: primary.stderr! }).on('line', (l) => stderr.length < 50 && stderr.push(l));
  const logs: Record<string, unknown>[] = [];
  const lines: string[] = [];
  const workerPids = new Map<number, number>();
  let listening = 0;
  let port = 0;
  const waiters: (() => void)[] = [];
  createInterface({ input: primary.stdout! }).on('line', (line) => {
    lines.push(`${line}\n`);
    let j: Record<string, unknown>;
    try {
      j = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    logs.push(j);
    if (j.msg === 'MeshWhisper node listening' && typeof j.listen === 'string') {
      port = Number(new URL(j.listen).port);
      if (typeof j.worker === 'number' && typeof j.pid === 'number') workerPids.set(j.worker, j.pid);
      listening++;
      for (const w of waiters.splice(0)) w();
    }
  });
  const exited = new Promise<number | null>((resolve) => primary.once('exit', (code) => resolve(code)));
  const waitListening = async (n: number, timeoutMs = 60_000): Promise<void> => {
    const target = listening + n;
    const deadline = Date.now() + timeoutMs;
    while (listening < target) {
      if (primary.exitCode !== null) throw new Error(`node exited (${primary.exitCode}): ${stderr.join('\n')}`);
      if (Date.now() > deadline) throw new Error(`workers did not listen within ${timeoutMs} ms: ${stderr.join('\n')}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200);
        waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  };
  try {
    await waitListening(workers);
  } catch (e) {
    primary.kill('SIGKILL');
    if (work) rmSync(work, { recursive: true, force: true });
    throw e;
  }
  const stop = async (): Promise<number | null> => {
    if (primary.exitCode === null && primary.signalCode === null) primary.kill('SIGTERM');
    return exited;
  };
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    dataDir,
    primary,
    workerPids,
    logs,
    lines,
    stderr,
    waitListening,
    stop,
    async close() {
      await stop();
      if (work && !options.keepDataDir) rmSync(work, { recursive: true, force: true });
    },
  };
}

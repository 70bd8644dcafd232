// What an operator sees when `meshwhisper-node` starts (the built binary, as operators run it):
// a port conflict names the listener and the setting that chose it, an unknown LOG_LEVEL lists
// the valid ones, and a successful start prints one human line on where the node listens.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildNodeDist, nodeBin, repoRoot } from './build-dist.js';

const dirs: string[] = [];
const servers: Server[] = [];
beforeAll(() => buildNodeDist(), 300_000);
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  for (const s of servers) s.close();
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'mw-start-'));
  dirs.push(d);
  return d;
}

/** A port held by another listener on 127.0.0.1. */
async function takenPort(): Promise<number> {
  const s = createServer();
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the node; resolves when it exits, or when `until(stdout, stderr)` holds (then it is stopped with SIGTERM). */
function run(env: Record<string, string>, until?: (out: string, err: string) => boolean): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [nodeBin], {
      cwd: repoRoot,
      env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', METRICS_PORT: 'off', BACKUP_INTERVAL_HOURS: '0', DATA_DIR: tempDir(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let stopping = false;
    const check = (): void => {
      if (!stopping && until?.(stdout, stderr)) {
        stopping = true;
        p.kill('SIGTERM');
      }
    };
    p.stdout.on('data', (d: Buffer) => ((stdout += d.toString()), check()));
    p.stderr.on('data', (d: Buffer) => ((stderr += d.toString()), check()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('meshwhisper-node start-up messages', () => {
  it('METRICS_PORT taken: the error names the metrics listener, its address and the setting', async () => {
    const port = await takenPort();
    const r = await run({ METRICS_HOST: '127.0.0.1', METRICS_PORT: String(port) });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`metrics listener cannot listen on 127.0.0.1:${port}`);
    expect(r.stderr).toContain('METRICS_PORT');
    expect(r.stderr).toContain('already in use');
    expect(r.stderr).not.toMatch(/main listener/);
  }, 60_000);

  it('PORT taken: the error names the main listener and PORT', async () => {
    const port = await takenPort();
    const r = await run({ PORT: String(port) });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`main listener cannot listen on 127.0.0.1:${port}`);
    expect(r.stderr).toMatch(/\bPORT\b/);
    expect(r.stderr).not.toContain('METRICS_PORT');
  }, 60_000);

  it('an unknown LOG_LEVEL lists the valid ones', async () => {
    const r = await run({ LOG_LEVEL: 'verbose' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('configuration error: LOG_LEVEL');
    expect(r.stderr).toContain('"verbose"');
    for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) expect(r.stderr).toContain(level);
  }, 60_000);

  it('says in one human line (stderr; stdout stays JSON lines) where it listens and what to do next', async () => {
    const r = await run({ HOST: '0.0.0.0' }, (_out, err) => err.includes('\n'));
    const lines = r.stderr.trim().split('\n');
    const line = lines[0]!;
    expect(line).toMatch(/^MeshWhisper node listening on http:\/\/0\.0\.0\.0:\d+ \(all interfaces\)/);
    expect(line).toContain('/health');
    expect(line).toContain('meshwhisper doctor');
    for (const l of r.stdout.trim().split('\n')) expect(() => JSON.parse(l) as unknown).not.toThrow();
    expect(r.stdout).toContain('MeshWhisper node listening');

    const local = await run({}, (_out, err) => err.includes('\n'));
    expect(local.stderr.split('\n')[0]).toMatch(/^MeshWhisper node listening on http:\/\/127\.0\.0\.1:\d+ \(this machine only/);
  }, 60_000);
});

/**
 * Private PostgreSQL and NATS servers for the cluster benchmark, so that their CPU time, WAL volume
 * and message counts belong to the benchmark alone (the machine's shared servers also serve other
 * people's tests). PostgreSQL: initdb into a temporary directory, run as the `postgres` user, trust
 * auth, loopback only, every setting at its default (synchronous_commit on, fsync on). NATS:
 * JetStream on, with its monitoring port for /varz counters.
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from './util.js';

export const PG_BIN = process.env['MW_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';
export const NATS_SERVER_BIN = process.env['MW_NATS_SERVER'] ?? '/usr/sbin/nats-server';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export interface PrivatePg {
  readonly url: string;
  /** The postmaster's pid: its children are every backend and helper (walwriter, checkpointer…). */
  readonly pid: number;
  close(): void;
}

/** Whether a private PostgreSQL can be started here (binaries present, running as root for runuser). */
export function canStartPrivatePg(): boolean {
  return existsSync(join(PG_BIN, 'initdb')) && process.getuid?.() === 0;
}

export async function startPrivatePg(): Promise<PrivatePg> {
  const dir = mkdtempSync(join(tmpdir(), 'mw-bench-pg-'));
  execFileSync('chown', ['postgres', dir]);
  const data = join(dir, 'data');
  const port = await freePort();
  execFileSync('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'initdb'), '-D', data, '-A', 'trust', '-U', 'postgres'], { stdio: 'ignore' });
  const ctl = (...args: string[]): void => void execFileSync('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'pg_ctl'), '-D', data, ...args], { stdio: 'ignore' });
  ctl('-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`, '-l', join(dir, 'log'), '-w', 'start');
  const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    pid,
    close() {
      try {
        ctl('-m', 'fast', '-w', 'stop');
      } catch {
        /* already stopped */
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface PrivateNats {
  readonly url: string;
  readonly pid: number;
  /** in_msgs, out_msgs, in_bytes, out_bytes from the monitoring endpoint. */
  varz(): Promise<{ in_msgs: number; out_msgs: number; in_bytes: number; out_bytes: number }>;
  close(): void;
}

export async function startPrivateNats(): Promise<PrivateNats> {
  const dir = mkdtempSync(join(tmpdir(), 'mw-bench-nats-'));
  const [port, mport] = [await freePort(), await freePort()];
  const child: ChildProcess = spawn(NATS_SERVER_BIN, ['-a', '127.0.0.1', '-p', String(port), '-m', String(mport), '-js', '-sd', dir], { stdio: 'ignore' });
  const varz = async (): Promise<{ in_msgs: number; out_msgs: number; in_bytes: number; out_bytes: number }> => (await (await fetch(`http://127.0.0.1:${mport}/varz`)).json()) as never;
  for (let i = 0; ; i++) {
    try {
      await varz();
      break;
    } catch (e) {
      if (i > 100) throw e;
      await sleep(100);
    }
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    pid: child.pid!,
    varz,
    close() {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

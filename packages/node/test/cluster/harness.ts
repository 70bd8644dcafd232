// A cluster on this machine for tests: N node instances in this process, each on its own real
// listener on 127.0.0.1, sharing one DATA_DIR (node key, blobs), one fresh PostgreSQL schema and
// one NATS subject prefix (the machine's NATS, or a private nats-server the test starts and stops).
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { loadConfig } from '../../src/config.js';
import { createNode } from '../../src/node.js';
import type { CreateNodeOptions, MeshWhisperNode } from '../../src/node.js';
import { nodeBin } from '../build-dist.js';
import { generousLimits } from '../helpers.js';
import { PG_TEST_URL, dropSchema, freshSchema } from '../store/pg-test-db.js';

export const MACHINE_NATS_URL = process.env.MW_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
export const NATS_SERVER_BIN = process.env.MW_NATS_SERVER ?? '/usr/sbin/nats-server';

export interface Instance {
  readonly node: MeshWhisperNode;
  readonly port: number;
  readonly url: string;
  readonly logs: string[];
}

export interface TestCluster {
  readonly instances: Instance[];
  readonly schema: string;
  readonly prefix: string;
  readonly dataDir: string;
  readonly env: Record<string, string>;
  /** Starts one more instance on the same database, NATS and DATA_DIR. */
  add(): Promise<Instance>;
  /** Closes one instance (graceful). */
  stop(i: Instance): Promise<void>;
  close(): Promise<void>;
}

export interface ClusterOptions {
  natsUrl?: string;
  env?: Record<string, string>;
  /** createNode's options for every instance (e.g. `push`). */
  nodeOptions?: CreateNodeOptions;
  /** Every instance's log lines also go here (in arrival order). */
  logs?: string[];
}

export async function startCluster(n: number, options: ClusterOptions = {}): Promise<TestCluster> {
  const schema = await freshSchema();
  const prefix = `mwt${randomBytes(5).toString('hex')}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'mw-cluster-'));
  const env: Record<string, string> = {
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    METRICS_PORT: 'off',
    LOG_LEVEL: 'info',
    RATE_LIMITS: generousLimits(),
    USERNAME_NAMESPACES: 'test:signed',
    STORE: 'postgres',
    DATABASE_URL: PG_TEST_URL,
    DATABASE_SCHEMA: schema,
    DATABASE_POOL_SIZE: '4',
    NATS_URL: options.natsUrl ?? MACHINE_NATS_URL,
    NATS_SUBJECT_PREFIX: prefix,
    PUSH_COALESCE_MS: '2000',
    ...options.env,
  };
  const instances: Instance[] = [];
  const add = async (): Promise<Instance> => {
    const logs: string[] = [];
    const node = await createNode(loadConfig(env), {
      metrics: false,
      ...options.nodeOptions,
      logStream: new Writable({
        write(chunk: Buffer, _e, cb) {
          logs.push(chunk.toString());
          options.logs?.push(chunk.toString());
          cb();
        },
      }),
    });
    const { port } = await node.listen();
    const inst = { node, port, url: `http://127.0.0.1:${port}`, logs };
    instances.push(inst);
    return inst;
  };
  try {
    await Promise.all(Array.from({ length: n }, () => add()));
  } catch (e) {
    for (const i of instances) await i.node.close().catch(() => undefined);
    await dropSchema(schema);
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  const stopped = new Set<Instance>();
  return {
    instances,
    schema,
    prefix,
    dataDir,
    env,
    add,
    async stop(i) {
      stopped.add(i);
      await i.node.close();
    },
    async close() {
      for (const i of instances) if (!stopped.has(i)) await i.node.close().catch(() => undefined);
      await dropSchema(schema);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** An instance as its own process (the built node, `buildNodeDist()` first), which a test may SIGKILL. */
export interface ProcessInstance {
  readonly port: number;
  readonly url: string;
  readonly proc: ChildProcess;
  /** kill -9, and waits for the exit. */
  kill(): Promise<void>;
}

/** Starts the built node with exactly `env` (plus PATH etc.); resolves once it listens. */
export function startInstanceProcess(env: Record<string, string>): Promise<ProcessInstance> {
  const p = spawn(process.execPath, [nodeBin], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: p.stdout! });
  return new Promise((resolve, reject) => {
    p.once('exit', (code) => reject(new Error(`instance exited early (${code})`)));
    lines.on('line', (line) => {
      try {
        const j = JSON.parse(line) as { msg?: string; listen?: string };
        if (j.msg === 'MeshWhisper node listening' && j.listen) {
          const port = Number(new URL(j.listen).port);
          resolve({
            port,
            url: `http://127.0.0.1:${port}`,
            proc: p,
            async kill() {
              if (p.exitCode !== null || p.signalCode !== null) return;
              const exited = new Promise((r) => p.once('exit', r));
              p.kill('SIGKILL');
              await exited;
            },
          });
        }
      } catch {
        /* not JSON */
      }
    });
  });
}

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

async function waitPort(port: number, up: boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const c = tcpConnect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (open === up) return;
    if (Date.now() > deadline) throw new Error(`port ${port} still ${open ? 'open' : 'closed'}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A private nats-server (JetStream on) on a free loopback port, which a test may kill and restart. */
export class PrivateNats {
  #proc: ChildProcess | undefined;
  readonly #dir = mkdtempSync(join(tmpdir(), 'mw-nats-'));
  private constructor(readonly port: number) {}

  static async start(): Promise<PrivateNats> {
    const n = new PrivateNats(await freePort());
    await n.restart();
    return n;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async restart(): Promise<void> {
    this.#proc = spawn(NATS_SERVER_BIN, ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.#dir], { stdio: 'ignore' });
    await waitPort(this.port, true);
  }

  /** SIGKILL: no goodbye to the clients. */
  async kill(): Promise<void> {
    const p = this.#proc;
    this.#proc = undefined;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
    await waitPort(this.port, false);
  }

  async close(): Promise<void> {
    await this.kill();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

export const PG_BIN = process.env.MW_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/**
 * A private PostgreSQL server (initdb into a temporary directory, run as the postgres user, trust
 * auth, loopback only) that a test may stop hard and start again — never the machine's shared one.
 */
export class PrivatePostgres {
  readonly #dir: string;
  private constructor(
    readonly port: number,
    dir: string,
  ) {
    this.#dir = dir;
  }

  static async start(): Promise<PrivatePostgres> {
    const dir = mkdtempSync(join(tmpdir(), 'mw-pg-'));
    execFileSync('chown', ['postgres', dir]);
    const pg = new PrivatePostgres(await freePort(), dir);
    execFileSync('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'initdb'), '-D', join(dir, 'data'), '-A', 'trust', '-U', 'postgres'], { stdio: 'ignore' });
    await pg.restart();
    return pg;
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  #ctl(...args: string[]): void {
    execFileSync('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'pg_ctl'), '-D', join(this.#dir, 'data'), ...args], { stdio: 'ignore' });
  }

  async restart(): Promise<void> {
    this.#ctl('-o', `-p ${this.port} -k ${this.#dir} -c listen_addresses=127.0.0.1`, '-l', join(this.#dir, 'log'), '-w', 'start');
    await waitPort(this.port, true);
  }

  /** Immediate shutdown: connections cut, no checkpoint (crash recovery at the next start). */
  async stop(): Promise<void> {
    this.#ctl('-m', 'immediate', '-w', 'stop');
    await waitPort(this.port, false);
  }

  async close(): Promise<void> {
    try {
      this.#ctl('-m', 'immediate', '-w', 'stop');
    } catch {
      // already stopped
    }
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

#!/usr/bin/env node
/**
 * `meshwhisper-node [start]` runs the node; settings come from the environment
 * (docs/self-hosting.md). `meshwhisper-node backup …` makes, lists and restores database backups
 * (backup.ts, docs/backup-restore.md).
 */
import cluster from 'node:cluster';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBackupCli } from './backup.js';
import { CONFIG_SCHEMA, NodeConfigError, loadConfig } from './config.js';
import { DATABASE_FILE, createNode } from './node.js';
import { IpcDeliveryBus, processEndpoint } from './workers/ipc-bus.js';
import { runPrimary } from './workers/primary.js';
import { WORKER_ENV } from './workers/wire.js';
import { applyV8Flags } from './v8-flags.js';

const USAGE = `usage: meshwhisper-node [start | help]
       meshwhisper-node backup [--db FILE] [--dir DIR] [--keep N]
       meshwhisper-node backup list [--dir DIR]
       meshwhisper-node backup restore FILE [--db FILE] [--force]
       meshwhisper-node migrate-to-postgres

  start           run the node (default)
  backup          write an online backup of the database now (safe while the node runs) into
                  BACKUP_DIR and keep the newest BACKUP_RETENTION backups
  backup list     list the backups, newest first
  backup restore  restore FILE into DATA_DIR (stop the node first; --force moves an existing
                  database aside as <db>.pre-restore-<time>). See docs/backup-restore.md
  migrate-to-postgres
                  copy this stopped node's SQLite database (DATA_DIR) into the empty PostgreSQL
                  schema DATABASE_URL/DATABASE_SCHEMA, in one transaction (docs/scale-out.md)
  help            this text and the list of settings

Settings (environment variables):
${Object.values(CONFIG_SCHEMA)
  .map((s) => `  ${s.env.padEnd(28)} default ${JSON.stringify(s.default)}\n      ${s.description}`)
  .join('\n')}
`;

async function start(): Promise<void> {
  applyV8Flags(); // every process of the node (a WORKERS primary's workers run start() too)
  const config = loadConfig();
  const workerIndex = cluster.isWorker ? Number(process.env[WORKER_ENV.index]) : undefined;
  if (workerIndex === undefined && config.store === 'sqlite' && config.workers > 1) {
    // The primary of a multi-process node (docs/architecture.md §Process model): it forks the workers, which run start() below.
    return runPrimary(config, { databaseFile: join(config.dataDir, DATABASE_FILE), binFile: fileURLToPath(import.meta.url), log: primaryLog });
  }
  const worker = workerIndex !== undefined && Number.isInteger(workerIndex) ? { index: workerIndex, bus: new IpcDeliveryBus(processEndpoint()) } : undefined;
  const node = await createNode(config, worker ? { worker } : {});
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    node.app.log.info({ signal }, 'shutting down');
    node.close().then(
      () => process.exit(0),
      (e: unknown) => {
        console.error('shutdown failed:', e instanceof Error ? e.message : e);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // A worker whose primary died (its IPC channel closed) stops too: nobody holds the DATA_DIR lock any more.
  if (worker) process.on('disconnect', () => stop('primary gone'));
  let address: AddressInfo;
  try {
    address = await node.listen();
  } catch (e) {
    await node.close();
    throw e;
  }
  // For the person at the terminal (once per node: worker 0 of several); stdout stays JSON lines for log collectors.
  if (!worker || worker.index === 0) process.stderr.write(`${startupLine(config.host, address.port)}${worker ? ` (${config.workers} worker processes)` : ''}\n`);
}

/** The primary's log lines, in the shape of the workers' (pino: level number, time, pid, msg). */
function primaryLog(level: 'info' | 'warn' | 'error', fields: Record<string, unknown>, msg: string): void {
  const n = level === 'info' ? 30 : level === 'warn' ? 40 : 50;
  process.stdout.write(`${JSON.stringify({ level: n, time: Date.now(), pid: process.pid, role: 'primary', ...fields, msg })}\n`);
}

/** One human line: where the node listens, and what to do next. */
function startupLine(host: string, port: number): string {
  const all = host === '0.0.0.0' || host === '::';
  const loopback = host === 'localhost' || host === '::1' || host.startsWith('127.');
  const url = (h: string): string => `http://${h.includes(':') ? `[${h}]` : h}:${port}`;
  const where = all ? '(all interfaces)' : loopback ? '(this machine only; HOST=0.0.0.0 serves other machines)' : `(interface ${host})`;
  const probe = url(all ? (host === '::' ? '::1' : '127.0.0.1') : host);
  return (
    `MeshWhisper node listening on ${url(host)} ${where}. ` +
    `Next: curl ${probe}/health should answer {"status":"ok"}; then put a TLS reverse proxy in front and check the whole path with meshwhisper doctor https://<your host> (docs/self-hosting.md).`
  );
}

async function main(argv: readonly string[]): Promise<void> {
  const [command = 'start'] = argv;
  switch (command) {
    case 'start':
      return start();
    case 'backup': {
      const config = loadConfig();
      process.exitCode = await runBackupCli(
        argv.slice(1),
        { databasePath: join(config.dataDir, DATABASE_FILE), backupDir: config.backupDir, retention: config.backupRetention },
        { out: (line) => process.stdout.write(`${line}\n`), err: (line) => process.stderr.write(`${line}\n`) },
      );
      return;
    }
    case 'migrate-to-postgres': {
      const config = loadConfig({ ...process.env, STORE: 'postgres' });
      const { migrateSqliteToPostgres } = await import('./store/sqlite-to-pg.js');
      const r = await migrateSqliteToPostgres({
        dataDir: config.dataDir,
        sqliteFile: join(config.dataDir, DATABASE_FILE),
        connectionString: config.databaseUrl,
        schema: config.databaseSchema,
        progress: (line) => process.stderr.write(`${line}\n`),
      });
      const total = Object.values(r.tables).reduce((a, b) => a + b, 0);
      process.stdout.write(`copied ${total} rows into schema ${config.databaseSchema}; now start the instances with STORE=postgres on this DATA_DIR (docs/scale-out.md)\n`);
      return;
    }
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return;
    default:
      console.error(`unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
      process.exitCode = 2;
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if (e instanceof NodeConfigError) console.error(`configuration error: ${e.message}`);
  else if ((e as { code?: string }).code === 'MW_WORKER_START_FAILED') console.error(`meshwhisper-node failed to start: ${(e as Error).message}`);
  else if (process.argv[2] === 'migrate-to-postgres') console.error(`migrate-to-postgres failed${(e as { code?: string }).code ? ` (${(e as { code?: string }).code})` : ''}:`, e instanceof Error ? e.message : e);
  else console.error('meshwhisper-node failed to start:', e instanceof Error ? e.message : e);
  process.exit(1);
});

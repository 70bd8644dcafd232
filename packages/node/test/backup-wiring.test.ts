// The backup module wired into the node: BACKUP_* settings, the node's own schedule (metrics,
// logs, shutdown order) and the built `meshwhisper-node backup` CLI run from a second process
// against a live node's DATA_DIR.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Database from 'better-sqlite3';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EnvelopeClass, SendRequestSchema, encodeBody } from '@meshwhisper/protocol';
import { listBackups } from '../src/backup.js';
import { loadConfig } from '../src/config.js';
import { DATABASE_FILE, createNode } from '../src/node.js';
import type { CreateNodeOptions, MeshWhisperNode } from '../src/node.js';
import { buildNodeDist, nodeBin as bin, repoRoot as root } from './build-dist.js';
import { TestDevice, generousLimits, proto } from './helpers.js';

const BACKUP_FILE = /^meshwhisper-\d{8}T\d{9}Z-[0-9a-f]{8}\.sqlite3$/;

const dirs: string[] = [];
const nodes: MeshWhisperNode[] = [];
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'mw-backup-wiring-'));
  dirs.push(d);
  return d;
}

interface Started {
  node: MeshWhisperNode;
  dataDir: string;
  logs: string[];
}

/** A node with metrics on (no listener) and captured logs. */
async function start(env: Record<string, string> = {}, options: CreateNodeOptions = {}, dataDir = tempDir()): Promise<Started> {
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info', METRICS_PORT: 'off', RATE_LIMITS: generousLimits(), ...env });
  const logs: string[] = [];
  const logStream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(chunk.toString());
      cb();
    },
  });
  const node = await createNode(config, { logStream, ...options });
  nodes.push(node);
  await node.app.ready();
  return { node, dataDir, logs };
}

async function close(node: MeshWhisperNode): Promise<void> {
  nodes.splice(nodes.indexOf(node), 1);
  await node.close();
}

function integrity(path: string): string {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.pragma('integrity_check', { simple: true }) as string;
  } finally {
    db.close();
  }
}

function countRows(path: string, sql: string, ...params: unknown[]): number {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare(sql).get(...params) as { n: number }).n;
  } finally {
    db.close();
  }
}

function backupNames(dir: string): string[] {
  try {
    return readdirSync(dir).filter((n) => BACKUP_FILE.test(n));
  } catch {
    return [];
  }
}

async function backupCount(node: MeshWhisperNode, result: 'success' | 'failure'): Promise<number> {
  const m = await node.services.metrics!.backups.get();
  return m.values.find((v) => v.labels.result === result)?.value ?? 0;
}

async function sendTo(node: MeshWhisperNode, mailbox: Uint8Array, i: number): Promise<void> {
  const res = await node.app.inject({
    method: 'POST',
    url: '/v1/send',
    headers: proto,
    payload: Buffer.from(encodeBody(SendRequestSchema, { mailboxId: mailbox, payload: new TextEncoder().encode(`m-${i}`), class: EnvelopeClass.DURABLE })),
  });
  if (res.statusCode !== 200) throw new Error(`send ${i}: ${res.statusCode} ${res.body}`);
}

/** Manually fired timer for the node's backup schedule. */
function manualTimer(): { fire(): void; armed: () => number; options: NonNullable<CreateNodeOptions['backupSchedule']> } {
  let pending: (() => void) | undefined;
  let armed = 0;
  return {
    fire() {
      const fn = pending;
      if (fn === undefined) throw new Error('backup timer not armed');
      pending = undefined;
      fn();
    },
    armed: () => armed,
    options: {
      intervalMs: 3_600_000,
      setTimer: (fn) => {
        armed++;
        pending = fn;
        return {};
      },
      clearTimer: () => {
        pending = undefined;
      },
    },
  };
}

describe('BACKUP_* settings', () => {
  it('default to DATA_DIR/backups, daily, 7 kept; a relative BACKUP_DIR is resolved against DATA_DIR', () => {
    const c = loadConfig({ DATA_DIR: '/srv/mw' });
    expect(c.backupDir).toBe('/srv/mw/backups');
    expect(c.backupIntervalMs).toBe(24 * 3600 * 1000);
    expect(c.backupRetention).toBe(7);
    expect(loadConfig({ DATA_DIR: '/srv/mw', BACKUP_DIR: 'snap' }).backupDir).toBe('/srv/mw/snap');
    expect(loadConfig({ DATA_DIR: '/srv/mw', BACKUP_DIR: '/mnt/other' }).backupDir).toBe('/mnt/other');
    expect(loadConfig({}).backupDir).toBe(join(process.cwd(), 'data', 'backups'));
    // A data directory given as an override (tests, embedding) moves the default along.
    expect(loadConfig({}, { dataDir: '/var/lib/mw' }).backupDir).toBe('/var/lib/mw/backups');
    expect(loadConfig({ BACKUP_INTERVAL_HOURS: '0', BACKUP_RETENTION: '30' })).toMatchObject({ backupIntervalMs: 0, backupRetention: 30 });
  });

  it('reject invalid values naming the variable', () => {
    expect(() => loadConfig({ BACKUP_INTERVAL_HOURS: '-1' })).toThrow(/BACKUP_INTERVAL_HOURS/);
    expect(() => loadConfig({ BACKUP_INTERVAL_HOURS: '1.5' })).toThrow(/BACKUP_INTERVAL_HOURS/);
    expect(() => loadConfig({ BACKUP_RETENTION: '0' })).toThrow(/BACKUP_RETENTION/);
    expect(() => loadConfig({ BACKUP_DIR: ' ' })).toThrow(/BACKUP_DIR/);
  });
});

describe('scheduled backups in the node', () => {
  it('a backup file appears while the node runs and serves; it passes integrity_check and holds the directory', async () => {
    const { node, dataDir, logs } = await start({}, { backupSchedule: { intervalMs: 1000 } });
    const device = new TestDevice();
    expect((await device.register(node)).statusCode).toBe(200);
    const dir = join(dataDir, 'backups');
    const deadline = Date.now() + 20_000;
    while (backupNames(dir).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const [name] = backupNames(dir);
    expect(name, 'no scheduled backup within 20 s').toBeDefined();
    const file = join(dir, name!);
    expect(integrity(file)).toBe('ok');
    expect(countRows(file, 'SELECT count(*) AS n FROM devices WHERE mailbox = ?', device.mailbox)).toBe(1);
    expect((await node.app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200);
    await expect.poll(() => backupCount(node, 'success')).toBeGreaterThanOrEqual(1);
    const line = logs.find((l) => l.includes('database backup written'));
    expect(line).toBeDefined();
    expect(line).toContain(name);
  }, 60_000);

  it('BACKUP_INTERVAL_HOURS=0 schedules nothing', async () => {
    const timer = manualTimer();
    await start({ BACKUP_INTERVAL_HOURS: '0' }, { backupSchedule: timer.options });
    expect(timer.armed()).toBe(0);
  });

  it('close() waits for a running backup before closing the database; metrics and logs record it', async () => {
    const timer = manualTimer();
    const { node, dataDir, logs } = await start({}, { backupSchedule: timer.options });
    const device = new TestDevice();
    expect((await device.register(node)).statusCode).toBe(200);
    for (let i = 0; i < 50; i++) await sendTo(node, device.mailbox, i);
    const dir = join(dataDir, 'backups');
    expect(timer.armed()).toBe(1);

    timer.fire(); // the backup starts…
    expect(backupNames(dir)).toEqual([]); // …and cannot have finished synchronously
    await close(node); // shutdown begins while it runs

    const names = backupNames(dir);
    expect(names).toHaveLength(1);
    expect(readdirSync(dir).filter((n) => n.endsWith('.partial'))).toEqual([]);
    const file = join(dir, names[0]!);
    expect(integrity(file)).toBe('ok');
    expect(countRows(file, 'SELECT count(*) AS n FROM messages WHERE mailbox = ?', device.mailbox)).toBe(50);
    expect(await backupCount(node, 'success')).toBe(1);
    expect(await backupCount(node, 'failure')).toBe(0);
    expect(logs.some((l) => l.includes('database backup written'))).toBe(true);
    expect(logs.some((l) => l.includes('failed'))).toBe(false);
    // Stopped: the schedule was not re-armed after the run.
    expect(timer.armed()).toBe(1);

    // A restart starts the last-success gauge from the newest backup on disk, not from 0.
    const again = await start({}, {}, dataDir);
    const [newest] = await listBackups(dir);
    const gauge = await again.node.services.metrics!.backupLastSuccess.get();
    expect(gauge.values[0]?.value).toBe(Math.floor(newest!.createdAt.getTime() / 1000));
  }, 60_000);

  it('a failed run is counted and logged with its error code only, and the node keeps serving', async () => {
    const timer = manualTimer();
    const dataDir = tempDir();
    writeFileSync(join(dataDir, 'not-a-directory'), 'x');
    const { node, logs } = await start({ BACKUP_DIR: 'not-a-directory' }, { backupSchedule: timer.options }, dataDir);
    timer.fire();
    await expect.poll(() => backupCount(node, 'failure')).toBe(1);
    expect(await backupCount(node, 'success')).toBe(0);
    const line = logs.find((l) => l.includes('database backup failed'));
    expect(line).toBeDefined();
    expect(JSON.parse(line!)).toMatchObject({ code: 'MW_BACKUP_FAILED' });
    expect(line).not.toContain('not-a-directory');
    expect(line).not.toContain(dataDir);
    expect((await node.app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200);
    await expect.poll(() => timer.armed()).toBe(2); // retried at the next tick
  });
});

describe('built CLI: meshwhisper-node backup against a running node', () => {
  // The CLI runs from dist/, as operators run it (`npm start` builds the same way).
  beforeAll(buildNodeDist, 180_000);

  function cli(dataDir: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const p = spawn(process.execPath, [bin, 'backup', ...args], { cwd: root, env: { ...process.env, DATA_DIR: dataDir }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  it('a second process backs up the live database while the node keeps writing; integrity_check ok; backup list shows it', async () => {
    const { node, dataDir } = await start({ BACKUP_INTERVAL_HOURS: '0', FIRST_CONTACT_MAX_MESSAGES: '100000' });
    const device = new TestDevice();
    expect((await device.register(node)).statusCode).toBe(200);
    const BEFORE = 300;
    for (let i = 0; i < BEFORE; i++) await sendTo(node, device.mailbox, i);

    // Keep the node writing through its own connection while the CLI copies from another process.
    let writing = true;
    let sent = BEFORE;
    const writer = (async () => {
      while (writing) await sendTo(node, device.mailbox, sent++);
    })();
    const made = await cli(dataDir, []);
    writing = false;
    await writer;

    expect(made.stderr).toBe('');
    expect(made.code).toBe(0);
    const m = /^backup written: (\S+) \((\d+) bytes, \d+ ms\)$/m.exec(made.stdout);
    expect(m, made.stdout).not.toBeNull();
    const file = m![1]!;
    expect(file.startsWith(join(dataDir, 'backups'))).toBe(true);
    expect(integrity(file)).toBe('ok');
    // Every envelope acknowledged before the backup started is in it.
    expect(countRows(file, 'SELECT count(*) AS n FROM messages WHERE mailbox = ?', device.mailbox)).toBeGreaterThanOrEqual(BEFORE);
    expect(sent).toBeGreaterThan(BEFORE); // the node really was writing meanwhile
    expect((await node.app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200);

    const listed = await cli(dataDir, ['list']);
    expect(listed.code).toBe(0);
    const lines = listed.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^\\d{4}-\\d{2}-\\d{2}T\\S+Z\\s+${m![2]}\\t${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`));
    expect(await listBackups(join(dataDir, 'backups'))).toHaveLength(1);
  }, 120_000);

  it('usage: help lists the backup forms; a bad backup command exits 2 with the usage', async () => {
    const help = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [bin, 'help'], { env: { ...process.env, DATA_DIR: tempDir() } }, (e, out) => (e ? reject(e) : resolve(out))),
    );
    for (const form of ['meshwhisper-node backup [--db FILE] [--dir DIR] [--keep N]', 'meshwhisper-node backup list', 'meshwhisper-node backup restore FILE [--db FILE] [--force]']) {
      expect(help).toContain(form);
    }
    for (const v of ['BACKUP_DIR', 'BACKUP_INTERVAL_HOURS', 'BACKUP_RETENTION']) expect(help).toContain(v);
    const bad = await cli(tempDir(), ['frobnicate']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('MW_BACKUP_CONFIG');
    expect(bad.stderr).toContain('backup restore FILE');
    // Restoring under a live node is refused, with or without --force, and touches nothing
    // (issue 12: --force used to succeed, and writes made after the restore vanished on restart).
    const dataDir = tempDir();
    const { node } = await start({ BACKUP_INTERVAL_HOURS: '0' }, {}, dataDir);
    expect((await cli(dataDir, [])).code).toBe(0);
    const [b] = await listBackups(join(dataDir, 'backups'));
    for (const args of [['restore', b!.path], ['restore', b!.path, '--force']]) {
      const refused = await cli(dataDir, args);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('MW_RESTORE_NODE_RUNNING');
      expect(refused.stderr).toContain(`pid ${process.pid}`);
    }
    expect(readdirSync(dataDir).filter((f) => f.includes('pre-restore'))).toEqual([]);
    expect(integrity(join(dataDir, DATABASE_FILE))).toBe('ok');
    expect((await node.app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200);
  }, 60_000);
});

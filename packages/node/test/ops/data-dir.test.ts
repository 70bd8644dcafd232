// Issue 12 §3–4, operator traps around the data directory: one node per DATA_DIR (lock), file and
// directory modes, and GET /ready (rate-limited, its write probe cached).
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { DATABASE_FILE, createNode } from '../../src/node.js';
import { LOCK_FILE } from '../../src/store/data-dir.js';
import { generousLimits, sqliteOf, startTestNode } from '../helpers.js';
import type { TestNode } from '../helpers.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'mw-datadir-'));
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
};
const started = async (...args: Parameters<typeof startTestNode>): Promise<TestNode> => {
  const t = await startTestNode(...args);
  cleanup.push(() => t.close());
  return t;
};
const mode = (path: string): number => statSync(path).mode & 0o777;

describe('data directory lock', () => {
  it('a second node on the same DATA_DIR is refused, naming the holder; after the first stops, it starts', async () => {
    const dataDir = tempDir();
    const first = await startTestNode({}, {}, { dataDir });
    const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'silent', METRICS_PORT: 'off' });
    await expect(createNode(config, { metrics: false })).rejects.toMatchObject({ code: 'MW_DATA_DIR_LOCKED', message: expect.stringContaining(`pid ${process.pid}`) });
    // The refused start left the running node's files alone.
    expect((await first.node.app.inject('/ready')).statusCode).toBe(200);
    await first.close();
    const second = await started({}, {}, { dataDir });
    expect((await second.node.app.inject('/ready')).statusCode).toBe(200);
  });

  it('a lock left by a dead process (kill -9) is taken over', async () => {
    const dataDir = tempDir();
    const dead = spawn(process.execPath, ['-e', '0']);
    const pid = dead.pid!;
    await new Promise((r) => dead.once('exit', r));
    writeFileSync(join(dataDir, LOCK_FILE), `${pid}\n`);
    const t = await started({}, {}, { dataDir });
    expect((await t.node.app.inject('/ready')).statusCode).toBe(200);
  });
});

describe('modes', () => {
  it('a world-readable DATA_DIR is tightened to 700 with a warning; database, WAL and SHM are 600', async () => {
    const dataDir = tempDir();
    chmodSync(dataDir, 0o755);
    const t = await started({}, {}, { dataDir });
    expect(mode(dataDir)).toBe(0o700);
    expect(t.logs.join('')).toContain('DATA_DIR was readable by other users');
    const s = t.node.services.store;
    await s.setUsername('ns', 'x', undefined, new Uint8Array(32), 1); // a write: -wal and -shm exist
    for (const suffix of ['', '-wal', '-shm']) expect(mode(join(dataDir, DATABASE_FILE + suffix)), suffix).toBe(0o600);
    for (const sub of ['media', 'archives', 'tmp']) expect(mode(join(dataDir, sub))).toBe(0o700);
  });
});

describe('a database made with 4 KiB pages', () => {
  it('is rewritten with 8 KiB pages when the node starts, and the log says so', async () => {
    const dataDir = tempDir();
    const raw = new Database(join(dataDir, DATABASE_FILE));
    raw.pragma('page_size = 4096');
    raw.pragma('journal_mode = WAL'); // writes the header: the page size is fixed from here on
    raw.close();
    const t = await started({}, {}, { dataDir });
    expect(sqliteOf(t.node).pragma('page_size', { simple: true })).toBe(8192);
    expect(t.logs.join('')).toContain('database converted to 8192-byte pages');
    expect(mode(join(dataDir, DATABASE_FILE))).toBe(0o600);
  });
});

describe('GET /ready', () => {
  it('is rate-limited per address and does not write to the database on every request', async () => {
    const t = await started({ RATE_LIMITS: generousLimits(['ready']) });
    const db = sqliteOf(t.node);
    const changes = (): number => (db.prepare('SELECT total_changes() AS n').get() as { n: number }).n;
    const before = changes();
    const codes: number[] = [];
    for (let i = 0; i < 40; i++) codes.push((await t.node.app.inject({ method: 'GET', url: '/ready', remoteAddress: '192.0.2.7' })).statusCode);
    expect(codes.slice(0, 10).every((c) => c === 200)).toBe(true);
    expect(codes).toContain(429);
    // One probe write at most for the whole burst (the probe is cached for HEALTH_PROBE_INTERVAL_MS).
    expect(changes() - before).toBeLessThanOrEqual(1);
    // Another address is not affected by this one's burst.
    expect((await t.node.app.inject({ method: 'GET', url: '/ready', remoteAddress: '192.0.2.8' })).statusCode).toBe(200);
  });
});

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, existsSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  BackupError,
  BackupErrorCode,
  backupDatabase,
  backupDatabaseFile,
  listBackups,
  restoreDatabase,
  runBackupCli,
  scheduleBackups,
} from '../../src/backup.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mw-backup-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const PAYLOAD = 1024;

function createDb(path: string, rows: number): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE rows (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)');
  const ins = db.prepare('INSERT INTO rows (payload) VALUES (?)');
  db.transaction(() => {
    for (let i = 0; i < rows; i++) ins.run(Buffer.alloc(PAYLOAD, i & 0xff));
  })();
  return db;
}

function integrity(path: string): string {
  const db = new Database(path, { readonly: true });
  try {
    return (db.pragma('integrity_check', { simple: true }) as string) ?? '';
  } finally {
    db.close();
  }
}

/** Ids 1..n must all be present (rows are only ever inserted, ids are contiguous). */
function assertRowsPresent(path: string, committedBefore: number): number {
  const db = new Database(path, { readonly: true });
  try {
    const { n } = db.prepare('SELECT count(*) AS n FROM rows WHERE id <= ?').get(committedBefore) as { n: number };
    expect(n).toBe(committedBefore);
    const bad = db.prepare('SELECT count(*) AS n FROM rows WHERE length(payload) <> ?').get(PAYLOAD) as { n: number };
    expect(bad.n).toBe(0);
    return (db.prepare('SELECT max(id) AS m FROM rows').get() as { m: number }).m;
  } finally {
    db.close();
  }
}

/**
 * A writer in another process: one committed INSERT per transaction, in a tight loop, printing
 * the id of every 100th committed row. It never stops on its own.
 */
const WRITER = `
const Database = require('better-sqlite3');
const db = new Database(process.argv[1]);
db.pragma('busy_timeout = 10000');
db.pragma('synchronous = NORMAL');
const ins = db.prepare('INSERT INTO rows (payload) VALUES (?)');
const payload = Buffer.alloc(${PAYLOAD}, 7);
for (;;) {
  const { lastInsertRowid } = ins.run(payload);
  if (Number(lastInsertRowid) % 100 === 0) process.stdout.write('committed ' + lastInsertRowid + '\\n');
}
`;

function startWriter(dbPath: string): { child: ChildProcess; committed: () => number; waitFor: (n: number) => Promise<void> } {
  const child = spawn(process.execPath, ['-e', WRITER, dbPath], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] });
  let last = 0;
  const waiters: { n: number; resolve: () => void }[] = [];
  let buf = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buf += chunk.toString('utf8');
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const l of lines) {
      const m = /^committed (\d+)$/.exec(l);
      if (m) last = Number(m[1]);
    }
    for (const w of waiters.splice(0)) (last >= w.n ? w.resolve : () => waiters.push(w))();
  });
  return {
    child,
    committed: () => last,
    waitFor: (n) => new Promise((resolve) => (last >= n ? resolve() : waiters.push({ n, resolve }))),
  };
}

describe('backup under concurrent write load', () => {
  it('another process writing during a backup from a second connection: restore is complete and intact', async () => {
    const dbPath = join(dir, 'node.sqlite3');
    const base = createDb(dbPath, 20_000); // ~20 MB: many backup steps, so the writer forces restarts
    base.close();
    const writer = startWriter(dbPath);
    try {
      await writer.waitFor(20_500);
      // Every row the writer reported committed before the backup starts must be in the backup.
      const committedBefore = writer.committed();
      const reader = new Database(dbPath, { readonly: true });
      const maxSeen = (reader.prepare('SELECT max(id) AS m FROM rows').get() as { m: number }).m;
      reader.close();
      expect(maxSeen).toBeGreaterThanOrEqual(committedBefore);

      const result = await backupDatabaseFile(dbPath, { dir: join(dir, 'backups'), retention: 3 });
      const committedAfter = writer.committed();
      expect(committedAfter).toBeGreaterThan(committedBefore); // the writer really ran during the backup
      expect(integrity(result.path)).toBe('ok');

      const restored = join(dir, 'fresh', 'node.sqlite3');
      await restoreDatabase({ backupFile: result.path, databasePath: restored });
      expect(integrity(restored)).toBe('ok');
      const maxRestored = assertRowsPresent(restored, maxSeen);
      expect(maxRestored).toBeGreaterThanOrEqual(maxSeen);
      // Backups are self-contained single files (no -wal/-shm left behind in the backup dir).
      expect(readdirSync(join(dir, 'backups'))).toEqual([result.name]);
      expect(statSync(result.path).mode & 0o777).toBe(0o600);
      console.log(`backup: ${result.bytes} bytes, ${Math.round(result.durationMs)} ms, ${result.restarts} restarts; rows committed before ${maxSeen}, in backup ${maxRestored}`);
    } finally {
      writer.child.kill('SIGKILL');
    }
  });

  it('in-process: the node keeps writing through the same connection while the backup steps', async () => {
    const dbPath = join(dir, 'node.sqlite3');
    const db = createDb(dbPath, 10_000);
    const ins = db.prepare('INSERT INTO rows (payload) VALUES (?)');
    let writing = true;
    let written = 0;
    const loop = (): void => {
      if (!writing) return;
      for (let i = 0; i < 20; i++) ins.run(Buffer.alloc(PAYLOAD, 3));
      written += 20;
      setImmediate(loop);
    };
    setImmediate(loop);
    await new Promise((r) => setTimeout(r, 20));
    const committedBefore = (db.prepare('SELECT max(id) AS m FROM rows').get() as { m: number }).m;
    const result = await backupDatabase(db, { dir: join(dir, 'backups') });
    const writtenDuring = written;
    writing = false;
    expect(writtenDuring).toBeGreaterThan(0);
    expect(result.restarts).toBe(0); // same-connection writes update the copy instead of restarting it
    const restored = join(dir, 'restored.sqlite3');
    await restoreDatabase({ backupFile: result.path, databasePath: restored });
    expect(integrity(restored)).toBe('ok');
    assertRowsPresent(restored, committedBefore);
    db.close();
  });
});

describe('retention, naming, restore safety', () => {
  it('keeps the newest N, names sort by time, stale partials are cleaned', async () => {
    const db = createDb(join(dir, 'db.sqlite3'), 10);
    const backups = join(dir, 'b');
    let t = Date.UTC(2026, 0, 1);
    const now = (): Date => new Date((t += 3_600_000));
    const names: string[] = [];
    for (let i = 0; i < 5; i++) names.push((await backupDatabase(db, { dir: backups, retention: 3, now })).name);
    const stale = join(backups, '.meshwhisper-20250101T000000000Z-00000000.sqlite3.partial');
    writeFileSync(stale, 'junk');
    utimesSync(stale, new Date(0), new Date(0));
    const fresh = join(backups, '.meshwhisper-29990101T000000000Z-00000001.sqlite3.partial');
    writeFileSync(fresh, 'in progress elsewhere');
    names.push((await backupDatabase(db, { dir: backups, retention: 3, now })).name);
    const listed = await listBackups(backups);
    expect(listed.map((b) => b.name)).toEqual(names.slice(-3).reverse());
    expect(listed[0]?.createdAt.toISOString()).toBe('2026-01-01T06:00:00.000Z');
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(fresh)).toBe(true); // a recent partial may be another run's: left alone
    db.close();
  });

  it('restore refuses to overwrite without force, moves the old database (and its WAL) aside with force', async () => {
    const src = createDb(join(dir, 'src.sqlite3'), 5);
    const b = await backupDatabase(src, { dir: join(dir, 'b') });
    src.close();
    // A node that crashed: its last commits live only in the -wal, which SQLite would otherwise
    // replay into whatever database file it finds next to it.
    const livePath = join(dir, 'live.sqlite3');
    createDb(livePath, 1).close();
    const crash = spawn(process.execPath, ['-e', `
      const db = new (require('better-sqlite3'))(process.argv[1]);
      db.pragma('wal_autocheckpoint = 0');
      db.prepare('INSERT INTO rows (payload) VALUES (?)').run(Buffer.alloc(${PAYLOAD}));
      process.kill(process.pid, 'SIGKILL');`, livePath], { cwd: process.cwd(), stdio: 'inherit' });
    await new Promise((r) => crash.on('exit', r));
    expect(statSync(`${livePath}-wal`).size).toBeGreaterThan(0);

    await expect(restoreDatabase({ backupFile: b.path, databasePath: livePath })).rejects.toMatchObject({
      code: BackupErrorCode.TARGET_EXISTS,
    });
    const r = await restoreDatabase({ backupFile: b.path, databasePath: livePath, force: true, now: () => new Date(Date.UTC(2026, 1, 2)) });
    const aside = join(dir, 'live.sqlite3.pre-restore-20260202T000000000Z');
    expect(r.movedAside).toContain(aside);
    expect(r.movedAside).toContain(`${aside}-wal`);
    expect(existsSync(`${livePath}-wal`)).toBe(false);
    expect(assertRowsPresent(livePath, 5)).toBe(5);
    // The old database, with its WAL beside it, still holds both of its rows.
    expect(assertRowsPresent(aside, 2)).toBe(2);
  });

  it('a corrupt or missing backup is refused with a typed error and the target is untouched', async () => {
    const bogus = join(dir, 'meshwhisper-bogus.sqlite3');
    writeFileSync(bogus, Buffer.alloc(8192, 0x41));
    await expect(restoreDatabase({ backupFile: bogus, databasePath: join(dir, 'x.sqlite3') })).rejects.toMatchObject({ code: 'MW_BACKUP_CORRUPT' });
    await expect(restoreDatabase({ backupFile: bogus, databasePath: join(dir, 'x.sqlite3') })).rejects.toBeInstanceOf(BackupError);
    await expect(restoreDatabase({ backupFile: join(dir, 'nope'), databasePath: join(dir, 'x.sqlite3') })).rejects.toMatchObject({ code: 'MW_BACKUP_NOT_FOUND' });
    // A real backup with a flipped page byte fails integrity_check → MW_BACKUP_CORRUPT.
    const db = createDb(join(dir, 'db.sqlite3'), 2000);
    const b = await backupDatabase(db, { dir: join(dir, 'b') });
    db.close();
    const { openSync, writeSync, closeSync } = await import('node:fs');
    const fd = openSync(b.path, 'r+');
    // Overwrite the start of a table b-tree page (its header and cell pointers).
    writeSync(fd, Buffer.alloc(64, 0xff), 0, 64, 4096 * 5 + 1);
    closeSync(fd);
    await expect(restoreDatabase({ backupFile: b.path, databasePath: join(dir, 'x.sqlite3') })).rejects.toMatchObject({ code: 'MW_BACKUP_CORRUPT' });
    expect(existsSync(join(dir, 'x.sqlite3'))).toBe(false);
  });
});

describe('schedule and CLI', () => {
  it('runs on its timer and on demand, never overlapping; stop waits for a running backup', async () => {
    const db = createDb(join(dir, 'db.sqlite3'), 100);
    const timers: (() => void)[] = [];
    const results: boolean[] = [];
    const s = scheduleBackups({
      db,
      dir: join(dir, 'b'),
      retention: 10,
      intervalMs: 60_000,
      setTimer: (fn) => {
        timers.push(fn);
        return {};
      },
      clearTimer: () => undefined,
      onResult: (r) => results.push(r.ok),
    });
    const [a, b] = await Promise.all([s.runNow(), s.runNow()]);
    expect(a.path).toBe(b.path); // the second call joined the running backup
    expect(timers.length).toBe(1);
    timers[0]?.();
    await new Promise((r) => setTimeout(r, 200));
    await s.stop();
    expect(results).toEqual([true, true]);
    expect((await listBackups(join(dir, 'b'))).length).toBe(2);
    db.close();
    expect(() => scheduleBackups({ db, dir, intervalMs: 5 })).toThrow(BackupError);
  });

  it('meshwhisper-node backup: create, list, restore, usage errors', async () => {
    const dbPath = join(dir, 'data', 'node.sqlite3');
    rmSync(join(dir, 'data'), { recursive: true, force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(dir, 'data'));
    createDb(dbPath, 50).close();
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
    const defaults = { databasePath: dbPath, backupDir: join(dir, 'data', 'backups'), retention: 2 };
    expect(await runBackupCli([], defaults, io)).toBe(0);
    expect(await runBackupCli(['--keep', '1'], defaults, io)).toBe(0);
    expect((await listBackups(defaults.backupDir)).length).toBe(1);
    expect(out.some((l) => l.startsWith('pruned old backup'))).toBe(true);
    out.length = 0;
    expect(await runBackupCli(['list'], defaults, io)).toBe(0);
    expect(out.length).toBe(1);
    const file = out[0]?.split('\t')[1] ?? '';
    expect(await runBackupCli(['restore', file], defaults, io)).toBe(1);
    expect(err.at(-1)).toMatch(/^MW_RESTORE_TARGET_EXISTS/);
    expect(await runBackupCli(['restore', file, '--force'], defaults, io)).toBe(0);
    expect(assertRowsPresent(dbPath, 50)).toBe(50);
    expect(await runBackupCli(['restore'], defaults, io)).toBe(2);
    expect(await runBackupCli(['--keep', '0'], defaults, io)).toBe(2);
    expect(await runBackupCli(['--bogus'], defaults, io)).toBe(2);
    expect(await runBackupCli(['frobnicate'], defaults, io)).toBe(2);
    expect(await runBackupCli(['--db', join(dir, 'missing.sqlite3')], defaults, io)).toBe(1);
    expect(err.at(-1)).toMatch(/^MW_BACKUP_NOT_FOUND/);
    out.length = 0;
    expect(await runBackupCli(['--help'], defaults, io)).toBe(0);
    expect(out[0]).toContain('meshwhisper-node backup restore FILE');
  });
});

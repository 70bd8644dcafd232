/**
 * SQLite-only guarantees: one writer per storage (same process and another process), no stale lock
 * after a crash, a crash mid-transaction rolls back, the versioned schema, secret columns as blobs,
 * a failed statement poisons its transaction. The shared contract is in conformance.ts.
 */
import type { ChildProcess } from 'node:child_process';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { build } from 'esbuild';
import { AccountKeyPair, DeviceKeyPair, X25519PreKeyPair, createContext, issueDeviceCertificate } from '@meshwhisper/crypto';
import type { LocalIdentity } from '@meshwhisper/crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SQLITE_APPLICATION_ID } from '../../src/constants.js';
import type { SqliteDriver } from '../../src/storage/sqlite.js';
import { SQLITE_MIGRATIONS, openSqliteStorage } from '../../src/storage/sqlite.js';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mw-sdk-sqlite-'));
const childBundle = join(dir, 'sqlite-child.mjs');
const ctx = createContext();
let n = 0;
const dbPath = (): string => join(dir, `t${n++}.db`);

function identity(): LocalIdentity {
  const device = DeviceKeyPair.generate(ctx);
  return { certificate: issueDeviceCertificate(ctx, AccountKeyPair.generate(ctx), device), device };
}

beforeAll(async () => {
  await build({
    entryPoints: [fileURLToPath(new URL('./sqlite-child.ts', import.meta.url))],
    outfile: childBundle,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['better-sqlite3'],
    alias: { '@meshwhisper/crypto': join(repo, 'packages/crypto/src/index.ts') },
    logLevel: 'error',
  });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the child in `mode` and resolves with its first JSON line (and the process, still running for "hold"). */
function child(mode: 'probe' | 'hold', path: string): Promise<{ out: Record<string, unknown>; proc: ChildProcess }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [childBundle, mode, path, repo], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const line = buf.split('\n')[0];
      if (buf.includes('\n') && line) resolve({ out: JSON.parse(line) as Record<string, unknown>, proc });
    });
    proc.on('error', reject);
    proc.on('exit', (code) => {
      if (!buf.includes('\n')) reject(new Error(`child exited with ${code} before answering`));
    });
  });
}
const exited = (p: ChildProcess): Promise<void> => new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once('exit', () => r())));

describe('SQLite storage: one writer per storage', () => {
  it('a second instance in the same process gets MW_SDK_STORAGE_LOCKED until the first closes', async () => {
    const path = dbPath();
    const a = await openSqliteStorage({ path });
    await expect(openSqliteStorage({ path })).rejects.toMatchObject({ name: 'StorageError', code: 'MW_SDK_STORAGE_LOCKED' });
    // Reaching the same file through a symlink is caught by SQLite's own (per-inode) lock.
    const link = `${path}.link`;
    symlinkSync(path, link);
    await expect(openSqliteStorage({ path: link })).rejects.toMatchObject({ code: 'MW_SDK_STORAGE_LOCKED' });
    await a.close();
    const b = await openSqliteStorage({ path });
    await b.close();
  });

  it('another process gets MW_SDK_STORAGE_LOCKED while this one holds the storage', async () => {
    const path = dbPath();
    const a = await openSqliteStorage({ path });
    const { out } = await child('probe', path);
    expect(out).toMatchObject({ code: 'MW_SDK_STORAGE_LOCKED' });
    await a.close();
    expect((await child('probe', path)).out).toEqual({ opened: true });
  });

  it('a writer that crashed (SIGKILL) leaves no stale lock, and its open transaction is rolled back', async () => {
    const path = dbPath();
    const { out, proc } = await child('hold', path);
    expect(out).toEqual({ holding: true });
    await expect(openSqliteStorage({ path })).rejects.toMatchObject({ code: 'MW_SDK_STORAGE_LOCKED' });
    proc.kill('SIGKILL');
    await exited(proc);
    const s = await openSqliteStorage({ path });
    try {
      expect(await s.loadSession('child:1')).toEqual(Uint8Array.of(1)); // committed before the crash
      expect(await s.loadSession('child:2')).toBeUndefined(); // in flight at the crash
    } finally {
      await s.close();
    }
  });
});

describe('SQLite storage: schema and file format', () => {
  it('applies the numbered migrations, marks the file, uses WAL, keeps no -shm file, stores secrets as blobs', async () => {
    const path = dbPath();
    const s = await openSqliteStorage({ path, identity: identity() });
    await s.storePreKey(X25519PreKeyPair.generate(ctx, 1));
    expect(existsSync(`${path}-shm`)).toBe(false); // EXCLUSIVE mode: the WAL index lives in heap memory
    await s.close();
    const db = new Database(path, { readonly: true });
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(SQLITE_MIGRATIONS.length);
      expect(db.pragma('application_id', { simple: true })).toBe(SQLITE_APPLICATION_ID);
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.prepare('SELECT typeof(secret_key) AS t FROM prekey').get()).toEqual({ t: 'blob' });
      expect(db.prepare('SELECT typeof(signing_seed) AS a, typeof(dh_secret) AS b FROM identity').get()).toEqual({ a: 'blob', b: 'blob' });
    } finally {
      db.close();
    }
  });

  it('deleted items are overwritten in the file (secure_delete): a deleted canary is not in the file or its WAL', async () => {
    const path = join(dir, 'secure-delete.db');
    const s = await openSqliteStorage({ path });
    const canary = new TextEncoder().encode('disappearing-canary-5e1f'.repeat(40));
    await s.setItem('mw.history', 'k', canary);
    await s.setItem('mw.history', 'other', Uint8Array.of(1));
    await s.deleteItem('mw.history', 'k');
    await s.close();
    const { readFileSync } = await import('node:fs');
    const files = [path, `${path}-wal`].filter((f) => existsSync(f));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect(readFileSync(f).toString('latin1').includes('disappearing-canary-5e1f')).toBe(false);
    const raw = new Database(path, { readonly: true });
    try {
      expect(raw.prepare("SELECT count(*) AS n FROM app_items WHERE key = 'other'").get()).toEqual({ n: 1 });
    } finally {
      raw.close();
    }
  });

  it('upgrades a schema-1 storage in place: protocol data kept, app_items added (text keys, blob values)', async () => {
    const path = dbPath();
    const old = new Database(path);
    old.pragma(`application_id = ${SQLITE_APPLICATION_ID}`);
    old.exec(SQLITE_MIGRATIONS[0]!.sql);
    old.prepare('INSERT INTO session (address, record) VALUES (?, ?)').run('old:1', Buffer.from([1, 2, 3]));
    old.pragma('user_version = 1');
    old.close();
    const s = await openSqliteStorage({ path });
    expect(await s.loadSession('old:1')).toEqual(Uint8Array.of(1, 2, 3));
    await s.transaction(async (tx) => {
      await tx.setItem('outbox', 'm1', new Uint8Array(0));
      await tx.setItem('outbox', 'm2', Uint8Array.of(9));
    });
    await s.close();
    const db = new Database(path, { readonly: true });
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(2);
      expect(db.prepare('SELECT tbl, key, typeof(key) AS k, typeof(value) AS v, length(value) AS n FROM app_items ORDER BY key').all()).toEqual([
        { tbl: 'outbox', key: 'm1', k: 'text', v: 'blob', n: 0 },
        { tbl: 'outbox', key: 'm2', k: 'text', v: 'blob', n: 1 },
      ]);
    } finally {
      db.close();
    }
  });

  it('refuses a storage written by a newer SDK (MW_SDK_STORAGE_SCHEMA_TOO_NEW) without touching it', async () => {
    const path = dbPath();
    await (await openSqliteStorage({ path })).close();
    const db = new Database(path);
    db.pragma(`user_version = ${SQLITE_MIGRATIONS.length + 1}`);
    db.close();
    await expect(openSqliteStorage({ path })).rejects.toMatchObject({ code: 'MW_SDK_STORAGE_SCHEMA_TOO_NEW' });
    const again = new Database(path, { readonly: true });
    expect(again.pragma('user_version', { simple: true })).toBe(SQLITE_MIGRATIONS.length + 1);
    again.close();
  });

  it("refuses another application's SQLite file (MW_SDK_STORAGE_CORRUPT) and a file that is not SQLite", async () => {
    const path = dbPath();
    const db = new Database(path);
    db.exec('CREATE TABLE their_data (x)');
    db.close();
    await expect(openSqliteStorage({ path })).rejects.toMatchObject({ code: 'MW_SDK_STORAGE_CORRUPT' });
    const junk = dbPath();
    execFileSync('sh', ['-c', `head -c 8192 /dev/urandom > '${junk}'`]);
    await expect(openSqliteStorage({ path: junk })).rejects.toMatchObject({ code: 'MW_SDK_STORAGE_CORRUPT' });
  });
});

describe('SQLite storage: identity option and failed statements', () => {
  it('accepts the app\'s own better-sqlite3 constructor as the driver', async () => {
    const driver: SqliteDriver = Database; // also pins that the declared driver type matches better-sqlite3's
    const s = await openSqliteStorage({ path: dbPath(), driver });
    await s.storeSession('d:1', Uint8Array.of(1));
    expect(await s.loadSession('d:1')).toEqual(Uint8Array.of(1));
    await s.close();
  });

  it('opens with the stored identity, and refuses a different one', async () => {
    const path = dbPath();
    const id = identity();
    await (await openSqliteStorage({ path, identity: id })).close();
    const s = await openSqliteStorage({ path, identity: id });
    expect((await s.getLocalIdentity()).device.signingPublicKey).toEqual(id.device.signingPublicKey);
    await s.close();
    await expect(openSqliteStorage({ path, identity: identity() })).rejects.toMatchObject({ code: 'MW_SDK_STORAGE_IDENTITY_EXISTS' });
    // The refused open released the lock.
    await (await openSqliteStorage({ path })).close();
  });

  it('a failed statement rolls the whole transaction back even if fn swallows the error', async () => {
    const s = await openSqliteStorage({ path: dbPath() });
    try {
      const bad = new X25519PreKeyPair(1.5, new Uint8Array(32), new Uint8Array(32), 0); // not an integer id
      const p = s.transaction(async (tx) => {
        await tx.storeSession('a:1', Uint8Array.of(1));
        await tx.storePreKey(bad).catch(() => undefined);
        return 'fn resolved';
      });
      await expect(p).rejects.toMatchObject({ name: 'StorageError', code: 'MW_SDK_STORAGE_IO' });
      expect(await s.loadSession('a:1')).toBeUndefined();
    } finally {
      await s.close();
    }
  });
});

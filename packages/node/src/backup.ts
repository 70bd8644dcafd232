/**
 * Hot backups of the node's SQLite database, and restore.
 *
 * A backup uses SQLite's online backup API (better-sqlite3 `db.backup()`), which copies pages
 * while the node keeps serving: writes through the same connection are folded into the copy;
 * a write through another connection (e.g. the running node while the `backup` subcommand copies
 * from a second process) restarts it, so after a few restarts the copy is finished in one step
 * under a single read transaction — in WAL mode writers are not blocked by it. Either way the
 * result is a consistent snapshot as of the moment the copy finished, and therefore contains
 * every transaction committed before the backup started.
 *
 * Files are made atomically: copy to a hidden `.partial` name in the backup directory, switch it
 * to a self-contained rollback-journal file, check `PRAGMA integrity_check`, fsync, rename to the
 * final name, fsync the directory. A crash leaves a `.partial` file (cleaned up later), never a
 * truncated file under a backup name. Backups are ciphertext envelopes plus directory metadata,
 * but they are exactly as sensitive as the live database (see docs/threat-model.md): files are
 * created mode 0600.
 *
 * Restore procedure: docs/backup-restore.md.
 */
import { DataDirError, lockDataDir } from './store/data-dir.js';
import type { DataDirLock } from './store/data-dir.js';
import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsConstants, existsSync, fsyncSync, openSync } from 'node:fs';
import { copyFile, mkdir, readdir, rename, rm, stat, chmod } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';

const requireFromHere = createRequire(import.meta.url);

// ── Errors ──────────────────────────────────────────────────────────────────────────────────

export const BackupErrorCode = {
  /** Invalid backup settings or CLI arguments. */
  CONFIG: 'MW_BACKUP_CONFIG',
  /** The copy itself failed (disk full, permissions, source unreadable). */
  FAILED: 'MW_BACKUP_FAILED',
  /** A backup (new or to be restored) is not a SQLite database or fails `PRAGMA integrity_check`. */
  CORRUPT: 'MW_BACKUP_CORRUPT',
  /** The backup file to restore, or the database to back up, does not exist or cannot be opened. */
  NOT_FOUND: 'MW_BACKUP_NOT_FOUND',
  /** Restore target already exists and `force` was not given. */
  TARGET_EXISTS: 'MW_RESTORE_TARGET_EXISTS',
  /** A node is running on the target's data directory (it holds node.lock): stop it first; --force does not override this. */
  NODE_RUNNING: 'MW_RESTORE_NODE_RUNNING',
} as const;
export type BackupErrorCode = (typeof BackupErrorCode)[keyof typeof BackupErrorCode];

export class BackupError extends Error {
  override readonly name = 'BackupError';
  constructor(
    readonly code: BackupErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
  toJSON(): { error: { code: BackupErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

// ── Constants ───────────────────────────────────────────────────────────────────────────────

/** Keep a week of daily backups by default: enough to notice silent corruption before it is the only copy. */
export const DEFAULT_BACKUP_RETENTION = 7;
/** Daily: the database is durable on its own; backups protect against disk loss and operator error. */
export const DEFAULT_BACKUP_INTERVAL_MS = 24 * 3600 * 1000;
/** Pages copied per step while the copy is not being restarted: ~4 MB at 4 KiB pages, keeps the event loop responsive. */
export const BACKUP_PAGES_PER_STEP = 1000;
/** After this many restarts (writes from another connection) the rest is copied in one step. */
export const BACKUP_MAX_RESTARTS = 2;
/** `.partial` files older than this are leftovers of a crashed backup and are deleted. */
export const STALE_PARTIAL_MS = 6 * 3600 * 1000;
/** An upper bound that makes sqlite3_backup_step copy every remaining page (better-sqlite3 caps at 2^31-1). */
const ALL_PAGES = 0x7fffffff;

const BACKUP_PREFIX = 'meshwhisper-';
const BACKUP_SUFFIX = '.sqlite3';
/** meshwhisper-20260102T030405123Z-ab12cd34.sqlite3: sorts chronologically by name. */
const BACKUP_NAME = /^meshwhisper-(\d{8}T\d{9}Z)-([0-9a-f]{8})\.sqlite3$/;

export interface BackupInfo {
  readonly path: string;
  readonly name: string;
  /** Time the backup started, from its name. */
  readonly createdAt: Date;
  readonly bytes: number;
}

export interface BackupResult extends BackupInfo {
  readonly durationMs: number;
  /** How often writes from another connection restarted the copy (≤ BACKUP_MAX_RESTARTS). */
  readonly restarts: number;
  /** Backups deleted by retention after this one was written. */
  readonly pruned: readonly string[];
}

export interface BackupOptions {
  /** Directory for backups; created (0700) if missing. */
  readonly dir: string;
  /** Number of backups to keep (newest first); older ones are deleted after a successful backup. */
  readonly retention?: number;
  /** Wall clock for the file name (injected for tests). */
  readonly now?: () => Date;
  /** Verify the copy with PRAGMA integrity_check before publishing it (default true). */
  readonly verify?: boolean;
}

function stamp(d: Date): string {
  // 2026-01-02T03:04:05.123Z → 20260102T030405123Z
  return d.toISOString().replace(/[-:.]/g, '');
}

function parseStamp(s: string): Date {
  const iso = `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}T${s.slice(9, 11)}:${s.slice(11, 13)}:${s.slice(13, 15)}.${s.slice(15, 18)}Z`;
  return new Date(iso);
}

function fsyncPath(path: string, directory = false): void {
  const fd = openSync(path, directory ? fsConstants.O_RDONLY | fsConstants.O_DIRECTORY : fsConstants.O_RDWR);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function integrityCheck(path: string): string[] {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check);
  } finally {
    db.close();
  }
}

/**
 * integrity_check reads every page: seconds to minutes on a large database. The node's event loop
 * must keep serving meanwhile, so a backup made inside the node checks its copy in a worker thread
 * with its own connection.
 */
const INTEGRITY_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
let db;
try {
  db = new Database(workerData.path, { readonly: true, fileMustExist: true });
  parentPort.postMessage({ ok: true, result: db.pragma('integrity_check').map((r) => r.integrity_check) });
} catch (e) {
  parentPort.postMessage({ ok: false, message: String(e && e.message) });
} finally {
  if (db) db.close();
}
`;

function integrityCheckInWorker(path: string): Promise<string[]> {
  return new Promise((resolvePromise, reject) => {
    const worker = new Worker(INTEGRITY_WORKER, { eval: true, workerData: { path, module: requireFromHere.resolve('better-sqlite3') } });
    worker.once('message', (m: { ok: true; result: string[] } | { ok: false; message: string }) => {
      if (m.ok) resolvePromise(m.result);
      else reject(new BackupError(BackupErrorCode.CORRUPT, `integrity_check could not run: ${m.message}`));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new BackupError(BackupErrorCode.FAILED, `integrity_check worker exited with ${code}`));
    });
  });
}

function validateRetention(retention: number): void {
  if (!Number.isInteger(retention) || retention < 1) {
    throw new BackupError(BackupErrorCode.CONFIG, 'backup retention must be an integer ≥ 1');
  }
}

/** Backups in `dir`, newest first. Files not named like a backup are ignored. */
export async function listBackups(dir: string): Promise<BackupInfo[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: BackupInfo[] = [];
  for (const name of names) {
    const m = BACKUP_NAME.exec(name);
    if (m === null) continue;
    const path = join(dir, name);
    const st = await stat(path);
    out.push({ path, name, createdAt: parseStamp(m[1] ?? ''), bytes: st.size });
  }
  return out.sort((a, b) => (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));
}

async function removeStalePartials(dir: string, now: Date): Promise<void> {
  for (const name of await readdir(dir)) {
    if (!name.startsWith(`.${BACKUP_PREFIX}`) || !name.endsWith('.partial')) continue;
    const path = join(dir, name);
    const st = await stat(path).catch(() => undefined);
    if (st !== undefined && now.getTime() - st.mtimeMs > STALE_PARTIAL_MS) await rm(path, { force: true });
  }
}

/**
 * Delete all but the newest `retention` backups in `dir`. Returns the deleted paths.
 */
export async function pruneBackups(dir: string, retention: number): Promise<string[]> {
  validateRetention(retention);
  const doomed = (await listBackups(dir)).slice(retention);
  for (const b of doomed) await rm(b.path, { force: true });
  if (doomed.length > 0) fsyncPath(dir, true);
  return doomed.map((b) => b.path);
}

/**
 * Back up an open database into `options.dir`, then apply retention. Safe while the node is
 * serving (through the same connection) and while another process writes (see the module doc).
 */
export async function backupDatabase(db: Database.Database, options: BackupOptions): Promise<BackupResult> {
  const retention = options.retention ?? DEFAULT_BACKUP_RETENTION;
  validateRetention(retention);
  const now = options.now ?? (() => new Date());
  const dir = resolve(options.dir);
  const started = performance.now();
  const startedAt = now();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await removeStalePartials(dir, startedAt);

  const name = `${BACKUP_PREFIX}${stamp(startedAt)}-${randomBytes(4).toString('hex')}${BACKUP_SUFFIX}`;
  const partial = join(dir, `.${name}.partial`);
  const final = join(dir, name);
  let restarts = 0;
  try {
    let lastRemaining = Number.POSITIVE_INFINITY;
    await db.backup(partial, {
      progress({ remainingPages }) {
        // remainingPages going up means another connection wrote and SQLite restarted the copy.
        if (remainingPages > lastRemaining) restarts++;
        lastRemaining = remainingPages;
        return restarts >= BACKUP_MAX_RESTARTS ? ALL_PAGES : BACKUP_PAGES_PER_STEP;
      },
    });
    await chmod(partial, 0o600);
    // A self-contained file: rollback journal instead of WAL, so the backup is one file that a
    // read-only check (and a later copy) can open without -wal/-shm companions.
    const copy = new Database(partial, { fileMustExist: true });
    try {
      copy.pragma('journal_mode = DELETE');
    } finally {
      copy.close();
    }
    if (options.verify ?? true) {
      const result = await integrityCheckInWorker(partial);
      if (result.length !== 1 || result[0] !== 'ok') {
        throw new BackupError(BackupErrorCode.CORRUPT, `new backup failed integrity_check: ${result.slice(0, 5).join('; ')}`);
      }
    }
    fsyncPath(partial);
    await rename(partial, final);
    fsyncPath(dir, true);
  } catch (e) {
    await rm(partial, { force: true });
    await rm(`${partial}-journal`, { force: true });
    if (e instanceof BackupError) throw e;
    throw new BackupError(BackupErrorCode.FAILED, `backup failed: ${(e as Error).message}`, { cause: e });
  }
  const pruned = await pruneBackups(dir, retention);
  const st = await stat(final);
  return { path: final, name, createdAt: startedAt, bytes: st.size, durationMs: performance.now() - started, restarts, pruned };
}

/**
 * Back up a database file that another process (the running node) may hold open: opens its own
 * read-only connection for the copy.
 */
export async function backupDatabaseFile(databasePath: string, options: BackupOptions): Promise<BackupResult> {
  let db: Database.Database;
  try {
    db = new Database(databasePath, { readonly: true, fileMustExist: true });
  } catch (e) {
    throw new BackupError(BackupErrorCode.NOT_FOUND, `cannot open database ${databasePath}: ${(e as Error).message}`, { cause: e });
  }
  try {
    return await backupDatabase(db, options);
  } finally {
    db.close();
  }
}

export interface RestoreOptions {
  /** Backup file to restore. */
  readonly backupFile: string;
  /** Database path the node will open. */
  readonly databasePath: string;
  /**
   * Replace an existing database. The old files (database, -wal, -shm) are moved aside to
   * `<db>.pre-restore-<time>[-wal|-shm]`, never deleted. The node must be stopped.
   */
  readonly force?: boolean;
  readonly now?: () => Date;
}

export interface RestoreResult {
  readonly databasePath: string;
  /** Where the replaced database was moved (force only). */
  readonly movedAside: readonly string[];
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return false;
      throw e;
    },
  );
}

/**
 * Restore a backup into `databasePath`: verify the backup, move any existing database aside
 * (with `force`), copy to a temporary name next to the target, fsync, rename, verify again.
 * A stale -wal next to the target would be replayed into the restored file by SQLite, so it is
 * always moved aside together with the old database.
 */
export async function restoreDatabase(options: RestoreOptions): Promise<RestoreResult> {
  const backupFile = resolve(options.backupFile);
  const target = resolve(options.databasePath);
  const now = options.now ?? (() => new Date());
  if (!(await exists(backupFile))) throw new BackupError(BackupErrorCode.NOT_FOUND, `no backup file at ${backupFile}`);
  let check: string[];
  try {
    check = integrityCheck(backupFile);
  } catch (e) {
    throw new BackupError(BackupErrorCode.CORRUPT, `${backupFile} is not a readable SQLite database: ${(e as Error).message}`, { cause: e });
  }
  if (check.length !== 1 || check[0] !== 'ok') {
    throw new BackupError(BackupErrorCode.CORRUPT, `backup ${basename(backupFile)} failed integrity_check: ${check.slice(0, 5).join('; ')}`);
  }

  // The data directory's lock, held for the whole restore: a running node refuses it (so does a
  // node starting meanwhile). Restoring under a live node would lose everything it wrote since.
  await mkdir(dirname(target), { recursive: true, mode: 0o700 });
  let lock: DataDirLock;
  try {
    lock = lockDataDir(dirname(target));
  } catch (e) {
    if (e instanceof DataDirError) throw new BackupError(BackupErrorCode.NODE_RUNNING, `${e.message}; restore refuses to replace a live node's database, even with --force`, { cause: e });
    throw e;
  }
  try {
    return await restoreLocked(backupFile, target, options.force === true, now);
  } finally {
    lock.release();
  }
}

async function restoreLocked(backupFile: string, target: string, force: boolean, now: () => Date): Promise<RestoreResult> {
  const companions = ['', '-wal', '-shm', '-journal'];
  const present: string[] = [];
  for (const suffix of companions) if (await exists(target + suffix)) present.push(suffix);
  const movedAside: string[] = [];
  if (present.length > 0) {
    if (!force) {
      throw new BackupError(BackupErrorCode.TARGET_EXISTS, `${target} already exists; stop the node and pass --force to move it aside`);
    }
    const aside = `${target}.pre-restore-${stamp(now())}`;
    for (const suffix of present) {
      await rename(target + suffix, aside + suffix);
      movedAside.push(aside + suffix);
    }
  }

  const temp = join(dirname(target), `.${basename(target)}.restore-${randomBytes(4).toString('hex')}`);
  try {
    await copyFile(backupFile, temp, fsConstants.COPYFILE_EXCL);
    await chmod(temp, 0o600);
    fsyncPath(temp);
    await rename(temp, target);
    fsyncPath(dirname(target), true);
  } catch (e) {
    await rm(temp, { force: true });
    throw new BackupError(BackupErrorCode.FAILED, `restore failed: ${(e as Error).message}`, { cause: e });
  }
  const after = integrityCheck(target);
  if (after.length !== 1 || after[0] !== 'ok') {
    throw new BackupError(BackupErrorCode.CORRUPT, `restored database failed integrity_check: ${after.slice(0, 5).join('; ')}`);
  }
  return { databasePath: target, movedAside };
}

// ── Schedule ────────────────────────────────────────────────────────────────────────────────

/** What can take a hot backup of itself: the SQLite store (SqliteNodeStore.hotBackup), which owns its database handle. */
export interface BackupSource {
  hotBackup(options: BackupOptions): Promise<BackupResult>;
}

export interface BackupScheduleOptions extends BackupOptions {
  /** What to back up: a store that backs itself up (what the node passes), or a better-sqlite3 handle. */
  readonly db: Database.Database | BackupSource;
  /** Time between backups (default daily). */
  readonly intervalMs?: number;
  /** Called after every scheduled or on-demand run; never throws into the timer. */
  readonly onResult?: (result: { ok: true; backup: BackupResult } | { ok: false; error: BackupError }) => void;
  /** Timer functions (injected for tests). */
  readonly setTimer?: (fn: () => void, ms: number) => { unref?: () => unknown };
  readonly clearTimer?: (handle: unknown) => void;
}

export interface BackupSchedule extends AsyncDisposable {
  /** Run a backup now; if one is already running, wait for it and return its result. */
  runNow(): Promise<BackupResult>;
  /** Stop scheduling and wait for a running backup to finish. */
  stop(): Promise<void>;
}

/**
 * Back up `db` every `intervalMs` (the first run one interval after start) and on demand.
 * Runs never overlap. Failures are reported through `onResult` and retried at the next tick.
 */
export function scheduleBackups(options: BackupScheduleOptions): BackupSchedule {
  const intervalMs = options.intervalMs ?? DEFAULT_BACKUP_INTERVAL_MS;
  if (!Number.isFinite(intervalMs) || intervalMs < 1000) {
    throw new BackupError(BackupErrorCode.CONFIG, 'backup interval must be at least 1000 ms');
  }
  validateRetention(options.retention ?? DEFAULT_BACKUP_RETENTION);
  const setTimer = options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
  const clearTimer = options.clearTimer ?? ((h) => clearTimeout(h as NodeJS.Timeout));
  let running: Promise<BackupResult> | undefined;
  let timer: unknown;
  let stopped = false;

  const run = (): Promise<BackupResult> => {
    if (running !== undefined) return running;
    const source = options.db;
    const p = ('hotBackup' in source ? source.hotBackup(options) : backupDatabase(source, options)).then(
      (backup) => {
        options.onResult?.({ ok: true, backup });
        return backup;
      },
      (e: unknown) => {
        const error = e instanceof BackupError ? e : new BackupError(BackupErrorCode.FAILED, String(e), { cause: e });
        options.onResult?.({ ok: false, error });
        throw error;
      },
    );
    running = p.finally(() => {
      running = undefined;
    });
    return running;
  };
  const arm = (): void => {
    if (stopped) return;
    const handle = setTimer(() => {
      run()
        .catch(() => undefined) // reported through onResult
        .finally(arm);
    }, intervalMs);
    handle.unref?.();
    timer = handle;
  };
  arm();
  const stop = async (): Promise<void> => {
    stopped = true;
    if (timer !== undefined) clearTimer(timer);
    await running?.catch(() => undefined);
  };
  return { runNow: run, stop, [Symbol.asyncDispose]: stop };
}

// ── CLI ─────────────────────────────────────────────────────────────────────────────────────

export interface BackupCliDefaults {
  /** The node's database file (from the node's config). */
  readonly databasePath: string;
  /** Backup directory (from the node's config, e.g. <data>/backups). */
  readonly backupDir: string;
  readonly retention: number;
}

export interface CliIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

export const BACKUP_USAGE = `usage:
  meshwhisper-node backup [--db FILE] [--dir DIR] [--keep N]
      copy the database (safe while the node runs) into DIR and keep the newest N backups
  meshwhisper-node backup list [--dir DIR]
      list backups, newest first
  meshwhisper-node backup restore FILE [--db FILE] [--force]
      restore FILE into the database path (stop the node first; --force moves an existing
      database aside as <db>.pre-restore-<time>)`;

function parseArgs(args: readonly string[]): { positional: string[]; flags: Map<string, string | true> } {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--force' || a === '--help' || a === '-h') {
      flags.set(a === '-h' ? '--help' : a, true);
    } else if (a === '--db' || a === '--dir' || a === '--keep') {
      const v = args[i + 1];
      if (v === undefined || v.startsWith('--')) throw new BackupError(BackupErrorCode.CONFIG, `${a} needs a value`);
      flags.set(a, v);
      i++;
    } else if (a.startsWith('-')) {
      throw new BackupError(BackupErrorCode.CONFIG, `unknown option ${a}`);
    } else {
      positional.push(a);
    }
  }
  return { positional, flags };
}

/**
 * Entry point of `meshwhisper-node backup …` (args after the subcommand). Returns the process
 * exit code: 0 success, 1 failure, 2 usage error. Prints paths and sizes, never database content.
 */
export async function runBackupCli(args: readonly string[], defaults: BackupCliDefaults, io: CliIo): Promise<number> {
  try {
    const { positional, flags } = parseArgs(args);
    if (flags.has('--help')) {
      io.out(BACKUP_USAGE);
      return 0;
    }
    const str = (k: string, d: string): string => {
      const v = flags.get(k);
      return typeof v === 'string' ? v : d;
    };
    const db = str('--db', defaults.databasePath);
    const dir = str('--dir', defaults.backupDir);
    const keepText = str('--keep', String(defaults.retention));
    const keep = Number(keepText);
    const [command, ...rest] = positional;
    if (command === undefined || command === 'create') {
      if (rest.length > 0) throw new BackupError(BackupErrorCode.CONFIG, 'unexpected arguments');
      validateRetention(keep);
      const r = await backupDatabaseFile(db, { dir, retention: keep });
      io.out(`backup written: ${r.path} (${r.bytes} bytes, ${Math.round(r.durationMs)} ms)`);
      for (const p of r.pruned) io.out(`pruned old backup: ${p}`);
      return 0;
    }
    if (command === 'list') {
      const backups = await listBackups(dir);
      // An empty answer must not look like a hang or a wrong folder: say where we looked.
      if (backups.length === 0) io.out(existsSync(dir) ? `no backups in ${dir}` : `no backups: ${dir} does not exist (the first backup creates it)`);
      for (const b of backups) io.out(`${b.createdAt.toISOString()}  ${b.bytes}\t${b.path}`);
      return 0;
    }
    if (command === 'restore') {
      const [file, ...extra] = rest;
      if (file === undefined || extra.length > 0) throw new BackupError(BackupErrorCode.CONFIG, 'restore needs exactly one backup FILE');
      const r = await restoreDatabase({ backupFile: file, databasePath: db, force: flags.has('--force') });
      for (const p of r.movedAside) io.out(`moved aside: ${p}`);
      io.out(`restored ${file} into ${r.databasePath}; integrity_check ok. Start the node to serve it.`);
      return 0;
    }
    throw new BackupError(BackupErrorCode.CONFIG, `unknown backup command ${JSON.stringify(command)}`);
  } catch (e) {
    if (e instanceof BackupError) {
      io.err(`${e.code}: ${e.message}`);
      if (e.code === BackupErrorCode.CONFIG) {
        io.err(BACKUP_USAGE);
        return 2;
      }
      return 1;
    }
    io.err(`MW_BACKUP_FAILED: ${(e as Error).message}`);
    return 1;
  }
}

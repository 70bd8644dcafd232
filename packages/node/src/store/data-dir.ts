/**
 * The data directory: created 0700 (a looser existing one is tightened, or refused when that
 * fails), files created 0600, and locked so that one node at a time uses it — a second node, or
 * `meshwhisper-node backup restore` while a node runs, is refused with a message saying why.
 *
 * The lock is DATA_DIR/node.lock, created exclusively and holding the owner's pid. A lock left by
 * a process that no longer exists (kill -9, power loss) is taken over.
 */
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const LOCK_FILE = 'node.lock';

/** Why the data directory cannot be used. */
export class DataDirError extends Error {
  constructor(
    readonly code: 'MW_DATA_DIR_LOCKED' | 'MW_DATA_DIR_PERMISSIONS',
    message: string,
  ) {
    super(message);
    this.name = 'DataDirError';
  }
}

/** Creates `dir` (0700) or tightens an existing one to 0700; returns the mode it had when looser, else undefined. */
export function secureDirectory(dir: string): number | undefined {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const mode = statSync(dir).mode & 0o777;
  if ((mode & 0o077) === 0) return undefined;
  try {
    chmodSync(dir, 0o700);
  } catch (e) {
    throw new DataDirError(
      'MW_DATA_DIR_PERMISSIONS',
      `${dir} is readable by other users (mode ${mode.toString(8)}) and cannot be changed to 700 (${(e as NodeJS.ErrnoException).code ?? 'error'}); run: chmod 700 ${dir}`,
    );
  }
  return mode;
}

/** Creates `file` empty with mode 0600 if missing, and makes an existing one 0600 (SQLite gives its -wal/-shm the same mode). */
export function secureFile(file: string): void {
  closeSync(openSync(file, 'a', 0o600));
  chmodSync(file, 0o600);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid holding the lock of `dir`, if a live process holds it. */
export function lockHolder(dir: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, LOCK_FILE), 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isSafeInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
}

export interface DataDirLock {
  release(): void;
}

/** Takes the lock of `dir` or throws MW_DATA_DIR_LOCKED naming the pid that holds it. */
export function lockDataDir(dir: string): DataDirLock {
  const file = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, 'wx', 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = lockHolder(dir);
      if (holder !== undefined) {
        throw new DataDirError(
          'MW_DATA_DIR_LOCKED',
          `${dir} is in use by another MeshWhisper node (pid ${holder}${holder === process.pid ? ', this process' : ''}); stop it first — two nodes on one data directory would corrupt it`,
        );
      }
      rmSync(file, { force: true }); // stale: its process is gone
      continue;
    }
    try {
      writeSync(fd, `${process.pid}\n`);
    } finally {
      closeSync(fd);
    }
    let released = false;
    return {
      release() {
        if (released) return;
        released = true;
        rmSync(file, { force: true });
      },
    };
  }
  throw new DataDirError('MW_DATA_DIR_LOCKED', `${dir}: could not take ${LOCK_FILE} (another node is starting?)`);
}

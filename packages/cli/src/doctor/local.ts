/** Checks that need the node's host: data directory, disk space, backup freshness (--data-dir). */
import { stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { DATABASE_FILE, NODE_KEY_FILE, listBackups } from '@meshwhisper/node';
import { BACKUP_FAIL_AGE_MS, BACKUP_WARN_AGE_MS, DISK_FREE_FAIL_BYTES, DISK_FREE_FAIL_FRACTION, DISK_FREE_WARN_BYTES, DISK_FREE_WARN_FRACTION } from '../constants.js';
import type { CheckResult } from './report.js';

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatAge(ms: number): string {
  const h = ms / 3_600_000;
  return h < 1 ? `${Math.max(0, Math.round(ms / 60_000))} min` : h < 48 ? `${h.toFixed(1)} h` : `${(h / 24).toFixed(1)} days`;
}

export async function checkDataDir(dataDir: string): Promise<CheckResult> {
  const id = 'data-dir';
  const st = await stat(dataDir).catch(() => undefined);
  if (!st?.isDirectory()) return { id, status: 'fail', message: `${dataDir} is not a directory`, fix: 'pass the node\'s DATA_DIR with --data-dir (in Docker: the volume\'s mount point on the host, `docker volume inspect`)' };
  const db = await stat(join(dataDir, DATABASE_FILE)).catch(() => undefined);
  if (!db) return { id, status: 'warn', message: `no ${DATABASE_FILE} in ${dataDir}: the node has not started with this DATA_DIR yet`, fix: 'start the node once, or point --data-dir at the directory it uses' };
  const key = await stat(join(dataDir, NODE_KEY_FILE)).catch(() => undefined);
  if (!key) return { id, status: 'warn', message: `database present but no ${NODE_KEY_FILE}: devices will have to re-authenticate against a new node key`, fix: `restore ${NODE_KEY_FILE} from your backup before starting the node (docs/backup-restore.md)` };
  if ((key.mode & 0o077) !== 0) return { id, status: 'warn', message: `${NODE_KEY_FILE} is readable by group/others (mode ${(key.mode & 0o777).toString(8)})`, fix: `chmod 600 ${join(dataDir, NODE_KEY_FILE)}` };
  return { id, status: 'ok', message: `${dataDir}: database ${formatBytes(db.size)}, node key 0600` };
}

export async function checkDisk(dataDir: string): Promise<CheckResult> {
  const id = 'disk';
  let fs;
  try {
    fs = await statfs(dataDir);
  } catch (e) {
    return { id, status: 'fail', message: `cannot stat the file system of ${dataDir}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, fix: 'check that --data-dir exists and is readable' };
  }
  const free = fs.bavail * fs.bsize;
  const fraction = fs.blocks > 0 ? fs.bavail / fs.blocks : 0;
  const text = `${formatBytes(free)} free (${(fraction * 100).toFixed(1)}%) on the file system of ${dataDir}`;
  const fix = 'free space or grow the volume: delete old backups/media you do not need, move BACKUP_DIR to another disk, lower MEDIA_TTL_DAYS or RETENTION_DAYS';
  if (free < DISK_FREE_FAIL_BYTES || fraction < DISK_FREE_FAIL_FRACTION) return { id, status: 'fail', message: text, fix };
  if (free < DISK_FREE_WARN_BYTES || fraction < DISK_FREE_WARN_FRACTION) return { id, status: 'warn', message: text, fix };
  return { id, status: 'ok', message: text };
}

export async function checkBackups(backupDir: string, now: number): Promise<CheckResult> {
  const id = 'backups';
  let backups;
  try {
    backups = await listBackups(backupDir);
  } catch (e) {
    return { id, status: 'fail', message: `cannot list ${backupDir}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, fix: 'check BACKUP_DIR and its permissions' };
  }
  const newest = backups[0];
  const howTo = 'run `meshwhisper backup` now; schedule it daily (BACKUP_INTERVAL_HOURS on the node, or cron: `17 3 * * * meshwhisper backup`)';
  if (!newest) return { id, status: 'warn', message: `no backups in ${backupDir}`, fix: howTo };
  const age = now - newest.createdAt.getTime();
  const text = `newest backup ${formatAge(age)} old (${newest.name}, ${formatBytes(newest.bytes)}; ${backups.length} kept in ${backupDir})`;
  if (age > BACKUP_FAIL_AGE_MS) return { id, status: 'fail', message: text, fix: `${howTo}; look at the node's log for MW_BACKUP_* errors` };
  if (age > BACKUP_WARN_AGE_MS) return { id, status: 'warn', message: text, fix: howTo };
  return { id, status: 'ok', message: text };
}

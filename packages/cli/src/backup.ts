/**
 * `meshwhisper backup` / `meshwhisper restore`: the node's own backup module (runBackupCli in
 * @meshwhisper/node), with the database and backup paths taken from the node's .env, so the
 * operator types no paths. Restore never runs against a live node's files without --force, and
 * --force moves the old database aside instead of deleting it (docs/backup-restore.md).
 */
import { join } from 'node:path';
import { DATABASE_FILE, DEFAULT_BACKUP_RETENTION, runBackupCli } from '@meshwhisper/node';
import { CliError, CliErrorCode } from './errors.js';
import { withProgress } from './io.js';
import type { CliIo } from './io.js';
import { backupDirOf, dataDirOf } from './node-env.js';
import type { NodeEnv } from './node-env.js';

export interface BackupCommandOptions {
  readonly env: NodeEnv;
  readonly dataDir?: string;
  /** Backup directory (default BACKUP_DIR, else DATA_DIR/backups). */
  readonly dir?: string;
  readonly keep?: string;
}

function defaults(options: BackupCommandOptions): { databasePath: string; backupDir: string; retention: number } {
  const dataDir = dataDirOf(options.env, options.dataDir);
  const configured = options.env.value('BACKUP_RETENTION');
  const retention = configured === '' ? DEFAULT_BACKUP_RETENTION : Number(configured);
  if (!Number.isInteger(retention) || retention < 1) throw new CliError(CliErrorCode.INVALID_VALUE, 'BACKUP_RETENTION in the .env must be an integer ≥ 1');
  return { databasePath: join(dataDir, DATABASE_FILE), backupDir: options.dir ?? backupDirOf(options.env, dataDir), retention };
}

/**
 * The node's backup module prints its errors as `CODE: message` and, on a usage error, the
 * `meshwhisper-node backup` usage: here they read `meshwhisper: CODE: message` like every other
 * CLI error, followed by a pointer to this command's own help.
 */
function asCliIo(io: CliIo, command: string): CliIo {
  return {
    ...io,
    err: (line) => {
      if (/^usage:/.test(line)) io.err(`run \`meshwhisper ${command} --help\` for its options and examples`);
      else io.err(/^MW_[A-Z_]+: /.test(line) ? `meshwhisper: ${line}` : line);
    },
  };
}

/** `meshwhisper backup [list]`: returns the exit code (0, 1 failure, 2 usage). */
export async function runBackup(args: readonly string[], options: BackupCommandOptions, io: CliIo): Promise<number> {
  if (options.keep !== undefined && !/^[1-9][0-9]*$/.test(options.keep)) throw new CliError(CliErrorCode.INVALID_VALUE, `--keep must be an integer ≥ 1, not ${JSON.stringify(options.keep)}`);
  const d = defaults(options);
  const argv = [...args, ...(options.keep !== undefined ? ['--keep', options.keep] : [])];
  return withProgress(io, `backing up ${d.databasePath}`, runBackupCli(argv, d, asCliIo(io, 'backup')));
}

/** `meshwhisper restore FILE [--force]`: stop the node first. */
export async function runRestore(file: string, force: boolean, options: BackupCommandOptions, io: CliIo): Promise<number> {
  const d = defaults(options);
  return withProgress(io, `restoring ${file}`, runBackupCli(['restore', file, ...(force ? ['--force'] : [])], d, asCliIo(io, 'restore')));
}

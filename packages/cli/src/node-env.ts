/**
 * The node's settings as the CLI sees them: its `.env` file (what `init` wrote, what the node or
 * Docker Compose reads), with the CLI's own environment filling names the file does not set.
 * Relative paths in it (DATA_DIR, BACKUP_DIR, credential files) are relative to the file's folder,
 * which is where the node runs from.
 */
import { stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { CONFIG_SCHEMA } from '@meshwhisper/node';
import { readEnvFile } from './env-file.js';
import { PUSH_SETTINGS } from './push-settings.js';

export interface NodeEnv {
  /** The .env file read, if any. */
  readonly file: string | undefined;
  /** Folder relative paths resolve against. */
  readonly baseDir: string;
  /** True when some setting came from a file or the environment (false: defaults only). */
  readonly known: boolean;
  /** The value set for `name`, or undefined. */
  get(name: string): string | undefined;
  /** The value set for `name`, or the node's default for it ('' when it has none). */
  value(name: string): string;
  /** A path setting resolved against baseDir. */
  path(p: string): string;
  /** Every variable set (file, then environment), for the node's loadConfig. */
  record(): Record<string, string>;
}

const KNOWN_NAMES = new Set<string>([...Object.values(CONFIG_SCHEMA).map((s) => s.env), ...PUSH_SETTINGS.map((s) => s.env)]);

const defaultOf = (name: string): string => Object.values(CONFIG_SCHEMA).find((s) => s.env === name)?.default ?? PUSH_SETTINGS.find((s) => s.env === name)?.default ?? '';

/**
 * Loads `envFile` (must exist) or, without one, `./.env` in `cwd` when present. From
 * `processEnv` only the node's own setting names are taken, and only where the file is silent.
 */
export async function loadNodeEnv(envFile: string | undefined, cwd: string = process.cwd(), processEnv: Readonly<Record<string, string | undefined>> = process.env): Promise<NodeEnv> {
  let file: string | undefined;
  if (envFile !== undefined) file = resolve(cwd, envFile);
  else {
    const candidate = join(cwd, '.env');
    if (await stat(candidate).then((s) => s.isFile(), () => false)) file = candidate;
  }
  const vars = file ? await readEnvFile(file) : new Map<string, string>();
  for (const name of KNOWN_NAMES) {
    const v = processEnv[name];
    if (!vars.has(name) && v !== undefined) vars.set(name, v);
  }
  const baseDir = file ? dirname(file) : resolve(cwd);
  return {
    file,
    baseDir,
    known: vars.size > 0,
    get: (name) => vars.get(name),
    value: (name) => vars.get(name) ?? defaultOf(name),
    path: (p) => resolve(baseDir, p),
    record: () => Object.fromEntries(vars),
  };
}

/** The node's data directory: the explicit option, else DATA_DIR from the env, else the default. */
export function dataDirOf(env: NodeEnv, explicit?: string): string {
  return explicit !== undefined ? resolve(explicit) : env.path(env.value('DATA_DIR'));
}

/** The backup directory: BACKUP_DIR, resolved against DATA_DIR as the node does (default DATA_DIR/backups). */
export function backupDirOf(env: NodeEnv, dataDir: string): string {
  return resolve(dataDir, env.value('BACKUP_DIR') || 'backups');
}

/**
 * Command dispatch of `meshwhisper`. Every command returns its exit code: 0 success, 1 failure
 * (a FAIL in doctor, a failed backup, init refusing to overwrite), 2 usage error.
 *
 * Commands that need @meshwhisper/node (its schema, backup module: fastify, SQLite, …) load it
 * when they run, so --version, --help and `keys vapid` start in a blink.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
import { envLine } from './env-file.js';
import { CliError, CliErrorCode } from './errors.js';
import type { CliIo } from './io.js';
import { generateVapidKeys } from './vapid.js';
import { CLI_VERSION } from './version.js';

/** One command's help: the lines `meshwhisper --help` lists and `meshwhisper <command> --help` prints. */
interface CommandHelp {
  /** `init [dir]` */
  readonly synopsis: string;
  /** What it does, one or two lines. */
  readonly summary: readonly string[];
  readonly options: readonly (readonly [string, string])[];
  readonly examples: readonly string[];
}

/** Per-command help (docs/cli.md): the source of both the overview and `<command> --help`. */
export const COMMAND_HELP: Readonly<Record<string, CommandHelp>> = {
  init: {
    synopsis: 'init [dir]',
    summary: ['scaffold a deployment: compose.yaml, the node\'s .env (every setting,', 'fresh VAPID keys), .gitignore, README'],
    options: [
      ['--yes, -y', 'accept defaults, ask nothing'],
      ['--url URL', 'public URL clients use: http(s)://host[:port] (default http://localhost:8080)'],
      ['--namespace NAME', 'username namespace, NAME or NAME:signed|last-writer-wins'],
      ['--push LIST', 'webpush,apns,fcm or none (default webpush)'],
      ['--contact ADDRESS', 'VAPID_SUBJECT: e-mail or https: URL (default admin@<url host>)'],
      ['--app node|browser', 'also an SDK skeleton app in app/ that sends a first message'],
      ['--cluster', 'PostgreSQL, NATS, three node instances and HAProxy instead of one node'],
      ['--force', 'overwrite existing files'],
    ],
    examples: [
      'meshwhisper init my-chat --yes --url https://chat.example.com --push webpush,apns',
      'meshwhisper init demo --yes --namespace demo --app node   # then: cd demo/app && npm install && node index.mjs',
    ],
  },
  doctor: {
    synopsis: 'doctor [url]',
    summary: ['check DNS, TLS, /health, /ready, clock, WebSocket upgrade, metrics,', 'push credentials; disk and backups with --data-dir. Exit 1 on any FAIL.'],
    options: [
      ['--env FILE', 'the node\'s .env (default ./.env when present)'],
      ['--data-dir DIR', 'the node\'s DATA_DIR, when run on the node\'s host'],
      ['--timeout MS', 'per network check (default 5000)'],
      ['--ca FILE', 'also trust this CA certificate (PEM; private PKI)'],
      ['--json', 'machine-readable report on stdout'],
    ],
    examples: [
      'meshwhisper doctor https://chat.example.com --env .env',
      'meshwhisper doctor --data-dir /var/lib/docker/volumes/my-chat_meshwhisper-data/_data --json',
    ],
  },
  keys: {
    synopsis: 'keys vapid',
    summary: ['generate a Web Push (VAPID) key pair as .env lines'],
    options: [
      ['--subject URI', 'also print VAPID_SUBJECT (mailto: or https:)'],
      ['--json', 'print {"publicKey","privateKey"}'],
    ],
    examples: ['meshwhisper keys vapid --subject mailto:ops@example.com >> .env'],
  },
  backup: {
    synopsis: 'backup [list]',
    summary: ['online backup of the node\'s database (safe while it runs); list backups'],
    options: [
      ['--env FILE', 'the node\'s .env (default ./.env when present)'],
      ['--data-dir DIR', 'the node\'s DATA_DIR (default from the .env)'],
      ['--dir DIR', 'backup folder (default BACKUP_DIR, else DATA_DIR/backups)'],
      ['--keep N', 'keep the newest N backups (default BACKUP_RETENTION)'],
    ],
    examples: ['meshwhisper backup --env .env && meshwhisper backup list --env .env'],
  },
  restore: {
    synopsis: 'restore FILE',
    summary: ['restore a backup (stop the node first)'],
    options: [
      ['--force', 'move an existing database aside (never deleted)'],
      ['--env FILE', 'the node\'s .env (default ./.env when present)'],
      ['--data-dir DIR', 'the node\'s DATA_DIR (default from the .env)'],
    ],
    examples: ['meshwhisper restore data/backups/meshwhisper-20260102T030405123Z-ab12cd34.sqlite3 --env .env --force'],
  },
};

function commandLines(h: CommandHelp): string[] {
  return [
    `  ${h.synopsis.padEnd(22)}${h.summary[0] ?? ''}`,
    ...h.summary.slice(1).map((l) => `${' '.repeat(24)}${l}`),
    ...h.options.map(([flag, what]) => `        ${flag.padEnd(22)}${what}`),
  ];
}

/** `meshwhisper --help`: every command, then examples. */
export const USAGE = [
  `meshwhisper ${CLI_VERSION}: set up, check and operate a MeshWhisper node`,
  '',
  'usage: meshwhisper <command> [options]       meshwhisper <command> --help for one command',
  '',
  'commands:',
  ...Object.values(COMMAND_HELP).flatMap(commandLines),
  '',
  `  ${'--version, -v'.padEnd(22)}print the version`,
  `  ${'--help, -h'.padEnd(22)}this text`,
  '',
  'examples:',
  ...Object.values(COMMAND_HELP).flatMap((h) => h.examples.map((e) => `  ${e}`)),
  '',
].join('\n');

/** `meshwhisper <command> --help`: that command's usage, options and examples. */
export function commandUsage(command: string): string {
  const h = Object.hasOwn(COMMAND_HELP, command) ? COMMAND_HELP[command] : undefined;
  if (!h) throw new CliError(CliErrorCode.USAGE, `unknown command ${JSON.stringify(command)}`);
  return [`usage: meshwhisper ${h.synopsis} [options]`, '', ...h.summary, ...(h.options.length ? ['', 'options:', ...h.options.map(([flag, what]) => `  ${flag.padEnd(22)}${what}`)] : []), '', 'examples:', ...h.examples.map((e) => `  ${e}`), ''].join('\n');
}

function parse(args: readonly string[], options: NonNullable<ParseArgsConfig['options']>): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const r = parseArgs({ args: [...args], options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
    return { values: r.values as Record<string, string | boolean | undefined>, positionals: r.positionals };
  } catch (e) {
    throw new CliError(CliErrorCode.USAGE, (e as Error).message);
  }
}

const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined);

function maxPositionals(positionals: readonly string[], n: number, command: string): void {
  if (positionals.length > n) throw new CliError(CliErrorCode.USAGE, `${command}: unexpected argument ${JSON.stringify(positionals[n])}`);
}

async function doctor(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' }, env: { type: 'string' }, 'data-dir': { type: 'string' }, timeout: { type: 'string' }, ca: { type: 'string' } });
  if (values.help) return help(io, 'doctor');
  maxPositionals(positionals, 1, 'doctor');
  const timeoutText = str(values.timeout);
  const timeoutMs = timeoutText === undefined ? undefined : Number(timeoutText);
  if (timeoutMs !== undefined && (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 600_000)) throw new CliError(CliErrorCode.USAGE, '--timeout must be milliseconds between 100 and 600000');
  const [{ loadNodeEnv }, { runDoctor }, { renderText }] = await Promise.all([import('./node-env.js'), import('./doctor/doctor.js'), import('./doctor/report.js')]);
  const env = await loadNodeEnv(str(values.env), io.cwd, io.env);
  const dataDir = str(values['data-dir']);
  const caFile = str(values.ca);
  let ca: string | undefined;
  if (caFile !== undefined) {
    try {
      ca = await readFile(resolve(io.cwd ?? '.', caFile), 'utf8');
    } catch {
      throw new CliError(CliErrorCode.NOT_FOUND, `--ca: cannot read ${caFile}`);
    }
  }
  const report = await runDoctor({ url: positionals[0], env, dataDir: dataDir === undefined ? undefined : resolve(io.cwd ?? '.', dataDir), timeoutMs, io, ca });
  if (values.json) io.out(JSON.stringify(report, null, 2));
  else for (const line of renderText(report)) io.out(line);
  return report.healthy ? 0 : 1;
}

async function keys(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' }, subject: { type: 'string' } });
  if (values.help) return help(io, 'keys');
  if (positionals[0] !== 'vapid' || positionals.length > 1) throw new CliError(CliErrorCode.USAGE, 'usage: meshwhisper keys vapid [--subject URI] [--json]');
  const subject = str(values.subject);
  if (subject !== undefined && !/^(mailto:[^@\s]+@[^@\s]+|https:\/\/\S+)$/.test(subject)) throw new CliError(CliErrorCode.INVALID_VALUE, '--subject must be mailto:you@example.com or an https: URL');
  const k = generateVapidKeys();
  if (values.json) {
    io.out(JSON.stringify({ publicKey: k.publicKey, privateKey: k.privateKey, ...(subject ? { subject } : {}) }));
  } else {
    io.out('# Web Push (VAPID) key pair, generated by `meshwhisper keys vapid`. The private key is a secret.');
    io.out(envLine('VAPID_PUBLIC_KEY', k.publicKey));
    io.out(envLine('VAPID_PRIVATE_KEY', k.privateKey));
    if (subject) io.out(envLine('VAPID_SUBJECT', subject));
  }
  io.err('Keep VAPID_PRIVATE_KEY secret (.env with mode 0600). Changing the pair makes browsers re-subscribe.');
  return 0;
}

async function backup(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, { env: { type: 'string' }, 'data-dir': { type: 'string' }, dir: { type: 'string' }, keep: { type: 'string' } });
  if (values.help) return help(io, 'backup');
  maxPositionals(positionals, 1, 'backup');
  if (positionals[0] !== undefined && positionals[0] !== 'list') throw new CliError(CliErrorCode.USAGE, `backup: unknown subcommand ${JSON.stringify(positionals[0])} (use \`meshwhisper restore FILE\` to restore)`);
  const [{ loadNodeEnv }, { runBackup }] = await Promise.all([import('./node-env.js'), import('./backup.js')]);
  const env = await loadNodeEnv(str(values.env), io.cwd, io.env);
  const abs = (p: string | undefined): string | undefined => (p === undefined ? undefined : resolve(io.cwd ?? '.', p));
  return runBackup(positionals, { env, dataDir: abs(str(values['data-dir'])), dir: abs(str(values.dir)), keep: str(values.keep) }, io);
}

async function restore(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, { env: { type: 'string' }, 'data-dir': { type: 'string' }, force: { type: 'boolean' } });
  if (values.help) return help(io, 'restore');
  const [file] = positionals;
  if (file === undefined) throw new CliError(CliErrorCode.USAGE, 'usage: meshwhisper restore FILE [--force] [--env FILE] [--data-dir DIR]');
  maxPositionals(positionals, 1, 'restore');
  const [{ loadNodeEnv }, { runRestore }] = await Promise.all([import('./node-env.js'), import('./backup.js')]);
  const env = await loadNodeEnv(str(values.env), io.cwd, io.env);
  const dataDir = str(values['data-dir']);
  return runRestore(resolve(io.cwd ?? '.', file), values.force === true, { env, dataDir: dataDir === undefined ? undefined : resolve(io.cwd ?? '.', dataDir) }, io);
}

async function init(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, {
    yes: { type: 'boolean', short: 'y' },
    force: { type: 'boolean' },
    namespace: { type: 'string' },
    url: { type: 'string' },
    push: { type: 'string' },
    contact: { type: 'string' },
    app: { type: 'string' },
    cluster: { type: 'boolean' },
  });
  if (values.help) return help(io, 'init');
  maxPositionals(positionals, 1, 'init');
  const { parsePushList, runInit } = await import('./init.js');
  const push = str(values.push);
  const r = await runInit(
    {
      dir: resolve(io.cwd ?? '.', positionals[0] ?? '.'),
      yes: values.yes === true,
      force: values.force === true,
      namespace: str(values.namespace),
      url: str(values.url),
      push: push === undefined ? undefined : parsePushList(push),
      contact: str(values.contact),
      app: str(values.app),
      cluster: values.cluster === true,
    },
    io,
  );
  for (const f of r.files) io.out(`${f.overwritten ? 'overwrote' : 'created'}  ${f.path}${f.mode === 0o600 ? '  (0600, secret)' : ''}`);
  io.out(`\nDeployment for ${r.url} in ${r.dir}. Next: read README.md there, then \`docker compose up -d\` and \`meshwhisper doctor ${r.url} --env .env\`.`);
  if (r.app !== undefined) io.out(`First message: README.md § First message (${r.app === 'node' ? '`cd app && npm install && node index.mjs`' : '`cd app && npm install && npm run build && npm start`'}).`);
  return 0;
}

function help(io: CliIo, command?: string): number {
  io.out((command === undefined ? USAGE : commandUsage(command)).trimEnd());
  return 0;
}

/** Runs one invocation (argv without `node` and the script). Never throws; returns the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case '--help':
      case '-h':
        return help(io);
      case 'help': // `meshwhisper help init` is `meshwhisper init --help`
        if (rest.length > 1) throw new CliError(CliErrorCode.USAGE, 'usage: meshwhisper help [command]');
        return help(io, rest[0]);
      case '--version':
      case '-v':
      case 'version':
        io.out(CLI_VERSION);
        return 0;
      case 'doctor':
        return await doctor(rest, io);
      case 'keys':
        return await keys(rest, io);
      case 'backup':
        return await backup(rest, io);
      case 'restore':
        return await restore(rest, io);
      case 'init':
        return await init(rest, io);
      default:
        throw new CliError(CliErrorCode.USAGE, `unknown command ${JSON.stringify(command)}`);
    }
  } catch (e) {
    if (e instanceof CliError) {
      io.err(`meshwhisper: ${e.code}: ${e.message}`);
      if (e.code === CliErrorCode.USAGE) io.err(command !== undefined && Object.hasOwn(COMMAND_HELP, command) ? `run \`meshwhisper ${command} --help\` for its options and examples` : 'run `meshwhisper --help` for usage and examples');
      return e.exitCode;
    }
    io.err(`meshwhisper: ${CliErrorCode.INTERNAL}: unexpected error: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

// Test fixtures: captured IO, a real node on a temporary data directory, throwaway files.
import { generateKeyPairSync } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNode, loadConfig } from '@meshwhisper/node';
import type { MeshWhisperNode } from '@meshwhisper/node';
import { runCli } from '../src/cli.js';
import type { CheckResult, DoctorReport } from '../src/doctor/report.js';
import type { CliIo } from '../src/io.js';

export interface Captured {
  io: CliIo;
  out: string[];
  err: string[];
}

/** An empty working directory: no stray ./.env is ever picked up. */
const emptyCwd = mkdtempSync(join(tmpdir(), 'mw-cli-cwd-'));

/** Captured output; the CLI sees an empty working directory and an empty environment (hermetic). */
export function captureIo(extra: Partial<CliIo> = {}): Captured {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l) => void out.push(l), err: (l) => void err.push(l), cwd: emptyCwd, env: {}, ...extra }, out, err };
}

/** Runs the CLI in-process; returns exit code and captured output. */
export async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const c = captureIo();
  const code = await runCli(argv, c.io);
  return { code, out: c.out.join('\n'), err: c.err.join('\n') };
}

/** `doctor --json`, parsed. */
export async function doctorJson(...argv: string[]): Promise<{ code: number; report: DoctorReport; err: string }> {
  const r = await cli('doctor', ...argv, '--json', '--timeout', '3000');
  let report: DoctorReport;
  try {
    report = JSON.parse(r.out) as DoctorReport;
  } catch {
    throw new Error(`doctor printed no JSON (exit ${r.code}): ${r.out}\n${r.err}`);
  }
  return { code: r.code, report, err: r.err };
}

export function check(report: DoctorReport, id: string): CheckResult {
  const c = report.checks.find((x) => x.id === id);
  if (!c) throw new Error(`no check ${id} in ${JSON.stringify(report.checks.map((x) => x.id))}`);
  return c;
}

export function tempDir(prefix = 'mw-cli-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

export interface RunningNode {
  node: MeshWhisperNode;
  url: string;
  port: number;
  dataDir: string;
  close(): Promise<void>;
}

/** A real node (HTTP + WebSocket + metrics) listening on 127.0.0.1, logs silenced. */
export async function startNode(env: Record<string, string> = {}, dataDir = tempDir('mw-cli-node-')): Promise<RunningNode> {
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'silent', METRICS_PORT: 'off', ...env });
  const node = await createNode(config);
  const address = await node.listen();
  let closed = false;
  return {
    node,
    port: address.port,
    url: `http://127.0.0.1:${address.port}`,
    dataDir,
    async close() {
      if (closed) return;
      closed = true;
      await node.close();
    },
  };
}

export function writeEnv(dir: string, vars: Record<string, string>, name = '.env'): string {
  const path = join(dir, name);
  writeFileSync(path, Object.entries(vars).map(([k, v]) => `${k}=${v}`).join('\n') + '\n', { mode: 0o600 });
  return path;
}

/** Valid push credentials on disk: an APNs .p8 (P-256 PKCS#8) and an FCM service-account JSON (RSA). */
export function writePushCredentials(dir: string): { apnsKeyFile: string; fcmFile: string } {
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const apnsKeyFile = join(dir, 'AuthKey_ABC123DEFG.p8');
  writeFileSync(apnsKeyFile, ec.privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const fcmFile = join(dir, 'fcm.json');
  writeFileSync(
    fcmFile,
    JSON.stringify({
      type: 'service_account',
      project_id: 'demo-project',
      private_key_id: 'abc',
      private_key: rsa.privateKey.export({ format: 'pem', type: 'pkcs8' }),
      client_email: 'push@demo-project.iam.gserviceaccount.com',
      token_uri: 'https://oauth2.googleapis.com/token',
    }),
    { mode: 0o600 },
  );
  return { apnsKeyFile, fcmFile };
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * A registry for the `@meshwhisper` scope that must never be asked: it records every request and
 * answers 404. `npm install` in a generated app points the scope here; the app's `@meshwhisper/*`
 * must all come from its vendor/ tarballs (the names on the public registry belong to another project).
 */
export async function startForbiddenRegistry(): Promise<{ url: string; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const server = createHttpServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/`, requests, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/**
 * The environment for the generated README's `npm install`: the `@meshwhisper` scope on the
 * forbidden registry; everything else from npm's cache when it has it (`prefer-offline`), else the
 * public registry. Install scripts are off: the one that matters, better-sqlite3's (it downloads a
 * prebuilt binary from GitHub, unreachable here), is stood in for by `provideSqliteBinary`.
 */
export function npmInstallEnv(registry: string, base: Record<string, string>): Record<string, string> {
  return { ...base, 'npm_config_@meshwhisper:registry': registry, npm_config_prefer_offline: 'true', npm_config_ignore_scripts: 'true', npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };
}

/** Stand-in for better-sqlite3's install script: this checkout's native binary, same version only. */
export function provideSqliteBinary(appDir: string, repoRoot: string): void {
  const ours = join(repoRoot, 'node_modules/better-sqlite3');
  const theirs = join(appDir, 'node_modules/better-sqlite3');
  const version = (dir: string): string => (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
  if (version(ours) !== version(theirs)) throw new Error(`the app installed better-sqlite3 ${version(theirs)}, this checkout has ${version(ours)}: no binary to stand in for its install script`);
  mkdirSync(join(theirs, 'build/Release'), { recursive: true });
  cpSync(join(ours, 'build/Release/better_sqlite3.node'), join(theirs, 'build/Release/better_sqlite3.node'));
}

/** The ```sh blocks of one `## heading` section of a generated README. */
export function shBlocks(readme: string, heading: string): string[] {
  const start = readme.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`no section "## ${heading}" in the README`);
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

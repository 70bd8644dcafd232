// From an empty folder OUTSIDE the repository to the first end-to-end encrypted message, following
// the generated README as a user does (issues 6 and 15): the built `meshwhisper init --yes --app node`
// into a temp folder; the README's "Tools" block (links to the checkout's launchers in
// ~/.local/bin, HOME being a temp folder); its "without Docker" command starts the node; its
// "First message" block installs the app (`npm install`) and runs it, twice; its doctor and backup
// commands run against that node. Docker itself is not run (no engine on these machines).
//
// `npm install` runs for real, with the `@meshwhisper` scope pointed at a registry that records
// every request and answers 404: the app's @meshwhisper/* must all come from app/vendor/ (the names
// on the public registry belong to another project). Third-party packages come from npm's cache
// (prefer-offline) or the public registry; install scripts are off and better-sqlite3's (a download
// from GitHub) is stood in for by this checkout's binary of the same version.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseEnv } from '../src/env-file.js';
import { buildDist, repoRoot } from './build-dist.js';
import { freePort, npmInstallEnv, provideSqliteBinary, removeDir, shBlocks, startForbiddenRegistry, tempDir } from './helpers.js';

const CLI_BIN = join(repoRoot, 'packages/cli/bin/meshwhisper.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** performance.now() when each stdout line appeared. */
  lines: { at: number; text: string }[];
}

function run(command: string, args: readonly string[], opts: { cwd: string; env: Record<string, string>; timeoutMs?: number }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(command, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: Run['lines'] = [];
    let stdout = '';
    let stderr = '';
    createInterface({ input: p.stdout }).on('line', (text) => {
      lines.push({ at: performance.now(), text });
      stdout += `${text}\n`;
    });
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    p.once('error', reject);
    p.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, lines });
    });
  });
}
const sh = (line: string, opts: { cwd: string; env: Record<string, string>; timeoutMs?: number }): Promise<Run> => run('/bin/sh', ['-e', '-c', line], opts);

/** Starts the README's node command (through sh); resolves once the node logs that it listens. */
function startNodeProcess(line: string, cwd: string, env: Record<string, string>): Promise<{ child: ChildProcess; listen: string; log: () => string }> {
  const child = spawn('/bin/sh', ['-c', `exec ${line}`], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node did not start within 30 s:\n${log}`)), 30_000);
    child.once('exit', (code) => reject(new Error(`node exited early (${code}):\n${log}`)));
    createInterface({ input: child.stdout! }).on('line', (l) => {
      log += `${l}\n`;
      try {
        const j = JSON.parse(l) as { msg?: string; listen?: string };
        if (j.msg === 'MeshWhisper node listening' && j.listen) {
          clearTimeout(timer);
          resolve({ child, listen: j.listen, log: () => log });
        }
      } catch {
        /* not JSON */
      }
    });
  });
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

/** The commands of a block, without comments and blank lines. */
const commands = (block: string): string[] =>
  block
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l !== '' && !l.startsWith('#'));

const ms = (a: number, b: number): string => `${Math.round(b - a)} ms`;

let root: string;
let node: ChildProcess | undefined;
let buildMs = 0;

beforeAll(async () => {
  root = tempDir('mw-first-message-');
  const t = performance.now();
  // The binaries, and the SDK that init packs, run from dist/, as after `npm run build`.
  await buildDist(['packages/node', 'packages/sdk', 'packages/cli']);
  buildMs = performance.now() - t;
}, 300_000);

afterAll(async () => {
  await stop(node);
  removeDir(root);
});

describe('init → README → first message, outside the repository', () => {
  it('the generated README\'s commands work in a folder outside the checkout; the app installs without any @meshwhisper registry lookup and sends a first message, twice', async () => {
    expect(root.startsWith(repoRoot)).toBe(false);
    const home = join(root, 'home');
    mkdirSync(home);
    const dir = join(root, 'my-chat');
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    // A clean environment: nothing from the test runner leaks into init, the node or the app.
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home };
    const withTools = { ...env, PATH: `${home}/.local/bin:${env.PATH}` };

    // ── timed: init (it packs the SDK), node start, app run until the message is printed ──
    const t0 = performance.now();
    const init = await run(process.execPath, [CLI_BIN, 'init', dir, '--yes', '--app', 'node', '--namespace', 'demo', '--url', url], { cwd: root, env });
    const tInit = performance.now();
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toContain('created  app/index.mjs');
    expect(init.stdout).toMatch(/created {2}app\/vendor\/meshwhisper-sdk-[0-9.]+\.tgz/);
    const readme = readFileSync(join(dir, 'README.md'), 'utf8');
    expect(readme).not.toMatch(/npx|npm root -g|\/path\/to\/meshwhisper/);

    // "Tools": the CLI and the node launcher linked into ~/.local/bin.
    const [tools] = shBlocks(readme, 'Tools');
    const linked = await sh(tools!, { cwd: dir, env });
    expect(linked.code, linked.stderr).toBe(0);
    expect((await sh('meshwhisper --version', { cwd: root, env: withTools })).stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);

    // The operator's edit for this test: loopback only, no metrics listener (its fixed port could
    // collide with parallel tests). init already wrote the URL's port and the namespace.
    const envFile = join(dir, '.env');
    const settings = Object.fromEntries(parseEnv(readFileSync(envFile, 'utf8')));
    expect(settings.PORT).toBe(String(port));
    expect(settings.USERNAME_NAMESPACES).toBe('demo:signed');
    writeFileSync(envFile, readFileSync(envFile, 'utf8').replace(/^HOST=.*$/m, 'HOST=127.0.0.1').replace(/^METRICS_PORT=.*$/m, 'METRICS_PORT=off'));

    // "Start", without Docker.
    const [withDocker, withoutDocker] = shBlocks(readme, 'Start');
    const [startLine] = commands(withoutDocker!);
    expect(startLine).toMatch(/^node --env-file=\.env \S+meshwhisper-node\.js$/);
    const started = await startNodeProcess(startLine!, dir, env);
    node = started.child;
    expect(started.listen).toBe(url);
    const tNode = performance.now();

    // "First message": cd app, npm install, node index.mjs.
    const [firstMessage] = shBlocks(readme, 'First message');
    const steps = commands(firstMessage!);
    expect(steps).toEqual(['cd app', 'npm install', 'node index.mjs']);
    const appDir = join(dir, 'app');
    const registry = await startForbiddenRegistry();
    let installMs: number;
    try {
      const t = performance.now();
      const install = await sh(steps[1]!, { cwd: appDir, env: npmInstallEnv(registry.url, env), timeoutMs: 240_000 });
      installMs = performance.now() - t;
      expect(install.code, `${install.stdout}\n${install.stderr}`).toBe(0);
      expect(registry.requests).toEqual([]);
    } finally {
      await registry.close();
    }
    const lock = JSON.parse(readFileSync(join(appDir, 'package-lock.json'), 'utf8')) as { packages: Record<string, { resolved?: string }> };
    const ours = Object.entries(lock.packages).filter(([k]) => k.includes('node_modules/@meshwhisper/'));
    expect(ours.map(([k]) => k).sort()).toEqual(['node_modules/@meshwhisper/crypto', 'node_modules/@meshwhisper/protocol', 'node_modules/@meshwhisper/sdk']);
    for (const [k, v] of ours) expect(v.resolved, k).toMatch(/^file:vendor\/meshwhisper-[a-z]+-[0-9.]+\.tgz$/);
    provideSqliteBinary(appDir, repoRoot);

    const tApp = performance.now();
    const app = await sh(steps[2]!, { cwd: appDir, env });
    expect(app.code, `${app.stdout}\n${app.stderr}\n${started.log()}`).toBe(0);
    const received = app.lines.find((l) => l.text.startsWith('received:'));
    expect(received, app.stdout).toBeDefined();
    expect(received!.text).toMatch(/^received: (bob-[0-9a-f]{8}) got "Hello \1, this is alice\. Only you can read this\." from alice$/);
    expect(app.stdout).toContain(`node:     ${url} (namespace demo)`);
    expect(app.stderr).toBe('');
    // ── end of the timed span (the install is excluded) ──
    const machine = tInit - t0 + (tNode - tInit) + (received!.at - tApp);
    console.log(
      [
        '',
        'init → first message, outside the repository (packages/cli/test/init-first-message.test.ts):',
        `  build (tsc -b packages/node packages/sdk packages/cli, excluded): ${Math.round(buildMs)} ms`,
        `  init (npm pack of the SDK included):                             ${ms(t0, tInit)}`,
        `  node start (README command → listening):                         ${ms(tInit, tNode)}`,
        `  npm install (excluded; prefer-offline, no install scripts):      ${Math.round(installMs)} ms`,
        `  app start → message printed:                                     ${ms(tApp, received!.at)}`,
        `  TOTAL without build and install:                                 ${Math.round(machine)} ms`,
        '',
      ].join('\n'),
    );

    // Alice's identity lives in app/.data/ (0700) and is reused: a second run is the same device.
    expect(statSync(join(appDir, '.data')).mode & 0o777).toBe(0o700);
    const device = (r: Run): string | undefined => r.lines.find((l) => l.text.startsWith('alice:'))?.text;
    const again = await sh(steps[2]!, { cwd: appDir, env });
    expect(again.code, again.stderr).toBe(0);
    expect(device(again)).toBe(device(app));
    expect(again.stdout).toMatch(/^received: bob-[0-9a-f]{8} got /m);

    // The README's doctor and backup commands, with the CLI from ~/.local/bin.
    const doctorLine = commands(withDocker!).find((l) => l.startsWith('meshwhisper doctor'));
    expect(doctorLine).toBe(`meshwhisper doctor ${url} --env .env`);
    const doctor = await sh(doctorLine!, { cwd: dir, env: withTools });
    expect(doctor.code, `${doctor.stdout}\n${doctor.stderr}`).toBe(0);
    expect(doctor.stdout).toMatch(/OK\s+websocket/);
    const backupLine = /`(meshwhisper backup --env \.env)`/.exec(readme)?.[1];
    expect(backupLine).toBeDefined();
    const backup = await sh(backupLine!, { cwd: dir, env: withTools });
    expect(backup.code, backup.stderr).toBe(0);
    expect(backup.stdout).toMatch(/^backup written: .*\/my-chat\/data\/backups\/meshwhisper-/m);

    // Node down: one clear error line with the fix, exit 1, no stack trace.
    await stop(node);
    const down = await sh(steps[2]!, { cwd: appDir, env });
    expect(down.code).toBe(1);
    expect(down.stderr).toContain(`error: cannot reach the MeshWhisper node at ${url} (ECONNREFUSED)`);
    expect(down.stderr).toContain('start the node');
    expect(down.stderr).toContain(`meshwhisper doctor ${url} --env ../.env`);
    expect(down.stderr).not.toMatch(/\n\s+at /);
  }, 400_000);
});

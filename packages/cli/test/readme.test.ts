// The repository README as a newcomer follows it (issue 15): its first-message example, taken from
// README.md itself, runs twice in a row against a real node and leaves no file behind; the
// Node.js version it states is the one the dependencies ask for; .dockerignore keeps local
// databases out of images; no doc sends anyone to the registry's @meshwhisper scope.
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDist, repoRoot } from './build-dist.js';
import { startNode } from './helpers.js';
import type { RunningNode } from './helpers.js';

// npm's own range semantics (semver is in the tree through npm tooling; only this test uses it).
const semver = createRequire(import.meta.url)('semver') as { satisfies(version: string, range: string): boolean; major(v: string): number; minor(v: string): number };

const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');

/** Runs ES module source with the working directory `cwd` (bare imports resolve from there). */
function runModule(source: string, cwd: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--input-type=module', '-'], { cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.once('error', reject);
    p.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    p.stdin.end(source);
  });
}

describe('README: a first message', () => {
  let node: RunningNode;
  beforeAll(async () => {
    await buildDist(['packages/sdk']); // the example imports @meshwhisper/sdk, i.e. packages/sdk/dist
    node = await startNode(); // the node's defaults: namespace default, default rate limits
  }, 300_000);
  afterAll(async () => {
    await node?.close();
  });

  it('the example in README.md is examples/first-message.mjs and runs twice in a row, saying what happened, writing no file', async () => {
    const section = readme.slice(readme.indexOf('## A first message'));
    const source = /```js\n([\s\S]*?)```/.exec(section)?.[1];
    expect(source).toBeDefined();
    expect(source).toBe(readFileSync(join(repoRoot, 'examples/first-message.mjs'), 'utf8'));
    expect(section).toContain('node examples/first-message.mjs');
    const before = readdirSync(repoRoot).sort();
    const names: string[] = [];
    for (const run of [1, 2]) {
      // From the root of the clone, as the README says.
      const r = await runModule(source!, repoRoot, { MESHWHISPER_NODE_URL: node.url });
      expect(r.code, `run ${run}: ${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stderr).toBe('');
      const lines = r.stdout.trim().split('\n');
      const name = /^bob claimed the username (bob-[0-9a-f]{8})$/.exec(lines[0] ?? '')?.[1];
      expect(name, r.stdout).toBeDefined();
      expect(lines).toEqual([
        `bob claimed the username ${name}`,
        `alice sent a message to ${name}: the node stored it sealed`,
        'bob received "hello, post-quantum world" from a new contact (request: true)',
        'bob accepted alice as a contact',
      ]);
      names.push(name!);
    }
    expect(names[0]).not.toBe(names[1]);
    // No key file or database appeared in the repository root.
    expect(readdirSync(repoRoot).sort()).toEqual(before);
  }, 120_000);
});

describe('README: requirements and first-run traps', () => {
  it('the Node.js version the README states is what package.json and every runtime dependency accept', () => {
    const stated = /Requirements: Node\.js ≥ (\d+\.\d+)/.exec(readme)?.[1];
    expect(stated).toBeDefined();
    const min = `${stated}.0`;
    const root = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { engines: { node: string } };
    expect(root.engines.node).toBe(`>=${stated}`);
    expect(semver.satisfies(process.version, root.engines.node)).toBe(true);
    const lock = JSON.parse(readFileSync(join(repoRoot, 'package-lock.json'), 'utf8')) as { packages: Record<string, { engines?: { node?: string } | string[]; dev?: boolean; optional?: boolean }> };
    // Named in the README as declaring 22 while working on 20: liboqs-js (falls back to noble),
    // cookie@2 (fastify's in-process inject only), protoc-gen-es (`npm run gen`).
    const documented = new Set(['node_modules/@oqs/liboqs-js', 'node_modules/cookie', 'node_modules/@bufbuild/protoc-gen-es']);
    const refusing: string[] = [];
    let withEngines = 0;
    for (const [path, p] of Object.entries(lock.packages)) {
      const range = !p.engines || Array.isArray(p.engines) ? undefined : p.engines.node;
      if (path === '' || range === undefined || p.optional) continue;
      withEngines++;
      if (!semver.satisfies(min, range) && !documented.has(path)) refusing.push(`${path} (${range})`);
    }
    expect(withEngines).toBeGreaterThan(10);
    expect(refusing).toEqual([]);
    // ...and 0.01 lower is refused by something: the statement is the real minimum, not a guess.
    const lower = `${semver.major(min)}.${semver.minor(min) - 1}.0`;
    expect(Object.entries(lock.packages).some(([path, p]) => !documented.has(path) && p.engines && !Array.isArray(p.engines) && p.engines.node && !semver.satisfies(lower, p.engines.node))).toBe(true);
    for (const name of ['@oqs/liboqs-js', 'cookie@2', 'protoc-gen-es']) expect(readme).toContain(name);
  });

  it('.dockerignore keeps local databases, key files and app data out of the image', () => {
    const lines = readFileSync(join(repoRoot, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    for (const pattern of ['data', '**/*.sqlite3*', '**/*.db', '**/*.db-*', '**/.data', '**/node-key']) expect(lines, pattern).toContain(pattern);
  });

  it('no doc or template tells anyone to install @meshwhisper/* from the registry', () => {
    const docs = ['README.md', ...readdirSync(join(repoRoot, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
    const scaffolds = readdirSync(join(repoRoot, 'packages/cli/src/scaffold')).map((f) => `packages/cli/src/scaffold/${f}`);
    const trap = /npx @meshwhisper|npm (i|install|add) (-g )?@meshwhisper|"@meshwhisper\/[a-z-]+": "\^|npm root -g\)\/@meshwhisper/;
    // A line may name the trap only to warn against it.
    const warning = /never|do not|not `npx/i;
    for (const f of [...docs, ...scaffolds, 'packages/cli/src/init.ts']) {
      const offending = readFileSync(join(repoRoot, f), 'utf8')
        .split('\n')
        .filter((l) => trap.test(l) && !warning.test(l));
      expect(offending, f).toEqual([]);
    }
  });
});

// `init --app node|browser`: the skeleton app files, their place in the overwrite rule and the
// .gitignore, and that the generated code is valid: the Node script passes `node --check`, the
// browser page's main.js bundles with esbuild against the SDK (every import must exist), and the
// page, served by its generated serve.mjs in front of a real node, gets its first message in
// headless Chromium (skipped without /usr/bin/chromium unless MW_REQUIRE_CHROMIUM=1).
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { parseEnv } from '../src/env-file.js';
import { APP_SCAFFOLDS, runInit } from '../src/init.js';
import { captureIo, cli, freePort, removeDir, startNode, tempDir } from './helpers.js';
import { repoRoot } from './build-dist.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
const chromiumRequired = process.env.MW_REQUIRE_CHROMIUM === '1';

const mode = (p: string): number => statSync(p).mode & 0o777;
const read = (dir: string, path: string): string => readFileSync(join(dir, path), 'utf8');
const src = (pkg: string): string => join(repoRoot, `packages/${pkg}/src/index.ts`);

/** Bundles the generated main.js as its `npm run build` would, with the SDK from this repository's sources. */
async function bundleMain(appDir: string, write: boolean): Promise<string> {
  const out = await build({
    entryPoints: [join(appDir, 'main.js')],
    bundle: true,
    write,
    outfile: join(appDir, 'dist/main.js'),
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    alias: { '@meshwhisper/sdk': src('sdk'), '@meshwhisper/crypto': src('crypto'), '@meshwhisper/protocol': src('protocol') },
    logLevel: 'silent',
  });
  return write ? readFileSync(join(appDir, 'dist/main.js'), 'utf8') : out.outputFiles![0]!.text;
}

describe('init --app', () => {
  let root: string;
  let dir: string;
  beforeEach(() => {
    root = tempDir();
    dir = join(root, 'deploy');
  });
  afterEach(() => removeDir(root));

  it('registers node and browser', () => {
    expect([...APP_SCAFFOLDS.keys()]).toEqual(['node', 'browser']);
  });

  it('node: app/package.json and app/index.mjs with the URL and namespace baked in; .gitignore keeps its keys out', async () => {
    const r = await cli('init', dir, '--yes', '--app', 'node', '--namespace', 'acme', '--url', 'https://chat.example.com');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('created  app/index.mjs');
    expect(r.out).toContain('cd app && npm install && node index.mjs');
    const pkg = JSON.parse(read(dir, 'app/package.json')) as { type: string; private: boolean; dependencies: Record<string, string> };
    expect(pkg).toMatchObject({ type: 'module', private: true });
    expect(Object.keys(pkg.dependencies)).toEqual(['@meshwhisper/sdk']);
    const index = read(dir, 'app/index.mjs');
    expect(index).toContain(`process.env.MESHWHISPER_NODE_URL || "https://chat.example.com"`);
    expect(index).toContain(`process.env.MESHWHISPER_NAMESPACE || "acme"`);
    expect(index).toContain("from '@meshwhisper/sdk'");
    execFileSync(process.execPath, ['--check', join(dir, 'app/index.mjs')]); // throws on a syntax error
    expect(mode(join(dir, 'app/index.mjs'))).toBe(0o644);
    expect(read(dir, '.gitignore').split('\n')).toEqual(expect.arrayContaining(['.env', 'app/.data/', 'app/node_modules/']));
    const readme = read(dir, 'README.md');
    expect(readme).toContain('## First message');
    expect(readme).toContain('node index.mjs');
    expect(readme).toContain('| `app/` |');
  });

  it('browser: index.html loads dist/main.js; main.js bundles against the SDK; serve.mjs and package.json agree', async () => {
    await runInit({ dir, yes: true, app: 'browser', namespace: 'web' }, captureIo().io);
    const appDir = join(dir, 'app');
    const pkg = JSON.parse(read(dir, 'app/package.json')) as { scripts: Record<string, string>; dependencies: Record<string, string>; devDependencies: Record<string, string> };
    expect(pkg.scripts.build).toContain('--outfile=dist/main.js');
    expect(pkg.scripts.start).toBe('node serve.mjs');
    expect(Object.keys(pkg.devDependencies)).toEqual(['esbuild']);
    expect(read(dir, 'app/index.html')).toContain('<script type="module" src="./dist/main.js"></script>');
    const main = read(dir, 'app/main.js');
    expect(main).toContain('const NAMESPACE = "web";');
    expect(main).toContain('openIndexedDbStorage');
    // esbuild fails on a syntax error and on an import the SDK does not export.
    const bundled = await bundleMain(appDir, false);
    expect(bundled.length).toBeGreaterThan(10_000);
    expect(bundled).not.toMatch(/from ["']@meshwhisper\/sdk["']/);
    execFileSync(process.execPath, ['--check', join(appDir, 'serve.mjs')]);
    expect(read(dir, '.gitignore').split('\n')).toEqual(expect.arrayContaining(['app/node_modules/', 'app/dist/']));
    const readme = read(dir, 'README.md');
    expect(readme).toContain('npm run build        # esbuild main.js --bundle');
    expect(readme).toContain('CORS');
  });

  it('no app: README says how to get one; --app none is accepted', async () => {
    expect((await cli('init', dir, '--yes', '--app', 'none')).code).toBe(0);
    expect(existsSync(join(dir, 'app'))).toBe(false);
    expect(read(dir, 'README.md')).toMatch(/## First message\n\nNo skeleton app was generated here\. `meshwhisper init --app node`/);
  });

  it('app files follow the overwrite rule: refused without --force (nothing written), replaced with it', async () => {
    expect((await cli('init', dir, '--yes', '--app', 'node')).code).toBe(0);
    removeDir(join(dir, 'compose.yaml'));
    for (const f of ['.env', 'README.md', '.gitignore']) removeDir(join(dir, f));
    writeFileSync(join(dir, 'app/index.mjs'), '// my changes\n');
    const again = await cli('init', dir, '--yes', '--app', 'node');
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/MW_CLI_WOULD_OVERWRITE: .*already has app\/package\.json, app\/index\.mjs; nothing was written/);
    expect(existsSync(join(dir, '.env'))).toBe(false);
    expect(read(dir, 'app/index.mjs')).toBe('// my changes\n');
    const forced = await cli('init', dir, '--yes', '--app', 'node', '--force');
    expect(forced.code, forced.err).toBe(0);
    expect(forced.out).toContain('overwrote  app/index.mjs');
    expect(read(dir, 'app/index.mjs')).toContain('MeshWhisper.create');
  });

  it('interactive: the last question picks the app', async () => {
    const answers = ['http://localhost:9000', 'team', 'none', 'Browser'];
    const questions: string[] = [];
    const c = captureIo({ stdinIsTTY: true, ask: async (q) => (questions.push(q), answers.shift() ?? '') });
    const r = await runInit({ dir }, c.io);
    expect(questions).toHaveLength(4); // no contact question without Web Push
    expect(questions[3]).toContain('[none]');
    expect(r.app).toBe('browser');
    expect(existsSync(join(dir, 'app/main.js'))).toBe(true);
    // A wrong answer is a usage error, as the flag would be.
    const bad = captureIo({ stdinIsTTY: true, ask: async (q) => (q.startsWith('Skeleton') ? 'cobol' : '') });
    await expect(runInit({ dir: join(root, 'bad') }, bad.io)).rejects.toThrow(/unknown skeleton app "cobol"/);
  });

  describe.skipIf(!hasChromium && !chromiumRequired)('browser skeleton in headless Chromium', () => {
    it('served by its serve.mjs in front of a real node, the page gets its first message', async () => {
      if (!hasChromium) throw new Error(`MW_REQUIRE_CHROMIUM=1 but ${CHROMIUM} is missing`);
      await runInit({ dir, yes: true, app: 'browser', namespace: 'demo' }, captureIo().io);
      const appDir = join(dir, 'app');
      await bundleMain(appDir, true); // what `npm run build` writes
      const env = Object.fromEntries(parseEnv(read(dir, '.env')));
      const node = await startNode({ USERNAME_NAMESPACES: env.USERNAME_NAMESPACES ?? '' }, join(dir, 'data'));
      const port = await freePort();
      let serve: ChildProcess | undefined;
      const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
      try {
        serve = spawn(process.execPath, ['serve.mjs'], { cwd: appDir, env: { PATH: process.env.PATH ?? '', MESHWHISPER_NODE_URL: node.url, PORT: String(port) }, stdio: ['ignore', 'pipe', 'inherit'] });
        const banner = await new Promise<string>((resolve, reject) => {
          serve!.once('exit', (code) => reject(new Error(`serve.mjs exited (${code})`)));
          createInterface({ input: serve!.stdout! }).once('line', resolve);
        });
        expect(banner).toBe(`MeshWhisper skeleton on http://localhost:${port}/ → node ${node.url}`);
        const base = `http://127.0.0.1:${port}`;
        // HTTP and the WebSocket upgrade reach the node through the dev server.
        expect(await (await fetch(`${base}/health`)).json()).toEqual({ status: 'ok' });
        await new Promise<void>((resolve, reject) => {
          const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/anonymous`);
          ws.once('open', () => (ws.close(), resolve()));
          ws.once('error', reject);
        });

        const page = await browser.newPage();
        const errors: string[] = [];
        page.on('pageerror', (e) => errors.push(String(e)));
        await page.goto(`${base}/`);
        await page.waitForFunction(() => /^user-[0-9a-f]{8}$/.test(document.getElementById('me')?.textContent ?? ''), undefined, { timeout: 30_000 });
        const me = await page.textContent('#me');
        await page.click('#demo');
        await page.waitForFunction(() => /Hello user-/.test(document.getElementById('log')?.textContent ?? ''), undefined, { timeout: 30_000 });
        expect(await page.textContent('#log')).toContain(`Hello ${me}: end-to-end encrypted, the node only saw ciphertext.`);
        expect(await page.textContent('#state')).toBe('online');
        expect(errors).toEqual([]);
      } finally {
        await browser.close();
        serve?.kill('SIGTERM');
        await node.close();
      }
    }, 120_000);
  });
});

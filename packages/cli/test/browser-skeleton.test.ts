// The browser skeleton (`init --app browser`) in headless Chromium, set up by its README's steps:
// `npm install` (the `@meshwhisper` scope on a registry that must never be asked; see helpers.ts),
// `npm run build` (the app's own esbuild), `npm start` (serve.mjs in front of a real node).
// Issue 15: an unserved namespace shows its error and stays there (no "online", controls off);
// messages are labelled with the sender's username; a reload shows the history; no console error,
// no failed request (the favicon, the throw-away sender's receipt) anywhere.
// Skipped without /usr/bin/chromium unless MW_REQUIRE_CHROMIUM=1 (.ci/run).
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, hasChromium, requireChromium, skipWithoutChromium } from '../../sdk/test/browser-harness.js';
import { parseEnv } from '../src/env-file.js';
import { runInit } from '../src/init.js';
import { buildDist } from './build-dist.js';
import { captureIo, freePort, npmInstallEnv, removeDir, shBlocks, startForbiddenRegistry, startNode, tempDir } from './helpers.js';
import type { RunningNode } from './helpers.js';

const skip = skipWithoutChromium('the browser skeleton test (packages/cli/test/browser-skeleton.test.ts)');
const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' };

function sh(line: string, cwd: string, extra: Record<string, string> = {}): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('/bin/sh', ['-e', '-c', line], { cwd, env: { ...env, ...extra }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.once('error', reject);
    p.once('close', (code) => resolve({ code, out }));
  });
}

/** `npm start` (its own process group, so that stopping it stops serve.mjs too); resolves on its banner. */
async function npmStart(appDir: string, nodeUrl: string): Promise<{ url: string; stop(): void }> {
  const port = await freePort();
  const child: ChildProcess = spawn('npm', ['start', '--silent'], { cwd: appDir, env: { ...env, MESHWHISPER_NODE_URL: nodeUrl, PORT: String(port) }, stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  const banner = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`npm start exited (${code})`)));
    createInterface({ input: child.stdout! }).on('line', (l) => l.startsWith('MeshWhisper skeleton') && resolve(l));
  });
  expect(banner).toBe(`MeshWhisper skeleton on http://localhost:${port}/ → node ${nodeUrl}`);
  return { url: `http://127.0.0.1:${port}/`, stop: () => process.kill(-child.pid!, 'SIGTERM') };
}

/** Everything that would show red in the console: errors, failed requests, HTTP errors. */
function watch(page: Page, problems: string[]): void {
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`pageerror: ${String(e)}`));
  page.on('requestfailed', (r) => problems.push(`failed: ${r.method()} ${r.url()} ${r.failure()?.errorText ?? ''}`));
  page.on('response', (r) => r.status() >= 400 && problems.push(`${r.status()}: ${r.request().method()} ${r.url()}`));
}

const stateIs = (page: Page, re: RegExp) => page.waitForFunction((src) => new RegExp(src).test(document.getElementById('state')?.textContent ?? ''), re.source, { timeout: 30_000 });
const logHas = (page: Page, text: string) => page.waitForFunction((t) => (document.getElementById('log')?.textContent ?? '').includes(t), text, { timeout: 30_000 });
const myName = async (page: Page): Promise<string> => {
  await page.waitForFunction(() => /^user-[0-9a-f]{8}$/.test(document.getElementById('me')?.textContent ?? ''), undefined, { timeout: 30_000 });
  return (await page.textContent('#me'))!;
};
/** The log as [who, text] rows, newest first. */
const rows = (page: Page) => page.$$eval('#log li', (lis) => lis.map((li) => [li.querySelector('.who')?.textContent ?? '', (li.lastChild?.textContent ?? '').replace(/^: /, '')]));

describe.skipIf(skip)('browser skeleton in headless Chromium, set up by its README', () => {
  let root: string;
  let appDir: string;
  let namespaces: string;
  let browser: Browser;

  beforeAll(async () => {
    if (!hasChromium) requireChromium();
    await buildDist(['packages/sdk', 'packages/cli']);
    root = tempDir('mw-browser-skeleton-');
    const dir = join(root, 'deploy');
    await runInit({ dir, yes: true, app: 'browser', namespace: 'demo' }, captureIo().io);
    namespaces = Object.fromEntries(parseEnv(readFileSync(join(dir, '.env'), 'utf8'))).USERNAME_NAMESPACES!;
    appDir = join(dir, 'app');
    const steps = shBlocks(readFileSync(join(dir, 'README.md'), 'utf8'), 'First message')[0]!
      .split('\n')
      .map((l) => l.replace(/\s+#.*$/, '').trim())
      .filter(Boolean);
    expect(steps).toEqual(['cd app', 'npm install', 'npm run build', 'npm start']);
    const registry = await startForbiddenRegistry();
    try {
      const install = await sh('npm install', appDir, npmInstallEnv(registry.url, {}));
      expect(install.code, install.out).toBe(0);
      expect(registry.requests).toEqual([]);
    } finally {
      await registry.close();
    }
    const built = await sh('npm run build', appDir);
    expect(built.code, built.out).toBe(0);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  }, 400_000);

  afterAll(async () => {
    await browser?.close();
    if (root) removeDir(root);
  });

  it('a node that does not serve the namespace: the error stays on screen, no username, controls off', async () => {
    const node = await startNode({ USERNAME_NAMESPACES: 'other:signed' });
    const serve = await npmStart(appDir, node.url);
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const problems: string[] = [];
      watch(page, problems);
      await page.goto(serve.url);
      await stateIs(page, /^error: MW_UNKNOWN_NAMESPACE/);
      await page.waitForLoadState('networkidle');
      expect(await page.textContent('#state')).toMatch(/^error: MW_UNKNOWN_NAMESPACE: .* add demo:signed to USERNAME_NAMESPACES/);
      expect(await page.textContent('#me')).toBe('…');
      for (const sel of ['#demo', '#send button', '#send input[name=to]']) expect(await page.isDisabled(sel), sel).toBe(true);
      // The username claim's refusal is the one expected red line; nothing else.
      expect(problems.filter((p) => !/^(400|404): POST .*\/v1\/usernames$|^console: Failed to load resource: the server responded with a status of (400|404)/.test(p))).toEqual([]);
    } finally {
      await context.close();
      serve.stop();
      await node.close();
    }
  }, 120_000);

  it('two devices: first message, messages labelled with usernames, history after a reload, no console error', async () => {
    const node: RunningNode = await startNode({ USERNAME_NAMESPACES: namespaces });
    const serve = await npmStart(appDir, node.url);
    const contexts: BrowserContext[] = [];
    try {
      const problems: string[] = [];
      const open = async (): Promise<Page> => {
        const context = await browser.newContext();
        contexts.push(context);
        const page = await context.newPage();
        watch(page, problems);
        await page.goto(serve.url);
        return page;
      };
      const a = await open();
      const b = await open();
      const nameA = await myName(a);
      const nameB = await myName(b);
      expect(nameA).not.toBe(nameB);
      await stateIs(a, /^online$/);
      await stateIs(b, /^online$/);

      // The throw-away device's first message, labelled with its (directory-checked) username.
      await a.click('#demo');
      await logHas(a, `Hello ${nameA}: end-to-end encrypted`);
      const [[demoWho]] = (await rows(a)) as [[string, string]];
      expect(demoWho).toMatch(/^user-[0-9a-f]{8}$/);
      expect(demoWho).not.toBe(nameA);

      // A writes to B by username; B sees A's username, then answers.
      await a.fill('#send input[name=to]', nameB);
      await a.fill('#send input[name=text]', 'hi B, this is A');
      await a.click('#send button');
      await logHas(b, 'hi B, this is A');
      expect((await rows(b))[0]).toEqual([nameA, 'hi B, this is A']);
      expect((await rows(a))[0]).toEqual([`you → ${nameB}`, 'hi B, this is A']);
      await b.fill('#send input[name=to]', nameA);
      await b.fill('#send input[name=text]', 'hello A');
      await b.click('#send button');
      await logHas(a, 'hello A');
      expect((await rows(a))[0]).toEqual([nameB, 'hello A']);

      // A reload shows the conversation from the SDK's history, same labels, newest first.
      await a.reload();
      await stateIs(a, /^online$/);
      expect(await myName(a)).toBe(nameA);
      await logHas(a, 'hello A');
      expect(await rows(a)).toEqual([
        [nameB, 'hello A'],
        [`you → ${nameB}`, 'hi B, this is A'],
        [demoWho, `Hello ${nameA}: end-to-end encrypted, the node only saw ciphertext.`],
      ]);
      await Promise.all([a.waitForLoadState('networkidle'), b.waitForLoadState('networkidle')]);
      expect(problems).toEqual([]);
    } finally {
      for (const c of contexts) await c.close();
      serve.stop();
      await node.close();
    }
  }, 180_000);
});

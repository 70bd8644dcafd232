/**
 * The conformance suite against the IndexedDB adapter in REAL headless Chromium: the suite and the
 * adapter are bundled with esbuild, served from 127.0.0.1 (a secure context, so Web Locks and
 * service workers are available), and run in the page by playwright-core. Every case is reported
 * back and asserted here one by one; a page/service-worker case checks cross-context serialisation.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, bundleForBrowser, requireChromium, skipWithoutChromium } from '../browser-harness.js';
import type { CaseResult } from './conformance.js';
import { conformanceCases } from './conformance.js';

const skip = skipWithoutChromium('the IndexedDB conformance suite');

const BROWSER_ONLY_CASES = [
  'page and service worker share one database: their writes are serialised (Web Locks)',
  'a database written by a newer SDK is refused (MW_SDK_STORAGE_SCHEMA_TOO_NEW)',
  'a schema-1 database (before app items) is upgraded in place: data kept, app items usable',
];
interface PageApi {
  run(): Promise<CaseResult[]>;
  crashStart(db: string): Promise<void>;
  crashCheck(db: string): Promise<{ a1: boolean; a2: boolean; writable: boolean }>;
}


describe.skipIf(skip)('ProtocolStorage conformance: indexeddb (headless Chromium)', () => {
  it('has a browser to run in', () => {
    requireChromium();
  });
  let server: Server | undefined;
  let browser: BrowserContext | undefined;
  let userDataDir: string | undefined;
  let page: Page | undefined;
  const results = new Map<string, CaseResult>();
  const pageErrors: string[] = [];

  beforeAll(async () => {
    const [pageJs, swJs] = await Promise.all([bundleForBrowser(new URL('./browser/entry.ts', import.meta.url)), bundleForBrowser(new URL('./browser/sw.ts', import.meta.url))]);
    const files: Record<string, [string, string]> = {
      '/': ['text/html', '<!doctype html><meta charset="utf-8"><title>loading</title><script type="module" src="/entry.js"></script>'],
      '/entry.js': ['text/javascript', pageJs],
      '/sw.js': ['text/javascript', swJs],
    };
    server = createServer((req, res) => {
      const f = files[req.url ?? ''];
      if (!f) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': f[0], 'cache-control': 'no-store' }).end(f[1]);
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;

    userDataDir = mkdtempSync(join(tmpdir(), 'mw-chromium-'));
    browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const p = (page = browser.pages()[0] ?? (await browser.newPage()));
    p.on('pageerror', (e) => pageErrors.push(String(e)));
    p.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
    await p.goto(`http://127.0.0.1:${port}/`);
    await p.waitForFunction(() => document.title === 'ready', undefined, { timeout: 30_000 });
    const list = await p.evaluate(() => (window as unknown as { __mwStorage: PageApi }).__mwStorage.run());
    for (const r of list) results.set(r.name, r);
    const summary = list.map((r) => `  ${r.status === 'passed' ? '✓' : r.status === 'skipped' ? '-' : '✗'} ${r.name} (${r.ms} ms)`).join('\n');
    console.log(`IndexedDB conformance in Chromium:\n${summary}`);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  });

  it('a page that dies mid-transaction (reload) commits nothing of it and leaves no lock behind', async () => {
    const p = page!;
    const db = `crash-${Date.now()}`;
    await p.evaluate((name) => (window as unknown as { __mwStorage: PageApi }).__mwStorage.crashStart(name), db);
    await p.reload();
    await p.waitForFunction(() => document.title === 'ready', undefined, { timeout: 30_000 });
    const after = await p.evaluate((name) => (window as unknown as { __mwStorage: PageApi }).__mwStorage.crashCheck(name), db);
    expect(after).toEqual({ a1: true, a2: false, writable: true });
  });

  for (const name of [...conformanceCases.map((c) => c.name), ...BROWSER_ONLY_CASES]) {
    it(name, () => {
      const r = results.get(name);
      expect(r, `case "${name}" did not run in the browser; page errors: ${pageErrors.join('; ')}`).toBeDefined();
      expect(r!.error ?? '', `failed in the browser`).toBe('');
      expect(r!.status).toBe('passed');
    });
  }
});

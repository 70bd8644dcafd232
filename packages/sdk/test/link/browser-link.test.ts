/**
 * Device linking browser ↔ Node: a NEW device in headless Chromium (IndexedDB, the browser's own
 * fetch and WebSocket) shows a link offer; an existing device of the account, in this Node process,
 * accepts it through a real node. The browser device then holds the account's history, receives a
 * contact's next message alongside the Node device, and what it sends appears on the Node device
 * as sent (own-device sync). The page and both Node clients reach the node through one same-origin
 * proxy (the node sends no CORS headers by default; the offer names the page's origin).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toHex } from '@meshwhisper/crypto';
import { bundleForBrowser, CHROMIUM, pageApiCaller, requireChromium, skipWithoutChromium } from '../browser-harness.js';
import type { SameOriginProxy } from '../client/browser/same-origin-proxy.js';
import { sameOriginProxy } from '../client/browser/same-origin-proxy.js';
import type { E2eNode } from '../client/test-node.js';
import { startE2eNode } from '../client/test-node.js';
import type { IncomingMessage } from '../../src/index.js';
import { MeshWhisper, memoryStorage } from '../../src/index.js';
import type { LinkPageApi } from './browser/link-entry.js';

const skip = skipWithoutChromium('the browser device-linking test');

describe.skipIf(skip)('linking a device in headless Chromium from a device in Node', () => {
  let t: E2eNode | undefined;
  let proxy: SameOriginProxy | undefined;
  let browser: BrowserContext | undefined;
  let page: Page | undefined;
  const clients: MeshWhisper[] = [];
  const work = mkdtempSync(join(tmpdir(), 'mw-sdk-browser-link-'));
  const pageErrors: string[] = [];

  const call = pageApiCaller<LinkPageApi>(() => page, '__mwLink');

  beforeAll(async () => {
    requireChromium();
    const pageJs = await bundleForBrowser(new URL('./browser/link-entry.ts', import.meta.url));
    t = await startE2eNode();
    proxy = await sameOriginProxy(Number(new URL(t.url).port), {
      '/': ['text/html', '<!doctype html><meta charset="utf-8"><title>loading</title><script type="module" src="/entry.js"></script>'],
      '/entry.js': ['text/javascript', pageJs],
    });
    browser = await chromium.launchPersistentContext(join(work, 'chromium'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const p = (page = browser.pages()[0] ?? (await browser.newPage()));
    p.on('pageerror', (e) => pageErrors.push(String(e)));
    await p.goto(`${proxy.url}/`);
    await p.waitForFunction(() => document.title === 'ready', undefined, { timeout: 30_000 });
  }, 120_000);

  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
    await proxy?.close();
    await t?.close();
    rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it('links, copies history, fans out to both devices and mirrors what the browser device sends', async () => {
    const opts = { node: proxy!.url, namespace: 'test', receiptDelay: { minDelayMs: 0, maxDelayMs: 0 } };
    const a = await MeshWhisper.create({ ...opts, storage: await memoryStorage() });
    const carol = await MeshWhisper.create({ ...opts, storage: await memoryStorage() });
    clients.push(a, carol);
    const got = carol.once('message', (m) => m.text === 'before the link');
    await a.sendText({ accountKey: carol.accountKey }, 'before the link');
    await got;

    const { payload, svgLength } = await call((api, db) => api.offer(db), 'browser-link');
    expect(svgLength).toBeGreaterThan(1000);
    const linked = call((api, peer) => api.linked(peer), toHex(carol.accountKey));
    const accepted = await a.acceptLinkOffer(Uint8Array.from(Buffer.from(payload, 'hex')), { history: true });
    const l = await linked;
    expect(l.accountKey).toBe(toHex(a.accountKey));
    expect(l.mailboxId).toBe(toHex(accepted.mailboxId));
    expect(l.deviceIndex).toBe(accepted.deviceIndex);
    expect(l.history).toEqual(['before the link']);

    // Carol → the account: both the Node device and the browser device get it.
    const onA = a.once('message', (m) => m.text === 'hello, both devices', 20_000);
    await carol.sendText({ accountKey: a.accountKey }, 'hello, both devices');
    await onA;
    const inBrowser = await call((api) => api.messages(1, 20_000), null);
    expect(inBrowser.map((m) => [m.text, m.outgoing])).toEqual([['hello, both devices', false]]);

    // Browser device → Carol: Carol gets it from the account; the Node device sees it as sent, same id.
    const atCarol = carol.once('message', (m) => m.text === 'from the browser', 20_000);
    const mirrored = a.once('message', (m: IncomingMessage) => m.outgoing && m.text === 'from the browser', 20_000);
    const id = await call((api, to) => api.sendText(to, 'from the browser'), toHex(carol.accountKey));
    const [c, m] = await Promise.all([atCarol, mirrored]);
    expect(toHex(c.author)).toBe(toHex(a.accountKey));
    expect(m.id).toBe(id);
    // At least 'sent': Carol answers at once (receiptDelay 0) with a delivery receipt to every
    // device of the account, which may reach A between the mirror and this read — then it is
    // already 'delivered'. (This line failed once, ~1.9 s into an otherwise normal run, under load.)
    expect(['sent', 'delivered']).toContain(await a.messageState(id));
    expect(pageErrors).toEqual([]);
  }, 90_000);
});

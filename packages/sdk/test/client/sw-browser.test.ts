/**
 * The push wake end to end into a REAL service worker: headless Chromium runs a page whose client
 * (IndexedDB storage) registers a Web Push subscription with a real node started here and goes
 * offline, and a service worker built from `@meshwhisper/sdk/service-worker` (esbuild bundle of
 * browser/push-sw.ts). A client in this Node process sends to the page's device; the node rings
 * the local HTTPS push endpoint (webpush-endpoint.ts); the test, playing the push service, decrypts
 * the RFC 8291 body with the subscription key and delivers the plaintext to the worker through the
 * DevTools protocol (`ServiceWorker.deliverPushMessage`). The worker opens the shared IndexedDB,
 * connects, decrypts, and the app's callback reports the message text to the page and returns the
 * notification, which the page then finds in `registration.getNotifications()`.
 *
 * The page, the worker and the node share one origin through a reverse proxy (the node has no CORS
 * yet; see browser-e2e.test.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, CDPSession, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import webpush from 'web-push';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleForBrowser, CHROMIUM, pageApiCaller, requireChromium, skipWithoutChromium } from '../browser-harness.js';
import { PUSH_WAKE_PAYLOAD } from '@meshwhisper/protocol';
import { GENERIC_NOTIFICATION_TAG, GENERIC_NOTIFICATION_TITLE } from '../../src/service-worker.js';
import { MeshWhisper, openSqliteStorage } from '../../src/index.js';
import type { SwReport, SwShownRecord } from './browser/push-sw.js';
import type { SameOriginProxy } from './browser/same-origin-proxy.js';
import { sameOriginProxy } from './browser/same-origin-proxy.js';
import type { SwPageApi } from './browser/sw-page.js';
import type { PushEndpoint, TestSubscription } from './webpush-endpoint.js';
import { decryptWebPush, settle, startPushEndpoint, subscription } from './webpush-endpoint.js';
import type { E2eNode } from './test-node.js';
import { startE2eNode } from './test-node.js';

const skip = skipWithoutChromium('the service worker push test');

const COALESCE_MS = 300;


describe.skipIf(skip)('service worker push wake in headless Chromium, through a real node', () => {
  const work = mkdtempSync(join(tmpdir(), 'mw-sdk-sw-'));
  const vapid = webpush.generateVAPIDKeys();
  let push: PushEndpoint | undefined;
  let t: E2eNode | undefined;
  let proxy: SameOriginProxy | undefined;
  let browser: BrowserContext | undefined;
  let page: Page | undefined;
  let cdp: CDPSession | undefined;
  let nodeClient: MeshWhisper | undefined;
  let sub: TestSubscription | undefined;
  let pageMailbox: Buffer | undefined;
  let registrationId = '';
  const registrations = new Map<string, string>(); // scope URL → registration id
  const pageErrors: string[] = [];

  const call = pageApiCaller<SwPageApi>(() => page, '__mwPush');

  /** Plays the push service: takes the node's next wake, decrypts it, hands the plaintext to the worker. */
  async function relayNextWake(): Promise<string> {
    await push!.waitForWakes(1, 15_000);
    const w = push!.wakes.shift()!;
    expect(w.path).toBe('/wake/page');
    const data = decryptWebPush(w.body, sub!);
    await cdp!.send('ServiceWorker.deliverPushMessage', { origin: new URL(proxy!.url).origin, registrationId, data });
    return data;
  }

  beforeAll(async () => {
    requireChromium();
    const [pageJs, swJs] = await Promise.all([bundleForBrowser(new URL('./browser/sw-page.ts', import.meta.url), 'esm'), bundleForBrowser(new URL('./browser/push-sw.ts', import.meta.url), 'iife')]);
    push = await startPushEndpoint();
    t = await startE2eNode(
      {
        LOG_LEVEL: 'silent',
        VAPID_PUBLIC_KEY: vapid.publicKey,
        VAPID_PRIVATE_KEY: vapid.privateKey,
        VAPID_SUBJECT: 'mailto:ops@example.org',
        WEBPUSH_ALLOWED_HOSTS: '127.0.0.1',
        PUSH_COALESCE_MS: String(COALESCE_MS),
      },
      { push: { ca: push.cert, retryDelayMs: () => 20 } },
    );
    const nodePort = Number(new URL(t.url).port);
    proxy = await sameOriginProxy(nodePort, {
      '/': ['text/html', '<!doctype html><meta charset="utf-8"><title>loading</title><script type="module" src="/sw-page.js"></script>'],
      '/sw-page.js': ['text/javascript', pageJs],
      '/push-sw.js': ['text/javascript', swJs],
    });

    browser = await chromium.launchPersistentContext(join(work, 'chromium'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    await browser.grantPermissions(['notifications'], { origin: proxy.url });
    const p = (page = browser.pages()[0] ?? (await browser.newPage()));
    p.on('pageerror', (e) => pageErrors.push(String(e)));
    cdp = await browser.newCDPSession(p);
    cdp.on('ServiceWorker.workerRegistrationUpdated', (e: { registrations: { registrationId: string; scopeURL: string; isDeleted: boolean }[] }) => {
      for (const r of e.registrations) {
        if (r.isDeleted) registrations.delete(r.scopeURL);
        else registrations.set(r.scopeURL, r.registrationId);
      }
    });
    await cdp.send('ServiceWorker.enable');
    await p.goto(`${proxy.url}/`);
    await p.waitForFunction(() => document.title === 'ready', undefined, { timeout: 30_000 });

    nodeClient = await MeshWhisper.create({ node: `http://127.0.0.1:${nodePort}`, namespace: 'sw-e2e', storage: await openSqliteStorage({ path: join(work, 'node-client.db') }) });
  }, 120_000);

  afterAll(async () => {
    await nodeClient?.close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
    await proxy?.close();
    await t?.close();
    await push?.close();
    rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it('the service worker is active, and the DevTools protocol names its registration', async () => {
    const scope = await call((api) => api.registerServiceWorker(), null);
    expect(scope).toBe(`${proxy!.url}/`);
    for (const deadline = Date.now() + 30_000; !registrations.has(scope) && Date.now() < deadline; ) await settle(20);
    registrationId = registrations.get(scope) ?? '';
    expect(registrationId).not.toBe('');
  });

  it('the page registers its device for Web Push and goes offline', async () => {
    sub = subscription(`${push!.url}/wake/page`);
    const device = await call((api, s) => api.registerDevice('sw-e2e-device', s) /* the worker opens the same IndexedDB (push-sw.ts SW_DB) */, sub.json);
    expect(device.mailboxId).toMatch(/^[0-9a-f]{64}$/);
    pageMailbox = Buffer.from(device.mailboxId, 'hex');
  });

  it('mail to the offline device → one wake → the worker fetches and decrypts → the app callback gets the text; its notification is shown', async () => {
    push!.wakes.length = 0;
    await nodeClient!.sendText(pageMailbox!, 'hello, sleeping page');
    expect(await relayNextWake()).toBe(PUSH_WAKE_PAYLOAD);
    const [report] = await call((api) => api.reports(1, 30_000), null);
    expect(report).toEqual<SwReport>({ texts: ['hello, sleeping page'], from: [nodeClient!.address], undecryptable: 0, timedOut: false });
    // The worker shows its notification after the app callback; on a loaded machine that took
    // longer than the 100 × 50 ms this loop used to allow. Wait on the condition, up to 30 s.
    // First the worker's own record: the browser's showNotification resolved (Chromium resolves
    // once the notification is displayed) with exactly this content…
    const want = { kind: 'shown', ok: true, title: '1 new message', body: 'hello, sleeping page', tag: 'sw-e2e' };
    let log: SwShownRecord[] = [];
    const isWanted = (r: SwShownRecord): boolean => r.kind === want.kind && r.ok && r.title === want.title && r.body === want.body && r.tag === want.tag;
    for (const deadline = Date.now() + 30_000; !log.some(isWanted) && Date.now() < deadline; ) {
      log = await call((api) => api.shownLog(), null);
      await settle(50);
    }
    expect(log.map(({ at: _at, ...r }) => r)).toContainEqual(want);
    // …then the browser's list of what is on screen (the app asks for requireInteraction: push-sw.ts).
    let shown: { title: string; body: string; tag: string }[] = [];
    for (const deadline = Date.now() + 30_000; shown.length === 0 && Date.now() < deadline; ) {
      shown = await call((api) => api.notifications(), null);
      if (shown.length === 0) await settle(50);
    }
    // On failure, say what became of the worker's showNotification calls ("never shown" vs "shown, then gone").
    expect(shown, `registration.showNotification calls: ${JSON.stringify(await call((api) => api.shownLog(), null))}`).toContainEqual({ title: '1 new message', body: 'hello, sleeping page', tag: 'sw-e2e' });
    expect(push!.wakes).toHaveLength(0); // exactly one wake for that mail
  });

  it('the worker resumes the same session next time; a throwing app callback still shows the generic notification', async () => {
    await settle(COALESCE_MS + 50);
    await nodeClient!.sendText(pageMailbox!, 'make the callback throw');
    await relayNextWake();
    const [report] = await call((api) => api.reports(1, 30_000), null);
    expect(report!.texts).toEqual(['make the callback throw']);
    let shown: { title: string; body: string; tag: string }[] = [];
    for (const deadline = Date.now() + 30_000; !shown.some((n) => n.tag === GENERIC_NOTIFICATION_TAG) && Date.now() < deadline; ) {
      shown = await call((api) => api.notifications(), null);
      await settle(50);
    }
    expect(shown, `registration.showNotification calls: ${JSON.stringify(await call((api) => api.shownLog(), null))}`).toContainEqual({ title: GENERIC_NOTIFICATION_TITLE, body: '', tag: GENERIC_NOTIFICATION_TAG });
    expect((await call((api) => api.shownLog(), null)).map(({ at: _at, ...r }) => r)).toContainEqual({ kind: 'shown', ok: true, title: GENERIC_NOTIFICATION_TITLE, tag: GENERIC_NOTIFICATION_TAG });
    expect(pageErrors).toEqual([]);
  });
});

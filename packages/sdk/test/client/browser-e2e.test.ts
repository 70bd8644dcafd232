/**
 * The SDK end to end in a REAL browser: a MeshWhisper client bundled with esbuild runs in headless
 * Chromium (IndexedDB storage, the browser's own WebSocket and fetch) and converses with a client
 * in this Node process (SQLite storage) through a real node started here: text both ways, a
 * ~200 KB binary payload both ways (bytes compared), then a page reload over the same IndexedDB
 * resumes the same identity and sessions.
 *
 * The node sends CORS headers only for origins in CORS_ORIGINS (empty by default, as here), so a
 * page on another origin cannot call it (the SDK's authenticated calls need a preflight). The page
 * is therefore served by a same-origin reverse proxy (./browser/same-origin-proxy.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import type { SameOriginProxy } from './browser/same-origin-proxy.js';
import { sameOriginProxy } from './browser/same-origin-proxy.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleForBrowser, CHROMIUM, pageApiCaller, requireChromium, skipWithoutChromium } from '../browser-harness.js';
import type { IncomingMessage, UndecryptableMessage } from '../../src/index.js';
import { MeshWhisper, openSqliteStorage } from '../../src/index.js';
import type { PageApi, PageMessage, PageStarted } from './browser/entry.js';
import type { E2eNode } from './test-node.js';
import { startE2eNode } from './test-node.js';

const skip = skipWithoutChromium('the SDK browser end-to-end test');

/** Just under the largest sealed envelope (256 KiB) once content framing and padding are added. */
const BINARY_BYTES = 200 * 1024;
/** An attachment of several media chunks (64 KiB each), so the download streams. */
const FILE_BYTES = 700 * 1024 + 123;
const DB = 'browser-e2e-client';


const b64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const ms = (t0: number): number => Math.round(performance.now() - t0);

describe.skipIf(skip)('SDK client in headless Chromium ↔ SDK client in Node, through a real node', () => {
  let node: E2eNode | undefined;
  let proxy: SameOriginProxy | undefined;
  let browser: BrowserContext | undefined;
  let page: Page | undefined;
  let nodeClient: MeshWhisper | undefined;
  let proxyUrl = '';
  let nodeUrl = '';
  let firstStart: PageStarted | undefined;
  let browserMailbox = '';
  let browserAddress = '';
  const work = mkdtempSync(join(tmpdir(), 'mw-sdk-browser-e2e-'));
  const pageErrors: string[] = [];
  const consoleErrors: string[] = [];
  const nodeInbox: IncomingMessage[] = [];
  const nodeUndecryptable: UndecryptableMessage[] = [];
  const timings: Record<string, number> = {};

  const call = pageApiCaller<PageApi>(() => page, '__mwClient');
  const waitReady = (): Promise<unknown> => page!.waitForFunction(() => document.title === 'ready', undefined, { timeout: 30_000 });
  const nextAtNode = (predicate: (m: IncomingMessage) => boolean): Promise<IncomingMessage> => nodeClient!.once('message', predicate, 30_000);

  beforeAll(async () => {
    requireChromium();
    let t0 = performance.now();
    const pageJs = await bundleForBrowser(new URL('./browser/entry.ts', import.meta.url));
    timings['bundle (esbuild)'] = ms(t0);

    // One SQLite node, or the three-instance cluster behind its balancer (MW_E2E_TARGET=cluster).
    // Both clients reach the node from 127.0.0.1 (the page through the proxy): open the
    // per-address buckets a handful of clients in one address would otherwise share.
    node = await startE2eNode({
      LOG_LEVEL: 'silent',
      RATE_LIMITS: 'send-first-contact=100:1000,send-first-contact-target=100:1000,auth=100:1000,ws-upgrade=100:1000,blob-upload=100:1000,blob-download=100:1000',
    });
    nodeUrl = node.url;
    const nodePort = Number(new URL(nodeUrl).port);
    proxy = await sameOriginProxy(nodePort, {
      '/': ['text/html', '<!doctype html><meta charset="utf-8"><title>loading</title><script type="module" src="/entry.js"></script>'],
      '/entry.js': ['text/javascript', pageJs],
    });
    proxyUrl = proxy.url;

    t0 = performance.now();
    browser = await chromium.launchPersistentContext(join(work, 'chromium'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const p = (page = browser.pages()[0] ?? (await browser.newPage()));
    p.on('pageerror', (e) => pageErrors.push(String(e)));
    p.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    await p.goto(`${proxyUrl}/`);
    await waitReady();
    timings['chromium launch + page load'] = ms(t0);

    t0 = performance.now();
    nodeClient = await MeshWhisper.create({ node: nodeUrl, namespace: 'browser-e2e', storage: await openSqliteStorage({ path: join(work, 'node-client.db') }) });
    nodeClient.on('message', (m) => nodeInbox.push(m));
    nodeClient.on('undecryptable', (u) => nodeUndecryptable.push(u));
    timings['Node client create'] = ms(t0);

    t0 = performance.now();
    firstStart = await call((api, db) => api.start(db), DB);
    browserMailbox = firstStart.mailboxId;
    browserAddress = firstStart.address;
    timings['browser client create (keys generated, uploaded)'] = ms(t0);
  }, 120_000);

  afterAll(async () => {
    console.log(`SDK browser e2e timings (ms): ${JSON.stringify(timings)}`);
    if (consoleErrors.length) console.log(`browser console errors: ${consoleErrors.join(' | ')}`);
    await nodeClient?.close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
    await proxy?.close();
    await node?.close();
    rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it('the page runs a client with IndexedDB storage and the browser WebSocket, online through the node', async () => {
    expect(firstStart).toMatchObject({ resumed: false, nativeWebSocket: true });
    expect(browserMailbox).toMatch(/^[0-9a-f]{64}$/);
    expect(browserMailbox).not.toBe(hex(nodeClient!.mailboxId));
    await page!.waitForFunction(() => (window as unknown as { __mwClient: PageApi }).__mwClient.connectionState() === 'online', undefined, { timeout: 15_000 });
    expect(await call((api) => api.synced(15_000), null)).toBe(true);
  });

  it('Node → browser text (first contact: PQXDH on the Node side), browser → Node reply on the same session', async () => {
    let t0 = performance.now();
    await nodeClient!.sendText(Buffer.from(browserMailbox, 'hex'), 'hello browser, this is Node');
    const [got] = await call((api) => api.messages(1, 20_000), null);
    timings['text Node→browser (first contact)'] = ms(t0);
    expect(got).toMatchObject({ text: 'hello browser, this is Node', from: nodeClient!.address, fromMailboxId: hex(nodeClient!.mailboxId) });
    expect(got!.binary).toBeUndefined();

    t0 = performance.now();
    const reply = nextAtNode((m) => m.text !== undefined);
    const id = await call((api, [to, text]) => api.sendText(to, text), [got!.fromMailboxId, 'hello Node, the browser here'] as const);
    const m = await reply;
    timings['text browser→Node (reply)'] = ms(t0);
    expect(m.text).toBe('hello Node, the browser here');
    expect(m.id).toBe(id);
    expect(m.from).toBe(browserAddress);
    expect(hex(m.fromMailboxId)).toBe(browserMailbox);
  });

  it(`a ${BINARY_BYTES}-byte binary payload Node → browser arrives byte for byte`, async () => {
    const data = randomBytes(BINARY_BYTES);
    const t0 = performance.now();
    await nodeClient!.sendBinary(Buffer.from(browserMailbox, 'hex'), data, 'application/x-mw-test');
    const [got] = await call((api) => api.messages(1, 30_000), null);
    timings[`binary ${BINARY_BYTES} B Node→browser`] = ms(t0);
    expect(got?.binary).toMatchObject({ mimeType: 'application/x-mw-test', length: BINARY_BYTES });
    expect(got!.text).toBeUndefined();
    expect(Buffer.from(got!.binary!.base64, 'base64').equals(data)).toBe(true);
  });

  it(`a ${BINARY_BYTES}-byte binary payload browser → Node arrives byte for byte`, async () => {
    const data = randomBytes(BINARY_BYTES);
    const t0 = performance.now();
    const arrived = nextAtNode((m) => m.binary !== undefined);
    const id = await call((api, [to, d]) => api.sendBinary(to, d, 'image/x-mw-test'), [hex(nodeClient!.mailboxId), b64(data)] as const);
    const m = await arrived;
    timings[`binary ${BINARY_BYTES} B browser→Node`] = ms(t0);
    expect(m.id).toBe(id);
    expect(m.from).toBe(browserAddress);
    expect(m.binary!.mimeType).toBe('image/x-mw-test');
    expect(Buffer.from(m.binary!.data).equals(data)).toBe(true);
  });

  it('a file Node → browser: uploaded encrypted, downloaded and verified as a stream in the page', async () => {
    const data = randomBytes(FILE_BYTES);
    const t0 = performance.now();
    await nodeClient!.sendFile(Buffer.from(browserMailbox, 'hex'), data, { mimeType: 'application/pdf', name: 'report.pdf' });
    const [got] = await call((api) => api.messages(1, 30_000), null);
    expect(got?.file).toEqual({ name: 'report.pdf', mimeType: 'application/pdf', size: FILE_BYTES });
    const dl = await call((api, id) => api.downloadFile(id), got!.id);
    timings[`file ${FILE_BYTES} B Node→browser (upload, message, download)`] = ms(t0);
    expect(dl.chunks).toBeGreaterThan(1); // streamed in verified chunks, not one piece
    expect(Buffer.from(dl.base64, 'base64').equals(data)).toBe(true);
  });

  it('a file browser → Node: encrypted in the page, uploaded (buffered: no streamed uploads over HTTP/1.1), verified at Node', async () => {
    const data = randomBytes(FILE_BYTES);
    const t0 = performance.now();
    const arrived = nextAtNode((m) => m.file !== undefined);
    const id = await call((api, [to, d]) => api.sendFile(to, d, 'image/png', 'photo.png'), [hex(nodeClient!.mailboxId), b64(data)] as const);
    const m = await arrived;
    expect(m.id).toBe(id);
    expect(m.file).toMatchObject({ name: 'photo.png', mimeType: 'image/png', size: FILE_BYTES });
    const bytes = await nodeClient!.downloadFileBytes(m.file!);
    timings[`file ${FILE_BYTES} B browser→Node`] = ms(t0);
    expect(Buffer.from(bytes).equals(data)).toBe(true);
  });

  it('after a page reload over the same IndexedDB: same identity, mail sent meanwhile arrives, the session goes on both ways', async () => {
    const t0 = performance.now();
    await page!.reload();
    await waitReady();
    // The page has no client now: the node queues this for the browser's mailbox. It travels on
    // the established session (no PQXDH header), so the page opens it only if the ratchet state
    // came back from IndexedDB (checked by mutation: blanking the stored sessions fails this test).
    await nodeClient!.sendText(Buffer.from(browserMailbox, 'hex'), 'sent while the page was away');
    const again = await call((api, db) => api.start(db), DB);
    timings['reload + browser client resume'] = ms(t0);
    expect(again).toMatchObject({ mailboxId: browserMailbox, address: browserAddress, resumed: true });
    expect(await call((api) => api.synced(20_000), null)).toBe(true);
    const backlog = await call((api) => api.messages(1, 20_000), null);
    expect(backlog.map((m: PageMessage) => m.text)).toEqual(['sent while the page was away']);

    // And the resumed ratchet goes on in both directions.
    const reply = nextAtNode((m) => m.text === 'back after the reload');
    await call((api, to) => api.sendText(to, 'back after the reload'), hex(nodeClient!.mailboxId));
    expect((await reply).from).toBe(browserAddress);
    await nodeClient!.sendText(Buffer.from(browserMailbox, 'hex'), 'welcome back');
    const after = await call((api) => api.messages(1, 20_000), null);
    expect(after.map((m: PageMessage) => m.text)).toEqual(['welcome back']);
  });

  it('nothing was undecryptable or shown twice on either side, and the page threw nothing', async () => {
    expect(await call((api) => api.undecryptable(), null)).toEqual([]);
    expect(nodeUndecryptable).toEqual([]);
    expect(await call((api) => api.messages(0, 0), null)).toEqual([]); // no duplicates left over in the page
    await nodeClient!.idle();
    expect(nodeInbox.map((m) => m.text ?? (m.file ? `<file ${m.file.name}>` : `<${m.binary?.data.length} bytes>`))).toEqual([
      'hello Node, the browser here',
      `<${BINARY_BYTES} bytes>`,
      '<file photo.png>',
      'back after the reload',
    ]);
    expect(new Set(nodeInbox.map((m) => m.id)).size).toBe(nodeInbox.length);
    expect(pageErrors).toEqual([]);
  });

  it('finding: a page on another origin cannot call the node (no CORS); this test reaches it through the same-origin proxy', async () => {
    // Documents the current node behaviour; when the node gains configurable allowed origins this
    // flips, and the proxy above should be dropped in favour of talking to the node directly.
    const probe = await call((api, url) => api.crossOriginProbe(url), nodeUrl);
    console.log(`cross-origin probe from ${proxyUrl} to ${nodeUrl}: ${JSON.stringify(probe)}`);
    const preflight = await node!.node.app.inject({
      method: 'OPTIONS',
      url: '/v1/keys',
      headers: { origin: proxyUrl, 'access-control-request-method': 'PUT', 'access-control-request-headers': 'content-type,mw-auth' },
    });
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
    expect(probe.authedPreflight).toMatch(/^blocked/);
  });
});

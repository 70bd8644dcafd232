/**
 * A group with a member in a REAL browser: a client bundled with esbuild runs in headless Chromium
 * (IndexedDB storage, the browser's WebSocket and fetch, behind a same-origin proxy to a real node)
 * and is one of three members with two Node clients (SQLite files). It is added at creation, reads
 * the group's messages, sends one that both Node members read, sees a rename and a kick of another
 * member, and keeps reading afterwards (its key arrives after the rekey).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromHex, toHex } from '@meshwhisper/crypto';
import { bundleForBrowser, CHROMIUM, pageApiCaller, requireChromium, skipWithoutChromium } from '../browser-harness.js';
import { MeshWhisper, openSqliteStorage } from '../../src/index.js';
import type { GroupPageApi } from './browser/groups-entry.js';
import type { SameOriginProxy } from './browser/same-origin-proxy.js';
import { sameOriginProxy } from './browser/same-origin-proxy.js';
import type { E2eNode } from './test-node.js';
import { startE2eNode } from './test-node.js';

const skip = skipWithoutChromium('the SDK groups browser test');

describe.skipIf(skip)('a group member in headless Chromium with two Node members, through a real node', () => {
  let node: E2eNode | undefined;
  let proxy: SameOriginProxy | undefined;
  let browser: BrowserContext | undefined;
  let page: Page | undefined;
  const clients: MeshWhisper[] = [];
  const work = mkdtempSync(join(tmpdir(), 'mw-sdk-groups-browser-'));
  const pageErrors: string[] = [];

  const call = pageApiCaller<GroupPageApi>(() => page, '__mwGroups');

  beforeAll(async () => {
    requireChromium();
    const pageJs = await bundleForBrowser(new URL('./browser/groups-entry.ts', import.meta.url));
    // One SQLite node, or the three-instance cluster behind its balancer (MW_E2E_TARGET=cluster).
    node = await startE2eNode({ LOG_LEVEL: 'silent', USERNAME_NAMESPACES: 'groups-browser:signed' });
    const nodePort = Number(new URL(node.url).port);
    proxy = await sameOriginProxy(nodePort, {
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
    for (const name of ['alice', 'bob']) {
      clients.push(await MeshWhisper.create({ node: `http://127.0.0.1:${nodePort}`, namespace: 'groups-browser', storage: await openSqliteStorage({ path: join(work, `${name}.sqlite`) }), receiptDelay: { minDelayMs: 0, maxDelayMs: 50 } }));
    }
  }, 120_000);

  afterAll(async () => {
    await call((api) => api.close(), null).catch(() => undefined);
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await browser?.close().catch(() => undefined);
    await proxy?.close();
    await node?.close();
    rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it('the browser member reads, writes, sees membership changes and keeps reading after a rekey', async () => {
    const [alice, bob] = clients as [MeshWhisper, MeshWhisper];
    const started = await call((api, db) => api.start(db), 'groups-browser');
    const browserAccount = fromHex(started.accountKey);
    const g = await alice.groups.create('with a browser', [bob.accountKey, browserAccount]);
    const gh = toHex(g.groupId);
    expect(await call((api, [id, ms]) => api.joined(id, ms), [gh, 30_000] as const)).toBe('with a browser');

    await alice.sendText({ kind: 'group', groupId: g.groupId }, 'hello browser');
    expect(await call((api, [id, n, ms]) => api.texts(id, n, ms), [gh, 1, 30_000] as const)).toEqual(['hello browser']);

    const atAlice = alice.once('message', (m) => m.text === 'from the browser', 30_000);
    const atBob = bob.once('message', (m) => m.text === 'from the browser', 30_000);
    const id = await call((api, [gid, text]) => api.send(gid, text), [gh, 'from the browser'] as const);
    const [ma, mb] = await Promise.all([atAlice, atBob]);
    expect(ma.id).toBe(id);
    expect(toHex(mb.author)).toBe(started.accountKey);

    // Rename and kick bob: the browser converges, and still reads alice's next message (new key).
    await alice.groups.rename(g.groupId, 'renamed');
    const after = await alice.groups.kick(g.groupId, bob.accountKey);
    expect(await call((api, [gid, d, ms]) => api.converged(gid, d, ms), [gh, after.digest, 30_000] as const)).toBe(true);
    expect(await call((api, gid) => api.info(gid), gh)).toEqual({ name: 'renamed', members: 2, digest: after.digest, isMember: true });
    await alice.sendText({ kind: 'group', groupId: g.groupId }, 'after the kick');
    expect(await call((api, [gid, n, ms]) => api.texts(gid, n, ms), [gh, 3, 30_000] as const)).toEqual(['hello browser', 'from the browser', 'after the kick']);
    expect((await bob.history({ kind: 'group', groupId: g.groupId })).map((m) => m.text)).not.toContain('after the kick');
    expect(pageErrors).toEqual([]);
  });
});

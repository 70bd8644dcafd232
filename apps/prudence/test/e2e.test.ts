/**
 * Prudence end to end: three people (browser contexts at phone size) chat through a real node that
 * serves the freshly built app at `/` with its strict CSP. Steps share state and run in order:
 * register; add a contact by username and one by QR payload; a request accepted; messages with
 * receipts; a reload mid-conversation; the recipient offline and back; an image with thumbnail and
 * progress both ways; reactions, reply, edit, delete, forward; safety numbers matching; unread
 * counts; search; a push wake delivered to the service worker (DevTools protocol); axe-core and
 * keyboard checks on every main screen; screenshots for docs/prudence.md.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import type { Browser, CDPSession, Worker } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PUSH_WAKE_PAYLOAD } from '@meshwhisper/protocol';
import { SW_CLOSE_GRACE_MS, SW_PUSH_TIMEOUT_MS } from '@meshwhisper/sdk/service-worker';
import type { E2eNode } from '../../../packages/sdk/test/client/test-node.js';
import type { Person } from './harness.js';
import {
  axeViolations,
  buildPrudence,
  checkKeyboardAndWidth,
  compose,
  go,
  launchCameraChromium,
  launchChromium,
  launchProfile,
  newPerson,
  register,
  reopen,
  requireChromium,
  screenshot,
  screenshotDir,
  skipWithoutChromium,
  startPrudenceNode,
  stateOf,
  texts,
  waitForText,
  writeQrY4m,
} from './harness.js';

const skip = skipWithoutChromium('the Prudence end-to-end suite');

/** A PNG of w×h noisy pixels (large enough that upload and download show progress). */
function noisyPng(w: number, h: number): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer): number => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  ihdr[9] = 2; // RGB
  const raw = Buffer.alloc((w * 3 + 1) * h);
  let seed = 12345;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w * 3; x++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      raw[y * (w * 3 + 1) + 1 + x] = (x < w * 1.5 ? 40 : 180) + (seed % 60);
    }
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 0 })), chunk('IEND', Buffer.alloc(0))]);
}

describe.skipIf(skip)('Prudence in headless Chromium, through a real node', () => {
  const work = mkdtempSync(join(tmpdir(), 'prudence-e2e-'));
  const shots = screenshotDir(work);
  let node: E2eNode | undefined;
  let browser: Browser | undefined;
  let url = '';
  let alice: Person;
  let bob: Person;
  let carol: Person;
  /** People in the camera browser (device linking): checked for page errors at the end too. */
  const others: Person[] = [];
  let camera: Browser | undefined;
  const openChat = async (p: Person, name: string): Promise<void> => {
    await go(p, '#/');
    await p.page.locator('a.conversation', { hasText: name }).first().click();
    await p.page.getByTestId('chat-name').filter({ hasText: name }).waitFor();
  };
  const send = async (p: Person, text: string): Promise<void> => {
    await compose(p, text);
    await p.page.getByRole('button', { name: 'Send' }).click();
    await waitForText(p, text);
  };
  const accessible = async (p: Person, screen: string): Promise<void> => {
    expect(await axeViolations(p.page), `axe on ${screen}`).toEqual([]);
    await checkKeyboardAndWidth(p.page);
  };

  beforeAll(async () => {
    requireChromium();
    const dist = join(work, 'dist');
    await buildPrudence(dist);
    node = await startPrudenceNode(dist);
    url = node.url;
    browser = await launchChromium();
  }, 120_000);

  afterEach(async (ctx) => {
    // A failed step leaves a picture of every open page next to the others, for the log reader.
    if (ctx.task.result?.state !== 'fail') return;
    const failures = join(tmpdir(), 'prudence-e2e-failures');
    mkdirSync(failures, { recursive: true });
    for (const p of [alice, bob, carol]) if (p && !p.page.isClosed()) await screenshot(p.page, failures, `failed-${ctx.task.name.slice(0, 30).replace(/\W+/g, '-')}-${p.name}`).catch(() => undefined);
    console.warn(`screenshots of the failed step in ${failures}`);
    // A step that failed between closing and reopening a page must not fail the next steps with it.
    for (const p of [alice, bob, carol]) if (p && p.page.isClosed()) await reopen(p, url, '#/').catch(() => undefined);
  });

  afterAll(async () => {
    await camera?.close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
    await node?.close();
    rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it('the node serves Prudence at / with a strict Content-Security-Policy', async () => {
    const res = await fetch(`${url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(await res.text()).toContain('<title>Prudence</title>');
    const sw = await fetch(`${url}/sw.js`);
    expect(sw.status).toBe(200);
    expect(await fetch(`${url}/manifest.webmanifest`).then((r) => r.json())).toMatchObject({ name: 'Prudence', display: 'standalone' });
  });

  it('three people create accounts; the welcome screen is accessible', async () => {
    [alice, bob, carol] = (await Promise.all(['alice', 'bob', 'carol'].map((n) => newPerson(browser!, url, n)))) as [Person, Person, Person];
    await alice.page.getByLabel('Choose a username').waitFor();
    await accessible(alice, 'welcome');
    await screenshot(alice.page, shots, 'welcome');
    await Promise.all([register(alice), register(bob), register(carol)]);
    await accessible(alice, 'empty chat list');
  });

  it('Chromium finds Prudence installable (manifest, icons, service worker, start URL)', async () => {
    // In an ordinary profile: Chromium never offers to install from an off-the-record context.
    const profile = await launchProfile(join(work, 'installable-profile'));
    try {
      const page = profile.pages()[0] ?? (await profile.newPage());
      await page.goto(`${url}/`);
      const cdp = await profile.newCDPSession(page);
      // Chromium's own check, the one behind its "Install app" prompt; the worker registers after the first load.
      const installable = async (): Promise<string[]> => ((await cdp.send('Page.getInstallabilityErrors')) as { installabilityErrors: { errorId: string }[] }).installabilityErrors.map((e) => e.errorId);
      await expect.poll(installable, { timeout: 30_000 }).toEqual([]);
    } finally {
      await profile.close();
    }
  });

  it('alice adds bob by username and writes; bob gets a request named "alice", accepts and answers', async () => {
    await go(alice, '#/add');
    await alice.page.getByLabel('Their username').fill('bob');
    await alice.page.getByRole('button', { name: 'Start chat' }).click();
    await alice.page.getByTestId('chat-name').filter({ hasText: 'bob' }).waitFor();
    await send(alice, 'hello bob');
    await bob.page.getByRole('heading', { name: 'Contact requests' }).waitFor({ timeout: 30_000 });
    await bob.page.locator('a.conversation', { hasText: 'alice' }).waitFor({ timeout: 30_000 });
    await openChat(bob, 'alice');
    await waitForText(bob, 'hello bob');
    await accessible(bob, 'contact request');
    await bob.page.getByRole('button', { name: 'Accept' }).click();
    await bob.page.getByRole('button', { name: 'Accept' }).waitFor({ state: 'detached' });
    await send(bob, 'hi alice');
    await waitForText(alice, 'hi alice');
    // bob read it with the chat open: alice sees "read".
    await expect.poll(() => stateOf(alice, 'hello bob'), { timeout: 30_000 }).toBe('read');
  });

  it('carol adds alice by the QR payload of alice’s code, and alice sees the request', async () => {
    await go(alice, '#/add');
    const card = await alice.page.getByTestId('my-card').inputValue();
    expect(card).toMatch(/^mwc1:/);
    await alice.page.locator('img.qr').waitFor();
    await accessible(alice, 'new chat');
    await screenshot(alice.page, shots, 'new-chat');
    await go(carol, '#/add');
    await carol.page.getByLabel('Or paste their code (mwc1:…)').fill(card);
    await carol.page.getByRole('button', { name: 'Add', exact: true }).click();
    await carol.page.getByTestId('chat-name').filter({ hasText: 'alice' }).waitFor();
    await send(carol, 'hi from carol');
    await go(alice, '#/');
    await alice.page.locator('a.conversation', { hasText: 'carol' }).waitFor({ timeout: 30_000 });
    await expect.poll(() => alice.page.locator('a.conversation', { hasText: 'carol' }).getByTestId('unread').textContent()).toBe('1');
  });

  it('bob reloads mid-conversation: the same chat and its history come back, and it goes on', async () => {
    const before = await texts(bob);
    await bob.page.reload();
    await bob.page.getByTestId('chat-name').filter({ hasText: 'alice' }).waitFor({ timeout: 30_000 });
    await waitForText(bob, 'hi alice');
    expect(await texts(bob)).toEqual(before);
    await send(bob, 'back after a reload');
    await openChat(alice, 'bob');
    await waitForText(alice, 'back after a reload');
  });

  it('bob goes offline; alice’s messages wait as "sent" and arrive, "delivered", when he is back', async () => {
    await bob.page.close();
    await openChat(alice, 'bob');
    await send(alice, 'while you were away');
    await expect.poll(() => stateOf(alice, 'while you were away'), { timeout: 30_000 }).toBe('sent');
    await reopen(bob, url, '#/');
    await expect.poll(() => bob.page.locator('a.conversation', { hasText: 'alice' }).getByTestId('unread').textContent(), { timeout: 30_000 }).toBe('1');
    await openChat(bob, 'alice');
    await waitForText(bob, 'while you were away');
    await expect.poll(() => stateOf(alice, 'while you were away'), { timeout: 30_000 }).toMatch(/delivered|read/);
  });

  it('an image: alice sees upload progress, bob the thumbnail, then download progress and the same bytes', async () => {
    const png = noisyPng(900, 700); // ≈1.9 MB
    await openChat(alice, 'bob');
    const watchProgress = (p: Person, testId: string) =>
      p.page.evaluate((id) => {
        const seen: number[] = [];
        (window as unknown as { __progress: number[] }).__progress = seen;
        new MutationObserver(() => {
          for (const el of document.querySelectorAll<HTMLProgressElement>(`[data-testid="${id}"]`)) seen.push(el.value / el.max);
        }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['value'] });
      }, testId);
    const progressSeen = (p: Person) => p.page.evaluate(() => (window as unknown as { __progress: number[] }).__progress);
    await watchProgress(alice, 'upload-progress');
    await alice.page.locator('#attach').setInputFiles({ name: 'noise.png', mimeType: 'image/png', buffer: png });
    await alice.page.locator('.message.outgoing .file-name', { hasText: 'noise.png' }).waitFor({ timeout: 60_000 });
    const up = await progressSeen(alice);
    expect(up.length, JSON.stringify(up)).toBeGreaterThan(0);
    expect(up.some((v) => v > 0 && v < 1), JSON.stringify(up)).toBe(true);
    await bob.page.locator('.message.incoming [data-testid="thumbnail"]').waitFor({ timeout: 30_000 });
    // In the DOM is not yet decoded: wait for the decode (a broken image rejects it, and fails here).
    const thumbOk = await bob.page
      .locator('.message.incoming [data-testid="thumbnail"]')
      .evaluate((img: HTMLImageElement) => img.decode().then(() => img.naturalWidth > 0, () => false));
    expect(thumbOk).toBe(true);
    await watchProgress(bob, 'download-progress');
    const download = bob.page.waitForEvent('download');
    await bob.page.getByTestId('download').last().click();
    const saved = await (await download).path();
    expect(Buffer.compare(readFileSync(saved), png)).toBe(0);
    await bob.page.locator('.message.incoming [data-testid="image"]').waitFor();
    const down = await progressSeen(bob);
    expect(down.some((v) => v > 0 && v < 1)).toBe(true);
  });

  it('reactions, a quoted reply, an edit, a delete for everyone and a forward reach the other side', async () => {
    await openChat(bob, 'alice');
    const msg = bob.page.locator('.message.incoming', { has: bob.page.locator('.text', { hasText: 'while you were away' }) });
    await msg.getByRole('button', { name: /Actions for/ }).click();
    await accessible(bob, 'message actions');
    await screenshot(bob.page, shots, 'message-actions');
    await bob.page.getByRole('button', { name: 'React 👍' }).click();
    const aliceMsg = alice.page.locator('.message.outgoing', { has: alice.page.locator('.text', { hasText: 'while you were away' }) });
    await aliceMsg.locator('.reaction', { hasText: '👍' }).waitFor({ timeout: 30_000 });

    await msg.getByRole('button', { name: /Actions for/ }).click();
    await bob.page.getByRole('button', { name: 'Reply' }).click();
    await send(bob, 'a reply with a quote');
    await alice.page.locator('.message.incoming', { has: alice.page.locator('.text', { hasText: 'a reply with a quote' }) }).locator('.quote', { hasText: 'while you were away' }).waitFor({ timeout: 30_000 });

    await send(bob, 'tpyo');
    const typo = bob.page.locator('.message.outgoing', { has: bob.page.locator('.text', { hasText: 'tpyo' }) });
    await typo.getByRole('button', { name: /Actions for/ }).click();
    await bob.page.getByRole('button', { name: 'Edit' }).click();
    await compose(bob, 'typo fixed');
    await bob.page.getByRole('button', { name: 'Save' }).click();
    await waitForText(alice, 'typo fixed');
    await alice.page.locator('.message.incoming', { has: alice.page.locator('.text', { hasText: 'typo fixed' }) }).locator('.meta', { hasText: 'edited' }).waitFor();

    await send(bob, 'regrettable');
    await waitForText(alice, 'regrettable');
    const regret = bob.page.locator('.message.outgoing', { has: bob.page.locator('.text', { hasText: 'regrettable' }) });
    await regret.getByRole('button', { name: /Actions for/ }).click();
    await bob.page.getByRole('button', { name: 'Delete for everyone' }).click();
    await expect.poll(() => texts(alice), { timeout: 30_000 }).not.toContain('regrettable');
    await alice.page.locator('.deleted').first().waitFor();

    // alice forwards bob's reply to carol (accept carol's request first).
    await openChat(alice, 'carol');
    await alice.page.getByRole('button', { name: 'Accept' }).click();
    await openChat(alice, 'bob');
    const reply = alice.page.locator('.message.incoming', { has: alice.page.locator('.text', { hasText: 'a reply with a quote' }) });
    await reply.getByRole('button', { name: /Actions for/ }).click();
    await alice.page.getByRole('button', { name: 'Forward' }).click();
    await alice.page.locator('dialog[open]').getByRole('button', { name: 'carol' }).click();
    await carol.page.locator('.message.incoming', { has: carol.page.locator('.text', { hasText: 'a reply with a quote' }) }).locator('.meta', { hasText: 'Forwarded' }).waitFor({ timeout: 30_000 });
    await openChat(bob, 'alice');
    await accessible(bob, 'conversation');
    await screenshot(bob.page, shots, 'conversation');
  });

  it('typing and presence show in the header; the disappearing timer is shared', async () => {
    await openChat(alice, 'bob');
    await alice.page.getByRole('textbox', { name: 'Message' }).pressSequentially('abc');
    await bob.page.getByTestId('presence').filter({ hasText: 'typing' }).waitFor({ timeout: 30_000 });
    await alice.page.getByRole('textbox', { name: 'Message' }).fill('');
    await alice.page.getByRole('button', { name: 'Conversation settings' }).click();
    await alice.page.getByLabel('Disappearing messages').selectOption('3600');
    await bob.page.locator('.chip', { hasText: 'Disappearing after 1 h' }).waitFor({ timeout: 30_000 });
    await accessible(alice, 'conversation settings');
    await alice.page.getByRole('button', { name: 'Close' }).click();
  });

  it('safety numbers: both see the same digits, and bob’s pasted code matches on alice’s screen', async () => {
    const bobPeer = await alice.page.evaluate(() => location.hash.split('/')[2]!);
    await go(alice, `#/safety/${bobPeer}`);
    await openChat(bob, 'alice');
    const alicePeer = await bob.page.evaluate(() => location.hash.split('/')[2]!);
    await go(bob, `#/safety/${alicePeer}`);
    const digitsA = await alice.page.getByTestId('safety-digits').textContent();
    const digitsB = await bob.page.getByTestId('safety-digits').textContent();
    expect(digitsA).toMatch(/^\d{60}$/);
    expect(digitsA).toBe(digitsB);
    const code = await bob.page.getByTestId('safety-code').inputValue();
    await alice.page.getByLabel('Or paste their code').fill(code);
    await alice.page.getByRole('button', { name: 'Compare' }).click();
    await alice.page.getByTestId('safety-result').filter({ hasText: 'Safety numbers match' }).waitFor();
    await accessible(alice, 'safety number');
    await screenshot(alice.page, shots, 'safety-number');
  });

  it('search finds messages; settings and the chat list (with unread counts) are accessible', async () => {
    await go(alice, '#/search');
    await alice.page.getByLabel('Search your messages (on this device only)').fill('REPLY');
    await alice.page.getByRole('button', { name: 'Search' }).click();
    await alice.page.getByTestId('search-result').filter({ hasText: 'a reply with a quote' }).first().waitFor();
    await accessible(alice, 'search');
    await screenshot(alice.page, shots, 'search');
    await go(alice, '#/settings');
    await alice.page.getByTestId('push-status').filter({ hasNotText: 'Checking' }).waitFor();
    await accessible(alice, 'settings');
    await screenshot(alice.page, shots, 'settings');
    await send(carol, 'unread one');
    await send(carol, 'unread two');
    await go(alice, '#/');
    await expect.poll(() => alice.page.locator('a.conversation', { hasText: 'carol' }).getByTestId('unread').textContent(), { timeout: 30_000 }).toBe('2');
    await accessible(alice, 'chat list');
    await screenshot(alice.page, shots, 'chat-list');
  });

  it('a push wake reaches bob’s service worker: it fetches, decrypts, and notifies with the text', async () => {
    // The worker may take up to SW_PUSH_TIMEOUT_MS to fetch, SW_CLOSE_GRACE_MS to close and
    // SW_PUSH_TIMEOUT_MS again for the app's callback: the test waits longer than that worst case (a
    // loaded CI machine reaches it), never less.
    const wakeBudget = 2 * SW_PUSH_TIMEOUT_MS + SW_CLOSE_GRACE_MS + 15_000;
    const t0 = Date.now();
    // What the browser and the worker did, printed if no notification comes: the worker's running
    // states (DevTools) and its console (Prudence's worker logs each wake's outcome).
    const trace: string[] = [];
    const note = (line: string): void => void trace.push(`+${Date.now() - t0} ms ${line}`);
    const listen = (w: Worker): void => {
      note(`worker attached: ${w.url()}`);
      w.on('console', (m) => note(`worker console.${m.type()}: ${m.text()}`));
      w.on('close', () => note('worker closed'));
    };
    bob.context.serviceWorkers().forEach(listen);
    bob.context.on('serviceworker', listen);
    await bob.page.close();
    // A blank page gives a DevTools session without starting the app (which would fetch the mail itself).
    const blank = await bob.context.newPage();
    const cdp: CDPSession = await bob.context.newCDPSession(blank);
    const registrations = new Map<string, string>();
    cdp.on('ServiceWorker.workerRegistrationUpdated', (e: { registrations: { registrationId: string; scopeURL: string; isDeleted: boolean }[] }) => {
      for (const r of e.registrations) if (!r.isDeleted) registrations.set(r.scopeURL, r.registrationId);
    });
    cdp.on('ServiceWorker.workerVersionUpdated', (e: { versions: { versionId: string; runningStatus: string; status: string }[] }) => {
      for (const v of e.versions) note(`version ${v.versionId}: ${v.status}, ${v.runningStatus}`);
    });
    await cdp.send('ServiceWorker.enable');
    await expect.poll(() => registrations.get(`${url}/`), { timeout: 30_000 }).toBeDefined();
    await openChat(alice, 'bob');
    await send(alice, 'wake up, bob');
    await expect.poll(() => stateOf(alice, 'wake up, bob'), { timeout: 30_000 }).toBe('sent');
    note('push delivered');
    await cdp.send('ServiceWorker.deliverPushMessage', { origin: url, registrationId: registrations.get(`${url}/`)!, data: PUSH_WAKE_PAYLOAD });
    // Asks whichever worker runs now (the browser may have stopped the idle one and started another
    // for the push), each time afresh, and never waits on one ask: a worker stopped under an
    // evaluation may never answer it, and the next ask goes to its successor.
    const notifications = async (): Promise<string[]> => {
      const worker = bob.context.serviceWorkers().findLast((w) => w.url() === `${url}/sw.js`);
      if (!worker) return ['(no worker running)'];
      const ask = worker.evaluate(async () => (await (self as unknown as { registration: ServiceWorkerRegistration }).registration.getNotifications()).map((n) => `${n.title}|${n.body}`));
      ask.catch(() => undefined);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const silence = new Promise<string[]>((resolve) => (timer = setTimeout(() => resolve(['(the worker did not answer within 5 s)']), 5_000)));
      try {
        return await Promise.race([ask, silence]);
      } finally {
        clearTimeout(timer);
      }
    };
    try {
      await expect.poll(notifications, { timeout: wakeBudget, interval: 250 }).toContain('Prudence: alice|wake up, bob');
    } catch (e) {
      throw new Error(`${(e as Error).message}\nwhat the worker did:\n${trace.join('\n')}`, { cause: e });
    } finally {
      bob.context.off('serviceworker', listen);
    }
    await blank.close();
    // The worker stored what it decrypted: the app shows it (and its delivery receipt, if the worker
    // closed before sending it, goes out from the outbox now).
    await reopen(bob, url, '#/');
    await openChat(bob, 'alice');
    await waitForText(bob, 'wake up, bob');
    await expect.poll(() => stateOf(alice, 'wake up, bob'), { timeout: 30_000 }).toMatch(/delivered|read/);
  }, 180_000);

  it('offline, the service worker serves the app shell and Prudence opens with its history; back online, it reconnects by itself', async () => {
    await go(bob, '#/');
    await bob.context.setOffline(true);
    await bob.page.reload();
    // The SDK starts from IndexedDB without the node: the account, the list and the history are there.
    await bob.page.getByTestId('me').filter({ hasText: 'bob' }).waitFor({ timeout: 30_000 });
    await bob.page.locator('[data-connection="offline"]').waitFor({ timeout: 30_000 });
    await openChat(bob, 'alice');
    await waitForText(bob, 'wake up, bob');
    await accessible(bob, 'offline conversation');
    await openChat(alice, 'bob');
    await send(alice, 'sent while bob was offline');
    await bob.context.setOffline(false);
    await bob.page.locator('[data-connection="online"]').waitFor({ timeout: 60_000 });
    await waitForText(bob, 'sent while bob was offline', 60_000);
  });

  it('blocking hides what the blocked person sends; deleting an account returns to the welcome screen', async () => {
    await openChat(alice, 'carol');
    await alice.page.getByRole('button', { name: 'Conversation settings' }).click();
    await alice.page.locator('dialog[open]').getByRole('button', { name: 'Block' }).click();
    await alice.page.getByText('You blocked carol').waitFor();
    await openChat(carol, 'alice');
    await send(carol, 'sent while blocked');
    await alice.page.getByRole('button', { name: 'Conversation settings' }).click();
    await alice.page.locator('dialog[open]').getByRole('button', { name: 'Unblock' }).click();
    await send(carol, 'sent after unblock');
    await waitForText(alice, 'sent after unblock');
    expect(await texts(alice)).not.toContain('sent while blocked');

    await go(carol, '#/settings');
    await carol.page.getByRole('button', { name: 'Delete account…' }).click();
    await carol.page.getByLabel('Type your username (carol) to confirm').fill('carol');
    await carol.page.getByRole('button', { name: 'Delete everything' }).click();
    await carol.page.getByLabel('Choose a username').waitFor({ timeout: 30_000 });
    // The username is free again on the node.
    await register(carol);
  });

  it('"carol" now names another key: alice is warned, her send is held, and after accepting she writes to the new carol', async () => {
    await openChat(alice, 'carol');
    await compose(alice, 'are you still you?');
    await alice.page.getByRole('button', { name: 'Send' }).click();
    await alice.page.getByRole('alert').filter({ hasText: 'now has a different key' }).waitFor({ timeout: 30_000 });
    await alice.page.getByText('MW_SDK_IDENTITY_CHANGED').waitFor();
    await accessible(alice, 'key change warning');
    await screenshot(alice.page, shots, 'key-change');
    await go(alice, '#/');
    await alice.page.getByRole('alert').filter({ hasText: 'The safety number with carol has changed' }).waitFor();
    await alice.page.getByRole('link', { name: 'Review' }).click();
    await alice.page.getByRole('button', { name: 'Accept the new key' }).click();
    await alice.page.getByTestId('chat-name').filter({ hasText: 'carol' }).waitFor();
    await expect.poll(() => alice.page.locator('.messages .text').count()).toBe(0); // a new conversation
    await send(alice, 'hello, new carol');
    await carol.page.locator('a.conversation', { hasText: 'alice' }).waitFor({ timeout: 30_000 });
  });

  it('a second tab of the same profile takes over the connection; the first offers to take it back', async () => {
    const second = await alice.context.newPage();
    await second.goto(`${url}/`);
    await second.getByTestId('me').waitFor({ timeout: 30_000 });
    await alice.page.getByText('Prudence is open in another tab or window').waitFor({ timeout: 30_000 });
    await alice.page.getByRole('button', { name: 'Use Prudence here' }).click();
    await second.getByText('Prudence is open in another tab or window').waitFor({ timeout: 30_000 });
    await second.close();
    await openChat(alice, 'bob');
    await openChat(bob, 'alice');
    await send(bob, 'after the tab switch');
    await waitForText(alice, 'after the tab switch');
  });

  it('groups: alice creates one with bob (chosen) and carol (typed); all three write and read in it', async () => {
    await go(alice, '#/new-group');
    await alice.page.getByLabel('Group name').fill('Climbers');
    await alice.page.getByRole('checkbox', { name: 'bob' }).check();
    await alice.page.getByLabel(/Other members/).fill('carol');
    await accessible(alice, 'new group');
    await alice.page.getByRole('button', { name: 'Create group' }).click();
    await alice.page.getByTestId('chat-name').filter({ hasText: 'Climbers' }).waitFor({ timeout: 30_000 });
    await send(alice, 'hello, climbers');
    for (const p of [bob, carol]) {
      await go(p, '#/');
      await p.page.locator('a.conversation[data-kind="group"]', { hasText: 'Climbers' }).click({ timeout: 30_000 });
      await waitForText(p, 'hello, climbers');
    }
    await send(bob, 'bob is in');
    await waitForText(carol, 'bob is in');
    await waitForText(alice, 'bob is in');
    await alice.page.locator('.message.incoming', { has: alice.page.locator('.text', { hasText: 'bob is in' }) }).locator('.author', { hasText: 'bob' }).waitFor();
    await send(carol, 'carol too');
    await waitForText(alice, 'carol too');
    await waitForText(bob, 'carol too');
    await alice.page.getByRole('button', { name: 'Group members' }).click();
    await expect.poll(() => alice.page.getByTestId('group-members').locator('li').count()).toBe(3);
    await accessible(alice, 'group members');
    await alice.page.getByRole('button', { name: 'Close' }).click();
    await accessible(alice, 'group chat');
  });

  it('groups: per-member "seen by", reactions, a reply, an edit, a delete, a file, typing and the timer work as in a direct chat', async () => {
    const openGroup = async (p: Person, name: string): Promise<void> => {
      await go(p, '#/');
      await p.page.locator('a.conversation[data-kind="group"]', { hasText: name }).click({ timeout: 30_000 });
      await p.page.getByTestId('chat-name').filter({ hasText: name }).waitFor();
    };
    const message = (p: Person, text: string, dir: 'incoming' | 'outgoing') => p.page.locator(`.message.${dir}`, { has: p.page.locator('.text', { hasText: text }) }).first();
    for (const p of [alice, bob, carol]) await openGroup(p, 'Climbers');
    // alice sees who has received and read her message: both others opened the group, so both read it.
    await message(alice, 'hello, climbers', 'outgoing').getByRole('button', { name: /Actions for/ }).click();
    const seen = alice.page.getByTestId('seen-by');
    await expect.poll(() => seen.locator('li[data-state="read"]').count(), { timeout: 30_000 }).toBe(2);
    expect(await seen.textContent()).toMatch(/bob: Read/);
    await accessible(alice, 'group message actions with seen by');
    await alice.page.getByRole('button', { name: 'Close' }).click();

    await message(bob, 'hello, climbers', 'incoming').getByRole('button', { name: /Actions for/ }).click();
    await bob.page.getByRole('button', { name: 'React 👍' }).click();
    await message(alice, 'hello, climbers', 'outgoing').locator('.reaction', { hasText: '👍' }).waitFor({ timeout: 30_000 });
    await message(carol, 'hello, climbers', 'incoming').locator('.reaction', { hasText: '👍' }).waitFor({ timeout: 30_000 });

    await message(carol, 'bob is in', 'incoming').getByRole('button', { name: /Actions for/ }).click();
    await carol.page.getByRole('button', { name: 'Reply' }).click();
    await send(carol, 'welcome, bob');
    await message(alice, 'welcome, bob', 'incoming').locator('.quote', { hasText: 'bob is in' }).waitFor({ timeout: 30_000 });
    await message(alice, 'welcome, bob', 'incoming').getByTestId('author').filter({ hasText: 'carol' }).waitFor();

    await send(bob, 'grup tpyo');
    await message(bob, 'grup tpyo', 'outgoing').getByRole('button', { name: /Actions for/ }).click();
    await bob.page.getByRole('button', { name: 'Edit' }).click();
    await compose(bob, 'group typo fixed');
    await bob.page.getByRole('button', { name: 'Save' }).click();
    await message(carol, 'group typo fixed', 'incoming').locator('.meta', { hasText: 'edited' }).waitFor({ timeout: 30_000 });

    await message(carol, 'carol too', 'outgoing').getByRole('button', { name: /Actions for/ }).click();
    await carol.page.getByRole('button', { name: 'Delete for everyone' }).click();
    await expect.poll(() => texts(alice), { timeout: 30_000 }).not.toContain('carol too');
    await expect.poll(() => texts(bob), { timeout: 30_000 }).not.toContain('carol too');

    const png = noisyPng(120, 90);
    await alice.page.locator('#attach').setInputFiles({ name: 'crag.png', mimeType: 'image/png', buffer: png });
    for (const p of [bob, carol]) await p.page.locator('.message.incoming [data-testid="thumbnail"]').waitFor({ timeout: 30_000 });
    const download = carol.page.waitForEvent('download');
    await carol.page.locator('.message.incoming', { hasText: 'crag.png' }).getByTestId('download').click();
    expect(Buffer.compare(readFileSync(await (await download).path()), png)).toBe(0);

    await bob.page.getByRole('textbox', { name: 'Message' }).pressSequentially('abc');
    await alice.page.getByTestId('presence').filter({ hasText: 'bob is typing' }).waitFor({ timeout: 30_000 });
    await bob.page.getByRole('textbox', { name: 'Message' }).fill('');
    await alice.page.getByRole('button', { name: 'Conversation settings' }).click();
    await alice.page.getByLabel('Disappearing messages').selectOption('3600');
    for (const p of [bob, carol]) await p.page.locator('.chip', { hasText: 'Disappearing after 1 h' }).waitFor({ timeout: 30_000 });
    await alice.page.getByLabel('Disappearing messages').selectOption('0');
    await alice.page.getByRole('button', { name: 'Close' }).click();
    await accessible(carol, 'group chat with every message feature');
  });

  it('groups: rename, kick, join by link, invitations declined and accepted, admin handed over, the last admin leaving, admin-less', async () => {
    const openGroup = async (p: Person, name: string): Promise<void> => {
      await go(p, '#/');
      await p.page.locator('a.conversation[data-kind="group"]', { hasText: name }).click({ timeout: 30_000 });
      await p.page.getByTestId('chat-name').filter({ hasText: name }).waitFor();
    };
    const system = (p: Person, text: string | RegExp) => p.page.getByTestId('system-line').filter({ hasText: text }).first().waitFor({ timeout: 30_000 });
    const members = async (p: Person): Promise<void> => {
      await p.page.getByRole('button', { name: 'Group members' }).click();
      await p.page.getByTestId('group-members').waitFor();
    };
    const dialog = alice.page.locator('dialog[open]');
    for (const p of [alice, bob, carol]) await openGroup(p, 'Climbers');

    await members(alice);
    await accessible(alice, 'group members (admin)');
    await dialog.getByLabel('Group name').fill('Crag crew');
    await dialog.getByRole('button', { name: 'Rename' }).click();
    await bob.page.getByTestId('chat-name').filter({ hasText: 'Crag crew' }).waitFor({ timeout: 30_000 });
    await system(bob, 'The group is now called “Crag crew”');

    // Kick: carol is told, and what follows is not hers to read.
    await dialog.getByRole('button', { name: 'Remove carol' }).click();
    await carol.page.getByText('You are no longer in this group.').waitFor({ timeout: 30_000 });
    await system(alice, 'carol left or was removed');
    await alice.page.getByRole('button', { name: 'Close' }).click();
    await send(alice, 'after carol left');
    await waitForText(bob, 'after carol left');

    // Back by a link: alice's device adds whoever asks with it.
    await members(alice);
    await dialog.getByRole('button', { name: 'Invite link' }).click();
    const link = await dialog.getByLabel(/Invite link/).inputValue();
    expect(link).toMatch(/^mwg1:/);
    await accessible(alice, 'group invite link');
    await screenshot(alice.page, shots, 'group-members');
    await go(carol, '#/new-group');
    await carol.page.getByLabel('Group link (mwg1:…)').fill(link);
    await carol.page.getByRole('button', { name: 'Ask to join' }).click();
    await carol.page.getByText('Asked to join').waitFor();
    await system(alice, 'carol joined the group');
    await openGroup(carol, 'Crag crew');
    await expect.poll(() => carol.page.getByTestId('system-line').filter({ hasText: /^You joined/ }).count(), { timeout: 30_000 }).toBe(2); // “Climbers”, then this time
    expect(await texts(carol)).not.toContain('after carol left');

    // Invitations by username: declined, then accepted.
    await dialog.getByRole('button', { name: 'Remove carol' }).click();
    await carol.page.getByText('You are no longer in this group.').waitFor({ timeout: 30_000 });
    const invite = async (): Promise<void> => {
      await dialog.getByLabel('Add or invite by username').fill('carol');
      await dialog.getByRole('button', { name: 'Invite', exact: true }).click();
      await dialog.getByText('carol was invited').waitFor();
    };
    await invite();
    await go(carol, '#/');
    const invitation = carol.page.getByTestId('group-invitation').filter({ hasText: 'Crag crew' });
    await invitation.waitFor({ timeout: 30_000 });
    await accessible(carol, 'group invitation');
    await screenshot(carol.page, shots, 'group-invitation');
    await carol.page.getByRole('button', { name: 'Decline the invitation to Crag crew' }).click();
    await invitation.waitFor({ state: 'detached' });
    await invite();
    await invitation.waitFor({ timeout: 30_000 });
    await carol.page.getByRole('button', { name: 'Accept the invitation to Crag crew' }).click();
    await openGroup(carol, 'Crag crew');
    await send(carol, 'carol is back');
    await waitForText(alice, 'carol is back');

    // alice hands the admin role to bob; bob, the only admin, leaves: alice, the longest-standing member, is admin again.
    await dialog.getByRole('button', { name: 'Hand admin over to bob' }).click();
    await system(bob, 'You are now an admin');
    await dialog.getByRole('button', { name: 'Remove bob' }).waitFor({ state: 'detached' });
    await alice.page.getByRole('button', { name: 'Close' }).click();
    await members(bob);
    await bob.page.getByText('You are the only admin').waitFor();
    await bob.page.locator('dialog[open]').getByRole('button', { name: 'Leave the group' }).click();
    await system(alice, 'You are now an admin');
    // carol is not bob's contact: she knows his name from his profile message to the group.
    await system(carol, 'bob left or was removed');
    await system(alice, 'bob left or was removed');

    // Admin-less: carol, not an admin, may rename.
    await members(alice);
    await dialog.getByRole('button', { name: /Make the group admin-less/ }).click();
    await system(carol, 'The group is now admin-less');
    await alice.page.getByRole('button', { name: 'Close' }).click();
    await members(carol);
    await carol.page.getByTestId('group-policy').filter({ hasText: 'Admin-less' }).waitFor();
    await carol.page.locator('dialog[open]').getByLabel('Group name').fill('Crag crew 2');
    await carol.page.locator('dialog[open]').getByRole('button', { name: 'Rename' }).click();
    await alice.page.getByTestId('chat-name').filter({ hasText: 'Crag crew 2' }).waitFor({ timeout: 30_000 });
    await carol.page.getByRole('button', { name: 'Close' }).click();
    await accessible(alice, 'group chat with system lines');
    await screenshot(alice.page, shots, 'group');
  });

  it('backup and restore: alice turns the backup on (recovery key); a fresh browser profile restores her account, history included', async () => {
    await go(alice, '#/settings');
    await alice.page.getByRole('link', { name: 'Backup and recovery key' }).click();
    await alice.page.getByRole('button', { name: 'Turn backup on' }).waitFor();
    await accessible(alice, 'backup');
    await alice.page.getByRole('button', { name: 'Turn backup on' }).click();
    await alice.page.getByTestId('recovery-key').waitFor({ timeout: 60_000 });
    const key = ((await alice.page.getByTestId('recovery-key').textContent()) ?? '').trim();
    expect(key.replace(/[^0-9A-Z]/g, '')).toHaveLength(56);
    await accessible(alice, 'recovery key');
    await screenshot(alice.page, shots, 'backup');
    await alice.page.getByRole('button', { name: 'I wrote it down' }).click();
    await alice.page.getByTestId('backup-status').filter({ hasText: 'recovery key' }).waitFor();

    // A new browser profile: nothing but the node and the recovery key.
    const restored = await newPerson(browser!, url, 'alice-restored');
    others.push(restored);
    await restored.page.getByRole('button', { name: 'Restore from a backup' }).click();
    await accessible(restored, 'restore');
    // One character wrong: the checksum catches it before the node is asked.
    const at = key.search(/[0-9A-Z]/);
    const typo = key.slice(0, at) + (key[at] === 'A' ? 'B' : 'A') + key.slice(at + 1);
    await restored.page.getByLabel('Recovery key', { exact: true }).fill(typo);
    await restored.page.getByRole('button', { name: 'Restore' }).click();
    await restored.page.getByRole('alert').filter({ hasText: 'MW_SDK_RECOVERY_KEY_INVALID' }).waitFor({ timeout: 30_000 });
    await restored.page.getByLabel('Recovery key', { exact: true }).fill(key);
    await screenshot(restored.page, shots, 'restore');
    await restored.page.getByRole('button', { name: 'Restore' }).click();
    await restored.page.getByTestId('me').filter({ hasText: 'alice' }).waitFor({ timeout: 60_000 });
    await openChat(restored, 'bob');
    await waitForText(restored, 'hello bob');
    // The restored browser is a device of alice's account: bob's next message reaches it.
    await openChat(bob, 'alice');
    await send(bob, 'for every alice device');
    await waitForText(restored, 'for every alice device', 60_000);
    await openChat(alice, 'bob');
    await waitForText(alice, 'for every alice device', 60_000);
  }, 240_000);

  it('linking a device by QR (scanned with a file-fed camera): both devices receive, sent and read state follow, and a device is removed', async () => {
    // A browser whose camera shows a video file: the QR the new device displays is written into it.
    const video = join(work, 'camera.y4m');
    writeQrY4m(video, new Uint8Array(32)); // a placeholder until the code is known
    camera = await launchCameraChromium(video);
    const dave = await newPerson(camera, url, 'dave');
    others.push(dave);
    await register(dave);
    const laptop = await newPerson(camera, url, 'dave-laptop');
    others.push(laptop);
    await laptop.page.getByRole('button', { name: 'Link this browser to an existing account' }).click();
    await laptop.page.getByLabel('A name for this browser').fill('laptop');
    await laptop.page.getByRole('button', { name: 'Show a link code' }).click();
    const offer = await laptop.page.getByTestId('link-offer').inputValue();
    expect(offer).toMatch(/^mwl1:[A-Za-z0-9_-]+$/);
    await laptop.page.locator('img.link-qr').waitFor();
    await accessible(laptop, 'link this browser');
    await screenshot(laptop.page, shots, 'link-device');
    // The camera sees the same bytes the QR on the laptop's screen encodes.
    writeQrY4m(video, new Uint8Array(Buffer.from(offer.slice('mwl1:'.length), 'base64url')));

    await go(dave, '#/devices');
    await dave.page.getByTestId('device').first().waitFor();
    await accessible(dave, 'devices');
    await dave.page.getByTestId('scan-link').click();
    await dave.page.locator('.scanner video').waitFor();
    await dave.page.getByTestId('link-result').filter({ hasText: 'Linked “laptop”' }).waitFor({ timeout: 60_000 });
    // Read by the camera path: the paste field was never used.
    await dave.page.getByTestId('scan-read').waitFor();
    expect(await dave.page.getByLabel(/Or paste the link code/).inputValue()).toBe('');
    await laptop.page.getByTestId('me').filter({ hasText: 'dave' }).waitFor({ timeout: 60_000 });
    await expect.poll(() => dave.page.getByTestId('device').count(), { timeout: 30_000 }).toBe(2);
    await screenshot(dave.page, shots, 'devices');

    // The same code again: used once already, so refused, and said so.
    await dave.page.getByLabel(/Or paste the link code/).fill(offer);
    await dave.page.getByRole('button', { name: 'Link', exact: true }).click();
    await dave.page.getByRole('alert').filter({ hasText: /expired or was already used|Linking failed/ }).waitFor({ timeout: 30_000 });

    // Sent on one device → shown as sent on the other.
    await go(dave, '#/add');
    await dave.page.getByLabel('Their username').fill('bob');
    await dave.page.getByRole('button', { name: 'Start chat' }).click();
    await dave.page.getByTestId('chat-name').filter({ hasText: 'bob' }).waitFor();
    await send(dave, 'hi bob, from dave’s phone');
    await go(laptop, '#/');
    // The laptop learns bob's name when bob introduces himself (below); until then the chat is found by its last message.
    await laptop.page.locator('a.conversation', { hasText: 'hi bob, from dave’s phone' }).click({ timeout: 30_000 });
    await laptop.page.locator('.message.outgoing .text', { hasText: 'hi bob, from dave’s phone' }).waitFor({ timeout: 30_000 });
    await expect.poll(() => stateOf(laptop, 'hi bob, from dave’s phone'), { timeout: 30_000 }).toMatch(/^(sent|delivered|read)$/);

    // A contact's message reaches both devices; read on one → read on the other.
    await go(laptop, '#/');
    await go(dave, '#/');
    await go(bob, '#/');
    await bob.page.locator('a.conversation', { hasText: 'dave' }).waitFor({ timeout: 30_000 });
    await openChat(bob, 'dave');
    await bob.page.getByRole('button', { name: 'Accept' }).click();
    await send(bob, 'hello to both of dave’s devices');
    const unread = (p: Person) => p.page.locator('a.conversation', { hasText: 'bob' }).getByTestId('unread');
    await expect.poll(() => unread(dave).textContent(), { timeout: 30_000 }).toBe('1');
    await expect.poll(() => unread(laptop).textContent(), { timeout: 30_000 }).toBe('1');
    await openChat(dave, 'bob');
    await waitForText(dave, 'hello to both of dave’s devices');
    await expect.poll(() => unread(laptop).count(), { timeout: 30_000 }).toBe(0);
    await openChat(laptop, 'bob');
    await waitForText(laptop, 'hello to both of dave’s devices');

    // Removed from the account: the laptop is told.
    await go(dave, '#/devices');
    await dave.page.getByRole('button', { name: 'Remove laptop' }).click();
    await dave.page.locator('dialog[open]').getByRole('button', { name: 'Remove the device' }).click();
    await expect.poll(() => dave.page.getByTestId('device').count(), { timeout: 30_000 }).toBe(1);
    await laptop.page.getByTestId('stopped').filter({ hasText: 'Prudence erased its data in this browser' }).waitFor({ timeout: 30_000 });
    // Starting over: the welcome screen of a fresh browser.
    await laptop.page.getByRole('button', { name: 'Start over in this browser' }).click();
    await laptop.page.getByRole('button', { name: 'Link this browser to an existing account' }).waitFor({ timeout: 30_000 });
  }, 240_000);

  it('no page error, console error or CSP violation happened', () => {
    expect([...alice.problems, ...bob.problems, ...carol.problems, ...others.flatMap((p) => p.problems)]).toEqual([]);
  });
});

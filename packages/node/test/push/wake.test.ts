// When the node rings: one wake per burst for an offline device, none for ephemeral signals or a
// live device; endpoints removed with the device. Against a local Web Push endpoint.
import { createECDH, randomBytes } from 'node:crypto';
import webpush from 'web-push';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AUTH_HEADER, EnvelopeClass } from '@meshwhisper/protocol';
import { TestDevice, sqliteOf } from '../helpers.js';
import { WsClient } from '../ws-client.js';
import type { LocalServer, PushNode, TlsMaterial } from './fixtures.js';
import { deviceWithPush, httpsServer, makeTls, manualClock, putPush, sendTo, settle, startPushNode } from './fixtures.js';

const COALESCE_MS = 2000;
let tls: TlsMaterial;
let server: LocalServer;
let t: PushNode;
let port: number;
const clock = manualClock();
const vapid = webpush.generateVAPIDKeys();

const subscription = (path: string) => {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  return { target: { case: 'webPush' as const, value: { endpoint: `${server.url}${path}`, p256dh: ecdh.getPublicKey(), auth: randomBytes(16) } } };
};
const registrations = (mailbox: Uint8Array) => (sqliteOf(t.node).prepare('SELECT count(*) AS n FROM push_registrations WHERE mailbox = ?').get(mailbox) as { n: number }).n;

beforeAll(async () => {
  tls = makeTls();
  server = await httpsServer(tls);
  t = await startPushNode(
    { VAPID_PUBLIC_KEY: vapid.publicKey, VAPID_PRIVATE_KEY: vapid.privateKey, VAPID_SUBJECT: 'https://ops.example.org/contact', WEBPUSH_ALLOWED_HOSTS: '127.0.0.1', PUSH_COALESCE_MS: String(COALESCE_MS), FIRST_CONTACT_MAX_MESSAGES: '10000' },
    { tls, ctx: clock.ctx },
  );
  port = (await t.node.listen()).port;
});
afterAll(async () => {
  await t?.close();
  await server?.close();
});
beforeEach(() => {
  server.recorder.requests.length = 0;
  server.respond = () => ({ status: 201 });
});

describe('coalescing', () => {
  it('100 durable messages to one offline device within the window ring exactly one wake', async () => {
    const d = await deviceWithPush(t.node, subscription('/burst'));
    // One at a time, so each is its own group commit and reaches the scheduler separately.
    for (let i = 0; i < 100; i++) expect((await sendTo(t.node, d.mailbox, EnvelopeClass.DURABLE, Uint8Array.of(i))).statusCode).toBe(200);
    await server.recorder.waitFor(1);
    await settle(300);
    expect(server.recorder.requests).toHaveLength(1);
    // Still within the window (clock not moved): more mail rings nothing.
    expect((await sendTo(t.node, d.mailbox)).statusCode).toBe(200);
    await settle(100);
    expect(server.recorder.requests).toHaveLength(1);
    // After the window, new mail is a new burst: one more wake.
    clock.advance(COALESCE_MS + 1);
    for (let i = 0; i < 10; i++) expect((await sendTo(t.node, d.mailbox)).statusCode).toBe(200);
    await server.recorder.waitFor(2);
    await settle(200);
    expect(server.recorder.requests).toHaveLength(2);
  });

  it('the window is per device: two offline devices each get their wake', async () => {
    const a = await deviceWithPush(t.node, subscription('/a'));
    const b = await deviceWithPush(t.node, subscription('/b'));
    await Promise.all([sendTo(t.node, a.mailbox), sendTo(t.node, b.mailbox), sendTo(t.node, a.mailbox)]);
    const got = await server.recorder.waitFor(2);
    await settle(200);
    expect(server.recorder.requests).toHaveLength(2);
    expect(got.map((g) => g.path).sort()).toEqual(['/a', '/b']);
  });

  it('a wake still being retried absorbs new mail even after the window', async () => {
    clock.advance(COALESCE_MS + 1);
    const d = await deviceWithPush(t.node, subscription('/slow'));
    let n = 0;
    const during: Promise<unknown>[] = [];
    server.respond = async () => {
      // The retry is answered only once the mail sent during the first attempt is committed, so
      // that mail reaches the scheduler while the wake is still busy (not after it succeeded).
      if (++n > 1) return Promise.all(during).then(() => ({ status: 201 }));
      // While the first attempt is answered 503 (and then waits for its retry), the window ends
      // and more mail arrives: it must not start a second wake.
      clock.advance(COALESCE_MS + 1);
      during.push(sendTo(t.node, d.mailbox), sendTo(t.node, d.mailbox));
      return { status: 503 };
    };
    expect((await sendTo(t.node, d.mailbox)).statusCode).toBe(200);
    await server.recorder.waitFor(2); // first attempt 503, the retry 201
    expect((await Promise.all(during)).map((r) => (r as { statusCode: number }).statusCode)).toEqual([200, 200]);
    await settle(200);
    expect(server.recorder.requests).toHaveLength(2);
  });
});

describe('what never wakes', () => {
  it('ephemeral signals (typing, presence, receipts) never wake an offline device', async () => {
    const d = await deviceWithPush(t.node, subscription('/ephemeral'));
    clock.advance(COALESCE_MS + 1);
    for (let i = 0; i < 20; i++) expect((await sendTo(t.node, d.mailbox, EnvelopeClass.EPHEMERAL)).statusCode).toBe(200);
    await settle(300);
    expect(server.recorder.requests).toHaveLength(0);
    // The same device does get a wake for durable mail (the test can fail).
    await sendTo(t.node, d.mailbox, EnvelopeClass.DURABLE);
    await server.recorder.waitFor(1);
  });

  it('a device with a live connection gets its mail on the socket and no wake; once it disconnects, mail wakes it', async () => {
    const d = await deviceWithPush(t.node, subscription('/live'));
    clock.advance(COALESCE_MS + 1);
    const c = await WsClient.device(port, d);
    try {
      await c.nextKind('queueEmpty');
      for (let i = 0; i < 5; i++) await sendTo(t.node, d.mailbox);
      const f = await c.nextKind('deliver');
      expect(f.body.value.envelopes.length).toBeGreaterThan(0);
      await settle(300);
      expect(server.recorder.requests).toHaveLength(0);
    } finally {
      c.close();
      await c.waitClosed();
    }
    await expect.poll(() => t.node.services.hub.size).toBe(0);
    await sendTo(t.node, d.mailbox);
    await server.recorder.waitFor(1);
  });

  it('a device without a push registration rings nothing', async () => {
    const d = new TestDevice();
    expect((await d.register(t.node)).statusCode).toBe(200);
    await sendTo(t.node, d.mailbox);
    await settle(200);
    expect(server.recorder.requests).toHaveLength(0);
  });
});

describe('removal', () => {
  it('DELETE /v1/push removes the endpoint; no wake afterwards', async () => {
    const d = await deviceWithPush(t.node, subscription('/unregistered'));
    expect(registrations(d.mailbox)).toBe(1);
    const res = await t.node.app.inject({ method: 'DELETE', url: '/v1/push', headers: { [AUTH_HEADER]: await d.authHeader(t.node, 'DELETE', '/v1/push') } });
    expect(res.statusCode).toBe(204);
    expect(registrations(d.mailbox)).toBe(0);
    await sendTo(t.node, d.mailbox);
    await settle(200);
    expect(server.recorder.requests).toHaveLength(0);
  });

  it('DELETE /v1/device and DELETE /v1/account remove the endpoints of every deleted device', async () => {
    const d = await deviceWithPush(t.node, subscription('/deleted-device'));
    expect((await t.node.app.inject({ method: 'DELETE', url: '/v1/device', headers: { [AUTH_HEADER]: await d.authHeader(t.node, 'DELETE', '/v1/device') } })).statusCode).toBe(204);
    expect(registrations(d.mailbox)).toBe(0);

    const first = new TestDevice();
    const second = new TestDevice(first.account);
    for (const x of [first, second]) {
      expect((await x.register(t.node)).statusCode).toBe(200);
    }
    const withPush = await deviceWithPush(t.node, subscription('/other-account'));
    expect((await putPush(t.node, first, subscription('/acct-1'))).statusCode).toBe(204);
    expect((await putPush(t.node, second, subscription('/acct-2'))).statusCode).toBe(204);
    expect((await first.deleteAccount(t.node)).statusCode).toBe(204);
    expect(registrations(first.mailbox)).toBe(0);
    expect(registrations(second.mailbox)).toBe(0);
    expect(registrations(withPush.mailbox)).toBe(1); // another account's endpoint is untouched
  });

  it('a prune removes the endpoint only if it is still the one that failed (the device may have re-registered meanwhile)', async () => {
    const d = await deviceWithPush(t.node, subscription('/old'));
    const { store } = t.node.services;
    const old = (await store.pushTarget(d.mailbox))!;
    expect(old.kind).toBe('webpush');
    const fresh = subscription('/new').target.value;
    expect(await store.setPushTarget(d.mailbox, { kind: 'webpush', endpoint: fresh.endpoint, p256dh: fresh.p256dh, auth: fresh.auth }, clock.now())).toBe(true);
    expect(await store.deletePushTargetIf(d.mailbox, old)).toBe(false);
    expect(await store.pushTarget(d.mailbox)).toMatchObject({ kind: 'webpush', endpoint: `${server.url}/new` });
    expect(await store.deletePushTargetIf(d.mailbox, (await store.pushTarget(d.mailbox))!)).toBe(true);
    expect(await store.pushTarget(d.mailbox)).toBeUndefined();
  });
});

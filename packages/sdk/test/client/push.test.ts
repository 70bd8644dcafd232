/**
 * Push wake through the SDK, against a real node started here with VAPID keys and a local HTTPS
 * Web Push endpoint (a throw-away certificate made with openssl, trusted by the node only):
 * registerPush → mail to the offline device → exactly one wake, whose RFC 8291 body this test
 * decrypts with the subscription's private key to the bare wake marker; the woken device fetches
 * and decrypts (fetchWhileWoken / wakeAndNotify, the service worker's core, run in Node);
 * unregisterPush stops the wakes, and registering again brings them back.
 */
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import webpush from 'web-push';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PUSH_WAKE_PAYLOAD } from '@meshwhisper/protocol';
import { MeshWhisper, SdkError, SdkErrorCode, memoryStorage, openSqliteStorage } from '../../src/index.js';
import { pushRegistrationMessage } from '../../src/client/push.js';
import type { NotificationSpec } from '../../src/service-worker.js';
import { GENERIC_NOTIFICATION_TITLE, SW_CLOSE_GRACE_MS, fetchWhileWoken, wakeAndNotify } from '../../src/service-worker.js';
import type { ProtocolStorage } from '../../src/storage/types.js';
import type { PushEndpoint } from './webpush-endpoint.js';
import { b64url, decryptWebPush, settle, startPushEndpoint, subscription as subscriptionAt } from './webpush-endpoint.js';
import type { E2eNode } from './test-node.js';
import { startE2eNode } from './test-node.js';

/** Short, so the "no wake after unregister" check is not just coalescing. */
// Long enough that two sends in a row fall into one burst even on a loaded machine (each send
// waits for the sender's storage commit and the node's; at load 20 on 2 cores that exceeded 300 ms).
const COALESCE_MS = 2_000;
const vapid = webpush.generateVAPIDKeys();
const work = mkdtempSync(join(tmpdir(), 'mw-sdk-push-'));

let push: PushEndpoint;
let pushUrl = '';
let t: E2eNode;
let url = '';
const subscription = (path: string) => subscriptionAt(`${pushUrl}${path}`);

/** RFC 8292: `vapid t=<ES256 JWT>, k=<public key>`; the JWT verifies under k and names the endpoint's origin. */
function checkVapid(authorization: string | undefined): void {
  const m = /^vapid t=([^,]+), k=([A-Za-z0-9_-]+)$/.exec(authorization ?? '');
  expect(m, `authorization: ${authorization}`).not.toBeNull();
  const [, jwt, k] = m!;
  expect(k).toBe(vapid.publicKey);
  const [h, p, s] = jwt!.split('.');
  const pub = Buffer.from(k!, 'base64url');
  const key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: b64url(pub.subarray(1, 33)), y: b64url(pub.subarray(33)) }, format: 'jwk' });
  expect(verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(s!, 'base64url'))).toBe(true);
  expect(JSON.parse(Buffer.from(p!, 'base64url').toString()).aud).toBe(pushUrl);
}

beforeAll(async () => {
  push = await startPushEndpoint();
  pushUrl = push.url;
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
  url = t.url;
});

afterAll(async () => {
  await t?.close();
  await push?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('push through the SDK against a real node and a local Web Push endpoint', () => {
  it('pushInfo() reports the node’s VAPID key (the applicationServerKey) and that APNs/FCM are off', async () => {
    const c = await MeshWhisper.create({ node: url, namespace: 'push', storage: await memoryStorage(), connect: false });
    const info = await c.pushInfo();
    expect(b64url(info.vapidPublicKey!)).toBe(vapid.publicKey);
    expect(info).toMatchObject({ apns: false, fcm: false });
    await c.close();
  });

  it('registerPush → mail to the offline device rings exactly one wake (bare marker); the woken device fetches and decrypts; unregisterPush stops wakes', async () => {
    const alice = await MeshWhisper.create({ node: url, namespace: 'push', storage: await memoryStorage() });
    const bobDb = join(work, 'bob.db');
    const bob = await MeshWhisper.create({ node: url, namespace: 'push', storage: await openSqliteStorage({ path: bobDb }), connect: false });
    const bobMailbox = bob.mailboxId;
    const sub = subscription('/wake/bob');
    await bob.registerPush({ kind: 'webpush', subscription: sub.json });
    await bob.close(); // offline: never connected

    push.wakes.length = 0;
    await alice.sendText(bobMailbox, 'wake up, bob');
    await alice.sendText(bobMailbox, 'second in the burst');
    await push.waitForWakes(1);
    await settle(COALESCE_MS / 2);
    expect(push.wakes).toHaveLength(1);
    const w = push.wakes[0]!;
    expect(w.path).toBe('/wake/bob');
    expect(w.headers['content-encoding']).toBe('aes128gcm');
    expect(w.headers.topic).toBe('mw-wake');
    expect(w.headers.ttl).toBe('86400');
    expect(w.body.length).toBe(122);
    checkVapid(w.headers.authorization);
    expect(decryptWebPush(w.body, sub)).toBe(PUSH_WAKE_PAYLOAD);
    // Nothing of the mail is in the wake: neither text nor sender.
    expect(w.body.includes(Buffer.from('wake up'))).toBe(false);

    // What the service worker does on that wake (here in Node, over the same storage).
    const shown: NotificationSpec[] = [];
    const wake = await wakeAndNotify({
      node: url,
      namespace: 'push',
      openStorage: () => openSqliteStorage({ path: bobDb }),
      registration: { showNotification: async (title, options) => void shown.push({ title, ...(options ? { options } : {}) }) },
      showNotification: (messages) => ({ title: `${messages.length} new`, options: { body: messages.map((m) => m.text).join(' / ') } }),
      timeoutMs: 15_000,
    });
    expect(wake).toMatchObject({ timedOut: false, undecryptable: [] });
    expect(wake.error).toBeUndefined();
    expect(wake.messages.map((m) => m.text)).toEqual(['wake up, bob', 'second in the burst']);
    expect(wake.messages[0]!.from).toBe(alice.address);
    expect(shown).toEqual([{ title: '2 new', options: { body: 'wake up, bob / second in the burst' } }]);

    // Unregister; after the coalescing window, new mail rings nothing.
    const bob2 = await MeshWhisper.create({ node: url, namespace: 'push', storage: await openSqliteStorage({ path: bobDb }), connect: false });
    await bob2.unregisterPush();
    await bob2.unregisterPush(); // idempotent
    await bob2.close();
    await settle(COALESCE_MS + 100);
    push.wakes.length = 0;
    await alice.sendText(bobMailbox, 'nobody rings for this');
    await settle(COALESCE_MS + 400);
    expect(push.wakes).toHaveLength(0);

    // Control: registering again (a new subscription) rings again — the silence above was the unregister.
    const bob3 = await MeshWhisper.create({ node: url, namespace: 'push', storage: await openSqliteStorage({ path: bobDb }), connect: false });
    const sub2 = subscription('/wake/bob-again');
    await bob3.registerPush({ kind: 'webpush', subscription: sub2.json });
    await bob3.close();
    await alice.sendText(bobMailbox, 'and now it rings');
    await push.waitForWakes(1);
    expect(push.wakes[0]!.path).toBe('/wake/bob-again');
    expect(decryptWebPush(push.wakes[0]!.body, sub2)).toBe(PUSH_WAKE_PAYLOAD);
    const after = await fetchWhileWoken({ node: url, namespace: 'push', openStorage: () => openSqliteStorage({ path: bobDb }), timeoutMs: 15_000 });
    expect(after.messages.map((m) => m.text)).toEqual(['nobody rings for this', 'and now it rings']);
    await alice.close();
  });

  it('a close that never ends (a storage transaction that never settles) does not keep the notification away: shown after SW_CLOSE_GRACE_MS with the messages', async () => {
    const alice = await MeshWhisper.create({ node: url, namespace: 'push', storage: await memoryStorage() });
    const bobDb = join(work, 'bob-hang.db');
    const bob = await MeshWhisper.create({ node: url, namespace: 'push', storage: await openSqliteStorage({ path: bobDb }), connect: false });
    const bobMailbox = bob.mailboxId;
    await bob.close();
    await alice.sendText(bobMailbox, 'read me even if closing hangs');
    let closeCalls = 0;
    // The storage the worker opens: everything works except close(), which never settles.
    const hangingClose = async (): Promise<ProtocolStorage> => {
      const real = await openSqliteStorage({ path: bobDb });
      return new Proxy(real, {
        get(target, key, receiver) {
          if (key === 'close') {
            return () => {
              closeCalls++;
              return new Promise<void>(() => undefined);
            };
          }
          const v = Reflect.get(target, key, receiver) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
    };
    const shown: NotificationSpec[] = [];
    const t0 = Date.now();
    const wake = await wakeAndNotify({
      node: url,
      namespace: 'push',
      openStorage: hangingClose,
      registration: { showNotification: async (title, options) => void shown.push({ title, ...(options ? { options } : {}) }) },
      showNotification: (messages) => ({ title: messages.map((m) => m.text).join(' / ') }),
      timeoutMs: 15_000,
    });
    const took = Date.now() - t0;
    expect(closeCalls).toBe(1);
    expect(wake).toMatchObject({ timedOut: false });
    expect(shown).toEqual([{ title: 'read me even if closing hangs' }]);
    // It waited the grace period for the close, and not much more (fetching is quick here).
    expect(took).toBeGreaterThanOrEqual(SW_CLOSE_GRACE_MS);
    expect(took).toBeLessThan(SW_CLOSE_GRACE_MS + 15_000);
    await alice.close();
  }, 60_000);

  it('a PushSubscription object (getKey) registers like its JSON', async () => {
    const c = await MeshWhisper.create({ node: url, namespace: 'push', storage: await memoryStorage(), connect: false });
    const sub = subscription('/wake/object');
    const toAb = (b: Buffer): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
    const object = { endpoint: sub.json.endpoint, getKey: (n: 'p256dh' | 'auth') => toAb(n === 'p256dh' ? sub.ecdh.getPublicKey() : sub.auth) };
    expect(pushRegistrationMessage({ kind: 'webpush', subscription: object })).toEqual(pushRegistrationMessage({ kind: 'webpush', subscription: sub.json }));
    await c.registerPush({ kind: 'webpush', subscription: object });
    await c.close();
  });

  it('the node’s refusals surface as SdkError with its code: endpoint host not allowed, service not configured', async () => {
    const c = await MeshWhisper.create({ node: url, namespace: 'push', storage: await memoryStorage(), connect: false });
    const sub = subscription('/x');
    const elsewhere = { ...sub.json, endpoint: 'https://push.example.net/x' };
    await expect(c.registerPush({ kind: 'webpush', subscription: elsewhere })).rejects.toMatchObject({ code: SdkErrorCode.NODE_ERROR, nodeCode: 'MW_PROTO_BAD_REQUEST' });
    await expect(c.registerPush({ kind: 'apns', token: 'ab'.repeat(32), mode: 'alert' })).rejects.toMatchObject({ code: SdkErrorCode.NODE_ERROR, nodeCode: 'MW_PROTO_BAD_REQUEST' });
    await expect(c.registerPush({ kind: 'fcm', token: 'fcm-token:abc' })).rejects.toMatchObject({ code: SdkErrorCode.NODE_ERROR, nodeCode: 'MW_PROTO_BAD_REQUEST' });
    await c.close();
    await expect(c.registerPush({ kind: 'webpush', subscription: sub.json })).rejects.toMatchObject({ code: SdkErrorCode.CLOSED });
    await expect(c.unregisterPush()).rejects.toBeInstanceOf(SdkError);
  });
});

describe('pushRegistrationMessage (argument checks, before any request)', () => {
  const sub = () => subscription('/y').json;
  const bad = (reg: unknown) => expect(() => pushRegistrationMessage(reg as never)).toThrow(expect.objectContaining({ code: SdkErrorCode.INVALID_ARGUMENT }));

  it('rejects malformed Web Push subscriptions', () => {
    bad({ kind: 'webpush', subscription: { ...sub(), endpoint: 'http://127.0.0.1/x' } });
    bad({ kind: 'webpush', subscription: { ...sub(), endpoint: 'not a url' } });
    bad({ kind: 'webpush', subscription: { ...sub(), keys: { p256dh: b64url(randomBytes(64)), auth: b64url(randomBytes(16)) } } });
    bad({ kind: 'webpush', subscription: { ...sub(), keys: { p256dh: sub().keys.p256dh, auth: b64url(randomBytes(15)) } } });
    bad({ kind: 'webpush', subscription: { ...sub(), keys: { p256dh: 'not base64url!', auth: sub().keys.auth } } });
    bad({ kind: 'webpush', subscription: { endpoint: 'https://127.0.0.1/x', getKey: () => null } });
    bad({ kind: 'webpush' });
    bad({ kind: 'smoke-signals', token: 'x' });
    bad(undefined);
  });

  it('APNs: hex or bytes, 8…100 bytes, mode background (default) or alert; FCM: printable ASCII', () => {
    expect(pushRegistrationMessage({ kind: 'apns', token: '00ff'.repeat(16) })).toMatchObject({ target: { case: 'apns', value: { mode: 1 } } });
    const m = pushRegistrationMessage({ kind: 'apns', token: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8), mode: 'alert' });
    expect(m).toMatchObject({ target: { case: 'apns', value: { mode: 2 } } });
    bad({ kind: 'apns', token: 'abc' });
    bad({ kind: 'apns', token: 'zz'.repeat(16) });
    bad({ kind: 'apns', token: '00'.repeat(7) });
    bad({ kind: 'apns', token: '00'.repeat(101) });
    bad({ kind: 'apns', token: '00'.repeat(32), mode: 'loud' });
    expect(pushRegistrationMessage({ kind: 'fcm', token: 'abc:DEF-123' })).toMatchObject({ target: { case: 'fcm', value: { registrationToken: 'abc:DEF-123' } } });
    bad({ kind: 'fcm', token: '' });
    bad({ kind: 'fcm', token: 'has space' });
    bad({ kind: 'fcm', token: 'x'.repeat(2049) });
  });

  it('the generic notification title is the documented one', () => {
    expect(GENERIC_NOTIFICATION_TITLE).toBe('New message');
  });
});

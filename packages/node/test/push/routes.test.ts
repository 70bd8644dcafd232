// PUT/DELETE /v1/push and GET /v1/push/info: authentication, validation, the SSRF guard, and push
// configuration (the node starts with none; half a service is refused at start; secrets hidden).
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import webpush from 'web-push';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH_HEADER, ApnsMode, ErrorCode, PushInfoSchema, PushRegistrationSchema, encodeBody, fromBinary } from '@meshwhisper/protocol';
import { NodeConfigError, loadConfig } from '../../src/config.js';
import { TestDevice, proto, sqliteOf } from '../helpers.js';
import type { PushNode } from './fixtures.js';
import { putPush, sendTo, startPushNode, tempFile } from './fixtures.js';

const vapid = webpush.generateVAPIDKeys();
const VAPID_ENV = { VAPID_PUBLIC_KEY: vapid.publicKey, VAPID_PRIVATE_KEY: vapid.privateKey, VAPID_SUBJECT: 'mailto:ops@example.org' };
const p256dh = (): Uint8Array => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const jwk = publicKey.export({ format: 'jwk' });
  return Buffer.concat([Buffer.of(4), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
};
const web = (endpoint: string, over: { p256dh?: Uint8Array; auth?: Uint8Array } = {}) => ({
  target: { case: 'webPush' as const, value: { endpoint, p256dh: over.p256dh ?? p256dh(), auth: over.auth ?? randomBytes(16) } },
});
const code = (res: { json(): unknown }): string => (res.json() as { error: { code: string } }).error.code;

let t: PushNode;
let bare: PushNode;
let d: TestDevice;
beforeAll(async () => {
  t = await startPushNode(VAPID_ENV); // default WEBPUSH_ALLOWED_HOSTS
  bare = await startPushNode({});
  d = new TestDevice();
  expect((await d.register(t.node)).statusCode).toBe(200);
});
afterAll(async () => {
  await t?.close();
  await bare?.close();
});

describe('GET /v1/push/info', () => {
  it('publishes the VAPID public key (applicationServerKey) and which services are on', async () => {
    const res = await t.node.app.inject('/v1/push/info');
    expect(res.statusCode).toBe(200);
    const info = fromBinary(PushInfoSchema, res.rawPayload);
    expect(Buffer.from(info.vapidPublicKey).toString('base64url')).toBe(vapid.publicKey);
    expect([info.apns, info.fcm]).toEqual([false, false]);
  });

  it('a node with no push settings starts, serves, and says so', async () => {
    const info = fromBinary(PushInfoSchema, (await bare.node.app.inject('/v1/push/info')).rawPayload);
    expect([info.vapidPublicKey.length, info.apns, info.fcm]).toEqual([0, false, false]);
    const x = new TestDevice();
    expect((await x.register(bare.node)).statusCode).toBe(200);
    const res = await putPush(bare.node, x, web('https://fcm.googleapis.com/fcm/send/abc'));
    expect(res.statusCode).toBe(400);
    expect(code(res)).toBe(ErrorCode.BAD_REQUEST);
    expect(res.body).toContain('Web Push');
    expect((await sendTo(bare.node, x.mailbox)).statusCode).toBe(200);
  });
});

describe('PUT /v1/push', () => {
  it('stores a Web Push subscription to an allowed push service (204)', async () => {
    expect((await putPush(t.node, d, web('https://fcm.googleapis.com/fcm/send/abc:def'))).statusCode).toBe(204);
    expect((await putPush(t.node, d, web('https://updates.push.services.mozilla.com/wpush/v2/gAAA'))).statusCode).toBe(204);
    const row = sqliteOf(t.node).prepare('SELECT kind, token FROM push_registrations WHERE mailbox = ?').all(d.mailbox);
    expect(row).toEqual([{ kind: 'webpush', token: 'https://updates.push.services.mozilla.com/wpush/v2/gAAA' }]); // one per device: replaced
  });

  it('needs a DeviceAuth over this very body', async () => {
    const body = encodeBody(PushRegistrationSchema, web('https://fcm.googleapis.com/fcm/send/x'));
    const none = await t.node.app.inject({ method: 'PUT', url: '/v1/push', headers: proto, payload: Buffer.from(body) });
    expect([none.statusCode, code(none)]).toEqual([401, ErrorCode.AUTH_REQUIRED]);
    const other = encodeBody(PushRegistrationSchema, web('https://fcm.googleapis.com/fcm/send/y'));
    const swapped = await t.node.app.inject({ method: 'PUT', url: '/v1/push', headers: { ...proto, [AUTH_HEADER]: await d.authHeader(t.node, 'PUT', '/v1/push', other) }, payload: Buffer.from(body) });
    expect([swapped.statusCode, code(swapped)]).toEqual([401, ErrorCode.AUTH_INVALID]);
  });

  it('refuses endpoints that are not https: or not on WEBPUSH_ALLOWED_HOSTS (SSRF guard)', async () => {
    for (const endpoint of ['http://fcm.googleapis.com/fcm/send/x', 'https://127.0.0.1/x', 'https://169.254.169.254/latest', 'https://evil.example/fcm.googleapis.com', 'https://user:pw@fcm.googleapis.com/x', 'not a url']) {
      const res = await putPush(t.node, d, web(endpoint));
      expect([res.statusCode, code(res)], endpoint).toEqual([400, ErrorCode.BAD_REQUEST]);
    }
  });

  it('refuses malformed registrations', async () => {
    const cases = [
      web('https://fcm.googleapis.com/x', { p256dh: new Uint8Array(33) }),
      web('https://fcm.googleapis.com/x', { p256dh: Buffer.concat([Buffer.of(2), randomBytes(64)]) }),
      web('https://fcm.googleapis.com/x', { auth: new Uint8Array(8) }),
      web(`https://fcm.googleapis.com/${'a'.repeat(3000)}`),
      { target: { case: undefined } },
      { target: { case: 'apns' as const, value: { deviceToken: new Uint8Array(4), mode: ApnsMode.BACKGROUND } } },
      { target: { case: 'fcm' as const, value: { registrationToken: 'has spaces in it' } } },
    ];
    for (const c of cases) {
      const res = await putPush(t.node, d, c as Parameters<typeof putPush>[2]);
      expect([res.statusCode, code(res)]).toEqual([400, ErrorCode.BAD_REQUEST]);
    }
    const junk = Buffer.from([0xff, 0xff, 0xff]);
    const res = await t.node.app.inject({ method: 'PUT', url: '/v1/push', headers: { ...proto, [AUTH_HEADER]: await d.authHeader(t.node, 'PUT', '/v1/push', junk) }, payload: junk });
    expect([res.statusCode, code(res)]).toEqual([400, ErrorCode.MALFORMED]);
  });

  it('refuses a service this node does not send (APNs, FCM not configured)', async () => {
    const apns = await putPush(t.node, d, { target: { case: 'apns', value: { deviceToken: randomBytes(32), mode: ApnsMode.ALERT } } });
    expect([apns.statusCode, code(apns)]).toEqual([400, ErrorCode.BAD_REQUEST]);
    expect(apns.body).toContain('APNs');
    const fcm = await putPush(t.node, d, { target: { case: 'fcm', value: { registrationToken: 'tok' } } });
    expect([fcm.statusCode, code(fcm)]).toEqual([400, ErrorCode.BAD_REQUEST]);
  });

  it('a listed device that has not uploaded its keys gets MW_NOT_FOUND; an unlisted one MW_DEVICE_NOT_LISTED', async () => {
    const stranger = new TestDevice();
    const unlisted = await putPush(t.node, stranger, web('https://fcm.googleapis.com/fcm/send/z'));
    expect([unlisted.statusCode, code(unlisted)]).toEqual([403, ErrorCode.DEVICE_NOT_LISTED]);
    await stranger.enlist(t.node);
    const res = await putPush(t.node, stranger, web('https://fcm.googleapis.com/fcm/send/z'));
    expect([res.statusCode, code(res)]).toEqual([404, ErrorCode.NOT_FOUND]);
  });

  it('DELETE /v1/push needs a DeviceAuth and is idempotent', async () => {
    expect((await t.node.app.inject({ method: 'DELETE', url: '/v1/push' })).statusCode).toBe(401);
    for (let i = 0; i < 2; i++) {
      const res = await t.node.app.inject({ method: 'DELETE', url: '/v1/push', headers: { [AUTH_HEADER]: await d.authHeader(t.node, 'DELETE', '/v1/push') } });
      expect(res.statusCode).toBe(204);
    }
    expect(sqliteOf(t.node).prepare('SELECT count(*) AS n FROM push_registrations WHERE mailbox = ?').get(d.mailbox)).toEqual({ n: 0 });
  });
});

describe('push configuration', () => {
  it('checks each variable at load and names it', () => {
    expect(() => loadConfig({ VAPID_PUBLIC_KEY: 'AAAA' })).toThrow(/VAPID_PUBLIC_KEY/);
    expect(() => loadConfig({ VAPID_PRIVATE_KEY: Buffer.alloc(31).toString('base64url') })).toThrow(/VAPID_PRIVATE_KEY/);
    expect(() => loadConfig({ VAPID_SUBJECT: 'ops@example.org' })).toThrow(/VAPID_SUBJECT/);
    expect(() => loadConfig({ APNS_KEY_ID: 'short' })).toThrow(/APNS_KEY_ID/);
    expect(() => loadConfig({ APNS_URL: 'http://api.push.apple.com' })).toThrow(/APNS_URL/);
    expect(() => loadConfig({ FCM_API_URL: 'https://x?y=1' })).toThrow(/FCM_API_URL/);
    expect(() => loadConfig({ WEBPUSH_ALLOWED_HOSTS: 'a b' })).toThrow(/WEBPUSH_ALLOWED_HOSTS/);
    expect(() => loadConfig({ PUSH_COALESCE_MS: '-1' })).toThrow(/PUSH_COALESCE_MS/);
    const c = loadConfig({});
    expect([c.pushCoalesceMs, c.vapidPublicKey, c.apnsKeyFile, c.fcmServiceAccountFile, c.apnsUrl, c.fcmApiUrl]).toEqual([2000, '', '', '', 'https://api.push.apple.com', 'https://fcm.googleapis.com']);
  });

  it('the VAPID private key never shows in inspect, String or JSON of the configuration', () => {
    const c = loadConfig(VAPID_ENV);
    expect(c.vapidPrivateKey.reveal()).toBe(vapid.privateKey);
    for (const text of [inspect(c, { depth: 5 }), JSON.stringify(c), String(c.vapidPrivateKey)]) expect(text).not.toContain(vapid.privateKey);
  });

  it('half a service is an operator error at start, naming what is missing; so are unreadable or wrong key files', async () => {
    await expect(startPushNode({ VAPID_PUBLIC_KEY: vapid.publicKey })).rejects.toThrow(NodeConfigError);
    await expect(startPushNode({ VAPID_PUBLIC_KEY: vapid.publicKey, VAPID_PRIVATE_KEY: vapid.privateKey })).rejects.toThrow(/VAPID_SUBJECT/);
    const apns = { APNS_KEY_ID: 'ABCDE12345', APNS_TEAM_ID: 'TEAM567890', APNS_BUNDLE_ID: 'org.example.app' };
    await expect(startPushNode(apns)).rejects.toThrow(/APNS_KEY_FILE/);
    await expect(startPushNode({ ...apns, APNS_KEY_FILE: '/nonexistent/AuthKey.p8' })).rejects.toThrow(/APNS_KEY_FILE: cannot read/);
    const rsa = tempFile('rsa.p8', generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    try {
      await expect(startPushNode({ ...apns, APNS_KEY_FILE: rsa.path })).rejects.toThrow(/APNS_KEY_FILE: is not a P-256/);
    } finally {
      rsa.remove();
    }
    const badJson = tempFile('sa.json', '{"type":"service_account","project_id":"p"}');
    try {
      await expect(startPushNode({ FCM_SERVICE_ACCOUNT_FILE: badJson.path })).rejects.toThrow(/FCM_SERVICE_ACCOUNT_FILE: has no private_key/);
    } finally {
      badJson.remove();
    }
  });
});

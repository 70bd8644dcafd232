// Web Push against a local HTTPS push endpoint: the test decrypts the RFC 8291 aes128gcm body with
// the subscription's private key (our own decoder, decryptAes128gcm in fixtures.ts) and verifies the RFC 8292 VAPID JWT.
import { createECDH, createPublicKey, randomBytes, verify } from 'node:crypto';
import { sqliteOf } from '../helpers.js';
import type { ECDH } from 'node:crypto';
import webpush from 'web-push';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PUSH_WAKE_PAYLOAD } from '@meshwhisper/protocol';
import { PUSH_COLLAPSE_KEY, PUSH_MAX_ATTEMPTS, PUSH_TTL_SECONDS } from '../../src/push/constants.js';
import type { Captured, LocalServer, PushNode, TlsMaterial } from './fixtures.js';
import { decryptAes128gcm, deviceWithPush, httpsServer, makeTls, sendTo, settle, startPushNode } from './fixtures.js';

/** RFC 8292 §2–3: Authorization: vapid t=<JWT>, k=<public key>; the JWT is ES256 by that key. */
function verifyVapid(c: Captured, vapidPublicKey: string, audience: string): Record<string, unknown> {
  const m = /^vapid t=([A-Za-z0-9_.-]+), k=([A-Za-z0-9_-]+)$/.exec(String(c.headers.authorization));
  expect(m, String(c.headers.authorization)).not.toBeNull();
  const [, jwt, k] = m!;
  expect(k).toBe(vapidPublicKey);
  const [h, p, s] = jwt!.split('.') as [string, string, string];
  expect(JSON.parse(Buffer.from(h, 'base64url').toString())).toEqual({ typ: 'JWT', alg: 'ES256' });
  const raw = Buffer.from(vapidPublicKey, 'base64url');
  const key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: raw.subarray(1, 33).toString('base64url'), y: raw.subarray(33).toString('base64url') }, format: 'jwk' });
  expect(verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(s, 'base64url'))).toBe(true);
  // A tampered token must not verify (the check above can fail).
  expect(verify('sha256', Buffer.from(`${h}.${p}x`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(s, 'base64url'))).toBe(false);
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
  expect(claims.aud).toBe(audience);
  expect(claims.sub).toBe('mailto:ops@example.org');
  const exp = claims.exp as number;
  expect(exp).toBeGreaterThan(Date.now() / 1000);
  expect(exp).toBeLessThanOrEqual(Date.now() / 1000 + 24 * 3600);
  return claims;
}

interface Subscriber {
  ecdh: ECDH;
  auth: Buffer;
  registration: { target: { case: 'webPush'; value: { endpoint: string; p256dh: Uint8Array; auth: Uint8Array } } };
}
function subscriber(endpoint: string): Subscriber {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const auth = randomBytes(16);
  return { ecdh, auth, registration: { target: { case: 'webPush', value: { endpoint, p256dh: ecdh.getPublicKey(), auth } } } };
}

let tls: TlsMaterial;
let server: LocalServer;
let t: PushNode;
const vapid = webpush.generateVAPIDKeys();

beforeAll(async () => {
  tls = makeTls();
  server = await httpsServer(tls);
  t = await startPushNode(
    { VAPID_PUBLIC_KEY: vapid.publicKey, VAPID_PRIVATE_KEY: vapid.privateKey, VAPID_SUBJECT: 'mailto:ops@example.org', WEBPUSH_ALLOWED_HOSTS: '127.0.0.1', PUSH_COALESCE_MS: '2000' },
    { tls },
  );
});
afterAll(async () => {
  await t?.close();
  await server?.close();
});
beforeEach(() => {
  server.recorder.requests.length = 0;
  server.respond = () => ({ status: 201 });
});

const metric = async (name: 'pushSent' | 'pushFailed' | 'pushPruned'): Promise<number> => (await t.node.services.metrics![name].get()).values[0]?.value ?? 0;

describe('Web Push (RFC 8030 + RFC 8291 aes128gcm + RFC 8292 VAPID)', () => {
  it('a durable send to an offline device POSTs one encrypted wake; the body decrypts to the wake marker only; the VAPID JWT verifies', async () => {
    const sub = subscriber(`${server.url}/push/sub-1`);
    const d = await deviceWithPush(t.node, sub.registration);
    const sentBefore = await metric('pushSent');
    expect((await sendTo(t.node, d.mailbox, undefined, new TextEncoder().encode('secret message text'))).statusCode).toBe(200);
    const [c] = await server.recorder.waitFor(1);
    expect(c!.method).toBe('POST');
    expect(c!.path).toBe('/push/sub-1');
    expect(c!.headers['content-encoding']).toBe('aes128gcm');
    expect(c!.headers.ttl).toBe(String(PUSH_TTL_SECONDS));
    expect(c!.headers.urgency).toBe('high');
    expect(c!.headers.topic).toBe(PUSH_COLLAPSE_KEY);
    verifyVapid(c!, vapid.publicKey, server.url);

    const plaintext = decryptAes128gcm(c!.body, sub.ecdh, sub.auth);
    expect(plaintext.toString('utf8')).toBe(PUSH_WAKE_PAYLOAD);
    expect(JSON.parse(plaintext.toString('utf8'))).toEqual({ mw: 'wake', v: 1 });
    // Nothing of the message, the mailbox or the sender travels, in clear or encrypted.
    const everything = Buffer.concat([c!.body, Buffer.from(JSON.stringify(c!.headers)), Buffer.from(c!.path)]).toString('latin1');
    expect(everything).not.toContain('secret message text');
    expect(everything).not.toContain(Buffer.from(d.mailbox).toString('hex'));
    // Decryption can fail: the wrong auth secret is refused by the AEAD.
    expect(() => decryptAes128gcm(c!.body, sub.ecdh, randomBytes(16))).toThrow();
    await expect.poll(() => metric('pushSent')).toBe(sentBefore + 1);
  });

  it('every wake has the same size (fixed payload), whatever was sent', async () => {
    const a = await deviceWithPush(t.node, subscriber(`${server.url}/push/a`).registration);
    const b = await deviceWithPush(t.node, subscriber(`${server.url}/push/b`).registration);
    await sendTo(t.node, a.mailbox, undefined, new Uint8Array(10));
    await sendTo(t.node, b.mailbox, undefined, new Uint8Array(200_000));
    const [x, y] = await server.recorder.waitFor(2);
    expect(x!.body.length).toBe(y!.body.length);
    expect(x!.body.length).toBe(86 + Buffer.byteLength(PUSH_WAKE_PAYLOAD) + 1 + 16);
  });

  for (const status of [404, 410]) {
    it(`${status} from the push service prunes the subscription`, async () => {
      server.respond = () => ({ status });
      const d = await deviceWithPush(t.node, subscriber(`${server.url}/push/gone-${status}`).registration);
      const before = await metric('pushPruned');
      await sendTo(t.node, d.mailbox);
      await server.recorder.waitFor(1);
      await expect.poll(() => sqliteOf(t.node).prepare('SELECT count(*) AS n FROM push_registrations WHERE mailbox = ?').get(d.mailbox)).toEqual({ n: 0 });
      expect(await metric('pushPruned')).toBe(before + 1);
      await settle(100);
      expect(server.recorder.requests).toHaveLength(1); // not retried
    });
  }

  it('5xx and 429 are retried with backoff, bounded; then the wake counts as failed and the subscription stays', async () => {
    let n = 0;
    server.respond = () => (++n === 1 ? { status: 429, headers: { 'retry-after': '0' } } : n === 2 ? { status: 503 } : { status: 201 });
    const d = await deviceWithPush(t.node, subscriber(`${server.url}/push/flaky`).registration);
    await sendTo(t.node, d.mailbox);
    await server.recorder.waitFor(3);

    server.recorder.requests.length = 0;
    server.respond = () => ({ status: 500 });
    const failed = await metric('pushFailed');
    const e = await deviceWithPush(t.node, subscriber(`${server.url}/push/down`).registration);
    await sendTo(t.node, e.mailbox);
    await server.recorder.waitFor(PUSH_MAX_ATTEMPTS);
    await expect.poll(() => metric('pushFailed')).toBe(failed + 1);
    await settle(150);
    expect(server.recorder.requests).toHaveLength(PUSH_MAX_ATTEMPTS);
    expect(sqliteOf(t.node).prepare('SELECT count(*) AS n FROM push_registrations WHERE mailbox = ?').get(e.mailbox)).toEqual({ n: 1 });
    expect(t.logs.join('')).toContain('push wake failed');
    expect(t.logs.join('')).not.toContain('/push/down');
  });

  it('other 4xx are neither retried nor pruned', async () => {
    server.respond = () => ({ status: 400 });
    const d = await deviceWithPush(t.node, subscriber(`${server.url}/push/bad`).registration);
    await sendTo(t.node, d.mailbox);
    await server.recorder.waitFor(1);
    await settle(150);
    expect(server.recorder.requests).toHaveLength(1);
    expect(sqliteOf(t.node).prepare('SELECT count(*) AS n FROM push_registrations WHERE mailbox = ?').get(d.mailbox)).toEqual({ n: 1 });
  });
});

// APNs against a local HTTP/2 TLS server: method, path, headers, payload, and the ES256 provider
// token verified with the public key of the test .p8; 410 Unregistered prunes the registration.
import { generateKeyPairSync, randomBytes, verify } from 'node:crypto';
import { sqliteOf } from '../helpers.js';
import type { KeyObject } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { toHex } from '@meshwhisper/crypto';
import { ApnsMode } from '@meshwhisper/protocol';
import { APNS_JWT_REFRESH_MS, PUSH_COLLAPSE_KEY } from '../../src/push/constants.js';
import type { Captured, LocalServer, PushNode, TlsMaterial } from './fixtures.js';
import { deviceWithPush, http2Server, makeTls, manualClock, sendTo, settle, startPushNode, tempFile } from './fixtures.js';

const KEY_ID = 'ABCDE12345';
const TEAM_ID = 'TEAM567890';
const BUNDLE = 'org.example.meshwhisper';

/** Verifies the provider token (ES256 by the .p8 key) and returns its claims and raw text. */
function verifyProviderToken(c: Captured, publicKey: KeyObject): { token: string; iat: number } {
  const m = /^bearer ([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(String(c.headers.authorization));
  expect(m, String(c.headers.authorization)).not.toBeNull();
  const [, h, p, s] = m as unknown as [string, string, string, string];
  expect(JSON.parse(Buffer.from(h, 'base64url').toString())).toEqual({ alg: 'ES256', kid: KEY_ID });
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as { iss: string; iat: number };
  expect(claims.iss).toBe(TEAM_ID);
  expect(Object.keys(claims).sort()).toEqual(['iat', 'iss']);
  expect(verify('sha256', Buffer.from(`${h}.${p}`), { key: publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(s, 'base64url'))).toBe(true);
  const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey;
  expect(verify('sha256', Buffer.from(`${h}.${p}`), { key: other, dsaEncoding: 'ieee-p1363' }, Buffer.from(s, 'base64url'))).toBe(false);
  return { token: `${h}.${p}.${s}`, iat: claims.iat };
}

const apnsReg = (token: Uint8Array, mode: ApnsMode = ApnsMode.BACKGROUND) => ({ target: { case: 'apns' as const, value: { deviceToken: token, mode } } });

let tls: TlsMaterial;
let server: LocalServer;
let t: PushNode;
let keyFile: { path: string; remove(): void };
const keys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const clock = manualClock();

beforeAll(async () => {
  tls = makeTls();
  server = await http2Server(tls);
  keyFile = tempFile('AuthKey_ABCDE12345.p8', keys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  t = await startPushNode({ APNS_KEY_FILE: keyFile.path, APNS_KEY_ID: KEY_ID, APNS_TEAM_ID: TEAM_ID, APNS_BUNDLE_ID: BUNDLE, APNS_URL: server.url, PUSH_COALESCE_MS: '2000' }, { tls, ctx: clock.ctx });
});
afterAll(async () => {
  await t?.close();
  await server?.close();
  keyFile?.remove();
});
beforeEach(() => {
  server.recorder.requests.length = 0;
  server.respond = () => ({ status: 200 });
});

const registrations = (mailbox: Uint8Array) => sqliteOf(t.node).prepare('SELECT count(*) AS n FROM push_registrations WHERE mailbox = ?').get(mailbox);

describe('APNs (HTTP/2 provider API, token authentication)', () => {
  it('background mode: POST /3/device/<token> with push type background, priority 5, topic = bundle id, a verifying ES256 provider token, content-available only', async () => {
    const token = randomBytes(32);
    const d = await deviceWithPush(t.node, apnsReg(token));
    await sendTo(t.node, d.mailbox, undefined, new TextEncoder().encode('secret message text'));
    const [c] = await server.recorder.waitFor(1);
    expect(c!.method).toBe('POST');
    expect(c!.path).toBe(`/3/device/${toHex(token)}`);
    expect(c!.headers['apns-push-type']).toBe('background');
    expect(c!.headers['apns-priority']).toBe('5');
    expect(c!.headers['apns-topic']).toBe(BUNDLE);
    expect(c!.headers['apns-collapse-id']).toBe(PUSH_COLLAPSE_KEY);
    expect(Number(c!.headers['apns-expiration'])).toBeGreaterThan(clock.now() / 1000);
    verifyProviderToken(c!, keys.publicKey);
    expect(JSON.parse(c!.body.toString())).toEqual({ aps: { 'content-available': 1 }, mw: 'wake', v: 1 });
    const all = Buffer.concat([c!.body, Buffer.from(JSON.stringify(c!.headers))]).toString('latin1');
    expect(all).not.toContain('secret message text');
    expect(all).not.toContain(toHex(d.mailbox));
  });

  it('alert mode: push type alert, priority 10, a generic alert with mutable-content for the notification extension', async () => {
    const d = await deviceWithPush(t.node, apnsReg(randomBytes(32), ApnsMode.ALERT));
    await sendTo(t.node, d.mailbox);
    const [c] = await server.recorder.waitFor(1);
    expect(c!.headers['apns-push-type']).toBe('alert');
    expect(c!.headers['apns-priority']).toBe('10');
    expect(c!.headers['apns-topic']).toBe(BUNDLE);
    verifyProviderToken(c!, keys.publicKey);
    expect(JSON.parse(c!.body.toString())).toEqual({ aps: { alert: { body: 'New message' }, 'mutable-content': 1 }, mw: 'wake', v: 1 });
  });

  it('the provider token is reused, and re-signed once it is APNS_JWT_REFRESH_MS old', async () => {
    const d = await deviceWithPush(t.node, apnsReg(randomBytes(32)));
    await sendTo(t.node, d.mailbox);
    await server.recorder.waitFor(1);
    clock.advance(60_000); // past the coalescing window, well within the token's life
    await sendTo(t.node, d.mailbox);
    await server.recorder.waitFor(2);
    clock.advance(APNS_JWT_REFRESH_MS);
    await sendTo(t.node, d.mailbox);
    const [a, b, c] = await server.recorder.waitFor(3);
    const [ta, tb, tc] = [a!, b!, c!].map((x) => verifyProviderToken(x, keys.publicKey));
    expect(tb!.token).toBe(ta!.token);
    expect(tc!.token).not.toBe(ta!.token);
    expect(tc!.iat - ta!.iat).toBeGreaterThanOrEqual(APNS_JWT_REFRESH_MS / 1000);
    clock.advance(60_000);
  });

  it('410 Unregistered prunes the registration (and is not retried)', async () => {
    server.respond = () => ({ status: 410, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'Unregistered', timestamp: Date.now() }) });
    const d = await deviceWithPush(t.node, apnsReg(randomBytes(32)));
    expect(registrations(d.mailbox)).toEqual({ n: 1 });
    await sendTo(t.node, d.mailbox);
    await server.recorder.waitFor(1);
    await expect.poll(() => registrations(d.mailbox)).toEqual({ n: 0 });
    await settle(100);
    expect(server.recorder.requests).toHaveLength(1);
  });

  it('400 BadDeviceToken does not prune (a sandbox token on a production URL would otherwise wipe every registration)', async () => {
    server.respond = () => ({ status: 400, body: JSON.stringify({ reason: 'BadDeviceToken' }) });
    const d = await deviceWithPush(t.node, apnsReg(randomBytes(32)));
    await sendTo(t.node, d.mailbox);
    await server.recorder.waitFor(1);
    await settle(100);
    expect(server.recorder.requests).toHaveLength(1);
    expect(registrations(d.mailbox)).toEqual({ n: 1 });
  });

  it('403 ExpiredProviderToken: the token is re-signed and the wake retried; 503 is retried', async () => {
    clock.advance(25 * 60_000);
    let n = 0;
    server.respond = () => (++n === 1 ? { status: 403, body: JSON.stringify({ reason: 'ExpiredProviderToken' }) } : n === 2 ? { status: 503, body: JSON.stringify({ reason: 'ServiceUnavailable' }) } : { status: 200 });
    const d = await deviceWithPush(t.node, apnsReg(randomBytes(32)));
    await sendTo(t.node, d.mailbox);
    const [a, b, c] = await server.recorder.waitFor(3);
    const ta = verifyProviderToken(a!, keys.publicKey).token;
    expect(verifyProviderToken(b!, keys.publicKey).token).not.toBe(ta);
    expect(verifyProviderToken(c!, keys.publicKey).token).toBe(verifyProviderToken(b!, keys.publicKey).token);
  });
});

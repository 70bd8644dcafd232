// FCM against local HTTPS endpoints: the OAuth token endpoint verifies the RS256 JWT-bearer
// assertion (RFC 7523) of a service account generated here and issues a token; the HTTP v1 send
// endpoint checks the bearer token and the data-only message; UNREGISTERED (404) prunes.
import { generateKeyPairSync, verify } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { toHex } from '@meshwhisper/crypto';
import { FCM_SCOPE, PUSH_COLLAPSE_KEY, PUSH_TTL_SECONDS } from '../../src/push/constants.js';
import { sqliteOf } from '../helpers.js';
import type { Captured, LocalServer, PushNode, Reply, TlsMaterial } from './fixtures.js';
import { deviceWithPush, httpsServer, makeTls, manualClock, sendTo, settle, startPushNode, tempFile } from './fixtures.js';

const PROJECT = 'mw-test-project';
const EMAIL = 'push@mw-test-project.iam.gserviceaccount.com';
const KEY_ID = 'k-0123456789';
const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });

let tls: TlsMaterial;
let server: LocalServer;
let t: PushNode;
let accountFile: { path: string; remove(): void };
const clock = manualClock();
let issued = 0;
let sendReply: (c: Captured) => Reply = () => ({ status: 200, body: JSON.stringify({ name: `projects/${PROJECT}/messages/1` }) });

/** The token endpoint: checks the grant and the assertion, and issues token-<n>. */
function tokenEndpoint(c: Captured): Reply {
  const form = new URLSearchParams(c.body.toString());
  if (c.headers['content-type'] !== 'application/x-www-form-urlencoded') return { status: 400, body: '{"error":"invalid_request"}' };
  if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') return { status: 400, body: '{"error":"unsupported_grant_type"}' };
  const [h, p, s] = (form.get('assertion') ?? '').split('.') as [string, string, string];
  const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>;
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, number | string>;
  const ok =
    header.alg === 'RS256' &&
    header.kid === KEY_ID &&
    verify('sha256', Buffer.from(`${h}.${p}`), keys.publicKey, Buffer.from(s, 'base64url')) &&
    claims.iss === EMAIL &&
    claims.scope === FCM_SCOPE &&
    claims.aud === `${server.url}/token` &&
    (claims.exp as number) - (claims.iat as number) === 3600 &&
    Math.abs((claims.iat as number) - clock.now() / 1000) < 5;
  if (!ok) return { status: 400, body: '{"error":"invalid_grant"}' };
  issued++;
  return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ access_token: `token-${issued}`, expires_in: 3599, token_type: 'Bearer' }) };
}

beforeAll(async () => {
  tls = makeTls();
  server = await httpsServer(tls, (c) => (c.path === '/token' ? tokenEndpoint(c) : sendReply(c)));
  accountFile = tempFile(
    'service-account.json',
    JSON.stringify({
      type: 'service_account',
      project_id: PROJECT,
      private_key_id: KEY_ID,
      private_key: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }),
      client_email: EMAIL,
      token_uri: `${server.url}/token`,
    }),
  );
  t = await startPushNode({ FCM_SERVICE_ACCOUNT_FILE: accountFile.path, FCM_API_URL: server.url, PUSH_COALESCE_MS: '2000' }, { tls, ctx: clock.ctx });
});
afterAll(async () => {
  await t?.close();
  await server?.close();
  accountFile?.remove();
});
beforeEach(() => {
  server.recorder.requests.length = 0;
  sendReply = () => ({ status: 200, body: JSON.stringify({ name: `projects/${PROJECT}/messages/1` }) });
});

const fcmReg = (token: string) => ({ target: { case: 'fcm' as const, value: { registrationToken: token } } });
const sends = () => server.recorder.requests.filter((r) => r.path !== '/token');
const tokenRequests = () => server.recorder.requests.filter((r) => r.path === '/token');
const registrations = (mailbox: Uint8Array) => sqliteOf(t.node).prepare('SELECT count(*) AS n FROM push_registrations WHERE mailbox = ?').get(mailbox);
const UNREGISTERED = {
  status: 404,
  body: JSON.stringify({
    error: { code: 404, message: 'Requested entity was not found.', status: 'NOT_FOUND', details: [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode: 'UNREGISTERED' }] },
  }),
};

describe('FCM (HTTP v1, service-account OAuth)', () => {
  it('gets a token with a verifying RS256 assertion, then sends a data-only high-priority message with the bearer token', async () => {
    const d = await deviceWithPush(t.node, fcmReg('fcm-registration-token-1'));
    await sendTo(t.node, d.mailbox, undefined, new TextEncoder().encode('secret message text'));
    await server.recorder.waitFor(2);
    expect(tokenRequests()).toHaveLength(1);
    expect(issued).toBe(1); // the token endpoint accepted the assertion
    const [c] = sends();
    expect(c!.method).toBe('POST');
    expect(c!.path).toBe(`/v1/projects/${PROJECT}/messages:send`);
    expect(c!.headers.authorization).toBe('Bearer token-1');
    const body = JSON.parse(c!.body.toString()) as { message: Record<string, unknown> };
    expect(body).toEqual({
      message: { token: 'fcm-registration-token-1', data: { mw: 'wake', v: '1' }, android: { priority: 'HIGH', collapse_key: PUSH_COLLAPSE_KEY, ttl: `${PUSH_TTL_SECONDS}s` } },
    });
    expect(body.message).not.toHaveProperty('notification');
    expect(c!.body.toString()).not.toContain('secret message text');
    expect(c!.body.toString()).not.toContain(toHex(d.mailbox));
  });

  it('the access token is cached until it nears expiry, then fetched again', async () => {
    const d = await deviceWithPush(t.node, fcmReg('fcm-registration-token-2'));
    clock.advance(10_000);
    await sendTo(t.node, d.mailbox);
    await server.recorder.waitFor(1);
    expect(tokenRequests()).toHaveLength(0); // token-1 still good
    expect(sends()[0]!.headers.authorization).toBe('Bearer token-1');
    clock.advance(3600_000);
    await sendTo(t.node, d.mailbox);
    await server.recorder.waitFor(3);
    expect(tokenRequests()).toHaveLength(1);
    expect(sends()[1]!.headers.authorization).toBe('Bearer token-2');
  });

  it('UNREGISTERED (404) prunes the registration and is not retried', async () => {
    sendReply = () => UNREGISTERED;
    const d = await deviceWithPush(t.node, fcmReg('fcm-registration-token-3'));
    clock.advance(10_000);
    await sendTo(t.node, d.mailbox);
    await server.recorder.waitFor(1);
    await expect.poll(() => registrations(d.mailbox)).toEqual({ n: 0 });
    await settle(100);
    expect(sends()).toHaveLength(1);
  });

  it('401 drops the cached token: the retry fetches a new one; 500 is retried; INVALID_ARGUMENT is not pruned', async () => {
    let n = 0;
    sendReply = () => (++n === 1 ? { status: 401, body: '{"error":{"status":"UNAUTHENTICATED"}}' } : n === 2 ? { status: 500, body: '{}' } : { status: 200, body: '{}' });
    const d = await deviceWithPush(t.node, fcmReg('fcm-registration-token-4'));
    clock.advance(10_000);
    const before = issued;
    await sendTo(t.node, d.mailbox);
    await server.recorder.waitFor(4);
    expect(issued).toBe(before + 1);
    expect(sends().map((s) => s.headers.authorization)).toEqual([`Bearer token-${before}`, `Bearer token-${before + 1}`, `Bearer token-${before + 1}`]);

    server.recorder.requests.length = 0;
    sendReply = () => ({ status: 400, body: JSON.stringify({ error: { status: 'INVALID_ARGUMENT', details: [{ errorCode: 'INVALID_ARGUMENT' }] } }) });
    const e = await deviceWithPush(t.node, fcmReg('fcm-registration-token-5'));
    await sendTo(t.node, e.mailbox);
    await server.recorder.waitFor(1);
    await settle(100);
    expect(sends()).toHaveLength(1);
    expect(registrations(e.mailbox)).toEqual({ n: 1 });
  });
});

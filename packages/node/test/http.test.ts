// In-process HTTP tests (fastify inject): directory, usernames, sends, media, archive, deletion,
// and the attack tests of issue 3 that concern HTTP endpoints.
import { readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AccountKeyPair,
  ArchiveKeySourceTag,
  ArchiveRootSecret,
  DeviceKeyPair,
  RecoveryKey,
  decodePreKeyBundle,
  encodeArchiveKeySource,
  encodeDeviceCertificate,
  toHex,
  verifyPreKeyBundle,
} from '@meshwhisper/crypto';
import type { ArchiveAccessKeyPair } from '@meshwhisper/crypto';
import {
  ARCHIVE_VERSION_HEADER,
  AUTH_HEADER,
  AccountDevicesSchema,
  ArchiveStoredSchema,
  ArchiveKeySourceRecordSchema,
  CONTENT_TYPE_OCTETS,
  ClaimRequestSchema,
  ClaimResultSchema,
  EnvelopeClass,
  ErrorCode,
  KeyUploadSchema,
  MAX_HTTP_BODY_BYTES,
  MediaUploadedSchema,
  PreKeyCountsSchema,
  RegisterArchiveKeySchema,
  SendRequestSchema,
  SendResultSchema,
  UsernameAction,
  UsernameRecordSchema,
  buildChallenge,
  encodeArchiveAuthHeader,
  encodeBody,
  encodeDeviceAuthHeader,
  fromBinary,
  requestDigest,
  signArchiveAuth,
  signDeviceAuth,
  signUsernameOperation,
  signUsernameTransferConsent,
} from '@meshwhisper/protocol';
import { TestDevice, ctx, generousLimits, proto, startTestNode } from './helpers.js';
import type { TestNode } from './helpers.js';

let t: TestNode;
beforeAll(async () => {
  t = await startTestNode({ RATE_LIMITS: generousLimits(), USERNAME_NAMESPACES: 'default:signed,open:last-writer-wins', MEDIA_MAX_BYTES: '100000', MEDIA_QUOTA_BYTES: '150000' });
});
afterAll(async () => t.close());

const errorCode = (res: { json(): unknown }): string => (res.json() as { error: { code: string } }).error.code;

async function claim(mailbox: Uint8Array) {
  return t.node.app.inject({ method: 'POST', url: '/v1/keys/claim', headers: proto, payload: Buffer.from(encodeBody(ClaimRequestSchema, { mailboxId: mailbox })) });
}

async function send(mailbox: Uint8Array, payload = Uint8Array.of(1, 2, 3), extra: { deliveryToken?: Uint8Array; class?: EnvelopeClass } = {}) {
  return t.node.app.inject({
    method: 'POST',
    url: '/v1/send',
    headers: proto,
    payload: Buffer.from(encodeBody(SendRequestSchema, { mailboxId: mailbox, payload, class: EnvelopeClass.DURABLE, ...extra })),
  });
}

describe('health', () => {
  it('/health and /ready answer 200', async () => {
    expect((await t.node.app.inject('/health')).statusCode).toBe(200);
    expect((await t.node.app.inject('/ready')).json()).toEqual({ status: 'ready' });
  });
  it('unknown endpoints answer the standard error shape', async () => {
    const res = await t.node.app.inject('/nope');
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ error: { code: ErrorCode.NOT_FOUND, message: 'no such endpoint' } });
  });
});

describe('key directory', () => {
  it('registers a device and hands out verifiable bundles, one-time keys first, then the last-resort KEM key', async () => {
    const d = new TestDevice();
    const res = await d.register(t.node, d.keyUpload(2));
    expect(res.statusCode, res.body).toBe(200);
    expect(fromBinary(PreKeyCountsSchema, res.rawPayload)).toMatchObject({ oneTimePrekeys: 2, kemPrekeys: 2, hasSignedPrekey: true, hasLastResortKemPrekey: true });
    const bundles = [];
    for (let i = 0; i < 3; i++) {
      const r = await claim(d.mailbox);
      expect(r.statusCode, r.body).toBe(200);
      const b = decodePreKeyBundle(fromBinary(ClaimResultSchema, r.rawPayload).bundle);
      verifyPreKeyBundle(ctx, b, d.account.publicKey);
      bundles.push(b);
    }
    expect(bundles.map((b) => b.kemPreKey.lastResort)).toEqual([false, false, true]);
    expect(bundles.map((b) => b.oneTimePreKey !== undefined)).toEqual([true, true, false]);
    expect(new Set(bundles.slice(0, 2).map((b) => b.oneTimePreKey!.id)).size).toBe(2);
  });

  it('lists the devices of an account by its key (first contact by public key); unknown → NOT_FOUND, malformed → BAD_REQUEST', async () => {
    const a = new TestDevice();
    const b = new TestDevice(a.account); // a second device of the same account
    const other = new TestDevice();
    for (const d of [a, b, other]) expect((await d.register(t.node, d.keyUpload(1))).statusCode).toBe(200);
    const r = await t.node.app.inject({ method: 'GET', url: `/v1/accounts/${toHex(a.account.publicKey)}/devices` });
    expect(r.statusCode, r.body).toBe(200);
    const list = fromBinary(AccountDevicesSchema, r.rawPayload);
    expect(toHex(list.accountKey)).toBe(toHex(a.account.publicKey));
    expect(list.mailboxIds.map(toHex).sort()).toEqual([a.mailbox, b.mailbox].map(toHex).sort());
    const unknown = await t.node.app.inject({ method: 'GET', url: `/v1/accounts/${'ab'.repeat(32)}/devices` });
    expect([unknown.statusCode, errorCode(unknown)]).toEqual([404, ErrorCode.NOT_FOUND]);
    for (const bad of ['xyz', 'AB'.repeat(32), 'ab'.repeat(33)]) {
      const m = await t.node.app.inject({ method: 'GET', url: `/v1/accounts/${bad}/devices` });
      expect([m.statusCode, errorCode(m)]).toEqual([400, ErrorCode.BAD_REQUEST]);
    }
  });

  it('claims for an unknown mailbox are NOT_FOUND', async () => {
    const r = await claim(new Uint8Array(32).fill(9));
    expect(r.statusCode).toBe(404);
    expect(errorCode(r)).toBe(ErrorCode.NOT_FOUND);
  });

  it('attack: an unsigned key upload is rejected', async () => {
    const d = new TestDevice();
    const res = await t.node.app.inject({ method: 'PUT', url: '/v1/keys', headers: proto, payload: Buffer.from(encodeBody(KeyUploadSchema, d.keyUpload(1))) });
    expect(res.statusCode).toBe(401);
    expect(errorCode(res)).toBe(ErrorCode.AUTH_REQUIRED);
  });

  it('attack: an upload authenticated by another key than the certified device key is rejected', async () => {
    const d = new TestDevice();
    const body = encodeBody(KeyUploadSchema, d.keyUpload(1));
    const intruder = DeviceKeyPair.generate(ctx);
    const res = await t.node.app.inject({ method: 'PUT', url: '/v1/keys', headers: { ...proto, [AUTH_HEADER]: await d.authHeader(t.node, 'PUT', '/v1/keys', body, intruder) }, payload: Buffer.from(body) });
    expect(errorCode(res)).toBe(ErrorCode.AUTH_INVALID);
  });

  it('attack: a proof for one body does not authorise another (body swapped in transit)', async () => {
    const d = new TestDevice();
    const signedFor = encodeBody(KeyUploadSchema, d.keyUpload(1));
    const other = encodeBody(KeyUploadSchema, d.keyUpload(1));
    const res = await t.node.app.inject({ method: 'PUT', url: '/v1/keys', headers: { ...proto, [AUTH_HEADER]: await d.authHeader(t.node, 'PUT', '/v1/keys', signedFor) }, payload: Buffer.from(other) });
    expect(errorCode(res)).toBe(ErrorCode.AUTH_INVALID);
  });

  it('attack: wrongly signed signed-prekey, KEM prekey batch and last-resort key are rejected and nothing is stored', async () => {
    const d = new TestDevice();
    const stranger = DeviceKeyPair.generate(ctx);
    const good = d.keyUpload(2);
    const bad = d.keyUpload(2, { signer: stranger });
    for (const upload of [
      { ...good, signedPrekey: bad.signedPrekey },
      { ...good, kemPrekeys: [good.kemPrekeys[0]!, bad.kemPrekeys[1]!] },
      { ...good, lastResortKemPrekey: bad.lastResortKemPrekey },
    ]) {
      const res = await d.register(t.node, upload);
      expect(res.statusCode).toBe(400);
      expect(errorCode(res)).toBe(ErrorCode.BAD_SIGNATURE);
    }
    expect((await claim(d.mailbox)).statusCode).toBe(404);
  });

  it('attack: a replayed authenticated request is rejected (challenge single use)', async () => {
    const d = new TestDevice();
    await d.enlist(t.node);
    const body = encodeBody(KeyUploadSchema, d.keyUpload(1));
    const header = await d.authHeader(t.node, 'PUT', '/v1/keys', body);
    const req = { method: 'PUT' as const, url: '/v1/keys', headers: { ...proto, [AUTH_HEADER]: header }, payload: Buffer.from(body) };
    expect((await t.node.app.inject(req)).statusCode).toBe(200);
    const again = await t.node.app.inject(req);
    expect(again.statusCode).toBe(401);
    expect(errorCode(again)).toBe(ErrorCode.AUTH_REPLAYED);
  });

  it('attack: a challenge from another node, and a challenge never issued, are rejected', async () => {
    const d = new TestDevice();
    const body = encodeBody(KeyUploadSchema, d.keyUpload(1));
    const digest = requestDigest(ctx, 'PUT', '/v1/keys', body);
    const foreign = buildChallenge(new Uint8Array(32).fill(5), new Uint8Array(32).fill(1), ctx.now());
    const forged = buildChallenge(t.node.nodeKey.publicKey, new Uint8Array(32).fill(1), ctx.now());
    for (const [challenge, code] of [
      [foreign, ErrorCode.AUTH_WRONG_NODE],
      [forged, ErrorCode.AUTH_REPLAYED],
    ] as const) {
      const header = encodeDeviceAuthHeader(signDeviceAuth(ctx, d.device, d.certificateBytes, challenge, digest));
      const res = await t.node.app.inject({ method: 'PUT', url: '/v1/keys', headers: { ...proto, [AUTH_HEADER]: header }, payload: Buffer.from(body) });
      expect(errorCode(res)).toBe(code);
    }
  });

  it('attack: a certificate not signed by its account key is rejected', async () => {
    const d = new TestDevice();
    const forged = { ...d.certificate, accountKey: AccountKeyPair.generate(ctx).publicKey };
    const body = encodeBody(KeyUploadSchema, d.keyUpload(1));
    const challenge = (await import('./helpers.js')).TestDevice.challenge(t.node);
    const header = encodeDeviceAuthHeader(signDeviceAuth(ctx, d.device, encodeDeviceCertificate(forged), await challenge, requestDigest(ctx, 'PUT', '/v1/keys', body)));
    const res = await t.node.app.inject({ method: 'PUT', url: '/v1/keys', headers: { ...proto, [AUTH_HEADER]: header }, payload: Buffer.from(body) });
    expect(errorCode(res)).toBe(ErrorCode.AUTH_INVALID);
  });

  it('oversize protobuf bodies get a clear TOO_LARGE, wrong content types UNSUPPORTED_MEDIA_TYPE', async () => {
    const big = await t.node.app.inject({ method: 'PUT', url: '/v1/keys', headers: proto, payload: Buffer.alloc(MAX_HTTP_BODY_BYTES + 1) });
    expect(big.statusCode).toBe(413);
    expect(errorCode(big)).toBe(ErrorCode.TOO_LARGE);
    const json = await t.node.app.inject({ method: 'POST', url: '/v1/send', headers: { 'content-type': 'application/json' }, payload: '{}' });
    expect(json.statusCode).toBe(415);
    expect(errorCode(json)).toBe(ErrorCode.UNSUPPORTED_MEDIA_TYPE);
    const garbage = await t.node.app.inject({ method: 'POST', url: '/v1/send', headers: proto, payload: Buffer.from([0x0a, 0xff, 0xff]) });
    expect(errorCode(garbage)).toBe(ErrorCode.MALFORMED);
  });
});

describe('prekey draining (attack)', () => {
  it('past the per-target budget a claim consumes nothing: the pool survives a drain attempt', async () => {
    const n = await startTestNode({ RATE_LIMITS: `${generousLimits(['prekey-claim-target'])},prekey-claim-target=0.001:3` });
    try {
      const d = new TestDevice();
      expect((await d.register(n.node, d.keyUpload(10))).statusCode).toBe(200);
      const bundles = [];
      for (let i = 0; i < 10; i++) {
        const r = await n.node.app.inject({ method: 'POST', url: '/v1/keys/claim', headers: proto, payload: Buffer.from(encodeBody(ClaimRequestSchema, { mailboxId: d.mailbox })) });
        expect(r.statusCode).toBe(200);
        bundles.push(decodePreKeyBundle(fromBinary(ClaimResultSchema, r.rawPayload).bundle));
      }
      expect(bundles.filter((b) => b.oneTimePreKey).length).toBe(3);
      expect(bundles.slice(3).every((b) => b.kemPreKey.lastResort)).toBe(true);
      expect(await n.node.services.store.preKeyCounts(d.mailbox)).toEqual({ oneTimePreKeys: 7, kemPreKeys: 7 });
    } finally {
      await n.close();
    }
  });
});

describe('usernames', () => {
  async function op(signer: TestDevice, action: UsernameAction, username: string, extra: { newOwnerKey?: Uint8Array; namespace?: string; signWith?: AccountKeyPair; transferConsent?: Uint8Array } = {}) {
    const challenge = await TestDevice.challenge(t.node);
    const signed = signUsernameOperation(ctx, extra.signWith ?? signer.account, {
      namespace: extra.namespace ?? 'default',
      username,
      action,
      signerKey: signer.account.publicKey,
      newOwnerKey: extra.newOwnerKey ?? new Uint8Array(0),
      challenge,
      ...(extra.transferConsent ? { transferConsent: extra.transferConsent } : {}),
    });
    const { SignedUsernameOperationSchema } = await import('@meshwhisper/protocol');
    return t.node.app.inject({ method: 'POST', url: '/v1/usernames', headers: proto, payload: Buffer.from(encodeBody(SignedUsernameOperationSchema, signed)) });
  }
  const lookup = (name: string, ns = 'default') => t.node.app.inject(`/v1/usernames/${ns}/${name}`);

  it('claim, lookup (bundle reference only), transfer to a named key, release', async () => {
    const alice = new TestDevice();
    const bob = new TestDevice();
    await alice.register(t.node);
    await bob.register(t.node);
    expect((await op(alice, UsernameAction.CLAIM, 'alice')).statusCode).toBe(200);
    const rec = fromBinary(UsernameRecordSchema, (await lookup('alice')).rawPayload);
    expect(toHex(rec.ownerKey)).toBe(toHex(alice.account.publicKey));
    expect(rec.mailboxIds.map(toHex)).toEqual([toHex(alice.mailbox)]);
    const consent = signUsernameTransferConsent(ctx, bob.account, { namespace: 'default', username: 'alice', previousOwnerKey: alice.account.publicKey, newOwnerKey: bob.account.publicKey, expiresAtMs: BigInt(Date.now() + 60_000) });
    expect((await op(alice, UsernameAction.TRANSFER, 'alice', { newOwnerKey: bob.account.publicKey, transferConsent: consent })).statusCode).toBe(200);
    expect(toHex(fromBinary(UsernameRecordSchema, (await lookup('alice')).rawPayload).ownerKey)).toBe(toHex(bob.account.publicKey));
    expect((await op(bob, UsernameAction.RELEASE, 'alice')).statusCode).toBe(200);
    expect((await lookup('alice')).statusCode).toBe(404);
  });

  it('attack: squatting under the default policy — a claim of a taken name fails, transfer/release by a non-owner fail', async () => {
    const owner = new TestDevice();
    const squatter = new TestDevice();
    await owner.register(t.node);
    await squatter.register(t.node);
    expect((await op(owner, UsernameAction.CLAIM, 'carol')).statusCode).toBe(200);
    const c = await op(squatter, UsernameAction.CLAIM, 'carol');
    expect(c.statusCode).toBe(409);
    expect(errorCode(c)).toBe(ErrorCode.USERNAME_TAKEN);
    const selfConsent = signUsernameTransferConsent(ctx, squatter.account, { namespace: 'default', username: 'carol', previousOwnerKey: squatter.account.publicKey, newOwnerKey: squatter.account.publicKey, expiresAtMs: BigInt(Date.now() + 60_000) });
    expect(errorCode(await op(squatter, UsernameAction.TRANSFER, 'carol', { newOwnerKey: squatter.account.publicKey, transferConsent: selfConsent }))).toBe(ErrorCode.FORBIDDEN);
    expect(errorCode(await op(squatter, UsernameAction.RELEASE, 'carol'))).toBe(ErrorCode.FORBIDDEN);
    expect(toHex(fromBinary(UsernameRecordSchema, (await lookup('carol')).rawPayload).ownerKey)).toBe(toHex(owner.account.publicKey));
  });

  it('attack: a claim or transfer signed by another key than signerKey is rejected', async () => {
    const owner = new TestDevice();
    await owner.register(t.node);
    const mallory = AccountKeyPair.generate(ctx);
    expect(errorCode(await op(owner, UsernameAction.CLAIM, 'dave', { signWith: mallory }))).toBe(ErrorCode.BAD_SIGNATURE);
    expect((await op(owner, UsernameAction.CLAIM, 'dave')).statusCode).toBe(200);
    const malloryConsent = signUsernameTransferConsent(ctx, mallory, { namespace: 'default', username: 'dave', previousOwnerKey: owner.account.publicKey, newOwnerKey: mallory.publicKey, expiresAtMs: BigInt(Date.now() + 60_000) });
    expect(errorCode(await op(owner, UsernameAction.TRANSFER, 'dave', { newOwnerKey: mallory.publicKey, signWith: mallory, transferConsent: malloryConsent }))).toBe(ErrorCode.BAD_SIGNATURE);
  });

  it('last-writer-wins namespaces let a signed claim take the name; unknown namespaces are refused', async () => {
    const a = new TestDevice();
    const b = new TestDevice();
    await a.register(t.node);
    await b.register(t.node);
    expect((await op(a, UsernameAction.CLAIM, 'eve', { namespace: 'open' })).statusCode).toBe(200);
    expect((await op(b, UsernameAction.CLAIM, 'eve', { namespace: 'open' })).statusCode).toBe(200);
    expect(toHex(fromBinary(UsernameRecordSchema, (await lookup('eve', 'open')).rawPayload).ownerKey)).toBe(toHex(b.account.publicKey));
    expect(errorCode(await op(a, UsernameAction.CLAIM, 'eve', { namespace: 'nowhere' }))).toBe(ErrorCode.UNKNOWN_NAMESPACE);
  });
});

describe('anonymous send lanes', () => {
  it('accepts a durable send only after commit, to a known mailbox; unknown mailboxes are NOT_FOUND', async () => {
    const d = new TestDevice();
    await d.register(t.node);
    const res = await send(d.mailbox);
    expect(res.statusCode, res.body).toBe(200);
    const id = fromBinary(SendResultSchema, res.rawPayload).id;
    expect(id.length).toBe(16);
    expect((await t.node.services.store.fetch(d.mailbox, 0, 10, 1e9)).map((e) => toHex(e.id))).toEqual([toHex(id)]);
    expect(errorCode(await send(new Uint8Array(32)))).toBe(ErrorCode.NOT_FOUND);
  });

  it('a wrong delivery token is refused; ephemeral signals are never stored', async () => {
    const d = new TestDevice();
    await d.register(t.node);
    expect(errorCode(await send(d.mailbox, Uint8Array.of(1), { deliveryToken: new Uint8Array(16).fill(1) }))).toBe(ErrorCode.FORBIDDEN);
    const eph = await send(d.mailbox, Uint8Array.of(7), { class: EnvelopeClass.EPHEMERAL });
    expect(fromBinary(SendResultSchema, eph.rawPayload)).toMatchObject({ deliveredLive: false });
    expect((await t.node.services.store.mailboxStats(d.mailbox)).messages).toBe(0);
  });
});

describe('media', () => {
  it('streams an authenticated upload and an unauthenticated download by unguessable id; enforces size and quota', async () => {
    const d = new TestDevice();
    await d.register(t.node);
    const blob = Buffer.alloc(60_000, 7);
    const up = await t.node.app.inject({ method: 'POST', url: '/v1/media', headers: { 'content-type': CONTENT_TYPE_OCTETS, [AUTH_HEADER]: await d.authHeader(t.node, 'POST', '/v1/media') }, payload: blob });
    expect(up.statusCode, up.body).toBe(201);
    const { id } = fromBinary(MediaUploadedSchema, up.rawPayload);
    expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    const down = await t.node.app.inject(`/v1/media/${id}`);
    expect(down.statusCode).toBe(200);
    expect(Buffer.compare(down.rawPayload, blob)).toBe(0);
    expect((await t.node.app.inject('/v1/media/AAAAAAAAAAAAAAAAAAAAAA')).statusCode).toBe(404);
    const tooBig = await t.node.app.inject({ method: 'POST', url: '/v1/media', headers: { 'content-type': CONTENT_TYPE_OCTETS, [AUTH_HEADER]: await d.authHeader(t.node, 'POST', '/v1/media') }, payload: Buffer.alloc(100_001) });
    expect(tooBig.statusCode).toBe(413);
    expect(errorCode(tooBig)).toBe(ErrorCode.TOO_LARGE);
    const overQuota = await t.node.app.inject({ method: 'POST', url: '/v1/media', headers: { 'content-type': CONTENT_TYPE_OCTETS, [AUTH_HEADER]: await d.authHeader(t.node, 'POST', '/v1/media') }, payload: Buffer.alloc(95_000) });
    expect(errorCode(overQuota)).toBe(ErrorCode.QUOTA_EXCEEDED);
    const anon = await t.node.app.inject({ method: 'POST', url: '/v1/media', headers: { 'content-type': CONTENT_TYPE_OCTETS }, payload: blob });
    expect(errorCode(anon)).toBe(ErrorCode.AUTH_REQUIRED);
  });
});

describe('archive', () => {
  // A fresh device derives this key from the recovery key alone (docs/spec/archive.md).
  const archiveKey = ArchiveRootSecret.fromRecoveryKey(RecoveryKey.generate(ctx)).accessKeyPair(ctx);
  async function archiveHeader(key: ArchiveAccessKeyPair, method: string) {
    const challenge = await TestDevice.challenge(t.node);
    return encodeArchiveAuthHeader(signArchiveAuth(ctx, key, challenge, requestDigest(ctx, method, '/v1/archive')));
  }

  it('writes and reads need the registered archive key; a stranger cannot read it; the key-source record is public', async () => {
    const d = new TestDevice();
    await d.register(t.node);
    const keySource = encodeArchiveKeySource({ kind: 'recovery-key' });
    expect(keySource[0]).toBe(ArchiveKeySourceTag.RecoveryKey);
    const body = encodeBody(RegisterArchiveKeySchema, { archiveKey: archiveKey.publicKey, keySource });
    const reg = await t.node.app.inject({ method: 'PUT', url: '/v1/archive/key', headers: { ...proto, [AUTH_HEADER]: await d.authHeader(t.node, 'PUT', '/v1/archive/key', body) }, payload: Buffer.from(body) });
    expect(reg.statusCode, reg.body).toBe(204);
    const src = await t.node.app.inject(`/v1/archive/source/${toHex(d.account.publicKey)}`);
    expect(src.statusCode).toBe(200);
    expect(toHex(fromBinary(ArchiveKeySourceRecordSchema, src.rawPayload).keySource)).toBe(toHex(keySource));
    expect(src.rawPayload.includes(Buffer.from(archiveKey.publicKey))).toBe(false);

    const blob = Buffer.alloc(5000, 3);
    const put = await t.node.app.inject({ method: 'PUT', url: '/v1/archive', headers: { 'content-type': CONTENT_TYPE_OCTETS, [ARCHIVE_VERSION_HEADER]: '0', [AUTH_HEADER]: await archiveHeader(archiveKey, 'PUT') }, payload: blob });
    expect(put.statusCode, put.body).toBe(200);
    expect(fromBinary(ArchiveStoredSchema, put.rawPayload).version).toBe(1n);
    const get = await t.node.app.inject({ method: 'GET', url: '/v1/archive', headers: { [AUTH_HEADER]: await archiveHeader(archiveKey, 'GET') } });
    expect(Buffer.compare(get.rawPayload, blob)).toBe(0);
    expect(get.headers[ARCHIVE_VERSION_HEADER]).toBe('1');

    // Compare-and-swap: no header → 400; the wrong version → 409 naming the stored one, nothing replaced.
    const bare = await t.node.app.inject({ method: 'PUT', url: '/v1/archive', headers: { 'content-type': CONTENT_TYPE_OCTETS, [AUTH_HEADER]: await archiveHeader(archiveKey, 'PUT') }, payload: Buffer.alloc(10, 1) });
    expect([bare.statusCode, errorCode(bare)]).toEqual([400, ErrorCode.BAD_REQUEST]);
    const stale = await t.node.app.inject({ method: 'PUT', url: '/v1/archive', headers: { 'content-type': CONTENT_TYPE_OCTETS, [ARCHIVE_VERSION_HEADER]: '0', [AUTH_HEADER]: await archiveHeader(archiveKey, 'PUT') }, payload: Buffer.alloc(10, 1) });
    expect([stale.statusCode, errorCode(stale), stale.headers[ARCHIVE_VERSION_HEADER]]).toEqual([409, ErrorCode.CONFLICT, '1']);
    const next = Buffer.alloc(700, 7);
    const put2 = await t.node.app.inject({ method: 'PUT', url: '/v1/archive', headers: { 'content-type': CONTENT_TYPE_OCTETS, [ARCHIVE_VERSION_HEADER]: '1', [AUTH_HEADER]: await archiveHeader(archiveKey, 'PUT') }, payload: next });
    expect(fromBinary(ArchiveStoredSchema, put2.rawPayload).version).toBe(2n);
    const get2 = await t.node.app.inject({ method: 'GET', url: '/v1/archive', headers: { [AUTH_HEADER]: await archiveHeader(archiveKey, 'GET') } });
    expect([Buffer.compare(get2.rawPayload, next), get2.headers[ARCHIVE_VERSION_HEADER]]).toEqual([0, '2']);
    // One file per account: the replaced version's file is gone.
    expect(readdirSync(join(t.dataDir, 'archives')).filter((n) => n.startsWith(toHex(d.account.publicKey)))).toHaveLength(1);

    const stranger = ArchiveRootSecret.fromRecoveryKey(RecoveryKey.generate(ctx)).accessKeyPair(ctx);
    const s = await t.node.app.inject({ method: 'GET', url: '/v1/archive', headers: { [AUTH_HEADER]: await archiveHeader(stranger, 'GET') } });
    expect(s.statusCode).toBe(403);
    expect(errorCode(s)).toBe(ErrorCode.FORBIDDEN);
    const forged = encodeArchiveAuthHeader({ ...signArchiveAuth(ctx, stranger, await TestDevice.challenge(t.node), requestDigest(ctx, 'GET', '/v1/archive')), archiveKey: archiveKey.publicKey });
    const f = await t.node.app.inject({ method: 'GET', url: '/v1/archive', headers: { [AUTH_HEADER]: forged } });
    expect(errorCode(f)).toBe(ErrorCode.AUTH_INVALID);
    const none = await t.node.app.inject({ method: 'GET', url: '/v1/archive' });
    expect(errorCode(none)).toBe(ErrorCode.AUTH_REQUIRED);
    // A replayed archive read is refused like any other replay.
    const header = await archiveHeader(archiveKey, 'GET');
    expect((await t.node.app.inject({ method: 'GET', url: '/v1/archive', headers: { [AUTH_HEADER]: header } })).statusCode).toBe(200);
    expect(errorCode(await t.node.app.inject({ method: 'GET', url: '/v1/archive', headers: { [AUTH_HEADER]: header } }))).toBe(ErrorCode.AUTH_REPLAYED);
  });

  it('the sweep removes archive and media files no record names (a crash between the file and its commit), once they are 10 minutes old', async () => {
    const d = new TestDevice();
    await d.register(t.node);
    const key = ArchiveRootSecret.fromRecoveryKey(RecoveryKey.generate(ctx)).accessKeyPair(ctx);
    const body = encodeBody(RegisterArchiveKeySchema, { archiveKey: key.publicKey, keySource: new Uint8Array(0) });
    expect((await t.node.app.inject({ method: 'PUT', url: '/v1/archive/key', headers: { ...proto, [AUTH_HEADER]: await d.authHeader(t.node, 'PUT', '/v1/archive/key', body) }, payload: Buffer.from(body) })).statusCode).toBe(204);
    const put = await t.node.app.inject({ method: 'PUT', url: '/v1/archive', headers: { 'content-type': CONTENT_TYPE_OCTETS, [ARCHIVE_VERSION_HEADER]: '0', [AUTH_HEADER]: await archiveHeader(key, 'PUT') }, payload: Buffer.alloc(300, 9) });
    expect(put.statusCode, put.body).toBe(200);
    const mediaDir = join(t.dataDir, 'media');
    const mediaBefore = readdirSync(mediaDir); // other tests' blobs (young, with records)
    const media = await t.node.app.inject({ method: 'POST', url: '/v1/media', headers: { 'content-type': CONTENT_TYPE_OCTETS, [AUTH_HEADER]: await d.authHeader(t.node, 'POST', '/v1/media') }, payload: Buffer.alloc(100, 1) });
    expect(media.statusCode, media.body).toBe(201);
    const archives = join(t.dataDir, 'archives');
    const hex = toHex(d.account.publicKey);
    const [live] = readdirSync(archives).filter((n) => n.startsWith(`${hex}.`));
    const [liveMedia] = readdirSync(mediaDir).filter((n) => !mediaBefore.includes(n));
    // What a crash right after the rename leaves: files no record names, old and young ones.
    const hourAgo = new Date(Date.now() - 3600_000);
    const plant = (dir: string, name: string, old: boolean) => {
      writeFileSync(join(dir, name), 'left by a crash');
      if (old) utimesSync(join(dir, name), hourAgo, hourAgo);
    };
    plant(archives, `${hex}.00112233aabbccdd`, true);
    plant(archives, `${hex}.young00000000000`, false);
    plant(mediaDir, 'AAAAAAAAAAAAAAAAAAAAAA', true);
    plant(mediaDir, 'BBBBBBBBBBBBBBBBBBBBBB', false);
    // The stored versions are old too: age alone must not remove them.
    utimesSync(join(archives, live!), hourAgo, hourAgo);
    utimesSync(join(mediaDir, liveMedia!), hourAgo, hourAgo);
    await t.node.sweep();
    expect(readdirSync(archives).filter((n) => n.startsWith(hex)).sort()).toEqual([live, `${hex}.young00000000000`].sort());
    expect(readdirSync(mediaDir).sort()).toEqual([...mediaBefore, liveMedia, 'BBBBBBBBBBBBBBBBBBBBBB'].sort());
    const get = await t.node.app.inject({ method: 'GET', url: '/v1/archive', headers: { [AUTH_HEADER]: await archiveHeader(key, 'GET') } });
    expect(get.rawPayload.length).toBe(300);
  });
});

describe('deletion', () => {
  it('DELETE /v1/device removes the mailbox, keys and media; DELETE /v1/account also usernames', async () => {
    const account = AccountKeyPair.generate(ctx);
    const d1 = new TestDevice(account);
    const d2 = new TestDevice(account, DeviceKeyPair.generate(ctx));
    await d1.register(t.node);
    await d2.register(t.node);
    await send(d1.mailbox);
    const del = await t.node.app.inject({ method: 'DELETE', url: '/v1/device', headers: { [AUTH_HEADER]: await d1.authHeader(t.node, 'DELETE', '/v1/device') } });
    expect(del.statusCode).toBe(204);
    const s = t.node.services.store;
    expect(await s.device(d1.mailbox)).toBeUndefined();
    expect((await s.mailboxStats(d1.mailbox)).messages).toBe(0);
    expect(await s.device(d2.mailbox)).toBeDefined();
    const delAll = await d2.deleteAccount(t.node);
    expect(delAll.statusCode).toBe(204);
    expect(await s.devicesOfAccount(account.publicKey)).toEqual([]);
  });
});

describe('logs', () => {
  it('with request logging on, never contain auth headers, mailbox ids, media ids or addresses', async () => {
    const n = await startTestNode({ RATE_LIMITS: generousLimits(), LOG_REQUESTS: 'true' });
    try {
      const d = new TestDevice();
      await d.register(n.node);
      const header = await d.authHeader(n.node, 'POST', '/v1/media');
      const up = await n.node.app.inject({ method: 'POST', url: '/v1/media', headers: { 'content-type': CONTENT_TYPE_OCTETS, [AUTH_HEADER]: header }, payload: Buffer.alloc(10) });
      const { id } = fromBinary(MediaUploadedSchema, up.rawPayload);
      await n.node.app.inject({ url: `/v1/media/${id}`, remoteAddress: '192.0.2.55' });
      await n.node.app.inject({ url: `/v1/usernames/default/${toHex(d.mailbox).slice(0, 20)}` });
      const all = n.logs.join('');
      expect(all).toContain('/v1/media/:id'); // request lines are there, by route pattern
      for (const secret of [header, header.slice(0, 40), toHex(d.mailbox), toHex(d.mailbox).slice(0, 20), id, '192.0.2.55']) expect(all).not.toContain(secret);
    } finally {
      await n.close();
    }
  });
});

describe('rate limiting (attack: flood from one address)', () => {
  it('a flooding address gets 429 with Retry-After while another address keeps working', async () => {
    const n = await startTestNode({ RATE_LIMITS: generousLimits(['send-first-contact']) });
    try {
      const d = new TestDevice();
      await d.register(n.node);
      const body = Buffer.from(encodeBody(SendRequestSchema, { mailboxId: d.mailbox, payload: Uint8Array.of(1), class: EnvelopeClass.DURABLE }));
      const from = (remoteAddress: string) => n.node.app.inject({ method: 'POST', url: '/v1/send', headers: proto, payload: body, remoteAddress });
      const statuses: number[] = [];
      for (let i = 0; i < 20; i++) statuses.push((await from('203.0.113.7')).statusCode);
      expect(statuses.filter((s) => s === 200).length).toBe(5); // the default first-contact burst
      const limited = await from('203.0.113.7');
      expect(limited.statusCode).toBe(429);
      expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(errorCode(limited)).toBe(ErrorCode.RATE_LIMITED);
      expect((await from('198.51.100.9')).statusCode).toBe(200);
    } finally {
      await n.close();
    }
  });
});

// Device authority at the node (docs/spec/node-protocol.md §6.1): the stored account-signed device
// list and its enforcement — over a real socket (HTTP and the device WebSocket) on a real SQLite file.
import { afterEach, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import type { DescMessage, MessageInitShape } from '@bufbuild/protobuf';
import {
  AccountKeyPair,
  DeviceFlag,
  DeviceKeyPair,
  decodeDeviceCertificate,
  decodeDeviceList,
  encodeDeviceCertificate,
  encodeDeviceList,
  issueDeviceCertificate,
  issueDeviceList,
  signAccountDeletion,
  toHex,
} from '@meshwhisper/crypto';
import {
  AUTH_HEADER,
  AccountDeletionRequestSchema,
  AccountDevicesSchema,
  CONTENT_TYPE_PROTOBUF,
  CertificateRenewalSchema,
  ChallengeSchema,
  ClaimRequestSchema,
  DEVICE_SOCKET_METHOD,
  DEVICE_SOCKET_PATH,
  DeviceListRecordSchema,
  EnvelopeClass,
  ErrorCode,
  KeyUploadSchema,
  PublishDeviceListSchema,
  SendRequestSchema,
  encodeBody,
  encodeDeviceAuthHeader,
  fromBinary,
  requestDigest,
  signDeviceAuth,
} from '@meshwhisper/protocol';
import { TestDevice, ctx, generousLimits, startTestNode } from './helpers.js';
import type { TestNode } from './helpers.js';
import { WsClient } from './ws-client.js';

const open: { close(): unknown }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

interface Reply {
  status: number;
  code: string | undefined;
  bytes: Uint8Array;
}

/** A node listening on 127.0.0.1, and HTTP calls to it over the socket. */
async function node(): Promise<{ t: TestNode; port: number; call: (method: string, path: string, options?: { body?: Uint8Array; auth?: TestDevice }) => Promise<Reply> }> {
  const t = await startTestNode({ RATE_LIMITS: generousLimits() });
  open.push(t);
  const { port } = (await t.node.listen()) as AddressInfo;
  const base = `http://127.0.0.1:${port}`;
  const call = async (method: string, path: string, options: { body?: Uint8Array; auth?: TestDevice } = {}): Promise<Reply> => {
    const headers: Record<string, string> = options.body ? { 'content-type': CONTENT_TYPE_PROTOBUF } : {};
    if (options.auth) {
      const challenge = fromBinary(ChallengeSchema, new Uint8Array(await (await fetch(`${base}/v1/auth/challenge`)).arrayBuffer())).challenge;
      const d = options.auth;
      headers[AUTH_HEADER] = encodeDeviceAuthHeader(signDeviceAuth(ctx, d.device, d.certificateBytes, challenge, requestDigest(ctx, method, path, options.body)));
    }
    const res = await fetch(`${base}${path}`, { method, headers, ...(options.body ? { body: Buffer.from(options.body) } : {}) });
    const bytes = new Uint8Array(await res.arrayBuffer());
    let code: string | undefined;
    if (!res.ok) code = (JSON.parse(new TextDecoder().decode(bytes)) as { error: { code: string } }).error.code;
    return { status: res.status, code, bytes };
  };
  return { t, port, call };
}

const body = <D extends DescMessage>(schema: D, value: MessageInitShape<D>): Uint8Array => encodeBody(schema, value);
const publish = (list: Uint8Array) => body(PublishDeviceListSchema, { deviceList: list });
const outcome = (r: Reply) => [r.status, r.code];

async function login(port: number, d: TestDevice): Promise<{ c: WsClient; result: 'authenticated' | string }> {
  const c = await WsClient.connect(port, DEVICE_SOCKET_PATH);
  open.push({ close: () => c.terminate() });
  c.send({ body: { case: 'clientHello', value: { versions: [2] } } });
  const hello = await c.nextKind('serverHello');
  c.send({ body: { case: 'authenticate', value: signDeviceAuth(ctx, d.device, d.certificateBytes, hello.body.value.challenge, requestDigest(ctx, DEVICE_SOCKET_METHOD, DEVICE_SOCKET_PATH)) } });
  const f = await c.next((x) => x.body.case === 'authenticated' || x.body.case === 'error');
  return { c, result: f.body.case === 'error' ? f.body.value.code : 'authenticated' };
}

describe('publishing and serving the device list', () => {
  it('a new account publishes epoch 1 naming its first device; device lookups and GET …/device-list serve it', async () => {
    const { call } = await node();
    const a = new TestDevice();
    const list = encodeDeviceList(a.listed());
    const put = await call('PUT', '/v1/device-list', { body: publish(list) });
    expect(put.status).toBe(200);
    expect(fromBinary(DeviceListRecordSchema, put.bytes).deviceList).toEqual(list);
    expect(decodeDeviceList(list).epoch).toBe(1);
    expect((await call('PUT', '/v1/keys', { body: body(KeyUploadSchema, a.keyUpload(1)), auth: a })).status).toBe(200);
    const devices = fromBinary(AccountDevicesSchema, (await call('GET', `/v1/accounts/${toHex(a.account.publicKey)}/devices`)).bytes);
    expect(devices.mailboxIds.map(toHex)).toEqual([toHex(a.mailbox)]);
    expect(devices.deviceList).toEqual(list);
    const got = await call('GET', `/v1/accounts/${toHex(a.account.publicKey)}/device-list`);
    expect(fromBinary(DeviceListRecordSchema, got.bytes).deviceList).toEqual(list);
    expect(outcome(await call('GET', `/v1/accounts/${'ab'.repeat(32)}/device-list`))).toEqual([404, ErrorCode.NOT_FOUND]);
    expect(outcome(await call('GET', `/v1/accounts/xyz/device-list`))).toEqual([400, ErrorCode.BAD_REQUEST]);
  });

  it('refuses a lower epoch, another list under the stored epoch and a reused index (MW_STALE_DEVICE_LIST); a byte-identical re-publish is a no-op', async () => {
    const { t, call } = await node();
    const account = AccountKeyPair.generate(ctx);
    const k = [DeviceKeyPair.generate(ctx), DeviceKeyPair.generate(ctx), DeviceKeyPair.generate(ctx)];
    const entry = (i: number, flags = 0) => ({ deviceIndex: i, signingKey: k[i]!.signingPublicKey, flags });
    const l1 = encodeDeviceList(issueDeviceList(ctx, account, { epoch: 1, devices: [entry(0, DeviceFlag.Manager)] }));
    const l3 = encodeDeviceList(issueDeviceList(ctx, account, { epoch: 3, devices: [entry(0, DeviceFlag.Manager), entry(1)] }));
    expect((await call('PUT', '/v1/device-list', { body: publish(l1) })).status).toBe(200);
    expect((await call('PUT', '/v1/device-list', { body: publish(l3) })).status).toBe(200);
    expect((await call('PUT', '/v1/device-list', { body: publish(l3) })).status).toBe(200); // a retry
    // Replaying the older list (a node or network rollback attempt from outside) is refused.
    expect(outcome(await call('PUT', '/v1/device-list', { body: publish(l1) }))).toEqual([409, ErrorCode.STALE_DEVICE_LIST]);
    // A fork: another list signed for the stored epoch.
    const fork = encodeDeviceList(issueDeviceList(ctx, account, { epoch: 3, devices: [entry(0, DeviceFlag.Manager), entry(2)], nextDeviceIndex: 3 }));
    expect(outcome(await call('PUT', '/v1/device-list', { body: publish(fork) }))).toEqual([409, ErrorCode.STALE_DEVICE_LIST]);
    // Index 1 given to another key in a later list: refused (a revoked index is never reused).
    const reuse = encodeDeviceList(issueDeviceList(ctx, account, { epoch: 4, devices: [entry(0, DeviceFlag.Manager), { deviceIndex: 1, signingKey: k[2]!.signingPublicKey, flags: 0 }] }));
    expect(outcome(await call('PUT', '/v1/device-list', { body: publish(reuse) }))).toEqual([409, ErrorCode.STALE_DEVICE_LIST]);
    expect((await t.node.services.store.deviceList(account.publicKey))!.encoded).toEqual(l3);
  });

  it('attack: a list not signed by its account key (a stranger, or the node, naming its own device) is refused; garbage is BAD_REQUEST', async () => {
    const { t, call } = await node();
    const victim = new TestDevice();
    await victim.register(t.node);
    const before = (await t.node.services.store.deviceList(victim.account.publicKey))!.encoded;
    // The stranger signs a list with its own key, then puts the victim's account key into it.
    const stranger = AccountKeyPair.generate(ctx);
    const evil = DeviceKeyPair.generate(ctx);
    const forged = encodeDeviceList(issueDeviceList(ctx, stranger, { epoch: 9, devices: [{ deviceIndex: 0, signingKey: victim.device.signingPublicKey, flags: DeviceFlag.Manager }, { deviceIndex: 1, signingKey: evil.signingPublicKey, flags: 0 }] }));
    forged.set(victim.account.publicKey, 2); // version ‖ type ‖ account key
    expect(outcome(await call('PUT', '/v1/device-list', { body: publish(forged) }))).toEqual([400, ErrorCode.BAD_SIGNATURE]);
    expect(outcome(await call('PUT', '/v1/device-list', { body: publish(Uint8Array.of(2, 1, 2, 3)) }))).toEqual([400, ErrorCode.BAD_REQUEST]);
    expect(outcome(await call('PUT', '/v1/device-list', { body: new Uint8Array(0) }))).toEqual([400, ErrorCode.BAD_REQUEST]);
    expect((await t.node.services.store.deviceList(victim.account.publicKey))!.encoded).toEqual(before);
  });
});

describe('enforcement', () => {
  it('attack: a device with a valid certificate of the account that the list does not name cannot upload keys, log in or make any authenticated request', async () => {
    const { t, port, call } = await node();
    const a = new TestDevice();
    await a.register(t.node);
    // Whoever holds the account key (or a stolen certificate) made a device but never listed it.
    const extra = new TestDevice(a.account);
    expect(outcome(await call('PUT', '/v1/keys', { body: body(KeyUploadSchema, extra.keyUpload(1)), auth: extra }))).toEqual([403, ErrorCode.DEVICE_NOT_LISTED]);
    expect(await t.node.services.store.device(extra.mailbox)).toBeUndefined();
    expect(outcome(await call('GET', '/v1/keys', { auth: extra }))).toEqual([403, ErrorCode.DEVICE_NOT_LISTED]);
    const { c, result } = await login(port, extra);
    expect(result).toBe(ErrorCode.DEVICE_NOT_LISTED);
    expect((await c.waitClosed()).code).toBe(4003);
    // The listed key under another index than its certificate names is not "listed" either.
    const wrongIndex = issueDeviceCertificate(ctx, a.account, a.device, { deviceIndex: 5 });
    const impostor = Object.assign(Object.create(TestDevice.prototype) as TestDevice, { ...a, certificate: wrongIndex, certificateBytes: encodeDeviceCertificate(wrongIndex), device: a.device, account: a.account, mailbox: a.mailbox });
    expect(outcome(await call('GET', '/v1/keys', { auth: impostor }))).toEqual([403, ErrorCode.DEVICE_NOT_LISTED]);
    // A device of an account that never published a list is refused too.
    const orphan = new TestDevice();
    expect(outcome(await call('PUT', '/v1/keys', { body: body(KeyUploadSchema, orphan.keyUpload(1)), auth: orphan }))).toEqual([403, ErrorCode.DEVICE_NOT_LISTED]);
    expect((await call('GET', '/v1/keys', { auth: a })).status).toBe(200); // the listed device is unaffected
  });

  it('revocation: a list without a device deletes it at once — its connection closes, sends to it and its logins are refused, lookups no longer name it', async () => {
    const { t, port, call } = await node();
    const a = new TestDevice();
    const b = new TestDevice(a.account);
    await a.register(t.node);
    await b.register(t.node);
    const send = (mailboxId: Uint8Array) => call('POST', '/v1/send', { body: body(SendRequestSchema, { mailboxId, payload: Uint8Array.of(1), class: EnvelopeClass.DURABLE }) });
    expect((await send(b.mailbox)).status).toBe(200);
    const live = await login(port, b);
    expect(live.result).toBe('authenticated');
    const current = a.listed();
    const revoked = encodeDeviceList(
      issueDeviceList(ctx, a.account, { epoch: current.epoch + 1, nextDeviceIndex: current.nextDeviceIndex, devices: current.devices.filter((d) => d.deviceIndex !== b.deviceIndex) }),
    );
    expect((await call('PUT', '/v1/device-list', { body: publish(revoked) })).status).toBe(200);
    expect((await live.c.waitClosed()).code).toBe(4004);
    expect(outcome(await send(b.mailbox))).toEqual([404, ErrorCode.NOT_FOUND]);
    expect(outcome(await call('POST', '/v1/keys/claim', { body: body(ClaimRequestSchema, { mailboxId: b.mailbox }) }))).toEqual([404, ErrorCode.NOT_FOUND]);
    expect(outcome(await call('PUT', '/v1/keys', { body: body(KeyUploadSchema, b.keyUpload(1)), auth: b }))).toEqual([403, ErrorCode.DEVICE_NOT_LISTED]);
    expect((await login(port, b)).result).toBe(ErrorCode.DEVICE_NOT_LISTED);
    expect((await t.node.services.store.mailboxStats(b.mailbox)).messages).toBe(0);
    const devices = fromBinary(AccountDevicesSchema, (await call('GET', `/v1/accounts/${toHex(a.account.publicKey)}/devices`)).bytes);
    expect(devices.mailboxIds.map(toHex)).toEqual([toHex(a.mailbox)]);
    expect(devices.deviceList).toEqual(revoked);
    expect((await send(a.mailbox)).status).toBe(200);
  });
});

describe('account deletion', () => {
  it("needs the account key's deletion statement: a device's authentication, a device key's signature, a wrong epoch or a replayed challenge are refused", async () => {
    const { t, call } = await node();
    const a = new TestDevice();
    const b = new TestDevice(a.account);
    await a.register(t.node);
    await b.register(t.node);
    const epoch = a.listed().epoch;
    const { store } = t.node.services;
    // Any one device (here: a non-manager one) cannot delete the account with its DeviceAuth.
    expect(outcome(await call('DELETE', '/v1/account', { auth: b }))).toEqual([401, ErrorCode.AUTH_REQUIRED]);
    const challenge = async () => fromBinary(ChallengeSchema, (await call('GET', '/v1/auth/challenge')).bytes).challenge;
    const statement = async (options: { signer?: { sign: AccountKeyPair['sign'] }; epoch?: number; challenge?: Uint8Array } = {}) => {
      const ch = options.challenge ?? (await challenge());
      const d = signAccountDeletion(ctx, (options.signer ?? a.account) as AccountKeyPair, options.epoch ?? epoch, ch);
      return body(AccountDeletionRequestSchema, { accountKey: a.account.publicKey, epoch: BigInt(d.epoch), challenge: d.challenge, signature: d.signature });
    };
    // Signed by another key (a stranger's account key standing in for any device's key).
    expect(outcome(await call('DELETE', '/v1/account', { body: await statement({ signer: AccountKeyPair.generate(ctx) }) }))).toEqual([401, ErrorCode.AUTH_INVALID]);
    expect(outcome(await call('DELETE', '/v1/account', { body: await statement({ epoch: epoch - 1 }) }))).toEqual([409, ErrorCode.STALE_DEVICE_LIST]);
    expect(await store.devicesOfAccount(a.account.publicKey)).toHaveLength(2);
    const ch = await challenge();
    const ok = await call('DELETE', '/v1/account', { body: await statement({ challenge: ch }) });
    expect(ok.status).toBe(204);
    expect(await store.devicesOfAccount(a.account.publicKey)).toEqual([]);
    expect(await store.deviceList(a.account.publicKey)).toBeUndefined();
    // The same statement again (its challenge is used up).
    expect(outcome(await call('DELETE', '/v1/account', { body: await statement({ challenge: ch }) }))).toEqual([401, ErrorCode.AUTH_REPLAYED]);
  });
});

describe('certificate renewals (docs/spec/node-protocol.md §6.2)', () => {
  const DAY = 24 * 3600 * 1000;
  const renewalOf = (d: TestDevice, options: { issuedAt?: number; signer?: AccountKeyPair; deviceIndex?: number; device?: DeviceKeyPair; validityMs?: number } = {}) =>
    encodeDeviceCertificate(
      issueDeviceCertificate(ctx, options.signer ?? d.account, options.device ?? d.device, {
        issuedAt: options.issuedAt ?? d.certificate.issuedAt + 1000,
        deviceIndex: options.deviceIndex ?? d.deviceIndex,
        ...(options.validityMs ? { validityMs: options.validityMs } : {}),
      }),
    );
  const offer = (certificate: Uint8Array) => body(CertificateRenewalSchema, { certificate });

  it('a listed device of the account offers a renewal for another; the device fetches it without authentication; its key upload with it clears it', async () => {
    const { t, call } = await node();
    const manager = new TestDevice();
    const other = new TestDevice(manager.account);
    await manager.register(t.node);
    await other.register(t.node);
    const path = `/v1/devices/${toHex(other.mailbox)}/certificate-renewal`;
    expect(outcome(await call('GET', path))).toEqual([404, ErrorCode.NOT_FOUND]);
    // The manager reads the registered certificates (?certificates=1), in the order of the mailbox ids.
    const listed = fromBinary(AccountDevicesSchema, (await call('GET', `/v1/accounts/${toHex(manager.account.publicKey)}/devices?certificates=1`)).bytes);
    const byMailbox = new Map(listed.mailboxIds.map((m, i) => [toHex(m), listed.certificates[i]]));
    expect(byMailbox).toEqual(new Map([[toHex(manager.mailbox), manager.certificateBytes], [toHex(other.mailbox), other.certificateBytes]]));
    const plain = fromBinary(AccountDevicesSchema, (await call('GET', `/v1/accounts/${toHex(manager.account.publicKey)}/devices`)).bytes);
    expect(plain.certificates).toEqual([]); // the fan-out lookup stays as small as before
    const renewal = renewalOf(other);
    const put = await call('PUT', '/v1/certificate-renewal', { body: offer(renewal), auth: manager });
    expect(put.status).toBe(200);
    expect((await call('PUT', '/v1/certificate-renewal', { body: offer(renewal), auth: manager })).status).toBe(200); // a retry
    const got = await call('GET', path);
    expect(got.status).toBe(200);
    expect(fromBinary(CertificateRenewalSchema, got.bytes).certificate).toEqual(renewal);
    expect(outcome(await call('GET', '/v1/devices/zz/certificate-renewal'))).toEqual([400, ErrorCode.BAD_REQUEST]);
    // The bundle still carries the old certificate until the device itself adopts and uploads the renewal.
    expect((await t.node.services.store.device(other.mailbox))!.certificate).toEqual(other.certificateBytes);
    const adopted = { device: other.device, certificateBytes: renewal } as TestDevice; // what a DeviceAuth uses
    expect((await call('PUT', '/v1/keys', { body: body(KeyUploadSchema, { ...other.keyUpload(0), certificate: renewal }), auth: adopted })).status).toBe(200);
    expect((await t.node.services.store.device(other.mailbox))!.certificate).toEqual(renewal);
    expect(outcome(await call('GET', path))).toEqual([404, ErrorCode.NOT_FOUND]);
    // Now the registered certificate: offering it again is stale.
    expect(outcome(await call('PUT', '/v1/certificate-renewal', { body: offer(renewal), auth: manager }))).toEqual([409, ErrorCode.STALE_CERTIFICATE]);
  });

  it('refuses with a typed code, holding nothing: forged, foreign, not a renewal of the registered device, older, expired, unregistered, by an unlisted or unauthenticated uploader', async () => {
    const { t, call } = await node();
    const manager = new TestDevice();
    const other = new TestDevice(manager.account);
    await manager.register(t.node);
    await other.register(t.node);
    const put = async (certificate: Uint8Array, auth: TestDevice | null = manager) => outcome(await call('PUT', '/v1/certificate-renewal', { body: offer(certificate), ...(auth ? { auth } : {}) }));
    // Forged: signed by another key, claiming the account.
    const forged = decodeDeviceCertificate(renewalOf(other, { signer: AccountKeyPair.generate(ctx) }));
    expect(await put(encodeDeviceCertificate({ ...forged, accountKey: manager.account.publicKey }))).toEqual([400, ErrorCode.BAD_SIGNATURE]);
    // Foreign: a valid certificate of another account (its own device), offered by this account's device.
    const stranger = new TestDevice();
    await stranger.register(t.node);
    expect(await put(renewalOf(stranger))).toEqual([403, ErrorCode.FORBIDDEN]);
    // An attacker's account certifying the victim device's keys: not this account's either.
    expect(await put(renewalOf(other, { signer: stranger.account }), stranger)).toEqual([404, ErrorCode.NOT_FOUND]);
    // Not a renewal of the registered device: other DH key, other index.
    const swapped = DeviceKeyPair.generate(ctx);
    const otherDh = decodeDeviceCertificate(renewalOf(other, { device: swapped }));
    expect(await put(encodeDeviceCertificate(issueDeviceCertificate(ctx, manager.account, { signingPublicKey: other.device.signingPublicKey, dhPublicKey: swapped.dhPublicKey }, { issuedAt: otherDh.issuedAt, deviceIndex: other.deviceIndex })))).toEqual([403, ErrorCode.FORBIDDEN]);
    expect(await put(renewalOf(other, { deviceIndex: other.deviceIndex + 7 }))).toEqual([403, ErrorCode.FORBIDDEN]);
    // Older than (or as old as) the registered certificate, or expiring no later.
    expect(await put(renewalOf(other, { issuedAt: other.certificate.issuedAt - 1000 }))).toEqual([409, ErrorCode.STALE_CERTIFICATE]);
    expect(await put(renewalOf(other, { issuedAt: other.certificate.issuedAt }))).toEqual([409, ErrorCode.STALE_CERTIFICATE]);
    expect(await put(renewalOf(other, { validityMs: 10 * DAY }))).toEqual([409, ErrorCode.STALE_CERTIFICATE]);
    // Expired (issued long ago with a short validity): a renewal must be valid now.
    expect(await put(renewalOf(other, { issuedAt: Date.now() - 40 * DAY, validityMs: 20 * DAY }))).toEqual([400, ErrorCode.BAD_REQUEST]);
    expect(await put(Uint8Array.of(2, 1, 2, 3))).toEqual([400, ErrorCode.BAD_REQUEST]);
    // Older than the renewal already held.
    expect(await put(renewalOf(other, { issuedAt: other.certificate.issuedAt + 5000 }))).toEqual([200, undefined]);
    expect(await put(renewalOf(other, { issuedAt: other.certificate.issuedAt + 4000 }))).toEqual([409, ErrorCode.STALE_CERTIFICATE]);
    expect(decodeDeviceCertificate((await t.node.services.store.certificateRenewal(other.mailbox))!.certificate).issuedAt).toBe(other.certificate.issuedAt + 5000);
    // A device of the account that is not registered here.
    const unregistered = new TestDevice(manager.account);
    expect(await put(renewalOf(unregistered))).toEqual([404, ErrorCode.NOT_FOUND]);
    // Uploaders: none, or a device with a valid certificate that the list does not name.
    expect(await put(renewalOf(other, { issuedAt: other.certificate.issuedAt + 9000 }), null)).toEqual([401, ErrorCode.AUTH_REQUIRED]);
    expect(await put(renewalOf(other, { issuedAt: other.certificate.issuedAt + 9000 }), unregistered)).toEqual([403, ErrorCode.DEVICE_NOT_LISTED]);
    expect(decodeDeviceCertificate((await t.node.services.store.certificateRenewal(other.mailbox))!.certificate).issuedAt).toBe(other.certificate.issuedAt + 5000);
    expect(await t.node.services.store.certificateRenewal(stranger.mailbox)).toBeUndefined();
  });
});

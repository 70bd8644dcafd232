/**
 * Device authority in the SDK (docs/spec/02-keys.md §2.5) over a real node on a real socket and a
 * real SQLite file: senders verify the recipient's account-signed device list before fan-out and
 * never encrypt to a device it does not name; recipients refuse messages from a device the sender's
 * newest list does not name; a message stating a newer epoch makes the recipient refetch the list;
 * a node serving an older list than one known is reported (deviceListWithheld).
 *
 * The malicious node is a real node whose operator edits its database through its own store
 * (`node.services.store`): the directory then names a device the account never listed, or serves a
 * rolled-back list — exactly what a compromised node could do.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DeviceKeyPair,
  KemPreKeyPair,
  X25519PreKeyPair,
  createContext,
  decodeDeviceList as decodeList,
  decodePreKeyBundle,
  encodeDeviceCertificate,
  encodeDeviceList,
  encodeKemPreKey,
  encodeSignedPreKey,
  initiateSession,
  issueDeviceCertificate,
  mailboxIdOf,
  sealMessage,
  signKemPreKey,
  signSignedPreKey,
  toHex,
} from '@meshwhisper/crypto';
import { CONTENT_TYPE_PROTOBUF, ClaimRequestSchema, ClaimResultSchema, ContentSchema, EnvelopeClass, SendRequestSchema, create, encodeBody, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { MeshWhisper as Client, ProtocolStorage } from '../../src/index.js';
import { MeshWhisper, memoryStorage } from '../../src/index.js';
import type { E2eNode } from './test-node.js';
import { addAccountDevice, startE2eNode } from './test-node.js';

let t: E2eNode;
beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  await t?.close();
});

const ctx = createContext();
const client = async (storage?: ProtocolStorage) => MeshWhisper.create({ node: t.url, namespace: 'test', storage: storage ?? (await memoryStorage()) });

/** A device certified by `owner`'s account key that the account's list does not name, registered straight into the node's store (as a compromised node would). */
async function rogueDevice(owner: Client, deviceIndex: number): Promise<{ device: DeviceKeyPair; mailbox: Uint8Array; certificate: ReturnType<typeof issueDeviceCertificate> }> {
  const device = DeviceKeyPair.generate(ctx);
  const certificate = issueDeviceCertificate(ctx, owner.account!, device, { deviceIndex });
  const mailbox = mailboxIdOf(ctx, device.signingPublicKey);
  const { store } = t.node.services;
  const epoch = (await store.deviceList(owner.accountKey))!.epoch;
  const published = await store.publishKeys({
    mailbox,
    accountKey: owner.accountKey,
    certificate: encodeDeviceCertificate(certificate),
    issuedAt: certificate.issuedAt,
    signedPreKey: encodeSignedPreKey(signSignedPreKey(ctx, device, X25519PreKeyPair.generate(ctx, 1))),
    lastResortKemPreKey: encodeKemPreKey(signKemPreKey(ctx, device, KemPreKeyPair.generate(ctx, 2, true))),
    oneTimePreKeys: [],
    kemPreKeys: [],
    now: Date.now(),
    deviceListEpoch: epoch,
  });
  expect(published).toBe('ok');
  return { device, mailbox, certificate };
}

describe('senders', () => {
  it('a new account publishes epoch 1 naming its device; deviceList() verifies and returns it', async () => {
    const alice = await client();
    const own = (await alice.deviceList())!;
    expect([own.epoch, own.devices.length, toHex(own.devices[0]!.signingKey)]).toEqual([1, 1, alice.address.split(':')[1]]);
    expect(toHex((await t.node.services.store.deviceList(alice.accountKey))!.encoded)).toBe(toHex(encodeDeviceList(own)));
    const bob = await client();
    expect((await bob.deviceList(alice.accountKey))!.epoch).toBe(1);
    await Promise.all([alice.close(), bob.close()]);
  });

  it('attack: a device the node adds to an account (validly certified, not on the list) is never encrypted to — fan-out drops and reports it, a direct send refuses it', async () => {
    const [alice, bob] = [await client(), await client()];
    await bob.claimUsername('bob-listed');
    const rogue = await rogueDevice(bob, 7);
    // The node now names two devices for Bob.
    expect((await t.node.services.store.devicesOfAccount(bob.accountKey)).length).toBe(2);
    const reported: string[] = [];
    alice.on('unlistedDevice', (e) => reported.push(toHex(e.mailboxId)));
    for (const to of [{ username: 'bob-listed' }, { accountKey: bob.accountKey }]) {
      const got = bob.once('message', (m) => m.text === `to ${Object.keys(to)[0]}`);
      await alice.sendText(to, `to ${Object.keys(to)[0]}`);
      await got;
    }
    expect(reported).toEqual([toHex(rogue.mailbox), toHex(rogue.mailbox)]);
    // Its bundle is handed out by the node, but the SDK refuses it before any session exists.
    await expect(alice.sendText(rogue.mailbox, 'direct')).rejects.toMatchObject({ code: 'MW_CRYPTO_DEVICE_NOT_LISTED' });
    expect((await t.node.services.store.mailboxStats(rogue.mailbox)).messages).toBe(0);
    expect(await alice.flushOutbox()).toBe(0);
    await Promise.all([alice.close(), bob.close()]);
  });
});

describe('recipients', () => {
  /** Seals a text as `device` (certified by `account`'s key) to `to`'s device and posts it anonymously. */
  async function sendAs(from: { device: DeviceKeyPair; certificate: ReturnType<typeof issueDeviceCertificate> }, to: Client, text: string, epoch = 0): Promise<void> {
    const storage = await memoryStorage();
    await storage.setLocalIdentity({ certificate: from.certificate, device: from.device });
    const claim = await fetch(new URL('/v1/keys/claim', t.url), { method: 'POST', headers: { 'content-type': CONTENT_TYPE_PROTOBUF }, body: encodeBody(ClaimRequestSchema, { mailboxId: to.mailboxId }) as BodyInit });
    const bundle = decodePreKeyBundle(fromBinary(ClaimResultSchema, new Uint8Array(await claim.arrayBuffer())).bundle);
    const address = await initiateSession(ctx, storage, bundle);
    const content = create(ContentSchema, { version: 1, messageId: ctx.random(16), sentAt: BigInt(Date.now()), deviceListEpoch: BigInt(epoch), body: { case: 'text', value: { text } } });
    const payload = await sealMessage(ctx, storage, address, toBinary(ContentSchema, content));
    const res = await fetch(new URL('/v1/send', t.url), { method: 'POST', headers: { 'content-type': CONTENT_TYPE_PROTOBUF }, body: encodeBody(SendRequestSchema, { mailboxId: to.mailboxId, payload, class: EnvelopeClass.DURABLE }) as BodyInit });
    expect(res.status).toBe(200);
  }

  it('attack: a message from a device with a valid certificate of the sender’s account that the account’s list does not name is refused (MW_CRYPTO_DEVICE_NOT_LISTED), nothing stored', async () => {
    const [alice, bob] = [await client(), await client()];
    const hello = bob.once('message');
    await alice.sendText(bob.mailboxId, 'hello from the real alice');
    await hello;
    // A key that the account key certified (leaked, or made by a thief of an old backup) but never listed.
    const device = DeviceKeyPair.generate(ctx);
    const certificate = issueDeviceCertificate(ctx, alice.account!, device, { deviceIndex: 9 });
    const refused = bob.once('undecryptable');
    const shown: string[] = [];
    bob.on('message', (m) => shown.push(m.text ?? ''));
    await sendAs({ device, certificate }, bob, 'I am alice too', 1);
    const r = await refused;
    expect(r.code).toBe('MW_CRYPTO_DEVICE_NOT_LISTED');
    expect(r.from?.endsWith(toHex(device.signingPublicKey))).toBe(true);
    await bob.idle();
    expect(shown).toEqual([]);
    expect((await bob.history(alice.accountKey)).map((m) => m.text)).toEqual(['hello from the real alice']);
    await Promise.all([alice.close(), bob.close()]);
  });

  it('a message stating a newer list epoch makes the recipient refetch; after a revocation it learns of that way, the revoked device is refused', async () => {
    const [alice, bob] = [await client(), await client()];
    const storage2 = await memoryStorage();
    await addAccountDevice(alice, storage2); // epoch 2
    const alice2 = await client(storage2);
    // Bob learns Alice's list at epoch 2 from alice2's first message.
    const first = bob.once('message');
    await alice2.sendText(bob.mailboxId, 'from the second device');
    await first;
    expect((await bob.deviceList(alice.accountKey))!.epoch).toBe(2);
    // What the second device will try to say after its revocation: sealed under its live session
    // now, because a revoked client wipes itself (a device that kept its state, or an attacker
    // who copied it, still has the session and certificate).
    const [toBob] = await storage2.listSessionAddresses();
    const content = create(ContentSchema, { version: 1, messageId: ctx.random(16), sentAt: BigInt(Date.now()), deviceListEpoch: 2n, body: { case: 'text', value: { text: 'still me?' } } });
    const stale = await sealMessage(ctx, storage2, toBob!, toBinary(ContentSchema, content));
    // Alice revokes the second device (epoch 3); Bob does not know yet.
    const index2 = (await alice.deviceList())!.devices.find((d) => toHex(d.signingKey) === alice2.address.split(':')[1])!.deviceIndex;
    await alice.revokeDevice(index2);
    expect((await bob.deviceList(alice.accountKey))!.epoch).toBe(2);
    // Alice's next message states epoch 3: Bob fetches the list before accepting it.
    const next = bob.once('message');
    await alice.sendText(bob.mailboxId, 'I revoked my old phone');
    expect((await next).text).toBe('I revoked my old phone');
    expect((await bob.deviceList(alice.accountKey))!.epoch).toBe(3);
    // The revoked device still holds a session and a certificate, but cannot speak as Alice.
    const refused = bob.once('undecryptable');
    const res = await fetch(new URL('/v1/send', t.url), { method: 'POST', headers: { 'content-type': CONTENT_TYPE_PROTOBUF }, body: encodeBody(SendRequestSchema, { mailboxId: bob.mailboxId, payload: stale, class: EnvelopeClass.DURABLE }) as BodyInit });
    expect(res.status).toBe(200);
    expect((await refused).code).toBe('MW_CRYPTO_DEVICE_NOT_LISTED');
    expect((await bob.history(alice.accountKey)).map((m) => m.text)).toEqual(['from the second device', 'I revoked my old phone']);
    await Promise.all([alice.close(), alice2.close(), bob.close()]);
  });

  it('a node withholding a newer list is detected: a message states a higher epoch than the node serves, and a refresh that serves an older list than the one held', async () => {
    const [alice, bob] = [await client(), await client()];
    const hello = bob.once('message');
    await alice.sendText(bob.mailboxId, 'hello');
    await hello;
    const { store } = t.node.services;
    const epoch1 = (await store.deviceList(alice.accountKey))!;
    const storage2 = await memoryStorage();
    await addAccountDevice(alice, storage2); // epoch 2 on the node
    // The node's operator rolls the list back to epoch 1 (the store takes whatever it is given).
    expect((await store.publishDeviceList({ accountKey: alice.accountKey, epoch: 1, encoded: epoch1.encoded, expectedEpoch: 2, listedMailboxes: [alice.mailboxId], now: Date.now() })).ok).toBe(true);
    const withheld = bob.once('deviceListWithheld');
    const got = bob.once('message');
    await alice.sendText(bob.mailboxId, 'my list is at epoch 2');
    expect(await withheld).toMatchObject({ knownEpoch: 2, servedEpoch: 1 });
    expect((await got).text).toBe('my list is at epoch 2'); // judged against the newest list Bob holds
    // Bob holds epoch 2 from elsewhere (here: Alice's own device hands it over); a refresh that serves epoch 1 changes nothing.
    const carol = await client();
    const aliceList = (await alice.deviceList())!;
    expect(aliceList.epoch).toBe(2);
    await carol.deviceList(alice.accountKey); // epoch 1 from the node
    await store.publishDeviceList({ accountKey: alice.accountKey, epoch: 2, encoded: encodeDeviceList(aliceList), expectedEpoch: 1, listedMailboxes: [alice.mailboxId], now: Date.now() });
    expect((await carol.refreshDeviceList(alice.accountKey))!.epoch).toBe(2);
    await store.publishDeviceList({ accountKey: alice.accountKey, epoch: 1, encoded: epoch1.encoded, expectedEpoch: 2, listedMailboxes: [alice.mailboxId], now: Date.now() });
    const rollback = carol.once('deviceListWithheld');
    expect((await carol.refreshDeviceList(alice.accountKey))!.epoch).toBe(2);
    expect(await rollback).toMatchObject({ knownEpoch: 2, servedEpoch: 1 });
    await Promise.all([alice.close(), bob.close(), carol.close()]);
  });

  it('deleting the account needs the account key: a device without it is refused before anything is sent', async () => {
    const alice = await client();
    const storage2 = await memoryStorage();
    await addAccountDevice(alice, storage2);
    await storage2.deleteItem('mw.self', 'account-seed'); // a non-manager device
    const phone = await client(storage2);
    expect(phone.account).toBeUndefined();
    await expect(phone.deleteAccount()).rejects.toMatchObject({ code: 'MW_SDK_INVALID_ARGUMENT' });
    expect(await t.node.services.store.devicesOfAccount(alice.accountKey)).toHaveLength(2);
    await alice.deleteAccount();
    expect(await t.node.services.store.devicesOfAccount(alice.accountKey)).toEqual([]);
    expect(await t.node.services.store.deviceList(alice.accountKey)).toBeUndefined();
    await phone.close();
  });
});

describe('managers changing the list (issue 10 §2)', () => {
  it('two managers adding devices at the same moment: the loser refetches the winner’s list, re-applies its change and publishes one epoch up (failed before: MW_CONFLICT / MW_STALE_DEVICE_LIST to the caller)', async () => {
    const first = await client();
    const secondStorage = await memoryStorage();
    await addAccountDevice(first, secondStorage); // a second manager (holds the account seed)
    const second = await client(secondStorage);
    const start = (await first.refreshDeviceList())!.epoch;
    expect((await second.deviceList())!.epoch).toBe(start);
    for (let round = 0; round < 3; round++) {
      const [k1, k2] = [DeviceKeyPair.generate(ctx), DeviceKeyPair.generate(ctx)];
      const [r1, r2] = await Promise.all([first.addDevice(k1.signingPublicKey), second.addDevice(k2.signingPublicKey)]);
      expect(r1.deviceIndex).not.toBe(r2.deviceIndex);
      const onNode = (await first.refreshDeviceList())!;
      expect(onNode.epoch).toBe(start + 2 * (round + 1));
      const keys = onNode.devices.map((d) => toHex(d.signingKey));
      expect(keys).toContain(toHex(k1.signingPublicKey));
      expect(keys).toContain(toHex(k2.signingPublicKey));
    }
    // Revocations race too: each removes a different device, both stick.
    const list = (await first.refreshDeviceList())!;
    const [a, b] = list.devices.filter((d) => (d.flags & 1) === 0).slice(0, 2);
    await Promise.all([first.revokeDevice(a!.deviceIndex), second.revokeDevice(b!.deviceIndex)]);
    const after = (await second.refreshDeviceList())!;
    expect(after.epoch).toBe(list.epoch + 2);
    expect(after.devices.map((d) => d.deviceIndex)).not.toContain(a!.deviceIndex);
    expect(after.devices.map((d) => d.deviceIndex)).not.toContain(b!.deviceIndex);
    await Promise.all([first.close(), second.close()]);
  }, 60_000);

  it('deleteDevice: a manager with another manager left revokes itself from the list; a device without the account key leaves its entry for a manager to revoke', async () => {
    const first = await client();
    const secondStorage = await memoryStorage();
    await addAccountDevice(first, secondStorage);
    const second = await client(secondStorage);
    const { store } = t.node.services;
    const before = (await first.refreshDeviceList())!;
    const secondIndex = before.devices.find((d) => toHex(d.signingKey) === second.address.split(':')[1])!.deviceIndex;
    const secondMailbox = second.mailboxId;
    await second.deleteDevice();
    const afterManager = decodeList((await store.deviceList(first.accountKey))!.encoded);
    expect(afterManager.epoch).toBe(before.epoch + 1);
    expect(afterManager.devices.map((d) => d.deviceIndex)).not.toContain(secondIndex);
    expect(await store.device(secondMailbox)).toBeUndefined();
    // A device linked without the account key: DELETE /v1/device; the list still names it.
    const phone = DeviceKeyPair.generate(ctx);
    const { deviceIndex } = await first.addDevice(phone.signingPublicKey);
    const phoneStorage = await memoryStorage();
    await phoneStorage.setLocalIdentity({ certificate: issueDeviceCertificate(ctx, first.account!, phone, { deviceIndex }), device: phone });
    const phoneClient = await client(phoneStorage);
    const phoneMailbox = phoneClient.mailboxId;
    const epoch = (await store.deviceList(first.accountKey))!.epoch;
    await phoneClient.deleteDevice();
    expect(await store.device(phoneMailbox)).toBeUndefined();
    expect((await store.deviceList(first.accountKey))!.epoch).toBe(epoch);
    // The manager tidies up: the entry goes with the next list.
    await first.revokeDevice(deviceIndex);
    expect(decodeList((await store.deviceList(first.accountKey))!.encoded).devices.map((d) => d.deviceIndex)).not.toContain(deviceIndex);
    await first.close();
  }, 60_000);
});

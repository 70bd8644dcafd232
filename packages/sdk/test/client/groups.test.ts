/**
 * Groups over a real node (real sockets, SQLite files): create, messages on every device of every
 * member (the sender's other device files them as sent), kick with rekey — a kicked member holding
 * its whole old state cannot read what follows —, leave, forged senders and non-members refused,
 * authorization (non-admin cannot kick or rename), admin transfer, admin-less, last admin leaves,
 * invitations by account, username and link with accept/decline, every DM feature in a group,
 * per-member receipts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CryptoError } from '@meshwhisper/crypto';
import { MessageType, createContext, decryptGroupMessage, deserializeOwnSenderKey, deserializeSenderKeyRecord, encryptGroupMessage, generateSenderKey, openEnvelope, sealEnvelope, toHex } from '@meshwhisper/crypto';
import { CONTENT_TYPE_PROTOBUF, ContentSchema, EnvelopeClass, SendBatchRequestSchema, SendRequestSchema, create, encodeBody, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { MeshWhisperEvents, ProtocolStorage } from '../../src/index.js';
import { MeshWhisper, openSqliteStorage } from '../../src/index.js';
import type { E2eNode } from './test-node.js';
import { addAccountDevice, startE2eNode } from './test-node.js';

let t: E2eNode;
const work = mkdtempSync(join(tmpdir(), 'mw-sdk-groups-'));
let n = 0;
beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  await t?.close();
  rmSync(work, { recursive: true, force: true });
});

interface Sent {
  mailboxId: Uint8Array;
  payload: Uint8Array;
}

/** A SQLite file per device; `sent` collects every envelope the client posts (to look at what a removed member could get). */
async function device(opts: { storage?: ProtocolStorage; sent?: Sent[]; requests?: Sent[][] } = {}): Promise<{ client: MeshWhisper; storage: ProtocolStorage }> {
  const storage = opts.storage ?? (await openSqliteStorage({ path: join(work, `d${n++}.sqlite`) }));
  const { sent, requests } = opts;
  const fetchSpy: typeof fetch = async (input, init) => {
    if ((sent || requests) && init?.body instanceof Uint8Array) {
      const url = String(input);
      const items = url.endsWith('/v1/send') ? [fromBinary(SendRequestSchema, init.body)] : url.endsWith('/v1/send/batch') ? fromBinary(SendBatchRequestSchema, init.body).items : [];
      const posted = items.map((r) => ({ mailboxId: r.mailboxId, payload: r.payload }));
      if (posted.length > 0) {
        sent?.push(...posted);
        requests?.push(posted);
      }
    }
    return fetch(input, init);
  };
  const client = await MeshWhisper.create({ node: t.url, namespace: 'test', storage, receiptDelay: { minDelayMs: 0, maxDelayMs: 20 }, fetch: fetchSpy });
  return { client, storage };
}

const gid = (info: { groupId: Uint8Array }) => ({ kind: 'group' as const, groupId: info.groupId });
const texts = async (c: MeshWhisper, groupId: Uint8Array) => (await c.history({ kind: 'group', groupId })).map((m) => m.text);

/** Waits until `c` holds the group at `digest` (converged). */
async function converged(c: MeshWhisper, groupId: Uint8Array, digest: string, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const info = await c.groups.info(groupId);
    if (info?.digest === digest) return;
    if (Date.now() > until) throw new Error(`not converged: ${info?.digest ?? 'no group'} ≠ ${digest}`);
    await c.once('groupChange', () => true, Math.max(100, until - Date.now())).catch(() => undefined);
  }
}

/** Posts a hand-made sealed envelope of content type `type` from `from` to `to` (what a hostile client could send). */
async function postSealed(from: ProtocolStorage, to: ProtocolStorage, type: number, content: Uint8Array): Promise<void> {
  const [self, peer] = [await from.getLocalIdentity(), await to.getLocalIdentity()];
  const payload = sealEnvelope(createContext(), { sender: self, recipientDhKey: peer.certificate.deviceDhKey, contentType: type, content });
  const { mailboxIdOf } = await import('@meshwhisper/crypto');
  const res = await fetch(new URL('/v1/send', t.url), { method: 'POST', headers: { 'content-type': CONTENT_TYPE_PROTOBUF }, body: encodeBody(SendRequestSchema, { mailboxId: mailboxIdOf(createContext(), peer.certificate.deviceSigningKey), payload, class: EnvelopeClass.DURABLE }) as BodyInit });
  expect(res.status).toBe(200);
}

/** A group message plaintext (Content) as the SDK writes it. */
const groupContent = (groupId: Uint8Array, text: string): Uint8Array =>
  toBinary(ContentSchema, create(ContentSchema, { version: 1, messageId: createContext().random(16), sentAt: BigInt(Date.now()), conversationId: groupId, body: { case: 'text', value: { text } } }));

/**
 * The group message of the next post to `to`'s mailbox among `sent`, opened with `to`'s device key;
 * then every sender-key record `formerRecords` held must fail to decrypt it.
 */
async function cannotRead(sent: Sent[], to: { client: MeshWhisper; storage: ProtocolStorage }, formerRecords: Uint8Array[]): Promise<void> {
  const id = await to.storage.getLocalIdentity();
  const msgs = sent
    .filter((s) => toHex(s.mailboxId) === toHex(to.client.mailboxId))
    .map((s) => openEnvelope(createContext(), id.device, s.payload))
    .filter((o) => o.contentType === MessageType.Group);
  expect(msgs.length).toBeGreaterThan(0);
  expect(formerRecords.length).toBeGreaterThan(0);
  for (const m of msgs) {
    for (const r of formerRecords) {
      let code = '';
      try {
        decryptGroupMessage(createContext(), deserializeSenderKeyRecord(r), m.content);
      } catch (e) {
        code = (e as CryptoError).code;
      }
      expect(['MW_CRYPTO_UNKNOWN_SENDER_KEY', 'MW_CRYPTO_SENDER_MISMATCH']).toContain(code);
    }
  }
}

describe('groups', () => {
  it('create, text to every device of every member (the sender’s other device files it as sent), kick with rekey: the kicked member with its full old state cannot read what follows', async () => {
    const sent: Sent[] = [];
    const requests: Sent[][] = [];
    const alice = await device({ sent, requests });
    // alice's second device: on her account.
    const a2store = await openSqliteStorage({ path: join(work, `d${n++}.sqlite`) });
    await addAccountDevice(alice.client, a2store);
    const aliceB = await device({ storage: a2store });
    const bob = await device();
    const carol = await device();
    const joined = Promise.all([bob, carol, aliceB].map((d) => d.client.once('groupChange', (e) => e.change.type === 'joined', 20_000)));
    const g = await alice.client.groups.create('climbers', [bob.client.accountKey, { accountKey: carol.client.accountKey }]);
    expect(g.members.length).toBe(3);
    expect(g.isAdmin).toBe(true);
    expect(g.members.find((m) => toHex(m.accountKey) === toHex(alice.client.accountKey))!.devices.length).toBe(2);
    await joined;
    for (const d of [bob, carol, aliceB]) await converged(d.client, g.groupId, g.digest);

    const got = Promise.all([bob, carol, aliceB].map((d) => d.client.once('message', (m) => m.text === 'hello group', 20_000)));
    const { id } = await alice.client.sendText(gid(g), 'hello group');
    const [mb, mc, ma2] = (await got) as [MeshWhisperEvents['message'], MeshWhisperEvents['message'], MeshWhisperEvents['message']];
    expect(mb.conversation).toEqual(gid(g));
    expect(toHex(mb.author)).toBe(toHex(alice.client.accountKey));
    expect(mc.id).toBe(id);
    expect(ma2.outgoing).toBe(true);
    expect(toHex(ma2.author)).toBe(toHex(alice.client.accountKey));
    // Bob answers; everyone (alice's both devices too) gets it.
    const back = Promise.all([alice, aliceB, carol].map((d) => d.client.once('message', (m) => m.text === 'hi all', 20_000)));
    await bob.client.sendText(gid(g), 'hi all');
    await back;

    // Carol's whole state before the kick.
    const carolRecords = (await carol.storage.listItems('mw.group-sender-key')).map((i) => ({ key: i.key, record: deserializeSenderKeyRecord(i.value) }));
    expect(carolRecords.length).toBeGreaterThanOrEqual(2); // alice's device and bob's

    const removed = Promise.all([bob, carol, aliceB].map((d) => d.client.once('groupChange', (e) => e.change.type === 'memberRemoved', 20_000)));
    const after = await alice.client.groups.kick(g.groupId, carol.client.accountKey);
    expect(after.members.length).toBe(2);
    const carolSaw = (await removed)[1]!;
    expect(toHex((carolSaw.change as { accountKey: Uint8Array }).accountKey)).toBe(toHex(carol.client.accountKey));
    expect((await carol.client.groups.info(g.groupId))?.isMember).toBe(false);
    // Out: carol's device wiped every key of the group it held.
    expect(await carol.storage.listItems('mw.group-sender-key')).toEqual([]);
    expect(await carol.storage.listItems('mw.group-own-key')).toEqual([]);

    sent.length = 0;
    requests.length = 0;
    const secret = Promise.all([bob, aliceB].map((d) => d.client.once('message', (m) => m.text === 'after the kick', 20_000)));
    await alice.client.sendText(gid(g), 'after the kick');
    await secret;
    // The node saw the new key in one request, then the message in one request: one envelope per
    // remaining device, all of one size.
    const last = requests.at(-1)!;
    expect(last.map((x) => toHex(x.mailboxId)).sort()).toEqual([bob.client.mailboxId, aliceB.client.mailboxId].map(toHex).sort());
    expect(new Set(last.map((x) => x.payload.length)).size).toBe(1);
    // Nothing was sent to carol's mailbox.
    expect(sent.some((s) => toHex(s.mailboxId) === toHex(carol.client.mailboxId))).toBe(false);
    // The group message inside bob's envelope: carol's old records cannot open it (new key after the kick).
    const bobIdentity = await bob.storage.getLocalIdentity();
    const groupMessages = sent
      .filter((s) => toHex(s.mailboxId) === toHex(bob.client.mailboxId))
      .map((s) => openEnvelope(createContext(), bobIdentity.device, s.payload))
      .filter((o) => o.contentType === MessageType.Group);
    expect(groupMessages.length).toBe(1);
    for (const { record } of carolRecords) {
      let code = '';
      try {
        decryptGroupMessage(createContext(), record, groupMessages[0]!.content);
      } catch (e) {
        code = (e as CryptoError).code;
      }
      expect(['MW_CRYPTO_UNKNOWN_SENDER_KEY', 'MW_CRYPTO_SENDER_MISMATCH']).toContain(code);
    }
    // Carol can no longer send to the group.
    await expect(carol.client.sendText(gid(g), 'still here?')).rejects.toMatchObject({ code: 'MW_SDK_GROUP_NOT_MEMBER' });
    expect(await texts(carol.client, g.groupId)).toEqual(['hello group', 'hi all']);
    expect(await texts(aliceB.client, g.groupId)).toEqual(['hello group', 'hi all', 'after the kick']);
    await Promise.all([alice, aliceB, bob, carol].map((d) => d.client.close()));
  });

  it('forgery: a member claiming another member, a non-member with the stolen group id, a pairwise message naming the group — all refused, nothing stored', async () => {
    const [alice, bob, carol, mallory] = [await device(), await device(), await device(), await device()];
    const joined = Promise.all([bob, carol].map((d) => d.client.once('groupChange', (e) => e.change.type === 'joined', 20_000)));
    const g = await alice.client.groups.create('trusted', [bob.client.accountKey, carol.client.accountKey]);
    await joined;
    // Real keys first: alice and carol each send once.
    for (const [who, text] of [[alice, 'from alice'], [carol, 'from carol']] as const) {
      const got = bob.client.once('message', (m) => m.text === text, 20_000);
      await who.client.sendText(gid(g), text);
      await got;
    }
    const shown: string[] = [];
    bob.client.on('message', (m) => shown.push(m.text ?? ''));
    const refusals: string[] = [];
    bob.client.on('undecryptable', (u) => refusals.push(u.code));
    const ctx = createContext();
    const aliceDevice = (await alice.storage.getLocalIdentity()).certificate.deviceSigningKey;
    const carolDevice = (await carol.storage.getLocalIdentity()).certificate.deviceSigningKey;
    // 1. Carol claims to be alice: a header naming alice's device, sealed by carol.
    const asAlice = encryptGroupMessage(ctx, generateSenderKey(ctx, { groupId: g.groupId, senderDevice: aliceDevice }), groupContent(g.groupId, 'I am alice')).message;
    await postSealed(carol.storage, bob.storage, MessageType.Group, asAlice);
    // 2. Carol signs with a key she never distributed (her own device in the header).
    const unknownKey = encryptGroupMessage(ctx, generateSenderKey(ctx, { groupId: g.groupId, senderDevice: carolDevice }), groupContent(g.groupId, 'unsigned by a known key')).message;
    await postSealed(carol.storage, bob.storage, MessageType.Group, unknownKey);
    // 3. Carol's real chain, bytes tampered after signing (the signature no longer verifies).
    const carolOwn = deserializeOwnSenderKey(ctx, (await carol.storage.getItem('mw.group-own-key', toHex(g.groupId)))!);
    const tampered = encryptGroupMessage(ctx, carolOwn, groupContent(g.groupId, 'tampered')).message;
    tampered[120] = tampered[120]! ^ 1;
    await postSealed(carol.storage, bob.storage, MessageType.Group, tampered);
    // 4. Mallory, not a member, with the stolen group id and a key of her own.
    const malloryDevice = (await mallory.storage.getLocalIdentity()).certificate.deviceSigningKey;
    const stolen = encryptGroupMessage(ctx, generateSenderKey(ctx, { groupId: g.groupId, senderDevice: malloryDevice }), groupContent(g.groupId, 'let me in')).message;
    await postSealed(mallory.storage, bob.storage, MessageType.Group, stolen);
    // 5. Mallory over an ordinary pairwise session, naming the group in the content.
    await mallory.client.sendText(bob.client.mailboxId, 'hi bob');
    const { sealMessage } = await import('@meshwhisper/crypto');
    const [address] = await mallory.storage.listSessionAddresses();
    const pairwise = await sealMessage(ctx, mallory.storage, address!, groupContent(g.groupId, 'pairwise into the group'));
    const { mailboxIdOf } = await import('@meshwhisper/crypto');
    await fetch(new URL('/v1/send', t.url), { method: 'POST', headers: { 'content-type': CONTENT_TYPE_PROTOBUF }, body: encodeBody(SendRequestSchema, { mailboxId: mailboxIdOf(ctx, (await bob.storage.getLocalIdentity()).certificate.deviceSigningKey), payload: pairwise, class: EnvelopeClass.DURABLE }) as BodyInit });
    const until = Date.now() + 20_000;
    while (refusals.length < 5 && Date.now() < until) await bob.client.once('undecryptable', () => true, 20_000).catch(() => undefined);
    expect(refusals).toEqual(['MW_CRYPTO_SENDER_MISMATCH', 'MW_CRYPTO_UNKNOWN_SENDER_KEY', 'MW_CRYPTO_BAD_SIGNATURE', 'MW_SDK_GROUP_NOT_MEMBER', 'MW_SDK_UNKNOWN_CONVERSATION']);
    expect(shown.filter((x) => x !== 'hi bob')).toEqual([]);
    expect(await texts(bob.client, g.groupId)).toEqual(['from alice', 'from carol']);
    // The group goes on: the real alice still gets through.
    const next = bob.client.once('message', (m) => m.text === 'still fine', 20_000);
    await alice.client.sendText(gid(g), 'still fine');
    await next;
    await Promise.all([alice, bob, carol, mallory].map((d) => d.client.close()));
  });

  it('authorization: a non-admin cannot kick or rename; admin transfer; admin-less (anyone adds and renames, nobody kicks); all converge', async () => {
    const [alice, bob, carol, dave] = [await device(), await device(), await device(), await device()];
    const joined = Promise.all([bob, carol].map((d) => d.client.once('groupChange', (e) => e.change.type === 'joined', 20_000)));
    let g = await alice.client.groups.create('ruled', [bob.client.accountKey, carol.client.accountKey]);
    await joined;
    await expect(bob.client.groups.kick(g.groupId, carol.client.accountKey)).rejects.toMatchObject({ code: 'MW_SDK_GROUP_NOT_ALLOWED' });
    await expect(bob.client.groups.rename(g.groupId, 'mine now')).rejects.toMatchObject({ code: 'MW_SDK_GROUP_NOT_ALLOWED' });
    await expect(bob.client.groups.makeAdminLess(g.groupId)).rejects.toMatchObject({ code: 'MW_SDK_GROUP_NOT_ALLOWED' });
    expect((await bob.client.groups.info(g.groupId))?.version).toBe(1);
    // Transfer: bob becomes the admin, alice stops being one.
    g = await alice.client.groups.transferAdmin(g.groupId, bob.client.accountKey);
    for (const d of [bob, carol]) await converged(d.client, g.groupId, g.digest);
    expect((await bob.client.groups.info(g.groupId))?.isAdmin).toBe(true);
    expect((await alice.client.groups.info(g.groupId))?.isAdmin).toBe(false);
    await expect(alice.client.groups.kick(g.groupId, carol.client.accountKey)).rejects.toMatchObject({ code: 'MW_SDK_GROUP_NOT_ALLOWED' });
    const renamed = carol.client.once('groupChange', (e) => e.change.type === 'renamed', 20_000);
    g = await bob.client.groups.rename(g.groupId, 'bob’s');
    expect((await renamed).change).toEqual({ type: 'renamed', name: 'bob’s' });
    // Admin-less: carol (never admin) adds dave and renames; nobody can kick.
    const policy = carol.client.once('groupChange', (e) => e.change.type === 'policyChanged', 20_000);
    g = await bob.client.groups.makeAdminLess(g.groupId);
    await policy;
    expect(g.policy).toBe('admin-less');
    const daveJoined = dave.client.once('groupChange', (e) => e.change.type === 'joined', 20_000);
    g = await carol.client.groups.add(g.groupId, { accountKey: dave.client.accountKey });
    await daveJoined;
    g = await carol.client.groups.rename(g.groupId, 'everyone’s');
    await expect(bob.client.groups.kick(g.groupId, dave.client.accountKey)).rejects.toMatchObject({ code: 'MW_SDK_GROUP_NOT_ALLOWED' });
    for (const d of [alice, bob, dave]) await converged(d.client, g.groupId, g.digest);
    const info = (await dave.client.groups.info(g.groupId))!;
    expect(info.name).toBe('everyone’s');
    expect(info.members.every((m) => !m.admin)).toBe(true);
    expect(info.members.length).toBe(4);
    await Promise.all([alice, bob, carol, dave].map((d) => d.client.close()));
  });

  it('the last admin leaves: the longest-standing member becomes admin everywhere; the member who left, with its full old state, cannot read what follows', async () => {
    const sent: Sent[] = [];
    const [alice, bob, carol] = [await device(), await device({ sent }), await device()];
    const joined = Promise.all([bob, carol].map((d) => d.client.once('groupChange', (e) => e.change.type === 'joined', 20_000)));
    const g = await alice.client.groups.create('succession', [bob.client.accountKey, carol.client.accountKey]);
    await joined;
    for (const [who, text] of [[alice, 'a'], [bob, 'b']] as const) {
      const got = Promise.all([alice, bob, carol].filter((d) => d !== who).map((d) => d.client.once('message', (m) => m.text === text, 20_000)));
      await who.client.sendText(gid(g), text);
      await got;
    }
    const aliceRecords = (await alice.storage.listItems('mw.group-sender-key')).map((i) => i.value);
    const left = Promise.all([bob, carol].map((d) => d.client.once('groupChange', (e) => e.change.type === 'memberRemoved', 20_000)));
    const after = await alice.client.groups.leave(g.groupId);
    await left;
    expect(after.isMember).toBe(false);
    for (const d of [bob, carol]) await converged(d.client, g.groupId, after.digest);
    // Successor: the first of the create operation's list (sorted by account) other than alice.
    const expected = [bob, carol].map((d) => d.client.accountKey).sort((x, y) => (toHex(x) < toHex(y) ? -1 : 1))[0]!;
    const admins = (await carol.client.groups.info(g.groupId))!.members.filter((m) => m.admin).map((m) => toHex(m.accountKey));
    expect(admins).toEqual([toHex(expected)]);
    sent.length = 0;
    const got = carol.client.once('message', (m) => m.text === 'after alice left', 20_000);
    await bob.client.sendText(gid(g), 'after alice left');
    await got;
    expect(sent.some((s) => toHex(s.mailboxId) === toHex(alice.client.mailboxId))).toBe(false);
    await cannotRead(sent, carol, aliceRecords);
    await expect(alice.client.sendText(gid(g), 'me again')).rejects.toMatchObject({ code: 'MW_SDK_GROUP_NOT_MEMBER' });
    await Promise.all([alice, bob, carol].map((d) => d.client.close()));
  });

  it('invitations: by username (declined: nothing changes), by account key (accepted: added, sees only later messages), by link', async () => {
    const [alice, bob, carol, dave] = [await device(), await device(), await device(), await device()];
    const g = await alice.client.groups.create('invited', []);
    await alice.client.sendText(gid(g), 'before anyone came');
    const name = `bob-${toHex(bob.client.accountKey).slice(0, 8)}`;
    await bob.client.claimUsername(name);
    const bobInvite = bob.client.once('groupInvite', () => true, 20_000);
    await alice.client.groups.invite(g.groupId, { username: name });
    const inv = await bobInvite;
    expect(inv.name).toBe('invited');
    expect(toHex(inv.inviter)).toBe(toHex(alice.client.accountKey));
    expect((await bob.client.groups.invitations()).length).toBe(1);
    const declined = alice.client.once('groupInviteAnswer', () => true, 20_000);
    await bob.client.groups.declineInvite(inv);
    expect((await declined).accept).toBe(false);
    expect((await alice.client.groups.info(g.groupId))!.members.length).toBe(1);
    expect(await bob.client.groups.info(g.groupId)).toBeUndefined();

    const carolInvite = carol.client.once('groupInvite', () => true, 20_000);
    await alice.client.groups.invite(g.groupId, carol.client.accountKey);
    const carolJoined = carol.client.once('groupChange', (e) => e.change.type === 'joined', 20_000);
    await carol.client.groups.acceptInvite(await carolInvite);
    await carolJoined;
    const later = carol.client.once('message', (m) => m.text === 'welcome', 20_000);
    await alice.client.sendText(gid(g), 'welcome');
    await later;
    expect(await texts(carol.client, g.groupId)).toEqual(['welcome']);

    const link = await alice.client.groups.inviteLink(g.groupId);
    expect(link.startsWith('mwg1:')).toBe(true);
    const daveJoined = dave.client.once('groupChange', (e) => e.change.type === 'joined', 20_000);
    expect((await dave.client.groups.joinByLink(link)).name).toBe('invited');
    await daveJoined;
    const info = (await alice.client.groups.info(g.groupId))!;
    expect(info.members.length).toBe(3);
    for (const d of [carol, dave]) await converged(d.client, g.groupId, info.digest);
    await expect(dave.client.groups.joinByLink('mwg1:garbage!')).rejects.toMatchObject({ code: 'MW_SDK_INVALID_ARGUMENT' });
    await Promise.all([alice, bob, carol, dave].map((d) => d.client.close()));
  });

  it('every DM feature in a group: reply, file uploaded once, reaction, author-only edit and delete, forward, disappearing timer, typing, per-member receipts', async () => {
    let uploads = 0;
    const aliceStore = await openSqliteStorage({ path: join(work, `d${n++}.sqlite`) });
    const alice = await MeshWhisper.create({
      node: t.url,
      namespace: 'test',
      storage: aliceStore,
      receiptDelay: { minDelayMs: 0, maxDelayMs: 20 },
      fetch: (input, init) => {
        if (String(input).includes('/v1/media') && init?.method === 'POST') uploads++;
        return fetch(input, init);
      },
    });
    const [bob, carol] = [await device(), await device()];
    const joined = Promise.all([bob, carol].map((d) => d.client.once('groupChange', (e) => e.change.type === 'joined', 20_000)));
    const g = await alice.groups.create('features', [bob.client.accountKey, carol.client.accountKey]);
    await joined;
    const to = gid(g);
    const both = (pred: (m: MeshWhisperEvents['message']) => boolean) => Promise.all([bob, carol].map((d) => d.client.once('message', pred, 20_000)));

    let got = both((m) => m.text === 'question?');
    const q = await alice.sendText(to, 'question?');
    const qb = (await got)[0]!;
    // Reply from bob, quoting alice.
    const reply = Promise.all([alice.once('message', (m) => m.text === 'answer', 20_000), carol.client.once('message', (m) => m.text === 'answer', 20_000)]);
    await bob.client.sendText(to, 'answer', { replyTo: { author: qb.author, id: qb.id, snippet: 'question?' } });
    const ra = (await reply)[0];
    expect(ra.replyTo?.id).toBe(q.id);
    // A file: one upload for the whole group.
    const bytes = new Uint8Array(70_000).map((_, i) => i % 251);
    got = both((m) => m.file !== undefined);
    await alice.sendFile(to, bytes, { mimeType: 'application/octet-stream', name: 'data.bin' });
    const files = await got;
    expect(uploads).toBe(1);
    for (const [i, d] of [bob, carol].entries()) expect(await d.client.downloadFileBytes(files[i]!.file!)).toEqual(bytes);
    // Reaction.
    const reacted = alice.once('reaction', () => true, 20_000);
    await carol.client.react(to, { author: alice.accountKey, id: q.id }, '👍');
    expect((await reacted).emoji).toBe('👍');
    // Edit by the author reaches everyone; bob "editing" alice's message only ever names his own.
    const edited = Promise.all([bob, carol].map((d) => d.client.once('edit', () => true, 20_000)));
    await alice.editMessage(to, q.id, 'question (edited)?');
    await edited;
    const forged = carol.client.once('edit', (e) => toHex(e.author) === toHex(bob.client.accountKey), 20_000);
    await bob.client.editMessage(to, q.id, 'bob rewrote it');
    await forged;
    const hist = await carol.client.history(to);
    expect(hist.find((m) => m.id === q.id)?.text).toBe('question (edited)?');
    // Delete by the author.
    const deleted = carol.client.once('delete', () => true, 20_000);
    await alice.deleteMessage(to, q.id);
    await deleted;
    expect((await carol.client.history(to)).find((m) => m.id === q.id)?.deleted).toBe(true);
    // Forward (marked as forwarded): both other members get it.
    const fw = Promise.all([alice.once('message', (m) => m.forwarded === true, 20_000), carol.client.once('message', (m) => m.forwarded === true, 20_000)]);
    await bob.client.forward(to, { text: 'answer' });
    expect((await fw).map((m) => m.text)).toEqual(['answer', 'answer']);
    // Disappearing timer set by carol applies everywhere.
    const timer = Promise.all([alice.once('disappearingTimer', () => true, 20_000), bob.client.once('disappearingTimer', () => true, 20_000)]);
    await carol.client.setDisappearingTimer(to, 3600);
    await timer;
    expect(await alice.disappearingTimer(to)).toBe(3600);
    got = both((m) => m.text === 'ephemeral');
    await alice.sendText(to, 'ephemeral');
    const eph = await got;
    expect(eph[0]!.expiresAt).toBeGreaterThan(Date.now());
    // Typing.
    const typing = carol.client.once('typing', (e) => e.conversation?.kind === 'group', 20_000);
    await bob.client.setTyping(to, true);
    expect((await typing).typing).toBe(true);
    // Per-member receipts: both delivered; bob reads.
    const until = Date.now() + 20_000;
    const states = async () => (await alice.groups.receipts(g.groupId, q.id)).map((r) => r.state);
    while ((await states()).some((s) => s === 'sent') && Date.now() < until) await alice.once('receipt', () => true, 5_000).catch(() => undefined);
    expect(await states()).toEqual(['delivered', 'delivered']);
    const read = alice.once('receipt', (r) => r.state === 'read', 20_000);
    await bob.client.markRead(qb, [qb.id]);
    await read;
    const rs = await alice.groups.receipts(g.groupId, q.id);
    expect(rs.find((r) => toHex(r.accountKey) === toHex(bob.client.accountKey))?.state).toBe('read');
    expect(rs.find((r) => toHex(r.accountKey) === toHex(carol.client.accountKey))?.state).toBe('delivered');
    // carol reads from her history (the group conversation and ids, as an app shows it): alice sees it.
    const carolRead = alice.once('receipt', (r) => r.state === 'read', 20_000);
    await carol.client.markRead(to, [q.id]);
    await carolRead;
    expect((await alice.groups.receipts(g.groupId, q.id)).map((r) => r.state)).toEqual(['read', 'read']);
    await Promise.all([alice.close(), bob.client.close(), carol.client.close()]);
  });

  it('a group message that arrives before its sender key (copies crossed after an outage) is reported, kept, and shown once the key arrives', async () => {
    const [alice, bob] = [await device(), await device()];
    const joined = bob.client.once('groupChange', (e) => e.change.type === 'joined', 20_000);
    const g = await alice.client.groups.create('crossed', [bob.client.accountKey]);
    await joined;
    const first = bob.client.once('message', (m) => m.text === 'first', 20_000);
    await alice.client.sendText(gid(g), 'first');
    await first;
    // Alice's device rotates; the message under the new key reaches bob before the new key.
    const ctx = createContext();
    const { rotateSenderKey, encodeSenderKeyDistribution, sealMessage, mailboxIdOf } = await import('@meshwhisper/crypto');
    const rotated = rotateSenderKey(ctx, deserializeOwnSenderKey(ctx, (await alice.storage.getItem('mw.group-own-key', toHex(g.groupId)))!));
    const early = encryptGroupMessage(ctx, rotated, groupContent(g.groupId, 'before its key')).message;
    const report = bob.client.once('undecryptable', () => true, 20_000);
    await postSealed(alice.storage, bob.storage, MessageType.Group, early);
    expect((await report).code).toBe('MW_CRYPTO_UNKNOWN_SENDER_KEY');
    expect(await texts(bob.client, g.groupId)).toEqual(['first']);
    const shown = bob.client.once('message', (m) => m.text === 'before its key', 20_000);
    const [address] = (await alice.storage.listSessionAddresses()).filter((a) => a.startsWith(toHex(bob.client.accountKey)));
    const keyMessage = toBinary(ContentSchema, create(ContentSchema, { version: 1, messageId: ctx.random(16), sentAt: BigInt(Date.now()), body: { case: 'senderKey', value: { distribution: encodeSenderKeyDistribution(rotated) } } }));
    const payload = await sealMessage(ctx, alice.storage, address!, keyMessage);
    const res = await fetch(new URL('/v1/send', t.url), { method: 'POST', headers: { 'content-type': CONTENT_TYPE_PROTOBUF }, body: encodeBody(SendRequestSchema, { mailboxId: mailboxIdOf(ctx, (await bob.storage.getLocalIdentity()).certificate.deviceSigningKey), payload, class: EnvelopeClass.DURABLE }) as BodyInit });
    expect(res.status).toBe(200);
    expect(toHex((await shown).author)).toBe(toHex(alice.client.accountKey));
    expect(await texts(bob.client, g.groupId)).toEqual(['first', 'before its key']);
    expect(await bob.storage.listItems('mw.group-held')).toEqual([]);
    await Promise.all([alice, bob].map((d) => d.client.close()));
  });

  it('a device linked later joins the account’s groups: the next message from the account puts it in (set-devices), it gets the log and reads from then on', async () => {
    const [alice, bob] = [await device(), await device()];
    const joined = bob.client.once('groupChange', (e) => e.change.type === 'joined', 20_000);
    const g = await alice.client.groups.create('later device', [bob.client.accountKey]);
    await joined;
    const before = bob.client.once('message', (m) => m.text === 'before the new phone', 20_000);
    await alice.client.sendText(gid(g), 'before the new phone');
    await before;
    const a2store = await openSqliteStorage({ path: join(work, `d${n++}.sqlite`) });
    await addAccountDevice(alice.client, a2store);
    const alice2 = await device({ storage: a2store });
    const a2joined = alice2.client.once('groupChange', (e) => e.change.type === 'joined', 20_000);
    const changed = bob.client.once('groupChange', (e) => e.change.type === 'devicesChanged', 20_000);
    const got = alice2.client.once('message', (m) => m.text === 'with the new phone', 20_000);
    await alice.client.sendText(gid(g), 'with the new phone');
    await Promise.all([a2joined, changed]);
    const m = await got;
    expect(m.outgoing).toBe(true);
    expect(await texts(alice2.client, g.groupId)).toEqual(['with the new phone']);
    // The new device writes to the group; bob and alice's first device get it.
    const back = Promise.all([bob, alice].map((d) => d.client.once('message', (x) => x.text === 'from the new phone', 20_000)));
    await alice2.client.sendText(gid(g), 'from the new phone');
    await back;
    const info = (await bob.client.groups.info(g.groupId))!;
    expect(info.members.find((x) => toHex(x.accountKey) === toHex(alice.client.accountKey))!.devices.length).toBe(2);
    await Promise.all([alice, alice2, bob].map((d) => d.client.close()));
  });
});

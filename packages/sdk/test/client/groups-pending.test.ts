/**
 * What comes for a group before the group itself (docs/spec/groups.md §G6.6): bob's sender key and
 * message reach carol before alice's create does (they travel over different pairwise sessions, in no
 * guaranteed order). Carol keeps them and, once the group arrives, installs bob's key and shows his
 * message exactly once — across a restart too — while whatever the group's rules refuse (a
 * non-member's key and message for the group id) is still refused. Real node, real SQLite files.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MessageType, createContext, encodeSenderKeyDistribution, encryptGroupMessage, generateSenderKey, sealEnvelope, sealMessage, toHex } from '@meshwhisper/crypto';
import { CONTENT_TYPE_PROTOBUF, ContentSchema, EnvelopeClass, SendBatchRequestSchema, SendRequestSchema, create, encodeBody, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { ProtocolStorage } from '../../src/index.js';
import { MeshWhisper, openSqliteStorage } from '../../src/index.js';
import type { E2eNode } from './test-node.js';
import { startE2eNode } from './test-node.js';

let t: E2eNode;
const work = mkdtempSync(join(tmpdir(), 'mw-sdk-groups-pending-'));
let n = 0;
beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  await t?.close();
  rmSync(work, { recursive: true, force: true });
});

/** Envelopes a device posted to one mailbox, kept off the node until released (the create "still on its way"). */
interface Diversion {
  mailbox: string;
  held: { payload: Uint8Array; class: EnvelopeClass }[];
}

interface Dev {
  client: MeshWhisper;
  storage: ProtocolStorage;
  path: string;
  divert?: Diversion;
  undecryptable: string[];
}

async function device(path = join(work, `d${n++}.sqlite`), into?: Dev): Promise<Dev> {
  const storage = await openSqliteStorage({ path });
  const dev = into ?? ({ path, undecryptable: [] } as unknown as Dev);
  const ctx = createContext();
  const spy: typeof fetch = async (input, init) => {
    const url = String(input);
    const d = dev.divert;
    if (d && init?.body instanceof Uint8Array && (url.endsWith('/v1/send') || url.endsWith('/v1/send/batch'))) {
      // Every envelope to the diverted mailbox goes to a mailbox nobody reads; the real one is posted on release.
      const divert = (r: { mailboxId: Uint8Array; payload: Uint8Array; class: EnvelopeClass }): void => {
        if (toHex(r.mailboxId) !== d.mailbox) return;
        d.held.push({ payload: r.payload, class: r.class });
        r.mailboxId = ctx.random(r.mailboxId.length);
      };
      if (url.endsWith('/v1/send')) {
        const r = fromBinary(SendRequestSchema, init.body);
        divert(r);
        init = { ...init, body: toBinary(SendRequestSchema, r) };
      } else {
        const b = fromBinary(SendBatchRequestSchema, init.body);
        for (const r of b.items) divert(r);
        init = { ...init, body: toBinary(SendBatchRequestSchema, b) };
      }
    }
    return fetch(input, init);
  };
  const client = await MeshWhisper.create({ node: t.url, namespace: 'test', storage, receiptDelay: { minDelayMs: 0, maxDelayMs: 20 }, fetch: spy });
  client.on('undecryptable', (u) => dev.undecryptable.push(u.code));
  Object.assign(dev, { client, storage });
  return dev;
}

async function post(mailboxId: Uint8Array, payload: Uint8Array, cls = EnvelopeClass.DURABLE): Promise<void> {
  const res = await fetch(new URL('/v1/send', t.url), { method: 'POST', headers: { 'content-type': CONTENT_TYPE_PROTOBUF }, body: encodeBody(SendRequestSchema, { mailboxId, payload, class: cls }) as BodyInit });
  expect(res.status).toBe(200);
}

async function release(from: Dev, to: Dev): Promise<void> {
  const d = from.divert!;
  from.divert = undefined;
  for (const h of d.held) await post(to.client.mailboxId, h.payload, h.class);
}

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const texts = async (c: MeshWhisper, groupId: Uint8Array) => (await c.history({ kind: 'group', groupId })).map((m) => m.text);
const pending = async (d: Dev) => (await d.storage.listItems('mw.group-pending')).length;

describe('groups: what comes before the group', () => {
  for (const restart of [false, true]) {
    it(`bob's sender key and message reach carol before alice's create: kept, then shown exactly once, and bob's next message reads${restart ? ' (carol restarts in between)' : ''}`, async () => {
      const [alice, bob] = [await device(), await device()];
      let carol = await device();
      alice.divert = { mailbox: toHex(carol.client.mailboxId), held: [] };
      const bobJoined = bob.client.once('groupChange', (e) => e.change.type === 'joined', 20_000);
      const g = await alice.client.groups.create('race', [bob.client.accountKey, carol.client.accountKey]);
      await bobJoined;
      expect(alice.divert.held.length).toBeGreaterThan(0);
      const to = { kind: 'group' as const, groupId: g.groupId };
      await bob.client.sendText(to, 'hello, I joined');
      // bob's key (pairwise) and message (sender key) reach carol; the group does not exist there yet.
      // (reported as before — the app learns something came that it cannot show yet)
      await waitFor('bob’s message reaches carol', () => carol.undecryptable.includes('MW_SDK_UNKNOWN_CONVERSATION'));
      expect(await carol.client.groups.info(g.groupId)).toBeUndefined();
      if (restart) {
        await carol.client.close();
        carol = await device(carol.path, { path: carol.path, undecryptable: [] } as unknown as Dev);
        expect(await pending(carol)).toBeGreaterThanOrEqual(2);
      }
      const kept = await carol.storage.listItems('mw.group-pending');
      const shown: string[] = [];
      carol.client.on('message', (m) => shown.push(m.text ?? ''));
      const joined = carol.client.once('groupChange', (e) => e.change.type === 'joined', 20_000);
      const got = carol.client.once('message', (m) => m.text === 'hello, I joined', 20_000);
      await release(alice, carol);
      await joined;
      const m = await got;
      expect(toHex(m.author)).toBe(toHex(bob.client.accountKey));
      const next = carol.client.once('message', (x) => x.text === 'and again', 20_000);
      await bob.client.sendText(to, 'and again');
      await next;
      expect(shown).toEqual(['hello, I joined', 'and again']);
      expect(await texts(carol.client, g.groupId)).toEqual(['hello, I joined', 'and again']);
      expect(carol.undecryptable.filter((c) => c !== 'MW_SDK_UNKNOWN_CONVERSATION')).toEqual([]);
      expect(await pending(carol)).toBe(0);
      expect(await carol.storage.listItems('mw.group-held')).toEqual([]);
      if (restart) {
        // A stop after the group arrived and before the replay finished (the kept rows still there):
        // replayed at the next start — already applied, so nothing is shown twice, and the rows go.
        for (const k of kept) await carol.storage.setItem('mw.group-pending', k.key, k.value);
        await carol.client.close();
        carol = await device(carol.path, { path: carol.path, undecryptable: [] } as unknown as Dev);
        const again: string[] = [];
        carol.client.on('message', (m) => again.push(m.text ?? ''));
        await waitFor('the kept rows are replayed at start', async () => (await pending(carol)) === 0);
        expect(again).toEqual([]);
        expect(await texts(carol.client, g.groupId)).toEqual(['hello, I joined', 'and again']);
      }
      await Promise.all([alice, bob, carol].map((d) => d.client.close()));
    });
  }

  it('control operations from another member before the create (admin-less: bob renames): kept, applied once the group arrives', async () => {
    const [alice, bob, carol] = [await device(), await device(), await device()];
    alice.divert = { mailbox: toHex(carol.client.mailboxId), held: [] };
    const bobJoined = bob.client.once('groupChange', (e) => e.change.type === 'joined', 20_000);
    const g = await alice.client.groups.create('before', [bob.client.accountKey, carol.client.accountKey], { policy: 'admin-less' });
    await bobJoined;
    await bob.client.groups.rename(g.groupId, 'after');
    // (kept now; refused with MW_SDK_UNKNOWN_CONVERSATION before this store existed)
    await waitFor('bob’s operation reaches carol', async () => (await pending(carol)) >= 1 || carol.undecryptable.includes('MW_SDK_UNKNOWN_CONVERSATION'));
    const renamed = carol.client.once('groupChange', (e) => e.change.type === 'renamed', 20_000);
    await release(alice, carol);
    await renamed;
    expect((await carol.client.groups.info(g.groupId))?.name).toBe('after');
    expect((await carol.client.groups.info(g.groupId))?.digest).toBe((await bob.client.groups.info(g.groupId))?.digest);
    expect(await pending(carol)).toBe(0);
    expect(carol.undecryptable).toEqual([]);
    await Promise.all([alice, bob, carol].map((d) => d.client.close()));
  });

  it('a non-member’s sender key and message for the group id, kept before the group came, are still refused after it arrives', async () => {
    const [alice, bob, carol, mallory] = [await device(), await device(), await device(), await device()];
    alice.divert = { mailbox: toHex(carol.client.mailboxId), held: [] };
    const bobJoined = bob.client.once('groupChange', (e) => e.change.type === 'joined', 20_000);
    const g = await alice.client.groups.create('guarded', [bob.client.accountKey, carol.client.accountKey]);
    await bobJoined;
    // Mallory (a contact of carol's, not a member) learned the group id: her own key for it, over
    // her real pairwise session with carol, then a message under it.
    const ctx = createContext();
    const hi = carol.client.once('contactRequest', () => true, 20_000);
    await mallory.client.sendText(carol.client.mailboxId, 'hi carol');
    await hi;
    const malloryIdentity = await mallory.storage.getLocalIdentity();
    const key = generateSenderKey(ctx, { groupId: g.groupId, senderDevice: malloryIdentity.certificate.deviceSigningKey });
    const [address] = await mallory.storage.listSessionAddresses();
    const keyMessage = toBinary(ContentSchema, create(ContentSchema, { version: 1, messageId: ctx.random(16), sentAt: BigInt(Date.now()), body: { case: 'senderKey', value: { distribution: encodeSenderKeyDistribution(key) } } }));
    await post(carol.client.mailboxId, await sealMessage(ctx, mallory.storage, address!, keyMessage));
    const forged = encryptGroupMessage(ctx, key, toBinary(ContentSchema, create(ContentSchema, { version: 1, messageId: ctx.random(16), sentAt: BigInt(Date.now()), conversationId: g.groupId, body: { case: 'text', value: { text: 'let me in' } } }))).message;
    const carolIdentity = await carol.storage.getLocalIdentity();
    await post(carol.client.mailboxId, sealEnvelope(ctx, { sender: malloryIdentity, recipientDhKey: carolIdentity.certificate.deviceDhKey, contentType: MessageType.Group, content: forged }));
    await waitFor('mallory’s message reaches carol', () => carol.undecryptable.includes('MW_SDK_UNKNOWN_CONVERSATION'));
    const shown: string[] = [];
    carol.client.on('message', (m) => shown.push(m.text ?? ''));
    const joined = carol.client.once('groupChange', (e) => e.change.type === 'joined', 20_000);
    await release(alice, carol);
    await joined;
    await waitFor('the kept items are judged', async () => (await pending(carol)) === 0);
    // The group goes on: alice's message reads; mallory's never shows, and she holds no key at carol's.
    const fine = carol.client.once('message', (m) => m.text === 'members only', 20_000);
    await alice.client.sendText({ kind: 'group', groupId: g.groupId }, 'members only');
    await fine;
    expect(shown).toEqual(['members only']);
    expect(await texts(carol.client, g.groupId)).toEqual(['members only']);
    const keys = (await carol.storage.listItems('mw.group-sender-key')).map((i) => i.key);
    expect(keys.some((k) => k.endsWith(toHex(malloryIdentity.certificate.deviceSigningKey)))).toBe(false);
    expect(await carol.storage.listItems('mw.group-held')).toEqual([]);
    await Promise.all([alice, bob, carol, mallory].map((d) => d.client.close()));
  });
});

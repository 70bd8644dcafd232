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
import { MessageType, createContext, decryptGroupMessage, deserializeSenderKeyRecord, openEnvelope, toHex } from '@meshwhisper/crypto';
import { SendRequestSchema, fromBinary } from '@meshwhisper/protocol';
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
async function device(opts: { storage?: ProtocolStorage; sent?: Sent[] } = {}): Promise<{ client: MeshWhisper; storage: ProtocolStorage }> {
  const storage = opts.storage ?? (await openSqliteStorage({ path: join(work, `d${n++}.sqlite`) }));
  const sent = opts.sent;
  const fetchSpy: typeof fetch = async (input, init) => {
    if (sent && String(input).endsWith('/v1/send') && init?.body instanceof Uint8Array) {
      try {
        const req = fromBinary(SendRequestSchema, init.body);
        sent.push({ mailboxId: req.mailboxId, payload: req.payload });
      } catch {
        /* not ours to judge */
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

describe('groups', () => {
  it('create, text to every device of every member (the sender’s other device files it as sent), kick with rekey: the kicked member with its full old state cannot read what follows', async () => {
    const sent: Sent[] = [];
    const alice = await device({ sent });
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

    sent.length = 0;
    const secret = Promise.all([bob, aliceB].map((d) => d.client.once('message', (m) => m.text === 'after the kick', 20_000)));
    await alice.client.sendText(gid(g), 'after the kick');
    await secret;
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
});

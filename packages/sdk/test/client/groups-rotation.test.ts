/**
 * Healing of group sender keys over a real node (real sockets, SQLite files), with one controllable
 * clock shared by the node and the clients (as renewal.test.ts): a member's sender key rotates after
 * SENDER_KEY_ROTATE_AFTER_MESSAGES messages and after SENDER_KEY_ROTATE_AFTER_MS
 * (docs/spec/groups.md §G6); the other members get the new distribution and keep reading, while a
 * copy of a member's state taken before the rotation reads nothing sent after it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CryptoError, SenderKeyRecord } from '@meshwhisper/crypto';
import {
  MessageType,
  SENDER_KEY_ROTATE_AFTER_MESSAGES,
  SENDER_KEY_ROTATE_AFTER_MS,
  createContext,
  decryptGroupMessage,
  deserializeOwnSenderKey,
  deserializeSenderKeyRecord,
  openEnvelope,
  toHex,
} from '@meshwhisper/crypto';
import { SendBatchRequestSchema, SendRequestSchema, fromBinary } from '@meshwhisper/protocol';
import type { ProtocolStorage } from '../../src/index.js';
import { MeshWhisper, openSqliteStorage } from '../../src/index.js';
import type { E2eNode } from './test-node.js';
import { startE2eNode } from './test-node.js';

let offset = 0;
const now = (): number => Date.now() + offset;
const crypto = createContext({ now });

let t: E2eNode;
const work = mkdtempSync(join(tmpdir(), 'mw-sdk-groups-rotation-'));
let n = 0;
beforeAll(async () => {
  t = await startE2eNode({}, { ctx: createContext({ now }) });
});
afterAll(async () => {
  await t?.close();
  rmSync(work, { recursive: true, force: true });
});

interface Sent {
  mailboxId: Uint8Array;
  payload: Uint8Array;
}
interface Device {
  client: MeshWhisper;
  storage: ProtocolStorage;
  texts: string[];
}

/** A SQLite file per device on the shared clock; `sent` collects every envelope the client posts. */
async function device(sent?: Sent[]): Promise<Device> {
  const storage = await openSqliteStorage({ path: join(work, `d${n++}.sqlite`), ctx: crypto });
  const fetchSpy: typeof fetch = async (input, init) => {
    if (sent && init?.body instanceof Uint8Array) {
      const url = String(input);
      const items = url.endsWith('/v1/send') ? [fromBinary(SendRequestSchema, init.body)] : url.endsWith('/v1/send/batch') ? fromBinary(SendBatchRequestSchema, init.body).items : [];
      sent.push(...items.map((r) => ({ mailboxId: r.mailboxId, payload: r.payload })));
    }
    return fetch(input, init);
  };
  const client = await MeshWhisper.create({ node: t.url, namespace: 'test', storage, crypto, receiptDelay: { minDelayMs: 0, maxDelayMs: 20 }, fetch: fetchSpy });
  const texts: string[] = [];
  client.on('message', (m) => texts.push(m.text ?? ''));
  return { client, storage, texts };
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A three-member group created by the first device, joined by the others. */
async function group(alice: Device, others: Device[]): Promise<Uint8Array> {
  const joined = Promise.all(others.map((d) => d.client.once('groupChange', (e) => e.change.type === 'joined', 30_000)));
  const g = await alice.client.groups.create('healing', others.map((d) => d.client.accountKey));
  await joined;
  for (const d of others) await until(async () => (await d.client.groups.info(g.groupId))?.digest === g.digest, 'convergence');
  return g.groupId;
}

const ownKeyId = async (d: Device): Promise<number> => {
  const items = await d.storage.listItems('mw.group-own-key');
  expect(items.length).toBe(1);
  return deserializeOwnSenderKey(crypto, items[0]!.value).keyId;
};
/** The sender-key records a receiving device holds (here: only the sender's). */
const records = async (d: Device): Promise<SenderKeyRecord[]> => (await d.storage.listItems('mw.group-sender-key')).map((i) => deserializeSenderKeyRecord(i.value));

/** The group messages among `sent` posted to `to`'s mailbox, opened with `to`'s device key. */
async function groupMessagesTo(sent: Sent[], to: Device): Promise<Uint8Array[]> {
  const id = await to.storage.getLocalIdentity();
  return sent
    .filter((s) => toHex(s.mailboxId) === toHex(to.client.mailboxId))
    .map((s) => openEnvelope(createContext(), id.device, s.payload))
    .filter((o) => o.contentType === MessageType.Group)
    .map((o) => o.content);
}

/** Decrypting `message` with the leaked record fails the way a rotated-away key must. */
function unreadable(leaked: SenderKeyRecord, message: Uint8Array): void {
  let code = '';
  try {
    decryptGroupMessage(createContext(), leaked, message);
  } catch (e) {
    code = (e as CryptoError).code;
  }
  expect(code).toBe('MW_CRYPTO_UNKNOWN_SENDER_KEY');
}

describe('sender-key rotation (healing)', () => {
  it(`by count: after ${SENDER_KEY_ROTATE_AFTER_MESSAGES} messages the key rotates; the members get the new distribution and keep reading; a state copied before cannot read after`, async () => {
    offset = 0;
    const sent: Sent[] = [];
    const alice = await device(sent);
    const [bob, carol] = [await device(), await device()];
    const groupId = await group(alice, [bob, carol]);
    const conversation = { kind: 'group' as const, groupId };

    await alice.client.sendText(conversation, 'm1');
    await until(() => bob.texts.includes('m1') && carol.texts.includes('m1'), 'the first message');
    const first = await ownKeyId(alice);
    // Bob's state leaks here: his record of alice's key.
    const leaked = await records(bob);
    expect(leaked.length).toBe(1);
    expect(leaked[0]!.keyIds).toEqual([first]);

    // The rest of the first key's messages: same key throughout.
    for (let i = 2; i <= SENDER_KEY_ROTATE_AFTER_MESSAGES; i++) await alice.client.sendText(conversation, `m${i}`);
    expect(await ownKeyId(alice)).toBe(first);
    const last = `m${SENDER_KEY_ROTATE_AFTER_MESSAGES}`;
    await until(() => bob.texts.includes(last) && carol.texts.includes(last), 'the last message of the first key', 300_000);
    // Control: the leaked copy reads the last message of the old key (so the refusal below is the rotation's doing).
    const beforeRotation = (await groupMessagesTo(sent, bob)).at(-1)!;
    expect(new TextDecoder().decode(decryptGroupMessage(createContext(), leaked[0]!, beforeRotation).plaintext)).toContain(last);

    sent.length = 0;
    await alice.client.sendText(conversation, 'after the count rotation');
    const second = await ownKeyId(alice);
    expect(second).not.toBe(first);
    await until(() => bob.texts.includes('after the count rotation') && carol.texts.includes('after the count rotation'), 'the message under the new key');
    // Both members hold the new generation (the distribution reached them pairwise).
    for (const d of [bob, carol]) expect((await records(d))[0]!.keyIds).toContain(second);
    const after = await groupMessagesTo(sent, bob);
    expect(after.length).toBe(1);
    unreadable(leaked[0]!, after[0]!);
    // Every message arrived once, in both members.
    for (const d of [bob, carol]) expect(d.texts.filter((x) => /^m\d+$/.test(x)).length).toBe(SENDER_KEY_ROTATE_AFTER_MESSAGES);
    await Promise.all([alice, bob, carol].map((d) => d.client.close()));
  }, 900_000);

  it('by time: a key older than SENDER_KEY_ROTATE_AFTER_MS rotates at the next message, however few were sent; members keep reading; a state copied before cannot read after', async () => {
    offset = 0;
    const sent: Sent[] = [];
    const alice = await device(sent);
    const [bob, carol] = [await device(), await device()];
    const groupId = await group(alice, [bob, carol]);
    const conversation = { kind: 'group' as const, groupId };

    await alice.client.sendText(conversation, 'monday');
    await until(() => bob.texts.includes('monday') && carol.texts.includes('monday'), 'the first message');
    const first = await ownKeyId(alice);
    const leaked = (await records(carol))[0]!;

    // Just short of the period: no rotation.
    offset = SENDER_KEY_ROTATE_AFTER_MS - 60_000;
    await alice.client.sendText(conversation, 'six days later');
    await until(() => bob.texts.includes('six days later') && carol.texts.includes('six days later'), 'the second message');
    expect(await ownKeyId(alice)).toBe(first);

    // Past it: the next message goes under a new key.
    offset = SENDER_KEY_ROTATE_AFTER_MS + 60_000;
    sent.length = 0;
    await alice.client.sendText(conversation, 'a week later');
    const second = await ownKeyId(alice);
    expect(second).not.toBe(first);
    await until(() => bob.texts.includes('a week later') && carol.texts.includes('a week later'), 'the message under the new key');
    for (const d of [bob, carol]) expect((await records(d))[0]!.keyIds).toContain(second);
    const after = await groupMessagesTo(sent, carol);
    expect(after.length).toBe(1);
    unreadable(leaked, after[0]!);
    // Replies keep flowing both ways after the rotation.
    await bob.client.sendText(conversation, 'still here');
    await until(() => alice.texts.includes('still here') && carol.texts.includes('still here'), 'a reply after the rotation');
    await Promise.all([alice, bob, carol].map((d) => d.client.close()));
  }, 300_000);
});

/**
 * Conversations over a real node: a message naming a conversation the receiver does not know is
 * refused (never filed as a direct message); the conversation list with last message and unread
 * counts; paged history that reads one page at a time; message state events; one message shape
 * for live events and history; and a storage written by the previous layout is migrated, while a
 * newer one is refused.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createContext, equalBytes, sealMessage, toHex } from '@meshwhisper/crypto';
import { CONTENT_TYPE_PROTOBUF, ContentSchema, EnvelopeClass, SendRequestSchema, StoredClientLayoutSchema, StoredMessageSchema, create, encodeBody, toBinary } from '@meshwhisper/protocol';
import type { AppItem, ListItemsOptions, MeshWhisperEvents, ProtocolStorage, SdkError } from '../../src/index.js';
import { MeshWhisper, directConversation, memoryStorage, openSqliteStorage } from '../../src/index.js';
import type { E2eNode } from './test-node.js';
import { addAccountDevice, startE2eNode } from './test-node.js';

let t: E2eNode;
const work = mkdtempSync(join(tmpdir(), 'mw-sdk-conversations-'));
beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  await t?.close();
  rmSync(work, { recursive: true, force: true });
});

// Receipts without their privacy delay (receipts.ts): the state test waits on them.
const client = async (storage?: ProtocolStorage) => MeshWhisper.create({ node: t.url, namespace: 'test', storage: storage ?? (await memoryStorage()), receiptDelay: { minDelayMs: 0, maxDelayMs: 50 } });

/** Posts a hand-made Content over an existing session of `store` (what a future or hostile app could send). */
async function sendRaw(store: ProtocolStorage, to: Uint8Array, content: Parameters<typeof create<typeof ContentSchema>>[1]): Promise<void> {
  const [address] = await store.listSessionAddresses();
  const payload = await sealMessage(createContext(), store, address!, toBinary(ContentSchema, create(ContentSchema, content)));
  const res = await fetch(new URL('/v1/send', t.url), { method: 'POST', headers: { 'content-type': CONTENT_TYPE_PROTOBUF }, body: encodeBody(SendRequestSchema, { mailboxId: to, payload, class: EnvelopeClass.DURABLE }) as BodyInit });
  expect(res.status).toBe(200);
}

describe('conversations', () => {
  it('a message naming a conversation the receiver does not know is refused, not filed as a direct message', async () => {
    const aliceStore = await memoryStorage();
    const [alice, bob] = [await client(aliceStore), await client()];
    const hello = bob.once('message');
    await alice.sendText(bob.mailboxId, 'hello');
    await hello;
    const shown: string[] = [];
    bob.on('message', (m) => shown.push(m.text ?? ''));
    const report = bob.once('undecryptable');
    await sendRaw(aliceStore, bob.mailboxId, { version: 1, messageId: new Uint8Array(16).fill(7), sentAt: BigInt(Date.now()), conversationId: new Uint8Array(16).fill(9), body: { case: 'text', value: { text: 'to a group bob is not in' } } });
    expect((await report).code).toBe('MW_SDK_UNKNOWN_CONVERSATION');
    await bob.idle();
    expect(shown).toEqual([]);
    expect((await bob.history(alice.accountKey)).map((m) => m.text)).toEqual(['hello']);
    expect((await bob.conversationList()).length).toBe(1);
    // The session goes on: the next direct message arrives.
    const next = bob.once('message');
    await alice.sendText(bob.mailboxId, 'still here');
    expect((await next).text).toBe('still here');
    await Promise.all([alice.close(), bob.close()]);
  });

  it('conversation list with last message and unread counts; markConversationRead; one message shape live and in history', async () => {
    const [alice, bob, carol] = [await client(), await client(), await client()];
    const unread: MeshWhisperEvents['unread'][] = [];
    bob.on('unread', (u) => unread.push(u));
    const live: MeshWhisperEvents['message'][] = [];
    bob.on('message', (m) => live.push(m));
    for (const text of ['a1', 'a2']) {
      const got = bob.once('message', (m) => m.text === text);
      await alice.sendText(bob.mailboxId, text);
      await got;
    }
    const fromCarol = bob.once('message', (m) => m.text === 'c1');
    await carol.sendText(bob.mailboxId, 'c1');
    await fromCarol;
    await bob.sendText({ accountKey: alice.accountKey }, 'b→a');

    const list = await bob.conversationList();
    expect(list.map((c) => [c.conversation.kind === 'direct' && toHex(c.conversation.peer), c.lastMessage?.text, c.unread])).toEqual([
      [toHex(alice.accountKey), 'b→a', 2],
      [toHex(carol.accountKey), 'c1', 1],
    ]);
    expect(list[0]!.lastMessage!.outgoing).toBe(true);
    expect(unread.map((u) => u.unread)).toEqual([1, 2, 1]);

    // The live message is the history entry plus the sending device.
    const [h1] = await bob.history(alice.accountKey);
    const { fromMailboxId, sender, ...liveEntry } = live[0]!;
    expect(equalBytes(fromMailboxId, alice.mailboxId)).toBe(true);
    expect(equalBytes(sender.accountKey, alice.accountKey)).toBe(true);
    expect(liveEntry).toEqual(h1);
    expect(h1!.conversation).toEqual(directConversation(alice.accountKey));
    expect(h1!.unread).toBe(true);

    await bob.markConversationRead(alice.accountKey);
    expect(unread.at(-1)).toEqual({ conversation: directConversation(alice.accountKey), unread: 0 });
    expect((await bob.conversationList()).map((c) => c.unread)).toEqual([0, 1]);
    expect((await bob.history(alice.accountKey)).some((m) => m.unread)).toBe(false);
    await bob.markConversationRead(alice.accountKey); // nothing to do: no event
    expect(unread.filter((u) => u.unread === 0).length).toBe(1);
    // Declining carol removes her conversation from the list.
    await bob.declineContact(carol.accountKey);
    expect((await bob.conversationList()).length).toBe(1);
    await Promise.all([alice.close(), bob.close(), carol.close()]);
  });

  it('historyPage reads one page at a time, newest first, and never the whole conversation', async () => {
    // A storage that counts the history items each read returns (a real memory storage underneath).
    const inner = await memoryStorage();
    let read = 0;
    const counting = new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === 'listItems') {
          return async (table: string, options?: ListItemsOptions): Promise<AppItem[]> => {
            const items = await target.listItems(table, options);
            if (table === 'mw.history') read += items.length;
            return items;
          };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const [alice, bob] = [await client(), await client(counting)];
    const n = 23;
    for (let i = 0; i < n; i++) {
      const got = bob.once('message', (m) => m.text === `m${i}`);
      await alice.sendText(bob.mailboxId, `m${i}`);
      await got;
    }
    read = 0;
    const first = await bob.historyPage(alice.accountKey, { limit: 10 });
    expect(first.messages.map((m) => m.text)).toEqual(Array.from({ length: 10 }, (_, i) => `m${13 + i}`));
    expect(read).toBe(10);
    const second = await bob.historyPage(alice.accountKey, { limit: 10, cursor: first.cursor! });
    expect(second.messages.map((m) => m.text)).toEqual(Array.from({ length: 10 }, (_, i) => `m${3 + i}`));
    const third = await bob.historyPage(alice.accountKey, { limit: 10, cursor: second.cursor! });
    expect(third.messages.map((m) => m.text)).toEqual(['m0', 'm1', 'm2']);
    expect(third.cursor).toBeUndefined();
    expect(read).toBe(23);
    // history() with before/limit pages the same way (receivedAt of the oldest on the first page).
    const older = await bob.history(alice.accountKey, { limit: 5, before: first.messages[0]!.receivedAt });
    expect(older.every((m) => m.receivedAt < first.messages[0]!.receivedAt)).toBe(true);
    // A cursor of another conversation is refused.
    await expect(bob.historyPage(bob.accountKey, { cursor: first.cursor! })).rejects.toMatchObject({ code: 'MW_SDK_INVALID_ARGUMENT' });
    await Promise.all([alice.close(), bob.close()]);
  });

  it('messageState events: queued → sent → delivered → read; history entries carry the state', async () => {
    const [alice, bob] = [await client(), await client()];
    const states: string[] = [];
    alice.on('messageState', (s) => {
      expect(s.conversation).toEqual(directConversation(bob.accountKey));
      states.push(s.state);
    });
    const got = bob.once('message');
    const read = alice.once('messageState', (s) => s.state === 'read');
    const delivered = alice.once('messageState', (s) => s.state === 'delivered');
    const { id } = await alice.sendText(bob.mailboxId, 'track me');
    const m = await got;
    await delivered;
    expect((await alice.history(bob.accountKey))[0]!.state).toBe('delivered');
    await bob.acceptContact(alice.accountKey);
    await bob.markRead(m, [m.id]);
    const last = await read;
    expect(last.id).toBe(id);
    expect(states).toEqual(['queued', 'sent', 'delivered', 'read']);
    expect((await alice.history(bob.accountKey))[0]!.state).toBe('read');
    await Promise.all([alice.close(), bob.close()]);
  });

  it('markRead(conversation, ids): receipts for messages read from the history reach each sending device', async () => {
    const [a1, bob] = [await client(), await client()];
    const a2Store = await memoryStorage();
    await addAccountDevice(a1, a2Store);
    const a2 = await client(a2Store);
    const got = new Set<string>();
    bob.on('message', (m) => void got.add(m.text ?? ''));
    const { id: one } = await a1.sendText(bob.mailboxId, 'one from a1');
    const { id: two } = await a2.sendText(bob.mailboxId, 'two from a2');
    await expect.poll(() => got.size, { timeout: 20_000 }).toBe(2);
    await bob.acceptContact(a1.accountKey);
    // Only what the history holds: no IncomingMessage (and so no fromMailboxId) is used.
    const ids = (await bob.history(a1.accountKey)).map((m) => m.id);
    expect(ids.sort()).toEqual([one, two].sort());
    const readOnA1 = a1.once('messageState', (s) => s.id === one && s.state === 'read', 20_000);
    const readOnA2 = a2.once('messageState', (s) => s.id === two && s.state === 'read', 20_000);
    await bob.markRead(directConversation(a1.accountKey), ids);
    await Promise.all([readOnA1, readOnA2]);
    await expect(bob.markRead(a1.accountKey, ['not-an-id'])).rejects.toMatchObject({ code: 'MW_SDK_INVALID_ARGUMENT' });
    await expect(bob.markRead({ kind: 'group', groupId: new Uint8Array(16).fill(1) }, [one])).rejects.toMatchObject({ code: 'MW_SDK_INVALID_ARGUMENT' });
    await Promise.all([a1.close(), a2.close(), bob.close()]);
  });

  it('a storage of the previous layout (history by peer, byte records) is migrated at create; a newer layout is refused', async () => {
    const path = join(work, 'bob.db');
    const [alice, bob] = [await client(), await client(await openSqliteStorage({ path }))];
    const got = bob.once('message');
    await alice.sendText(bob.mailboxId, 'before the upgrade');
    const m = await got;
    await bob.close();
    // Rewrite bob's tables as the previous SDK left them (layout 1).
    const old = await openSqliteStorage({ path });
    await reopenAs1(old, toHex(alice.accountKey), m.id);
    await old.close();
    const again = await client(await openSqliteStorage({ path }));
    const h = await again.history(alice.accountKey);
    expect(h.map((e) => [e.text, e.unread ?? false])).toEqual([['before the upgrade', false]]);
    expect(await again.contactState(alice.accountKey)).toBe('request');
    expect(await again.disappearingTimer(alice.accountKey)).toBe(60);
    expect((await again.conversationList()).map((c) => c.lastMessage?.text)).toEqual(['before the upgrade']);
    const next = again.once('message');
    await alice.sendText(again.mailboxId, 'after the upgrade');
    await next;
    expect((await again.history(alice.accountKey)).map((e) => e.text)).toEqual(['before the upgrade', 'after the upgrade']);
    await again.close();
    // A layout written by a newer SDK is refused, not misread.
    const newer = await openSqliteStorage({ path });
    await newer.setItem('mw.self', 'layout', toBinary(StoredClientLayoutSchema, create(StoredClientLayoutSchema, { version: 99 })));
    const refused = await client(newer).then(
      () => undefined,
      (e: unknown) => e as SdkError,
    );
    expect(refused?.code).toBe('MW_SDK_UNSUPPORTED_VERSION');
    await newer.close();
    await alice.close();
  });
});

/** Turns a layout-2 storage back into what the previous SDK wrote: keys by peer hex, byte records, no layout marker. */
async function reopenAs1(storage: ProtocolStorage, peerHex: string, messageId: string): Promise<void> {
  const tx = storage;
  for (const table of ['mw.history', 'mw.history-ref', 'mw.expiry', 'mw.conversation', 'mw.timer', 'mw.contact', 'mw.sent']) {
    for (const { key } of await tx.listItems(table)) await tx.deleteItem(table, key);
  }
  await tx.deleteItem('mw.self', 'layout');
  const content = create(ContentSchema, { version: 1, messageId: Uint8Array.from(Buffer.from(messageId, 'hex')), sentAt: 1n, body: { case: 'text', value: { text: 'before the upgrade' } } });
  const key = `${peerHex}/${String(1_000).padStart(15, '0')}/${String(0).padStart(15, '0')}`;
  const record = create(StoredMessageSchema, { version: 1, peer: Buffer.from(peerHex, 'hex'), author: Buffer.from(peerHex, 'hex'), from: '', content: toBinary(ContentSchema, content), receivedAt: 1000n, expiresAt: 0n, outgoing: false, request: true });
  await tx.setItem('mw.history', key, toBinary(StoredMessageSchema, record));
  await tx.setItem('mw.history-ref', `${peerHex}/${messageId}`, new TextEncoder().encode(key));
  await tx.setItem('mw.contact', peerHex, Uint8Array.of(0));
  await tx.setItem('mw.timer', peerHex, Uint8Array.of(0, 0, 0, 60, 0, 0, 0, 1));
}

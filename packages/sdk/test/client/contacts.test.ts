/**
 * End to end over a real node: contact requests, the local history (edits, deletes, reactions,
 * dedup across restarts), disappearing messages (both sides, stored history and pending sends),
 * first contact by public key and by contact card, account and device deletion, message states
 * with a failure reason, and clear typed errors for a newer peer or a newer node.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket as WsClient, WebSocketServer } from 'ws';
import { createContext, decodePreKeyBundle, equalBytes, sealMessage, toHex } from '@meshwhisper/crypto';
import { CONTENT_TYPE_PROTOBUF, ClaimRequestSchema, ClaimResultSchema, ContentSchema, EnvelopeClass, ErrorCode, SendRequestSchema, create, encodeBody, encodeFrame, fromBinary, toBinary } from '@meshwhisper/protocol';
import { createNode, loadConfig } from '@meshwhisper/node';
import type { ProtocolStorage, SdkError, WebSocketConstructor } from '../../src/index.js';
import { MeshWhisper, decodeContactCard, encodeContactCard, memoryStorage, openSqliteStorage } from '../../src/index.js';
import type { E2eNode } from './test-node.js';
import { OPEN_RATE_LIMITS, addAccountDevice, itSingleNode, startE2eNode } from './test-node.js';

let t: E2eNode;
const work = mkdtempSync(join(tmpdir(), 'mw-sdk-contacts-'));
beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  await t?.close();
  rmSync(work, { recursive: true, force: true });
});

const client = async (storage?: ProtocolStorage, extra: { connect?: boolean } = {}) =>
  MeshWhisper.create({ node: t.url, namespace: 'test', storage: storage ?? (await memoryStorage()), ...extra });
const same = (a: Uint8Array, b: Uint8Array) => equalBytes(a, b);

describe('contact requests', () => {
  it('a stranger’s first message is a request: no read receipts, typing or presence until accepted; decline deletes, decline+block blocks', async () => {
    const [alice, bob] = [await client(), await client()];
    const requests: Uint8Array[] = [];
    bob.on('contactRequest', (r) => requests.push(r.accountKey));
    const typing: boolean[] = [];
    bob.on('typing', (e) => typing.push(e.typing));

    const first = bob.once('message');
    await alice.sendText(bob.mailboxId, 'hello, we have not met');
    const m = await first;
    expect(m.request).toBe(true);
    expect(requests.length).toBe(1);
    expect(same(requests[0]!, alice.accountKey)).toBe(true);
    expect(await bob.contactState(alice.accountKey)).toBe('request');
    expect(await alice.contactState(bob.accountKey)).toBe('accepted'); // the one who writes first accepted
    expect((await bob.history(alice.accountKey)).map((e) => [e.text, e.request])).toEqual([['hello, we have not met', true]]);

    // Typing from a request is not shown; a second message raises no second request.
    await alice.setTyping(bob.mailboxId, true);
    const second = bob.once('message');
    await alice.sendText(bob.mailboxId, 'still there?');
    expect((await second).request).toBe(true);
    await bob.idle();
    expect(typing).toEqual([]);
    expect(requests.length).toBe(1);

    // Accepting: earlier messages stop being requests, typing shows.
    await bob.acceptContact(alice.accountKey);
    expect((await bob.history(alice.accountKey)).map((e) => e.request ?? false)).toEqual([false, false]);
    const typed = bob.once('typing');
    await alice.setTyping(bob.mailboxId, true);
    expect((await typed).typing).toBe(true);

    // Declining a stranger deletes the conversation; a new message raises a new request.
    const carol = await client();
    const fromCarol = bob.once('contactRequest');
    await carol.sendText(bob.mailboxId, 'buy my stuff');
    await fromCarol;
    await bob.declineContact(carol.accountKey);
    expect(await bob.history(carol.accountKey)).toEqual([]);
    expect(await bob.contactState(carol.accountKey)).toBeUndefined();
    const again = bob.once('contactRequest');
    await carol.sendText(bob.mailboxId, 'buy my stuff!!');
    await again;
    await bob.declineContact(carol.accountKey, { block: true });
    expect(await bob.isBlocked(carol.accountKey)).toBe(true);
    const shown: string[] = [];
    bob.on('message', (x) => shown.push(x.text ?? ''));
    await carol.sendText(bob.mailboxId, 'ignored');
    await new Promise((r) => setTimeout(r, 300));
    await bob.idle();
    expect(shown).toEqual([]);
    expect((await bob.contacts()).map((c) => [toHex(c.accountKey), c.state])).toEqual([[toHex(alice.accountKey), 'accepted']]);
    await Promise.all([alice.close(), bob.close(), carol.close()]);
  });
});

describe('prekeys while running', () => {
  it('one-time prekeys drained by first contacts are replenished without a restart', async () => {
    const bob = await client();
    const claim = async () => {
      const res = await fetch(new URL('/v1/keys/claim', t.url), { method: 'POST', headers: { 'content-type': CONTENT_TYPE_PROTOBUF }, body: encodeBody(ClaimRequestSchema, { mailboxId: bob.mailboxId }) as BodyInit });
      expect(res.status).toBe(200);
      return decodePreKeyBundle(fromBinary(ClaimResultSchema, new Uint8Array(await res.arrayBuffer())).bundle);
    };
    // Someone drains Bob's pool (the test node's per-target claim budget is open).
    let drained = 0;
    while ((await claim()).oneTimePreKey) drained++;
    expect(drained).toBe(50);
    // A stranger's first contact: Bob notices and tops up within seconds, while running.
    const stranger = await client();
    const request = bob.once('contactRequest');
    await stranger.sendText(bob.mailboxId, 'hi');
    await request;
    let refilled = false;
    for (let i = 0; i < 100 && !refilled; i++) {
      await new Promise((r) => setTimeout(r, 200));
      refilled = (await claim()).oneTimePreKey !== undefined;
    }
    expect(refilled).toBe(true);
    await Promise.all([bob.close(), stranger.close()]);
  }, 40_000);
});

describe('history', () => {
  it('both sides keep the conversation: edits, author-only deletes and reactions are applied; a restart neither loses nor duplicates', async () => {
    const bobFile = join(work, 'history-bob.db');
    const alice = await client();
    let bob = await client(await openSqliteStorage({ path: bobFile }));
    const got = bob.once('message');
    const { id: a1 } = await alice.sendText(bob.mailboxId, 'first');
    await got;
    await bob.acceptContact(alice.accountKey);
    const reply = alice.once('message');
    const { id: b1 } = await bob.sendText(alice.mailboxId, 'reply');
    await reply;
    const edited = bob.once('edit');
    await alice.editMessage(bob.mailboxId, a1, 'first (edited)');
    await edited;
    const reacted = alice.once('reaction');
    await bob.react(alice.mailboxId, { author: alice.accountKey, id: a1 }, '👍');
    await reacted;
    // Alice tries to delete Bob's message: ignored everywhere. Bob deletes his own: tombstone.
    const bogus = bob.once('delete');
    await alice.deleteMessage(bob.mailboxId, b1);
    await bogus;
    await bob.idle();
    expect((await bob.history(alice.accountKey)).find((e) => e.id === b1)?.text).toBe('reply');
    const deleted = alice.once('delete');
    await bob.deleteMessage(alice.mailboxId, b1);
    await deleted;

    for (const [who, peer] of [[alice, bob], [bob, alice]] as const) {
      await who.idle();
      const h = await who.history(peer.accountKey);
      expect(h.map((e) => e.id)).toEqual([a1, b1]);
      expect(h[0]).toMatchObject({ text: 'first (edited)', edited: true });
      expect(h[0]!.reactions.map((r) => [toHex(r.author), r.emoji])).toEqual([[toHex(bob.accountKey), '👍']]);
      expect(h[1]).toMatchObject({ deleted: true });
      expect(h[1]!.text).toBeUndefined();
      expect(h.map((e) => e.outgoing)).toEqual(who === alice ? [true, false] : [false, true]);
    }
    expect((await bob.history(alice.accountKey, { limit: 1 })).map((e) => e.id)).toEqual([b1]);

    // Restart Bob over the same file: the history is all there, once; new mail appends.
    await bob.close();
    bob = await client(await openSqliteStorage({ path: bobFile }));
    const after = bob.once('message');
    await alice.sendText(bob.mailboxId, 'after restart');
    await after;
    expect((await bob.history(alice.accountKey)).map((e) => e.text ?? '(deleted)')).toEqual(['first (edited)', '(deleted)', 'after restart']);
    expect((await bob.conversations()).map(toHex)).toEqual([toHex(alice.accountKey)]);
    await Promise.all([alice.close(), bob.close()]);
  });
});

describe('disappearing messages', () => {
  it('a timer set by either side applies on both sides: messages leave both histories when it runs out', async () => {
    const [alice, bob] = [await client(), await client()];
    const hello = bob.once('message');
    await alice.sendText(bob.mailboxId, 'hello');
    await hello;
    await bob.acceptContact(alice.accountKey);

    const timerSeen = alice.once('disappearingTimer', (e) => e.by === 'peer');
    await bob.setDisappearingTimer(alice.mailboxId, 1);
    expect(await bob.disappearingTimer(alice.accountKey)).toBe(1);
    expect((await timerSeen).seconds).toBe(1);
    expect(await alice.disappearingTimer(bob.accountKey)).toBe(1);

    const bobExpired = bob.once('expired', undefined, 15_000);
    const aliceExpired = alice.once('expired', undefined, 15_000);
    const got = bob.once('message');
    const { id } = await alice.sendText(bob.mailboxId, 'this will vanish');
    const m = await got;
    expect(m.expiresAt).toBeGreaterThan(Date.now());
    expect((await alice.history(bob.accountKey)).map((e) => e.text)).toEqual(['hello', 'this will vanish']);
    expect((await bob.history(alice.accountKey)).map((e) => e.text)).toEqual(['hello', 'this will vanish']);
    expect((await bobExpired).messages.map((r) => r.id)).toEqual([id]);
    expect((await aliceExpired).messages.map((r) => r.id)).toEqual([id]);
    expect((await alice.history(bob.accountKey)).map((e) => e.text)).toEqual(['hello']);
    expect((await bob.history(alice.accountKey)).map((e) => e.text)).toEqual(['hello']);

    // Turned off by Alice: messages stay.
    const off = bob.once('disappearingTimer', (e) => e.seconds === 0);
    await alice.setDisappearingTimer(bob.mailboxId, 0);
    await off;
    const kept = bob.once('message');
    await alice.sendText(bob.mailboxId, 'this stays');
    expect((await kept).expiresAt).toBeUndefined();
    await expect(alice.setDisappearingTimer(bob.mailboxId, -1)).rejects.toMatchObject({ code: 'MW_SDK_INVALID_ARGUMENT' });
    await Promise.all([alice.close(), bob.close()]);
  }, 30_000);

  it('a message that crossed a timer change in flight does not set the timer back; simultaneous changes converge', async () => {
    const alice = await client();
    const bob = await client(undefined, { connect: false }); // Bob receives nothing until connect()
    const hi = alice.once('message');
    await bob.sendText(alice.mailboxId, 'hi');
    await hi;
    await alice.acceptContact(bob.accountKey);
    await alice.setDisappearingTimer(bob.mailboxId, 60); // waits at the node for Bob
    // Bob, not knowing yet, writes with the old timer (0): it must not switch Alice's timer off.
    const crossing = alice.once('message');
    await bob.sendText(alice.mailboxId, 'crossing in flight');
    expect((await crossing).expiresAt).toBeUndefined(); // that message itself was written without a timer
    expect(await alice.disappearingTimer(bob.accountKey)).toBe(60);
    const adopted = bob.once('disappearingTimer');
    bob.connect();
    expect((await adopted).seconds).toBe(60);
    expect(await bob.disappearingTimer(alice.accountKey)).toBe(60);

    await Promise.all([alice.close(), bob.close()]);

    // Both change it at the same time (each offline for receiving, so neither sees the other's
    // change first): equal versions, different values — the shorter timer wins on both sides.
    const [fa, fb] = [join(work, 'simul-a.db'), join(work, 'simul-b.db')];
    let a = await client(await openSqliteStorage({ path: fa }));
    let b = await client(await openSqliteStorage({ path: fb }));
    const got = b.once('message');
    await a.sendText(b.mailboxId, 'hello');
    await got;
    const back = a.once('message');
    await b.sendText(a.mailboxId, 'hello back');
    await back;
    await Promise.all([a.close(), b.close()]);
    a = await client(await openSqliteStorage({ path: fa }), { connect: false });
    b = await client(await openSqliteStorage({ path: fb }), { connect: false });
    await a.setDisappearingTimer(b.mailboxId, 3600);
    await b.setDisappearingTimer(a.mailboxId, 60);
    const aSees = a.once('disappearingTimer', (e) => e.by === 'peer');
    a.connect();
    b.connect();
    expect((await aSees).seconds).toBe(60);
    await new Promise((r) => setTimeout(r, 300));
    await Promise.all([a.idle(), b.idle()]);
    expect([await a.disappearingTimer(b.accountKey), await b.disappearingTimer(a.accountKey)]).toEqual([60, 60]);
    await Promise.all([a.close(), b.close()]);
  }, 30_000);

  itSingleNode('a pending send disappears from the outbox; stored history expires while the app is closed', async () => {
    const dir = join(work, 'expiry-node');
    const env = { PORT: '0', HOST: '127.0.0.1', DATA_DIR: dir, METRICS_PORT: 'off', LOG_LEVEL: 'silent', RATE_LIMITS: OPEN_RATE_LIMITS };
    let n = await createNode(loadConfig(env), { metrics: false });
    let url = `http://127.0.0.1:${(await n.listen()).port}`;
    const [aliceFile, bobFile] = [join(work, 'expiry-alice.db'), join(work, 'expiry-bob.db')];
    let alice = await MeshWhisper.create({ node: url, namespace: 'test', storage: await openSqliteStorage({ path: aliceFile }) });
    let bob = await MeshWhisper.create({ node: url, namespace: 'test', storage: await openSqliteStorage({ path: bobFile }) });
    const hello = bob.once('message');
    await alice.sendText(bob.mailboxId, 'hello');
    await hello;
    const timer = bob.once('disappearingTimer');
    await alice.setDisappearingTimer(bob.mailboxId, 1);
    await timer;
    const vanish = bob.once('message');
    await alice.sendText(bob.mailboxId, 'stored, then gone while closed');
    await vanish;
    await bob.close();

    // The node goes down; Alice's next message is sealed and queued, then its timer runs out.
    await n.close();
    const expiredIds: string[] = [];
    alice.on('expired', (e) => expiredIds.push(...e.messages.map((r) => r.id)));
    const err = (await alice.sendText(bob.mailboxId, 'never sent').catch((e: unknown) => e)) as SdkError;
    expect(err.code).toBe('MW_SDK_UNREACHABLE');
    // Both of Alice's timed messages expire: the delivered one, and the one still in the outbox.
    for (let i = 0; i < 100 && expiredIds.length < 2; i++) await new Promise((r) => setTimeout(r, 100));
    const statuses = await Promise.all(expiredIds.map((id) => alice.messageStatus(id)));
    expect(statuses.length).toBe(2);
    // (the delivered one is 'sent' or 'delivered': Bob closed right after it arrived)
    expect(statuses.filter((s) => s?.state === 'sent' || s?.state === 'delivered').length).toBe(1);
    expect(statuses.find((s) => s?.state === 'failed')?.reason).toMatch(/disappeared/);
    expect((await alice.history(bob.accountKey)).map((e) => e.text)).toEqual(['hello']);
    await alice.close();

    n = await createNode(loadConfig(env), { metrics: false });
    url = `http://127.0.0.1:${(await n.listen()).port}`;
    try {
      alice = await MeshWhisper.create({ node: url, namespace: 'test', storage: await openSqliteStorage({ path: aliceFile }) });
      expect(await alice.flushOutbox()).toBe(0); // nothing was left to send
      bob = await MeshWhisper.create({ node: url, namespace: 'test', storage: await openSqliteStorage({ path: bobFile }), connect: false });
      // Bob was closed when his copy expired: gone at start, and the pending message never arrives.
      expect((await bob.history(alice.accountKey)).map((e) => e.text)).toEqual(['hello']);
      const shown: string[] = [];
      bob.on('message', (m) => shown.push(m.text ?? ''));
      const synced = bob.once('synced');
      bob.connect();
      await synced;
      await bob.idle();
      expect(shown).toEqual([]);
      await Promise.all([alice.close(), bob.close()]);
    } finally {
      await n.close();
    }
  }, 60_000);
});

describe('fan-out during an outage', () => {
  itSingleNode('a message to a multi-device account is sealed for every device before any is posted: an outage leaves all of them queued', async () => {
    const dir = join(work, 'fanout-node');
    const env = { PORT: '0', HOST: '127.0.0.1', DATA_DIR: dir, METRICS_PORT: 'off', LOG_LEVEL: 'silent', RATE_LIMITS: OPEN_RATE_LIMITS };
    let n = await createNode(loadConfig(env), { metrics: false });
    let url = `http://127.0.0.1:${(await n.listen()).port}`;
    const files = ['fan-alice.db', 'fan-bob1.db', 'fan-bob2.db'].map((f) => join(work, f));
    let alice = await MeshWhisper.create({ node: url, namespace: 'test', storage: await openSqliteStorage({ path: files[0]! }) });
    let bob1 = await MeshWhisper.create({ node: url, namespace: 'test', storage: await openSqliteStorage({ path: files[1]! }) });
    const s2 = await openSqliteStorage({ path: files[2]! });
    await addAccountDevice(bob1, s2);
    let bob2 = await MeshWhisper.create({ node: url, namespace: 'test', storage: s2 });
    const bob = { accountKey: bob1.accountKey, mailboxIds: [bob1.mailboxId, bob2.mailboxId] };
    const both = Promise.all([bob1.once('message'), bob2.once('message')]);
    await alice.sendText(bob, 'sessions with both devices');
    await both;
    await Promise.all([bob1.close(), bob2.close()]);
    await n.close();
    await expect(alice.sendText(bob, 'during the outage')).rejects.toMatchObject({ code: 'MW_SDK_UNREACHABLE' });
    await alice.close();
    n = await createNode(loadConfig(env), { metrics: false });
    url = `http://127.0.0.1:${(await n.listen()).port}`;
    try {
      alice = await MeshWhisper.create({ node: url, namespace: 'test', storage: await openSqliteStorage({ path: files[0]! }), connect: false });
      bob1 = await MeshWhisper.create({ node: url, namespace: 'test', storage: await openSqliteStorage({ path: files[1]! }), connect: false });
      bob2 = await MeshWhisper.create({ node: url, namespace: 'test', storage: await openSqliteStorage({ path: files[2]! }), connect: false });
      // create() flushed Alice's outbox: BOTH devices' copies were queued, so both arrive.
      const arriving = Promise.all([bob1.once('message'), bob2.once('message')]);
      bob1.connect();
      bob2.connect();
      const texts = await arriving;
      expect(texts.map((m) => m.text)).toEqual(['during the outage', 'during the outage']);
      expect(texts[0]!.id).toBe(texts[1]!.id);
      await Promise.all([alice.close(), bob1.close(), bob2.close()]);
    } finally {
      await n.close();
    }
  }, 60_000);
});

describe('first contact by public key and by contact card', () => {
  it('an account key alone reaches the account’s devices; a scanned card works; a card naming a foreign device is refused', async () => {
    const [alice, bob, mallory] = [await client(), await client(), await client()];
    const byKey = bob.once('message');
    await alice.sendText({ accountKey: bob.accountKey }, 'found you by key');
    expect((await byKey).text).toBe('found you by key');

    const card = await bob.contactCard({ username: 'bob' });
    const text = encodeContactCard(card);
    const scanned = decodeContactCard(text);
    const carol = await client();
    const byCard = bob.once('message', (m) => m.text === 'scanned your code');
    await carol.sendText(scanned, 'scanned your code');
    await byCard;
    expect((await bob.contactQrSvg()).startsWith('<svg')).toBe(true);
    expect(bob.safetyNumberQrSvg(alice.accountKey).startsWith('<svg')).toBe(true);

    // A forged card: Bob's account key with Mallory's device. Bob's device list does not name it
    // (nor does Bob certify it): refused before any bundle is claimed, and reported.
    const forged = { ...scanned, mailboxIds: [mallory.mailboxId] };
    const unlisted = carol.once('unlistedDevice');
    await expect(carol.sendText(forged, 'to bob?')).rejects.toMatchObject({ code: 'MW_CRYPTO_DEVICE_NOT_LISTED' });
    expect(toHex((await unlisted).mailboxId)).toBe(toHex(mallory.mailboxId));
    await expect(carol.sendText({ ...scanned, node: 'https://elsewhere.example' }, 'x')).rejects.toMatchObject({ code: 'MW_SDK_INVALID_ARGUMENT' });
    await expect(carol.sendText({ accountKey: new Uint8Array(32).fill(7) }, 'x')).rejects.toMatchObject({ nodeCode: 'MW_NOT_FOUND' });
    await Promise.all([alice.close(), bob.close(), mallory.close(), carol.close()]);
  });
});

describe('async iteration', () => {
  it('iterate(): events as an async iterator — buffered while the loop body runs, ended by abort or close', async () => {
    const [alice, bob] = [await client(), await client()];
    const ac = new AbortController();
    const texts: string[] = [];
    const loop = (async () => {
      for await (const m of bob.iterate('message', { signal: ac.signal })) {
        texts.push(m.text!);
        await new Promise((r) => setTimeout(r, 20)); // a slow consumer misses nothing
        if (texts.length === 3) ac.abort();
      }
    })();
    for (const t of ['one', 'two', 'three']) await alice.sendText(bob.mailboxId, t);
    await loop;
    expect(texts).toEqual(['one', 'two', 'three']);
    const ended = (async () => {
      let n = 0;
      for await (const _ of bob.iterate('receipt')) n++;
      return n;
    })();
    await bob.close();
    expect(await ended).toBe(0);
    await alice.close();
  });
});

describe('identity change policy', () => {
  it('holdOnIdentityChange: false still raises identityChange but does not hold the send', async () => {
    const alice = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), holdOnIdentityChange: false });
    const [bob, mallory] = [await client(), await client()];
    await bob.claimUsername('flipper');
    const first = bob.once('message');
    await alice.sendText({ username: 'flipper' }, 'hi bob');
    await first;
    await bob.transferUsername('flipper', mallory.accountKey, mallory.consentToUsernameTransfer('flipper', bob.accountKey));
    const changed = alice.once('identityChange');
    const toMallory = mallory.once('message');
    await alice.sendText({ username: 'flipper' }, 'who is this now?');
    expect(toHex((await changed).accountKey)).toBe(toHex(mallory.accountKey));
    expect((await toMallory).text).toBe('who is this now?');
    await Promise.all([alice.close(), bob.close(), mallory.close()]);
  });
});

describe('deletion', () => {
  it('deleteAccount removes the account from the node and erases the device; senders get a failed state with a reason', async () => {
    const bobFile = join(work, 'deleted-bob.db');
    const alice = await client();
    const bob = await client(await openSqliteStorage({ path: bobFile }));
    await bob.claimUsername('deleteme');
    const hello = bob.once('message');
    await alice.sendText({ username: 'deleteme' }, 'hello');
    await hello;
    await bob.deleteAccount();
    expect(existsSync(bobFile)).toBe(false);
    expect(existsSync(`${bobFile}-wal`)).toBe(false);
    await expect(alice.lookupUsername('deleteme')).rejects.toMatchObject({ nodeCode: 'MW_NOT_FOUND' });
    await expect(bob.sendText(alice.mailboxId, 'x')).rejects.toMatchObject({ code: 'MW_SDK_CLOSED' });
    const err = (await alice.sendText(bob.mailboxId, 'are you there?').catch((e: unknown) => e)) as SdkError;
    expect(err.nodeCode).toBe('MW_NOT_FOUND');
    const last = (await alice.history(bob.accountKey)).at(-1)!;
    expect(await alice.messageStatus(last.id)).toMatchObject({ state: 'failed', reason: expect.stringMatching(/no longer exists/) });
    await alice.close();
  });

  it('retry: a message that failed because its device was deleted goes, with the same id, to the account’s current devices', async () => {
    const alice = await client();
    const bob = await client();
    const hello = bob.once('message');
    await alice.sendText(bob.mailboxId, 'hello');
    await hello;
    // Bob replaces this device: a new device of the same account, then the old one is deleted.
    const storage2 = await memoryStorage();
    await addAccountDevice(bob, storage2);
    const bob2 = await client(storage2);
    const oldMailbox = bob.mailboxId;
    await bob.deleteDevice();
    const err = (await alice.sendText(oldMailbox, 'to the old phone').catch((e: unknown) => e)) as SdkError;
    expect(err.nodeCode).toBe('MW_NOT_FOUND');
    const failedId = (await alice.history(bob2.accountKey)).at(-1)!.id;
    expect(await alice.messageState(failedId)).toBe('failed');
    const got = bob2.once('message');
    expect(await alice.retry(failedId)).toBe('sent');
    const m = await got;
    expect([m.id, m.text]).toEqual([failedId, 'to the old phone']);
    expect((await alice.history(bob2.accountKey)).filter((e) => e.id === failedId).length).toBe(1);
    await expect(alice.retry('00'.repeat(16))).rejects.toMatchObject({ code: 'MW_SDK_INVALID_ARGUMENT' });
    await Promise.all([alice.close(), bob2.close()]);
  });

  it('deleteDevice removes one device; the account’s other data stays', async () => {
    const a = await client();
    await a.claimUsername('keeps-name');
    const other = await client();
    await a.deleteDevice();
    // The only device is gone, so the name now points at no device, but the name itself stays.
    const rec = await other.lookupUsername('keeps-name');
    expect(rec.mailboxIds).toEqual([]);
    await other.close();
  });
});

describe('versions', () => {
  it('content from a newer peer is reported as MW_SDK_UNSUPPORTED_CONTENT, not shown as garbage', async () => {
    const aliceStore = await memoryStorage();
    const [alice, bob] = [await client(aliceStore), await client()];
    const hello = bob.once('message');
    await alice.sendText(bob.mailboxId, 'hello');
    await hello;
    // A future app version writes Content version 2 over the same session.
    const [address] = await aliceStore.listSessionAddresses();
    const future = create(ContentSchema, { version: 2, messageId: new Uint8Array(16).fill(1), sentAt: BigInt(Date.now()), body: { case: 'text', value: { text: 'from the future' } } });
    const payload = await sealMessage(createContext(), aliceStore, address!, toBinary(ContentSchema, future));
    const report = bob.once('undecryptable');
    const res = await fetch(new URL('/v1/send', t.url), { method: 'POST', headers: { 'content-type': CONTENT_TYPE_PROTOBUF }, body: encodeBody(SendRequestSchema, { mailboxId: bob.mailboxId, payload, class: EnvelopeClass.DURABLE }) as BodyInit });
    expect(res.status).toBe(200);
    const r = await report;
    expect(r.code).toBe('MW_SDK_UNSUPPORTED_CONTENT');
    expect(r.message).toMatch(/version 2.*update/);
    await Promise.all([alice.close(), bob.close()]);
  });

  it('a node that speaks only a newer protocol version raises a typed error event and the client stops retrying', async () => {
    // A stand-in for a future node's device socket: it answers every hello the way a node that
    // speaks only version 2 would (negotiation failure), in the real frame format.
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    let connections = 0;
    wss.on('connection', (ws) => {
      connections++;
      ws.on('message', () => {
        ws.send(encodeFrame({ version: 1, body: { case: 'error', value: { code: ErrorCode.UNSUPPORTED_VERSION, message: 'no common protocol version (supported 2)' } } }));
        ws.close(1002, 'unsupported version');
      });
    });
    await new Promise((r) => wss.once('listening', r));
    const port = (wss.address() as { port: number }).port;
    // HTTP goes to the real node; the device socket to the stand-in.
    const Redirected = class extends WsClient {
      constructor(_url: string) {
        super(`ws://127.0.0.1:${port}/v1/device`);
      }
    } as unknown as WebSocketConstructor;
    const c = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), WebSocket: Redirected, connect: false });
    const error = c.once('error');
    c.connect();
    const e = await error;
    expect(e.code).toBe('MW_SDK_UNSUPPORTED_VERSION');
    expect(e.message).toMatch(/update the SDK|newer|version/);
    await new Promise((r) => setTimeout(r, 1500));
    expect(connections).toBe(1);
    await c.close();
    await new Promise<void>((r) => wss.close(() => r()));
  });
});

describe('outbox', () => {
  it('a flush that meets an envelope being posted waits for that post: each sealed envelope reaches the node once (failed before: the same bytes twice, the recipient saw the copy as a second message)', async () => {
    const alice = await client();
    const bob = await client(undefined, { connect: false });
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < 10; i++) {
      sends.push(alice.sendText(bob.mailboxId, `m${i}`));
      // Flushes racing each post (as a reconnect or the retry timer would).
      for (let j = 0; j < 3; j++) sends.push(alice.flushOutbox());
      await new Promise((r) => setTimeout(r, j0(i)));
    }
    await Promise.all(sends);
    expect((await t.node.services.store.mailboxStats(bob.mailboxId)).messages).toBe(10);
    await Promise.all([alice.close(), bob.close()]);
  });
});

/** Small varying pauses so posts and flushes interleave differently. */
const j0 = (i: number): number => (i % 3) * 2;

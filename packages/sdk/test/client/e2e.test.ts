import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_FILE, createNode, loadConfig } from '@meshwhisper/node';
import type { E2eNode } from './test-node.js';
import { addAccountDevice, itSingleNode, startE2eNode } from './test-node.js';
import type { IncomingMessage } from '../../src/index.js';
import { MeshWhisper, memoryStorage, openSqliteStorage } from '../../src/index.js';

let t: E2eNode;
let url: string;
let dataDir: string;
let logs: string[];
const work = mkdtempSync(join(tmpdir(), 'mw-sdk-e2e-'));

beforeAll(async () => {
  t = await startE2eNode();
  ({ url, dataDir, logs } = t);
});

afterAll(async () => {
  await t?.close();
  rmSync(work, { recursive: true, force: true });
});

const texts = (msgs: IncomingMessage[]) => msgs.map((m) => m.text);

describe('SDK client against a real node', () => {
  it('two clients in one process converse end to end; mail to an offline device arrives when it connects', async () => {
    const alice = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    const bob = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage(), connect: false });
    const got: IncomingMessage[] = [];
    bob.on('message', (m) => got.push(m));
    // Bob is offline: the node queues.
    await alice.sendText(bob.mailboxId, 'hello bob');
    await alice.sendText(bob.mailboxId, 'are you there?');
    const bob2 = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    expect(bob2.address).not.toBe(bob.address); // a different device identity
    await bob.close();

    const carol = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    const fromCarol: IncomingMessage[] = [];
    alice.on('message', (m) => fromCarol.push(m));
    const arrived = alice.once('message', (m) => m.text === 'hi alice, carol here');
    await carol.sendText(alice.mailboxId, 'hi alice, carol here');
    await arrived;
    expect(fromCarol[0]!.from).toBe(carol.address);
    // Alice replies to the mailbox she saw.
    const replies: IncomingMessage[] = [];
    carol.on('message', (m) => replies.push(m));
    const reply = carol.once('message');
    await alice.sendText(fromCarol[0]!.fromMailboxId, 'hello carol');
    await reply;
    expect(texts(replies)).toEqual(['hello carol']);
    await Promise.all([alice.close(), bob2.close(), carol.close()]);
  });

  it('a restart over the same SQLite storage resumes identity and sessions: nothing lost, nothing duplicated', async () => {
    const alice = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    const bobFile = join(work, 'bob.db');
    let bob = await MeshWhisper.create({ node: url, namespace: 'test', storage: await openSqliteStorage({ path: bobFile }) });
    const seen: string[] = [];
    const listen = (c: MeshWhisper) => c.on('message', (m) => seen.push(m.text ?? ''));
    listen(bob);
    const first = bob.once('message');
    await alice.sendText(bob.mailboxId, 'one');
    await first;
    const bobAddress = bob.address;
    await bob.close();
    // While Bob is down, Alice keeps talking on the same session.
    await alice.sendText(bob.mailboxId, 'two');
    await alice.sendText(bob.mailboxId, 'three');
    bob = await MeshWhisper.create({ node: url, namespace: 'test', storage: await openSqliteStorage({ path: bobFile }), connect: false });
    listen(bob);
    expect(bob.address).toBe(bobAddress);
    const synced = bob.once('synced');
    bob.connect();
    await synced;
    await bob.idle();
    expect(seen).toEqual(['one', 'two', 'three']);
    // And Bob can answer on the resumed session.
    const back = alice.once('message');
    await bob.sendText(alice.mailboxId, 'back again');
    expect((await back).text).toBe('back again');
    await Promise.all([alice.close(), bob.close()]);
  });

  it('binary payloads round-trip', async () => {
    const a = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    const b = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    const data = Uint8Array.from({ length: 5000 }, (_, i) => i % 251);
    const got = b.once('message');
    await a.sendBinary(b.mailboxId, data, 'application/x-test');
    const m = await got;
    expect(m.binary?.mimeType).toBe('application/x-test');
    expect(Array.from(m.binary!.data)).toEqual(Array.from(data));
    await Promise.all([a.close(), b.close()]);
  });

  itSingleNode('metadata scan: after a scripted conversation the node’s SQLite files (WAL included) and logs hold no plaintext; usernames and identity keys only in the directory', async () => {
    const a = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    const b = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    const [nameA, nameB] = ['canaryalice7f3', 'canarybob9d2'];
    await a.claimUsername(nameA);
    await b.claimUsername(nameB);
    const secrets = ['the-plaintext-canary-3f9a1c', 'a-reply-canary-77c1e0', 'an-edit-canary-0b5d2a'];
    const got = b.once('message');
    const { id } = await a.sendText({ username: nameB }, secrets[0]!);
    const first = await got;
    await b.acceptContact(a.accountKey);
    const back = a.once('message');
    await b.sendText({ username: nameA }, secrets[1]!, { replyTo: { author: a.accountKey, id, snippet: secrets[0]! } });
    await back;
    const edited = b.once('edit');
    await a.editMessage({ username: nameB }, id, secrets[2]!);
    await edited;
    await b.markRead(first, [id]);
    // b goes offline: its next mail waits in the node's message store, where the scan looks.
    await b.close();
    await a.sendText({ username: nameB }, `${secrets[0]} again`);

    const files = readdirSync(dataDir).filter((f) => f.startsWith(DATABASE_FILE));
    expect(files.some((f) => f.endsWith('-wal'))).toBe(true);
    const haystacks = [...files.map((f) => readFileSync(join(dataDir, f)).toString('latin1')), logs.join('')];
    for (const h of haystacks) for (const secret of secrets) expect(h.includes(secret)).toBe(false);
    const keys = [a.accountKey, b.accountKey, a.mailboxId, b.mailboxId].map((k) => Buffer.from(k));
    const log = logs.join('');
    expect(log.length).toBeGreaterThan(0); // the node did log (info level): the scan is not vacuous
    for (const name of [nameA, nameB]) expect(log.includes(name)).toBe(false);
    for (const k of keys) for (const enc of ['hex', 'base64', 'base64url'] as const) expect(log.includes(k.toString(enc))).toBe(false);
    // Table by table: usernames and identity keys live only in the directory tables
    // (docs/threat-model.md); the message store holds recipient mailbox ids and sealed bytes only.
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(join(dataDir, DATABASE_FILE), { readonly: true, fileMustExist: true });
    try {
      const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name);
      const dumpOf = (table: string) =>
        (db.prepare(`SELECT * FROM "${table}"`).all() as Record<string, unknown>[])
          .map((r) => Object.values(r).map((v) => (v instanceof Uint8Array ? Buffer.from(v).toString('latin1') : String(v))).join('|'))
          .join('\n');
      const holders = (needle: Buffer | string) => tables.filter((t) => dumpOf(t).includes(typeof needle === 'string' ? needle : needle.toString('latin1')));
      expect(holders(nameB)).toEqual(['usernames']);
      expect(holders(Buffer.from(a.accountKey)).every((t) => ['devices', 'usernames', 'device_lists'].includes(t))).toBe(true);
      const messages = dumpOf('messages');
      expect(messages.length).toBeGreaterThan(0);
      for (const k of [a.accountKey, a.mailboxId, b.accountKey]) expect(messages.includes(Buffer.from(k).toString('latin1'))).toBe(false);
      expect(messages.includes(Buffer.from(b.mailboxId).toString('latin1'))).toBe(true); // the recipient: needed to deliver
    } finally {
      db.close();
    }
    await a.close();
  });

  itSingleNode('after the first message, mail travels in the token lane: a long conversation under the default first-contact limits', async () => {
    // A second node with the default send limits (only the auth bucket is opened, since every
    // client here shares 127.0.0.1). Tokenless sends are limited hard; replies carry tokens.
    const dir = join(work, 'token-node');
    const strict = await createNode(loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dir, METRICS_PORT: 'off', LOG_LEVEL: 'silent', RATE_LIMITS: 'auth=100:1000' }), { metrics: false });
    const strictUrl = `http://127.0.0.1:${(await strict.listen()).port}`;
    try {
      const a = await MeshWhisper.create({ node: strictUrl, namespace: 'test', storage: await memoryStorage() });
      const b = await MeshWhisper.create({ node: strictUrl, namespace: 'test', storage: await memoryStorage() });
      const atB: string[] = [];
      const atA: string[] = [];
      b.on('message', (m) => atB.push(m.text!));
      a.on('message', (m) => atA.push(m.text!));
      let next = b.once('message');
      await a.sendText(b.mailboxId, 'first contact'); // tokenless: Alice has no token of Bob's yet
      await next;
      next = a.once('message');
      await b.sendText(a.mailboxId, 'reply 0'); // carries Alice's token (learned from her message)
      await next;
      for (let i = 1; i <= 15; i++) {
        next = b.once('message', (m) => m.text === `a${i}`);
        await a.sendText(b.mailboxId, `a${i}`);
        await next;
        next = a.once('message', (m) => m.text === `b${i}`);
        await b.sendText(a.mailboxId, `b${i}`);
        await next;
      }
      expect(atB.length).toBe(16);
      expect(atA.length).toBe(16);
      await Promise.all([a.close(), b.close()]);
    } finally {
      await strict.close();
    }
  }, 60_000);

  itSingleNode('a message sealed while the node is down stays in the outbox and goes out, once, after a restart', async () => {
    const dir = join(work, 'outage-node');
    const env = { PORT: '0', HOST: '127.0.0.1', DATA_DIR: dir, METRICS_PORT: 'off', LOG_LEVEL: 'silent', RATE_LIMITS: 'auth=100:1000,send-first-contact=100:1000,send-first-contact-target=100:1000' };
    let n = await createNode(loadConfig(env), { metrics: false });
    let nodeUrl = `http://127.0.0.1:${(await n.listen()).port}`;
    const aliceFile = join(work, 'outage-alice.db');
    const bobFile = join(work, 'outage-bob.db');
    let alice = await MeshWhisper.create({ node: nodeUrl, namespace: 'test', storage: await openSqliteStorage({ path: aliceFile }) });
    let bob = await MeshWhisper.create({ node: nodeUrl, namespace: 'test', storage: await openSqliteStorage({ path: bobFile }) });
    const bobMailbox = bob.mailboxId;
    const first = bob.once('message');
    await alice.sendText(bobMailbox, 'before the outage');
    await first;
    await bob.close();
    await n.close();
    // The node is down: the message is sealed and queued, and the send reports the outage.
    await expect(alice.sendText(bobMailbox, 'during the outage')).rejects.toMatchObject({ code: 'MW_SDK_UNREACHABLE' });
    await alice.close();
    // Node back (same data, new port); Alice restarts and her outbox drains.
    n = await createNode(loadConfig(env), { metrics: false });
    nodeUrl = `http://127.0.0.1:${(await n.listen()).port}`;
    try {
      alice = await MeshWhisper.create({ node: nodeUrl, namespace: 'test', storage: await openSqliteStorage({ path: aliceFile }) });
      bob = await MeshWhisper.create({ node: nodeUrl, namespace: 'test', storage: await openSqliteStorage({ path: bobFile }), connect: false });
      const got: string[] = [];
      bob.on('message', (m) => got.push(m.text!));
      const synced = bob.once('synced');
      bob.connect();
      await synced;
      await bob.idle();
      expect(got).toEqual(['during the outage']);
      expect(await alice.flushOutbox()).toBe(0);
      await Promise.all([alice.close(), bob.close()]);
    } finally {
      await n.close();
    }
  }, 60_000);

  it('usernames: claim, lookup, squatting refused, fan-out to every device of the account; receipts and message states', async () => {
    const alice = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    // Receipts without their privacy delay (receipt-timing.test.ts tests that): this test is about states.
    const bob = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage(), receiptDelay: { minDelayMs: 0, maxDelayMs: 50 } });
    const mallory = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    await bob.claimUsername('bob');
    await expect(mallory.claimUsername('bob')).rejects.toMatchObject({ nodeCode: 'MW_USERNAME_TAKEN' });
    const rec = await alice.lookupUsername('bob');
    expect(Buffer.from(rec.accountKey).equals(Buffer.from(bob.accountKey))).toBe(true);
    expect(rec.mailboxIds.map((m) => Buffer.from(m).toString('hex'))).toEqual([Buffer.from(bob.mailboxId).toString('hex')]);

    const receipts: { state: string; ids: string[] }[] = [];
    alice.on('receipt', (r) => receipts.push({ state: r.state, ids: r.messageIds }));
    const got = bob.once('message');
    const deliveredReceipt = alice.once('receipt', (r) => r.state === 'delivered');
    const { id } = await alice.sendText({ username: 'bob' }, 'by name');
    const m = await got;
    expect(m.text).toBe('by name');
    expect(m.id).toBe(id);
    await deliveredReceipt;
    expect(await alice.messageState(id)).toBe('delivered');
    // Alice is a contact request for Bob: reading it sends no read receipt until Bob accepts.
    expect(m.request).toBe(true);
    expect(await bob.contactState(alice.accountKey)).toBe('request');
    await bob.markRead(m, [m.id]);
    await bob.acceptContact(alice.accountKey);
    expect(await bob.contactState(alice.accountKey)).toBe('accepted');
    const readReceipt = alice.once('receipt', (r) => r.state === 'read');
    await bob.markRead(m, [m.id]);
    await readReceipt;
    expect(await alice.messageState(id)).toBe('read');
    expect(receipts.map((r) => r.state)).toEqual(['delivered', 'read']);

    // Transfer to Mallory's account, then release.
    // The receiver must consent: without a matching consent the node refuses and nothing changes.
    const wrongConsent = alice.consentToUsernameTransfer('bob', bob.accountKey);
    await expect(bob.transferUsername('bob', mallory.accountKey, wrongConsent)).rejects.toMatchObject({ code: 'MW_SDK_NODE_ERROR', nodeCode: 'MW_BAD_SIGNATURE' });
    expect(Buffer.from((await alice.lookupUsername('bob')).accountKey).equals(Buffer.from(bob.accountKey))).toBe(true);
    await bob.transferUsername('bob', mallory.accountKey, mallory.consentToUsernameTransfer('bob', bob.accountKey));
    expect(Buffer.from((await alice.lookupUsername('bob')).accountKey).equals(Buffer.from(mallory.accountKey))).toBe(true);
    await expect(bob.releaseUsername('bob')).rejects.toMatchObject({ nodeCode: 'MW_AUTH_FORBIDDEN' });
    await mallory.releaseUsername('bob');
    await expect(alice.lookupUsername('bob')).rejects.toMatchObject({ nodeCode: 'MW_NOT_FOUND' });
    await Promise.all([alice.close(), bob.close(), mallory.close()]);
  });

  it('the account key survives a restart, so the device can still act for its account', async () => {
    const file = join(work, 'account.db');
    let c = await MeshWhisper.create({ node: url, namespace: 'test', storage: await openSqliteStorage({ path: file }) });
    const key = Buffer.from(c.account!.publicKey).toString('hex');
    await c.close();
    c = await MeshWhisper.create({ node: url, namespace: 'test', storage: await openSqliteStorage({ path: file }) });
    expect(Buffer.from(c.account!.publicKey).toString('hex')).toBe(key);
    await c.claimUsername('restarted');
    await c.close();
  });

  it('a payload too large for one sealed envelope is refused with a typed error and nothing is queued', async () => {
    const a = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    const b = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage(), connect: false });
    await expect(a.sendBinary(b.mailboxId, new Uint8Array(300 * 1024))).rejects.toMatchObject({ name: 'SdkError', code: 'MW_SDK_INVALID_ARGUMENT' });
    expect(await a.flushOutbox()).toBe(0);
    await Promise.all([a.close(), b.close()]);
  });

  it('identity: a new device of the same account is not a key change; a username moved to another account is detected and held; safety numbers', async () => {
    const alice = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    const bob = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    await bob.claimUsername('bob-id');
    // Bob's second device: certified by the same account key.
    const storage2 = await memoryStorage();
    await addAccountDevice(bob, storage2);
    const bob2 = await MeshWhisper.create({ node: url, namespace: 'test', storage: storage2 });
    expect(Buffer.from(bob2.accountKey).equals(Buffer.from(bob.accountKey))).toBe(true);

    const changes: unknown[] = [];
    alice.on('identityChange', (c) => changes.push(c));
    const onBoth = Promise.all([bob.once('message', (m) => m.text === 'to all of bob'), bob2.once('message', (m) => m.text === 'to all of bob')]);
    await alice.sendText({ username: 'bob-id' }, 'to all of bob'); // fan-out to both devices
    await onBoth;
    expect(changes).toEqual([]);

    // The directory now names another account for the username (here: Bob gave it up and Mallory took it).
    const mallory = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    const malloryGot: string[] = [];
    mallory.on('message', (m) => malloryGot.push(m.text ?? ''));
    await bob.releaseUsername('bob-id');
    await mallory.claimUsername('bob-id');
    await expect(alice.sendText({ username: 'bob-id' }, 'held')).rejects.toMatchObject({ code: 'MW_SDK_IDENTITY_CHANGED' });
    expect(changes.length).toBe(1);
    await new Promise((r) => setTimeout(r, 300));
    expect(malloryGot).toEqual([]);
    await alice.acceptIdentityChange('bob-id');
    const got = mallory.once('message');
    await alice.sendText({ username: 'bob-id' }, 'after accepting');
    expect((await got).text).toBe('after accepting');

    // Safety numbers: the same 60 digits on both sides; a scanned payload matches only the right key.
    const a = alice.safetyNumber(bob.accountKey);
    const b = bob.safetyNumber(alice.accountKey);
    expect(a.digits).toMatch(/^\d{60}$/);
    expect(a.digits).toBe(b.digits);
    expect(a.groups.length).toBe(12);
    expect(alice.verifySafetyNumber(bob.accountKey, b.scannable).status).toBe('match');
    expect(alice.verifySafetyNumber(mallory.accountKey, b.scannable).status).toBe('mismatch');
    await Promise.all([alice.close(), bob.close(), bob2.close(), mallory.close()]);
  });

  it('conversation features: replies, forwarding, reactions, author-only edits and deletes, typing and presence (ephemeral)', async () => {
    const alice = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    const bob = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    const carol = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage(), sharePresence: false });
    const first = bob.once('message');
    const { id } = await alice.sendText(bob.mailboxId, 'original');
    const m = await first;

    // Quoted reply and forward.
    const replyArrives = alice.once('message');
    await bob.sendText(alice.mailboxId, 'answer', { replyTo: { author: alice.accountKey, id: m.id, snippet: 'original' } });
    const reply = await replyArrives;
    expect(reply.replyTo?.id).toBe(id);
    expect(Buffer.from(reply.replyTo!.author).equals(Buffer.from(alice.accountKey))).toBe(true);
    expect(reply.replyTo?.snippet).toBe('original');
    const fwd = carol.once('message');
    await bob.forward(carol.mailboxId, m);
    const f = await fwd;
    expect(f.forwarded).toBe(true);
    expect(f.text).toBe('original');

    // Reaction.
    const reacted = alice.once('reaction');
    await bob.react(alice.mailboxId, { author: alice.accountKey, id }, '👍');
    const r = await reacted;
    expect(r.emoji).toBe('👍');
    expect(r.target.id).toBe(id);
    expect(r.remove).toBe(false);

    // Edits and deletes name (sender account, id): Bob "deleting" Alice's id only ever refers to a
    // message of Bob's own account, so an app applying (author, id) can never remove Alice's message.
    const del = alice.once('delete');
    await bob.deleteMessage(alice.mailboxId, id);
    const d = await del;
    expect(Buffer.from(d.author).equals(Buffer.from(bob.accountKey))).toBe(true);
    expect(Buffer.from(d.author).equals(Buffer.from(alice.accountKey))).toBe(false);
    const edited = bob.once('edit');
    await alice.editMessage(bob.mailboxId, id, 'original (edited)');
    const e = await edited;
    expect(Buffer.from(e.author).equals(Buffer.from(alice.accountKey))).toBe(true);
    expect(e.id).toBe(id);
    expect(e.text).toBe('original (edited)');

    // Typing and presence travel as ephemeral signals: delivered live, never stored.
    const typing = bob.once('typing');
    await alice.setTyping(bob.mailboxId, true);
    expect((await typing).typing).toBe(true);
    const presence = bob.once('presence');
    await alice.setPresence(bob.mailboxId, true);
    expect((await presence).online).toBe(true);
    // Carol opted out of presence: nothing is sent.
    let carolPresence = false;
    bob.on('presence', (p) => void (p.from === carol.address && (carolPresence = true)));
    await carol.setPresence(bob.mailboxId, true);
    // An ephemeral signal to an offline device is dropped, not queued.
    const offline = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage(), connect: false });
    await alice.sendText(offline.mailboxId, 'stored');
    await alice.setTyping(offline.mailboxId, true);
    const seen: string[] = [];
    offline.on('message', (x) => seen.push(x.text!));
    offline.on('typing', () => seen.push('typing'));
    const synced = offline.once('synced');
    offline.connect();
    await synced;
    await offline.idle();
    expect(seen).toEqual(['stored']);
    await new Promise((res) => setTimeout(res, 200));
    expect(carolPresence).toBe(false);
    await Promise.all([alice.close(), bob.close(), carol.close(), offline.close()]);
  });

  it('blocking is enforced end to end: nothing shown, no receipts, no sends; unblock restores it', async () => {
    const alice = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    const bob = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage() });
    const first = alice.once('message');
    await bob.sendText(alice.mailboxId, 'hello');
    await first;
    await alice.block(bob.accountKey);
    expect(await alice.isBlocked(bob.accountKey)).toBe(true);
    const shown: string[] = [];
    alice.on('message', (m) => shown.push(m.text!));
    const { id } = await bob.sendText(alice.mailboxId, 'you cannot see this');
    await new Promise((r) => setTimeout(r, 500));
    await alice.idle();
    expect(shown).toEqual([]);
    expect(await bob.messageState(id)).toBe('sent'); // no delivery receipt came back
    await expect(alice.sendText(bob.mailboxId, 'nope')).rejects.toMatchObject({ code: 'MW_SDK_BLOCKED' });
    await alice.unblock(bob.accountKey);
    const again = alice.once('message');
    await bob.sendText(alice.mailboxId, 'visible again');
    expect((await again).text).toBe('visible again');
    await alice.sendText(bob.mailboxId, 'and I can answer');
    await Promise.all([alice.close(), bob.close()]);
  });
});

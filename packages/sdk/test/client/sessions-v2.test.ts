/**
 * Session robustness end to end (issue 10 §1): typing signals that the node drops for an offline
 * device must not break later messages, and a device that can no longer decrypt a peer tells it,
 * so the peer starts a new session and re-sends — over a real node and real sockets.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { E2eNode } from './test-node.js';
import { startE2eNode } from './test-node.js';
import type { IncomingMessage, UndecryptableMessage } from '../../src/index.js';
import { MeshWhisper, memoryStorage, openSqliteStorage } from '../../src/index.js';

let t: E2eNode;
const work = mkdtempSync(join(tmpdir(), 'mw-sdk-sessions-'));
beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  await t?.close();
  rmSync(work, { recursive: true, force: true });
});

async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('sessions over a real node', () => {
  it('1,002 typing signals dropped for an offline device: the 4 messages sent after them all arrive (failed before v2)', async () => {
    const alice = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    const bobFile = join(work, 'bob.db');
    let bob = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await openSqliteStorage({ path: bobFile }) });
    const first = bob.once('message');
    await alice.sendText(bob.mailboxId, 'hello');
    await first;
    await bob.close();
    // Bob is offline: the node drops every ephemeral envelope for him.
    for (let i = 0; i < 1002; i++) await alice.setTyping(bob.mailboxId, i % 2 === 0);
    for (let i = 0; i < 4; i++) await alice.sendText(bob.mailboxId, `real ${i}`);
    bob = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await openSqliteStorage({ path: bobFile }), connect: false });
    const got: IncomingMessage[] = [];
    const bad: UndecryptableMessage[] = [];
    bob.on('message', (m) => got.push(m));
    bob.on('undecryptable', (u) => bad.push(u));
    const synced = bob.once('synced');
    bob.connect();
    await synced;
    await bob.idle();
    await until(() => got.length >= 4 || bad.length > 0, 'four messages');
    expect(bad).toEqual([]);
    expect(got.map((m) => m.text)).toEqual(['real 0', 'real 1', 'real 2', 'real 3']);
    await Promise.all([alice.close(), bob.close()]);
  }, 180_000);

  it('a device that lost its session says so (undecryptable with code and sender); the sender starts afresh and re-sends', async () => {
    const alice = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    const bobStorage = await memoryStorage();
    const bob = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: bobStorage });
    const got: string[] = [];
    const bad: UndecryptableMessage[] = [];
    bob.on('message', (m) => got.push(m.text ?? ''));
    bob.on('undecryptable', (u) => bad.push(u));
    const fromBob: string[] = [];
    alice.on('message', (m) => fromBob.push(m.text ?? ''));
    await alice.sendText(bob.mailboxId, 'hello');
    await until(() => got.includes('hello'), 'hello');
    await bob.sendText(alice.mailboxId, 'hi alice');
    await until(() => fromBob.includes('hi alice'), 'hi alice');
    // Bob's session with Alice is gone (e.g. his session table was lost).
    await bobStorage.removeSession(alice.address);
    await alice.sendText(bob.mailboxId, 'are you there?');
    await until(() => got.includes('are you there?'), 'the re-sent message');
    // 'are you there?' (and possibly Alice's delivery receipt for 'hi alice'), each with its reason.
    expect(bad.length).toBeGreaterThanOrEqual(1);
    for (const u of bad) expect(u).toMatchObject({ code: 'MW_CRYPTO_UNKNOWN_SESSION', from: alice.address });
    // Both directions work on the new session.
    await bob.sendText(alice.mailboxId, 'yes');
    await until(() => fromBob.includes('yes'), 'yes');
    await alice.sendText(bob.mailboxId, 'good');
    await until(() => got.includes('good'), 'good');
    expect(got.filter((x) => x === 'are you there?')).toHaveLength(1);
    await Promise.all([alice.close(), bob.close()]);
  }, 120_000);
});

// Receipts over a real node (issue 12 §3): a delivery receipt does not follow its message within
// milliseconds (the node could pair the two and learn who writes to whom), receipts to one device
// within the delay go in one message, and a receipt pending when the client closes is sent by the
// next client on the same storage.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { E2eNode } from './test-node.js';
import { startE2eNode } from './test-node.js';
import { MeshWhisper, memoryStorage, openSqliteStorage } from '../../src/index.js';

let t: E2eNode;
const dir = mkdtempSync(join(tmpdir(), 'mw-sdk-receipts-'));
beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The real fetch, recording the time of every POST /v1/send. */
function recordingFetch(posts: number[]): typeof fetch {
  return async (input, init) => {
    if (init?.method === 'POST' && String(input instanceof Request ? input.url : input).endsWith('/v1/send')) posts.push(Date.now());
    return globalThis.fetch(input, init);
  };
}

describe('receipt timing', () => {
  it('a delivery receipt leaves no sooner than the minimum delay, and three messages get one receipt', async () => {
    const delay = { minDelayMs: 2500, maxDelayMs: 2500 };
    const bobPosts: number[] = [];
    const alice = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    const bob = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), receiptDelay: delay, fetch: recordingFetch(bobPosts) });
    try {
      if (bob.connectionState !== 'online') await bob.once('connection', (s) => s === 'online', 10_000);
      const arrivals: number[] = [];
      bob.on('message', () => arrivals.push(Date.now()));
      const receipts: { at: number; state: string; ids: string[] }[] = [];
      alice.on('receipt', (r) => receipts.push({ at: Date.now(), state: r.state, ids: r.messageIds }));
      const sent = await Promise.all(['one', 'two', 'three'].map((text) => alice.sendText(bob.mailboxId, text)));
      await expect.poll(() => arrivals.length, { timeout: 10_000 }).toBe(3);
      await expect.poll(() => receipts.length, { timeout: 15_000 }).toBe(1);
      const [receipt] = receipts;
      expect(receipt!.state).toBe('delivered');
      expect([...receipt!.ids].sort()).toEqual(sent.map((s) => s.id).sort());
      // Bob posted exactly one envelope (the receipt), and not before the delay was over.
      expect(bobPosts).toHaveLength(1);
      expect(bobPosts[0]! - arrivals[0]!).toBeGreaterThanOrEqual(delay.minDelayMs - 5);
      for (const s of sent) expect(await alice.messageState(s.id)).toBe('delivered');
    } finally {
      await Promise.all([alice.close(), bob.close()]);
    }
  }, 40_000);

  it('a receipt still pending when the client closes is sent by the next client on that storage', async () => {
    const db = join(dir, 'bob.sqlite3');
    const alice = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    let bob = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await openSqliteStorage({ path: db }), receiptDelay: { minDelayMs: 60_000, maxDelayMs: 60_000 } });
    try {
      const arrived = bob.once('message', undefined, 10_000);
      const { id } = await alice.sendText(bob.mailboxId, 'read me later');
      const m = await arrived;
      await bob.acceptContact(alice.accountKey); // read receipts go to contacts only
      await bob.markRead(m, [m.id]);
      await bob.close(); // both receipts (delivered, read) are pending: a minute to go
      expect(await alice.messageState(id)).toBe('sent');

      const read = alice.once('receipt', (r) => r.state === 'read', 15_000);
      // The next run sends the stored receipts at their due time; rather than wait a minute, the
      // next run's clock is a minute ahead.
      const { createContext } = await import('@meshwhisper/crypto');
      bob = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await openSqliteStorage({ path: db }), crypto: createContext({ now: () => Date.now() + 61_000 }) });
      await read;
      await expect.poll(() => alice.messageState(id), { timeout: 10_000 }).toBe('read');
    } finally {
      await Promise.all([alice.close(), bob.close()]);
    }
  }, 60_000);
});

// A device advertises its delivery token only once the node has it (issue 15: the browser
// skeleton's throw-away sender, created with `connect: false`, put an unregistered token into its
// message, and the page's delivery receipt was refused in the token lane: a red 403 in the console).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { E2eNode } from './test-node.js';
import { startE2eNode } from './test-node.js';
import { MeshWhisper, memoryStorage } from '../../src/index.js';

/** Receipts without their privacy delay (receipt-timing.test.ts tests that): these tests are about tokens. */
const FAST_RECEIPTS = { minDelayMs: 0, maxDelayMs: 50 };

let t: E2eNode;
beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  await t?.close();
});

/** The real fetch, recording the status of every POST /v1/send. */
function recordingFetch(statuses: number[]): typeof fetch {
  return async (input, init) => {
    const res = await globalThis.fetch(input, init);
    if (init?.method === 'POST' && String(input instanceof Request ? input.url : input).endsWith('/v1/send')) statuses.push(res.status);
    return res;
  };
}

describe('delivery tokens', () => {
  it('a client that never connected sends no token: the receipt back to it is not refused (no 403)', async () => {
    const statuses: number[] = [];
    const bob = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), fetch: recordingFetch(statuses), receiptDelay: FAST_RECEIPTS });
    const peer = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), connect: false });
    try {
      const arrived = bob.once('message', undefined, 10_000);
      await peer.sendText(bob.mailboxId, 'hello from a device that never connected');
      expect((await arrived).text).toBe('hello from a device that never connected');
      // Bob's delivery receipt goes back to the peer's mailbox.
      await expect.poll(() => statuses.length, { timeout: 10_000 }).toBeGreaterThan(0);
      await bob.idle();
      expect(statuses).toEqual([200]); // the old code: [403, 200] (refused token, then the first-contact lane)
    } finally {
      await Promise.all([peer.close(), bob.close()]);
    }
  });

  it('a connected client: the receipts back to it are accepted too', async () => {
    const statuses: number[] = [];
    const alice = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    const bob = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), fetch: recordingFetch(statuses), receiptDelay: FAST_RECEIPTS });
    try {
      if (alice.connectionState !== 'online') await alice.once('connection', (s) => s === 'online', 10_000);
      const arrived = bob.once('message', undefined, 10_000);
      await alice.sendText(bob.mailboxId, 'hi');
      await arrived;
      const receipt = alice.once('receipt', undefined, 10_000);
      await receipt; // delivered: bob's receipt reached alice
      await expect.poll(() => statuses.length, { timeout: 10_000 }).toBeGreaterThan(0);
      expect(statuses.every((s) => s === 200)).toBe(true);
    } finally {
      await Promise.all([alice.close(), bob.close()]);
    }
  });
});

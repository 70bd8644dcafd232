// The node may hand a durable envelope to a connected recipient before its commit (node
// docs/spec/node-protocol.md §3, "Delivery ahead of the commit"). If that commit then fails, the
// recipient already holds a copy that the node never stored, while the sender is told
// MW_UNAVAILABLE and resends the same sealed bytes: the recipient must show the message once and
// report nothing undecryptable. And if the recipient acknowledges the copy before its commit has
// even started, the node never writes it and the sender's sendText resolves at that ack — even
// while the node's disk is stalled. Real node, real sockets; the node's store fails or holds commits.
import { afterAll, beforeAll, describe, expect } from 'vitest';
import type { NodeStore } from '@meshwhisper/node';
import { CONTENT_TYPE_PROTOBUF, EnvelopeClass, SendRequestSchema, encodeBody } from '@meshwhisper/protocol';
import type { E2eNode } from './test-node.js';
import { itSingleNode, startE2eNode } from './test-node.js';
import { MeshWhisper, memoryStorage } from '../../src/index.js';

let t: E2eNode;
beforeAll(async () => {
  // AHEAD_HOLD_MS=0: the first test needs the commit of a copy that went ahead to start (and fail)
  // before the recipient's ack, which the default hold of 40 ms would let win (node
  // docs/architecture.md, "Held for the ack"); the second stalls every commit anyway.
  t = await startE2eNode({ AHEAD_HOLD_MS: '0' });
});
afterAll(async () => {
  await t?.close();
});

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Both online, then a conversation both ways (alice holds bob's delivery token) and one more send
 * on that token, which commits: from then on bob's connection takes alice's sends ahead of their commit.
 */
async function aheadReady(alice: MeshWhisper, bob: MeshWhisper): Promise<void> {
  for (const c of [alice, bob]) if (c.connectionState !== 'online') await c.once('connection', (s) => s === 'online', 10_000);
  let got = bob.once('message', undefined, 10_000);
  await alice.sendText(bob.mailboxId, 'hello');
  await got;
  const back = alice.once('message', undefined, 10_000);
  await bob.sendText(alice.mailboxId, 'hi');
  await back;
  got = bob.once('message', undefined, 10_000);
  await alice.sendText(bob.mailboxId, 'one');
  expect((await got).text).toBe('one');
}

describe('a copy delivered ahead of a commit that then failed', () => {
  itSingleNode('the recipient shows the message once (from the copy that went ahead); the sender resends after MW_UNAVAILABLE; nothing is undecryptable', async () => {
    const alice = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    const bob = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    const store = t.node.services.store as NodeStore;
    const real = store.enqueue.bind(store);
    try {
      await aheadReady(alice, bob);

      // The next commit holding an envelope for bob fails as a full disk would; later ones go through.
      const events: string[] = [];
      let armed = true;
      store.enqueue = async (items, limits) => {
        const forBob = items.some((i) => sameBytes(i.mailbox, bob.mailboxId));
        if (forBob && armed) {
          armed = false;
          // Let the copy that went ahead reach bob first, then fail the commit.
          await new Promise((r) => setTimeout(r, 300));
          events.push('commit failed');
          throw Object.assign(new Error('SQLITE_FULL: database or disk is full'), { code: 'SQLITE_FULL' });
        }
        if (forBob) events.push('commit');
        return real(items, limits);
      };
      const shown: string[] = [];
      const undecryptable: string[] = [];
      bob.on('message', (m) => {
        shown.push(m.text ?? '');
        events.push(`shown ${m.text}`);
      });
      bob.on('undecryptable', (e) => undecryptable.push(e.code));
      const sent = await alice.sendText(bob.mailboxId, 'two');
      expect(sent.id).toBeTruthy();
      await expect.poll(() => events.includes('commit'), { timeout: 15_000 }).toBe(true);
      await bob.idle();
      await new Promise((r) => setTimeout(r, 500));
      await bob.idle();
      expect(shown).toEqual(['two']);
      expect(undecryptable).toEqual([]);
      // Shown from the copy that went ahead: before its commit failed and before the resend committed.
      expect(events.slice(0, 3)).toEqual(['shown two', 'commit failed', 'commit']);
    } finally {
      store.enqueue = real;
      await Promise.all([alice.close(), bob.close()]);
    }
  }, 60_000);
});

describe('a copy the recipient acknowledged before its commit started (WRITE_ACKED_AHEAD=false)', () => {
  itSingleNode('is never written, and the sender’s sendText resolves at the recipient’s ack while the node’s commits are stalled', async () => {
    // Receipts held back past the test: the only durable sends during the stall are the test's own.
    const quiet = { receiptDelay: { minDelayMs: 600_000, maxDelayMs: 600_000 } };
    const alice = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...quiet });
    const bob = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...quiet });
    const carol = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...quiet });
    const store = t.node.services.store as NodeStore;
    const real = store.enqueue.bind(store);
    let release = (): void => undefined;
    try {
      await aheadReady(alice, bob);

      // The disk stalls: every commit waits. Two sends to carol take both commit slots, so the
      // next group cannot start.
      const stalled = new Promise<void>((resolve) => (release = resolve));
      let held = 0;
      const written: Uint8Array[] = [];
      store.enqueue = async (items, limits) => {
        for (const i of items) written.push(i.mailbox);
        held++;
        await stalled;
        return real(items, limits);
      };
      const raw = (): Promise<Response> =>
        fetch(new URL('/v1/send', t.url), {
          method: 'POST',
          headers: { 'content-type': CONTENT_TYPE_PROTOBUF },
          body: encodeBody(SendRequestSchema, { mailboxId: carol.mailboxId, payload: new Uint8Array(64), class: EnvelopeClass.DURABLE }) as BodyInit,
        });
      const blockers = [raw()];
      await expect.poll(() => held).toBeGreaterThanOrEqual(1);
      blockers.push(raw());
      await expect.poll(() => held).toBeGreaterThanOrEqual(2);

      const got = bob.once('message', (m) => m.text === 'two', 10_000);
      const sent = await alice.sendText(bob.mailboxId, 'two'); // resolves although nothing can commit
      expect((await got).text).toBe('two');
      expect(sent.id).toBeTruthy();

      release();
      expect((await Promise.all(blockers)).map((r) => r.status)).toEqual([200, 200]);
      await bob.idle();
      // Carol's envelopes reached the store; bob's never did.
      expect(written.filter((m) => sameBytes(m, carol.mailboxId))).toHaveLength(2);
      expect(written.filter((m) => sameBytes(m, bob.mailboxId))).toEqual([]);
    } finally {
      release();
      store.enqueue = real;
      await Promise.all([alice.close(), bob.close(), carol.close()]);
    }
  }, 60_000);
});

// SendService.retractAcked (WRITE_ACKED_AHEAD=false): a durable send that went ahead to its
// recipient and was acknowledged before its group commit started is answered at once and never
// handed to the store; one already in a commit, or an item of a batch request, is not. The backlog
// counts it out at once. A unit test of the queue on a store that records what it is given; the
// end-to-end path (real node, sockets, SQLite) is in deliver-ahead.test.ts.
import { describe, expect, it } from 'vitest';
import type { FastEnvelope, SendResult } from '@meshwhisper/protocol';
import { AHEAD_SENT } from '../src/mailbox/hub.js';
import type { EnqueueItem, EnqueueOutcome, NodeStore } from '../src/store/node-store.js';
import { CommitGate, durableRequest, looseSendService } from './helpers.js';

/** Commits every group at once (behind a CommitGate here) and records each item's payload size, our marker. */
function recordingStore(): { store: NodeStore; sizes: number[] } {
  const sizes: number[] = [];
  const store = {
    async enqueue(items: readonly EnqueueItem[]): Promise<EnqueueOutcome[]> {
      for (const i of items) sizes.push(i.payload.length);
      return items.map((item, k) => ({ ok: true, envelope: { seq: k + 1, id: item.id, payload: item.payload, receivedAt: item.receivedAt }, evicted: 0 }));
    },
  } as unknown as NodeStore;
  return { store, sizes };
}

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('SendService.retractAcked', () => {
  it('answers a queued send at its ack and never writes it; a send already in a commit, a batch item, or a second retraction is refused', async () => {
    const { store, sizes } = recordingStore();
    const gate = new CommitGate(store);
    /** Every envelope the service offered ahead, by payload size. */
    const offered = new Map<number, FastEnvelope>();
    let unstored = 0;
    const s = looseSendService(
      store,
      { unstored: () => unstored++ },
      {},
      { ahead: (_k, e) => (offered.set(e.payload.length, e), AHEAD_SENT), aheadDropped: () => undefined, tokenAccepted: () => undefined },
    );
    gate.close();
    // Two groups fill both commit slots (held); 3 and 4 then wait in the queue.
    const first = s.send(durableRequest(1), 'c');
    await expect.poll(() => gate.held).toBe(1);
    const second = s.send(durableRequest(2), 'c');
    await expect.poll(() => gate.held).toBe(2);
    const third = s.send(durableRequest(3), 'c');
    const fourth = s.send(durableRequest(4), 'c');
    const batch = s.sendBatch([durableRequest(5)], 'c');
    await nextTurn();
    expect(s.backlog).toBe(5);

    expect(s.retractAcked(offered.get(1)!)).toBe(false); // in a (held) commit
    expect(s.retractAcked(offered.get(5)!)).toBe(false); // a batch item: answered with its batch's commit
    expect(s.retractAcked(offered.get(3)!)).toBe(true);
    expect(unstored).toBe(1);
    expect(s.backlog).toBe(4);
    const r3: SendResult = await third; // while both commits are still held
    expect(r3.deliveredLive).toBe(true);
    expect(Buffer.from(r3.id).equals(Buffer.from(offered.get(3)!.id))).toBe(true);
    expect(s.retractAcked(offered.get(3)!)).toBe(false); // once only

    gate.open();
    const results = await Promise.all([first, second, fourth]);
    expect(results.every((r) => r.id.length === 16)).toBe(true);
    expect((await batch).map((o) => o.ok)).toEqual([true]);
    expect(s.backlog).toBe(0);
    expect(sizes.sort()).toEqual([1, 2, 4, 5]); // 3 never reached the store
    expect(s.retractAcked(offered.get(4)!)).toBe(false); // committed
  });

  it('a batch request behind a retracted send is still one group, even over MAX_GROUP_BYTES', async () => {
    const groups: number[] = [];
    const inner = recordingStore();
    const store = {
      enqueue: (items: readonly EnqueueItem[], limits: unknown) => (groups.push(items.length), (inner.store.enqueue as (i: readonly EnqueueItem[], l: unknown) => Promise<EnqueueOutcome[]>)(items, limits)),
    } as unknown as NodeStore;
    const gate = new CommitGate(store);
    const offered: FastEnvelope[] = [];
    const s = looseSendService(store, {}, {}, { ahead: (_k, e) => (offered.push(e), AHEAD_SENT), aheadDropped: () => undefined, tokenAccepted: () => undefined });
    gate.close();
    const held = [s.send(durableRequest(1), 'c')];
    await expect.poll(() => gate.held).toBe(1);
    held.push(s.send(durableRequest(1), 'c'));
    await expect.poll(() => gate.held).toBe(2);
    // Queued: one single send (then retracted), then 40 batch items of 256 KiB = 10 MiB > MAX_GROUP_BYTES (8 MiB).
    const single = s.send(durableRequest(3), 'c');
    const batch = s.sendBatch(Array.from({ length: 40 }, () => durableRequest(256 * 1024)), 'c');
    await nextTurn();
    expect(s.retractAcked(offered[2]!)).toBe(true);
    await single;
    gate.open();
    await Promise.all(held);
    expect((await batch).every((o) => o.ok)).toBe(true);
    expect(groups).toEqual([1, 1, 40]);
  });

  it('a queue of nothing but retracted sends drains, and the service goes idle (close resolves)', async () => {
    const { store, sizes } = recordingStore();
    const gate = new CommitGate(store);
    const offered: FastEnvelope[] = [];
    const s = looseSendService(store, {}, {}, { ahead: (_k, e) => (offered.push(e), AHEAD_SENT), aheadDropped: () => undefined, tokenAccepted: () => undefined });
    gate.close();
    const held = [s.send(durableRequest(1), 'c')];
    await expect.poll(() => gate.held).toBe(1);
    held.push(s.send(durableRequest(1), 'c'));
    await expect.poll(() => gate.held).toBe(2);
    const queued = Array.from({ length: 10 }, () => s.send(durableRequest(7), 'c'));
    await nextTurn();
    for (const e of offered.slice(2)) expect(s.retractAcked(e)).toBe(true);
    expect((await Promise.all(queued)).every((r) => r.deliveredLive)).toBe(true);
    gate.open();
    await Promise.all(held);
    await s.close();
    expect(s.backlog).toBe(0);
    expect(sizes).toEqual([1, 1]);
  });
});

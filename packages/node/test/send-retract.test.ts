// SendService.retractAcked (WRITE_ACKED_AHEAD=false): a durable send that went ahead to its
// recipient and was acknowledged before its group commit started is answered at once and never
// handed to the store; one already in a commit, or an item of a batch request, is not. The backlog
// counts it out at once. A unit test of the queue on a store that records what it is given; the
// end-to-end path (real node, sockets, SQLite) is in deliver-ahead.test.ts.
import { describe, expect, it } from 'vitest';
import type { FastEnvelope, SendResult } from '@meshwhisper/protocol';
import { AHEAD_SENT } from '../src/mailbox/hub.js';
import type { SendEvents, SendService } from '../src/mailbox/send.js';
import type { EnqueueItem, EnqueueOutcome, NodeStore } from '../src/store/node-store.js';
import { CommitGate, durableRequest, looseSendService } from './helpers.js';

/**
 * A SendService on a store that commits every group at once — behind a CommitGate — and records
 * each group's size and each item's payload size (our marker); every durable send is taken ahead
 * (`offered`, in admission order).
 */
function setup(events: SendEvents = {}): { s: SendService; gate: CommitGate; offered: FastEnvelope[]; sizes: number[]; groups: number[] } {
  const sizes: number[] = [];
  const groups: number[] = [];
  const store = {
    async enqueue(items: readonly EnqueueItem[]): Promise<EnqueueOutcome[]> {
      groups.push(items.length);
      for (const i of items) sizes.push(i.payload.length);
      return items.map((item, k) => ({ ok: true, envelope: { seq: k + 1, id: item.id, payload: item.payload, receivedAt: item.receivedAt }, evicted: 0 }));
    },
  } as unknown as NodeStore;
  const gate = new CommitGate(store);
  const offered: FastEnvelope[] = [];
  const s = looseSendService(store, events, {}, { ahead: (_k, e) => (offered.push(e), AHEAD_SENT), aheadDropped: () => undefined, tokenAccepted: () => undefined });
  return { s, gate, offered, sizes, groups };
}

/** Closes the gate and sends one envelope of each size, each its own group: both commit slots are then held, and later sends wait in the queue. */
async function fillCommitSlots(s: SendService, gate: CommitGate, sizes: [number, number]): Promise<Promise<SendResult>[]> {
  gate.close();
  const held = [s.send(durableRequest(sizes[0]), 'c')];
  await expect.poll(() => gate.held).toBe(1);
  held.push(s.send(durableRequest(sizes[1]), 'c'));
  await expect.poll(() => gate.held).toBe(2);
  return held;
}

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('SendService.retractAcked', () => {
  it('answers a queued send at its ack and never writes it; a send already in a commit, a batch item, or a second retraction is refused', async () => {
    let unstored = 0;
    const { s, gate, offered, sizes } = setup({ unstored: () => unstored++ });
    const held = await fillCommitSlots(s, gate, [1, 2]);
    const third = s.send(durableRequest(3), 'c');
    const fourth = s.send(durableRequest(4), 'c');
    const batch = s.sendBatch([durableRequest(5)], 'c');
    await nextTurn();
    expect(s.backlog).toBe(5);
    const bySize = (n: number): FastEnvelope => offered.find((e) => e.payload.length === n)!;

    expect(s.retractAcked(bySize(1))).toBe(false); // in a (held) commit
    expect(s.retractAcked(bySize(5))).toBe(false); // a batch item: answered with its batch's commit
    expect(s.retractAcked(bySize(3))).toBe(true);
    expect(unstored).toBe(1);
    expect(s.backlog).toBe(4);
    const r3 = await third; // while both commits are still held
    expect(r3.deliveredLive).toBe(true);
    expect(Buffer.from(r3.id).equals(Buffer.from(bySize(3).id))).toBe(true);
    expect(s.retractAcked(bySize(3))).toBe(false); // once only

    gate.open();
    const results = await Promise.all([...held, fourth]);
    expect(results.every((r) => r.id.length === 16)).toBe(true);
    expect((await batch).map((o) => o.ok)).toEqual([true]);
    expect(s.backlog).toBe(0);
    expect(sizes.sort()).toEqual([1, 2, 4, 5]); // 3 never reached the store
    expect(s.retractAcked(bySize(4))).toBe(false); // committed
  });

  it('a batch request behind a retracted send is still one group, even over MAX_GROUP_BYTES', async () => {
    const { s, gate, offered, groups } = setup();
    const held = await fillCommitSlots(s, gate, [1, 1]);
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
    const { s, gate, offered, sizes } = setup();
    const held = await fillCommitSlots(s, gate, [1, 1]);
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

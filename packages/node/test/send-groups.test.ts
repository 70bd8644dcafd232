// SendService's group commit bounds (issue 12 §1): at most MAX_GROUP_COMMIT envelopes and
// MAX_GROUP_BYTES of payload per store.enqueue call — except that a batch request is never split —
// and every sender answered after its group committed.
import { describe, expect, it } from 'vitest';
import { MAX_ENVELOPE_SIZE } from '@meshwhisper/protocol';
import { COMMIT_INTERVAL_MIN_GROUP, MAX_GROUP_BYTES, MAX_GROUP_COMMIT } from '../src/mailbox/send.js';
import type { SendService } from '../src/mailbox/send.js';
import type { EnqueueItem, EnqueueOutcome, NodeStore } from '../src/store/node-store.js';
import { durableRequest, looseSendService } from './helpers.js';

/** A store whose enqueue records each group (count, bytes; and when it arrived, in `startedAt`) and commits it after a macrotask. */
function recordingStore(): { store: NodeStore; groups: { n: number; bytes: number }[]; startedAt: number[] } {
  const groups: { n: number; bytes: number }[] = [];
  const startedAt: number[] = [];
  const store = {
    async enqueue(items: readonly EnqueueItem[]): Promise<EnqueueOutcome[]> {
      groups.push({ n: items.length, bytes: items.reduce((a, i) => a + i.payload.length, 0) });
      startedAt.push(performance.now());
      await new Promise((r) => setTimeout(r, 1));
      return items.map((item, k) => ({ ok: true, envelope: { seq: k + 1, id: item.id, payload: item.payload, receivedAt: item.receivedAt }, evicted: 0 }));
    },
  } as unknown as NodeStore;
  return { store, groups, startedAt };
}

const req = durableRequest;

describe('group commit bounds', () => {
  it('splits a burst by envelope count and by payload bytes, and answers every sender', async () => {
    const { store, groups } = recordingStore();
    const s = looseSendService(store);
    // 1. Small envelopes: the count bound.
    const small = await Promise.all(Array.from({ length: MAX_GROUP_COMMIT + 10 }, () => s.send(req(100), 'c')));
    expect(small).toHaveLength(MAX_GROUP_COMMIT + 10);
    expect(Math.max(...groups.map((g) => g.n))).toBe(MAX_GROUP_COMMIT);
    // 2. Large envelopes: the byte bound (each group ≤ MAX_GROUP_BYTES, none empty).
    groups.length = 0;
    const large = await Promise.all(Array.from({ length: 40 }, () => s.send(req(MAX_ENVELOPE_SIZE), 'c'))); // 10 MiB
    expect(large).toHaveLength(40);
    expect(groups.reduce((a, g) => a + g.n, 0)).toBe(40);
    expect(groups.length).toBeGreaterThan(1);
    for (const g of groups) expect(g.bytes).toBeLessThanOrEqual(MAX_GROUP_BYTES);
    await s.close();
  });

  it('never splits a batch request, even one larger than the byte bound', async () => {
    const { store, groups } = recordingStore();
    const s = looseSendService(store);
    const items = Array.from({ length: 40 }, () => req(MAX_ENVELOPE_SIZE)); // 10 MiB > MAX_GROUP_BYTES
    const out = await s.sendBatch(items, 'c');
    expect(out.filter((o) => !o.ok).map((o) => String((o as { error: unknown }).error))).toEqual([]);
    expect(groups).toEqual([{ n: 40, bytes: 40 * MAX_ENVELOPE_SIZE }]);
    await s.close();
  });
});

describe('commit interval (COMMIT_INTERVAL_MS)', () => {
  const INTERVAL = 250;
  const service = (store: NodeStore, commitIntervalMs: number): SendService =>
    looseSendService(store, {}, { commitIntervalMs });
  const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

  it('a client sending one envelope at a time never waits for it', async () => {
    const { store, groups } = recordingStore();
    const s = service(store, INTERVAL);
    const t0 = performance.now();
    for (let i = 0; i < 6; i++) await s.send(req(100), 'c');
    expect(groups.map((g) => g.n)).toEqual([1, 1, 1, 1, 1, 1]);
    expect(performance.now() - t0).toBeLessThan(INTERVAL); // 6 sends, not 6 intervals
    await s.close();
  });

  it('under load the next group starts an interval after the previous one, and takes everything sent meanwhile', async () => {
    const { store, groups, startedAt } = recordingStore();
    const s = service(store, INTERVAL);
    const first = Array.from({ length: COMMIT_INTERVAL_MIN_GROUP }, () => s.send(req(100), 'c')); // one turn: one group, large enough to mean load
    await nextTurn();
    expect(groups.map((g) => g.n)).toEqual([COMMIT_INTERVAL_MIN_GROUP]);
    await Promise.all(first);
    // Five more sends, each in its own turn, after the first group committed.
    const later: Promise<unknown>[] = [];
    for (let i = 0; i < 5; i++) {
      later.push(s.send(req(100), 'c'));
      await nextTurn();
    }
    expect(groups).toHaveLength(1); // held for the interval
    await Promise.all(later);
    expect(groups.map((g) => g.n)).toEqual([COMMIT_INTERVAL_MIN_GROUP, 5]);
    expect(startedAt[1]! - startedAt[0]!).toBeGreaterThanOrEqual(INTERVAL - 2); // timers may fire up to 1 ms early
    // The group of 5 is below the bound: the next send goes at once.
    const t = performance.now();
    await s.send(req(100), 'c');
    expect(groups.map((g) => g.n)).toEqual([COMMIT_INTERVAL_MIN_GROUP, 5, 1]);
    expect(startedAt[2]! - t).toBeLessThan(INTERVAL / 2);
    await s.close();
  });

  it('a full group does not wait, and close() sends what the interval holds at once', async () => {
    const { store, groups, startedAt } = recordingStore();
    const s = service(store, INTERVAL);
    await Promise.all(Array.from({ length: COMMIT_INTERVAL_MIN_GROUP }, () => s.send(req(100), 'c')));
    const t = performance.now();
    await Promise.all(Array.from({ length: MAX_GROUP_COMMIT }, () => s.send(req(10), 'c')));
    expect(groups.map((g) => g.n)).toEqual([COMMIT_INTERVAL_MIN_GROUP, MAX_GROUP_COMMIT]);
    expect(startedAt[1]! - t).toBeLessThan(INTERVAL / 2);
    // Held by the interval (the last group was full), then the service closes.
    const held = s.send(req(100), 'c');
    await nextTurn();
    expect(groups).toHaveLength(2);
    const c0 = performance.now();
    await s.close();
    await held;
    expect(groups.map((g) => g.n)).toEqual([COMMIT_INTERVAL_MIN_GROUP, MAX_GROUP_COMMIT, 1]);
    expect(performance.now() - c0).toBeLessThan(INTERVAL / 2);
  });

  it('0 turns it off: under load a group starts as soon as a commit slot is free', async () => {
    const { store, groups, startedAt } = recordingStore();
    const s = service(store, 0);
    await Promise.all(Array.from({ length: COMMIT_INTERVAL_MIN_GROUP }, () => s.send(req(100), 'c')));
    const t = performance.now();
    await s.send(req(100), 'c');
    expect(groups.map((g) => g.n)).toEqual([COMMIT_INTERVAL_MIN_GROUP, 1]);
    expect(startedAt[1]! - t).toBeLessThan(INTERVAL / 2);
    await s.close();
  });
});

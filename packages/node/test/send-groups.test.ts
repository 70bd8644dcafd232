// SendService's group commit bounds (issue 12 §1): at most MAX_GROUP_COMMIT envelopes and
// MAX_GROUP_BYTES of payload per store.enqueue call — except that a batch request is never split —
// and every sender answered after its group committed.
import { describe, expect, it } from 'vitest';
import { EnvelopeClass, MAX_ENVELOPE_SIZE } from '@meshwhisper/protocol';
import type { SendRequest } from '@meshwhisper/protocol';
import { LocalDeliveryBus } from '../src/mailbox/bus.js';
import { MAX_GROUP_BYTES, MAX_GROUP_COMMIT, SendService } from '../src/mailbox/send.js';
import { DEFAULT_BUCKETS, RateLimiter } from '../src/rate-limit.js';
import type { EnqueueItem, EnqueueOutcome, NodeStore } from '../src/store/node-store.js';
import { ctx } from './helpers.js';

/** A store whose enqueue records each group (count, bytes) and commits it after a macrotask. */
function recordingStore(): { store: NodeStore; groups: { n: number; bytes: number }[] } {
  const groups: { n: number; bytes: number }[] = [];
  const store = {
    async enqueue(items: readonly EnqueueItem[]): Promise<EnqueueOutcome[]> {
      groups.push({ n: items.length, bytes: items.reduce((a, i) => a + i.payload.length, 0) });
      await new Promise((r) => setTimeout(r, 1));
      return items.map((item, k) => ({ ok: true, envelope: { seq: k + 1, id: item.id, payload: item.payload, receivedAt: item.receivedAt }, evicted: 0 }));
    },
  } as unknown as NodeStore;
  return { store, groups };
}

const generous = Object.fromEntries(Object.keys(DEFAULT_BUCKETS).map((b) => [b, { rate: 1e9, burst: 1e9 }]));
const req = (size: number): SendRequest =>
  ({ mailboxId: new Uint8Array(32).fill(1), payload: new Uint8Array(size), class: EnvelopeClass.DURABLE, deliveryToken: new Uint8Array(32).fill(2) }) as SendRequest;

describe('group commit bounds', () => {
  it('splits a burst by envelope count and by payload bytes, and answers every sender', async () => {
    const { store, groups } = recordingStore();
    const s = new SendService(ctx, store, new LocalDeliveryBus(), new RateLimiter({ buckets: generous }), { maxMessages: 1e9, maxBytes: 1e12, firstContactMaxMessages: 10 });
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
    const s = new SendService(ctx, store, new LocalDeliveryBus(), new RateLimiter({ buckets: generous }), { maxMessages: 1e9, maxBytes: 1e12, firstContactMaxMessages: 10 });
    const items = Array.from({ length: 40 }, () => req(MAX_ENVELOPE_SIZE)); // 10 MiB > MAX_GROUP_BYTES
    const out = await s.sendBatch(items, 'c');
    expect(out.filter((o) => !o.ok).map((o) => String((o as { error: unknown }).error))).toEqual([]);
    expect(groups).toEqual([{ n: 40, bytes: 40 * MAX_ENVELOPE_SIZE }]);
    await s.close();
  });
});

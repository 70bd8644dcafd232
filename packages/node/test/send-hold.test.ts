// SendService's hold for sends that went ahead (SendOptions.aheadHoldMs, config AHEAD_HOLD_MS): such a
// send waits in the queue for its device's ack instead of joining the next group commit; acked in
// time it is never written, otherwise it is written once its hold ends. A send that did not go ahead
// is never held, and takes every held send to its mailbox into its group in front of it, so the
// store still numbers each mailbox's envelopes in admission order. close() holds nothing. A unit
// test of the queue on a store that records each group; the end-to-end path is deliver-ahead.test.ts.
import { describe, expect, it } from 'vitest';
import { performance } from 'node:perf_hooks';
import type { FastEnvelope, SendRequest, SendResult } from '@meshwhisper/protocol';
import { EnvelopeClass } from '@meshwhisper/protocol';
import { hexKey } from '../src/hex.js';
import { AHEAD_NO_SESSION, AHEAD_SENT } from '../src/mailbox/hub.js';
import type { EnqueueItem, EnqueueOutcome, NodeStore } from '../src/store/node-store.js';
import { looseSendService } from './helpers.js';

/** A durable token-lane send to mailbox `box` (32 bytes of that value) whose payload names it: `label`. */
function req(box: number, label: string): SendRequest {
  return { mailboxId: new Uint8Array(32).fill(box), payload: new TextEncoder().encode(label), class: EnvelopeClass.DURABLE, deliveryToken: new Uint8Array(32).fill(2) } as SendRequest;
}

/**
 * A SendService holding ahead sends for `holdMs`, on a store that records each group (the labels,
 * in order, and when it arrived); mailboxes in `live` take their sends ahead (`offered`), others do not.
 */
function setup(holdMs: number) {
  const groups: string[][] = [];
  const groupAt: number[] = [];
  const store = {
    async enqueue(items: readonly EnqueueItem[]): Promise<EnqueueOutcome[]> {
      groups.push(items.map((i) => new TextDecoder().decode(i.payload)));
      groupAt.push(performance.now());
      return items.map((item, k) => ({ ok: true, envelope: { seq: k + 1, id: item.id, payload: item.payload, receivedAt: item.receivedAt }, evicted: 0 }));
    },
  } as unknown as NodeStore;
  const live = new Set<string>();
  const offered = new Map<string, FastEnvelope>();
  const s = looseSendService(
    store,
    {},
    { aheadHoldMs: holdMs },
    {
      ahead: (key, e) => {
        if (!live.has(key)) return AHEAD_NO_SESSION;
        offered.set(new TextDecoder().decode(e.payload), e);
        return AHEAD_SENT;
      },
      aheadDropped: () => undefined,
      tokenAccepted: () => undefined,
    },
  );
  const box = (n: number): string => hexKey(new Uint8Array(32).fill(n));
  return { s, groups, groupAt, live, offered, box };
}

const turns = async (n = 3): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

describe('SendService: sends that went ahead are held for their ack (aheadHoldMs)', () => {
  it('a send that went ahead and is acked within its hold is answered at the ack and never written; one that did not go ahead commits at once', async () => {
    const { s, groups, live, offered, box } = setup(10_000);
    live.add(box(1));
    let answered: SendResult | undefined;
    void s.send(req(1, 'a1'), 'c').then((r) => (answered = r));
    const b1 = s.send(req(2, 'b1'), 'c');
    await b1;
    await turns();
    expect(groups).toEqual([['b1']]); // a1 is held
    expect(answered).toBeUndefined();
    expect(s.backlog).toBe(1);
    expect(s.retractAcked(offered.get('a1')!)).toBe(true);
    await turns();
    expect(answered?.deliveredLive).toBe(true);
    expect(s.backlog).toBe(0);
    await s.close();
    expect(groups).toEqual([['b1']]);
  });

  it('unacknowledged, it is written when its hold ends and not before, then answered', async () => {
    const hold = 60;
    const { s, groups, groupAt, live, box } = setup(hold);
    live.add(box(1));
    const t0 = performance.now();
    const r = await s.send(req(1, 'a1'), 'c');
    expect(r.deliveredLive).toBe(true);
    expect(groups).toEqual([['a1']]);
    // A timer never fires early by more than its millisecond rounding.
    expect(groupAt[0]! - t0).toBeGreaterThanOrEqual(hold - 1);
    await s.close();
  });

  it('a send that did not go ahead takes the held sends to its mailbox into its group, in front of it, in their order', async () => {
    const { s, groups, live, box } = setup(10_000);
    live.add(box(1));
    const early = [s.send(req(1, 'a1'), 'c'), s.send(req(1, 'a2'), 'c')];
    await turns();
    expect(groups).toEqual([]);
    // The recipient disconnects: what comes now for it does not go ahead, and must be stored after a1 and a2.
    live.delete(box(1));
    const late = [s.send(req(2, 'b1'), 'c'), s.send(req(1, 'a3'), 'c'), s.send(req(2, 'b2'), 'c')];
    await Promise.all([...early, ...late]);
    expect(groups).toEqual([['b1', 'a1', 'a2', 'a3', 'b2']]);
    await s.close();
  });

  it('held sends stay in the queue in front of later ones and keep their order when a group passes them', async () => {
    const { s, groups, live, offered, box } = setup(10_000);
    live.add(box(1));
    const a = [s.send(req(1, 'a1'), 'c')];
    const b = [s.send(req(2, 'b1'), 'c')];
    await Promise.all(b);
    a.push(s.send(req(1, 'a2'), 'c'));
    b.push(s.send(req(2, 'b2'), 'c'));
    await Promise.all(b);
    expect(groups).toEqual([['b1'], ['b2']]);
    // a2 acked, a1 not: a1 is written at close, a2 never.
    expect(s.retractAcked(offered.get('a2')!)).toBe(true);
    await s.close();
    await Promise.all(a);
    expect(groups).toEqual([['b1'], ['b2'], ['a1']]);
  });

  it('a batch request is never held; a held send to one of its mailboxes goes in front of it, and the batch stays one group', async () => {
    const { s, groups, live, box } = setup(10_000);
    live.add(box(1));
    const single = s.send(req(1, 'a1'), 'c');
    await turns();
    const batch = await s.sendBatch([req(3, 'c1'), req(1, 'a2'), req(3, 'c2')], 'c');
    expect(batch.map((o) => o.ok)).toEqual([true, true, true]);
    expect((await single).deliveredLive).toBe(true);
    expect(groups).toEqual([['c1', 'a1', 'a2', 'c2']]);
    await s.close();
  });

  it('close() writes held sends at once instead of after their hold', async () => {
    const { s, groups, live, box } = setup(60_000);
    live.add(box(1));
    const r = s.send(req(1, 'a1'), 'c');
    await turns();
    expect(groups).toEqual([]);
    await s.close(); // a wait for the hold would time the test out
    expect((await r).deliveredLive).toBe(true);
    expect(groups).toEqual([['a1']]);
  });

  it('a queue holding only held sends waits on a timer: the event loop stays idle', async () => {
    const { s, groups, live, box } = setup(60_000);
    live.add(box(1));
    const r = Array.from({ length: 50 }, (_, i) => s.send(req(1, `a${i}`), 'c'));
    await turns();
    const before = performance.eventLoopUtilization();
    await new Promise((res) => setTimeout(res, 300));
    const elu = performance.eventLoopUtilization(before);
    // A flush rescheduled every turn would keep the loop busy (utilization near 1).
    expect(elu.utilization).toBeLessThan(0.5);
    expect(groups).toEqual([]);
    await s.close();
    await Promise.all(r);
    expect(groups).toEqual([Array.from({ length: 50 }, (_, i) => `a${i}`)]);
  });

  it('with a hold of 0 nothing is held', async () => {
    const { s, groups, live, box } = setup(0);
    live.add(box(1));
    await s.send(req(1, 'a1'), 'c');
    expect(groups).toEqual([['a1']]);
    await s.close();
  });
});

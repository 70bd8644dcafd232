// The receipt queue alone (receipts.ts), on a real storage with the clock and timers driven by
// hand: receipts wait a random delay in [min, max], coalesce per device and kind, and survive a
// close (the next queue on the same storage sends them).
import { describe, expect, it } from 'vitest';
import { toHex } from '@meshwhisper/crypto';
import { memoryStorage } from '../../src/storage/memory.js';
import type { ProtocolStorage } from '../../src/storage/types.js';
import { ReceiptQueue } from '../../src/client/receipts.js';
import type { ReceiptKindName } from '../../src/client/receipts.js';
import { makeLog } from '../../src/client/log.js';

interface Sent {
  at: number;
  mailbox: string;
  kind: ReceiptKindName;
  ids: string[];
}

/** A hand-driven clock and timer wheel. */
function manualTimers() {
  let now = 1_000_000;
  const timers = new Map<number, { at: number; fn: () => void }>();
  let next = 1;
  return {
    now: () => now,
    setTimer: (fn: () => void, ms: number) => {
      const id = next++;
      timers.set(id, { at: now + ms, fn });
      return id;
    },
    clearTimer: (h: unknown) => void timers.delete(h as number),
    pending: () => timers.size,
    /** Moves the clock to `to`, firing due timers in order (and letting their promises settle). */
    async advanceTo(to: number): Promise<void> {
      for (;;) {
        const due = [...timers.entries()].filter(([, t]) => t.at <= to).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        timers.delete(due[0]);
        now = Math.max(now, due[1].at);
        due[1].fn();
        for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
      }
      now = to;
    },
  };
}

function queue(storage: ProtocolStorage, t: ReturnType<typeof manualTimers>, sent: Sent[], random: () => number = Math.random, fail?: () => Error | undefined) {
  return new ReceiptQueue({
    storage,
    delay: { minDelayMs: 2000, maxDelayMs: 30_000 },
    random,
    now: t.now,
    setTimer: t.setTimer,
    clearTimer: t.clearTimer,
    log: makeLog(undefined),
    send: async (mailbox, kind, ids) => {
      const e = fail?.();
      if (e) throw e;
      sent.push({ at: t.now(), mailbox: toHex(mailbox), kind, ids: ids.map(toHex) });
    },
  });
}

const mb = (n: number) => new Uint8Array(32).fill(n);
const id = (n: number) => new Uint8Array(16).fill(n);

describe('ReceiptQueue', () => {
  it('nothing leaves before the minimum delay; everything by the maximum; the delay is random within', async () => {
    const draws: number[] = [];
    for (const r of [0, 0.5, 0.999999]) {
      const t = manualTimers();
      const sent: Sent[] = [];
      const q = queue(await memoryStorage(), t, sent, () => r);
      const start = t.now();
      await q.add(mb(1), 'delivered', [id(1)]);
      await t.advanceTo(start + 1999);
      expect(sent).toEqual([]);
      await t.advanceTo(start + 30_000);
      expect(sent).toHaveLength(1);
      draws.push(sent[0]!.at - start);
    }
    expect(draws).toEqual([2000, 2000 + Math.floor(0.5 * 28_001), 30_000]);
  });

  it('receipts to one device within the window go in one message; other devices and kinds separately', async () => {
    const t = manualTimers();
    const sent: Sent[] = [];
    const q = queue(await memoryStorage(), t, sent, () => 0.5);
    const start = t.now();
    await q.add(mb(1), 'delivered', [id(1)]);
    await t.advanceTo(start + 1000);
    await q.add(mb(1), 'delivered', [id(2), id(3)]);
    await q.add(mb(1), 'delivered', [id(2)]); // a redelivery: not twice
    await q.add(mb(2), 'delivered', [id(4)]);
    await q.add(mb(1), 'read', [id(1)]);
    await t.advanceTo(start + 60_000);
    const one = sent.filter((s) => s.mailbox === toHex(mb(1)) && s.kind === 'delivered');
    expect(one).toHaveLength(1);
    expect(one[0]!.ids).toEqual([id(1), id(2), id(3)].map(toHex));
    // The second one joined the first: it left when the first's delay was over, not 15 s after it came.
    expect(one[0]!.at).toBe(start + 2000 + Math.floor(0.5 * 28_001));
    expect(sent.filter((s) => s.mailbox === toHex(mb(2)))).toHaveLength(1);
    expect(sent.filter((s) => s.kind === 'read')).toHaveLength(1);
    expect(sent).toHaveLength(3);
  });

  it('nothing is lost across a close: the next queue on the same storage sends what was pending', async () => {
    const storage = await memoryStorage();
    const t = manualTimers();
    const sent: Sent[] = [];
    const q1 = queue(storage, t, sent, () => 0.5);
    const start = t.now();
    await q1.add(mb(1), 'delivered', [id(1), id(2)]);
    await q1.add(mb(3), 'read', [id(9)]);
    await t.advanceTo(start + 1000);
    await q1.close();
    expect(t.pending()).toBe(0);
    await t.advanceTo(start + 100_000);
    expect(sent).toEqual([]);

    const q2 = queue(storage, t, sent);
    await q2.start();
    await t.advanceTo(start + 100_001);
    expect(sent.map((s) => [s.kind, s.ids])).toEqual(
      expect.arrayContaining([
        ['delivered', [id(1), id(2)].map(toHex)],
        ['read', [id(9)].map(toHex)],
      ]),
    );
    expect(sent).toHaveLength(2);
    // Sent means gone: a third queue has nothing to send.
    const again: Sent[] = [];
    const q3 = queue(storage, t, again);
    await q3.start();
    await t.advanceTo(start + 500_000);
    expect(again).toEqual([]);
  });

  it('a receipt that could not be sealed stays queued and is tried again; one to a deleted device is dropped', async () => {
    const t = manualTimers();
    const sent: Sent[] = [];
    let failures = 1;
    const q = queue(await memoryStorage(), t, sent, () => 0, () => (failures-- > 0 ? new Error('storage busy') : undefined));
    const start = t.now();
    await q.add(mb(1), 'delivered', [id(1)]);
    await t.advanceTo(start + 2000);
    expect(sent).toEqual([]);
    await t.advanceTo(start + 10_000);
    expect(sent).toHaveLength(1);

    const gone = Object.assign(new Error('no such mailbox'), { nodeCode: 'MW_NOT_FOUND' });
    const sent2: Sent[] = [];
    const storage = await memoryStorage();
    const q2 = queue(storage, t, sent2, () => 0, () => gone);
    await q2.add(mb(5), 'delivered', [id(1)]);
    await t.advanceTo(t.now() + 60_000);
    expect(sent2).toEqual([]);
    expect(await storage.listItems('mw.receipt')).toEqual([]);
  });
});

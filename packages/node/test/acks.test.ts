import { describe, expect, it } from 'vitest';
import { AckCommitter, MAX_ACK_GROUP } from '../src/mailbox/acks.js';
import type { Store } from '../src/store/store.js';

/** A store stand-in that counts transactions; the real one is exercised by socket/durability tests. */
function countingStore(fail = false) {
  const calls: number[] = [];
  const store = {
    transact<T>(fn: (tx: { mailbox: { ack(m: Uint8Array, ids: Uint8Array[]): number } }) => T): T {
      if (fail) throw new Error('disk full');
      let acked = 0;
      const r = fn({ mailbox: { ack: (_m, ids) => ((acked += ids.length), ids.length) } });
      calls.push(acked);
      return r;
    },
  } as unknown as Store;
  return { store, calls };
}

describe('ack group commit', () => {
  it('commits every ack of one event-loop turn, from any connection, in one transaction, and answers after it', async () => {
    const { store, calls } = countingStore();
    const acks = new AckCommitter(store);
    const results: number[] = [];
    for (let i = 0; i < 50; i++) acks.add(new Uint8Array(32).fill(i % 2), [new Uint8Array(16), new Uint8Array(16)], (n) => results.push(n as number));
    expect(results).toEqual([]); // nothing answered before the commit
    await new Promise((r) => setImmediate(r));
    expect(calls).toEqual([100]);
    expect(results).toEqual(new Array(50).fill(2));
  });

  it('bounds a group and reports a failed commit to every waiter', async () => {
    const { store, calls } = countingStore();
    const acks = new AckCommitter(store);
    for (let i = 0; i < MAX_ACK_GROUP + 1; i++) acks.add(new Uint8Array(32), [new Uint8Array(16)], () => undefined);
    await new Promise((r) => setImmediate(r));
    expect(calls).toEqual([MAX_ACK_GROUP, 1]);
    const failing = new AckCommitter(countingStore(true).store);
    const errors: unknown[] = [];
    failing.add(new Uint8Array(32), [new Uint8Array(16)], (n) => errors.push(n));
    failing.flush();
    expect(errors[0]).toBeInstanceOf(Error);
  });
});

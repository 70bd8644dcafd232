// Ack group commit against a real SQLite store: acks of one event-loop turn share one transaction.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ACK_CARRY_MAX_IDS, ACK_CARRY_MS, AckCommitter, MAX_ACK_GROUP } from '../src/mailbox/acks.js';
import type { AckRequest } from '../src/store/node-store.js';
import { SqliteNodeStore } from '../src/store/sqlite-store.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0)) await f();
});

/** A real store whose ack() records how many requests each transaction carried. */
function countingStore(fail = false) {
  const dir = mkdtempSync(join(tmpdir(), 'mw-acks-'));
  const store = new SqliteNodeStore(join(dir, 'db.sqlite3'), { reserveBytes: 0 });
  cleanup.push(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const calls: number[] = [];
  const ack = async (requests: readonly AckRequest[]): Promise<number[]> => {
    if (fail) await store.close(); // every later call fails as a real closed store does
    calls.push(requests.reduce((n, r) => n + r.ids.length, 0));
    return store.ack(requests);
  };
  return { store: { ack }, calls };
}

describe('ack group commit', () => {
  it('commits every ack of one event-loop turn, from any connection, in one transaction, and answers after it', async () => {
    const { store, calls } = countingStore();
    const acks = new AckCommitter(store);
    const results: number[] = [];
    for (let i = 0; i < 50; i++) acks.add(new Uint8Array(32).fill(i % 2), [new Uint8Array(16), new Uint8Array(16)], undefined, (n) => results.push(n as number));
    expect(results).toEqual([]); // nothing answered before the commit
    await acks.flush();
    expect(calls).toEqual([100]);
    expect(results).toEqual(new Array(50).fill(0)); // nothing stored: nothing deleted
  });

  it('bounds a group and reports a failed commit to every waiter', async () => {
    const { store, calls } = countingStore();
    const acks = new AckCommitter(store);
    for (let i = 0; i < MAX_ACK_GROUP + 1; i++) acks.add(new Uint8Array(32), [new Uint8Array(16)], undefined, () => undefined);
    await new Promise((r) => setImmediate(r));
    await acks.flush();
    expect(calls).toEqual([MAX_ACK_GROUP, 1]);
    const failing = new AckCommitter(countingStore(true).store);
    const errors: unknown[] = [];
    failing.add(new Uint8Array(32), [new Uint8Array(16)], undefined, (n) => errors.push(n));
    await failing.flush();
    expect(errors[0]).toBeInstanceOf(Error);
  });

  it('flush() waits for the commits started before it, not for later ones', async () => {
    // A store whose acks finish only when the test says so, in any order.
    const gates: (() => void)[] = [];
    const store = { ack: (reqs: readonly AckRequest[]) => new Promise<number[]>((resolve) => gates.push(() => resolve(reqs.map(() => 1)))) };
    const acks = new AckCommitter(store);
    const done: string[] = [];
    acks.add(new Uint8Array(32), [new Uint8Array(16)], undefined, () => done.push('a'));
    await new Promise((r) => setImmediate(r)); // commit 1 running
    acks.add(new Uint8Array(32), [new Uint8Array(16)], undefined, () => done.push('b'));
    let flushed = false;
    const f = acks.flush().then(() => (flushed = true)); // commits 1 and 2 running
    acks.add(new Uint8Array(32), [new Uint8Array(16)], undefined, () => done.push('c'));
    await new Promise((r) => setImmediate(r)); // commit 3 running, started after the flush
    expect(gates).toHaveLength(3);
    gates[1]!();
    await new Promise((r) => setImmediate(r));
    expect(flushed).toBe(false); // commit 1 still runs
    gates[0]!();
    await f;
    expect(done).toEqual(['b', 'a']); // every callback of the awaited commits ran first; commit 3 not awaited
    expect(await Promise.race([acks.flush().then(() => 'flushed'), new Promise((r) => setTimeout(() => r('waiting'), 20))])).toBe('waiting');
    gates[2]!();
    await acks.flush();
    expect(done).toEqual(['b', 'a', 'c']);
    await new AckCommitter(store).flush(); // nothing running: at once
  });

  it('while sends flow, a small group waits for the next send group and goes just before it', async () => {
    const { store, calls } = countingStore();
    const acks = new AckCommitter(store, { carried: true });
    acks.carry(); // a send group went to the store: sends flow
    const results: number[] = [];
    for (let i = 0; i < 3; i++) acks.add(new Uint8Array(32), [new Uint8Array(16)], undefined, (n) => results.push(n as number));
    await new Promise((r) => setImmediate(r));
    expect(calls).toEqual([]); // waiting for a carrier
    acks.carry(); // SendService hands a group to the store
    expect(calls).toEqual([3]); // handed over in the same turn, before the send group
    await acks.flush();
    expect(results).toEqual([0, 0, 0]);
    acks.carry(); // nothing queued: nothing committed
    expect(calls).toEqual([3]);
    // The carried group's timer is gone: a new group waits its own ACK_CARRY_MS, not the rest of the old one.
    acks.add(new Uint8Array(32), [new Uint8Array(16)], undefined, () => undefined);
    await new Promise((r) => setImmediate(r));
    expect(calls).toEqual([3]);
    await acks.flush();
    expect(calls).toEqual([3, 1]);
  });

  it('without a carrier within ACK_CARRY_MS the group commits on its own', async () => {
    const { store, calls } = countingStore();
    const acks = new AckCommitter(store, { carried: true });
    acks.carry(); // sends flow
    const results: number[] = [];
    acks.add(new Uint8Array(32), [new Uint8Array(16)], undefined, (n) => results.push(n as number));
    const t0 = performance.now();
    while (calls.length === 0 && performance.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 1));
    expect(calls).toEqual([1]);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(ACK_CARRY_MS - 1); // timers may fire up to 1 ms early on the ms grid
    await acks.flush();
    expect(results).toEqual([0]);
  });

  it('without sends (a drain, an idle node), or once large, a group does not wait', async () => {
    const idle = countingStore();
    const a = new AckCommitter(idle.store, { carried: true }); // no send group has gone to the store
    a.add(new Uint8Array(32), [new Uint8Array(16)], undefined, () => undefined);
    await new Promise((r) => setImmediate(r));
    expect(idle.calls).toEqual([1]);
    await a.flush();
    const busy = countingStore();
    const b = new AckCommitter(busy.store, { carried: true });
    b.carry(); // sends flow
    b.add(new Uint8Array(32), [new Uint8Array(16)], undefined, () => undefined); // waits for a carrier…
    b.add(new Uint8Array(32), Array.from({ length: ACK_CARRY_MAX_IDS }, () => new Uint8Array(16)), undefined, () => undefined); // …until the group is large
    await new Promise((r) => setImmediate(r));
    expect(busy.calls).toEqual([ACK_CARRY_MAX_IDS + 1]);
    await b.flush();
    // The default (a store that does not commit acks with sends, e.g. PostgreSQL): never waits.
    const pg = countingStore();
    const c = new AckCommitter(pg.store);
    c.carry();
    c.add(new Uint8Array(32), [new Uint8Array(16)], undefined, () => undefined);
    await new Promise((r) => setImmediate(r));
    expect(pg.calls).toEqual([1]);
    await c.flush();
  });

  it('with a send commit interval, a small group waits that long (+1 ms) for a carrier, and sends count as flowing for twice it', async () => {
    const INTERVAL = 60;
    const { store, calls } = countingStore();
    const acks = new AckCommitter(store, { carried: true, commitIntervalMs: INTERVAL });
    acks.carry(); // a send group went to the store
    await new Promise((r) => setTimeout(r, 30)); // longer than SENDS_FLOWING_MS, shorter than 2 × INTERVAL: still flowing
    const t0 = performance.now();
    acks.add(new Uint8Array(32), [new Uint8Array(16)], undefined, () => undefined);
    await new Promise((r) => setTimeout(r, ACK_CARRY_MS + 10));
    expect(calls).toEqual([]); // past ACK_CARRY_MS, still waiting for the next send group
    while (calls.length === 0 && performance.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 1));
    expect(calls).toEqual([1]); // no carrier came: it went on its own…
    expect(performance.now() - t0).toBeGreaterThanOrEqual(INTERVAL); // …after the interval + 1 ms (timers may fire up to 1 ms early)
    await acks.flush();
  });
});

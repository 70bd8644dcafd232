/**
 * How long a write on the SQLite store's MAIN connection holds the event loop — setDeliveryTokens,
 * which a device sends after each login; registrations, prekey claims and the sweep's deletions
 * take the same path — with the writer thread idle, then busy with sends and acks (two pumps of
 * 10-envelope groups to 200 mailboxes, each acked right after: about what ~10,000 msgs/s gives it).
 * The main connection's write does not wait for SQLite's write lock on the event loop (it asks the
 * writer thread to hold back, and retries) and does not fsync there: the writer thread fsyncs the
 * WAL before the call resolves (sqlite-store.ts #tx). "Held the loop" is the call's synchronous part.
 *
 *   cd bench/node && node --import tsx ./main-write.ts
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { SqliteNodeStore } from '../../packages/node/src/store/sqlite-store.js';
import type { EnqueueItem } from '../../packages/node/src/store/node-store.js';
import { loopDelay } from '../../packages/node/src/latency-trace.js';
const LIMITS = { maxMessages: 1_000_000, maxBytes: 1 << 30, firstContactMaxMessages: 1000 };
const dir = mkdtempSync(join(tmpdir(), 'mw-main-write-'));
const store = new SqliteNodeStore(join(dir, 'db.sqlite3'), { reserveBytes: 0 });
const boxes = Array.from({ length: 200 }, () => ({ mailbox: new Uint8Array(randomBytes(32)), token: new Uint8Array(randomBytes(32)) }));
for (const b of boxes) {
  const accountKey = new Uint8Array(randomBytes(32));
  await store.publishDeviceList({ accountKey, epoch: 1, encoded: new Uint8Array(60), expectedEpoch: undefined, listedMailboxes: [b.mailbox], now: Date.now() });
  await store.publishKeys({ mailbox: b.mailbox, accountKey, certificate: new Uint8Array(40), issuedAt: 1, signedPreKey: undefined, lastResortKemPreKey: undefined, oneTimePreKeys: [], kemPreKeys: [], now: Date.now(), deviceListEpoch: 1 });
  await store.setDeliveryTokens(b.mailbox, [b.token]);
}
const th = (t: Uint8Array) => new Uint8Array(createHash('sha256').update(t).digest());
let load = false;
async function pump(): Promise<void> {
  // ~two group commits in flight, 10 sends each, acked right after: the writer busy as at ~10k/s.
  while (load) {
    const items: EnqueueItem[] = Array.from({ length: 10 }, () => { const b = boxes[Math.floor(Math.random() * boxes.length)]!; return { id: new Uint8Array(randomBytes(16)), mailbox: b.mailbox, payload: new Uint8Array(1024), receivedAt: Date.now(), tokenHash: th(b.token) }; });
    const res = await store.enqueue(items, LIMITS);
    const byBox = new Map<Uint8Array, { ids: Uint8Array[]; seqs: number[] }>();
    res.forEach((r, i) => { if (r.ok) { const m = items[i]!.mailbox; const e = byBox.get(m) ?? { ids: [], seqs: [] }; e.ids.push(r.envelope.id); e.seqs.push(r.envelope.seq); byBox.set(m, e); } });
    void store.ack([...byBox].map(([mailbox, e]) => ({ mailbox, ids: e.ids, seqs: e.seqs })));
  }
}
/**
 * For `ms`: the event loop's delay (a 1 ms timer's lateness) while the writer pumps run, with or
 * without a main-connection write every 5 ms; and for the writes, how long each call held the
 * loop before it returned (its synchronous part) and how long until it resolved.
 */
async function measure(label: string, writes: boolean, ms = 3000): Promise<void> {
  const held: number[] = [];
  const total: number[] = [];
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const end = performance.now() + ms;
  for (let i = 0; performance.now() < end; i++) {
    if (writes) {
      const b = boxes[i % boxes.length]!;
      const t0 = performance.now();
      const p = store.setDeliveryTokens(b.mailbox, [b.token]);
      held.push(performance.now() - t0);
      await p;
      total.push(performance.now() - t0);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  h.disable();
  const q = (a: number[], f: number): string => [...a].sort((x, y) => x - y)[Math.floor(f * (a.length - 1))]!.toFixed(2);
  const d = loopDelay(h, 1);
  const lag = `event-loop delay p50 ${d.p50.toFixed(2)} / p99 ${d.p99.toFixed(2)} / max ${d.max.toFixed(2)} ms`;
  console.log(writes ? `${label}: ${held.length} writes; call held the loop p50 ${q(held, 0.5)} / p99 ${q(held, 0.99)} / max ${q(held, 1)} ms, resolved after p50 ${q(total, 0.5)} / p99 ${q(total, 0.99)} ms; ${lag}` : `${label}: ${lag}`);
}
await measure('writer idle, main writes', true);
load = true;
const a = pump();
const b2 = pump();
await new Promise((r) => setTimeout(r, 500));
await measure('writer busy, no main writes', false);
await measure('writer busy, main writes', true);
await measure('writer busy, no main writes', false);
load = false;
await a;
await b2;
await store.close();
rmSync(dir, { recursive: true, force: true });

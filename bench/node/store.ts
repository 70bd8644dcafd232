/**
 * The SQLite store's writer alone, without sockets (issue 12 §1): rounds of G sends to random
 * mailboxes of DEVICES registered devices (one `enqueue` call), then the acks of the previous
 * round (one `ack` call), as the node's group commit would issue them at saturation. Reports, per
 * envelope (sent + acked): CPU of the process's threads other than the main one (the writer
 * thread, plus V8/libuv helpers), bytes written by syscalls (`wchar`, /proc/self/io) and fsyncs —
 * figures that do not depend on how loaded the machine is, unlike msgs/s.
 *
 *   cd bench/node && node --import tsx ./store.ts            (GROUPS=10,100,500 ROUNDS=… DEVICES=…)
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteNodeStore } from '../../packages/node/src/store/sqlite-store.js';
import type { EnqueueItem, StoredEnvelope } from '../../packages/node/src/store/node-store.js';

const DEVICES = Number(process.env['DEVICES'] ?? 1000);
// (not GROUPS: bash sets that variable to the user's group ids)
const GROUPS = (process.env['GROUP_SIZES'] ?? '10,100,500').split(',').map(Number);
/** Envelopes stored and not yet acked (as under live load: 2,000 in flight in bench/node's closed loop). */
const IN_FLIGHT = Number(process.env['IN_FLIGHT'] ?? 0);
const ENVELOPES = Number(process.env['ENVELOPES'] ?? 20_000);
const LIMITS = { maxMessages: 1_000_000, maxBytes: 1 << 30, firstContactMaxMessages: 1000 };

const CLK_TCK = 100;
function threadsCpu(): { main: number; others: number } {
  let main = 0;
  let others = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const s = (Number(f[11]) + Number(f[12])) / CLK_TCK;
      if (Number(tid) === process.pid) main += s;
      else others += s;
    } catch {
      /* thread gone */
    }
  }
  return { main, others };
}
function io(): { wchar: number; syscw: number } {
  const t = readFileSync('/proc/self/io', 'utf8');
  return { wchar: Number(/wchar: (\d+)/.exec(t)![1]), syscw: Number(/syscw: (\d+)/.exec(t)![1]) };
}

/** A device of its own account: the account's device list (epoch 1) names it, then its keys. */
async function register(store: SqliteNodeStore, mailbox: Uint8Array): Promise<void> {
  const accountKey = new Uint8Array(randomBytes(32));
  await store.publishDeviceList({ accountKey, epoch: 1, encoded: new Uint8Array(60), expectedEpoch: undefined, listedMailboxes: [mailbox], now: Date.now() });
  await store.publishKeys({ mailbox, accountKey, certificate: new Uint8Array(40), issuedAt: 1, signedPreKey: undefined, lastResortKemPreKey: undefined, oneTimePreKeys: [], kemPreKeys: [], now: Date.now(), deviceListEpoch: 1 });
}

async function run(group: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mw-store-bench-'));
  const store = new SqliteNodeStore(join(dir, 'db.sqlite3'), { reserveBytes: 0 });
  try {
    const boxes = Array.from({ length: DEVICES }, () => ({ mailbox: new Uint8Array(randomBytes(32)), token: new Uint8Array(randomBytes(32)) }));
    for (const b of boxes) {
      await register(store, b.mailbox);
      await store.setDeliveryTokens(b.mailbox, [b.token]);
    }
    const payload = new Uint8Array(randomBytes(1024));
    const round = async (acks: { mailbox: Uint8Array; e: StoredEnvelope }[]): Promise<{ mailbox: Uint8Array; e: StoredEnvelope }[]> => {
      const items: EnqueueItem[] = Array.from({ length: group }, () => {
        const b = boxes[Math.floor(Math.random() * DEVICES)]!;
        return { id: new Uint8Array(randomBytes(16)), mailbox: b.mailbox, payload, receivedAt: Date.now(), tokenHash: b.token };
      });
      // Sends and the previous round's acks go out together, as under load.
      const [out] = await Promise.all([store.enqueue(items, LIMITS), acks.length ? store.ack(acks.map((a) => ({ mailbox: a.mailbox, ids: [a.e.id], seqs: [a.e.seq] }))) : Promise.resolve([])]);
      return out.map((o, i) => {
        if (!o.ok) throw new Error(o.reason);
        return { mailbox: items[i]!.mailbox, e: o.envelope };
      });
    };
    // Acks trail the sends by IN_FLIGHT envelopes (at least one round).
    const queue: { mailbox: Uint8Array; e: StoredEnvelope }[] = [];
    const step = async (): Promise<void> => {
      const acks = queue.length >= Math.max(group, IN_FLIGHT) ? queue.splice(0, group) : [];
      queue.push(...(await round(acks)));
    };
    for (let i = 0; i < Math.max(2, Math.ceil(IN_FLIGHT / group) + 1); i++) await step(); // warm-up
    const rounds = Math.max(1, Math.round(ENVELOPES / group));
    const c0 = threadsCpu();
    const io0 = io();
    const t0 = performance.now();
    for (let i = 0; i < rounds; i++) await step();
    const ms = performance.now() - t0;
    const c1 = threadsCpu();
    const io1 = io();
    const n = rounds * group;
    const us = (s: number): string => ((s * 1e6) / n).toFixed(1);
    console.log(
      `group ${String(group).padStart(4)}: ${n} envelopes sent + acked; per envelope: writer & other threads ${us(c1.others - c0.others)} µs CPU, main thread ${us(c1.main - c0.main)} µs, ` +
        `${((io1.wchar - io0.wchar) / n / 1024).toFixed(1)} KiB written, ${((io1.syscw - io0.syscw) / n).toFixed(2)} write syscalls; ${((n / ms) * 1000).toFixed(0)} envelopes/s (wall, load-dependent)`,
    );
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One mailbox: DRAIN envelopes enqueued in groups of 500, then fetched and acked 930 at a time (a drain). */
async function drain(total: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mw-store-bench-'));
  const store = new SqliteNodeStore(join(dir, 'db.sqlite3'), { reserveBytes: 0 });
  try {
    const mailbox = new Uint8Array(randomBytes(32));
    const token = new Uint8Array(randomBytes(32));
    await register(store, mailbox);
    await store.setDeliveryTokens(mailbox, [token]);
    const payload = new Uint8Array(randomBytes(1024));
    let c0 = threadsCpu();
    let io0 = io();
    let t0 = performance.now();
    for (let i = 0; i < total; i += 500) {
      await store.enqueue(Array.from({ length: Math.min(500, total - i) }, () => ({ id: new Uint8Array(randomBytes(16)), mailbox, payload, receivedAt: Date.now(), tokenHash: token })), LIMITS);
    }
    const report = (what: string): void => {
      const c1 = threadsCpu();
      const io1 = io();
      const us = (x: number): string => ((x * 1e6) / total).toFixed(1);
      console.log(`${what} ${total} (one mailbox): per envelope writer & other threads ${us(c1.others - c0.others)} µs CPU, main ${us(c1.main - c0.main)} µs, ${((io1.wchar - io0.wchar) / total / 1024).toFixed(1)} KiB written; ${(performance.now() - t0).toFixed(0)} ms wall (load-dependent)`);
      c0 = c1;
      io0 = io1;
      t0 = performance.now();
    };
    report('enqueue');
    let after = 0;
    for (;;) {
      const batch = await store.fetch(mailbox, after, 930, 960 * 1024);
      if (batch.length === 0) break;
      after = batch[batch.length - 1]!.seq;
      await store.ack([{ mailbox, ids: batch.map((e) => e.id), seqs: batch.map((e) => e.seq) }]); // as a device connection acks (a build before AckRequest.seqs ignores them)
    }
    report('fetch + ack');
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`store writer bench: ${DEVICES} mailboxes, 1 KiB envelopes, ${IN_FLIGHT} in flight, machine load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
if (process.env['DRAIN']) await drain(Number(process.env['DRAIN']));
else for (const g of GROUPS) await run(g);

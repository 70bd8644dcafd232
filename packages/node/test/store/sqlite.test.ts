// The SQLite NodeStore: the conformance suite on real files, plus what only SQLite has — pragmas,
// migrations, the raw files.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { PAGE_SIZE, REQUIRED_PRAGMAS, openDatabase, pragmasInForce, walSizeLimit } from '../../src/store/db.js';
import { MAIN_CONNECTION_SYNCHRONOUS, SqliteNodeStore } from '../../src/store/sqlite-store.js';
import { storeConformance } from './conformance.js';
import type { EnqueueItem } from '../../src/store/node-store.js';

const FILE = 'db.sqlite3';

storeConformance({
  name: 'SQLite',
  fresh: async () => mkdtempSync(join(tmpdir(), 'mw-store-')),
  open: async (dir, { now }) => new SqliteNodeStore(join(dir, FILE), { now, reserveBytes: 64 * 1024 }),
  destroy: async (dir) => rmSync(dir, { recursive: true, force: true }),
});

/**
 * A device with mailbox fill(n), delivery token fill(n + 1), listed by its account (key fill(n + 2)).
 * Fills must differ by at least 3 between devices of one store.
 */
async function addDevice(s: SqliteNodeStore, n: number): Promise<{ mailbox: Uint8Array; token: Uint8Array }> {
  const mailbox = new Uint8Array(32).fill(n);
  const token = new Uint8Array(32).fill(n + 1);
  const accountKey = new Uint8Array(32).fill(n + 2);
  await s.publishDeviceList({ accountKey, epoch: 1, encoded: new Uint8Array(60), expectedEpoch: undefined, listedMailboxes: [mailbox], now: 1 });
  await s.publishKeys({ mailbox, accountKey, certificate: new Uint8Array(40), issuedAt: 1, signedPreKey: undefined, lastResortKemPreKey: undefined, oneTimePreKeys: [], kemPreKeys: [], now: 1, deviceListEpoch: 1 });
  await s.setDeliveryTokens(mailbox, [token]);
  return { mailbox, token };
}

describe('SQLite specifics', () => {
  const tmp = (): string => mkdtempSync(join(tmpdir(), 'mw-store-'));

  it('has WAL, synchronous=FULL (NORMAL + a writer-thread fsync on the main connection), secure_delete, foreign keys and in-memory temp storage in force, also after reopening', async () => {
    const dir = tmp();
    try {
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0 });
      // The main connection's commits are fsynced by the writer thread (synchronous=NORMAL here).
      expect(pragmasInForce(s.database)).toEqual({ ...REQUIRED_PRAGMAS, synchronous: MAIN_CONNECTION_SYNCHRONOUS });
      expect(s.database.pragma('page_size', { simple: true })).toBe(PAGE_SIZE); // a new database: 1 KiB envelopes fit a leaf
      await s.close();
      const again = openDatabase(join(dir, FILE));
      expect(pragmasInForce(again)).toEqual(REQUIRED_PRAGMAS);
      expect(again.pragma('user_version', { simple: true })).toBe(MIGRATIONS.at(-1)!.version);
      expect(again.pragma('integrity_check', { simple: true })).toBe('ok');
      again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.runIf(existsSync('/proc/thread-self'))('the writer thread raises its own nice value by writerNice (STORE_WRITER_NICE), and only its own', async () => {
    const base = getPriority(0); // this thread's nice value (getpriority of the calling thread on Linux)
    const threadNices = (): number[] =>
      readdirSync('/proc/self/task').flatMap((t) => {
        try {
          const stat = readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
          return [Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])]; // field 19: nice
        } catch {
          return []; // the thread ended meanwhile
        }
      });
    const dir = tmp();
    try {
      for (const by of [10, 0]) {
        const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0, writerNice: by });
        for (let i = 0; i < 200 && s.writerNice === undefined; i++) await new Promise((r) => setTimeout(r, 10));
        expect(s.writerNice).toBe(Math.min(19, base + by));
        if (by > 0) expect(threadNices().filter((n) => n === Math.min(19, base + by))).toHaveLength(1);
        expect(getPriority(0)).toBe(base);
        await s.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('main-connection writes resolve after a WAL fsync by the writer thread; with the thread dead, the event loop fsyncs', async () => {
    // The order "fsync, then answer" is checked from outside the process in fsync-before-answer.test.ts.
    const dir = tmp();
    try {
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0 });
      const a = await addDevice(s, 1);
      s.crashWriterForTest();
      await expect.poll(async () => await s.health(), { timeout: 10_000 }).toEqual({ writable: false, reason: 'writer-failed' });
      // The writer is down (it restarts later): a write on the main connection still commits and is synced.
      const b = await addDevice(s, 4);
      await s.setDeliveryTokens(a.mailbox, [new Uint8Array(32).fill(9)]);
      const again = new Database(join(dir, FILE), { readonly: true });
      const tokens = (m: Uint8Array): number => (again.prepare('SELECT count(*) AS n FROM delivery_tokens WHERE mailbox = ?').get(m) as { n: number }).n;
      expect([tokens(a.mailbox), tokens(b.mailbox)]).toEqual([1, 1]);
      again.close();
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a database from a newer node', () => {
    const dir = tmp();
    try {
      const db = openDatabase(join(dir, FILE));
      db.pragma('user_version = 99');
      db.close();
      expect(() => openDatabase(join(dir, FILE))).toThrow(/newer than this node/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('migration 4 renumbers stored envelopes per mailbox, keeps their order, and leaves no global counter', async () => {
    const dir = tmp();
    try {
      const db = openDatabase(join(dir, FILE), { migrations: MIGRATIONS.slice(0, 3) });
      const insert = db.prepare('INSERT INTO messages (id, mailbox, payload, received_at, with_token) VALUES (?, ?, ?, ?, 1)');
      const a = Buffer.alloc(32, 1);
      const b = Buffer.alloc(32, 2);
      for (let i = 0; i < 6; i++) insert.run(Buffer.alloc(16, i), i % 3 === 0 ? b : a, Buffer.from([i]), i);
      db.prepare('INSERT INTO mailbox_stats (mailbox, messages, bytes) VALUES (?, 4, 4), (?, 2, 2)').run(a, b);
      db.prepare("INSERT INTO media (id, owner, size, created_at, expires_at) VALUES ('m', ?, 5, 1, 2)").run(a);
      db.close();
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0 });
      expect((await s.fetch(a, 0, 10, 1e9)).map((e) => [e.seq, e.payload[0]])).toEqual([[1, 1], [2, 2], [3, 4], [4, 5]]);
      expect((await s.fetch(b, 0, 10, 1e9)).map((e) => [e.seq, e.payload[0]])).toEqual([[1, 0], [2, 3]]);
      expect(s.database.prepare('SELECT count(*) AS n FROM sqlite_sequence').get()).toEqual({ n: 0 });
      const ddl = (s.database.prepare("SELECT group_concat(sql, ' ') AS s FROM sqlite_master").get() as { s: string }).s;
      expect(ddl).not.toMatch(/AUTOINCREMENT/i);
      expect(ddl).not.toMatch(/owner BLOB/); // media names no device any more
      expect(await s.media('m')).toEqual({ id: 'm', size: 5, expiresAt: 2 });
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('migration 9 moves stored envelopes into slots: same mailboxes, seqs, ids, payloads and lanes, still delivered in order', async () => {
    const dir = tmp();
    try {
      const db = openDatabase(join(dir, FILE), { migrations: MIGRATIONS.slice(0, 8) });
      const insert = db.prepare('INSERT INTO messages (mailbox, seq, id, payload, received_at, with_token) VALUES (?, ?, ?, ?, ?, ?)');
      const a = Buffer.alloc(32, 1);
      const b = Buffer.alloc(32, 2);
      for (let i = 1; i <= 5; i++) insert.run(i % 2 ? a : b, i, Buffer.alloc(16, i), Buffer.from([i]), 1000 + i, i === 3 ? 0 : 1);
      db.close();
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0 });
      expect((await s.fetch(a, 0, 10, 1e9)).map((e) => [e.seq, e.id[0], e.payload[0], e.receivedAt])).toEqual([[1, 1, 1, 1001], [3, 3, 3, 1003], [5, 5, 5, 1005]]);
      expect((await s.fetch(b, 0, 10, 1e9)).map((e) => [e.seq, e.payload[0]])).toEqual([[2, 2], [4, 4]]);
      const rows = s.database.prepare('SELECT slot, seq, with_token FROM messages ORDER BY slot').all();
      expect(rows).toEqual([
        { slot: 1, seq: 1, with_token: 1 },
        { slot: 2, seq: 3, with_token: 0 },
        { slot: 3, seq: 5, with_token: 1 },
        { slot: 4, seq: 2, with_token: 1 },
        { slot: 5, seq: 4, with_token: 1 },
      ]);
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a sweep that finds nothing to expire takes no write lock (it would wait on the event loop for the writer thread)', async () => {
    const dir = tmp();
    try {
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0 });
      const { mailbox, token } = await addDevice(s, 3);
      const limits = { maxMessages: 100, maxBytes: 1e6, firstContactMaxMessages: 10 };
      await s.enqueue([{ id: new Uint8Array(16).fill(1), mailbox, payload: new Uint8Array([1]), receivedAt: 5000, tokenHash: token }], limits);
      // Another connection holds the write lock, as the writer thread does during each of its commits.
      const other = new Database(join(dir, FILE));
      other.pragma('busy_timeout = 0');
      other.prepare('BEGIN IMMEDIATE').run();
      try {
        const t0 = performance.now();
        expect(await s.expireEnvelopes(4000, 1000)).toEqual({ envelopes: 0, mailboxes: 0 });
        expect(await s.expireMedia(4000, 0, 1000)).toEqual([]);
        expect(performance.now() - t0).toBeLessThan(1000); // with a write transaction: busy_timeout (5 s), then SQLITE_BUSY
      } finally {
        other.prepare('ROLLBACK').run();
        other.close();
      }
      // With something to expire it still expires (the write path, lock free again).
      expect(await s.expireEnvelopes(6000, 1000)).toEqual({ envelopes: 1, mailboxes: 1 });
      expect(await s.fetch(mailbox, 0, 10, 1e9)).toEqual([]);
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a main-connection write that finds the write lock taken waits without stopping the event loop, and writes keep their order', async () => {
    const dir = tmp();
    try {
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0 });
      const { mailbox } = await addDevice(s, 3);
      const tokens = (): string[] => (s.database.prepare('SELECT token_hash FROM delivery_tokens WHERE mailbox = ?').pluck().all(mailbox) as Buffer[]).map((b) => b.toString('hex'));
      const a = new Uint8Array(32).fill(0xaa);
      const b = new Uint8Array(32).fill(0xbb);
      // Another connection holds the write lock for 400 ms (as the writer thread does for each commit, for less).
      const other = new Database(join(dir, FILE));
      other.prepare('BEGIN IMMEDIATE').run();
      let longestGap = 0;
      let last = performance.now();
      const ticker = setInterval(() => {
        const t = performance.now();
        longestGap = Math.max(longestGap, t - last);
        last = t;
      }, 5);
      const t0 = performance.now();
      setTimeout(() => {
        other.prepare('ROLLBACK').run();
        other.close();
      }, 400);
      try {
        // Two updates of one device's tokens, not awaited in between: the later one must win.
        const first = s.setDeliveryTokens(mailbox, [a]);
        const second = s.setDeliveryTokens(mailbox, [b]);
        expect(performance.now() - t0).toBeLessThan(100); // neither call held the event loop
        await Promise.all([first, second]);
        expect(performance.now() - t0).toBeGreaterThanOrEqual(350); // they waited for the lock
      } finally {
        clearInterval(ticker);
      }
      expect(tokens()).toEqual([Buffer.from(b).toString('hex')]);
      // The event loop ran all along (with SQLite's busy handler it stopped for the whole 400 ms).
      expect(longestGap).toBeLessThan(150);
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a main-connection write gets the lock while the writer thread commits back to back', async () => {
    const dir = tmp();
    try {
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0 });
      const boxes = await Promise.all([3, 6, 9, 12].map((n) => addDevice(s, n)));
      const limits = { maxMessages: 1e6, maxBytes: 1e9, firstContactMaxMessages: 10 };
      let running = true;
      let sent = 0;
      // Two pumps keep the writer's queue never empty: a group commit starts as soon as one ends.
      const pump = async (): Promise<void> => {
        for (let i = 0; running; i++) {
          const { mailbox, token } = boxes[i % boxes.length]!;
          const items = Array.from({ length: 20 }, (): EnqueueItem => ({ id: new Uint8Array(randomBytes(16)), mailbox, payload: new Uint8Array(512), receivedAt: 1, tokenHash: token }));
          const out = await s.enqueue(items, limits);
          sent += out.filter((o) => o.ok).length;
        }
      };
      const pumps = [pump(), pump()];
      // The writer is committing back to back before the main connection writes…
      await expect.poll(() => sent, { timeout: 10_000 }).toBeGreaterThan(200);
      const waits: number[] = [];
      for (let i = 0; i < 20; i++) {
        const t0 = performance.now();
        await s.setDeliveryTokens(boxes[0]!.mailbox, [new Uint8Array(32).fill(i)]);
        waits.push(performance.now() - t0);
      }
      // …and still after them (how many commits fall inside the ~5 ms of writes depends on the machine).
      const after = sent;
      await expect.poll(() => sent, { timeout: 10_000 }).toBeGreaterThan(after + 40);
      running = false;
      await Promise.all(pumps);
      // Each write got the lock within a few of the writer's commits, never near MAIN_LOCK_WAIT_MS.
      expect(Math.max(...waits)).toBeLessThan(1000);
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('storage slots: acked envelopes free their slots, new ones take the lowest free slot, and a slot filled behind the writer is skipped', async () => {
    const dir = tmp();
    try {
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0 });
      const { mailbox, token } = await addDevice(s, 3);
      const limits = { maxMessages: 100, maxBytes: 1e6, firstContactMaxMessages: 10 };
      const item = (i: number): EnqueueItem => ({ id: new Uint8Array(16).fill(i), mailbox, payload: new Uint8Array([i]), receivedAt: 1, tokenHash: token });
      const slotOf = (): Record<number, number> => Object.fromEntries((s.database.prepare('SELECT seq, slot FROM messages').all() as { seq: number; slot: number }[]).map((r) => [r.seq, r.slot]));
      await s.enqueue([1, 2, 3, 4, 5].map(item), limits);
      expect(slotOf()).toEqual({ 1: 1, 2: 2, 3: 3, 4: 4, 5: 5 });
      const stored = await s.fetch(mailbox, 0, 10, 1e9);
      // Acking seqs 2 and 4 frees slots 2 and 4: the next two envelopes take them, the third slot 6.
      expect(await s.ack([{ mailbox, ids: [stored[1]!.id, stored[3]!.id], seqs: [2, 4] }])).toEqual([2]);
      await s.enqueue([6, 7, 8].map(item), limits);
      expect(slotOf()).toEqual({ 1: 1, 3: 3, 5: 5, 6: 2, 7: 4, 8: 6 });
      // Another connection (here the main one) fills slot 7 behind the writer's back: the writer skips it.
      s.database.prepare('INSERT INTO messages (slot, mailbox, seq, received_at, with_token, id, payload) VALUES (7, ?, 1000, 1, 1, ?, ?)').run(Buffer.alloc(32, 9), Buffer.alloc(16, 9), Buffer.from([9]));
      const [r9] = await s.enqueue([item(9)], limits);
      expect(r9).toMatchObject({ ok: true, envelope: { seq: 9 } });
      expect(slotOf()).toMatchObject({ 9: 8, 1000: 7 });
      expect((await s.fetch(mailbox, 0, 20, 1e9)).map((e) => e.payload[0])).toEqual([1, 3, 5, 6, 7, 8, 9]);
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('forgetting without a stall: an acked envelope is gone from every file once two WAL cycles have passed, and its deadline then needs no TRUNCATE', async () => {
    const dir = tmp();
    try {
      // A deadline far enough away for a slow machine to write two WAL cycles (16 MiB) before it.
      const forgetWithinMs = 10_000;
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0, forgetWithinMs });
      const limits = { maxMessages: 1e6, maxBytes: 1e9, firstContactMaxMessages: 10 };
      const boxes: { mailbox: Uint8Array; token: Uint8Array }[] = [];
      for (let i = 0; i < 50; i++) boxes.push(await addDevice(s, 3 * i + 1));
      // The set-up's own deletions (none that leave rows behind: it only inserts) need no TRUNCATE later.
      const marker = new Uint8Array(randomBytes(1024));
      const [m] = await s.enqueue([{ id: new Uint8Array(randomBytes(16)), mailbox: boxes[0]!.mailbox, payload: marker, receivedAt: 1, tokenHash: boxes[0]!.token }], limits);
      if (!m?.ok) throw new Error('marker not stored');
      const found = (): string[] => readdirSync(dir).filter((f) => readFileSync(join(dir, f)).indexOf(Buffer.from(marker.subarray(0, 64))) >= 0);
      expect(found().length).toBeGreaterThan(0);
      const before = await s.walForgetStats();
      expect(await s.ack([{ mailbox: boxes[0]!.mailbox, ids: [m.envelope.id], seqs: [m.envelope.seq] }])).toEqual([1]);
      const ackedAt = Date.now();
      const salt = (): number => readFileSync(join(dir, `${FILE}-wal`)).readUInt32BE(16);
      const salt0 = salt();
      // Only sends now (no deletion of their own): the ack is the one deletion whose deadline runs.
      const payload = new Uint8Array(randomBytes(4000));
      while (((salt() - salt0) >>> 0) < 2) {
        await s.enqueue(boxes.map((b) => ({ id: new Uint8Array(randomBytes(16)), mailbox: b.mailbox, payload, receivedAt: 1, tokenHash: b.token })), limits);
      }
      // Two cycles of at least WAL_CYCLE_FRAMES frames overwrote the file from its start, the tail beyond was cut.
      expect(statSync(join(dir, `${FILE}-wal`)).size).toBeLessThanOrEqual(walSizeLimit(PAGE_SIZE) + 64 * (PAGE_SIZE + 24));
      expect(found()).toEqual([]);
      expect(Date.now() - ackedAt).toBeLessThan(forgetWithinMs); // else the deadline came first: the test says nothing
      // At the deadline the writer sees that and does not cut the WAL.
      let after = await s.walForgetStats();
      while (after.truncates + after.overwritten === before.truncates + before.overwritten && Date.now() - ackedAt < forgetWithinMs + 5000) {
        await new Promise((r) => setTimeout(r, 100));
        after = await s.walForgetStats();
      }
      expect(after.truncates - before.truncates).toBe(0);
      expect(after.overwritten - before.overwritten).toBeGreaterThanOrEqual(1);
      expect(statSync(join(dir, `${FILE}-wal`)).size).toBeGreaterThan(0);
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('forgetting: an acked envelope on a quiet store is cut from the WAL by TRUNCATE at its deadline', async () => {
    const dir = tmp();
    try {
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0, forgetWithinMs: 300 });
      const { mailbox, token } = await addDevice(s, 3);
      await new Promise((r) => setTimeout(r, 500));
      const marker = new Uint8Array(randomBytes(1024));
      const [m] = await s.enqueue([{ id: new Uint8Array(randomBytes(16)), mailbox, payload: marker, receivedAt: 1, tokenHash: token }], { maxMessages: 100, maxBytes: 1e6, firstContactMaxMessages: 10 });
      if (!m?.ok) throw new Error('marker not stored');
      const before = await s.walForgetStats();
      expect(await s.ack([{ mailbox, ids: [m.envelope.id], seqs: [m.envelope.seq] }])).toEqual([1]);
      await new Promise((r) => setTimeout(r, 900));
      expect((await s.walForgetStats()).truncates - before.truncates).toBe(1);
      expect(statSync(join(dir, `${FILE}-wal`)).size).toBe(0);
      expect(readdirSync(dir).filter((f) => readFileSync(join(dir, f)).indexOf(Buffer.from(marker.subarray(0, 64))) >= 0)).toEqual([]);
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an ack of consecutive seqs is one range deletion of exactly the rows whose seq holds the acked id (as envelope by envelope)', async () => {
    const dir = tmp();
    try {
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0 });
      const { mailbox, token } = await addDevice(s, 3);
      const limits = { maxMessages: 100, maxBytes: 1e6, firstContactMaxMessages: 10 };
      await s.enqueue(Array.from({ length: 12 }, (_, i) => ({ id: new Uint8Array(16).fill(i + 1), mailbox, payload: new Uint8Array([i + 1, 0, 0]), receivedAt: 1, tokenHash: token })), limits);
      const e = await s.fetch(mailbox, 0, 100, 1e9);
      // Seqs 1–5 in one ack: all deleted, the counters follow (bytes: 3 per envelope).
      expect(await s.ack([{ mailbox, ids: e.slice(0, 5).map((x) => x.id), seqs: e.slice(0, 5).map((x) => x.seq) }])).toEqual([5]);
      expect(await s.mailboxStats(mailbox)).toMatchObject({ messages: 7, bytes: 21 });
      // Seq 8 now holds another id (as after a counter restart): the ack of seqs 6–10 deletes 6, 7, 9, 10 only.
      s.database.prepare('UPDATE messages SET id = ? WHERE mailbox = ? AND seq = 8').run(Buffer.alloc(16, 99), mailbox);
      expect(await s.ack([{ mailbox, ids: e.slice(5, 10).map((x) => x.id), seqs: e.slice(5, 10).map((x) => x.seq) }])).toEqual([4]);
      expect((await s.fetch(mailbox, 0, 100, 1e9)).map((x) => x.seq)).toEqual([8, 11, 12]);
      // An already deleted envelope in the range (acked twice): only the others go.
      expect(await s.ack([{ mailbox, ids: [e[8]!.id, e[9]!.id, e[10]!.id, e[11]!.id], seqs: [9, 10, 11, 12] }])).toEqual([2]);
      expect((await s.fetch(mailbox, 0, 100, 1e9)).map((x) => x.seq)).toEqual([8]);
      expect(await s.mailboxStats(mailbox)).toMatchObject({ messages: 1, bytes: 3 });
      // Freed slots are reused: the next envelope takes slot 1.
      await s.enqueue([{ id: new Uint8Array(16).fill(50), mailbox, payload: new Uint8Array([50]), receivedAt: 1, tokenHash: token }], limits);
      expect(s.database.prepare('SELECT slot FROM messages WHERE seq = 13').get()).toEqual({ slot: 1 });
      // Ids of another length (not the node's) in a consecutive ack: envelope by envelope, same result.
      await s.enqueue(Array.from({ length: 5 }, (_, i) => ({ id: new Uint8Array(8 + i).fill(60 + i), mailbox, payload: new Uint8Array([60]), receivedAt: 1, tokenHash: token })), limits);
      const odd = (await s.fetch(mailbox, 13, 100, 1e9)).slice(0, 4);
      expect(odd.map((x) => x.seq)).toEqual([14, 15, 16, 17]);
      expect(await s.ack([{ mailbox, ids: [odd[0]!.id, odd[1]!.id, new Uint8Array(10).fill(1), odd[3]!.id], seqs: [14, 15, 16, 17] }])).toEqual([3]);
      expect((await s.fetch(mailbox, 0, 100, 1e9)).map((x) => x.seq)).toEqual([8, 13, 16, 18]);
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reader thread: fetch reads off the event loop, sees what just committed on any connection, and after the thread died reads on the main connection', async () => {
    const dir = tmp();
    try {
      const deaths: Error[] = [];
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0, onReaderDead: (e) => deaths.push(e) });
      const { mailbox, token } = await addDevice(s, 3);
      const limits = { maxMessages: 5000, maxBytes: 1e9, firstContactMaxMessages: 10 };
      const payload = (i: number) => new Uint8Array(1000).fill(i % 251);
      await s.enqueue(Array.from({ length: 1200 }, (_, i) => ({ id: new Uint8Array(16).fill(i % 256), mailbox, payload: payload(i), receivedAt: 1000 + i, tokenHash: token })), limits);
      // The read is not done on the event loop: a turn of it passes before the answer (on the main
      // connection the answer came first, in the same turn).
      let turned = false;
      setImmediate(() => (turned = true));
      const batch = await s.fetch(mailbox, 0, 1024, 512 * 1000);
      expect(turned).toBe(true);
      // The contract: `limit` and the byte bound (the 513th would pass 512,000 bytes), oldest first, every field.
      expect(batch.length).toBe(512);
      expect(batch.map((e) => e.seq)).toEqual(Array.from({ length: 512 }, (_, i) => i + 1));
      expect(batch[7]).toEqual({ seq: 8, id: new Uint8Array(16).fill(7), payload: payload(7), receivedAt: 1007 });
      expect(await s.fetch(mailbox, 1190, 1024, 1e9)).toHaveLength(10);
      expect(await s.fetch(mailbox, 0, 1, 1)).toHaveLength(1); // at least one, whatever the bound
      // A write on the main connection just before (the device's queue deleted) is seen.
      await s.deleteDevices([mailbox]);
      expect(await s.fetch(mailbox, 0, 1024, 1e9)).toEqual([]);
      const other = await addDevice(s, 9);
      await s.enqueue([{ id: new Uint8Array(16).fill(1), mailbox: other.mailbox, payload: payload(1), receivedAt: 1, tokenHash: other.token }], limits);
      const viaThread = await s.fetch(other.mailbox, 0, 10, 1e9);
      s.crashReaderForTest();
      await expect.poll(() => deaths.length).toBe(1);
      turned = false;
      setImmediate(() => (turned = true));
      expect(await s.fetch(other.mailbox, 0, 10, 1e9)).toEqual(viaThread);
      expect(turned).toBe(false); // read on the main connection now
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writer thread: calls that meet in one group commit; a call the database refuses fails alone, its neighbours commit', async () => {
    const dir = tmp();
    try {
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0 });
      const { mailbox, token } = await addDevice(s, 3);
      const item = (id: number) => ({ id: new Uint8Array(16).fill(id), mailbox, payload: new Uint8Array([id]), receivedAt: 1, tokenHash: token });
      const limits = { maxMessages: 100, maxBytes: 1e6, firstContactMaxMessages: 10 };
      // Posted in one tick: they reach the writer together. The middle call holds an envelope the
      // database refuses (a trigger stands in for any constraint failure): only it fails.
      s.database.exec("CREATE TRIGGER refuse_7 BEFORE INSERT ON messages WHEN NEW.payload = x'07' BEGIN SELECT RAISE(ABORT, 'refused'); END");
      const [a, bad, b] = await Promise.allSettled([s.enqueue([item(1), item(2)], limits), s.enqueue([item(8), item(7)], limits), s.enqueue([item(3)], limits)]);
      expect(a.status).toBe('fulfilled');
      expect(bad.status).toBe('rejected');
      expect(b.status).toBe('fulfilled');
      const stored = await s.fetch(mailbox, 0, 100, 1e9);
      expect(stored.map((e) => [e.seq, e.payload[0]])).toEqual([[1, 1], [2, 2], [3, 3]]);
      expect(await s.mailboxStats(mailbox)).toMatchObject({ messages: 3, bytes: 3 });
      // Acks and sends of one group: counters stay in step.
      const [acked] = await Promise.all([s.ack([{ mailbox, ids: [stored[0]!.id, stored[1]!.id] }]), s.enqueue([item(4)], limits)]);
      expect(acked).toEqual([2]);
      expect((await s.fetch(mailbox, 0, 100, 1e9)).map((e) => e.payload[0])).toEqual([3, 4]);
      expect(await s.mailboxStats(mailbox)).toMatchObject({ messages: 2, bytes: 2 });
      await s.close();
      await expect(s.enqueue([item(5)], limits)).rejects.toThrow(/closed/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an ack handed over just before an enqueue (one turn) commits in the enqueue\'s transaction: one commit, not two (acksShareSendCommits)', async () => {
    const dir = tmp();
    try {
      // A deadline far away: no TRUNCATE empties the WAL while its commits are counted.
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0, forgetWithinMs: 600_000 });
      expect(s.acksShareSendCommits).toBe(true);
      const { mailbox, token } = await addDevice(s, 3);
      const limits = { maxMessages: 100, maxBytes: 1e6, firstContactMaxMessages: 10 };
      const item = (i: number): EnqueueItem => ({ id: new Uint8Array(16).fill(i), mailbox, payload: new Uint8Array(100).fill(i), receivedAt: 1, tokenHash: token });
      // Commit frames of the WAL's current cycle (a frame whose "database size after commit" is set).
      const commits = (): number => {
        const wal = readFileSync(join(dir, `${FILE}-wal`));
        const pageSize = wal.readUInt32BE(8);
        let n = 0;
        for (let off = 32; off + 24 + pageSize <= wal.length; off += 24 + pageSize) {
          if (wal.readUInt32BE(off + 8) !== wal.readUInt32BE(16) || wal.readUInt32BE(off + 12) !== wal.readUInt32BE(20)) break;
          if (wal.readUInt32BE(off + 4) !== 0) n++;
        }
        return n;
      };
      // Same turn, ack first: both reach the writer thread together and commit once. Whether the
      // writer thread wakes between the two hand-offs is the scheduler's choice (on a busy machine
      // it sometimes does: then two commits, correctly), so up to five tries, and one shared
      // commit must be seen; a store whose acks never share a send's commit shows two every time.
      const perTry: number[] = [];
      for (let t = 0; t < 5 && perTry.at(-1) !== 1; t++) {
        await s.enqueue([item(10 + t)], limits);
        const [e] = await s.fetch(mailbox, 0, 1, 1e9);
        const before = commits();
        const [acked, sent] = await Promise.all([s.ack([{ mailbox, ids: [e!.id], seqs: [e!.seq] }]), s.enqueue([item(20 + t)], limits)]);
        expect(acked).toEqual([1]);
        expect(sent[0]!.ok).toBe(true);
        perTry.push(commits() - before);
        // Leave the mailbox empty for the next try.
        const [left] = await s.fetch(mailbox, 0, 1, 1e9);
        expect(await s.ack([{ mailbox, ids: [left!.id], seqs: [left!.seq] }])).toEqual([1]);
      }
      expect(perTry.at(-1), `commits per try: ${perTry.join(', ')}`).toBe(1);
      expect(perTry.every((n) => n === 1 || n === 2)).toBe(true);
      await s.enqueue([item(1), item(2)], limits);
      const [e1] = await s.fetch(mailbox, 0, 10, 1e9);
      const c0 = commits();
      // The control: an ack awaited on its own, then an enqueue — two commits.
      expect(await s.ack([{ mailbox, ids: [e1!.id], seqs: [e1!.seq] }])).toEqual([1]);
      await s.enqueue([item(4)], limits);
      expect(commits() - c0).toBe(2);
      expect((await s.fetch(mailbox, 0, 10, 1e9)).map((e) => e.payload[0])).toEqual([2, 4]);
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('acks find rows by (mailbox, seq) — no index on the random ids — and a seq that holds another id deletes nothing', async () => {
    const dir = tmp();
    try {
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0 });
      const { mailbox, token } = await addDevice(s, 3);
      const limits = { maxMessages: 100, maxBytes: 1e6, firstContactMaxMessages: 10 };
      await s.enqueue([1, 2, 3, 4].map((i) => ({ id: new Uint8Array(16).fill(i), mailbox, payload: new Uint8Array([i]), receivedAt: 1, tokenHash: token })), limits);
      const [e1, e2, e3, e4] = await s.fetch(mailbox, 0, 100, 1e9);
      const indexes = s.database.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'").all() as { name: string }[];
      expect(indexes.map((i) => i.name).sort()).toEqual(['messages_by_mailbox', 'messages_by_time', 'messages_tokenless']);
      // e1's id under e2's seq, and e2's id under a seq that does not exist: nothing is deleted.
      expect(await s.ack([{ mailbox, ids: [e1!.id, e2!.id], seqs: [e2!.seq, 99] }])).toEqual([0]);
      expect(await s.ack([{ mailbox, ids: [e1!.id, e3!.id], seqs: [e1!.seq, e3!.seq] }])).toEqual([2]);
      expect(await s.ack([{ mailbox, ids: [e4!.id] }])).toEqual([1]); // without seqs: found by id
      expect((await s.fetch(mailbox, 0, 100, 1e9)).map((e) => e.seq)).toEqual([e2!.seq]);
      expect(await s.mailboxStats(mailbox)).toMatchObject({ messages: 1, bytes: 1 });
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('SQLite: an existing database with 4 KiB pages', () => {
  const tmp = (): string => mkdtempSync(join(tmpdir(), 'mw-store-'));
  /** A database as nodes before 8 KiB pages made it, holding mail for one mailbox. */
  async function oldDatabase(dir: string): Promise<{ mailbox: Uint8Array; ids: Uint8Array[] }> {
    const raw = new Database(join(dir, FILE));
    raw.pragma('page_size = 4096');
    raw.pragma('journal_mode = WAL');
    raw.close();
    const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0, pageSizeConvertMaxBytes: 0 });
    expect(s.database.pragma('page_size', { simple: true })).toBe(4096);
    const { mailbox, token } = await addDevice(s, 3);
    const limits = { maxMessages: 1000, maxBytes: 1e8, firstContactMaxMessages: 10 };
    const out = await s.enqueue(Array.from({ length: 300 }, (_, i) => ({ id: new Uint8Array(16).fill(i % 256), mailbox, payload: new Uint8Array(1024).fill(i % 256), receivedAt: 1, tokenHash: token })), limits);
    await s.close();
    return { mailbox, ids: out.map((o) => (o.ok ? o.envelope.id : new Uint8Array())) };
  }

  it('is converted to 8 KiB pages when the node opens it: same data, 0600, reported for the log', async () => {
    const dir = tmp();
    try {
      const { mailbox } = await oldDatabase(dir);
      const reports: unknown[] = [];
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0, onPageSize: (c) => reports.push(c) });
      expect(s.database.pragma('page_size', { simple: true })).toBe(PAGE_SIZE);
      expect(s.database.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(pragmasInForce(s.database)).toEqual({ ...REQUIRED_PRAGMAS, synchronous: MAIN_CONNECTION_SYNCHRONOUS });
      expect(reports).toEqual([expect.objectContaining({ converted: true, from: 4096, to: PAGE_SIZE })]);
      expect(statSync(join(dir, FILE)).mode & 0o777).toBe(0o600);
      expect(readdirSync(dir).filter((f) => f.includes('page-size-tmp'))).toEqual([]);
      const stored = await s.fetch(mailbox, 0, 1000, 1e9);
      expect(stored.map((e) => e.payload[0])).toEqual(Array.from({ length: 300 }, (_, i) => i % 256));
      expect(await s.mailboxStats(mailbox)).toMatchObject({ messages: 300, bytes: 300 * 1024 });
      // Writes go on as before (the writer thread opens the converted file).
      expect(await s.ack([{ mailbox, ids: [stored[0]!.id], seqs: [stored[0]!.seq] }])).toEqual([1]);
      await s.close();
      // Once converted, nothing more is done.
      const again = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0, onPageSize: (c) => reports.push(c) });
      expect(reports).toHaveLength(1);
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is left as it is, and says why, when larger than the bound (or open elsewhere); a leftover copy from a crash is removed', async () => {
    const dir = tmp();
    try {
      await oldDatabase(dir);
      writeFileSync(join(dir, `${FILE}.page-size-tmp`), 'half a copy');
      const reports: unknown[] = [];
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0, pageSizeConvertMaxBytes: 4096, onPageSize: (c) => reports.push(c) });
      expect(s.database.pragma('page_size', { simple: true })).toBe(4096);
      expect(reports).toEqual([{ converted: false, from: 4096, reason: 'too-large' }]);
      expect(existsSync(join(dir, `${FILE}.page-size-tmp`))).toBe(false);
      await s.close();
      // Another connection holds the file (its -wal/-shm exist): not converted under it.
      const other = new Database(join(dir, FILE));
      other.pragma('journal_mode = WAL');
      other.prepare('SELECT count(*) FROM messages').get();
      const s2 = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0, onPageSize: (c) => reports.push(c) });
      expect(reports[1]).toEqual({ converted: false, from: 4096, reason: 'wal-kept' });
      expect(s2.database.pragma('page_size', { simple: true })).toBe(4096);
      await s2.close();
      other.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

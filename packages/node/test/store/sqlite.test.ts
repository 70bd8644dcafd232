// The SQLite NodeStore: the conformance suite on real files, plus what only SQLite has — pragmas,
// migrations, the raw files.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { PAGE_SIZE, REQUIRED_PRAGMAS, openDatabase, pragmasInForce } from '../../src/store/db.js';
import { SqliteNodeStore } from '../../src/store/sqlite-store.js';
import { storeConformance } from './conformance.js';

const FILE = 'db.sqlite3';

storeConformance({
  name: 'SQLite',
  fresh: async () => mkdtempSync(join(tmpdir(), 'mw-store-')),
  open: async (dir, { now }) => new SqliteNodeStore(join(dir, FILE), { now, reserveBytes: 64 * 1024 }),
  destroy: async (dir) => rmSync(dir, { recursive: true, force: true }),
});

describe('SQLite specifics', () => {
  const tmp = (): string => mkdtempSync(join(tmpdir(), 'mw-store-'));

  it('has WAL, synchronous=FULL, secure_delete, foreign keys and in-memory temp storage in force, also after reopening', async () => {
    const dir = tmp();
    try {
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0 });
      expect(pragmasInForce(s.database)).toEqual(REQUIRED_PRAGMAS);
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
  it('writer thread: calls that meet in one group commit; a call the database refuses fails alone, its neighbours commit', async () => {
    const dir = tmp();
    try {
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0 });
      const mailbox = new Uint8Array(32).fill(3);
      const token = new Uint8Array(32).fill(4);
      await s.publishDeviceList({ accountKey: new Uint8Array(32).fill(5), epoch: 1, encoded: new Uint8Array(60), expectedEpoch: undefined, listedMailboxes: [mailbox], now: 1 });
      await s.publishKeys({ mailbox, accountKey: new Uint8Array(32).fill(5), certificate: new Uint8Array(40), issuedAt: 1, signedPreKey: undefined, lastResortKemPreKey: undefined, oneTimePreKeys: [], kemPreKeys: [], now: 1, deviceListEpoch: 1 });
      await s.setDeliveryTokens(mailbox, [token]);
      const item = (id: number) => ({ id: new Uint8Array(16).fill(id), mailbox, payload: new Uint8Array([id]), receivedAt: 1, tokenHash: token });
      const limits = { maxMessages: 100, maxBytes: 1e6, firstContactMaxMessages: 10 };
      // Posted in one tick: they reach the writer together. The middle call repeats an id within its
      // mailbox (a UNIQUE violation inside SQLite): only it fails.
      const [a, bad, b] = await Promise.allSettled([s.enqueue([item(1), item(2)], limits), s.enqueue([item(7), item(7)], limits), s.enqueue([item(3)], limits)]);
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
});

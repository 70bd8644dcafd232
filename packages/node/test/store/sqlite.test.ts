// The SQLite NodeStore: the conformance suite on real files, plus what only SQLite has — pragmas,
// migrations, the raw files.
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
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

  it('acks find rows by (mailbox, seq) — no index on the random ids — and a seq that holds another id deletes nothing', async () => {
    const dir = tmp();
    try {
      const s = new SqliteNodeStore(join(dir, FILE), { reserveBytes: 0 });
      const mailbox = new Uint8Array(32).fill(3);
      const token = new Uint8Array(32).fill(4);
      await s.publishDeviceList({ accountKey: new Uint8Array(32).fill(5), epoch: 1, encoded: new Uint8Array(60), expectedEpoch: undefined, listedMailboxes: [mailbox], now: 1 });
      await s.publishKeys({ mailbox, accountKey: new Uint8Array(32).fill(5), certificate: new Uint8Array(40), issuedAt: 1, signedPreKey: undefined, lastResortKemPreKey: undefined, oneTimePreKeys: [], kemPreKeys: [], now: 1, deviceListEpoch: 1 });
      await s.setDeliveryTokens(mailbox, [token]);
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
    const mailbox = new Uint8Array(32).fill(3);
    const token = new Uint8Array(32).fill(4);
    await s.publishDeviceList({ accountKey: new Uint8Array(32).fill(5), epoch: 1, encoded: new Uint8Array(60), expectedEpoch: undefined, listedMailboxes: [mailbox], now: 1 });
    await s.publishKeys({ mailbox, accountKey: new Uint8Array(32).fill(5), certificate: new Uint8Array(40), issuedAt: 1, signedPreKey: undefined, lastResortKemPreKey: undefined, oneTimePreKeys: [], kemPreKeys: [], now: 1, deviceListEpoch: 1 });
    await s.setDeliveryTokens(mailbox, [token]);
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
      expect(pragmasInForce(s.database)).toEqual(REQUIRED_PRAGMAS);
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

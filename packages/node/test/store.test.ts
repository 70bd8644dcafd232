// The SQLite store: durability pragmas actually in force, migrations, and the quota rules.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, ProtocolError } from '@meshwhisper/protocol';
import { REQUIRED_PRAGMAS, openDatabase, pragmasInForce } from '../src/store/db.js';
import { MIGRATIONS } from '../src/store/migrations.js';
import { Store } from '../src/store/store.js';

const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'mw-store-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('database', () => {
  it('has WAL, synchronous=FULL, secure_delete and foreign keys in force, also after reopening', () => {
    const file = join(tmp(), 'db.sqlite3');
    const s = new Store(file);
    expect(pragmasInForce(s.db)).toEqual(REQUIRED_PRAGMAS);
    s.close();
    const again = openDatabase(file);
    expect(pragmasInForce(again)).toEqual(REQUIRED_PRAGMAS);
    expect(again.pragma('user_version', { simple: true })).toBe(MIGRATIONS.at(-1)!.version);
    expect(again.pragma('integrity_check', { simple: true })).toBe('ok');
    again.close();
  });

  it('refuses a database from a newer node', () => {
    const file = join(tmp(), 'db.sqlite3');
    const db = openDatabase(file);
    db.pragma('user_version = 99');
    db.close();
    expect(() => openDatabase(file)).toThrow(/newer than this node/);
  });

  it('a failing transaction leaves nothing behind', () => {
    const s = new Store(join(tmp(), 'db.sqlite3'));
    const mailbox = new Uint8Array(32).fill(1);
    expect(() =>
      s.transact((tx) => {
        tx.mailbox.insert({ id: new Uint8Array(16).fill(1), mailbox, payload: Uint8Array.of(1), receivedAt: 1, withToken: true }, { maxMessages: 10, maxBytes: 1e6, firstContactMaxMessages: 5 });
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(s.mailbox.stats(mailbox).messages).toBe(0);
    expect(s.mailbox.nextBatch(mailbox, 0, 10, 1e6)).toEqual([]);
    s.close();
  });
});

describe('mailbox quota', () => {
  const limits = { maxMessages: 10, maxBytes: 1_000_000, firstContactMaxMessages: 3 };
  let n = 0;
  const put = (s: Store, mailbox: Uint8Array, withToken: boolean, payload = Uint8Array.of(n & 0xff)) => {
    const id = new Uint8Array(16);
    new DataView(id.buffer).setUint32(0, ++n);
    return s.transact((tx) => tx.mailbox.insert({ id, mailbox, payload, receivedAt: n, withToken }, limits));
  };

  it('tokenless mail is refused when its lane or the mailbox is full and never evicts anything', () => {
    const s = new Store(join(tmp(), 'db.sqlite3'));
    const m = new Uint8Array(32).fill(2);
    for (let i = 0; i < 3; i++) put(s, m, false);
    expect(() => put(s, m, false)).toThrow(ProtocolError);
    try {
      put(s, m, false);
    } catch (e) {
      expect((e as ProtocolError).code).toBe(ErrorCode.QUOTA_EXCEEDED);
    }
    for (let i = 0; i < 7; i++) put(s, m, true);
    expect(s.mailbox.stats(m)).toMatchObject({ messages: 10, tokenless: 3 });
    // Token mail now evicts tokenless mail first (3 of them), then the oldest token mail.
    for (let i = 0; i < 4; i++) expect(put(s, m, true)).toBe(1);
    expect(s.mailbox.stats(m)).toMatchObject({ messages: 10, tokenless: 0, gapEvicted: 4 });
    s.close();
  });

  it('counters stay in step with the rows through ack and expiry', () => {
    const s = new Store(join(tmp(), 'db.sqlite3'));
    const m = new Uint8Array(32).fill(3);
    for (let i = 0; i < 5; i++) put(s, m, i % 2 === 0, new Uint8Array(100));
    const batch = s.mailbox.nextBatch(m, 0, 2, 1e6);
    expect(s.transact((tx) => tx.mailbox.ack(m, batch.map((e) => e.id)))).toBe(2);
    expect(s.transact((tx) => tx.mailbox.ack(new Uint8Array(32), batch.map((e) => e.id)))).toBe(0);
    const st = s.mailbox.stats(m);
    const row = s.db.prepare<[Uint8Array], { c: number; b: number; t: number }>('SELECT count(*) AS c, sum(length(payload)) AS b, sum(1 - with_token) AS t FROM messages WHERE mailbox = ?').get(m)!;
    expect([st.messages, st.bytes, st.tokenless]).toEqual([row.c, row.b, row.t]);
    expect(s.transact((tx) => tx.mailbox.expire(Number.MAX_SAFE_INTEGER, 1000))).toEqual({ envelopes: 3, mailboxes: 1 });
    expect(s.mailbox.stats(m)).toMatchObject({ messages: 0, bytes: 0, tokenless: 0, gapExpired: 3 });
    s.close();
  });
});

/**
 * mw.unconfirmed (messages kept to re-send after a decryption-error report) is bounded in age and
 * number, and it and mw.receipt are versioned records behind the layout marker (layout 3): a
 * layout-2 storage is migrated, on real storages (memory and a SQLite file).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createContext, fromHex, toHex } from '@meshwhisper/crypto';
import { ContentSchema, StoredClientLayoutSchema, StoredReceiptSchema, StoredUnconfirmedSchema, create, fromBinary, toBinary } from '@meshwhisper/protocol';
import { CLIENT_LAYOUT_VERSION, ensureLayout } from '../../src/client/layout.js';
import { confirmUnconfirmed, keepUnconfirmed, pruneUnconfirmed, takeUnconfirmed } from '../../src/client/unconfirmed.js';
import { MAX_UNCONFIRMED, UNCONFIRMED_MAX_AGE_MS } from '../../src/constants.js';
import type { ProtocolStorage } from '../../src/index.js';
import { memoryStorage, openSqliteStorage } from '../../src/index.js';

const DAY = 24 * 3600 * 1000;
const NOW = 1_800_000_000_000;
const work = mkdtempSync(join(tmpdir(), 'mw-sdk-unconfirmed-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const mailbox = (n: number): Uint8Array => new Uint8Array(32).fill(n);
const id = (n: number): string => n.toString(16).padStart(32, '0');
const content = (n: number, sentAt: number): Uint8Array =>
  toBinary(ContentSchema, create(ContentSchema, { version: 1, messageId: fromHex(id(n)), sentAt: BigInt(sentAt), body: { case: 'text', value: { text: `m${n}` } } }));

async function keep(s: ProtocolStorage, n: number, sentAt: number, box = mailbox(1)): Promise<void> {
  await s.transaction((tx) => keepUnconfirmed(tx, { mailboxId: box, messageId: id(n), sentAt, content: content(n, sentAt) }));
}
const tables = async (s: ProtocolStorage) => ({
  main: (await s.listItems('mw.unconfirmed')).map((i) => i.key),
  age: (await s.listItems('mw.unconfirmed-age')).map((i) => i.key),
});

describe('mw.unconfirmed is bounded', () => {
  it('prunes entries older than 30 days, then the oldest beyond the count bound; the age index follows', async () => {
    const s = await memoryStorage();
    // 3 entries past 30 days, 6 within, across two devices.
    for (let n = 0; n < 3; n++) await keep(s, n, NOW - UNCONFIRMED_MAX_AGE_MS - (3 - n) * DAY);
    for (let n = 3; n < 9; n++) await keep(s, n, NOW - (9 - n) * DAY, mailbox(n % 2 ? 1 : 2));
    expect((await tables(s)).main).toHaveLength(9);
    // Bound 4: the three too old go, then the two oldest of the rest.
    expect(await pruneUnconfirmed(s, NOW, 4)).toBe(5);
    const left = await tables(s);
    expect(left.main.map((k) => k.split('/')[1]).sort()).toEqual([id(5), id(6), id(7), id(8)]);
    expect(left.age).toHaveLength(4);
    expect(left.age.every((k) => left.main.includes(k.slice(k.indexOf('/') + 1)))).toBe(true);
    // Within both bounds: nothing more goes.
    expect(await pruneUnconfirmed(s, NOW, 4)).toBe(0);
    expect(MAX_UNCONFIRMED).toBeGreaterThanOrEqual(100);
    await s.close();
  });

  it('a delivery receipt removes the entry and its index; sending the same message again keeps one entry at its new age', async () => {
    const s = await openSqliteStorage({ path: join(work, 'confirm.db') });
    await keep(s, 1, NOW - 5 * DAY);
    await keep(s, 2, NOW - 4 * DAY);
    await keep(s, 1, NOW - 1 * DAY); // retried
    let t = await tables(s);
    expect(t.main).toHaveLength(2);
    expect(t.age).toEqual([`${String(NOW - 4 * DAY).padStart(15, '0')}/${toHex(mailbox(1))}/${id(2)}`, `${String(NOW - DAY).padStart(15, '0')}/${toHex(mailbox(1))}/${id(1)}`]);
    await s.transaction((tx) => confirmUnconfirmed(tx, mailbox(1), id(2)));
    await s.transaction((tx) => confirmUnconfirmed(tx, mailbox(1), id(9))); // never kept: nothing happens
    t = await tables(s);
    expect(t.main).toEqual([`${toHex(mailbox(1))}/${id(1)}`]);
    expect(t.age).toHaveLength(1);
    // What a report from that device re-sends: its entries only, the content as first sent.
    await keep(s, 3, NOW - 2 * DAY, mailbox(2));
    const taken = await takeUnconfirmed(s, mailbox(1), NOW);
    expect(taken.map((x) => x.messageId)).toEqual([id(1)]);
    expect(fromBinary(ContentSchema, taken[0]!.content).body.value).toMatchObject({ text: 'm1' });
    // …and an entry past the age bound is dropped instead of re-sent.
    expect(await takeUnconfirmed(s, mailbox(1), NOW + UNCONFIRMED_MAX_AGE_MS)).toEqual([]);
    expect((await tables(s)).main).toEqual([`${toHex(mailbox(2))}/${id(3)}`]);
    await s.close();
  });
});

describe('layout 3: mw.receipt and mw.unconfirmed behind the layout marker', () => {
  it('a layout-2 storage is migrated in one transaction: ad-hoc receipt bytes and bare Contents become versioned records', async () => {
    const path = join(work, 'layout2.db');
    const s = await openSqliteStorage({ path });
    await s.setItem('mw.self', 'layout', toBinary(StoredClientLayoutSchema, create(StoredClientLayoutSchema, { version: 2 })));
    // Layout 2's receipt record: 1 ‖ due (u64) ‖ (len ‖ id)*.
    const due = NOW + 5_000;
    const raw = new Uint8Array(9 + 17 * 2);
    raw[0] = 1;
    new DataView(raw.buffer).setBigUint64(1, BigInt(due));
    raw.set([16, ...fromHex(id(7))], 9);
    raw.set([16, ...fromHex(id(8))], 26);
    await s.setItem('mw.receipt', `delivered:${toHex(mailbox(3))}`, raw);
    // Layout 2's unconfirmed entry: `${id}:${mailbox}` → the Content.
    await s.setItem('mw.unconfirmed', `${id(4)}:${toHex(mailbox(3))}`, content(4, NOW - DAY));
    await s.close();

    const again = await openSqliteStorage({ path });
    expect(await ensureLayout(again, createContext())).toBe(true);
    expect(fromBinary(StoredClientLayoutSchema, (await again.getItem('mw.self', 'layout'))!).version).toBe(CLIENT_LAYOUT_VERSION);
    expect(CLIENT_LAYOUT_VERSION).toBe(4);
    const r = fromBinary(StoredReceiptSchema, (await again.getItem('mw.receipt', `delivered:${toHex(mailbox(3))}`))!);
    expect([r.version, Number(r.dueAt), r.messageIds.map(toHex)]).toEqual([1, due, [id(7), id(8)]]);
    const t = await tables(again);
    expect(t.main).toEqual([`${toHex(mailbox(3))}/${id(4)}`]);
    expect(t.age).toEqual([`${String(NOW - DAY).padStart(15, '0')}/${toHex(mailbox(3))}/${id(4)}`]);
    const u = fromBinary(StoredUnconfirmedSchema, (await again.getItem('mw.unconfirmed', t.main[0]!))!);
    expect([u.version, Number(u.sentAt)]).toEqual([1, NOW - DAY]);
    // Opening again changes nothing.
    expect(await ensureLayout(again, createContext())).toBe(false);
    await again.close();
  });
});

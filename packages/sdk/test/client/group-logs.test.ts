/**
 * GroupLogs (groups/store.ts): decoded group logs kept in memory across messages, validated by the
 * stamp stored with every log — never a stale state. Real memory and SQLite storages, real logs.
 * And the layout-3 → 4 migration: a storage written before stamps existed gets them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { GroupLog } from '@meshwhisper/crypto';
import { AccountKeyPair, DeviceKeyPair, createContext, createGroup, equalBytes, proposeGroupOperation, serializeGroupLog, toHex } from '@meshwhisper/crypto';
import { StoredClientLayoutSchema, create, fromBinary, toBinary } from '@meshwhisper/protocol';
import { GroupLogs, GroupTable, findMember, listsDevice, removedDevices } from '../../src/client/groups/store.js';
import { CLIENT_LAYOUT_VERSION, ensureLayout } from '../../src/client/layout.js';
import type { ProtocolStorage } from '../../src/index.js';
import { memoryStorage, openSqliteStorage } from '../../src/index.js';
import { asStorageTx } from '../../src/storage/types.js';

const ctx = createContext();
const work = mkdtempSync(join(tmpdir(), 'mw-sdk-group-logs-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const alice = { account: AccountKeyPair.generate(ctx).publicKey, device: DeviceKeyPair.generate(ctx) };
const bob = { account: AccountKeyPair.generate(ctx).publicKey, device: DeviceKeyPair.generate(ctx) };

/** A group of alice and bob, then renamed `names` in turn: one log per step. */
function logs(...names: string[]): GroupLog[] {
  let log = createGroup(ctx, { signer: alice.device, account: alice.account, name: 'first', members: [{ account: bob.account, devices: [bob.device.signingPublicKey] }] }).log;
  const out = [log];
  for (const name of names) {
    log = proposeGroupOperation(ctx, log, { signer: alice.device, account: alice.account, body: { type: 'rename', name } }).log;
    out.push(log);
  }
  return out;
}

const kinds: [string, () => Promise<ProtocolStorage>][] = [
  ['memory', () => memoryStorage()],
  ['sqlite', () => openSqliteStorage({ path: join(work, `${Math.random().toString(36).slice(2)}.db`) })],
];

describe.each(kinds)('GroupLogs on %s storage', (_kind, open) => {
  it('decodes a log once and serves it again while the stored stamp is unchanged', async () => {
    const s = await open();
    const [l1] = logs();
    await new GroupLogs(ctx).save(s, l1!);
    const a = new GroupLogs(ctx);
    const first = await a.load(s, l1!.state.groupId);
    expect(first?.state.digest).toEqual(l1!.state.digest);
    // The same object: not decoded again (decoding re-verifies every operation and folds the state).
    expect(await a.load(s, l1!.state.groupId)).toBe(first);
    expect(await s.getItem(GroupTable.Stamp, toHex(l1!.state.groupId))).toEqual(ctx.backend.sha256(serializeGroupLog(l1!)));
    await s.close();
  });

  it('never serves a log another client on the same storage has replaced', async () => {
    const s = await open();
    const [l1, l2, l3] = logs('second', 'third');
    const a = new GroupLogs(ctx);
    const b = new GroupLogs(ctx);
    await a.save(s, l1!);
    expect((await b.load(s, l1!.state.groupId))?.state.name).toBe('first');
    await b.save(s, l2!);
    expect((await a.load(s, l1!.state.groupId))?.state.name).toBe('second');
    await s.transaction(async (tx) => b.save(asStorageTx(tx), l3!));
    expect((await a.load(s, l1!.state.groupId))?.state.name).toBe('third');
    await s.close();
  });

  it('a log saved in a transaction that rolls back is not served afterwards', async () => {
    const s = await open();
    const [l1, l2] = logs('second');
    const a = new GroupLogs(ctx);
    await a.save(s, l1!);
    await expect(
      s.transaction(async (tx) => {
        const stx = asStorageTx(tx);
        await a.save(stx, l2!);
        expect((await a.load(stx, l1!.state.groupId))?.state.name).toBe('second'); // inside: the new one
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    expect((await a.load(s, l1!.state.groupId))?.state.name).toBe('first');
    await s.close();
  });

  it('a log written without its stamp (as an archive restore does) is decoded from its bytes, not taken from memory', async () => {
    const s = await open();
    const [l1, l2] = logs('second');
    const a = new GroupLogs(ctx);
    await a.save(s, l1!);
    expect((await a.load(s, l1!.state.groupId))?.state.name).toBe('first');
    const k = toHex(l1!.state.groupId);
    await s.transaction(async (tx) => {
      await tx.setItem(GroupTable.Log, k, serializeGroupLog(l2!));
      await tx.deleteItem(GroupTable.Stamp, k);
    });
    const got = await a.load(s, l1!.state.groupId);
    expect(got?.state.name).toBe('second');
    expect(await a.load(s, l1!.state.groupId)).not.toBe(got); // no stamp: nothing kept
    await s.close();
  });

  it('a stamp that does not match the stored bytes is not trusted', async () => {
    const s = await open();
    const [l1, l2] = logs('second');
    const a = new GroupLogs(ctx);
    await a.save(s, l1!);
    const k = toHex(l1!.state.groupId);
    // Bytes replaced, the old stamp left behind: the next load decodes, and keeps nothing.
    await s.setItem(GroupTable.Log, k, serializeGroupLog(l2!));
    const fresh = new GroupLogs(ctx);
    const got = await fresh.load(s, l1!.state.groupId);
    expect(got?.state.name).toBe('second');
    expect(await fresh.load(s, l1!.state.groupId)).not.toBe(got);
    await s.close();
  });
});

describe('member lookups', () => {
  it('listsDevice: exactly the devices the state lists under their account', () => {
    const [l1] = logs();
    const st = l1!.state;
    expect(listsDevice(st, alice.account, alice.device.signingPublicKey)).toBe(true);
    expect(listsDevice(st, bob.account, bob.device.signingPublicKey)).toBe(true);
    expect(listsDevice(st, alice.account, bob.device.signingPublicKey)).toBe(false); // bob's device under alice's account
    expect(listsDevice(st, bob.account, alice.device.signingPublicKey)).toBe(false);
    expect(listsDevice(st, AccountKeyPair.generate(ctx).publicKey, bob.device.signingPublicKey)).toBe(false);
  });

  it('findMember finds every member of a 300-member state by binary search, and no one else', () => {
    const others = Array.from({ length: 299 }, () => ({ account: AccountKeyPair.generate(ctx).publicKey, devices: [DeviceKeyPair.generate(ctx).signingPublicKey] }));
    const st = createGroup(ctx, { signer: alice.device, account: alice.account, name: 'many', members: others }).log.state;
    expect(st.members).toHaveLength(300);
    for (const m of st.members) expect(findMember(st, m.account)).toBe(m);
    for (let i = 0; i < 50; i++) expect(findMember(st, AccountKeyPair.generate(ctx).publicKey)).toBeUndefined();
  });

  it('removedDevices: a kicked member\'s devices; a device that moved to another account is not removed', () => {
    const carol = { account: AccountKeyPair.generate(ctx).publicKey, device: DeviceKeyPair.generate(ctx) };
    const g = createGroup(ctx, { signer: alice.device, account: alice.account, name: 'k', members: [{ account: bob.account, devices: [bob.device.signingPublicKey] }, { account: carol.account, devices: [carol.device.signingPublicKey] }] }).log;
    const kicked = proposeGroupOperation(ctx, g, { signer: alice.device, account: alice.account, body: { type: 'kick', account: carol.account } }).log;
    expect(removedDevices(g.state, kicked.state)).toEqual([carol.device.signingPublicKey]);
    expect(removedDevices(kicked.state, g.state)).toEqual([]);
    // Hand-made states: carol's device now listed under bob.
    const moved = { ...kicked.state, members: kicked.state.members.map((m) => (equalBytes(m.account, bob.account) ? { ...m, devices: [...m.devices, carol.device.signingPublicKey] } : m)) };
    expect(removedDevices(g.state, moved)).toEqual([]);
  });
});

describe('client layout 3 → 4', () => {
  it('a storage written before group stamps existed gets a stamp for every group log at open, and its logs are then kept decoded', async () => {
    const path = join(work, 'layout3.db');
    const s = await openSqliteStorage({ path });
    const [l1] = logs();
    const [other] = logs('x');
    // What an SDK of layout 3 wrote: the logs, no stamps, the layout marker at 3.
    await s.setItem(GroupTable.Log, toHex(l1!.state.groupId), serializeGroupLog(l1!));
    await s.setItem(GroupTable.Log, toHex(other!.state.groupId), serializeGroupLog(other!));
    await s.setItem('mw.self', 'layout', toBinary(StoredClientLayoutSchema, create(StoredClientLayoutSchema, { version: 3 })));
    await s.close();

    const again = await openSqliteStorage({ path });
    expect(await ensureLayout(again, ctx)).toBe(true);
    expect(fromBinary(StoredClientLayoutSchema, (await again.getItem('mw.self', 'layout'))!).version).toBe(CLIENT_LAYOUT_VERSION);
    expect(CLIENT_LAYOUT_VERSION).toBe(4);
    for (const l of [l1!, other!]) expect(await again.getItem(GroupTable.Stamp, toHex(l.state.groupId))).toEqual(ctx.backend.sha256(serializeGroupLog(l)));
    const a = new GroupLogs(ctx);
    const got = await a.load(again, l1!.state.groupId);
    expect(got?.state.digest).toEqual(l1!.state.digest);
    expect(await a.load(again, l1!.state.groupId)).toBe(got);
    expect(await ensureLayout(again, ctx)).toBe(false);
    await again.close();
  });
});

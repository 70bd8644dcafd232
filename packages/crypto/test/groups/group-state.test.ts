/**
 * Group state (docs/spec/groups.md §G4): signed control operations, authorization, admin transfer,
 * admin-less groups, the successor rule, removal-wins against concurrent and back-dated operations,
 * pending operations, storage.
 */
import { describe, expect, it } from 'vitest';
import { toHex } from '../../src/bytes.js';
import { MAX_PENDING_GROUP_OPS } from '../../src/constants.js';
import type { GroupLog } from '../../src/group-state.js';
import {
  GroupPolicy,
  createGroup,
  decodeGroupOperation,
  deserializeGroupLog,
  diffGroupStates,
  openGroup,
  receiveGroupOperation,
  serializeGroupLog,
  signGroupOperation,
} from '../../src/group-state.js';
import { DeviceKeyPair } from '../../src/keys.js';
import { testContext } from '../_fixtures.js';
import type { Person } from './_group.js';
import { act, codeOf, deliver, entry, person, summary } from './_group.js';

const ctx = testContext('group-state-tests');
const alice = person(ctx, 'alice', 2);
const bob = person(ctx, 'bob');
const carol = person(ctx, 'carol');
const dave = person(ctx, 'dave');
const people = [alice, bob, carol, dave];

function start(policy: GroupPolicy = GroupPolicy.Admins, members: Person[] = [bob, carol]): { log: GroupLog; create: Uint8Array } {
  const r = createGroup(ctx, { signer: alice.devices[0]!, account: alice.account, authorDevices: entry(alice).devices, name: 'Book club', policy, members: members.map(entry) });
  return { log: r.log, create: r.operation };
}

describe('group operations: authorization', () => {
  it('create: the creator is the admin; everyone listed is a member with their devices', () => {
    const { log } = start();
    expect(summary(log.state, people)).toBe('Book club [admins] alice* bob carol');
    expect(log.state.members.find((m) => toHex(m.account) === toHex(alice.account))!.devices.length).toBe(2);
    expect(log.state.version).toBe(1);
  });

  it('a non-admin cannot kick, rename, add or promote in an admin-ful group (GROUP_NOT_AUTHORIZED, nothing changes)', () => {
    const { log } = start();
    for (const body of [
      { type: 'kick', account: carol.account },
      { type: 'rename', name: 'Bob’s club' },
      { type: 'add', member: entry(dave) },
      { type: 'promote', account: bob.account },
      { type: 'makeAdminLess' },
    ] as const) {
      expect(codeOf(() => act(ctx, log, bob, body)), body.type).toBe('MW_CRYPTO_GROUP_NOT_AUTHORIZED');
    }
    expect(summary(log.state, people)).toBe('Book club [admins] alice* bob carol');
    // Signed anyway and delivered: stored, identical everywhere, and without effect.
    const forced = signGroupOperation(ctx, { signer: bob.devices[0]!, account: bob.account, groupId: log.state.groupId, parents: log.state.heads, body: { type: 'kick', account: carol.account } });
    const r = receiveGroupOperation(ctx, log, forced);
    expect(r.status).toBe('accepted');
    expect(r.tookEffect).toBe(false);
    expect(summary(r.log.state, people)).toBe('Book club [admins] alice* bob carol');
  });

  it('an admin adds, kicks and renames, from either of her devices; events are typed; kicks ask for a rekey', () => {
    let { log } = start();
    const before = log.state;
    log = act(ctx, log, alice, { type: 'add', member: entry(dave) }).log;
    log = act(ctx, log, alice, { type: 'rename', name: 'Readers' }, 1).log;
    log = act(ctx, log, alice, { type: 'kick', account: carol.account }).log;
    expect(summary(log.state, people)).toBe('Readers [admins] alice* bob dave');
    const d = diffGroupStates(before, log.state);
    expect(d.events.map((e) => e.type).sort()).toEqual(['memberAdded', 'memberRemoved', 'renamed']);
    expect(d.requiresRekey).toBe(true);
    expect(codeOf(() => act(ctx, log, carol, { type: 'leave' }))).toBe('MW_CRYPTO_GROUP_NOT_AUTHORIZED');
  });

  it('a member claiming another member’s account is refused (the device must be listed under that account)', () => {
    const { log } = start();
    const asAlice = signGroupOperation(ctx, { signer: bob.devices[0]!, account: alice.account, groupId: log.state.groupId, parents: log.state.heads, body: { type: 'kick', account: carol.account } });
    const r = receiveGroupOperation(ctx, log, asAlice);
    expect(r.tookEffect).toBe(false);
    expect(summary(r.log.state, people)).toBe('Book club [admins] alice* bob carol');
    // A signature by another key than the author device it names: BAD_SIGNATURE.
    const bad = asAlice.slice();
    bad.set(alice.devices[0]!.signingPublicKey, 1 + 32 + 32);
    expect(codeOf(() => receiveGroupOperation(ctx, log, bad))).toBe('MW_CRYPTO_BAD_SIGNATURE');
  });

  it('a non-member with the group id (and even the heads) is refused and nothing is stored', () => {
    const { log } = start();
    const mallory = person(ctx, 'mallory');
    const op = signGroupOperation(ctx, { signer: mallory.devices[0]!, account: mallory.account, groupId: log.state.groupId, parents: log.state.heads, body: { type: 'rename', name: 'pwned' } });
    expect(codeOf(() => receiveGroupOperation(ctx, log, op))).toBe('MW_CRYPTO_GROUP_NOT_AUTHORIZED');
    const other = signGroupOperation(ctx, { signer: bob.devices[0]!, account: bob.account, groupId: ctx.random(32), parents: log.state.heads, body: { type: 'leave' } });
    expect(codeOf(() => receiveGroupOperation(ctx, log, other))).toBe('MW_CRYPTO_GROUP_MISMATCH');
    expect(log.state.version).toBe(1);
  });

  it('admin transfer: the new admin may manage, the old one no longer may', () => {
    let { log } = start();
    log = act(ctx, log, alice, { type: 'transferAdmin', account: bob.account }).log;
    expect(summary(log.state, people)).toBe('Book club [admins] alice bob* carol');
    expect(codeOf(() => act(ctx, log, alice, { type: 'rename', name: 'x' }))).toBe('MW_CRYPTO_GROUP_NOT_AUTHORIZED');
    log = act(ctx, log, bob, { type: 'promote', account: carol.account }).log;
    log = act(ctx, log, carol, { type: 'kick', account: alice.account }).log;
    expect(summary(log.state, people)).toBe('Book club [admins] bob* carol*');
  });

  it('admin-less: every member adds and renames; nobody can kick; removal means leaving', () => {
    let { log } = start();
    log = act(ctx, log, alice, { type: 'makeAdminLess' }).log;
    expect(summary(log.state, people)).toBe('Book club [admin-less] alice bob carol');
    log = act(ctx, log, bob, { type: 'rename', name: 'Everyone’s' }).log;
    log = act(ctx, log, carol, { type: 'add', member: entry(dave) }).log;
    for (const p of [alice, bob, dave]) expect(codeOf(() => act(ctx, log, p, { type: 'kick', account: carol.account }))).toBe('MW_CRYPTO_GROUP_NOT_AUTHORIZED');
    expect(codeOf(() => act(ctx, log, bob, { type: 'promote', account: bob.account }))).toBe('MW_CRYPTO_GROUP_NOT_AUTHORIZED');
    log = act(ctx, log, carol, { type: 'leave' }).log;
    expect(summary(log.state, people)).toBe('Everyone’s [admin-less] alice bob dave');
  });

  it('last admin leaves: the longest-standing member becomes admin (create order, then join order)', () => {
    let { log } = start();
    log = act(ctx, log, alice, { type: 'add', member: entry(dave) }).log;
    log = act(ctx, log, alice, { type: 'leave' }).log;
    // bob and carol joined with the create operation; the one listed first (ascending account key) succeeds.
    const first = [bob, carol].sort((a, b) => (toHex(a.account) < toHex(b.account) ? -1 : 1))[0]!;
    const expected = [`${first.name}*`, ...[bob, carol, dave].filter((p) => p !== first).map((p) => p.name)].sort();
    expect(summary(log.state, people)).toBe(`Book club [admins] ${expected.join(' ')}`);
    expect(diffGroupStates(undefined, log.state).requiresRekey).toBe(false);
  });

  it('a member updates its own devices; the dropped device can no longer act and a rekey is asked for', () => {
    let { log } = start();
    const before = log.state;
    const r = act(ctx, log, alice, { type: 'setDevices', devices: [alice.devices[0]!.signingPublicKey] });
    log = r.log;
    expect(diffGroupStates(before, log.state).requiresRekey).toBe(true);
    expect(codeOf(() => act(ctx, log, alice, { type: 'rename', name: 'x' }, 1))).toBe('MW_CRYPTO_GROUP_NOT_AUTHORIZED');
    // Claiming a device listed under another member is refused.
    expect(codeOf(() => act(ctx, log, bob, { type: 'setDevices', devices: [alice.devices[0]!.signingPublicKey] }))).toBe('MW_CRYPTO_GROUP_NOT_AUTHORIZED');
  });
});

describe('group operations: concurrency', () => {
  it('removal wins over concurrent operations of the removed member', () => {
    let { log } = start();
    log = act(ctx, log, alice, { type: 'promote', account: bob.account }).log;
    const fork = log;
    const kick = act(ctx, fork, alice, { type: 'kick', account: bob.account });
    const rename = act(ctx, fork, bob, { type: 'rename', name: 'Bob was here' });
    const a = deliver(ctx, kick.log, rename.operation);
    const b = deliver(ctx, rename.log, kick.operation);
    expect(toHex(a.state.digest)).toBe(toHex(b.state.digest));
    expect(summary(a.state, people)).toBe('Book club [admins] alice* carol');
  });

  it('a kicked member cannot back-date: an operation naming old parents is concurrent with the kick and has no effect', () => {
    const { log: l0 } = start();
    const l1 = act(ctx, l0, alice, { type: 'promote', account: bob.account }).log;
    const old = l1.state.heads;
    const l2 = act(ctx, l1, alice, { type: 'kick', account: bob.account }).log;
    const backdated = signGroupOperation(ctx, { signer: bob.devices[0]!, account: bob.account, groupId: l2.state.groupId, parents: old, body: { type: 'add', member: entry(dave) } });
    const r = receiveGroupOperation(ctx, l2, backdated);
    expect(r.status).toBe('accepted');
    expect(r.tookEffect).toBe(false);
    expect(summary(r.log.state, people)).toBe('Book club [admins] alice* carol');
  });

  it('two admins kicking each other at once cancel out (both stay), identically in both delivery orders', () => {
    let { log } = start();
    log = act(ctx, log, alice, { type: 'promote', account: bob.account }).log;
    const k1 = act(ctx, log, alice, { type: 'kick', account: bob.account });
    const k2 = act(ctx, log, bob, { type: 'kick', account: alice.account });
    const a = deliver(ctx, k1.log, k2.operation);
    const b = deliver(ctx, k2.log, k1.operation);
    expect(toHex(a.state.digest)).toBe(toHex(b.state.digest));
    expect(summary(a.state, people)).toBe('Book club [admins] alice* bob* carol');
  });

  it('leaving from two devices at once still leaves', () => {
    const { log } = start();
    const l1 = act(ctx, log, alice, { type: 'leave' }, 0);
    const l2 = act(ctx, log, alice, { type: 'leave' }, 1);
    const s = deliver(ctx, l1.log, l2.operation).state;
    expect(s.members.some((m) => toHex(m.account) === toHex(alice.account))).toBe(false);
    expect(toHex(s.digest)).toBe(toHex(deliver(ctx, l2.log, l1.operation).state.digest));
  });

  it('operations whose parents are missing wait, then join; the buffer is bounded', () => {
    const { log, create } = start();
    const o1 = act(ctx, log, alice, { type: 'add', member: entry(dave) });
    const o2 = act(ctx, o1.log, dave, { type: 'leave' });
    let late = openGroup(ctx, create);
    const r = receiveGroupOperation(ctx, late, o2.operation);
    expect(r.status).toBe('pending');
    late = receiveGroupOperation(ctx, r.log, o1.operation).log;
    expect(late.pendingCount).toBe(0);
    expect(toHex(late.state.digest)).toBe(toHex(o2.log.state.digest));
    expect(receiveGroupOperation(ctx, late, o1.operation).status).toBe('duplicate');
    let full = openGroup(ctx, create);
    const orphanParent = [new Uint8Array(32).fill(9)];
    for (let i = 0; i < MAX_PENDING_GROUP_OPS; i++) {
      full = receiveGroupOperation(ctx, full, signGroupOperation(ctx, { signer: bob.devices[0]!, account: bob.account, groupId: log.state.groupId, parents: orphanParent, body: { type: 'rename', name: `n${i}` } })).log;
    }
    const one = signGroupOperation(ctx, { signer: bob.devices[0]!, account: bob.account, groupId: log.state.groupId, parents: orphanParent, body: { type: 'leave' } });
    expect(codeOf(() => receiveGroupOperation(ctx, full, one))).toBe('MW_CRYPTO_LIMIT_EXCEEDED');
  });

  it('concurrentWithListings: an add and an operation concurrent with it, reported to their authors only, once, when one of them is new', () => {
    const { log } = start();
    const promoted = act(ctx, log, alice, { type: 'promote', account: bob.account });
    const base = deliver(ctx, log, promoted.operation);
    // bob adds dave while alice (not knowing it) renames; carol holds both.
    const add = act(ctx, base, bob, { type: 'add', member: entry(dave) });
    const rename = act(ctx, promoted.log, alice, { type: 'rename', name: 'concurrent' });
    const bobLog = deliver(ctx, add.log, rename.operation);
    const bobPairs = bobLog.concurrentWithListings(add.log, bob.devices[0]!.signingPublicKey);
    expect(bobPairs.length).toBe(1);
    expect(bobPairs[0]!.devices.map(toHex)).toEqual(entry(dave).devices.map(toHex));
    expect(toHex(bobPairs[0]!.account)).toBe(toHex(dave.account));
    expect(bobPairs[0]!.concurrent.map((o) => toHex(decodeGroupOperation(ctx, o).id))).toEqual([toHex(decodeGroupOperation(ctx, rename.operation).id)]);
    // alice, the rename's author, when the add arrives.
    const aliceLog = deliver(ctx, rename.log, add.operation);
    expect(aliceLog.concurrentWithListings(rename.log, alice.devices[0]!.signingPublicKey).length).toBe(1);
    // Nothing new: nothing to report (no echo when the same operations come again).
    expect(aliceLog.concurrentWithListings(aliceLog, alice.devices[0]!.signingPublicKey)).toEqual([]);
    // carol authored neither.
    const carolLog = deliver(ctx, base, add.operation, rename.operation);
    expect(carolLog.concurrentWithListings(base, carol.devices[0]!.signingPublicKey)).toEqual([]);
    // Causally ordered (the rename saw the add): nothing to pass on.
    const after = act(ctx, add.log, bob, { type: 'rename', name: 'after the add' });
    expect(after.log.concurrentWithListings(add.log, bob.devices[0]!.signingPublicKey)).toEqual([]);
  });
});

describe('group operations: encoding and storage', () => {
  it('a log survives serialisation with the same state; corrupt bytes fail with codes', () => {
    let { log } = start();
    log = act(ctx, log, alice, { type: 'add', member: entry(dave) }).log;
    log = act(ctx, log, alice, { type: 'transferAdmin', account: carol.account }).log;
    const back = deserializeGroupLog(ctx, serializeGroupLog(log));
    expect(toHex(back.state.digest)).toBe(toHex(log.state.digest));
    expect(back.state.version).toBe(log.state.version);
    const bytes = serializeGroupLog(log);
    expect(codeOf(() => deserializeGroupLog(ctx, bytes.slice(0, -1)))).toBe('MW_CRYPTO_MALFORMED');
    const flipped = bytes.slice();
    flipped[bytes.length - 10]! ^= 1;
    expect(codeOf(() => deserializeGroupLog(ctx, flipped))).toBe('MW_CRYPTO_BAD_SIGNATURE');
    expect(codeOf(() => deserializeGroupLog(ctx, Uint8Array.of(7)))).toBe('MW_CRYPTO_UNSUPPORTED_VERSION');
  });

  it('decoding refuses unknown versions and types, unsorted parents, trailing bytes, bad names', () => {
    const { create } = start();
    const o = decodeGroupOperation(ctx, create);
    expect(o.body.type).toBe('create');
    const v = create.slice();
    v[0] = 9;
    expect(codeOf(() => decodeGroupOperation(ctx, v))).toBe('MW_CRYPTO_UNSUPPORTED_VERSION');
    expect(codeOf(() => decodeGroupOperation(ctx, create.slice(0, 50)))).toBe('MW_CRYPTO_MALFORMED');
    expect(codeOf(() => decodeGroupOperation(ctx, new Uint8Array([...create, 0])))).toBe('MW_CRYPTO_MALFORMED');
    const signer = DeviceKeyPair.generate(ctx);
    expect(() => signGroupOperation(ctx, { signer, account: bob.account, groupId: ctx.random(32), parents: [ctx.random(32)], body: { type: 'rename', name: '' } })).toThrow(RangeError);
    expect(() => signGroupOperation(ctx, { signer, account: bob.account, groupId: ctx.random(32), parents: [], body: { type: 'leave' } })).toThrow(RangeError);
    expect(codeOf(() => receiveGroupOperation(ctx, openGroup(ctx, create), create))).toBe('ok');
    const second = createGroup(ctx, { signer: alice.devices[0]!, account: alice.account, name: 'x', groupId: o.groupId }).operation;
    expect(codeOf(() => receiveGroupOperation(ctx, openGroup(ctx, create), second))).toBe('MW_CRYPTO_MALFORMED');
  });
});

/**
 * Rejoin (docs/spec/groups.md §G4.1 type 10, §G4.4): a device restored from the archive, holding
 * the account key but none of its account's old devices, replaces its account's devices in a group.
 */
import { describe, expect, it } from 'vitest';
import { toHex } from '../../src/bytes.js';
import { GroupPolicy, createGroup, decodeGroupOperation, deserializeGroupLog, proposeGroupOperation, receiveGroupOperation, serializeGroupLog, signGroupOperation } from '../../src/group-state.js';
import { AccountKeyPair, DeviceKeyPair } from '../../src/keys.js';
import { testContext } from '../_fixtures.js';
import { act, codeOf, deliver, entry, person, summary } from './_group.js';

const ctx = testContext('group-rejoin-tests');
const alice = person(ctx, 'alice');
const bob = person(ctx, 'bob');
const mKey = AccountKeyPair.generate(ctx);
const mira = { name: 'mira', account: mKey.publicKey, devices: [DeviceKeyPair.generate(ctx)] };
const people = [alice, bob, mira];
const restored = DeviceKeyPair.generate(ctx);

function start() {
  return createGroup(ctx, { signer: alice.devices[0]!, account: alice.account, name: 'Club', policy: GroupPolicy.Admins, members: [entry(bob), entry(mira)] });
}
const devicesOf = (log: { state: { members: readonly { account: Uint8Array; devices: readonly Uint8Array[] }[] } }, account: Uint8Array): string[] =>
  log.state.members.find((m) => toHex(m.account) === toHex(account))!.devices.map(toHex);

describe('rejoin: set devices signed by the account key', () => {
  it('a device new to the group, signing with its account key, replaces its account devices; everyone converges; the old device is out (rekey)', () => {
    const { log } = start();
    const r = proposeGroupOperation(ctx, log, { signer: restored, account: mira.account, accountSigner: mKey, body: { type: 'rejoin', devices: [restored.signingPublicKey] } });
    expect(devicesOf(r.log, mira.account)).toEqual([toHex(restored.signingPublicKey)]);
    expect(r.requiresRekey).toBe(true);
    const d = decodeGroupOperation(ctx, r.operation);
    expect(d.body.type).toBe('rejoin');
    const atBob = receiveGroupOperation(ctx, log, r.operation);
    expect(atBob.tookEffect).toBe(true);
    expect(toHex(atBob.log.state.digest)).toBe(toHex(r.log.state.digest));
    expect(toHex(deserializeGroupLog(ctx, serializeGroupLog(atBob.log)).state.digest)).toBe(toHex(r.log.state.digest));
    // The rejoined device now acts as a member device (ordinary operations).
    const after = act(ctx, r.log, { ...mira, devices: [restored] }, { type: 'leave' });
    expect(summary(after.log.state, people)).toBe('Club [admins] alice* bob');
  });

  it('refused: signed by another account key (BAD_SIGNATURE), by a device without the account key (TypeError), or not listing its author device', () => {
    const { log } = start();
    const stranger = AccountKeyPair.generate(ctx);
    expect(() => signGroupOperation(ctx, { signer: restored, account: mira.account, groupId: log.state.groupId, parents: log.state.heads, body: { type: 'rejoin', devices: [restored.signingPublicKey] } })).toThrow(TypeError);
    expect(() => signGroupOperation(ctx, { signer: restored, account: mira.account, accountSigner: stranger, groupId: log.state.groupId, parents: log.state.heads, body: { type: 'rejoin', devices: [restored.signingPublicKey] } })).toThrow(TypeError);
    // A forged account signature: sign as the stranger's account, then swap the author account bytes to mira's.
    const forged = signGroupOperation(ctx, { signer: restored, account: stranger.publicKey, accountSigner: stranger, groupId: log.state.groupId, parents: log.state.heads, body: { type: 'rejoin', devices: [restored.signingPublicKey] } });
    const swapped = forged.slice();
    swapped.set(mira.account, 33);
    expect(codeOf(() => receiveGroupOperation(ctx, log, swapped))).toBe('MW_CRYPTO_BAD_SIGNATURE');
    // The stranger's own rejoin verifies but is not a member: stored without effect.
    const r = receiveGroupOperation(ctx, log, forged);
    expect(r.tookEffect).toBe(false);
    expect(summary(r.log.state, people)).toBe('Club [admins] alice* bob mira');
    expect(() => signGroupOperation(ctx, { signer: restored, account: mira.account, accountSigner: mKey, groupId: log.state.groupId, parents: log.state.heads, body: { type: 'rejoin', devices: [DeviceKeyPair.generate(ctx).signingPublicKey] } })).toThrow(RangeError);
    // A device that is not in the group cannot use an ordinary set-devices (needs the account signature).
    const plain = signGroupOperation(ctx, { signer: restored, account: mira.account, groupId: log.state.groupId, parents: log.state.heads, body: { type: 'setDevices', devices: [restored.signingPublicKey] } });
    expect(codeOf(() => receiveGroupOperation(ctx, log, plain))).toBe('MW_CRYPTO_GROUP_NOT_AUTHORIZED');
  });

  it('a kicked account cannot rejoin (not a member), and a rejoin concurrent with a kick of its account is dropped (removal wins)', () => {
    const { log } = start();
    const kick = act(ctx, log, alice, { type: 'kick', account: mira.account });
    const late = proposeGroupOperation(ctx, log, { signer: restored, account: mira.account, accountSigner: mKey, body: { type: 'rejoin', devices: [restored.signingPublicKey] } });
    const both1 = deliver(ctx, kick.log, late.operation);
    const both2 = deliver(ctx, late.log, kick.operation);
    expect(summary(both1.state, people)).toBe('Club [admins] alice* bob');
    expect(toHex(both2.state.digest)).toBe(toHex(both1.state.digest));
    expect(codeOf(() => proposeGroupOperation(ctx, kick.log, { signer: restored, account: mira.account, accountSigner: mKey, body: { type: 'rejoin', devices: [restored.signingPublicKey] } }))).toBe('MW_CRYPTO_GROUP_NOT_AUTHORIZED');
  });
});

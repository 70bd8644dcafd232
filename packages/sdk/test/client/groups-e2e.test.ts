/**
 * Groups end to end over a real node (real sockets, a SQLite file per device): five accounts, one
 * of them with two devices, one offline for the whole first half (its client closed, its SQLite file
 * kept). First half: create, messages from three members, a promotion, two admins renaming at once
 * (from different accounts, concurrently), a kick. Second half: the offline member starts again
 * from its file and catches up — the log, the keys, every message sent to it while it was away, in
 * order —, every device converges to the same state digest, it sends, and everyone (both devices of
 * the two-device account included) has the same conversation; the kicked member has nothing after
 * its removal.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toHex } from '@meshwhisper/crypto';
import type { ProtocolStorage } from '../../src/index.js';
import { MeshWhisper, openSqliteStorage } from '../../src/index.js';
import type { E2eNode } from './test-node.js';
import { addAccountDevice, startE2eNode } from './test-node.js';

let t: E2eNode;
const work = mkdtempSync(join(tmpdir(), 'mw-sdk-groups-e2e-'));
beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  await t?.close();
  rmSync(work, { recursive: true, force: true });
});

const open = (name: string): Promise<ProtocolStorage> => openSqliteStorage({ path: join(work, `${name}.sqlite`) });
const start = (storage: ProtocolStorage): Promise<MeshWhisper> => MeshWhisper.create({ node: t.url, namespace: 'test', storage, receiptDelay: { minDelayMs: 0, maxDelayMs: 50 } });

/** Waits (on events, no sleeps) until `c` holds the group with `digest`. */
async function converged(c: MeshWhisper, groupId: Uint8Array, digest: string, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const info = await c.groups.info(groupId);
    if (info?.digest === digest) return;
    if (Date.now() > until) throw new Error(`not converged: ${info?.digest ?? 'no group'} ≠ ${digest}`);
    await c.once('groupChange', () => true, Math.max(100, until - Date.now())).catch(() => undefined);
  }
}

/** Waits until `c`'s history of the group holds every text of `want`. */
async function hasTexts(c: MeshWhisper, groupId: Uint8Array, want: string[], timeoutMs = 60_000): Promise<string[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const got = (await c.history({ kind: 'group', groupId })).map((m) => m.text ?? '');
    if (want.every((w) => got.includes(w))) return got;
    if (Date.now() > until) throw new Error(`missing ${want.filter((w) => !got.includes(w)).join(', ')}; have ${got.join(', ')}`);
    await c.once('message', () => true, Math.max(100, until - Date.now())).catch(() => undefined);
  }
}

describe('groups end to end: 5 accounts, one with 2 devices, one offline for the first half', () => {
  it('everyone converges and reads the same conversation; the offline member catches up; the kicked member has nothing after its removal', async () => {
    const alice1 = await start(await open('alice1'));
    const a2store = await open('alice2');
    await addAccountDevice(alice1, a2store);
    const alice2 = await start(a2store);
    const [bob, carol, dave] = [await start(await open('bob')), await start(await open('carol')), await start(await open('dave'))];
    // Erin registers, then goes offline for the first half.
    let erin = await start(await open('erin'));
    const erinAccount = erin.accountKey;
    await erin.close();

    // ── First half (erin offline) ──
    const online = [alice2, bob, carol, dave];
    const joined = Promise.all(online.map((c) => c.once('groupChange', (e) => e.change.type === 'joined', 60_000)));
    const g = await alice1.groups.create('five', [bob.accountKey, carol.accountKey, dave.accountKey, erinAccount]);
    const groupId = g.groupId;
    const to = { kind: 'group' as const, groupId };
    await joined;
    expect(g.members.length).toBe(5);
    expect(g.members.find((m) => toHex(m.accountKey) === toHex(alice1.accountKey))!.devices.length).toBe(2);

    const firstHalf: string[] = [];
    for (const [c, text] of [
      [alice1, 'm1 from alice (device 1)'],
      [bob, 'm2 from bob'],
      [carol, 'm3 from carol'],
    ] as const) {
      await c.sendText(to, text);
      firstHalf.push(text);
    }
    for (const c of [alice1, alice2, bob, carol, dave]) await hasTexts(c, groupId, firstHalf);

    // Two admins at once: bob is promoted, then bob and alice rename concurrently (neither has seen
    // the other's rename when proposing); all devices must agree on one winner.
    let info = await alice1.groups.promote(groupId, bob.accountKey);
    await converged(bob, groupId, info.digest);
    await Promise.all([alice1.groups.rename(groupId, 'five (alice)'), bob.groups.rename(groupId, 'five (bob)')]);
    // Alice kicks dave.
    const daveOut = dave.once('groupChange', (e) => e.change.type === 'memberRemoved' && toHex(e.change.accountKey) === toHex(dave.accountKey), 60_000);
    await alice1.groups.kick(groupId, dave.accountKey);
    await daveOut;
    // Wait for the online devices to hold the same operations: every device's digest is the same.
    const until = Date.now() + 60_000;
    for (;;) {
      const digests = await Promise.all([alice1, alice2, bob, carol].map(async (c) => (await c.groups.info(groupId))!.digest));
      if (new Set(digests).size === 1 && (await alice1.groups.info(groupId))!.version === (await bob.groups.info(groupId))!.version) break;
      if (Date.now() > until) throw new Error(`online devices did not converge: ${digests.join(' ')}`);
      await Promise.race([alice1, alice2, bob, carol].map((c) => c.once('groupChange', () => true, 2_000).catch(() => undefined)));
    }
    info = (await carol.groups.info(groupId))!;
    expect(['five (alice)', 'five (bob)']).toContain(info.name);
    expect(info.members.map((m) => toHex(m.accountKey)).sort()).toEqual([alice1.accountKey, bob.accountKey, carol.accountKey, erinAccount].map(toHex).sort());
    await alice2.sendText(to, 'm4 from alice (device 2) after the kick');
    firstHalf.push('m4 from alice (device 2) after the kick');

    // ── Second half: erin comes back from her SQLite file and catches up ──
    erin = await start(await open('erin')); // close() closed the storage: the same file, opened again
    await converged(erin, groupId, info.digest);
    const erinHistory = await hasTexts(erin, groupId, firstHalf);
    expect(erinHistory).toEqual(firstHalf); // in the order they were sent
    expect((await erin.groups.info(groupId))!.name).toBe(info.name);

    await erin.sendText(to, 'm5 from erin, back online');
    const all = [...firstHalf, 'm5 from erin, back online'];
    for (const c of [alice1, alice2, bob, carol, erin]) {
      const h = await hasTexts(c, groupId, all);
      expect([...h].sort()).toEqual([...all].sort());
      expect((await c.groups.info(groupId))!.digest).toBe(info.digest);
    }
    // alice's devices file her own messages as sent by her account.
    const a2 = await alice2.history(to);
    expect(a2.filter((m) => m.outgoing).map((m) => m.text)).toEqual(['m1 from alice (device 1)', 'm4 from alice (device 2) after the kick']);
    // Dave has nothing after his removal, and cannot send.
    const daveTexts = (await dave.history(to)).map((m) => m.text);
    expect(daveTexts).toEqual(['m1 from alice (device 1)', 'm2 from bob', 'm3 from carol']);
    await expect(dave.sendText(to, 'let me back')).rejects.toMatchObject({ code: 'MW_SDK_GROUP_NOT_MEMBER' });
    await Promise.all([alice1, alice2, bob, carol, dave, erin].map((c) => c.close()));
  });
});

/**
 * A linked device and the account's groups, over a real node (docs/spec/groups.md §G6.2): once the
 * node lists the new device as registered, the linking device puts it in every group the account
 * is in (set-devices), so a message from another member reaches it without the account writing
 * first. The race: the account sends to a group right after the link, before the new device has
 * registered (it registers when it starts its client) — set-devices must not name it then (it
 * could get neither the log nor keys); it joins once registered.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toHex } from '@meshwhisper/crypto';
import { AccountDevicesSchema, fromBinary } from '@meshwhisper/protocol';
import type { E2eNode } from '../client/test-node.js';
import { startE2eNode } from '../client/test-node.js';
import { MeshWhisper, memoryStorage } from '../../src/index.js';

let t: E2eNode;
const open: MeshWhisper[] = [];
const fast = { receiptDelay: { minDelayMs: 0, maxDelayMs: 0 } };

beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  for (const c of open) await c.close();
  await t?.close();
});

async function client(): Promise<MeshWhisper> {
  const c = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...fast });
  open.push(c);
  return c;
}

const gid = (groupId: Uint8Array) => ({ kind: 'group' as const, groupId });
const texts = async (c: MeshWhisper, groupId: Uint8Array) => (await c.history(gid(groupId))).map((m) => m.text);

/** Waits until `check` holds, re-checking at each group change of `c` (and at least every 250 ms). */
async function until(c: MeshWhisper, check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await c.once('groupChange', () => true, 250).catch(() => undefined);
  }
}

/** How many devices `viewer` holds in the group for `account`. */
async function devicesIn(viewer: MeshWhisper, groupId: Uint8Array, account: Uint8Array): Promise<number> {
  const info = await viewer.groups.info(groupId);
  return info?.members.find((m) => toHex(m.accountKey) === toHex(account))?.devices.length ?? 0;
}

/** The mailbox ids the node lists as registered for `account`. */
async function registered(account: Uint8Array): Promise<string[]> {
  const res = await fetch(new URL(`/v1/accounts/${toHex(account)}/devices`, t.url));
  expect(res.status).toBe(200);
  return fromBinary(AccountDevicesSchema, new Uint8Array(await res.arrayBuffer())).mailboxIds.map(toHex);
}

/** Alice (with a group she shares with Bob) and Bob, Bob joined. */
async function aliceAndBobInAGroup(name: string): Promise<{ alice: MeshWhisper; bob: MeshWhisper; groupId: Uint8Array }> {
  const [alice, bob] = [await client(), await client()];
  const joined = bob.once('groupChange', (e) => e.change.type === 'joined', 20_000);
  const g = await alice.groups.create(name, [bob.accountKey]);
  await joined;
  return { alice, bob, groupId: g.groupId };
}

describe('a linked device and the account’s groups', () => {
  it('joins every group once registered: another member (not the account) writes first and the new device gets it', async () => {
    const { alice, bob, groupId } = await aliceAndBobInAGroup('hikers');
    const before = bob.once('message', (m) => m.text === 'before the laptop', 20_000);
    await alice.sendText(gid(groupId), 'before the laptop');
    await before;

    const offer = await MeshWhisper.createLinkOffer({ node: t.url, namespace: 'test', storage: await memoryStorage(), deviceName: 'laptop', ...fast });
    const [, linked] = await Promise.all([alice.acceptLinkOffer(offer.payload), offer.completed]);
    const alice2 = linked.client;
    open.push(alice2);

    // Alice writes nothing more: her first device syncs the group once the node lists the laptop.
    await until(alice2, async () => (await alice2.groups.info(groupId))?.isMember === true, 'the laptop is a member');
    await until(bob, async () => (await devicesIn(bob, groupId, alice.accountKey)) === 2, 'bob holds both of alice’s devices');
    const got = alice2.once('message', (m) => m.text === 'from bob', 20_000);
    await bob.sendText(gid(groupId), 'from bob');
    const m = await got;
    expect(m.outgoing).toBe(false);
    expect(toHex(m.author)).toBe(toHex(bob.accountKey));
    // It reads from its joining on only.
    expect(await texts(alice2, groupId)).toEqual(['from bob']);
  });

  it('the account sends to a group right after the link, before the new device registered: the device is not put in the group then; once registered it joins, gets the log and reads the next message from another member', async () => {
    const { alice, bob, groupId } = await aliceAndBobInAGroup('climbers');

    // Hold the new device's registration (its first key upload, PUT /v1/keys) until released.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let heldRegistration = false;
    const gatedFetch: typeof fetch = async (input, init) => {
      if (init?.method === 'PUT' && new URL(String(input)).pathname === '/v1/keys') {
        heldRegistration = true;
        await gate;
      }
      return fetch(input, init);
    };
    const offer = await MeshWhisper.createLinkOffer({ node: t.url, namespace: 'test', storage: await memoryStorage(), deviceName: 'laptop', fetch: gatedFetch, ...fast });
    const completed = offer.completed;
    const accepted = await alice.acceptLinkOffer(offer.payload);

    // The race: the laptop is on the device list but not registered with the node yet.
    expect(await registered(alice.accountKey)).not.toContain(toHex(accepted.mailboxId));
    const got = bob.once('message', (m) => m.text === 'right after the link', 20_000);
    await alice.sendText(gid(groupId), 'right after the link');
    await got;
    // Bob holds the group as alice's send left it: only her first device (the laptop could get neither log nor keys).
    expect(await devicesIn(bob, groupId, alice.accountKey)).toBe(1);
    expect(await devicesIn(alice, groupId, alice.accountKey)).toBe(1);
    expect(await registered(alice.accountKey)).not.toContain(toHex(accepted.mailboxId));

    release();
    const linked = await completed;
    expect(heldRegistration).toBe(true);
    const alice2 = linked.client;
    open.push(alice2);
    expect(await registered(alice.accountKey)).toContain(toHex(alice2.mailboxId));

    await until(alice2, async () => (await alice2.groups.info(groupId))?.isMember === true, 'the laptop is a member');
    await until(bob, async () => (await devicesIn(bob, groupId, alice.accountKey)) === 2, 'bob holds both of alice’s devices');
    const bobs = alice2.once('message', (m) => m.text === 'from bob after the race', 20_000);
    await bob.sendText(gid(groupId), 'from bob after the race');
    await bobs;
    expect(await texts(alice2, groupId)).toEqual(['from bob after the race']);
    // And the laptop writes to the group: bob and alice's first device get it.
    const back = Promise.all([bob, alice].map((c) => c.once('message', (x) => x.text === 'from the laptop', 20_000)));
    await alice2.sendText(gid(groupId), 'from the laptop');
    await back;
  });
});

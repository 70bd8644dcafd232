/**
 * diffGroupStates is a one-pass merge over the two sorted member lists (every member device runs it
 * for every control operation, so it must stay linear and allocation-light). Property: on random
 * pairs of states it gives exactly the events, in the same order, and the same requiresRekey as the
 * straightforward map-based definition below.
 */
import { describe, expect, it } from 'vitest';
import { toHex } from '../../src/bytes.js';
import type { GroupEvent, GroupMemberState, GroupState } from '../../src/group-state.js';
import { GroupPolicy, diffGroupStates } from '../../src/group-state.js';

/** The reference: maps by account hex, device sets. */
function reference(before: GroupState | undefined, after: GroupState): { events: GroupEvent[]; requiresRekey: boolean } {
  const events: GroupEvent[] = [];
  const old = new Map((before?.members ?? []).map((m) => [toHex(m.account), m]));
  const now = new Map(after.members.map((m) => [toHex(m.account), m]));
  let requiresRekey = false;
  if (before && before.name !== after.name) events.push({ type: 'renamed', name: after.name });
  if (before && before.policy !== after.policy) events.push({ type: 'policyChanged', policy: after.policy });
  for (const [k, m] of old) {
    const n = now.get(k);
    if (!n) {
      events.push({ type: 'memberRemoved', account: m.account });
      requiresRekey = true;
      continue;
    }
    const nd = new Set(n.devices.map(toHex));
    if (m.devices.some((d) => !nd.has(toHex(d)))) requiresRekey = true;
    if (m.devices.length !== n.devices.length || m.devices.some((d) => !nd.has(toHex(d)))) events.push({ type: 'devicesChanged', account: m.account });
    if (m.admin !== n.admin) events.push({ type: n.admin ? 'adminGranted' : 'adminRevoked', account: m.account });
  }
  for (const [k, n] of now) {
    if (old.has(k)) continue;
    events.push({ type: 'memberAdded', account: n.account });
    if (n.admin && before) events.push({ type: 'adminGranted', account: n.account });
  }
  return { events, requiresRekey };
}

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const cmp = (a: Uint8Array, b: Uint8Array): number => {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
};
/** A small key space so that random states share accounts and devices. */
const key = (tag: number, n: number): Uint8Array => Uint8Array.of(tag, n, ...new Uint8Array(30));

function randomState(r: () => number): GroupState {
  const members: GroupMemberState[] = [];
  for (let a = 0; a < 12; a++) {
    if (r() < 0.5) continue;
    const devices: Uint8Array[] = [];
    for (let d = 0; d < 4; d++) if (r() < 0.5) devices.push(key(2, a * 4 + d));
    if (devices.length === 0) devices.push(key(2, a * 4));
    members.push({ account: key(1, a), devices: devices.sort(cmp), admin: r() < 0.3 });
  }
  members.sort((x, y) => cmp(x.account, y.account));
  return { groupId: key(0, 0), rootId: key(0, 1), name: r() < 0.5 ? 'a' : 'b', policy: r() < 0.5 ? GroupPolicy.Admins : GroupPolicy.AdminLess, members, version: 1, heads: [], digest: new Uint8Array(32) };
}

describe('diffGroupStates', () => {
  it('equals the map-based definition on 1,000 random pairs of states (and from no state)', () => {
    const r = rng(14);
    for (let i = 0; i < 1000; i++) {
      const before = i % 10 === 0 ? undefined : randomState(r);
      const after = randomState(r);
      expect(diffGroupStates(before, after)).toEqual(reference(before, after));
    }
  });
});

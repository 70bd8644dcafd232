/**
 * Convergence (docs/spec/groups.md §G4.6), by property: random interleavings of concurrent adds,
 * kicks, leaves, renames, promotions, admin transfers, admin-less switches and device changes,
 * proposed by whichever device acts (authorized or not — unauthorized ones are signed anyway and
 * sent), delivered to every other device in a random order, with some devices offline until the
 * end. Once every device holds every operation, all of them hold the same state (same digest),
 * and that state is the one a fresh device computes from the operations in any other order.
 *
 * Default runs stay quick; MW_DEEP=1 (MW_DEEP_RUNS=n) runs many more and longer scripts;
 * MW_GROUP_STATS=1 prints, per run, how many operations were sent and the converged state.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toHex } from '../../src/bytes.js';
import { CryptoError, CryptoErrorCode } from '../../src/errors.js';
import type { GroupLog, GroupOpBody } from '../../src/group-state.js';
import { GroupPolicy, createGroup, openGroup, proposeGroupOperation, receiveGroupOperation, signGroupOperation } from '../../src/group-state.js';
import { testContext } from '../_fixtures.js';
import type { Person } from './_group.js';
import { entry, person } from './_group.js';

const DEEP = process.env['MW_DEEP'] === '1';
const RUNS = DEEP ? Number(process.env['MW_DEEP_RUNS'] ?? 150) : 15;
const MIN_STEPS = DEEP ? 40 : 20;
const MAX_STEPS = DEEP ? 120 : 40;
const FC_SEED = 0x6e0ad;

const ctx = testContext('group-convergence');
// alice has two devices; dave and erin start outside the group.
const people: Person[] = [person(ctx, 'alice', 2), person(ctx, 'bob'), person(ctx, 'carol'), person(ctx, 'dave'), person(ctx, 'erin')];
const spare = person(ctx, 'spare-device-owner').devices[0]!; // a device alice may add to her list
const devices = people.flatMap((p) => p.devices.map((_, i) => ({ p, i })));

interface Replica {
  log: GroupLog;
  inbox: Uint8Array[];
  offline: boolean;
}

type Step = { kind: 'act'; device: number; action: number; target: number; force: boolean } | { kind: 'deliver'; device: number; pick: number; count: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('act' as const), device: fc.nat(devices.length - 1), action: fc.nat(11), target: fc.nat(people.length - 1), force: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('deliver' as const), device: fc.nat(devices.length - 1), pick: fc.nat(1000), count: fc.integer({ min: 1, max: 4 }) }) },
);

function bodyFor(action: number, actor: Person, target: Person, n: number): GroupOpBody {
  // Weighted so that groups grow as often as they shrink: adds 3/12, kicks 2/12, leave 1/12.
  switch (action) {
    case 0:
    case 1:
    case 2:
      return { type: 'add', member: entry(target) };
    case 3:
    case 4:
      return { type: 'kick', account: target.account };
    case 5:
      return { type: 'leave' };
    case 6:
    case 7:
      return { type: 'rename', name: `name ${n}` };
    case 8:
      return { type: 'promote', account: target.account };
    case 9:
      return { type: 'transferAdmin', account: target.account };
    case 10:
      return n % 3 === 0 ? { type: 'makeAdminLess' } : { type: 'promote', account: target.account };
    default:
      return { type: 'setDevices', devices: n % 2 ? entry(actor).devices : [...entry(actor).devices, spare.signingPublicKey] };
  }
}

/** Deterministic Fisher–Yates from a fast-check-chosen seed (xorshift32). */
function shuffle<T>(xs: T[], seed: number): T[] {
  const a = xs.slice();
  let s = seed | 1;
  for (let i = a.length - 1; i > 0; i--) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const j = (s >>> 0) % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

function run(steps: Step[], offline: number[], policy: GroupPolicy, finalSeed: number): void {
  const [alice] = people;
  const { log: created, operation: create } = createGroup(ctx, {
    signer: alice!.devices[0]!,
    account: alice!.account,
    authorDevices: entry(alice!).devices,
    name: 'start',
    policy,
    members: people.slice(1, 3).map(entry),
  });
  const replicas: Replica[] = devices.map((_, k) => ({ log: k === 0 ? created : openGroup(ctx, create), inbox: [], offline: offline.includes(k) }));
  const all: Uint8Array[] = [];
  let n = 0;
  for (const s of steps) {
    const r = replicas[s.device]!;
    if (r.offline) continue;
    if (s.kind === 'deliver') {
      for (let c = 0; c < s.count && r.inbox.length > 0; c++) {
        const [op] = r.inbox.splice((s.pick + c) % r.inbox.length, 1);
        r.log = receiveGroupOperation(ctx, r.log, op!).log;
      }
      continue;
    }
    const { p, i } = devices[s.device]!;
    const body = bodyFor(s.action, p, people[s.target]!, n++);
    let op: Uint8Array | undefined;
    try {
      const res = proposeGroupOperation(ctx, r.log, { signer: p.devices[i]!, account: p.account, body });
      r.log = res.log;
      op = res.operation;
    } catch (e) {
      if (!(e instanceof CryptoError && e.code === CryptoErrorCode.GROUP_NOT_AUTHORIZED) || !s.force) continue;
      op = signGroupOperation(ctx, { signer: p.devices[i]!, account: p.account, groupId: r.log.state.groupId, parents: r.log.state.heads, body });
      try {
        r.log = receiveGroupOperation(ctx, r.log, op).log;
      } catch (e2) {
        // A device that was never listed cannot get an operation accepted anywhere: not sent.
        if (e2 instanceof CryptoError && e2.code === CryptoErrorCode.GROUP_NOT_AUTHORIZED) continue;
        throw e2;
      }
    }
    all.push(op);
    replicas.forEach((o, k) => k !== s.device && o.inbox.push(op));
  }
  // Everyone comes online and receives the rest, each in its own order.
  replicas.forEach((r, k) => {
    for (const op of shuffle(r.inbox, finalSeed + k)) r.log = receiveGroupOperation(ctx, r.log, op).log;
    r.inbox = [];
    expect(r.log.pendingCount).toBe(0);
  });
  if (process.env['MW_GROUP_STATS']) console.log(`ops ${all.length} members ${replicas[0]!.log.state.members.length} policy ${replicas[0]!.log.state.policy} name ${replicas[0]!.log.state.name} offline ${replicas.filter((r) => r.offline).length}`);
  const digests = new Set(replicas.map((r) => toHex(r.log.state.digest)));
  expect(digests.size).toBe(1);
  expect(new Set(replicas.map((r) => r.log.state.version)).size).toBe(1);
  // A fresh device given every operation in yet another order agrees.
  let fresh = openGroup(ctx, create);
  for (const op of shuffle(all, finalSeed ^ 0x5bd1e995)) fresh = receiveGroupOperation(ctx, fresh, op).log;
  expect(toHex(fresh.state.digest)).toBe([...digests][0]);
  // Sanity of the converged state: names are ones someone set, every member has a device, admin-ful groups with members have an admin.
  const s = fresh.state;
  expect(s.members.every((m) => m.devices.length > 0)).toBe(true);
  if (s.policy === GroupPolicy.Admins && s.members.length > 0) expect(s.members.some((m) => m.admin)).toBe(true);
  if (s.policy === GroupPolicy.AdminLess) expect(s.members.some((m) => m.admin)).toBe(false);
}

describe('group state convergence (property)', () => {
  it(`all devices converge to one state under random concurrent operations and delivery orders (${RUNS} runs${DEEP ? ', deep' : ''})`, () => {
    fc.assert(
      fc.property(
        fc.array(stepArb, { minLength: MIN_STEPS, maxLength: MAX_STEPS }),
        // Up to two devices (never alice's first, the creator) offline until the end.
        fc.uniqueArray(fc.integer({ min: 1, max: devices.length - 1 }), { maxLength: 2 }),
        fc.constantFrom(GroupPolicy.Admins, GroupPolicy.AdminLess),
        fc.nat(),
        (steps, offline, policy, seed) => run(steps, offline, policy, seed),
      ),
      { seed: FC_SEED, numRuns: RUNS },
    );
  }, DEEP ? 3_600_000 : undefined);
});

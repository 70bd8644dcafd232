/**
 * test-vectors/groups.json (docs/spec/groups.md): sender-key distributions and group messages, and
 * a history of control operations with concurrency, with the state after each step. Regenerate
 * with MW_WRITE_VECTORS=1. Each vector is checked three ways: the generator (the real code) must
 * reproduce the committed file byte for byte; the real code must decrypt/accept it from the JSON;
 * and `_spec.ts`, written from the spec text alone, must produce the same bytes and states.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../../src/bytes.js';
import { createContext } from '../../src/context.js';
import type { GroupLog, GroupOpBody } from '../../src/group-state.js';
import { GroupPolicy, createGroup, openGroup, receiveGroupOperation, signGroupOperation } from '../../src/group-state.js';
import { AccountKeyPair, DeviceKeyPair } from '../../src/keys.js';
import { nobleBackend } from '../../src/primitives/noble.js';
import {
  decryptGroupMessage,
  encodeSenderKeyDistribution,
  encryptGroupMessage,
  generateSenderKey,
  processSenderKeyDistribution,
  rotateSenderKey,
} from '../../src/sender-key.js';
import { deterministicRng } from '../../src/testing.js';
import type { SpecBody } from './_spec.js';
import { specDistribution, specGroupMessage, specGroupState, specMessageKey, specOperation } from './_spec.js';

const WRITE = process.env['MW_WRITE_VECTORS'] === '1';
const FILE = fileURLToPath(new URL('../../../../test-vectors/groups.json', import.meta.url));
const T0 = 1_750_000_000_000;
const SEED = '9a0c5e00000000000000000000000000000000000000000000000000000000a1';

interface OpVector {
  name: string;
  author: string;
  device: number;
  time: number;
  parents: string[];
  body: Record<string, unknown>;
  operation: string;
  id: string;
  tookEffect: boolean;
  state: { name: string; policy: number; members: { account: string; devices: string[]; admin: boolean }[]; digest: string };
}

interface Vectors {
  description: string;
  senderKeys: {
    rng: string;
    groupId: string;
    senderDevice: string;
    keyId: number;
    chainKey: string;
    signingSeed: string;
    signingPublicKey: string;
    distribution: string;
    messages: { iteration: number; salt: string; plaintext: string; message: string }[];
    rotated: { keyId: number; chainKey: string; signingSeed: string; distribution: string; previous: { keyId: number; end: number } };
  };
  operations: {
    rng: string;
    groupId: string;
    people: Record<string, { accountSeed: string; account: string; deviceSeeds: string[]; devices: string[] }>;
    steps: OpVector[];
  };
}

const te = new TextEncoder();

function generate(): Vectors {
  const ctx = createContext({ backend: nobleBackend, random: deterministicRng(SEED), now: () => T0 });
  // ── Sender keys: draws key id, chain key, signing seed; then one 16-byte salt per message.
  const groupId = ctx.random(32);
  const senderDevice = ctx.random(32);
  const peek = deterministicRng(SEED);
  peek(64); // group id, sender device
  const keyIdBytes = peek(4);
  const chainKey = peek(32);
  const signingSeed = peek(32);
  let key = generateSenderKey(ctx, { groupId, senderDevice });
  const distribution = encodeSenderKeyDistribution(key);
  const messages: Vectors['senderKeys']['messages'] = [];
  const texts = ['hello group', '', 'skipped: iteration 2 is never sent', 'x'.repeat(1700)];
  for (let i = 0; i < texts.length; i++) {
    const salt = peek(16);
    const r = encryptGroupMessage(ctx, key, te.encode(texts[i]!));
    key = r.key;
    if (i !== 2) messages.push({ iteration: i, salt: toHex(salt), plaintext: toHex(te.encode(texts[i]!)), message: toHex(r.message) });
  }
  const rKeyId = peek(4);
  const rChain = peek(32);
  const rSeed = peek(32);
  const rotated = rotateSenderKey(ctx, key);
  // ── Operations: keys first (account seed, then device seeds), then the history.
  const seedOf = (): Uint8Array => ctx.random(32);
  const mk = (devices: number): { accountSeed: Uint8Array; deviceSeeds: Uint8Array[] } => ({ accountSeed: seedOf(), deviceSeeds: Array.from({ length: devices }, seedOf) });
  const raw = { alice: mk(2), bob: mk(1), carol: mk(1), dave: mk(1) };
  const keys = Object.fromEntries(
    Object.entries(raw).map(([n, r]) => [
      n,
      { account: AccountKeyPair.fromSeed(ctx, r.accountSeed).publicKey, devices: r.deviceSeeds.map((s) => DeviceKeyPair.fromSecrets(ctx, s, new Uint8Array(32).fill(1))) },
    ]),
  ) as Record<keyof typeof raw, { account: Uint8Array; devices: DeviceKeyPair[] }>;
  const entry = (n: keyof typeof raw): { account: Uint8Array; devices: Uint8Array[] } => ({ account: keys[n].account, devices: keys[n].devices.map((d) => d.signingPublicKey) });
  const opGroupId = ctx.random(32);
  const steps: OpVector[] = [];
  const ids = new Map<string, Uint8Array>();
  let log: GroupLog | undefined;
  let t = T0;
  const stateJson = (l: GroupLog): OpVector['state'] => ({
    name: l.state.name,
    policy: l.state.policy,
    members: l.state.members.map((m) => ({ account: toHex(m.account), devices: m.devices.map(toHex), admin: m.admin })),
    digest: toHex(l.state.digest),
  });
  const bodyJson = (b: GroupOpBody): Record<string, unknown> =>
    JSON.parse(JSON.stringify(b, (_k, v: unknown) => (v instanceof Uint8Array ? toHex(v) : v))) as Record<string, unknown>;
  function step(name: string, author: keyof typeof raw, device: number, parents: string[], body: GroupOpBody): void {
    t += 60_000;
    const signer = keys[author].devices[device]!;
    let operation: Uint8Array;
    if (body.type === 'create') {
      const r = createGroup(ctx, { signer, account: keys[author].account, authorDevices: entry(author).devices, name: body.name, policy: body.policy, members: body.members.slice(1), groupId: opGroupId });
      operation = r.operation;
      log = r.log;
    } else {
      operation = signGroupOperation(ctx, { signer, account: keys[author].account, groupId: opGroupId, parents: parents.map((p) => ids.get(p)!), body, time: t });
      log = receiveGroupOperation(ctx, log!, operation).log;
    }
    const id = nobleBackend.sha256(operation);
    ids.set(name, id);
    steps.push({ name, author, device, time: body.type === 'create' ? T0 : t, parents, body: bodyJson(body), operation: toHex(operation), id: toHex(id), tookEffect: log!.operationTookEffect(id), state: stateJson(log!) });
  }
  step('create', 'alice', 0, [], { type: 'create', name: 'Book club', policy: GroupPolicy.Admins, members: [entry('alice'), entry('bob'), entry('carol')] });
  step('add dave', 'alice', 1, ['create'], { type: 'add', member: entry('dave') });
  step('promote bob', 'alice', 0, ['add dave'], { type: 'promote', account: keys.bob.account });
  step('alice kicks carol', 'alice', 0, ['promote bob'], { type: 'kick', account: keys.carol.account });
  step('bob renames (concurrent)', 'bob', 0, ['promote bob'], { type: 'rename', name: 'Bob’s club' });
  step('carol renames (concurrent with her kick: dropped)', 'carol', 0, ['promote bob'], { type: 'rename', name: 'Carol’s club' });
  const heads = ['alice kicks carol', 'bob renames (concurrent)', 'carol renames (concurrent with her kick: dropped)'];
  step('alice kicks bob', 'alice', 0, heads, { type: 'kick', account: keys.bob.account });
  step('bob kicks alice (concurrent: both cancel)', 'bob', 0, heads, { type: 'kick', account: keys.alice.account });
  step('carol back-dates a rename (dropped)', 'carol', 0, ['add dave'], { type: 'rename', name: 'back-dated' });
  step('dave renames (not admin: no effect)', 'dave', 0, ['alice kicks bob', 'bob kicks alice (concurrent: both cancel)'], { type: 'rename', name: 'Dave’s' });
  step('alice leaves from both devices (1)', 'alice', 0, ['alice kicks bob', 'bob kicks alice (concurrent: both cancel)'], { type: 'leave' });
  step('alice leaves from both devices (2)', 'alice', 1, ['alice kicks bob', 'bob kicks alice (concurrent: both cancel)'], { type: 'leave' });
  step('bob makes the group admin-less', 'bob', 0, ['alice leaves from both devices (1)', 'alice leaves from both devices (2)', 'dave renames (not admin: no effect)', 'carol back-dates a rename (dropped)'], { type: 'makeAdminLess' });
  step('dave renames (admin-less)', 'dave', 0, ['bob makes the group admin-less'], { type: 'rename', name: 'Everyone’s club' });
  step('bob leaves; dave stays alone', 'bob', 0, ['dave renames (admin-less)'], { type: 'leave' });

  return {
    description:
      'MeshWhisper groups (docs/protocol.md §8.5, docs/spec/groups.md): a sender key (chain, signing key, distribution), group messages at iterations 0, 1 and 3 (2 skipped), a rotation with the previous key’s end; then a history of signed control operations with concurrent kicks, a renaming member being kicked, mutual kicks, a back-dated operation, a leave from two devices, an admin-less switch — each with its id, whether it took effect, and the group state (and digest) after it. Hex unless noted; times in ms.',
    senderKeys: {
      rng: `deterministicRng("${SEED}"): group id (32), sender device (32), key id (4, u32 BE), chain key (32), signing seed (32), then a 16-byte salt per message (iterations 0..3), then the rotation's key id, chain key, signing seed`,
      groupId: toHex(groupId),
      senderDevice: toHex(senderDevice),
      keyId: new DataView(keyIdBytes.buffer).getUint32(0),
      chainKey: toHex(chainKey),
      signingSeed: toHex(signingSeed),
      signingPublicKey: toHex(nobleBackend.ed25519PublicKey(signingSeed)),
      distribution: toHex(distribution),
      messages,
      rotated: { keyId: new DataView(rKeyId.buffer).getUint32(0), chainKey: toHex(rChain), signingSeed: toHex(rSeed), distribution: toHex(encodeSenderKeyDistribution(rotated)), previous: { keyId: key.keyId, end: 4 } },
    },
    operations: {
      rng: 'continuing the same stream: per person (alice, bob, carol, dave) an account seed (32) then one seed per device (32), then the group id (32); the create operation’s time is the clock (T0), the others carry explicit times',
      groupId: toHex(opGroupId),
      people: Object.fromEntries(
        Object.entries(raw).map(([n, r]) => [n, { accountSeed: toHex(r.accountSeed), account: toHex(keys[n as keyof typeof raw].account), deviceSeeds: r.deviceSeeds.map(toHex), devices: entry(n as keyof typeof raw).devices.map(toHex) }]),
      ),
      steps,
    },
  };
}

describe('test-vectors/groups.json', () => {
  const generated = generate();
  if (WRITE) writeFileSync(FILE, `${JSON.stringify(generated, null, 2)}\n`);
  if (!existsSync(FILE)) throw new Error('groups.json missing: run with MW_WRITE_VECTORS=1');
  const v = JSON.parse(readFileSync(FILE, 'utf8')) as Vectors;
  const ctx = createContext({ backend: nobleBackend, now: () => T0 });

  it('the committed file is exactly what the generator produces', () => {
    expect(v).toEqual(JSON.parse(JSON.stringify(generated)));
  });

  it('sender keys: the spec text reproduces the distribution and every message; the real code decrypts them', () => {
    const s = v.senderKeys;
    const g = fromHex(s.groupId);
    expect(toHex(specDistribution(g, s.keyId, 0, fromHex(s.chainKey), fromHex(s.signingPublicKey), null))).toBe(s.distribution);
    for (const m of s.messages) {
      const spec = specGroupMessage({
        groupId: g,
        sender: fromHex(s.senderDevice),
        keyId: s.keyId,
        iteration: m.iteration,
        salt: fromHex(m.salt),
        mk: specMessageKey(fromHex(s.chainKey), 0, m.iteration),
        plaintext: fromHex(m.plaintext),
        signingSeed: fromHex(s.signingSeed),
      });
      expect(toHex(spec), `iteration ${m.iteration}`).toBe(m.message);
    }
    let rec = processSenderKeyDistribution(ctx, { groupId: g, sender: fromHex(s.senderDevice), distribution: fromHex(s.distribution) });
    for (const m of [...s.messages].reverse()) {
      const r = decryptGroupMessage(ctx, rec, fromHex(m.message));
      expect(toHex(r.plaintext)).toBe(m.plaintext);
      rec = r.record;
    }
    const rot = s.rotated;
    expect(toHex(specDistribution(g, rot.keyId, 0, fromHex(rot.chainKey), nobleBackend.ed25519PublicKey(fromHex(rot.signingSeed)), rot.previous))).toBe(rot.distribution);
  });

  it('operations: the spec text reproduces every operation, its id, whether it took effect and the state after it; so does the real code', () => {
    const o = v.operations;
    const g = fromHex(o.groupId);
    const ids = new Map<string, Uint8Array>();
    const held: Uint8Array[] = [];
    let log: GroupLog | undefined;
    for (const s of o.steps) {
      const person = o.people[s.author]!;
      const b = s.body as Record<string, unknown> & { type: string };
      const dev = (x: unknown): Uint8Array[] => (x as string[]).map(fromHex);
      const body: SpecBody =
        b.type === 'create'
          ? { type: 'create', policy: b['policy'] as 1 | 2, name: b['name'] as string, members: (b['members'] as { account: string; devices: string[] }[]).map((m) => ({ account: fromHex(m.account), devices: dev(m.devices) })) }
          : b.type === 'add'
            ? { type: 'add', account: fromHex((b['member'] as { account: string }).account), devices: dev((b['member'] as { devices: string[] }).devices) }
            : b.type === 'rename'
              ? { type: 'rename', name: b['name'] as string }
              : b.type === 'setDevices'
                ? { type: 'setDevices', devices: dev(b['devices']) }
                : b.type === 'leave' || b.type === 'makeAdminLess'
                  ? { type: b.type }
                  : { type: b.type as 'kick', account: fromHex(b['account'] as string) };
      const spec = specOperation({ groupId: g, account: fromHex(person.account), deviceSeed: fromHex(person.deviceSeeds[s.device]!), time: s.time, parents: s.parents.map((p) => ids.get(p)!), body });
      expect(toHex(spec.encoded), s.name).toBe(s.operation);
      expect(toHex(spec.id), s.name).toBe(s.id);
      ids.set(s.name, spec.id);
      held.push(spec.encoded);
      const st = specGroupState(g, held);
      expect({ name: st.name, policy: st.policy, members: st.members, digest: st.digest }, s.name).toEqual(s.state);
      expect(st.applied.includes(s.id), s.name).toBe(s.tookEffect);
      log = log ? receiveGroupOperation(ctx, log, fromHex(s.operation)).log : openGroup(ctx, fromHex(s.operation));
      expect(toHex(log.state.digest), s.name).toBe(s.state.digest);
    }
    // The same operations delivered in reverse (all but the root wait, then connect) give the same state.
    let rev = openGroup(ctx, held[0]!);
    for (const op of held.slice(1).reverse()) rev = receiveGroupOperation(ctx, rev, op).log;
    expect(toHex(rev.state.digest)).toBe(o.steps.at(-1)!.state.digest);
  });
});

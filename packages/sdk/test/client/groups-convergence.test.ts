/**
 * Convergence over a real node (docs/spec/groups.md §G4.6, §G6.2), by seeded random schedules: six
 * accounts, alice with two devices (seven SDK clients, a SQLite file each, real sockets). From a
 * seed, a schedule of batches of concurrent operations by several admins and members — add, kick,
 * leave, rename, promote, transfer admin, admin-less switch, re-add of a removed account, plain
 * messages — each batch run at once on different clients (none has seen the others' operations),
 * with clients closed (offline) and started again from their files at random points, some acting
 * the moment they are back, before their backlog arrived.
 *
 * At the end every client is started, and once delivery settles:
 *  - every device that the union of all operations held anywhere makes a member device holds exactly
 *    that state (same name, members, admins, policy, digest AND version: it holds every operation);
 *  - every other device that holds the group knows it is not a member device;
 *  - removed devices hold no key of the group, and none of the sender-key records any of them ever
 *    held opens the final message;
 *  - a final message from a random member device reaches every other member device exactly once.
 *
 * The seed is printed on failure (with the schedule); MW_SEED=n replays one; MW_DEEP=1 runs
 * MW_DEEP_RUNS (default 12) seeds with longer schedules.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CryptoError, GroupLog } from '@meshwhisper/crypto';
import { MessageType, createContext, decryptGroupMessage, deserializeGroupLog, deserializeSenderKeyRecord, openEnvelope, openGroup, receiveGroupOperation, toHex } from '@meshwhisper/crypto';
import { SendBatchRequestSchema, SendRequestSchema, fromBinary } from '@meshwhisper/protocol';
import type { ProtocolStorage } from '../../src/index.js';
import { MeshWhisper, openSqliteStorage } from '../../src/index.js';
import type { E2eNode } from './test-node.js';
import { addAccountDevice, startE2eNode } from './test-node.js';

const DEEP = process.env['MW_DEEP'] === '1';
const SEEDS: number[] = process.env['MW_SEED']
  ? [Number(process.env['MW_SEED'])]
  : DEEP
    ? Array.from({ length: Number(process.env['MW_DEEP_RUNS'] ?? 12) }, (_, i) => 0x5eed + 7919 * i)
    : [0x5eed, 0x5eed + 7919, 0x5eed + 2 * 7919];
const STEPS = DEEP ? 40 : 18;

let t: E2eNode;
const work = mkdtempSync(join(tmpdir(), 'mw-sdk-groups-conv-'));
beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  await t?.close();
  rmSync(work, { recursive: true, force: true });
});

/** mulberry32: a small seeded PRNG (the schedule is a function of the seed; timing is not). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Posted {
  mailboxId: Uint8Array;
  payload: Uint8Array;
}

/** One SDK client (one device) that can go offline and come back from its SQLite file. */
class Dev {
  client: MeshWhisper | undefined;
  storage: ProtocolStorage | undefined;
  /** Envelopes this device posts while `capture` is set. */
  capture: Posted[] | undefined;
  /** When set, this device's next post waits for it (to hold a send half-way). */
  gate: Promise<void> | undefined;
  /** Every sender-key record (serialized) this device ever held, by hex: what a thief of its state would have. */
  readonly records = new Map<string, Uint8Array>();
  readonly undecryptable: string[] = [];
  readonly finals: string[] = [];
  accountKey!: Uint8Array;
  deviceKey!: Uint8Array;
  mailboxId!: string;
  constructor(
    readonly name: string,
    readonly path: string,
  ) {}

  get online(): boolean {
    return this.client !== undefined;
  }

  /** `connect: false`: the device sends but receives nothing until `client.connect()`. */
  async start(options: { connect?: boolean } = {}): Promise<MeshWhisper> {
    this.storage = await openSqliteStorage({ path: this.path });
    const spy: typeof fetch = async (input, init) => {
      if (this.gate && /\/v1\/send(\/batch)?$/.test(String(input))) {
        const g = this.gate;
        this.gate = undefined;
        await g;
      }
      if (this.capture && init?.body instanceof Uint8Array) {
        const url = String(input);
        const items = url.endsWith('/v1/send') ? [fromBinary(SendRequestSchema, init.body)] : url.endsWith('/v1/send/batch') ? fromBinary(SendBatchRequestSchema, init.body).items : [];
        this.capture.push(...items.map((r) => ({ mailboxId: r.mailboxId, payload: r.payload })));
      }
      return fetch(input, init);
    };
    const c = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: this.storage, receiptDelay: { minDelayMs: 0, maxDelayMs: 50 }, fetch: spy, ...options });
    c.on('undecryptable', (u) => this.undecryptable.push(u.code === 'MW_SDK_INTERNAL' ? `${u.code} (${u.message})` : u.code));
    c.on('message', (m) => {
      if (m.text?.startsWith('final ')) this.finals.push(m.id);
    });
    this.client = c;
    this.accountKey = c.accountKey;
    this.mailboxId = toHex(c.mailboxId);
    this.deviceKey = (await this.storage.getLocalIdentity()).certificate.deviceSigningKey;
    return c;
  }

  async stop(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    await c?.close();
    this.storage = undefined;
  }

  /** Remembers every sender-key record held now. */
  async snapshot(): Promise<void> {
    if (!this.storage) return;
    for (const i of await this.storage.listItems('mw.group-sender-key')) this.records.set(toHex(i.value), i.value);
  }

  async log(groupId: Uint8Array): Promise<GroupLog | undefined> {
    const b = await this.storage!.getItem('mw.group', toHex(groupId));
    return b ? deserializeGroupLog(createContext(), b) : undefined;
  }
}

/** The state every device would hold if it held every operation held anywhere (the union). */
async function reference(devs: Dev[], groupId: Uint8Array): Promise<GroupLog> {
  const ctx = createContext();
  const ops = new Map<string, Uint8Array>();
  for (const d of devs) for (const o of (await d.log(groupId))?.operations() ?? []) ops.set(toHex(ctx.backend.sha256(o)), o);
  const all = [...ops.values()];
  let log = openGroup(ctx, all[0]!); // operations() lists the create operation first
  for (const o of all.slice(1)) log = receiveGroupOperation(ctx, log, o).log;
  expect(log.pendingCount).toBe(0);
  return log;
}

const ALLOWED = new Set(['MW_SDK_GROUP_NOT_ALLOWED', 'MW_SDK_GROUP_NOT_MEMBER', 'MW_SDK_UNKNOWN_CONVERSATION', 'MW_SDK_INVALID_ARGUMENT']);

async function run(seed: number): Promise<void> {
  const rnd = prng(seed);
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const trace: string[] = [];
  const dir = mkdtempSync(join(work, `s${seed}-`));
  const names = ['alice1', 'alice2', 'bob', 'carol', 'dave', 'erin', 'frank'];
  const devs = names.map((n) => new Dev(n, join(dir, `${n}.sqlite`)));
  const [alice1, alice2] = [devs[0]!, devs[1]!];
  await alice1.start();
  const a2store = await openSqliteStorage({ path: alice2.path });
  await addAccountDevice(alice1.client!, a2store);
  await a2store.close();
  for (const d of devs.slice(1)) await d.start();
  const accounts = [alice1, ...devs.slice(2)].map((d) => ({ name: d.name.replace(/1$/, ''), key: d.accountKey }));
  const nameOf = (k: Uint8Array) => accounts.find((a) => toHex(a.key) === toHex(k))?.name ?? '?';
  const unexpected: string[] = [];

  try {
    // alice creates the group with bob, carol and dave and makes bob admin too; erin and frank are outside.
    const joined = Promise.all(devs.slice(1, 5).map((d) => d.client!.once('groupChange', (e) => e.change.type === 'joined', 30_000)));
    const g = await alice1.client!.groups.create('start', devs.slice(2, 5).map((d) => d.accountKey));
    const groupId = g.groupId;
    await joined;
    await alice1.client!.groups.promote(groupId, devs[2]!.accountKey);

    let n = 0;
    const act = async (d: Dev): Promise<void> => {
      const c = d.client!;
      const info = await c.groups.info(groupId);
      const members = new Set((info?.members ?? []).map((m) => toHex(m.accountKey)));
      const others = accounts.filter((a) => toHex(a.key) !== toHex(d.accountKey));
      const outside = others.filter((a) => !members.has(toHex(a.key)));
      const inside = others.filter((a) => members.has(toHex(a.key)));
      // A group down to one or two members grows again more often than it shrinks further.
      const r = inside.length < 2 && rnd() < 0.5 ? 0 : rnd();
      const target = (xs: typeof accounts) => (xs.length > 0 ? pick(xs) : pick(others));
      let what: string;
      let op: () => Promise<unknown>;
      if (r < 0.24) {
        const x = target(outside);
        what = `add ${x.name}`;
        op = () => c.groups.add(groupId, x.key);
      } else if (r < 0.4) {
        const x = target(inside);
        what = `kick ${x.name}`;
        op = () => c.groups.kick(groupId, x.key);
      } else if (r < 0.46) {
        what = 'leave';
        op = () => c.groups.leave(groupId);
      } else if (r < 0.62) {
        const name = `name ${++n}`;
        what = `rename '${name}'`;
        op = () => c.groups.rename(groupId, name);
      } else if (r < 0.72) {
        const x = target(inside);
        what = `promote ${x.name}`;
        op = () => c.groups.promote(groupId, x.key);
      } else if (r < 0.8) {
        const x = target(inside);
        what = `transfer admin to ${x.name}`;
        op = () => c.groups.transferAdmin(groupId, x.key);
      } else if (r < 0.83) {
        what = 'make admin-less';
        op = () => c.groups.makeAdminLess(groupId);
      } else {
        const text = `msg ${++n} from ${d.name}`;
        what = `send '${text}'`;
        op = () => c.sendText({ kind: 'group', groupId }, text);
      }
      try {
        await op();
        trace.push(`${d.name}: ${what}`);
      } catch (e) {
        const code = (e as { code?: string }).code ?? String(e);
        trace.push(`${d.name}: ${what} → ${code}`);
        if (!ALLOWED.has(code)) unexpected.push(`${d.name}: ${what} → ${code} ${(e as Error).message}`);
      }
    };

    for (let step = 0; step < STEPS; step++) {
      const r = rnd();
      if (r < 0.2) {
        // A device goes offline, or comes back (and sometimes acts at once, before its backlog).
        const d = pick(devs);
        if (d.online && devs.filter((x) => x.online).length > 3) {
          trace.push(`${d.name} offline`);
          await d.snapshot();
          await d.stop();
        } else if (!d.online) {
          trace.push(`${d.name} back`);
          await d.start();
          if (rnd() < 0.5) await act(d);
        }
      } else {
        // 1–3 devices act at once.
        // Mostly member devices (as they see it); now and then one that may not act.
        const online = devs.filter((x) => x.online);
        const inside: Dev[] = [];
        for (const d of online) if ((await d.client!.groups.info(groupId))?.isMember) inside.push(d);
        const k = 1 + Math.floor(rnd() * 3);
        const actors = new Set<Dev>();
        for (let i = 0; i < k; i++) actors.add(inside.length > 0 && rnd() < 0.85 ? pick(inside) : pick(online));
        await Promise.all([...actors].map((d) => act(d)));
      }
      await Promise.all(devs.map((d) => d.snapshot()));
      await sleep(Math.floor(rnd() * 250));
    }

    // ── The end: everyone back; wait until delivery settles ──
    for (const d of devs) if (!d.online) await d.start();
    trace.push('all back');
    let ref = await reference(devs, groupId);
    const memberDevices = () => new Set(ref.state.members.flatMap((m) => m.devices.map(toHex)));
    const problems = async (): Promise<string[]> => {
      ref = await reference(devs, groupId);
      const want = memberDevices();
      const out: string[] = [];
      for (const d of devs) {
        const info = await d.client!.groups.info(groupId);
        if (want.has(toHex(d.deviceKey))) {
          if (!info) out.push(`${d.name}: member device without the group`);
          else if (info.digest !== toHex(ref.state.digest) || info.version !== ref.state.version)
            out.push(`${d.name}: '${info.name}' v${info.version} [${info.members.map((m) => nameOf(m.accountKey) + (m.admin ? '*' : '')).join(' ')}] ${info.policy} ≠ v${ref.state.version}`);
        } else if (info?.isMember) out.push(`${d.name}: believes it is a member device, it is not ('${info.name}' v${info.version} [${info.members.map((m) => nameOf(m.accountKey)).join(' ')}])`);
      }
      return out;
    };
    let left: string[] = [];
    for (const until = Date.now() + 30_000; Date.now() < until; ) {
      left = await problems();
      if (left.length === 0) break;
      await sleep(250);
    }
    const refDesc = `'${ref.state.name}' v${ref.state.version} [${ref.state.members.map((m) => nameOf(m.account) + (m.admin ? '*' : '')).join(' ')}] policy ${ref.state.policy}`;
    expect(left, `not converged to ${refDesc}`).toEqual([]);
    expect(unexpected).toEqual([]);

    // ── A final message from a member device reaches every other member device exactly once ──
    const members = devs.filter((d) => memberDevices().has(toHex(d.deviceKey)));
    const removed = devs.filter((d) => !memberDevices().has(toHex(d.deviceKey)));
    trace.push(`converged: ${refDesc}; removed: ${removed.map((d) => d.name).join(' ') || 'none'}`);
    if (members.length > 0) {
      const sender = pick(members);
      const text = `final ${seed}`;
      sender.capture = [];
      const { id } = await sender.client!.sendText({ kind: 'group', groupId }, text);
      const sent = sender.capture;
      sender.capture = undefined;
      for (const d of members) {
        const until = Date.now() + 20_000;
        while (!(await d.client!.history({ kind: 'group', groupId })).some((m) => m.id === id)) {
          if (Date.now() > until) throw new Error(`${d.name} never got the final message`);
          await sleep(100);
        }
      }
      await sleep(500); // a second copy would show up now
      for (const d of members) {
        expect((await d.client!.history({ kind: 'group', groupId })).filter((m) => m.id === id).length, d.name).toBe(1);
        if (d !== sender) expect(d.finals.filter((x) => x === id).length, `${d.name} 'message' events`).toBe(1);
      }
      // Removed devices: no copy, no key, and none of the records they ever held opens any copy.
      for (const d of removed) {
        expect(sent.some((s) => toHex(s.mailboxId) === d.mailboxId), `${d.name} got a copy`).toBe(false);
        expect((await d.client!.history({ kind: 'group', groupId })).some((m) => m.id === id)).toBe(false);
        expect(await d.storage!.listItems('mw.group-own-key')).toEqual([]);
        expect(await d.storage!.listItems('mw.group-sender-key')).toEqual([]);
      }
      const copies: Uint8Array[] = [];
      for (const d of members) {
        if (d === sender) continue;
        const identity = await d.storage!.getLocalIdentity();
        for (const s of sent.filter((x) => toHex(x.mailboxId) === d.mailboxId)) {
          const o = openEnvelope(createContext(), identity.device, s.payload);
          if (o.contentType === MessageType.Group) copies.push(o.content);
        }
      }
      expect(copies.length).toBe(members.length - 1);
      for (const d of removed) {
        for (const r of d.records.values()) {
          for (const m of copies) {
            let code = '';
            try {
              decryptGroupMessage(createContext(), deserializeSenderKeyRecord(r), m);
            } catch (e) {
              code = (e as CryptoError).code;
            }
            expect(['MW_CRYPTO_UNKNOWN_SENDER_KEY', 'MW_CRYPTO_SENDER_MISMATCH'], `${d.name}'s old record opened the final message`).toContain(code);
          }
        }
      }
    }
    const undecryptable = devs.filter((d) => d.undecryptable.length > 0).map((d) => `${d.name}: ${d.undecryptable.join(', ')}`);
    if (process.env['MW_GROUP_STATS'] === '1') console.log(`seed ${seed}\n${trace.join('\n')}\nundecryptable: ${undecryptable.join('; ') || 'none'}`);
  } catch (e) {
    console.error(`groups convergence failed for seed ${seed} (replay: MW_SEED=${seed})\n${trace.join('\n')}\nundecryptable: ${devs.map((d) => `${d.name}: ${d.undecryptable.join(', ')}`).join('; ')}`);
    throw e;
  } finally {
    await Promise.all(devs.map((d) => d.stop().catch(() => undefined)));
  }
}

describe('groups converge over a real node under random concurrent operations, offline devices and re-adds', () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}`, () => run(seed), DEEP ? 600_000 : 120_000);
  }
});

/** Waits until `d` holds the group at `digest` and `version`. */
async function holds(d: Dev, groupId: Uint8Array, want: { digest: string; version: number }, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const info = await d.client!.groups.info(groupId);
    if (info?.digest === want.digest && info.version === want.version) return;
    if (Date.now() > until) throw new Error(`${d.name}: v${info?.version ?? '-'} ${info?.digest ?? 'no group'}, want v${want.version} ${want.digest}`);
    await sleep(100);
  }
}

describe('operations concurrent with an add reach the added devices (§G6.2)', () => {
  it('bob adds erin while alice (concurrently) promotes dave and renames: erin ends with both; carol, kicked while adding frank, leaves frank knowing he is not a member', async () => {
    const dir = mkdtempSync(join(work, 'regression-'));
    const [alice, bob, carol, dave, erin, frank] = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank'].map((n) => new Dev(n, join(dir, `${n}.sqlite`)));
    const all = [alice!, bob!, carol!, dave!, erin!, frank!];
    try {
      for (const d of all) await d.start();
      const joined = Promise.all([bob!, carol!, dave!].map((d) => d.client!.once('groupChange', (e) => e.change.type === 'joined', 20_000)));
      const g = await alice!.client!.groups.create('concurrent', [bob!.accountKey, carol!.accountKey, dave!.accountKey]);
      const groupId = g.groupId;
      await joined;
      await alice!.client!.groups.promote(groupId, bob!.accountKey);
      let info = await alice!.client!.groups.promote(groupId, carol!.accountKey);
      for (const d of [bob!, carol!, dave!]) await holds(d, groupId, info);

      // bob and carol stop receiving: what they do next is concurrent with what alice does now.
      for (const d of [bob!, carol!]) {
        await d.stop();
        await d.start({ connect: false });
      }
      await alice!.client!.groups.promote(groupId, dave!.accountKey);
      await alice!.client!.groups.rename(groupId, 'renamed by alice');
      await alice!.client!.groups.kick(groupId, carol!.accountKey);
      await bob!.client!.groups.add(groupId, erin!.accountKey);
      await carol!.client!.groups.add(groupId, frank!.accountKey);
      bob!.client!.connect();
      carol!.client!.connect();

      // Everyone ends holding every operation: the promote and the rename reached erin, whom bob
      // added without knowing them; carol's add of frank did not take effect (she was removed
      // concurrently), and frank learns it.
      const ref = await reference(all, groupId);
      expect(ref.state.name).toBe('renamed by alice');
      const want = { digest: toHex(ref.state.digest), version: ref.state.version };
      for (const d of [alice!, bob!, dave!, erin!]) await holds(d, groupId, want);
      info = (await erin!.client!.groups.info(groupId))!;
      expect(info.isMember).toBe(true);
      expect(info.members.find((m) => toHex(m.accountKey) === toHex(dave!.accountKey))!.admin).toBe(true);
      expect(info.members.some((m) => toHex(m.accountKey) === toHex(frank!.accountKey))).toBe(false);
      const until = Date.now() + 20_000;
      while ((await frank!.client!.groups.info(groupId))?.isMember !== false) {
        if (Date.now() > until) throw new Error('frank still believes he is a member');
        await sleep(100);
      }
      expect(await frank!.storage!.listItems('mw.group-sender-key')).toEqual([]);
      expect(await frank!.storage!.listItems('mw.group-own-key')).toEqual([]);
      await expect(frank!.client!.sendText({ kind: 'group', groupId }, 'am I in?')).rejects.toMatchObject({ code: 'MW_SDK_GROUP_NOT_MEMBER' });
      // And erin reads what dave writes now.
      const got = erin!.client!.once('message', (m) => m.text === 'dave, admin now', 20_000);
      await dave!.client!.sendText({ kind: 'group', groupId }, 'dave, admin now');
      await got;
      expect(erin!.undecryptable).toEqual([]);
      expect(frank!.undecryptable).toEqual([]);
    } finally {
      await Promise.all(all.map((d) => d.stop().catch(() => undefined)));
    }
  });
});

describe('a removal applied while a group message is being prepared', () => {
  it('the removed sender keeps no key and sends nothing; a remaining sender whose key rotated meanwhile sends the new key first, so the message opens at once', async () => {
    const dir = mkdtempSync(join(work, 'race-'));
    const [alice, bob, carol, dave] = ['alice', 'bob', 'carol', 'dave'].map((n) => new Dev(n, join(dir, `${n}.sqlite`)));
    const all = [alice!, bob!, carol!, dave!];
    try {
      for (const d of all) await d.start();
      const joined = Promise.all([bob!, carol!, dave!].map((d) => d.client!.once('groupChange', (e) => e.change.type === 'joined', 20_000)));
      const g = await alice!.client!.groups.create('race', [bob!.accountKey, carol!.accountKey, dave!.accountKey]);
      const groupId = g.groupId;
      const to = { kind: 'group' as const, groupId };
      await joined;

      // carol's first message: her sender key goes out first — held on the way while alice kicks her.
      let release!: () => void;
      carol!.gate = new Promise((r) => (release = r));
      const out = carol!.client!.once('groupChange', (e) => e.change.type === 'memberRemoved', 20_000);
      const sending = carol!.client!.sendText(to, 'carol, removed meanwhile');
      sending.catch(() => undefined);
      while (carol!.gate) await sleep(20); // the post is held
      await alice!.client!.groups.kick(groupId, carol!.accountKey);
      await out;
      release();
      await expect(sending).rejects.toMatchObject({ code: 'MW_SDK_GROUP_NOT_MEMBER' });
      expect(await carol!.storage!.listItems('mw.group-own-key')).toEqual([]);
      expect(await carol!.storage!.listItems('mw.group-sender-key')).toEqual([]);
      expect((await carol!.client!.history(to)).map((m) => m.text)).toEqual([]);

      // bob's first message: held the same way while alice kicks dave (bob stays, his key rotates).
      bob!.gate = new Promise((r) => (release = r));
      const daveOut = bob!.client!.once('groupChange', (e) => e.change.type === 'memberRemoved', 20_000);
      const got = alice!.client!.once('message', (m) => m.text === 'bob, key rotated meanwhile', 20_000);
      const bobSending = bob!.client!.sendText(to, 'bob, key rotated meanwhile');
      bobSending.catch(() => undefined);
      while (bob!.gate) await sleep(20);
      await alice!.client!.groups.kick(groupId, dave!.accountKey);
      await daveOut;
      release();
      await bobSending;
      await got; // without a new sender key first, alice holds it until bob's next message
      // (carol's key, posted after her removal, is refused: MW_SDK_GROUP_NOT_MEMBER, as it should be)
      expect(alice!.undecryptable.filter((c) => c !== 'MW_SDK_GROUP_NOT_MEMBER')).toEqual([]);
      expect(dave!.finals).toEqual([]);
      expect((await dave!.client!.history(to)).map((m) => m.text)).not.toContain('bob, key rotated meanwhile');
    } finally {
      await Promise.all(all.map((d) => d.stop().catch(() => undefined)));
    }
  });
});

/**
 * Kicked and back, with nothing spurious for the app (docs/spec/groups.md §G6.2, §G6.3): a member
 * with two devices is kicked and comes back three ways — re-added, by a link, by an invitation
 * accepted on one of its devices — and messages go both ways after each return. Every message
 * reaches every member device exactly once, nothing sent while out reaches the kicked devices, and
 * no device of anyone reports an `undecryptable` envelope (an app such as Prudence shows each as an
 * error notice). The invitation, answered on one device, is gone from the other.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toHex } from '@meshwhisper/crypto';
import type { MeshWhisper } from '../../src/index.js';
import { MeshWhisper as Client, openSqliteStorage } from '../../src/index.js';
import type { E2eNode } from './test-node.js';
import { addAccountDevice, startE2eNode } from './test-node.js';

let t: E2eNode;
const work = mkdtempSync(join(tmpdir(), 'mw-sdk-groups-rejoin-'));
let n = 0;
beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  await t?.close();
  rmSync(work, { recursive: true, force: true });
});

interface Seen {
  readonly name: string;
  readonly client: MeshWhisper;
  readonly texts: string[];
  readonly undecryptable: string[];
}

async function device(name: string, primary?: MeshWhisper): Promise<Seen> {
  const storage = await openSqliteStorage({ path: join(work, `d${n++}.sqlite`) });
  if (primary) await addAccountDevice(primary, storage);
  const client = await Client.create({ node: t.url, namespace: 'test', storage, receiptDelay: { minDelayMs: 0, maxDelayMs: 20 } });
  const seen: Seen = { name, client, texts: [], undecryptable: [] };
  client.on('message', (m) => {
    if (m.text) seen.texts.push(m.text);
    // Read receipts go back as an app would send them.
    if (!m.outgoing) void client.markRead(m, [m.id]).catch(() => undefined);
  });
  client.on('undecryptable', (u) => seen.undecryptable.push(`${u.code}: ${u.message} (around '${steps.at(-1) ?? 'the start'}')`));
  return seen;
}

/** What was last said (where an undecryptable report came). */
const steps: string[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a two-device member kicked and back (re-added, by link, by invitation)', () => {
  it('messages both ways reach every member device once; nothing after a kick reaches the kicked devices; no device reports anything undecryptable', async () => {
    const alice1 = await device('alice1');
    const alice2 = await device('alice2', alice1.client);
    const bob = await device('bob');
    const carol1 = await device('carol1');
    const carol2 = await device('carol2', carol1.client);
    const everyone = [alice1, alice2, bob, carol1, carol2];
    const carols = [carol1, carol2];
    const joined = Promise.all([alice2, bob, carol1, carol2].map((d) => d.client.once('groupChange', (e) => e.change.type === 'joined', 20_000)));
    const g = await alice1.client.groups.create('back again', [bob.client.accountKey, carol1.client.accountKey]);
    const groupId = g.groupId;
    const to = { kind: 'group' as const, groupId };
    await joined;

    /** `from` sends `text` (typing first, as an app does); every device in `members` but `from` gets it. */
    const say = async (from: Seen, text: string, members: Seen[]): Promise<void> => {
      const got = Promise.all(members.filter((d) => d !== from).map((d) => d.client.once('message', (m) => m.text === text, 20_000)));
      steps.push(`${from.name}: ${text}`);
      await from.client.setTyping(to, true);
      await from.client.sendText(to, text);
      await got;
    };
    const kick = async (): Promise<void> => {
      const out = Promise.all(everyone.map((d) => d.client.once('groupChange', (e) => e.change.type === 'memberRemoved', 20_000)));
      await alice1.client.groups.kick(groupId, carol1.client.accountKey);
      await out;
    };
    const back = (): Promise<unknown> => Promise.all(carols.map((d) => d.client.once('groupChange', (e) => e.change.type === 'joined' || e.change.type === 'memberAdded', 20_000)));
    const round = async (tag: string): Promise<void> => {
      for (const d of everyone) await say(d, `${tag} from ${d.name}`, everyone);
    };

    await round('first');
    const outside = [alice1, alice2, bob];

    // 1. Kicked, then re-added.
    await kick();
    await say(alice2, 'while carol is out (1)', outside);
    await say(bob, 'bob while carol is out (1)', outside);
    let returned = back();
    await alice1.client.groups.add(groupId, carol1.client.accountKey);
    await returned;
    await round('re-added');

    // 2. Kicked, then back by a link (asked from carol's second device).
    await kick();
    await say(alice1, 'while carol is out (2)', outside);
    const link = await alice1.client.groups.inviteLink(groupId);
    returned = back();
    await carol2.client.groups.joinByLink(link);
    await returned;
    await round('by link');

    // 3. Kicked, then invited; carol accepts on her first device; her second forgets the invitation.
    await kick();
    await say(bob, 'while carol is out (3)', outside);
    const invited = Promise.all(carols.map((d) => d.client.once('groupInvite', () => true, 20_000)));
    await alice2.client.groups.invite(groupId, carol1.client.accountKey);
    const [invitation] = await invited;
    returned = back();
    await carol1.client.groups.acceptInvite(invitation!);
    await returned;
    for (const until = Date.now() + 10_000; (await carol2.client.groups.invitations()).length > 0; ) {
      if (Date.now() > until) throw new Error('carol2 still shows the invitation carol answered on carol1');
      await sleep(50);
    }
    await round('invited');

    await sleep(500); // receipts and late copies settle
    for (const d of everyone) {
      const counts = new Map<string, number>();
      for (const x of d.texts) counts.set(x, (counts.get(x) ?? 0) + 1);
      expect([...counts].filter(([, c]) => c > 1), `${d.name} got a message twice`).toEqual([]);
      expect(d.undecryptable, `${d.name} reported undecryptable envelopes`).toEqual([]);
    }
    for (const d of carols) expect(d.texts.filter((x) => x.includes('while carol is out'))).toEqual([]);
    const info = await carol2.client.groups.info(groupId);
    expect(info?.isMember).toBe(true);
    expect(toHex(info!.groupId)).toBe(toHex(groupId));
    await Promise.all(everyone.map((d) => d.client.close()));
  });
});

/**
 * Group history shared explicitly (docs/spec/content.md §9, docs/spec/groups.md §G6) over a real
 * node (real sockets, SQLite files): a member added later sees none of the earlier messages; it asks
 * a member for the group's history; the member's app decides (policy 'ask', the default) — refused
 * first, then granted: the earlier messages appear, marked replayed, at their place, nothing twice.
 * A non-member (or a member asking a non-member) is refused.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toHex } from '@meshwhisper/crypto';
import type { MeshWhisperEvents } from '../../src/index.js';
import { MeshWhisper, openSqliteStorage } from '../../src/index.js';
import type { E2eNode } from './test-node.js';
import { startE2eNode } from './test-node.js';

let t: E2eNode;
const work = mkdtempSync(join(tmpdir(), 'mw-sdk-groups-replay-'));
let n = 0;
beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  await t?.close();
  rmSync(work, { recursive: true, force: true });
});

async function device(): Promise<MeshWhisper> {
  const storage = await openSqliteStorage({ path: join(work, `d${n++}.sqlite`) });
  return MeshWhisper.create({ node: t.url, namespace: 'test', storage, receiptDelay: { minDelayMs: 0, maxDelayMs: 20 } });
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('group history replay with consent', () => {
  it('a member added later sees no earlier message; asks; refused by default policy ask; granted → the earlier messages appear marked replayed, nothing twice', async () => {
    const [alice, bob, carol, dave] = [await device(), await device(), await device(), await device()];
    const joined = bob.once('groupChange', (e) => e.change.type === 'joined', 30_000);
    const g = await alice.groups.create('book club', [bob.accountKey]);
    await joined;
    const conversation = { kind: 'group' as const, groupId: g.groupId };
    const history = async (c: MeshWhisper) => (await c.history(conversation)).map((m) => ({ text: m.text, replayed: m.replayed === true, author: toHex(m.author) }));

    // Before carol: one message from each, and one that disappears (never replayed).
    for (const [who, text] of [[alice, 'early from alice'], [bob, 'early from bob']] as const) {
      const got = (who === alice ? bob : alice).once('message', (m) => m.text === text, 30_000);
      await who.sendText(conversation, text);
      await got;
    }
    await alice.setDisappearingTimer(conversation, 3600);
    const gotEphemeral = bob.once('message', (m) => m.text === 'gone within the hour', 30_000);
    await alice.sendText(conversation, 'gone within the hour');
    await gotEphemeral;
    await alice.setDisappearingTimer(conversation, 0);

    // Carol is added: she holds the group and none of its earlier messages.
    const carolJoined = carol.once('groupChange', (e) => e.change.type === 'joined', 30_000);
    const added = await alice.groups.add(g.groupId, carol.accountKey);
    await carolJoined;
    await until(async () => (await carol.groups.info(g.groupId))?.digest === added.digest && (await bob.groups.info(g.groupId))?.digest === added.digest, 'convergence');
    const live = carol.once('message', (m) => m.text === 'welcome carol', 30_000);
    await bob.sendText(conversation, 'welcome carol');
    await live;
    expect((await history(carol)).map((m) => m.text)).toEqual(['welcome carol']);

    // Who may ask whom: only another member of a group this device is in.
    await expect(carol.requestHistoryReplay(dave.accountKey, { groupId: g.groupId })).rejects.toMatchObject({ code: 'MW_SDK_INVALID_ARGUMENT' });
    await expect(dave.requestHistoryReplay(alice.accountKey, { groupId: g.groupId })).rejects.toMatchObject({ code: 'MW_SDK_UNKNOWN_CONVERSATION' });

    // First ask: alice's app (policy 'ask') is asked and says no.
    const asked = alice.once('historyReplayRequest', () => true, 30_000);
    const refused = carol.once('historyReplayed', () => true, 30_000);
    const first = await carol.requestHistoryReplay(alice.accountKey, { groupId: g.groupId });
    const request = (await asked) as MeshWhisperEvents['historyReplayRequest'];
    expect(request.conversation).toEqual(conversation);
    expect(toHex(request.from)).toBe(toHex(carol.accountKey));
    await alice.answerHistoryReplay(request.requestId, false);
    const no = (await refused) as MeshWhisperEvents['historyReplayed'];
    expect(no).toMatchObject({ requestId: first.requestId, decision: 'refused', added: 0, complete: true });
    expect(no.conversation).toEqual(conversation);
    expect((await history(carol)).map((m) => m.text)).toEqual(['welcome carol']);

    // Second ask: granted. The earlier messages arrive at their place, marked replayed; what carol
    // got live is not duplicated; the disappearing message is not replayed.
    const asked2 = alice.once('historyReplayRequest', () => true, 30_000);
    const granted = carol.once('historyReplayed', (e) => e.complete, 30_000);
    await carol.requestHistoryReplay(alice.accountKey, { groupId: g.groupId });
    await alice.answerHistoryReplay(((await asked2) as MeshWhisperEvents['historyReplayRequest']).requestId, true);
    const yes = (await granted) as MeshWhisperEvents['historyReplayed'];
    expect(yes.decision).toBe('granted');
    expect(yes.added).toBe(2);
    expect(await history(carol)).toEqual([
      { text: 'early from alice', replayed: true, author: toHex(alice.accountKey) },
      { text: 'early from bob', replayed: true, author: toHex(bob.accountKey) },
      { text: 'welcome carol', replayed: false, author: toHex(bob.accountKey) },
    ]);
    // The members' own histories are untouched.
    expect((await history(alice)).every((m) => !m.replayed)).toBe(true);
    await Promise.all([alice, bob, carol, dave].map((c) => c.close()));
  }, 180_000);

  it('membership is checked again when the app grants: a member kicked while the ask was pending gets refused, nothing replayed', async () => {
    const [alice, bob, carol] = [await device(), await device(), await device()];
    const joined = Promise.all([bob, carol].map((c) => c.once('groupChange', (e) => e.change.type === 'joined', 30_000)));
    const g = await alice.groups.create('plans', [bob.accountKey, carol.accountKey]);
    await joined;
    const conversation = { kind: 'group' as const, groupId: g.groupId };
    const got = carol.once('message', (m) => m.text === 'before', 30_000);
    await alice.sendText(conversation, 'before');
    await got;

    const asked = alice.once('historyReplayRequest', () => true, 30_000);
    const answered = carol.once('historyReplayed', () => true, 30_000);
    await carol.requestHistoryReplay(alice.accountKey, { groupId: g.groupId });
    const request = (await asked) as MeshWhisperEvents['historyReplayRequest'];
    // While alice's user decides, carol is kicked; the grant then goes out as a refusal.
    const removed = carol.once('groupChange', (e) => e.change.type === 'memberRemoved', 30_000);
    await alice.groups.kick(g.groupId, carol.accountKey);
    await removed;
    await alice.answerHistoryReplay(request.requestId, true);
    expect(await answered).toMatchObject({ decision: 'refused', added: 0, complete: true });
    expect((await carol.history(conversation)).some((m) => m.replayed)).toBe(false);
    await Promise.all([alice, bob, carol].map((c) => c.close()));
  }, 180_000);
});

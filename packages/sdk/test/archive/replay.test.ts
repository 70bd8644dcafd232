/**
 * History replay with consent over a real node (docs/spec/content.md §History replay): a device
 * without history (restored from an archive that kept none) asks a contact to replay their
 * conversation. Default policy 'ask': nothing is sent until the contact's app answers; a refusal
 * sends nothing; a grant merges the messages, marked replayed, without duplicating what the device
 * already holds; a fourth request in a day is rate-limited without asking; 'never' and 'always'
 * decide without asking.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toHex } from '@meshwhisper/crypto';
import type { E2eNode } from '../client/test-node.js';
import { startE2eNode } from '../client/test-node.js';
import type { MeshWhisperEvents } from '../../src/index.js';
import { MeshWhisper, SdkError, memoryStorage } from '../../src/index.js';

let t: E2eNode;
const open: MeshWhisper[] = [];
const fast = { receiptDelay: { minDelayMs: 0, maxDelayMs: 0 } };

beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  for (const c of open) await c.close().catch(() => undefined);
  await t?.close();
});

async function client(extra: Partial<Parameters<typeof MeshWhisper.create>[0]> = {}): Promise<MeshWhisper> {
  const c = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...fast, ...extra });
  open.push(c);
  return c;
}

/** A and B talk (both accepted contacts); returns a device of A's account that has none of it (restored without history). */
async function talkThenFreshDevice(b: MeshWhisper) {
  const a = await client();
  const texts = ['a1', 'b1', 'a2'];
  for (const text of texts) {
    const [from, to] = text.startsWith('a') ? [a, b] : [b, a];
    const got = to.once('message', (m) => m.text === text);
    await from.sendText({ accountKey: to.accountKey }, text);
    await got;
  }
  const { recoveryKey } = await a.enableArchive(); // contacts, no history
  const r = await MeshWhisper.restoreFromArchive({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...fast, recoveryKey: recoveryKey! });
  open.push(r.client);
  return { a, fresh: r.client };
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return e instanceof SdkError ? e.code : `not an SdkError: ${String(e)}`;
  }
  return 'ok';
}

describe('history replay with consent', () => {
  it("policy 'ask' (default): refused until the contact's app says yes; granted messages merge once, marked replayed; a fourth request is rate-limited", async () => {
    const b = await client();
    const { a, fresh } = await talkThenFreshDevice(b);
    expect(await fresh.history(b.accountKey)).toEqual([]);
    // A live message after the restore: the replay must not duplicate it.
    const live = fresh.once('message', (m) => m.text === 'b2 live');
    await b.sendText({ accountKey: a.accountKey }, 'b2 live');
    await live;

    const asks: MeshWhisperEvents['historyReplayRequest'][] = [];
    b.on('historyReplayRequest', (e) => asks.push(e));
    const answers: MeshWhisperEvents['historyReplayed'][] = [];
    fresh.on('historyReplayed', (e) => answers.push(e));

    // 1: asked, the app refuses → "refused", nothing merged.
    const asked1 = b.once('historyReplayRequest', () => true);
    const { requestId: first } = await fresh.requestHistoryReplay(b.accountKey);
    const ask1 = await asked1;
    expect(ask1.requestId).toBe(first);
    expect(toHex(ask1.from)).toBe(toHex(a.accountKey));
    expect(ask1.maxMessages).toBe(200);
    expect(answers).toEqual([]); // nothing is sent before the app answers
    const refused = fresh.once('historyReplayed', (e) => e.requestId === first);
    await b.answerHistoryReplay(first, false);
    expect(await refused).toMatchObject({ decision: 'refused', added: 0, complete: true });
    expect((await fresh.history(b.accountKey)).map((m) => m.text)).toEqual(['b2 live']);
    expect(await codeOf(b.answerHistoryReplay(first, true))).toBe('MW_SDK_INVALID_ARGUMENT'); // answered already

    // 2: granted → the three older messages, in order, marked replayed; the live one not duplicated.
    const asked2 = b.once('historyReplayRequest', () => true);
    const { requestId: second } = await fresh.requestHistoryReplay(b.accountKey);
    await asked2;
    const granted = fresh.once('historyReplayed', (e) => e.requestId === second && e.complete);
    await b.answerHistoryReplay(second, true);
    expect(await granted).toMatchObject({ decision: 'granted', added: 3 });
    const history = await fresh.history(b.accountKey);
    expect(history.map((m) => [m.text, m.outgoing, m.replayed === true])).toEqual([
      ['a1', true, true],
      ['b1', false, true],
      ['a2', true, true],
      ['b2 live', false, false],
    ]);

    // 3: granted again → nothing new (no duplicates).
    const asked3 = b.once('historyReplayRequest', () => true);
    const { requestId: third } = await fresh.requestHistoryReplay(b.accountKey);
    await asked3;
    const again = fresh.once('historyReplayed', (e) => e.requestId === third && e.complete);
    await b.answerHistoryReplay(third, true);
    expect(await again).toMatchObject({ decision: 'granted', added: 0 });
    expect(await fresh.history(b.accountKey)).toHaveLength(4);

    // 4: over the daily limit → answered "rate-limited" without asking B's user.
    const limited = fresh.once('historyReplayed', (e) => e.decision === 'rate-limited');
    await fresh.requestHistoryReplay(b.accountKey);
    await limited;
    expect(asks).toHaveLength(3);
  }, 120_000);

  it("policy 'never' refuses and 'always' grants, without asking; only accepted contacts can be asked", async () => {
    const never = await client({ historyReplay: 'never' });
    const { fresh: f1 } = await talkThenFreshDevice(never);
    let asked = false;
    never.on('historyReplayRequest', () => (asked = true));
    const refused = f1.once('historyReplayed', () => true);
    await f1.requestHistoryReplay(never.accountKey);
    expect(await refused).toMatchObject({ decision: 'refused' });
    expect(asked).toBe(false);

    const always = await client({ historyReplay: 'always' });
    const { fresh: f2 } = await talkThenFreshDevice(always);
    const granted = f2.once('historyReplayed', (e) => e.complete);
    await f2.requestHistoryReplay(always.accountKey, { maxMessages: 2 });
    expect(await granted).toMatchObject({ decision: 'granted', added: 2 });
    expect((await f2.history(always.accountKey)).map((m) => m.text)).toEqual(['b1', 'a2']); // the newest two

    const stranger = await client();
    expect(await codeOf(f2.requestHistoryReplay(stranger.accountKey))).toBe('MW_SDK_INVALID_ARGUMENT');
    expect(await codeOf(client({ historyReplay: 'sometimes' as never }))).toBe('MW_SDK_INVALID_ARGUMENT');
  }, 120_000);
});

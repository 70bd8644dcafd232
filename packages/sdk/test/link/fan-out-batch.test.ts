/**
 * Batched fan-out (docs/spec/node-protocol.md §4.1): one message to an account of three devices,
 * with mirror copies for the sender's own other device, is sealed in one storage transaction and
 * posted in ONE request; a copy the node refuses on its own (rate limited) is retried alone, and
 * every device gets the message exactly once. Real node, real sockets; the recorded fetch
 * delegates every request to the real one.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { toHex } from '@meshwhisper/crypto';
import { SendBatchRequestSchema, fromBinary } from '@meshwhisper/protocol';
import type { E2eNode } from '../client/test-node.js';
import { OPEN_RATE_LIMITS, addAccountDevice, startE2eNode } from '../client/test-node.js';
import type { IncomingMessage } from '../../src/index.js';
import { MeshWhisper, memoryStorage } from '../../src/index.js';
import type { ProtocolStorage, StorageTx } from '../../src/storage/types.js';
import { markStorageTx } from '../../src/storage/types.js';

let t: E2eNode | undefined;
const open: MeshWhisper[] = [];
afterEach(async () => {
  for (const c of open.splice(0)) await c.close();
  await t?.close();
  t = undefined;
});

/** POSTs to the send routes, with the item count of each batch; every request goes to the real fetch. */
function recordingFetch(): { fetch: typeof fetch; sends: { path: string; items: number }[] } {
  const sends: { path: string; items: number }[] = [];
  const f: typeof fetch = async (input, init) => {
    const path = new URL(input instanceof Request ? input.url : String(input)).pathname;
    if (init?.method === 'POST' && path === '/v1/send/batch') sends.push({ path, items: fromBinary(SendBatchRequestSchema, init.body as Uint8Array).items.length });
    else if (init?.method === 'POST' && path === '/v1/send') sends.push({ path, items: 1 });
    return fetch(input, init);
  };
  return { fetch: f, sends };
}

/**
 * Counts the committed transactions of a storage that wrote something (calls outside transaction()
 * are one-operation transactions too; reads are not commits), delegating everything to it.
 */
function countCommits(storage: ProtocolStorage): { n: number } {
  const c = { n: 0 };
  const real = storage.transaction.bind(storage);
  storage.transaction = (<T>(fn: (tx: StorageTx) => Promise<T>): Promise<T> => {
    let wrote = false;
    return real((tx) => {
      const view = new Proxy(tx, {
        get(target, prop) {
          const v = Reflect.get(target, prop, target) as unknown;
          if (typeof v !== 'function') return v;
          if (typeof prop === 'string' && /^(set|delete|store|remove|add|prune)/.test(prop)) wrote = true;
          return (v as (...a: unknown[]) => unknown).bind(target);
        },
      });
      markStorageTx(view);
      return fn(view);
    }).then((r) => {
      if (wrote) c.n++;
      return r;
    });
  }) as typeof storage.transaction;
  return c;
}

async function account(url: string, devices: number, extra: Partial<Parameters<typeof MeshWhisper.create>[0]> = {}): Promise<MeshWhisper[]> {
  const slow = { receiptDelay: { minDelayMs: 60_000, maxDelayMs: 60_000 } }; // no receipts while we count
  const first = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage(), ...slow, ...extra });
  open.push(first);
  const all = [first];
  for (let i = 1; i < devices; i++) {
    const storage = await memoryStorage();
    await addAccountDevice(first, storage);
    const d = await MeshWhisper.create({ node: url, namespace: 'test', storage, ...slow });
    open.push(d);
    all.push(d);
  }
  return all;
}

/** Every message each client shows, by text. */
function shown(clients: MeshWhisper[]): Map<string, number>[] {
  return clients.map((c) => {
    const m = new Map<string, number>();
    c.on('message', (x: IncomingMessage) => m.set(x.text ?? '', (m.get(x.text ?? '') ?? 0) + 1));
    return m;
  });
}

describe('batched fan-out', () => {
  it('a 3-device account gets one request (with the mirror copy), sealed in one commit; each device shows the message once', async () => {
    t = await startE2eNode();
    const rec = recordingFetch();
    const aliceStorage = await memoryStorage();
    const [alice, alice2] = await account(t.url, 2, { fetch: rec.fetch, storage: aliceStorage });
    const bobs = await account(t.url, 3);
    const seen = shown(bobs);
    const mirrored = shown([alice2!]);

    // First message: sessions are set up (their own commits), then one request for all copies.
    const got1 = Promise.all(bobs.map((b) => b.once('message', (m) => m.text === 'one')));
    const mirror1 = alice2!.once('message', (m) => m.outgoing && m.text === 'one');
    rec.sends.length = 0;
    await alice!.sendText({ accountKey: bobs[0]!.accountKey }, 'one');
    expect(rec.sends).toEqual([{ path: '/v1/send/batch', items: 4 }]); // 3 devices of Bob + Alice's other device
    await Promise.all([got1, mirror1]);

    // With sessions in place: one commit seals all four copies, one commit marks them sent.
    const commits = countCommits(aliceStorage);
    rec.sends.length = 0;
    const got2 = Promise.all(bobs.map((b) => b.once('message', (m) => m.text === 'two')));
    const mirror2 = alice2!.once('message', (m) => m.outgoing && m.text === 'two');
    const { id } = await alice!.sendText({ accountKey: bobs[0]!.accountKey }, 'two');
    expect(commits.n).toBe(2);
    expect(rec.sends).toEqual([{ path: '/v1/send/batch', items: 4 }]);
    const [atBob] = await Promise.all([got2, mirror2]);
    expect(atBob.every((m) => m.id === id)).toBe(true);
    expect(await alice!.messageState(id)).toBe('sent');
    expect(await alice!.flushOutbox()).toBe(0); // nothing left queued
    for (const s of seen) expect([s.get('one'), s.get('two')]).toEqual([1, 1]);
    expect([mirrored[0]!.get('one'), mirrored[0]!.get('two')]).toEqual([1, 1]);
  });

  it('a copy the node refuses on its own (rate limited) is retried alone; nothing lost, nothing twice', async () => {
    // Tokenless (first-contact) sends from this address: a burst of 2, refilled at 4/s. The first
    // message to Bob goes tokenless to his 3 devices: two pass, the third is RATE_LIMITED.
    const limits = OPEN_RATE_LIMITS.replace(/send-first-contact=[^,]+/, 'send-first-contact=4:2');
    t = await startE2eNode({ RATE_LIMITS: limits });
    const rec = recordingFetch();
    const [alice] = await account(t.url, 1, { fetch: rec.fetch });
    const bobs = await account(t.url, 3);
    const seen = shown(bobs);
    const states: string[] = [];
    alice!.on('messageState', (s) => states.push(s.state));
    const got = Promise.all(bobs.map((b) => b.once('message', (m) => m.text === 'hello')));
    rec.sends.length = 0;
    const { id } = await alice!.sendText({ accountKey: bobs[0]!.accountKey }, 'hello');
    expect(rec.sends).toEqual([
      { path: '/v1/send/batch', items: 3 },
      { path: '/v1/send', items: 1 }, // the refused copy, alone, after its backoff
    ]);
    await got;
    expect(await alice!.messageState(id)).toBe('sent');
    expect(states.filter((s) => s === 'sent')).toEqual(['sent']);
    // A later message (token lane now) arrives after it: had a duplicate been queued, it would be shown by now.
    const after = Promise.all(bobs.map((b) => b.once('message', (m) => m.text === 'after')));
    await alice!.sendText({ accountKey: bobs[0]!.accountKey }, 'after');
    await after;
    for (const s of seen) expect(s.get('hello')).toBe(1);
    expect(new Set(bobs.map((b) => toHex(b.mailboxId))).size).toBe(3);
  });
});

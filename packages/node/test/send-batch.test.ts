// POST /v1/send/batch (docs/spec/node-protocol.md §4.1): one answer per item with the same typed
// codes as POST /v1/send, per-item rate limits, bounds on the request, one group commit for the
// whole batch, and nothing written when the request (or its commit) fails.
import { afterEach, describe, expect, it } from 'vitest';
import type { MessageInitShape } from '@bufbuild/protobuf';
import {
  EnvelopeClass,
  ErrorCode,
  MAX_SEND_BATCH_ITEMS,
  SendBatchRequestSchema,
  SendBatchResultSchema,
  SendRequestSchema,
  create,
  encodeBody,
  fromBinary,
} from '@meshwhisper/protocol';
import type { SendBatchResult } from '@meshwhisper/protocol';
import { MAX_GROUP_COMMIT } from '../src/mailbox/send.js';
import { TestDevice, generousLimits, proto, startTestNode } from './helpers.js';
import type { TestNode } from './helpers.js';

type Item = MessageInitShape<typeof SendRequestSchema>;

let node: TestNode | undefined;
afterEach(async () => {
  await node?.close();
  node = undefined;
});

async function start(env: Record<string, string> = {}): Promise<TestNode> {
  node = await startTestNode({ RATE_LIMITS: generousLimits(), ...env });
  return node;
}

async function batch(t: TestNode, items: Item[]) {
  return t.node.app.inject({ method: 'POST', url: '/v1/send/batch', headers: proto, payload: Buffer.from(encodeBody(SendBatchRequestSchema, { items })) });
}

function outcomes(res: { statusCode: number; rawPayload: Buffer }): (string | 'ok')[] {
  expect(res.statusCode).toBe(200);
  const r: SendBatchResult = fromBinary(SendBatchResultSchema, new Uint8Array(res.rawPayload));
  return r.results.map((x) => (x.outcome.case === 'ok' ? 'ok' : x.outcome.case === 'error' ? x.outcome.value.code : 'missing'));
}

const durable = (mailboxId: Uint8Array, n: number, extra: { payload?: Uint8Array; class?: EnvelopeClass; deliveryToken?: Uint8Array } = {}): Item => ({ mailboxId, payload: new TextEncoder().encode(`m${n}`), class: EnvelopeClass.DURABLE, ...extra });

async function stored(t: TestNode, mailbox: Uint8Array): Promise<string[]> {
  return (await t.node.services.store.fetch(mailbox, 0, 10_000, 100_000_000)).map((e) => new TextDecoder().decode(e.payload));
}

/** Counts the store's enqueue calls (group commits) while delegating to the real store. */
function countCommits(t: TestNode): { sizes: number[] } {
  const store = t.node.services.store;
  const real = store.enqueue.bind(store);
  const seen = { sizes: [] as number[] };
  store.enqueue = (items, limits) => {
    seen.sizes.push(items.length);
    return real(items, limits);
  };
  return seen;
}

describe('POST /v1/send/batch', () => {
  it('stores every item for several mailboxes in ONE group commit and answers each with its id', async () => {
    const t = await start();
    const devices = [new TestDevice(), new TestDevice(), new TestDevice()];
    for (const d of devices) expect((await d.register(t.node)).statusCode).toBe(200);
    const commits = countCommits(t);
    const res = await batch(t, devices.map((d, i) => durable(d.mailbox, i)));
    const r = fromBinary(SendBatchResultSchema, new Uint8Array(res.rawPayload));
    expect(r.results.map((x) => x.outcome.case)).toEqual(['ok', 'ok', 'ok']);
    const ids = r.results.map((x) => (x.outcome.case === 'ok' ? Buffer.from(x.outcome.value.id).toString('hex') : ''));
    expect(new Set(ids).size).toBe(3);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(commits.sizes).toEqual([3]);
    for (const [i, d] of devices.entries()) expect(await stored(t, d.mailbox)).toEqual([`m${i}`]);
  });

  it('answers bad items with their own typed codes and still stores the good ones, in order', async () => {
    const t = await start();
    const a = new TestDevice();
    const b = new TestDevice();
    await a.register(t.node);
    await b.register(t.node);
    const unknown = new TestDevice(); // never registered
    const res = await batch(t, [
      durable(a.mailbox, 0),
      durable(unknown.mailbox, 1), // no such mailbox
      durable(b.mailbox, 2, { deliveryToken: new Uint8Array(16).fill(7) }), // not one of b's tokens
      durable(new Uint8Array(31), 3), // malformed mailbox id
      durable(b.mailbox, 4, { payload: new Uint8Array(0) }), // empty payload
      durable(b.mailbox, 5, { class: EnvelopeClass.EPHEMERAL }), // batches are durable only
      durable(b.mailbox, 6),
    ]);
    expect(outcomes(res)).toEqual(['ok', ErrorCode.NOT_FOUND, ErrorCode.FORBIDDEN, ErrorCode.BAD_REQUEST, ErrorCode.BAD_REQUEST, ErrorCode.BAD_REQUEST, 'ok']);
    expect(await stored(t, a.mailbox)).toEqual(['m0']);
    expect(await stored(t, b.mailbox)).toEqual(['m6']);
  });

  it('charges the rate limits per item: past the budget, items are RATE_LIMITED and not stored', async () => {
    const t = await start({ RATE_LIMITS: `${generousLimits(['send-first-contact'])},send-first-contact=0.001:3` });
    const d = new TestDevice();
    await d.register(t.node);
    const res = await batch(t, [0, 1, 2, 3, 4].map((i) => durable(d.mailbox, i)));
    expect(outcomes(res)).toEqual(['ok', 'ok', 'ok', ErrorCode.RATE_LIMITED, ErrorCode.RATE_LIMITED]);
    const r = fromBinary(SendBatchResultSchema, new Uint8Array(res.rawPayload));
    const last = r.results[4]!.outcome;
    expect(last.case === 'error' && last.value.retryAfterMs).toBeGreaterThan(0);
    expect(await stored(t, d.mailbox)).toEqual(['m0', 'm1', 'm2']);
  });

  it('applies the mailbox quotas per item (QUOTA_EXCEEDED for what does not fit)', async () => {
    const t = await start({ MAILBOX_MAX_MESSAGES: '10', FIRST_CONTACT_MAX_MESSAGES: '2' });
    const d = new TestDevice();
    await d.register(t.node);
    expect(outcomes(await batch(t, [0, 1, 2].map((i) => durable(d.mailbox, i))))).toEqual(['ok', 'ok', ErrorCode.QUOTA_EXCEEDED]); // the first-contact lane holds 2
    expect(await stored(t, d.mailbox)).toEqual(['m0', 'm1']);
  });

  it('refuses a request that is malformed as a whole, writing nothing', async () => {
    const t = await start();
    const d = new TestDevice();
    await d.register(t.node);
    const tooMany = await batch(t, Array.from({ length: MAX_SEND_BATCH_ITEMS + 1 }, (_, i) => durable(d.mailbox, i)));
    expect(tooMany.statusCode).toBe(400);
    expect((tooMany.json() as { error: { code: string } }).error.code).toBe(ErrorCode.BAD_REQUEST);
    const empty = await batch(t, []);
    expect(empty.statusCode).toBe(400);
    const garbage = await t.node.app.inject({ method: 'POST', url: '/v1/send/batch', headers: proto, payload: Buffer.from([0x0a, 0xff, 0xff]) });
    expect((garbage.json() as { error: { code: string } }).error.code).toBe(ErrorCode.MALFORMED);
    const big = await batch(t, [0, 1, 2].map((i) => durable(d.mailbox, i, { payload: new Uint8Array(200 * 1024).fill(i) })));
    expect(big.statusCode).toBe(413);
    expect(await stored(t, d.mailbox)).toEqual([]);
    // The full batch is accepted.
    expect(outcomes(await batch(t, Array.from({ length: MAX_SEND_BATCH_ITEMS }, (_, i) => durable(d.mailbox, i)))).every((o) => o === 'ok')).toBe(true);
    expect((await stored(t, d.mailbox)).length).toBe(MAX_SEND_BATCH_ITEMS);
  });

  it('a failed group commit answers every admitted item UNAVAILABLE and leaves nothing written', async () => {
    const t = await start();
    const a = new TestDevice();
    const b = new TestDevice();
    await a.register(t.node);
    await b.register(t.node);
    const store = t.node.services.store;
    const real = store.enqueue.bind(store);
    store.enqueue = () => Promise.reject(new Error('injected: disk I/O error'));
    const res = await batch(t, [durable(a.mailbox, 0), durable(b.mailbox, 1), durable(new Uint8Array(3), 2)]);
    expect(outcomes(res)).toEqual([ErrorCode.UNAVAILABLE, ErrorCode.UNAVAILABLE, ErrorCode.BAD_REQUEST]);
    store.enqueue = real;
    expect(await stored(t, a.mailbox)).toEqual([]);
    expect(await stored(t, b.mailbox)).toEqual([]);
    // The same bytes again, once the store works: each stored exactly once.
    expect(outcomes(await batch(t, [durable(a.mailbox, 0), durable(b.mailbox, 1)]))).toEqual(['ok', 'ok']);
    expect(await stored(t, a.mailbox)).toEqual(['m0']);
  });

  it('never cuts a batch between two group commits, whatever else is queued', async () => {
    const t = await start({ FIRST_CONTACT_MAX_MESSAGES: '5000' });
    const d = new TestDevice();
    await d.register(t.node);
    const commits = countCommits(t);
    // MAX_GROUP_COMMIT − 12 single sends and then a batch of 20 in the same turn: the batch
    // straddles the group limit; it must move to the next group whole.
    const sender = t.node.services.sender;
    const n = MAX_GROUP_COMMIT - 12;
    const singles = Array.from({ length: n }, (_, i) => sender.send(create(SendRequestSchema, durable(d.mailbox, 10_000 + i)), 'client'));
    const b = sender.sendBatch(Array.from({ length: 20 }, (_, i) => create(SendRequestSchema, durable(d.mailbox, i))), 'client');
    await Promise.all(singles);
    expect((await b).every((o) => o.ok)).toBe(true);
    expect(commits.sizes).toEqual([n, 20]);
    expect((await stored(t, d.mailbox)).length).toBe(n + 20);
  });
});

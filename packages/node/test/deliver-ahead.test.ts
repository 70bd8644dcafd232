// Delivery ahead of the commit (mailbox/hub.ts AheadDelivery, docs/spec/node-protocol.md §3): a
// live, caught-up device gets a durable envelope while its group commit runs; the sender is still
// answered only after the commit, and the device's ack of it waits for that commit. Real node,
// real sockets, the real SQLite store; the commit is held (or failed) by a gate in front of
// store.enqueue, which then calls the real one.
import { afterEach, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import { EnvelopeClass, ErrorCode, SendRequestSchema, SendResultSchema, encodeBody, fromBinary } from '@meshwhisper/protocol';
import { CommitGate, TestDevice, generousLimits, proto, startTestNode } from './helpers.js';
import type { TestNode } from './helpers.js';
import { WsClient } from './ws-client.js';

const open: { close(): unknown }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const untext = (b: Uint8Array): string => new TextDecoder().decode(b);

async function setup(env: Record<string, string> = {}): Promise<{ t: TestNode; d: TestDevice; c: WsClient; token: Uint8Array; gate: CommitGate; port: number }> {
  const t = await startTestNode({ RATE_LIMITS: generousLimits(), ...env }, {}, { metrics: true });
  open.push(t);
  const addr: AddressInfo = await t.node.listen();
  const port = addr.port;
  const d = new TestDevice();
  await d.register(t.node);
  const c = await device(port, d);
  await c.nextKind('queueEmpty');
  const token = new Uint8Array(32).fill(0x5a);
  await setTokens(c, [token]);
  const gate = new CommitGate(t.node.services.store);
  open.push({ close: () => gate.open() }); // before the node closes (it waits for queued sends)
  return { t, d, c, token, gate, port };
}

async function device(port: number, d: TestDevice): Promise<WsClient> {
  const c = await WsClient.device(port, d);
  open.push({ close: () => c.terminate() });
  return c;
}

async function setTokens(c: WsClient, tokens: Uint8Array[]): Promise<void> {
  const rid = c.send({ body: { case: 'setDeliveryTokens', value: { tokens } } });
  expect((await c.next((f) => f.requestId === rid)).body.case).toBe('ok');
}

/** POST /v1/send; `answered` turns true when the node has answered. */
function send(t: TestNode, mailbox: Uint8Array, payload: string, token?: Uint8Array): { answered: boolean; result: Promise<{ status: number; body: Buffer }> } {
  const s = {
    answered: false,
    result: t.node.app
      .inject({
        method: 'POST',
        url: '/v1/send',
        headers: proto,
        payload: Buffer.from(encodeBody(SendRequestSchema, { mailboxId: mailbox, payload: text(payload), class: EnvelopeClass.DURABLE, ...(token ? { deliveryToken: token } : {}) })),
      })
      .then((r) => {
        s.answered = true;
        return { status: r.statusCode, body: r.rawPayload };
      }),
  };
  return s;
}

/** The next deliver frame's payloads and ids. */
async function delivered(c: WsClient, timeoutMs = 5000): Promise<{ payloads: string[]; ids: Uint8Array[] }> {
  const f = await c.nextKind('deliver', timeoutMs);
  return { payloads: f.body.value.envelopes.map((e) => untext(e.payload)), ids: f.body.value.envelopes.map((e) => e.id) };
}

/** No frame of `kind` arrives within `ms`. */
async function none(c: WsClient, kind: 'deliver' | 'ok', ms = 300): Promise<void> {
  await expect(c.nextKind(kind, ms)).rejects.toThrow(/timeout/);
}

/** One send whose commit runs unheld: afterwards the node knows the token is good for this mailbox. */
async function warmToken(t: TestNode, d: TestDevice, c: WsClient, token: Uint8Array): Promise<void> {
  const s = send(t, d.mailbox, 'warm-up', token);
  expect((await s.result).status).toBe(200);
  const got = await delivered(c);
  expect(got.payloads).toEqual(['warm-up']);
  c.ack(got.ids, 4242);
  await c.next((f) => f.requestId === 4242);
}

/** With the commit held, `payload` goes ahead to the device, which acks it (request id `rid`): the ack is held too. */
async function aheadAndAcked(t: TestNode, d: TestDevice, c: WsClient, token: Uint8Array, gate: CommitGate, payload: string, rid: number): Promise<ReturnType<typeof send>> {
  gate.close();
  const s = send(t, d.mailbox, payload, token);
  const got = await delivered(c);
  expect(got.payloads).toEqual([payload]);
  c.ack(got.ids, rid);
  return s;
}

describe('delivery ahead of the commit', () => {
  it('a caught-up device gets the envelope while its commit runs; the sender is answered after the commit; the device’s ack waits for it, then deletes', async () => {
    // A window of 1: the envelope that went ahead fills it, and its commit must still settle it.
    const { t, d, c, token, gate, port } = await setup({ DELIVERY_WINDOW: '1' });
    await warmToken(t, d, c, token);

    gate.close();
    const s = send(t, d.mailbox, 'm1', token);
    const got = await delivered(c);
    expect(got.payloads).toEqual(['m1']);
    expect(s.answered).toBe(false);
    await expect.poll(() => gate.held).toBe(1); // its commit is held
    expect(s.answered).toBe(false);
    expect((await t.node.services.store.mailboxStats(d.mailbox)).messages).toBe(0);

    c.ack(got.ids, 77);
    await none(c, 'ok'); // the ack waits for the commit

    gate.open();
    const r = await s.result;
    expect(r.status).toBe(200);
    const result = fromBinary(SendResultSchema, r.body);
    expect(result.deliveredLive).toBe(true);
    expect(Buffer.from(result.id).equals(Buffer.from(got.ids[0]!))).toBe(true);
    expect((await c.next((f) => f.requestId === 77)).body.case).toBe('ok');
    expect((await t.node.services.store.mailboxStats(d.mailbox)).messages).toBe(0);
    await none(c, 'deliver'); // the commit's wake does not send it again

    // Nothing is left to deliver at the next login.
    c.close();
    await c.waitClosed();
    const c2 = await device(port, d);
    const next = await c2.next((f) => f.body.case === 'queueEmpty' || f.body.case === 'deliver');
    expect(next.body.case).toBe('queueEmpty');
  });

  it('an ack without a request id (the SDK\'s) of an envelope that went ahead is committed with that envelope\'s commit; after a failed commit it frees the window', async () => {
    // AHEAD_HOLD_MS=0: the commit starts at once, so the ack finds the envelope in it (with a hold,
    // the ack would come first and retract it: 'held for the ack', below).
    const { t, d, c, token, gate } = await setup({ DELIVERY_WINDOW: '1', AHEAD_HOLD_MS: '0' });
    await warmToken(t, d, c, token);
    gate.close();
    const s = send(t, d.mailbox, 'm1', token);
    const got = await delivered(c);
    c.ack(got.ids); // request id 0: no Ok, nothing to hold but a mark on the envelope
    await expect.poll(() => gate.held).toBe(1);
    gate.open();
    expect((await s.result).status).toBe(200);
    // Deleted once committed, and the window of 1 is free again: the next envelope arrives.
    await expect.poll(async () => (await t.node.services.store.mailboxStats(d.mailbox)).messages).toBe(0);
    const m2 = send(t, d.mailbox, 'm2', token);
    const got2 = await delivered(c);
    expect(got2.payloads).toEqual(['m2']);
    expect((await m2.result).status).toBe(200);
    c.ack(got2.ids);
    await expect.poll(async () => (await t.node.services.store.mailboxStats(d.mailbox)).messages).toBe(0);

    // The same ack, and the commit fails: nothing stored, and the window is not leaked.
    gate.close();
    const doomed = send(t, d.mailbox, 'doomed', token);
    c.ack((await delivered(c)).ids);
    await expect.poll(() => gate.held).toBe(2); // held counts every commit the gate has held
    gate.fail();
    expect((await doomed.result).status).toBe(503);
    expect((await send(t, d.mailbox, 'after', token).result).status).toBe(200);
    expect((await delivered(c)).payloads).toEqual(['after']);
  });

  it('an envelope that went ahead and is not acknowledged stays stored and comes again at the next login', async () => {
    const { t, d, c, token, gate, port } = await setup();
    await warmToken(t, d, c, token);
    gate.close();
    const s = send(t, d.mailbox, 'kept', token);
    expect((await delivered(c)).payloads).toEqual(['kept']);
    gate.open();
    expect((await s.result).status).toBe(200);
    expect((await t.node.services.store.mailboxStats(d.mailbox)).messages).toBe(1);
    c.terminate();
    await c.waitClosed();
    const c2 = await device(port, d);
    expect((await delivered(c2)).payloads).toEqual(['kept']);
  });

  it('only on a token a commit accepted since the last token change: the first send, and the first after new tokens, wait for their commit; a revoked token never reaches the device', async () => {
    const { t, d, c, token, gate } = await setup();
    gate.close();
    const first = send(t, d.mailbox, 'first', token);
    await none(c, 'deliver'); // the token is not known good yet
    gate.open();
    expect((await first.result).status).toBe(200);
    const a = await delivered(c);
    expect(a.payloads).toEqual(['first']);
    c.ack(a.ids);

    gate.close();
    const second = send(t, d.mailbox, 'second', token);
    expect((await delivered(c)).payloads).toEqual(['second']); // ahead now
    gate.open();
    expect((await second.result).status).toBe(200);

    const token2 = new Uint8Array(32).fill(0x77);
    await setTokens(c, [token2]);
    gate.close();
    const third = send(t, d.mailbox, 'third', token2);
    const revoked = send(t, d.mailbox, 'revoked', token);
    await none(c, 'deliver'); // new tokens: none is known good until a commit accepts one
    gate.open();
    expect((await third.result).status).toBe(200);
    const r = await revoked.result;
    expect(r.status).toBe(403);
    expect((JSON.parse(r.body.toString()) as { error: { code: string } }).error.code).toBe(ErrorCode.FORBIDDEN);
    expect((await delivered(c)).payloads).toEqual(['third']);
    await none(c, 'deliver'); // 'revoked' never arrives

    gate.close();
    const fourth = send(t, d.mailbox, 'fourth', token2);
    expect((await delivered(c)).payloads).toEqual(['fourth']);
    gate.open();
    expect((await fourth.result).status).toBe(200);
  });

  it('first-contact (tokenless) sends never go ahead', async () => {
    const { t, d, c, token, gate } = await setup();
    await warmToken(t, d, c, token);
    gate.close();
    const s = send(t, d.mailbox, 'stranger');
    await none(c, 'deliver');
    gate.open();
    expect((await s.result).status).toBe(200);
    expect((await delivered(c)).payloads).toEqual(['stranger']);
  });

  it('a commit that fails after its envelope went ahead: the sender gets UNAVAILABLE, the device’s ack of it is answered, nothing is stored and the window is not leaked', async () => {
    const { t, d, c, token, gate } = await setup({ DELIVERY_WINDOW: '1' });
    await warmToken(t, d, c, token);
    const s = await aheadAndAcked(t, d, c, token, gate, 'doomed', 31);
    await expect.poll(() => gate.held).toBe(1);
    gate.fail();
    const r = await s.result;
    expect(r.status).toBe(503);
    expect((JSON.parse(r.body.toString()) as { error: { code: string } }).error.code).toBe(ErrorCode.UNAVAILABLE);
    expect((await c.next((f) => f.requestId === 31)).body.case).toBe('ok');
    expect((await t.node.services.store.mailboxStats(d.mailbox)).messages).toBe(0);
    // A window of 1: if the failed envelope still took its place, none of these would arrive.
    for (const m of ['a', 'b', 'c', 'd']) {
      expect((await send(t, d.mailbox, m, token).result).status).toBe(200);
      const x = await delivered(c);
      expect(x.payloads).toEqual([m]);
      c.ack(x.ids, 50);
      await c.next((f) => f.requestId === 50);
    }
  });

  it('a commit that refuses an envelope that went ahead (its token revoked meanwhile): the sender is told, the held ack is answered, nothing is stored', async () => {
    const { t, d, c, token, gate } = await setup();
    await warmToken(t, d, c, token);
    const s = await aheadAndAcked(t, d, c, token, gate, 'raced', 9);
    await setTokens(c, [new Uint8Array(32).fill(1)]); // revoked before the commit
    gate.open();
    expect((await s.result).status).toBe(403);
    expect((await c.next((f) => f.requestId === 9)).body.case).toBe('ok');
    expect((await t.node.services.store.mailboxStats(d.mailbox)).messages).toBe(0);
  });

  it('a device with a backlog (not caught up) gets nothing ahead: stored mail first, in order', async () => {
    const { t, d, c, token, gate, port } = await setup({ DELIVERY_WINDOW: '2' });
    await warmToken(t, d, c, token);
    // Four stored while the device is away; it comes back and reads two (its window).
    c.close();
    await c.waitClosed();
    for (const m of ['s1', 's2', 's3', 's4']) expect((await send(t, d.mailbox, m, token).result).status).toBe(200);
    const c2 = await device(port, d);
    const b1 = await delivered(c2);
    expect(b1.payloads).toEqual(['s1', 's2']);
    // A commit accepts the token for the new connection (its envelope waits behind the backlog).
    expect((await send(t, d.mailbox, 's5', token).result).status).toBe(200);
    gate.close();
    const late = send(t, d.mailbox, 'live', token);
    await none(c2, 'deliver'); // behind: nothing goes ahead of s3…s5
    gate.open();
    expect((await late.result).status).toBe(200);
    const seen: string[] = [];
    c2.ack(b1.ids);
    while (seen.length < 4) {
      const x = await delivered(c2);
      seen.push(...x.payloads);
      c2.ack(x.ids);
    }
    expect(seen).toEqual(['s3', 's4', 's5', 'live']);
  });
});

/** Records the payloads handed to store.enqueue (wrapping what is there, e.g. a CommitGate: recorded as a group goes to the store). */
function recordEnqueued(t: TestNode): string[] {
  const store = t.node.services.store;
  const seen: string[] = [];
  const inner = store.enqueue.bind(store);
  store.enqueue = (items, limits) => {
    for (const i of items) seen.push(untext(i.payload));
    return inner(items, limits);
  };
  return seen;
}

/** Two sends to another mailbox whose commits the gate holds: MAX_COMMITS_IN_FLIGHT (2) are running, so later sends wait in the queue. */
async function holdBothCommitSlots(t: TestNode, gate: CommitGate): Promise<Promise<{ status: number }>[]> {
  const other = new TestDevice();
  await other.register(t.node);
  gate.close();
  const first = send(t, other.mailbox, 'held-1');
  await expect.poll(() => gate.held).toBe(1);
  const second = send(t, other.mailbox, 'held-2');
  await expect.poll(() => gate.held).toBe(2);
  return [first.result, second.result];
}

const unstoredCount = async (t: TestNode): Promise<number> => (await t.node.services.metrics!.envelopesUnstored.get()).values[0]?.value ?? 0;

describe('an envelope acknowledged before its group commit started (WRITE_ACKED_AHEAD)', () => {
  it('is never written: its sender is answered at the device’s ack (delivered live), while commits are still held; the device gets it once', async () => {
    const { t, d, c, token, gate } = await setup();
    await warmToken(t, d, c, token);
    const enqueued = recordEnqueued(t);
    const held = await holdBothCommitSlots(t, gate);

    const s = send(t, d.mailbox, 'acked-first', token);
    const got = await delivered(c);
    expect(got.payloads).toEqual(['acked-first']);
    expect(s.answered).toBe(false);
    c.ack(got.ids); // no request id: the SDK's ack
    const r = await s.result; // with both commits still held
    expect(gate.held).toBe(2);
    expect(r.status).toBe(200);
    const result = fromBinary(SendResultSchema, r.body);
    expect(result.deliveredLive).toBe(true);
    expect(Buffer.from(result.id).equals(Buffer.from(got.ids[0]!))).toBe(true);
    expect(await unstoredCount(t)).toBe(1);

    gate.open();
    expect((await Promise.all(held)).map((h) => h.status)).toEqual([200, 200]);
    await expect.poll(() => t.node.services.sender.backlog).toBe(0);
    expect(enqueued).toEqual(['held-1', 'held-2']); // never handed to the store
    expect((await t.node.services.store.mailboxStats(d.mailbox)).messages).toBe(0);
    await none(c, 'deliver'); // and not delivered again
    // The connection's window is free: the next send goes ahead and is acknowledged the usual way.
    const next = send(t, d.mailbox, 'next', token);
    const again = await delivered(c);
    expect(again.payloads).toEqual(['next']);
    expect((await next.result).status).toBe(200);
  });

  it('an ack with a request id still waits for the commit (its ok follows a deletion), and WRITE_ACKED_AHEAD=true writes every envelope', async () => {
    for (const env of [{}, { WRITE_ACKED_AHEAD: 'true' }] as Record<string, string>[]) {
      const { t, d, c, token, gate } = await setup(env);
      await warmToken(t, d, c, token);
      const enqueued = recordEnqueued(t);
      const held = await holdBothCommitSlots(t, gate);
      const s = send(t, d.mailbox, 'written', token);
      const got = await delivered(c);
      const withId = 'WRITE_ACKED_AHEAD' in env ? 0 : 31;
      c.ack(got.ids, withId);
      await new Promise((r) => setTimeout(r, 300));
      expect(s.answered).toBe(false); // the commits are held
      gate.open();
      expect((await s.result).status).toBe(200);
      if (withId !== 0) expect((await c.next((f) => f.requestId === withId)).body.case).toBe('ok');
      expect((await Promise.all(held)).map((h) => h.status)).toEqual([200, 200]);
      expect(enqueued).toContain('written');
      await expect.poll(async () => (await t.node.services.store.mailboxStats(d.mailbox)).messages).toBe(0); // deleted by the ack
      expect(await unstoredCount(t)).toBe(0);
    }
  });
});

describe('held for the ack (AHEAD_HOLD_MS)', () => {
  it('one send at a time to a connected device that acks: none is written, each sender is answered at the ack; a device that does not ack gets its envelope stored after the hold', async () => {
    // 200 ms (the maximum) so that a slow test machine still acks within the hold.
    const { t, d, c, token } = await setup({ AHEAD_HOLD_MS: '200' });
    await warmToken(t, d, c, token);
    const enqueued = recordEnqueued(t);
    for (let i = 0; i < 10; i++) {
      const s = send(t, d.mailbox, `m${i}`, token);
      const got = await delivered(c);
      expect(got.payloads).toEqual([`m${i}`]);
      c.ack(got.ids); // the SDK's ack, without a request id
      const r = await s.result;
      expect(r.status).toBe(200);
      expect(fromBinary(SendResultSchema, r.body).deliveredLive).toBe(true);
    }
    expect(enqueued).toEqual([]); // without the hold, each would race its own group commit
    expect(await unstoredCount(t)).toBe(10);

    const s = send(t, d.mailbox, 'not acked', token);
    expect((await delivered(c)).payloads).toEqual(['not acked']);
    expect((await s.result).status).toBe(200); // after its hold, with its commit
    expect(enqueued).toEqual(['not acked']);
    expect((await t.node.services.store.mailboxStats(d.mailbox)).messages).toBe(1);
    await none(c, 'deliver'); // not delivered again by its commit
  });

  it('the device disconnects while a send is held: the next send, which cannot go ahead, is stored after it — the device gets both in the order they were sent', async () => {
    const { t, d, c, token, port } = await setup({ AHEAD_HOLD_MS: '200' });
    await warmToken(t, d, c, token);
    const enqueued = recordEnqueued(t);
    const held = send(t, d.mailbox, 'held', token);
    expect((await delivered(c)).payloads).toEqual(['held']); // went ahead; not acked
    c.terminate();
    await expect.poll(() => t.node.services.hub.size).toBe(0);
    // Not connected now: this one is not held, and takes 'held' into its group in front of it
    // (without that rule it would be stored first and 'held' ~200 ms later, after it).
    const after = send(t, d.mailbox, 'after', token);
    expect((await after.result).status).toBe(200);
    expect((await held.result).status).toBe(200);
    expect(enqueued).toEqual(['held', 'after']);
    const again = await device(port, d);
    const got: string[] = [];
    while (got.length < 2) got.push(...(await delivered(again)).payloads);
    expect(got).toEqual(['held', 'after']);
  });
});

// Backpressure in front of the disk (issue 12 §1, mailbox/send.ts SEND_BACKLOG_*): delivery ahead of
// the commit lets the node take sends faster than its disk commits them, so the backlog of durable
// sends waiting for their commit is bounded — at its high mark the anonymous WebSockets stop reading,
// at its maximum sends are refused UNAVAILABLE (retry) — and nothing is dropped unanswered.
import { afterEach, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import { EnvelopeClass, ErrorCode, ProtocolError } from '@meshwhisper/protocol';
import type { SendRequest } from '@meshwhisper/protocol';
import { ANONYMOUS_SOCKET_PATH } from '../src/node.js';
import { SEND_BACKLOG_HIGH, SEND_BACKLOG_MAX, SEND_BACKLOG_RETRY_MS } from '../src/mailbox/send.js';
import type { EnqueueItem, EnqueueOutcome, NodeStore } from '../src/store/node-store.js';
import { CommitGate, TestDevice, durableRequest, generousLimits, looseSendService, startTestNode } from './helpers.js';
import { WsClient } from './ws-client.js';

const open: { close(): unknown }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

/** A store that commits every group at once (behind a CommitGate in these tests). */
function instantStore(): NodeStore {
  return {
    async enqueue(items: readonly EnqueueItem[]): Promise<EnqueueOutcome[]> {
      return items.map((item, k) => ({ ok: true, envelope: { seq: k + 1, id: item.id, payload: item.payload, receivedAt: item.receivedAt }, evicted: 0 }));
    },
  } as unknown as NodeStore;
}

const req = (): SendRequest => durableRequest(16);

describe('the send backlog', () => {
  it('is congested at its high mark, relieved at half of it, and refuses UNAVAILABLE (retry) at its maximum — answering everything it accepted', async () => {
    const store = instantStore();
    const gate = new CommitGate(store);
    let congestions = 0;
    const s = looseSendService(store, { congested: () => congestions++ });
    gate.close();
    const accepted: Promise<unknown>[] = [];
    for (let i = 0; i < SEND_BACKLOG_HIGH - 1; i++) accepted.push(s.send(req(), 'c'));
    expect(s.congested).toBe(false);
    accepted.push(s.send(req(), 'c'));
    expect(s.congested).toBe(true);
    expect(congestions).toBe(1);
    let relieved = false;
    s.whenRelieved(() => (relieved = true));
    // Up to the maximum, sends are still taken (frames already read, HTTP); beyond it, refused.
    for (let i = SEND_BACKLOG_HIGH; i < SEND_BACKLOG_MAX; i++) accepted.push(s.send(req(), 'c'));
    expect(s.backlog).toBe(SEND_BACKLOG_MAX);
    const refused = await s.send(req(), 'c').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(ProtocolError);
    expect((refused as ProtocolError).code).toBe(ErrorCode.UNAVAILABLE);
    expect((refused as ProtocolError).retryAfterMs).toBe(SEND_BACKLOG_RETRY_MS);
    expect(s.backlog).toBe(SEND_BACKLOG_MAX);
    await new Promise((r) => setTimeout(r, 20));
    expect(relieved).toBe(false);
    gate.open();
    const results = await Promise.all(accepted);
    expect(results).toHaveLength(SEND_BACKLOG_MAX);
    expect(s.backlog).toBe(0);
    expect(s.congested).toBe(false);
    expect(relieved).toBe(true);
    expect(congestions).toBe(1);
    // Not congested: a waiter is called back at once (on a later turn).
    let now = false;
    s.whenRelieved(() => (now = true));
    await Promise.resolve();
    expect(now).toBe(true);
    await s.close();
  });

  it('a pipelining anonymous WebSocket is paused at the high mark while the disk is stalled, then every send is answered', async () => {
    const total = SEND_BACKLOG_HIGH + 4000;
    const t = await startTestNode({ RATE_LIMITS: generousLimits(), MAILBOX_MAX_MESSAGES: String(total * 2) });
    open.push(t);
    const { port } = (await t.node.listen()) as AddressInfo;
    const d = new TestDevice();
    await d.register(t.node);
    const token = new Uint8Array(32).fill(0x5a);
    const dev = await WsClient.device(port, d);
    const rid = dev.send({ body: { case: 'setDeliveryTokens', value: { tokens: [token] } } });
    expect((await dev.next((f) => f.requestId === rid)).body.case).toBe('ok');
    dev.terminate(); // offline: everything below is stored, nothing goes ahead
    const gate = new CommitGate(t.node.services.store);
    open.push({ close: () => gate.open() }); // before the node closes (it waits for queued sends)
    const a = await WsClient.connect(port, ANONYMOUS_SOCKET_PATH);
    open.push({ close: () => a.terminate() });
    a.send({ body: { case: 'clientHello', value: { versions: [2] } } });
    await a.nextKind('serverHello');

    gate.close(); // the disk stalls
    for (let i = 0; i < total; i++) a.send({ body: { case: 'send', value: { mailboxId: d.mailbox, payload: Uint8Array.of(i & 0xff), class: EnvelopeClass.DURABLE, deliveryToken: token } } });
    // The node reads until its backlog reaches the high mark (and the rest of the chunk in hand), then stops.
    const sender = t.node.services.sender;
    let last = -1;
    for (let stable = 0; stable < 5; ) {
      await new Promise((r) => setTimeout(r, 50));
      stable = sender.backlog === last ? stable + 1 : 0;
      last = sender.backlog;
    }
    expect(sender.congested).toBe(true);
    expect(sender.backlog).toBeGreaterThanOrEqual(SEND_BACKLOG_HIGH);
    expect(sender.backlog).toBeLessThan(total);
    expect(a.frames.filter((f) => f.body.case === 'sendResult' || f.body.case === 'error')).toHaveLength(0);

    gate.open(); // the disk is back: the socket resumes and every send is answered
    const deadline = Date.now() + 30_000;
    while (a.frames.filter((f) => f.body.case === 'sendResult' || f.body.case === 'error').length < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(a.frames.filter((f) => f.body.case === 'error')).toHaveLength(0);
    expect(a.frames.filter((f) => f.body.case === 'sendResult')).toHaveLength(total);
    expect((await t.node.services.store.mailboxStats(d.mailbox)).messages).toBe(total);
    expect(sender.congested).toBe(false);
  }, 60_000);
});

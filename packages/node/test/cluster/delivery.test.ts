// A cluster on real parts: three node instances on loopback listeners, one PostgreSQL schema,
// NATS with JetStream. Devices on one instance get what another instance accepted, live; a newer
// login anywhere closes the older connection; push wakes are claimed once per burst; with NATS
// gone, delivery falls back to store reads and nothing is lost.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { EnvelopeClass, SendRequestSchema, SendResultSchema, encodeBody, fromBinary, CONTENT_TYPE_PROTOBUF } from '@meshwhisper/protocol';
import { NatsDeliveryBus } from '../../src/mailbox/nats-bus.js';
import { TestDevice } from '../helpers.js';
import { WsClient } from '../ws-client.js';
import { MACHINE_NATS_URL, PrivateNats, startCluster } from './harness.js';
import type { Instance, TestCluster } from './harness.js';

const clusters: TestCluster[] = [];
const clients: WsClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.terminate();
  for (const c of clusters.splice(0)) await c.close();
});
const cluster = async (n: number, options: Parameters<typeof startCluster>[1] = {}): Promise<TestCluster> => {
  const c = await startCluster(n, options);
  clusters.push(c);
  return c;
};
const device = async (i: Instance, d: TestDevice): Promise<WsClient> => {
  const c = await WsClient.device(i.port, d);
  clients.push(c);
  return c;
};

/** POST /v1/send over a real socket to one instance. */
async function send(i: Instance, mailbox: Uint8Array, text: string, cls = EnvelopeClass.DURABLE): Promise<{ status: number; deliveredLive: boolean }> {
  const res = await fetch(`${i.url}/v1/send`, {
    method: 'POST',
    headers: { 'content-type': CONTENT_TYPE_PROTOBUF },
    body: Buffer.from(encodeBody(SendRequestSchema, { mailboxId: mailbox, payload: new TextEncoder().encode(text), class: cls })),
  });
  const body = new Uint8Array(await res.arrayBuffer());
  return { status: res.status, deliveredLive: res.status === 200 ? fromBinary(SendResultSchema, body).deliveredLive : false };
}

/** Receives until `texts` have all arrived (acking each batch); returns what arrived, in order. */
async function receive(c: WsClient, n: number, timeoutMs = 5000): Promise<string[]> {
  const seen: string[] = [];
  while (seen.length < n) {
    const f = await c.nextKind('deliver', timeoutMs);
    for (const e of f.body.value.envelopes) seen.push(new TextDecoder().decode(e.payload));
    if (f.body.value.envelopes[0]?.class !== EnvelopeClass.EPHEMERAL) c.ack(f.body.value.envelopes.map((e) => e.id));
  }
  return seen;
}

describe('cluster delivery (PostgreSQL + NATS)', () => {
  it('an envelope accepted by instance 2 for a device on instance 1 is delivered live; signals too; every instance sees the same mailbox', async () => {
    const { instances } = await cluster(3);
    const [n1, n2, n3] = instances as [Instance, Instance, Instance];
    // The instances share one node key (shared DATA_DIR): a device registers on any of them.
    expect(Buffer.from(n1.node.nodeKey.publicKey)).toEqual(Buffer.from(n3.node.nodeKey.publicKey));
    const d = new TestDevice();
    expect((await d.register(n3.node)).statusCode).toBe(200);
    // Mail queued through instance 3 while offline, then the device connects to instance 1.
    expect((await send(n3, d.mailbox, 'queued')).deliveredLive).toBe(false);
    const c = await device(n1, d);
    expect(await receive(c, 1)).toEqual(['queued']);
    await c.nextKind('queueEmpty');
    // Live latency through another instance against the same instance, interleaved (so machine load
    // hits both alike): the cluster path adds one NATS request/reply, not a different budget.
    const cross: number[] = [];
    const same: number[] = [];
    for (let k = 0; k < 30; k++) {
      const via = k % 3 === 0 ? n1 : k % 3 === 1 ? n2 : n3;
      const started = performance.now();
      const r = await send(via, d.mailbox, `live-${k}`);
      expect(r).toEqual({ status: 200, deliveredLive: true });
      expect(await receive(c, 1)).toEqual([`live-${k}`]);
      (via === n1 ? same : cross).push(performance.now() - started);
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    // docs/scale-out.md §How a message travels: the same budget as one instance plus one NATS round
    // trip (sub-millisecond on loopback); 50 ms of slack for a loaded machine.
    expect(median(cross)).toBeLessThan(median(same) + 50);
    expect(Math.max(...cross, ...same)).toBeLessThan(1000);
    const sig = await send(n2, d.mailbox, 'typing', EnvelopeClass.EPHEMERAL);
    expect(sig).toEqual({ status: 200, deliveredLive: true });
    expect(await receive(c, 1)).toEqual(['typing']);
    await new Promise((r) => setTimeout(r, 100));
    for (const i of instances) expect((await i.node.services.store.mailboxStats(d.mailbox)).messages).toBe(0);
  });

  it('"logged in elsewhere" closes the older connection on another instance; a deletion closes it cluster-wide', async () => {
    const { instances } = await cluster(3);
    const [n1, n2, n3] = instances as [Instance, Instance, Instance];
    const d = new TestDevice();
    await d.register(n1.node);
    const old = await device(n1, d);
    await old.nextKind('queueEmpty');
    const fresh = await device(n3, d);
    await fresh.nextKind('queueEmpty');
    expect((await old.waitClosed()).code).toBe(4001);
    // Mail now reaches the newer connection only.
    expect((await send(n2, d.mailbox, 'to the new one')).deliveredLive).toBe(true);
    expect(await receive(fresh, 1)).toEqual(['to the new one']);
    // Deleting the device through instance 2 closes its connection on instance 3.
    const auth = await d.authHeader(n2.node, 'DELETE', '/v1/device');
    const del = await fetch(`${n2.url}/v1/device`, { method: 'DELETE', headers: { 'mw-auth': auth } });
    expect(del.status).toBe(204);
    expect((await fresh.waitClosed()).code).toBe(4004);
  });

  it('push wakes are claimed once per burst across instances (JetStream key-value), again after the window', async () => {
    const prefix = `mwt${Date.now().toString(36)}`;
    const buses = [0, 1, 2].map(() => new NatsDeliveryBus({ servers: MACHINE_NATS_URL, prefix, wakeWindowMs: 1500 }));
    try {
      for (const b of buses) expect(await b.start()).toBe(true);
      const key = 'ab'.repeat(32);
      const burst = await Promise.all(Array.from({ length: 30 }, (_, i) => buses[i % 3]!.claimWake(key)));
      expect(burst.filter(Boolean)).toHaveLength(1);
      expect(await buses[1]!.claimWake('cd'.repeat(32))).toBe(true); // another mailbox has its own window
      await new Promise((r) => setTimeout(r, 2500));
      const later = await Promise.all(buses.map((b) => b.claimWake(key)));
      expect(later.filter(Boolean)).toHaveLength(1);
    } finally {
      await buses[0]!.destroyWakeBucket();
      for (const b of buses) await b.close();
    }
  });

  describe('NATS down', () => {
    let nats: PrivateNats | undefined;
    afterAll(async () => nats?.close());

    it('delivery falls back to store reads (slower, nothing lost) and is live again when NATS is back', async () => {
      nats = await PrivateNats.start();
      const { instances } = await cluster(2, { natsUrl: nats.url });
      const [n1, n2] = instances as [Instance, Instance];
      const d = new TestDevice();
      await d.register(n1.node);
      const c = await device(n1, d);
      await c.nextKind('queueEmpty');
      expect((await send(n2, d.mailbox, 'before')).deliveredLive).toBe(true);
      expect(await receive(c, 1)).toEqual(['before']);
      await nats.kill();
      // Accepted by instance 2 while NATS is gone: stored, then read by instance 1's poll.
      const down = await Promise.all(['during-1', 'during-2', 'during-3'].map((t) => send(n2, d.mailbox, t)));
      expect(down.every((r) => r.status === 200)).toBe(true);
      expect((await receive(c, 3, 8000)).sort()).toEqual(['during-1', 'during-2', 'during-3']);
      await nats.restart();
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && !(await send(n2, d.mailbox, 'probe')).deliveredLive) {
        await receive(c, 1, 8000);
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(await receive(c, 1, 8000)).toEqual(['probe']);
      expect((await send(n2, d.mailbox, 'after')).deliveredLive).toBe(true);
      expect(await receive(c, 1)).toEqual(['after']);
    });

    it('an instance started while NATS is unreachable serves (store reads) and joins when NATS comes up', async () => {
      nats ??= await PrivateNats.start();
      await nats.kill();
      const { instances } = await cluster(2, { natsUrl: nats.url });
      const [n1, n2] = instances as [Instance, Instance];
      const d = new TestDevice();
      await d.register(n1.node);
      const c = await device(n1, d);
      await c.nextKind('queueEmpty');
      expect((await send(n2, d.mailbox, 'no nats')).status).toBe(200);
      expect(await receive(c, 1, 8000)).toEqual(['no nats']);
      await nats.restart();
      const deadline = Date.now() + 10_000;
      let live = false;
      while (Date.now() < deadline && !live) {
        live = (await send(n2, d.mailbox, 'probe')).deliveredLive;
        await receive(c, 1, 8000);
      }
      expect(live).toBe(true);
    });
  });
});

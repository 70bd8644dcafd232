// SDK end to end over a three-instance cluster (PostgreSQL + NATS JetStream, shared DATA_DIR for
// blobs), clients spread over the instances as a load balancer would: a device on instance 1
// receives from a sender on instance 3, replies reach back, usernames and media cross instances.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoundRobinBalancer } from '../../../node/test/cluster/balancer.js';
import { startCluster } from '../../../node/test/cluster/harness.js';
import type { TestCluster } from '../../../node/test/cluster/harness.js';
import type { IncomingMessage } from '../../src/index.js';
import { MeshWhisper, memoryStorage } from '../../src/index.js';

let cluster: TestCluster;
beforeAll(async () => {
  cluster = await startCluster(3, { env: { SHUTDOWN_GRACE_SECONDS: '1' } });
});
afterAll(async () => {
  await cluster?.close();
});

const url = (i: number): string => cluster.instances[i]!.url;

describe('SDK clients spread over a cluster', () => {
  it('converse across instances: offline mail, live mail, replies, usernames, media', async () => {
    const alice = await MeshWhisper.create({ node: url(0), namespace: 'test', storage: await memoryStorage() });
    const bob = await MeshWhisper.create({ node: url(2), namespace: 'test', storage: await memoryStorage(), connect: false });
    const carol = await MeshWhisper.create({ node: url(1), namespace: 'test', storage: await memoryStorage() });
    try {
      // Bob offline: mail accepted by instance 1 is queued in PostgreSQL, delivered when he connects to instance 3.
      await alice.sendText(bob.mailboxId, 'queued while you were away');
      const got: IncomingMessage[] = [];
      bob.on('message', (m) => got.push(m));
      const first = bob.once('message');
      bob.connect();
      await first;
      expect(got.map((m) => m.text)).toEqual(['queued while you were away']);
      // Live: Alice (instance 1) → Bob (instance 3), and back.
      const live = bob.once('message', (m) => m.text === 'live now');
      await alice.sendText(bob.mailboxId, 'live now');
      expect((await live).from).toBe(alice.address);
      const reply = alice.once('message', (m) => m.text === 'hi alice');
      await bob.sendText(got[0]!.fromMailboxId, 'hi alice');
      expect((await reply).from).toBe(bob.address);
      // A username claimed through instance 2 is found through instance 3.
      await carol.claimUsername('carol-cluster');
      expect((await bob.lookupUsername('carol-cluster')).username).toBe('carol-cluster');
      // Media uploaded through instance 1, downloaded through instance 3 (shared blob volume).
      const data = new Uint8Array(200_000).map((_, i) => (i * 31) & 0xff);
      const fileMsg = bob.once('message', (m) => m.file !== undefined);
      await alice.sendFile(bob.mailboxId, data, { mimeType: 'application/octet-stream', name: 'x.bin' });
      const file = (await fileMsg).file!;
      const back = new Uint8Array(await new Response(await bob.downloadFile(file)).arrayBuffer());
      expect(Buffer.compare(Buffer.from(back), Buffer.from(data))).toBe(0);
      await bob.idle();
      expect(got.filter((m) => m.text === 'live now')).toHaveLength(1); // nothing delivered twice
    } finally {
      await Promise.all([alice.close(), bob.close(), carol.close()]);
    }
  });

  it('links a new device while each request of both devices goes to the next instance: both then receive the account’s mail', async () => {
    const fast = { receiptDelay: { minDelayMs: 0, maxDelayMs: 0 } };
    // Both devices use the cluster's one address; the balancer sends each request to the next instance.
    const lb = await RoundRobinBalancer.start(cluster.instances.map((i) => i.port));
    const a = await MeshWhisper.create({ node: lb.url, namespace: 'test', storage: await memoryStorage(), ...fast });
    const carol = await MeshWhisper.create({ node: lb.url, namespace: 'test', storage: await memoryStorage(), ...fast });
    const offer = await MeshWhisper.createLinkOffer({ node: lb.url, namespace: 'test', storage: await memoryStorage(), deviceName: 'laptop', ...fast });
    const [accepted, linked] = await Promise.all([a.acceptLinkOffer(offer.payload, { deviceName: 'phone' }), offer.completed]);
    const b = linked.client;
    try {
      // The channel's requests (create, claim, posts, long polls, closes) were spread over all three instances.
      const linkRequests = lb.routed.filter((r) => r.path.startsWith('/v1/link'));
      expect(linkRequests.length).toBeGreaterThan(5);
      expect(new Set(linkRequests.map((r) => r.instance)).size).toBe(3);
      expect(Buffer.from(b.accountKey)).toEqual(Buffer.from(a.accountKey));
      expect(accepted.deviceName).toBe('laptop');
      expect((await a.deviceList())?.devices.map((d) => d.deviceIndex)).toEqual([0, accepted.deviceIndex]);
      const both = Promise.all([a.once('message', (m) => m.text === 'to both'), b.once('message', (m) => m.text === 'to both')]);
      await carol.sendText({ accountKey: a.accountKey }, 'to both');
      const [ma, mb] = await both;
      expect(ma.id).toBe(mb.id);
    } finally {
      await Promise.all([a.close(), b.close(), carol.close()]);
      await lb.close();
    }
  });
});

// A load balancer's 502 for a send its instance had already stored (the instance died before it
// answered — docs/scale-out.md §Failure behaviour): the SDK sends the same bytes again, sendText
// resolves, the node holds the envelope twice, and the recipient's app still sees the message once.
import { createServer, request as httpRequest } from 'node:http';
import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { E2eNode } from './test-node.js';
import { startE2eNode } from './test-node.js';
import { MeshWhisper, memoryStorage } from '../../src/index.js';
import { ownConnectionHeaders } from '../../../node/test/cluster/balancer.js';

let t: E2eNode;
let proxy: Server;
let proxyUrl: string;
/** POST /v1/send requests to answer 502 after the node stored them. */
let swallow = 0;
let sends = 0;
let swallowed = 0;

beforeAll(async () => {
  t = await startE2eNode();
  const target = new URL(t.url);
  proxy = createServer((req, res) => {
    const isSend = req.method === 'POST' && req.url === '/v1/send';
    if (isSend) sends++;
    const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      if (isSend && swallow > 0 && r.statusCode === 200) {
        swallow--;
        swallowed++;
        r.resume();
        r.on('end', () => res.writeHead(502).end());
        return;
      }
      res.writeHead(r.statusCode ?? 502, ownConnectionHeaders(r.headers));
      r.pipe(res);
    });
    up.on('error', () => res.writeHead(502).end());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
});
afterAll(async () => {
  await new Promise((r) => proxy?.close(r));
  await t?.close();
});

describe('a 502 from a load balancer after the node stored the send', () => {
  it('is retried with the same bytes; sendText resolves; the recipient sees the message once', async () => {
    const alice = await MeshWhisper.create({ node: proxyUrl, namespace: 'test', storage: await memoryStorage(), connect: false });
    const bob = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    try {
      const warm = bob.once('message', (m) => m.text === 'warm-up');
      await alice.sendText(bob.mailboxId, 'warm-up');
      await warm;
      const seen: string[] = [];
      bob.on('message', (m) => seen.push(m.id));
      swallow = 1;
      const before = sends;
      const arrived = bob.once('message', (m) => m.text === 'once');
      const { id } = await alice.sendText(bob.mailboxId, 'once');
      expect(swallowed).toBe(1);
      expect(sends - before).toBe(2); // stored, 502, sent again (stored again)
      expect((await arrived).id).toBe(id);
      // A later message drains bob's queue past the second copy: still one event and one history entry.
      const after = bob.once('message', (m) => m.text === 'after');
      await alice.sendText(bob.mailboxId, 'after');
      await after;
      await bob.idle();
      expect(seen.filter((x) => x === id)).toHaveLength(1);
      expect((await bob.history(alice.accountKey)).filter((m) => m.id === id)).toHaveLength(1);
      // Both copies acknowledged: the mailbox drains (acks commit in the background).
      const deadline = Date.now() + 15_000;
      while ((await t.node.services.store.mailboxStats(bob.mailboxId)).messages > 0) {
        if (Date.now() > deadline) throw new Error('bob\'s mailbox did not drain: a copy was never acknowledged');
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      await Promise.all([alice.close(), bob.close()]);
    }
  });
});

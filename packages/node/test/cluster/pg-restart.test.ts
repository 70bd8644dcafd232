// PostgreSQL restarted under a running cluster (a private server stopped with `-m immediate`, as
// a crash, then started again): sends fail with the retriable MW_UNAVAILABLE while it is down,
// nothing acknowledged is lost, and the instances take mail again on their own once it is back.
import { afterAll, describe, expect, it } from 'vitest';
import { CONTENT_TYPE_PROTOBUF, EnvelopeClass, SendRequestSchema, encodeBody } from '@meshwhisper/protocol';
import { TestDevice } from '../helpers.js';
import { WsClient } from '../ws-client.js';
import { PrivatePostgres, startCluster } from './harness.js';
import type { Instance, TestCluster } from './harness.js';

let pg: PrivatePostgres | undefined;
let cluster: TestCluster | undefined;
afterAll(async () => {
  await cluster?.close();
  await pg?.close();
});

async function send(i: Instance, mailbox: Uint8Array, text: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`${i.url}/v1/send`, {
    method: 'POST',
    headers: { 'content-type': CONTENT_TYPE_PROTOBUF },
    body: Buffer.from(encodeBody(SendRequestSchema, { mailboxId: mailbox, payload: new TextEncoder().encode(text), class: EnvelopeClass.DURABLE })),
  });
  return { status: res.status, body: res.status === 200 ? '' : await res.text() };
}

describe('PostgreSQL restarted mid-load', () => {
  it('sends fail retriably while it is down; nothing acknowledged is lost; service resumes by itself', async () => {
    pg = await PrivatePostgres.start();
    cluster = await startCluster(2, { env: { DATABASE_URL: pg.url, DATABASE_SCHEMA: 'public' } });
    const [n1, n2] = cluster.instances as [Instance, Instance];
    const d = new TestDevice();
    expect((await d.register(n1.node)).statusCode).toBe(200);
    const acknowledged: string[] = [];
    for (let i = 0; i < 5; i++) if ((await send(n2, d.mailbox, `before-${i}`)).status === 200) acknowledged.push(`before-${i}`);
    expect(acknowledged).toHaveLength(5);

    await pg.stop();
    const down = await send(n2, d.mailbox, 'while-down');
    expect(down.status).toBe(503);
    expect(down.body).toContain('MW_UNAVAILABLE');
    await pg.restart();
    // The pools reconnect by themselves: retry as the SDK's outbox does.
    const deadline = Date.now() + 20_000;
    let back = false;
    while (!back && Date.now() < deadline) {
      back = (await send(n2, d.mailbox, 'while-down')).status === 200;
      if (!back) await new Promise((r) => setTimeout(r, 250));
    }
    expect(back).toBe(true);
    acknowledged.push('while-down');
    for (let i = 0; i < 5; i++) if ((await send(n1, d.mailbox, `after-${i}`)).status === 200) acknowledged.push(`after-${i}`);
    expect(acknowledged).toHaveLength(11);

    const ws = await WsClient.device(n1.port, d);
    try {
      const got: string[] = [];
      while (got.length < acknowledged.length) {
        const f = await ws.nextKind('deliver', 10_000);
        got.push(...f.body.value.envelopes.map((e) => new TextDecoder().decode(e.payload)));
        ws.ack(f.body.value.envelopes.map((e) => e.id));
      }
      expect(got).toEqual(acknowledged);
    } finally {
      ws.terminate();
    }
  }, 90_000);
});

// Device-link channels across cluster instances (link/relay.ts): a channel opened on one instance is
// claimed, written, long-polled and closed through the others (forwarded over NATS); a read that
// holds more than one NATS payload comes in pieces; a channel whose instance is gone is NOT_FOUND;
// with NATS gone, a request landing elsewhere is MW_UNAVAILABLE (retriable) and the holder still answers.
import { afterEach, describe, expect, it } from 'vitest';
import {
  CONTENT_TYPE_PROTOBUF,
  LINK_TOKEN_HEADER,
  LinkChannelClaimSchema,
  LinkChannelClaimedSchema,
  LinkChannelCreatedSchema,
  LinkChannelMessagesSchema,
  LinkChannelPostSchema,
  encodeBody,
  fromBinary,
  toBase64Url,
} from '@meshwhisper/protocol';
import { LINK_MAX_MESSAGE_BYTES } from '../../src/link/channels.js';
import { LINK_FORWARD_MAX_BYTES } from '../../src/link/relay.js';
import { PrivateNats, startCluster } from './harness.js';
import type { Instance, TestCluster } from './harness.js';

const clusters: TestCluster[] = [];
const nats: PrivateNats[] = [];
afterEach(async () => {
  for (const c of clusters.splice(0)) await c.close();
  for (const n of nats.splice(0)) await n.close();
});

const proto = { 'content-type': CONTENT_TYPE_PROTOBUF };
const errCode = async (res: Response): Promise<string> => ((await res.json()) as { error: { code: string } }).error.code;

async function create(i: Instance): Promise<{ id: string; owner: string }> {
  const res = await fetch(`${i.url}/v1/link`, { method: 'POST' });
  expect(res.status).toBe(201);
  const c = fromBinary(LinkChannelCreatedSchema, new Uint8Array(await res.arrayBuffer()));
  return { id: toBase64Url(c.channelId), owner: toBase64Url(c.ownerToken) };
}
async function claim(i: Instance, id: string, hello: Uint8Array): Promise<Response> {
  return fetch(`${i.url}/v1/link/${id}/claim`, { method: 'POST', headers: proto, body: encodeBody(LinkChannelClaimSchema, { hello }) as BodyInit });
}
async function post(i: Instance, id: string, token: string, data: Uint8Array): Promise<Response> {
  return fetch(`${i.url}/v1/link/${id}/messages`, { method: 'POST', headers: { ...proto, [LINK_TOKEN_HEADER]: token }, body: encodeBody(LinkChannelPostSchema, { data }) as BodyInit });
}
async function read(i: Instance, id: string, token: string, after = 0, wait = 0): Promise<{ status: number; messages: Uint8Array[]; last: number; closed: boolean; code?: string }> {
  const res = await fetch(`${i.url}/v1/link/${id}/messages?after=${after}&wait=${wait}`, { headers: { [LINK_TOKEN_HEADER]: token } });
  if (!res.ok) return { status: res.status, messages: [], last: 0, closed: false, code: await errCode(res) };
  const m = fromBinary(LinkChannelMessagesSchema, new Uint8Array(await res.arrayBuffer()));
  return { status: res.status, messages: m.messages, last: m.last, closed: m.closed };
}
async function close(i: Instance, id: string, token: string): Promise<Response> {
  return fetch(`${i.url}/v1/link/${id}`, { method: 'DELETE', headers: { [LINK_TOKEN_HEADER]: token } });
}

describe('link channels in a cluster', () => {
  it('opened on instance 1, claimed on 2, written and long-polled through 3 and 1; large reads come in pieces; closed from anywhere', async () => {
    const c = await startCluster(3);
    clusters.push(c);
    const [n1, n2, n3] = c.instances as [Instance, Instance, Instance];
    const ch = await create(n1);
    const waiting = read(n3, ch.id, ch.owner, 0, 10_000); // the new device waits through instance 3
    const hello = new Uint8Array(1122).fill(7);
    const claimed = await claim(n2, ch.id, hello);
    expect(claimed.status).toBe(200);
    const scanner = toBase64Url(fromBinary(LinkChannelClaimedSchema, new Uint8Array(await claimed.arrayBuffer())).scannerToken);
    const first = await waiting;
    expect(first.status).toBe(200);
    expect(first.messages).toEqual([hello]);
    expect(first.last).toBe(1);
    // Single use holds cluster-wide.
    const again = await claim(n3, ch.id, hello);
    expect(again.status).toBe(409);
    expect(await errCode(again)).toBe('MW_CONFLICT');
    // A wrong token is refused wherever the request lands.
    expect((await read(n2, ch.id, toBase64Url(new Uint8Array(32)))).code).toBe('MW_AUTH_FORBIDDEN');

    // The scanner (through instance 2) long-polls; the new device posts through instance 3.
    const scannerWait = read(n2, ch.id, scanner, 0, 10_000);
    expect((await post(n3, ch.id, ch.owner, Uint8Array.of(1, 2, 3))).status).toBe(204);
    expect((await scannerWait).messages).toEqual([Uint8Array.of(1, 2, 3)]);

    // More than one forwarded payload's worth: the reader on another instance gets it in pieces, in order.
    const big = Array.from({ length: 4 }, (_, k) => new Uint8Array(LINK_MAX_MESSAGE_BYTES - 100).fill(k + 1));
    for (const m of big) expect((await post(n2, ch.id, scanner, m)).status).toBe(204);
    const got: Uint8Array[] = [];
    let after = first.last;
    let pieces = 0;
    while (got.length < big.length) {
      const r = await read(n3, ch.id, ch.owner, after);
      expect(r.status).toBe(200);
      expect(r.messages.reduce((n, m) => n + m.length, 0)).toBeLessThanOrEqual(Math.max(LINK_FORWARD_MAX_BYTES, LINK_MAX_MESSAGE_BYTES));
      got.push(...r.messages);
      after = r.last;
      pieces++;
    }
    expect(pieces).toBeGreaterThan(1);
    expect(got.map((m) => [m.length, m[0]])).toEqual(big.map((m) => [m.length, m[0]]));
    // The holder itself returns everything at once.
    expect((await read(n1, ch.id, ch.owner, first.last)).messages).toHaveLength(4);

    // Closing: the scanner through 3, the new device through 2; the reader on another instance sees `closed`.
    expect((await close(n3, ch.id, scanner)).status).toBe(204);
    const end = await read(n2, ch.id, ch.owner, after);
    expect(end.closed).toBe(true);
    expect((await close(n2, ch.id, ch.owner)).status).toBe(204);
    for (const i of [n1, n2, n3]) expect((await read(i, ch.id, ch.owner)).code).toBe('MW_NOT_FOUND');
  });

  it('a channel whose instance is gone is MW_NOT_FOUND elsewhere; without NATS a forwarded request is MW_UNAVAILABLE and the holder still answers', async () => {
    const server = await PrivateNats.start();
    nats.push(server);
    const c = await startCluster(3, { natsUrl: server.url });
    clusters.push(c);
    const [n1, n2, n3] = c.instances as [Instance, Instance, Instance];
    const gone = await create(n3);
    const kept = await create(n1);
    await c.stop(n3);
    const lost = await claim(n2, gone.id, Uint8Array.of(1));
    expect(lost.status).toBe(404);
    expect(await errCode(lost)).toBe('MW_NOT_FOUND');

    await server.kill();
    const offline = await claim(n2, kept.id, Uint8Array.of(1));
    expect(offline.status).toBe(503);
    expect(await errCode(offline)).toBe('MW_UNAVAILABLE');
    expect((await claim(n1, kept.id, Uint8Array.of(5))).status).toBe(200);
    expect((await read(n1, kept.id, kept.owner)).messages).toEqual([Uint8Array.of(5)]);
  });
});

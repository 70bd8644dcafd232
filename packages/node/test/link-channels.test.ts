// Device-linking provisioning channels (docs/spec/linking.md §3): single use, token per side,
// long poll, size bounds, expiry, rate limit — over a real socket where timing matters.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createContext } from '@meshwhisper/crypto';
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
import { LINK_MAX_MESSAGE_BYTES, LINK_OFFER_TTL_MS } from '../src/link/channels.js';
import type { TestNode } from './helpers.js';
import { startTestNode } from './helpers.js';

let clock = Date.now();
const ctx = createContext({ now: () => clock });
let t: TestNode;
let base: string;

beforeEach(async () => {
  clock = Date.now();
  t = await startTestNode({}, {}, { ctx });
  base = `http://127.0.0.1:${(await t.node.listen()).port}`;
});
afterEach(async () => {
  await t.close();
});

const proto = { 'content-type': CONTENT_TYPE_PROTOBUF };

async function create(): Promise<{ id: string; owner: string; expiresAt: number }> {
  const res = await fetch(`${base}/v1/link`, { method: 'POST' });
  expect(res.status).toBe(201);
  const c = fromBinary(LinkChannelCreatedSchema, new Uint8Array(await res.arrayBuffer()));
  expect(c.channelId.length).toBe(16);
  return { id: toBase64Url(c.channelId), owner: toBase64Url(c.ownerToken), expiresAt: Number(c.expiresAt) };
}

async function claim(id: string, hello = new Uint8Array(1122).fill(7)): Promise<Response> {
  return fetch(`${base}/v1/link/${id}/claim`, { method: 'POST', headers: proto, body: encodeBody(LinkChannelClaimSchema, { hello }) as BodyInit });
}

async function post(id: string, token: string | undefined, data: Uint8Array): Promise<Response> {
  return fetch(`${base}/v1/link/${id}/messages`, { method: 'POST', headers: { ...proto, ...(token ? { [LINK_TOKEN_HEADER]: token } : {}) }, body: encodeBody(LinkChannelPostSchema, { data }) as BodyInit });
}

async function read(id: string, token: string, after = 0, wait = 0): Promise<{ status: number; messages: Uint8Array[]; last: number; closed: boolean; code?: string }> {
  const res = await fetch(`${base}/v1/link/${id}/messages?after=${after}&wait=${wait}`, { headers: { [LINK_TOKEN_HEADER]: token } });
  if (!res.ok) return { status: res.status, messages: [], last: 0, closed: false, code: ((await res.json()) as { error: { code: string } }).error.code };
  const m = fromBinary(LinkChannelMessagesSchema, new Uint8Array(await res.arrayBuffer()));
  return { status: res.status, messages: m.messages, last: m.last, closed: m.closed };
}

async function codeOf(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

describe('link channels', () => {
  it('relays the hello and messages both ways; a long poll wakes on the other side’s post', async () => {
    const c = await create();
    const waiting = read(c.id, c.owner, 0, 5000); // the new device waits for a scanner
    const claimed = await claim(c.id);
    expect(claimed.status).toBe(200);
    const scanner = toBase64Url(fromBinary(LinkChannelClaimedSchema, new Uint8Array(await claimed.arrayBuffer())).scannerToken);
    const first = await waiting;
    expect(first.messages).toEqual([new Uint8Array(1122).fill(7)]);
    expect(first.last).toBe(1);

    const scannerWait = read(c.id, scanner, 0, 5000);
    expect((await post(c.id, c.owner, Uint8Array.of(1, 2, 3))).status).toBe(204);
    expect((await scannerWait).messages).toEqual([Uint8Array.of(1, 2, 3)]);

    expect((await post(c.id, scanner, Uint8Array.of(9))).status).toBe(204);
    const next = await read(c.id, c.owner, first.last);
    expect(next.messages).toEqual([Uint8Array.of(9)]);
    expect(next.last).toBe(2);

    // The scanner closes: the owner drains and sees closed; then both closed → forgotten.
    expect((await fetch(`${base}/v1/link/${c.id}`, { method: 'DELETE', headers: { [LINK_TOKEN_HEADER]: scanner } })).status).toBe(204);
    expect((await read(c.id, c.owner, 2)).closed).toBe(true);
    expect((await fetch(`${base}/v1/link/${c.id}`, { method: 'DELETE', headers: { [LINK_TOKEN_HEADER]: c.owner } })).status).toBe(204);
    expect((await read(c.id, c.owner, 2)).code).toBe('MW_NOT_FOUND');
  });

  it('is single use: a second claim is refused, and only the token holders read or write', async () => {
    const c = await create();
    expect((await claim(c.id)).status).toBe(200);
    const again = await claim(c.id);
    expect(again.status).toBe(409);
    expect(await codeOf(again)).toBe('MW_CONFLICT');
    expect(await codeOf(await post(c.id, undefined, Uint8Array.of(1)))).toBe('MW_AUTH_REQUIRED');
    expect(await codeOf(await post(c.id, toBase64Url(new Uint8Array(32).fill(1)), Uint8Array.of(1)))).toBe('MW_AUTH_FORBIDDEN');
    expect((await read(c.id, toBase64Url(new Uint8Array(32).fill(1)))).code).toBe('MW_AUTH_FORBIDDEN');
    expect((await read('AAAAAAAAAAAAAAAAAAAAAA', c.owner)).code).toBe('MW_NOT_FOUND');
  });

  it('bounds message size and count', async () => {
    const c = await create();
    expect(await codeOf(await post(c.id, c.owner, new Uint8Array(LINK_MAX_MESSAGE_BYTES + 1)))).toMatch(/MW_PROTO_TOO_LARGE/);
    expect(await codeOf(await post(c.id, c.owner, new Uint8Array(0)))).toBe('MW_PROTO_TOO_LARGE');
    for (let i = 0; i < 64; i++) expect((await post(c.id, c.owner, Uint8Array.of(i))).status).toBe(204);
    expect(await codeOf(await post(c.id, c.owner, Uint8Array.of(1)))).toBe('MW_QUOTA_EXCEEDED');
  });

  it('an unclaimed offer expires; a waiting reader is not left hanging past it', async () => {
    const c = await create();
    expect(c.expiresAt).toBe(clock + LINK_OFFER_TTL_MS);
    clock += LINK_OFFER_TTL_MS;
    expect((await claim(c.id)).status).toBe(404);
    expect((await read(c.id, c.owner)).code).toBe('MW_NOT_FOUND');
  });

  it('opening channels is rate limited per address', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await fetch(`${base}/v1/link`, { method: 'POST' })).status);
    expect(statuses.slice(0, 5)).toEqual([201, 201, 201, 201, 201]);
    expect(statuses.at(-1)).toBe(429);
  });
});

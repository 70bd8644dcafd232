/**
 * Device linking over a real node (docs/spec/linking.md): a second device linked from a QR
 * payload joins the account, receives its contacts, blocks and history, gets a contact's next
 * message alongside the first device, and sees what the other device sends as sent (own-device
 * sync). A relay that swaps keys or forges frames makes the link fail with nothing issued.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerLinkOffer, createContext, createLinkOffer as cryptoOffer, decodeLinkOffer, encodeLinkOffer, toHex } from '@meshwhisper/crypto';
import { LinkChannelClaimSchema, LinkChannelPostSchema, encodeBody, fromBinary } from '@meshwhisper/protocol';
import type { E2eNode } from '../client/test-node.js';
import { startE2eNode } from '../client/test-node.js';
import type { IncomingMessage } from '../../src/index.js';
import { MeshWhisper, SdkError, memoryStorage } from '../../src/index.js';

let t: E2eNode;
let url: string;
const open: MeshWhisper[] = [];
const fast = { receiptDelay: { minDelayMs: 0, maxDelayMs: 0 } };

beforeAll(async () => {
  t = await startE2eNode();
  url = t.url;
});
afterAll(async () => {
  for (const c of open) await c.close();
  await t?.close();
});

async function client(extra: Partial<Parameters<typeof MeshWhisper.create>[0]> = {}): Promise<MeshWhisper> {
  const c = await MeshWhisper.create({ node: url, namespace: 'test', storage: await memoryStorage(), ...fast, ...extra });
  open.push(c);
  return c;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return e instanceof SdkError ? e.code : `not an SdkError: ${String(e)}`;
  }
  return 'ok';
}

describe('linking a second device', () => {
  it('from a QR payload: contacts, blocks and history move over; both devices get a contact’s next message; each sees what the other sent, as sent, same id', async () => {
    const a = await client();
    const carol = await client();
    const stranger = await client();
    // A history to copy: A and Carol talk; A blocks a stranger.
    const carolGot = carol.once('message', (m) => m.text === 'hi carol');
    await a.sendText({ accountKey: carol.accountKey }, 'hi carol');
    await carolGot;
    const aGot = a.once('message', (m) => m.text === 'hi a');
    await carol.sendText({ accountKey: a.accountKey }, 'hi a');
    await aGot;
    await a.block(stranger.accountKey);
    await a.setDisappearingTimer({ accountKey: carol.accountKey }, 0);

    let introduced: string | undefined;
    const offer = await MeshWhisper.createLinkOffer({ node: url, namespace: 'test', storage: await memoryStorage(), deviceName: 'laptop', ...fast, onIntroduced: (i) => (introduced = toHex(i.accountKey)) });
    expect(offer.payload.length).toBeGreaterThan(1200);
    expect(offer.payload.length).toBeLessThan(1400);
    expect(offer.qrSvg()).toMatch(/^<svg/);
    const appSettings = new TextEncoder().encode('{"theme":"dark"}');
    const [accepted, linked] = await Promise.all([a.acceptLinkOffer(offer.payload, { history: true, deviceName: 'phone', appSettings }), offer.completed]);
    const b = linked.client;
    open.push(b);
    expect(introduced).toBe(toHex(a.accountKey));
    expect(toHex(b.accountKey)).toBe(toHex(a.accountKey));
    expect(linked.deviceIndex).toBe(1);
    expect(accepted.deviceIndex).toBe(1);
    expect(accepted.deviceName).toBe('laptop');
    expect(toHex(accepted.mailboxId)).toBe(toHex(b.mailboxId));
    expect(accepted.epoch).toBe(2);
    expect(linked.manager).toBe(false);
    expect(b.account).toBeUndefined();
    expect(new TextDecoder().decode(linked.appSettings)).toBe('{"theme":"dark"}');
    expect(linked.historyEntries).toBe(2);
    expect((await b.history(carol.accountKey)).map((m) => [m.text, m.outgoing])).toEqual([
      ['hi carol', true],
      ['hi a', false],
    ]);
    expect(await b.contactState(carol.accountKey)).toBe('accepted');
    expect(await b.isBlocked(stranger.accountKey)).toBe(true);

    // A contact's next message to the account reaches both devices.
    const onA = a.once('message', (m) => m.text === 'to both of you');
    const onB = b.once('message', (m) => m.text === 'to both of you');
    await carol.sendText({ accountKey: a.accountKey }, 'to both of you');
    const [ma, mb] = await Promise.all([onA, onB]);
    expect(ma.id).toBe(mb.id);

    // Sent from A → on B as sent, same id; and the other way round.
    const mirroredOnB = b.once('message', (m: IncomingMessage) => m.outgoing && m.text === 'sent from a');
    const carolFromA = carol.once('message', (m) => m.text === 'sent from a');
    const { id: idA } = await a.sendText({ accountKey: carol.accountKey }, 'sent from a');
    const [mirror, atCarol] = await Promise.all([mirroredOnB, carolFromA]);
    expect(mirror.id).toBe(idA);
    expect(mirror.state).toBe('sent');
    // Receipts go to the account: Carol reading it advances the state on B as on A.
    const readOnBoth = Promise.all([a, b].map((d) => d.once('messageState', (s) => s.id === idA && s.state === 'read')));
    await carol.markRead(atCarol, [idA]);
    await readOnBoth;
    expect(await b.messageState(idA)).toBe('read');
    expect((await b.history(carol.accountKey)).filter((m) => m.id === idA)).toHaveLength(1);

    const mirroredOnA = a.once('message', (m: IncomingMessage) => m.outgoing && m.text === 'sent from b');
    const carolFromB = carol.once('message', (m) => m.text === 'sent from b');
    const { id: idB } = await b.sendText({ accountKey: carol.accountKey }, 'sent from b');
    const [m2, c2] = await Promise.all([mirroredOnA, carolFromB]);
    expect(m2.id).toBe(idB);
    expect(toHex(c2.author)).toBe(toHex(a.accountKey)); // Carol sees the account, whichever device wrote
    // An edit from B reaches A as the account's own edit.
    const edited = a.once('edit', (e) => e.id === idB);
    await b.editMessage({ accountKey: carol.accountKey }, idB, 'sent from b (edited)');
    await edited;
    expect((await a.history(carol.accountKey)).find((m) => m.id === idB)?.text).toBe('sent from b (edited)');

    // Read on A → read on B: the unread count of the conversation drops to 0 on both.
    const carolConv = (c: MeshWhisper) => c.conversationList().then((l) => l.find((x) => x.conversation.kind === 'direct' && toHex(x.conversation.peer) === toHex(carol.accountKey)));
    await b.markConversationRead(carol.accountKey); // what B had
    await a.markConversationRead(carol.accountKey);
    const bothGot = Promise.all([a.once('message', (m) => m.text === 'read me'), b.once('message', (m) => m.text === 'read me')]);
    await carol.sendText({ accountKey: a.accountKey }, 'read me');
    const [readMeOnA] = await bothGot;
    expect((await carolConv(b))?.unread).toBe(1);
    const readOnB = b.once('unread', (u) => u.unread === 0);
    await a.markRead(readMeOnA, [readMeOnA.id]);
    await readOnB;
    expect((await carolConv(b))?.unread).toBe(0);
    expect((await b.history(carol.accountKey)).find((m) => m.text === 'read me')?.unread).toBeFalsy();
  });

  it('a short requestTimeoutMs: the waiting device long-polls within it (two thirds of it) and the link completes', async () => {
    const a = await client();
    const waits: number[] = [];
    const recording: typeof fetch = (input, init) => {
      const m = /[?&]wait=(\d+)/.exec(String(input instanceof Request ? input.url : input));
      if (m) waits.push(Number(m[1]));
      return fetch(input, init);
    };
    const offer = await MeshWhisper.createLinkOffer({ node: url, namespace: 'test', storage: await memoryStorage(), deviceName: 'tablet', ...fast, fetch: recording, requestTimeoutMs: 1_500 });
    // Nobody scans for a while: the device polls, each poll asking for at most 1 s.
    await new Promise((r) => setTimeout(r, 2_500));
    const [, linked] = await Promise.all([a.acceptLinkOffer(offer.payload, { deviceName: 'phone' }), offer.completed]);
    open.push(linked.client);
    expect(waits.length).toBeGreaterThanOrEqual(2);
    expect(Math.max(...waits)).toBeLessThanOrEqual(1_000);
    expect(toHex(linked.client.accountKey)).toBe(toHex(a.accountKey));
  });

  it('refuses: an offer used twice, a device beyond the limit, a device without the account key, bytes that are no offer; cancel() ends a waiting offer', async () => {
    const a = await client();
    const offer = await MeshWhisper.createLinkOffer({ node: url, namespace: 'test', storage: await memoryStorage(), ...fast });
    const [, linked] = await Promise.all([a.acceptLinkOffer(offer.payload), offer.completed]);
    open.push(linked.client);
    expect(await codeOf(a.acceptLinkOffer(offer.payload))).toMatch(/^MW_SDK_LINK_(EXPIRED|FAILED)$/);
    expect(await codeOf(linked.client.acceptLinkOffer(offer.payload))).toBe('MW_SDK_INVALID_ARGUMENT'); // not a manager
    expect(await codeOf(a.acceptLinkOffer(new Uint8Array(100)))).toBe('MW_SDK_INVALID_ARGUMENT');

    const limited = await client({ maxDevices: 1 });
    const second = await MeshWhisper.createLinkOffer({ node: url, namespace: 'test', storage: await memoryStorage(), ...fast });
    expect(await codeOf(limited.acceptLinkOffer(second.payload))).toBe('MW_SDK_DEVICE_LIMIT');
    await second.cancel();
    expect(await codeOf(second.completed)).toBe('MW_SDK_CLOSED');
  });
});

/** A relay in front of the node that rewrites link traffic (loopback only). */
async function tamperingProxy(rewrite: (path: string, body: Uint8Array) => Uint8Array): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        let body: Uint8Array | undefined = chunks.length ? new Uint8Array(Buffer.concat(chunks)) : undefined;
        if (body && req.method === 'POST') body = rewrite(req.url ?? '', body);
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'content-length' && k !== 'connection') headers[k] = v;
        const r = await fetch(`${url}${req.url ?? '/'}`, { method: req.method ?? 'GET', headers, ...(body ? { body: body as BodyInit } : {}) });
        res.writeHead(r.status, Object.fromEntries([...r.headers.entries()].filter(([k]) => k !== 'content-length' && k !== 'transfer-encoding' && k !== 'connection')));
        res.end(Buffer.from(await r.arrayBuffer()));
      })().catch(() => res.destroy());
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe('a relay that swaps keys', () => {
  for (const attack of ['replaces the scanner hello with its own', 'forges the new device’s frames'] as const) {
    it(`${attack}: the link fails on both sides and nothing is issued`, async () => {
      const proxy = await tamperingProxy((path, body) => {
        if (attack === 'replaces the scanner hello with its own' && /\/v1\/link\/[^/]+\/claim$/.test(path)) {
          // The relay never saw the QR: it replaces the scanner's hello with one it made for an
          // offer of its own (its own X25519 key, a KEM ciphertext to its own KEM key).
          expect(fromBinary(LinkChannelClaimSchema, body).hello.length).toBe(1122);
          const ctx = createContext();
          const forged = cryptoOffer(ctx, { channelId: new Uint8Array(16).fill(9), nodeUrl: url });
          return encodeBody(LinkChannelClaimSchema, { hello: answerLinkOffer(ctx, forged.offer).hello });
        }
        if (attack === 'forges the new device’s frames' && /\/v1\/link\/[^/]+\/messages$/.test(path)) {
          const post = fromBinary(LinkChannelPostSchema, body);
          const forgedFrame = post.data.slice();
          for (let i = 4; i < forgedFrame.length; i++) forgedFrame[i] = (forgedFrame[i]! * 31 + 7) & 0xff;
          return encodeBody(LinkChannelPostSchema, { data: forgedFrame });
        }
        return body;
      });
      try {
        const a = await client();
        const before = await a.contactCard();
        // The new device talks to the node through the relay; the scanning device directly.
        const storage = await memoryStorage();
        const offer = await MeshWhisper.createLinkOffer({ node: proxy.url, namespace: 'test', storage, ...fast });
        // The offer names the relay's URL: the scanner must be on the same origin, so re-encode it for the node.
        const payload = withNode(offer.payload, url);
        const [scanner, newDevice] = await Promise.all([codeOf(a.acceptLinkOffer(payload)), codeOf(offer.completed)]);
        expect(newDevice).toBe('MW_SDK_LINK_FAILED');
        expect(scanner).toMatch(/^MW_SDK_LINK_(FAILED|EXPIRED)$/);
        // Nothing was issued: the account still has one device.
        const after = await a.contactCard();
        expect(after.mailboxIds.map(toHex)).toEqual(before.mailboxIds.map(toHex));
        expect(await storage.hasLocalIdentity()).toBe(false);
      } finally {
        await proxy.close();
      }
    }, 60_000);
  }
});

/** The same offer naming another node URL (the relay and the node are one service to the user). */
function withNode(payload: Uint8Array, nodeUrl: string): Uint8Array {
  return encodeLinkOffer({ ...decodeLinkOffer(payload), nodeUrl });
}

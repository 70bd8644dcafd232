/**
 * Revoking a linked device (docs/spec/02-keys.md §2.5): a manager signs a list without it; the node
 * deletes the device at once, so it is told (its connection stops: 'device-deleted'), receives
 * nothing new, and messages to the account reach only the devices still listed.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toHex } from '@meshwhisper/crypto';
import { LinkChannelPostSchema, encodeBody, fromBinary } from '@meshwhisper/protocol';
import type { E2eNode } from '../client/test-node.js';
import { startE2eNode } from '../client/test-node.js';
import { MeshWhisper, SdkError, memoryStorage, openSqliteStorage } from '../../src/index.js';

let t: E2eNode;
const open: MeshWhisper[] = [];
const fast = { receiptDelay: { minDelayMs: 0, maxDelayMs: 0 } };

beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  for (const c of open) await c.close().catch(() => undefined);
  await t?.close();
});

describe('revoking a linked device', () => {
  it('the revoked device is told and receives nothing new; the account keeps working on the others', async () => {
    const a = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...fast });
    const carol = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...fast });
    open.push(a, carol);
    const offer = await MeshWhisper.createLinkOffer({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...fast });
    const [accepted, linked] = await Promise.all([a.acceptLinkOffer(offer.payload), offer.completed]);
    const b = linked.client;
    open.push(b);
    // The node and A hold the list naming both devices.
    expect((await a.deviceList())?.devices.map((d) => d.deviceIndex)).toEqual([0, accepted.deviceIndex]);
    const both = Promise.all([a.once('message', (m) => m.text === 'before'), b.once('message', (m) => m.text === 'before')]);
    await carol.sendText({ accountKey: a.accountKey }, 'before');
    await both;

    const told = b.once('stopped', undefined, 15_000);
    const list = await a.revokeDevice(accepted.deviceIndex);
    expect(list.devices.map((d) => d.deviceIndex)).toEqual([0]);
    expect((await told).reason).toBe('device-deleted');

    // Carol's next message reaches A only; B, revoked, gets nothing.
    let bGot = 0;
    b.on('message', () => bGot++);
    const onA = a.once('message', (m) => m.text === 'after');
    await carol.sendText({ accountKey: a.accountKey }, 'after');
    await onA;
    expect(bGot).toBe(0);
    // The account's devices, as the node lists them: A alone.
    expect((await a.contactCard()).mailboxIds.map(toHex)).toEqual([toHex(a.mailboxId)]);
  });
});

describe('a revoked device wipes itself', () => {
  it('on a revocation the account signed: the storage file is erased and `wiped` names the list; a node claiming a deletion on its own wipes nothing', async () => {
    const work = mkdtempSync(join(tmpdir(), 'mw-revoke-'));
    try {
      const a = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...fast });
      open.push(a);
      const carol = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...fast });
      open.push(carol);

      // The node alone deletes a device (as a lying node would): the device stops, keeps its data.
      const cFile = join(work, 'c.db');
      let unverifiedSeen: () => void = () => undefined;
      const unverified = new Promise<void>((resolve) => (unverifiedSeen = resolve));
      const logger = (e: { event: string }) => {
        if (e.event === 'device.revocation-unverified') unverifiedSeen();
      };
      const offerC = await MeshWhisper.createLinkOffer({ node: t.url, namespace: 'test', storage: await openSqliteStorage({ path: cFile }), logger, ...fast });
      const [, linkedC] = await Promise.all([a.acceptLinkOffer(offerC.payload), offerC.completed]);
      const c = linkedC.client;
      open.push(c);
      let cWiped = false;
      c.on('wiped', () => (cWiped = true));
      const cGot = c.once('message', (m) => m.text === 'c is online');
      await carol.sendText({ accountKey: a.accountKey }, 'c is online');
      await cGot;
      const cStopped = c.once('stopped', (e) => e.reason === 'device-deleted', 15_000);
      const svc = t.node.services;
      await svc.store.deleteDevices([c.mailboxId]);
      await svc.hub.bus.publishDeleted(toHex(c.mailboxId));
      await cStopped;
      await unverified; // it looked at the account's list: still named there
      expect(cWiped).toBe(false);
      expect(existsSync(cFile)).toBe(true);

      // A real revocation: a manager signs a list without B.
      const bFile = join(work, 'b.db');
      const offer = await MeshWhisper.createLinkOffer({ node: t.url, namespace: 'test', storage: await openSqliteStorage({ path: bFile }), ...fast });
      const [accepted, linked] = await Promise.all([a.acceptLinkOffer(offer.payload), offer.completed]);
      const b = linked.client;
      open.push(b);
      const got = b.once('message', (m) => m.text === 'kept until revoked');
      await carol.sendText({ accountKey: a.accountKey }, 'kept until revoked');
      await got;
      expect(existsSync(bFile)).toBe(true);
      const stopped = b.once('stopped', undefined, 15_000);
      const wiped = b.once('wiped', undefined, 15_000);
      const list = await a.revokeDevice(accepted.deviceIndex);
      expect((await stopped).reason).toBe('device-deleted');
      expect(await wiped).toEqual({ reason: 'revoked', epoch: list.epoch });
      expect(existsSync(bFile)).toBe(false);
      expect(existsSync(`${bFile}-wal`)).toBe(false);
      await expect(b.history(carol.accountKey)).rejects.toMatchObject({ code: 'MW_SDK_CLOSED' }); // closed: nothing left to read
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

/** Forwards to the node; the new device's `n`-th link-channel post is corrupted (loopback only). */
async function corruptingProxy(target: string, n: number): Promise<{ url: string; close(): Promise<void> }> {
  let posts = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        let body: Uint8Array | undefined = chunks.length ? new Uint8Array(Buffer.concat(chunks)) : undefined;
        if (body && req.method === 'POST' && /\/v1\/link\/[^/]+\/messages$/.test(req.url ?? '') && ++posts === n) {
          const data = fromBinary(LinkChannelPostSchema, body).data.slice();
          data[data.length - 1]! ^= 1;
          body = encodeBody(LinkChannelPostSchema, { data });
        }
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'content-length' && k !== 'connection') headers[k] = v;
        const r = await fetch(`${target}${req.url ?? '/'}`, { method: req.method ?? 'GET', headers, ...(body ? { body: body as BodyInit } : {}) });
        res.writeHead(r.status, Object.fromEntries([...r.headers.entries()].filter(([k]) => k !== 'content-length' && k !== 'transfer-encoding' && k !== 'connection')));
        res.end(Buffer.from(await r.arrayBuffer()));
      })().catch(() => res.destroy());
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe('a link that fails after the new device was put on the list', () => {
  it('takes it off again: the account’s list names only the devices that finished linking', async () => {
    const a = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...fast });
    open.push(a);
    const proxy = await corruptingProxy(t.url, 2); // the new device's second frame: "installed"
    try {
      const offer = await MeshWhisper.createLinkOffer({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...fast, fetch: (input, init) => fetch(String(input).replace(t.url, proxy.url), init) });
      let code = 'ok';
      await a.acceptLinkOffer(offer.payload).catch((e: unknown) => (code = e instanceof SdkError ? e.code : String(e)));
      expect(code).toBe('MW_SDK_LINK_FAILED');
      await offer.completed.then((r) => open.push(r.client)).catch(() => undefined);
      const list = await a.deviceList();
      expect(list?.devices.map((d) => d.deviceIndex)).toEqual([0]);
      expect(list?.epoch).toBe(3); // 1: A alone; 2: the new device added; 3: taken off again
      expect((await a.refreshDeviceList())?.epoch).toBe(3);
    } finally {
      await proxy.close();
    }
  });
});

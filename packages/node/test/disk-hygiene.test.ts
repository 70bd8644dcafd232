// Issue 12 §3: "the disk keeps what the node deleted". A scripted conversation on a real node,
// then a byte scan of EVERY file in its data directory: acknowledged envelopes and a deleted
// account (username, account key, mailbox ids, certificate, delivery-token hash) must be gone from
// the database, its -wal and -shm, within FORGET_WITHIN_MS — not only from the tables.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { EnvelopeClass, SendRequestSchema, SignedUsernameOperationSchema, UsernameAction, encodeBody, signUsernameOperation } from '@meshwhisper/protocol';
import { deliveryTokenHash } from '../src/mailbox/send.js';
import { FORGET_WITHIN_MS } from '../src/store/sqlite-store.js';
import { TestDevice, ctx, generousLimits, proto, startTestNode } from './helpers.js';
import type { TestNode } from './helpers.js';
import { WsClient } from './ws-client.js';

const open: { close(): unknown }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

/** Every regular file under `dir`, recursively. */
function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

/** Which of the named byte strings occur in any file of `dir` (and where). */
function scan(dir: string, needles: Record<string, Uint8Array>): string[] {
  const hits: string[] = [];
  for (const f of files(dir)) {
    const data = readFileSync(f);
    for (const [name, bytes] of Object.entries(needles)) if (data.indexOf(Buffer.from(bytes)) >= 0) hits.push(`${name} in ${f.slice(dir.length + 1)}`);
  }
  return hits;
}

async function until(what: string, f: () => boolean, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  while (!f()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timeout: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - t0;
}

async function node(): Promise<{ t: TestNode; port: number }> {
  const t = await startTestNode({ RATE_LIMITS: generousLimits(), BACKUP_INTERVAL_HOURS: '0' });
  open.push(t);
  return { t, port: (await t.node.listen() as AddressInfo).port };
}

const send = (t: TestNode, mailbox: Uint8Array, payload: Uint8Array, deliveryToken?: Uint8Array) =>
  t.node.app.inject({
    method: 'POST',
    url: '/v1/send',
    headers: proto,
    payload: Buffer.from(encodeBody(SendRequestSchema, { mailboxId: mailbox, payload, class: EnvelopeClass.DURABLE, ...(deliveryToken ? { deliveryToken } : {}) })),
  });

describe('raw-file scan of the data directory', () => {
  it('acknowledged envelopes leave every file (ids and payloads) within FORGET_WITHIN_MS', async () => {
    const { t, port } = await node();
    const bob = new TestDevice();
    expect((await bob.register(t.node)).statusCode).toBe(200);
    const payloads = Array.from({ length: 60 }, (_, i) => new Uint8Array(randomBytes(i % 3 === 0 ? 5000 : 300))); // some overflow pages
    for (const p of payloads) expect((await send(t, bob.mailbox, p)).statusCode).toBe(200);
    const c = await WsClient.device(port, bob);
    open.push({ close: () => c.terminate() });
    const ids: Uint8Array[] = [];
    while (ids.length < payloads.length) {
      const f = await c.nextKind('deliver');
      const batch = f.body.value.envelopes.map((e) => e.id);
      ids.push(...batch);
      c.ack(batch, 1000 + ids.length);
      await c.next((x) => x.body.case === 'ok' && x.requestId === 1000 + ids.length);
    }
    const needles: Record<string, Uint8Array> = {};
    payloads.forEach((p, i) => (needles[`payload ${i}`] = p.subarray(0, 64)));
    ids.forEach((id, i) => (needles[`id ${i}`] = id));
    const wal = join(t.dataDir, 'meshwhisper.sqlite3-wal');
    expect(statSync(wal).size).toBeGreaterThan(0);
    // The TRUNCATE checkpoint is due FORGET_WITHIN_MS after the first deletion since the last one;
    // the slack is for a loaded CI machine.
    const ms = await until('the WAL is checkpointed and truncated', () => statSync(wal).size === 0, FORGET_WITHIN_MS + 4000);
    expect(scan(t.dataDir, needles)).toEqual([]);
    console.log(`acknowledged envelopes gone from every file ${ms} ms after the last ack (bound: FORGET_WITHIN_MS = ${FORGET_WITHIN_MS} ms)`);
  });

  it('a deleted account leaves no username, account key, mailbox id, certificate or token hash in any file, as soon as DELETE answers', async () => {
    const { t, port } = await node();
    const alice = new TestDevice();
    const other = new TestDevice(); // someone else's data stays
    expect((await alice.register(t.node)).statusCode).toBe(200);
    expect((await other.register(t.node)).statusCode).toBe(200);
    const username = `zq${randomBytes(6).toString('hex')}`;
    const challenge = await TestDevice.challenge(t.node);
    const op = signUsernameOperation(ctx, alice.account, { namespace: 'default', username, action: UsernameAction.CLAIM, signerKey: alice.account.publicKey, newOwnerKey: new Uint8Array(0), challenge });
    expect((await t.node.app.inject({ method: 'POST', url: '/v1/usernames', headers: proto, payload: Buffer.from(encodeBody(SignedUsernameOperationSchema, op)) })).statusCode).toBe(200);
    const token = new Uint8Array(randomBytes(16));
    const c = await WsClient.device(port, alice);
    open.push({ close: () => c.terminate() });
    const rid = c.send({ body: { case: 'setDeliveryTokens', value: { tokens: [token] } } });
    await c.next((f) => f.requestId === rid && f.body.case === 'ok');
    for (let i = 0; i < 5; i++) expect((await send(t, alice.mailbox, new Uint8Array(randomBytes(200)), token)).statusCode).toBe(200);
    c.close();
    const needles = {
      username: new TextEncoder().encode(username),
      accountKey: alice.account.publicKey,
      mailbox: alice.mailbox,
      certificate: alice.certificateBytes.subarray(0, 48),
      tokenHash: deliveryTokenHash(ctx, token),
    };
    expect(scan(t.dataDir, needles).length).toBeGreaterThan(0); // the scan finds them while they exist
    const del = await alice.deleteAccount(t.node);
    expect(del.statusCode).toBe(204);
    expect(scan(t.dataDir, needles)).toEqual([]);
    expect(scan(t.dataDir, { otherMailbox: other.mailbox }).length).toBeGreaterThan(0);
  });
});

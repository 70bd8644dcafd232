// kill -9 of one cluster instance under load: two instances as separate processes (the built
// node, as operators run it) on one PostgreSQL schema and NATS; a device on instance A, senders
// on both. A is killed mid-load; the device reconnects to B. Every send that was acknowledged
// arrives; nothing the device had acknowledged (and the node confirmed) is delivered again; the
// mailbox drains to empty.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH_HEADER, CONTENT_TYPE_PROTOBUF, ChallengeSchema, EnvelopeClass, KeyUploadSchema, SendRequestSchema, encodeBody, encodeDeviceAuthHeader, fromBinary, requestDigest, signDeviceAuth } from '@meshwhisper/protocol';
import { buildNodeDist } from '../build-dist.js';
import { TestDevice, ctx, enlistOverHttp, generousLimits } from '../helpers.js';
import { WsClient } from '../ws-client.js';
import { PG_TEST_URL, dropSchema, freshSchema, pgQuery } from '../store/pg-test-db.js';
import { MACHINE_NATS_URL, startInstanceProcess } from './harness.js';
import type { ProcessInstance } from './harness.js';

let schema: string;
const prefix = `mwf${randomBytes(5).toString('hex')}`;
let dataDir: string;
const children: ChildProcess[] = [];

async function startInstance(): Promise<ProcessInstance> {
  const i = await startInstanceProcess({
    DATA_DIR: dataDir,
    PORT: '0',
    HOST: '127.0.0.1',
    METRICS_PORT: 'off',
    LOG_LEVEL: 'info',
    RATE_LIMITS: generousLimits(),
    MAILBOX_MAX_MESSAGES: '10000',
    FIRST_CONTACT_MAX_MESSAGES: '10000',
    STORE: 'postgres',
    DATABASE_URL: PG_TEST_URL,
    DATABASE_SCHEMA: schema,
    DATABASE_POOL_SIZE: '4',
    NATS_URL: MACHINE_NATS_URL,
    NATS_SUBJECT_PREFIX: prefix,
  });
  children.push(i.proc);
  return i;
}

async function register(port: number, d: TestDevice): Promise<void> {
  const base = `http://127.0.0.1:${port}`;
  await enlistOverHttp(base, d);
  const body = encodeBody(KeyUploadSchema, d.keyUpload(1));
  const ch = fromBinary(ChallengeSchema, new Uint8Array(await (await fetch(`${base}/v1/auth/challenge`)).arrayBuffer())).challenge;
  const header = encodeDeviceAuthHeader(signDeviceAuth(ctx, d.device, d.certificateBytes, ch, requestDigest(ctx, 'PUT', '/v1/keys', body)));
  const res = await fetch(`${base}/v1/keys`, { method: 'PUT', headers: { 'content-type': CONTENT_TYPE_PROTOBUF, [AUTH_HEADER]: header }, body: Buffer.from(body) });
  if (res.status !== 200) throw new Error(`register: ${res.status}`);
}

async function send(port: number, mailbox: Uint8Array, text: string): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/v1/send`, {
      method: 'POST',
      headers: { 'content-type': CONTENT_TYPE_PROTOBUF },
      body: Buffer.from(encodeBody(SendRequestSchema, { mailboxId: mailbox, payload: new TextEncoder().encode(text), class: EnvelopeClass.DURABLE })),
      signal: AbortSignal.timeout(5000),
    });
    return res.status === 200;
  } catch {
    return false; // the instance died under this request: not acknowledged
  }
}

beforeAll(async () => {
  await buildNodeDist();
  schema = await freshSchema();
  dataDir = mkdtempSync(join(tmpdir(), 'mw-failover-'));
}, 240_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await dropSchema(schema);
  rmSync(dataDir, { recursive: true, force: true });
});

describe('kill -9 of an instance under load', () => {
  it('the device reconnects to the other instance; every acknowledged send arrives; nothing confirmed is redelivered', async () => {
    const a = await startInstance();
    const b = await startInstance();
    const d = new TestDevice();
    await register(b.port, d);
    const received: string[] = [];
    const confirmed = new Set<string>();
    // Phase 1: live delivery on A of mail accepted by B; each batch acked and the ack confirmed.
    let ws = await WsClient.device(a.port, d);
    await ws.nextKind('queueEmpty');
    let req = 1000;
    for (let i = 0; i < 40; i++) {
      expect(await send(b.port, d.mailbox, `p1-${i}`)).toBe(true);
      const f = await ws.nextKind('deliver');
      const texts = f.body.value.envelopes.map((e) => new TextDecoder().decode(e.payload));
      received.push(...texts);
      const id = req++;
      ws.ack(f.body.value.envelopes.map((e) => e.id), id);
      await ws.next((x) => x.requestId === id && x.body.case === 'ok');
      for (const t of texts) confirmed.add(t);
    }
    // Phase 2: senders on both instances; A is killed in the middle.
    const acknowledged = new Set<string>();
    const sends: Promise<void>[] = [];
    let killed = false;
    for (let i = 0; i < 120; i++) {
      const text = `p2-${i}`;
      const port = i % 2 ? a.port : b.port;
      sends.push(
        send(port, d.mailbox, text).then(async (ok) => {
          // Like the SDK's outbox: a send that was not acknowledged is sent again (to the survivor).
          if (!ok) ok = await send(b.port, d.mailbox, text);
          if (ok) acknowledged.add(text);
        }),
      );
      if (i === 50) {
        a.proc.kill('SIGKILL');
        killed = true;
      }
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    expect(killed).toBe(true);
    // The device's socket on A is gone; it reconnects to B (as the SDK does through the load balancer).
    await ws.waitClosed(10_000).catch(() => ws.terminate());
    await Promise.all(sends);
    expect(acknowledged.size).toBe(120);
    ws = await WsClient.device(b.port, d);
    try {
      const deadline = Date.now() + 30_000;
      while ([...acknowledged].some((t) => !received.includes(t))) {
        if (Date.now() > deadline) throw new Error(`missing: ${[...acknowledged].filter((t) => !received.includes(t)).join(',')}`);
        const f = await ws.next((x) => x.body.case === 'deliver', 30_000);
        if (f.body.case !== 'deliver') continue;
        received.push(...f.body.value.envelopes.map((e) => new TextDecoder().decode(e.payload)));
        const id = req++;
        ws.ack(f.body.value.envelopes.map((e) => e.id), id);
        await ws.next((x) => x.requestId === id && x.body.case === 'ok');
      }
    } finally {
      ws.terminate();
    }
    // Nothing whose ack was confirmed came again; every acknowledged send arrived.
    for (const t of confirmed) expect(received.filter((x) => x === t)).toHaveLength(1);
    for (const t of acknowledged) expect(received).toContain(t);
    const left = await pgQuery<{ n: string }>(`SELECT count(*)::text AS n FROM ${schema}.messages`);
    expect(left[0]!.n).toBe('0');
  }, 120_000);
});

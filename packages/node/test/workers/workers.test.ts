// The multi-process SQLite node (WORKERS=2; docs/architecture.md §Process model), run as operators
// run it: the built binary, a primary and two worker processes sharing one listener on 127.0.0.1
// and one SQLite file. The primary hands connections to the workers in turn (node:cluster's
// round-robin), so of the many connections each case opens some land on each worker: a broken IPC
// bus leaves the recipients on the other worker without live mail, and the cases fail.
import { request } from 'node:http';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { encodeDeviceList } from '@meshwhisper/crypto';
import {
  AUTH_HEADER,
  CONTENT_TYPE_PROTOBUF,
  ChallengeSchema,
  EnvelopeClass,
  KeyUploadSchema,
  PublishDeviceListSchema,
  decodeFrame,
  encodeBody,
  encodeDeviceAuthHeader,
  encodeFrame,
  fromBinary,
  requestDigest,
  signDeviceAuth,
} from '@meshwhisper/protocol';
import { ANONYMOUS_SOCKET_PATH } from '../../src/node.js';
import { LOCK_FILE } from '../../src/store/data-dir.js';
import { buildNodeDist, nodeBin } from '../build-dist.js';
import { TestDevice, ctx } from '../helpers.js';
import { WsClient } from '../ws-client.js';
import { freePort } from '../cluster/harness.js';
import { startWorkersNode } from './harness.js';
import type { WorkersNode } from './harness.js';

/** One HTTP request on a connection of its own (no keep-alive pool): each lands on the next worker. */
function fresh(url: string, method: string, headers: Record<string, string> = {}, body?: Uint8Array): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers: { ...headers, connection: 'close' }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body ? Buffer.from(body) : undefined);
  });
}

async function register(base: string, d: TestDevice): Promise<void> {
  const list = encodeBody(PublishDeviceListSchema, { deviceList: encodeDeviceList(d.listed()) });
  const listed = await fresh(`${base}/v1/device-list`, 'PUT', { 'content-type': CONTENT_TYPE_PROTOBUF }, list);
  if (listed.status !== 200) throw new Error(`device list: ${listed.status} ${listed.body.toString()}`);
  const body = encodeBody(KeyUploadSchema, d.keyUpload(1));
  const ch = fromBinary(ChallengeSchema, new Uint8Array((await fresh(`${base}/v1/auth/challenge`, 'GET')).body)).challenge;
  const header = encodeDeviceAuthHeader(signDeviceAuth(ctx, d.device, d.certificateBytes, ch, requestDigest(ctx, 'PUT', '/v1/keys', body)));
  const res = await fresh(`${base}/v1/keys`, 'PUT', { 'content-type': CONTENT_TYPE_PROTOBUF, [AUTH_HEADER]: header }, body);
  if (res.status !== 200) throw new Error(`register: ${res.status} ${res.body.toString()}`);
}

/** An anonymous sender socket: resolves once the server said hello. */
async function anonymous(port: number): Promise<WsClient> {
  const c = await WsClient.connect(port, ANONYMOUS_SOCKET_PATH);
  c.send({ body: { case: 'clientHello', value: { versions: [2] } } });
  await c.nextKind('serverHello');
  return c;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  await buildNodeDist();
}, 180_000);

describe('WORKERS=2: one node, two worker processes, one SQLite file', () => {
  let node: WorkersNode;
  let metricsPort: number;
  beforeAll(async () => {
    metricsPort = await freePort();
    node = await startWorkersNode({ env: { METRICS_PORT: String(metricsPort), FIRST_CONTACT_MAX_MESSAGES: '10000', MAILBOX_MAX_MESSAGES: '10000' } });
  }, 90_000);
  afterAll(async () => {
    await node?.close();
  });

  it('serves from two worker processes on one port', () => {
    expect(node.workerPids.size).toBe(2);
    expect(new Set(node.workerPids.values()).size).toBe(2);
    expect(node.logs.filter((l) => l.msg === 'MeshWhisper node listening').every((l) => l.bus === 'ipc')).toBe(true);
  });

  it('delivers live between workers: every sender to every recipient, wherever each connection landed', async () => {
    const recipients = Array.from({ length: 6 }, () => new TestDevice());
    for (const r of recipients) await register(node.url, r);
    const sockets = [];
    for (const r of recipients) sockets.push(await WsClient.device(node.port, r));
    const senders = [];
    for (let i = 0; i < 6; i++) senders.push(await anonymous(node.port));
    const results = [];
    for (const [i, s] of senders.entries()) {
      for (const r of recipients) {
        const rid = s.send({ body: { case: 'send', value: { mailboxId: r.mailbox, payload: new TextEncoder().encode(`from ${i}`), class: EnvelopeClass.DURABLE } } });
        results.push(s.next((f) => f.requestId === rid));
      }
    }
    for (const f of await Promise.all(results)) {
      expect(f.body.case).toBe('sendResult');
      if (f.body.case === 'sendResult') expect(f.body.value.deliveredLive).toBe(true);
    }
    // Live: on the open sockets, without reconnecting (a recipient on the other worker gets them over the IPC bus).
    for (const c of sockets) {
      const got = new Set<string>();
      while (got.size < 6) {
        const f = await c.nextKind('deliver', 10_000);
        for (const e of f.body.value.envelopes) got.add(new TextDecoder().decode(e.payload));
      }
      expect([...got].sort()).toEqual(Array.from({ length: 6 }, (_, i) => `from ${i}`));
    }
    // /metrics (the primary's listener) sums the workers.
    const text = (await fresh(`http://127.0.0.1:${metricsPort}/metrics`, 'GET')).body.toString();
    const opened = /meshwhisper_connections_opened_total\{kind="device"\} (\d+)/.exec(text);
    expect(Number(opened?.[1])).toBeGreaterThanOrEqual(6);
    const accepted = [...text.matchAll(/meshwhisper_envelopes_accepted_total\{[^}]*class="durable"[^}]*\} (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
    expect(accepted).toBeGreaterThanOrEqual(36);
    for (const c of [...sockets, ...senders]) c.close();
  });

  it('closes the older connection of a device that logs in again, on whichever worker each landed', async () => {
    const d = new TestDevice();
    await register(node.url, d);
    let previous = await WsClient.device(node.port, d);
    for (let i = 0; i < 4; i++) {
      const next = await WsClient.device(node.port, d);
      expect((await previous.waitClosed(10_000)).code).toBe(4001);
      previous = next;
    }
    previous.close();
  });

  it('refuses a challenge replayed on any worker (single-use across processes)', async () => {
    const d = new TestDevice();
    await register(node.url, d);
    const body = encodeBody(KeyUploadSchema, d.keyUpload(1));
    const ch = fromBinary(ChallengeSchema, new Uint8Array((await fresh(`${node.url}/v1/auth/challenge`, 'GET')).body)).challenge;
    const header = encodeDeviceAuthHeader(signDeviceAuth(ctx, d.device, d.certificateBytes, ch, requestDigest(ctx, 'PUT', '/v1/keys', body)));
    const headers = { 'content-type': CONTENT_TYPE_PROTOBUF, [AUTH_HEADER]: header };
    expect((await fresh(`${node.url}/v1/keys`, 'PUT', headers, body)).status).toBe(200);
    // Each replay on a new connection: the next worker in turn, so both workers refuse it.
    for (let i = 0; i < 4; i++) {
      const r = await fresh(`${node.url}/v1/keys`, 'PUT', headers, body);
      expect(r.status).toBe(401);
      expect(JSON.parse(r.body.toString()).error.code).toBe('MW_AUTH_REPLAYED');
    }
  });

  it('refuses a second node on the same DATA_DIR (the primary holds the lock)', async () => {
    for (const workers of ['1', '2']) {
      const p = spawn(process.execPath, [nodeBin], { env: { ...process.env, DATA_DIR: node.dataDir, PORT: '0', HOST: '127.0.0.1', METRICS_PORT: 'off', WORKERS: workers }, stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      p.stderr!.on('data', (c: Buffer) => (err += c.toString()));
      const code = await new Promise((r) => p.once('exit', r));
      expect(code).toBe(1);
      expect(err).toMatch(/in use by another MeshWhisper node \(pid \d+/);
    }
  });
});

describe('WORKERS=2 under failure', () => {
  it('kill -9 of a worker under load loses no acknowledged message (each delivered exactly once after dedup); the primary replaces it', async () => {
    const TOTAL = 3000;
    const node = await startWorkersNode({ env: { FIRST_CONTACT_MAX_MESSAGES: String(TOTAL * 2), MAILBOX_MAX_MESSAGES: String(TOTAL * 2) } });
    try {
      const recipient = new TestDevice();
      await register(node.url, recipient);
      const toSend = Array.from({ length: TOTAL }, (_, i) => i);
      const acked = new Set<number>();
      let killed = false;
      const victim = node.workerPids.get(1)!;
      // Four pipelined sender connections (both workers); worker 1 is SIGKILLed at a third of the acks.
      const lane = async (): Promise<void> => {
        while (acked.size < TOTAL) {
          if (toSend.length === 0) {
            await new Promise((r) => setTimeout(r, 50)); // others' sends in flight may come back
            continue;
          }
          await new Promise<void>((resolve) => {
            const ws = new WebSocket(`ws://127.0.0.1:${node.port}${ANONYMOUS_SOCKET_PATH}`);
            const pending = new Map<number, number>();
            let rid = 1;
            // As a real client does: a connection silent for 10 s (e.g. handed to the worker as it
            // was killed, never opened) is abandoned and its sends retried on a new one.
            let quiet = setTimeout(() => ws.terminate(), 10_000);
            const heard = (): void => {
              clearTimeout(quiet);
              quiet = setTimeout(() => ws.terminate(), 10_000);
            };
            const pump = (): void => {
              while (pending.size < 64 && toSend.length > 0) {
                const idx = toSend.shift()!;
                pending.set(rid, idx);
                ws.send(encodeFrame({ requestId: rid++, body: { case: 'send', value: { mailboxId: recipient.mailbox, payload: new TextEncoder().encode(`m-${idx}`), class: EnvelopeClass.DURABLE } } }));
              }
              if (pending.size === 0) ws.close();
            };
            ws.on('open', () => ws.send(encodeFrame({ requestId: 0, body: { case: 'clientHello', value: { versions: [2] } } })));
            ws.on('message', (data: Buffer) => {
              heard();
              const d = decodeFrame(new Uint8Array(data));
              if (!d.ok) return;
              const f = d.value;
              if (f.body.case === 'serverHello') return pump();
              const idx = pending.get(f.requestId);
              if (idx === undefined) return;
              pending.delete(f.requestId);
              if (f.body.case === 'sendResult') acked.add(idx);
              else toSend.push(idx);
              if (!killed && acked.size >= TOTAL / 3) {
                killed = true;
                process.kill(victim, 'SIGKILL');
              }
              pump();
            });
            ws.on('close', () => {
              clearTimeout(quiet);
              // In flight when the worker died: fate unknown, sent again (at-least-once).
              for (const idx of pending.values()) toSend.push(idx);
              pending.clear();
              resolve();
            });
            ws.on('error', () => undefined);
          });
        }
      };
      await Promise.all([lane(), lane(), lane(), lane()]);
      expect(killed).toBe(true);
      expect(acked.size).toBe(TOTAL);
      await until(() => node.workerPids.get(1) !== victim, 60_000, 'the primary restarts worker 1');
      expect(node.logs.some((l) => l.role === 'primary' && typeof l.msg === 'string' && l.msg.startsWith('worker 1 died'))).toBe(true);

      const c = await WsClient.device(node.port, recipient);
      const seen = new Map<string, number>();
      while (seen.size < TOTAL) {
        const f = await c.nextKind('deliver', 20_000);
        for (const e of f.body.value.envelopes) {
          const id = new TextDecoder().decode(e.payload);
          seen.set(id, (seen.get(id) ?? 0) + 1);
        }
        c.ack(f.body.value.envelopes.map((e) => e.id));
      }
      for (const i of acked) expect(seen.has(`m-${i}`)).toBe(true);
      c.close();
      // SIGTERM: a clean stop of every process, and the lock is released.
      // (A CI run once saw exit code 1 here: the primary's send to a worker that was exiting failed,
      // and the failure was an uncaught 'error' event — fixed by sendToWorker, send-to-worker.test.ts.
      // The processes' last output goes with any failure.)
      expect(await node.stop(), `exit code; stderr:\n${node.stderr.join('\n')}\nlast stdout lines:\n${node.lines.slice(-30).join('')}`).toBe(0);
      expect(existsSync(join(node.dataDir, LOCK_FILE))).toBe(false);
      for (const pid of node.workerPids.values()) expect(alive(pid)).toBe(false);
    } finally {
      await node.close();
    }
  }, 180_000);

  it('kill -9 of the primary takes the workers down', async () => {
    const node = await startWorkersNode();
    try {
      const pids = [...node.workerPids.values()];
      expect(pids.every(alive)).toBe(true);
      node.primary.kill('SIGKILL');
      await until(() => !pids.some(alive), 20_000, 'workers exit after their primary died');
    } finally {
      await node.close();
    }
  }, 90_000);
});

// Issue 12: the SQLite store's writer thread dies (a bug in its own code). Before: every send and
// ack was refused from then on, but GET /ready still answered 200 — an orchestrator kept routing
// to a node that could not take mail, and nothing said why. Now: /ready answers 503 with the
// reason, a metric and a log line say it, a new writer thread starts, and mail flows again.
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { EnvelopeClass, ErrorCode, SendRequestSchema, encodeBody } from '@meshwhisper/protocol';
import { loadConfig } from '../../src/config.js';
import { createNode } from '../../src/node.js';
import type { SqliteNodeStore } from '../../src/store/sqlite-store.js';
import { TestDevice, generousLimits, proto } from '../helpers.js';
import { WsClient } from '../ws-client.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

describe('store writer thread death', () => {
  it('/ready answers 503 with the reason (metric + log line) while the writer is down; a new writer starts and mail flows again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mw-writer-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const logs: string[] = [];
    const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dir, LOG_LEVEL: 'info', METRICS_PORT: 'off', RATE_LIMITS: generousLimits(), BACKUP_INTERVAL_HOURS: '0' });
    const node = await createNode(config, {
      logStream: new Writable({
        write(chunk: Buffer, _e, cb) {
          logs.push(chunk.toString());
          cb();
        },
      }),
    });
    cleanup.push(() => node.close());
    const port = ((await node.listen()) as AddressInfo).port;
    const bob = new TestDevice();
    expect((await bob.register(node)).statusCode).toBe(200);
    const send = (n: number) =>
      node.app.inject({
        method: 'POST',
        url: '/v1/send',
        headers: proto,
        payload: Buffer.from(encodeBody(SendRequestSchema, { mailboxId: bob.mailbox, payload: new Uint8Array(100).fill(n), class: EnvelopeClass.DURABLE })),
      });
    expect((await send(1)).statusCode).toBe(200);
    expect((await node.app.inject('/ready')).statusCode).toBe(200);

    const store = node.services.store as SqliteNodeStore;
    store.crashWriterForTest();
    // Sends are refused (retriable) and /ready says why; so do the metric and the log.
    await expect.poll(async () => (await send(2)).statusCode, { timeout: 10_000 }).toBe(503);
    expect(JSON.parse((await send(2)).body).error.code).toBe(ErrorCode.UNAVAILABLE);
    const ready = await node.app.inject('/ready');
    expect(ready.statusCode).toBe(503);
    expect(JSON.parse(ready.body)).toMatchObject({ reason: 'writer-failed' });
    const metrics = await node.services.metrics!.render();
    expect(metrics).toMatch(/meshwhisper_store_writable\{reason="writer_failed"\} 0/);
    expect(metrics).toMatch(/meshwhisper_store_writer_deaths_total 1/);
    expect(logs.join('')).toContain("the store's writer thread died");

    // A new writer thread starts (WRITER_RESTART_MS): /ready is 200 again, sends commit, and the
    // mail accepted before the death and after the restart is delivered and acknowledged.
    await expect.poll(async () => (await node.app.inject('/ready')).statusCode, { timeout: 60_000, interval: 500 }).toBe(200);
    expect((await send(3)).statusCode).toBe(200);
    expect(await node.services.metrics!.render()).toMatch(/meshwhisper_store_writable\{reason="none"\} 1/);
    const c = await WsClient.device(port, bob);
    cleanup.push(() => c.terminate());
    const got: number[] = [];
    while (got.length < 2) {
      const f = await c.nextKind('deliver', 10_000);
      for (const e of f.body.value.envelopes) got.push(e.payload[0]!);
      c.ack(f.body.value.envelopes.map((e) => e.id), 7);
      expect((await c.next((x) => x.requestId === 7, 10_000)).body.case).toBe('ok');
    }
    expect(got).toEqual([1, 3]);
    await expect.poll(async () => (await store.mailboxStats(bob.mailbox)).messages, { timeout: 10_000 }).toBe(0);
  }, 120_000);
});

// Issue 12 §4, disk full — on a real small filesystem (a tmpfs mounted for the test; needs root,
// as CI has). Before: sends were refused (correct) but /ready said 200 and every ack failed with
// MW_INTERNAL, so recipients could not drain and the node stayed wedged. Now: acks succeed on the
// full disk, /ready answers 503 with the reason, a metric and a log line say why, and the node
// takes mail again once space is back.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { EnvelopeClass, ErrorCode, SendRequestSchema, encodeBody } from '@meshwhisper/protocol';
import { loadConfig } from '../../src/config.js';
import { createNode } from '../../src/node.js';
import type { MeshWhisperNode } from '../../src/node.js';
import { HEALTH_PROBE_INTERVAL_MS } from '../../src/store/sqlite-store.js';
import { TestDevice, generousLimits, proto } from '../helpers.js';
import { WsClient } from '../ws-client.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const isRoot = process.getuid?.() === 0;

describe('disk full', () => {
  it.skipIf(!isRoot)('acks still succeed, /ready says 503 and why (metric + log), and new mail is taken again once space is back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mw-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m,mode=700', 'tmpfs', dir]);
    cleanup.push(() => {
      execFileSync('umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
    });
    const logs: string[] = [];
    const config = loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: dir,
      LOG_LEVEL: 'info',
      METRICS_PORT: 'off',
      RATE_LIMITS: generousLimits(),
      BACKUP_INTERVAL_HOURS: '0',
      MAILBOX_MAX_MESSAGES: '100000',
      FIRST_CONTACT_MAX_MESSAGES: '100000',
      MAILBOX_MAX_BYTES: String(1024 * 1024 * 1024),
    });
    const node: MeshWhisperNode = await createNode(config, {
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
    const send = () =>
      node.app.inject({
        method: 'POST',
        url: '/v1/send',
        headers: proto,
        payload: Buffer.from(encodeBody(SendRequestSchema, { mailboxId: bob.mailbox, payload: new Uint8Array(randomBytes(30_000)), class: EnvelopeClass.DURABLE })),
      });

    // Fill the disk: sends are accepted until the filesystem is full, then refused with UNAVAILABLE.
    let accepted = 0;
    let refused: { statusCode: number; body: string } | undefined;
    for (let i = 0; i < 2000 && !refused; i++) {
      const r = await send();
      if (r.statusCode === 200) accepted++;
      else refused = r;
    }
    expect(refused?.statusCode, refused?.body).toBe(503);
    expect(JSON.parse(refused!.body).error.code).toBe(ErrorCode.UNAVAILABLE);
    expect(accepted).toBeGreaterThan(50);

    // /ready says why, and so do the metric and the log.
    const ready = await node.app.inject('/ready');
    expect(ready.statusCode).toBe(503);
    expect(JSON.parse(ready.body)).toMatchObject({ reason: 'disk-full' });
    expect(await node.services.metrics!.render()).toMatch(/meshwhisper_store_writable\{reason="disk_full"\} 0/);
    expect(logs.join('')).toContain('disk full under');

    // The recipient drains everything: every ack commits (no error frame), nothing is lost.
    const c = await WsClient.device(port, bob);
    cleanup.push(() => c.terminate());
    let delivered = 0;
    let rid = 1;
    while (delivered < accepted) {
      const f = await c.nextKind('deliver', 10_000);
      const ids = f.body.value.envelopes.map((e) => e.id);
      delivered += ids.length;
      const id = rid++;
      c.ack(ids, id);
      const answer = await c.next((x) => x.requestId === id, 10_000);
      expect(answer.body.case, JSON.stringify(answer.body.value)).toBe('ok');
    }
    expect(delivered).toBe(accepted);
    expect((await node.services.store.mailboxStats(bob.mailbox)).messages).toBe(0);

    // Space is back (the WAL was truncated): after the next probe the node takes mail again.
    await new Promise((r) => setTimeout(r, HEALTH_PROBE_INTERVAL_MS + 100));
    await expect.poll(async () => (await node.app.inject('/ready')).statusCode, { timeout: 10_000 }).toBe(200);
    expect((await send()).statusCode).toBe(200);
    expect(await node.services.metrics!.render()).toMatch(/meshwhisper_store_writable\{reason="none"\} 1/);
  }, 120_000);
});

/**
 * Starting without the node: a device the node has accepted before opens from its storage while the
 * node is down (history, conversations, contacts), and connects — publishing its keys — once the
 * node is back. A brand-new storage still needs the node (its keys must be published first).
 * The node is a real process-local node over a real socket, stopped and restarted on the same port
 * and data directory; the client's storage is a real SQLite file.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createNode, loadConfig } from '@meshwhisper/node';
import type { MeshWhisperNode } from '@meshwhisper/node';
import type { LogEntry } from '../../src/index.js';
import { MeshWhisper, memoryStorage, openSqliteStorage } from '../../src/index.js';
import { OPEN_RATE_LIMITS } from './test-node.js';

const work = mkdtempSync(join(tmpdir(), 'mw-sdk-offline-start-'));
const dataDir = join(work, 'node');
let node: MeshWhisperNode | undefined;

async function startNode(port = 0): Promise<number> {
  node = await createNode(loadConfig({ PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, METRICS_PORT: 'off', LOG_LEVEL: 'warn', RATE_LIMITS: OPEN_RATE_LIMITS, USERNAME_NAMESPACES: 'test:signed', WEB_APP: 'off' }), { metrics: false });
  return (await node.listen()).port;
}

afterAll(async () => {
  await node?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('offline start', () => {
  it('a registered device opens with its history while the node is down, and connects when it is back', async () => {
    const port = await startNode();
    const url = `http://127.0.0.1:${port}`;
    const options = { node: url, namespace: 'test', receiptDelay: { minDelayMs: 0, maxDelayMs: 50 } };
    const path = join(work, 'alice.db');
    const alice = await MeshWhisper.create({ ...options, storage: await openSqliteStorage({ path }) });
    const bob = await MeshWhisper.create({ ...options, storage: await memoryStorage() });
    const got = alice.once('message', undefined, 20_000);
    await bob.sendText(alice.mailboxId, 'before the outage');
    await got;
    await alice.close();

    await node!.close();
    node = undefined;
    // A new storage cannot start: its keys were never published.
    await expect(MeshWhisper.create({ ...options, storage: await memoryStorage() })).rejects.toMatchObject({ code: 'MW_SDK_UNREACHABLE' });

    const logs: LogEntry[] = [];
    const again = await MeshWhisper.create({ ...options, storage: await openSqliteStorage({ path }), logger: (e) => logs.push(e) });
    expect(logs.map((e) => e.event)).toContain('keys.publish-deferred');
    expect(again.connectionState).not.toBe('online');
    expect((await again.history(bob.accountKey)).map((m) => m.text)).toEqual(['before the outage']);
    expect((await again.conversationList()).map((c) => c.unread)).toEqual([1]);
    expect((await again.contacts()).length).toBe(1);

    await startNode(port);
    const online = again.once('connection', (s) => s === 'online', 60_000);
    again.connect(); // the app saw the network return: no waiting out the backoff
    await online;
    const after = again.once('message', (m) => m.text === 'after the outage', 20_000);
    await bob.sendText(alice.mailboxId, 'after the outage');
    await after;
    // The deferred publication ran (or a failure of it would be logged).
    await again.publishKeys();
    expect(logs.map((e) => e.event)).not.toContain('keys.publish-deferred-failed');
    await Promise.all([again.close(), bob.close()]);
  });
});

/**
 * What the facade tells the app beyond messages, over a real node: why the connection stopped (a
 * second tab or process of the same device took over), and the logger hook that replaced the
 * silent catches.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LogEntry, ProtocolStorage } from '../../src/index.js';
import { MeshWhisper, memoryStorage } from '../../src/index.js';
import type { E2eNode } from './test-node.js';
import { startE2eNode } from './test-node.js';

let t: E2eNode;
beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  await t?.close();
});

const client = async (storage?: ProtocolStorage, extra: { logger?: (e: LogEntry) => void } = {}) =>
  MeshWhisper.create({ node: t.url, namespace: 'test', storage: storage ?? (await memoryStorage()), ...extra });

describe('the facade tells the app what happened', () => {
  it('a second connection of the same device (another tab) stops the first one with a `stopped` event saying why', async () => {
    // Two clients over one storage are one device, as two tabs over one IndexedDB database are.
    const storage = await memoryStorage();
    const logs: LogEntry[] = [];
    const first = await client(storage, { logger: (e) => logs.push(e) });
    await first.once('connection', (s) => s === 'online');
    const stopped = first.once('stopped');
    const second = await MeshWhisper.create({ node: t.url, namespace: 'test', storage });
    const why = await stopped;
    expect(why.reason).toBe('replaced');
    expect(why.message).toMatch(/another connection of this device/);
    expect(first.connectionState).toBe('offline');
    expect(logs.some((e) => e.event === 'transport.stopped' && e.level === 'warn')).toBe(true);

    // The second one receives; the first does not reconnect by itself (it would fight the other).
    const peer = await client();
    const got = second.once('message');
    await peer.sendText(second.mailboxId, 'to whichever tab is live');
    expect((await got).text).toBe('to whichever tab is live');
    expect(first.connectionState).toBe('offline');

    await peer.close();
    await second.close();
    await first.close();
  });

  it('the logger hook hears what the client recovers from by itself (a throwing listener), with codes and no plaintext', async () => {
    const logs: LogEntry[] = [];
    const [alice, bob] = [await client(), await client(undefined, { logger: (e) => logs.push(e) })];
    bob.on('message', () => {
      throw new Error('app bug');
    });
    const seen = bob.once('message');
    await alice.sendText(bob.mailboxId, 'secret words');
    await seen; // a second listener still hears it: the throwing one broke nothing
    const entry = logs.find((e) => e.event === 'listener.threw');
    expect(entry).toBeDefined();
    expect(entry!.error).toEqual({ code: 'MW_SDK_INTERNAL', message: 'app bug' });
    expect(JSON.stringify(logs)).not.toContain('secret words');
    // A logger that throws is ignored too.
    const carol = await client(undefined, {
      logger: () => {
        throw new Error('logger bug');
      },
    });
    carol.on('message', () => {
      throw new Error('app bug');
    });
    const got = carol.once('message');
    await alice.sendText(carol.mailboxId, 'still delivered');
    expect((await got).text).toBe('still delivered');
    await Promise.all([alice.close(), bob.close(), carol.close()]);
  });
});

/**
 * A closed client, and a device that wiped itself after its account revoked it: every public method
 * of MeshWhisper and of client.groups — found by reflection, so a method added later is covered —
 * fails with MW_SDK_CLOSED (thrown or rejected), whatever its arguments, never with a storage error
 * or a timeout. The exceptions, by design: close() and idle() (nothing to do), on() and iterate()
 * (an iterator that ends at once), and the getters (mailboxId, accountKey, … the identity in memory).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceKeyPair, createContext, issueDeviceCertificate } from '@meshwhisper/crypto';
import { MeshWhisper, openSqliteStorage } from '../../src/index.js';
import type { E2eNode } from './test-node.js';
import { startE2eNode } from './test-node.js';

let t: E2eNode;
const work = mkdtempSync(join(tmpdir(), 'mw-sdk-closed-'));
beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  await t?.close();
  rmSync(work, { recursive: true, force: true });
});

const fast = { receiptDelay: { minDelayMs: 0, maxDelayMs: 0 } };
/** Not expected to fail on a closed client (see above). */
const OPEN_ANYWAY = new Set(['constructor', 'close', 'idle', 'on', 'iterate']);
/** client.groups members the receive pipeline and the client call (docs/api.md: "apps need not call it"), not app methods. */
const PIPELINE = new Set(['constructor', 'answerRejoin', 'resolveConversation', 'openMessage', 'hold', 'held', 'dropHeld', 'applySenderKey', 'applyUpdate', 'applyInvite', 'applyInviteAnswer', 'forgetAnswered', 'noteReceipt', 'membership']);

function methods(o: object, skip: ReadonlySet<string>): string[] {
  const proto = Object.getPrototypeOf(o) as object;
  return Object.getOwnPropertyNames(proto).filter((m) => !skip.has(m) && typeof Object.getOwnPropertyDescriptor(proto, m)!.value === 'function');
}

/** Calls every method with junk arguments; returns those that did not fail with MW_SDK_CLOSED. */
async function notClosed(c: MeshWhisper): Promise<string[]> {
  const k = new Uint8Array(32).fill(7);
  const out: string[] = [];
  const probe = async (name: string, f: () => unknown): Promise<void> => {
    try {
      await f(); // a synchronous throw and a rejection alike
      out.push(`${name}: no error`);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code !== 'MW_SDK_CLOSED') out.push(`${name}: ${code ?? String(e)}`);
    }
  };
  const call = (o: object, m: string) => () => (o as Record<string, (...a: unknown[]) => unknown>)[m]!(k, k, k);
  for (const m of methods(c, OPEN_ANYWAY)) await probe(m, call(c, m));
  for (const m of methods(c.groups, PIPELINE)) await probe(`groups.${m}`, call(c.groups, m));
  return out;
}

describe('a closed or wiped client', () => {
  it('closed: every method fails with MW_SDK_CLOSED; once() rejects at once instead of waiting out its timeout', async () => {
    const c = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await openSqliteStorage({ path: join(work, 'closed.sqlite') }), ...fast });
    const checked = methods(c, OPEN_ANYWAY).length + methods(c.groups, PIPELINE).length;
    expect(checked).toBeGreaterThan(60);
    await c.close();
    expect(await notClosed(c)).toEqual([]);
    const started = Date.now();
    await expect(c.once('message', () => true, 30_000)).rejects.toMatchObject({ code: 'MW_SDK_CLOSED' });
    expect(Date.now() - started).toBeLessThan(1_000);
    const it = c.iterate('message');
    expect(await it.next()).toEqual({ value: undefined, done: true });
    await c.close(); // again: nothing to do
  });

  it('wiped after its account revoked it: history() and every other method fail with MW_SDK_CLOSED', async () => {
    const a = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await openSqliteStorage({ path: join(work, 'a.sqlite') }), ...fast });
    // b: a second (not manager) device of a's account.
    const ctx = createContext();
    const device = DeviceKeyPair.generate(ctx);
    const { deviceIndex } = await a.addDevice(device.signingPublicKey);
    const bStore = await openSqliteStorage({ path: join(work, 'b.sqlite') });
    await bStore.setLocalIdentity({ certificate: issueDeviceCertificate(ctx, a.account!, device, { deviceIndex }), device });
    const b = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: bStore, ...fast });
    // Connected first: the node tells a connected device that it was deleted.
    if (b.connectionState !== 'online') await b.once('connection', (s) => s === 'online', 15_000);
    const wiped = b.once('wiped', undefined, 15_000);
    await a.revokeDevice(deviceIndex);
    await wiped;
    await expect(b.history(a.accountKey)).rejects.toMatchObject({ code: 'MW_SDK_CLOSED' });
    expect(await notClosed(b)).toEqual([]);
    await a.close();
  });
});

/**
 * Contact decisions sync across the account's own devices (docs/spec/content.md §2): accepting,
 * declining, blocking and unblocking on device A is applied on device B — not only at link time.
 * A ContactSync from another account is ignored. Real node, real sockets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toHex } from '@meshwhisper/crypto';
import type { E2eNode } from '../client/test-node.js';
import { addAccountDevice, startE2eNode } from '../client/test-node.js';
import { MeshWhisper, memoryStorage } from '../../src/index.js';

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

async function client(): Promise<MeshWhisper> {
  const c = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...fast });
  open.push(c);
  return c;
}

describe('contact decisions across the account’s devices', () => {
  it('accept, block, unblock and decline on A are applied on B', async () => {
    const a = await client();
    const storage = await memoryStorage();
    await addAccountDevice(a, storage);
    const b = await MeshWhisper.create({ node: t.url, namespace: 'test', storage, ...fast });
    open.push(b);
    const stranger = await client();
    const other = await client();

    // A stranger writes to the account: a request on both devices.
    const requests = Promise.all([a.once('contactRequest'), b.once('contactRequest')]);
    await stranger.sendText({ accountKey: a.accountKey }, 'hello?');
    await requests;
    expect(await b.contactState(stranger.accountKey)).toBe('request');

    const accepted = b.once('contactChanged', (c) => c.action === 'accept');
    await a.acceptContact(stranger.accountKey);
    expect(toHex((await accepted).accountKey)).toBe(toHex(stranger.accountKey));
    expect(await b.contactState(stranger.accountKey)).toBe('accepted');
    expect((await b.history(stranger.accountKey)).every((m) => !m.request)).toBe(true);

    const blocked = b.once('contactChanged', (c) => c.action === 'block');
    await a.block(stranger.accountKey);
    await blocked;
    expect(await b.isBlocked(stranger.accountKey)).toBe(true);
    await expect(b.sendText({ accountKey: stranger.accountKey }, 'from b')).rejects.toMatchObject({ code: 'MW_SDK_BLOCKED' });

    const unblocked = b.once('contactChanged', (c) => c.action === 'unblock');
    await a.unblock(stranger.accountKey);
    await unblocked;
    expect(await b.isBlocked(stranger.accountKey)).toBe(false);

    // Declined with a block: the conversation goes on B too, and the account is blocked there.
    const declined = Promise.all([b.once('contactChanged', (c) => c.action === 'decline'), b.once('contactChanged', (c) => c.action === 'block')]);
    await a.declineContact(stranger.accountKey, { block: true });
    await declined;
    expect(await b.contactState(stranger.accountKey)).toBeUndefined();
    expect(await b.history(stranger.accountKey)).toEqual([]);
    expect(await b.isBlocked(stranger.accountKey)).toBe(true);

    // Another account's decisions never reach A's devices: `other` blocking A changes nothing on B.
    let changes = 0;
    b.on('contactChanged', () => changes++);
    await other.block(a.accountKey);
    const onB = b.once('message', (m) => m.text === 'still here');
    await other.unblock(a.accountKey);
    await other.sendText({ accountKey: a.accountKey }, 'still here');
    await onB;
    expect(changes).toBe(0);
  });
});

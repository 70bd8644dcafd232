/**
 * Groups survive the loss of every device (docs/spec/groups.md §G6.5, docs/api.md §Recovery), over
 * a real node: M is in a group with A and B, backs up, loses its only device, and restores on a
 * fresh device that holds the account key. The restored device rejoins from the archived log
 * (a rejoin signed with the account key: no old device of M's is needed), gets the operations made
 * since the backup from the members, reads what A sends from then on — not what was sent while M
 * was gone — and writes to the group. The old device, once off M's signed device list, cannot do the
 * same even with a rejoin validly signed by the account key: A refuses its message.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createContext, deserializeGroupLog, deviceAddress, mailboxIdOf, sealMessage, signGroupOperation, toHex } from '@meshwhisper/crypto';
import { CONTENT_TYPE_PROTOBUF, ContentSchema, EnvelopeClass, SendRequestSchema, create, encodeBody, toBinary } from '@meshwhisper/protocol';
import type { E2eNode } from '../client/test-node.js';
import { startE2eNode } from '../client/test-node.js';
import type { ProtocolStorage } from '../../src/index.js';
import { MeshWhisper, memoryStorage } from '../../src/index.js';
import { CONTENT_VERSION } from '../../src/constants.js';

let t: E2eNode;
const open: MeshWhisper[] = [];
const storageOf = new Map<MeshWhisper, ProtocolStorage>();
const fast = { receiptDelay: { minDelayMs: 0, maxDelayMs: 0 } };

beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  for (const c of open) await c.close().catch(() => undefined);
  await t?.close();
});

async function client(): Promise<MeshWhisper> {
  const storage = await memoryStorage();
  const c = await MeshWhisper.create({ node: t.url, namespace: 'test', storage, ...fast });
  open.push(c);
  storageOf.set(c, storage);
  return c;
}

const gid = (groupId: Uint8Array) => ({ kind: 'group' as const, groupId });

/** Waits until `pred` holds for `c`'s view of the group (re-checked on every group change). */
async function until(c: MeshWhisper, groupId: Uint8Array, pred: (info: Awaited<ReturnType<MeshWhisper['groups']['info']>>) => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (pred(await c.groups.info(groupId))) return;
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await c.once('groupChange', (e) => toHex(e.groupId) === toHex(groupId), Math.max(100, end - Date.now())).catch(() => undefined);
  }
}

describe('groups after a restore from the archive', () => {
  it('a member who lost every device rejoins on the restored device: reads from then on only, writes, and the old device is out', async () => {
    const a = await client();
    const b = await client();
    const m = await client();
    const joined = Promise.all([b, m].map((c) => c.once('groupChange', (e) => e.change.type === 'joined', 30_000)));
    const g = await a.groups.create('hikers', [b.accountKey, m.accountKey]);
    await joined;
    const first = m.once('message', (e) => e.text === 'before the loss', 30_000);
    await a.sendText(gid(g.groupId), 'before the loss');
    await first;
    const oldDevice = toHex(g.members.find((x) => toHex(x.accountKey) === toHex(m.accountKey))!.devices[0]!);

    // M backs up (the group is in the archive), then loses its only device.
    const { recoveryKey } = await m.enableArchive();
    // Whoever ends up with the old device after the restore (it holds the account key: it made the
    // account) prepares a rejoin naming it, validly signed by the account key, and a pairwise
    // message carrying it to A — posted once the device is off M's signed list.
    const ctx = createContext();
    const mStorage = storageOf.get(m)!;
    const oldId = await mStorage.getLocalIdentity();
    const aCert = (await storageOf.get(a)!.getLocalIdentity()).certificate;
    const oldLog = deserializeGroupLog(ctx, (await mStorage.getItem('mw.group', toHex(g.groupId)))!);
    const forged = signGroupOperation(ctx, { signer: oldId.device, account: m.accountKey, accountSigner: m.account!, groupId: g.groupId, parents: oldLog.state.heads, body: { type: 'rejoin', devices: [oldId.certificate.deviceSigningKey] } });
    const update = toBinary(ContentSchema, create(ContentSchema, { version: CONTENT_VERSION, messageId: ctx.random(16), sentAt: BigInt(Date.now()), body: { case: 'groupUpdate', value: { groupId: g.groupId, operations: [forged] } } }));
    const fromOldDevice = await sealMessage(ctx, mStorage, deviceAddress(aCert), update);
    await m.close();
    // While M is gone: a message M's old device alone could read, and a change made after the backup.
    await a.sendText(gid(g.groupId), 'while M was gone');
    const renamedAtB = b.once('groupChange', (e) => e.change.type === 'renamed', 30_000);
    await a.groups.rename(g.groupId, 'hikers 2');
    await renamedAtB;

    const storage = await memoryStorage();
    const r = await MeshWhisper.restoreFromArchive({ node: t.url, namespace: 'test', storage, ...fast, recoveryKey: recoveryKey!, revokeOtherDevices: true });
    const rm = r.client;
    open.push(rm);
    const restoredDevice = toHex((await storage.getLocalIdentity()).certificate.deviceSigningKey);
    const mDevicesAre = (info: Awaited<ReturnType<MeshWhisper['groups']['info']>>) => {
      const me = info?.members.find((x) => toHex(x.accountKey) === toHex(m.accountKey));
      return me !== undefined && me.devices.length === 1 && toHex(me.devices[0]!) === restoredDevice;
    };
    // A and B list the restored device (and only it) for M; the restored device caught up with the
    // rename made after its backup (A and B sent it their log) and holds the same state.
    await until(a, g.groupId, mDevicesAre, 'A lists the restored device for M');
    await until(b, g.groupId, mDevicesAre, 'B lists the restored device for M');
    const atA = (await a.groups.info(g.groupId))!;
    await until(rm, g.groupId, (i) => i?.digest === atA.digest, 'the restored device converges with A');
    const mine = (await rm.groups.info(g.groupId))!;
    expect(mine.isMember).toBe(true);
    expect(mine.name).toBe('hikers 2');
    expect(mine.members.find((x) => toHex(x.accountKey) === toHex(m.accountKey))!.devices.map(toHex)).not.toContain(oldDevice);

    // A's next message reaches the restored device; what was sent while M was gone does not.
    const next = rm.once('message', (e) => e.text === 'welcome back', 30_000);
    await a.sendText(gid(g.groupId), 'welcome back');
    await next;
    // The restored device writes to the group.
    const back = Promise.all([a, b].map((c) => c.once('message', (e) => e.text === 'hello from the restored device', 30_000)));
    await rm.sendText(gid(g.groupId), 'hello from the restored device');
    const [fromR] = await back;
    expect(toHex(fromR!.author)).toBe(toHex(m.accountKey));
    const seen = (await rm.history(gid(g.groupId))).map((e) => e.text);
    expect(seen).toContain('welcome back');
    expect(seen).not.toContain('while M was gone');
    expect(seen).not.toContain('before the loss');

    // The old device, now off M's signed device list, tries the same: A refuses the message
    // (MW_CRYPTO_DEVICE_NOT_LISTED) and the group keeps the restored device for M.
    const refused = a.once('undecryptable', (u) => u.code === 'MW_CRYPTO_DEVICE_NOT_LISTED', 30_000);
    const res = await fetch(new URL('/v1/send', t.url), { method: 'POST', headers: { 'content-type': CONTENT_TYPE_PROTOBUF }, body: encodeBody(SendRequestSchema, { mailboxId: mailboxIdOf(ctx, aCert.deviceSigningKey), payload: fromOldDevice, class: EnvelopeClass.DURABLE }) as BodyInit });
    expect(res.status).toBe(200);
    await refused;
    expect(mDevicesAre(await a.groups.info(g.groupId))).toBe(true);
    // And the group goes on with the restored device.
    const last = rm.once('message', (e) => e.text === 'still here', 30_000);
    await a.sendText(gid(g.groupId), 'still here');
    await last;
    expect(mDevicesAre(await a.groups.info(g.groupId))).toBe(true);
  }, 180_000);
});

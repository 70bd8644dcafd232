/**
 * The encrypted account archive over a real node (docs/api.md §Recovery): restore on a fresh
 * device from the recovery key and from a passphrase, wrong keys refused with typed codes, a
 * stranger can neither read nor replace the archive, two devices updating it at once lose nothing,
 * and a restored device joins the account as a manager with no duplicates afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArchiveRootSecret, RecoveryKey, createContext, decodeDeviceList, toHex } from '@meshwhisper/crypto';
import { ARCHIVE_VERSION_HEADER, AUTH_HEADER, CONTENT_TYPE_OCTETS, ChallengeSchema, DeviceListRecordSchema, encodeArchiveAuthHeader, fromBinary, requestDigest, signArchiveAuth } from '@meshwhisper/protocol';
import type { E2eNode } from '../client/test-node.js';
import { startE2eNode } from '../client/test-node.js';
import { MeshWhisper, SdkError, checkArchivePassphrase, memoryStorage } from '../../src/index.js';

let t: E2eNode;
const open: MeshWhisper[] = [];
const fast = { receiptDelay: { minDelayMs: 0, maxDelayMs: 0 } };
const ctx = createContext();

beforeAll(async () => {
  t = await startE2eNode();
});
afterAll(async () => {
  for (const c of open) await c.close().catch(() => undefined);
  await t?.close();
});

async function client(extra: Partial<Parameters<typeof MeshWhisper.create>[0]> = {}): Promise<MeshWhisper> {
  const c = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...fast, ...extra });
  open.push(c);
  return c;
}

async function restore(options: Omit<Parameters<typeof MeshWhisper.restoreFromArchive>[0], 'node' | 'namespace' | 'storage'> & { storage?: Parameters<typeof MeshWhisper.create>[0]['storage'] }) {
  const r = await MeshWhisper.restoreFromArchive({ node: t.url, namespace: 'test', storage: options.storage ?? (await memoryStorage()), ...fast, ...options });
  open.push(r.client);
  return r;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return e instanceof SdkError ? e.code : `not an SdkError: ${String(e)}`;
  }
  return 'ok';
}

async function deviceList(accountKey: Uint8Array) {
  const res = await fetch(`${t.url}/v1/accounts/${toHex(accountKey)}/device-list`);
  return decodeDeviceList(fromBinary(DeviceListRecordSchema, new Uint8Array(await res.arrayBuffer())).deviceList);
}

/** A conversation with Carol, a blocked stranger and a timer: state worth restoring. */
async function accountWithState() {
  const a = await client();
  const carol = await client();
  const stranger = await client();
  const carolGot = carol.once('message', (m) => m.text === 'hi carol');
  await a.sendText({ accountKey: carol.accountKey }, 'hi carol');
  await carolGot;
  const aGot = a.once('message', (m) => m.text === 'hi a');
  await carol.sendText({ accountKey: a.accountKey }, 'hi a');
  await aGot;
  await a.block(stranger.accountKey);
  await a.setDisappearingTimer({ accountKey: carol.accountKey }, 0);
  return { a, carol, stranger };
}

describe('account archive', () => {
  it('restores on a fresh device with the recovery key: contacts, blocks, history; the device joins the list as a manager; further use makes no duplicates', async () => {
    const { a, carol, stranger } = await accountWithState();
    expect(await a.archiveStatus()).toMatchObject({ enabled: false });
    const settings = new TextEncoder().encode('{"theme":"dark"}');
    const enabled = await a.enableArchive({ history: true, appSettings: settings });
    expect(enabled.recoveryKey).toMatch(/^([0-9A-HJKMNP-TV-Z]{4}-){13}[0-9A-HJKMNP-TV-Z]{4}$/);
    expect(enabled.version).toBe(1);
    expect(await a.archiveStatus()).toMatchObject({ enabled: true, protection: 'recovery-key', version: 1, historyPerConversation: 1000 });
    const before = await deviceList(a.accountKey);

    // Typed the way people type: lower case, spaces instead of dashes.
    const typed = enabled.recoveryKey!.toLowerCase().replaceAll('-', ' ');
    const r = await restore({ recoveryKey: typed });
    const b = r.client;
    expect(toHex(r.accountKey)).toBe(toHex(a.accountKey));
    expect(toHex(b.accountKey)).toBe(toHex(a.accountKey));
    expect(b.account).toBeDefined(); // the archive carries the account key: a manager
    expect(new TextDecoder().decode(r.appSettings)).toBe('{"theme":"dark"}');
    expect(r.historyEntries).toBe(2);
    expect((await b.history(carol.accountKey)).map((m) => [m.text, m.outgoing])).toEqual([
      ['hi carol', true],
      ['hi a', false],
    ]);
    expect(await b.contactState(carol.accountKey)).toBe('accepted');
    expect(await b.isBlocked(stranger.accountKey)).toBe(true);

    // The device list: one epoch up, signed with the archived account key, the old device kept.
    const after = await deviceList(a.accountKey);
    expect(after.epoch).toBe(before.epoch + 1);
    expect(after.devices.map((d) => d.deviceIndex)).toEqual([...before.devices.map((d) => d.deviceIndex), r.deviceIndex]);

    // Carol's next message reaches both devices; the restored one can write too.
    const onA = a.once('message', (m) => m.text === 'after restore');
    const onB = b.once('message', (m) => m.text === 'after restore');
    await carol.sendText({ accountKey: a.accountKey }, 'after restore');
    await Promise.all([onA, onB]);
    const carolGot = carol.once('message', (m) => m.text === 'from the restored device');
    await b.sendText({ accountKey: carol.accountKey }, 'from the restored device');
    await carolGot;

    // Further use: a backup from the restored device, then another restore — each message once.
    const next = await b.backup();
    expect(next.version).toBe(2);
    const r2 = await restore({ recoveryKey: enabled.recoveryKey! });
    const texts = (await r2.client.history(carol.accountKey)).map((m) => m.text);
    expect(texts.sort()).toEqual(['after restore', 'from the restored device', 'hi a', 'hi carol'].sort());
    expect(r2.entries).toBe(next.entries);
    // Backing up again with nothing new changes nothing but the version.
    expect((await r2.client.backup()).entries).toBe(next.entries);
  }, 120_000);

  it('a wrong or mistyped recovery key fails with a typed code and changes nothing', async () => {
    const a = await client();
    const { recoveryKey } = await a.enableArchive();
    const listBefore = await deviceList(a.accountKey);
    const other = RecoveryKey.generate(ctx).exportDisplayString();
    const storage = await memoryStorage();
    expect(await codeOf(MeshWhisper.restoreFromArchive({ node: t.url, namespace: 'test', storage, recoveryKey: other }))).toBe('MW_SDK_ARCHIVE_WRONG_KEY');
    expect(await storage.hasLocalIdentity()).toBe(false);
    // One character changed: the checksum catches it before the node is asked.
    const typo = (recoveryKey![0] === 'A' ? 'B' : 'A') + recoveryKey!.slice(1);
    expect(await codeOf(MeshWhisper.restoreFromArchive({ node: t.url, namespace: 'test', storage, recoveryKey: typo }))).toBe('MW_SDK_RECOVERY_KEY_INVALID');
    expect(await codeOf(MeshWhisper.restoreFromArchive({ node: t.url, namespace: 'test', storage, recoveryKey: 'not a key' }))).toBe('MW_SDK_RECOVERY_KEY_INVALID');
    expect((await deviceList(a.accountKey)).epoch).toBe(listBefore.epoch);
  }, 60_000);

  it('restores with a passphrase (by account key and by username); a weak one is refused, a wrong one fails', async () => {
    const a = await client();
    const carol = await client();
    await a.claimUsername('pp-owner');
    const got = carol.once('message', (m) => m.text === 'remember me');
    await a.sendText({ accountKey: carol.accountKey }, 'remember me');
    await got;
    expect(checkArchivePassphrase('short')).toMatchObject({ ok: false });
    expect(checkArchivePassphrase('aaaaaaaaaaaaaaaaaaaa')).toMatchObject({ ok: false });
    expect(checkArchivePassphrase('correct horse battery staple')).toEqual({ ok: true });
    expect(await codeOf(a.enableArchive({ passphrase: 'hunter2' }))).toBe('MW_SDK_WEAK_PASSPHRASE');
    expect(await a.archiveStatus()).toMatchObject({ enabled: false });
    const enabled = await a.enableArchive({ passphrase: 'correct horse battery staple', history: true });
    expect(enabled.recoveryKey).toBeUndefined();
    expect(await a.archiveStatus()).toMatchObject({ protection: 'passphrase' });

    expect(await codeOf(restore({ passphrase: 'correct horse battery stapler', accountKey: a.accountKey }))).toBe('MW_SDK_ARCHIVE_WRONG_KEY');
    expect(await codeOf(restore({ passphrase: 'correct horse battery staple' }))).toBe('MW_SDK_INVALID_ARGUMENT'); // which account?
    expect(await codeOf(restore({ passphrase: 'correct horse battery staple', username: 'nobody-has-this' }))).toBe('MW_SDK_ARCHIVE_NOT_FOUND');
    // The passphrase of an account protected by a recovery key is refused as such.
    const rkAccount = await client();
    await rkAccount.enableArchive();
    expect(await codeOf(restore({ passphrase: 'correct horse battery staple', accountKey: rkAccount.accountKey }))).toBe('MW_SDK_ARCHIVE_WRONG_KEY');

    let progress = 0;
    const r = await restore({ passphrase: 'correct horse battery staple', username: 'pp-owner', onProgress: (f) => (progress = f) });
    expect(progress).toBe(1);
    expect(toHex(r.accountKey)).toBe(toHex(a.accountKey));
    expect((await r.client.history(carol.accountKey)).map((m) => m.text)).toEqual(['remember me']);
    expect(await r.client.archiveStatus()).toMatchObject({ enabled: true, protection: 'passphrase' });
  }, 120_000);

  it('a stranger can neither fetch nor overwrite the archive', async () => {
    const a = await client();
    const { version } = await a.enableArchive();
    const challenge = async () => fromBinary(ChallengeSchema, new Uint8Array(await (await fetch(`${t.url}/v1/auth/challenge`)).arrayBuffer())).challenge;
    const stranger = ArchiveRootSecret.fromRecoveryKey(RecoveryKey.generate(ctx)).accessKeyPair(ctx);
    const auth = async (method: string) => encodeArchiveAuthHeader(signArchiveAuth(ctx, stranger, await challenge(), requestDigest(ctx, method, '/v1/archive')));
    const get = await fetch(`${t.url}/v1/archive`, { headers: { [AUTH_HEADER]: await auth('GET') } });
    expect(get.status).toBe(403);
    const put = await fetch(`${t.url}/v1/archive`, { method: 'PUT', headers: { [AUTH_HEADER]: await auth('PUT'), 'content-type': CONTENT_TYPE_OCTETS, [ARCHIVE_VERSION_HEADER]: String(version) }, body: new Uint8Array(100) });
    expect(put.status).toBe(403);
    // Another account's device cannot take the archive key over (it would then own the archive).
    const thief = await client();
    expect(await codeOf(thief.enableArchive({ recoveryKey: RecoveryKey.generate(ctx).exportDisplayString() }))).toBe('ok'); // its own archive: fine
    // The owner's archive is untouched: its next backup continues from its version.
    expect((await a.backup()).version).toBe(version + 1);
  }, 60_000);

  it('two devices updating the archive at once lose nothing (compare-and-swap: the second merges into the first)', async () => {
    // Both devices read the same version before either writes (a barrier in their fetch), so one
    // upload is refused with 409 and merges into the other's version.
    let reads = 0;
    let release!: () => void;
    const bothRead = new Promise<void>((r) => (release = r));
    let racing = false;
    let conflicts = 0;
    const raceFetch: typeof fetch = async (input, init) => {
      const url = String(input instanceof Request ? input.url : input);
      const method = init?.method ?? 'GET';
      if (racing && url.endsWith('/v1/archive') && method === 'GET' && ++reads === 2) release();
      if (racing && url.endsWith('/v1/archive') && method === 'PUT') await bothRead;
      const res = await fetch(input, init);
      if (racing && url.endsWith('/v1/archive') && method === 'PUT' && res.status === 409) conflicts++;
      return res;
    };
    const a = await client({ fetch: raceFetch });
    const { recoveryKey } = await a.enableArchive();
    const r = await restore({ recoveryKey: recoveryKey!, fetch: raceFetch });
    const b = r.client;
    const x1 = await client();
    const x2 = await client();
    await a.block(x1.accountKey);
    await b.block(x2.accountKey);
    racing = true;
    const [va, vb] = await Promise.all([a.backup(), b.backup()]);
    racing = false;
    expect(conflicts).toBe(1);
    expect([va.version, vb.version].sort()).toEqual([2, 3]);
    const c = (await restore({ recoveryKey: recoveryKey! })).client;
    expect(await c.isBlocked(x1.accountKey)).toBe(true);
    expect(await c.isBlocked(x2.accountKey)).toBe(true);

    // A removal on one device removes only that entry; the other device's additions stay.
    await a.unblock(x1.accountKey);
    await a.backup();
    await b.backup(); // b never held x1: it removes nothing of it
    const d = (await restore({ recoveryKey: recoveryKey! })).client;
    expect(await d.isBlocked(x1.accountKey)).toBe(false);
    expect(await d.isBlocked(x2.accountKey)).toBe(true);
  }, 120_000);

  it('a new recovery key replaces the old one: the old key stops working, a device that still holds it is told', async () => {
    const a = await client();
    const { recoveryKey: oldKey } = await a.enableArchive();
    const b = (await restore({ recoveryKey: oldKey! })).client;
    const { recoveryKey: newKey, version } = await a.enableArchive(); // a new key: the archive is sealed anew under it
    expect(newKey).not.toBe(oldKey);
    expect(version).toBe(2);
    expect(await codeOf(b.backup())).toBe('MW_SDK_ARCHIVE_WRONG_KEY');
    expect(await codeOf(restore({ recoveryKey: oldKey! }))).toBe('MW_SDK_ARCHIVE_WRONG_KEY');
    await b.enableArchive({ recoveryKey: newKey! }); // joins the new key
    expect((await b.backup()).version).toBe(4);
    expect(toHex((await restore({ recoveryKey: newKey! })).accountKey)).toBe(toHex(a.accountKey));
  }, 60_000);

  it('a stolen phone: restoring with revokeOtherDevices takes every other device off the account (it is told); a full account is refused without it', async () => {
    const a = await client();
    const carol = await client();
    const hi = carol.once('message', (m) => m.text === 'before the theft');
    await a.sendText({ accountKey: carol.accountKey }, 'before the theft');
    await hi;
    const { recoveryKey } = await a.enableArchive();
    expect(await codeOf(restore({ recoveryKey: recoveryKey!, maxDevices: 1 }))).toBe('MW_SDK_DEVICE_LIMIT');
    const stopped = a.once('stopped', (e) => e.reason === 'device-deleted', 15_000);
    const r = await restore({ recoveryKey: recoveryKey!, maxDevices: 1, revokeOtherDevices: true });
    await stopped;
    const list = await deviceList(a.accountKey);
    expect(list.devices.map((d) => d.deviceIndex)).toEqual([r.deviceIndex]);
    // The account goes on, on the restored device only.
    const got = r.client.once('message', (m) => m.text === 'after the theft');
    await carol.sendText({ accountKey: a.accountKey }, 'after the theft');
    await got;
  }, 60_000);

  it('backup before enableArchive is a typed error; a device without the account key cannot set it up', async () => {
    const a = await client();
    expect(await codeOf(a.backup())).toBe('MW_SDK_ARCHIVE_NOT_ENABLED');
    expect(await codeOf(MeshWhisper.restoreFromArchive({ node: t.url, namespace: 'test', storage: await memoryStorage(), recoveryKey: RecoveryKey.generate(ctx).exportDisplayString(), accountKey: a.accountKey }))).toBe('MW_SDK_ARCHIVE_WRONG_KEY');
  }, 60_000);
});

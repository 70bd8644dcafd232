/**
 * Restart mid-conversation with a real process exit (SIGKILL, no chance to clean up), over the
 * same SQLite file: nothing lost, nothing duplicated — on the receiving side (killed while mail is
 * arriving: some processed but not yet acknowledged to the node) and on the sending side (killed
 * while sending: some sealed and queued but not yet accepted by the node).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromHex, toHex } from '@meshwhisper/crypto';
import { MeshWhisper, memoryStorage } from '../../src/index.js';
import type { IncomingMessage } from '../../src/index.js';
import type { E2eNode } from './test-node.js';
import { addAccountDevice, startE2eNode } from './test-node.js';
import type { LineChild } from '../line-child.js';
import { spawnLineChild } from '../line-child.js';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mw-sdk-crash-'));
const bundle = join(dir, 'crash-child.mjs');
let t: E2eNode;

beforeAll(async () => {
  t = await startE2eNode();
  await build({
    entryPoints: [fileURLToPath(new URL('./crash-child.ts', import.meta.url))],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['better-sqlite3', 'ws'],
    alias: {
      '@meshwhisper/crypto': join(repo, 'packages/crypto/src/index.ts'),
      '@meshwhisper/protocol': join(repo, 'packages/protocol/src/index.ts'),
    },
    logLevel: 'error',
    // CommonJS dependencies (qrcode) require Node built-ins: give the ESM bundle a require().
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
});
afterAll(async () => {
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

type Child = LineChild;

function run(args: string[]): Child {
  return spawnLineChild(bundle, args, { env: { ...process.env, MW_REPO: repo }, timeoutMs: 20_000, context: () => `node log tail: ${t.logs.slice(-8).join('')}` });
}

const kill = async (c: Child) => {
  c.proc.kill('SIGKILL');
  await c.exited;
};

describe('crash: a client process killed mid-conversation, restarted over the same SQLite file', () => {
  it('receiving side: every message is shown exactly once across the crash, and the history holds each once', async () => {
    const db = join(dir, 'receiver.db');
    const alice = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    // The first run kills itself (SIGKILL) the moment it has shown m30: mid-batch, unacknowledged.
    let bob = run(['recv', t.url, db, 'm30']);
    const mailbox = fromHex((await bob.until((l) => typeof l['ready'] === 'string'))['ready'] as string);
    const N = 120;
    const shown: string[] = [];
    for (let i = 0; i < N; i++) await alice.sendText(mailbox, `m${i}`);
    await bob.exited;
    shown.push(...bob.lines.filter((l) => 'got' in l).map((l) => l['got'] as string));
    expect(shown.at(-1)).toBe('m30');
    bob = run(['recv', t.url, db]);
    await bob.until((l) => l['got'] === `m${N - 1}`, 45_000);
    await new Promise((r) => setTimeout(r, 300)); // anything redelivered would show by now
    await kill(bob);
    shown.push(...bob.lines.filter((l) => 'got' in l).map((l) => l['got'] as string));
    expect(shown.length).toBe(N);
    expect(new Set(shown).size).toBe(N);
    // The history, read by a fresh client over the same file: each message once, in order.
    const { openSqliteStorage } = await import('../../src/index.js');
    const reader = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await openSqliteStorage({ path: db }), connect: false });
    expect((await reader.history(alice.accountKey)).map((e) => e.text)).toEqual(Array.from({ length: N }, (_, i) => `m${i}`));
    await Promise.all([reader.close(), alice.close()]);
  }, 90_000);

  it('sending side: killed while sending, the restart sends what was queued (same bytes) and goes on; each arrives exactly once', async () => {
    const db = join(dir, 'sender.db');
    const bob = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    const got: string[] = [];
    bob.on('message', (m) => got.push(m.text!));
    const undecryptable: string[] = [];
    bob.on('undecryptable', (u) => undecryptable.push(u.code));
    const N = 100;
    let alice = run(['send', t.url, db, toHex(bob.mailboxId), String(N)]);
    await alice.until((l) => l['sent'] === 25);
    await kill(alice);
    alice = run(['send', t.url, db, toHex(bob.mailboxId), String(N)]);
    await alice.until((l) => l['done'] === true, 60_000);
    await alice.exited;
    for (let i = 0; i < 100 && got.length < N; i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 300));
    await bob.idle();
    expect(undecryptable).toEqual([]);
    expect(got.length).toBe(N);
    expect([...got].sort()).toEqual(Array.from({ length: N }, (_, i) => `m${i}`).sort());
    await bob.close();
  }, 90_000);
});

describe('crash: multi-device (a process killed mid-fan-out, mid-link), restarted over the same SQLite file', () => {
  it('mid-fan-out: every device of a 3-device account shows each message exactly once', async () => {
    const db = join(dir, 'fanout.db');
    const bob = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    const bobs = [bob];
    for (let i = 0; i < 2; i++) {
      const storage = await memoryStorage();
      await addAccountDevice(bob, storage);
      bobs.push(await MeshWhisper.create({ node: t.url, namespace: 'test', storage }));
    }
    const got = bobs.map(() => [] as string[]);
    bobs.forEach((b, i) => b.on('message', (m: IncomingMessage) => got[i]!.push(m.text!)));
    const N = 40;
    let alice = run(['fanout', t.url, db, toHex(bob.accountKey), String(N)]);
    // Killed while the next messages are being sealed (one commit for all copies) and posted (one request).
    await alice.until((l) => l['sent'] === 12);
    await kill(alice);
    alice = run(['fanout', t.url, db, toHex(bob.accountKey), String(N)]);
    await alice.until((l) => l['done'] === true, 60_000);
    await alice.exited;
    const all = Array.from({ length: N }, (_, i) => `m${i}`).sort();
    for (let i = 0; i < 200 && got.some((g) => g.length < N); i++) await new Promise((r) => setTimeout(r, 100));
    await Promise.all(bobs.map((b) => b.idle()));
    for (const g of got) expect([...g].sort()).toEqual(all); // none lost, none twice, on every device
    await Promise.all(bobs.map((b) => b.close()));
  }, 120_000);

  it('mid-link: the scanning device killed during the link; after its restart a new link works, history and messages each once', async () => {
    const db = join(dir, 'scanner.db');
    const carol = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    const carolGot = carol.once('message', (m) => m.text === 'hi carol', 20_000);
    let a = run(['scan', t.url, db]);
    const account = fromHex((await a.until((l) => typeof l['ready'] === 'string'))['ready'] as string);
    a.tell(toHex(carol.accountKey));
    await a.until((l) => l['talked'] === true);
    await carolGot;

    // A new device shows an offer; A scans it and is killed the moment it introduced itself. The
    // new device's answer is held back until A is dead (its fetch waits), so A dies mid-link.
    let aDead: () => void = () => undefined;
    const dead = new Promise<void>((r) => (aDead = r));
    let posts = 0;
    const holdingFetch: typeof fetch = async (input, init) => {
      if (init?.method === 'POST' && /\/v1\/link\/[^/]+\/messages$/.test(String(input)) && posts++ === 0) await dead;
      return fetch(input, init);
    };
    const half = await memoryStorage();
    const offer1 = await MeshWhisper.createLinkOffer({ node: t.url, namespace: 'test', storage: half, fetch: holdingFetch, onIntroduced: () => void kill(a).then(aDead) });
    a.tell(toHex(offer1.payload));
    await dead;
    await offer1.cancel();
    await expect(offer1.completed).rejects.toMatchObject({ code: 'MW_SDK_CLOSED' });
    expect(await half.hasLocalIdentity()).toBe(false); // nothing of a half link was kept

    // Restarted over the same file: it links a fresh device; the history comes over once.
    a = run(['scan', t.url, db]);
    expect((await a.until((l) => typeof l['ready'] === 'string'))['ready']).toBe(toHex(account));
    a.tell(toHex(carol.accountKey)); // already talked: nothing sent again
    await a.until((l) => l['talked'] === true);
    const offer2 = await MeshWhisper.createLinkOffer({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    a.tell(toHex(offer2.payload));
    const linked = await offer2.completed;
    await a.until((l) => typeof l['linked'] === 'number');
    const b = linked.client;
    expect(linked.deviceIndex).toBe(1); // the killed link put nothing on the account's list
    expect((await b.deviceList())?.devices.map((d) => d.deviceIndex)).toEqual([0, 1]);
    expect(linked.historyEntries).toBe(1);
    expect((await b.history(carol.accountKey)).map((m) => m.text)).toEqual(['hi carol']);
    const bGot: string[] = [];
    b.on('message', (m) => bGot.push(m.text!));
    const both = b.once('message', (m) => m.text === 'to both', 20_000);
    await carol.sendText({ accountKey: account }, 'to both');
    await both;
    await a.until((l) => l['got'] === 'to both');
    const again = b.once('message', (m) => m.text === 'and again', 20_000);
    await carol.sendText({ accountKey: account }, 'and again');
    await Promise.all([again, a.until((l) => l['got'] === 'and again')]);
    expect(bGot.filter((x) => x === 'to both')).toHaveLength(1);
    expect(a.lines.filter((l) => l['got'] === 'to both')).toHaveLength(1);
    // Carol got A's first message exactly once across the restart.
    expect((await carol.history(account)).filter((m) => m.text === 'hi carol')).toHaveLength(1);
    await kill(a);
    await Promise.all([b.close(), carol.close()]);
  }, 120_000);

  it('mid-link, after the list named the new device: the restart takes the never-finished device off the list again', async () => {
    const db = join(dir, 'scanner2.db');
    const carol = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    let a = run(['scan', t.url, db]);
    const account = fromHex((await a.until((l) => typeof l['ready'] === 'string'))['ready'] as string);
    a.tell(toHex(carol.accountKey));
    await a.until((l) => l['talked'] === true);
    const store = t.node.services.store;
    // The new device's first poll answered after A published the list that names it (the grant is
    // on its way): A is killed, and the new device never gets that answer (its network "drops").
    const dropping: typeof fetch = async (input, init) => {
      const r = await fetch(input, init);
      if ((init?.method ?? 'GET') === 'GET' && /\/v1\/link\/[^/]+\/messages/.test(String(input)) && (await store.deviceList(account))!.epoch >= 2) {
        await kill(a);
        throw new TypeError('network down');
      }
      return r;
    };
    const half = await memoryStorage();
    const offer1 = await MeshWhisper.createLinkOffer({ node: t.url, namespace: 'test', storage: half, fetch: dropping });
    a.tell(toHex(offer1.payload));
    await expect(offer1.completed).rejects.toMatchObject({ name: 'SdkError' });
    expect(await half.hasLocalIdentity()).toBe(false);
    expect((await store.deviceList(account))!.epoch).toBe(2); // the half-linked device is on the list

    // Restarted: it finds the interrupted link, sees the device never registered, drops it.
    a = run(['scan', t.url, db]);
    await a.until((l) => typeof l['ready'] === 'string');
    expect((await store.deviceList(account))!.epoch).toBe(3);
    a.tell(toHex(carol.accountKey));
    await a.until((l) => l['talked'] === true);
    const offer2 = await MeshWhisper.createLinkOffer({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    a.tell(toHex(offer2.payload));
    const linked = await offer2.completed;
    await a.until((l) => typeof l['linked'] === 'number');
    expect(linked.deviceIndex).toBe(2); // indices are never reused
    expect((await linked.client.deviceList())?.devices.map((d) => d.deviceIndex)).toEqual([0, 2]);
    const both = linked.client.once('message', (m) => m.text === 'after the repair', 20_000);
    await carol.sendText({ accountKey: account }, 'after the repair');
    await Promise.all([both, a.until((l) => l['got'] === 'after the repair')]);
    await kill(a);
    await Promise.all([linked.client.close(), carol.close()]);
  }, 120_000);
});

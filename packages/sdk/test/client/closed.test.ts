/**
 * A closed client, and a device that wiped itself after its account revoked it: every public method
 * of MeshWhisper and of client.groups — found by reflection, so a method added later is covered —
 * fails with MW_SDK_CLOSED (thrown or rejected), whatever its arguments, never with a storage error
 * or a timeout. The exceptions, by design: close() and idle() (nothing to do), on() and iterate()
 * (an iterator that ends at once), and the getters (mailboxId, accountKey, … the identity in memory).
 * And a frame that the socket still hands over after close() (during the closing handshake) is
 * neither handled — it used to run into the closed storage and reach the app as an `undecryptable`
 * MW_SDK_INTERNAL — nor acknowledged: the node delivers it at the next start.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceKeyPair, createContext, issueDeviceCertificate } from '@meshwhisper/crypto';
import { WebSocket as NodeWebSocket } from 'ws';
import { decodeFrame } from '@meshwhisper/protocol';
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
const PIPELINE = new Set(['constructor', 'answerRejoin', 'resolveConversation', 'openMessage', 'hold', 'held', 'dropHeld', 'holdForUnknownGroup', 'pending', 'pendingHeldGroups', 'dropPending', 'replayPending', 'applySenderKey', 'applyUpdate', 'applyInvite', 'applyInviteAnswer', 'forgetAnswered', 'noteReceipt', 'membership']);

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

  it('a frame that reaches a closing client is not handled (no error for the app) nor acknowledged: it comes again at the next start', async () => {
    const isDeliver = (ev: { data: unknown }): boolean => {
      const d = decodeFrame(new Uint8Array(ev.data as ArrayBuffer));
      return d.ok && d.value.body.case === 'deliver';
    };
    /** A `ws` socket that can hold incoming deliveries back and hand them over later (as a closing handshake may). */
    class HoldingSocket {
      hold = false;
      readonly held: { data: unknown }[] = [];
      readonly #ws: NodeWebSocket;
      #listener: ((ev: { data: unknown }) => void) | null = null;
      constructor(url: string) {
        this.#ws = new NodeWebSocket(url);
        this.#ws.onmessage = (ev) => (this.hold && isDeliver(ev) ? this.held.push(ev) : this.#listener?.(ev));
        sockets.push(this);
      }
      get binaryType(): string {
        return this.#ws.binaryType;
      }
      set binaryType(t: string) {
        this.#ws.binaryType = t as NodeWebSocket['binaryType'];
      }
      get readyState(): number {
        return this.#ws.readyState;
      }
      send(data: Uint8Array): void {
        this.#ws.send(data);
      }
      close(code?: number, reason?: string): void {
        this.#ws.close(code, reason);
      }
      set onopen(f: ((ev: unknown) => void) | null) {
        this.#ws.onopen = f;
      }
      set onclose(f: ((ev: { code: number; reason: string }) => void) | null) {
        this.#ws.onclose = f;
      }
      set onerror(f: ((ev: unknown) => void) | null) {
        this.#ws.onerror = f;
      }
      set onmessage(f: ((ev: { data: unknown }) => void) | null) {
        this.#listener = f;
      }
      release(): void {
        for (const ev of this.held.splice(0)) this.#listener?.(ev);
      }
    }
    const sockets: HoldingSocket[] = [];
    const a = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await openSqliteStorage({ path: join(work, 'sender.sqlite') }), ...fast });
    const bPath = join(work, 'closing.sqlite');
    const b = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await openSqliteStorage({ path: bPath }), ...fast, WebSocket: HoldingSocket as never });
    if (b.connectionState !== 'online') await b.once('connection', (s) => s === 'online', 15_000);
    const reports: string[] = [];
    b.on('undecryptable', (u) => reports.push(`${u.code}: ${u.message}`));
    const socket = sockets.at(-1)!;
    socket.hold = true;
    await a.sendText({ accountKey: b.accountKey }, 'arrives while b closes');
    for (const until = Date.now() + 15_000; socket.held.length === 0; ) {
      if (Date.now() > until) throw new Error('the message never reached b');
      await new Promise((r) => setTimeout(r, 20));
    }
    await b.close();
    socket.release(); // the frame comes in after close() (the storage is closed)
    await new Promise((r) => setTimeout(r, 300));
    expect(reports).toEqual([]);
    // Not acknowledged: b, started again from its file, gets it.
    const again = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await openSqliteStorage({ path: bPath }), ...fast, connect: false });
    const got = again.once('message', (m) => m.text === 'arrives while b closes', 15_000);
    again.connect();
    await got;
    await Promise.all([a.close(), again.close()]);
  });
});

/**
 * No silent loss, over a real node whose mailboxes hold at most 10 envelopes: a device offline
 * while a contact sends 14 messages loses the oldest to eviction. It gets the node's gap notice
 * (`source: 'node'`, how many, from nobody knows whom) and then a gap naming the conversation
 * (`source: 'session'`): the jump in that contact's messages, as many as the node dropped.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toHex } from '@meshwhisper/crypto';
import type { E2eNode } from '../client/test-node.js';
import { startE2eNode } from '../client/test-node.js';
import type { MeshWhisperEvents } from '../../src/index.js';
import { MeshWhisper, memoryStorage, openSqliteStorage } from '../../src/index.js';

let t: E2eNode;
const dir = mkdtempSync(join(tmpdir(), 'mw-sdk-gap-'));
const fast = { receiptDelay: { minDelayMs: 0, maxDelayMs: 0 } };

beforeAll(async () => {
  t = await startE2eNode({ MAILBOX_MAX_MESSAGES: '10' });
});
afterAll(async () => {
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('gap events', () => {
  it("a device that missed evicted messages gets the node's notice and a gap naming the conversation", async () => {
    const db = join(dir, 'b.db');
    const a = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...fast });
    let b = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await openSqliteStorage({ path: db }), ...fast });
    // Online first: only then does B's message carry its delivery token, so A's replies travel in the
    // token lane (which evicts when full; tokenless mail is refused instead).
    if (b.connectionState !== 'online') await b.once('connection', (s) => s === 'online');
    const got = a.once('message', (m) => m.text === 'hello a');
    await b.sendText({ accountKey: a.accountKey }, 'hello a');
    await got;
    await b.close();
    for (let i = 0; i < 14; i++) await a.sendText({ accountKey: b.accountKey }, `m${i}`);

    b = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await openSqliteStorage({ path: db }), ...fast, connect: false });
    const gaps: MeshWhisperEvents['gap'][] = [];
    const texts: string[] = [];
    b.on('gap', (g) => gaps.push(g));
    b.on('message', (m) => texts.push(m.text!));
    const synced = b.once('synced', () => true);
    b.connect();
    await synced;
    const node = gaps.filter((g) => g.source === 'node');
    const session = gaps.filter((g) => g.source === 'session');
    expect(node).toHaveLength(1);
    expect(node[0]!.evicted).toBeGreaterThanOrEqual(4);
    expect(node[0]!.missing).toBe(node[0]!.evicted + node[0]!.expired);
    expect(session.length).toBeGreaterThanOrEqual(1);
    for (const g of session) expect(g.conversation && g.conversation.kind === 'direct' && toHex(g.conversation.peer)).toBe(toHex(a.accountKey));
    expect(session.reduce((n, g) => n + g.missing, 0)).toBe(node[0]!.missing);
    // What arrived is the newest, in order; nothing of it twice.
    expect(texts).toEqual(Array.from({ length: texts.length }, (_, i) => `m${14 - texts.length + i}`));
    await Promise.all([a.close(), b.close()]);
  }, 60_000);
});

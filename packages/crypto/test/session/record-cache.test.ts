/**
 * The session layer keeps the decoded record per store and address between messages (no decode
 * per message). The store must stay the only source of truth: a rolled-back transaction, a write
 * by someone else (a restore) or a store that hands out other bytes must never let a stale or
 * uncommitted decoded state be used.
 */
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../../src/bytes.js';
import { decryptMessage, encryptMessage, initiateSession, withinTransaction } from '../../src/session.js';
import { deviceAddress } from '../../src/stores.js';
import { decodeStateSnapshot } from '../../../../scripts/vectors/ratchet.js';
import { readRecordVector } from '../../../../scripts/vectors/session.js';
import { bundleOf, makeDevice, str, testContext, text } from '../_fixtures.js';

/** Ns of the current session as stored (read from the bytes with the spec-layout readers). */
async function storedNs(store: { loadSession(a: string): Promise<Uint8Array | undefined> }, address: string): Promise<number> {
  const rec = readRecordVector((await store.loadSession(address))!);
  return decodeStateSnapshot(fromHex(rec.current!.ratchetState)).Ns;
}

async function pair(seed: string) {
  const ctx = testContext(seed);
  const alice = await makeDevice(ctx, 'alice');
  const bob = await makeDevice(ctx, 'bob');
  await initiateSession(ctx, alice.store, await bundleOf(ctx, bob));
  const toBob = deviceAddress(bob.certificate);
  await decryptMessage(ctx, bob.store, alice.certificate, await encryptMessage(ctx, alice.store, toBob, text('hello')));
  await decryptMessage(ctx, alice.store, bob.certificate, await encryptMessage(ctx, bob.store, deviceAddress(alice.certificate), text('hi')));
  return { ctx, alice, bob, toBob };
}

describe('decoded session records kept between messages', () => {
  it('a rolled-back encryption leaves no trace: the next message reuses its number (the committed state), and decrypts', async () => {
    const { ctx, alice, bob, toBob } = await pair('cache-rollback');
    const before = await storedNs(alice.store, toBob);
    await expect(
      encryptMessage(ctx, alice.store, toBob, text('lost'), {
        persist: async () => {
          throw new Error('disk full');
        },
      }),
    ).rejects.toThrow('disk full');
    expect(await storedNs(alice.store, toBob)).toBe(before);
    const m = await encryptMessage(ctx, alice.store, toBob, text('after the rollback'));
    expect(await storedNs(alice.store, toBob)).toBe(before + 1);
    expect(str(await decryptMessage(ctx, bob.store, alice.certificate, m))).toBe('after the rollback');
  });

  it('withinTransaction: several encryptions in one transaction commit together, or roll back together', async () => {
    const { ctx, alice, bob, toBob } = await pair('cache-joined');
    const before = await storedNs(alice.store, toBob);
    await expect(
      alice.store.transaction(async (tx) => {
        const joined = withinTransaction(alice.store, tx);
        await encryptMessage(ctx, joined, toBob, text('a'));
        await encryptMessage(ctx, joined, toBob, text('b'));
        throw new Error('disk full');
      }),
    ).rejects.toThrow('disk full');
    expect(await storedNs(alice.store, toBob)).toBe(before); // neither advance was kept
    const ms = await alice.store.transaction(async (tx) => {
      const joined = withinTransaction(alice.store, tx);
      return [await encryptMessage(ctx, joined, toBob, text('one')), await encryptMessage(ctx, joined, toBob, text('two'))];
    });
    expect(await storedNs(alice.store, toBob)).toBe(before + 2);
    for (const [i, m] of ms.entries()) expect(str(await decryptMessage(ctx, bob.store, alice.certificate, m))).toBe(['one', 'two'][i]);
  });

  it('a record written by someone else (a restored backup) is what the next operation uses, not the state this process last wrote', async () => {
    const { ctx, alice, toBob } = await pair('cache-restore');
    const snapshot = (await alice.store.loadSession(toBob))!;
    const ns = await storedNs(alice.store, toBob);
    for (let i = 0; i < 3; i++) await encryptMessage(ctx, alice.store, toBob, text(`m${i}`));
    expect(await storedNs(alice.store, toBob)).toBe(ns + 3);
    await alice.store.storeSession(toBob, snapshot);
    await encryptMessage(ctx, alice.store, toBob, text('after the restore'));
    expect(await storedNs(alice.store, toBob)).toBe(ns + 1);
  });

  it('a failed decryption changes nothing, and the stored bytes after a message are exactly the full record (decodes to the same bytes)', async () => {
    const { ctx, alice, bob, toBob } = await pair('cache-failure');
    const fromAlice = deviceAddress(alice.certificate);
    const m = await encryptMessage(ctx, alice.store, toBob, text('one'));
    const forged = { type: m.type, body: Uint8Array.from(m.body) };
    forged.body[forged.body.length - 1]! ^= 1;
    const stored = toHex((await bob.store.loadSession(fromAlice))!);
    await expect(decryptMessage(ctx, bob.store, alice.certificate, forged)).rejects.toMatchObject({ code: 'MW_CRYPTO_BAD_MAC' });
    expect(toHex((await bob.store.loadSession(fromAlice))!)).toBe(stored);
    expect(str(await decryptMessage(ctx, bob.store, alice.certificate, m))).toBe('one');
    const { deserializeSessionRecord, serializeSessionRecord } = await import('../../src/session.js');
    const bytes = (await bob.store.loadSession(fromAlice))!;
    expect(toHex(serializeSessionRecord(deserializeSessionRecord(bytes)))).toBe(toHex(bytes));
  });
});

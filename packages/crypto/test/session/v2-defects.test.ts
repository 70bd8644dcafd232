/**
 * Regression tests for the session defects of issue 10 §1 (items 2, 4, 5 and the forged-body
 * outcome of item 8). Each uses only APIs that existed before the fix, and each failed on that
 * code (see the commit message): they pin the behaviour, not the mechanism.
 */
import { describe, expect, it } from 'vitest';
import { CryptoErrorCode } from '../../src/errors.js';
import { MAX_SKIPPED_KEYS, SKIPPED_KEY_MAX_AGE_MS } from '../../src/constants.js';
import { ratchetDecrypt, ratchetEncrypt } from '../../src/ratchet.js';
import type { SessionMessage } from '../../src/session.js';
import { decryptMessage, encryptMessage, initiateSession } from '../../src/session.js';
import { X25519PreKeyPair } from '../../src/prekeys.js';
import { deviceAddress } from '../../src/stores.js';
import { bundleOf, makeDevice, str, testContext, text } from '../_fixtures.js';
import { cryptoErrorOf, makePair } from '../ratchet/_helpers.js';

describe('issue 10 §1.2: simultaneous initiation never leaves a direction dead', () => {
  // Both devices initiate at once; Alice's first message reaches Bob only after Bob rotated his
  // signed prekey away, so Bob can never accept Alice's session. Whatever the base keys compare
  // to, both directions must work afterwards. (Before the fix: 'lower base key wins' kept Alice on
  // her unacceptable session whenever hers was the smaller — A→B dead for good on 4 of 6 seeds.)
  for (const seed of ['sim-1', 'sim-2', 'sim-3', 'sim-4', 'sim-5', 'sim-6']) {
    it(`seed ${seed}`, async () => {
      const ctx = testContext(seed);
      const alice = await makeDevice(ctx, 'alice');
      const bob = await makeDevice(ctx, 'bob');
      const a = deviceAddress(alice.certificate);
      const b = deviceAddress(bob.certificate);
      await initiateSession(ctx, alice.store, await bundleOf(ctx, bob, { oneTime: false }));
      await initiateSession(ctx, bob.store, await bundleOf(ctx, alice, { oneTime: false }));
      const fromA = await encryptMessage(ctx, alice.store, b, text('a0'));
      const fromB = await encryptMessage(ctx, bob.store, a, text('b0'));
      // Bob rotates his signed prekey and the old one is gone.
      await bob.store.storeSignedPreKey(X25519PreKeyPair.generate(ctx, 2));
      await bob.store.removeSignedPreKey(1);
      await expect(decryptMessage(ctx, bob.store, alice.certificate, fromA)).rejects.toMatchObject({ code: CryptoErrorCode.UNKNOWN_PREKEY });
      expect(str(await decryptMessage(ctx, alice.store, bob.certificate, fromB))).toBe('b0');
      for (let i = 1; i <= 3; i++) {
        const x = await encryptMessage(ctx, alice.store, b, text(`a${i}`));
        expect(str(await decryptMessage(ctx, bob.store, alice.certificate, x))).toBe(`a${i}`);
        const y = await encryptMessage(ctx, bob.store, a, text(`b${i}`));
        expect(str(await decryptMessage(ctx, alice.store, bob.certificate, y))).toBe(`b${i}`);
      }
    });
  }
});

describe('issue 10 §1.4: a lost skipped key is not reported as a duplicate', () => {
  it('evicted → SKIPPED_KEY_EVICTED, expired → SKIPPED_KEY_EXPIRED (also after pruning), used → DUPLICATE_MESSAGE', () => {
    const p = makePair('1a');
    let alice = p.alice;
    let bob = p.bob;
    const sent: Uint8Array[] = [];
    const send = (): Uint8Array => {
      const r = ratchetEncrypt(p.ctxA, alice, text(`m${sent.length}`));
      alice = r.state;
      sent.push(r.message);
      return r.message;
    };
    // Message 0 arrives; then 1000 are held back and message 1001 arrives: 1000 skipped keys.
    bob = ratchetDecrypt(p.ctxB, bob, send()).state;
    for (let i = 0; i < 1000; i++) send();
    bob = ratchetDecrypt(p.ctxB, bob, send()).state;
    // A later gap of 1000 more: 2000 skipped keys in all, at the limit.
    p.clock.advance(1000);
    for (let i = 0; i < 1000; i++) send();
    bob = ratchetDecrypt(p.ctxB, bob, send()).state;
    // One more gap of 5 evicts the 5 oldest (messages 1..5).
    for (let i = 0; i < 5; i++) send();
    bob = ratchetDecrypt(p.ctxB, bob, send()).state;
    expect(MAX_SKIPPED_KEYS).toBe(2000);
    expect(cryptoErrorOf(() => ratchetDecrypt(p.ctxB, bob, sent[1]!)).code).toBe('MW_CRYPTO_SKIPPED_KEY_EVICTED');
    expect(cryptoErrorOf(() => ratchetDecrypt(p.ctxB, bob, sent[5]!)).code).toBe('MW_CRYPTO_SKIPPED_KEY_EVICTED');
    // A true duplicate.
    expect(cryptoErrorOf(() => ratchetDecrypt(p.ctxB, bob, sent[0]!)).code).toBe(CryptoErrorCode.DUPLICATE_MESSAGE);
    // Message 6 still decrypts, then is a duplicate.
    const six = ratchetDecrypt(p.ctxB, bob, sent[6]!);
    expect(str(six.plaintext)).toBe('m6');
    expect(cryptoErrorOf(() => ratchetDecrypt(p.ctxB, six.state, sent[6]!)).code).toBe(CryptoErrorCode.DUPLICATE_MESSAGE);
    // Keys of the first gap expire: still held (not yet pruned) and after a pruning step.
    p.clock.advance(SKIPPED_KEY_MAX_AGE_MS - 500);
    expect(cryptoErrorOf(() => ratchetDecrypt(p.ctxB, bob, sent[7]!)).code).toBe('MW_CRYPTO_SKIPPED_KEY_EXPIRED');
    bob = ratchetDecrypt(p.ctxB, bob, send()).state; // prunes the expired keys
    expect(cryptoErrorOf(() => ratchetDecrypt(p.ctxB, bob, sent[7]!)).code).toBe('MW_CRYPTO_SKIPPED_KEY_EXPIRED');
    // Keys of the second gap (stored 1 s later) are still good.
    expect(str(ratchetDecrypt(p.ctxB, bob, sent[1002]!).plaintext)).toBe('m1002');
  });
});

describe('issue 10 §1.5: a state rollback never reuses a body key and nonce', () => {
  it('two plaintexts encrypted from the same (rolled-back) state do not share a keystream', () => {
    const p = makePair('1b');
    const p1 = text('attack at dawn, bring the maps');
    const p2 = text('retreat at six, burn the notes');
    const m1 = ratchetEncrypt(p.ctxA, p.alice, p1).message;
    const m2 = ratchetEncrypt(p.ctxA, p.alice, p2).message; // same state: a restored snapshot
    const body = (m: Uint8Array) => m.subarray(69, 69 + p1.length);
    const xorC = body(m1).map((c, i) => c ^ body(m2)[i]!);
    const xorP = p1.map((c, i) => c ^ p2[i]!);
    expect(Buffer.from(xorC).equals(Buffer.from(xorP))).toBe(false);
    // Both still decrypt (each on its own copy of the receiver).
    expect(str(ratchetDecrypt(p.ctxB, p.bob, m1).plaintext)).toBe(str(p1));
    expect(str(ratchetDecrypt(p.ctxB, p.bob, m2).plaintext)).toBe(str(p2));
  });
});

describe('issue 10 §1.8: a forged body under the right header key', () => {
  it('is an authentication error (BAD_MAC), not UNKNOWN_SESSION, and changes nothing', async () => {
    const ctx = testContext('forged-body');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    const a = deviceAddress(alice.certificate);
    const b = deviceAddress(bob.certificate);
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob));
    await decryptMessage(ctx, bob.store, alice.certificate, await encryptMessage(ctx, alice.store, b, text('hi')));
    await decryptMessage(ctx, alice.store, bob.certificate, await encryptMessage(ctx, bob.store, a, text('hello')));
    const m: SessionMessage = await encryptMessage(ctx, alice.store, b, text('a ratchet message'));
    const forged = { ...m, body: Uint8Array.from(m.body) };
    forged.body[forged.body.length - 20]! ^= 0x40;
    const before = await bob.store.loadSession(a);
    await expect(decryptMessage(ctx, bob.store, alice.certificate, forged)).rejects.toMatchObject({ code: CryptoErrorCode.BAD_MAC });
    expect(await bob.store.loadSession(a)).toEqual(before);
    expect(str(await decryptMessage(ctx, bob.store, alice.certificate, m))).toBe('a ratchet message');
  });
});

/**
 * receiveMessage reports how many earlier messages of the peer device a message jumped over
 * (`skipped`) and how many kept keys were lost in the step (`lost`): what the SDK turns into gap
 * events naming the conversation. In order: 0; a jump of n: n; the late ones arriving: 0; keys
 * expired by age: lost.
 */
import { describe, expect, it } from 'vitest';
import { SKIPPED_KEY_MAX_AGE_MS } from '../../src/constants.js';
import { createContext } from '../../src/context.js';
import { decryptMessage, encryptMessage, initiateSession, receiveMessage } from '../../src/session.js';
import { deviceAddress } from '../../src/stores.js';
import { bundleOf, makeDevice, testContext, text } from '../_fixtures.js';

describe('skipped and lost counts of a received message', () => {
  it('in order 0; a jump counts what was jumped; late arrivals 0; expired keys are lost', async () => {
    const ctx = testContext('gap-counts');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob));
    const toBob = deviceAddress(bob.certificate);
    const first = await receiveMessage(ctx, bob.store, alice.certificate, await encryptMessage(ctx, alice.store, toBob, text('m0')));
    expect(first).toMatchObject({ kind: 'message', skipped: 0, lost: 0 });
    // Bob answers: the session is established (an unanswered one expires).
    await decryptMessage(ctx, alice.store, bob.certificate, await encryptMessage(ctx, bob.store, deviceAddress(alice.certificate), text('hi')));
    const m = [];
    for (let i = 1; i <= 5; i++) m.push(await encryptMessage(ctx, alice.store, toBob, text(`m${i}`)));
    expect(await receiveMessage(ctx, bob.store, alice.certificate, m[3]!)).toMatchObject({ skipped: 3, lost: 0 }); // m4 jumps m1..m3
    expect(await receiveMessage(ctx, bob.store, alice.certificate, m[0]!)).toMatchObject({ skipped: 0, lost: 0 }); // m1, late
    expect(await receiveMessage(ctx, bob.store, alice.certificate, m[4]!)).toMatchObject({ skipped: 0, lost: 0 }); // m5, in order
    // m2 and m3 never come; once their keys are older than SKIPPED_KEY_MAX_AGE_MS, the next step loses them.
    const later = createContext({ backend: ctx.backend, random: ctx.random, now: () => ctx.now() + SKIPPED_KEY_MAX_AGE_MS + 1000 });
    const next = await encryptMessage(later, alice.store, toBob, text('m6'));
    expect(await receiveMessage(later, bob.store, alice.certificate, next)).toMatchObject({ skipped: 0, lost: 2 });
    await expect(decryptMessage(later, bob.store, alice.certificate, m[1]!)).rejects.toMatchObject({ code: 'MW_CRYPTO_SKIPPED_KEY_EXPIRED' });
  });
});

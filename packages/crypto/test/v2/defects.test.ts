/**
 * Issue 10 defects in the device-authority / prekey / media area. Each of these failed on the
 * v1 code (see the commit that added this file).
 */
import { describe, expect, it } from 'vitest';
import { createContext } from '../../src/context.js';
import { AccountKeyPair, issueDeviceCertificate } from '../../src/keys.js';
import { rotatePreKeys } from '../../src/prekey-rotation.js';
import { decryptMessage, encryptMessage, initiateSession } from '../../src/session.js';
import { deviceAddress } from '../../src/stores.js';
import { bundleOf, makeDevice, testContext, text } from '../_fixtures.js';

const DAY = 24 * 3600 * 1000;

describe('item 3: a replaced signed prekey lives 30 days after its REPLACEMENT', () => {
  it('keeps the key a device back from 5 weeks offline needs for its waiting first messages', async () => {
    const ctx = testContext('rotation-grace');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    for (const k of await bob.store.listSignedPreKeys()) await bob.store.removeSignedPreKey(k.id);
    for (const k of await bob.store.listKemPreKeys()) await bob.store.removeKemPreKey(k.id);
    const first = await rotatePreKeys(ctx, bob.store);
    // Alice sends her first message against this bundle; Bob goes offline for 36 days.
    await initiateSession(ctx, alice.store, { certificate: bob.certificate, signedPreKey: first.signedPreKey, kemPreKey: first.lastResortKemPreKey });
    ctx.clock.advance(35 * DAY);
    const m = await encryptMessage(ctx, alice.store, deviceAddress(bob.certificate), text('waiting'));
    ctx.clock.advance(1 * DAY);
    // Bob comes back: his rotation timer fires (replacement happens now), and again two days later.
    const back = await rotatePreKeys(ctx, bob.store);
    expect(back.rotated.signedPreKey).toBe(true);
    expect(back.removed.signedPreKeys).toEqual([]);
    ctx.clock.advance(2 * DAY);
    const later = await rotatePreKeys(ctx, bob.store);
    expect(later.removed.signedPreKeys).toEqual([]);
    expect(later.removed.lastResortKemPreKeys).toEqual([]);
    // The waiting message still decrypts.
    expect(new TextDecoder().decode(await decryptMessage(ctx, bob.store, alice.certificate, m))).toBe('waiting');
    // 30 days after the replacement the old keys go.
    ctx.clock.advance(28 * DAY);
    const gone = await rotatePreKeys(ctx, bob.store);
    expect(gone.removed.signedPreKeys).toEqual([first.signedPreKey.id]);
    expect(gone.removed.lastResortKemPreKeys).toEqual([first.lastResortKemPreKey.id]);
  });
});

describe('item 7: the replay cache is keyed on the transcript, not the raw header', () => {
  it('refuses an initial message replayed under a re-issued certificate of the same device', async () => {
    const ctx = testContext('replay-reissue');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob, { oneTime: false, kemOneTime: false }));
    const m = await encryptMessage(ctx, alice.store, deviceAddress(bob.certificate), text('once'));
    await decryptMessage(ctx, bob.store, alice.certificate, m);
    // The attacker cannot forge, but Alice's account legitimately re-issues her certificate (renewal).
    ctx.clock.advance(1000);
    const renewed = issueDeviceCertificate(ctx, alice.account, alice.device);
    // Replaying the captured initial message with the renewed certificate swapped in: same device,
    // same transcript; the old cache key (hash of the header bytes) differs.
    const { decodePqxdhHeader, encodePqxdhHeader, readPqxdhHeader } = await import('../../src/pqxdh.js');
    const { ByteReader } = await import('../../src/encoding.js');
    const r = new ByteReader(m.body, 'test');
    const header = readPqxdhHeader(r, 'test');
    const rest = r.rest();
    const swapped = encodePqxdhHeader({ ...header, initiator: renewed });
    expect(decodePqxdhHeader(swapped).initiator.issuedAt).toBe(renewed.issuedAt);
    await bob.store.removeSession(deviceAddress(alice.certificate));
    const replay = { type: m.type, body: new Uint8Array([...swapped, ...rest]) };
    await expect(decryptMessage(ctx, bob.store, renewed, replay)).rejects.toMatchObject({ code: 'MW_CRYPTO_REPLAYED_INITIAL_MESSAGE' });
  });
});

describe('item 8: createContext validates its random function', () => {
  it('refuses a non-function and a function that returns the wrong thing', () => {
    expect(() => createContext({ random: 42 as never })).toThrow(TypeError);
    expect(() => createContext({ now: 'x' as never })).toThrow(TypeError);
    const draw = (random: unknown) => () => AccountKeyPair.generate(createContext({ random: random as never }));
    expect(draw((n: number) => new Uint8Array(n - 1))).toThrow(RangeError);
    expect(draw(() => 'abc')).toThrow(TypeError);
    expect(draw((n: number) => new Uint8Array(n))).toThrow(/all zero/);
    const constant = new Uint8Array(64).fill(7);
    const ctx = createContext({ random: (n: number) => constant.slice(0, n) });
    AccountKeyPair.generate(ctx);
    expect(() => AccountKeyPair.generate(ctx)).toThrow(/same bytes twice/);
  });
});

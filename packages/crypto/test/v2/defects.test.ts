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
    // Bob goes offline for 36 days; on day 34 Alice sends her first message against his bundle
    // (the node still serves it: it is within MAX_SIGNED_PREKEY_AGE_MS).
    ctx.clock.advance(34 * DAY);
    await initiateSession(ctx, alice.store, { certificate: bob.certificate, signedPreKey: first.signedPreKey, kemPreKey: first.lastResortKemPreKey });
    const m = await encryptMessage(ctx, alice.store, deviceAddress(bob.certificate), text('waiting'));
    ctx.clock.advance(2 * DAY);
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

describe('item 8: first contact is not visible in the envelope size', () => {
  it.each([true, false])('a first-contact message (one-time prekey: %s) and an ordinary one with the same plaintext land in the same bucket', async (oneTime) => {
    const ctx = testContext(`first-contact-size-${oneTime}`);
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    const { sealMessage, openSealedMessage } = await import('../../src/session.js');
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob, { oneTime }));
    const to = deviceAddress(bob.certificate);
    // Sizes around the v1 leak (300..1700 bytes went to 4 KiB as first contact, 2 KiB otherwise),
    // and the v2 bucket edge for 2 KiB (376 bytes of plaintext), where a 4-byte OPK id would show.
    const sizes = [0, 100, 300, 372, 373, 376, 377, 380, 381, 400, 800, 1200, 1700, 2500, 3500, 6000];
    const first = [];
    for (const n of sizes) first.push((await sealMessage(ctx, alice.store, to, new Uint8Array(n).fill(1))).length);
    await openSealedMessage(ctx, bob.store, await sealMessage(ctx, alice.store, to, text('x')));
    const { sessionPeer } = await import('../../src/session.js');
    expect(await sessionPeer(bob.store, deviceAddress(alice.certificate))).toBeDefined();
    // Bob replies; Alice's next messages are ordinary ratchet messages (no PQXDH header).
    await openSealedMessage(ctx, alice.store, await sealMessage(ctx, bob.store, deviceAddress(alice.certificate), text('hi')));
    const ordinary = [];
    for (const n of sizes) {
      const env = await sealMessage(ctx, alice.store, to, new Uint8Array(n).fill(1));
      ordinary.push(env.length);
      await openSealedMessage(ctx, bob.store, env);
    }
    expect(ordinary).toEqual(first);
  });
});

describe('item 8: consumed one-time prekeys and the PQXDH secret are wiped', () => {
  it('the one-time X25519 and KEM prekey objects are zeroed once their removal commits', async () => {
    const ctx = testContext('wipe-prekeys');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    const bundle = await bundleOf(ctx, bob);
    const opk = (await bob.store.loadPreKey(bundle.oneTimePreKey!.id))!;
    const kem = (await bob.store.loadKemPreKey(bundle.kemPreKey.id))!;
    expect(opk.secretKey.some((b) => b !== 0)).toBe(true);
    await initiateSession(ctx, alice.store, bundle);
    const m = await encryptMessage(ctx, alice.store, deviceAddress(bob.certificate), text('hello'));
    await decryptMessage(ctx, bob.store, alice.certificate, m);
    expect(await bob.store.loadPreKey(opk.id)).toBeUndefined();
    expect(opk.secretKey.every((b) => b === 0)).toBe(true);
    expect(kem.secretKey.every((b) => b === 0)).toBe(true);
    // The signed prekey and last-resort KEM prekey stay usable.
    expect(bob.signedPreKey.secretKey.some((b) => b !== 0)).toBe(true);
    expect(bob.lastResortKem.secretKey.some((b) => b !== 0)).toBe(true);
  });

  it('a rolled-back decryption leaves the one-time prekeys intact', async () => {
    const ctx = testContext('wipe-rollback');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    const bundle = await bundleOf(ctx, bob);
    await initiateSession(ctx, alice.store, bundle);
    const m = await encryptMessage(ctx, alice.store, deviceAddress(bob.certificate), text('hello'));
    await expect(
      decryptMessage(ctx, bob.store, alice.certificate, m, {
        persist: async () => {
          throw new Error('disk full');
        },
      }),
    ).rejects.toThrow('disk full');
    const opk = (await bob.store.loadPreKey(bundle.oneTimePreKey!.id))!;
    expect(opk.secretKey.some((b) => b !== 0)).toBe(true);
    expect(new TextDecoder().decode(await decryptMessage(ctx, bob.store, alice.certificate, m))).toBe('hello');
  });
});

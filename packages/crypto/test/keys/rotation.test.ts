import { describe, expect, it } from 'vitest';
import { AccountKeyPair, DeviceKeyPair, issueDeviceCertificate } from '../../src/keys.js';
import { generateKemPreKeys, generateOneTimePreKeys, rotatePreKeys } from '../../src/prekey-rotation.js';
import type { PreKeyBundle } from '../../src/prekeys.js';
import { verifyKemPreKey } from '../../src/prekeys.js';
import { encryptMessage, decryptMessage, initiateSession } from '../../src/session.js';
import { MemoryProtocolStore, deviceAddress } from '../../src/stores.js';
import { makeDevice, testContext, text } from '../_fixtures.js';

const DAY = 24 * 3600 * 1000;

async function freshDevice(ctx: ReturnType<typeof testContext>) {
  const account = AccountKeyPair.generate(ctx);
  const device = DeviceKeyPair.generate(ctx);
  const certificate = issueDeviceCertificate(ctx, account, device);
  return { certificate, device, store: new MemoryProtocolStore({ certificate, device }) };
}

describe('prekey lifecycle', () => {
  it('generates one-time prekeys with unique ids and signed KEM prekeys', async () => {
    const ctx = testContext('gen');
    const bob = await freshDevice(ctx);
    const otks = await generateOneTimePreKeys(ctx, bob.store, 100);
    const kems = await generateKemPreKeys(ctx, bob.store, 20);
    expect(new Set(otks.map((k) => k.id)).size).toBe(100);
    expect(new Set(kems.map((k) => k.id)).size).toBe(20);
    expect(await bob.store.countPreKeys()).toBe(100);
    for (const k of kems) {
      expect(k.lastResort).toBe(false);
      verifyKemPreKey(ctx, bob.device.signingPublicKey, k);
    }
    await expect(generateOneTimePreKeys(ctx, bob.store, 1001)).rejects.toThrow(RangeError);
  });

  it('rotates weekly, keeps superseded keys through the grace period, then deletes them and their replay entries', async () => {
    const ctx = testContext('rotate');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await freshDevice(ctx);
    const first = await rotatePreKeys(ctx, bob.store);
    expect(first.rotated).toEqual({ signedPreKey: true, lastResortKemPreKey: true });
    const again = await rotatePreKeys(ctx, bob.store);
    expect(again.rotated).toEqual({ signedPreKey: false, lastResortKemPreKey: false });
    expect(again.signedPreKey.id).toBe(first.signedPreKey.id);

    const oldBundle: PreKeyBundle = { certificate: bob.certificate, signedPreKey: first.signedPreKey, kemPreKey: first.lastResortKemPreKey };
    ctx.clock.advance(7 * DAY);
    const second = await rotatePreKeys(ctx, bob.store);
    expect(second.rotated).toEqual({ signedPreKey: true, lastResortKemPreKey: true });
    expect(second.signedPreKey.id).not.toBe(first.signedPreKey.id);
    expect(second.removed.signedPreKeys).toEqual([]);

    // An initial message built on the superseded bundle (it waited in the node's queue) still works.
    await initiateSession(ctx, alice.store, oldBundle);
    const m = await encryptMessage(ctx, alice.store, deviceAddress(bob.certificate), text('late'));
    await decryptMessage(ctx, bob.store, alice.certificate, m);

    ctx.clock.advance(31 * DAY);
    const third = await rotatePreKeys(ctx, bob.store);
    expect(third.removed.signedPreKeys).toEqual([first.signedPreKey.id]);
    expect(third.removed.lastResortKemPreKeys).toEqual([first.lastResortKemPreKey.id]);
    expect(third.prunedReplayEntries).toBe(1);
    expect((await bob.store.listSignedPreKeys()).map((k) => k.id).sort()).toEqual([second.signedPreKey.id, third.signedPreKey.id].sort());
    // The old bundle can no longer start a session at all.
    await bob.store.removeSession(deviceAddress(alice.certificate));
    await expect(decryptMessage(ctx, bob.store, alice.certificate, m)).rejects.toMatchObject({ code: 'MW_CRYPTO_UNKNOWN_PREKEY' });
  });
});

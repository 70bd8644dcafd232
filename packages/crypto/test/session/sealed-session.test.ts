import { describe, expect, it } from 'vitest';
import { isPaddingBucket } from '../../src/padding.js';
import { sealEnvelope } from '../../src/sealed-sender.js';
import { MessageType, encryptMessage, initiateSession, openSealedMessage, sealMessage } from '../../src/session.js';
import { deviceAddress } from '../../src/stores.js';
import { bundleOf, makeDevice, str, testContext, text } from '../_fixtures.js';

describe('sealed messages through the session layer', () => {
  it('a first-contact message and a short reply are the same size on the wire', async () => {
    const ctx = testContext('sealed-1');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob));
    const persisted: Uint8Array[] = [];
    const env = await sealMessage(ctx, alice.store, deviceAddress(bob.certificate), text('hello bob, this is a first message'), {
      persist: async (_tx, e) => void persisted.push(e),
    });
    expect(persisted).toEqual([env]);
    const opened = await openSealedMessage(ctx, bob.store, env);
    expect(str(opened.plaintext)).toBe('hello bob, this is a first message');
    expect(deviceAddress(opened.sender)).toBe(deviceAddress(alice.certificate));
    const reply = await sealMessage(ctx, bob.store, deviceAddress(alice.certificate), text('hi'));
    expect(str((await openSealedMessage(ctx, alice.store, reply)).plaintext)).toBe('hi');
    expect(isPaddingBucket(env.length)).toBe(true);
    expect(env.length).toBe(2048);
    expect(reply.length).toBe(2048);
  });

  it('rejects ciphertext from a real session re-sealed under another sender (forged inner sender)', async () => {
    const ctx = testContext('sealed-2');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    const mallory = await makeDevice(ctx, 'mallory');
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob));
    // Mallory captured Alice's session message (e.g. she is the node) and seals it as herself.
    const m = await encryptMessage(ctx, alice.store, deviceAddress(bob.certificate), text('from alice'));
    expect(m.type).toBe(MessageType.PreKey);
    const resealed = sealEnvelope(ctx, {
      sender: { certificate: mallory.certificate, device: mallory.device },
      recipientDhKey: bob.certificate.deviceDhKey,
      contentType: m.type,
      content: m.body,
    });
    await expect(openSealedMessage(ctx, bob.store, resealed)).rejects.toMatchObject({ code: 'MW_CRYPTO_SENDER_MISMATCH' });
    expect(await bob.store.listSessionAddresses()).toEqual([]);
  });

  it('rejects an envelope sealed for another device', async () => {
    const ctx = testContext('sealed-3');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    const carol = await makeDevice(ctx, 'carol');
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob));
    const env = await sealMessage(ctx, alice.store, deviceAddress(bob.certificate), text('for bob'));
    await expect(openSealedMessage(ctx, carol.store, env)).rejects.toMatchObject({ name: 'CryptoError' });
  });
});

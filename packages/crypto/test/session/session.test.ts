import { describe, expect, it } from 'vitest';
import { toHex } from '../../src/bytes.js';
import { CryptoErrorCode } from '../../src/errors.js';
import { AccountKeyPair, DeviceKeyPair, issueDeviceCertificate } from '../../src/keys.js';
import { KemPreKeyPair, signKemPreKey } from '../../src/prekeys.js';
import type { SessionMessage } from '../../src/session.js';
import { MessageType, decryptMessage, encryptMessage, initiateSession } from '../../src/session.js';
import { deviceAddress } from '../../src/stores.js';
import type { TestDevice } from '../_fixtures.js';
import { bundleOf, makeDevice, str, testContext, text } from '../_fixtures.js';

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  await expect(p).rejects.toMatchObject({ name: 'CryptoError', code });
}

async function snapshot(d: TestDevice): Promise<string> {
  const parts: string[] = [];
  for (const a of (await d.store.listSessionAddresses()).sort()) parts.push(a, toHex((await d.store.loadSession(a))!));
  parts.push(String(await d.store.countPreKeys()), String((await d.store.listKemPreKeys()).length));
  return parts.join('|');
}

async function pair(seed: string, opts: { oneTime?: boolean } = {}) {
  const ctx = testContext(seed);
  const alice = await makeDevice(ctx, 'alice');
  const bob = await makeDevice(ctx, 'bob');
  await initiateSession(ctx, alice.store, await bundleOf(ctx, bob, opts));
  const send = (from: TestDevice, to: TestDevice, s: string) => encryptMessage(ctx, from.store, deviceAddress(to.certificate), text(s));
  const recv = async (to: TestDevice, from: TestDevice, m: SessionMessage) => str(await decryptMessage(ctx, to.store, from.certificate, m));
  return { ctx, alice, bob, send, recv };
}

describe('session layer', () => {
  for (const oneTime of [true, false]) {
    it(`establishes a session and converses (one-time prekey: ${oneTime})`, async () => {
      const { alice, bob, send, recv } = await pair(`s1-${oneTime}`, { oneTime });
      const m1 = await send(alice, bob, 'hello');
      const m2 = await send(alice, bob, 'again');
      // Key confirmation: the PQXDH header rides on every message until Bob answers.
      expect(m1.type).toBe(MessageType.PreKey);
      expect(m2.type).toBe(MessageType.PreKey);
      expect(await recv(bob, alice, m2)).toBe('again');
      expect(await recv(bob, alice, m1)).toBe('hello');
      const r1 = await send(bob, alice, 'hi alice');
      expect(r1.type).toBe(MessageType.Ratchet);
      expect(await recv(alice, bob, r1)).toBe('hi alice');
      const m3 = await send(alice, bob, 'now plain ratchet');
      expect(m3.type).toBe(MessageType.Ratchet);
      expect(await recv(bob, alice, m3)).toBe('now plain ratchet');
      // One-time prekeys consumed; the last-resort KEM key stays.
      expect(await bob.store.countPreKeys()).toBe(0);
      expect((await bob.store.listKemPreKeys()).map((k) => k.lastResort)).toEqual([true]);
    });
  }

  it('uses the last-resort KEM prekey when no one-time KEM prekey is left, and keeps it', async () => {
    const ctx = testContext('lr');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob, { kemOneTime: false }));
    const m = await encryptMessage(ctx, alice.store, deviceAddress(bob.certificate), text('x'));
    expect(str(await decryptMessage(ctx, bob.store, alice.certificate, m))).toBe('x');
    expect((await bob.store.listKemPreKeys()).length).toBe(1);
  });

  it('rejects a bundle whose KEM prekey was substituted or is unsigned', async () => {
    const ctx = testContext('kem-sub');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    const mallory = await makeDevice(ctx, 'mallory');
    const good = await bundleOf(ctx, bob);
    const evilKem = KemPreKeyPair.generate(ctx, 7, false);
    // Signed by another device's key.
    await expectCode(initiateSession(ctx, alice.store, { ...good, kemPreKey: signKemPreKey(ctx, mallory.device, evilKem) }), CryptoErrorCode.BAD_SIGNATURE);
    // Bob's valid signature moved onto another key.
    await expectCode(
      initiateSession(ctx, alice.store, { ...good, kemPreKey: { ...good.kemPreKey, publicKey: evilKem.publicKey } }),
      CryptoErrorCode.BAD_SIGNATURE,
    );
    // No signature at all.
    await expectCode(
      initiateSession(ctx, alice.store, { ...good, kemPreKey: { ...good.kemPreKey, signature: new Uint8Array(64) } }),
      CryptoErrorCode.BAD_SIGNATURE,
    );
    // Signed prekey substituted.
    await expectCode(
      initiateSession(ctx, alice.store, { ...good, signedPreKey: { ...good.signedPreKey, publicKey: mallory.signedPreKey.publicKey } }),
      CryptoErrorCode.BAD_SIGNATURE,
    );
    expect(await alice.store.listSessionAddresses()).toEqual([]);
  });

  it('rejects a bundle whose device certificate is forged or belongs to another account', async () => {
    const ctx = testContext('cert');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    const good = await bundleOf(ctx, bob);
    await expectCode(
      initiateSession(ctx, alice.store, { ...good, certificate: { ...good.certificate, deviceDhKey: alice.device.dhPublicKey } }),
      CryptoErrorCode.BAD_SIGNATURE,
    );
    await expectCode(initiateSession(ctx, alice.store, good, { expectedAccountKey: alice.account.publicKey }), CryptoErrorCode.UNTRUSTED_IDENTITY);
  });

  it('rejects a replayed initial message after its one-time prekey was consumed', async () => {
    const { ctx, alice, bob, send, recv } = await pair('replay-otk', { oneTime: true });
    const m1 = await send(alice, bob, 'first');
    await recv(bob, alice, m1);
    // With the live session present the repeat goes to it and is a duplicate.
    await expectCode(decryptMessage(ctx, bob.store, alice.certificate, m1), CryptoErrorCode.DUPLICATE_MESSAGE);
    // With the session gone, the replay cache still refuses it…
    await bob.store.removeSession(deviceAddress(alice.certificate));
    await expectCode(decryptMessage(ctx, bob.store, alice.certificate, m1), CryptoErrorCode.REPLAYED_INITIAL_MESSAGE);
    // …and without the cache the consumed one-time prekey does.
    await bob.store.pruneSeenInitialMessages(new Set(), new Set());
    await expectCode(decryptMessage(ctx, bob.store, alice.certificate, m1), CryptoErrorCode.UNKNOWN_PREKEY);
  });

  it('rejects a replayed initial message that used no one-time prekey', async () => {
    const { ctx, alice, bob, send, recv } = await pair('replay-nootk', { oneTime: false });
    const m1 = await send(alice, bob, 'first');
    await recv(bob, alice, m1);
    await bob.store.removeSession(deviceAddress(alice.certificate));
    await expectCode(decryptMessage(ctx, bob.store, alice.certificate, m1), CryptoErrorCode.REPLAYED_INITIAL_MESSAGE);
  });

  it('never lets a replayed or forged initial message replace the live session', async () => {
    const { ctx, alice, bob, send, recv } = await pair('replay-live');
    const m1 = await send(alice, bob, 'first');
    await recv(bob, alice, m1);
    await recv(alice, bob, await send(bob, alice, 'reply'));
    const before = await snapshot(bob);
    await expectCode(decryptMessage(ctx, bob.store, alice.certificate, m1), CryptoErrorCode.DUPLICATE_MESSAGE);
    expect(await snapshot(bob)).toBe(before);

    // Mallory runs PQXDH against Bob's bundle while claiming to be Alice (her certificate is public).
    const mallory = await makeDevice(ctx, 'mallory');
    const fakeAlice = { ...mallory, certificate: alice.certificate };
    const { MemoryProtocolStore } = await import('../../src/stores.js');
    const fakeStore = new MemoryProtocolStore({ certificate: alice.certificate, device: mallory.device });
    await initiateSession(ctx, fakeStore, await bundleOf(ctx, bob));
    const forged = await encryptMessage(ctx, fakeStore, deviceAddress(bob.certificate), text('trust me'));
    const before2 = await snapshot(bob);
    await expect(decryptMessage(ctx, bob.store, fakeAlice.certificate, forged)).rejects.toMatchObject({ name: 'CryptoError' });
    expect(await snapshot(bob)).toBe(before2);
    // The real session still works.
    expect(await recv(bob, alice, await send(alice, bob, 'still me'))).toBe('still me');
  });

  it('rejects a message whose claimed sender does not own the session', async () => {
    const { ctx, alice, bob, send } = await pair('mismatch');
    const carol = await makeDevice(ctx, 'carol');
    const m1 = await send(alice, bob, 'hello');
    await expectCode(decryptMessage(ctx, bob.store, carol.certificate, m1), CryptoErrorCode.SENDER_MISMATCH);
  });

  it('fails cleanly on a header from another session', async () => {
    const ctx = testContext('other');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob));
    const a = deviceAddress(alice.certificate);
    const b = deviceAddress(bob.certificate);
    await decryptMessage(ctx, bob.store, alice.certificate, await encryptMessage(ctx, alice.store, b, text('1')));
    await decryptMessage(ctx, alice.store, bob.certificate, await encryptMessage(ctx, bob.store, a, text('2')));
    // A second, unrelated pair of sessions between the same two identities' twins.
    const alice2 = { ...(await makeDevice(ctx, 'alice2')) };
    await initiateSession(ctx, alice2.store, await bundleOf(ctx, bob));
    await decryptMessage(ctx, bob.store, alice2.certificate, await encryptMessage(ctx, alice2.store, b, text('x')));
    const foreign = await encryptMessage(ctx, bob.store, deviceAddress(alice2.certificate), text('for alice2'));
    const before = await snapshot(alice);
    await expectCode(decryptMessage(ctx, alice.store, bob.certificate, foreign), CryptoErrorCode.UNKNOWN_SESSION);
    expect(await snapshot(alice)).toBe(before);
  });

  it('simultaneous initiation: every message decrypts, and one round trip converges both ends on one session (Sesame)', async () => {
    const ctx = testContext('simul');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    const a = deviceAddress(alice.certificate);
    const b = deviceAddress(bob.certificate);
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob));
    await initiateSession(ctx, bob.store, await bundleOf(ctx, alice));
    const fromA = await encryptMessage(ctx, alice.store, b, text('a1'));
    const fromB = await encryptMessage(ctx, bob.store, a, text('b1'));
    expect(str(await decryptMessage(ctx, bob.store, alice.certificate, fromA))).toBe('a1');
    expect(str(await decryptMessage(ctx, alice.store, bob.certificate, fromB))).toBe('b1');
    // Both send at once for a while (each end answers on the session the other last used, so the
    // two may keep swapping): every message must decrypt.
    for (let i = 0; i < 6; i++) {
      const x = await encryptMessage(ctx, alice.store, b, text(`a${i}`));
      const y = await encryptMessage(ctx, bob.store, a, text(`b${i}`));
      expect(str(await decryptMessage(ctx, bob.store, alice.certificate, x))).toBe(`a${i}`);
      expect(str(await decryptMessage(ctx, alice.store, bob.certificate, y))).toBe(`b${i}`);
    }
    // One message answered before the next is sent: both ends are on the session Alice used.
    const x = await encryptMessage(ctx, alice.store, b, text('done'));
    expect(str(await decryptMessage(ctx, bob.store, alice.certificate, x))).toBe('done');
    const y = await encryptMessage(ctx, bob.store, a, text('done'));
    expect(str(await decryptMessage(ctx, alice.store, bob.certificate, y))).toBe('done');
    expect(x.type).toBe(MessageType.Ratchet);
    expect(y.type).toBe(MessageType.Ratchet);
    const { deserializeSessionRecord } = await import('../../src/session.js');
    const ra = deserializeSessionRecord((await alice.store.loadSession(b))!);
    const rb = deserializeSessionRecord((await bob.store.loadSession(a))!);
    expect(toHex(ra.current!.baseKey)).toBe(toHex(rb.current!.baseKey));
  });

  it('keeps archived sessions decryptable and promotes the one the peer uses', async () => {
    const ctx = testContext('archive');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    const a = deviceAddress(alice.certificate);
    const b = deviceAddress(bob.certificate);
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob));
    const old1 = await encryptMessage(ctx, alice.store, b, text('old session'));
    await decryptMessage(ctx, bob.store, alice.certificate, old1);
    await decryptMessage(ctx, alice.store, bob.certificate, await encryptMessage(ctx, bob.store, a, text('ack')));
    const lateOld = await encryptMessage(ctx, alice.store, b, text('late on old'));
    // Alice starts over (e.g. she restored an older backup of her sessions elsewhere).
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob));
    const fresh = await encryptMessage(ctx, alice.store, b, text('new session'));
    expect(str(await decryptMessage(ctx, bob.store, alice.certificate, fresh))).toBe('new session');
    // A late message on the old session still decrypts from Bob's archive…
    expect(str(await decryptMessage(ctx, bob.store, alice.certificate, lateOld))).toBe('late on old');
    // …which promoted the old session; Bob's next message goes out on it and Alice reads it from her archive.
    const back = await encryptMessage(ctx, bob.store, a, text('back'));
    expect(str(await decryptMessage(ctx, alice.store, bob.certificate, back))).toBe('back');
  });

  it('leaves every store untouched when decryption fails', async () => {
    const { ctx, alice, bob, send, recv } = await pair('atomic');
    const m1 = await send(alice, bob, 'one');
    const tampered = { ...m1, body: Uint8Array.from(m1.body) };
    tampered.body[tampered.body.length - 1]! ^= 1;
    const before = await snapshot(bob);
    await expect(decryptMessage(ctx, bob.store, alice.certificate, tampered)).rejects.toMatchObject({ name: 'CryptoError' });
    expect(await snapshot(bob)).toBe(before);
    expect(await recv(bob, alice, m1)).toBe('one');
  });

  it('a different device of the same account is a different address with its own session', async () => {
    const ctx = testContext('multi');
    const account = AccountKeyPair.generate(ctx);
    const phone = await makeDevice(ctx, 'phone', account);
    const laptopKeys = DeviceKeyPair.generate(ctx);
    const laptopCert = issueDeviceCertificate(ctx, account, laptopKeys);
    expect(deviceAddress(laptopCert)).not.toBe(deviceAddress(phone.certificate));
  });
});

describe('archive bounds', () => {
  it(`keeps at most MAX_ARCHIVED_SESSIONS archived sessions and still decrypts from the oldest kept`, async () => {
    const { MAX_ARCHIVED_SESSIONS } = await import('../../src/constants.js');
    const { deserializeSessionRecord } = await import('../../src/session.js');
    const ctx = testContext('bounds');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    const b = deviceAddress(bob.certificate);
    const firstMessages: SessionMessage[] = [];
    for (let i = 0; i < MAX_ARCHIVED_SESSIONS + 3; i++) {
      await initiateSession(ctx, alice.store, await bundleOf(ctx, bob, { oneTime: false }));
      firstMessages.push(await encryptMessage(ctx, alice.store, b, text(`session ${i}`)));
    }
    const rec = deserializeSessionRecord((await alice.store.loadSession(b))!);
    expect(rec.archived.length).toBe(MAX_ARCHIVED_SESSIONS);
    // Bob accepts all of them (each is a fresh PQXDH); then Alice can read a reply on the oldest one she kept.
    for (const m of firstMessages) await decryptMessage(ctx, bob.store, alice.certificate, m);
    const bobRec = deserializeSessionRecord((await bob.store.loadSession(deviceAddress(alice.certificate)))!);
    expect(bobRec.archived.length).toBe(MAX_ARCHIVED_SESSIONS);
  });
});

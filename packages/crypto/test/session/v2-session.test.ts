/**
 * Session layer v2: ephemeral messages, decryption-error reports and session restart, pending
 * expiry, and refusal of v1 state (docs/protocol.md §6.6–6.7).
 */
import { describe, expect, it } from 'vitest';
import { DECRYPTION_ERROR_MIN_INTERVAL_MS, EPHEMERAL_MAX_SKEW_MS, MAX_SKIP, PENDING_SESSION_MAX_AGE_MS } from '../../src/constants.js';
import { CryptoErrorCode } from '../../src/errors.js';
import { ratchetStateSummary } from '../../src/ratchet.js';
import type { ReceivedEnvelope } from '../../src/session.js';
import {
  MessageType,
  decodeDecryptionError,
  decryptMessage,
  deserializeSessionRecord,
  encodeDecryptionError,
  encryptEphemeral,
  encryptMessage,
  hasSession,
  initiateSession,
  receiveMessage,
  receiveSealed,
  sealEphemeral,
  sealMessage,
} from '../../src/session.js';
import { deviceAddress } from '../../src/stores.js';
import type { TestDevice } from '../_fixtures.js';
import { bundleOf, makeDevice, str, testContext, text } from '../_fixtures.js';

async function established(seed: string) {
  const ctx = testContext(seed);
  const alice = await makeDevice(ctx, 'alice');
  const bob = await makeDevice(ctx, 'bob');
  const a = deviceAddress(alice.certificate);
  const b = deviceAddress(bob.certificate);
  await initiateSession(ctx, alice.store, await bundleOf(ctx, bob));
  await decryptMessage(ctx, bob.store, alice.certificate, await encryptMessage(ctx, alice.store, b, text('hi')));
  await decryptMessage(ctx, alice.store, bob.certificate, await encryptMessage(ctx, bob.store, a, text('hello')));
  return { ctx, alice, bob, a, b };
}

const message = (r: ReceivedEnvelope): string => {
  if (r.kind !== 'message') throw new Error(`expected a message, got ${r.kind}${r.kind === 'failed' ? ` (${r.error.code})` : ''}`);
  return str(r.plaintext);
};

describe('ephemeral messages', () => {
  it('1,002 lost ephemeral signals cost the durable chain nothing: the next 4 real messages decrypt', async () => {
    const { ctx, alice, bob, b, a } = await established('eph-loss');
    const before = await alice.store.loadSession(b);
    for (let i = 0; i < MAX_SKIP + 2; i++) await encryptEphemeral(ctx, alice.store, b, text(`typing ${i}`)); // all dropped by the node
    // Sending an ephemeral signal writes nothing.
    expect(await alice.store.loadSession(b)).toEqual(before);
    for (let i = 0; i < 4; i++) {
      const m = await encryptMessage(ctx, alice.store, b, text(`real ${i}`));
      expect(str(await decryptMessage(ctx, bob.store, alice.certificate, m))).toBe(`real ${i}`);
    }
    const rec = deserializeSessionRecord((await bob.store.loadSession(a))!);
    expect(ratchetStateSummary(rec.current!.ratchet).skippedKeyCount).toBe(0);
  });

  it('opens in both directions, before and after DH steps; replays and stale signals are STALE_EPHEMERAL', async () => {
    const { ctx, alice, bob, a, b } = await established('eph-open');
    const e1 = await encryptEphemeral(ctx, alice.store, b, text('typing'));
    expect(e1.type).toBe(MessageType.Ephemeral);
    // Alice ratchets forward without Bob hearing of it: the signal under her new chain still opens (NHKr).
    await encryptMessage(ctx, alice.store, b, text('lost'));
    const r1 = await receiveMessage(ctx, bob.store, alice.certificate, e1);
    expect(r1).toMatchObject({ kind: 'ephemeral', sentAt: ctx.now() });
    await expect(receiveMessage(ctx, bob.store, alice.certificate, e1)).rejects.toMatchObject({ code: CryptoErrorCode.STALE_EPHEMERAL });
    ctx.clock.advance(1);
    const e2 = await encryptEphemeral(ctx, bob.store, a, text('online'));
    expect(str(((await receiveMessage(ctx, alice.store, bob.certificate, e2)) as { plaintext: Uint8Array }).plaintext)).toBe('online');
    ctx.clock.advance(1);
    const e3 = await encryptEphemeral(ctx, alice.store, b, text('late'));
    ctx.clock.advance(EPHEMERAL_MAX_SKEW_MS + 1);
    await expect(receiveMessage(ctx, bob.store, alice.certificate, e3)).rejects.toMatchObject({ code: CryptoErrorCode.STALE_EPHEMERAL });
    // A tampered one opens under no key.
    const e4 = await encryptEphemeral(ctx, alice.store, b, text('x'));
    e4.body[e4.body.length - 1]! ^= 1;
    await expect(receiveMessage(ctx, bob.store, alice.certificate, e4)).rejects.toMatchObject({ code: CryptoErrorCode.UNKNOWN_SESSION });
  });

  it('sealed: receiveSealed reports kind ephemeral; nothing to report back on failure', async () => {
    const { ctx, alice, bob, b } = await established('eph-sealed');
    const env = await sealEphemeral(ctx, alice.store, b, text('typing'));
    const r = await receiveSealed(ctx, bob.store, env);
    expect(r).toMatchObject({ kind: 'ephemeral' });
    const again = await receiveSealed(ctx, bob.store, env);
    expect(again).toMatchObject({ kind: 'failed', ephemeral: true, error: { code: CryptoErrorCode.STALE_EPHEMERAL } });
    expect((again as { report?: Uint8Array }).report).toBeUndefined();
    // A signal under a session the receiver does not hold (its first durable message is on its way):
    // failed, flagged ephemeral (the SDK drops it quietly), nothing to report.
    const carol = await makeDevice(ctx, 'carol');
    const c = await initiateSession(ctx, alice.store, await bundleOf(ctx, carol));
    const unopened = await receiveSealed(ctx, carol.store, await sealEphemeral(ctx, alice.store, c, text('typing')));
    expect(unopened).toMatchObject({ kind: 'failed', ephemeral: true, error: { code: CryptoErrorCode.UNKNOWN_SESSION } });
    expect((unopened as { report?: Uint8Array }).report).toBeUndefined();
  });
});

/** Delivers `env` to `to`; a failure's report goes back to the sender, whose session may reset. */
async function deliver(ctx: ReturnType<typeof testContext>, to: TestDevice, from: TestDevice, env: Uint8Array): Promise<ReceivedEnvelope> {
  const r = await receiveSealed(ctx, to.store, env);
  if (r.kind === 'failed' && r.report) {
    const back = await receiveSealed(ctx, from.store, r.report);
    expect(back.kind).toBe('decryption-error');
  }
  return r;
}

describe('decryption-error messages', () => {
  it('1,002 lost durable messages: the receiver reports once, the sender restarts, and re-sent and later messages decrypt', async () => {
    const { ctx, alice, bob, b } = await established('lost-durable');
    for (let i = 0; i < MAX_SKIP + 2; i++) await sealMessage(ctx, alice.store, b, text(`lost ${i}`));
    const outbox: string[] = [];
    for (let i = 0; i < 4; i++) outbox.push(`later ${i}`);
    const envs = [];
    for (const t of outbox) envs.push(await sealMessage(ctx, alice.store, b, text(t)));
    const first = await deliver(ctx, bob, alice, envs[0]!);
    expect(first).toMatchObject({ kind: 'failed', error: { code: CryptoErrorCode.TOO_FAR_AHEAD } });
    expect((first as { report?: Uint8Array }).report).toBeInstanceOf(Uint8Array);
    // The rest fail too, but the report is rate-limited.
    for (const env of envs.slice(1)) {
      const r = await receiveSealed(ctx, bob.store, env);
      expect(r).toMatchObject({ kind: 'failed', error: { code: CryptoErrorCode.TOO_FAR_AHEAD } });
      expect((r as { report?: Uint8Array }).report).toBeUndefined();
    }
    // Alice's session was dropped by the report: the app starts a fresh one and re-sends its outbox.
    expect(await hasSession(ctx, alice.store, b)).toBe(false);
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob));
    for (const t of outbox) expect(message(await deliver(ctx, bob, alice, await sealMessage(ctx, alice.store, b, text(t))))).toBe(t);
    const reply = await sealMessage(ctx, bob.store, deviceAddress(alice.certificate), text('got them'));
    expect(message(await deliver(ctx, alice, bob, reply))).toBe('got them');
    expect(message(await deliver(ctx, bob, alice, await sealMessage(ctx, alice.store, b, text('great'))))).toBe('great');
  });

  it('a message whose prekey is gone is reported with its base key; the report resets exactly that session', async () => {
    const ctx = testContext('prekey-gone');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    const b = deviceAddress(bob.certificate);
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob, { oneTime: false }));
    const env = await sealMessage(ctx, alice.store, b, text('first'));
    await bob.store.removeSignedPreKey(1); // rotated away (and past its grace period)
    const { X25519PreKeyPair } = await import('../../src/prekeys.js');
    const spk = X25519PreKeyPair.generate(ctx, 2);
    await bob.store.storeSignedPreKey(spk);
    Object.assign(bob, { signedPreKey: spk });
    const r = await receiveSealed(ctx, bob.store, env);
    expect(r).toMatchObject({ kind: 'failed', error: { code: CryptoErrorCode.UNKNOWN_PREKEY } });
    const back = await receiveSealed(ctx, alice.store, (r as { report: Uint8Array }).report);
    expect(back).toMatchObject({ kind: 'decryption-error', sessionReset: true, report: { reason: CryptoErrorCode.UNKNOWN_PREKEY } });
    expect(await hasSession(ctx, alice.store, b)).toBe(false);
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob, { oneTime: false }));
    expect(message(await receiveSealed(ctx, bob.store, await sealMessage(ctx, alice.store, b, text('first, again'))))).toBe('first, again');
  });

  it('a report naming no base key never resets a pending session; one naming another session resets nothing', async () => {
    const { ctx, alice, bob, a, b } = await established('no-reset');
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob)); // Alice restarts: pending
    const noKey = { type: MessageType.DecryptionError, body: encodeDecryptionError({ reason: CryptoErrorCode.UNKNOWN_SESSION, failedAt: 1 }) };
    expect(await receiveMessage(ctx, alice.store, bob.certificate, noKey)).toMatchObject({ kind: 'decryption-error', sessionReset: false });
    const other = { type: MessageType.DecryptionError, body: encodeDecryptionError({ reason: CryptoErrorCode.BAD_MAC, failedAt: 1, baseKey: new Uint8Array(32).fill(7) }) };
    expect(await receiveMessage(ctx, alice.store, bob.certificate, other)).toMatchObject({ kind: 'decryption-error', sessionReset: false });
    expect(await hasSession(ctx, alice.store, b)).toBe(true);
    void a;
  });

  it('reports are rate-limited per peer device and allowed again after the interval', async () => {
    const { ctx, alice, bob, b } = await established('rate');
    for (let i = 0; i < MAX_SKIP + 2; i++) await sealMessage(ctx, alice.store, b, text('x'));
    const e1 = await sealMessage(ctx, alice.store, b, text('y'));
    const r1 = await receiveSealed(ctx, bob.store, e1);
    expect((r1 as { report?: Uint8Array }).report).toBeDefined();
    expect((await receiveSealed(ctx, bob.store, e1) as { report?: Uint8Array }).report).toBeUndefined();
    ctx.clock.advance(DECRYPTION_ERROR_MIN_INTERVAL_MS);
    expect((await receiveSealed(ctx, bob.store, e1) as { report?: Uint8Array }).report).toBeDefined();
  });

  it('duplicates are not reported', async () => {
    const { ctx, alice, bob, b } = await established('dup');
    const env = await sealMessage(ctx, alice.store, b, text('once'));
    expect(message(await receiveSealed(ctx, bob.store, env))).toBe('once');
    const again = await receiveSealed(ctx, bob.store, env);
    expect(again).toMatchObject({ kind: 'failed', error: { code: CryptoErrorCode.DUPLICATE_MESSAGE } });
    expect((again as { report?: Uint8Array }).report).toBeUndefined();
  });

  it('report encoding round-trips and refuses malformed bytes with a code', () => {
    const r = { reason: CryptoErrorCode.SKIPPED_KEY_EVICTED, failedAt: 1_700_000_000_000, baseKey: new Uint8Array(32).fill(9) };
    expect(decodeDecryptionError(encodeDecryptionError(r))).toEqual(r);
    const bytes = encodeDecryptionError(r);
    expect(() => decodeDecryptionError(bytes.subarray(0, 5))).toThrow(expect.objectContaining({ code: CryptoErrorCode.MALFORMED }));
    expect(() => decodeDecryptionError(Uint8Array.of(2, ...bytes.subarray(1)))).toThrow(expect.objectContaining({ code: CryptoErrorCode.UNSUPPORTED_VERSION }));
    expect(() => decodeDecryptionError(Uint8Array.of(1, 99, ...bytes.subarray(2)))).toThrow(expect.objectContaining({ code: CryptoErrorCode.MALFORMED }));
    expect(() => encodeDecryptionError({ reason: CryptoErrorCode.DUPLICATE_MESSAGE, failedAt: 0 })).toThrow(RangeError);
  });
});

describe('pending sessions and stored state', () => {
  it(`a session never answered is not used after PENDING_SESSION_MAX_AGE_MS`, async () => {
    const ctx = testContext('pending');
    const alice = await makeDevice(ctx, 'alice');
    const bob = await makeDevice(ctx, 'bob');
    const b = deviceAddress(bob.certificate);
    await initiateSession(ctx, alice.store, await bundleOf(ctx, bob));
    ctx.clock.advance(PENDING_SESSION_MAX_AGE_MS);
    expect(await hasSession(ctx, alice.store, b)).toBe(true);
    ctx.clock.advance(1);
    expect(await hasSession(ctx, alice.store, b)).toBe(false);
    await expect(encryptMessage(ctx, alice.store, b, text('x'))).rejects.toMatchObject({ code: CryptoErrorCode.UNKNOWN_SESSION });
    // An answered session never expires.
    const { ctx: c2, alice: a2, b: b2 } = await established('answered');
    c2.clock.advance(10 * PENDING_SESSION_MAX_AGE_MS);
    expect(await hasSession(c2, a2.store, b2)).toBe(true);
  });

  it('v1 session records and ratchet states are refused with UNSUPPORTED_VERSION, never misread', async () => {
    const { alice, b } = await established('v1');
    const bytes = (await alice.store.loadSession(b))!;
    const v1 = Uint8Array.from(bytes);
    v1[0] = 1;
    expect(() => deserializeSessionRecord(v1)).toThrow(expect.objectContaining({ code: CryptoErrorCode.UNSUPPORTED_VERSION }));
    const { deserializeRatchetState, serializeRatchetState } = await import('../../src/ratchet.js');
    const state = serializeRatchetState(deserializeSessionRecord(bytes).current!.ratchet);
    state[0] = 1;
    expect(() => deserializeRatchetState(state)).toThrow(expect.objectContaining({ code: CryptoErrorCode.UNSUPPORTED_VERSION }));
  });
});

import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { concatBytes, copyBytes, equalBytes, toHex, utf8 } from '../../src/bytes.js';
import {
  MAX_PREVIOUS_HEADER_KEYS,
  MAX_SKIP,
  MAX_SKIPPED_KEY_CHAINS,
  MAX_SKIPPED_KEYS,
  SKIPPED_KEY_MAX_AGE_MS,
  RATCHET_WIRE_VERSION as WIRE_VERSION,
} from '../../src/constants.js';
import { CryptoErrorCode } from '../../src/errors.js';
import { nobleBackend } from '../../src/primitives/noble.js';
import type { RatchetState } from '../../src/ratchet.js';
import {
  RATCHET_ENCRYPTED_HEADER_LENGTH,
  RATCHET_MESSAGE_OVERHEAD,
  canEncrypt,
  deserializeRatchetState,
  hasReceivedMessage,
  initRatchetAsInitiator,
  initRatchetAsResponder,
  ratchetDecrypt,
  ratchetEncrypt,
  ratchetStateSummary,
  serializeRatchetState,
} from '../../src/ratchet.js';
import { type Pair, cryptoErrorOf, makePair, snapshot } from './_helpers.js';

const pt = (i: number | string): Uint8Array => utf8(`message ${i}`);

/** Sends `count` messages from one side; returns the messages and the advanced sender. */
function send(p: Pair, from: 'alice' | 'bob', count: number, tag = ''): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const r = ratchetEncrypt(from === 'alice' ? p.ctxA : p.ctxB, p[from], pt(`${from}${tag}${i}`));
    p[from] = r.state;
    out.push(r.message);
  }
  return out;
}

function recv(p: Pair, to: 'alice' | 'bob', message: Uint8Array): Uint8Array {
  const r = ratchetDecrypt(to === 'alice' ? p.ctxA : p.ctxB, p[to], message);
  p[to] = r.state;
  return r.plaintext;
}

/** Asserts that decrypting fails with `code` and leaves the state byte-identical. */
function expectFailure(p: Pair, to: 'alice' | 'bob', message: Uint8Array, code: string): void {
  const before = snapshot(p[to]);
  const err = cryptoErrorOf(() => ratchetDecrypt(to === 'alice' ? p.ctxA : p.ctxB, p[to], message));
  expect(err.code).toBe(code);
  expect(snapshot(p[to])).toBe(before);
}

const text = (b: Uint8Array): string => new TextDecoder().decode(b);

describe('ratchet round trips', () => {
  it('alternating conversation, message layout and accessors', () => {
    const p = makePair();
    expect(hasReceivedMessage(p.alice)).toBe(false);
    expect(canEncrypt(p.alice)).toBe(true);
    expect(canEncrypt(p.bob)).toBe(false);
    expect(cryptoErrorOf(() => ratchetEncrypt(p.ctxB, p.bob, pt(0))).code).toBe(CryptoErrorCode.INVALID_ARGUMENT);
    for (let round = 0; round < 5; round++) {
      const [m] = send(p, 'alice', 1, `r${round}`);
      expect(m!.length).toBe(RATCHET_MESSAGE_OVERHEAD + pt(`alicer${round}0`).length);
      expect(m![0]).toBe(WIRE_VERSION);
      expect(text(recv(p, 'bob', m!))).toBe(`message alicer${round}0`);
      expect(hasReceivedMessage(p.bob)).toBe(true);
      expect(canEncrypt(p.bob)).toBe(true);
      const [r] = send(p, 'bob', 1, `r${round}`);
      expect(text(recv(p, 'alice', r!))).toBe(`message bobr${round}0`);
      expect(hasReceivedMessage(p.alice)).toBe(true);
    }
    expect(ratchetStateSummary(p.alice)).toMatchObject({ role: 'initiator', sendingIndex: 0, receivingIndex: 1, skippedKeyCount: 0 });
  });

  it('long one-way runs, empty and large plaintexts', () => {
    const p = makePair('02');
    const msgs = send(p, 'alice', 50);
    msgs.forEach((m, i) => expect(text(recv(p, 'bob', m))).toBe(`message alice${i}`));
    const big = new Uint8Array(100_000).map((_, i) => i * 7);
    const e = ratchetEncrypt(p.ctxB, p.bob, big);
    expect(equalBytes(ratchetDecrypt(p.ctxA, p.alice, e.message).plaintext, big)).toBe(true);
    const empty = ratchetEncrypt(p.ctxA, p.alice, new Uint8Array(0));
    expect(ratchetDecrypt(p.ctxB, p.bob, empty.message).plaintext.length).toBe(0);
  });

  it('never mutates its inputs: states, plaintexts, messages', () => {
    const p = makePair('03');
    const a0 = snapshot(p.alice);
    const plain = pt('x');
    const plainCopy = copyBytes(plain);
    const { message } = ratchetEncrypt(p.ctxA, p.alice, plain);
    expect(snapshot(p.alice)).toBe(a0);
    expect(equalBytes(plain, plainCopy)).toBe(true);
    const msgCopy = copyBytes(message);
    const b0 = snapshot(p.bob);
    ratchetDecrypt(p.ctxB, p.bob, message);
    expect(snapshot(p.bob)).toBe(b0);
    expect(equalBytes(message, msgCopy)).toBe(true);
  });

  it('does not retain caller-owned init buffers', () => {
    const p = makePair('04');
    const ss = copyBytes(p.sharedSecret);
    const ad = copyBytes(p.associatedData);
    const sk = new Uint8Array(32).fill(9);
    const kp = { secretKey: sk, publicKey: nobleBackend.x25519PublicKey(sk) };
    const bob = initRatchetAsResponder(p.ctxB, { sharedSecret: ss, associatedData: ad, ownRatchetKeyPair: kp });
    const alice = initRatchetAsInitiator(p.ctxA, { sharedSecret: ss, associatedData: ad, remoteRatchetKey: kp.publicKey });
    ss.fill(0);
    ad.fill(0);
    sk.fill(0);
    kp.publicKey.fill(0);
    const { message } = ratchetEncrypt(p.ctxA, alice, pt(1));
    expect(text(ratchetDecrypt(p.ctxB, bob, message).plaintext)).toBe('message 1');
  });

  it('rejects bad init arguments', () => {
    const p = makePair('05');
    const kp = { secretKey: new Uint8Array(32).fill(1), publicKey: new Uint8Array(32).fill(2) };
    expect(cryptoErrorOf(() => initRatchetAsResponder(p.ctxB, { sharedSecret: p.sharedSecret, associatedData: p.associatedData, ownRatchetKeyPair: kp })).code).toBe(
      CryptoErrorCode.INVALID_KEY,
    );
    expect(() => initRatchetAsInitiator(p.ctxA, { sharedSecret: new Uint8Array(31), associatedData: p.associatedData, remoteRatchetKey: new Uint8Array(32).fill(9) })).toThrow(RangeError);
    expect(() => initRatchetAsInitiator(p.ctxA, { sharedSecret: p.sharedSecret, associatedData: p.associatedData, remoteRatchetKey: new Uint8Array(33) })).toThrow(RangeError);
    // A low-order remote ratchet key (u = 0) yields an all-zero DH: refused, never keyed.
    expect(cryptoErrorOf(() => initRatchetAsInitiator(p.ctxA, { sharedSecret: p.sharedSecret, associatedData: p.associatedData, remoteRatchetKey: new Uint8Array(32) })).code).toBe(
      CryptoErrorCode.LOW_ORDER_POINT,
    );
    expect(() => ratchetEncrypt(p.ctxA, {} as RatchetState, pt(0))).toThrow(TypeError);
  });
});

describe('out-of-order delivery, duplicates, limits', () => {
  it('skipped keys in the current chain, then duplicates', () => {
    const p = makePair('10');
    const m = send(p, 'alice', 5);
    expect(text(recv(p, 'bob', m[3]!))).toBe('message alice3');
    expect(ratchetStateSummary(p.bob).skippedKeyCount).toBe(3);
    expect(text(recv(p, 'bob', m[1]!))).toBe('message alice1');
    expect(text(recv(p, 'bob', m[0]!))).toBe('message alice0');
    expectFailure(p, 'bob', m[3]!, CryptoErrorCode.DUPLICATE_MESSAGE);
    expectFailure(p, 'bob', m[1]!, CryptoErrorCode.DUPLICATE_MESSAGE);
    expect(text(recv(p, 'bob', m[4]!))).toBe('message alice4');
    expect(text(recv(p, 'bob', m[2]!))).toBe('message alice2');
    expect(ratchetStateSummary(p.bob).skippedKeyCount).toBe(0);
    expectFailure(p, 'bob', m[2]!, CryptoErrorCode.DUPLICATE_MESSAGE);
  });

  it('messages of a finished chain arrive after the DH ratchet moved on', () => {
    const p = makePair('11');
    const a1 = send(p, 'alice', 4, 'c1');
    recv(p, 'bob', a1[0]!);
    const b1 = send(p, 'bob', 1);
    recv(p, 'alice', b1[0]!);
    const a2 = send(p, 'alice', 2, 'c2');
    // Bob ratchets on a2[1]: skips a1[1..3] (PN = 4) and a2[0].
    expect(text(recv(p, 'bob', a2[1]!))).toBe('message alicec21');
    expect(ratchetStateSummary(p.bob).skippedKeyCount).toBe(4);
    expect(text(recv(p, 'bob', a1[2]!))).toBe('message alicec12');
    expect(text(recv(p, 'bob', a2[0]!))).toBe('message alicec20');
    expect(text(recv(p, 'bob', a1[3]!))).toBe('message alicec13');
    expect(text(recv(p, 'bob', a1[1]!))).toBe('message alicec11');
    // Late duplicates from the finished chain are classified, not undecryptable.
    for (const m of [...a1, ...a2]) expectFailure(p, 'bob', m, CryptoErrorCode.DUPLICATE_MESSAGE);
  });

  it(`duplicates from the last ${MAX_PREVIOUS_HEADER_KEYS} finished chains are DUPLICATE_MESSAGE, older ones UNKNOWN_SESSION`, () => {
    const p = makePair('12');
    const firsts: Uint8Array[] = [];
    for (let turn = 0; turn < MAX_PREVIOUS_HEADER_KEYS + 2; turn++) {
      const [a] = send(p, 'alice', 1, `t${turn}`);
      recv(p, 'bob', a!);
      firsts.push(a!);
      recv(p, 'alice', send(p, 'bob', 1, `t${turn}`)[0]!);
    }
    // firsts[last] is in Bob's current chain; the MAX_PREVIOUS_HEADER_KEYS before it are remembered.
    const n = firsts.length;
    expectFailure(p, 'bob', firsts[n - 1]!, CryptoErrorCode.DUPLICATE_MESSAGE);
    for (let i = n - 1 - MAX_PREVIOUS_HEADER_KEYS; i < n - 1; i++) expectFailure(p, 'bob', firsts[i]!, CryptoErrorCode.DUPLICATE_MESSAGE);
    expectFailure(p, 'bob', firsts[n - 2 - MAX_PREVIOUS_HEADER_KEYS]!, CryptoErrorCode.UNKNOWN_SESSION);
  });

  it(`TOO_FAR_AHEAD beyond MAX_SKIP (${MAX_SKIP}) in the current chain; exactly MAX_SKIP is fine`, () => {
    const p = makePair('13');
    const m = send(p, 'alice', MAX_SKIP + 3);
    recv(p, 'bob', m[0]!);
    // Nr = 1: m[1 + MAX_SKIP + 1] needs MAX_SKIP + 1 skipped keys.
    expectFailure(p, 'bob', m[MAX_SKIP + 2]!, CryptoErrorCode.TOO_FAR_AHEAD);
    expect(text(recv(p, 'bob', m[MAX_SKIP + 1]!))).toBe(`message alice${MAX_SKIP + 1}`);
    expect(ratchetStateSummary(p.bob).skippedKeyCount).toBe(MAX_SKIP);
    expect(text(recv(p, 'bob', m[MAX_SKIP + 2]!))).toBe(`message alice${MAX_SKIP + 2}`);
  });

  it('TOO_FAR_AHEAD for N and for PN across a DH ratchet', () => {
    const p = makePair('14');
    // N > MAX_SKIP in the very first (ratcheting) message.
    const m = send(p, 'alice', MAX_SKIP + 2);
    expectFailure(p, 'bob', m[MAX_SKIP + 1]!, CryptoErrorCode.TOO_FAR_AHEAD);
    recv(p, 'bob', m[MAX_SKIP]!);
    // PN: Bob's chain grows by MAX_SKIP + 2 unseen messages before Alice's next ratchet.
    const q = makePair('15');
    recv(q, 'bob', send(q, 'alice', 1)[0]!);
    const b = send(q, 'bob', MAX_SKIP + 2);
    recv(q, 'alice', b[0]!);
    const [a] = send(q, 'alice', 1);
    recv(q, 'bob', a!);
    const b2 = send(q, 'bob', 1);
    // Alice has Nr = 1, PN = MAX_SKIP + 2 → MAX_SKIP + 1 keys to skip.
    expectFailure(q, 'alice', b2[0]!, CryptoErrorCode.TOO_FAR_AHEAD);
    recv(q, 'alice', b[1]!);
    expect(text(recv(q, 'alice', b2[0]!))).toBe('message bob0');
  });

  it(`evicts the oldest skipped keys beyond MAX_SKIPPED_KEYS (${MAX_SKIPPED_KEYS})`, () => {
    const p = makePair('16');
    const chains: Uint8Array[][] = [];
    // Three chains of MAX_SKIP + 1 messages each, only the last of each delivered.
    for (let c = 0; c < 3; c++) {
      const m = send(p, 'alice', MAX_SKIP + 1, `c${c}`);
      chains.push(m);
      recv(p, 'bob', m[MAX_SKIP]!);
      recv(p, 'alice', send(p, 'bob', 1, `c${c}`)[0]!);
    }
    expect(ratchetStateSummary(p.bob).skippedKeyCount).toBe(MAX_SKIPPED_KEYS);
    // 3 × MAX_SKIP were skipped; the oldest MAX_SKIP are gone, oldest first — and reported as evicted.
    expectFailure(p, 'bob', chains[0]![MAX_SKIP - 1]!, CryptoErrorCode.SKIPPED_KEY_EVICTED);
    expectFailure(p, 'bob', chains[0]![MAX_SKIP]!, CryptoErrorCode.DUPLICATE_MESSAGE);
    expect(ratchetStateSummary(p.bob).lostKeyCount).toBe(MAX_SKIP);
    expect(text(recv(p, 'bob', chains[1]![0]!))).toBe('message alicec10');
    expect(text(recv(p, 'bob', chains[2]![5]!))).toBe('message alicec25');
  });

  it(`evicts skipped keys of the oldest chain beyond MAX_SKIPPED_KEY_CHAINS (${MAX_SKIPPED_KEY_CHAINS})`, () => {
    const p = makePair('17');
    const lost: Uint8Array[] = [];
    for (let c = 0; c < MAX_SKIPPED_KEY_CHAINS + 1; c++) {
      const m = send(p, 'alice', 2, `c${c}`);
      lost.push(m[0]!);
      recv(p, 'bob', m[1]!);
      recv(p, 'alice', send(p, 'bob', 1, `c${c}`)[0]!);
    }
    expect(ratchetStateSummary(p.bob).skippedChainCount).toBe(MAX_SKIPPED_KEY_CHAINS);
    // The first chain is beyond the previous-header-key window too, but its lost-key record keeps
    // its header key: the message is reported as evicted, not as foreign.
    expectFailure(p, 'bob', lost[0]!, CryptoErrorCode.SKIPPED_KEY_EVICTED);
    expect(text(recv(p, 'bob', lost[1]!))).toBe('message alicec10');
    expect(text(recv(p, 'bob', lost[MAX_SKIPPED_KEY_CHAINS]!))).toBe(`message alicec${MAX_SKIPPED_KEY_CHAINS}0`);
  });

  it('skipped keys expire after SKIPPED_KEY_MAX_AGE_MS', () => {
    const p = makePair('18');
    const m = send(p, 'alice', 4);
    recv(p, 'bob', m[3]!);
    p.clock.advance(SKIPPED_KEY_MAX_AGE_MS);
    expect(text(recv(p, 'bob', m[0]!))).toBe('message alice0');
    p.clock.advance(1);
    // Expired but not yet pruned: refused without changing state.
    expectFailure(p, 'bob', m[1]!, CryptoErrorCode.SKIPPED_KEY_EXPIRED);
    expect(ratchetStateSummary(p.bob).skippedKeyCount).toBe(2);
    // The next state produced prunes them, keeping a record of each.
    const r = ratchetEncrypt(p.ctxB, p.bob, pt('reply'));
    expect(ratchetStateSummary(r.state).skippedKeyCount).toBe(0);
    expect(ratchetStateSummary(r.state).lostKeyCount).toBe(2);
    expect(cryptoErrorOf(() => ratchetDecrypt(p.ctxB, r.state, m[2]!)).code).toBe(CryptoErrorCode.SKIPPED_KEY_EXPIRED);
  });
});

describe('failures are clean and typed', () => {
  it('tampering anywhere fails with a typed error and leaves the state byte-identical', () => {
    const p = makePair('20');
    const [m] = send(p, 'alice', 1);
    for (let i = 0; i < m!.length; i++) {
      const bad = copyBytes(m!);
      bad[i]! ^= 0x01;
      // The version byte, then the encrypted header (opens under no key: not this session's), then the body.
      const code = i === 0 ? CryptoErrorCode.UNSUPPORTED_VERSION : i < 1 + RATCHET_ENCRYPTED_HEADER_LENGTH ? CryptoErrorCode.UNKNOWN_SESSION : CryptoErrorCode.BAD_MAC;
      expectFailure(p, 'bob', bad, code);
    }
    expectFailure(p, 'bob', m!.subarray(0, RATCHET_MESSAGE_OVERHEAD - 1), CryptoErrorCode.MALFORMED);
    expectFailure(p, 'bob', new Uint8Array(0), CryptoErrorCode.MALFORMED);
    expectFailure(p, 'bob', concatBytes(m!, Uint8Array.of(0)), CryptoErrorCode.BAD_MAC);
    expect(text(recv(p, 'bob', m!))).toBe('message alice0');
  });

  it('a message from another session fails with UNKNOWN_SESSION, even with the same keys but different AD', () => {
    const p = makePair('21');
    const q = makePair('22');
    recv(p, 'bob', send(p, 'alice', 1)[0]!);
    recv(q, 'bob', send(q, 'alice', 1)[0]!);
    for (const m of [...send(q, 'alice', 2), ...send(q, 'bob', 1)]) {
      expectFailure(p, 'bob', m, CryptoErrorCode.UNKNOWN_SESSION);
      expectFailure(p, 'alice', m, CryptoErrorCode.UNKNOWN_SESSION);
    }
    // Same SK and keys, different AD (e.g. a different identity pair): the header AEAD refuses it.
    const sk = new Uint8Array(32).fill(3);
    const kp = { secretKey: sk, publicKey: nobleBackend.x25519PublicKey(sk) };
    const a = initRatchetAsInitiator(p.ctxA, { sharedSecret: p.sharedSecret, associatedData: utf8('ad-1'), remoteRatchetKey: kp.publicKey });
    const b = initRatchetAsResponder(p.ctxB, { sharedSecret: p.sharedSecret, associatedData: utf8('ad-2'), ownRatchetKeyPair: kp });
    const { message } = ratchetEncrypt(p.ctxA, a, pt(0));
    expect(cryptoErrorOf(() => ratchetDecrypt(p.ctxB, b, message)).code).toBe(CryptoErrorCode.UNKNOWN_SESSION);
  });

  it('a peer ratchet key of low order (header under a valid key) fails with LOW_ORDER_POINT, state unchanged', () => {
    const p = makePair('24');
    // Responder before its first message: NHKr sits at bytes 131..163 of the storage encoding.
    const nhkr = serializeRatchetState(p.bob).subarray(131, 163);
    const header = new Uint8Array(40); // dh = 0 (low order), PN = 0, N = 0
    const nonce = new Uint8Array(12).fill(5);
    const enc = nobleBackend.aes256GcmEncrypt(nhkr, nonce, header, concatBytes(p.associatedData, Uint8Array.of(WIRE_VERSION)));
    const forged = concatBytes(Uint8Array.of(WIRE_VERSION), nonce, enc, new Uint8Array(20));
    expectFailure(p, 'bob', forged, CryptoErrorCode.LOW_ORDER_POINT);
    expect(text(recv(p, 'bob', send(p, 'alice', 1)[0]!))).toBe('message alice0');
  });

  it('a forged header under a valid header key with a bad body leaves no trace (no ratchet, no skipped keys)', () => {
    const p = makePair('23');
    const m = send(p, 'alice', 3);
    const forged = copyBytes(m[2]!);
    forged[forged.length - 1]! ^= 0x80;
    expectFailure(p, 'bob', forged, CryptoErrorCode.BAD_MAC);
    recv(p, 'bob', m[0]!);
    expectFailure(p, 'bob', forged, CryptoErrorCode.BAD_MAC);
    expect(ratchetStateSummary(p.bob).skippedKeyCount).toBe(0);
  });
});

describe('security properties', () => {
  it('forward secrecy: a captured current state cannot decrypt already-received messages', () => {
    const p = makePair('30');
    const m = send(p, 'alice', 3);
    recv(p, 'bob', m[0]!);
    recv(p, 'bob', m[2]!);
    recv(p, 'bob', m[1]!);
    const r = send(p, 'bob', 1);
    recv(p, 'alice', r[0]!);
    const a2 = send(p, 'alice', 1);
    recv(p, 'bob', a2[0]!);
    const captured = deserializeRatchetState(serializeRatchetState(p.bob));
    for (const old of [...m, ...a2]) {
      const err = cryptoErrorOf(() => ratchetDecrypt(p.ctxB, captured, old));
      expect([CryptoErrorCode.DUPLICATE_MESSAGE, CryptoErrorCode.UNKNOWN_SESSION]).toContain(err.code);
    }
    // And no key in the captured state opens the body of an old message by brute force either.
    const secret = serializeRatchetState(captured);
    const keys: Uint8Array[] = [];
    for (let i = 0; i + 32 <= secret.length; i++) keys.push(secret.subarray(i, i + 32));
    for (const old of m) {
      const body = old.subarray(1 + RATCHET_ENCRYPTED_HEADER_LENGTH);
      for (const k of keys) expect(() => nobleBackend.aes256GcmDecrypt(k, new Uint8Array(12), body, new Uint8Array(0))).toThrow();
    }
  });

  it('post-compromise security: after a DH round trip an old captured state no longer decrypts', () => {
    const p = makePair('31');
    recv(p, 'bob', send(p, 'alice', 1)[0]!);
    recv(p, 'alice', send(p, 'bob', 1)[0]!);
    const stolenBob = deserializeRatchetState(serializeRatchetState(p.bob));
    // While the attacker's copy is current it reads Alice's next messages…
    const early = send(p, 'alice', 1)[0]!;
    expect(text(ratchetDecrypt(p.ctxB, stolenBob, early).plaintext)).toBe('message alice0');
    recv(p, 'bob', early);
    // …but after one DH round trip (Bob → Alice → Bob) with fresh randomness it no longer does.
    recv(p, 'alice', send(p, 'bob', 1, 'heal')[0]!);
    const later = send(p, 'alice', 2, 'after');
    for (const m of later) expect(cryptoErrorOf(() => ratchetDecrypt(p.ctxB, stolenBob, m)).code).toBe(CryptoErrorCode.UNKNOWN_SESSION);
    expect(text(recv(p, 'bob', later[1]!))).toBe('message aliceafter1');
  });

  it('inspect, toString and JSON.stringify print no secret bytes', () => {
    const p = makePair('32');
    const m = send(p, 'alice', 3);
    recv(p, 'bob', m[2]!);
    const bytes = serializeRatchetState(p.bob);
    const printed = [inspect(p.bob, { showHidden: true, depth: 10 }), String(p.bob), JSON.stringify(p.bob), JSON.stringify({ s: p.bob })].join('\n');
    expect(printed).toContain('RatchetState');
    expect(printed).toContain('[redacted]');
    // No 8-byte window of the serialized state (which holds every secret) appears in hex.
    const hex = toHex(bytes);
    for (let i = 3 * 2; i + 16 <= hex.length; i += 16) expect(printed).not.toContain(hex.slice(i, i + 16));
    expect(Object.keys(p.bob)).toEqual([]);
  });
});

describe('storage format', () => {
  it('round-trips every kind of state and keeps working after reload', () => {
    const p = makePair('40');
    const check = (s: RatchetState): RatchetState => {
      const bytes = serializeRatchetState(s);
      const back = deserializeRatchetState(bytes);
      expect(toHex(serializeRatchetState(back))).toBe(toHex(bytes));
      return back;
    };
    check(p.alice);
    check(p.bob);
    const m = send(p, 'alice', 4);
    p.bob = check(p.bob);
    recv(p, 'bob', m[3]!);
    p.bob = check(p.bob);
    recv(p, 'alice', send(p, 'bob', 2)[1]!);
    p.alice = check(p.alice);
    p.bob = check(p.bob);
    expect(text(recv(p, 'bob', m[1]!))).toBe('message alice1');
    expect(ratchetStateSummary(p.bob).skippedKeyCount).toBe(2);
  });

  it('rejects other versions and malformed records with typed errors', () => {
    const p = makePair('41');
    const bytes = serializeRatchetState(p.alice);
    const v = copyBytes(bytes);
    v[0] = 99;
    expect(cryptoErrorOf(() => deserializeRatchetState(v)).code).toBe(CryptoErrorCode.UNSUPPORTED_VERSION);
    expect(cryptoErrorOf(() => deserializeRatchetState(bytes.subarray(0, bytes.length - 1))).code).toBe(CryptoErrorCode.MALFORMED);
    expect(cryptoErrorOf(() => deserializeRatchetState(concatBytes(bytes, Uint8Array.of(0)))).code).toBe(CryptoErrorCode.MALFORMED);
    const role = copyBytes(bytes);
    role[1] = 7;
    expect(cryptoErrorOf(() => deserializeRatchetState(role)).code).toBe(CryptoErrorCode.MALFORMED);
    expect(cryptoErrorOf(() => deserializeRatchetState(new Uint8Array(0))).code).toBe(CryptoErrorCode.MALFORMED);
    expect(() => deserializeRatchetState('x' as unknown as Uint8Array)).toThrow(TypeError);
  });
});

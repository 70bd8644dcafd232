/**
 * Random conversations between the two parties with reordering, loss, duplication, tampering and
 * foreign messages. The model: every message decrypts exactly once (on its first delivery, as
 * long as no limit forced an eviction), every later delivery is DUPLICATE_MESSAGE (or, past the
 * duplicate window, UNKNOWN_SESSION) and never "evicted", a first delivery that fails is
 * SKIPPED_KEY_EVICTED (never DUPLICATE_MESSAGE while the lost-key records are within their limits),
 * every failure is a typed CryptoError and leaves the receiver's state byte-identical.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { copyBytes, equalBytes, u32be } from '../../src/bytes.js';
import { MAX_LOST_KEY_CHAINS, MAX_LOST_KEYS, MAX_PREVIOUS_HEADER_KEYS, MAX_SKIPPED_KEY_CHAINS, MAX_SKIPPED_KEYS } from '../../src/constants.js';
import { CryptoError, CryptoErrorCode } from '../../src/errors.js';
import { canEncrypt, ratchetDecrypt, ratchetEncrypt, ratchetStateSummary } from '../../src/ratchet.js';
import { DEEP, FC_SEED, makePair, snapshot } from './_helpers.js';

type Party = 'alice' | 'bob';
type Action =
  | { kind: 'send'; from: 0 | 1; size: number }
  | { kind: 'deliver'; pick: number }
  | { kind: 'deliverLatest'; to: 0 | 1 }
  | { kind: 'tamper'; pick: number; pos: number; bit: number }
  | { kind: 'foreign'; to: 0 | 1; pick: number };

const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('send' as const), from: fc.constantFrom(0 as const, 1 as const), size: fc.nat({ max: 64 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('deliver' as const), pick: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('deliverLatest' as const), to: fc.constantFrom(0 as const, 1 as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('tamper' as const), pick: fc.nat(), pos: fc.nat(), bit: fc.nat({ max: 7 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('foreign' as const), to: fc.constantFrom(0 as const, 1 as const), pick: fc.nat() }) },
);

interface Sent {
  to: Party;
  message: Uint8Array;
  plaintext: Uint8Array;
  /** Successful decryptions so far (must end ≤ 1). */
  delivered: number;
}

const FOREIGN = (() => {
  const q = makePair('f0');
  const out: Uint8Array[] = [];
  for (let i = 0; i < 4; i++) {
    const r = ratchetEncrypt(q.ctxA, q.alice, u32be(i));
    q.alice = r.state;
    out.push(r.message);
  }
  const d = ratchetDecrypt(q.ctxB, q.bob, out[0]!);
  out.push(ratchetEncrypt(q.ctxB, d.state, u32be(9)).message);
  return out;
})();

function run(seedHex: string, actions: Action[]): { messages: number } {
  const p = makePair(seedHex);
  const ctx = { alice: p.ctxA, bob: p.ctxB };
  const sent: Sent[] = [];
  // Once a limit may have evicted keys, a first delivery may legitimately fail.
  const mayHaveEvicted = { alice: false, bob: false };
  // Once the lost-key records reach their limits, an evicted key may also have lost its record.
  const mayHaveDroppedRecords = { alice: false, bob: false };
  let counter = 0;

  const deliver = (m: Sent, message: Uint8Array, tampered: boolean): void => {
    const to = m.to;
    const before = snapshot(p[to]);
    let result: { state: typeof p.alice; plaintext: Uint8Array } | undefined;
    let error: unknown;
    try {
      result = ratchetDecrypt(ctx[to], p[to], message);
    } catch (e) {
      error = e;
    }
    if (result) {
      expect(tampered).toBe(false);
      expect(m.delivered).toBe(0);
      expect(equalBytes(result.plaintext, m.plaintext)).toBe(true);
      m.delivered++;
      p[to] = result.state;
      const sum = ratchetStateSummary(p[to]);
      if (sum.skippedChainCount >= MAX_SKIPPED_KEY_CHAINS || sum.skippedKeyCount >= MAX_SKIPPED_KEYS) mayHaveEvicted[to] = true;
      if (sum.lostChainCount >= MAX_LOST_KEY_CHAINS || sum.lostKeyCount >= MAX_LOST_KEYS) mayHaveDroppedRecords[to] = true;
      return;
    }
    expect(error).toBeInstanceOf(CryptoError);
    const code = (error as CryptoError).code;
    expect(snapshot(p[to])).toBe(before);
    if (tampered) {
      expect([
        CryptoErrorCode.BAD_MAC,
        CryptoErrorCode.UNKNOWN_SESSION,
        CryptoErrorCode.DUPLICATE_MESSAGE,
        CryptoErrorCode.SKIPPED_KEY_EVICTED,
        CryptoErrorCode.UNSUPPORTED_VERSION,
      ]).toContain(code);
    } else if (m.delivered > 0) {
      // Older than the duplicate-detection window: the header no longer opens at all.
      expect([CryptoErrorCode.DUPLICATE_MESSAGE, CryptoErrorCode.UNKNOWN_SESSION]).toContain(code);
    } else {
      expect(mayHaveEvicted[to]).toBe(true);
      const allowed: string[] = [CryptoErrorCode.SKIPPED_KEY_EVICTED, CryptoErrorCode.UNKNOWN_SESSION];
      if (mayHaveDroppedRecords[to]) allowed.push(CryptoErrorCode.DUPLICATE_MESSAGE);
      expect(allowed).toContain(code);
    }
  };

  for (const a of actions) {
    switch (a.kind) {
      case 'send': {
        const from: Party = a.from === 0 ? 'alice' : 'bob';
        if (!canEncrypt(p[from])) break;
        const plaintext = new Uint8Array(a.size + 4);
        plaintext.set(u32be(counter++));
        const r = ratchetEncrypt(ctx[from], p[from], plaintext);
        p[from] = r.state;
        sent.push({ to: from === 'alice' ? 'bob' : 'alice', message: r.message, plaintext, delivered: 0 });
        break;
      }
      case 'deliver': {
        const m = sent[a.pick % Math.max(1, sent.length)];
        if (m) deliver(m, m.message, false);
        break;
      }
      case 'deliverLatest': {
        const to: Party = a.to === 0 ? 'alice' : 'bob';
        for (let i = sent.length - 1; i >= 0; i--) {
          if (sent[i]!.to === to) {
            deliver(sent[i]!, sent[i]!.message, false);
            break;
          }
        }
        break;
      }
      case 'tamper': {
        const m = sent[a.pick % Math.max(1, sent.length)];
        if (!m) break;
        const bad = copyBytes(m.message);
        const pos = a.pos % bad.length;
        bad[pos]! ^= 1 << a.bit;
        deliver(m, bad, true);
        break;
      }
      case 'foreign': {
        const to: Party = a.to === 0 ? 'alice' : 'bob';
        const before = snapshot(p[to]);
        let error: unknown;
        try {
          ratchetDecrypt(ctx[to], p[to], FOREIGN[a.pick % FOREIGN.length]!);
        } catch (e) {
          error = e;
        }
        expect((error as CryptoError).code).toBe(CryptoErrorCode.UNKNOWN_SESSION);
        expect(snapshot(p[to])).toBe(before);
        break;
      }
    }
  }
  // Finally deliver everything still pending, newest first (maximal reordering): each decrypts
  // exactly once unless a limit evicted its key.
  for (let i = sent.length - 1; i >= 0; i--) {
    const m = sent[i]!;
    if (m.delivered === 0) deliver(m, m.message, false);
    if (!mayHaveEvicted[m.to]) expect(m.delivered).toBe(1);
  }
  // And one more round of duplicates.
  for (const m of sent) deliver(m, m.message, false);
  return { messages: sent.length };
}

describe('ratchet property tests', () => {
  it('random interleavings: exactly-once delivery, typed failures, unchanged state on failure', () => {
    let total = 0;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), fc.array(action, { minLength: DEEP ? 300 : 120, maxLength: DEEP ? 1200 : 300, size: 'max' }), (seed, actions) => {
        total += run(seed.toString(16).padStart(4, '0'), actions).messages;
      }),
      { seed: FC_SEED, numRuns: DEEP ? 150 : 30 },
    );
    expect(total).toBeGreaterThan(DEEP ? 20_000 : 1_000);
    console.log(`ratchet property test: ${total} messages`);
  }, DEEP ? 1_800_000 : 60_000);

  it(`late duplicates within ${MAX_PREVIOUS_HEADER_KEYS} finished chains are always DUPLICATE_MESSAGE`, () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: MAX_PREVIOUS_HEADER_KEYS }), (turns) => {
        const p = makePair('d1');
        const toBob: Uint8Array[] = [];
        for (const len of turns) {
          for (let i = 0; i < len; i++) {
            const r = ratchetEncrypt(p.ctxA, p.alice, u32be(i));
            p.alice = r.state;
            toBob.push(r.message);
            p.bob = ratchetDecrypt(p.ctxB, p.bob, r.message).state;
          }
          const r = ratchetEncrypt(p.ctxB, p.bob, u32be(0));
          p.bob = r.state;
          p.alice = ratchetDecrypt(p.ctxA, p.alice, r.message).state;
        }
        for (const m of toBob) {
          const before = snapshot(p.bob);
          let code: string | undefined;
          try {
            ratchetDecrypt(p.ctxB, p.bob, m);
          } catch (e) {
            code = (e as CryptoError).code;
          }
          expect(code).toBe(CryptoErrorCode.DUPLICATE_MESSAGE);
          expect(snapshot(p.bob)).toBe(before);
        }
      }),
      { seed: FC_SEED, numRuns: DEEP ? 200 : 20 },
    );
  });
});

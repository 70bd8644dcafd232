/**
 * Fuzzed storage decoding: random and mutated bytes either decode (and then re-encode to exactly
 * the same bytes, and the state is usable without non-crypto exceptions) or fail with a typed
 * CryptoError MALFORMED / UNSUPPORTED_VERSION — never any other exception.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toHex, u32be } from '../../src/bytes.js';
import { SKIPPED_KEY_MAX_AGE_MS, STORAGE_VERSION } from '../../src/constants.js';
import { CryptoError, CryptoErrorCode } from '../../src/errors.js';
import type { RatchetState } from '../../src/ratchet.js';
import { deserializeRatchetState, ratchetDecrypt, ratchetEncrypt, serializeRatchetState } from '../../src/ratchet.js';
import { DEEP, FC_SEED, makePair } from './_helpers.js';

/** A few real states of every shape: fresh initiator/responder, skipped keys, previous header keys, lost-key records. */
const { corpus, messages } = (() => {
  const p = makePair('e0');
  const out: RatchetState[] = [p.alice, p.bob];
  const msgs: Uint8Array[] = [];
  const send = (from: 'alice' | 'bob', n: number): Uint8Array[] => {
    const r: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      const e = ratchetEncrypt(from === 'alice' ? p.ctxA : p.ctxB, p[from], u32be(i));
      p[from] = e.state;
      r.push(e.message);
    }
    msgs.push(...r);
    return r;
  };
  for (let turn = 0; turn < 3; turn++) {
    const a = send('alice', 3);
    p.bob = ratchetDecrypt(p.ctxB, p.bob, a[2]!).state;
    const b = send('bob', 2);
    p.alice = ratchetDecrypt(p.ctxA, p.alice, b[1]!).state;
    out.push(p.alice, p.bob);
  }
  // Lost-key records: skipped keys that expire and are pruned.
  p.clock.advance(SKIPPED_KEY_MAX_AGE_MS + 1);
  p.bob = ratchetEncrypt(p.ctxB, p.bob, u32be(0)).state;
  out.push(p.bob);
  return { corpus: out.map(serializeRatchetState), messages: msgs };
})();

function check(bytes: Uint8Array): void {
  let state: RatchetState;
  try {
    state = deserializeRatchetState(bytes);
  } catch (e) {
    expect(e).toBeInstanceOf(CryptoError);
    expect([CryptoErrorCode.MALFORMED, CryptoErrorCode.UNSUPPORTED_VERSION]).toContain((e as CryptoError).code);
    return;
  }
  // One valid encoding per state.
  expect(toHex(serializeRatchetState(state))).toBe(toHex(bytes));
  const p = makePair('e1');
  for (const op of [() => ratchetEncrypt(p.ctxA, state, u32be(1)), ...messages.slice(0, 4).map((m) => () => ratchetDecrypt(p.ctxA, state, m))]) {
    try {
      op();
    } catch (e) {
      expect(e).toBeInstanceOf(CryptoError);
    }
  }
}

describe('ratchet state storage fuzzing', () => {
  it('the corpus itself decodes and round-trips', () => {
    for (const c of corpus) check(c);
    expect(corpus[0]![0]).toBe(STORAGE_VERSION);
  });

  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), fc.boolean(), (b, fixVersion) => {
        if (fixVersion && b.length > 0) b[0] = STORAGE_VERSION;
        check(b);
      }),
      { seed: FC_SEED, numRuns: DEEP ? 20_000 : 1_000 },
    );
  });

  it('mutated valid states: bit flips, overwrites, truncation, insertion, deletion', () => {
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), pos: fc.nat(), bit: fc.nat({ max: 7 }) }),
      fc.record({ kind: fc.constant('set' as const), pos: fc.nat(), value: fc.constantFrom(0, 1, 2, 0x7f, 0x80, 0xff) }),
      fc.record({ kind: fc.constant('truncate' as const), pos: fc.nat() }),
      fc.record({ kind: fc.constant('insert' as const), pos: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
      fc.record({ kind: fc.constant('delete' as const), pos: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
    );
    fc.assert(
      fc.property(fc.nat(), fc.array(mutation, { minLength: 1, maxLength: 4 }), (pick, muts) => {
        let b = Uint8Array.from(corpus[pick % corpus.length]!);
        for (const m of muts) {
          const pos = m.pos % (b.length + 1);
          if (m.kind === 'flip' && pos < b.length) b[pos]! ^= 1 << m.bit;
          else if (m.kind === 'set' && pos < b.length) b[pos] = m.value;
          else if (m.kind === 'truncate') b = b.slice(0, pos);
          else if (m.kind === 'insert') b = Uint8Array.from([...b.subarray(0, pos), ...m.bytes, ...b.subarray(pos)]);
          else if (m.kind === 'delete') b = Uint8Array.from([...b.subarray(0, pos), ...b.subarray(pos + m.len)]);
        }
        check(b);
      }),
      { seed: FC_SEED, numRuns: DEEP ? 20_000 : 1_500 },
    );
  });

  it('every truncation of every corpus state is MALFORMED', () => {
    for (const c of corpus) {
      for (let i = 0; i < c.length; i++) {
        let err: unknown;
        try {
          deserializeRatchetState(c.subarray(0, i));
        } catch (e) {
          err = e;
        }
        expect((err as CryptoError).code).toBe(CryptoErrorCode.MALFORMED);
      }
    }
  });
});

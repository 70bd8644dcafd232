/** Shared set-up for the ratchet tests: two parties over deterministic contexts and one clock. */
import { toHex, utf8 } from '../../src/bytes.js';
import type { CryptoContext } from '../../src/context.js';
import { createContext } from '../../src/context.js';
import { CryptoError } from '../../src/errors.js';
import type { CryptoBackend } from '../../src/primitives/backend.js';
import { platformBackend } from '../../src/primitives/index.js';
import type { RatchetState } from '../../src/ratchet.js';
import { initRatchetAsInitiator, initRatchetAsResponder, serializeRatchetState } from '../../src/ratchet.js';
import { deterministicRng, manualClock } from '../../src/testing.js';

export const DEEP = process.env['MW_DEEP'] === '1';
export const FC_SEED = Number(process.env['MW_FC_SEED'] ?? 0x7a7c4e7);

export interface Pair {
  ctxA: CryptoContext;
  ctxB: CryptoContext;
  clock: ReturnType<typeof manualClock>;
  alice: RatchetState;
  bob: RatchetState;
  sharedSecret: Uint8Array;
  associatedData: Uint8Array;
}

export function makePair(seed = '01', backend: CryptoBackend = platformBackend()): Pair {
  const clock = manualClock();
  const setup = deterministicRng(`${seed}ff`);
  const ctxA = createContext({ backend, random: deterministicRng(`${seed}aa`), now: clock.now });
  const ctxB = createContext({ backend, random: deterministicRng(`${seed}bb`), now: clock.now });
  const sharedSecret = setup(32);
  const associatedData = utf8(`alice-identity|bob-identity|${seed}`);
  const spkSecret = setup(32);
  const spk = { secretKey: spkSecret, publicKey: backend.x25519PublicKey(spkSecret) };
  const alice = initRatchetAsInitiator(ctxA, { sharedSecret, associatedData, remoteRatchetKey: spk.publicKey });
  const bob = initRatchetAsResponder(ctxB, { sharedSecret, associatedData, ownRatchetKeyPair: spk });
  return { ctxA, ctxB, clock, alice, bob, sharedSecret, associatedData };
}

/** The CryptoError `fn` throws (fails the test if it throws something else or nothing). */
export function cryptoErrorOf(fn: () => unknown): CryptoError {
  try {
    fn();
  } catch (e) {
    if (e instanceof CryptoError) return e;
    throw new Error(`expected a CryptoError, got ${String(e)}`, { cause: e });
  }
  throw new Error('expected a CryptoError, but nothing was thrown');
}

export const snapshot = (s: RatchetState): string => toHex(serializeRatchetState(s));

import type { CryptoBackend, Rng } from './primitives/backend.js';
import { platformBackend } from './primitives/index.js';

/**
 * What every protocol operation needs from the outside world: the primitive backend, a source of
 * randomness and a clock. Passing them in (rather than reaching for globals) makes every
 * operation deterministic under test, which is how test-vectors/ are produced.
 */
export interface CryptoContext {
  readonly backend: CryptoBackend;
  /** Returns `n` fresh random bytes. Defaults to the backend's CSPRNG. */
  readonly random: Rng;
  /** Milliseconds since the Unix epoch. */
  readonly now: () => number;
}

/**
 * Every key, nonce and ephemeral secret comes from `random`, so a broken one breaks everything
 * silently. A supplied function is therefore checked: at creation it must be a function; every draw
 * must return a Uint8Array of exactly the requested length; a draw of 16 bytes or more must not be
 * all zero nor equal to the previous such draw (catches `(n) => new Uint8Array(n)`, a constant
 * buffer and a length-ignoring stub — it cannot prove randomness, only refuse the obvious
 * mistakes). The checks consume nothing from the source, so deterministic test sources produce the
 * same bytes as before.
 *
 * Throws TypeError (not a function, or a draw that is not a Uint8Array), RangeError (wrong length)
 * or Error (all-zero or repeated output).
 */
export function createContext(options: Partial<CryptoContext> = {}): CryptoContext {
  const backend = options.backend ?? platformBackend();
  if (options.now !== undefined && typeof options.now !== 'function') throw new TypeError('createContext: now must be a function');
  if (options.random !== undefined && typeof options.random !== 'function') {
    throw new TypeError('createContext: random must be a function (n) => Uint8Array');
  }
  const random = options.random ? checkedRandom(options.random) : (n: number) => backend.randomBytes(n);
  return { backend, random, now: options.now ?? (() => Date.now()) };
}

function checkedRandom(random: Rng): Rng {
  let previous: Uint8Array | undefined;
  return (n: number) => {
    const out: unknown = random(n);
    if (!(out instanceof Uint8Array)) throw new TypeError('random: the source returned something other than a Uint8Array');
    if (out.length !== n) throw new RangeError(`random: asked for ${n} bytes, the source returned ${out.length}`);
    if (n >= 16) {
      let zero = 0;
      for (const b of out) zero |= b;
      if (zero === 0) throw new Error('random: the source returned all zero bytes');
      if (previous && previous.length === n && previous.every((b, i) => b === out[i])) {
        throw new Error('random: the source returned the same bytes twice (constant source)');
      }
      previous = out.slice();
    }
    return out;
  };
}

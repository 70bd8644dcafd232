/**
 * Deterministic randomness for known-answer tests and for the published vectors in test-vectors/.
 * NOT for production use: it is exported under the `@meshwhisper/crypto/testing` subpath only.
 *
 * Stream definition (docs/protocol.md §Test vectors): block_i = SHA-256(seed ‖ be32(i)) for
 * i = 0, 1, 2, …; the stream is block_0 ‖ block_1 ‖ …, and each call random(n) consumes the next
 * n bytes of the stream. A vector that names an RNG seed means "the context's random() is this".
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { concatBytes, fromHex, u32be } from './bytes.js';
import type { Rng } from './primitives/backend.js';

export function deterministicRng(seed: Uint8Array | string): Rng {
  const s = typeof seed === 'string' ? fromHex(seed) : Uint8Array.from(seed);
  let counter = 0;
  let pool: Uint8Array = new Uint8Array(0);
  return (n: number): Uint8Array => {
    while (pool.length < n) {
      pool = concatBytes(pool, sha256(concatBytes(s, u32be(counter++))));
    }
    const out = pool.slice(0, n);
    pool = pool.slice(n);
    return out;
  };
}

/** A clock that returns `start` and advances only when told. */
export function manualClock(start = 1_750_000_000_000): { now: () => number; advance: (ms: number) => void; set: (t: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms), set: (v) => void (t = v) };
}

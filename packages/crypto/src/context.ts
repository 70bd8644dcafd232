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

export function createContext(options: Partial<CryptoContext> = {}): CryptoContext {
  const backend = options.backend ?? platformBackend();
  return {
    backend,
    random: options.random ?? ((n) => backend.randomBytes(n)),
    now: options.now ?? (() => Date.now()),
  };
}

import type * as NodeCrypto from 'node:crypto';
import type { CryptoBackend } from './backend.js';
import { nobleBackend } from './noble.js';
import { createNodeBackend } from './node.js';

export type { CryptoBackend, Ed25519KeyPair, KemKeyPair, Rng, X25519KeyPair } from './backend.js';
export { nobleBackend } from './noble.js';
export { createNodeBackend } from './node.js';

let cached: CryptoBackend | undefined;

/**
 * The fastest backend this platform offers: node:crypto on Node (found with
 * `process.getBuiltinModule`, so browsers and bundlers never see an import of it), noble elsewhere.
 * Set MESHWHISPER_CRYPTO_BACKEND=noble to force the reference backend on Node.
 */
export function platformBackend(): CryptoBackend {
  if (cached) return cached;
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown; env?: Record<string, string | undefined> } }).process;
  const forced = proc?.env?.['MESHWHISPER_CRYPTO_BACKEND'];
  const nodeCrypto = forced === 'noble' ? undefined : proc?.getBuiltinModule?.('node:crypto');
  cached = nodeCrypto ? createNodeBackend(nodeCrypto as typeof NodeCrypto) : nobleBackend;
  return cached;
}

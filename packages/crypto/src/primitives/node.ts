import type * as NodeCrypto from 'node:crypto';
import type { CryptoBackend } from './backend.js';
import { nobleBackend } from './noble.js';

/**
 * PLACEHOLDER until the node:crypto backend lands: delegates everything to noble.
 * (Replaced by the real accelerated implementation.)
 */
export function createNodeBackend(_nodeCrypto: typeof NodeCrypto): CryptoBackend {
  return { ...nobleBackend, name: 'node' };
}

import type * as NodeCrypto from 'node:crypto';
import type * as NodeFs from 'node:fs';
import type * as NodePath from 'node:path';
import type * as NodeUrl from 'node:url';
import { sha256 } from '@noble/hashes/sha2.js';
import type { CryptoBackend } from './backend.js';
import { nobleBackend } from './noble.js';
import { createNodeBackend } from './node.js';
import { loadOqsMlKem768, type MlKem768, type OqsLoaderHost } from './oqs-ml-kem.js';

export type { CryptoBackend, Ed25519KeyPair, KemKeyPair, Rng, X25519KeyPair } from './backend.js';
export { nobleBackend } from './noble.js';
export { createNodeBackend, type NodeBackendOptions } from './node.js';

let cached: CryptoBackend | undefined;

type Proc = { getBuiltinModule?: (id: string) => unknown; env?: Record<string, string | undefined> };

/**
 * The WebAssembly ML-KEM-768 of `@oqs/liboqs-js` when it is installed (an optional dependency),
 * loads, and passes its self-test; undefined otherwise. Node only: it reads the package's file with
 * node:fs once, at the first platformBackend() call.
 */
function nodeMlKem768(proc: Proc): MlKem768 | undefined {
  if (proc.env?.['MESHWHISPER_CRYPTO_MLKEM'] === 'noble') return undefined;
  const fs = proc.getBuiltinModule?.('node:fs') as typeof NodeFs | undefined;
  const path = proc.getBuiltinModule?.('node:path') as typeof NodePath | undefined;
  const url = proc.getBuiltinModule?.('node:url') as typeof NodeUrl | undefined;
  if (!fs || !path || !url) return undefined;
  const host: OqsLoaderHost = {
    existsSync: (p) => fs.existsSync(p),
    readFileSync: (p, e) => fs.readFileSync(p, e),
    join: (...p) => path.join(...p),
    dirname: (p) => path.dirname(p),
    fileURLToPath: (u) => url.fileURLToPath(u),
  };
  return loadOqsMlKem768(host, import.meta.url, sha256);
}

/**
 * The fastest backend this platform offers: node:crypto on Node (found with
 * `process.getBuiltinModule`, so browsers and bundlers never see an import of it), with liboqs's
 * WebAssembly ML-KEM-768 when `@oqs/liboqs-js` is installed; noble elsewhere.
 * Set MESHWHISPER_CRYPTO_BACKEND=noble to force the reference backend on Node, or
 * MESHWHISPER_CRYPTO_MLKEM=noble to keep node:crypto but use noble's ML-KEM.
 */
export function platformBackend(): CryptoBackend {
  if (cached) return cached;
  const proc = (globalThis as { process?: Proc }).process;
  const forced = proc?.env?.['MESHWHISPER_CRYPTO_BACKEND'];
  const nodeCrypto = forced === 'noble' ? undefined : proc?.getBuiltinModule?.('node:crypto');
  if (nodeCrypto && proc) {
    const mlKem768 = nodeMlKem768(proc);
    cached = createNodeBackend(nodeCrypto as typeof NodeCrypto, mlKem768 ? { mlKem768 } : {});
  } else {
    cached = nobleBackend;
  }
  return cached;
}

/**
 * The node:crypto backend with liboqs's WebAssembly ML-KEM-768 if it can be loaded here (see
 * platformBackend), for benchmarks and tests that compare backends. Undefined off Node or when the
 * package is missing.
 */
export function _nodeBackendWithOqs(nodeCrypto: typeof NodeCrypto): CryptoBackend | undefined {
  const proc = (globalThis as { process?: Proc }).process;
  const mlKem768 = proc ? nodeMlKem768({ ...proc, env: {} }) : undefined;
  return mlKem768 ? createNodeBackend(nodeCrypto, { mlKem768 }) : undefined;
}

import { CryptoError, CryptoErrorCode, assertBytes } from '../errors.js';
import type { CryptoBackend } from './backend.js';

/**
 * ML-KEM-768 (FIPS 203) from liboqs compiled to WebAssembly, as shipped by the npm package
 * `@oqs/liboqs-js` (MIT): about ten times faster than the pure-JS implementation on Node
 * (docs/benchmarks.md). Used by the Node backend only, and only when it loads, answers the
 * known-answer self-test below, and is therefore byte-identical to `nobleBackend` — the same
 * outputs, the same accept/reject decisions, the same errors (test/primitives/ checks this on every
 * KAT: ACVP, Wycheproof, CCTV accumulated and unlucky vectors, every modulus-check position).
 *
 * The package's own JavaScript wrapper only offers randomised KeyGen/Encaps, while our interface
 * is deterministic (KeyGen from d ‖ z, Encaps from m, so vectors can be reproduced). liboqs draws
 * exactly those bytes from its entropy import (64 for KeyGen, 32 for Encaps), so this module
 * instantiates the package's WebAssembly binary itself with its own four imports and hands the
 * caller's d ‖ z or m to that entropy import for the duration of one synchronous call. Any other
 * draw — more bytes than given, or a draw outside such a call — is an error, never a silent use of
 * other randomness.
 *
 * Secrets that pass through the module's linear memory (d ‖ z, dk, m, shared secrets) are wiped
 * there after every call.
 */
export type MlKem768 = Pick<CryptoBackend, 'mlKem768KeyGen' | 'mlKem768Encapsulate' | 'mlKem768Decapsulate'>;

/** The package version whose binary layout (minified import/export names) this module knows. */
export const OQS_PACKAGE = '@oqs/liboqs-js';
export const OQS_VERSION = '0.15.1';
/** The file of that package that embeds the ML-KEM-768 WebAssembly binary. */
export const OQS_ML_KEM_768_FILE = 'dist/ml-kem-768.min.js';

const PK = 1184;
const SK = 2400;
const CT = 1088;
const SS = 32;

const op = (name: string): string => `node.${name}`;

/**
 * The WebAssembly binary embedded in the package's `dist/ml-kem-768.min.js`: Emscripten stores it
 * as one single-quoted JavaScript string literal of code units 0–255 after `L??=ca(`. Returns
 * undefined when the file does not have that shape (another package version).
 */
export function extractOqsWasm(source: string): Uint8Array | undefined {
  const marker = "L??=ca('";
  const at = source.indexOf(marker);
  if (at < 0) return undefined;
  const out: number[] = [];
  const simple: Record<string, number> = { n: 10, r: 13, t: 9, b: 8, f: 12, v: 11, '0': 0, '\\': 92, "'": 39, '"': 34 };
  for (let i = at + marker.length; i < source.length; ) {
    const ch = source.charCodeAt(i);
    if (ch === 0x27) {
      const bytes = Uint8Array.from(out);
      // "\0asm" + version 1
      return bytes.length > 8 && bytes[0] === 0 && bytes[1] === 0x61 && bytes[2] === 0x73 && bytes[3] === 0x6d ? bytes : undefined;
    }
    if (ch !== 0x5c) {
      if (ch > 0xff) return undefined;
      out.push(ch);
      i += 1;
      continue;
    }
    const e = source[i + 1] ?? '';
    if (e === 'x' || e === 'u') {
      const n = e === 'x' ? 2 : 4;
      const v = Number.parseInt(source.slice(i + 2, i + 2 + n), 16);
      if (!Number.isInteger(v) || v > 0xff) return undefined;
      out.push(v);
      i += 2 + n;
      continue;
    }
    const v = simple[e];
    if (v === undefined) return undefined;
    out.push(v);
    i += 2;
  }
  return undefined;
}

interface OqsExports {
  e: WebAssembly.Memory;
  f: () => void; // __wasm_call_ctors
  g: (name: number) => number; // OQS_KEM_new
  h: (kem: number, pk: number, sk: number) => number; // OQS_KEM_keypair
  i: (kem: number, ct: number, ss: number, pk: number) => number; // OQS_KEM_encaps
  j: (kem: number, ss: number, ct: number, sk: number) => number; // OQS_KEM_decaps
  l: () => void; // OQS_init
  q: (p: number) => void; // free
  r: (n: number) => number; // malloc
}

/**
 * Instantiates the binary synchronously (Node allows synchronous compilation of any size) and
 * returns the three ML-KEM-768 operations, or undefined if the binary does not have the expected
 * imports and exports or fails `selfTest`. Every KEM call gets exactly the caller's bytes as
 * randomness; a draw at any other time fails.
 */
export function createOqsMlKem768(wasm: Uint8Array, selfTest: (kem: MlKem768) => boolean): MlKem768 | undefined {
  let module: WebAssembly.Module;
  try {
    module = new WebAssembly.Module(new Uint8Array(wasm));
  } catch {
    return undefined;
  }
  const imports = WebAssembly.Module.imports(module).map((d) => `${d.module}.${d.name}:${d.kind}`).sort().join(',');
  if (imports !== 'a.a:function,a.b:function,a.c:function,a.d:function') return undefined;

  // Set once the instance exists; the imports below only run after that.
  const state: { memory?: WebAssembly.Memory } = {};
  /** The bytes the current call may draw; undefined outside a deterministic call. */
  let entropy: Uint8Array | undefined;
  let overdraw = false;
  const instance = new WebAssembly.Instance(module, {
    a: {
      // proc_exit: liboqs aborts only on internal failure.
      a: (code: number): never => {
        throw new Error(`liboqs exited with ${code}`);
      },
      // fd_write (diagnostics to stdout/stderr): accepted and discarded.
      b: (_fd: number, iov: number, count: number, written: number): number => {
        const memory = state.memory;
        if (!memory) return 8;
        const v = new DataView(memory.buffer);
        let n = 0;
        for (let k = 0; k < count; k++) n += v.getUint32(iov + 8 * k + 4, true);
        v.setUint32(written, n, true);
        return 0;
      },
      // getentropy(ptr, len): the caller's d ‖ z or m, nothing else.
      c: (ptr: number, len: number): number => {
        const memory = state.memory;
        if (!memory) return 1;
        const dst = new Uint8Array(memory.buffer, ptr, len);
        if (!entropy || entropy.length < len) {
          overdraw = true;
          dst.fill(0);
          return 1;
        }
        dst.set(entropy.subarray(0, len));
        entropy = entropy.subarray(len);
        return 0;
      },
      // emscripten_resize_heap(requested bytes)
      d: (requested: number): number => {
        const memory = state.memory;
        if (!memory) return 0;
        const pages = Math.ceil((requested - memory.buffer.byteLength) / 65536);
        try {
          if (pages > 0) memory.grow(pages);
          return 1;
        } catch {
          return 0;
        }
      },
    },
  });
  const x = instance.exports as unknown as OqsExports;
  for (const k of ['f', 'g', 'h', 'i', 'j', 'l', 'q', 'r'] as const) if (typeof x[k] !== 'function') return undefined;
  if (!(x.e instanceof WebAssembly.Memory)) return undefined;
  state.memory = x.e;
  const mem = x.e;
  x.f();
  x.l();
  const name = new TextEncoder().encode('ML-KEM-768\0');
  const namePtr = x.r(name.length);
  new Uint8Array(mem.buffer, namePtr, name.length).set(name);
  const kem = x.g(namePtr);
  x.q(namePtr);
  if (kem === 0) return undefined;
  // One set of buffers for the module's lifetime (calls are synchronous, so never shared).
  const pkPtr = x.r(PK);
  const skPtr = x.r(SK);
  const ctPtr = x.r(CT);
  const ssPtr = x.r(SS);
  if (!pkPtr || !skPtr || !ctPtr || !ssPtr) return undefined;

  const view = (ptr: number, n: number): Uint8Array => new Uint8Array(mem.buffer, ptr, n);
  const wipe = (): void => {
    view(skPtr, SK).fill(0);
    view(ssPtr, SS).fill(0);
  };
  /** Runs one liboqs call that must draw exactly `bytes` from the entropy import. */
  const withEntropy = (bytes: Uint8Array, call: () => number): number => {
    entropy = bytes;
    overdraw = false;
    try {
      const rc = call();
      if (overdraw || (entropy?.length ?? 0) !== 0) throw new Error('liboqs drew a different amount of randomness than FIPS 203 prescribes');
      return rc;
    } finally {
      entropy = undefined;
    }
  };

  const impl: MlKem768 = {
    mlKem768KeyGen(seed) {
      assertBytes(seed, op('mlKem768KeyGen'), 'seed', 64);
      try {
        const rc = withEntropy(seed, () => x.h(kem, pkPtr, skPtr));
        if (rc !== 0) throw new Error(`OQS_KEM_keypair returned ${rc}`);
        return { publicKey: view(pkPtr, PK).slice(), secretKey: view(skPtr, SK).slice() };
      } finally {
        wipe();
      }
    },
    mlKem768Encapsulate(pk, m) {
      assertBytes(pk, op('mlKem768Encapsulate'), 'publicKey');
      assertBytes(m, op('mlKem768Encapsulate'), 'm', 32);
      if (pk.length !== PK) {
        throw new CryptoError(CryptoErrorCode.INVALID_KEY, op('mlKem768Encapsulate'), 'encapsulation key must be 1184 bytes');
      }
      view(pkPtr, PK).set(pk);
      try {
        const rc = withEntropy(m, () => x.i(kem, ctPtr, ssPtr, pkPtr));
        // FIPS 203 §7.2 modulus check failed: coefficients not reduced mod q.
        if (rc !== 0) throw new CryptoError(CryptoErrorCode.INVALID_KEY, op('mlKem768Encapsulate'), 'encapsulation key failed the modulus check');
        return { ciphertext: view(ctPtr, CT).slice(), sharedSecret: view(ssPtr, SS).slice() };
      } finally {
        wipe();
      }
    },
    mlKem768Decapsulate(ct, sk) {
      assertBytes(ct, op('mlKem768Decapsulate'), 'ciphertext');
      assertBytes(sk, op('mlKem768Decapsulate'), 'secretKey');
      if (ct.length !== CT) throw new CryptoError(CryptoErrorCode.MALFORMED, op('mlKem768Decapsulate'), 'ciphertext must be 1088 bytes');
      if (sk.length !== SK) throw new CryptoError(CryptoErrorCode.INVALID_KEY, op('mlKem768Decapsulate'), 'decapsulation key must be 2400 bytes');
      view(ctPtr, CT).set(ct);
      view(skPtr, SK).set(sk);
      try {
        // Decaps draws no randomness: any draw is an error (withEntropy with nothing to give).
        const rc = withEntropy(new Uint8Array(0), () => x.j(kem, ssPtr, ctPtr, skPtr));
        if (rc !== 0) throw new CryptoError(CryptoErrorCode.INVALID_KEY, op('mlKem768Decapsulate'), 'decapsulation key failed its hash check');
        return view(ssPtr, SS).slice();
      } finally {
        wipe();
      }
    },
  };
  try {
    return selfTest(impl) ? impl : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Known answers computed with `nobleBackend` (FIPS 203): KeyGen of d ‖ z = 00 01 … 3f, Encaps of
 * m = 42…42 under that key, and the implicit-rejection secret for the ciphertext with its first
 * bit flipped. A binary that disagrees on any of them, or accepts an encapsulation key that fails
 * the modulus check, is not used. The full KAT suite runs in test/primitives/.
 */
export function oqsSelfTest(kem: MlKem768, sha256: (b: Uint8Array) => Uint8Array): boolean {
  const hex = (b: Uint8Array): string => Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
  const cat = (a: Uint8Array, b: Uint8Array): Uint8Array => {
    const out = new Uint8Array(a.length + b.length);
    out.set(a);
    out.set(b, a.length);
    return out;
  };
  const seed = Uint8Array.from({ length: 64 }, (_, i) => i);
  const { publicKey, secretKey } = kem.mlKem768KeyGen(seed);
  if (hex(sha256(cat(publicKey, secretKey))) !== '1e87ab6b57eba5b82c6ea17c19d7bff3f4a03239fd16a554b04eb9f309b60a56') return false;
  const { ciphertext, sharedSecret } = kem.mlKem768Encapsulate(publicKey, new Uint8Array(32).fill(0x42));
  if (hex(sha256(cat(ciphertext, sharedSecret))) !== '7eab38e5ec5da9b5a9a78f1803d5725bd6ac3797d368bceab6b9d3ea3b63d505') return false;
  if (hex(kem.mlKem768Decapsulate(ciphertext, secretKey)) !== hex(sharedSecret)) return false;
  ciphertext[0] = (ciphertext[0] ?? 0) ^ 1;
  if (hex(kem.mlKem768Decapsulate(ciphertext, secretKey)) !== '3816af13752429d4e8b800fd2c691b3254d09ed953cf287c99453d3d8057b41e') return false;
  const bad = publicKey.slice();
  bad[0] = 0xff;
  bad[1] = (bad[1] ?? 0) | 0x0f; // first coefficient 0xfff ≥ q
  try {
    kem.mlKem768Encapsulate(bad, new Uint8Array(32));
    return false;
  } catch (e) {
    return e instanceof CryptoError && e.code === CryptoErrorCode.INVALID_KEY;
  }
}

/** The minimal slice of node:fs, node:path and node:url the loader needs. */
export interface OqsLoaderHost {
  existsSync(path: string): boolean;
  readFileSync(path: string, encoding: 'utf8'): string;
  join(...parts: string[]): string;
  dirname(path: string): string;
  fileURLToPath(url: string): string;
}

/**
 * Finds `@oqs/liboqs-js` (exactly OQS_VERSION) in a node_modules folder above `fromUrl`, and
 * returns its ML-KEM-768 or undefined (not installed, another version, unexpected binary, failed
 * self-test). Never throws.
 */
export function loadOqsMlKem768(host: OqsLoaderHost, fromUrl: string, sha256: (b: Uint8Array) => Uint8Array): MlKem768 | undefined {
  try {
    let dir = host.dirname(host.fileURLToPath(fromUrl));
    for (let depth = 0; depth < 32; depth++) {
      const pkg = host.join(dir, 'node_modules', ...OQS_PACKAGE.split('/'));
      if (host.existsSync(host.join(pkg, 'package.json'))) {
        const meta = JSON.parse(host.readFileSync(host.join(pkg, 'package.json'), 'utf8')) as { version?: unknown };
        if (meta.version !== OQS_VERSION) return undefined;
        const wasm = extractOqsWasm(host.readFileSync(host.join(pkg, ...OQS_ML_KEM_768_FILE.split('/')), 'utf8'));
        return wasm ? createOqsMlKem768(wasm, (k) => oqsSelfTest(k, sha256)) : undefined;
      }
      const up = host.dirname(dir);
      if (up === dir) return undefined;
      dir = up;
    }
  } catch {
    // fall through: the noble implementation is used
  }
  return undefined;
}

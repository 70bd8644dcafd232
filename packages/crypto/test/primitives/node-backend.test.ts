// node:crypto backend specifics: how it is loaded, what it returns, and its DER fallback.
import * as nodeCrypto from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { nobleBackend } from '../../src/primitives/noble.js';
import { createNodeBackend } from '../../src/primitives/node.js';
import { OQS_VERSION, createOqsMlKem768, extractOqsWasm, loadOqsMlKem768, oqsSelfTest, type OqsLoaderHost } from '../../src/primitives/oqs-ml-kem.js';
import { BACKENDS, hex, loadVectors, nodeBackend, nodeOqsBackend, toHex } from './_backends.js';

describe('loading', () => {
  it('node.ts and noble.ts never import node:crypto at run time (browsers must not see it)', () => {
    for (const file of ['node.ts', 'noble.ts', 'index.ts', 'backend.ts']) {
      const src = readFileSync(new URL(`../../src/primitives/${file}`, import.meta.url), 'utf8');
      const imports = src.split('\n').filter((l) => /^\s*(import|export)\b.*['"](node:)?crypto['"]/.test(l));
      for (const l of imports) expect(l, `${file}: ${l}`).toMatch(/^\s*import type /);
      expect(src).not.toMatch(/require\(\s*['"](node:)?crypto['"]\s*\)/);
      expect(src).not.toMatch(/import\(\s*['"](node:)?crypto['"]\s*\)/);
    }
  });

  describe('platformBackend()', () => {
    afterEach(() => {
      vi.unstubAllEnvs();
      vi.resetModules();
    });
    it('picks node:crypto via process.getBuiltinModule on Node, with liboqs ML-KEM-768 (a dependency)', async () => {
      vi.resetModules();
      const { platformBackend } = await import('../../src/primitives/index.js');
      expect(platformBackend().name).toBe('node+oqs');
      expect(platformBackend()).toBe(platformBackend());
    });
    it('MESHWHISPER_CRYPTO_MLKEM=noble keeps node:crypto with noble ML-KEM', async () => {
      vi.stubEnv('MESHWHISPER_CRYPTO_MLKEM', 'noble');
      vi.resetModules();
      const { platformBackend } = await import('../../src/primitives/index.js');
      expect(platformBackend().name).toBe('node');
    });
    it('MESHWHISPER_CRYPTO_BACKEND=noble forces the reference backend', async () => {
      vi.stubEnv('MESHWHISPER_CRYPTO_BACKEND', 'noble');
      vi.resetModules();
      const { platformBackend } = await import('../../src/primitives/index.js');
      expect(platformBackend().name).toBe('noble');
    });
  });
});

describe('outputs', () => {
  it('are fresh plain Uint8Arrays (not Buffers, not views into node’s shared pool)', () => {
    const k = new Uint8Array(32).fill(3);
    const outs = [
      nodeBackend.sha256(k),
      nodeBackend.sha512(k),
      nodeBackend.hmacSha256(k, k),
      nodeBackend.hkdfSha256(k, k, k, 42),
      nodeBackend.x25519PublicKey(k),
      nodeBackend.x25519(k, nodeBackend.x25519PublicKey(new Uint8Array(32).fill(4))),
      nodeBackend.ed25519PublicKey(k),
      nodeBackend.ed25519Sign(k, k),
      nodeBackend.aes256GcmEncrypt(k, k.subarray(0, 12), k, k),
      nodeBackend.aes256GcmDecrypt(k, k.subarray(0, 12), nodeBackend.aes256GcmEncrypt(k, k.subarray(0, 12), k, k), k),
      nodeBackend.randomBytes(16),
      ...Object.values(nodeOqsBackend.mlKem768KeyGen(new Uint8Array(64))),
      ...Object.values(nodeOqsBackend.mlKem768Encapsulate(nodeOqsBackend.mlKem768KeyGen(new Uint8Array(64)).publicKey, k)),
    ];
    for (const o of outs) {
      expect(Object.getPrototypeOf(o)).toBe(Uint8Array.prototype);
      expect(o.byteOffset).toBe(0);
      expect(o.buffer.byteLength).toBe(o.length);
    }
  });

  it('callers’ inputs are never modified', () => {
    for (const b of BACKENDS) {
      const inputs = Array.from({ length: 4 }, (_, i) => new Uint8Array(32).fill(i + 1));
      const [a, c, d, e] = inputs as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
      const before = inputs.map(toHex);
      b.x25519(a, b.x25519PublicKey(c));
      b.ed25519Verify(b.ed25519PublicKey(a), d, b.ed25519Sign(a, d));
      const sealed = b.aes256GcmEncrypt(a, c.subarray(0, 12), d, e);
      const sealedHex = toHex(sealed);
      b.aes256GcmDecrypt(a, c.subarray(0, 12), sealed, e);
      sealed[0] = (sealed[0] ?? 0) ^ 1;
      expect(() => b.aes256GcmDecrypt(a, c.subarray(0, 12), sealed, e)).toThrow();
      sealed[0] = (sealed[0] ?? 0) ^ 1;
      expect(toHex(sealed)).toBe(sealedHex);
      b.hkdfSha256(a, c, d, 64);
      expect(inputs.map(toHex)).toEqual(before);
    }
  });

  it('randomBytes returns the requested length and differs between calls', () => {
    expect(nodeBackend.randomBytes(0).length).toBe(0);
    expect(nodeBackend.randomBytes(100_000).length).toBe(100_000);
    expect(toHex(nodeBackend.randomBytes(32))).not.toBe(toHex(nodeBackend.randomBytes(32)));
  });
});

describe('PKCS#8 DER fallback (if a future Node validates the JWK x of private keys)', () => {
  let derImports = 0;
  const strict = new Proxy(nodeCrypto, {
    get(target, prop, receiver) {
      if (prop === 'createPrivateKey') {
        return (arg: Parameters<typeof nodeCrypto.createPrivateKey>[0]) => {
          const a = arg as { format?: string; key?: { x?: string } };
          if (a.format === 'jwk' && a.key?.x === '') throw new Error('JWK x does not match d');
          if (a.format === 'der') derImports++;
          return nodeCrypto.createPrivateKey(arg);
        };
      }
      return Reflect.get(target, prop, receiver) as unknown;
    },
  });
  const fallback = createNodeBackend(strict);
  const V = loadVectors<{
    x25519_rfc7748_6_1: { alicePriv: string; alicePub: string; bobPub: string; shared: string };
    ed25519_rfc8032_7_1: { secret: string; public: string; msg: string; sig: string }[];
  }>('rfc.json');

  it('still produces the RFC 7748 and RFC 8032 answers', () => {
    const x = V.x25519_rfc7748_6_1;
    expect(toHex(fallback.x25519PublicKey(hex(x.alicePriv)))).toBe(x.alicePub);
    expect(toHex(fallback.x25519(hex(x.alicePriv), hex(x.bobPub)))).toBe(x.shared);
    for (const v of V.ed25519_rfc8032_7_1) {
      expect(toHex(fallback.ed25519PublicKey(hex(v.secret)))).toBe(v.public);
      expect(toHex(fallback.ed25519Sign(hex(v.secret), hex(v.msg)))).toBe(v.sig);
    }
    expect(derImports).toBeGreaterThanOrEqual(2 + 2 * V.ed25519_rfc8032_7_1.length);
  });
});

describe('liboqs WebAssembly ML-KEM-768 loader (falls back to noble on anything unexpected)', () => {
  const host: OqsLoaderHost = {
    existsSync: (p) => existsSync(p),
    readFileSync: (p, e) => readFileSync(p, e),
    join: (...p) => join(...p),
    dirname: (p) => dirname(p),
    fileURLToPath: (u) => fileURLToPath(u),
  };
  const fakePackage = (version: string, file: string): string => {
    const root = mkdtempSync(join(tmpdir(), 'mw-oqs-'));
    const pkg = join(root, 'node_modules', '@oqs', 'liboqs-js');
    mkdirSync(join(pkg, 'dist'), { recursive: true });
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ version }));
    writeFileSync(join(pkg, 'dist', 'ml-kem-768.min.js'), file);
    mkdirSync(join(root, 'a', 'b'), { recursive: true });
    return pathToFileURL(join(root, 'a', 'b', 'index.js')).href;
  };
  const realFile = readFileSync(new URL('../../../../node_modules/@oqs/liboqs-js/dist/ml-kem-768.min.js', import.meta.url), 'utf8');

  it('loads the installed package and passes its self-test', () => {
    expect(loadOqsMlKem768(host, import.meta.url, nobleBackend.sha256)).toBeDefined();
    expect(loadOqsMlKem768(host, fakePackage(OQS_VERSION, realFile), nobleBackend.sha256)).toBeDefined();
  });
  it('refuses another package version, a file of another shape, a corrupted binary, a failed self-test', () => {
    expect(loadOqsMlKem768(host, fakePackage('0.15.2', realFile), nobleBackend.sha256)).toBeUndefined();
    expect(loadOqsMlKem768(host, fakePackage(OQS_VERSION, 'export default 1;'), nobleBackend.sha256)).toBeUndefined();
    const wasm = extractOqsWasm(realFile)!;
    expect(wasm).toBeDefined();
    const corrupt = wasm.slice();
    corrupt[4] = 2; // WebAssembly binary version 2: does not compile
    expect(createOqsMlKem768(corrupt, (k) => oqsSelfTest(k, nobleBackend.sha256))).toBeUndefined();
    // A self-test against different known answers (here: wrong hash function) rejects the binary.
    expect(createOqsMlKem768(wasm, (k) => oqsSelfTest(k, nobleBackend.sha512))).toBeUndefined();
    expect(loadOqsMlKem768(host, pathToFileURL(join(tmpdir(), 'nowhere', 'x.js')).href, nobleBackend.sha256)).toBeUndefined();
  });
  it('is byte-identical to noble on random inputs, including implicit rejection', () => {
    for (let i = 0; i < 20; i++) {
      const seed = nobleBackend.randomBytes(64);
      const m = nobleBackend.randomBytes(32);
      const a = nobleBackend.mlKem768KeyGen(seed);
      const b = nodeOqsBackend.mlKem768KeyGen(seed);
      expect(toHex(b.publicKey)).toBe(toHex(a.publicKey));
      expect(toHex(b.secretKey)).toBe(toHex(a.secretKey));
      const ea = nobleBackend.mlKem768Encapsulate(a.publicKey, m);
      const eb = nodeOqsBackend.mlKem768Encapsulate(a.publicKey, m);
      expect(toHex(eb.ciphertext)).toBe(toHex(ea.ciphertext));
      expect(toHex(eb.sharedSecret)).toBe(toHex(ea.sharedSecret));
      const junk = nobleBackend.randomBytes(1088);
      expect(toHex(nodeOqsBackend.mlKem768Decapsulate(junk, a.secretKey))).toBe(toHex(nobleBackend.mlKem768Decapsulate(junk, a.secretKey)));
    }
  });
});

describe('private keys imported once per array', () => {
  it('a reused array gives the same answers as noble; a changed or wiped array is re-imported, never served stale', () => {
    const b = createNodeBackend(nodeCrypto);
    const peer = nobleBackend.x25519PublicKey(new Uint8Array(32).fill(9));
    const sk = new Uint8Array(32).fill(1);
    const msg = new Uint8Array([1, 2, 3]);
    for (let round = 0; round < 3; round++) {
      for (const fill of [1, 2, 1, 0]) {
        sk.fill(fill);
        if (fill === 0) sk[0] = 8; // a valid X25519 scalar after clamping, still "wiped"-looking
        expect(toHex(b.x25519PublicKey(sk))).toBe(toHex(nobleBackend.x25519PublicKey(sk)));
        expect(toHex(b.x25519(sk, peer))).toBe(toHex(nobleBackend.x25519(sk, peer)));
        // The same array as an Ed25519 seed: a different curve, a different import.
        expect(toHex(b.ed25519PublicKey(sk))).toBe(toHex(nobleBackend.ed25519PublicKey(sk)));
        expect(toHex(b.ed25519Sign(sk, msg))).toBe(toHex(nobleBackend.ed25519Sign(sk, msg)));
        expect(toHex(b.x25519(sk, peer))).toBe(toHex(nobleBackend.x25519(sk, peer)));
      }
    }
    // One changed byte anywhere is noticed.
    for (let i = 0; i < 32; i++) {
      const k = new Uint8Array(32).fill(3);
      b.x25519(k, peer);
      k[i] = (k[i] ?? 0) ^ 0x40;
      expect(toHex(b.x25519(k, peer)), `byte ${i}`).toBe(toHex(nobleBackend.x25519(k, peer)));
    }
  });
});

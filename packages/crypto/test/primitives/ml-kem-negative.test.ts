// ML-KEM-768 negative and edge-case known answers, run against every backend (noble, node with
// noble's ML-KEM, node with liboqs's WebAssembly ML-KEM): the accumulated pseudo-random vectors
// (10,000 key pairs, encapsulations and implicit rejections hashed into one value; 100 by default,
// the full 10,000 with MW_DEEP=1), Wycheproof's strcmp case, CCTV's "unlucky sample" case, and a
// FIPS 203 §7.2 modulus-check failure at every one of the 768 coefficient positions.
// Vectors: ../vectors/ml-kem-768-negative.json (see ../vectors/README.md).
import { shake128 } from '@noble/hashes/sha3.js';
import { describe, expect, it } from 'vitest';
import { CryptoErrorCode } from '../../src/errors.js';
import type { CryptoBackend } from '../../src/primitives/backend.js';
import { BACKENDS, DEEP, all, hex, loadVectors, outcome, toHex } from './_backends.js';

interface Negative {
  wycheproofStrcmp: { tests: { tcId: number; seed: string; ek: string; c: string; K: string; result: string }[] };
  cctvUnluckySample: { tests: { d: string; z: string; ek: string; m: string; K: string; c: string }[] };
  accumulated: { iterations100: string; iterations10000: string };
}
const V = loadVectors<Negative>('ml-kem-768-negative.json');

function accumulate(b: CryptoBackend, n: number): string {
  const rng = shake128.create({});
  const out = shake128.create({});
  for (let i = 0; i < n; i++) {
    const { publicKey, secretKey } = b.mlKem768KeyGen(rng.xof(64));
    out.update(publicKey);
    const { ciphertext, sharedSecret } = b.mlKem768Encapsulate(publicKey, rng.xof(32));
    out.update(ciphertext);
    out.update(sharedSecret);
    if (toHex(b.mlKem768Decapsulate(ciphertext, secretKey)) !== toHex(sharedSecret)) throw new Error(`iteration ${i}: Decaps ≠ Encaps`);
    out.update(b.mlKem768Decapsulate(rng.xof(1088), secretKey));
  }
  return toHex(out.xof(32));
}

/** The encapsulation key with coefficient `i` (of 768, ByteEncode12 order) set to `value`. */
function withCoefficient(ek: Uint8Array, i: number, value: number): Uint8Array {
  const out = ek.slice();
  const at = Math.floor(i / 2) * 3;
  if (i % 2 === 0) {
    out[at] = value & 0xff;
    out[at + 1] = ((out[at + 1] ?? 0) & 0xf0) | (value >> 8);
  } else {
    out[at + 1] = ((out[at + 1] ?? 0) & 0x0f) | ((value & 0x0f) << 4);
    out[at + 2] = value >> 4;
  }
  return out;
}

describe.each(BACKENDS)('$name backend: ML-KEM-768 negative known answers', (b) => {
  it('accumulated vectors: 100 iterations (10,000 with MW_DEEP=1)', { timeout: DEEP ? 600_000 : 30_000 }, () => {
    expect(accumulate(b, 100)).toBe(V.accumulated.iterations100);
    if (DEEP) expect(accumulate(b, 10_000)).toBe(V.accumulated.iterations10000);
  });

  it.each(V.wycheproofStrcmp.tests)('Wycheproof strcmp tcId $tcId: implicit rejection of a ciphertext starting with 00', (t) => {
    const { publicKey, secretKey } = b.mlKem768KeyGen(hex(t.seed));
    expect(toHex(publicKey)).toBe(t.ek);
    expect(toHex(b.mlKem768Decapsulate(hex(t.c), secretKey))).toBe(t.K);
  });

  it.each(V.cctvUnluckySample.tests)('CCTV unlucky sample: KeyGen, Encaps and Decaps', (t) => {
    const { publicKey, secretKey } = b.mlKem768KeyGen(hex(t.d + t.z));
    expect(toHex(publicKey)).toBe(t.ek);
    const { ciphertext, sharedSecret } = b.mlKem768Encapsulate(publicKey, hex(t.m));
    expect(toHex(ciphertext)).toBe(t.c);
    expect(toHex(sharedSecret)).toBe(t.K);
    expect(toHex(b.mlKem768Decapsulate(ciphertext, secretKey))).toBe(t.K);
  });

  it('FIPS 203 §7.2: a coefficient ≥ q at any of the 768 positions fails the modulus check with INVALID_KEY', () => {
    const { publicKey } = b.mlKem768KeyGen(new Uint8Array(64).fill(7));
    const codes = new Set<string | undefined>();
    for (let i = 0; i < 768; i++) {
      for (const value of i % 97 === 0 ? [3329, 4095] : [3329 + (i % 767)]) {
        const r = outcome(() => b.mlKem768Encapsulate(withCoefficient(publicKey, i, value), new Uint8Array(32)) as unknown as { [k: string]: Uint8Array });
        codes.add('code' in r ? r.code : 'accepted');
      }
    }
    expect([...codes]).toEqual([CryptoErrorCode.INVALID_KEY]);
    // q − 1 is reduced, so still valid: the check is exactly "< q".
    expect(() => b.mlKem768Encapsulate(withCoefficient(publicKey, 0, 3328), new Uint8Array(32))).not.toThrow();
  });
});

describe('ML-KEM-768: every backend gives the same outcome on bad inputs', () => {
  it('wrong lengths, tampered keys and ciphertexts', () => {
    const t = V.cctvUnluckySample.tests[0]!;
    const dk = (b: CryptoBackend): Uint8Array => b.mlKem768KeyGen(hex(t.d + t.z)).secretKey;
    const cases: ((b: CryptoBackend) => Uint8Array | { [k: string]: Uint8Array })[] = [
      (b) => b.mlKem768Encapsulate(hex(t.ek).subarray(1), hex(t.m)) as unknown as { [k: string]: Uint8Array },
      (b) => b.mlKem768Encapsulate(new Uint8Array(1184).fill(0xff), hex(t.m)) as unknown as { [k: string]: Uint8Array },
      (b) => b.mlKem768Encapsulate(new Uint8Array(1184), hex(t.m)) as unknown as { [k: string]: Uint8Array },
      (b) => b.mlKem768Decapsulate(hex(t.c).subarray(1), dk(b)),
      (b) => b.mlKem768Decapsulate(new Uint8Array(1088), dk(b)),
      (b) => b.mlKem768Decapsulate(hex(t.c), dk(b).subarray(1)),
      (b) => {
        const k = dk(b);
        k[1152 + 5] = (k[1152 + 5] ?? 0) ^ 1; // inside ek: H(ek) no longer matches
        return b.mlKem768Decapsulate(hex(t.c), k);
      },
      (b) => {
        const k = dk(b);
        k[2399] = (k[2399] ?? 0) ^ 1; // inside z: a different implicit-rejection secret
        const c = hex(t.c);
        c[100] = (c[100] ?? 0) ^ 1;
        return b.mlKem768Decapsulate(c, k);
      },
    ];
    for (const [i, f] of cases.entries()) {
      const [first, ...rest] = all(f);
      for (const r of rest) expect(r, `case ${i}`).toEqual(first);
    }
  });
});

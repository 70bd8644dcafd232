// NIST ACVP ML-KEM-768 known answers (FIPS 203): keyGen and encapsulation/decapsulation.
// Vectors: ../vectors/acvp-ml-kem-768.json (see ../vectors/README.md).
import { describe, expect, it } from 'vitest';
import { CryptoError, CryptoErrorCode } from '../../src/errors.js';
import { BACKENDS, all, hex, loadVectors, toHex } from './_backends.js';

interface Acvp {
  keyGen: { tests: { tcId: number; d: string; z: string; ek: string; dk: string }[] };
  encapDecap: { tests: { tcId: number; ek: string; dk: string; m: string; c: string; k: string }[] };
}
const V = loadVectors<Acvp>('acvp-ml-kem-768.json');
const up = (b: Uint8Array): string => toHex(b).toUpperCase();

describe.each(BACKENDS)('$name backend: ACVP ML-KEM-768', (b) => {
  it.each(V.keyGen.tests)('keyGen tcId $tcId', (v) => {
    const kp = b.mlKem768KeyGen(hex(v.d + v.z));
    expect(up(kp.publicKey)).toBe(v.ek);
    expect(up(kp.secretKey)).toBe(v.dk);
  });

  it.each(V.encapDecap.tests)('encapsulation and decapsulation tcId $tcId', (v) => {
    const { ciphertext, sharedSecret } = b.mlKem768Encapsulate(hex(v.ek), hex(v.m));
    expect(up(ciphertext)).toBe(v.c);
    expect(up(sharedSecret)).toBe(v.k);
    expect(up(b.mlKem768Decapsulate(hex(v.c), hex(v.dk)))).toBe(v.k);
  });

  it('implicit rejection: a modified ciphertext yields a different, deterministic secret', () => {
    const v = V.encapDecap.tests[0]!;
    const c = hex(v.c);
    c[0] = (c[0] ?? 0) ^ 1;
    const k1 = b.mlKem768Decapsulate(c, hex(v.dk));
    expect(up(k1)).not.toBe(v.k);
    expect(toHex(b.mlKem768Decapsulate(c, hex(v.dk)))).toBe(toHex(k1));
  });

  it('rejects an encapsulation key that fails the FIPS 203 §7.2 modulus check', () => {
    const ek = hex(V.encapDecap.tests[0]!.ek);
    ek[0] = 0xff;
    ek[1] = (ek[1] ?? 0) | 0x0f; // first 12-bit coefficient = 0xfff > q
    let err: unknown;
    try {
      b.mlKem768Encapsulate(ek, new Uint8Array(32));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CryptoError);
    expect((err as CryptoError).code).toBe(CryptoErrorCode.INVALID_KEY);
  });
});

describe('ML-KEM-768: backends agree on vectors and on bad inputs', () => {
  it('byte-identical on every vector operation and on a tampered decapsulation key', () => {
    const v = V.encapDecap.tests[0]!;
    const [a, ...rest] = all((b) => b.mlKem768Encapsulate(hex(v.ek), hex(v.m)) as unknown as { [k: string]: Uint8Array });
    for (const n of rest) expect(n).toEqual(a);
    const dk = hex(v.dk);
    dk[2400 - 40] = (dk[2400 - 40] ?? 0) ^ 1; // inside H(ek): the hash check must fail
    const [x, ...others] = all((b) => b.mlKem768Decapsulate(hex(v.c), dk));
    for (const y of others) expect(y).toEqual(x);
    expect(x).toMatchObject({ code: CryptoErrorCode.INVALID_KEY });
  });
});

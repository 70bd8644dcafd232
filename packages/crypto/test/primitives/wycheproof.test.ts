// Wycheproof: every X25519 and Ed25519 case, and every AES-GCM case with a 256-bit key and 96-bit IV. Every case's expected result
// is checked against every backend, and the two backends must produce identical outcomes.
// Vectors: ../vectors/wycheproof-*.json (see ../vectors/README.md).
import { describe, expect, it } from 'vitest';
import { CryptoError, CryptoErrorCode } from '../../src/errors.js';
import { BACKENDS, both, hex, loadVectors, toHex } from './_backends.js';

type Result = 'valid' | 'invalid' | 'acceptable';
interface XdhCase { tcId: number; public: string; private: string; shared: string; result: Result; flags: string[] }
interface EddsaCase { tcId: number; pk: string; msg: string; sig: string; result: Result; flags: string[] }
interface AeadCase { tcId: number; key: string; iv: string; aad: string; msg: string; ct: string; tag: string; result: Result; flags: string[] }

const X = loadVectors<{ tests: XdhCase[] }>('wycheproof-x25519.json').tests;
const E = loadVectors<{ tests: EddsaCase[] }>('wycheproof-ed25519.json').tests;
const G = loadVectors<{ tests: AeadCase[] }>('wycheproof-aes-gcm.json').tests;

const ZERO32 = '00'.repeat(32);

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    if (e instanceof CryptoError) return e.code;
    throw e;
  }
  return undefined;
}

describe('vector files', () => {
  it('cover every result class and the flags we rely on', () => {
    expect(X.length).toBe(518); // the whole Wycheproof file
    expect(new Set(X.map((t) => t.tcId)).size).toBe(518);
    expect(E.length).toBe(151); // the whole Wycheproof file
    expect(new Set(E.map((t) => t.tcId)).size).toBe(151);
    expect(new Set(X.map((t) => t.result))).toEqual(new Set(['valid', 'acceptable']));
    expect(X.some((t) => t.flags.includes('ZeroSharedSecret'))).toBe(true);
    expect(X.some((t) => t.flags.includes('Twist'))).toBe(true);
    expect(new Set(E.map((t) => t.result))).toEqual(new Set(['valid', 'invalid']));
    expect(G.every((t) => t.key.length === 64 && t.iv.length === 24)).toBe(true);
    expect(G.map((t) => t.tcId)).toEqual(Array.from({ length: 66 }, (_, i) => 91 + i)); // the whole 96-bit-IV, 256-bit-key group
    expect(new Set(G.map((t) => t.result))).toEqual(new Set(['valid', 'invalid']));
  });
});

// Our rule (docs/spec/primitives.md §1.3): every 32-byte public key is accepted, its top bit
// masked and a non-canonical u reduced mod p (RFC 7748 §5); the only rejection is an all-zero
// output (RFC 7748 §6.1) → CryptoError(LOW_ORDER_POINT). So "valid" and "acceptable" cases with a
// non-zero shared secret must produce it, and zero-shared-secret cases must throw.
describe.each(BACKENDS)('$name backend: Wycheproof X25519', (b) => {
  it.each(X)('tcId $tcId ($result, $flags)', (t) => {
    if (t.shared === ZERO32) {
      expect(codeOf(() => b.x25519(hex(t.private), hex(t.public)))).toBe(CryptoErrorCode.LOW_ORDER_POINT);
    } else {
      expect(t.result).not.toBe('invalid');
      expect(toHex(b.x25519(hex(t.private), hex(t.public)))).toBe(t.shared);
    }
  });
});

// Our rule (docs/spec/primitives.md §1.4) is stricter than plain RFC 8032, so a
// Wycheproof "valid" case must verify and an "invalid" one must not; none of the subset is
// "acceptable" (checked below).
describe.each(BACKENDS)('$name backend: Wycheproof Ed25519', (b) => {
  it.each(E)('tcId $tcId ($result, $flags)', (t) => {
    expect(b.ed25519Verify(hex(t.pk), hex(t.msg), hex(t.sig))).toBe(t.result === 'valid');
  });
});

describe.each(BACKENDS)('$name backend: Wycheproof AES-256-GCM (96-bit IV)', (b) => {
  it.each(G)('tcId $tcId ($result, $flags)', (t) => {
    const sealed = hex(t.ct + t.tag);
    if (t.result === 'invalid') {
      expect(codeOf(() => b.aes256GcmDecrypt(hex(t.key), hex(t.iv), sealed, hex(t.aad)))).toBe(CryptoErrorCode.BAD_MAC);
    } else {
      expect(toHex(b.aes256GcmEncrypt(hex(t.key), hex(t.iv), hex(t.msg), hex(t.aad)))).toBe(t.ct + t.tag);
      expect(toHex(b.aes256GcmDecrypt(hex(t.key), hex(t.iv), sealed, hex(t.aad)))).toBe(t.msg);
    }
  });

  it('the unmodified ciphertext the ModifiedTag cases were derived from decrypts', () => {
    // Not a Wycheproof case itself: every ModifiedTag case (tcId 130–156) flips bits of this one tag.
    const t = G.find((c) => c.tcId === 142)!;
    const tag = '9ce8fef6d8ab1bf1bf887232eab590dd';
    expect(toHex(b.aes256GcmEncrypt(hex(t.key), hex(t.iv), hex(t.msg), hex(t.aad)))).toBe(t.ct + tag);
    expect(toHex(b.aes256GcmDecrypt(hex(t.key), hex(t.iv), hex(t.ct + tag), hex(t.aad)))).toBe(t.msg);
  });
});

describe('Wycheproof: noble and node agree on every case', () => {
  it('X25519', () => {
    for (const t of X) {
      const [a, n] = both((b) => b.x25519(hex(t.private), hex(t.public)));
      expect(n, `tcId ${t.tcId}`).toEqual(a);
    }
  });
  it('Ed25519', () => {
    for (const t of E) {
      const [a, n] = both((b) => b.ed25519Verify(hex(t.pk), hex(t.msg), hex(t.sig)));
      expect(n, `tcId ${t.tcId}`).toEqual(a);
    }
  });
  it('AES-256-GCM', () => {
    for (const t of G) {
      const [a, n] = both((b) => b.aes256GcmDecrypt(hex(t.key), hex(t.iv), hex(t.ct + t.tag), hex(t.aad)));
      expect(n, `tcId ${t.tcId}`).toEqual(a);
    }
  });
});

// The Ed25519 accept/reject rules of docs/spec/primitives.md §1.4, on inputs
// built to sit exactly where OpenSSL (node:crypto) and noble's own verify() disagree. Each case
// records what the raw libraries do, so the test fails if a pre-check is removed or becomes
// unnecessary, and asserts that both of our backends give the documented answer.
import * as nodeCrypto from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { describe, expect, it } from 'vitest';
import { concatBytes } from '../../src/bytes.js';
import { _ED25519_SMALL_ORDER_ENCODINGS } from '../../src/primitives/noble.js';
import { BACKENDS, both, hex, toHex } from './_backends.js';

const Point = ed25519.Point;
type P = InstanceType<typeof Point>;
const L = Point.Fn.ORDER;
const P_FIELD = 2n ** 255n - 19n;

const le = (b: Uint8Array): bigint => {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i] ?? 0);
  return n;
};
const toLe = (n: bigint): Uint8Array => {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++, n >>= 8n) out[i] = Number(n & 0xffn);
  return out;
};
const mod = (a: bigint, m: bigint): bigint => ((a % m) + m) % m;
const challenge = (r: Uint8Array, a: Uint8Array, m: Uint8Array): bigint => mod(le(sha512(concatBytes(r, a, m))), L);
/** A deterministic scalar in [1, L). */
const scalar = (label: string): bigint => mod(le(sha512(new TextEncoder().encode(label))), L - 1n) + 1n;

/** An order-8 point T and its multiples, computed from scratch (not from the list under test). */
function torsion(): P[] {
  for (let i = 0; ; i++) {
    try {
      const q = Point.fromBytes(sha512(new Uint8Array([i])).subarray(0, 32), true);
      const t = q.multiplyUnsafe(L - 1n).add(q); // [L]Q: kills the prime-order part
      let order = 1;
      for (let c = t; !c.is0(); c = c.add(t)) order++;
      if (order === 8) return Array.from({ length: 8 }, (_, k) => (k === 0 ? Point.ZERO : t.multiplyUnsafe(BigInt(k))));
    } catch {
      // not a valid encoding; try the next one
    }
  }
}
const T = torsion();
const T8 = T[1]!;

/** OpenSSL's answer, with none of our pre-checks. */
function rawOpenSsl(pk: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    const key = nodeCrypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(pk).toString('base64url') }, format: 'jwk' });
    return nodeCrypto.verify(null, msg, key, sig);
  } catch {
    return false;
  }
}
/** noble's own strict (zip215: false, cofactored) answer. */
function rawNoble(pk: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    return ed25519.verify(sig, msg, pk, { zip215: false });
  } catch {
    return false;
  }
}

function expectBoth(pk: Uint8Array, msg: Uint8Array, sig: Uint8Array, want: boolean): void {
  for (const b of BACKENDS) expect(b.ed25519Verify(pk, msg, sig), b.name).toBe(want);
  const [a, n] = both((b) => b.ed25519Verify(pk, msg, sig));
  expect(n).toEqual(a);
}

describe('the small-order encoding list', () => {
  it('is exactly the canonical encodings of the 8 torsion points plus the two x = -0 variants', () => {
    const want = new Set<string>();
    for (const t of T) {
      const e = t.toBytes();
      want.add(toHex(e));
      if (t.x === 0n) {
        const neg = e.slice();
        neg[31] = (neg[31] ?? 0) | 0x80;
        want.add(toHex(neg));
      }
    }
    expect(want.size).toBe(10);
    expect(new Set(_ED25519_SMALL_ORDER_ENCODINGS)).toEqual(want);
  });

  it('every other canonical encoding that decodes is not of small order (sampled)', () => {
    for (let i = 0; i < 64; i++) {
      const e = sha512(new Uint8Array([0xaa, i])).subarray(0, 32);
      let p: P;
      try {
        p = Point.fromBytes(e, false);
      } catch {
        continue;
      }
      expect(_ED25519_SMALL_ORDER_ENCODINGS.includes(toHex(e))).toBe(p.isSmallOrder());
    }
  });
});

describe('Ed25519 edge cases where the raw libraries disagree', () => {
  const msg: Uint8Array = new TextEncoder().encode('meshwhisper edge case');

  it('small-order A (identity) with R = identity, S = 0: OpenSSL accepts, we reject', () => {
    const A = hex('01'.padEnd(64, '0'));
    const sig = concatBytes(A, new Uint8Array(32));
    expect(rawOpenSsl(A, msg, sig)).toBe(true);
    expect(rawNoble(A, msg, sig)).toBe(false);
    expectBoth(A, msg, sig, false);
  });

  it('small-order A of order 2 with a signature that satisfies the cofactorless equation: rejected', () => {
    const A = T.find((t) => t.x === 0n && !t.is0())!.toBytes(); // (0, -1)
    const R = Point.ZERO.toBytes();
    let m: Uint8Array = msg;
    for (let i = 0; challenge(R, A, m) % 2n !== 0n; i++) m = concatBytes(msg, new Uint8Array([i]));
    const sig = concatBytes(R, new Uint8Array(32)); // [0]B - [k]A = identity when k is even
    expect(rawOpenSsl(A, m, sig)).toBe(true);
    expectBoth(A, m, sig, false);
  });

  it('non-canonical A (y = p + 1, i.e. the identity): rejected by the canonical-y rule', () => {
    const A = toLe(P_FIELD + 1n);
    const sig = concatBytes(Point.ZERO.toBytes(), new Uint8Array(32));
    expect(rawNoble(A, msg, sig)).toBe(false);
    // OpenSSL reduces y mod p here and then accepts: this is why the canonical-y rule exists.
    expect(rawOpenSsl(A, msg, sig)).toBe(true);
    expectBoth(A, msg, sig, false);
  });

  it('every non-canonical y (p ≤ y < 2^255) is rejected whatever the signature', () => {
    for (let d = 0n; d < 19n; d++) {
      for (const sign of [0, 0x80]) {
        const A = toLe(P_FIELD + d);
        A[31] = (A[31] ?? 0) | sign;
        expectBoth(A, msg, concatBytes(Point.ZERO.toBytes(), new Uint8Array(32)), false);
        expectBoth(A, msg, concatBytes(Point.BASE.toBytes(), toLe(1n)), false);
      }
    }
  });

  it('small-order R (identity) in an otherwise valid signature by the key owner: both libraries accept, we reject', () => {
    const a = scalar('owner');
    const A = Point.BASE.multiply(a).toBytes();
    const R = Point.ZERO.toBytes();
    const S = mod(challenge(R, A, msg) * a, L); // [S]B - [k]A = identity = R
    const sig = concatBytes(R, toLe(S));
    expect(rawOpenSsl(A, msg, sig)).toBe(true);
    expect(rawNoble(A, msg, sig)).toBe(true);
    expectBoth(A, msg, sig, false);
  });

  it('mixed-order A and R where the cofactorless equation holds: accepted by all', () => {
    const a = scalar('mixed');
    const A = Point.BASE.multiply(a).add(T8).toBytes();
    for (let i = 1; ; i++) {
      const r = scalar(`r${i}`);
      const t2 = T[i % 8]!;
      const R = Point.BASE.multiply(r).add(t2).toBytes();
      const k = challenge(R, A, msg);
      if (!T8.multiplyUnsafe(mod(-k, 8n) === 0n ? 0n : mod(-k, 8n)).equals(t2)) continue;
      const sig = concatBytes(R, toLe(mod(r + k * a, L))); // [S]B - [k]A = rB - kT8 = R
      expect(rawOpenSsl(A, msg, sig)).toBe(true);
      expect(rawNoble(A, msg, sig)).toBe(true);
      expectBoth(A, msg, sig, true);
      return;
    }
  });

  it('mixed-order A where only the cofactored equation holds: noble verify() accepts, OpenSSL and we reject', () => {
    const a = scalar('cofactor');
    const A = Point.BASE.multiply(a).add(T8).toBytes();
    const r = scalar('r');
    const R = Point.BASE.multiply(r).toBytes(); // no torsion in R, so [S]B - [k]A = R - kT8 ≠ R unless 8 | k
    let m: Uint8Array = msg;
    for (let i = 0; challenge(R, A, m) % 8n === 0n; i++) m = concatBytes(msg, new Uint8Array([i]));
    const sig = concatBytes(R, toLe(mod(r + challenge(R, A, m) * a, L)));
    expect(rawNoble(A, m, sig)).toBe(true);
    expect(rawOpenSsl(A, m, sig)).toBe(false);
    expectBoth(A, m, sig, false);
  });

  it('S = L - 1 is in range, S = L and S = L + (valid S) are not', () => {
    const seed = new Uint8Array(32).fill(7);
    const b = BACKENDS[0]!;
    const A = b.ed25519PublicKey(seed);
    const sig = b.ed25519Sign(seed, msg);
    const s = le(sig.subarray(32));
    expectBoth(A, msg, sig, true);
    expectBoth(A, msg, concatBytes(sig.subarray(0, 32), toLe(s + L)), false);
    expectBoth(A, msg, concatBytes(sig.subarray(0, 32), toLe(L)), false);
    expectBoth(A, msg, concatBytes(sig.subarray(0, 32), toLe(L - 1n)), false);
  });

  it('R encoded with y ≥ p or x = -0 never matches the canonical re-encoding', () => {
    const seed = new Uint8Array(32).fill(9);
    const b = BACKENDS[0]!;
    const A = b.ed25519PublicKey(seed);
    const sig = b.ed25519Sign(seed, msg);
    const flipped = sig.slice();
    flipped[31] = (flipped[31] ?? 0) ^ 0x80;
    expectBoth(A, msg, flipped, false);
    expectBoth(A, msg, concatBytes(toLe(P_FIELD + 1n), sig.subarray(32)), false);
  });
});

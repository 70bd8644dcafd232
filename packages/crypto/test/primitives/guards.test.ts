// Argument guards: both backends throw the same error class with the same message (apart from
// the `noble.`/`node.` operation prefix) for every malformed argument, and CryptoErrors carry the
// same codes.
import { describe, expect, it } from 'vitest';
import { CryptoErrorCode } from '../../src/errors.js';
import type { CryptoBackend } from '../../src/primitives/backend.js';
import { both } from './_backends.js';

const B = (n: number): Uint8Array => new Uint8Array(n).fill(1);
const notBytes = [undefined, null, 'abc', [1, 2, 3], new Uint16Array(16), Buffer.alloc(0).buffer] as unknown as Uint8Array[];

type Call = [string, (b: CryptoBackend) => Uint8Array | boolean | object, string];
// [description, call, expected error class or outcome]
const calls: Call[] = [
  ['randomBytes(-1)', (b) => b.randomBytes(-1), 'RangeError'],
  ['randomBytes(1.5)', (b) => b.randomBytes(1.5), 'RangeError'],
  ['randomBytes(NaN)', (b) => b.randomBytes(Number.NaN), 'RangeError'],
  ['hkdf length 0', (b) => b.hkdfSha256(B(32), B(0), B(0), 0), 'RangeError'],
  ['hkdf length 8161', (b) => b.hkdfSha256(B(32), B(0), B(0), 255 * 32 + 1), 'RangeError'],
  ['hkdf length 2.5', (b) => b.hkdfSha256(B(32), B(0), B(0), 2.5), 'RangeError'],
  ['x25519PublicKey 31', (b) => b.x25519PublicKey(B(31)), 'RangeError'],
  ['x25519 sk 33', (b) => b.x25519(B(33), B(32)), 'RangeError'],
  ['x25519 pk 31', (b) => b.x25519(B(32), B(31)), 'RangeError'],
  ['ed25519PublicKey 64', (b) => b.ed25519PublicKey(B(64)), 'RangeError'],
  ['ed25519Sign seed 31', (b) => b.ed25519Sign(B(31), B(3)), 'RangeError'],
  ['ed25519Verify pk 31', (b) => b.ed25519Verify(B(31), B(3), B(64)), 'false'],
  ['ed25519Verify sig 63', (b) => b.ed25519Verify(B(32), B(3), B(63)), 'false'],
  ['ed25519Verify sig 65', (b) => b.ed25519Verify(B(32), B(3), B(65)), 'false'],
  ['mlKem768KeyGen 32', (b) => b.mlKem768KeyGen(B(32)), 'RangeError'],
  ['mlKem768Encapsulate m 31', (b) => b.mlKem768Encapsulate(B(1184), B(31)), 'RangeError'],
  ['mlKem768Encapsulate ek 1183', (b) => b.mlKem768Encapsulate(B(1183), B(32)), CryptoErrorCode.INVALID_KEY],
  ['mlKem768Decapsulate ct 1087', (b) => b.mlKem768Decapsulate(B(1087), B(2400)), CryptoErrorCode.MALFORMED],
  ['mlKem768Decapsulate dk 2399', (b) => b.mlKem768Decapsulate(B(1088), B(2399)), CryptoErrorCode.INVALID_KEY],
  ['aes key 16', (b) => b.aes256GcmEncrypt(B(16), B(12), B(1), B(0)), 'RangeError'],
  ['aes nonce 16', (b) => b.aes256GcmEncrypt(B(32), B(16), B(1), B(0)), 'RangeError'],
  ['aes decrypt nonce 8', (b) => b.aes256GcmDecrypt(B(32), B(8), B(20), B(0)), 'RangeError'],
  ['aes decrypt ct 15', (b) => b.aes256GcmDecrypt(B(32), B(12), B(15), B(0)), CryptoErrorCode.BAD_MAC],
  ['aes decrypt ct 0', (b) => b.aes256GcmDecrypt(B(32), B(12), B(0), B(0)), CryptoErrorCode.BAD_MAC],
];

// Every byte argument of every method, replaced by each non-Uint8Array value.
const byteArgs: [string, (b: CryptoBackend, x: Uint8Array) => unknown][] = [
  ['sha256', (b, x) => b.sha256(x)],
  ['sha512', (b, x) => b.sha512(x)],
  ['hmacSha256.key', (b, x) => b.hmacSha256(x, B(1))],
  ['hmacSha256.msg', (b, x) => b.hmacSha256(B(1), x)],
  ['hkdfSha256.ikm', (b, x) => b.hkdfSha256(x, B(0), B(0), 32)],
  ['hkdfSha256.salt', (b, x) => b.hkdfSha256(B(1), x, B(0), 32)],
  ['hkdfSha256.info', (b, x) => b.hkdfSha256(B(1), B(0), x, 32)],
  ['x25519PublicKey', (b, x) => b.x25519PublicKey(x)],
  ['x25519.sk', (b, x) => b.x25519(x, B(32))],
  ['x25519.pk', (b, x) => b.x25519(B(32), x)],
  ['ed25519PublicKey', (b, x) => b.ed25519PublicKey(x)],
  ['ed25519Sign.seed', (b, x) => b.ed25519Sign(x, B(1))],
  ['ed25519Sign.msg', (b, x) => b.ed25519Sign(B(32), x)],
  ['ed25519Verify.pk', (b, x) => b.ed25519Verify(x, B(1), B(64))],
  ['ed25519Verify.msg', (b, x) => b.ed25519Verify(B(32), x, B(64))],
  ['ed25519Verify.sig', (b, x) => b.ed25519Verify(B(32), B(1), x)],
  ['mlKem768KeyGen', (b, x) => b.mlKem768KeyGen(x)],
  ['mlKem768Encapsulate.ek', (b, x) => b.mlKem768Encapsulate(x, B(32))],
  ['mlKem768Encapsulate.m', (b, x) => b.mlKem768Encapsulate(B(1184), x)],
  ['mlKem768Decapsulate.ct', (b, x) => b.mlKem768Decapsulate(x, B(2400))],
  ['mlKem768Decapsulate.dk', (b, x) => b.mlKem768Decapsulate(B(1088), x)],
  ['aes256GcmEncrypt.key', (b, x) => b.aes256GcmEncrypt(x, B(12), B(1), B(0))],
  ['aes256GcmEncrypt.nonce', (b, x) => b.aes256GcmEncrypt(B(32), x, B(1), B(0))],
  ['aes256GcmEncrypt.pt', (b, x) => b.aes256GcmEncrypt(B(32), B(12), x, B(0))],
  ['aes256GcmEncrypt.aad', (b, x) => b.aes256GcmEncrypt(B(32), B(12), B(1), x)],
  ['aes256GcmDecrypt.key', (b, x) => b.aes256GcmDecrypt(x, B(12), B(16), B(0))],
  ['aes256GcmDecrypt.nonce', (b, x) => b.aes256GcmDecrypt(B(32), x, B(16), B(0))],
  ['aes256GcmDecrypt.ct', (b, x) => b.aes256GcmDecrypt(B(32), B(12), x, B(0))],
  ['aes256GcmDecrypt.aad', (b, x) => b.aes256GcmDecrypt(B(32), B(12), B(16), x)],
];

describe('argument guards are identical in both backends', () => {
  it.each(calls)('%s', (_name, call, want) => {
    const [a, n] = both(call as Parameters<typeof both>[0]);
    expect(n).toEqual(a);
    if (want === 'false') expect(a).toEqual({ ok: 'false' });
    else if (want.startsWith('MW_')) expect(a).toMatchObject({ error: 'CryptoError', code: want });
    else expect(a).toMatchObject({ error: want });
  });

  it.each(byteArgs)('%s: a non-Uint8Array throws the same TypeError', (_name, call) => {
    for (const x of notBytes) {
      const [a, n] = both((b) => call(b, x) as Uint8Array);
      expect(n).toEqual(a);
      expect(a).toMatchObject({ error: 'TypeError' });
    }
  });

  it('a Node Buffer is a Uint8Array and is accepted by both', () => {
    const [a, n] = both((b) => b.sha256(Buffer.from('abc')));
    expect(n).toEqual(a);
    expect(a).toHaveProperty('ok');
  });
});

describe('size edges accepted identically', () => {
  it('randomBytes(0), randomBytes(65537) and hkdf with info longer than 1024 bytes', () => {
    for (const b of [both((x) => x.randomBytes(0)), both((x) => new Uint8Array([x.randomBytes(65537).length & 0xff, x.randomBytes(65537).length >> 8]))]) {
      expect(b[1]).toEqual(b[0]);
    }
    const [a, n] = both((b) => b.hkdfSha256(B(32), B(32), B(1500), 255 * 32));
    expect(n).toEqual(a);
  });
});

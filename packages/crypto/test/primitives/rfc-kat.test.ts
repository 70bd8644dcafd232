// Known-answer tests from the RFC texts (RFC 7748, RFC 8032, RFC 5869) and the GCM specification,
// run against every backend. Vectors: ../vectors/rfc.json (see ../vectors/README.md).
import { describe, expect, it } from 'vitest';
import { BACKENDS, hex, loadVectors, toHex } from './_backends.js';

interface Rfc {
  x25519_rfc7748_5_2: { scalar: string; u: string; out: string }[];
  x25519_rfc7748_iterated: { start: string; after1: string; after1000: string };
  x25519_rfc7748_6_1: { alicePriv: string; alicePub: string; bobPriv: string; bobPub: string; shared: string };
  ed25519_rfc8032_7_1: { name: string; secret: string; public: string; msg: string; sig: string }[];
  hkdf_sha256_rfc5869: { name: string; ikm: string; salt: string; info: string; L: number; prk: string; okm: string }[];
  aes256gcm_gcm_spec: { name: string; key: string; iv: string; aad: string; pt: string; ct: string; tag: string }[];
}
const V = loadVectors<Rfc>('rfc.json');

describe.each(BACKENDS)('$name backend: RFC 7748 X25519', (b) => {
  it.each(V.x25519_rfc7748_5_2)('§5.2 scalar multiplication $scalar', (v) => {
    expect(toHex(b.x25519(hex(v.scalar), hex(v.u)))).toBe(v.out);
  });

  it('§5.2 iterated: after 1 and 1000 iterations', () => {
    let k = hex(V.x25519_rfc7748_iterated.start);
    let u = hex(V.x25519_rfc7748_iterated.start);
    for (let i = 1; i <= 1000; i++) {
      const next = b.x25519(k, u);
      u = k;
      k = next;
      if (i === 1) expect(toHex(k)).toBe(V.x25519_rfc7748_iterated.after1);
    }
    expect(toHex(k)).toBe(V.x25519_rfc7748_iterated.after1000);
  });

  it('§6.1 Diffie-Hellman: public keys and the shared secret', () => {
    const v = V.x25519_rfc7748_6_1;
    expect(toHex(b.x25519PublicKey(hex(v.alicePriv)))).toBe(v.alicePub);
    expect(toHex(b.x25519PublicKey(hex(v.bobPriv)))).toBe(v.bobPub);
    expect(toHex(b.x25519(hex(v.alicePriv), hex(v.bobPub)))).toBe(v.shared);
    expect(toHex(b.x25519(hex(v.bobPriv), hex(v.alicePub)))).toBe(v.shared);
  });
});

describe.each(BACKENDS)('$name backend: RFC 8032 §7.1 Ed25519', (b) => {
  it.each(V.ed25519_rfc8032_7_1)('$name: public key, signature, verification', (v) => {
    expect(toHex(b.ed25519PublicKey(hex(v.secret)))).toBe(v.public);
    expect(toHex(b.ed25519Sign(hex(v.secret), hex(v.msg)))).toBe(v.sig);
    expect(b.ed25519Verify(hex(v.public), hex(v.msg), hex(v.sig))).toBe(true);
    const bad = hex(v.sig);
    bad[63] = (bad[63] ?? 0) ^ 0x01;
    expect(b.ed25519Verify(hex(v.public), hex(v.msg), bad)).toBe(false);
  });

  it('TEST 1024 really has the 1023-byte message', () => {
    expect(V.ed25519_rfc8032_7_1.find((v) => v.name === 'TEST 1024')?.msg.length).toBe(2 * 1023);
  });
});

describe.each(BACKENDS)('$name backend: RFC 5869 HKDF-SHA-256', (b) => {
  it.each(V.hkdf_sha256_rfc5869)('test case $name', (v) => {
    expect(toHex(b.hkdfSha256(hex(v.ikm), hex(v.salt), hex(v.info), v.L))).toBe(v.okm);
    // PRK = HMAC-SHA-256(salt, IKM), the empty salt standing for HashLen zero bytes (§2.2).
    const salt = v.salt === '' ? new Uint8Array(32) : hex(v.salt);
    expect(toHex(b.hmacSha256(salt, hex(v.ikm)))).toBe(v.prk);
  });
});

describe.each(BACKENDS)('$name backend: AES-256-GCM (GCM specification test cases 13-16)', (b) => {
  it.each(V.aes256gcm_gcm_spec)('$name', (v) => {
    const sealed = b.aes256GcmEncrypt(hex(v.key), hex(v.iv), hex(v.pt), hex(v.aad));
    expect(toHex(sealed)).toBe(v.ct + v.tag);
    expect(toHex(b.aes256GcmDecrypt(hex(v.key), hex(v.iv), sealed, hex(v.aad)))).toBe(v.pt);
  });
});

describe.each(BACKENDS)('$name backend: SHA-2 (FIPS 180-4 examples)', (b) => {
  it('SHA-256 and SHA-512 of "abc" and of the empty string', () => {
    const abc = new TextEncoder().encode('abc');
    expect(toHex(b.sha256(abc))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(toHex(b.sha512(abc))).toBe(
      'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f',
    );
    expect(toHex(b.sha256(new Uint8Array(0)))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });
});

import { inspect } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toHex } from '../../src/bytes.js';
import { CryptoError, CryptoErrorCode } from '../../src/errors.js';
import {
  AccountKeyPair,
  DEVICE_CERTIFICATE_LENGTH,
  DeviceKeyPair,
  KeyType,
  decodeDeviceCertificate,
  decodePublicKey,
  encodeDeviceCertificate,
  encodePublicKey,
  issueDeviceCertificate,
  mailboxIdOf,
  verifyDeviceCertificate,
} from '../../src/keys.js';
import { pqxdhInitiate } from '../../src/pqxdh.js';
import {
  KemPreKeyPair,
  X25519PreKeyPair,
  decodeKemPreKey,
  decodeOneTimePreKey,
  decodePreKeyBundle,
  decodeSignedPreKey,
  encodeKemPreKey,
  encodeOneTimePreKey,
  encodePreKeyBundle,
  encodeSignedPreKey,
  signKemPreKey,
  signSignedPreKey,
  verifyPreKeyBundle,
} from '../../src/prekeys.js';
import { bundleOf, makeDevice, testContext } from '../_fixtures.js';

const SEED = Number(process.env['MW_SEED'] ?? 20261125);
const RUNS = process.env['MW_DEEP'] === '1' ? 20_000 : 500;

describe('key model', () => {
  const ctx = testContext('keys');

  it('type-tags every encoded public key and refuses the wrong type or length', () => {
    const k = new Uint8Array(32).fill(7);
    expect(encodePublicKey(KeyType.X25519, k)[0]).toBe(2);
    expect(encodePublicKey(KeyType.Ed25519, k)[0]).toBe(1);
    expect(() => decodePublicKey(KeyType.Ed25519, encodePublicKey(KeyType.X25519, k))).toThrow(expect.objectContaining({ name: 'CryptoError', code: CryptoErrorCode.INVALID_KEY }));
    expect(() => decodePublicKey(KeyType.X25519, new Uint8Array(34).fill(2))).toThrow(expect.objectContaining({ name: 'CryptoError', code: CryptoErrorCode.INVALID_KEY }));
    expect(() => encodePublicKey(KeyType.X25519, new Uint8Array(31))).toThrow(RangeError);
  });

  it('certifies device keys with the account key; the certificate round-trips and resists tampering', () => {
    const account = AccountKeyPair.generate(ctx);
    const device = DeviceKeyPair.generate(ctx);
    const cert = issueDeviceCertificate(ctx, account, device);
    const bytes = encodeDeviceCertificate(cert);
    expect(bytes.length).toBe(DEVICE_CERTIFICATE_LENGTH);
    const back = decodeDeviceCertificate(bytes);
    expect(toHex(encodeDeviceCertificate(back))).toBe(toHex(bytes));
    verifyDeviceCertificate(ctx, back, account.publicKey);
    for (let i = 0; i < bytes.length; i++) {
      const t = Uint8Array.from(bytes);
      t[i]! ^= 0x01;
      let err: unknown;
      try {
        verifyDeviceCertificate(ctx, decodeDeviceCertificate(t), account.publicKey);
      } catch (e) {
        err = e;
      }
      expect(err, `byte ${i}`).toBeInstanceOf(CryptoError);
      // Which code depends on the byte: the version, a key tag, a length or flag field, or anything signed.
      expect(
        [CryptoErrorCode.BAD_SIGNATURE, CryptoErrorCode.UNSUPPORTED_VERSION, CryptoErrorCode.INVALID_KEY, CryptoErrorCode.MALFORMED, CryptoErrorCode.CERTIFICATE_EXPIRED, CryptoErrorCode.UNTRUSTED_IDENTITY],
        `byte ${i}`,
      ).toContain((err as CryptoError).code);
    }
    const other = AccountKeyPair.generate(ctx);
    expect(() => verifyDeviceCertificate(ctx, cert, other.publicKey)).toThrow(expect.objectContaining({ code: CryptoErrorCode.UNTRUSTED_IDENTITY }));
  });

  it('derives a static 32-byte mailbox id from the device signing key', () => {
    const d = DeviceKeyPair.generate(ctx);
    const id = mailboxIdOf(ctx, d.signingPublicKey);
    expect(id.length).toBe(32);
    expect(toHex(mailboxIdOf(ctx, d.signingPublicKey))).toBe(toHex(id));
    expect(toHex(mailboxIdOf(ctx, DeviceKeyPair.generate(ctx).signingPublicKey))).not.toBe(toHex(id));
  });

  it('prekey and bundle encodings round-trip', async () => {
    const bob = await makeDevice(ctx, 'bob');
    for (const oneTime of [true, false]) {
      const b = await bundleOf(ctx, bob, { oneTime });
      const enc = encodePreKeyBundle(b);
      const dec = decodePreKeyBundle(enc);
      expect(toHex(encodePreKeyBundle(dec))).toBe(toHex(enc));
      verifyPreKeyBundle(ctx, dec);
      expect(toHex(encodeSignedPreKey(decodeSignedPreKey(encodeSignedPreKey(b.signedPreKey))))).toBe(toHex(encodeSignedPreKey(b.signedPreKey)));
      expect(toHex(encodeKemPreKey(decodeKemPreKey(encodeKemPreKey(b.kemPreKey))))).toBe(toHex(encodeKemPreKey(b.kemPreKey)));
      if (b.oneTimePreKey) expect(decodeOneTimePreKey(encodeOneTimePreKey(b.oneTimePreKey)).id).toBe(b.oneTimePreKey.id);
    }
  });

  it('refuses expired and future-dated signed prekeys', async () => {
    const c = testContext('expiry');
    const bob = await makeDevice(c, 'bob');
    const b = await bundleOf(c, bob);
    c.clock.advance(38 * 24 * 3600 * 1000);
    expect(() => verifyPreKeyBundle(c, b)).toThrow(expect.objectContaining({ code: CryptoErrorCode.INVALID_BUNDLE }));
    const c2 = testContext('future');
    const bob2 = await makeDevice(c2, 'bob2');
    c2.clock.advance(3 * 24 * 3600 * 1000);
    const future = await bundleOf(c2, bob2);
    c2.clock.set(c2.clock.now() - 3 * 24 * 3600 * 1000);
    expect(() => verifyPreKeyBundle(c2, future)).toThrow(expect.objectContaining({ code: CryptoErrorCode.INVALID_BUNDLE }));
  });

  it('rejects low-order points in a bundle (signed, so only a malicious owner could publish one)', async () => {
    const c = testContext('low-order');
    const alice = await makeDevice(c, 'alice');
    const bob = await makeDevice(c, 'bob');
    const lowOrder = new Uint8Array(32); // u = 0, a point of order 1/2
    const evil = new X25519PreKeyPair(5, new Uint8Array(32).fill(9), lowOrder, c.now());
    const bundle = { ...(await bundleOf(c, bob, { oneTime: false })), signedPreKey: signSignedPreKey(c, bob.device, evil) };
    expect(() => pqxdhInitiate(c, alice, bundle)).toThrow(expect.objectContaining({ code: CryptoErrorCode.LOW_ORDER_POINT }));
  });

  it('rejects a KEM key that fails the FIPS 203 modulus check', async () => {
    const c = testContext('kem-mod');
    const alice = await makeDevice(c, 'alice');
    const bob = await makeDevice(c, 'bob');
    const kp = KemPreKeyPair.generate(c, 3, false);
    const broken = Uint8Array.from(kp.publicKey);
    broken[0] = 0xff;
    broken[1] = 0xff; // coefficient 0xfff > q
    const badKem = new KemPreKeyPair(3, false, kp.secretKey, broken, c.now());
    const bundle = { ...(await bundleOf(c, bob)), kemPreKey: signKemPreKey(c, bob.device, badKem) };
    expect(() => pqxdhInitiate(c, alice, bundle)).toThrow(expect.objectContaining({ code: CryptoErrorCode.INVALID_KEY }));
  });

  it('decoders turn any bytes into a value or a typed CryptoError (fuzz)', async () => {
    const bob = await makeDevice(ctx, 'bob');
    const valid = encodePreKeyBundle(await bundleOf(ctx, bob));
    const decoders = [decodePreKeyBundle, decodeDeviceCertificate, decodeSignedPreKey, decodeKemPreKey, decodeOneTimePreKey];
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 2000 }),
          fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 1, max: 255 })).map(([i, x]) => {
            const t = Uint8Array.from(valid);
            t[i]! ^= x;
            return t;
          }),
          fc.nat(valid.length).map((n) => valid.slice(0, n)),
        ),
        (bytes) => {
          for (const d of decoders) {
            try {
              d(bytes);
            } catch (e) {
              if (!(e instanceof CryptoError)) throw e;
            }
          }
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
  });
});

describe('secret hygiene', () => {
  const ctx = testContext('hygiene');
  it('inspect, toString and JSON.stringify of key objects print no secret bytes', () => {
    const seed = new Uint8Array(32).fill(0xab);
    const account = AccountKeyPair.fromSeed(ctx, seed);
    const device = DeviceKeyPair.fromSecrets(ctx, new Uint8Array(32).fill(0xcd), new Uint8Array(32).fill(0xef));
    const spk = X25519PreKeyPair.generate(ctx, 1);
    const kem = KemPreKeyPair.generate(ctx, 2, true);
    const secrets = [toHex(seed), 'cd'.repeat(32), 'ef'.repeat(32), toHex(spk.secretKey), toHex(kem.secretKey.subarray(0, 32))];
    for (const obj of [account, device, spk, kem, { nested: { account, device } }]) {
      const outputs = [inspect(obj, { depth: 10, showHidden: true }), String(obj), JSON.stringify(obj)];
      for (const out of outputs) {
        for (const s of secrets) expect(out.toLowerCase()).not.toContain(s);
        // Decimal byte dumps (a Uint8Array leaking through JSON) would show as long digit runs.
        expect(out).not.toMatch(/(\d{1,3},){31}\d{1,3}/);
      }
    }
    expect(String(account)).toContain(toHex(account.publicKey));
  });
});

/**
 * Certificate v2, device list, succession record and account deletion (docs/spec/02-keys.md
 * §2.3–2.8), and their published vectors test-vectors/device-authority.json (regenerate with
 * MW_WRITE_VECTORS=1). Every vector is checked twice: the generator must reproduce the committed
 * file byte for byte, and each case must decode and verify (or fail with its code) from the JSON.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../../src/bytes.js';
import { CERTIFICATE_EXPIRY_GRACE_MS, CERTIFICATE_VALIDITY_MS, MAX_DEVICE_LIST_ENTRIES } from '../../src/constants.js';
import type { CryptoContext } from '../../src/context.js';
import { createContext } from '../../src/context.js';
import type { DeviceList } from '../../src/device-list.js';
import {
  DeviceFlag,
  SuccessionAuthority,
  assertDeviceListed,
  decodeDeviceList,
  decodeSuccessionRecord,
  encodeDeviceList,
  encodeSuccessionRecord,
  issueDeviceList,
  issueSuccessionRecord,
  signAccountDeletion,
  successorCommitment,
  verifyAccountDeletion,
  verifyDeviceList,
  verifySuccessionRecord,
} from '../../src/device-list.js';
import { CryptoError } from '../../src/errors.js';
import type { DeviceCertificate } from '../../src/keys.js';
import {
  AccountKeyPair,
  Capability,
  DEVICE_CERTIFICATE_LENGTH,
  DeviceKeyPair,
  certificateHash,
  certificateNeedsRenewal,
  decodeDeviceCertificate,
  encodeDeviceCertificate,
  issueDeviceCertificate,
  negotiatedCapabilities,
  verifyCertificateRenewal,
  verifyDeviceCertificate,
} from '../../src/keys.js';
import { nobleBackend } from '../../src/primitives/noble.js';
import { deterministicRng } from '../../src/testing.js';

const WRITE = process.env['MW_WRITE_VECTORS'] === '1';
const VECTORS = fileURLToPath(new URL('../../../../test-vectors/device-authority.json', import.meta.url));
const T0 = 1_750_000_000_000;
const DAY = 24 * 3600 * 1000;
const KEYGEN_SEED = 'de71ce000000000000000000000000000000000000000000000000000000a117';

const ctxAt = (now: number, seed = '00'): CryptoContext => createContext({ backend: nobleBackend, random: deterministicRng(seed), now: () => now });

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof CryptoError) return e.code;
    return `not a CryptoError: ${String(e)}`;
  }
  return 'ok';
}

/** Keys in this order from KEYGEN_SEED: account, successor, attacker account, then phone, laptop, tablet devices (signing seed, DH secret each). */
function keys() {
  const c = ctxAt(T0, KEYGEN_SEED);
  const account = AccountKeyPair.generate(c);
  const successor = AccountKeyPair.generate(c);
  const attacker = AccountKeyPair.generate(c);
  const newAccount = AccountKeyPair.generate(c);
  const phone = DeviceKeyPair.generate(c);
  const laptop = DeviceKeyPair.generate(c);
  const tablet = DeviceKeyPair.generate(c);
  return { account, successor, attacker, newAccount, phone, laptop, tablet };
}

type Keys = ReturnType<typeof keys>;

function lists(k: Keys) {
  const c = ctxAt(T0);
  const commit = successorCommitment(c, k.successor.publicKey);
  const phone = { deviceIndex: 0, signingKey: k.phone.signingPublicKey, flags: DeviceFlag.Manager };
  const laptop = { deviceIndex: 1, signingKey: k.laptop.signingPublicKey, flags: 0 };
  const tablet = { deviceIndex: 2, signingKey: k.tablet.signingPublicKey, flags: 0 };
  const e1 = issueDeviceList(c, k.account, { epoch: 1, issuedAt: T0, devices: [phone], successorCommitment: commit });
  const e2 = issueDeviceList(c, k.account, { epoch: 2, issuedAt: T0 + DAY, devices: [phone, laptop], successorCommitment: commit });
  // Epoch 3 revokes the laptop and adds a tablet.
  const e3 = issueDeviceList(c, k.account, { epoch: 3, issuedAt: T0 + 2 * DAY, devices: [phone, tablet], successorCommitment: commit });
  return { e1, e2, e3, phone, laptop, tablet, commit };
}

function generate(): unknown {
  const k = keys();
  const c = ctxAt(T0);
  const certPhone = issueDeviceCertificate(c, k.account, k.phone, { issuedAt: T0, deviceIndex: 0 });
  const certLaptop = issueDeviceCertificate(c, k.account, k.laptop, { issuedAt: T0 + DAY, deviceIndex: 1, capabilities: Capability.DecryptionError | Capability.Groups });
  const certTablet = issueDeviceCertificate(c, k.account, k.tablet, {
    issuedAt: T0 + 2 * DAY,
    deviceIndex: 2,
    validityMs: 30 * DAY,
    extensions: fromHex('0001' + '0003' + 'abcdef' + '7f00' + '0000'),
  });
  const certHex = (x: DeviceCertificate) => toHex(encodeDeviceCertificate(x));
  const tamper = (hex: string, at: number) => hex.slice(0, at * 2) + (Number.parseInt(hex.slice(at * 2, at * 2 + 2), 16) ^ 1).toString(16).padStart(2, '0') + hex.slice(at * 2 + 2);
  const phoneHex = certHex(certPhone);
  const l = lists(k);
  const attackerList = issueDeviceList(c, k.attacker, { epoch: 9, issuedAt: T0, devices: [l.phone] });
  const forkedE2 = issueDeviceList(c, k.account, { epoch: 2, issuedAt: T0 + DAY, devices: [l.phone, l.tablet] });
  const reusedIndex = issueDeviceList(c, k.account, { epoch: 4, issuedAt: T0 + 3 * DAY, nextDeviceIndex: 3, devices: [l.phone, { ...l.tablet, deviceIndex: 1 }] });
  const byOldKey = issueSuccessionRecord(c, { oldAccountKey: k.account.publicKey, newAccount: k.newAccount, lastEpoch: 3, authority: SuccessionAuthority.OldAccountKey, signer: k.account, issuedAt: T0 + 3 * DAY });
  const bySuccessor = issueSuccessionRecord(c, { oldAccountKey: k.account.publicKey, newAccount: k.newAccount, lastEpoch: 3, authority: SuccessionAuthority.SuccessorKey, signer: k.successor, issuedAt: T0 + 3 * DAY });
  const byStranger = issueSuccessionRecord(c, { oldAccountKey: k.account.publicKey, newAccount: k.newAccount, lastEpoch: 3, authority: SuccessionAuthority.SuccessorKey, signer: k.attacker, issuedAt: T0 + 3 * DAY });
  const stale = issueSuccessionRecord(c, { oldAccountKey: k.account.publicKey, newAccount: k.newAccount, lastEpoch: 2, authority: SuccessionAuthority.SuccessorKey, signer: k.successor, issuedAt: T0 + 3 * DAY });
  const challenge = fromHex('0123456789abcdef0123456789abcdef');
  const deletion = signAccountDeletion(c, k.account, 3, challenge);
  // Renewals of the phone's certificate (§2.6), issued on day 61 of it.
  const R = T0 + 61 * DAY;
  const renewal = (signer: AccountKeyPair, device: { signingPublicKey: Uint8Array; dhPublicKey: Uint8Array }, o: { issuedAt?: number; deviceIndex?: number; validityMs?: number } = {}) =>
    certHex(issueDeviceCertificate(c, signer, device, { issuedAt: o.issuedAt ?? R, deviceIndex: o.deviceIndex ?? 0, ...(o.validityMs ? { validityMs: o.validityMs } : {}) }));
  const renewed = renewal(k.account, k.phone);
  const hex = (x: DeviceList) => toHex(encodeDeviceList(x));
  return {
    description:
      'MeshWhisper device authority v2 (docs/spec/02-keys.md §2.3–2.8): device certificates, account-signed device lists, succession records, account deletion. Hex unless noted; times are ms since the Unix epoch.',
    keygen: {
      seed: KEYGEN_SEED,
      rng: 'deterministicRng(seed) (docs/spec: the stream SHA-256(seed ‖ be32(i))); draws in order: account seed, successor seed, attacker account seed, new account seed (32 each), then per device phone, laptop, tablet: signing seed (32), DH secret (32)',
    },
    keys: {
      account: toHex(k.account.exportSeed()),
      accountPublicKey: toHex(k.account.publicKey),
      successor: toHex(k.successor.exportSeed()),
      successorPublicKey: toHex(k.successor.publicKey),
      attacker: toHex(k.attacker.exportSeed()),
      newAccount: toHex(k.newAccount.exportSeed()),
      ...Object.fromEntries(
        (['phone', 'laptop', 'tablet'] as const).flatMap((d) => {
          const s = k[d].exportSecrets();
          return [
            [`${d}SigningSeed`, toHex(s.signingSeed)],
            [`${d}SigningPublicKey`, toHex(k[d].signingPublicKey)],
            [`${d}DhSecret`, toHex(s.dhSecret)],
            [`${d}DhPublicKey`, toHex(k[d].dhPublicKey)],
          ];
        }),
      ),
    },
    certificates: {
      valid: [
        { name: 'phone, index 0, default capabilities, no extensions', certificate: phoneHex, length: phoneHex.length / 2, certificateHash: toHex(certificateHash(c, certPhone)), verifyAt: T0 + DAY },
        { name: 'laptop, index 1, DecryptionError|Groups', certificate: certHex(certLaptop), length: certHex(certLaptop).length / 2, certificateHash: toHex(certificateHash(c, certLaptop)), verifyAt: T0 + DAY },
        {
          name: 'tablet, index 2, 30-day validity, two non-critical extensions (type 1 = abcdef, type 0x7f00 empty)',
          certificate: certHex(certTablet),
          length: certHex(certTablet).length / 2,
          certificateHash: toHex(certificateHash(c, certTablet)),
          verifyAt: T0 + 3 * DAY,
        },
      ],
      invalid: [
        { name: 'signature byte flipped', certificate: tamper(phoneHex, DEVICE_CERTIFICATE_LENGTH - 1), verifyAt: T0 + DAY, expectedError: 'MW_CRYPTO_BAD_SIGNATURE' },
        { name: 'capabilities changed (a downgrade attempt)', certificate: tamper(phoneHex, 122), verifyAt: T0 + DAY, expectedError: 'MW_CRYPTO_BAD_SIGNATURE' },
        { name: 'expired: verified one ms after expiresAt with no grace', certificate: phoneHex, verifyAt: T0 + CERTIFICATE_VALIDITY_MS + 1, expectedError: 'MW_CRYPTO_CERTIFICATE_EXPIRED' },
        {
          name: 'expired beyond the envelope grace (graceMs = CERTIFICATE_EXPIRY_GRACE_MS)',
          certificate: phoneHex,
          verifyAt: T0 + CERTIFICATE_VALIDITY_MS + CERTIFICATE_EXPIRY_GRACE_MS + 1,
          graceMs: CERTIFICATE_EXPIRY_GRACE_MS,
          expectedError: 'MW_CRYPTO_CERTIFICATE_EXPIRED',
        },
        { name: 'issued more than a day in the future', certificate: phoneHex, verifyAt: T0 - 2 * DAY, expectedError: 'MW_CRYPTO_CERTIFICATE_EXPIRED' },
        { name: 'version byte 1 (a v1 certificate)', certificate: '01' + phoneHex.slice(2), verifyAt: T0 + DAY, expectedError: 'MW_CRYPTO_UNSUPPORTED_VERSION' },
        { name: 'a critical extension (type 0x8001) this version does not know', certificate: phoneHex.slice(0, 124 * 2) + '0004' + '80010000' + phoneHex.slice(126 * 2), verifyAt: T0 + DAY, expectedError: 'MW_CRYPTO_UNSUPPORTED_VERSION' },
        { name: 'extensions not in ascending type order', certificate: phoneHex.slice(0, 124 * 2) + '0008' + '00020000' + '00010000' + phoneHex.slice(126 * 2), verifyAt: T0 + DAY, expectedError: 'MW_CRYPTO_MALFORMED' },
        { name: 'truncated by one byte', certificate: phoneHex.slice(0, -2), verifyAt: T0 + DAY, expectedError: 'MW_CRYPTO_MALFORMED' },
        { name: 'device DH key tagged as Ed25519', certificate: phoneHex.slice(0, 67 * 2) + '01' + phoneHex.slice(68 * 2), verifyAt: T0 + DAY, expectedError: 'MW_CRYPTO_INVALID_KEY' },
      ],
    },
    deviceLists: {
      successorCommitment: toHex(l.commit),
      valid: [
        { name: 'epoch 1: the phone alone (manager)', list: hex(l.e1) },
        { name: 'epoch 2: the laptop joins', list: hex(l.e2), previous: 'epoch 1' },
        { name: 'epoch 3: the laptop is revoked, the tablet joins', list: hex(l.e3), previous: 'epoch 2' },
      ],
      listed: [
        { name: 'phone certificate on epoch 3', list: 'epoch 3', certificate: phoneHex, expectedError: null },
        { name: 'revoked laptop certificate on epoch 3', list: 'epoch 3', certificate: certHex(certLaptop), expectedError: 'MW_CRYPTO_DEVICE_NOT_LISTED' },
        { name: 'laptop certificate on epoch 2', list: 'epoch 2', certificate: certHex(certLaptop), expectedError: null },
      ],
      invalid: [
        { name: 'signed by another account key (the attacker names the victim phone)', list: hex(attackerList), expectedAccountKey: toHex(k.account.publicKey), expectedError: 'MW_CRYPTO_UNTRUSTED_IDENTITY' },
        { name: 'epoch 2 offered to a verifier that holds epoch 3 (rollback)', list: hex(l.e2), previous: 'epoch 3', expectedError: 'MW_CRYPTO_STALE_DEVICE_LIST' },
        { name: 'a second, different list for epoch 2 (fork)', list: hex(forkedE2), previous: 'epoch 2', expectedError: 'MW_CRYPTO_STALE_DEVICE_LIST' },
        { name: 'epoch 4 gives the revoked laptop index (1) to the tablet key', list: hex(reusedIndex), previous: 'epoch 3', expectedError: 'MW_CRYPTO_STALE_DEVICE_LIST' },
        { name: 'signature byte flipped', list: tamper(hex(l.e3), hex(l.e3).length / 2 - 1), expectedError: 'MW_CRYPTO_BAD_SIGNATURE' },
        { name: 'epoch field changed (3 → 2 would be a rollback; here 3 → 7)', list: hex(l.e3).slice(0, 34 * 2) + '0000000000000007' + hex(l.e3).slice(42 * 2), expectedError: 'MW_CRYPTO_BAD_SIGNATURE' },
        { name: 'no manager device', list: hex(l.e3).slice(0, 88 * 2 + 37 * 2) + '00' + hex(l.e3).slice(88 * 2 + 38 * 2), expectedError: 'MW_CRYPTO_MALFORMED' },
        { name: 'version byte 1', list: '01' + hex(l.e1).slice(2), expectedError: 'MW_CRYPTO_UNSUPPORTED_VERSION' },
      ],
    },
    succession: {
      knownList: 'epoch 3',
      newAccountPublicKey: toHex(k.newAccount.publicKey),
      valid: [
        { name: 'signed by the old account key (planned rotation)', record: toHex(encodeSuccessionRecord(byOldKey)) },
        { name: 'signed by the committed successor key (the account key is lost)', record: toHex(encodeSuccessionRecord(bySuccessor)) },
      ],
      invalid: [
        { name: 'signed by a key the list did not commit to', record: toHex(encodeSuccessionRecord(byStranger)), expectedError: 'MW_CRYPTO_UNTRUSTED_IDENTITY' },
        { name: 'based on epoch 2 while epoch 3 is known', record: toHex(encodeSuccessionRecord(stale)), expectedError: 'MW_CRYPTO_STALE_DEVICE_LIST' },
        {
          name: 'consent signature flipped (the new key never agreed)',
          record: tamper(toHex(encodeSuccessionRecord(bySuccessor)), encodeSuccessionRecord(bySuccessor).length - 1),
          expectedError: 'MW_CRYPTO_BAD_SIGNATURE',
        },
      ],
    },
    accountDeletion: {
      epoch: 3,
      challenge: toHex(challenge),
      signature: toHex(deletion.signature),
      // The DELETE /v1/account body (docs/spec/node-protocol.md §10): protobuf AccountDeletionRequest
      // { 1: account_key (bytes), 2: epoch (uint64 varint), 3: challenge (bytes), 4: signature (bytes) }.
      request: '0a20' + toHex(k.account.publicKey) + '1003' + '1a10' + toHex(challenge) + '2240' + toHex(deletion.signature),
    },
    renewals: {
      description: 'verifyCertificateRenewal(current, renewal) at verifyAt (docs/spec/02-keys.md §2.6): current is the phone certificate above',
      current: phoneHex,
      verifyAt: R,
      valid: [{ name: 'same keys and index, issued on day 61, default validity', certificate: renewed }],
      invalid: [
        { name: "the account certifies another DH key under the phone's signing key", certificate: renewal(k.account, { signingPublicKey: k.phone.signingPublicKey, dhPublicKey: k.laptop.dhPublicKey }), expectedError: 'MW_CRYPTO_UNTRUSTED_IDENTITY' },
        { name: 'another device index', certificate: renewal(k.account, k.phone, { deviceIndex: 1 }), expectedError: 'MW_CRYPTO_UNTRUSTED_IDENTITY' },
        { name: "the attacker's account certifies the phone's keys", certificate: renewal(k.attacker, k.phone), expectedError: 'MW_CRYPTO_UNTRUSTED_IDENTITY' },
        { name: 'signature byte flipped', certificate: tamper(renewed, DEVICE_CERTIFICATE_LENGTH - 1), expectedError: 'MW_CRYPTO_BAD_SIGNATURE' },
        { name: 'the current certificate offered again (not issued later)', certificate: phoneHex, expectedError: 'MW_CRYPTO_STALE_CERTIFICATE' },
        { name: 'issued later but expiring before the current one (10-day validity)', certificate: renewal(k.account, k.phone, { validityMs: 10 * DAY }), expectedError: 'MW_CRYPTO_STALE_CERTIFICATE' },
        { name: 'expired at verifyAt (issued day 1, 30-day validity)', certificate: renewal(k.account, k.phone, { issuedAt: T0 + DAY, validityMs: 30 * DAY }), expectedError: 'MW_CRYPTO_CERTIFICATE_EXPIRED' },
      ],
    },
  };
}

type Vectors = {
  keys: Record<string, string>;
  certificates: {
    valid: { name: string; certificate: string; length: number; certificateHash: string; verifyAt: number }[];
    invalid: { name: string; certificate: string; verifyAt: number; graceMs?: number; expectedError: string }[];
  };
  deviceLists: {
    valid: { name: string; list: string; previous?: string }[];
    listed: { name: string; list: string; certificate: string; expectedError: string | null }[];
    invalid: { name: string; list: string; previous?: string; expectedAccountKey?: string; expectedError: string }[];
  };
  succession: { knownList: string; newAccountPublicKey: string; valid: { name: string; record: string }[]; invalid: { name: string; record: string; expectedError: string }[] };
  accountDeletion: { epoch: number; challenge: string; signature: string; request: string };
  renewals: { current: string; verifyAt: number; valid: { name: string; certificate: string }[]; invalid: { name: string; certificate: string; expectedError: string }[] };
};

describe('test-vectors/device-authority.json', () => {
  const generated = generate();
  if (WRITE) writeFileSync(VECTORS, `${JSON.stringify(generated, null, 2)}\n`);
  if (!existsSync(VECTORS)) throw new Error('device-authority.json missing: run with MW_WRITE_VECTORS=1');
  const v = JSON.parse(readFileSync(VECTORS, 'utf8')) as Vectors;

  it('the committed file is exactly what the generator produces', () => {
    expect(v).toEqual(JSON.parse(JSON.stringify(generated)));
  });

  it('certificates: valid ones decode, re-encode and verify; invalid ones fail with their code', () => {
    for (const vc of v.certificates.valid) {
      const cert = decodeDeviceCertificate(fromHex(vc.certificate));
      expect(toHex(encodeDeviceCertificate(cert))).toBe(vc.certificate);
      expect(vc.certificate.length / 2).toBe(vc.length);
      const c = ctxAt(vc.verifyAt);
      verifyDeviceCertificate(c, cert, fromHex(v.keys['accountPublicKey']!));
      expect(toHex(certificateHash(c, cert))).toBe(vc.certificateHash);
    }
    for (const ic of v.certificates.invalid) {
      const code = codeOf(() => verifyDeviceCertificate(ctxAt(ic.verifyAt), decodeDeviceCertificate(fromHex(ic.certificate)), { graceMs: ic.graceMs ?? 0 }));
      expect(code, ic.name).toBe(ic.expectedError);
    }
  });

  it('device lists: the valid chain verifies step by step; listed/not-listed; invalid ones fail with their code', () => {
    const byName = new Map<string, DeviceList>();
    const c = ctxAt(T0);
    for (const vl of v.deviceLists.valid) {
      const l = decodeDeviceList(fromHex(vl.list));
      expect(toHex(encodeDeviceList(l))).toBe(vl.list);
      verifyDeviceList(c, l, { expectedAccountKey: fromHex(v.keys['accountPublicKey']!), previous: vl.previous ? byName.get(vl.previous) : undefined });
      byName.set(`epoch ${l.epoch}`, l);
    }
    for (const lc of v.deviceLists.listed) {
      const code = codeOf(() => assertDeviceListed(byName.get(lc.list)!, decodeDeviceCertificate(fromHex(lc.certificate))));
      expect(code, lc.name).toBe(lc.expectedError ?? 'ok');
    }
    for (const ic of v.deviceLists.invalid) {
      const code = codeOf(() =>
        verifyDeviceList(c, decodeDeviceList(fromHex(ic.list)), {
          expectedAccountKey: ic.expectedAccountKey ? fromHex(ic.expectedAccountKey) : undefined,
          previous: ic.previous ? byName.get(ic.previous) : undefined,
        }),
      );
      expect(code, ic.name).toBe(ic.expectedError);
    }
  });

  it('succession records and account deletion verify from the JSON', () => {
    const c = ctxAt(T0);
    const known = decodeDeviceList(fromHex(v.deviceLists.valid.find((x) => x.name.startsWith(v.succession.knownList))!.list));
    for (const s of v.succession.valid) {
      const rec = decodeSuccessionRecord(fromHex(s.record));
      expect(toHex(encodeSuccessionRecord(rec))).toBe(s.record);
      verifySuccessionRecord(c, rec, known);
      expect(toHex(rec.newAccountKey)).toBe(v.succession.newAccountPublicKey);
    }
    for (const s of v.succession.invalid) expect(codeOf(() => verifySuccessionRecord(c, decodeSuccessionRecord(fromHex(s.record)), known)), s.name).toBe(s.expectedError);
    const d = v.accountDeletion;
    const del = { accountKey: fromHex(v.keys['accountPublicKey']!), epoch: d.epoch, challenge: fromHex(d.challenge), signature: fromHex(d.signature) };
    expect(verifyAccountDeletion(c, del)).toBe(true);
    expect(verifyAccountDeletion(c, { ...del, epoch: 4 })).toBe(false);
    expect(verifyAccountDeletion(c, { ...del, challenge: new Uint8Array(16) })).toBe(false);
  });

  it('renewals: the valid one renews the phone certificate; the invalid ones fail with their code', () => {
    const r = v.renewals;
    const c = ctxAt(r.verifyAt);
    const current = decodeDeviceCertificate(fromHex(r.current));
    for (const ok of r.valid) expect(codeOf(() => verifyCertificateRenewal(c, current, decodeDeviceCertificate(fromHex(ok.certificate)))), ok.name).toBe('ok');
    for (const bad of r.invalid) expect(codeOf(() => verifyCertificateRenewal(c, current, decodeDeviceCertificate(fromHex(bad.certificate)))), bad.name).toBe(bad.expectedError);
  });
});

describe('certificate v2 behaviour', () => {
  const k = keys();
  it('is 190 bytes with an empty extension area, and its length prefix travels with it', () => {
    const c = ctxAt(T0);
    const cert = issueDeviceCertificate(c, k.account, k.phone);
    expect(encodeDeviceCertificate(cert).length).toBe(190);
    expect(DEVICE_CERTIFICATE_LENGTH).toBe(190);
    expect(cert.expiresAt - cert.issuedAt).toBe(CERTIFICATE_VALIDITY_MS);
  });

  it('renewal: needed in the last 30 days; the renewed certificate names the same device', () => {
    const c = ctxAt(T0);
    const cert = issueDeviceCertificate(c, k.account, k.phone);
    expect(certificateNeedsRenewal(cert, T0 + 59 * DAY)).toBe(false);
    expect(certificateNeedsRenewal(cert, T0 + 61 * DAY)).toBe(true);
    const renewed = issueDeviceCertificate(ctxAt(T0 + 61 * DAY), k.account, k.phone);
    verifyDeviceCertificate(ctxAt(T0 + 100 * DAY), renewed);
    expect(codeOf(() => verifyDeviceCertificate(ctxAt(T0 + 100 * DAY), cert))).toBe('MW_CRYPTO_CERTIFICATE_EXPIRED');
  });

  it('capabilities negotiate to the common bits; a stripped bit breaks the signature', () => {
    const c = ctxAt(T0);
    const a = issueDeviceCertificate(c, k.account, k.phone, { capabilities: Capability.DecryptionError | Capability.Groups });
    const b = issueDeviceCertificate(c, k.account, k.laptop, { capabilities: Capability.DecryptionError });
    expect(negotiatedCapabilities(a, b)).toBe(Capability.DecryptionError);
    expect(codeOf(() => verifyDeviceCertificate(c, { ...a, capabilities: Capability.DecryptionError }))).toBe('MW_CRYPTO_BAD_SIGNATURE');
  });

  it('refuses bad issue arguments with RangeError', () => {
    const c = ctxAt(T0);
    expect(() => issueDeviceCertificate(c, k.account, k.phone, { validityMs: 401 * DAY })).toThrow(RangeError);
    expect(() => issueDeviceCertificate(c, k.account, k.phone, { deviceIndex: -1 })).toThrow(RangeError);
  });
});

describe('device list behaviour', () => {
  const k = keys();
  it('refuses more than MAX_DEVICE_LIST_ENTRIES devices, duplicate keys and unknown flags', () => {
    const c = ctxAt(T0);
    const many = Array.from({ length: MAX_DEVICE_LIST_ENTRIES + 1 }, (_, i) => ({ deviceIndex: i, signingKey: DeviceKeyPair.generate(c).signingPublicKey, flags: i === 0 ? 1 : 0 }));
    expect(codeOf(() => issueDeviceList(c, k.account, { epoch: 1, devices: many }))).toBe('MW_CRYPTO_MALFORMED');
    const dup = [
      { deviceIndex: 0, signingKey: k.phone.signingPublicKey, flags: 1 },
      { deviceIndex: 1, signingKey: k.phone.signingPublicKey, flags: 0 },
    ];
    expect(codeOf(() => issueDeviceList(c, k.account, { epoch: 1, devices: dup }))).toBe('MW_CRYPTO_MALFORMED');
    expect(codeOf(() => issueDeviceList(c, k.account, { epoch: 1, devices: [{ deviceIndex: 0, signingKey: k.phone.signingPublicKey, flags: 3 }] }))).toBe('MW_CRYPTO_MALFORMED');
    expect(codeOf(() => issueDeviceList(c, k.account, { epoch: 0, devices: [{ deviceIndex: 0, signingKey: k.phone.signingPublicKey, flags: 1 }] }))).toBe('MW_CRYPTO_MALFORMED');
  });

  it('a byte-identical re-fetch of the same epoch is accepted', () => {
    const c = ctxAt(T0);
    const { e2 } = lists(k);
    verifyDeviceList(c, decodeDeviceList(encodeDeviceList(e2)), { previous: e2 });
  });

  it('decoding never throws anything but a CryptoError (truncations of a valid list)', () => {
    const bytes = encodeDeviceList(lists(k).e3);
    for (let n = 0; n < bytes.length; n++) {
      try {
        decodeDeviceList(bytes.subarray(0, n));
        throw new Error(`decoded a truncation at ${n}`);
      } catch (e) {
        expect(e).toBeInstanceOf(CryptoError);
        expect((e as CryptoError).code, `truncated at ${n}`).toBe('MW_CRYPTO_MALFORMED');
      }
    }
  });
});

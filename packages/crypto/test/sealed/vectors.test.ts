/**
 * Published vectors: test-vectors/sealed-envelope.json and test-vectors/padding.json.
 *
 * `MW_WRITE_VECTORS=1 npx vitest run packages/crypto/test/sealed/vectors.test.ts` regenerates them;
 * the normal run (1) regenerates in memory and requires the committed files to be identical, and
 * (2) re-checks every committed vector from its recorded inputs alone: keys rebuilt from recorded
 * secrets, every intermediate recomputed by the spec re-implementation in _helpers.ts, the envelope
 * re-sealed by sealEnvelope and opened by openEnvelope, and each invalid envelope rejected with its
 * recorded error code.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../../src/bytes.js';
import { createContext } from '../../src/context.js';
import { AccountKeyPair, DeviceKeyPair, decodeDeviceCertificate, encodeDeviceCertificate, issueDeviceCertificate, sameDevice } from '../../src/keys.js';
import type { DeviceCertificate } from '../../src/keys.js';
import { PADDING_BUCKETS, applyPadding, paddingBucketFor, removePadding } from '../../src/padding.js';
import { nobleBackend } from '../../src/primitives/noble.js';
import { MAX_SEALED_CONTENT_LENGTH, SEALED_ENVELOPE_OVERHEAD, openEnvelope, sealEnvelope, sealedEnvelopeLength } from '../../src/sealed-sender.js';
import { deterministicRng } from '../../src/testing.js';
import { SPEC, cryptoErrorOf, specPlaintext2, specSeal } from './_helpers.js';
import type { SpecTrace } from './_helpers.js';

const WRITE = process.env['MW_WRITE_VECTORS'] === '1';
const vectorPath = (name: string): string => fileURLToPath(new URL(`../../../../test-vectors/${name}`, import.meta.url));
const RNG_NOTE =
  'deterministicRng(seed) from packages/crypto/src/testing.ts: the stream SHA-256(seed ‖ be32(0)) ‖ SHA-256(seed ‖ be32(1)) ‖ …; each random(n) call takes the next n bytes.';

// ── Sealed envelope vectors ────────────────────────────────────────────────────────────────────

const KEYGEN_SEED = '5ea1ed000000000000000000000000000000000000000000000000000000c0de';
const ISSUED_AT = 1_750_000_000_000;
const ROLES = ['sender', 'recipient', 'otherRecipient', 'attacker', 'stranger'] as const;
type Role = (typeof ROLES)[number];

interface RoleJson {
  accountSeed: string;
  accountPublicKey: string;
  deviceSigningSeed: string;
  deviceSigningPublicKey: string;
  deviceDhSecret: string;
  deviceDhPublicKey: string;
  certificate: string;
}
interface Built {
  account: AccountKeyPair;
  device: DeviceKeyPair;
  certificate: DeviceCertificate;
}

const ctxOf = (seed: string) => createContext({ backend: nobleBackend, random: deterministicRng(seed), now: () => ISSUED_AT });

/** Identities in ROLES order, each taking account seed, device signing seed, device DH secret (32 bytes each) from the keygen RNG. */
function generateRoles(): Record<Role, Built> {
  const c = ctxOf(KEYGEN_SEED);
  const out = {} as Record<Role, Built>;
  for (const role of ROLES) {
    const account = AccountKeyPair.generate(c);
    const device = DeviceKeyPair.generate(c);
    out[role] = { account, device, certificate: issueDeviceCertificate(c, account, device, ISSUED_AT) };
  }
  return out;
}

function roleJson(b: Built): RoleJson {
  const s = b.device.exportSecrets();
  return {
    accountSeed: toHex(b.account.exportSeed()),
    accountPublicKey: toHex(b.account.publicKey),
    deviceSigningSeed: toHex(s.signingSeed),
    deviceSigningPublicKey: toHex(b.device.signingPublicKey),
    deviceDhSecret: toHex(s.dhSecret),
    deviceDhPublicKey: toHex(b.device.dhPublicKey),
    certificate: toHex(encodeDeviceCertificate(b.certificate)),
  };
}

function rolesFromJson(j: Record<Role, RoleJson>): Record<Role, Built> {
  const c = ctxOf('00');
  const out = {} as Record<Role, Built>;
  for (const role of ROLES) {
    const r = j[role];
    const account = AccountKeyPair.fromSeed(c, fromHex(r.accountSeed));
    const device = DeviceKeyPair.fromSecrets(c, fromHex(r.deviceSigningSeed), fromHex(r.deviceDhSecret));
    out[role] = { account, device, certificate: issueDeviceCertificate(c, account, device, ISSUED_AT) };
  }
  return out;
}

function traceJson(t: SpecTrace): Record<string, string | number> & { envelope: string } {
  return {
    ephemeralSecret: toHex(t.ephemeralSecret),
    ephemeralPublicKeyEncoded: toHex(t.ephemeralPublic),
    dh1: toHex(t.dh1),
    salt1: toHex(t.salt1),
    info1: SPEC.info1,
    okm1: toHex(t.okm1),
    chainKey: toHex(t.chainKey),
    key1: toHex(t.key1),
    nonce1: toHex(t.nonce1),
    plaintext1: toHex(t.plaintext1),
    aad1: toHex(t.aad1),
    c1: toHex(t.c1),
    dh2: toHex(t.dh2),
    salt2: toHex(t.salt2),
    info2: SPEC.info2,
    okm2: toHex(t.okm2),
    key2: toHex(t.key2),
    nonce2: toHex(t.nonce2),
    plaintext2Length: t.plaintext2.length,
    plaintext2: toHex(t.plaintext2),
    aad2: toHex(t.aad2),
    c2: toHex(t.c2),
    envelopeLength: t.envelope.length,
    envelope: toHex(t.envelope),
  };
}

const VALID_CASES = [
  { name: 'ratchet message, 100 bytes, smallest bucket', sealSeed: '5ea1ed01', contentType: 2, contentLength: 100 },
  { name: 'PQXDH initial message type, empty content', sealSeed: '5ea1ed02', contentType: 1, contentLength: 0 },
  { name: 'content of 1788 bytes fills 2048 exactly', sealSeed: '5ea1ed03', contentType: 2, contentLength: 1788 },
  { name: 'content of 1789 bytes needs the 4096 bucket', sealSeed: '5ea1ed04', contentType: 1, contentLength: 1789 },
] as const;

function sealedVectors(): unknown {
  const roles = generateRoles();
  const staticDh = (who: Built) => (pub: Uint8Array) => who.device.dh(ctxOf('00'), pub);
  const valid = VALID_CASES.map((vc, i) => {
    const content = deterministicRng(`c0${i.toString(16).padStart(2, '0')}`)(vc.contentLength);
    const c = ctxOf(vc.sealSeed);
    const envelope = sealEnvelope(c, {
      sender: { certificate: roles.sender.certificate, device: roles.sender.device },
      recipientDhKey: roles.recipient.device.dhPublicKey,
      contentType: vc.contentType,
      content,
    });
    const trace = specSeal(ctxOf('00'), {
      ephemeralSecret: deterministicRng(vc.sealSeed)(32),
      recipientDhKey: roles.recipient.device.dhPublicKey,
      certificate: roles.sender.certificate,
      staticDh: staticDh(roles.sender),
      plaintext2: specPlaintext2(vc.contentType, content),
    });
    if (toHex(trace.envelope) !== toHex(envelope)) throw new Error(`vector ${vc.name}: spec re-implementation and sealEnvelope disagree`);
    return { name: vc.name, sealSeed: vc.sealSeed, from: 'sender', to: 'recipient', contentType: vc.contentType, content: toHex(content), ...traceJson(trace) };
  });

  const forged = (name: string, sealSeed: string, certificate: Uint8Array, expectedError: string) => {
    const trace = specSeal(ctxOf('00'), {
      ephemeralSecret: deterministicRng(sealSeed)(32),
      recipientDhKey: roles.recipient.device.dhPublicKey,
      certificate,
      staticDh: staticDh(roles.attacker),
      plaintext2: specPlaintext2(2, Uint8Array.of(0x66, 0x6f, 0x72, 0x67, 0x65, 0x64)),
    });
    return { name, sealSeed, staticKeyOf: 'attacker', to: 'recipient', layer1Plaintext: toHex(certificate), envelope: toHex(trace.envelope), openWith: 'recipient', expectedError };
  };
  const victimWithAttackerDh = encodeDeviceCertificate({ ...roles.sender.certificate, deviceDhKey: roles.attacker.device.dhPublicKey });
  const badPadding = (() => {
    const p = specPlaintext2(2, Uint8Array.of(1, 2, 3));
    p[4] = 0x00; // the 0x80 marker removed: all-zero after the content
    const trace = specSeal(ctxOf('00'), {
      ephemeralSecret: deterministicRng('5ea1ed13')(32),
      recipientDhKey: roles.recipient.device.dhPublicKey,
      certificate: roles.sender.certificate,
      staticDh: staticDh(roles.sender),
      plaintext2: p,
    });
    return {
      name: 'authentic envelope whose layer-2 plaintext has no padding marker',
      sealSeed: '5ea1ed13',
      staticKeyOf: 'sender',
      to: 'recipient',
      plaintext2: toHex(p),
      envelope: toHex(trace.envelope),
      openWith: 'recipient',
      expectedError: 'MW_CRYPTO_MALFORMED',
    };
  })();
  const first = valid[0]!;
  const invalid = [
    forged("a stranger's valid certificate, sealed with the attacker's static key", '5ea1ed10', encodeDeviceCertificate(roles.stranger.certificate), 'MW_CRYPTO_BAD_MAC'),
    forged("the sender's certificate with its deviceDhKey replaced by the attacker's", '5ea1ed11', victimWithAttackerDh, 'MW_CRYPTO_BAD_SIGNATURE'),
    forged("the sender's unaltered certificate, sealed with the attacker's static key", '5ea1ed12', encodeDeviceCertificate(roles.sender.certificate), 'MW_CRYPTO_BAD_MAC'),
    // The attacker's own account validly certifies the victim's device keys (anyone can sign any
    // public keys): layer 1 verifies, but layer 2 needs the victim's DH secret, which she lacks.
    forged(
      "the attacker's account certifying the victim's device keys, sealed with the attacker's static key",
      '5ea1ed14',
      encodeDeviceCertificate(issueDeviceCertificate(ctxOf('00'), roles.attacker.account, roles.sender.device, ISSUED_AT)),
      'MW_CRYPTO_BAD_MAC',
    ),
    badPadding,
    { name: 'valid envelope opened by another device', envelope: first.envelope, openWith: 'otherRecipient', expectedError: 'MW_CRYPTO_BAD_MAC' },
    { name: 'valid envelope truncated by one byte (not a bucket length)', envelope: first.envelope.slice(0, -2), openWith: 'recipient', expectedError: 'MW_CRYPTO_MALFORMED' },
    {
      name: 'valid envelope with the last tag byte flipped',
      envelope: first.envelope.slice(0, -2) + (Number.parseInt(first.envelope.slice(-2), 16) ^ 1).toString(16).padStart(2, '0'),
      openWith: 'recipient',
      expectedError: 'MW_CRYPTO_BAD_MAC',
    },
  ];
  const ids = {} as Record<Role, RoleJson>;
  for (const r of ROLES) ids[r] = roleJson(roles[r]);
  return {
    description:
      'MeshWhisper sealed sender v1 envelopes (docs/spec/sealed-sender.md). Every value is hex unless noted. Each valid case records every intermediate of the key schedule.',
    generator: 'MW_WRITE_VECTORS=1 npx vitest run packages/crypto/test/sealed/vectors.test.ts',
    rng: RNG_NOTE,
    keygen: {
      seed: KEYGEN_SEED,
      order:
        'for each role in roleOrder: AccountKeyPair.generate (32-byte Ed25519 seed), DeviceKeyPair.generate (32-byte Ed25519 signing seed, then 32-byte X25519 secret); certificates issued at issuedAt',
      roleOrder: [...ROLES],
      issuedAt: ISSUED_AT,
    },
    sealRng: 'sealEnvelope takes exactly 32 bytes from ctx.random: the ephemeral X25519 secret. ephemeralSecret = first 32 bytes of deterministicRng(sealSeed).',
    identities: ids,
    valid,
    invalid,
  };
}

// ── Padding vectors ────────────────────────────────────────────────────────────────────────────

const PADDING_SEED = '9add1e';

function paddingVectors(): unknown {
  const rng = deterministicRng(PADDING_SEED);
  const bucketFor: { minimumLength: number; bucket?: number; error?: string }[] = [];
  for (const n of [0, 1, 2047, 2048, 2049, 4096, 4097, 65536, 65537, 262143, 262144, 262145]) {
    try {
      bucketFor.push({ minimumLength: n, bucket: paddingBucketFor(n) });
    } catch {
      bucketFor.push({ minimumLength: n, error: cryptoErrorOf(() => paddingBucketFor(n)).code });
    }
  }
  const sealedLength: { contentLength: number; envelopeLength?: number; error?: string }[] = [];
  const sealedSizes = [0, 1, ...PADDING_BUCKETS.flatMap((b) => [b - SEALED_ENVELOPE_OVERHEAD, b - SEALED_ENVELOPE_OVERHEAD + 1])];
  for (const n of sealedSizes) {
    if (n > MAX_SEALED_CONTENT_LENGTH) sealedLength.push({ contentLength: n, error: cryptoErrorOf(() => sealedEnvelopeLength(n)).code });
    else sealedLength.push({ contentLength: n, envelopeLength: sealedEnvelopeLength(n) });
  }
  const pad = [
    [0, 1],
    [0, 16],
    [5, 6],
    [5, 16],
    [15, 16],
    [16, 32],
    [31, 64],
  ].map(([dl, pl]) => {
    const data = rng(dl!);
    return { data: toHex(data), paddedLength: pl!, padded: toHex(applyPadding(data, pl!)) };
  });
  pad.push({ data: '800000', paddedLength: 8, padded: toHex(applyPadding(fromHex('800000'), 8)) });
  const unpadInvalid = ['', '00', '0000000000', '01', '81', '800001', '0080ff00', '7f000000'].map((h) => ({
    padded: h,
    error: cryptoErrorOf(() => removePadding(fromHex(h))).code,
  }));
  return {
    description:
      'MeshWhisper envelope padding (docs/spec/sealed-sender.md §Padding): ISO/IEC 7816-4 style (data ‖ 0x80 ‖ 0x00…) inside layer 2, envelope lengths restricted to power-of-two buckets. Hex unless noted.',
    generator: 'MW_WRITE_VECTORS=1 npx vitest run packages/crypto/test/sealed/vectors.test.ts',
    rng: RNG_NOTE,
    rngSeed: PADDING_SEED,
    rngUse: 'pad[i].data for the first seven entries, taken from the stream in order',
    marker: '80',
    buckets: [...PADDING_BUCKETS],
    sealedEnvelopeOverhead: SEALED_ENVELOPE_OVERHEAD,
    maxSealedContentLength: MAX_SEALED_CONTENT_LENGTH,
    bucketFor,
    sealedLength,
    pad,
    unpadInvalid,
  };
}

// ── The tests ──────────────────────────────────────────────────────────────────────────────────

function committed(name: string, generated: unknown): unknown {
  const path = vectorPath(name);
  if (WRITE) writeFileSync(path, `${JSON.stringify(generated, null, 2)}\n`);
  if (!existsSync(path)) throw new Error(`${name} missing: run with MW_WRITE_VECTORS=1`);
  return JSON.parse(readFileSync(path, 'utf8'));
}

describe('test-vectors/sealed-envelope.json', () => {
  const generated = sealedVectors();
  const v = committed('sealed-envelope.json', generated) as {
    keygen: { seed: string; roleOrder: Role[] };
    identities: Record<Role, RoleJson>;
    valid: (Record<string, string | number> & { sealSeed: string; contentType: number; content: string; envelope: string })[];
    invalid: { name: string; envelope: string; openWith: Role; expectedError: string; sealSeed?: string; staticKeyOf?: Role; layer1Plaintext?: string; plaintext2?: string }[];
  };

  it('the committed file is exactly what the generator produces', () => {
    expect(v).toEqual(JSON.parse(JSON.stringify(generated)));
  });

  it('identities rebuild from their recorded secrets (and from the keygen seed)', () => {
    const fromSeed = generateRoles();
    const fromJson = rolesFromJson(v.identities);
    for (const r of v.keygen.roleOrder) {
      expect(roleJson(fromJson[r])).toEqual(v.identities[r]);
      expect(roleJson(fromSeed[r])).toEqual(v.identities[r]);
      expect(toHex(encodeDeviceCertificate(decodeDeviceCertificate(fromHex(v.identities[r].certificate))))).toBe(v.identities[r].certificate);
    }
  });

  it('valid cases: every intermediate, the sealed bytes, and the opened result match', () => {
    const roles = rolesFromJson(v.identities);
    expect(v.valid.length).toBe(VALID_CASES.length);
    for (const vc of v.valid) {
      const content = fromHex(vc.content);
      const ephemeralSecret = deterministicRng(vc.sealSeed)(32);
      expect(toHex(ephemeralSecret)).toBe(vc['ephemeralSecret']);
      const trace = specSeal(ctxOf('00'), {
        ephemeralSecret,
        recipientDhKey: roles.recipient.device.dhPublicKey,
        certificate: roles.sender.certificate,
        staticDh: (pub) => roles.sender.device.dh(ctxOf('00'), pub),
        plaintext2: specPlaintext2(vc.contentType, content),
      });
      const recomputed = traceJson(trace);
      for (const [k, val] of Object.entries(recomputed)) expect(vc[k], `${vc['name']}: ${k}`).toBe(val);
      const sealed = sealEnvelope(ctxOf(vc.sealSeed), {
        sender: { certificate: roles.sender.certificate, device: roles.sender.device },
        recipientDhKey: roles.recipient.device.dhPublicKey,
        contentType: vc.contentType,
        content,
      });
      expect(toHex(sealed)).toBe(vc.envelope);
      const opened = openEnvelope(ctxOf('00'), roles.recipient.device, fromHex(vc.envelope));
      expect(opened.contentType).toBe(vc.contentType);
      expect(toHex(opened.content)).toBe(vc.content);
      expect(sameDevice(opened.sender, roles.sender.certificate)).toBe(true);
    }
  });

  it('invalid cases: each is rejected with its recorded error code, and forged ones rebuild from their inputs', () => {
    const roles = rolesFromJson(v.identities);
    expect(v.invalid.length).toBeGreaterThanOrEqual(7);
    for (const ic of v.invalid) {
      const e = cryptoErrorOf(() => openEnvelope(ctxOf('00'), roles[ic.openWith].device, fromHex(ic.envelope)));
      expect(e.code, ic.name).toBe(ic.expectedError);
      if (ic.sealSeed && ic.staticKeyOf) {
        const by = roles[ic.staticKeyOf];
        const trace = specSeal(ctxOf('00'), {
          ephemeralSecret: deterministicRng(ic.sealSeed)(32),
          recipientDhKey: roles.recipient.device.dhPublicKey,
          certificate: ic.layer1Plaintext ? fromHex(ic.layer1Plaintext) : roles.sender.certificate,
          staticDh: (pub) => by.device.dh(ctxOf('00'), pub),
          plaintext2: ic.plaintext2 ? fromHex(ic.plaintext2) : specPlaintext2(2, Uint8Array.of(0x66, 0x6f, 0x72, 0x67, 0x65, 0x64)),
        });
        expect(toHex(trace.envelope), ic.name).toBe(ic.envelope);
      }
    }
  });
});

describe('test-vectors/padding.json', () => {
  const generated = paddingVectors();
  const v = committed('padding.json', generated) as {
    buckets: number[];
    sealedEnvelopeOverhead: number;
    maxSealedContentLength: number;
    bucketFor: { minimumLength: number; bucket?: number; error?: string }[];
    sealedLength: { contentLength: number; envelopeLength?: number; error?: string }[];
    pad: { data: string; paddedLength: number; padded: string }[];
    unpadInvalid: { padded: string; error: string }[];
  };

  it('the committed file is exactly what the generator produces', () => {
    expect(v).toEqual(JSON.parse(JSON.stringify(generated)));
  });

  it('every recorded case holds for the implementation', () => {
    expect(v.buckets).toEqual([...PADDING_BUCKETS]);
    expect(v.sealedEnvelopeOverhead).toBe(SEALED_ENVELOPE_OVERHEAD);
    expect(v.maxSealedContentLength).toBe(MAX_SEALED_CONTENT_LENGTH);
    for (const c of v.bucketFor) {
      if (c.error) expect(cryptoErrorOf(() => paddingBucketFor(c.minimumLength)).code).toBe(c.error);
      else expect(paddingBucketFor(c.minimumLength)).toBe(c.bucket);
    }
    for (const c of v.sealedLength) {
      if (c.error) expect(cryptoErrorOf(() => sealedEnvelopeLength(c.contentLength)).code).toBe(c.error);
      else expect(sealedEnvelopeLength(c.contentLength)).toBe(c.envelopeLength);
    }
    for (const c of v.pad) {
      expect(toHex(applyPadding(fromHex(c.data), c.paddedLength))).toBe(c.padded);
      expect(toHex(removePadding(fromHex(c.padded)))).toBe(c.data);
      // The format, spelled out: data ‖ 80 ‖ 00…
      expect(c.padded).toBe(c.data + '80' + '00'.repeat(c.paddedLength - c.data.length / 2 - 1));
    }
    for (const c of v.unpadInvalid) expect(cryptoErrorOf(() => removePadding(fromHex(c.padded))).code).toBe(c.error);
  });
});

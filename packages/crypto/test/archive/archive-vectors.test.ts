/**
 * Published vectors for formats that v2 does not change (test-vectors/archive.json): the mailbox
 * id (docs/protocol.md §2.2) and the archive keys and blobs (§8.3) — recovery key display form,
 * key source records, the key schedule, access signatures and sealed blobs, plus blobs that must be
 * refused. Every value is re-derived here from @noble/* primitives as the spec describes, and the
 * implementation must reproduce it on every backend. Regenerate with MW_WRITE_VECTORS=1 — only on a
 * deliberate, documented format change.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as nodeCrypto from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { argon2id } from '@noble/hashes/argon2.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { describe, expect, it } from 'vitest';
import {
  ArchiveRootSecret,
  RecoveryKey,
  decodeArchiveKeySource,
  decryptArchive,
  encodeArchiveKeySource,
  encryptArchive,
  readArchiveHeader,
  verifyArchiveAccessSignature,
  type ArchiveKdfParams,
} from '../../src/archive-key.js';
import { concatBytes, fromHex, toHex, utf8 } from '../../src/bytes.js';
import { createContext } from '../../src/context.js';
import { CryptoError } from '../../src/errors.js';
import { encodePublicKey, KeyType, mailboxIdOf } from '../../src/keys.js';
import { createNodeBackend, nobleBackend } from '../../src/primitives/index.js';
import type { CryptoBackend } from '../../src/primitives/index.js';

const FILE = new URL('../../../../test-vectors/archive.json', import.meta.url);
const BACKENDS: CryptoBackend[] = [nobleBackend, createNodeBackend(nodeCrypto)];

/** An RNG that hands out exactly the listed values, in order, and fails on anything else. */
function scripted(values: string[]): (n: number) => Uint8Array {
  const queue = [...values];
  return (n) => {
    const v = queue.shift();
    if (v === undefined || v.length !== n * 2) throw new Error(`scripted RNG: unexpected request for ${n} bytes`);
    return fromHex(v);
  };
}
const ctxFor = (backend: CryptoBackend, random: string[] = []) => createContext({ backend, now: () => 1_760_000_000_000, random: scripted(random) });

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
function crockford(raw: Uint8Array): string {
  let bits = '';
  for (const b of raw) bits += b.toString(2).padStart(8, '0');
  let out = '';
  for (let i = 0; i < bits.length; i += 5) out += CROCKFORD[parseInt(bits.slice(i, i + 5).padEnd(5, '0'), 2)];
  return out;
}

/** The spec's key schedule, from @noble/* only. */
function schedule(r: Uint8Array) {
  const kEnc = hkdf(sha256, r, new Uint8Array(0), utf8('MeshWhisper_ArchiveEncryptionKey_v1'), 32);
  const seedAk = hkdf(sha256, r, new Uint8Array(0), utf8('MeshWhisper_ArchiveAccessKey_v1'), 32);
  return { kEnc: toHex(kEnc), seedAk: toHex(seedAk), accessPublicKey: toHex(ed25519.getPublicKey(seedAk)) };
}
const sigMsg = (label: string, body: Uint8Array): Uint8Array => concatBytes(Uint8Array.of(label.length), utf8(label), body);

function build() {
  const b = nobleBackend;
  // Mailbox ids of three device signing keys (RFC 8032 TEST 1–3 public keys).
  const signingKeys = [
    'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
  ];
  const mailboxIds = signingKeys.map((k) => ({
    deviceSigningKey: k,
    hashInput: toHex(concatBytes(utf8('MeshWhisper_MailboxId_v1'), encodePublicKey(KeyType.Ed25519, fromHex(k)))),
    mailboxId: toHex(sha256(concatBytes(utf8('MeshWhisper_MailboxId_v1'), Uint8Array.of(0x01), fromHex(k)))),
  }));

  // Recovery key.
  const r1 = sha256(utf8('MeshWhisper archive vector: recovery key R'));
  const checksum = sha256(concatBytes(utf8('MeshWhisper_RecoveryKeyChecksum_v1'), r1)).subarray(0, 3);
  const text = crockford(concatBytes(r1, checksum));
  const recovery = {
    R: toHex(r1),
    checksum: toHex(checksum),
    raw: toHex(concatBytes(r1, checksum)),
    display: text.match(/.{4}/g)!.join('-'),
    keySourceRecord: '01',
    ...schedule(r1),
  };

  // Passphrase (reduced test costs; production values are in docs/protocol.md §8.3). The phrase is
  // written with a decomposed "Å" (A + U+030A) to show NFKC normalisation.
  const passphrase = 'A\u030Angstr\u00f6m correct horse';
  const params = { memoryKiB: 1024, iterations: 2, parallelism: 1, salt: '000102030405060708090a0b0c0d0e0f' };
  const normalized = passphrase.normalize('NFKC');
  const r2 = argon2id(utf8(normalized), fromHex(params.salt), { m: params.memoryKiB, t: params.iterations, p: params.parallelism, dkLen: 32, version: 0x13 });
  const record2 = concatBytes(Uint8Array.of(0x02), u32(params.memoryKiB), u32(params.iterations), Uint8Array.of(params.parallelism), fromHex(params.salt));
  const pass = { passphrase, passphraseNfkcUtf8: toHex(utf8(normalized)), params, R: toHex(r2), keySourceRecord: toHex(record2), ...schedule(r2) };

  // Access signature and blobs under each source.
  const body = utf8('MeshWhisper archive vector: access challenge');
  const blobs = [
    { source: 'recovery', R: r1, record: Uint8Array.of(0x01), nonce: '0c0b0a090807060504030201', plaintext: toHex(utf8('{"history":[]}')) },
    { source: 'passphrase', R: r2, record: record2, nonce: 'a0a1a2a3a4a5a6a7a8a9aaab', plaintext: toHex(sha256(utf8('a larger archive')).subarray(0, 20)) },
  ].map((x) => {
    const header = concatBytes(Uint8Array.of(0x01), x.record, fromHex(x.nonce));
    const kEnc = fromHex(schedule(x.R).kEnc);
    const sealed = b.aes256GcmEncrypt(kEnc, fromHex(x.nonce), fromHex(x.plaintext), header);
    return { source: x.source, nonce: x.nonce, plaintext: x.plaintext, header: toHex(header), blob: toHex(concatBytes(header, sealed)) };
  });
  const accessSignature = {
    source: 'recovery',
    body: toHex(body),
    signedMessage: toHex(sigMsg('MeshWhisper_ArchiveAccess_v1', body)),
    signature: toHex(ed25519.sign(sigMsg('MeshWhisper_ArchiveAccess_v1', body), fromHex(recovery.seedAk))),
  };
  const good = fromHex(blobs[0]!.blob);
  const flip = (i: number): string => {
    const c = good.slice();
    c[i] = (c[i] ?? 0) ^ 0x01;
    return toHex(c);
  };
  const invalidBlobs = [
    { name: 'version 2', blob: toHex(concatBytes(Uint8Array.of(0x02), good.subarray(1))), error: 'MW_CRYPTO_UNSUPPORTED_VERSION' },
    { name: 'unknown key source tag 0x03', blob: toHex(concatBytes(Uint8Array.of(0x01, 0x03), good.subarray(2))), error: 'MW_CRYPTO_MALFORMED' },
    { name: 'nonce modified', blob: flip(5), error: 'MW_CRYPTO_BAD_MAC' },
    { name: 'ciphertext modified', blob: flip(14), error: 'MW_CRYPTO_BAD_MAC' },
    { name: 'tag modified', blob: flip(good.length - 1), error: 'MW_CRYPTO_BAD_MAC' },
    { name: 'truncated below header + tag', blob: toHex(good.subarray(0, 14 + 15)), error: 'MW_CRYPTO_MALFORMED' },
  ];
  return {
    description:
      'MeshWhisper mailbox ids (docs/protocol.md §2.2) and archive keys and blobs (§8.3). Hex unless noted. mailboxIds: SHA-256(utf8("MeshWhisper_MailboxId_v1") ‖ 0x01 ‖ device signing key). recovery/passphrase: R, its key source record and the key schedule (kEnc, seedAk = HKDF-SHA-256(R, empty salt, label, 32), accessPublicKey = Ed25519 public key of seedAk). The passphrase case uses reduced Argon2id costs (memoryKiB 1024, iterations 2), readable only with allowWeakParams; passphrase is a JS string (UTF-16) whose NFKC UTF-8 bytes are given. blobs: header = 0x01 ‖ key source record ‖ nonce; blob = header ‖ AES-256-GCM(kEnc, nonce, plaintext, aad = header). invalidBlobs: opened with the recovery key R, each must fail with the given code.',
    mailboxIds,
    recovery,
    passphrase: pass,
    accessSignature,
    blobs,
    invalidBlobs,
  };
}

function u32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n, false);
  return out;
}

type Vectors = ReturnType<typeof build>;

describe('test-vectors/archive.json', () => {
  const built = build();
  if (process.env['MW_WRITE_VECTORS'] === '1') writeFileSync(FILE, JSON.stringify(built, null, 1) + '\n');
  const V = JSON.parse(readFileSync(FILE, 'utf8')) as Vectors;

  it('the committed file equals what the spec derives from @noble/* alone', () => {
    expect(V).toEqual(built);
  });

  describe.each(BACKENDS)('$name backend', (backend) => {
    it('mailbox ids', () => {
      for (const m of V.mailboxIds) expect(toHex(mailboxIdOf(ctxFor(backend), fromHex(m.deviceSigningKey)))).toBe(m.mailboxId);
    });

    it('recovery key: display form, parse, key source record, access key, blob', () => {
      const ctx = ctxFor(backend, [V.blobs[0]!.nonce]);
      const rk = RecoveryKey.fromBytes(ctx, fromHex(V.recovery.R));
      expect(rk.exportDisplayString()).toBe(V.recovery.display);
      expect(toHex(RecoveryKey.parse(ctx, V.recovery.display.toLowerCase()).exportBytes())).toBe(V.recovery.R);
      const root = ArchiveRootSecret.fromRecoveryKey(rk);
      expect(toHex(encodeArchiveKeySource(root.source))).toBe(V.recovery.keySourceRecord);
      expect(toHex(root.accessKeyPair(ctx).publicKey)).toBe(V.recovery.accessPublicKey);
      expect(toHex(root.accessKeyPair(ctx).sign(ctx, fromHex(V.accessSignature.body)))).toBe(V.accessSignature.signature);
      expect(verifyArchiveAccessSignature(ctx, fromHex(V.recovery.accessPublicKey), fromHex(V.accessSignature.body), fromHex(V.accessSignature.signature))).toBe(true);
      const blob = encryptArchive(ctx, root, fromHex(V.blobs[0]!.plaintext));
      expect(toHex(blob)).toBe(V.blobs[0]!.blob);
      expect(toHex(decryptArchive(ctx, root, blob))).toBe(V.blobs[0]!.plaintext);
      expect(readArchiveHeader(blob).source).toEqual({ kind: 'recovery-key' });
    });

    it('passphrase: NFKC, Argon2id, key source record, blob', () => {
      const ctx = ctxFor(backend, [V.blobs[1]!.nonce]);
      const source = decodeArchiveKeySource(fromHex(V.passphrase.keySourceRecord), { allowWeakParams: true });
      expect(source.kind).toBe('passphrase');
      const params = (source as { params: ArchiveKdfParams }).params;
      expect({ memoryKiB: params.memoryKiB, iterations: params.iterations, parallelism: params.parallelism, salt: toHex(params.salt) }).toEqual(V.passphrase.params);
      const root = ArchiveRootSecret.fromPassphrase(V.passphrase.passphrase, params);
      expect(toHex(root.accessKeyPair(ctx).publicKey)).toBe(V.passphrase.accessPublicKey);
      // The composed spelling derives the same secret.
      expect(toHex(ArchiveRootSecret.fromPassphrase(V.passphrase.passphrase.normalize('NFC'), params).accessKeyPair(ctx).publicKey)).toBe(V.passphrase.accessPublicKey);
      expect(toHex(encryptArchive(ctx, root, fromHex(V.blobs[1]!.plaintext)))).toBe(V.blobs[1]!.blob);
      expect(toHex(decryptArchive(ctx, root, fromHex(V.blobs[1]!.blob)))).toBe(V.blobs[1]!.plaintext);
    });

    it.each(V.invalidBlobs)('refuses a blob: $name → $error', (c) => {
      const ctx = ctxFor(backend);
      const root = ArchiveRootSecret.fromRecoveryKey(RecoveryKey.fromBytes(ctx, fromHex(V.recovery.R)));
      let err: unknown;
      try {
        decryptArchive(ctx, root, fromHex(c.blob));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CryptoError);
      expect((err as CryptoError).code).toBe(c.error);
    });
  });
});

import { inspect } from 'node:util';
import { gcm } from '@noble/ciphers/aes.js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { argon2id } from '@noble/hashes/argon2.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { describe, expect, it } from 'vitest';
import {
  ARCHIVE_ACCESS_KEY_INFO,
  ARCHIVE_ENCRYPTION_KEY_INFO,
  ArchiveRootSecret,
  RECOVERY_KEY_CHECKSUM_LABEL,
  RecoveryKey,
  createArchiveKdfParams,
  decodeArchiveKeySource,
  decryptArchive,
  encodeArchiveKeySource,
  encryptArchive,
  readArchiveHeader,
  verifyArchiveAccessSignature,
} from '../../src/archive-key.js';
import type { ArchiveKdfParams } from '../../src/archive-key.js';
import { concatBytes, toHex, utf8 } from '../../src/bytes.js';
import {
  ARCHIVE_KDF_ITERATIONS,
  ARCHIVE_KDF_MAX_MEMORY_KIB,
  ARCHIVE_KDF_MEMORY_KIB,
  ARCHIVE_KDF_PARALLELISM,
} from '../../src/constants.js';
import type { CryptoContext } from '../../src/context.js';
import { createContext } from '../../src/context.js';
import { CryptoError, CryptoErrorCode } from '../../src/errors.js';
import { nobleBackend } from '../../src/primitives/noble.js';
import { deterministicRng } from '../../src/testing.js';

const ctxFor = (seed: string): CryptoContext => createContext({ backend: nobleBackend, random: deterministicRng(seed) });
const ctx = ctxFor('00');
/** Tests pass cheap costs (the params are inputs); one test below runs the production costs. */
const SMALL = { memoryKiB: 64, iterations: 1, parallelism: 1 };
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

function codeOf(f: () => unknown): CryptoErrorCode | 'no error' | 'not a CryptoError' {
  try {
    f();
    return 'no error';
  } catch (e) {
    return e instanceof CryptoError ? e.code : 'not a CryptoError';
  }
}

describe('recovery key', () => {
  const rk = RecoveryKey.generate(ctxFor('01'));
  const text = rk.exportDisplayString();

  it('is 56 Crockford base32 characters in 14 groups of 4', () => {
    expect(text).toMatch(/^[0-9A-HJKMNP-TV-Z]{4}(?:-[0-9A-HJKMNP-TV-Z]{4}){13}$/);
    expect(rk.exportBytes()).toEqual(deterministicRng('01')(32));
  });

  it('encodes key ‖ first 3 bytes of SHA-256(label ‖ key), 5 bits per character, MSB first', () => {
    const key = rk.exportBytes();
    const raw = concatBytes(key, sha256(concatBytes(utf8(RECOVERY_KEY_CHECKSUM_LABEL), key)).subarray(0, 3));
    let bits = '';
    for (const b of raw) bits += b.toString(2).padStart(8, '0');
    let expected = '';
    for (let i = 0; i < bits.length; i += 5) expected += CROCKFORD[parseInt(bits.slice(i, i + 5), 2)];
    expect(text.replaceAll('-', '')).toBe(expected);
  });

  it('parses back, forgiving case, separators, whitespace, O/0 and I/L/1', () => {
    expect(RecoveryKey.parse(ctx, text).exportBytes()).toEqual(rk.exportBytes());
    const sloppy = ` ${text.toLowerCase().replaceAll('-', ' ')}\n`;
    expect(RecoveryKey.parse(ctx, sloppy).exportBytes()).toEqual(rk.exportBytes());
    expect(RecoveryKey.parse(ctx, text.replaceAll('-', '')).exportBytes()).toEqual(rk.exportBytes());
    const aliased = text.replaceAll('0', 'O').replaceAll('1', 'l');
    expect(RecoveryKey.parse(ctx, aliased).exportBytes()).toEqual(rk.exportBytes());
  });

  it('every single-character substitution is caught (BAD_CHECKSUM)', () => {
    const plain = text.replaceAll('-', '');
    let n = 0;
    for (let i = 0; i < plain.length; i++) {
      for (const c of CROCKFORD) {
        if (c === plain[i]) continue;
        const typo = plain.slice(0, i) + c + plain.slice(i + 1);
        expect(codeOf(() => RecoveryKey.parse(ctx, typo)), typo).toBe(CryptoErrorCode.BAD_CHECKSUM);
        n++;
      }
    }
    expect(n).toBe(56 * 31);
  });

  it('every adjacent transposition is caught (BAD_CHECKSUM)', () => {
    const plain = text.replaceAll('-', '');
    for (let i = 0; i + 1 < plain.length; i++) {
      if (plain[i] === plain[i + 1]) continue;
      const typo = plain.slice(0, i) + plain[i + 1] + plain[i] + plain.slice(i + 2);
      expect(codeOf(() => RecoveryKey.parse(ctx, typo))).toBe(CryptoErrorCode.BAD_CHECKSUM);
    }
  });

  it('wrong length or foreign characters are MALFORMED', () => {
    const plain = text.replaceAll('-', '');
    expect(codeOf(() => RecoveryKey.parse(ctx, plain.slice(1)))).toBe(CryptoErrorCode.MALFORMED);
    expect(codeOf(() => RecoveryKey.parse(ctx, `${plain}0`))).toBe(CryptoErrorCode.MALFORMED);
    expect(codeOf(() => RecoveryKey.parse(ctx, ''))).toBe(CryptoErrorCode.MALFORMED);
    for (const bad of ['U', '*', 'é', '_', 'ß']) {
      expect(codeOf(() => RecoveryKey.parse(ctx, bad + plain.slice(1))), bad).toBe(CryptoErrorCode.MALFORMED);
    }
    expect(() => RecoveryKey.parse(ctx, 42 as unknown as string)).toThrow(TypeError);
  });

  it('error messages never echo what was typed', () => {
    const plain = text.replaceAll('-', '');
    const typo = (plain[0] === 'A' ? 'B' : 'A') + plain.slice(1);
    for (const input of [typo, `U${plain.slice(1)}`, plain.slice(3)]) {
      try {
        RecoveryKey.parse(ctx, input);
      } catch (e) {
        expect(String((e as Error).message)).not.toContain(plain.slice(4, 12));
      }
    }
  });
});

describe('KDF parameters', () => {
  it('production defaults come from constants.ts, salt from ctx.random', () => {
    const p = createArchiveKdfParams(ctxFor('02'));
    expect(p).toEqual({
      algorithm: 'argon2id',
      memoryKiB: ARCHIVE_KDF_MEMORY_KIB,
      iterations: ARCHIVE_KDF_ITERATIONS,
      parallelism: ARCHIVE_KDF_PARALLELISM,
      salt: deterministicRng('02')(16),
    });
  });

  it('round-trip through the public key-source record, with the documented layout', () => {
    const p = createArchiveKdfParams(ctxFor('03'), SMALL);
    const enc = encodeArchiveKeySource({ kind: 'passphrase', params: p });
    expect(toHex(enc)).toBe(`02${'00000040'}${'00000001'}01${toHex(p.salt)}`);
    expect(decodeArchiveKeySource(enc, { allowWeakParams: true })).toEqual({ kind: 'passphrase', params: p });
    // A record with costs below the floor (as a lying node could serve) is refused by default.
    expect(codeOf(() => decodeArchiveKeySource(enc))).toBe(CryptoErrorCode.WEAK_KDF_PARAMS);
    const strong = createArchiveKdfParams(ctxFor('04'));
    expect(decodeArchiveKeySource(encodeArchiveKeySource({ kind: 'passphrase', params: strong }))).toEqual({ kind: 'passphrase', params: strong });
    expect(toHex(encodeArchiveKeySource({ kind: 'recovery-key' }))).toBe('01');
    expect(decodeArchiveKeySource(Uint8Array.of(1))).toEqual({ kind: 'recovery-key' });
  });

  it('refuses bad or excessive parameters from storage', () => {
    const p = createArchiveKdfParams(ctxFor('03'), SMALL);
    const enc = encodeArchiveKeySource({ kind: 'passphrase', params: p });
    const withU32 = (off: number, v: number): Uint8Array => {
      const b = enc.slice();
      new DataView(b.buffer).setUint32(off, v);
      return b;
    };
    expect(codeOf(() => decodeArchiveKeySource(withU32(1, ARCHIVE_KDF_MAX_MEMORY_KIB + 1)))).toBe(CryptoErrorCode.LIMIT_EXCEEDED);
    expect(codeOf(() => decodeArchiveKeySource(withU32(1, 0xffffffff)))).toBe(CryptoErrorCode.LIMIT_EXCEEDED);
    expect(codeOf(() => decodeArchiveKeySource(withU32(5, 1000)))).toBe(CryptoErrorCode.LIMIT_EXCEEDED);
    expect(codeOf(() => decodeArchiveKeySource(withU32(5, 0)))).toBe(CryptoErrorCode.MALFORMED);
    expect(codeOf(() => decodeArchiveKeySource(withU32(1, 7)))).toBe(CryptoErrorCode.MALFORMED); // m < 8p
    const p0 = enc.slice();
    p0[9] = 0;
    expect(codeOf(() => decodeArchiveKeySource(p0))).toBe(CryptoErrorCode.MALFORMED);
    expect(codeOf(() => decodeArchiveKeySource(enc.subarray(0, enc.length - 1)))).toBe(CryptoErrorCode.MALFORMED);
    expect(codeOf(() => decodeArchiveKeySource(concatBytes(enc, Uint8Array.of(0))))).toBe(CryptoErrorCode.MALFORMED);
    expect(codeOf(() => decodeArchiveKeySource(Uint8Array.of(3)))).toBe(CryptoErrorCode.MALFORMED);
    expect(codeOf(() => decodeArchiveKeySource(new Uint8Array(0)))).toBe(CryptoErrorCode.MALFORMED);
    expect(codeOf(() => createArchiveKdfParams(ctx, { memoryKiB: ARCHIVE_KDF_MAX_MEMORY_KIB * 2 }))).toBe(CryptoErrorCode.LIMIT_EXCEEDED);
  });
});

describe('root secret and derived keys', () => {
  const params = createArchiveKdfParams(ctxFor('04'), SMALL);

  it('documented key schedule: R → HKDF labels → encryption key and Ed25519 access key', () => {
    const rk = RecoveryKey.generate(ctxFor('05'));
    const root = ArchiveRootSecret.fromRecoveryKey(rk);
    const R = rk.exportBytes();
    const seed = hkdf(sha256, R, new Uint8Array(0), utf8(ARCHIVE_ACCESS_KEY_INFO), 32);
    expect(root.accessKeyPair(ctx).publicKey).toEqual(ed25519.getPublicKey(seed));
    // Open a blob with nothing but the spec: K = HKDF(R, enc label), aad = bytes before the ciphertext.
    const blob = encryptArchive(ctxFor('06'), root, utf8('hello'));
    const K = hkdf(sha256, R, new Uint8Array(0), utf8(ARCHIVE_ENCRYPTION_KEY_INFO), 32);
    const header = blob.subarray(0, 1 + 1 + 12);
    expect(toHex(header.subarray(0, 2))).toBe('0101');
    expect(header.subarray(2)).toEqual(deterministicRng('06')(12));
    expect(gcm(K, header.subarray(2), header).decrypt(blob.subarray(header.length))).toEqual(utf8('hello'));
    // Passphrase: R = Argon2id(NFKC(passphrase), salt, m, t, p), 32 bytes, v1.3.
    const pr = ArchiveRootSecret.fromPassphrase('correct horse', params);
    const R2 = argon2id(utf8('correct horse'), params.salt, { m: 64, t: 1, p: 1, dkLen: 32, version: 0x13 });
    expect(pr.accessKeyPair(ctx).publicKey).toEqual(ed25519.getPublicKey(hkdf(sha256, R2, new Uint8Array(0), utf8(ARCHIVE_ACCESS_KEY_INFO), 32)));
  });

  it('is deterministic: a fresh device re-derives the same access key and opens the archive', () => {
    const rk = RecoveryKey.generate(ctxFor('07'));
    const root = ArchiveRootSecret.fromRecoveryKey(rk);
    const blob = encryptArchive(ctxFor('08'), root, utf8('history'));
    const fresh = ArchiveRootSecret.fromRecoveryKey(RecoveryKey.parse(ctx, rk.exportDisplayString()));
    expect(fresh.accessKeyPair(ctx).publicKey).toEqual(root.accessKeyPair(ctx).publicKey);
    expect(decryptArchive(ctx, fresh, blob)).toEqual(utf8('history'));

    const pRoot = ArchiveRootSecret.fromPassphrase('hunter2 hunter2', params);
    const pBlob = encryptArchive(ctxFor('09'), pRoot, utf8('more history'));
    // Fresh device: read the public header, derive, open.
    const header = readArchiveHeader(pBlob);
    expect(header.source).toEqual({ kind: 'passphrase', params });
    if (header.source.kind !== 'passphrase') throw new Error('unreachable');
    const again = ArchiveRootSecret.fromPassphrase('hunter2 hunter2', header.source.params);
    expect(again.accessKeyPair(ctx).publicKey).toEqual(pRoot.accessKeyPair(ctx).publicKey);
    expect(decryptArchive(ctx, again, pBlob)).toEqual(utf8('more history'));
  });

  it('exportSecret/fromSecret keep a root across restarts: same keys, same source, copies in and out', () => {
    const pRoot = ArchiveRootSecret.fromPassphrase('hunter2 hunter2', params);
    const secret = pRoot.exportSecret();
    const again = ArchiveRootSecret.fromSecret(secret, pRoot.source);
    secret.fill(0); // the caller's buffer is not the root's
    expect(again.accessKeyPair(ctx).publicKey).toEqual(pRoot.accessKeyPair(ctx).publicKey);
    expect(again.source).toEqual(pRoot.source);
    expect(decryptArchive(ctx, again, encryptArchive(ctx, pRoot, utf8('x')))).toEqual(utf8('x'));
    expect(() => ArchiveRootSecret.fromSecret(new Uint8Array(31), { kind: 'recovery-key' })).toThrow(RangeError);
    expect(inspect(again)).not.toContain(toHex(again.exportSecret()));
  });

  it('salt, passphrase and source each change the keys', () => {
    const a = ArchiveRootSecret.fromPassphrase('pw', params).accessKeyPair(ctx).publicKey;
    const otherSalt = createArchiveKdfParams(ctxFor('0a'), SMALL);
    expect(ArchiveRootSecret.fromPassphrase('pw', otherSalt).accessKeyPair(ctx).publicKey).not.toEqual(a);
    expect(ArchiveRootSecret.fromPassphrase('pW', params).accessKeyPair(ctx).publicKey).not.toEqual(a);
  });

  it('passphrases are NFKC-normalised (composed and decomposed accents agree)', () => {
    const composed = 'caf\u00e9 au lait';
    const decomposed = 'cafe\u0301 au lait';
    expect(composed).not.toBe(decomposed);
    const a = ArchiveRootSecret.fromPassphrase(composed, params).accessKeyPair(ctx).publicKey;
    expect(ArchiveRootSecret.fromPassphrase(decomposed, params).accessKeyPair(ctx).publicKey).toEqual(a);
    expect(() => ArchiveRootSecret.fromPassphrase('', params)).toThrow(RangeError);
  });

  it('async derivation equals sync and reports progress', async () => {
    const seen: number[] = [];
    const r = await ArchiveRootSecret.fromPassphraseAsync('pw', params, (f) => seen.push(f));
    expect(r.accessKeyPair(ctx).publicKey).toEqual(ArchiveRootSecret.fromPassphrase('pw', params).accessKeyPair(ctx).publicKey);
    expect(seen.length).toBeGreaterThan(0);
  });

  it('access signatures verify only for the same key, body and label', () => {
    const kp = ArchiveRootSecret.fromPassphrase('pw', params).accessKeyPair(ctx);
    const body = utf8('GET archive nonce=42');
    const sig = kp.sign(ctx, body);
    expect(verifyArchiveAccessSignature(ctx, kp.publicKey, body, sig)).toBe(true);
    expect(verifyArchiveAccessSignature(ctx, kp.publicKey, utf8('GET archive nonce=43'), sig)).toBe(false);
    const other = ArchiveRootSecret.fromRecoveryKey(RecoveryKey.generate(ctx)).accessKeyPair(ctx);
    expect(verifyArchiveAccessSignature(ctx, other.publicKey, body, sig)).toBe(false);
    expect(verifyArchiveAccessSignature(ctx, kp.publicKey, body, sig.subarray(1))).toBe(false);
    // A bare signature over the body (no label framing) is not an access signature.
    const seed = hkdf(sha256, new Uint8Array(32), new Uint8Array(0), utf8(ARCHIVE_ACCESS_KEY_INFO), 32);
    const bare = ed25519.sign(body, seed);
    expect(verifyArchiveAccessSignature(ctx, ed25519.getPublicKey(seed), body, bare)).toBe(false);
  });
});

describe('archive blob', () => {
  const params = createArchiveKdfParams(ctxFor('0b'), SMALL);
  const root = ArchiveRootSecret.fromPassphrase('the right one', params);
  const pt = deterministicRng('0c')(300);
  const blob = encryptArchive(ctxFor('0d'), root, pt);

  it('round trip, including empty plaintext; fresh nonce per blob', () => {
    expect(decryptArchive(ctx, root, blob)).toEqual(pt);
    expect(decryptArchive(ctx, root, encryptArchive(ctx, root, new Uint8Array(0)))).toEqual(new Uint8Array(0));
    expect(encryptArchive(ctxFor('0e'), root, pt)).not.toEqual(blob);
  });

  it('wrong passphrase or wrong recovery key fails with BAD_MAC', () => {
    const wrong = ArchiveRootSecret.fromPassphrase('the wrong one', params);
    expect(codeOf(() => decryptArchive(ctx, wrong, blob))).toBe(CryptoErrorCode.BAD_MAC);
    const rkRoot = ArchiveRootSecret.fromRecoveryKey(RecoveryKey.generate(ctx));
    const rkBlob = encryptArchive(ctx, rkRoot, pt);
    expect(codeOf(() => decryptArchive(ctx, ArchiveRootSecret.fromRecoveryKey(RecoveryKey.generate(ctx)), rkBlob))).toBe(CryptoErrorCode.BAD_MAC);
    expect(codeOf(() => decryptArchive(ctx, root, rkBlob))).toBe(CryptoErrorCode.BAD_MAC);
  });

  it('every single-byte change is rejected with a typed error', () => {
    const allowed = new Set<string>([CryptoErrorCode.BAD_MAC, CryptoErrorCode.MALFORMED, CryptoErrorCode.LIMIT_EXCEEDED, CryptoErrorCode.UNSUPPORTED_VERSION]);
    for (let i = 0; i < blob.length; i++) {
      const t = blob.slice();
      t[i] = t[i]! ^ 0x01;
      const code = codeOf(() => decryptArchive(ctx, root, t));
      expect(allowed.has(code), `byte ${i}: ${code}`).toBe(true);
    }
    const v = blob.slice();
    v[0] = 2;
    expect(codeOf(() => decryptArchive(ctx, root, v))).toBe(CryptoErrorCode.UNSUPPORTED_VERSION);
    expect(codeOf(() => readArchiveHeader(v))).toBe(CryptoErrorCode.UNSUPPORTED_VERSION);
  });

  it('truncation is MALFORMED or BAD_MAC, never a crash', () => {
    for (let n = 0; n < blob.length; n++) {
      const code = codeOf(() => decryptArchive(ctx, root, blob.subarray(0, n)));
      expect([CryptoErrorCode.MALFORMED, CryptoErrorCode.BAD_MAC]).toContain(code);
    }
  });
});

describe('secret hygiene', () => {
  it('no secret in inspect / toString / JSON of RecoveryKey, ArchiveRootSecret, ArchiveAccessKeyPair', () => {
    const rk = RecoveryKey.generate(ctxFor('10'));
    const root = ArchiveRootSecret.fromRecoveryKey(rk);
    const kp = root.accessKeyPair(ctx);
    const secrets = [toHex(rk.exportBytes()), rk.exportDisplayString(), rk.exportDisplayString().slice(0, 9)];
    const seedHex = toHex(hkdf(sha256, rk.exportBytes(), new Uint8Array(0), utf8(ARCHIVE_ACCESS_KEY_INFO), 32));
    secrets.push(seedHex);
    for (const o of [rk, root, kp]) {
      for (const s of [inspect(o, { depth: 10, showHidden: true }), String(o), JSON.stringify(o)]) {
        for (const secret of secrets) expect(s).not.toContain(secret);
      }
    }
    expect(JSON.parse(JSON.stringify(kp))).toEqual({ type: 'ArchiveAccessKeyPair', publicKey: toHex(kp.publicKey), secret: '[redacted]' });
    expect(JSON.parse(JSON.stringify(root))).toEqual({ type: 'ArchiveRootSecret', source: 'recovery-key', secret: '[redacted]' });
  });
});

describe('production KDF cost', () => {
  it(`Argon2id m=${ARCHIVE_KDF_MEMORY_KIB} KiB, t=${ARCHIVE_KDF_ITERATIONS}, p=${ARCHIVE_KDF_PARALLELISM} derives and opens an archive`, () => {
    const params: ArchiveKdfParams = createArchiveKdfParams(ctxFor('11'));
    const t0 = performance.now();
    const root = ArchiveRootSecret.fromPassphrase('a long enough passphrase', params);
    const ms = performance.now() - t0;
    console.log(`archive KDF at production cost: ${ms.toFixed(0)} ms`);
    const blob = encryptArchive(ctx, root, utf8('x'));
    expect(readArchiveHeader(blob).source).toEqual({ kind: 'passphrase', params });
    expect(decryptArchive(ctx, root, blob)).toEqual(utf8('x'));
    // A cost regression guard, loose for a shared machine: ≈0.8 s when idle.
    expect(ms).toBeGreaterThan(100);
  });
});

/**
 * Archive keys (docs/spec/archive.md): the secret that protects a user's encrypted archive (history
 * backup) and lets a fresh device with nothing but that secret fetch and open it.
 *
 *   root secret R (32 bytes) = a random recovery key, shown to the user in Crockford base32, or
 *                              Argon2id(passphrase, salt, params) with params + salt stored publicly
 *   archive encryption key   = HKDF-SHA256(R, salt = "", info = "MeshWhisper_ArchiveEncryptionKey_v1", 32)
 *   archive access seed      = HKDF-SHA256(R, salt = "", info = "MeshWhisper_ArchiveAccessKey_v1", 32)
 *                              → an Ed25519 key pair whose signature the node requires to read or
 *                              write the archive blob, so the node never sees R or the encryption key.
 *   blob = u8 version ‖ key source ‖ nonce[12] ‖ AES-256-GCM(encryption key, nonce, plaintext,
 *          aad = every byte before the ciphertext)
 */
import { argon2id, argon2idAsync } from '@noble/hashes/argon2.js';
import { _Redacted } from './_secret.js';
import { concatBytes, copyBytes, equalBytes, toHex, utf8, wipe } from './bytes.js';
import {
  AES_GCM_NONCE_LENGTH,
  AES_GCM_TAG_LENGTH,
  ARCHIVE_KDF_ITERATIONS,
  ARCHIVE_KDF_MAX_ITERATIONS,
  ARCHIVE_KDF_MAX_MEMORY_KIB,
  ARCHIVE_KDF_MAX_PARALLELISM,
  ARCHIVE_KDF_MEMORY_KIB,
  ARCHIVE_KDF_PARALLELISM,
  ARCHIVE_KDF_SALT_LENGTH,
  ARCHIVE_VERSION,
  ED25519_KEY_LENGTH,
  ED25519_SIGNATURE_LENGTH, ARCHIVE_KDF_MIN_ITERATIONS, ARCHIVE_KDF_MIN_MEMORY_KIB } from './constants.js';
import type { CryptoContext } from './context.js';
import { ByteReader, ByteWriter } from './encoding.js';
import { CryptoError, CryptoErrorCode, assertBytes } from './errors.js';
import { signedMessage } from './keys.js';

/** Length of the archive root secret and of a recovery key. */
export const ARCHIVE_ROOT_SECRET_LENGTH = 32;
/** HKDF info labels (docs/spec/archive.md §Key schedule). */
export const ARCHIVE_ENCRYPTION_KEY_INFO = 'MeshWhisper_ArchiveEncryptionKey_v1';
export const ARCHIVE_ACCESS_KEY_INFO = 'MeshWhisper_ArchiveAccessKey_v1';
/** Domain-separation label of archive-access signatures (signedMessage framing, as in keys.ts). */
export const ARCHIVE_ACCESS_SIGNATURE_LABEL = 'MeshWhisper_ArchiveAccess_v1';
/** Checksum label of the human-readable recovery key. */
export const RECOVERY_KEY_CHECKSUM_LABEL = 'MeshWhisper_RecoveryKeyChecksum_v1';

// ── Recovery key: Crockford base32 with a 24-bit checksum ────────────────────────────────────

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** Checksum bytes: a random typo slips through with probability 2^-24. */
export const RECOVERY_KEY_CHECKSUM_LENGTH = 3;
/** (32 + 3) bytes = 280 bits = exactly 56 base32 characters, no padding bits. */
export const RECOVERY_KEY_CHARS = 56;
/** Shown as 14 groups of 4 characters joined by '-'. */
export const RECOVERY_KEY_GROUP = 4;

function base32Encode(bytes: Uint8Array): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += CROCKFORD[(acc >>> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += CROCKFORD[(acc << (5 - bits)) & 31];
  return out;
}

/** Crockford's decoding leniency: case-insensitive, O→0, I/L→1; '-' and whitespace ignored. */
function normaliseRecoveryText(text: string, op: string): number[] {
  const values: number[] = [];
  let pos = 0;
  for (const ch of text) {
    pos++;
    if (ch === '-' || /\s/.test(ch)) continue;
    let c = ch.toUpperCase();
    if (c === 'O') c = '0';
    else if (c === 'I' || c === 'L') c = '1';
    const v = CROCKFORD.indexOf(c);
    if (v < 0 || c.length !== 1) {
      throw new CryptoError(CryptoErrorCode.MALFORMED, op, `character ${pos} is not a recovery-key character`);
    }
    values.push(v);
    // Stop early on absurd input (a pasted document): no need to scan it all to know it is wrong.
    if (values.length > RECOVERY_KEY_CHARS) throw new CryptoError(CryptoErrorCode.MALFORMED, op, `more than ${RECOVERY_KEY_CHARS} characters`);
  }
  return values;
}

function base32DecodeValues(values: number[]): Uint8Array {
  const out = new Uint8Array(Math.floor((values.length * 5) / 8));
  let acc = 0;
  let bits = 0;
  let i = 0;
  for (const v of values) {
    acc = (acc << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[i++] = (acc >>> bits) & 0xff;
    }
    acc &= (1 << bits) - 1;
  }
  return out;
}

function recoveryChecksum(ctx: CryptoContext, key: Uint8Array): Uint8Array {
  return ctx.backend.sha256(concatBytes(utf8(RECOVERY_KEY_CHECKSUM_LABEL), key)).slice(0, RECOVERY_KEY_CHECKSUM_LENGTH);
}

/**
 * A random 32-byte recovery key. Its display form is 56 Crockford base32 characters (key ‖ 3-byte
 * checksum) in groups of 4, e.g. "7K2M-…-Q9XA"; parsing forgives case, O/0 and I/L/1 confusion and
 * separators, and rejects typos with BAD_CHECKSUM.
 */
export class RecoveryKey extends _Redacted {
  readonly #key: Uint8Array;
  readonly #checksum: Uint8Array;
  private constructor(key: Uint8Array, checksum: Uint8Array) {
    super();
    this.#key = key;
    this.#checksum = checksum;
  }

  static generate(ctx: CryptoContext): RecoveryKey {
    return RecoveryKey.fromBytes(ctx, ctx.random(ARCHIVE_ROOT_SECRET_LENGTH));
  }

  /** From the 32 raw key bytes (copied). */
  static fromBytes(ctx: CryptoContext, key: Uint8Array): RecoveryKey {
    assertBytes(key, 'RecoveryKey.fromBytes', 'key', ARCHIVE_ROOT_SECRET_LENGTH);
    const k = copyBytes(key);
    return new RecoveryKey(k, recoveryChecksum(ctx, k));
  }

  /**
   * Parses what the user typed. Throws CryptoError MALFORMED (a character outside the alphabet, or
   * not 56 characters) or BAD_CHECKSUM (right shape, wrong characters: a typo).
   */
  static parse(ctx: CryptoContext, text: string): RecoveryKey {
    const op = 'RecoveryKey.parse';
    if (typeof text !== 'string') throw new TypeError(`${op}: text must be a string`);
    const values = normaliseRecoveryText(text, op);
    if (values.length !== RECOVERY_KEY_CHARS) {
      throw new CryptoError(CryptoErrorCode.MALFORMED, op, `expected ${RECOVERY_KEY_CHARS} characters, got ${values.length}`);
    }
    const raw = base32DecodeValues(values);
    const key = raw.slice(0, ARCHIVE_ROOT_SECRET_LENGTH);
    const expected = recoveryChecksum(ctx, key);
    const ok = equalBytes(raw.subarray(ARCHIVE_ROOT_SECRET_LENGTH), expected);
    wipe(raw);
    if (!ok) {
      wipe(key);
      throw new CryptoError(CryptoErrorCode.BAD_CHECKSUM, op, 'checksum does not match: check the key for typos');
    }
    return new RecoveryKey(key, expected);
  }

  /** The display form (SECRET: show it to the user once, never log it). */
  exportDisplayString(): string {
    const raw = concatBytes(this.#key, this.#checksum);
    const s = base32Encode(raw);
    wipe(raw);
    const groups: string[] = [];
    for (let i = 0; i < s.length; i += RECOVERY_KEY_GROUP) groups.push(s.slice(i, i + RECOVERY_KEY_GROUP));
    return groups.join('-');
  }

  /** The raw 32 bytes (SECRET). */
  exportBytes(): Uint8Array {
    return copyBytes(this.#key);
  }

  destroy(): void {
    wipe(this.#key, this.#checksum);
  }

  protected describe(): Record<string, unknown> {
    return {};
  }
}

// ── Passphrase KDF parameters (public, stored with the archive) ──────────────────────────────

/** Argon2id (RFC 9106, version 0x13) costs and salt. Public: stored next to the archive. */
export interface ArchiveKdfParams {
  readonly algorithm: 'argon2id';
  /** m, in KiB. */
  readonly memoryKiB: number;
  /** t, passes over memory. */
  readonly iterations: number;
  /** p, lanes. */
  readonly parallelism: number;
  /** 16 random bytes, fresh per archive passphrase. */
  readonly salt: Uint8Array;
}

/** Where an archive root secret came from; written into every blob header. */
export type ArchiveKeySource = { readonly kind: 'recovery-key' } | { readonly kind: 'passphrase'; readonly params: ArchiveKdfParams };

/** Key-source tags on the wire. */
export const ArchiveKeySourceTag = { RecoveryKey: 0x01, Argon2idPassphrase: 0x02 } as const;

/**
 * Fresh KDF parameters for a new passphrase: production costs (constants.ts) unless overridden
 * (tests only; an app must not lower them), and a random salt from ctx.random.
 */
export function createArchiveKdfParams(
  ctx: CryptoContext,
  costs: Partial<Pick<ArchiveKdfParams, 'memoryKiB' | 'iterations' | 'parallelism'>> = {},
): ArchiveKdfParams {
  const params: ArchiveKdfParams = {
    algorithm: 'argon2id',
    memoryKiB: costs.memoryKiB ?? ARCHIVE_KDF_MEMORY_KIB,
    iterations: costs.iterations ?? ARCHIVE_KDF_ITERATIONS,
    parallelism: costs.parallelism ?? ARCHIVE_KDF_PARALLELISM,
    salt: ctx.random(ARCHIVE_KDF_SALT_LENGTH),
  };
  validateKdfParams(params, 'createArchiveKdfParams');
  return params;
}

function validateKdfParams(p: ArchiveKdfParams, op: string): void {
  if (p.algorithm !== 'argon2id') throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'unknown KDF');
  assertBytes(p.salt, op, 'salt', ARCHIVE_KDF_SALT_LENGTH);
  const int = (v: number): boolean => Number.isInteger(v) && v >= 1;
  if (!int(p.iterations) || !int(p.parallelism) || !int(p.memoryKiB)) {
    throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'KDF costs must be positive integers');
  }
  // RFC 9106 §3.1: m ≥ 8·p KiB.
  if (p.memoryKiB < 8 * p.parallelism) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'memory must be at least 8 KiB per lane');
  if (p.memoryKiB > ARCHIVE_KDF_MAX_MEMORY_KIB || p.iterations > ARCHIVE_KDF_MAX_ITERATIONS || p.parallelism > ARCHIVE_KDF_MAX_PARALLELISM) {
    throw new CryptoError(CryptoErrorCode.LIMIT_EXCEEDED, op, 'KDF costs above the accepted maximum');
  }
}

function writeKeySource(w: ByteWriter, s: ArchiveKeySource): void {
  if (s.kind === 'recovery-key') {
    w.u8(ArchiveKeySourceTag.RecoveryKey);
    return;
  }
  validateKdfParams(s.params, 'encodeArchiveKeySource');
  w.u8(ArchiveKeySourceTag.Argon2idPassphrase).u32(s.params.memoryKiB).u32(s.params.iterations).u8(s.params.parallelism).bytes(s.params.salt);
}

function readKeySource(r: ByteReader, op: string): ArchiveKeySource {
  const tag = r.u8('key source');
  if (tag === ArchiveKeySourceTag.RecoveryKey) return { kind: 'recovery-key' };
  if (tag !== ArchiveKeySourceTag.Argon2idPassphrase) throw new CryptoError(CryptoErrorCode.MALFORMED, op, `unknown key source ${tag}`);
  const memoryKiB = r.u32('memoryKiB');
  const iterations = r.u32('iterations');
  const parallelism = r.u8('parallelism');
  const salt = r.bytes(ARCHIVE_KDF_SALT_LENGTH, 'salt');
  const params: ArchiveKdfParams = { algorithm: 'argon2id', memoryKiB, iterations, parallelism, salt };
  validateKdfParams(params, op);
  return { kind: 'passphrase', params };
}

/**
 * The public key-source record: 0x01 (recovery key), or 0x02 ‖ u32 memoryKiB ‖ u32 iterations ‖
 * u8 parallelism ‖ salt[16] (Argon2id). The node stores it readable WITHOUT authentication, since a
 * fresh device needs the salt before it can derive the access key.
 */
export function encodeArchiveKeySource(source: ArchiveKeySource): Uint8Array {
  const w = new ByteWriter();
  writeKeySource(w, source);
  return w.finish();
}

/** Decodes and bounds-checks a key-source record (MALFORMED / LIMIT_EXCEEDED). */
/**
 * Decodes a key-source record. By default a passphrase record must ask for at least
 * ARCHIVE_KDF_MIN_MEMORY_KIB and ARCHIVE_KDF_MIN_ITERATIONS (CryptoError WEAK_KDF_PARAMS): the
 * record comes from storage or from the node, which must not be able to downgrade the KDF.
 * `allowWeakParams` exists for tests with deliberately small costs.
 */
export function decodeArchiveKeySource(bytes: Uint8Array, options: { allowWeakParams?: boolean } = {}): ArchiveKeySource {
  const op = 'decodeArchiveKeySource';
  assertBytes(bytes, op, 'bytes');
  const r = new ByteReader(bytes, op);
  const s = readKeySource(r, op);
  r.finish();
  if (s.kind === 'passphrase' && !options.allowWeakParams && (s.params.memoryKiB < ARCHIVE_KDF_MIN_MEMORY_KIB || s.params.iterations < ARCHIVE_KDF_MIN_ITERATIONS)) {
    throw new CryptoError(CryptoErrorCode.WEAK_KDF_PARAMS, op, 'passphrase KDF costs are below the accepted minimum');
  }
  return s;
}

function passphraseBytes(passphrase: string, op: string): Uint8Array {
  if (typeof passphrase !== 'string') throw new TypeError(`${op}: passphrase must be a string`);
  // NFKC so the same passphrase typed on two keyboards (composed vs decomposed accents) derives the same key.
  const p = utf8(passphrase.normalize('NFKC'));
  if (p.length === 0) throw new RangeError(`${op}: passphrase must not be empty`);
  return p;
}

const argonOpts = (p: ArchiveKdfParams): { t: number; m: number; p: number; dkLen: number; version: number } => ({
  t: p.iterations,
  m: p.memoryKiB,
  p: p.parallelism,
  dkLen: ARCHIVE_ROOT_SECRET_LENGTH,
  version: 0x13,
});

// ── Root secret, derived keys ────────────────────────────────────────────────────────────────

let secretOf: (r: ArchiveRootSecret) => Uint8Array;

/** The 32-byte archive root secret and where it came from (the source is public). */
export class ArchiveRootSecret extends _Redacted {
  static {
    secretOf = (r) => r.#secret;
  }
  readonly #secret: Uint8Array;
  readonly source: ArchiveKeySource;
  private constructor(secret: Uint8Array, source: ArchiveKeySource) {
    super();
    this.#secret = secret;
    this.source = source;
  }

  /** R = the recovery key's 32 bytes. */
  static fromRecoveryKey(recoveryKey: RecoveryKey): ArchiveRootSecret {
    return new ArchiveRootSecret(recoveryKey.exportBytes(), { kind: 'recovery-key' });
  }

  /** R = Argon2id(NFKC(passphrase), salt, params). Blocks for the KDF's duration (≈0.8 s at production costs). */
  static fromPassphrase(passphrase: string, params: ArchiveKdfParams): ArchiveRootSecret {
    const op = 'ArchiveRootSecret.fromPassphrase';
    validateKdfParams(params, op);
    const pw = passphraseBytes(passphrase, op);
    const r = argon2id(pw, params.salt, argonOpts(params));
    wipe(pw);
    return new ArchiveRootSecret(r, { kind: 'passphrase', params: { ...params, salt: copyBytes(params.salt) } });
  }

  /** As fromPassphrase, yielding to the event loop (UI threads); `onProgress` gets 0..1. */
  static async fromPassphraseAsync(passphrase: string, params: ArchiveKdfParams, onProgress?: (fraction: number) => void): Promise<ArchiveRootSecret> {
    const op = 'ArchiveRootSecret.fromPassphraseAsync';
    validateKdfParams(params, op);
    const pw = passphraseBytes(passphrase, op);
    const r = await argon2idAsync(pw, params.salt, { ...argonOpts(params), ...(onProgress ? { onProgress } : {}) });
    wipe(pw);
    return new ArchiveRootSecret(r, { kind: 'passphrase', params: { ...params, salt: copyBytes(params.salt) } });
  }

  /**
   * From a root secret exported earlier (exportSecret) and its source: how a device that set the
   * archive up, or restored it, keeps using it without asking for the passphrase again.
   */
  static fromSecret(secret: Uint8Array, source: ArchiveKeySource): ArchiveRootSecret {
    assertBytes(secret, 'ArchiveRootSecret.fromSecret', 'secret', ARCHIVE_ROOT_SECRET_LENGTH);
    if (source.kind === 'passphrase') validateKdfParams(source.params, 'ArchiveRootSecret.fromSecret');
    return new ArchiveRootSecret(copyBytes(secret), source.kind === 'passphrase' ? { kind: 'passphrase', params: { ...source.params, salt: copyBytes(source.params.salt) } } : { kind: 'recovery-key' });
  }

  /** The 32-byte root secret (SECRET: store it like a private key, never log it). */
  exportSecret(): Uint8Array {
    return copyBytes(this.#secret);
  }

  /** The Ed25519 key pair the node checks before serving or replacing the archive blob. */
  accessKeyPair(ctx: CryptoContext): ArchiveAccessKeyPair {
    const seed = ctx.backend.hkdfSha256(this.#secret, new Uint8Array(0), utf8(ARCHIVE_ACCESS_KEY_INFO), 32);
    const kp = ArchiveAccessKeyPair._fromSeed(ctx, seed);
    wipe(seed);
    return kp;
  }

  destroy(): void {
    wipe(this.#secret);
  }

  protected describe(): Record<string, unknown> {
    return { source: this.source.kind };
  }
}

function encryptionKey(ctx: CryptoContext, root: ArchiveRootSecret): Uint8Array {
  return ctx.backend.hkdfSha256(secretOf(root), new Uint8Array(0), utf8(ARCHIVE_ENCRYPTION_KEY_INFO), 32);
}

/** The archive-access key pair: proves to the node, without revealing R, that a device may use the blob. */
export class ArchiveAccessKeyPair extends _Redacted {
  readonly #seed: Uint8Array;
  readonly publicKey: Uint8Array;
  private constructor(seed: Uint8Array, publicKey: Uint8Array) {
    super();
    this.#seed = seed;
    this.publicKey = publicKey;
  }
  /** Internal: derived from the root secret only (ArchiveRootSecret.accessKeyPair). */
  static _fromSeed(ctx: CryptoContext, seed: Uint8Array): ArchiveAccessKeyPair {
    assertBytes(seed, 'ArchiveAccessKeyPair', 'seed', 32);
    const s = copyBytes(seed);
    return new ArchiveAccessKeyPair(s, ctx.backend.ed25519PublicKey(s));
  }
  /** Signs `body` (the node's challenge/request) under ARCHIVE_ACCESS_SIGNATURE_LABEL. */
  sign(ctx: CryptoContext, body: Uint8Array): Uint8Array {
    assertBytes(body, 'ArchiveAccessKeyPair.sign', 'body');
    return ctx.backend.ed25519Sign(this.#seed, signedMessage(ARCHIVE_ACCESS_SIGNATURE_LABEL, body));
  }
  destroy(): void {
    wipe(this.#seed);
  }
  protected describe(): Record<string, unknown> {
    return { publicKey: toHex(this.publicKey) };
  }
}

/** For the node: whether `signature` is the archive-access key's signature over `body`. */
export function verifyArchiveAccessSignature(ctx: CryptoContext, publicKey: Uint8Array, body: Uint8Array, signature: Uint8Array): boolean {
  const op = 'verifyArchiveAccessSignature';
  assertBytes(publicKey, op, 'publicKey');
  assertBytes(body, op, 'body');
  assertBytes(signature, op, 'signature');
  if (publicKey.length !== ED25519_KEY_LENGTH || signature.length !== ED25519_SIGNATURE_LENGTH) return false;
  return ctx.backend.ed25519Verify(publicKey, signedMessage(ARCHIVE_ACCESS_SIGNATURE_LABEL, body), signature);
}

// ── Archive blob ─────────────────────────────────────────────────────────────────────────────

export interface ArchiveHeader {
  readonly version: number;
  readonly source: ArchiveKeySource;
}

function readHeader(r: ByteReader, op: string): ArchiveHeader {
  const version = r.u8('archive version');
  if (version !== ARCHIVE_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `archive version ${version}`);
  return { version, source: readKeySource(r, op) };
}

/** Reads the public header of a blob (version, key source) without any key. */
export function readArchiveHeader(blob: Uint8Array): ArchiveHeader {
  assertBytes(blob, 'readArchiveHeader', 'blob');
  return readHeader(new ByteReader(blob, 'readArchiveHeader'), 'readArchiveHeader');
}

/**
 * blob = u8 ARCHIVE_VERSION ‖ key source ‖ nonce[12] ‖ AES-256-GCM(K_enc, nonce, plaintext, aad).
 * aad = version ‖ key source ‖ nonce. The nonce is random (ctx.random): one key seals at most a few
 * archives a day, far inside GCM's 2^32 random-nonce bound.
 */
export function encryptArchive(ctx: CryptoContext, root: ArchiveRootSecret, plaintext: Uint8Array): Uint8Array {
  assertBytes(plaintext, 'encryptArchive', 'plaintext');
  const w = new ByteWriter().u8(ARCHIVE_VERSION);
  writeKeySource(w, root.source);
  w.bytes(ctx.random(AES_GCM_NONCE_LENGTH));
  const header = w.finish();
  const nonce = header.subarray(header.length - AES_GCM_NONCE_LENGTH);
  const key = encryptionKey(ctx, root);
  try {
    return concatBytes(header, ctx.backend.aes256GcmEncrypt(key, nonce, plaintext, header));
  } finally {
    wipe(key);
  }
}

/**
 * Opens a blob. Throws UNSUPPORTED_VERSION (unknown version), MALFORMED / LIMIT_EXCEEDED (bad
 * header), BAD_MAC (wrong recovery key or passphrase, or a tampered blob: indistinguishable).
 */
export function decryptArchive(ctx: CryptoContext, root: ArchiveRootSecret, blob: Uint8Array): Uint8Array {
  const op = 'decryptArchive';
  assertBytes(blob, op, 'blob');
  const r = new ByteReader(blob, op);
  readHeader(r, op);
  const nonce = r.bytes(AES_GCM_NONCE_LENGTH, 'nonce');
  if (r.remaining < AES_GCM_TAG_LENGTH) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'truncated: ciphertext shorter than the tag');
  const headerLength = blob.length - r.remaining;
  const header = blob.subarray(0, headerLength);
  const key = encryptionKey(ctx, root);
  try {
    return ctx.backend.aes256GcmDecrypt(key, nonce, blob.subarray(headerLength), header);
  } catch (e) {
    if (e instanceof CryptoError && e.code === CryptoErrorCode.BAD_MAC) {
      throw new CryptoError(CryptoErrorCode.BAD_MAC, op, 'wrong recovery key or passphrase, or the archive was modified');
    }
    throw e;
  } finally {
    wipe(key);
  }
}

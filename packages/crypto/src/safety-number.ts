/**
 * Safety numbers (docs/spec/safety-numbers.md): the 60 digits two people compare, or the QR code one
 * scans from the other, to check that each holds the other's real ACCOUNT key.
 *
 * Follows Signal's numeric fingerprint design (libsignal `NumericFingerprintGenerator`): each party's
 * half is an iterated SHA-512 over (version, key, stable identifier); 30 bytes of it become 30 digits;
 * the two halves are sorted so both sides show the same 60 digits. We differ from Signal in three
 * places, each so that a MeshWhisper number can never equal a Signal number by construction:
 * the version prefix is SAFETY_NUMBER_VERSION (Signal hashes 0x0000), the key is our type-tagged
 * Ed25519 encoding (tag 0x01, Signal's keys start 0x05), and the scannable payload is our own compact
 * binary layout rather than Signal's protobuf.
 *
 * Only the account key goes in: device keys come and go (multi-device, reinstalls) and must not
 * change the number; they are bound to the account key by device certificates instead.
 */
import { concatBytes, equalBytes } from './bytes.js';
import { ED25519_KEY_LENGTH, SAFETY_NUMBER_ITERATIONS, SAFETY_NUMBER_MAX_STABLE_ID_LENGTH, SAFETY_NUMBER_VERSION } from './constants.js';
import type { CryptoContext } from './context.js';
import { assertBytes } from './errors.js';
import { KeyType, encodePublicKey } from './keys.js';

/** One party's input to a safety number. */
export interface SafetyNumberParty {
  /** The party's raw 32-byte Ed25519 ACCOUNT public key (never a device key). */
  readonly accountKey: Uint8Array;
  /**
   * Optional app-level stable identifier (1..255 bytes, e.g. a UTF-8 username). Defaults to the raw
   * account key itself. Both parties must apply the same rule to both halves, or the numbers differ.
   */
  readonly stableId?: Uint8Array;
}

/** A computed safety number. Public data only: nothing here is secret. */
export interface SafetyNumber {
  readonly version: number;
  /** 60 ASCII digits, identical on both sides of the conversation. */
  readonly digits: string;
  /** First 32 bytes of the local party's fingerprint hash. */
  readonly localFingerprint: Uint8Array;
  /** First 32 bytes of the remote party's fingerprint hash. */
  readonly remoteFingerprint: Uint8Array;
  /** The QR payload the local party displays (see encodeScannableSafetyNumber). */
  readonly scannable: Uint8Array;
}

/** Digits per half, bytes per half that feed the digits, and the QR fingerprint length. */
export const SAFETY_NUMBER_DIGITS = 60;
export const SAFETY_NUMBER_FINGERPRINT_LENGTH = 32;
/** ASCII "MW": lets a scanner tell our payload from an unrelated QR code (→ malformed, not mismatch). */
export const SCANNABLE_SAFETY_NUMBER_MAGIC = Uint8Array.of(0x4d, 0x57);
/** magic(2) ‖ version(1) ‖ local fingerprint(32) ‖ remote fingerprint(32). */
export const SCANNABLE_SAFETY_NUMBER_LENGTH = 2 + 1 + 2 * SAFETY_NUMBER_FINGERPRINT_LENGTH;

/**
 * The iterated hash of one party (Signal's `get_fingerprint`):
 *   h_0 = SHA-512(u16be(hashVersion) ‖ key ‖ stableId ‖ key)
 *   h_i = SHA-512(h_{i-1} ‖ key)            for i = 1 … iterations-1
 * Returns the 64-byte h_{iterations-1}. `key` is an encoded (type-tagged) public key. Exposed for the
 * known-answer test against Signal's published vector; protocol code calls computeSafetyNumber.
 */
export function _fingerprintHash(
  ctx: CryptoContext,
  hashVersion: number,
  key: Uint8Array,
  stableId: Uint8Array,
  iterations: number,
): Uint8Array {
  const op = '_fingerprintHash';
  assertBytes(key, op, 'key');
  assertBytes(stableId, op, 'stableId');
  if (!Number.isInteger(hashVersion) || hashVersion < 0 || hashVersion > 0xffff) throw new RangeError(`${op}: hashVersion ${hashVersion} out of range`);
  if (!Number.isInteger(iterations) || iterations < 2 || iterations > 1_000_000) throw new RangeError(`${op}: iterations ${iterations} out of range`);
  let h = ctx.backend.sha512(concatBytes(Uint8Array.of(hashVersion >>> 8, hashVersion & 0xff), key, stableId, key));
  // One buffer reused for every h ‖ key: 5200 hashes should not mean 5200 allocations of the input.
  const buf = new Uint8Array(64 + key.length);
  buf.set(key, 64);
  for (let i = 1; i < iterations; i++) {
    buf.set(h, 0);
    h = ctx.backend.sha512(buf);
  }
  return h;
}

/** Signal's display encoding: bytes 0..29 as six 5-byte big-endian integers, each mod 100000, 5 digits. */
export function _fingerprintDigits(hash: Uint8Array): string {
  assertBytes(hash, '_fingerprintDigits', 'hash');
  if (hash.length < 30) throw new RangeError(`_fingerprintDigits: hash must be at least 30 bytes, got ${hash.length}`);
  let out = '';
  for (let c = 0; c < 6; c++) {
    let v = 0;
    // 40-bit values are exact in a double; multiplication instead of << avoids 32-bit truncation.
    for (let j = 0; j < 5; j++) v = v * 256 + hash[c * 5 + j]!;
    out += String(v % 100000).padStart(5, '0');
  }
  return out;
}

function partyHash(ctx: CryptoContext, party: SafetyNumberParty, which: string): Uint8Array {
  const op = 'computeSafetyNumber';
  assertBytes(party.accountKey, op, `${which}.accountKey`, ED25519_KEY_LENGTH);
  let stableId = party.accountKey;
  if (party.stableId !== undefined) {
    assertBytes(party.stableId, op, `${which}.stableId`);
    if (party.stableId.length < 1 || party.stableId.length > SAFETY_NUMBER_MAX_STABLE_ID_LENGTH) {
      throw new RangeError(`${op}: ${which}.stableId must be 1..${SAFETY_NUMBER_MAX_STABLE_ID_LENGTH} bytes, got ${party.stableId.length}`);
    }
    stableId = party.stableId;
  }
  return _fingerprintHash(ctx, SAFETY_NUMBER_VERSION, encodePublicKey(KeyType.Ed25519, party.accountKey), stableId, SAFETY_NUMBER_ITERATIONS);
}

/**
 * Computes the safety number between the local and the remote party. Both parties get the same
 * `digits` (halves sorted as strings); each gets its own `scannable` payload (own half first).
 */
export function computeSafetyNumber(ctx: CryptoContext, local: SafetyNumberParty, remote: SafetyNumberParty): SafetyNumber {
  const lh = partyHash(ctx, local, 'local');
  const rh = partyHash(ctx, remote, 'remote');
  const ld = _fingerprintDigits(lh);
  const rd = _fingerprintDigits(rh);
  const localFingerprint = lh.slice(0, SAFETY_NUMBER_FINGERPRINT_LENGTH);
  const remoteFingerprint = rh.slice(0, SAFETY_NUMBER_FINGERPRINT_LENGTH);
  return {
    version: SAFETY_NUMBER_VERSION,
    digits: ld <= rd ? ld + rd : rd + ld,
    localFingerprint,
    remoteFingerprint,
    scannable: encodeScannableSafetyNumber(SAFETY_NUMBER_VERSION, localFingerprint, remoteFingerprint),
  };
}

/** magic "MW" ‖ u8 version ‖ 32-byte local fingerprint ‖ 32-byte remote fingerprint (67 bytes). */
export function encodeScannableSafetyNumber(version: number, localFingerprint: Uint8Array, remoteFingerprint: Uint8Array): Uint8Array {
  const op = 'encodeScannableSafetyNumber';
  if (!Number.isInteger(version) || version < 0 || version > 0xff) throw new RangeError(`${op}: version ${version} out of range`);
  assertBytes(localFingerprint, op, 'localFingerprint', SAFETY_NUMBER_FINGERPRINT_LENGTH);
  assertBytes(remoteFingerprint, op, 'remoteFingerprint', SAFETY_NUMBER_FINGERPRINT_LENGTH);
  return concatBytes(SCANNABLE_SAFETY_NUMBER_MAGIC, Uint8Array.of(version), localFingerprint, remoteFingerprint);
}

/** The outcome of comparing a scanned QR payload with our own safety number. */
export type ScannedSafetyNumberResult =
  /** The scanner's and the scanned party's views of both keys agree. */
  | { readonly status: 'match' }
  /** Well-formed payload of our version, but the keys differ: warn, do not mark verified. */
  | { readonly status: 'mismatch' }
  /** Their app speaks another safety-number version: ask both to update; says nothing about keys. */
  | { readonly status: 'version-mismatch'; readonly ours: number; readonly theirs: number }
  /** Not a MeshWhisper safety-number payload (wrong magic, truncated, trailing bytes). */
  | { readonly status: 'malformed'; readonly reason: string };

/**
 * Compares a payload scanned from the other party's screen with our own safety number. Their payload
 * lists THEIR fingerprint first, so a match means theirs.local = our.remote and theirs.remote =
 * our.local (compared in constant time). Scanning our own code therefore reports a mismatch (unless
 * both halves are equal, i.e. a conversation with oneself). Never throws on bad input bytes.
 */
export function verifyScannedSafetyNumber(local: SafetyNumber, scannedBytes: Uint8Array): ScannedSafetyNumberResult {
  assertBytes(scannedBytes, 'verifyScannedSafetyNumber', 'scannedBytes');
  const m = SCANNABLE_SAFETY_NUMBER_MAGIC;
  if (scannedBytes.length < m.length + 1) return { status: 'malformed', reason: 'too short' };
  if (scannedBytes[0] !== m[0] || scannedBytes[1] !== m[1]) return { status: 'malformed', reason: 'not a safety-number payload' };
  const theirs = scannedBytes[2]!;
  // Version before length: a future version may have another layout, and "update your app" is the
  // useful answer then.
  if (theirs !== local.version) return { status: 'version-mismatch', ours: local.version, theirs };
  if (scannedBytes.length !== SCANNABLE_SAFETY_NUMBER_LENGTH) {
    return { status: 'malformed', reason: `expected ${SCANNABLE_SAFETY_NUMBER_LENGTH} bytes, got ${scannedBytes.length}` };
  }
  const theirLocal = scannedBytes.subarray(3, 3 + SAFETY_NUMBER_FINGERPRINT_LENGTH);
  const theirRemote = scannedBytes.subarray(3 + SAFETY_NUMBER_FINGERPRINT_LENGTH);
  const a = equalBytes(theirLocal, local.remoteFingerprint);
  const b = equalBytes(theirRemote, local.localFingerprint);
  return a && b ? { status: 'match' } : { status: 'mismatch' };
}

/** The 12 groups of 5 digits a UI shows (Signal shows them as 3 rows of 4). */
export function safetyNumberGroups(digits: string): string[] {
  if (typeof digits !== 'string') throw new TypeError('safetyNumberGroups: digits must be a string');
  if (!/^[0-9]{60}$/.test(digits)) throw new RangeError('safetyNumberGroups: expected exactly 60 ASCII digits');
  const out: string[] = [];
  for (let i = 0; i < SAFETY_NUMBER_DIGITS; i += 5) out.push(digits.slice(i, i + 5));
  return out;
}

/** "12345 67890 …": the 60 digits in 12 groups of 5 joined by `separator`. */
export function formatSafetyNumber(digits: string, separator = ' '): string {
  return safetyNumberGroups(digits).join(separator);
}

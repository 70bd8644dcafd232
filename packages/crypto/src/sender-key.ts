/**
 * Sender keys for groups (docs/spec/groups.md §G2–G3): every member device owns one symmetric chain
 * and one Ed25519 signing key per group, generated on that device and never by anyone else. It
 * hands the chain (at its current position) and the signing public key to each other member device
 * in a distribution message that travels inside the pairwise PQXDH/Double Ratchet sessions, so a
 * group key is exactly as confidential as those sessions (post-quantum). Every group message is
 * signed with the sending device's signing key: a member who knows another member's chain can
 * read that member's messages but cannot forge them.
 *
 * Pure functions over immutable values, as in ratchet.ts: a decryption computes the advanced chain
 * in local variables and returns a new record only after the signature and the AEAD have verified;
 * a failed call changes nothing. Storage of records and selection of whom to distribute to belong
 * to the caller (the SDK), which is told when to rotate (needsSenderKeyRotation, group-state.ts
 * `requiresRekey`).
 */
import { _Redacted } from './_secret.js';
import { concatBytes, copyBytes, equalBytes, toHex, utf8, wipe } from './bytes.js';
import {
  AES_GCM_NONCE_LENGTH,
  AES_GCM_TAG_LENGTH,
  ED25519_KEY_LENGTH,
  ED25519_SIGNATURE_LENGTH,
  GROUP_ID_LENGTH,
  GROUP_MESSAGE_VERSION,
  MAX_ENVELOPE_SIZE,
  MAX_GROUP_SKIP,
  MAX_GROUP_SKIPPED_KEYS,
  MAX_SENDER_KEY_GENERATIONS,
  SENDER_KEY_ROTATE_AFTER_MESSAGES,
  SENDER_KEY_ROTATE_AFTER_MS,
  SENDER_KEY_SUPERSEDED_GRACE_MS,
  SKIPPED_KEY_MAX_AGE_MS,
} from './constants.js';
import type { CryptoContext } from './context.js';
import { ByteReader, ByteWriter } from './encoding.js';
import { CryptoError, CryptoErrorCode, assertBytes } from './errors.js';
import { signedMessage } from './keys.js';
import { applyPadding, paddingBucketFor, removePadding } from './padding.js';
import { SEALED_ENVELOPE_OVERHEAD } from './sealed-sender.js';

/** Labels (docs/spec/groups.md §G2.1). */
export const SenderKeyLabel = {
  /** HKDF info: (message key, salt) → AES-256-GCM key ‖ nonce of one group message. */
  Message: 'MeshWhisper_GroupMessage_v1',
  /** Signature label of a group message (header ‖ ciphertext). */
  Signature: 'MeshWhisper_GroupMessageSig_v1',
} as const;
const INFO_MESSAGE = utf8(SenderKeyLabel.Message);
const CK_MESSAGE_INPUT = Uint8Array.of(0x01);
const CK_CHAIN_INPUT = Uint8Array.of(0x02);
const KEY = 32;
/** Random per-message HKDF salt: a message key reused after a state rollback still gets a fresh AES key and nonce. */
export const GROUP_MESSAGE_SALT_LENGTH = 16;
/** version ‖ group id ‖ sender device key ‖ key id (u32) ‖ iteration (u32) ‖ salt. */
export const GROUP_MESSAGE_HEADER_LENGTH = 1 + GROUP_ID_LENGTH + ED25519_KEY_LENGTH + 4 + 4 + GROUP_MESSAGE_SALT_LENGTH;
/** Bytes a group message adds to its padded plaintext: header, AEAD tag, signature (169). */
export const GROUP_MESSAGE_OVERHEAD = GROUP_MESSAGE_HEADER_LENGTH + AES_GCM_TAG_LENGTH + ED25519_SIGNATURE_LENGTH;
/**
 * version ‖ group id ‖ key id ‖ iteration ‖ chain key ‖ signing public key ‖ u8 has-previous ‖
 * previous key id ‖ previous end (114 bytes).
 */
export const SENDER_KEY_DISTRIBUTION_LENGTH = 1 + GROUP_ID_LENGTH + 4 + 4 + KEY + ED25519_KEY_LENGTH + 1 + 4 + 4;
/** Storage format version of OwnSenderKey and SenderKeyRecord. */
export const SENDER_KEY_STORAGE_VERSION = 1;
const MAX_ITERATION = 0xfffffffe;

/**
 * Padded plaintext length for `n` bytes of group plaintext: chosen so that the group message,
 * carried as the content of a sealed envelope from a sender whose certificate has no extensions,
 * fills its padding bucket exactly (docs/spec/groups.md §G2.3). Envelope lengths therefore show the
 * same 3 bits as for direct messages, and a group message is not recognisable by its size.
 */
export function groupPaddedLength(n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`groupPaddedLength: ${n} is not a length`);
  const fixed = GROUP_MESSAGE_OVERHEAD + SEALED_ENVELOPE_OVERHEAD;
  return paddingBucketFor(n + 1 + fixed, 'encryptGroupMessage') - fixed;
}

// ── The sending side ─────────────────────────────────────────────────────────────────────────

interface OwnInner {
  readonly groupId: Uint8Array;
  readonly senderDevice: Uint8Array;
  readonly keyId: number;
  readonly iteration: number;
  readonly chainKey: Uint8Array;
  readonly signingSeed: Uint8Array;
  readonly signingPublicKey: Uint8Array;
  /** Iteration at creation: needsSenderKeyRotation counts messages from here. */
  readonly firstIteration: number;
  readonly createdAt: number;
  /** The generation this one replaced, and the first iteration it never sent (announced in the distribution). */
  readonly previous: { readonly keyId: number; readonly end: number } | null;
}

let ownOf: (v: unknown, op: string) => OwnInner;
let wrapOwn: (i: OwnInner) => OwnSenderKey;

/**
 * This device's sender key for one group: chain key, position, and the signing key its messages
 * carry. Immutable; encryptGroupMessage returns the successor, which must be persisted before the
 * message leaves (a rolled-back chain reuses message keys; the per-message salt keeps AES-GCM safe
 * even then, but receivers would reject the repeats as duplicates).
 */
export class OwnSenderKey extends _Redacted {
  readonly #inner: OwnInner;
  private constructor(inner: OwnInner) {
    super();
    this.#inner = inner;
  }
  static {
    ownOf = (v, op) => {
      if (typeof v !== 'object' || v === null || !(#inner in v)) throw new TypeError(`${op}: expected an OwnSenderKey`);
      return (v as OwnSenderKey).#inner;
    };
    wrapOwn = (i) => new OwnSenderKey(i);
  }
  get groupId(): Uint8Array {
    return copyBytes(this.#inner.groupId);
  }
  get keyId(): number {
    return this.#inner.keyId;
  }
  /** The iteration of the next message this key will send. */
  get iteration(): number {
    return this.#inner.iteration;
  }
  get signingPublicKey(): Uint8Array {
    return copyBytes(this.#inner.signingPublicKey);
  }
  get createdAt(): number {
    return this.#inner.createdAt;
  }
  protected describe(): Record<string, unknown> {
    const i = this.#inner;
    return { groupId: toHex(i.groupId), keyId: i.keyId, iteration: i.iteration, signingPublicKey: toHex(i.signingPublicKey) };
  }
}

function now(ctx: CryptoContext, op: string): number {
  const t = ctx.now();
  if (!Number.isFinite(t)) throw new TypeError(`${op}: ctx.now() must return a finite number`);
  return Math.min(Math.max(0, Math.floor(t)), Number.MAX_SAFE_INTEGER);
}

function draw(ctx: CryptoContext, n: number, op: string): Uint8Array {
  const b = copyBytes(ctx.random(n));
  if (b.length !== n) throw new RangeError(`${op}: ctx.random returned ${b.length} bytes`);
  return b;
}

/**
 * A fresh sender key for `groupId`, owned by the device whose signing public key is `senderDevice`.
 * Draws, in order: key id (4 bytes, big-endian u32), chain key (32), signing seed (32). A random key
 * id (not a counter) means a device that lost its state never reuses an id its peers still hold.
 */
export function generateSenderKey(ctx: CryptoContext, p: { groupId: Uint8Array; senderDevice: Uint8Array; avoidKeyId?: number }): OwnSenderKey {
  const op = 'generateSenderKey';
  assertBytes(p.groupId, op, 'groupId', GROUP_ID_LENGTH);
  assertBytes(p.senderDevice, op, 'senderDevice', ED25519_KEY_LENGTH);
  let keyId = new DataView(draw(ctx, 4, op).buffer).getUint32(0, false);
  if (keyId === p.avoidKeyId) keyId = (keyId + 1) >>> 0;
  const chainKey = draw(ctx, KEY, op);
  const signingSeed = draw(ctx, KEY, op);
  return wrapOwn({
    groupId: copyBytes(p.groupId),
    senderDevice: copyBytes(p.senderDevice),
    keyId,
    iteration: 0,
    chainKey,
    signingSeed,
    signingPublicKey: ctx.backend.ed25519PublicKey(signingSeed),
    firstIteration: 0,
    createdAt: now(ctx, op),
    previous: null,
  });
}

/**
 * A new generation replacing `current` (new key id, chain and signing key). Call it when the group
 * loses a device (kick, leave, device removal: GroupLog `requiresRekey`) before the next send, and
 * when needsSenderKeyRotation says so; then distribute the result to the current member devices.
 */
export function rotateSenderKey(ctx: CryptoContext, current: OwnSenderKey): OwnSenderKey {
  const c = ownOf(current, 'rotateSenderKey');
  const next = ownOf(generateSenderKey(ctx, { groupId: c.groupId, senderDevice: c.senderDevice, avoidKeyId: c.keyId }), 'rotateSenderKey');
  return wrapOwn({ ...next, previous: { keyId: c.keyId, end: c.iteration } });
}

/**
 * Healing by count and by time (docs/spec/groups.md §G3): true once this key has sent
 * SENDER_KEY_ROTATE_AFTER_MESSAGES messages or is SENDER_KEY_ROTATE_AFTER_MS old.
 */
export function needsSenderKeyRotation(key: OwnSenderKey, nowMs: number): boolean {
  const k = ownOf(key, 'needsSenderKeyRotation');
  return k.iteration - k.firstIteration >= SENDER_KEY_ROTATE_AFTER_MESSAGES || nowMs - k.createdAt >= SENDER_KEY_ROTATE_AFTER_MS;
}

/**
 * The distribution message for `key` at its current iteration (docs/spec/groups.md §G2.2). It holds
 * the chain key: send it only inside a pairwise session, to the member devices of the group's
 * current state. A device that receives it can read this sender's messages from now on, not before.
 * After a rotation it also announces where the previous generation ended, so receivers refuse
 * anything later under the old key (whose signing key might have leaked).
 */
export function encodeSenderKeyDistribution(key: OwnSenderKey): Uint8Array {
  const k = ownOf(key, 'encodeSenderKeyDistribution');
  return new ByteWriter()
    .u8(GROUP_MESSAGE_VERSION)
    .bytes(k.groupId)
    .u32(k.keyId)
    .u32(k.iteration)
    .bytes(k.chainKey)
    .bytes(k.signingPublicKey)
    .u8(k.previous ? 1 : 0)
    .u32(k.previous?.keyId ?? 0)
    .u32(k.previous?.end ?? 0)
    .finish();
}

function chainStep(ctx: CryptoContext, ck: Uint8Array): { mk: Uint8Array; next: Uint8Array } {
  return { mk: ctx.backend.hmacSha256(ck, CK_MESSAGE_INPUT), next: ctx.backend.hmacSha256(ck, CK_CHAIN_INPUT) };
}

function header(groupId: Uint8Array, sender: Uint8Array, keyId: number, iteration: number, salt: Uint8Array): Uint8Array {
  return new ByteWriter().u8(GROUP_MESSAGE_VERSION).bytes(groupId).bytes(sender).u32(keyId).u32(iteration).bytes(salt).finish();
}

function messageKeys(ctx: CryptoContext, mk: Uint8Array, salt: Uint8Array): { key: Uint8Array; nonce: Uint8Array } {
  const okm = ctx.backend.hkdfSha256(mk, salt, INFO_MESSAGE, KEY + AES_GCM_NONCE_LENGTH);
  const r = { key: okm.slice(0, KEY), nonce: okm.slice(KEY) };
  wipe(okm);
  return r;
}

/**
 * Encrypts and signs one group message with a fresh message key (docs/spec/groups.md §G2.3). Draws
 * the 16-byte salt from ctx.random. Returns the wire message and the successor key (persist it
 * first). LIMIT_EXCEEDED if the padded message would not fit the largest envelope.
 */
export function encryptGroupMessage(ctx: CryptoContext, key: OwnSenderKey, plaintext: Uint8Array): { key: OwnSenderKey; message: Uint8Array } {
  const op = 'encryptGroupMessage';
  const k = ownOf(key, op);
  assertBytes(plaintext, op, 'plaintext');
  if (k.iteration > MAX_ITERATION) throw new CryptoError(CryptoErrorCode.LIMIT_EXCEEDED, op, 'sender chain exhausted: rotate the sender key');
  if (plaintext.length + 1 + GROUP_MESSAGE_OVERHEAD + SEALED_ENVELOPE_OVERHEAD > MAX_ENVELOPE_SIZE) {
    throw new CryptoError(CryptoErrorCode.LIMIT_EXCEEDED, op, `${plaintext.length} bytes do not fit a group message`);
  }
  const padded = applyPadding(plaintext, groupPaddedLength(plaintext.length));
  const { mk, next } = chainStep(ctx, k.chainKey);
  const salt = draw(ctx, GROUP_MESSAGE_SALT_LENGTH, op);
  const h = header(k.groupId, k.senderDevice, k.keyId, k.iteration, salt);
  const { key: aesKey, nonce } = messageKeys(ctx, mk, salt);
  const ct = ctx.backend.aes256GcmEncrypt(aesKey, nonce, padded, h);
  wipe(mk, aesKey, nonce, padded);
  const signed = concatBytes(h, ct);
  const sig = ctx.backend.ed25519Sign(k.signingSeed, signedMessage(SenderKeyLabel.Signature, signed));
  return { key: wrapOwn({ ...k, iteration: k.iteration + 1, chainKey: next }), message: concatBytes(signed, sig) };
}

// ── The receiving side ───────────────────────────────────────────────────────────────────────

interface Generation {
  readonly keyId: number;
  readonly signingPublicKey: Uint8Array;
  /** Iteration the distribution started at: earlier messages were sent before this device held the key. */
  readonly firstIteration: number;
  readonly iteration: number;
  readonly chainKey: Uint8Array;
  /** Skipped message keys by iteration, ascending (insertion order), ≤ MAX_GROUP_SKIPPED_KEYS. */
  readonly skipped: ReadonlyMap<number, { readonly mk: Uint8Array; readonly at: number }>;
  /** Highest iteration whose skipped key was evicted or expired unused (−1: none). */
  readonly lostUpTo: number;
  /** ctx.now() when a newer generation replaced this one; null for the current generation. */
  readonly supersededAt: number | null;
  /** First iteration the sender announced it never sent under this key (after rotating); null: open. */
  readonly end: number | null;
}

interface RecordInner {
  readonly groupId: Uint8Array;
  readonly sender: Uint8Array;
  /** Current generation last; ≤ 1 + MAX_SENDER_KEY_GENERATIONS. */
  readonly generations: readonly Generation[];
}

let recordOf: (v: unknown, op: string) => RecordInner;
let wrapRecord: (i: RecordInner) => SenderKeyRecord;

/**
 * What one device holds of one other device's sender keys in one group: the current generation and
 * up to MAX_SENDER_KEY_GENERATIONS superseded ones (each kept SENDER_KEY_SUPERSEDED_GRACE_MS).
 * Immutable; every operation returns a new record.
 */
export class SenderKeyRecord extends _Redacted {
  readonly #inner: RecordInner;
  private constructor(inner: RecordInner) {
    super();
    this.#inner = inner;
  }
  static {
    recordOf = (v, op) => {
      if (typeof v !== 'object' || v === null || !(#inner in v)) throw new TypeError(`${op}: expected a SenderKeyRecord`);
      return (v as SenderKeyRecord).#inner;
    };
    wrapRecord = (i) => new SenderKeyRecord(i);
  }
  get groupId(): Uint8Array {
    return copyBytes(this.#inner.groupId);
  }
  /** The sending device's signing public key (its identity in the group). */
  get sender(): Uint8Array {
    return copyBytes(this.#inner.sender);
  }
  /** Key ids held, current last. */
  get keyIds(): number[] {
    return this.#inner.generations.map((g) => g.keyId);
  }
  protected describe(): Record<string, unknown> {
    const i = this.#inner;
    return { groupId: toHex(i.groupId), sender: toHex(i.sender), keyIds: this.keyIds };
  }
}

export interface SenderKeyDistribution {
  readonly groupId: Uint8Array;
  readonly keyId: number;
  readonly iteration: number;
  readonly chainKey: Uint8Array;
  readonly signingPublicKey: Uint8Array;
  /** The generation this one replaces and the first iteration never sent under it. */
  readonly previous: { readonly keyId: number; readonly end: number } | null;
}

/** Decodes a distribution message; MALFORMED / UNSUPPORTED_VERSION / INVALID_KEY on bad bytes. */
export function decodeSenderKeyDistribution(encoded: Uint8Array): SenderKeyDistribution {
  const op = 'decodeSenderKeyDistribution';
  assertBytes(encoded, op, 'encoded');
  const r = new ByteReader(encoded, op);
  const v = r.u8('version');
  if (v !== GROUP_MESSAGE_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `version ${v}`);
  const groupId = r.bytes(GROUP_ID_LENGTH, 'group id');
  const keyId = r.u32('key id');
  const iteration = r.u32('iteration');
  const chainKey = r.bytes(KEY, 'chain key');
  const signingPublicKey = r.bytes(ED25519_KEY_LENGTH, 'signing key');
  const has = r.u8('previous flag');
  const pk = r.u32('previous key id');
  const pe = r.u32('previous end');
  r.finish();
  if (has > 1 || (has === 0 && (pk !== 0 || pe !== 0)) || (has === 1 && pk === keyId)) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'invalid previous-generation field');
  const d: SenderKeyDistribution = { groupId, keyId, iteration, chainKey, signingPublicKey, previous: has ? { keyId: pk, end: pe } : null };
  if (d.iteration > MAX_ITERATION) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'iteration out of range');
  return d;
}

/**
 * Applies a distribution message that arrived inside the pairwise session with the device whose
 * signing public key is `sender` (the caller takes it from the session, never from the message).
 * The key becomes that sender's current generation; the previous one is kept as superseded.
 * A repeat of a key already held is a no-op; a new distribution for a held key id from the same
 * sender replaces that generation (the sender lost its state and drew the same id). GROUP_MISMATCH
 * if the distribution or `record` names another group or sender.
 */
export function processSenderKeyDistribution(
  ctx: CryptoContext,
  p: { groupId: Uint8Array; sender: Uint8Array; distribution: Uint8Array; record?: SenderKeyRecord },
): SenderKeyRecord {
  const op = 'processSenderKeyDistribution';
  assertBytes(p.groupId, op, 'groupId', GROUP_ID_LENGTH);
  assertBytes(p.sender, op, 'sender', ED25519_KEY_LENGTH);
  const d = decodeSenderKeyDistribution(p.distribution);
  if (!equalBytes(d.groupId, p.groupId)) throw new CryptoError(CryptoErrorCode.GROUP_MISMATCH, op, 'distribution is for another group');
  const t = now(ctx, op);
  const base = p.record ? recordOf(p.record, op) : { groupId: copyBytes(p.groupId), sender: copyBytes(p.sender), generations: [] };
  if (!equalBytes(base.groupId, p.groupId) || !equalBytes(base.sender, p.sender)) {
    throw new CryptoError(CryptoErrorCode.GROUP_MISMATCH, op, 'record belongs to another group or sender');
  }
  const held = base.generations.find((g) => g.keyId === d.keyId);
  if (held && equalBytes(held.signingPublicKey, d.signingPublicKey) && d.iteration >= held.firstIteration && chainMatches(ctx, held, d)) {
    return p.record!;
  }
  const gens = base.generations
    .filter((g) => g.keyId !== d.keyId)
    .map((g) => (g.supersededAt === null ? { ...g, supersededAt: t } : g))
    .map((g) => (d.previous && g.keyId === d.previous.keyId ? { ...g, end: Math.min(g.end ?? Infinity, d.previous.end) } : g));
  while (gens.length > MAX_SENDER_KEY_GENERATIONS) gens.shift();
  gens.push({
    keyId: d.keyId,
    signingPublicKey: d.signingPublicKey,
    firstIteration: d.iteration,
    iteration: d.iteration,
    chainKey: d.chainKey,
    skipped: new Map(),
    lostUpTo: -1,
    supersededAt: null,
    end: null,
  });
  return wrapRecord({ groupId: base.groupId, sender: base.sender, generations: gens });
}

/** Whether a repeated distribution describes the chain already held (same key at its iteration). */
function chainMatches(ctx: CryptoContext, held: Generation, d: SenderKeyDistribution): boolean {
  if (d.iteration === held.firstIteration) return true; // same start: a plain repeat (chain keys compared below would need the old key)
  if (d.iteration < held.iteration || d.iteration - held.iteration > MAX_GROUP_SKIP) return false;
  let ck = held.chainKey;
  for (let i = held.iteration; i < d.iteration; i++) ck = chainStep(ctx, ck).next;
  return equalBytes(ck, d.chainKey);
}

export interface GroupMessageHeader {
  readonly groupId: Uint8Array;
  /** Signing public key of the device that claims to have sent the message. */
  readonly sender: Uint8Array;
  readonly keyId: number;
  readonly iteration: number;
}

/**
 * Reads the unauthenticated header of a group message, so the caller can find the record for
 * (group, sender) before decrypting. Nothing in it is trusted until decryptGroupMessage succeeds.
 */
export function readGroupMessageHeader(message: Uint8Array): GroupMessageHeader {
  const op = 'readGroupMessageHeader';
  assertBytes(message, op, 'message');
  if (message.length < 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'empty message');
  if (message[0] !== GROUP_MESSAGE_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `version ${message[0]}`);
  if (message.length < GROUP_MESSAGE_OVERHEAD + 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'truncated group message');
  const r = new ByteReader(message.subarray(0, GROUP_MESSAGE_HEADER_LENGTH), op);
  r.u8();
  return { groupId: r.bytes(GROUP_ID_LENGTH), sender: r.bytes(ED25519_KEY_LENGTH), keyId: r.u32(), iteration: r.u32() };
}

/**
 * Verifies and decrypts a group message with the sender's record (docs/spec/groups.md §G2.4), as
 * looked up by the caller under the header's (group, sender); `undefined` (nothing held for that
 * device: a non-member, or a member whose distribution has not arrived) is UNKNOWN_SENDER_KEY.
 * Checks, in order: version and length (UNSUPPORTED_VERSION, MALFORMED); group and sender against
 * the record (GROUP_MISMATCH, SENDER_MISMATCH — a message claiming another member's device is
 * looked up under that device's record by the caller, and then fails the signature); the key id
 * (UNKNOWN_SENDER_KEY, also for a superseded key past its grace or a message from before this
 * device held the key); the signature (BAD_SIGNATURE), before any chain work; the position
 * (DUPLICATE_MESSAGE, SKIPPED_KEY_EVICTED, TOO_FAR_AHEAD); the AEAD (BAD_MAC) and padding
 * (MALFORMED). Returns the plaintext and the successor record; on any error nothing changes.
 */
export function decryptGroupMessage(
  ctx: CryptoContext,
  record: SenderKeyRecord | undefined,
  message: Uint8Array,
): { record: SenderKeyRecord; plaintext: Uint8Array; keyId: number; iteration: number } {
  const op = 'decryptGroupMessage';
  const h = readGroupMessageHeader(message);
  if (record === undefined) throw new CryptoError(CryptoErrorCode.UNKNOWN_SENDER_KEY, op, 'no sender key from the claimed sending device in this group');
  const rec = recordOf(record, op);
  if (!equalBytes(h.groupId, rec.groupId)) throw new CryptoError(CryptoErrorCode.GROUP_MISMATCH, op, 'message is for another group');
  if (!equalBytes(h.sender, rec.sender)) throw new CryptoError(CryptoErrorCode.SENDER_MISMATCH, op, 'message claims another sender than this record');
  const t = now(ctx, op);
  const gi = rec.generations.findIndex((g) => g.keyId === h.keyId);
  const g = rec.generations[gi];
  if (!g) throw new CryptoError(CryptoErrorCode.UNKNOWN_SENDER_KEY, op, `no sender key ${h.keyId} from this device`);
  if (g.supersededAt !== null && t - g.supersededAt > SENDER_KEY_SUPERSEDED_GRACE_MS) {
    throw new CryptoError(CryptoErrorCode.UNKNOWN_SENDER_KEY, op, `sender key ${h.keyId} was superseded and has been dropped`);
  }
  if (g.end !== null && h.iteration >= g.end) {
    throw new CryptoError(CryptoErrorCode.UNKNOWN_SENDER_KEY, op, `the sender announced that key ${h.keyId} ended before this message`);
  }
  const sigStart = message.length - ED25519_SIGNATURE_LENGTH;
  const signed = message.subarray(0, sigStart);
  if (!ctx.backend.ed25519Verify(g.signingPublicKey, signedMessage(SenderKeyLabel.Signature, signed), message.subarray(sigStart))) {
    throw new CryptoError(CryptoErrorCode.BAD_SIGNATURE, op, 'group message signature does not verify for the claimed sender');
  }
  const n = h.iteration;
  if (n < g.firstIteration) throw new CryptoError(CryptoErrorCode.UNKNOWN_SENDER_KEY, op, 'message was sent before this device received the sender key');

  let mk: Uint8Array;
  let skipped: ReadonlyMap<number, { readonly mk: Uint8Array; readonly at: number }>;
  let lostUpTo = g.lostUpTo;
  let chainKey = g.chainKey;
  let iteration = g.iteration;
  if (n < g.iteration) {
    const s = g.skipped.get(n);
    if (!s || t - s.at > SKIPPED_KEY_MAX_AGE_MS) {
      if (s || n <= g.lostUpTo) throw new CryptoError(CryptoErrorCode.SKIPPED_KEY_EVICTED, op, 'the key of this message was evicted or expired: ask the sender to resend');
      throw new CryptoError(CryptoErrorCode.DUPLICATE_MESSAGE, op, 'message already decrypted');
    }
    mk = s.mk;
    const m = new Map(g.skipped);
    m.delete(n);
    skipped = m;
  } else {
    if (n - g.iteration > MAX_GROUP_SKIP) throw new CryptoError(CryptoErrorCode.TOO_FAR_AHEAD, op, `message is ${n - g.iteration} ahead in the sender chain (max ${MAX_GROUP_SKIP})`);
    const m = new Map(g.skipped);
    let ck = g.chainKey;
    for (let i = g.iteration; i < n; i++) {
      const st = chainStep(ctx, ck);
      m.set(i, { mk: st.mk, at: t });
      ck = st.next;
    }
    const st = chainStep(ctx, ck);
    mk = st.mk;
    chainKey = st.next;
    iteration = n + 1;
    for (const [i, v] of m) {
      if (m.size <= MAX_GROUP_SKIPPED_KEYS && t - v.at <= SKIPPED_KEY_MAX_AGE_MS) break;
      m.delete(i);
      lostUpTo = Math.max(lostUpTo, i);
    }
    skipped = m;
  }
  const salt = message.subarray(GROUP_MESSAGE_HEADER_LENGTH - GROUP_MESSAGE_SALT_LENGTH, GROUP_MESSAGE_HEADER_LENGTH);
  const { key, nonce } = messageKeys(ctx, mk, salt);
  let padded: Uint8Array;
  try {
    padded = ctx.backend.aes256GcmDecrypt(key, nonce, message.subarray(GROUP_MESSAGE_HEADER_LENGTH, sigStart), message.subarray(0, GROUP_MESSAGE_HEADER_LENGTH));
  } finally {
    wipe(key, nonce);
  }
  const plaintext = removePadding(padded, op);
  wipe(padded);
  const gens = rec.generations.slice();
  gens[gi] = { ...g, chainKey, iteration, skipped, lostUpTo };
  return { record: wrapRecord({ ...rec, generations: gens }), plaintext, keyId: h.keyId, iteration: n };
}

// ── Storage (docs/spec/groups.md §G2.6; not a wire format) ──────────────────────────────────────

const TAG_OWN = 1;
const TAG_RECORD = 2;

export function serializeOwnSenderKey(key: OwnSenderKey): Uint8Array {
  const k = ownOf(key, 'serializeOwnSenderKey');
  return new ByteWriter()
    .u8(SENDER_KEY_STORAGE_VERSION)
    .u8(TAG_OWN)
    .bytes(k.groupId)
    .bytes(k.senderDevice)
    .u32(k.keyId)
    .u32(k.iteration)
    .u32(k.firstIteration)
    .u64(k.createdAt)
    .bytes(k.chainKey)
    .bytes(k.signingSeed)
    .u8(k.previous ? 1 : 0)
    .u32(k.previous?.keyId ?? 0)
    .u32(k.previous?.end ?? 0)
    .finish();
}

export function deserializeOwnSenderKey(ctx: CryptoContext, bytes: Uint8Array): OwnSenderKey {
  const op = 'deserializeOwnSenderKey';
  assertBytes(bytes, op, 'bytes');
  const r = storageReader(bytes, op, TAG_OWN);
  const groupId = r.bytes(GROUP_ID_LENGTH);
  const senderDevice = r.bytes(ED25519_KEY_LENGTH);
  const keyId = r.u32();
  const iteration = r.u32();
  const firstIteration = r.u32();
  const createdAt = r.u64();
  const chainKey = r.bytes(KEY);
  const signingSeed = r.bytes(KEY);
  const has = r.u8();
  const pk = r.u32();
  const pe = r.u32();
  r.finish();
  if (firstIteration > iteration || has > 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'inconsistent sender key');
  const previous = has ? { keyId: pk, end: pe } : null;
  return wrapOwn({ groupId, senderDevice, keyId, iteration, firstIteration, createdAt, chainKey, signingSeed, signingPublicKey: ctx.backend.ed25519PublicKey(signingSeed), previous });
}

export function serializeSenderKeyRecord(record: SenderKeyRecord): Uint8Array {
  const rec = recordOf(record, 'serializeSenderKeyRecord');
  const w = new ByteWriter().u8(SENDER_KEY_STORAGE_VERSION).u8(TAG_RECORD).bytes(rec.groupId).bytes(rec.sender).u8(rec.generations.length);
  for (const g of rec.generations) {
    w.u32(g.keyId).bytes(g.signingPublicKey).u32(g.firstIteration).u32(g.iteration).bytes(g.chainKey);
    w.u64(g.lostUpTo + 1).u64(g.supersededAt === null ? 0 : g.supersededAt + 1).u64(g.end === null ? 0 : g.end + 1).u16(g.skipped.size);
    for (const [n, s] of g.skipped) w.u32(n).bytes(s.mk).u64(s.at);
  }
  return w.finish();
}

export function deserializeSenderKeyRecord(bytes: Uint8Array): SenderKeyRecord {
  const op = 'deserializeSenderKeyRecord';
  assertBytes(bytes, op, 'bytes');
  const r = storageReader(bytes, op, TAG_RECORD);
  const groupId = r.bytes(GROUP_ID_LENGTH);
  const sender = r.bytes(ED25519_KEY_LENGTH);
  const count = r.u8();
  if (count > MAX_SENDER_KEY_GENERATIONS + 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'too many generations');
  const generations: Generation[] = [];
  for (let i = 0; i < count; i++) {
    const keyId = r.u32();
    const signingPublicKey = r.bytes(ED25519_KEY_LENGTH);
    const firstIteration = r.u32();
    const iteration = r.u32();
    const chainKey = r.bytes(KEY);
    const lostUpTo = r.u64() - 1;
    const sup = r.u64();
    const end = r.u64();
    const size = r.u16();
    if (size > MAX_GROUP_SKIPPED_KEYS || firstIteration > iteration) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'inconsistent generation');
    const skipped = new Map<number, { mk: Uint8Array; at: number }>();
    let last = -1;
    for (let j = 0; j < size; j++) {
      const n = r.u32();
      if (n <= last || n >= iteration) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'skipped keys out of order');
      last = n;
      skipped.set(n, { mk: r.bytes(KEY), at: r.u64() });
    }
    if (generations.some((x) => x.keyId === keyId)) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'duplicate key id');
    generations.push({ keyId, signingPublicKey, firstIteration, iteration, chainKey, skipped, lostUpTo, supersededAt: sup === 0 ? null : sup - 1, end: end === 0 ? null : end - 1 });
  }
  r.finish();
  const current = generations.filter((g) => g.supersededAt === null).length;
  if (count > 0 && (current !== 1 || generations[count - 1]!.supersededAt !== null)) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'exactly the last generation must be current');
  return wrapRecord({ groupId, sender, generations });
}

function storageReader(bytes: Uint8Array, op: string, tag: number): ByteReader {
  const r = new ByteReader(bytes, op);
  const v = r.u8('version');
  if (v !== SENDER_KEY_STORAGE_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `storage version ${v}`);
  if (r.u8('tag') !== tag) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'not this kind of record');
  return r;
}

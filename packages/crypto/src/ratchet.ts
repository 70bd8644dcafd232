/**
 * The Double Ratchet with header encryption — Perrin & Marlinspike, "The Double Ratchet
 * Algorithm", revision 1, §3 (the ratchet) and §4 (DR-HE). Normative description, byte layouts and
 * labels: docs/spec/ratchet.md; published vectors: test-vectors/ratchet.json.
 *
 * Pure functions over an immutable RatchetState: every operation returns a new state and leaves its
 * input untouched (vodozemac's all-or-nothing rule). A decryption computes the whole transition in
 * local variables and builds the new state only after the body AEAD has verified, so a failed call
 * changes nothing. Unchanged parts (AD, skipped-key lists) are shared between a state and its
 * successor; they are never mutated, which is what makes the sharing safe.
 *
 * The ratchet knows nothing of identities, stores or session selection (libsignal's layering):
 * PQXDH hands it SK and AD, the session layer persists what it returns.
 */
import { _Redacted } from './_secret.js';
import { concatBytes, copyBytes, equalBytes, utf8, wipe } from './bytes.js';
import {
  AES_GCM_NONCE_LENGTH,
  AES_GCM_TAG_LENGTH,
  MAX_LOST_KEY_CHAINS,
  MAX_LOST_KEYS,
  MAX_PREVIOUS_HEADER_KEYS,
  MAX_SKIP,
  MAX_SKIPPED_KEY_CHAINS,
  MAX_SKIPPED_KEYS,
  SKIPPED_KEY_MAX_AGE_MS,
  RATCHET_WIRE_VERSION,
  STORAGE_VERSION,
  X25519_KEY_LENGTH,
} from './constants.js';
import type { CryptoContext } from './context.js';
import { ByteReader, ByteWriter } from './encoding.js';
import { CryptoError, CryptoErrorCode, assertBytes } from './errors.js';

// ── Labels and layouts (docs/spec/ratchet.md §Labels, §Wire format) ─────────────────────────

/** HKDF info strings. A new protocol version gets new labels, so keys never cross versions. */
export const RatchetLabel = {
  /** SK → RK0 ‖ shared HKa ‖ shared NHKb. */
  Init: 'MeshWhisper_DR_Init_v2',
  /** KDF_RK_HE: (RK, DH output) → RK' ‖ CK ‖ NHK. */
  Root: 'MeshWhisper_DR_Root_v2',
  /** (MK, header nonce) → AES-256-GCM key ‖ nonce for one message body. */
  Message: 'MeshWhisper_DR_Message_v2',
  /** (header key, random salt) → AES-256-GCM key ‖ nonce for one ephemeral message. */
  Ephemeral: 'MeshWhisper_DR_Ephemeral_v2',
} as const;

const INFO_INIT = utf8(RatchetLabel.Init);
const INFO_ROOT = utf8(RatchetLabel.Root);
const INFO_MESSAGE = utf8(RatchetLabel.Message);
const INFO_EPHEMERAL = utf8(RatchetLabel.Ephemeral);
/** HKDF salt for Init: 32 zero bytes (RFC 5869 §2.2 default, written out). */
const ZERO_SALT = new Uint8Array(32);
/** KDF_CK inputs (spec §5.2 recommendation): MK = HMAC(CK, 0x01), CK' = HMAC(CK, 0x02). */
const CK_MESSAGE_INPUT = Uint8Array.of(0x01);
const CK_CHAIN_INPUT = Uint8Array.of(0x02);

const KEY = 32;
/** Plaintext header: DHs public key (32) ‖ PN (u32 BE) ‖ N (u32 BE). */
export const RATCHET_HEADER_LENGTH = X25519_KEY_LENGTH + 4 + 4;
/** Encrypted header: random nonce (12) ‖ AES-256-GCM ciphertext (40) ‖ tag (16). */
export const RATCHET_ENCRYPTED_HEADER_LENGTH = AES_GCM_NONCE_LENGTH + RATCHET_HEADER_LENGTH + AES_GCM_TAG_LENGTH;
/** Wire bytes added to a plaintext: version (1) ‖ encrypted header (68) ‖ body tag (16). */
export const RATCHET_MESSAGE_OVERHEAD = 1 + RATCHET_ENCRYPTED_HEADER_LENGTH + AES_GCM_TAG_LENGTH;
/** Random salt of an ephemeral message (16 bytes: collisions are irrelevant below 2^64 messages). */
export const EPHEMERAL_SALT_LENGTH = 16;
/** Ephemeral message: version (1) ‖ salt (16) ‖ AEAD(u64 sentAt ‖ plaintext) — 8 + 16 tag. */
export const EPHEMERAL_MESSAGE_OVERHEAD = 1 + EPHEMERAL_SALT_LENGTH + 8 + AES_GCM_TAG_LENGTH;
/** Offset of the body ciphertext; bytes [0, BODY_OFFSET) are the authenticated wire prefix. */
const BODY_OFFSET = 1 + RATCHET_ENCRYPTED_HEADER_LENGTH;
const HEADER_NONCE_END = 1 + AES_GCM_NONCE_LENGTH;
/** Message numbers are u32 on the wire; the last value is reserved so Nr = N + 1 always fits. */
const MAX_MESSAGE_NUMBER = 0xfffffffe;
const MAX_AD_LENGTH = 0xffff;

// ── State ────────────────────────────────────────────────────────────────────────────────────

interface SkippedKey {
  readonly n: number;
  readonly mk: Uint8Array;
  /** ctx.now() when the key was stored; it expires SKIPPED_KEY_MAX_AGE_MS later. */
  readonly at: number;
}
/** The skipped keys of one receiving chain, ascending n (= insertion order). Never empty. */
interface SkippedChain {
  readonly hk: Uint8Array;
  readonly keys: readonly SkippedKey[];
}

/** Why a skipped key is gone without having been used (storage codes). */
const LOST_EVICTED = 1;
const LOST_EXPIRED = 2;
interface LostKey {
  readonly n: number;
  readonly reason: typeof LOST_EVICTED | typeof LOST_EXPIRED;
}
/** Records of the evicted or expired keys of one chain, ascending n. Never empty. */
interface LostChain {
  readonly hk: Uint8Array;
  readonly keys: readonly LostKey[];
}

/** The skipped-key bookkeeping of a state; replaced as a whole, never mutated. */
interface KeyBook {
  /** Oldest chain first, ≤ MAX_SKIPPED_KEY_CHAINS chains and ≤ MAX_SKIPPED_KEYS keys in all. */
  readonly skipped: readonly SkippedChain[];
  readonly skippedCount: number;
  /** Least recently touched chain first, ≤ MAX_LOST_KEY_CHAINS chains and ≤ MAX_LOST_KEYS records. */
  readonly lost: readonly LostChain[];
  readonly lostCount: number;
}

/** Spec §4.3 state variables, plus AD and the bookkeeping for skipped and previous header keys. */
interface Inner extends KeyBook {
  readonly initiator: boolean;
  readonly rk: Uint8Array;
  readonly dhsSecret: Uint8Array;
  readonly dhsPublic: Uint8Array;
  readonly dhr: Uint8Array | null;
  readonly cks: Uint8Array | null;
  readonly ckr: Uint8Array | null;
  readonly hks: Uint8Array | null;
  readonly hkr: Uint8Array | null;
  readonly nhks: Uint8Array;
  readonly nhkr: Uint8Array;
  readonly ns: number;
  readonly nr: number;
  readonly pn: number;
  readonly ad: Uint8Array;
  /** AD ‖ RATCHET_WIRE_VERSION: the header AEAD's associated data, derived once. */
  readonly headerAad: Uint8Array;
  /** Receiving header keys of finished chains, oldest first, ≤ MAX_PREVIOUS_HEADER_KEYS. */
  readonly previousHeaderKeys: readonly Uint8Array[];
}

/** Public, non-secret facts about a ratchet state (what `inspect` prints). */
export interface RatchetStateSummary {
  readonly role: 'initiator' | 'responder';
  readonly hasReceivedMessage: boolean;
  readonly canEncrypt: boolean;
  /** Ns: messages sent in the current sending chain. */
  readonly sendingIndex: number;
  /** Nr: messages received in the current receiving chain. */
  readonly receivingIndex: number;
  /** PN: length of the previous sending chain. */
  readonly previousSendingChainLength: number;
  readonly skippedKeyCount: number;
  readonly skippedChainCount: number;
  /** Records of skipped keys evicted or expired before use. */
  readonly lostKeyCount: number;
  readonly lostChainCount: number;
}

let innerOf: (state: unknown, operation: string) => Inner;
let wrap: (inner: Inner) => RatchetState;

/**
 * A Double Ratchet session state. Immutable: obtain one from initRatchetAs…/deserializeRatchetState
 * and the next one from ratchetEncrypt/ratchetDecrypt. Secrets live in an ES private field, so
 * `inspect`, `toString` and `JSON.stringify` show only the summary.
 *
 * Forward secrecy needs old states to be forgotten: once the successor is persisted, drop every
 * reference to the predecessor (and its serialized bytes).
 */
export class RatchetState extends _Redacted {
  readonly #inner: Inner;
  private constructor(inner: Inner) {
    super();
    this.#inner = inner;
  }
  static {
    innerOf = (state, operation) => {
      if (typeof state !== 'object' || state === null || !(#inner in state)) {
        throw new TypeError(`${operation}: state must be a RatchetState`);
      }
      return (state as RatchetState).#inner;
    };
    wrap = (inner) => new RatchetState(inner);
  }
  protected describe(): Record<string, unknown> {
    return { ...summarize(this.#inner) };
  }
}

function summarize(s: Inner): RatchetStateSummary {
  return {
    role: s.initiator ? 'initiator' : 'responder',
    hasReceivedMessage: s.ckr !== null,
    canEncrypt: s.cks !== null,
    sendingIndex: s.ns,
    receivingIndex: s.nr,
    previousSendingChainLength: s.pn,
    skippedKeyCount: s.skippedCount,
    skippedChainCount: s.skipped.length,
    lostKeyCount: s.lostCount,
    lostChainCount: s.lost.length,
  };
}

/** True once an inbound message has decrypted (until then the initiator repeats its PQXDH header). */
export function hasReceivedMessage(state: RatchetState): boolean {
  return innerOf(state, 'hasReceivedMessage').ckr !== null;
}

/** False only for a responder state that has not yet decrypted the initiator's first message. */
export function canEncrypt(state: RatchetState): boolean {
  return innerOf(state, 'canEncrypt').cks !== null;
}

export function ratchetStateSummary(state: RatchetState): RatchetStateSummary {
  return summarize(innerOf(state, 'ratchetStateSummary'));
}

export function isRatchetState(value: unknown): value is RatchetState {
  return value instanceof RatchetState;
}

// ── KDFs (spec §5.2, docs/spec/ratchet.md §Key derivation) ─────────────────────────────────────

function split3(out: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
  const r: [Uint8Array, Uint8Array, Uint8Array] = [out.slice(0, KEY), out.slice(KEY, 2 * KEY), out.slice(2 * KEY, 3 * KEY)];
  wipe(out);
  return r;
}

/** KDF_RK_HE(rk, dh_out) → (RK', CK, NHK). */
function kdfRk(ctx: CryptoContext, rk: Uint8Array, dhOut: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
  return split3(ctx.backend.hkdfSha256(dhOut, rk, INFO_ROOT, 3 * KEY));
}

/**
 * ENCRYPT/DECRYPT key schedule: 44 bytes = AES key (0..32) ‖ nonce (32..44). The header nonce is
 * the salt: a message key reused after a state rollback still gets a fresh key and nonce
 * (docs/spec/ratchet.md §Nonces). Caller wipes.
 */
function messageKeyMaterial(ctx: CryptoContext, mk: Uint8Array, headerNonce: Uint8Array): Uint8Array {
  return ctx.backend.hkdfSha256(mk, headerNonce, INFO_MESSAGE, KEY + AES_GCM_NONCE_LENGTH);
}

function generateDh(ctx: CryptoContext, operation: string): { secretKey: Uint8Array; publicKey: Uint8Array } {
  const secretKey = copyBytes(ctx.random(X25519_KEY_LENGTH));
  if (secretKey.length !== X25519_KEY_LENGTH) throw new RangeError(`${operation}: ctx.random returned ${secretKey.length} bytes`);
  return { secretKey, publicKey: ctx.backend.x25519PublicKey(secretKey) };
}

function clock(ctx: CryptoContext, operation: string): number {
  const t = ctx.now();
  if (!Number.isFinite(t)) throw new TypeError(`${operation}: ctx.now() must return a finite number`);
  return Math.min(Math.max(0, Math.floor(t)), Number.MAX_SAFE_INTEGER);
}

// ── Initialisation (spec §4.4 RatchetInitAliceHE / RatchetInitBobHE) ────────────────────────────

interface InitCommon {
  readonly sharedSecret: Uint8Array;
  readonly associatedData: Uint8Array;
}

function initialKeys(ctx: CryptoContext, p: InitCommon, operation: string): { rk: Uint8Array; hka: Uint8Array; nhkb: Uint8Array; ad: Uint8Array } {
  assertBytes(p.sharedSecret, operation, 'sharedSecret', KEY);
  assertBytes(p.associatedData, operation, 'associatedData');
  if (p.associatedData.length > MAX_AD_LENGTH) throw new RangeError(`${operation}: associatedData longer than ${MAX_AD_LENGTH} bytes`);
  const [rk, hka, nhkb] = split3(ctx.backend.hkdfSha256(p.sharedSecret, ZERO_SALT, INFO_INIT, 3 * KEY));
  return { rk, hka, nhkb, ad: copyBytes(p.associatedData) };
}

function headerAadOf(ad: Uint8Array): Uint8Array {
  return concatBytes(ad, Uint8Array.of(RATCHET_WIRE_VERSION));
}

/**
 * The PQXDH initiator ("Alice"): generates its first ratchet key pair (one ctx.random(32)) and
 * can send at once, under the shared header key HKa.
 */
export function initRatchetAsInitiator(
  ctx: CryptoContext,
  p: InitCommon & { remoteRatchetKey: Uint8Array },
): RatchetState {
  const op = 'initRatchetAsInitiator';
  assertBytes(p.remoteRatchetKey, op, 'remoteRatchetKey', X25519_KEY_LENGTH);
  const { rk: rk0, hka, nhkb, ad } = initialKeys(ctx, p, op);
  const dhr = copyBytes(p.remoteRatchetKey);
  const dhs = generateDh(ctx, op);
  let dhOut: Uint8Array | undefined;
  try {
    dhOut = ctx.backend.x25519(dhs.secretKey, dhr);
  } catch (e) {
    wipe(rk0, hka, nhkb, dhs.secretKey);
    throw e;
  }
  const [rk, cks, nhks] = kdfRk(ctx, rk0, dhOut);
  wipe(dhOut, rk0);
  return wrap({
    initiator: true,
    rk,
    dhsSecret: dhs.secretKey,
    dhsPublic: dhs.publicKey,
    dhr,
    cks,
    ckr: null,
    hks: hka,
    hkr: null,
    nhks,
    nhkr: nhkb,
    ns: 0,
    nr: 0,
    pn: 0,
    ad,
    headerAad: headerAadOf(ad),
    previousHeaderKeys: [],
    ...EMPTY_BOOK,
  });
}

/**
 * The PQXDH responder ("Bob"), keyed by its signed prekey pair. It cannot encrypt until the
 * initiator's first message has decrypted (canEncrypt).
 */
export function initRatchetAsResponder(
  ctx: CryptoContext,
  p: InitCommon & { ownRatchetKeyPair: { secretKey: Uint8Array; publicKey: Uint8Array } },
): RatchetState {
  const op = 'initRatchetAsResponder';
  const kp = p.ownRatchetKeyPair;
  if (typeof kp !== 'object' || kp === null) throw new TypeError(`${op}: ownRatchetKeyPair must be a key pair`);
  assertBytes(kp.secretKey, op, 'ownRatchetKeyPair.secretKey', X25519_KEY_LENGTH);
  assertBytes(kp.publicKey, op, 'ownRatchetKeyPair.publicKey', X25519_KEY_LENGTH);
  if (!equalBytes(ctx.backend.x25519PublicKey(kp.secretKey), kp.publicKey)) {
    throw new CryptoError(CryptoErrorCode.INVALID_KEY, op, 'ownRatchetKeyPair public key does not match its secret key');
  }
  const { rk, hka, nhkb, ad } = initialKeys(ctx, p, op);
  return wrap({
    initiator: false,
    rk,
    dhsSecret: copyBytes(kp.secretKey),
    dhsPublic: copyBytes(kp.publicKey),
    dhr: null,
    cks: null,
    ckr: null,
    hks: null,
    hkr: null,
    nhks: nhkb,
    nhkr: hka,
    ns: 0,
    nr: 0,
    pn: 0,
    ad,
    headerAad: headerAadOf(ad),
    previousHeaderKeys: [],
    ...EMPTY_BOOK,
  });
}

// ── Skipped message keys ─────────────────────────────────────────────────────────────────────

const EMPTY_BOOK: KeyBook = { skipped: [], skippedCount: 0, lost: [], lostCount: 0 };

const expired = (k: SkippedKey, now: number): boolean => now - k.at > SKIPPED_KEY_MAX_AGE_MS;

/**
 * Appends records for keys of chain `hk` that are gone unused, then applies the limits (oldest
 * chains beyond MAX_LOST_KEY_CHAINS, then oldest records beyond MAX_LOST_KEYS are dropped). The
 * chain touched moves to the end. Keys leave a skipped chain as a prefix (eviction and expiry both
 * take the oldest), so appending keeps each record list ascending.
 */
function addLost(list: readonly LostChain[], count: number, hk: Uint8Array, keys: readonly LostKey[]): { lost: readonly LostChain[]; lostCount: number } {
  if (keys.length === 0) return { lost: list, lostCount: count };
  const next = list.slice();
  const i = findChain(next, hk);
  let merged = keys;
  if (i >= 0) {
    const old = next.splice(i, 1)[0]!;
    merged = old.keys.concat(keys);
    if (old.keys[old.keys.length - 1]!.n >= keys[0]!.n) {
      const byN = new Map<number, LostKey>();
      for (const k of merged) byN.set(k.n, k);
      merged = [...byN.values()].sort((a, b) => a.n - b.n);
      count -= old.keys.length + keys.length - merged.length;
    }
  }
  next.push({ hk, keys: merged });
  count += keys.length;
  while (next.length > MAX_LOST_KEY_CHAINS) count -= next.shift()!.keys.length;
  while (count > MAX_LOST_KEYS) {
    const first = next[0]!;
    const excess = count - MAX_LOST_KEYS;
    if (first.keys.length <= excess) {
      next.shift();
      count -= first.keys.length;
    } else {
      next[0] = { hk: first.hk, keys: first.keys.slice(excess) };
      count -= excess;
    }
  }
  return { lost: next, lostCount: count };
}

function recordLost(book: KeyBook, gone: readonly { hk: Uint8Array; keys: readonly SkippedKey[] }[], reason: LostKey['reason']): Pick<KeyBook, 'lost' | 'lostCount'> {
  let acc = { lost: book.lost, lostCount: book.lostCount };
  for (const g of gone) acc = addLost(acc.lost, acc.lostCount, g.hk, g.keys.map((k) => ({ n: k.n, reason })));
  return acc;
}

/**
 * Appends keys of chain `hk` (the current receiving chain, so the last list entry if it exists),
 * then applies the limits: oldest chains beyond MAX_SKIPPED_KEY_CHAINS, then oldest keys beyond
 * MAX_SKIPPED_KEYS are evicted (and recorded as lost).
 */
function addSkipped(book: KeyBook, hk: Uint8Array, keys: readonly SkippedKey[]): KeyBook {
  if (keys.length === 0) return bookOf(book);
  const list = book.skipped;
  let count = book.skippedCount;
  const last = list[list.length - 1];
  let next: SkippedChain[];
  if (last && equalBytes(last.hk, hk)) {
    next = list.slice(0, -1);
    next.push({ hk: last.hk, keys: last.keys.concat(keys) });
  } else {
    next = list.slice();
    next.push({ hk, keys });
  }
  count += keys.length;
  const evicted: SkippedChain[] = [];
  while (next.length > MAX_SKIPPED_KEY_CHAINS) {
    const first = next.shift()!;
    evicted.push(first);
    count -= first.keys.length;
  }
  while (count > MAX_SKIPPED_KEYS) {
    const first = next[0]!;
    const excess = count - MAX_SKIPPED_KEYS;
    if (first.keys.length <= excess) {
      next.shift();
      evicted.push(first);
      count -= first.keys.length;
    } else {
      next[0] = { hk: first.hk, keys: first.keys.slice(excess) };
      evicted.push({ hk: first.hk, keys: first.keys.slice(0, excess) });
      count -= excess;
    }
  }
  return { skipped: next, skippedCount: count, ...recordLost(book, evicted, LOST_EVICTED) };
}

/** Drops expired keys (recording them as lost). Cheap when nothing expired: looks at each chain's oldest key only. */
function pruneExpired(book: KeyBook, now: number): KeyBook {
  const list = book.skipped;
  if (!list.some((c) => expired(c.keys[0]!, now))) return bookOf(book);
  let count = book.skippedCount;
  const out: SkippedChain[] = [];
  const gone: SkippedChain[] = [];
  for (const chain of list) {
    if (!expired(chain.keys[0]!, now)) {
      out.push(chain);
      continue;
    }
    const kept = chain.keys.filter((k) => !expired(k, now));
    gone.push({ hk: chain.hk, keys: chain.keys.filter((k) => expired(k, now)) });
    count -= chain.keys.length - kept.length;
    if (kept.length > 0) out.push({ hk: chain.hk, keys: kept });
  }
  return { skipped: out, skippedCount: count, ...recordLost(book, gone, LOST_EXPIRED) };
}

const bookOf = (s: KeyBook): KeyBook => ({ skipped: s.skipped, skippedCount: s.skippedCount, lost: s.lost, lostCount: s.lostCount });

function findChain(list: readonly { readonly hk: Uint8Array }[], hk: Uint8Array): number {
  for (let i = list.length - 1; i >= 0; i--) if (equalBytes(list[i]!.hk, hk)) return i;
  return -1;
}

function findKey(keys: readonly { readonly n: number }[], n: number): number {
  let lo = 0;
  let hi = keys.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = keys[mid]!.n;
    if (v === n) return mid;
    if (v < n) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

function removeKey(book: KeyBook, ci: number, ki: number): KeyBook {
  const chain = book.skipped[ci]!;
  const next = book.skipped.slice();
  if (chain.keys.length === 1) next.splice(ci, 1);
  else next[ci] = { hk: chain.hk, keys: chain.keys.slice(0, ki).concat(chain.keys.slice(ki + 1)) };
  return { ...book, skipped: next, skippedCount: book.skippedCount - 1 };
}

/**
 * Spec SkipMessageKeysHE for one chain: derives the keys for messages nr … until−1 (stored as
 * skipped) and returns the chain key positioned at `until`. `ck` belongs to the caller and is not
 * wiped; intermediate chain keys are. The caller has checked until − nr ≤ MAX_SKIP.
 */
function skipKeys(ctx: CryptoContext, ck: Uint8Array, nr: number, until: number, now: number): { keys: SkippedKey[]; ck: Uint8Array } {
  const keys: SkippedKey[] = [];
  let cur = ck;
  for (let n = nr; n < until; n++) {
    const mk = ctx.backend.hmacSha256(cur, CK_MESSAGE_INPUT);
    const nextCk = ctx.backend.hmacSha256(cur, CK_CHAIN_INPUT);
    if (cur !== ck) wipe(cur);
    cur = nextCk;
    keys.push({ n, mk, at: now });
  }
  return { keys, ck: cur === ck ? copyBytes(ck) : cur };
}

// ── Encrypt (spec §4.5 RatchetEncryptHE) ─────────────────────────────────────────────────────

/**
 * Encrypts one message and returns it with the successor state (which the caller must persist
 * together with the message; see docs/spec/ratchet.md §Nonces for why a message must never be
 * re-encrypted from an older state). Consumes ctx.random(12) for the header nonce.
 */
export function ratchetEncrypt(ctx: CryptoContext, state: RatchetState, plaintext: Uint8Array): { state: RatchetState; message: Uint8Array } {
  const op = 'ratchetEncrypt';
  const s = innerOf(state, op);
  assertBytes(plaintext, op, 'plaintext');
  if (s.cks === null || s.hks === null) {
    throw new CryptoError(CryptoErrorCode.INVALID_ARGUMENT, op, 'no sending chain yet: a responder must decrypt the first message before it can encrypt');
  }
  if (s.ns > MAX_MESSAGE_NUMBER) throw new CryptoError(CryptoErrorCode.LIMIT_EXCEEDED, op, 'sending chain exhausted (2^32 − 1 messages)');
  const b = ctx.backend;
  const now = clock(ctx, op);
  const headerNonce = ctx.random(AES_GCM_NONCE_LENGTH);
  if (!(headerNonce instanceof Uint8Array) || headerNonce.length !== AES_GCM_NONCE_LENGTH) {
    throw new RangeError(`${op}: ctx.random did not return ${AES_GCM_NONCE_LENGTH} bytes`);
  }

  const header = new Uint8Array(RATCHET_HEADER_LENGTH);
  header.set(s.dhsPublic, 0);
  const dv = new DataView(header.buffer);
  dv.setUint32(KEY, s.pn, false);
  dv.setUint32(KEY + 4, s.ns, false);

  const message = new Uint8Array(BODY_OFFSET + plaintext.length + AES_GCM_TAG_LENGTH);
  message[0] = RATCHET_WIRE_VERSION;
  message.set(headerNonce, 1);
  message.set(b.aes256GcmEncrypt(s.hks, headerNonce, header, s.headerAad), HEADER_NONCE_END);
  wipe(header);

  const mk = b.hmacSha256(s.cks, CK_MESSAGE_INPUT);
  const cks = b.hmacSha256(s.cks, CK_CHAIN_INPUT);
  const km = messageKeyMaterial(ctx, mk, headerNonce);
  const aad = concatBytes(s.ad, message.subarray(0, BODY_OFFSET));
  message.set(b.aes256GcmEncrypt(km.subarray(0, KEY), km.subarray(KEY), plaintext, aad), BODY_OFFSET);
  wipe(mk, km);

  return { state: wrap({ ...s, cks, ns: s.ns + 1, ...pruneExpired(s, now) }), message };
}

// ── Decrypt (spec §4.6 RatchetDecryptHE) ─────────────────────────────────────────────────────

interface Header {
  readonly dh: Uint8Array;
  readonly pn: number;
  readonly n: number;
}

/** HDECRYPT: the header under `hk`, or null if its tag does not verify under that key. */
function openHeader(ctx: CryptoContext, hk: Uint8Array, message: Uint8Array, headerAad: Uint8Array): Header | null {
  let pt: Uint8Array;
  try {
    pt = ctx.backend.aes256GcmDecrypt(hk, message.subarray(1, HEADER_NONCE_END), message.subarray(HEADER_NONCE_END, BODY_OFFSET), headerAad);
  } catch (e) {
    if (e instanceof CryptoError && e.code === CryptoErrorCode.BAD_MAC) return null;
    throw e;
  }
  const dv = new DataView(pt.buffer, pt.byteOffset, pt.byteLength);
  const h = { dh: pt.slice(0, KEY), pn: dv.getUint32(KEY, false), n: dv.getUint32(KEY + 4, false) };
  wipe(pt);
  return h;
}

/** A planned transition: the message key, the successor (built lazily) and fresh buffers to wipe on failure. */
interface Plan {
  readonly mk: Uint8Array;
  /** True when mk is shared with the old state's skipped list (must not be wiped). */
  readonly mkShared: boolean;
  readonly next: () => Inner;
  readonly fresh: Uint8Array[];
}

/**
 * Decrypts one message and returns the plaintext with the successor state. On any error the
 * input state is untouched and still current. Errors (CryptoError codes): UNSUPPORTED_VERSION,
 * MALFORMED, UNKNOWN_SESSION (the header opens under no key of this session: not its message),
 * BAD_MAC (the header opened but the body is forged), DUPLICATE_MESSAGE (its key was used),
 * SKIPPED_KEY_EVICTED / SKIPPED_KEY_EXPIRED (its key is gone unused: the message is lost),
 * TOO_FAR_AHEAD (more than MAX_SKIP skipped in one chain), LOW_ORDER_POINT (peer sent a degenerate
 * ratchet key), LIMIT_EXCEEDED.
 */
export function ratchetDecrypt(ctx: CryptoContext, state: RatchetState, message: Uint8Array): { state: RatchetState; plaintext: Uint8Array } {
  const op = 'ratchetDecrypt';
  const s = innerOf(state, op);
  assertBytes(message, op, 'message');
  if (message.length === 0) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'empty message');
  if (message[0] !== RATCHET_WIRE_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `ratchet message version ${message[0]}`);
  if (message.length < RATCHET_MESSAGE_OVERHEAD) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'message shorter than header and tag');
  const now = clock(ctx, op);

  const plan = planDecrypt(ctx, s, message, now, op);
  const b = ctx.backend;
  const km = messageKeyMaterial(ctx, plan.mk, message.subarray(1, HEADER_NONCE_END));
  let plaintext: Uint8Array;
  try {
    const aad = concatBytes(s.ad, message.subarray(0, BODY_OFFSET));
    plaintext = b.aes256GcmDecrypt(km.subarray(0, KEY), km.subarray(KEY), message.subarray(BODY_OFFSET), aad);
  } catch (e) {
    wipe(...plan.fresh);
    if (!plan.mkShared) wipe(plan.mk);
    throw e;
  } finally {
    wipe(km);
  }
  const next = plan.next();
  if (!plan.mkShared) wipe(plan.mk);
  return { state: wrap(next), plaintext };
}

function planDecrypt(ctx: CryptoContext, s: Inner, message: Uint8Array, now: number, op: string): Plan {
  // Current receiving chain first: the common, in-order case costs one header decryption.
  if (s.hkr !== null && s.ckr !== null) {
    const h = openHeader(ctx, s.hkr, message, s.headerAad);
    if (h) return h.n < s.nr ? planSkipped(s, s.hkr, h.n, now, op) : planCurrentChain(ctx, s, s.ckr, h, now, op);
  }
  const h = openHeader(ctx, s.nhkr, message, s.headerAad);
  if (h) return planDhRatchet(ctx, s, h, now, op);
  // Finished chains: those holding skipped keys or lost-key records, and the last few (for duplicate detection).
  const tried: Uint8Array[] = s.hkr ? [s.hkr, s.nhkr] : [s.nhkr];
  const candidates: Uint8Array[] = [];
  for (let i = s.skipped.length - 1; i >= 0; i--) candidates.push(s.skipped[i]!.hk);
  for (let i = s.lost.length - 1; i >= 0; i--) candidates.push(s.lost[i]!.hk);
  for (let i = s.previousHeaderKeys.length - 1; i >= 0; i--) candidates.push(s.previousHeaderKeys[i]!);
  for (const hk of candidates) {
    if (tried.some((t) => equalBytes(t, hk))) continue;
    tried.push(hk);
    const old = openHeader(ctx, hk, message, s.headerAad);
    if (old) return planSkipped(s, hk, old.n, now, op);
  }
  throw new CryptoError(CryptoErrorCode.UNKNOWN_SESSION, op, 'header does not decrypt under any header key of this session');
}

/** Spec TrySkippedMessageKeysHE, for a header already opened under `hk`. */
function planSkipped(s: Inner, hk: Uint8Array, n: number, now: number, op: string): Plan {
  const ci = findChain(s.skipped, hk);
  const ki = ci < 0 ? -1 : findKey(s.skipped[ci]!.keys, n);
  const entry = ki < 0 ? undefined : s.skipped[ci]!.keys[ki]!;
  if (entry && expired(entry, now)) throw new CryptoError(CryptoErrorCode.SKIPPED_KEY_EXPIRED, op, 'message key expired before the message arrived');
  if (!entry) {
    const li = findChain(s.lost, hk);
    const lki = li < 0 ? -1 : findKey(s.lost[li]!.keys, n);
    if (lki >= 0) {
      if (s.lost[li]!.keys[lki]!.reason === LOST_EXPIRED) throw new CryptoError(CryptoErrorCode.SKIPPED_KEY_EXPIRED, op, 'message key expired before the message arrived');
      throw new CryptoError(CryptoErrorCode.SKIPPED_KEY_EVICTED, op, 'message key was evicted by the skipped-key limits before the message arrived');
    }
    throw new CryptoError(CryptoErrorCode.DUPLICATE_MESSAGE, op, 'message key already used');
  }
  return {
    mk: entry.mk,
    mkShared: true,
    fresh: [],
    next: () => ({ ...s, ...pruneExpired(removeKey(bookOf(s), ci, ki), now) }),
  };
}

function tooFar(op: string): CryptoError {
  return new CryptoError(CryptoErrorCode.TOO_FAR_AHEAD, op, `message is more than ${MAX_SKIP} messages ahead in its chain`);
}

/** Header under HKr with N ≥ Nr: skip to N in the current chain. */
function planCurrentChain(ctx: CryptoContext, s: Inner, ckr: Uint8Array, h: Header, now: number, op: string): Plan {
  if (h.n - s.nr > MAX_SKIP) throw tooFar(op);
  if (h.n > MAX_MESSAGE_NUMBER) throw new CryptoError(CryptoErrorCode.LIMIT_EXCEEDED, op, 'message number out of range');
  const skip = skipKeys(ctx, ckr, s.nr, h.n, now);
  const mk = ctx.backend.hmacSha256(skip.ck, CK_MESSAGE_INPUT);
  const nextCk = ctx.backend.hmacSha256(skip.ck, CK_CHAIN_INPUT);
  wipe(skip.ck);
  const fresh = [nextCk, ...skip.keys.map((k) => k.mk)];
  const hkr = s.hkr!;
  return {
    mk,
    mkShared: false,
    fresh,
    next: () => {
      return { ...s, ckr: nextCk, nr: h.n + 1, ...pruneExpired(addSkipped(bookOf(s), hkr, skip.keys), now) };
    },
  };
}

/** Header under NHKr: skip the rest of the current chain (PN), DH ratchet step, skip to N. */
function planDhRatchet(ctx: CryptoContext, s: Inner, h: Header, now: number, op: string): Plan {
  // Limits first, before any expensive work (spec SkipMessageKeysHE order: PN, then N).
  if (h.pn > s.nr + MAX_SKIP || h.n > MAX_SKIP) throw tooFar(op);
  const fresh: Uint8Array[] = [];
  try {
    let oldKeys: SkippedKey[] = [];
    if (s.ckr !== null && h.pn > s.nr) {
      const skip = skipKeys(ctx, s.ckr, s.nr, h.pn, now);
      wipe(skip.ck);
      oldKeys = skip.keys;
      for (const k of oldKeys) fresh.push(k.mk);
    }
    // DHRatchetHE
    const dh1 = ctx.backend.x25519(s.dhsSecret, h.dh);
    const [rk1, ckr0, nhkr] = kdfRk(ctx, s.rk, dh1);
    wipe(dh1);
    fresh.push(rk1, ckr0, nhkr);
    const dhs = generateDh(ctx, op);
    fresh.push(dhs.secretKey);
    const dh2 = ctx.backend.x25519(dhs.secretKey, h.dh);
    const [rk, cks, nhks] = kdfRk(ctx, rk1, dh2);
    wipe(dh2);
    fresh.push(rk, cks, nhks);
    // The new receiving chain, N ≤ MAX_SKIP.
    const skip = skipKeys(ctx, ckr0, 0, h.n, now);
    fresh.push(skip.ck);
    for (const k of skip.keys) fresh.push(k.mk);
    const mk = ctx.backend.hmacSha256(skip.ck, CK_MESSAGE_INPUT);
    const ckr = ctx.backend.hmacSha256(skip.ck, CK_CHAIN_INPUT);
    fresh.push(ckr);
    return {
      mk,
      mkShared: false,
      fresh,
      next: () => {
        wipe(rk1, ckr0, skip.ck);
        let book = bookOf(s);
        let previousHeaderKeys = s.previousHeaderKeys;
        if (s.hkr !== null) {
          book = addSkipped(book, s.hkr, oldKeys);
          previousHeaderKeys = previousHeaderKeys.concat([s.hkr]).slice(-MAX_PREVIOUS_HEADER_KEYS);
        }
        book = pruneExpired(addSkipped(book, s.nhkr, skip.keys), now);
        return {
          ...s,
          rk,
          dhsSecret: dhs.secretKey,
          dhsPublic: dhs.publicKey,
          dhr: h.dh,
          cks,
          ckr,
          hks: s.nhks,
          hkr: s.nhkr,
          nhks,
          nhkr,
          pn: s.ns,
          ns: 0,
          nr: h.n + 1,
          previousHeaderKeys,
          ...book,
        };
      },
    };
  } catch (e) {
    wipe(...fresh);
    throw e;
  }
}

// ── Ephemeral messages (docs/spec/ratchet.md §Ephemeral messages) ─────────────────────────────

/** EPH_KEYS(HK, salt): 44 bytes = AES key ‖ nonce. Caller wipes. */
function ephemeralKeyMaterial(ctx: CryptoContext, hk: Uint8Array, salt: Uint8Array): Uint8Array {
  return ctx.backend.hkdfSha256(hk, salt, INFO_EPHEMERAL, KEY + AES_GCM_NONCE_LENGTH);
}

/**
 * Encrypts an ephemeral signal (typing, presence) under a key derived from the current sending
 * header key and a random salt. It advances nothing — no message number, no chain key — so any
 * number of lost ephemeral messages costs the durable chain nothing, and the state needs no write.
 * The sender time (ctx.now()) is authenticated inside, for the receiver's freshness check.
 * Consumes ctx.random(16).
 */
export function ratchetEncryptEphemeral(ctx: CryptoContext, state: RatchetState, plaintext: Uint8Array): Uint8Array {
  const op = 'ratchetEncryptEphemeral';
  const s = innerOf(state, op);
  assertBytes(plaintext, op, 'plaintext');
  if (s.hks === null) {
    throw new CryptoError(CryptoErrorCode.INVALID_ARGUMENT, op, 'no sending chain yet: a responder must decrypt the first message before it can encrypt');
  }
  const now = clock(ctx, op);
  const salt = copyBytes(ctx.random(EPHEMERAL_SALT_LENGTH));
  if (salt.length !== EPHEMERAL_SALT_LENGTH) throw new RangeError(`${op}: ctx.random did not return ${EPHEMERAL_SALT_LENGTH} bytes`);
  const prefix = concatBytes(Uint8Array.of(RATCHET_WIRE_VERSION), salt);
  const inner = new ByteWriter().u64(now).bytes(plaintext).finish();
  const km = ephemeralKeyMaterial(ctx, s.hks, salt);
  try {
    return concatBytes(prefix, ctx.backend.aes256GcmEncrypt(km.subarray(0, KEY), km.subarray(KEY), inner, concatBytes(s.ad, prefix)));
  } finally {
    wipe(km, inner);
  }
}

/**
 * Decrypts an ephemeral message under the keys derived from HKr, NHKr and the previous receiving
 * header keys (newest first). Changes no state. Returns the plaintext and the sender's time; the
 * caller (session layer) checks freshness. Errors: UNSUPPORTED_VERSION, MALFORMED, UNKNOWN_SESSION
 * (opens under no key of this session).
 */
export function ratchetDecryptEphemeral(ctx: CryptoContext, state: RatchetState, message: Uint8Array): { plaintext: Uint8Array; sentAt: number } {
  const op = 'ratchetDecryptEphemeral';
  const s = innerOf(state, op);
  assertBytes(message, op, 'message');
  if (message.length === 0) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'empty message');
  if (message[0] !== RATCHET_WIRE_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `ephemeral message version ${message[0]}`);
  if (message.length < EPHEMERAL_MESSAGE_OVERHEAD) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'message shorter than salt, time and tag');
  const prefixEnd = 1 + EPHEMERAL_SALT_LENGTH;
  const salt = message.subarray(1, prefixEnd);
  const aad = concatBytes(s.ad, message.subarray(0, prefixEnd));
  const keys = [...(s.hkr ? [s.hkr] : []), s.nhkr, ...s.previousHeaderKeys.slice().reverse()];
  for (const hk of keys) {
    const km = ephemeralKeyMaterial(ctx, hk, salt);
    let inner: Uint8Array;
    try {
      inner = ctx.backend.aes256GcmDecrypt(km.subarray(0, KEY), km.subarray(KEY), message.subarray(prefixEnd), aad);
    } catch (e) {
      if (e instanceof CryptoError && e.code === CryptoErrorCode.BAD_MAC) continue;
      throw e;
    } finally {
      wipe(km);
    }
    const sentAt = new ByteReader(inner, op).u64('sent time');
    const plaintext = inner.slice(8);
    wipe(inner);
    return { plaintext, sentAt };
  }
  throw new CryptoError(CryptoErrorCode.UNKNOWN_SESSION, op, 'ephemeral message opens under no header key of this session');
}

// ── Storage format (docs/spec/ratchet.md §Storage format) ──────────────────────────────────────

const ROLE_INITIATOR = 0;
const ROLE_RESPONDER = 1;

/**
 * The storage encoding of a state (STORAGE_VERSION; distinct from any wire format). The bytes are
 * secret — every key of the session — and belong to the caller, who should wipe them after use.
 */
export function serializeRatchetState(state: RatchetState): Uint8Array {
  const s = innerOf(state, 'serializeRatchetState');
  const received = s.ckr !== null;
  const w = new ByteWriter();
  w.u8(STORAGE_VERSION).u8(s.initiator ? ROLE_INITIATOR : ROLE_RESPONDER).u8(received ? 1 : 0);
  w.bytes(s.rk).bytes(s.dhsSecret).bytes(s.dhsPublic);
  if (s.initiator || received) w.bytes(s.dhr!).bytes(s.cks!).bytes(s.hks!);
  if (received) w.bytes(s.ckr!).bytes(s.hkr!);
  w.bytes(s.nhks).bytes(s.nhkr);
  w.u32(s.ns).u32(s.nr).u32(s.pn);
  w.vec16(s.ad);
  w.u8(s.previousHeaderKeys.length);
  for (const hk of s.previousHeaderKeys) w.bytes(hk);
  w.u8(s.skipped.length);
  for (const chain of s.skipped) {
    w.bytes(chain.hk).u16(chain.keys.length);
    for (const k of chain.keys) w.u32(k.n).u64(k.at).bytes(k.mk);
  }
  w.u8(s.lost.length);
  for (const chain of s.lost) {
    w.bytes(chain.hk).u16(chain.keys.length);
    for (const k of chain.keys) w.u32(k.n).u8(k.reason);
  }
  return w.finish();
}

/** Inverse of serializeRatchetState. Throws CryptoError MALFORMED or UNSUPPORTED_VERSION only. */
export function deserializeRatchetState(bytes: Uint8Array): RatchetState {
  const op = 'deserializeRatchetState';
  assertBytes(bytes, op, 'bytes');
  const bad = (what: string): never => {
    throw new CryptoError(CryptoErrorCode.MALFORMED, op, what);
  };
  const r = new ByteReader(bytes, op);
  const version = r.u8('version');
  if (version !== STORAGE_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `ratchet state version ${version}`);
  const role = r.u8('role');
  if (role !== ROLE_INITIATOR && role !== ROLE_RESPONDER) bad(`unknown role ${role}`);
  const receivedByte = r.u8('received flag');
  if (receivedByte > 1) bad('received flag must be 0 or 1');
  const initiator = role === ROLE_INITIATOR;
  const received = receivedByte === 1;
  const rk = r.bytes(KEY, 'RK');
  const dhsSecret = r.bytes(KEY, 'DHs secret');
  const dhsPublic = r.bytes(KEY, 'DHs public');
  const sending = initiator || received;
  const dhr = sending ? r.bytes(KEY, 'DHr') : null;
  const cks = sending ? r.bytes(KEY, 'CKs') : null;
  const hks = sending ? r.bytes(KEY, 'HKs') : null;
  const ckr = received ? r.bytes(KEY, 'CKr') : null;
  const hkr = received ? r.bytes(KEY, 'HKr') : null;
  const nhks = r.bytes(KEY, 'NHKs');
  const nhkr = r.bytes(KEY, 'NHKr');
  const ns = r.u32('Ns');
  const nr = r.u32('Nr');
  const pn = r.u32('PN');
  if (!received && (nr !== 0 || pn !== 0)) bad('Nr and PN must be 0 before the first received message');
  if (!sending && ns !== 0) bad('Ns must be 0 without a sending chain');
  const ad = r.vec16('AD');
  const prevCount = r.u8('previous header key count');
  if (prevCount > MAX_PREVIOUS_HEADER_KEYS) bad('too many previous header keys');
  if (!received && prevCount !== 0) bad('previous header keys before the first received message');
  const previousHeaderKeys: Uint8Array[] = [];
  for (let i = 0; i < prevCount; i++) previousHeaderKeys.push(r.bytes(KEY, 'previous header key'));
  const chainCount = r.u8('skipped chain count');
  if (chainCount > MAX_SKIPPED_KEY_CHAINS) bad('too many skipped-key chains');
  if (!received && chainCount !== 0) bad('skipped keys before the first received message');
  const skipped: SkippedChain[] = [];
  let skippedCount = 0;
  for (let i = 0; i < chainCount; i++) {
    const hk = r.bytes(KEY, 'skipped chain header key');
    if (skipped.some((c) => equalBytes(c.hk, hk))) bad('duplicate skipped chain');
    const n = r.u16('skipped key count');
    if (n === 0) bad('empty skipped chain');
    skippedCount += n;
    if (skippedCount > MAX_SKIPPED_KEYS) bad('too many skipped keys');
    const keys: SkippedKey[] = [];
    let prev = -1;
    for (let j = 0; j < n; j++) {
      const idx = r.u32('skipped key number');
      if (idx <= prev) bad('skipped key numbers must be strictly ascending');
      prev = idx;
      const at = r.u64('skipped key time');
      keys.push({ n: idx, at, mk: r.bytes(KEY, 'skipped message key') });
    }
    skipped.push({ hk, keys });
  }
  const lostChainCount = r.u8('lost chain count');
  if (lostChainCount > MAX_LOST_KEY_CHAINS) bad('too many lost-key chains');
  if (!received && lostChainCount !== 0) bad('lost keys before the first received message');
  const lost: LostChain[] = [];
  let lostCount = 0;
  for (let i = 0; i < lostChainCount; i++) {
    const hk = r.bytes(KEY, 'lost chain header key');
    if (lost.some((c) => equalBytes(c.hk, hk))) bad('duplicate lost chain');
    const n = r.u16('lost key count');
    if (n === 0) bad('empty lost chain');
    lostCount += n;
    if (lostCount > MAX_LOST_KEYS) bad('too many lost keys');
    const keys: LostKey[] = [];
    let prev = -1;
    for (let j = 0; j < n; j++) {
      const idx = r.u32('lost key number');
      if (idx <= prev) bad('lost key numbers must be strictly ascending');
      prev = idx;
      const reason = r.u8('lost key reason');
      if (reason !== LOST_EVICTED && reason !== LOST_EXPIRED) bad(`unknown lost key reason ${reason}`);
      keys.push({ n: idx, reason: reason as LostKey['reason'] });
    }
    lost.push({ hk, keys });
  }
  r.finish();
  return wrap({
    initiator,
    rk,
    dhsSecret,
    dhsPublic,
    dhr,
    cks,
    ckr,
    hks,
    hkr,
    nhks,
    nhkr,
    ns,
    nr,
    pn,
    ad,
    headerAad: headerAadOf(ad),
    previousHeaderKeys,
    skipped,
    skippedCount,
    lost,
    lostCount,
  });
}

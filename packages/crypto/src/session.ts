/**
 * Session management (docs/protocol.md §6): picks, creates, archives and promotes sessions per peer
 * device and talks to the stores. It knows PQXDH and the ratchet only through their APIs; neither of
 * them knows about stores, identities or session selection (libsignal's layering).
 *
 * Rules:
 *  - Encryption uses the current session. Until the first message from the peer decrypts in it, an
 *    initiator wraps every ratchet message with the PQXDH header (key confirmation).
 *  - Decryption tries the current session, then up to MAX_ARCHIVED_SESSIONS archived ones, newest
 *    first; an archived session that decrypts is promoted to current (Sesame: the session the peer
 *    most recently used successfully is the one we answer on).
 *  - A PQXDH initial message whose base key matches an existing session is just a repeat of that
 *    session's header and goes to that session. Otherwise it must not have been seen before (replay
 *    cache), its one-time prekeys must still exist, and its first ratchet message must decrypt before
 *    anything is stored: a replayed or forged initial message never replaces a live session.
 *  - Simultaneous initiation needs no tie-break: a new session from the peer becomes current (the peer
 *    is using it), ours is archived and still decrypts. A pending session (never answered) expires
 *    after PENDING_SESSION_MAX_AGE_MS. When a message cannot be decrypted at all, the receiver seals
 *    a rate-limited decryption-error message; the sender then drops its current session, so its next
 *    send starts a fresh one (and the app re-sends what the peer missed, encrypted anew).
 *  - Ephemeral messages (typing, presence) use a key derived from the session's header keys and
 *    advance nothing: losing any number of them costs the durable chain nothing.
 *  - Every operation runs in one store transaction: the one-time prekey is consumed, the replay cache
 *    updated and the session saved together (and the caller's `persist` hook writes the outbound
 *    ciphertext or inbound plaintext in the same transaction).
 */
import { concatBytes, equalBytes, wipe } from './bytes.js';
import { DECRYPTION_ERROR_MIN_INTERVAL_MS, EPHEMERAL_MAX_SKEW_MS, MAX_ARCHIVED_SESSIONS, PENDING_SESSION_MAX_AGE_MS, STORAGE_VERSION } from './constants.js';
import type { CryptoContext } from './context.js';
import { ByteReader, ByteWriter } from './encoding.js';
import { CryptoError, CryptoErrorCode } from './errors.js';
import type { DeviceCertificate } from './keys.js';
import { decodeDeviceCertificate, encodeDeviceCertificate, sameDevice } from './keys.js';
import type { PqxdhInitialHeader } from './pqxdh.js';
import { decodePqxdhHeader, encodePqxdhHeader, initialMessageDigest, pqxdhHeaderLength, pqxdhInitiate, pqxdhRespond, readPqxdhHeader } from './pqxdh.js';
import type { PreKeyBundle } from './prekeys.js';
import { openEnvelope, sealEnvelope } from './sealed-sender.js';
import type { RatchetState } from './ratchet.js';
import {
  deserializeRatchetState,
  hasReceivedMessage,
  initRatchetAsInitiator,
  initRatchetAsResponder,
  ratchetDecrypt,
  ratchetDecryptEphemeral,
  ratchetEncrypt,
  ratchetEncryptEphemeral,
  ratchetStateSummary,
  serializeRatchetState,
} from './ratchet.js';
import type { DeviceAddress, ProtocolStore, ProtocolStores } from './stores.js';
import { deviceAddress } from './stores.js';

/** Session-layer message types; they travel as the sealed envelope's content type. */
/**
 * Sealed-envelope content types. Group (5): a sender-key group message (docs/spec/groups.md §G2.3),
 * carried directly in the sealed envelope — the session layer does not open it; receiveSealed hands
 * it back with the authenticated sender, and the group layer checks that it names that device.
 */
export const MessageType = { PreKey: 1, Ratchet: 2, Ephemeral: 3, DecryptionError: 4, Group: 5 } as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export interface SessionMessage {
  readonly type: MessageType;
  readonly body: Uint8Array;
}

interface SessionEntry {
  readonly initiator: boolean;
  readonly peer: DeviceCertificate;
  /** EK_A of the PQXDH run that created the session (identifies it; used for the tie-break). */
  readonly baseKey: Uint8Array;
  readonly createdAt: number;
  /** Sender time of the last ephemeral message accepted in this session (replay guard), 0 if none. */
  readonly lastEphemeralAt: number;
  /** The PQXDH header still repeated on every message (initiator, before the first reply). */
  readonly pending?: PqxdhInitialHeader;
  readonly ratchet: RatchetState;
}

/**
 * Archived sessions stay in their stored bytes until one is needed: a message on the current
 * session then costs the same whether 0 or 40 sessions are archived.
 */
type ArchivedEntry = SessionEntry | Uint8Array;

interface SessionRecord {
  current?: SessionEntry;
  archived: ArchivedEntry[];
  /** ctx.now() when we last sent this peer device a decryption-error message (0: never). */
  lastErrorSentAt: number;
  /** The base key that report named (32 zero bytes: none). */
  lastErrorBaseKey: Uint8Array;
}

// ── Storage format (versioned, separate from any wire format) ───────────────────────────────

function encodeEntry(e: SessionEntry): Uint8Array {
  const w = new ByteWriter();
  w.u8(e.initiator ? 1 : 0)
    .vec16(memo(encodedCertificates, e.peer, encodeDeviceCertificate))
    .bytes(e.baseKey)
    .u64(e.createdAt)
    .u64(e.lastEphemeralAt);
  if (e.pending) w.u8(1).vec16(memo(encodedHeaders, e.pending, encodePqxdhHeader));
  else w.u8(0);
  return w.vec32(serializeRatchetState(e.ratchet)).finish();
}

function decodeEntry(bytes: Uint8Array): SessionEntry {
  const op = 'deserializeSessionRecord';
  const r = new ByteReader(bytes, op);
  const e = readEntry(r, op);
  r.finish();
  return e;
}

const entryOf = (a: ArchivedEntry): SessionEntry => (a instanceof Uint8Array ? decodeEntry(a) : a);

/** The base key of an entry, read from stored bytes without decoding the rest. */
function baseKeyOf(a: ArchivedEntry): Uint8Array {
  if (!(a instanceof Uint8Array)) return a.baseKey;
  const certLength = a.length >= 3 ? (a[1]! << 8) | a[2]! : 0;
  const start = 3 + certLength;
  if (a.length < start + 32) throw new CryptoError(CryptoErrorCode.MALFORMED, 'deserializeSessionRecord', 'truncated session entry');
  return a.subarray(start, start + 32);
}

function readEntry(r: ByteReader, op: string): SessionEntry {
  const flags = r.u8('flags');
  if (flags > 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'unknown session flags');
  const peer = decodeDeviceCertificate(r.vec16('peer certificate'));
  const baseKey = r.bytes(32, 'base key');
  const createdAt = r.u64('createdAt');
  const lastEphemeralAt = r.u64('lastEphemeralAt');
  const hasPending = r.u8('pending flag');
  if (hasPending > 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'pending flag must be 0 or 1');
  const pending = hasPending ? decodePqxdhHeader(r.vec16('pending header')) : undefined;
  const ratchet = deserializeRatchetState(r.vec32('ratchet state', MAX_ENTRY_LENGTH));
  return { initiator: flags === 1, peer, baseKey, createdAt, lastEphemeralAt, ...(pending ? { pending } : {}), ratchet };
}

export function serializeSessionRecord(rec: SessionRecord): Uint8Array {
  const w = new ByteWriter().u8(STORAGE_VERSION).u64(rec.lastErrorSentAt).bytes(rec.lastErrorBaseKey);
  if (rec.current) w.u8(1).vec32(encodeEntry(rec.current));
  else w.u8(0);
  w.u16(rec.archived.length);
  for (const e of rec.archived) w.vec32(e instanceof Uint8Array ? e : encodeEntry(e));
  return w.finish();
}

/** Upper bound on one stored session entry (a ratchet state with every skipped key is ~200 KB). */
const MAX_ENTRY_LENGTH = 16 * 1024 * 1024;

export function deserializeSessionRecord(bytes: Uint8Array): SessionRecord {
  const op = 'deserializeSessionRecord';
  const r = new ByteReader(bytes, op);
  const v = r.u8('version');
  if (v !== STORAGE_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `session record version ${v}`);
  const lastErrorSentAt = r.u64('lastErrorSentAt');
  const lastErrorBaseKey = r.bytes(32, 'lastErrorBaseKey');
  const has = r.u8('current flag');
  if (has > 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'current flag must be 0 or 1');
  const current = has ? decodeEntry(r.vec32('current session', MAX_ENTRY_LENGTH)) : undefined;
  const n = r.u16('archived count');
  if (n > MAX_ARCHIVED_SESSIONS) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'too many archived sessions');
  const archived: ArchivedEntry[] = [];
  for (let i = 0; i < n; i++) archived.push(r.vec32('archived session', MAX_ENTRY_LENGTH));
  r.finish();
  return current ? { current, archived, lastErrorSentAt, lastErrorBaseKey } : { archived, lastErrorSentAt, lastErrorBaseKey };
}

// ── Decoded records kept across messages ─────────────────────────────────────────────────────
//
// Decoding a record (peer certificate, pending PQXDH header, ratchet state) for every message, and
// re-encoding the parts that did not change, was about a quarter of a message's CPU time. Each store
// keeps here the record it last read or wrote per address, with a copy of the exact bytes. The store
// stays the only source of truth: a load compares the bytes it returns with that copy and decodes
// afresh on any difference (a rolled-back transaction, another writer, a restore), and every change
// is still written as the whole record inside the operation's transaction — atomicity is the store's,
// exactly as before. Records are never mutated in place by this module (entries and ratchet states
// are replaced, not changed), so a shallow copy per use is enough. Keyed by the store object: nothing
// outlives the store.

type RecordCache = Map<DeviceAddress, { readonly bytes: Uint8Array; readonly record: SessionRecord }>;
const recordCaches = new WeakMap<object, RecordCache>();

function cacheOf(store: object): RecordCache {
  let c = recordCaches.get(store);
  if (!c) recordCaches.set(store, (c = new Map()));
  return c;
}

const copyRecord = (r: SessionRecord): SessionRecord => ({ ...r, archived: [...r.archived] });

/** Encoded peer certificates and pending headers, by object: unchanged from message to message. */
const encodedCertificates = new WeakMap<DeviceCertificate, Uint8Array>();
const encodedHeaders = new WeakMap<PqxdhInitialHeader, Uint8Array>();

function memo<K extends object>(map: WeakMap<K, Uint8Array>, key: K, encode: (k: K) => Uint8Array): Uint8Array {
  let b = map.get(key);
  if (!b) map.set(key, (b = encode(key)));
  return b;
}

async function loadRecord(tx: ProtocolStores, address: DeviceAddress, cache?: RecordCache): Promise<SessionRecord> {
  const bytes = await tx.loadSession(address);
  if (!bytes) return { archived: [], lastErrorSentAt: 0, lastErrorBaseKey: new Uint8Array(32) };
  const known = cache?.get(address);
  if (known && sameBytes(known.bytes, bytes)) return copyRecord(known.record);
  const record = deserializeSessionRecord(bytes);
  cache?.set(address, { bytes: new Uint8Array(bytes), record: copyRecord(record) }); // a copy, also of a Buffer
  return record;
}

/**
 * Byte equality with an early exit: both sides are this device's own stored record (no attacker
 * chooses either, so the time this takes reveals nothing), compared four bytes at a time.
 */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  const n = a.length;
  if (n !== b.length) return false;
  const words = n >>> 2;
  if (a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0) {
    const x = new Uint32Array(a.buffer, a.byteOffset, words);
    const y = new Uint32Array(b.buffer, b.byteOffset, words);
    for (let i = 0; i < words; i++) if (x[i] !== y[i]) return false;
  } else {
    for (let i = 0; i < words * 4; i++) if (a[i] !== b[i]) return false;
  }
  for (let i = words * 4; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Writes the whole record in the transaction `tx` and remembers it for the next load. */
async function storeRecord(tx: ProtocolStores, address: DeviceAddress, rec: SessionRecord, cache?: RecordCache): Promise<void> {
  const bytes = serializeSessionRecord(rec);
  await tx.storeSession(address, bytes);
  cache?.set(address, { bytes: new Uint8Array(bytes), record: copyRecord(rec) });
}

/** A session we started that the peer never answered, older than PENDING_SESSION_MAX_AGE_MS. */
function isExpiredPending(ctx: CryptoContext, e: SessionEntry): boolean {
  return e.pending !== undefined && ctx.now() - e.createdAt > PENDING_SESSION_MAX_AGE_MS;
}

function archive(rec: SessionRecord, entry: ArchivedEntry): void {
  rec.archived.unshift(entry);
  if (rec.archived.length > MAX_ARCHIVED_SESSIONS) rec.archived.length = MAX_ARCHIVED_SESSIONS;
}


// ── Public API ──────────────────────────────────────────────────────────────────────────────

/**
 * Starts a session with the device that published `bundle` (verifying every signature in it), and
 * makes it current; a previous current session is archived. Returns the peer's address.
 */
export async function initiateSession(
  ctx: CryptoContext,
  store: ProtocolStore,
  bundle: PreKeyBundle,
  options: { expectedAccountKey?: Uint8Array } = {},
): Promise<DeviceAddress> {
  return store.transaction(async (tx) => {
    const self = await tx.getLocalIdentity();
    const agreed = pqxdhInitiate(ctx, self, bundle, options);
    let ratchet: RatchetState;
    try {
      ratchet = initRatchetAsInitiator(ctx, {
        sharedSecret: agreed.sharedSecret,
        associatedData: agreed.associatedData,
        remoteRatchetKey: agreed.remoteRatchetKey,
      });
    } finally {
      wipe(agreed.sharedSecret);
    }
    const address = deviceAddress(bundle.certificate);
    const cache = cacheOf(store);
    const rec = await loadRecord(tx, address, cache);
    if (rec.current) archive(rec, rec.current);
    rec.current = {
      initiator: true,
      peer: bundle.certificate,
      baseKey: agreed.header.baseKey,
      createdAt: ctx.now(),
      lastEphemeralAt: 0,
      pending: agreed.header,
      ratchet,
    };
    await storeRecord(tx, address, rec, cache);
    return address;
  });
}

/**
 * True if there is a current session to encrypt with: false when there never was one, after the
 * peer's decryption-error message dropped it, or when it is pending (never answered) and older than
 * PENDING_SESSION_MAX_AGE_MS. When false, start one with initiateSession.
 */
export async function hasSession(ctx: CryptoContext, store: ProtocolStore, address: DeviceAddress): Promise<boolean> {
  const cur = (await loadRecord(store, address, cacheOf(store))).current;
  return cur !== undefined && !isExpiredPending(ctx, cur);
}

/** The peer certificate of the current session with `address`, if any. */
export async function sessionPeer(store: ProtocolStore, address: DeviceAddress): Promise<DeviceCertificate | undefined> {
  return (await loadRecord(store, address, cacheOf(store))).current?.peer;
}

/**
 * Encrypts with the current session. The advanced state and — through `persist`, in the same
 * transaction — the caller's copy of the ciphertext commit together: a resend after a crash must
 * send these stored bytes, never re-encrypt (that would reuse a message key and nonce).
 */
export async function encryptMessage(
  ctx: CryptoContext,
  store: ProtocolStore,
  address: DeviceAddress,
  plaintext: Uint8Array,
  options: { persist?: (tx: ProtocolStores, message: SessionMessage) => Promise<void> } = {},
): Promise<SessionMessage> {
  const cache = cacheOf(store);
  return store.transaction(async (tx) => {
    const rec = await loadRecord(tx, address, cache);
    const cur = rec.current;
    if (!cur) throw new CryptoError(CryptoErrorCode.UNKNOWN_SESSION, 'encryptMessage', 'no session with this device');
    if (isExpiredPending(ctx, cur)) throw new CryptoError(CryptoErrorCode.UNKNOWN_SESSION, 'encryptMessage', 'the session was never answered and has expired: start a new one');
    const { state, message } = ratchetEncrypt(ctx, cur.ratchet, plaintext);
    rec.current = { ...cur, ratchet: state };
    const out: SessionMessage = cur.pending
      ? { type: MessageType.PreKey, body: concatBytes(memo(encodedHeaders, cur.pending, encodePqxdhHeader), message) }
      : { type: MessageType.Ratchet, body: message };
    await storeRecord(tx, address, rec, cache);
    if (options.persist) await options.persist(tx, out);
    return out;
  });
}

function withReceived(entry: SessionEntry, ratchet: RatchetState): SessionEntry {
  const { pending: _pending, ...rest } = entry;
  return hasReceivedMessage(ratchet) ? { ...rest, ratchet } : { ...entry, ratchet };
}

/**
 * Tries current then archived sessions; promotes an archived one that works (Sesame: the session
 * the peer most recently used successfully becomes current).
 */
function decryptWithRecord(ctx: CryptoContext, rec: SessionRecord, sender: DeviceCertificate, message: Uint8Array): Uint8Array {
  const op = 'decryptMessage';
  if (!rec.current && rec.archived.length === 0) throw new CryptoError(CryptoErrorCode.UNKNOWN_SESSION, op, 'no session with this device');
  for (let index = rec.current ? -1 : 0; index < rec.archived.length; index++) {
    const entry = index === -1 ? rec.current! : entryOf(rec.archived[index]!);
    if (!sameDevice(entry.peer, sender)) throw new CryptoError(CryptoErrorCode.SENDER_MISMATCH, op, 'sender does not own this session');
    let result;
    try {
      result = ratchetDecrypt(ctx, entry.ratchet, message);
    } catch (e) {
      // UNKNOWN_SESSION means "the header opens under none of this session's keys": try the next
      // one. Any other error (forged body, duplicate, lost key, too far ahead) is this session's
      // final word: the header proved the message belongs to it.
      if (e instanceof CryptoError && e.code === CryptoErrorCode.UNKNOWN_SESSION) continue;
      throw e;
    }
    const updated = withReceived(entry, result.state);
    if (index === -1) rec.current = updated;
    else {
      rec.archived.splice(index, 1);
      if (rec.current) archive(rec, rec.current);
      rec.current = updated;
    }
    return result.plaintext;
  }
  throw new CryptoError(CryptoErrorCode.UNKNOWN_SESSION, op, 'no session with this device decrypts the message');
}

/** Opens an ephemeral message in the current or an archived session (no promotion) and checks freshness. */
function decryptEphemeralWithRecord(ctx: CryptoContext, rec: SessionRecord, sender: DeviceCertificate, message: Uint8Array): { plaintext: Uint8Array; sentAt: number } {
  const op = 'decryptMessage';
  for (let index = rec.current ? -1 : 0; index < rec.archived.length; index++) {
    const entry = index === -1 ? rec.current! : entryOf(rec.archived[index]!);
    if (!sameDevice(entry.peer, sender)) throw new CryptoError(CryptoErrorCode.SENDER_MISMATCH, op, 'sender does not own this session');
    let opened;
    try {
      opened = ratchetDecryptEphemeral(ctx, entry.ratchet, message);
    } catch (e) {
      if (e instanceof CryptoError && e.code === CryptoErrorCode.UNKNOWN_SESSION) continue;
      throw e;
    }
    if (Math.abs(ctx.now() - opened.sentAt) > EPHEMERAL_MAX_SKEW_MS) {
      throw new CryptoError(CryptoErrorCode.STALE_EPHEMERAL, op, 'ephemeral message time is outside the allowed clock skew');
    }
    if (opened.sentAt <= entry.lastEphemeralAt) {
      throw new CryptoError(CryptoErrorCode.STALE_EPHEMERAL, op, 'ephemeral message is not newer than the last one accepted (replayed or reordered)');
    }
    const updated = { ...entry, lastEphemeralAt: opened.sentAt };
    if (index === -1) rec.current = updated;
    else rec.archived[index] = updated;
    return opened;
  }
  throw new CryptoError(CryptoErrorCode.UNKNOWN_SESSION, op, 'no session with this device opens the ephemeral message');
}

/** What a decrypted message was, for decryptMessage's callers. */
export type DecryptedMessage =
  | {
      readonly kind: 'message';
      readonly plaintext: Uint8Array;
      /**
       * Earlier messages of this peer device this one jumped over (their keys were kept as skipped
       * keys): they are late, or lost before they reached us. 0 for in-order delivery.
       */
      readonly skipped: number;
      /** Skipped keys of this peer device that expired or were evicted during this step: those messages can no longer be read. */
      readonly lost: number;
    }
  | { readonly kind: 'ephemeral'; readonly plaintext: Uint8Array; readonly sentAt: number }
  | { readonly kind: 'decryption-error'; readonly report: DecryptionErrorReport; readonly sessionReset: boolean };

/**
 * Decrypts a message from `sender` (the device certificate authenticated by the sealed envelope).
 * All-or-nothing: on any error, no store is changed. For PreKey and Ratchet messages this returns
 * the plaintext; use receiveMessage for every message type.
 */
export async function decryptMessage(
  ctx: CryptoContext,
  store: ProtocolStore,
  sender: DeviceCertificate,
  message: SessionMessage,
  options: { persist?: ((tx: ProtocolStores, plaintext: Uint8Array) => Promise<void>) | undefined } = {},
): Promise<Uint8Array> {
  if (message.type !== MessageType.PreKey && message.type !== MessageType.Ratchet) {
    throw new CryptoError(CryptoErrorCode.MALFORMED, 'decryptMessage', `message type ${String(message.type)} is not a PreKey or Ratchet message`);
  }
  const out = await receiveMessage(ctx, store, sender, message, options.persist ? { persist: options.persist } : {});
  return (out as { plaintext: Uint8Array }).plaintext;
}

/**
 * Receives any session-layer message from `sender`: PreKey and Ratchet messages decrypt (and may
 * create or promote a session), Ephemeral messages open without advancing anything (and are
 * checked for freshness: STALE_EPHEMERAL), a DecryptionError message is decoded and, if it names
 * our current session (or names none while ours is established), drops it so the next send
 * starts a fresh session (`sessionReset`). All-or-nothing; `persist` (PreKey/Ratchet/Ephemeral)
 * runs in the same transaction.
 */
export async function receiveMessage(
  ctx: CryptoContext,
  store: ProtocolStore,
  sender: DeviceCertificate,
  message: SessionMessage,
  options: { persist?: (tx: ProtocolStores, plaintext: Uint8Array, kind: 'message' | 'ephemeral') => Promise<void> } = {},
): Promise<DecryptedMessage> {
  const op = 'decryptMessage';
  // One-time prekeys this message consumed: their private halves are wiped once the removal has
  // committed (not before: a rolled-back transaction keeps them, and a store may hand out the
  // stored object itself).
  const consumed: { destroy(): void }[] = [];
  const cache = cacheOf(store);
  const result = await store.transaction(async (tx): Promise<DecryptedMessage> => {
    const address = deviceAddress(sender);
    const rec = await loadRecord(tx, address, cache);
    const before = keyCounts(rec);
    let out: DecryptedMessage;
    if (message.type === MessageType.Ratchet) {
      out = { kind: 'message', plaintext: decryptWithRecord(ctx, rec, sender, message.body), ...keyDelta(before, keyCounts(rec)) };
    } else if (message.type === MessageType.PreKey) {
      const r = new ByteReader(message.body, op);
      const header = readPqxdhHeader(r, op);
      const ratchetMessage = r.rest();
      if (!sameDevice(header.initiator, sender)) {
        throw new CryptoError(CryptoErrorCode.SENDER_MISMATCH, op, 'PQXDH initiator is not the sealed sender');
      }
      const existing = [...(rec.current ? [rec.current] : []), ...rec.archived].some((e) => equalBytes(baseKeyOf(e), header.baseKey));
      const plaintext = existing
        ? decryptWithRecord(ctx, rec, sender, ratchetMessage)
        : await acceptInitialMessage(ctx, tx, rec, header, ratchetMessage, consumed);
      out = { kind: 'message', plaintext, ...keyDelta(before, keyCounts(rec)) };
    } else if (message.type === MessageType.Ephemeral) {
      out = { kind: 'ephemeral', ...decryptEphemeralWithRecord(ctx, rec, sender, message.body) };
    } else if (message.type === MessageType.DecryptionError) {
      const report = decodeDecryptionError(message.body);
      const cur = rec.current;
      // A report naming a base key concerns that session only; one naming none (a Ratchet message
      // failed) never resets a pending session, whose messages all carry (and so name) its base key.
      const reset = cur !== undefined && (report.baseKey ? equalBytes(report.baseKey, cur.baseKey) : cur.pending === undefined);
      if (reset) {
        archive(rec, cur);
        delete rec.current;
      }
      out = { kind: 'decryption-error', report, sessionReset: reset };
    } else {
      throw new CryptoError(CryptoErrorCode.MALFORMED, op, `unknown message type ${String(message.type)}`);
    }
    await storeRecord(tx, address, rec, cache);
    if (options.persist && out.kind !== 'decryption-error') await options.persist(tx, out.plaintext, out.kind);
    return out;
  });
  for (const k of consumed) k.destroy();
  return result;
}

/**
 * Skipped and lost key counts of the record's current session (archived ones are left encoded; a
 * late message on an archived session is not counted).
 */
function keyCounts(rec: SessionRecord): { base: Uint8Array | undefined; skipped: number; lost: number } {
  const cur = rec.current;
  if (!cur) return { base: undefined, skipped: 0, lost: 0 };
  const s = ratchetStateSummary(cur.ratchet);
  return { base: cur.baseKey, skipped: s.skippedKeyCount, lost: s.lostKeyCount };
}

/**
 * What one decryption did to the skipped keys: a key leaves the skipped set either used (the late
 * message arrived) or lost (expired, evicted — and recorded as lost), so the keys created by this
 * step are Δskipped + Δlost (never negative: a step that used a key creates none). A session that
 * became current in this step counts from zero.
 */
function keyDelta(before: ReturnType<typeof keyCounts>, after: ReturnType<typeof keyCounts>): { skipped: number; lost: number } {
  const same = before.base !== undefined && after.base !== undefined && equalBytes(before.base, after.base);
  const b = same ? before : { skipped: 0, lost: 0 };
  const lost = Math.max(0, after.lost - b.lost);
  return { skipped: Math.max(0, after.skipped - b.skipped + lost), lost };
}

async function acceptInitialMessage(
  ctx: CryptoContext,
  tx: ProtocolStores,
  rec: SessionRecord,
  header: PqxdhInitialHeader,
  ratchetMessage: Uint8Array,
  consumed?: { destroy(): void }[],
): Promise<Uint8Array> {
  const op = 'decryptMessage';
  const self = await tx.getLocalIdentity();
  const digest = initialMessageDigest(ctx, header, self.certificate);
  if (await tx.hasSeenInitialMessage(digest)) {
    throw new CryptoError(CryptoErrorCode.REPLAYED_INITIAL_MESSAGE, op, 'this PQXDH initial message was already accepted');
  }
  const signedPreKey = await tx.loadSignedPreKey(header.signedPreKeyId);
  const kemPreKey = await tx.loadKemPreKey(header.kemPreKeyId);
  const oneTimePreKey = header.oneTimePreKeyId !== undefined ? await tx.loadPreKey(header.oneTimePreKeyId) : undefined;
  if (!signedPreKey) throw new CryptoError(CryptoErrorCode.UNKNOWN_PREKEY, op, 'signed prekey not found (rotated away?)');
  if (!kemPreKey) throw new CryptoError(CryptoErrorCode.UNKNOWN_PREKEY, op, 'KEM prekey not found (already used?)');
  if (header.oneTimePreKeyId !== undefined && !oneTimePreKey) {
    throw new CryptoError(CryptoErrorCode.UNKNOWN_PREKEY, op, 'one-time prekey not found (already used?)');
  }
  const agreed = pqxdhRespond(ctx, self, header, { signedPreKey, kemPreKey, ...(oneTimePreKey ? { oneTimePreKey } : {}) });
  let initial: RatchetState;
  try {
    initial = initRatchetAsResponder(ctx, {
      sharedSecret: agreed.sharedSecret,
      associatedData: agreed.associatedData,
      ownRatchetKeyPair: { secretKey: signedPreKey.secretKey, publicKey: signedPreKey.publicKey },
    });
  } finally {
    wipe(agreed.sharedSecret);
  }
  // Throws (and so stores nothing) unless the message really comes from the holder of IK_A.
  const { state, plaintext } = ratchetDecrypt(ctx, initial, ratchetMessage);

  if (oneTimePreKey) {
    await tx.removePreKey(oneTimePreKey.id);
    consumed?.push(oneTimePreKey);
  }
  if (!kemPreKey.lastResort) {
    await tx.removeKemPreKey(kemPreKey.id);
    consumed?.push(kemPreKey);
  }
  await tx.addSeenInitialMessage(digest, { signedPreKeyId: signedPreKey.id, kemPreKeyId: kemPreKey.id, seenAt: ctx.now() });

  const entry: SessionEntry = { initiator: false, peer: header.initiator, baseKey: header.baseKey, createdAt: ctx.now(), lastEphemeralAt: 0, ratchet: state };
  // Sesame: the peer is using this session, so it becomes current — also when ours is pending
  // (simultaneous initiation). Ours is archived and still decrypts whatever the peer sent on it.
  if (rec.current) archive(rec, rec.current);
  rec.current = entry;
  return plaintext;
}

// ── Sealed messages: the session layer wrapped in sealed sender (docs/protocol.md §7) ─────

/**
 * Encrypts `plaintext` for the peer device at `address` and seals it: the result is the whole
 * padded envelope the node stores. `persist` runs in the same transaction as the ratchet advance
 * and receives exactly the bytes to send (store them; resend them, never re-encrypt).
 */
export async function sealMessage(
  ctx: CryptoContext,
  store: ProtocolStore,
  address: DeviceAddress,
  plaintext: Uint8Array,
  options: { persist?: (tx: ProtocolStores, envelope: Uint8Array) => Promise<void> } = {},
): Promise<Uint8Array> {
  let envelope: Uint8Array | undefined;
  await encryptMessage(ctx, store, address, plaintext, {
    persist: async (tx, message) => {
      const [self, peer] = [await tx.getLocalIdentity(), await currentPeer(tx, address, cacheOf(store))];
      // Pad every message as if it carried a PQXDH header with a one-time prekey: first contact
      // (with or without a one-time prekey) is not visible in the envelope size.
      const withHeader = ratchetPartLength(message) + pqxdhHeaderLength(self.certificate);
      envelope = sealEnvelope(ctx, { sender: self, recipientDhKey: peer.deviceDhKey, contentType: message.type, content: message.body, padAsLength: withHeader });
      if (options.persist) await options.persist(tx, envelope);
    },
  });
  return envelope!;
}

/**
 * `store` seen from inside one of its open transactions `tx`: its `transaction(fn)` runs `fn(tx)`,
 * so several session operations (sealing one message for each device of an account) commit
 * together — one commit, one fsync — and roll back together. Only for use within the transaction
 * `tx` belongs to. Shares the store's decoded-record cache (entries are checked against the bytes
 * the store returns, so a rolled-back write is simply decoded afresh).
 */
export function withinTransaction(store: ProtocolStore, tx: ProtocolStores): ProtocolStore {
  const joined = new Proxy(tx as ProtocolStore, {
    get(target, prop) {
      if (prop === 'transaction') return <T>(fn: (t: ProtocolStores) => Promise<T>): Promise<T> => fn(tx);
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  recordCaches.set(joined, cacheOf(store));
  return joined;
}

/** The length of the ratchet message inside a session message (after any PQXDH header). */
function ratchetPartLength(message: SessionMessage): number {
  if (message.type !== MessageType.PreKey) return message.body.length;
  const r = new ByteReader(message.body, 'sealMessage');
  readPqxdhHeader(r, 'sealMessage');
  return r.remaining;
}

async function currentPeer(tx: ProtocolStores, address: DeviceAddress, cache: RecordCache): Promise<DeviceCertificate> {
  const peer = (await loadRecord(tx, address, cache)).current?.peer;
  if (!peer) throw new CryptoError(CryptoErrorCode.UNKNOWN_SESSION, 'sealMessage', 'no session with this device');
  return peer;
}

/**
 * Opens a sealed envelope addressed to this device and decrypts its content with the session that
 * belongs to the authenticated sender. Throws CryptoError; on error no store changes.
 */
export async function openSealedMessage(
  ctx: CryptoContext,
  store: ProtocolStore,
  envelope: Uint8Array,
  options: { persist?: (tx: ProtocolStores, plaintext: Uint8Array, sender: DeviceCertificate) => Promise<void> } = {},
): Promise<{ sender: DeviceCertificate; plaintext: Uint8Array }> {
  const self = await store.getLocalIdentity();
  const opened = openEnvelope(ctx, self.device, envelope);
  if (opened.contentType !== MessageType.PreKey && opened.contentType !== MessageType.Ratchet) {
    throw new CryptoError(CryptoErrorCode.MALFORMED, 'openSealedMessage', `unknown content type ${opened.contentType}`);
  }
  const plaintext = await decryptMessage(ctx, store, opened.sender, { type: opened.contentType, body: opened.content }, {
    persist: options.persist ? (tx, pt) => options.persist!(tx, pt, opened.sender) : undefined,
  });
  return { sender: opened.sender, plaintext };
}

// ── Ephemeral messages (docs/protocol.md §6.5) ───────────────────────────────────────────

/**
 * Encrypts an ephemeral signal (typing, presence) for the current session with `address`. Nothing
 * is advanced or written: a lost ephemeral message costs the session nothing (it is not a durable
 * message, so there is nothing to resend either). UNKNOWN_SESSION without a usable session.
 */
export async function encryptEphemeral(ctx: CryptoContext, store: ProtocolStore, address: DeviceAddress, plaintext: Uint8Array): Promise<SessionMessage> {
  const rec = await loadRecord(store, address, cacheOf(store));
  const cur = rec.current;
  if (!cur || isExpiredPending(ctx, cur)) throw new CryptoError(CryptoErrorCode.UNKNOWN_SESSION, 'encryptEphemeral', 'no session with this device');
  return { type: MessageType.Ephemeral, body: ratchetEncryptEphemeral(ctx, cur.ratchet, plaintext) };
}

/** encryptEphemeral, sealed for the peer: the padded envelope to send (ephemeral class). */
export async function sealEphemeral(ctx: CryptoContext, store: ProtocolStore, address: DeviceAddress, plaintext: Uint8Array): Promise<Uint8Array> {
  const message = await encryptEphemeral(ctx, store, address, plaintext);
  const [self, peer] = [await store.getLocalIdentity(), (await loadRecord(store, address, cacheOf(store))).current!.peer];
  return sealEnvelope(ctx, { sender: self, recipientDhKey: peer.deviceDhKey, contentType: message.type, content: message.body });
}

// ── Decryption-error messages (docs/protocol.md §6.6) ──────────────────────────────────────

/** Version byte of a decryption-error report. */
const DECRYPTION_ERROR_VERSION = 1;
/** Failure codes a report may carry (u8 on the wire; 0 = any other). */
const REPORTED: readonly CryptoErrorCode[] = [
  CryptoErrorCode.UNKNOWN_SESSION,
  CryptoErrorCode.TOO_FAR_AHEAD,
  CryptoErrorCode.UNKNOWN_PREKEY,
  CryptoErrorCode.BAD_MAC,
  CryptoErrorCode.SKIPPED_KEY_EVICTED,
  CryptoErrorCode.SKIPPED_KEY_EXPIRED,
  // A PreKey message of a session this device no longer holds (lost, or evicted from the archive)
  // whose initial message it already accepted once: without a report the peer would repeat it
  // until its pending session expires. A replay by the node costs the peer at most one restart of
  // that same pending session.
  CryptoErrorCode.REPLAYED_INITIAL_MESSAGE,
];

/** What a peer says it could not decrypt. */
export interface DecryptionErrorReport {
  /** The failure, one of the reportable codes (isReportableFailure). */
  readonly reason: CryptoErrorCode;
  /** The reporter's ctx.now() when the message failed. */
  readonly failedAt: number;
  /** EK_A of the session named by the failed message, if it was a PreKey message. */
  readonly baseKey?: Uint8Array;
}

/**
 * True for a decryption failure that means "this message is lost unless the sender re-sends it
 * in a new session": no session decrypts it, it is too far ahead, its prekey is gone, its body does
 * not verify under the session its header names, its skipped key was evicted or expired, or it is
 * a PreKey message of a session this device no longer holds. Duplicates and malformed input are not
 * reported.
 */
export function isReportableFailure(code: string): boolean {
  return (REPORTED as readonly string[]).includes(code);
}

export function encodeDecryptionError(report: DecryptionErrorReport): Uint8Array {
  const reason = REPORTED.indexOf(report.reason) + 1;
  if (reason === 0) throw new RangeError(`encodeDecryptionError: ${report.reason} is not a reportable failure`);
  const w = new ByteWriter().u8(DECRYPTION_ERROR_VERSION).u8(reason).u64(report.failedAt);
  if (report.baseKey) w.u8(1).bytes(report.baseKey);
  else w.u8(0);
  return w.finish();
}

/** Inverse of encodeDecryptionError; MALFORMED or UNSUPPORTED_VERSION only. */
export function decodeDecryptionError(bytes: Uint8Array): DecryptionErrorReport {
  const op = 'decodeDecryptionError';
  const r = new ByteReader(bytes, op);
  const v = r.u8('version');
  if (v !== DECRYPTION_ERROR_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `decryption-error version ${v}`);
  const reason = REPORTED[r.u8('reason') - 1];
  if (reason === undefined) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'unknown decryption-error reason');
  const failedAt = r.u64('failedAt');
  const has = r.u8('base key flag');
  if (has > 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'base key flag must be 0 or 1');
  const baseKey = has ? r.bytes(32, 'base key') : undefined;
  r.finish();
  return { reason, failedAt, ...(baseKey ? { baseKey } : {}) };
}

/**
 * Seals a decryption-error report for `peer` — at most one per peer device per
 * DECRYPTION_ERROR_MIN_INTERVAL_MS (undefined when rate-limited; the time is recorded in the
 * peer's session record). It travels sealed like any message (padded, content type hidden), so
 * the node cannot tell it from one. It needs no session: sealed sender alone authenticates and
 * encrypts it, and it carries nothing secret.
 */
export async function sealDecryptionError(
  ctx: CryptoContext,
  store: ProtocolStore,
  peer: DeviceCertificate,
  failure: { reason: CryptoErrorCode; baseKey?: Uint8Array },
): Promise<Uint8Array | undefined> {
  if (!isReportableFailure(failure.reason)) return undefined;
  return store.transaction(async (tx) => {
    const address = deviceAddress(peer);
    const cache = cacheOf(store);
    const rec = await loadRecord(tx, address, cache);
    const now = ctx.now();
    // One report per interval — except one naming another session of the peer than the last
    // report did (each new session costs the peer a PQXDH, so this cannot be used to flood): a
    // report about a session the peer had already left must not silence one about its current.
    const named = failure.baseKey ?? new Uint8Array(32);
    const sameSession = equalBytes(named, rec.lastErrorBaseKey);
    if (rec.lastErrorSentAt !== 0 && now - rec.lastErrorSentAt < DECRYPTION_ERROR_MIN_INTERVAL_MS && sameSession) return undefined;
    rec.lastErrorSentAt = Math.max(1, now);
    rec.lastErrorBaseKey = Uint8Array.from(named);
    await storeRecord(tx, address, rec, cache);
    const self = await tx.getLocalIdentity();
    const content = encodeDecryptionError({ reason: failure.reason, failedAt: now, ...(failure.baseKey ? { baseKey: failure.baseKey } : {}) });
    return sealEnvelope(ctx, { sender: self, recipientDhKey: peer.deviceDhKey, contentType: MessageType.DecryptionError, content });
  });
}

/** What receiveSealed found in an envelope: a DecryptedMessage, or a failure with the report to send back. */
export type ReceivedEnvelope = { readonly sender: DeviceCertificate } & (
  | DecryptedMessage
  /** A sender-key group message (MessageType.Group): not opened here, no store touched. */
  | { readonly kind: 'group'; readonly message: Uint8Array }
  | {
      readonly kind: 'failed';
      /** Why the message could not be decrypted (nothing was stored). */
      readonly error: CryptoError;
      /** A sealed decryption-error message to send to the sender (its mailbox), unless rate-limited or not reportable. */
      readonly report?: Uint8Array;
      /** The failed message was an Ephemeral one (a signal: nothing to re-send, nothing lost). */
      readonly ephemeral: boolean;
    }
);

/**
 * Opens a sealed envelope and receives its content (receiveMessage). Failures after the envelope
 * opened are returned, not thrown, because the sender is known: for a reportable failure of a
 * PreKey or Ratchet message the result carries a sealed decryption-error report to send back.
 * Throws CryptoError only when the envelope itself does not open (then nobody can be told).
 */
export async function receiveSealed(
  ctx: CryptoContext,
  store: ProtocolStore,
  envelope: Uint8Array,
  options: { persist?: (tx: ProtocolStores, plaintext: Uint8Array, sender: DeviceCertificate, kind: 'message' | 'ephemeral') => Promise<void> } = {},
): Promise<ReceivedEnvelope> {
  const self = await store.getLocalIdentity();
  const opened = openEnvelope(ctx, self.device, envelope);
  const sender = opened.sender;
  const message = { type: opened.contentType as MessageType, body: opened.content };
  if (message.type === MessageType.Group) return { sender, kind: 'group', message: message.body };
  try {
    const out = await receiveMessage(ctx, store, sender, message, options.persist ? { persist: (tx, pt, kind) => options.persist!(tx, pt, sender, kind) } : {});
    return { sender, ...out };
  } catch (e) {
    if (!(e instanceof CryptoError)) throw e;
    let report: Uint8Array | undefined;
    if ((message.type === MessageType.PreKey || message.type === MessageType.Ratchet) && isReportableFailure(e.code)) {
      let baseKey: Uint8Array | undefined;
      if (message.type === MessageType.PreKey) {
        try {
          baseKey = decodePqxdhHeaderPrefix(message.body).baseKey;
        } catch {
          baseKey = undefined;
        }
      }
      report = await sealDecryptionError(ctx, store, sender, { reason: e.code, ...(baseKey ? { baseKey } : {}) });
    }
    return { sender, kind: 'failed', error: e, ephemeral: message.type === MessageType.Ephemeral, ...(report ? { report } : {}) };
  }
}

function decodePqxdhHeaderPrefix(body: Uint8Array): PqxdhInitialHeader {
  return readPqxdhHeader(new ByteReader(body, 'receiveSealed'), 'receiveSealed');
}

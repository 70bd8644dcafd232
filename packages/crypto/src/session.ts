/**
 * Session management (docs/protocol.md §6): picks, creates, archives and promotes sessions per peer
 * device and talks to the stores. It knows PQXDH and the ratchet only through their APIs; neither of
 * them knows about stores, identities or session selection (libsignal's layering).
 *
 * Rules:
 *  - Encryption uses the current session. Until the first message from the peer decrypts in it, an
 *    initiator wraps every ratchet message with the PQXDH header (key confirmation).
 *  - Decryption tries the current session, then up to MAX_ARCHIVED_SESSIONS archived ones, newest
 *    first; an archived session that decrypts is promoted to current (unless it lost a simultaneous-
 *    initiation tie-break, see below).
 *  - A PQXDH initial message whose base key matches an existing session is just a repeat of that
 *    session's header and goes to that session. Otherwise it must not have been seen before (replay
 *    cache), its one-time prekeys must still exist, and its first ratchet message must decrypt before
 *    anything is stored: a replayed or forged initial message never replaces a live session.
 *  - Simultaneous initiation: when both sides initiate before either has heard from the other, both
 *    keep the session whose PQXDH base key is lexicographically smaller as current; the other is kept
 *    for decryption only. Both sides compute the same answer, so they converge on one session.
 *  - Every operation runs in one store transaction: the one-time prekey is consumed, the replay cache
 *    updated and the session saved together (and the caller's `persist` hook writes the outbound
 *    ciphertext or inbound plaintext in the same transaction).
 */
import { concatBytes, equalBytes } from './bytes.js';
import { MAX_ARCHIVED_SESSIONS, STORAGE_VERSION } from './constants.js';
import type { CryptoContext } from './context.js';
import { ByteReader, ByteWriter } from './encoding.js';
import { CryptoError, CryptoErrorCode } from './errors.js';
import type { DeviceCertificate } from './keys.js';
import { decodeDeviceCertificate, encodeDeviceCertificate, sameDevice } from './keys.js';
import type { PqxdhInitialHeader } from './pqxdh.js';
import { decodePqxdhHeader, encodePqxdhHeader, initialMessageDigest, pqxdhInitiate, pqxdhRespond, readPqxdhHeader } from './pqxdh.js';
import type { PreKeyBundle } from './prekeys.js';
import { openEnvelope, sealEnvelope } from './sealed-sender.js';
import type { RatchetState } from './ratchet.js';
import {
  deserializeRatchetState,
  hasReceivedMessage,
  initRatchetAsInitiator,
  initRatchetAsResponder,
  ratchetDecrypt,
  ratchetEncrypt,
  serializeRatchetState,
} from './ratchet.js';
import type { DeviceAddress, ProtocolStore, ProtocolStores } from './stores.js';
import { deviceAddress } from './stores.js';

/** Session-layer message types; they travel as the sealed envelope's content type. */
export const MessageType = { PreKey: 1, Ratchet: 2 } as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export interface SessionMessage {
  readonly type: MessageType;
  readonly body: Uint8Array;
}

interface SessionEntry {
  readonly initiator: boolean;
  /** Lost a simultaneous-initiation tie-break: decrypts, never becomes current again. */
  readonly decryptOnly: boolean;
  readonly peer: DeviceCertificate;
  /** EK_A of the PQXDH run that created the session (identifies it; used for the tie-break). */
  readonly baseKey: Uint8Array;
  readonly createdAt: number;
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
}

// ── Storage format (versioned, separate from any wire format) ───────────────────────────────

function encodeEntry(e: SessionEntry): Uint8Array {
  const w = new ByteWriter();
  w.u8((e.initiator ? 1 : 0) | (e.decryptOnly ? 2 : 0))
    .vec16(encodeDeviceCertificate(e.peer))
    .bytes(e.baseKey)
    .u64(e.createdAt);
  if (e.pending) w.u8(1).vec16(encodePqxdhHeader(e.pending));
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
  if (flags > 3) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'unknown session flags');
  const peer = decodeDeviceCertificate(r.vec16('peer certificate'));
  const baseKey = r.bytes(32, 'base key');
  const createdAt = r.u64('createdAt');
  const hasPending = r.u8('pending flag');
  if (hasPending > 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'pending flag must be 0 or 1');
  const pending = hasPending ? decodePqxdhHeader(r.vec16('pending header')) : undefined;
  const ratchet = deserializeRatchetState(r.vec32('ratchet state', MAX_ENTRY_LENGTH));
  return { initiator: (flags & 1) === 1, decryptOnly: (flags & 2) === 2, peer, baseKey, createdAt, ...(pending ? { pending } : {}), ratchet };
}

export function serializeSessionRecord(rec: SessionRecord): Uint8Array {
  const w = new ByteWriter().u8(STORAGE_VERSION);
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
  const has = r.u8('current flag');
  if (has > 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'current flag must be 0 or 1');
  const current = has ? decodeEntry(r.vec32('current session', MAX_ENTRY_LENGTH)) : undefined;
  const n = r.u16('archived count');
  if (n > MAX_ARCHIVED_SESSIONS) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'too many archived sessions');
  const archived: ArchivedEntry[] = [];
  for (let i = 0; i < n; i++) archived.push(r.vec32('archived session', MAX_ENTRY_LENGTH));
  r.finish();
  return current ? { current, archived } : { archived };
}

async function loadRecord(tx: ProtocolStores, address: DeviceAddress): Promise<SessionRecord> {
  const bytes = await tx.loadSession(address);
  return bytes ? deserializeSessionRecord(bytes) : { archived: [] };
}

function archive(rec: SessionRecord, entry: ArchivedEntry): void {
  rec.archived.unshift(entry);
  if (rec.archived.length > MAX_ARCHIVED_SESSIONS) rec.archived.length = MAX_ARCHIVED_SESSIONS;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
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
    const ratchet = initRatchetAsInitiator(ctx, {
      sharedSecret: agreed.sharedSecret,
      associatedData: agreed.associatedData,
      remoteRatchetKey: agreed.remoteRatchetKey,
    });
    const address = deviceAddress(bundle.certificate);
    const rec = await loadRecord(tx, address);
    if (rec.current) archive(rec, rec.current);
    rec.current = {
      initiator: true,
      decryptOnly: false,
      peer: bundle.certificate,
      baseKey: agreed.header.baseKey,
      createdAt: ctx.now(),
      pending: agreed.header,
      ratchet,
    };
    await tx.storeSession(address, serializeSessionRecord(rec));
    return address;
  });
}

export async function hasSession(store: ProtocolStore, address: DeviceAddress): Promise<boolean> {
  const bytes = await store.loadSession(address);
  return bytes !== undefined && deserializeSessionRecord(bytes).current !== undefined;
}

/** The peer certificate of the current session with `address`, if any. */
export async function sessionPeer(store: ProtocolStore, address: DeviceAddress): Promise<DeviceCertificate | undefined> {
  const bytes = await store.loadSession(address);
  return bytes ? deserializeSessionRecord(bytes).current?.peer : undefined;
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
  return store.transaction(async (tx) => {
    const rec = await loadRecord(tx, address);
    const cur = rec.current;
    if (!cur) throw new CryptoError(CryptoErrorCode.UNKNOWN_SESSION, 'encryptMessage', 'no session with this device');
    const { state, message } = ratchetEncrypt(ctx, cur.ratchet, plaintext);
    rec.current = { ...cur, ratchet: state };
    const out: SessionMessage = cur.pending
      ? { type: MessageType.PreKey, body: concatBytes(encodePqxdhHeader(cur.pending), message) }
      : { type: MessageType.Ratchet, body: message };
    await tx.storeSession(address, serializeSessionRecord(rec));
    if (options.persist) await options.persist(tx, out);
    return out;
  });
}

function withReceived(entry: SessionEntry, ratchet: RatchetState): SessionEntry {
  const { pending: _pending, ...rest } = entry;
  return hasReceivedMessage(ratchet) ? { ...rest, ratchet } : { ...entry, ratchet };
}

/** Tries current then archived sessions; promotes an archived one that works. */
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
      // BAD_MAC means "the header decrypts under none of this session's keys": try the next one.
      // Any other error (duplicate, too far ahead, malformed) is this session's final word.
      if (e instanceof CryptoError && e.code === CryptoErrorCode.BAD_MAC) continue;
      throw e;
    }
    const updated = withReceived(entry, result.state);
    if (index === -1) rec.current = updated;
    else if (entry.decryptOnly) rec.archived[index] = updated;
    else {
      rec.archived.splice(index, 1);
      if (rec.current) archive(rec, rec.current);
      rec.current = updated;
    }
    return result.plaintext;
  }
  throw new CryptoError(CryptoErrorCode.UNKNOWN_SESSION, op, 'no session with this device decrypts the message');
}

/**
 * Decrypts a message from `sender` (the device certificate authenticated by the sealed envelope).
 * All-or-nothing: on any error, no store is changed.
 */
export async function decryptMessage(
  ctx: CryptoContext,
  store: ProtocolStore,
  sender: DeviceCertificate,
  message: SessionMessage,
  options: { persist?: ((tx: ProtocolStores, plaintext: Uint8Array) => Promise<void>) | undefined } = {},
): Promise<Uint8Array> {
  const op = 'decryptMessage';
  return store.transaction(async (tx) => {
    const address = deviceAddress(sender);
    const rec = await loadRecord(tx, address);
    let plaintext: Uint8Array;
    if (message.type === MessageType.Ratchet) {
      plaintext = decryptWithRecord(ctx, rec, sender, message.body);
    } else if (message.type === MessageType.PreKey) {
      const r = new ByteReader(message.body, op);
      const header = readPqxdhHeader(r, op);
      const ratchetMessage = r.rest();
      if (!sameDevice(header.initiator, sender)) {
        throw new CryptoError(CryptoErrorCode.SENDER_MISMATCH, op, 'PQXDH initiator is not the sealed sender');
      }
      const existing = [...(rec.current ? [rec.current] : []), ...rec.archived].some((e) => equalBytes(baseKeyOf(e), header.baseKey));
      plaintext = existing
        ? decryptWithRecord(ctx, rec, sender, ratchetMessage)
        : await acceptInitialMessage(ctx, tx, rec, header, ratchetMessage);
    } else {
      throw new CryptoError(CryptoErrorCode.MALFORMED, op, `unknown message type ${String(message.type)}`);
    }
    await tx.storeSession(address, serializeSessionRecord(rec));
    if (options.persist) await options.persist(tx, plaintext);
    return plaintext;
  });
}

async function acceptInitialMessage(
  ctx: CryptoContext,
  tx: ProtocolStores,
  rec: SessionRecord,
  header: PqxdhInitialHeader,
  ratchetMessage: Uint8Array,
): Promise<Uint8Array> {
  const op = 'decryptMessage';
  const digest = initialMessageDigest(ctx, header);
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
  const self = await tx.getLocalIdentity();
  const agreed = pqxdhRespond(ctx, self, header, { signedPreKey, kemPreKey, ...(oneTimePreKey ? { oneTimePreKey } : {}) });
  const initial = initRatchetAsResponder(ctx, {
    sharedSecret: agreed.sharedSecret,
    associatedData: agreed.associatedData,
    ownRatchetKeyPair: { secretKey: signedPreKey.secretKey, publicKey: signedPreKey.publicKey },
  });
  // Throws (and so stores nothing) unless the message really comes from the holder of IK_A.
  const { state, plaintext } = ratchetDecrypt(ctx, initial, ratchetMessage);

  if (oneTimePreKey) await tx.removePreKey(oneTimePreKey.id);
  if (!kemPreKey.lastResort) await tx.removeKemPreKey(kemPreKey.id);
  await tx.addSeenInitialMessage(digest, { signedPreKeyId: signedPreKey.id, kemPreKeyId: kemPreKey.id, seenAt: ctx.now() });

  const entry: SessionEntry = { initiator: false, decryptOnly: false, peer: header.initiator, baseKey: header.baseKey, createdAt: ctx.now(), ratchet: state };
  const cur = rec.current;
  if (cur && cur.initiator && cur.pending && compareBytes(cur.baseKey, header.baseKey) < 0) {
    // Simultaneous initiation and our own session wins the tie-break: keep it current.
    archive(rec, { ...entry, decryptOnly: true });
  } else {
    if (cur) archive(rec, cur);
    rec.current = entry;
  }
  return plaintext;
}

// ── Sealed messages: the session layer wrapped in sealed sender (docs/protocol.md §6.5) ─────

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
      const [self, peer] = [await tx.getLocalIdentity(), await currentPeer(tx, address)];
      envelope = sealEnvelope(ctx, { sender: self, recipientDhKey: peer.deviceDhKey, contentType: message.type, content: message.body });
      if (options.persist) await options.persist(tx, envelope);
    },
  });
  return envelope!;
}

async function currentPeer(tx: ProtocolStores, address: DeviceAddress): Promise<DeviceCertificate> {
  const peer = (await loadRecord(tx, address)).current?.peer;
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

/**
 * PQXDH key agreement (docs/protocol.md §4), following the structure of Signal's PQXDH
 * specification, revision 3: DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, SPK_B),
 * DH4 = DH(EK_A, OPK_B) when a one-time prekey is used, and (CT, SS) = ML-KEM-768.Encaps(PQPK_B).
 *
 *   SK = HKDF-SHA-256(ikm = 0xFF×32 ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4] ‖ SS, salt = 0×32,
 *                     info = PQXDH_INFO ‖ TH, L = 32)
 *
 * where TH is a hash of the whole public transcript (both identities and a hash of each party's
 * whole certificate — so capability bits and expiry cannot be swapped under a live session —,
 * every prekey used with its id, EK_A and CT). The replay cache (initialMessageDigest) is keyed on
 * the transcript values the header carries, naming the initiator by its keys, not its certificate. Binding the KEM public key and ciphertext into the KDF goes past the spec: it
 * makes the agreement robust even to a KEM without the MAL-BIND properties (the re-encapsulation
 * concern raised in the formal analyses of PQXDH), at the cost of one SHA-256.
 *
 * There is no path without a KEM prekey: a bundle that lacks one cannot be represented, and every
 * prekey in it is signature-checked (verifyPreKeyBundle) before any secret is computed.
 * This layer is pure: choosing, consuming and deleting prekeys is the session layer's job.
 */
import { concatBytes, utf8, wipe } from './bytes.js';
import { CERTIFICATE_EXPIRY_GRACE_MS, ML_KEM_768_CIPHERTEXT_LENGTH, WIRE_VERSION } from './constants.js';
import type { CryptoContext } from './context.js';
import { ByteReader, ByteWriter } from './encoding.js';
import { CryptoError, CryptoErrorCode } from './errors.js';
import type { DeviceCertificate, DeviceKeyPair } from './keys.js';
import { DEVICE_CERTIFICATE_LENGTH, KeyType, certificateHash, encodePublicKey, readDeviceCertificate, readPublicKey, verifyDeviceCertificate, writeDeviceCertificate } from './keys.js';
import type { KemPreKeyPair, PreKeyBundle, X25519PreKeyPair } from './prekeys.js';
import { verifyPreKeyBundle } from './prekeys.js';

/** HKDF info prefix: names the protocol, curve, hash and KEM (PQXDH spec §2.1 "info"). */
export const PQXDH_INFO = 'MeshWhisper_PQXDH_CURVE25519_SHA-256_ML-KEM-768_v2';
const TRANSCRIPT_LABEL = 'MeshWhisper_PQXDH_Transcript_v2';
const SEEN_LABEL = 'MeshWhisper_PQXDH_Seen_v2';

/** What the initiator sends in front of its ratchet messages until the responder replies. */
export interface PqxdhInitialHeader {
  /** The initiator's device certificate (carries IK_A and the account key). */
  readonly initiator: DeviceCertificate;
  /** EK_A, the initiator's ephemeral X25519 public key. */
  readonly baseKey: Uint8Array;
  readonly signedPreKeyId: number;
  readonly oneTimePreKeyId?: number;
  readonly kemPreKeyId: number;
  readonly kemCiphertext: Uint8Array;
}

export interface PqxdhResult {
  /** SK: 32 bytes. The caller owns it: hand it to the Double Ratchet, then wipe it. */
  readonly sharedSecret: Uint8Array;
  /** AD = Identity(A) ‖ Identity(B), bound into every ratchet AEAD. */
  readonly associatedData: Uint8Array;
  /** TH (public): the transcript hash bound into SK. */
  readonly transcriptHash: Uint8Array;
}

export interface PqxdhInitiatorResult extends PqxdhResult {
  readonly header: PqxdhInitialHeader;
  /** SPK_B: the responder's first ratchet public key. */
  readonly remoteRatchetKey: Uint8Array;
}

/** Optional observer of intermediate values, used to publish test vectors. Never set in production. */
export type Trace = (name: string, value: Uint8Array) => void;

/** Identity(X) = Encode(account key) ‖ Encode(device signing key) ‖ Encode(device DH key) (99 bytes). */
export function identityEncoding(c: DeviceCertificate): Uint8Array {
  return concatBytes(
    encodePublicKey(KeyType.Ed25519, c.accountKey),
    encodePublicKey(KeyType.Ed25519, c.deviceSigningKey),
    encodePublicKey(KeyType.X25519, c.deviceDhKey),
  );
}

function transcriptHash(
  ctx: CryptoContext,
  ad: Uint8Array,
  certificates: { initiator: DeviceCertificate; responder: DeviceCertificate },
  h: Omit<PqxdhInitialHeader, 'initiator'>,
  spk: Uint8Array,
  opk: Uint8Array | undefined,
  pqpk: Uint8Array,
): Uint8Array {
  const w = new ByteWriter()
    .bytes(utf8(TRANSCRIPT_LABEL))
    .bytes(ad)
    .bytes(certificateHash(ctx, certificates.initiator))
    .bytes(certificateHash(ctx, certificates.responder))
    .u32(h.signedPreKeyId)
    .bytes(encodePublicKey(KeyType.X25519, spk));
  if (opk !== undefined && h.oneTimePreKeyId !== undefined) w.u8(1).u32(h.oneTimePreKeyId).bytes(encodePublicKey(KeyType.X25519, opk));
  else w.u8(0);
  w.u32(h.kemPreKeyId)
    .bytes(encodePublicKey(KeyType.MlKem768, pqpk))
    .bytes(encodePublicKey(KeyType.X25519, h.baseKey))
    .bytes(h.kemCiphertext);
  return ctx.backend.sha256(w.finish());
}

function deriveSecret(ctx: CryptoContext, dhs: Uint8Array[], ss: Uint8Array, th: Uint8Array, trace?: Trace): Uint8Array {
  const ikm = concatBytes(new Uint8Array(32).fill(0xff), ...dhs, ss);
  const sk = ctx.backend.hkdfSha256(ikm, new Uint8Array(32), concatBytes(utf8(PQXDH_INFO), th), 32);
  trace?.('ikm', ikm);
  trace?.('sharedSecret', sk);
  wipe(ikm, ...dhs, ss);
  return sk;
}

/**
 * Alice's side (spec §3.3): verifies the bundle, then computes SK. `self` is the initiator's own
 * certificate and device keys.
 */
export function pqxdhInitiate(
  ctx: CryptoContext,
  self: { certificate: DeviceCertificate; device: DeviceKeyPair },
  bundle: PreKeyBundle,
  options: { expectedAccountKey?: Uint8Array; trace?: Trace } = {},
): PqxdhInitiatorResult {
  const { trace } = options;
  verifyPreKeyBundle(ctx, bundle, options.expectedAccountKey);
  const ekSecret = ctx.random(32);
  const baseKey = ctx.backend.x25519PublicKey(ekSecret);
  const ikB = bundle.certificate.deviceDhKey;
  const spk = bundle.signedPreKey.publicKey;
  const dh1 = self.device.dh(ctx, spk);
  const dh2 = ctx.backend.x25519(ekSecret, ikB);
  const dh3 = ctx.backend.x25519(ekSecret, spk);
  const dhs = [dh1, dh2, dh3];
  if (bundle.oneTimePreKey) dhs.push(ctx.backend.x25519(ekSecret, bundle.oneTimePreKey.publicKey));
  const m = ctx.random(32);
  const { ciphertext, sharedSecret: ss } = ctx.backend.mlKem768Encapsulate(bundle.kemPreKey.publicKey, m);
  wipe(ekSecret, m);
  if (trace) {
    trace('baseKey', baseKey);
    dhs.forEach((d, i) => trace(`dh${i + 1}`, d));
    trace('kemCiphertext', ciphertext);
    trace('kemSharedSecret', ss);
  }
  const ad = concatBytes(identityEncoding(self.certificate), identityEncoding(bundle.certificate));
  const header: PqxdhInitialHeader = {
    initiator: self.certificate,
    baseKey,
    signedPreKeyId: bundle.signedPreKey.id,
    ...(bundle.oneTimePreKey ? { oneTimePreKeyId: bundle.oneTimePreKey.id } : {}),
    kemPreKeyId: bundle.kemPreKey.id,
    kemCiphertext: ciphertext,
  };
  const th = transcriptHash(ctx, ad, { initiator: self.certificate, responder: bundle.certificate }, header, spk, bundle.oneTimePreKey?.publicKey, bundle.kemPreKey.publicKey);
  trace?.('associatedData', ad);
  trace?.('transcriptHash', th);
  return { sharedSecret: deriveSecret(ctx, dhs, ss, th, trace), associatedData: ad, transcriptHash: th, header, remoteRatchetKey: spk };
}

/**
 * Bob's side (spec §3.4). The caller (session layer) looked up the prekeys the header names and is
 * responsible for deleting the one-time ones after the first message decrypts.
 */
export function pqxdhRespond(
  ctx: CryptoContext,
  self: { certificate: DeviceCertificate; device: DeviceKeyPair },
  header: PqxdhInitialHeader,
  keys: { signedPreKey: X25519PreKeyPair; oneTimePreKey?: X25519PreKeyPair; kemPreKey: KemPreKeyPair },
  options: { trace?: Trace } = {},
): PqxdhResult {
  const op = 'pqxdhRespond';
  const { trace } = options;
  // The initial message may have waited in the queue after the initiator sealed it.
  verifyDeviceCertificate(ctx, header.initiator, { graceMs: CERTIFICATE_EXPIRY_GRACE_MS });
  if (keys.signedPreKey.id !== header.signedPreKeyId || keys.kemPreKey.id !== header.kemPreKeyId) {
    throw new CryptoError(CryptoErrorCode.UNKNOWN_PREKEY, op, 'prekeys do not match the ones the header names');
  }
  if ((header.oneTimePreKeyId === undefined) !== (keys.oneTimePreKey === undefined) || (keys.oneTimePreKey && keys.oneTimePreKey.id !== header.oneTimePreKeyId)) {
    throw new CryptoError(CryptoErrorCode.UNKNOWN_PREKEY, op, 'one-time prekey does not match the header');
  }
  const ikA = header.initiator.deviceDhKey;
  const dh1 = ctx.backend.x25519(keys.signedPreKey.secretKey, ikA);
  const dh2 = self.device.dh(ctx, header.baseKey);
  const dh3 = ctx.backend.x25519(keys.signedPreKey.secretKey, header.baseKey);
  const dhs = [dh1, dh2, dh3];
  if (keys.oneTimePreKey) dhs.push(ctx.backend.x25519(keys.oneTimePreKey.secretKey, header.baseKey));
  const ss = ctx.backend.mlKem768Decapsulate(header.kemCiphertext, keys.kemPreKey.secretKey);
  const ad = concatBytes(identityEncoding(header.initiator), identityEncoding(self.certificate));
  const th = transcriptHash(
    ctx,
    ad,
    { initiator: header.initiator, responder: self.certificate },
    header,
    keys.signedPreKey.publicKey,
    keys.oneTimePreKey?.publicKey,
    keys.kemPreKey.publicKey,
  );
  trace?.('associatedData', ad);
  trace?.('transcriptHash', th);
  return { sharedSecret: deriveSecret(ctx, dhs, ss, th, trace), associatedData: ad, transcriptHash: th };
}

// ── Encoding ────────────────────────────────────────────────────────────────────────────────

/** version ‖ vec16(certificate) ‖ Encode(EK_A) ‖ u32 spkId ‖ u8 hasOpk [‖ u32 opkId] ‖ u32 kemId ‖ CT. */
export function encodePqxdhHeader(h: PqxdhInitialHeader): Uint8Array {
  const w = writeDeviceCertificate(new ByteWriter().u8(WIRE_VERSION), h.initiator)
    .bytes(encodePublicKey(KeyType.X25519, h.baseKey))
    .u32(h.signedPreKeyId);
  if (h.oneTimePreKeyId !== undefined) w.u8(1).u32(h.oneTimePreKeyId);
  else w.u8(0);
  return w.u32(h.kemPreKeyId).bytes(h.kemCiphertext).finish();
}

export function readPqxdhHeader(r: ByteReader, op: string): PqxdhInitialHeader {
  const v = r.u8('version');
  if (v !== WIRE_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `PQXDH header version ${v}`);
  const initiator = readDeviceCertificate(r, op);
  const baseKey = readPublicKey(r, KeyType.X25519, op);
  const signedPreKeyId = r.u32('signed prekey id');
  const has = r.u8('one-time prekey flag');
  if (has > 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'one-time prekey flag must be 0 or 1');
  const oneTimePreKeyId = has === 1 ? r.u32('one-time prekey id') : undefined;
  const kemPreKeyId = r.u32('KEM prekey id');
  const kemCiphertext = r.bytes(ML_KEM_768_CIPHERTEXT_LENGTH, 'KEM ciphertext');
  return { initiator, baseKey, signedPreKeyId, ...(oneTimePreKeyId !== undefined ? { oneTimePreKeyId } : {}), kemPreKeyId, kemCiphertext };
}

export function decodePqxdhHeader(bytes: Uint8Array): PqxdhInitialHeader {
  const r = new ByteReader(bytes, 'decodePqxdhHeader');
  const h = readPqxdhHeader(r, 'decodePqxdhHeader');
  r.finish();
  return h;
}

/**
 * The PQXDH header's length with `initiator` as its certificate and a one-time prekey: what a first
 * message adds in front of a ratchet message (the session layer pads ordinary messages as if they
 * carried it, so first contact does not show in the envelope size).
 */
export function pqxdhHeaderLength(initiator: DeviceCertificate): number {
  return 1 + 2 + (DEVICE_CERTIFICATE_LENGTH + initiator.extensions.length) + 33 + 4 + 1 + 4 + 4 + ML_KEM_768_CIPHERTEXT_LENGTH;
}

/**
 * Replay-cache key (docs/spec/04-pqxdh.md §4.6): SHA-256(label ‖ Identity(A) ‖ Identity(B) ‖ Encode(EK_A)
 * ‖ u32 spkId ‖ u8 hasOpk [‖ u32 opkId] ‖ u32 kemId ‖ CT) — the transcript values the header carries,
 * with the initiator named by its keys rather than by its certificate's bytes. A captured initial
 * message re-sent under a re-issued (renewed) certificate of the same device therefore hits the same
 * entry and is refused as a replay; the full certificate hash is bound into the KDF's TH instead, so
 * such a swap could not produce a working session either. Computable from the header alone, so it
 * is checked before any prekey is looked up (a replay after its one-time prekey was consumed is
 * still reported as a replay). Kept while the prekeys the header used live.
 */
export function initialMessageDigest(ctx: CryptoContext, h: PqxdhInitialHeader, responder: DeviceCertificate): Uint8Array {
  const w = new ByteWriter()
    .bytes(utf8(SEEN_LABEL))
    .bytes(identityEncoding(h.initiator))
    .bytes(identityEncoding(responder))
    .bytes(encodePublicKey(KeyType.X25519, h.baseKey))
    .u32(h.signedPreKeyId);
  if (h.oneTimePreKeyId !== undefined) w.u8(1).u32(h.oneTimePreKeyId);
  else w.u8(0);
  return ctx.backend.sha256(w.u32(h.kemPreKeyId).bytes(h.kemCiphertext).finish());
}

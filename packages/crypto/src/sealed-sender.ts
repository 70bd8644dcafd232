/**
 * Sealed sender (docs/spec/sealed-sender.md): hides the sending device from the node that relays an
 * envelope, while letting the recipient authenticate it — deniably, with Diffie–Hellman rather than
 * a signature. The structure follows Signal's sealed sender v1 (ephemeral-static layer carrying the
 * sender's identity, then a layer keyed from that layer's chain key and a static-static DH), with
 * MeshWhisper labels, AES-256-GCM, our device certificates, and size padding inside layer 2.
 *
 *   envelope = version ‖ E ‖ u16 len(c1) ‖ c1 ‖ c2, its total length always a padding bucket (padding.ts)
 *   c1 = AES-256-GCM(k1, n1, encodeDeviceCertificate(sender), aad = version ‖ E ‖ u16 len(c1))
 *   c2 = AES-256-GCM(k2, n2, contentType ‖ content ‖ 0x80 ‖ 0…0, aad = version ‖ E ‖ u16 len(c1) ‖ c1)
 *
 * The certificate (v2) has a variable length (its extension area), so c1 is length-prefixed.
 *
 * This layer is classical (X25519). It protects who is talking to whom against today's adversaries;
 * the content it carries is a PQXDH or ratchet message whose confidentiality does not depend on it.
 */
import { concatBytes, equalBytes, utf8, wipe } from './bytes.js';
import {
  AES_GCM_NONCE_LENGTH,
  AES_GCM_TAG_LENGTH,
  CERTIFICATE_EXPIRY_GRACE_MS,
  MAX_DEVICE_CERTIFICATE_LENGTH,
  MAX_ENVELOPE_SIZE,
  WIRE_VERSION,
  X25519_KEY_LENGTH,
} from './constants.js';
import type { CryptoContext } from './context.js';
import { ByteReader } from './encoding.js';
import { CryptoError, CryptoErrorCode, assertBytes } from './errors.js';
import {
  DEVICE_CERTIFICATE_LENGTH,
  KeyType,
  decodeDeviceCertificate,
  encodeDeviceCertificate,
  encodePublicKey,
  readPublicKey,
  verifyDeviceCertificate,
} from './keys.js';
import type { DeviceCertificate, DeviceKeyPair } from './keys.js';
import { applyPadding, isPaddingBucket, paddingBucketFor, removePadding } from './padding.js';

/** KDF labels (docs/spec/sealed-sender.md §Key schedule). */
export const SealedSenderLabel = {
  /** Prefix of the layer-1 HKDF salt: label ‖ encoded IK_R ‖ encoded E. */
  Salt: 'MeshWhisper_Sealed_v1',
  /** HKDF info for layer 1 (chain key, certificate key and nonce). */
  Layer1: 'MeshWhisper_Sealed_v1_Layer1',
  /** HKDF info for layer 2 (content key and nonce). */
  Layer2: 'MeshWhisper_Sealed_v1_Layer2',
} as const;

const ENCODED_X25519_LENGTH = 1 + X25519_KEY_LENGTH;
const CHAIN_KEY_LENGTH = 32;
const AES_KEY_LENGTH = 32;
/** version ‖ E ‖ u16 len(c1): also the layer-1 associated data. */
const PREFIX_LENGTH = 1 + ENCODED_X25519_LENGTH + 2;
/** Layer-1 ciphertext of a certificate with an empty extension area (190 + 16 bytes). */
export const SEALED_LAYER1_LENGTH = DEVICE_CERTIFICATE_LENGTH + AES_GCM_TAG_LENGTH;
/** Largest layer-1 ciphertext a receiver accepts (bounds work before anything authenticates). */
const MAX_LAYER1_LENGTH = MAX_DEVICE_CERTIFICATE_LENGTH + AES_GCM_TAG_LENGTH;
/**
 * Fixed bytes per envelope besides the content, for a sender whose certificate has an empty
 * extension area: prefix (36) + c1 (206) + layer-2 tag (16) + content type (1) + padding marker (1)
 * = 260. A certificate with extensions adds their length (sealedEnvelopeOverhead).
 */
export const SEALED_ENVELOPE_OVERHEAD = PREFIX_LENGTH + SEALED_LAYER1_LENGTH + AES_GCM_TAG_LENGTH + 1 + 1;
/** The longest content that fits in the largest envelope (MAX_ENVELOPE_SIZE − overhead), for an extension-free certificate. */
export const MAX_SEALED_CONTENT_LENGTH = MAX_ENVELOPE_SIZE - SEALED_ENVELOPE_OVERHEAD;

/** Fixed bytes of an envelope sealed under `certificate` besides the content. */
export function sealedEnvelopeOverhead(certificate: DeviceCertificate): number {
  return PREFIX_LENGTH + encodedCertificateLength(certificate) + AES_GCM_TAG_LENGTH * 2 + 1 + 1;
}

function encodedCertificateLength(c: DeviceCertificate): number {
  return DEVICE_CERTIFICATE_LENGTH + c.extensions.length;
}

/**
 * The wire length of the envelope that carries `contentLength` bytes of content (always a bucket).
 * `certificate` is the sender's (default: one with an empty extension area).
 */
export function sealedEnvelopeLength(contentLength: number, certificate?: DeviceCertificate): number {
  const overhead = certificate ? sealedEnvelopeOverhead(certificate) : SEALED_ENVELOPE_OVERHEAD;
  return paddingBucketFor(contentLength + overhead, 'sealedEnvelopeLength');
}

/** What openEnvelope returns. Holds no secret: the content is the session layer's ciphertext. */
export interface OpenedEnvelope {
  /** The sender's device certificate, its account signature verified. */
  readonly sender: DeviceCertificate;
  /** u8, opaque to this layer (the session layer: 1 = PQXDH initial message, 2 = ratchet message). */
  readonly contentType: number;
  readonly content: Uint8Array;
}

export interface SealParams {
  readonly sender: { readonly certificate: DeviceCertificate; readonly device: DeviceKeyPair };
  /** The recipient device's X25519 identity key, raw 32 bytes (its certificate's deviceDhKey). */
  readonly recipientDhKey: Uint8Array;
  readonly contentType: number;
  readonly content: Uint8Array;
  /**
   * Pad as if the content were at least this long (default: its real length). The session layer
   * passes the length the message would have with a PQXDH header, so that a first-contact message
   * and an ordinary one with the same plaintext land in the same bucket.
   */
  readonly padAsLength?: number;
}

interface Layer1Keys {
  chainKey: Uint8Array;
  key: Uint8Array;
  nonce: Uint8Array;
  okm: Uint8Array; // owns the three above (subarrays): wipe this one
}

function layer1Keys(ctx: CryptoContext, dh1: Uint8Array, encodedRecipient: Uint8Array, encodedEphemeral: Uint8Array): Layer1Keys {
  const salt = concatBytes(utf8(SealedSenderLabel.Salt), encodedRecipient, encodedEphemeral);
  const okm = ctx.backend.hkdfSha256(dh1, salt, utf8(SealedSenderLabel.Layer1), CHAIN_KEY_LENGTH + AES_KEY_LENGTH + AES_GCM_NONCE_LENGTH);
  return {
    okm,
    chainKey: okm.subarray(0, CHAIN_KEY_LENGTH),
    key: okm.subarray(CHAIN_KEY_LENGTH, CHAIN_KEY_LENGTH + AES_KEY_LENGTH),
    nonce: okm.subarray(CHAIN_KEY_LENGTH + AES_KEY_LENGTH),
  };
}

function layer2Keys(ctx: CryptoContext, dh2: Uint8Array, chainKey: Uint8Array, c1: Uint8Array): { key: Uint8Array; nonce: Uint8Array; okm: Uint8Array } {
  const salt = concatBytes(chainKey, c1);
  const okm = ctx.backend.hkdfSha256(dh2, salt, utf8(SealedSenderLabel.Layer2), AES_KEY_LENGTH + AES_GCM_NONCE_LENGTH);
  wipe(salt);
  return { okm, key: okm.subarray(0, AES_KEY_LENGTH), nonce: okm.subarray(AES_KEY_LENGTH) };
}

/**
 * Seals `content` from `sender` to the device whose X25519 identity key is `recipientDhKey`. The
 * result's length is always one of PADDING_BUCKETS. Consumes exactly 32 bytes of `ctx.random` (the
 * ephemeral secret), so every envelope has fresh keys and nonces.
 *
 * Throws CryptoError(LIMIT_EXCEEDED) if the content exceeds MAX_SEALED_CONTENT_LENGTH,
 * CryptoError(INVALID_ARGUMENT) if the certificate does not certify `sender.device`,
 * CryptoError(LOW_ORDER_POINT) for a low-order recipient key; TypeError/RangeError for bad arguments.
 */
export function sealEnvelope(ctx: CryptoContext, p: SealParams): Uint8Array {
  const op = 'sealEnvelope';
  assertBytes(p.recipientDhKey, op, 'recipientDhKey', X25519_KEY_LENGTH);
  assertBytes(p.content, op, 'content');
  if (!Number.isInteger(p.contentType) || p.contentType < 0 || p.contentType > 0xff) {
    throw new RangeError(`${op}: contentType must be an integer in 0..255, got ${p.contentType}`);
  }
  const { certificate, device } = p.sender;
  if (!equalBytes(certificate.deviceDhKey, device.dhPublicKey) || !equalBytes(certificate.deviceSigningKey, device.signingPublicKey)) {
    throw new CryptoError(CryptoErrorCode.INVALID_ARGUMENT, op, 'sender certificate does not certify the sender device keys');
  }
  const max = MAX_ENVELOPE_SIZE - sealedEnvelopeOverhead(certificate);
  if (p.content.length > max) {
    throw new CryptoError(CryptoErrorCode.LIMIT_EXCEEDED, op, `content of ${p.content.length} bytes exceeds ${max}`);
  }
  if (p.padAsLength !== undefined && (!Number.isSafeInteger(p.padAsLength) || p.padAsLength < 0)) {
    throw new RangeError(`${op}: padAsLength must be a non-negative integer`);
  }
  // Padding as if longer never pushes a message that fits out of the largest envelope.
  const total = Math.max(
    sealedEnvelopeLength(p.content.length, certificate),
    Math.min(MAX_ENVELOPE_SIZE, sealedEnvelopeLength(Math.min(p.padAsLength ?? 0, max), certificate)),
  );

  const ephemeralSecret = ctx.random(X25519_KEY_LENGTH);
  let dh1: Uint8Array | undefined;
  let dh2: Uint8Array | undefined;
  let k1: Layer1Keys | undefined;
  let k2: { okm: Uint8Array } | undefined;
  let certificateBytes: Uint8Array | undefined;
  let inner: Uint8Array | undefined;
  let padded: Uint8Array | undefined;
  try {
    const encodedEphemeral = encodePublicKey(KeyType.X25519, ctx.backend.x25519PublicKey(ephemeralSecret));
    const encodedRecipient = encodePublicKey(KeyType.X25519, p.recipientDhKey);
    dh1 = ctx.backend.x25519(ephemeralSecret, p.recipientDhKey);
    k1 = layer1Keys(ctx, dh1, encodedRecipient, encodedEphemeral);

    certificateBytes = encodeDeviceCertificate(certificate);
    const c1Length = certificateBytes.length + AES_GCM_TAG_LENGTH;
    const prefix = concatBytes(Uint8Array.of(WIRE_VERSION), encodedEphemeral, Uint8Array.of(c1Length >>> 8, c1Length & 0xff));
    const c1 = ctx.backend.aes256GcmEncrypt(k1.key, k1.nonce, certificateBytes, prefix);

    dh2 = device.dh(ctx, p.recipientDhKey);
    const l2 = layer2Keys(ctx, dh2, k1.chainKey, c1);
    k2 = l2;
    const header = concatBytes(prefix, c1);
    inner = concatBytes(Uint8Array.of(p.contentType), p.content);
    padded = applyPadding(inner, total - header.length - AES_GCM_TAG_LENGTH);
    const c2 = ctx.backend.aes256GcmEncrypt(l2.key, l2.nonce, padded, header);
    const envelope = concatBytes(header, c2);
    if (envelope.length !== total) throw new Error('unreachable: envelope length');
    return envelope;
  } finally {
    wipe(ephemeralSecret, dh1, dh2, k1?.okm, k2?.okm, inner, padded, certificateBytes);
  }
}

/**
 * Opens an envelope sealed to `recipient`. Verifies, in order: the length is a bucket, the version,
 * layer 1 (AEAD), the certificate's account signature, layer 2 (AEAD, keyed with a DH against the
 * certificate's deviceDhKey — so only the holder of that key can have made it), then the padding.
 * Nothing is returned unless all pass.
 *
 * The caller still decides whether it trusts the certified account (the certificate only proves
 * that some account key certified this device) and, in the session layer, that the session which
 * decrypts the content belongs to this sender (SENDER_MISMATCH).
 *
 * Errors (all CryptoError): LIMIT_EXCEEDED (longer than MAX_ENVELOPE_SIZE), MALFORMED (length not a
 * bucket, undecodable certificate, invalid padding), UNSUPPORTED_VERSION, INVALID_KEY (E not a
 * type-tagged X25519 key), LOW_ORDER_POINT, BAD_MAC (either layer: tampered, wrong recipient, or
 * a certificate whose DH key the sender does not hold), BAD_SIGNATURE (certificate not signed by
 * its account key).
 */
export function openEnvelope(ctx: CryptoContext, recipient: DeviceKeyPair, envelope: Uint8Array): OpenedEnvelope {
  const op = 'openEnvelope';
  assertBytes(envelope, op, 'envelope');
  if (envelope.length > MAX_ENVELOPE_SIZE) {
    throw new CryptoError(CryptoErrorCode.LIMIT_EXCEEDED, op, `envelope of ${envelope.length} bytes exceeds ${MAX_ENVELOPE_SIZE}`);
  }
  if (!isPaddingBucket(envelope.length)) {
    throw new CryptoError(CryptoErrorCode.MALFORMED, op, `envelope length ${envelope.length} is not a padding bucket`);
  }
  const r = new ByteReader(envelope, op);
  const version = r.u8('version');
  if (version !== WIRE_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `sealed envelope version ${version}`);
  const ephemeral = readPublicKey(r, KeyType.X25519, op);
  const c1 = r.vec16('layer 1', MAX_LAYER1_LENGTH);
  if (c1.length < SEALED_LAYER1_LENGTH) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'layer 1 shorter than a certificate');
  const c2 = r.rest();
  if (c2.length < AES_GCM_TAG_LENGTH + 2) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'no room for layer 2');
  const prefix = envelope.subarray(0, PREFIX_LENGTH);
  const header = envelope.subarray(0, PREFIX_LENGTH + c1.length);

  let dh1: Uint8Array | undefined;
  let dh2: Uint8Array | undefined;
  let k1: Layer1Keys | undefined;
  let k2: { okm: Uint8Array } | undefined;
  let padded: Uint8Array | undefined;
  try {
    dh1 = recipient.dh(ctx, ephemeral);
    k1 = layer1Keys(ctx, dh1, recipient.encodedDhKey, encodePublicKey(KeyType.X25519, ephemeral));
    const certificateBytes = ctx.backend.aes256GcmDecrypt(k1.key, k1.nonce, c1, prefix);
    const sender = decodeDeviceCertificate(certificateBytes);
    // A sender never seals under an expired certificate; the envelope may then wait in the queue.
    verifyDeviceCertificate(ctx, sender, { graceMs: CERTIFICATE_EXPIRY_GRACE_MS });

    dh2 = recipient.dh(ctx, sender.deviceDhKey);
    const l2 = layer2Keys(ctx, dh2, k1.chainKey, c1);
    k2 = l2;
    padded = ctx.backend.aes256GcmDecrypt(l2.key, l2.nonce, c2, header);
    const inner = removePadding(padded, op);
    if (inner.length < 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'missing content type');
    return { sender, contentType: inner[0]!, content: inner.slice(1) };
  } catch (e) {
    if (e instanceof CryptoError) {
      // Re-raise under this operation's name, keeping the code (and no bytes) from the failing step.
      throw e.operation === op ? e : new CryptoError(e.code, op, e.message, { cause: e });
    }
    throw e;
  } finally {
    wipe(dh1, dh2, k1?.okm, k2?.okm, padded);
  }
}

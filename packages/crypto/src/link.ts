/**
 * Device linking (docs/spec/linking.md): the channel a new device and an existing device of the
 * same account open through a one-time provisioning channel on the node, with the QR code the new
 * device shows as the only trust anchor.
 *
 *   offer (the QR)  = "MWL" ‖ u8 version ‖ channelId(16) ‖ Encode(X25519 OK) ‖ Encode(ML-KEM-768 EK) ‖ vec8(node URL)
 *   hello (scanner) = u8 version ‖ Encode(X25519 E) ‖ ML-KEM ciphertext(1088)
 *   th              = SHA-256(SigMsg("MeshWhisper_Link_v1", offer ‖ hello))
 *   kS ‖ kN         = HKDF-SHA256(ikm = X25519(e, OK) ‖ ML-KEM shared secret, salt = th, info = "MeshWhisper_Link_v1_Keys", 64)
 *   frame           = u32 seq ‖ AES-256-GCM(k_dir, nonce = 0^8 ‖ u32 seq, payload, aad = th ‖ u8 dir)
 *
 * Hybrid: an attacker must break both X25519 and ML-KEM-768 to read the channel. The node relays the
 * hello and the frames but never sees the offer's keys (they are only on the screen), so a node
 * that swaps or forges any of it produces frames that fail authentication on the other side
 * (BAD_MAC): nothing is decrypted and nothing is issued. Each direction has its own key and a
 * strictly increasing sequence: a frame replayed, dropped or reordered by the relay is refused.
 *
 * Pure: no I/O. The SDK moves the bytes; the payloads are protocol's LinkMessage.
 */
import { concatBytes, copyBytes, equalBytes, utf8, wipe } from './bytes.js';
import { AES_GCM_TAG_LENGTH, ML_KEM_768_CIPHERTEXT_LENGTH } from './constants.js';
import type { CryptoContext } from './context.js';
import { ByteReader, ByteWriter } from './encoding.js';
import { CryptoError, CryptoErrorCode, assertBytes } from './errors.js';
import type { DeviceKeyPair } from './keys.js';
import { KeyType, encodePublicKey, readPublicKey, signedMessage } from './keys.js';
import { _Redacted } from './_secret.js';

/** Version of the link offer, hello and frame layout. */
export const LINK_VERSION = 1;
/** The three ASCII bytes every link offer starts with, so a scanner tells it apart from a contact card or safety number. */
export const LINK_OFFER_MAGIC = utf8('MWL');
/** Bytes of the provisioning channel id the node hands out. */
export const LINK_CHANNEL_ID_LENGTH = 16;
/** Longest node URL an offer may carry (UTF-8 bytes; vec8). */
export const MAX_LINK_NODE_URL_LENGTH = 255;
/** Largest frame payload either side seals or opens: bounds memory before authentication (history travels in several frames). */
export const MAX_LINK_FRAME_PAYLOAD = 256 * 1024;
/** Bytes of an encoded hello. */
export const LINK_HELLO_LENGTH = 1 + 33 + ML_KEM_768_CIPHERTEXT_LENGTH;

export const LinkLabel = {
  Transcript: 'MeshWhisper_Link_v1',
  Keys: 'MeshWhisper_Link_v1_Keys',
  /** The new device's proof that it holds the signing key it asks to have certified. */
  Request: 'MeshWhisper_LinkRequest_v1',
} as const;

/** Direction bytes bound into every frame's associated data. */
export const LinkDirection = {
  /** The scanning (existing) device to the new device. */
  ToNewDevice: 1,
  /** The new device to the scanning device. */
  ToScanner: 2,
} as const;
export type LinkDirection = (typeof LinkDirection)[keyof typeof LinkDirection];

/** What the QR code carries. */
export interface LinkOffer {
  readonly version: number;
  readonly channelId: Uint8Array;
  /** X25519 offer key (ephemeral, this link only). */
  readonly offerKey: Uint8Array;
  /** ML-KEM-768 encapsulation key (ephemeral, this link only). */
  readonly kemKey: Uint8Array;
  /** The node that holds the provisioning channel (the account's node). */
  readonly nodeUrl: string;
}

/** The new device's half of the offer: the two ephemeral secrets. Wiped by destroy(). */
export class LinkOfferSecret extends _Redacted {
  readonly #x25519: Uint8Array;
  readonly #kem: Uint8Array;
  readonly offer: LinkOffer;
  constructor(offer: LinkOffer, x25519Secret: Uint8Array, kemSecret: Uint8Array) {
    super();
    this.offer = offer;
    this.#x25519 = x25519Secret;
    this.#kem = kemSecret;
  }
  /** @internal */
  _secrets(): { x25519: Uint8Array; kem: Uint8Array } {
    return { x25519: this.#x25519, kem: this.#kem };
  }
  destroy(): void {
    wipe(this.#x25519, this.#kem);
  }
  protected describe(): Record<string, unknown> {
    return { channelId: Array.from(this.offer.channelId, (b) => b.toString(16).padStart(2, '0')).join('') };
  }
}

/**
 * Makes a link offer for a channel the node opened. Randomness, in this order: ctx.random(32) the
 * X25519 secret, ctx.random(64) the ML-KEM-768 key-generation seed (d ‖ z).
 */
export function createLinkOffer(ctx: CryptoContext, p: { channelId: Uint8Array; nodeUrl: string }): LinkOfferSecret {
  const op = 'createLinkOffer';
  assertBytes(p.channelId, op, 'channelId', LINK_CHANNEL_ID_LENGTH);
  checkNodeUrl(p.nodeUrl, op);
  const x = ctx.random(32);
  const seed = ctx.random(64);
  const kem = ctx.backend.mlKem768KeyGen(seed);
  wipe(seed);
  const offer: LinkOffer = { version: LINK_VERSION, channelId: copyBytes(p.channelId), offerKey: ctx.backend.x25519PublicKey(x), kemKey: kem.publicKey, nodeUrl: p.nodeUrl };
  return new LinkOfferSecret(offer, x, kem.secretKey);
}

function checkNodeUrl(url: unknown, op: string): asserts url is string {
  if (typeof url !== 'string' || url.length === 0) throw new CryptoError(CryptoErrorCode.INVALID_ARGUMENT, op, 'nodeUrl must be a non-empty string');
  if (utf8(url).length > MAX_LINK_NODE_URL_LENGTH) throw new CryptoError(CryptoErrorCode.LIMIT_EXCEEDED, op, `nodeUrl longer than ${MAX_LINK_NODE_URL_LENGTH} bytes`);
}

export function encodeLinkOffer(o: LinkOffer): Uint8Array {
  checkNodeUrl(o.nodeUrl, 'encodeLinkOffer');
  const url = utf8(o.nodeUrl);
  return new ByteWriter()
    .bytes(LINK_OFFER_MAGIC)
    .u8(o.version)
    .bytes(o.channelId)
    .bytes(encodePublicKey(KeyType.X25519, o.offerKey))
    .bytes(encodePublicKey(KeyType.MlKem768, o.kemKey))
    .u8(url.length)
    .bytes(url)
    .finish();
}

/** Decodes a scanned offer. Throws CryptoError(MALFORMED | UNSUPPORTED_VERSION | INVALID_KEY). */
export function decodeLinkOffer(bytes: Uint8Array): LinkOffer {
  const op = 'decodeLinkOffer';
  assertBytes(bytes, op, 'bytes');
  const r = new ByteReader(bytes, op);
  if (!equalBytes(r.bytes(3, 'magic'), LINK_OFFER_MAGIC)) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'not a link offer');
  const version = r.u8('version');
  if (version !== LINK_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `link offer version ${version}`);
  const channelId = r.bytes(LINK_CHANNEL_ID_LENGTH, 'channelId');
  const offerKey = readPublicKey(r, KeyType.X25519, op);
  const kemKey = readPublicKey(r, KeyType.MlKem768, op);
  const urlLength = r.u8('node URL length');
  const urlBytes = r.bytes(urlLength, 'node URL');
  r.finish();
  let nodeUrl: string;
  try {
    nodeUrl = new TextDecoder('utf-8', { fatal: true }).decode(urlBytes);
  } catch {
    throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'node URL is not UTF-8');
  }
  if (nodeUrl.length === 0) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'empty node URL');
  return { version, channelId, offerKey, kemKey, nodeUrl };
}

/**
 * One side of an open link channel: seals frames in its direction, opens frames in the other.
 * Opening is all-or-nothing: the expected sequence advances only after a frame authenticates.
 */
export class LinkChannel extends _Redacted {
  readonly #sendKey: Uint8Array;
  readonly #recvKey: Uint8Array;
  #sendSeq = 0;
  #recvSeq = 0;
  constructor(
    /** The transcript hash: binds every frame (and the request proof) to this offer and hello. */
    readonly transcriptHash: Uint8Array,
    readonly sendDirection: LinkDirection,
    sendKey: Uint8Array,
    recvKey: Uint8Array,
  ) {
    super();
    this.#sendKey = sendKey;
    this.#recvKey = recvKey;
  }

  get receiveDirection(): LinkDirection {
    return this.sendDirection === LinkDirection.ToNewDevice ? LinkDirection.ToScanner : LinkDirection.ToNewDevice;
  }

  /** Seals the next frame in this side's direction. */
  seal(ctx: CryptoContext, payload: Uint8Array): Uint8Array {
    const op = 'LinkChannel.seal';
    assertBytes(payload, op, 'payload');
    if (payload.length > MAX_LINK_FRAME_PAYLOAD) throw new CryptoError(CryptoErrorCode.LIMIT_EXCEEDED, op, `frame payload over ${MAX_LINK_FRAME_PAYLOAD} bytes`);
    const seq = this.#sendSeq;
    const ct = ctx.backend.aes256GcmEncrypt(this.#sendKey, frameNonce(seq), payload, frameAad(this.transcriptHash, this.sendDirection));
    this.#sendSeq++;
    return new ByteWriter().u32(seq).bytes(ct).finish();
  }

  /**
   * Opens the next frame from the other side. Throws CryptoError: MALFORMED (too short),
   * LIMIT_EXCEEDED (too long), BAD_MAC (not from the holder of the other half: forged, tampered,
   * replayed or out of order — the sequence is part of the nonce).
   */
  open(ctx: CryptoContext, frame: Uint8Array): Uint8Array {
    const op = 'LinkChannel.open';
    assertBytes(frame, op, 'frame');
    if (frame.length < 4 + AES_GCM_TAG_LENGTH) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'frame too short');
    if (frame.length > 4 + MAX_LINK_FRAME_PAYLOAD + AES_GCM_TAG_LENGTH) throw new CryptoError(CryptoErrorCode.LIMIT_EXCEEDED, op, 'frame too long');
    const r = new ByteReader(frame, op);
    const seq = r.u32('seq');
    if (seq !== this.#recvSeq) throw new CryptoError(CryptoErrorCode.BAD_MAC, op, `frame ${seq} where ${this.#recvSeq} was expected (replayed, dropped or reordered)`);
    const plain = ctx.backend.aes256GcmDecrypt(this.#recvKey, frameNonce(seq), r.rest(), frameAad(this.transcriptHash, this.receiveDirection));
    this.#recvSeq++;
    return plain;
  }

  destroy(): void {
    wipe(this.#sendKey, this.#recvKey);
  }

  protected describe(): Record<string, unknown> {
    return { sendDirection: this.sendDirection, sent: this.#sendSeq, received: this.#recvSeq };
  }
}

function frameNonce(seq: number): Uint8Array {
  return new ByteWriter().u32(0).u32(0).u32(seq).finish();
}

function frameAad(th: Uint8Array, dir: LinkDirection): Uint8Array {
  return concatBytes(th, Uint8Array.of(dir));
}

function transcript(ctx: CryptoContext, offer: LinkOffer, hello: Uint8Array): Uint8Array {
  return ctx.backend.sha256(signedMessage(LinkLabel.Transcript, concatBytes(encodeLinkOffer(offer), hello)));
}

function channelKeys(ctx: CryptoContext, dh: Uint8Array, ss: Uint8Array, th: Uint8Array): { toNew: Uint8Array; toScanner: Uint8Array } {
  const ikm = concatBytes(dh, ss);
  const okm = ctx.backend.hkdfSha256(ikm, th, utf8(LinkLabel.Keys), 64);
  wipe(ikm);
  const keys = { toNew: okm.slice(0, 32), toScanner: okm.slice(32, 64) };
  wipe(okm);
  return keys;
}

/**
 * The scanning (existing) device: answers a scanned offer. Randomness, in this order:
 * ctx.random(32) the ephemeral X25519 secret, ctx.random(32) the ML-KEM encapsulation randomness.
 * Returns the hello to post to the channel and this side's channel.
 */
export function answerLinkOffer(ctx: CryptoContext, offer: LinkOffer): { hello: Uint8Array; channel: LinkChannel } {
  const op = 'answerLinkOffer';
  if (offer.version !== LINK_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `link offer version ${offer.version}`);
  const e = ctx.random(32);
  const m = ctx.random(32);
  const ePub = ctx.backend.x25519PublicKey(e);
  const dh = ctx.backend.x25519(e, offer.offerKey);
  const { ciphertext, sharedSecret } = ctx.backend.mlKem768Encapsulate(offer.kemKey, m);
  wipe(e, m);
  const hello = new ByteWriter().u8(LINK_VERSION).bytes(encodePublicKey(KeyType.X25519, ePub)).bytes(ciphertext).finish();
  const th = transcript(ctx, offer, hello);
  const k = channelKeys(ctx, dh, sharedSecret, th);
  wipe(dh, sharedSecret);
  return { hello, channel: new LinkChannel(th, LinkDirection.ToNewDevice, k.toNew, k.toScanner) };
}

/**
 * The new device: opens the channel from the hello the node relayed. Does not authenticate the
 * hello by itself (ML-KEM decapsulation never fails): the first frame that opens under the
 * resulting keys does — a forged hello yields keys under which no frame opens (BAD_MAC).
 * Throws CryptoError(MALFORMED | UNSUPPORTED_VERSION | INVALID_KEY | LOW_ORDER_POINT).
 */
export function acceptLinkHello(ctx: CryptoContext, secret: LinkOfferSecret, hello: Uint8Array): LinkChannel {
  const op = 'acceptLinkHello';
  assertBytes(hello, op, 'hello');
  const r = new ByteReader(hello, op);
  const version = r.u8('version');
  if (version !== LINK_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `link hello version ${version}`);
  const ePub = readPublicKey(r, KeyType.X25519, op);
  const ct = r.bytes(ML_KEM_768_CIPHERTEXT_LENGTH, 'KEM ciphertext');
  r.finish();
  const s = secret._secrets();
  const dh = ctx.backend.x25519(s.x25519, ePub);
  const ss = ctx.backend.mlKem768Decapsulate(ct, s.kem);
  const th = transcript(ctx, secret.offer, hello);
  const k = channelKeys(ctx, dh, ss, th);
  wipe(dh, ss);
  return new LinkChannel(th, LinkDirection.ToScanner, k.toScanner, k.toNew);
}

/** The new device's proof of possession of the signing key it asks the account to certify, bound to this link. */
export function signLinkRequest(ctx: CryptoContext, device: DeviceKeyPair, transcriptHash: Uint8Array): Uint8Array {
  assertBytes(transcriptHash, 'signLinkRequest', 'transcriptHash', 32);
  return device.sign(ctx, LinkLabel.Request, transcriptHash);
}

export function verifyLinkRequest(ctx: CryptoContext, deviceSigningKey: Uint8Array, transcriptHash: Uint8Array, signature: Uint8Array): boolean {
  assertBytes(deviceSigningKey, 'verifyLinkRequest', 'deviceSigningKey', 32);
  assertBytes(transcriptHash, 'verifyLinkRequest', 'transcriptHash', 32);
  assertBytes(signature, 'verifyLinkRequest', 'signature');
  return ctx.backend.ed25519Verify(deviceSigningKey, signedMessage(LinkLabel.Request, transcriptHash), signature);
}

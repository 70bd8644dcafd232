/**
 * Node authentication messages (docs/spec/node-protocol.md §Authentication). Pure functions: the
 * node verifies, clients sign; both build the exact same bytes from here.
 *
 *   challenge  = node public key (32) ‖ nonce (32) ‖ issued-at (u64 BE ms)
 *   digest     = SHA-256(METHOD ‖ 0x00 ‖ path ‖ 0x00 ‖ bodyDigest)
 *                bodyDigest = SHA-256(body) for protobuf bodies, 32 zero bytes for none or a streamed blob
 *   signature  = Ed25519(key, signedMessage(label, challenge ‖ digest))
 *                label: MeshWhisper_NodeAuth_v1 (device key) or MeshWhisper_ArchiveAccess_v1 (archive-access key)
 *
 * The node issues each challenge once and forgets it on first use, so a captured proof cannot be
 * replayed; binding the node key stops a proof for one node being used at another; binding the
 * request stops a proof for one request authorising another.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import type { CryptoContext } from '@meshwhisper/crypto';
import { concatBytes, signedMessage, u64be, utf8 } from '@meshwhisper/crypto';
import { AuthLabel, CHALLENGE_LENGTH, CHALLENGE_NODE_KEY_LENGTH, CHALLENGE_NONCE_LENGTH } from './constants.js';
import type { ArchiveAuth, DeviceAuth } from './gen/meshwhisper/v1/auth_pb.js';
import { ArchiveAuthSchema, DeviceAuthSchema } from './gen/meshwhisper/v1/auth_pb.js';
import type { SignedUsernameOperation, UsernameOperation } from './gen/meshwhisper/v1/username_pb.js';
import { SignedUsernameOperationSchema, SignedUsernameTransferConsentSchema, UsernameOperationSchema, UsernameTransferConsentSchema } from './gen/meshwhisper/v1/username_pb.js';
import type { MessageInitShape } from '@bufbuild/protobuf';

/** Anything that signs with a domain-separation label (DeviceKeyPair, AccountKeyPair, an archive key). */
export interface LabelSigner {
  sign(ctx: CryptoContext, label: string, body: Uint8Array): Uint8Array;
}

export interface ParsedChallenge {
  readonly nodeKey: Uint8Array;
  readonly nonce: Uint8Array;
  readonly issuedAt: number;
}

export function buildChallenge(nodeKey: Uint8Array, nonce: Uint8Array, issuedAt: number): Uint8Array {
  if (nodeKey.length !== CHALLENGE_NODE_KEY_LENGTH) throw new RangeError(`buildChallenge: nodeKey must be ${CHALLENGE_NODE_KEY_LENGTH} bytes`);
  if (nonce.length !== CHALLENGE_NONCE_LENGTH) throw new RangeError(`buildChallenge: nonce must be ${CHALLENGE_NONCE_LENGTH} bytes`);
  return concatBytes(nodeKey, nonce, u64be(issuedAt));
}

/** Splits a challenge; undefined when the length is wrong. */
export function parseChallenge(challenge: Uint8Array): ParsedChallenge | undefined {
  if (challenge.length !== CHALLENGE_LENGTH) return undefined;
  const view = new DataView(challenge.buffer, challenge.byteOffset, challenge.byteLength);
  const off = CHALLENGE_NODE_KEY_LENGTH + CHALLENGE_NONCE_LENGTH;
  const issuedAt = view.getUint32(off) * 2 ** 32 + view.getUint32(off + 4);
  return {
    nodeKey: challenge.slice(0, CHALLENGE_NODE_KEY_LENGTH),
    nonce: challenge.slice(CHALLENGE_NODE_KEY_LENGTH, off),
    issuedAt,
  };
}

const ZERO_DIGEST = new Uint8Array(32);

/**
 * The request descriptor digest. `body` undefined means "no body or a streamed blob" (32 zero bytes).
 * `path` is the URL path without the query string.
 */
export function requestDigest(ctx: CryptoContext, method: string, path: string, body?: Uint8Array): Uint8Array {
  const bodyDigest = body === undefined ? ZERO_DIGEST : ctx.backend.sha256(body);
  return ctx.backend.sha256(concatBytes(utf8(method.toUpperCase()), Uint8Array.of(0), utf8(path), Uint8Array.of(0), bodyDigest));
}

/** The message an auth signature covers (before the signer's own signedMessage framing). */
export function authBody(challenge: Uint8Array, digest: Uint8Array): Uint8Array {
  return concatBytes(challenge, digest);
}

/** The exact bytes Ed25519 signs for a proof with `label`. */
export function authSignedBytes(label: string, challenge: Uint8Array, digest: Uint8Array): Uint8Array {
  return signedMessage(label, authBody(challenge, digest));
}

/** The path and method of the device WebSocket login. */
export const DEVICE_SOCKET_METHOD = 'GET';
export const DEVICE_SOCKET_PATH = '/v1/device';

export function signDeviceAuth(ctx: CryptoContext, device: LabelSigner, certificate: Uint8Array, challenge: Uint8Array, digest: Uint8Array): DeviceAuth {
  return create(DeviceAuthSchema, { challenge, certificate, signature: device.sign(ctx, AuthLabel.Device, authBody(challenge, digest)) });
}

/** An archive-access key (@meshwhisper/crypto ArchiveAccessKeyPair): signs under its own fixed label. */
export interface ArchiveAccessSigner {
  readonly publicKey: Uint8Array;
  sign(ctx: CryptoContext, body: Uint8Array): Uint8Array;
}

export function signArchiveAuth(ctx: CryptoContext, archiveKey: ArchiveAccessSigner, challenge: Uint8Array, digest: Uint8Array): ArchiveAuth {
  return create(ArchiveAuthSchema, { challenge, archiveKey: archiveKey.publicKey, signature: archiveKey.sign(ctx, authBody(challenge, digest)) });
}

/** Serializes and signs a username operation with the account key named in `signerKey`. */
export function signUsernameOperation(ctx: CryptoContext, signer: LabelSigner, op: MessageInitShape<typeof UsernameOperationSchema>): SignedUsernameOperation {
  const operation = toBinary(UsernameOperationSchema, create(UsernameOperationSchema, op));
  return create(SignedUsernameOperationSchema, { operation, signature: signer.sign(ctx, AuthLabel.Username, operation) });
}

/**
 * The receiving account's consent to a username transfer, signed with its account key (the one
 * named in `newOwnerKey`): the serialized SignedUsernameTransferConsent that the current owner
 * puts into the TRANSFER operation's `transferConsent`.
 */
export function signUsernameTransferConsent(ctx: CryptoContext, newOwner: LabelSigner, consent: MessageInitShape<typeof UsernameTransferConsentSchema>): Uint8Array {
  const bytes = toBinary(UsernameTransferConsentSchema, create(UsernameTransferConsentSchema, consent));
  return toBinary(SignedUsernameTransferConsentSchema, create(SignedUsernameTransferConsentSchema, { consent: bytes, signature: newOwner.sign(ctx, AuthLabel.UsernameConsent, bytes) }));
}

export type { UsernameOperation };

/** base64url without padding, for the mw-auth header. */
export function toBase64Url(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Inverse of toBase64Url; undefined when the text is not base64url. */
export function fromBase64Url(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return undefined;
  const bin = atob(text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Encodes a DeviceAuth / ArchiveAuth for the mw-auth header. */
export function encodeDeviceAuthHeader(auth: DeviceAuth): string {
  return toBase64Url(toBinary(DeviceAuthSchema, auth));
}
export function encodeArchiveAuthHeader(auth: ArchiveAuth): string {
  return toBase64Url(toBinary(ArchiveAuthSchema, auth));
}

/**
 * The registry of every error code a MeshWhisper peer can see (docs/spec/errors.md). Codes are
 * stable strings: clients branch on them, messages are for humans. The crypto codes are owned by
 * @meshwhisper/crypto and listed here so that one table covers the whole wire.
 */
import { CryptoErrorCode } from '@meshwhisper/crypto';

export const ErrorCode = {
  // ── framing and versions ──
  /** Bytes are not a valid Frame or body (protobuf decoding failed, or a field has an impossible length). */
  MALFORMED: 'MW_PROTO_MALFORMED',
  /** A frame or body is larger than the limit (MAX_FRAME_BYTES, MAX_HTTP_BODY_BYTES, blob limits). */
  TOO_LARGE: 'MW_PROTO_TOO_LARGE',
  /** No protocol version in common, or a frame written in a version other than the negotiated one. */
  UNSUPPORTED_VERSION: 'MW_PROTO_UNSUPPORTED_VERSION',
  /** A well-formed frame that is not allowed in the connection's current state (e.g. Ack before auth). */
  UNEXPECTED_FRAME: 'MW_PROTO_UNEXPECTED_FRAME',
  /** A frame with no body, or a body kind this version does not know. */
  EMPTY_FRAME: 'MW_PROTO_EMPTY_FRAME',
  /** The request is well-formed but a field is invalid (bad length, bad syntax, missing). */
  BAD_REQUEST: 'MW_PROTO_BAD_REQUEST',
  /** Wrong Content-Type for this endpoint. */
  UNSUPPORTED_MEDIA_TYPE: 'MW_PROTO_UNSUPPORTED_MEDIA_TYPE',
  // ── authentication ──
  /** The operation needs a DeviceAuth (or ArchiveAuth) and none was given. */
  AUTH_REQUIRED: 'MW_AUTH_REQUIRED',
  /** The signature does not verify, or the certificate does not verify. */
  AUTH_INVALID: 'MW_AUTH_INVALID',
  /** The challenge is older than CHALLENGE_TTL_MS (or from the future). */
  AUTH_STALE: 'MW_AUTH_STALE',
  /** The challenge was already used, or was never issued by this node. */
  AUTH_REPLAYED: 'MW_AUTH_REPLAYED',
  /** The challenge names another node's key. */
  AUTH_WRONG_NODE: 'MW_AUTH_WRONG_NODE',
  /** The authenticated key may not do this (e.g. not the owner of the username or archive). */
  FORBIDDEN: 'MW_AUTH_FORBIDDEN',
  // ── resources ──
  /** Too many requests; retry after `retryAfterMs` / the Retry-After header. */
  RATE_LIMITED: 'MW_RATE_LIMITED',
  /** The mailbox, bundle, username, blob or archive does not exist. */
  NOT_FOUND: 'MW_NOT_FOUND',
  /** A storage quota (mailbox, media per device, archive) would be exceeded. */
  QUOTA_EXCEEDED: 'MW_QUOTA_EXCEEDED',
  /** The username is owned by another key (default policy). */
  USERNAME_TAKEN: 'MW_USERNAME_TAKEN',
  /** The namespace is not configured on this node. */
  UNKNOWN_NAMESPACE: 'MW_UNKNOWN_NAMESPACE',
  /** A signed object (prekey, certificate, username operation) failed verification; `message` names which. */
  BAD_SIGNATURE: 'MW_BAD_SIGNATURE',
  /** The state changed concurrently or the write conflicts with stored state (e.g. certificate of another device). */
  CONFLICT: 'MW_CONFLICT',
  // ── device authority (docs/spec/02-keys.md §2.5) ──
  /** The device is not on its account's current device list (never added, revoked, or the account has published no list). */
  DEVICE_NOT_LISTED: 'MW_DEVICE_NOT_LISTED',
  /** A published device list is older than (lower epoch) or conflicts with (same epoch, other bytes; an index reused) the stored one. */
  STALE_DEVICE_LIST: 'MW_STALE_DEVICE_LIST',
  /** An offered certificate renewal is not newer (issuedAt and expiresAt) than the device's registered certificate or the renewal already held for it. */
  STALE_CERTIFICATE: 'MW_STALE_CERTIFICATE',
  // ── node ──
  /** The node is shutting down or not ready; retry elsewhere or later. */
  UNAVAILABLE: 'MW_UNAVAILABLE',
  /** An unexpected node failure; details are in the node's log, never in the reply. */
  INTERNAL: 'MW_INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Any code that may appear on the wire: protocol codes and crypto codes. */
export type WireErrorCode = ErrorCode | CryptoErrorCode;

/** HTTP status for each protocol code. */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = Object.freeze({
  [ErrorCode.MALFORMED]: 400,
  [ErrorCode.TOO_LARGE]: 413,
  [ErrorCode.UNSUPPORTED_VERSION]: 400,
  [ErrorCode.UNEXPECTED_FRAME]: 400,
  [ErrorCode.EMPTY_FRAME]: 400,
  [ErrorCode.BAD_REQUEST]: 400,
  [ErrorCode.UNSUPPORTED_MEDIA_TYPE]: 415,
  [ErrorCode.AUTH_REQUIRED]: 401,
  [ErrorCode.AUTH_INVALID]: 401,
  [ErrorCode.AUTH_STALE]: 401,
  [ErrorCode.AUTH_REPLAYED]: 401,
  [ErrorCode.AUTH_WRONG_NODE]: 401,
  [ErrorCode.FORBIDDEN]: 403,
  [ErrorCode.RATE_LIMITED]: 429,
  [ErrorCode.NOT_FOUND]: 404,
  [ErrorCode.QUOTA_EXCEEDED]: 507,
  [ErrorCode.USERNAME_TAKEN]: 409,
  [ErrorCode.UNKNOWN_NAMESPACE]: 404,
  [ErrorCode.BAD_SIGNATURE]: 400,
  [ErrorCode.CONFLICT]: 409,
  [ErrorCode.DEVICE_NOT_LISTED]: 403,
  [ErrorCode.STALE_DEVICE_LIST]: 409,
  [ErrorCode.STALE_CERTIFICATE]: 409,
  [ErrorCode.UNAVAILABLE]: 503,
  [ErrorCode.INTERNAL]: 500,
});

/** Every code in the registry (protocol first, then crypto), for documentation and exhaustiveness tests. */
export const ALL_ERROR_CODES: readonly WireErrorCode[] = Object.freeze([...Object.values(ErrorCode), ...Object.values(CryptoErrorCode)]);

const PROTOCOL_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode));

export function isErrorCode(code: string): code is ErrorCode {
  return PROTOCOL_CODES.has(code);
}

/** A typed protocol failure. Its message is safe to send to the peer. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** For RATE_LIMITED / UNAVAILABLE: how long to wait. */
    readonly retryAfterMs = 0,
  ) {
    super(message);
  }
  get httpStatus(): number {
    return HTTP_STATUS[this.code];
  }
  toJSON(): HttpErrorBody {
    return httpErrorBody(this.code, this.message);
  }
}

/** The JSON shape of every HTTP error reply. */
export interface HttpErrorBody {
  error: { code: WireErrorCode; message: string };
}

export function httpErrorBody(code: WireErrorCode, message: string): HttpErrorBody {
  return { error: { code, message } };
}

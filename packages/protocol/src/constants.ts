/**
 * Every limit of the wire protocol, each with its reason (docs/spec/node-protocol.md §Limits).
 * Limits on cryptographic objects live in @meshwhisper/crypto's constants.ts; the ones repeated
 * here are re-exported from there, never redefined.
 */
import { ARCHIVE_ACCESS_SIGNATURE_LABEL, MAILBOX_ID_LENGTH, MAX_ENVELOPE_SIZE } from '@meshwhisper/crypto';

export { MAILBOX_ID_LENGTH, MAX_ENVELOPE_SIZE };

/** The protocol version this implementation writes. Bumped only for incompatible changes; additive
 *  changes ride on protobuf's unknown-field tolerance and keep the version. */
export const PROTOCOL_VERSION = 2;
/**
 * Versions this implementation can speak, newest first. Version 2 (issue 10) changed device
 * certificates, sealed envelopes, PQXDH headers and bundles; nothing of version 1 is understood.
 */
export const SUPPORTED_PROTOCOL_VERSIONS: readonly number[] = Object.freeze([2]);

/** Largest WebSocket frame either side accepts: one maximal sealed envelope (256 KiB) plus framing,
 *  or a delivery batch; a peer cannot make the other buffer more than this per message. */
export const MAX_FRAME_BYTES = 1024 * 1024;
/** Largest protobuf HTTP body (key uploads with a batch of KEM prekeys are the biggest, ~1.3 KB each). */
export const MAX_HTTP_BODY_BYTES = 512 * 1024;
/**
 * Envelopes per Deliver frame. A frame also stays under MAX_FRAME_BYTES, so with small envelopes
 * a draining device gets ~1,000 per frame and acknowledges them with one Ack (one transaction on
 * the node): per-frame work, not per-envelope work, bounds the drain rate (issue 12).
 */
export const MAX_DELIVER_BATCH = 1024;
/** Ids per Ack frame: one whole Deliver frame can be acknowledged with one Ack (18 KiB). */
export const MAX_ACK_IDS = 1024;
/**
 * Items per POST /v1/send/batch. One message to an account reaches every one of its devices (at most
 * 6 by default, an app may allow more) plus the sender's own other devices; a group message reaches
 * every device of every member, so a sender splits its fan-out into batches of this many. Bounds
 * one request's rate-limit and store work; the whole body stays under MAX_HTTP_BODY_BYTES.
 */
export const MAX_SEND_BATCH_ITEMS = 64;
/** Node-assigned envelope id: 128 random bits, unguessable and free of ordering information. */
export const MESSAGE_ID_LENGTH = 16;

/** Challenge = node public key (32) ‖ nonce (32) ‖ issued-at u64 ms (8). */
export const CHALLENGE_NODE_KEY_LENGTH = 32;
export const CHALLENGE_NONCE_LENGTH = 32;
export const CHALLENGE_LENGTH = CHALLENGE_NODE_KEY_LENGTH + CHALLENGE_NONCE_LENGTH + 8;
/** A challenge older than this is stale: long enough for a slow mobile round trip, short enough
 *  that the node's single-use nonce table stays small. */
export const CHALLENGE_TTL_MS = 60_000;
/** Tolerated clock difference for challenges issued "in the future" (node clock steps). */
export const CHALLENGE_FUTURE_SKEW_MS = 5_000;

/** Delivery tokens a mailbox may hold at once (current + a few being rotated out). */
export const MAX_DELIVERY_TOKENS = 8;
/** Delivery token length bounds: at least 128 bits so a token cannot be guessed. */
export const MIN_DELIVERY_TOKEN_LENGTH = 16;
export const MAX_DELIVERY_TOKEN_LENGTH = 64;

/** Prekeys per kind in one upload: bounds request size and the work of one signature check batch. */
export const MAX_PREKEYS_PER_UPLOAD = 100;

/** Username and namespace syntax: lower-case ASCII letters, digits, '_', '.', '-' (no homoglyphs). */
export const MAX_USERNAME_LENGTH = 64;
export const MAX_NAMESPACE_LENGTH = 64;
export const USERNAME_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
export const NAMESPACE_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

/**
 * Longest validity of a username transfer consent (docs/spec/node-protocol.md §7). The consent is
 * made without the node (it has no challenge) and travels to the current owner out of band, so it
 * needs hours or days; within its lifetime it could be used again (the name given back and then
 * handed over anew), so the lifetime is bounded.
 */
export const MAX_USERNAME_CONSENT_MS = 7 * 24 * 3600 * 1000;

/** Media blob id: 128 random bits, base64url (22 characters). */
export const MEDIA_ID_BYTES = 16;

/**
 * Push wake (docs/push.md). The plaintext of every wake is this constant, byte for byte: a
 * push carries no sender, conversation, count or mailbox id, and every wake has the same size,
 * so the push service learns nothing but "this token was rung". Receivers compare it exactly.
 */
export const PUSH_WAKE_PAYLOAD = '{"mw":"wake","v":1}';
/** Longest Web Push endpoint URL / FCM registration token accepted (real ones are ~150–500). */
export const MAX_PUSH_ENDPOINT_LENGTH = 2048;
/** APNs device token length: Apple's tokens are 32 bytes today and documented as up to 100. */
export const MIN_APNS_TOKEN_LENGTH = 8;
export const MAX_APNS_TOKEN_LENGTH = 100;
/** RFC 8291: the subscription's P-256 key (uncompressed point) and its 16-byte auth secret. */
export const WEB_PUSH_P256DH_LENGTH = 65;
export const WEB_PUSH_AUTH_LENGTH = 16;

/** Content type of protobuf request and response bodies. */
export const CONTENT_TYPE_PROTOBUF = 'application/vnd.meshwhisper.v1+proto';
/** Content type of opaque blob bodies (media, archive). */
export const CONTENT_TYPE_OCTETS = 'application/octet-stream';
/** HTTP header carrying a base64url DeviceAuth or ArchiveAuth. */
export const AUTH_HEADER = 'mw-auth';
/** HTTP header carrying a base64url link-channel token (docs/spec/linking.md §3). */
export const LINK_TOKEN_HEADER = 'mw-link-token';
/**
 * PUT /v1/archive: the archive version the upload replaces (0: none stored yet) — compare-and-swap,
 * docs/spec/node-protocol.md §9. GET /v1/archive and a refused PUT (409) answer with the stored version in it.
 */
export const ARCHIVE_VERSION_HEADER = 'mw-archive-version';

/**
 * Signature labels (domain separation, see @meshwhisper/crypto signedMessage). The archive label
 * is owned by @meshwhisper/crypto (ArchiveAccessKeyPair signs with it; docs/spec/archive.md).
 */
export const AuthLabel = {
  Device: 'MeshWhisper_NodeAuth_v1',
  Archive: ARCHIVE_ACCESS_SIGNATURE_LABEL,
  Username: 'MeshWhisper_Username_v1',
  /** The receiving account's consent to a username transfer (UsernameTransferConsent). */
  UsernameConsent: 'MeshWhisper_UsernameConsent_v1',
} as const;

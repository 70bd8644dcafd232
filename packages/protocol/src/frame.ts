/**
 * The device WebSocket frame (docs/spec/node-protocol.md §Frames): encoding, and a decoder that
 * turns ANY bytes into either a validated Frame or a ProtocolError — it never throws.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { DEVICE_CERTIFICATE_LENGTH, ED25519_SIGNATURE_LENGTH, MAX_DEVICE_CERTIFICATE_LENGTH } from '@meshwhisper/crypto';
import {
  CHALLENGE_LENGTH,
  MAILBOX_ID_LENGTH,
  MAX_ACK_IDS,
  MAX_DELIVER_BATCH,
  MAX_DELIVERY_TOKENS,
  MAX_DELIVERY_TOKEN_LENGTH,
  MAX_ENVELOPE_SIZE,
  MAX_FRAME_BYTES,
  MAX_SEND_BATCH_ITEMS,
  MESSAGE_ID_LENGTH,
  MIN_DELIVERY_TOKEN_LENGTH,
  SUPPORTED_PROTOCOL_VERSIONS,
} from './constants.js';
import { ErrorCode, ProtocolError } from './errors.js';
import type { DeviceAuth } from './gen/meshwhisper/v1/auth_pb.js';
import type { Frame } from './gen/meshwhisper/v1/frame_pb.js';
import { FrameSchema } from './gen/meshwhisper/v1/frame_pb.js';
import type { SendBatchRequest, SendRequest } from './gen/meshwhisper/v1/mailbox_pb.js';
import { EnvelopeClass } from './gen/meshwhisper/v1/mailbox_pb.js';

/** Either a decoded, validated value or the typed reason it was rejected. */
export type Decoded<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ProtocolError };

const ok = <T>(value: T): Decoded<T> => ({ ok: true, value });
const fail = <T>(code: ErrorCode, message: string): Decoded<T> => ({ ok: false, error: new ProtocolError(code, message) });

/** The body kinds a Frame can carry (the `case` of its `body` oneof). */
export type FrameKind = NonNullable<Frame['body']['case']>;

/** Frame fields for `encodeFrame`; `version` defaults to PROTOCOL_VERSION. */
export type FrameInit = MessageInitShape<typeof FrameSchema>;

export function encodeFrame(init: FrameInit): Uint8Array {
  return toBinary(FrameSchema, create(FrameSchema, { version: SUPPORTED_PROTOCOL_VERSIONS[0], ...init }));
}

export interface DecodeFrameOptions {
  /** The version negotiated for this connection; frames in any other version are rejected. */
  readonly version?: number;
  /** Overrides MAX_FRAME_BYTES (only ever downwards makes sense). */
  readonly maxBytes?: number;
}

/**
 * Decodes one binary WebSocket message. Never throws: every failure (oversize, protobuf error,
 * unknown body, invalid field) comes back as a ProtocolError with a stable code.
 */
export function decodeFrame(bytes: Uint8Array, options: DecodeFrameOptions = {}): Decoded<Frame> {
  try {
    if (!(bytes instanceof Uint8Array)) return fail(ErrorCode.MALFORMED, 'frame must be binary');
    const max = options.maxBytes ?? MAX_FRAME_BYTES;
    if (bytes.length > max) return fail(ErrorCode.TOO_LARGE, `frame of ${bytes.length} bytes exceeds ${max}`);
    let frame: Frame;
    try {
      frame = fromBinary(FrameSchema, bytes);
    } catch {
      return fail(ErrorCode.MALFORMED, 'frame is not valid protobuf');
    }
    return validateFrame(frame, options.version);
  } catch {
    // Defensive: validation is total, but the contract is "never another exception".
    return fail(ErrorCode.MALFORMED, 'frame could not be decoded');
  }
}

function validateFrame(frame: Frame, version: number | undefined): Decoded<Frame> {
  const body = frame.body;
  if (body.case === undefined) return fail(ErrorCode.EMPTY_FRAME, 'frame has no body this version understands');
  // ClientHello is the one frame written before a version is agreed: its own `versions` list decides.
  if (body.case !== 'clientHello') {
    if (version !== undefined ? frame.version !== version : !SUPPORTED_PROTOCOL_VERSIONS.includes(frame.version)) {
      return fail(ErrorCode.UNSUPPORTED_VERSION, `frame version ${frame.version} not spoken on this connection`);
    }
  }
  const problem = bodyProblem(body);
  return problem === undefined ? ok(frame) : fail(ErrorCode.BAD_REQUEST, `${body.case}: ${problem}`);
}

/** Returns a description of the first invalid field, or undefined. */
function bodyProblem(body: Frame['body']): string | undefined {
  switch (body.case) {
    case 'clientHello':
      return body.value.versions.length === 0 || body.value.versions.length > 16 ? 'versions must list 1 to 16 entries' : undefined;
    case 'serverHello':
      return lengthIn(body.value.challenge, [0, CHALLENGE_LENGTH], 'challenge');
    case 'authenticate':
      return deviceAuthProblem(body.value);
    case 'authenticated':
      return lengthIn(body.value.mailboxId, [MAILBOX_ID_LENGTH], 'mailboxId');
    case 'error':
      return body.value.code.length > 64 || body.value.message.length > 1024 ? 'error code or message too long' : undefined;
    case 'ok':
    case 'queueEmpty':
    case 'gapNotice':
      return undefined;
    case 'deliver': {
      const envs = body.value.envelopes;
      if (envs.length === 0 || envs.length > MAX_DELIVER_BATCH) return `1 to ${MAX_DELIVER_BATCH} envelopes`;
      for (const e of envs) {
        const p = lengthIn(e.id, [0, MESSAGE_ID_LENGTH], 'envelope id') ?? payloadProblem(e.payload) ?? classProblem(e.class);
        if (p) return p;
      }
      return undefined;
    }
    case 'ack': {
      const ids = body.value.ids;
      if (ids.length === 0 || ids.length > MAX_ACK_IDS) return `1 to ${MAX_ACK_IDS} ids`;
      for (const id of ids) if (id.length !== MESSAGE_ID_LENGTH) return `ids must be ${MESSAGE_ID_LENGTH} bytes`;
      return undefined;
    }
    case 'setDeliveryTokens': {
      const t = body.value.tokens;
      if (t.length > MAX_DELIVERY_TOKENS) return `at most ${MAX_DELIVERY_TOKENS} tokens`;
      for (const tok of t) if (tokenProblem(tok)) return tokenProblem(tok);
      return undefined;
    }
    case 'send':
      return sendRequestProblem(body.value);
    case 'sendResult':
      return lengthIn(body.value.id, [0, MESSAGE_ID_LENGTH], 'id');
    default:
      return 'unknown body';
  }
}

function lengthIn(b: Uint8Array, allowed: readonly number[], name: string): string | undefined {
  return allowed.includes(b.length) ? undefined : `${name} must be ${allowed.join(' or ')} bytes, got ${b.length}`;
}

function payloadProblem(p: Uint8Array): string | undefined {
  return p.length === 0 || p.length > MAX_ENVELOPE_SIZE ? `payload must be 1 to ${MAX_ENVELOPE_SIZE} bytes` : undefined;
}

function classProblem(c: EnvelopeClass): string | undefined {
  return c === EnvelopeClass.DURABLE || c === EnvelopeClass.EPHEMERAL ? undefined : 'class must be DURABLE or EPHEMERAL';
}

function tokenProblem(t: Uint8Array): string | undefined {
  return t.length < MIN_DELIVERY_TOKEN_LENGTH || t.length > MAX_DELIVERY_TOKEN_LENGTH
    ? `delivery token must be ${MIN_DELIVERY_TOKEN_LENGTH} to ${MAX_DELIVERY_TOKEN_LENGTH} bytes`
    : undefined;
}

/** Field checks of a DeviceAuth (lengths only; the node verifies the signatures). */
export function deviceAuthProblem(a: DeviceAuth): string | undefined {
  return (
    lengthIn(a.challenge, [CHALLENGE_LENGTH], 'challenge') ??
    (a.certificate.length < DEVICE_CERTIFICATE_LENGTH || a.certificate.length > MAX_DEVICE_CERTIFICATE_LENGTH
      ? `certificate must be ${DEVICE_CERTIFICATE_LENGTH} to ${MAX_DEVICE_CERTIFICATE_LENGTH} bytes, got ${a.certificate.length}`
      : undefined) ??
    lengthIn(a.signature, [ED25519_SIGNATURE_LENGTH], 'signature')
  );
}

/** Field checks of a SendRequest, shared by the HTTP and WebSocket send paths. */
export function sendRequestProblem(s: SendRequest): string | undefined {
  return (
    lengthIn(s.mailboxId, [MAILBOX_ID_LENGTH], 'mailboxId') ??
    payloadProblem(s.payload) ??
    classProblem(s.class) ??
    (s.deliveryToken.length === 0 ? undefined : tokenProblem(s.deliveryToken))
  );
}

/** Whole-request checks of a SendBatchRequest (each item is checked on its own: sendRequestProblem). */
export function sendBatchProblem(b: SendBatchRequest): string | undefined {
  return b.items.length === 0 || b.items.length > MAX_SEND_BATCH_ITEMS ? `items must be 1 to ${MAX_SEND_BATCH_ITEMS}, got ${b.items.length}` : undefined;
}

/**
 * Picks the newest version both sides speak (docs/spec/node-protocol.md §Version negotiation),
 * or UNSUPPORTED_VERSION.
 */
export function negotiateVersion(offered: readonly number[], supported: readonly number[] = SUPPORTED_PROTOCOL_VERSIONS): Decoded<number> {
  let best = -1;
  for (const v of offered) if (supported.includes(v) && v > best) best = v;
  return best < 0
    ? fail(ErrorCode.UNSUPPORTED_VERSION, `no common protocol version (offered ${offered.slice(0, 16).join(',') || 'none'}; supported ${supported.join(',')})`)
    : ok(best);
}

/**
 * Hand-written encoders for the two frames a node writes once per message — `deliver` and
 * `send_result` — producing exactly the bytes `encodeFrame` produces (protobuf field order,
 * proto3 defaults omitted; test/fast-frames.test.ts compares them byte for byte), without
 * building protobuf-es message objects: on the node's hot path the generic `create` + `toBinary`
 * and the garbage they leave were a measurable share of each delivered message (issue 12).
 * And a decoder for the two frames a node reads once per message — `send` and `ack` — that
 * returns exactly what `decodeFrame` returns, or hands the bytes to `decodeFrame` itself.
 * Plain Uint8Array code: the package also runs in browsers.
 */
import { MAX_ACK_IDS, MAX_FRAME_BYTES, MESSAGE_ID_LENGTH, SUPPORTED_PROTOCOL_VERSIONS } from './constants.js';
import type { Decoded, DecodeFrameOptions } from './frame.js';
import { decodeFrame, sendRequestProblem } from './frame.js';
import type { Frame } from './gen/meshwhisper/v1/frame_pb.js';
import type { Ack, SendRequest } from './gen/meshwhisper/v1/mailbox_pb.js';

/** What a Deliver frame carries per envelope (`receivedAt` in ms, an integer < 2^53). */
export interface FastEnvelope {
  readonly id: Uint8Array;
  readonly payload: Uint8Array;
  readonly receivedAt: number;
  /** EnvelopeClass value (1 DURABLE, 2 EPHEMERAL); absent: DURABLE (a stored envelope passes as it is). */
  readonly cls?: number;
}

/**
 * Where an encoder writes its frame: `headroom` bytes are left free in front of it (for a transport
 * header: the node puts the WebSocket frame header there and writes one buffer per frame), and
 * `alloc` makes the buffer (the node passes Buffer.allocUnsafe: pooled, no zero fill — the encoder
 * writes every byte of the frame; the headroom is the caller's to fill).
 */
export interface FrameBuffer {
  readonly headroom: number;
  readonly alloc: (size: number) => Uint8Array;
}

const PLAIN: FrameBuffer = { headroom: 0, alloc: (n) => new Uint8Array(n) };

const DURABLE = 1; // EnvelopeClass.DURABLE
const FRAME_VERSION = 1 << 3; // field 1, varint
const FRAME_REQUEST_ID = 2 << 3; // field 2, varint
const FRAME_DELIVER = (20 << 3) | 2; // field 20, length-delimited
const FRAME_SEND_RESULT = (26 << 3) | 2; // field 26, length-delimited

function varintLen(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function putVarint(buf: Uint8Array, o: number, n: number): number {
  while (n >= 0x80) {
    buf[o++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[o++] = n;
  return o;
}

function envelopeLen(e: FastEnvelope): number {
  let len = 0;
  if (e.id.length > 0) len += 1 + varintLen(e.id.length) + e.id.length;
  if (e.payload.length > 0) len += 1 + varintLen(e.payload.length) + e.payload.length;
  if (e.receivedAt !== 0) len += 1 + varintLen(e.receivedAt);
  const cls = e.cls ?? DURABLE;
  if (cls !== 0) len += 1 + varintLen(cls);
  return len;
}

function headerLen(version: number, requestId: number, bodyTag: number, bodyLen: number): number {
  return (version !== 0 ? 1 + varintLen(version) : 0) + (requestId !== 0 ? 1 + varintLen(requestId) : 0) + varintLen(bodyTag) + varintLen(bodyLen);
}

function putHeader(buf: Uint8Array, at: number, version: number, requestId: number, bodyTag: number, bodyLen: number): number {
  let o = at;
  if (version !== 0) {
    buf[o++] = FRAME_VERSION;
    o = putVarint(buf, o, version);
  }
  if (requestId !== 0) {
    buf[o++] = FRAME_REQUEST_ID;
    o = putVarint(buf, o, requestId);
  }
  o = putVarint(buf, o, bodyTag);
  return putVarint(buf, o, bodyLen);
}

/**
 * `encodeFrame({ version, body: { case: 'deliver', value: { envelopes } } })`, byte for byte —
 * after `into.headroom` free bytes when `into` is given.
 */
export function encodeDeliverFrame(version: number, envelopes: readonly FastEnvelope[], into: FrameBuffer = PLAIN): Uint8Array {
  let bodyLen = 0;
  const lens = new Array<number>(envelopes.length);
  for (let i = 0; i < envelopes.length; i++) {
    const l = envelopeLen(envelopes[i]!);
    lens[i] = l;
    bodyLen += 1 + varintLen(l) + l;
  }
  const buf = into.alloc(into.headroom + headerLen(version, 0, FRAME_DELIVER, bodyLen) + bodyLen);
  let o = putHeader(buf, into.headroom, version, 0, FRAME_DELIVER, bodyLen);
  for (let i = 0; i < envelopes.length; i++) {
    const e = envelopes[i]!;
    buf[o++] = 0x0a; // Deliver.envelopes (1)
    o = putVarint(buf, o, lens[i]!);
    if (e.id.length > 0) {
      buf[o++] = 0x0a; // Envelope.id (1)
      o = putVarint(buf, o, e.id.length);
      buf.set(e.id, o);
      o += e.id.length;
    }
    if (e.payload.length > 0) {
      buf[o++] = 0x12; // Envelope.payload (2)
      o = putVarint(buf, o, e.payload.length);
      buf.set(e.payload, o);
      o += e.payload.length;
    }
    if (e.receivedAt !== 0) {
      buf[o++] = 0x18; // Envelope.received_at (3)
      o = putVarint(buf, o, e.receivedAt);
    }
    const cls = e.cls ?? DURABLE;
    if (cls !== 0) {
      buf[o++] = 0x20; // Envelope.class (4)
      o = putVarint(buf, o, cls);
    }
  }
  return buf;
}

/**
 * `encodeFrame({ version, requestId, body: { case: 'sendResult', value: { id, deliveredLive } } })`,
 * byte for byte — after `into.headroom` free bytes when `into` is given.
 */
export function encodeSendResultFrame(version: number, requestId: number, id: Uint8Array, deliveredLive: boolean, into: FrameBuffer = PLAIN): Uint8Array {
  const bodyLen = (id.length > 0 ? 1 + varintLen(id.length) + id.length : 0) + (deliveredLive ? 2 : 0);
  const buf = into.alloc(into.headroom + headerLen(version, requestId, FRAME_SEND_RESULT, bodyLen) + bodyLen);
  let o = putHeader(buf, into.headroom, version, requestId, FRAME_SEND_RESULT, bodyLen);
  if (id.length > 0) {
    buf[o++] = 0x0a; // SendResult.id (1)
    o = putVarint(buf, o, id.length);
    buf.set(id, o);
    o += id.length;
  }
  if (deliveredLive) {
    buf[o] = 0x10; // SendResult.delivered_live (2)
    buf[o + 1] = 1;
  }
  return buf;
}

// ── decoding ──

const KEY_SEND_LO = 0xca; // field 25, wire type 2: varint 202 = 0xca 0x01
const KEY_ACK_LO = 0xaa; // field 21, wire type 2: varint 170 = 0xaa 0x01
const EMPTY = new Uint8Array(0);

/** Reads a varint of at most 4 bytes (< 2^28) at `o`; returns the value and sets `at.o`, or -1 (the caller falls back). */
function varint(b: Uint8Array, at: { o: number }): number {
  let o = at.o;
  let v = 0;
  for (let shift = 0; shift < 28; shift += 7) {
    if (o >= b.length) return -1;
    const x = b[o++]!;
    v |= (x & 0x7f) << shift;
    if (x < 0x80) {
      at.o = o;
      return v;
    }
  }
  return -1;
}

/** A length-delimited field's bytes (a view, as protobuf-es returns them) at `at.o`, or undefined. */
function lenBytes(b: Uint8Array, at: { o: number }, end: number): Uint8Array<ArrayBuffer> | undefined {
  const len = varint(b, at);
  if (len < 0 || at.o + len > end) return undefined;
  // A view of the input, typed as protobuf-es types its views (decodeFrame's input is a plain Uint8Array too).
  const v = b.subarray(at.o, at.o + len) as Uint8Array<ArrayBuffer>;
  at.o += len;
  return v;
}

function sendBody(b: Uint8Array, at: { o: number }, end: number): SendRequest | undefined {
  let mailboxId = EMPTY;
  let payload = EMPTY;
  let cls = 0;
  let deliveryToken = EMPTY;
  let last = 0;
  while (at.o < end) {
    const key = b[at.o++]!;
    // Fields 1–4 once each, in field order: anything else (repeats, unknown fields, other wire types) falls back.
    if (key >> 3 <= last) return undefined;
    last = key >> 3;
    if (key === 0x0a || key === 0x12 || key === 0x22) {
      const v = lenBytes(b, at, end);
      if (v === undefined) return undefined;
      if (key === 0x0a) mailboxId = v;
      else if (key === 0x12) payload = v;
      else deliveryToken = v;
    } else if (key === 0x18) {
      if (at.o >= end || b[at.o]! >= 0x80) return undefined;
      cls = b[at.o++]!;
    } else return undefined;
  }
  return { $typeName: 'meshwhisper.v1.SendRequest', mailboxId, payload, class: cls, deliveryToken };
}

function ackBody(b: Uint8Array, at: { o: number }, end: number): Ack | undefined {
  const ids: Uint8Array[] = [];
  while (at.o < end) {
    if (b[at.o] !== 0x0a || b[at.o + 1] !== MESSAGE_ID_LENGTH || at.o + 2 + MESSAGE_ID_LENGTH > end) return undefined;
    ids.push(b.subarray(at.o + 2, at.o + 2 + MESSAGE_ID_LENGTH) as Uint8Array<ArrayBuffer>);
    at.o += 2 + MESSAGE_ID_LENGTH;
  }
  return ids.length === 0 || ids.length > MAX_ACK_IDS ? undefined : { $typeName: 'meshwhisper.v1.Ack', ids };
}

/**
 * The hand-written path of decodeFrameFast: a `send` or `ack` frame in the canonical layout
 * (version, request id, body — each at most once, in field order, no unknown field) whose fields
 * pass decodeFrame's checks, decoded to the same Frame; undefined for anything else.
 * Exported for the tests (which prove the fast path is taken), not from the package.
 */
export function decodeHotFrame(b: Uint8Array, version: number | undefined): Frame | undefined {
  const at = { o: 0 };
  let v = 0;
  let requestId = 0;
  if (b[0] === 0x08) {
    at.o = 1;
    v = varint(b, at);
    if (v < 0) return undefined;
  }
  if (b[at.o] === 0x10) {
    at.o++;
    requestId = varint(b, at);
    if (requestId < 0) return undefined;
  }
  if (version !== undefined ? v !== version : !SUPPORTED_PROTOCOL_VERSIONS.includes(v)) return undefined;
  const k = b[at.o];
  if ((k !== KEY_SEND_LO && k !== KEY_ACK_LO) || b[at.o + 1] !== 0x01) return undefined;
  at.o += 2;
  const len = varint(b, at);
  // The body ends the frame: a field after it (or a second body, which protobuf would merge) falls back.
  if (len < 0 || at.o + len !== b.length) return undefined;
  if (k === KEY_SEND_LO) {
    const value = sendBody(b, at, b.length);
    if (value === undefined || sendRequestProblem(value) !== undefined) return undefined;
    return { $typeName: 'meshwhisper.v1.Frame', version: v, requestId, body: { case: 'send', value } };
  }
  const value = ackBody(b, at, b.length);
  return value === undefined ? undefined : { $typeName: 'meshwhisper.v1.Frame', version: v, requestId, body: { case: 'ack', value } };
}

/**
 * `decodeFrame`, with the two frames a node reads once per message — `send` and `ack` — decoded
 * by hand (no protobuf-es reader, no generic message objects): same result, fewer allocations.
 * Everything the hand-written path does not take in full (other bodies, unusual encodings,
 * invalid fields, oversize frames) goes to decodeFrame, so every error is decodeFrame's own typed
 * error. test/fast-frames.test.ts checks equality against decodeFrame on random and mutated frames.
 */
export function decodeFrameFast(bytes: Uint8Array, options: DecodeFrameOptions = {}): Decoded<Frame> {
  if (bytes instanceof Uint8Array && bytes.length <= (options.maxBytes ?? MAX_FRAME_BYTES)) {
    const f = decodeHotFrame(bytes, options.version);
    if (f !== undefined) return { ok: true, value: f };
  }
  return decodeFrame(bytes, options);
}

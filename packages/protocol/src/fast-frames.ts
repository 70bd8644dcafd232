/**
 * Hand-written encoders for the two frames a node writes once per message — `deliver` and
 * `send_result` — producing exactly the bytes `encodeFrame` produces (protobuf field order,
 * proto3 defaults omitted; test/fast-frames.test.ts compares them byte for byte), without
 * building protobuf-es message objects: on the node's hot path the generic `create` + `toBinary`
 * and the garbage they leave were a measurable share of each delivered message (issue 12).
 * Plain Uint8Array code: the package also runs in browsers.
 */

/** What a Deliver frame carries per envelope (`receivedAt` in ms, an integer < 2^53). */
export interface FastEnvelope {
  readonly id: Uint8Array;
  readonly payload: Uint8Array;
  readonly receivedAt: number;
  /** EnvelopeClass value (1 DURABLE, 2 EPHEMERAL); absent: DURABLE (a stored envelope passes as it is). */
  readonly cls?: number;
}

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

function putHeader(buf: Uint8Array, version: number, requestId: number, bodyTag: number, bodyLen: number): number {
  let o = 0;
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

/** `encodeFrame({ version, body: { case: 'deliver', value: { envelopes } } })`, byte for byte. */
export function encodeDeliverFrame(version: number, envelopes: readonly FastEnvelope[]): Uint8Array {
  let bodyLen = 0;
  const lens = new Array<number>(envelopes.length);
  for (let i = 0; i < envelopes.length; i++) {
    const l = envelopeLen(envelopes[i]!);
    lens[i] = l;
    bodyLen += 1 + varintLen(l) + l;
  }
  const buf = new Uint8Array(headerLen(version, 0, FRAME_DELIVER, bodyLen) + bodyLen);
  let o = putHeader(buf, version, 0, FRAME_DELIVER, bodyLen);
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

/** `encodeFrame({ version, requestId, body: { case: 'sendResult', value: { id, deliveredLive } } })`, byte for byte. */
export function encodeSendResultFrame(version: number, requestId: number, id: Uint8Array, deliveredLive: boolean): Uint8Array {
  const bodyLen = (id.length > 0 ? 1 + varintLen(id.length) + id.length : 0) + (deliveredLive ? 2 : 0);
  const buf = new Uint8Array(headerLen(version, requestId, FRAME_SEND_RESULT, bodyLen) + bodyLen);
  let o = putHeader(buf, version, requestId, FRAME_SEND_RESULT, bodyLen);
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

/**
 * Hot-path frame codec of the load generator: hand-written protobuf for the four frames that carry
 * the load (send, send_result, deliver, ack), so that the generator spends its one core on load and
 * not on generic protobuf machinery. `selfCheck()` proves at start-up that it produces and reads
 * exactly what @meshwhisper/protocol's encodeFrame/decodeFrame do (frame.proto field numbers);
 * everything else (hello, authenticate, errors) goes through the library.
 */
import { EnvelopeClass, PROTOCOL_VERSION, decodeFrame, encodeFrame } from '@meshwhisper/protocol';

/** Frame body field numbers (packages/protocol/proto/meshwhisper/v1/frame.proto). */
export const F = { error: 14, ok: 15, deliver: 20, ack: 21, gapNotice: 22, queueEmpty: 23, send: 25, sendResult: 26 } as const;

function varintLen(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function putVarint(buf: Buffer, off: number, n: number): number {
  while (n >= 0x80) {
    buf[off++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[off++] = n;
  return off;
}

function readVarint(buf: Uint8Array, pos: { p: number }): number {
  let result = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    const b = buf[pos.p++];
    if (b === undefined) throw new RangeError('truncated varint');
    result += (b & 0x7f) * mul;
    if (b < 0x80) return result;
    mul *= 128;
  }
  throw new RangeError('varint too long');
}

/** Frame header: version (1) = PROTOCOL_VERSION, request_id (2) if non-zero, then the body's tag and length. */
function frameHeader(requestId: number, bodyField: number, bodyLen: number): Buffer {
  const tag = (bodyField << 3) | 2;
  const len = 2 + (requestId ? 1 + varintLen(requestId) : 0) + varintLen(tag) + varintLen(bodyLen);
  const buf = Buffer.allocUnsafe(len + bodyLen);
  let o = 0;
  buf[o++] = 0x08;
  buf[o++] = PROTOCOL_VERSION;
  if (requestId) {
    buf[o++] = 0x10;
    o = putVarint(buf, o, requestId);
  }
  o = putVarint(buf, o, tag);
  putVarint(buf, o, bodyLen);
  return buf;
}

/** Frame{ version PROTOCOL_VERSION, request_id, send: SendRequest{ mailbox_id, payload, class DURABLE, delivery_token } }. */
export function encodeSend(requestId: number, mailbox: Uint8Array, payload: Uint8Array, token: Uint8Array): Buffer {
  const bodyLen = 2 + mailbox.length + 1 + varintLen(payload.length) + payload.length + 2 + (token.length ? 2 + token.length : 0);
  const buf = frameHeader(requestId, F.send, bodyLen);
  let o = buf.length - bodyLen;
  buf[o++] = 0x0a;
  buf[o++] = mailbox.length;
  buf.set(mailbox, o);
  o += mailbox.length;
  buf[o++] = 0x12;
  o = putVarint(buf, o, payload.length);
  buf.set(payload, o);
  o += payload.length;
  buf[o++] = 0x18;
  buf[o++] = EnvelopeClass.DURABLE;
  if (token.length) {
    buf[o++] = 0x22;
    buf[o++] = token.length;
    buf.set(token, o);
  }
  return buf;
}

/** Frame{ version PROTOCOL_VERSION, request_id, ack: Ack{ ids } } (ids are 16 bytes). */
export function encodeAck(requestId: number, ids: readonly Uint8Array[]): Buffer {
  const bodyLen = ids.length * 18;
  const buf = frameHeader(requestId, F.ack, bodyLen);
  let o = buf.length - bodyLen;
  for (const id of ids) {
    buf[o++] = 0x0a;
    buf[o++] = id.length;
    buf.set(id, o);
    o += id.length;
  }
  return buf;
}

export interface TopFrame {
  requestId: number;
  /** Body field number (0: none). */
  field: number;
  body: Uint8Array;
}

/** Top level of a Frame: request id, which body, and the body's bytes (not decoded). */
export function decodeTop(buf: Uint8Array): TopFrame {
  const pos = { p: 0 };
  let requestId = 0;
  let field = 0;
  let body: Uint8Array = buf.subarray(0, 0);
  while (pos.p < buf.length) {
    const key = readVarint(buf, pos);
    const fno = Math.floor(key / 8);
    const wt = key & 7;
    if (wt === 0) {
      const v = readVarint(buf, pos);
      if (fno === 2) requestId = v;
    } else if (wt === 2) {
      const len = readVarint(buf, pos);
      const sub = buf.subarray(pos.p, pos.p + len);
      pos.p += len;
      if (fno >= 10) {
        field = fno;
        body = sub;
      }
    } else throw new RangeError(`unexpected wire type ${wt}`);
  }
  return { requestId, field, body };
}

export interface FastEnvelope {
  id: Uint8Array;
  payload: Uint8Array;
}

/** Deliver{ repeated Envelope{ id, payload, received_at, class } } → ids and payloads (views, no copy). */
export function decodeDeliver(body: Uint8Array): FastEnvelope[] {
  const out: FastEnvelope[] = [];
  const pos = { p: 0 };
  while (pos.p < body.length) {
    const key = readVarint(body, pos);
    const len = readVarint(body, pos);
    if (key !== 0x0a) {
      pos.p += len;
      continue;
    }
    const end = pos.p + len;
    let id: Uint8Array = body.subarray(0, 0);
    let payload: Uint8Array = body.subarray(0, 0);
    while (pos.p < end) {
      const k = readVarint(body, pos);
      const wt = k & 7;
      if (wt === 0) {
        readVarint(body, pos);
        continue;
      }
      const l = readVarint(body, pos);
      const v = body.subarray(pos.p, pos.p + l);
      pos.p += l;
      if (k === 0x0a) id = v;
      else if (k === 0x12) payload = v;
    }
    out.push({ id, payload });
  }
  return out;
}

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

/** Throws unless the hand-written codec agrees byte for byte with @meshwhisper/protocol. */
export function selfCheck(): void {
  const mailbox = new Uint8Array(32).fill(7);
  const payload = new Uint8Array(1024).map((_, i) => i * 31);
  const token = new Uint8Array(32).fill(9);
  for (const requestId of [0, 1, 127, 128, 300_000]) {
    const mine = encodeSend(requestId, mailbox, payload, token);
    const lib = encodeFrame({ version: PROTOCOL_VERSION, requestId, body: { case: 'send', value: { mailboxId: mailbox, payload, class: EnvelopeClass.DURABLE, deliveryToken: token } } });
    if (!same(mine, lib)) throw new Error(`encodeSend differs from encodeFrame (requestId ${requestId})`);
    const ids = [new Uint8Array(16).fill(1), new Uint8Array(16).fill(2)];
    const ack = encodeAck(requestId, ids);
    const libAck = encodeFrame({ version: PROTOCOL_VERSION, requestId, body: { case: 'ack', value: { ids } } });
    if (!same(ack, libAck)) throw new Error(`encodeAck differs from encodeFrame (requestId ${requestId})`);
    const d = decodeFrame(new Uint8Array(ack));
    if (!d.ok || d.value.body.case !== 'ack') throw new Error('library does not decode encodeAck output');
  }
  const envelopes = [1, 2, 3].map((k) => ({ id: new Uint8Array(16).fill(k), payload: payload.slice(k), receivedAt: BigInt(Date.now()), class: EnvelopeClass.DURABLE }));
  const deliver = encodeFrame({ version: PROTOCOL_VERSION, requestId: 0, body: { case: 'deliver', value: { envelopes } } });
  const top = decodeTop(deliver);
  if (top.field !== F.deliver) throw new Error('decodeTop: wrong body field');
  const got = decodeDeliver(top.body);
  if (got.length !== 3 || got.some((e, i) => !same(e.id, envelopes[i]!.id) || !same(e.payload, envelopes[i]!.payload))) throw new Error('decodeDeliver differs from the library');
  const sr = encodeFrame({ version: PROTOCOL_VERSION, requestId: 4242, body: { case: 'sendResult', value: { id: new Uint8Array(16), deliveredLive: true } } });
  const t2 = decodeTop(sr);
  if (t2.requestId !== 4242 || t2.field !== F.sendResult) throw new Error('decodeTop: sendResult');
}

/**
 * Hot-path frame codec of the load generator: hand-written protobuf for the four frames that carry
 * the load (send, send_result, deliver, ack), so that the generator spends its one core on load and
 * not on generic protobuf machinery. `selfCheck()` proves at start-up that it produces and reads
 * exactly what @meshwhisper/protocol's encodeFrame/decodeFrame do (frame.proto field numbers);
 * everything else (hello, authenticate, errors) goes through the library.
 */
import { EnvelopeClass, PROTOCOL_VERSION, decodeFrame, encodeFrame } from '@meshwhisper/protocol';
import { MASK_BYTE, clientHeaderLength, frameBuffer, maskInPlace, putClientHeader } from './rfc6455.js';

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

function putVarint(buf: Uint8Array, off: number, n: number): number {
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

/** Length of a SendRequest body { mailbox_id, payload, class DURABLE, delivery_token } (mailbox and token < 128 bytes). */
function sendBodyLength(mailbox: Uint8Array, payload: Uint8Array, token: Uint8Array): number {
  return 2 + mailbox.length + 1 + varintLen(payload.length) + payload.length + 2 + (token.length ? 2 + token.length : 0);
}

/** Writes that body at `o`; returns where the payload starts. */
function writeSendBody(buf: Uint8Array, o: number, mailbox: Uint8Array, payload: Uint8Array, token: Uint8Array): number {
  buf[o++] = 0x0a;
  buf[o++] = mailbox.length;
  buf.set(mailbox, o);
  o += mailbox.length;
  buf[o++] = 0x12;
  o = putVarint(buf, o, payload.length);
  const payloadAt = o;
  buf.set(payload, o);
  o += payload.length;
  buf[o++] = 0x18;
  buf[o++] = EnvelopeClass.DURABLE;
  if (token.length) {
    buf[o++] = 0x22;
    buf[o++] = token.length;
    buf.set(token, o);
  }
  return payloadAt;
}

/** Frame{ version PROTOCOL_VERSION, request_id, send: SendRequest{ mailbox_id, payload, class DURABLE, delivery_token } }. */
export function encodeSend(requestId: number, mailbox: Uint8Array, payload: Uint8Array, token: Uint8Array): Buffer {
  const bodyLen = sendBodyLength(mailbox, payload, token);
  const buf = frameHeader(requestId, F.send, bodyLen);
  writeSendBody(buf, buf.length - bodyLen, mailbox, payload, token);
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
  selfCheckHotPath(mailbox, payload, token);
}

/** The payload of one client frame (rfc6455.ts), checked field by field and unmasked. */
function clientPayload(frame: Buffer): Buffer {
  if (frame[0] !== 0x82 || (frame[1]! & 0x80) === 0) throw new Error('client frame: not a final masked binary frame');
  const l7 = frame[1]! & 0x7f;
  const len = l7 < 126 ? l7 : l7 === 126 ? frame.readUInt16BE(2) : frame.readUInt32BE(6) + frame.readUInt32BE(2) * 2 ** 32;
  const h = clientHeaderLength(len);
  if (frame.readUInt32BE(h - 4) !== MASK_BYTE * 0x01010101) throw new Error('client frame: masking key is not MASK_BYTE × 4');
  if (frame.length !== h + len) throw new Error(`client frame: length ${len} + header ${h} ≠ ${frame.length}`);
  if ((l7 === 126 && len < 126) || (l7 === 127 && len < 65536)) throw new Error('client frame: length not in its shortest form (§5.2)');
  const out = Buffer.from(frame.subarray(h));
  for (let i = 0; i < out.length; i++) out[i]! ^= frame[h - 4 + (i & 3)]!;
  return out;
}

/** sendFrame, ackDeliver and readTop against @meshwhisper/protocol, byte for byte. */
function selfCheckHotPath(mailbox: Uint8Array, payload: Uint8Array, token: Uint8Array): void {
  for (const tok of [token, new Uint8Array(0)]) {
    const t = sendTemplate(mailbox, tok, payload);
    for (const requestId of [0, 1, 127, 128, 16_383, 16_384, 300_000, 0x7fffffff]) {
      const intended = 123_456.789 + requestId;
      const mine = clientPayload(sendFrame(requestId, t, intended, requestId ^ 0x5a5a));
      const p = Buffer.from(payload);
      p.writeDoubleLE(intended, 0);
      p.writeUInt32LE(requestId ^ 0x5a5a, 8);
      const lib = encodeFrame({ version: PROTOCOL_VERSION, requestId, body: { case: 'send', value: { mailboxId: mailbox, payload: p, class: EnvelopeClass.DURABLE, deliveryToken: tok } } });
      if (!same(mine, lib)) throw new Error(`sendFrame differs from encodeFrame (requestId ${requestId}, token ${tok.length} B)`);
      if (readTop(mine, 0, mine.length) !== F.send || top.requestId !== requestId) throw new Error('readTop: send');
    }
  }
  const stats = { envelopes: 0 };
  for (const n of [0, 1, 2, 7, 200, 1500]) {
    // Ids of 16 bytes are acked; a malformed shorter one (never sent by the node) is delivered but not acked.
    const envelopes = Array.from({ length: n }, (_x, k) => ({ id: new Uint8Array(k === 3 ? 8 : 16).fill(k & 0xff), payload: payload.slice(k % 50), receivedAt: BigInt(1_700_000_000_000 + k), class: EnvelopeClass.DURABLE }));
    const deliver = Buffer.from(encodeFrame({ version: PROTOCOL_VERSION, requestId: 0, body: { case: 'deliver', value: { envelopes } } }));
    // The Deliver inside a larger buffer, as it is in a read chunk.
    const chunk = Buffer.concat([Buffer.from([1, 2, 3]), deliver, Buffer.from([4, 5])]);
    if (readTop(chunk, 3, 3 + deliver.length) !== F.deliver || top.requestId !== 0) throw new Error('readTop: deliver');
    const seen: Buffer[] = [];
    const before = stats.envelopes;
    for (const requestId of [0, 424_242]) {
      seen.length = 0;
      const ack = ackDeliver(chunk, top.start, top.end, (b, s, e) => seen.push(Buffer.from(b.subarray(s, e))), () => requestId, stats);
      if (seen.length !== n || seen.some((x, k) => !same(x, envelopes[k]!.payload))) throw new Error(`ackDeliver: payloads differ from the library's (${n} envelopes)`);
      const ids = envelopes.map((e) => e.id).filter((id) => id.length === 16);
      if (ids.length === 0) {
        if (ack !== undefined) throw new Error('ackDeliver: an Ack with no ids');
        continue;
      }
      const lib = encodeFrame({ version: PROTOCOL_VERSION, requestId, body: { case: 'ack', value: { ids } } });
      if (!ack || !same(clientPayload(ack), lib)) throw new Error(`ackDeliver: Ack differs from encodeFrame (${n} envelopes, requestId ${requestId})`);
    }
    if (stats.envelopes - before !== 2 * n) throw new Error('ackDeliver: envelope count');
  }
  const err = Buffer.from(encodeFrame({ version: PROTOCOL_VERSION, requestId: 99, body: { case: 'error', value: { code: 'MW_RATE_LIMITED', message: 'x' } } }));
  if (readTop(err, 0, err.length) !== F.error || top.requestId !== 99 || !/MW_RATE_LIMITED/.test(err.toString('latin1', top.start, top.end))) throw new Error('readTop: error');
  // The header's 16- and 64-bit lengths.
  for (const len of [0, 125, 126, 65_535, 65_536, 70_000]) {
    const f = Buffer.alloc(clientHeaderLength(len) + len);
    putClientHeader(f, 0, len);
    if (clientPayload(f).length !== len) throw new Error(`putClientHeader: length ${len}`);
  }
}

// ── The hot path with no per-message garbage but the frame itself ──
// Frames are written straight into their WebSocket frame (rfc6455.ts: a masking key of one byte
// four times, so that constant parts are masked once, in advance); frames read are walked in
// place, without objects.

const SEND_TAG = (F.send << 3) | 2;
const ACK_TAG = (F.ack << 3) | 2;

/** Read cursor of the in-place decoders below (one thread, no re-entrance: a module variable). */
let at = 0;
function rv(buf: Uint8Array): number {
  let result = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    const b = buf[at++];
    if (b === undefined) throw new RangeError('truncated varint');
    result += (b & 0x7f) * mul;
    if (b < 0x80) return result;
    mul *= 128;
  }
  throw new RangeError('varint too long');
}
/** Skips a field of wire type `wt` at the cursor. */
function skip(buf: Uint8Array, wt: number): void {
  if (wt === 0) rv(buf);
  else if (wt === 2) at += rv(buf);
  else if (wt === 1) at += 8;
  else if (wt === 5) at += 4;
  else throw new RangeError(`unexpected wire type ${wt}`);
}

/**
 * Everything of a Frame{ send } to one recipient that does not change between sends: the
 * SendRequest body (mailbox_id, payload, class DURABLE, delivery_token) with the payload template
 * in place, MASKED (rfc6455.ts MASK_BYTE); each send copies it and writes its own intended send
 * time and phase tag into the payload's first 12 bytes.
 */
export interface SendTemplate {
  /** The body, masked. */
  readonly body: Buffer;
  /** Where the payload starts in `body`. */
  readonly payloadAt: number;
}

export function sendTemplate(mailbox: Uint8Array, token: Uint8Array, payload: Uint8Array): SendTemplate {
  if (mailbox.length > 127 || token.length > 127) throw new RangeError('sendTemplate: mailbox and token must be under 128 bytes');
  const bodyLen = sendBodyLength(mailbox, payload, token);
  const body = Buffer.allocUnsafe(bodyLen);
  const payloadAt = writeSendBody(body, 0, mailbox, payload, token);
  maskInPlace(body, 0, bodyLen);
  return { body, payloadAt };
}

/** Length of Frame{ version, request_id, <field>: body } for a body of `bodyLen` bytes. */
function frameLength(requestId: number, tag: number, bodyLen: number): number {
  return 2 + (requestId ? 1 + varintLen(requestId) : 0) + varintLen(tag) + varintLen(bodyLen) + bodyLen;
}
/** Writes Frame's version, request_id and the body's key and length at `o`; returns where the body goes. */
function putFrameHead(buf: Buffer, o: number, requestId: number, tag: number, bodyLen: number): number {
  buf[o++] = 0x08;
  buf[o++] = PROTOCOL_VERSION;
  if (requestId) {
    buf[o++] = 0x10;
    o = putVarint(buf, o, requestId);
  }
  o = putVarint(buf, o, tag);
  return putVarint(buf, o, bodyLen);
}

/**
 * One client WebSocket frame carrying Frame{ version, request_id, send: t } whose payload starts
 * with `intendedMs` (float64 LE) and `tag` (uint32 LE); in the output slab (rfc6455.ts frameBuffer):
 * send it in this turn.
 */
export function sendFrame(requestId: number, t: SendTemplate, intendedMs: number, tag: number): Buffer {
  const bodyLen = t.body.length;
  const len = frameLength(requestId, SEND_TAG, bodyLen);
  const buf = frameBuffer(clientHeaderLength(len) + len);
  const head = putClientHeader(buf, 0, len);
  const o = putFrameHead(buf, head, requestId, SEND_TAG, bodyLen);
  maskInPlace(buf, head, o);
  buf.set(t.body, o);
  const p = o + t.payloadAt;
  buf.writeDoubleLE(intendedMs, p);
  buf.writeUInt32LE(tag, p + 8);
  maskInPlace(buf, p, p + 12);
  return buf;
}

/** Frame fields read by readTop(): request id, body field number (0: none), body range. */
export const top = { requestId: 0, field: 0, start: 0, end: 0 };

/** Reads the top level of the Frame in buf[start, end) into `top`; returns the body's field number. */
export function readTop(buf: Buffer, start: number, end: number): number {
  at = start;
  top.requestId = 0;
  top.field = 0;
  top.start = top.end = start;
  while (at < end) {
    const key = rv(buf);
    const fno = key >>> 3;
    const wt = key & 7;
    if (wt === 0 && fno === 2) top.requestId = rv(buf);
    else if (wt === 2 && fno >= 10) {
      const len = rv(buf);
      top.field = fno;
      top.start = at;
      top.end = at += len;
    } else skip(buf, wt);
  }
  if (at !== end) throw new RangeError('frame: field runs past the end');
  return top.field;
}

/** Offsets of the 16-byte ids of the Deliver being read (reused; grows as needed). */
let idAt = new Int32Array(1024);

/**
 * Deliver{ repeated Envelope{ id, payload, received_at, class } } in buf[start, end): calls
 * `onEnvelope(buf, payloadStart, payloadEnd)` for each envelope, in order, then returns one client
 * WebSocket frame carrying Frame{ version, request_id: ackRequestId(), ack: Ack{ ids } } for every
 * 16-byte id (undefined if there are none), in the output slab like sendFrame's. Counts the envelopes into `stats.envelopes`.
 */
export function ackDeliver(buf: Buffer, start: number, end: number, onEnvelope: (buf: Buffer, start: number, end: number) => void, ackRequestId: () => number, stats: { envelopes: number }): Buffer | undefined {
  let n = 0;
  at = start;
  while (at < end) {
    const key = rv(buf);
    if (key !== 0x0a) {
      skip(buf, key & 7);
      continue;
    }
    const envEnd = rv(buf) + at;
    let id = -1;
    let idLen = 0;
    let p0 = at;
    let p1 = at;
    while (at < envEnd) {
      const k = rv(buf);
      if (k === 0x0a) {
        idLen = rv(buf);
        id = at;
        at += idLen;
      } else if (k === 0x12) {
        const l = rv(buf);
        p0 = at;
        p1 = at += l;
      } else skip(buf, k & 7);
    }
    if (at !== envEnd) throw new RangeError('envelope: field runs past the end');
    stats.envelopes++;
    if (idLen === 16) {
      if (n === idAt.length) {
        const bigger = new Int32Array(n * 2);
        bigger.set(idAt);
        idAt = bigger;
      }
      idAt[n++] = id;
    }
    const resume = at;
    onEnvelope(buf, p0, p1);
    at = resume; // onEnvelope may have read other frames
  }
  if (at !== end) throw new RangeError('deliver: field runs past the end');
  if (n === 0) return undefined;
  const requestId = ackRequestId();
  const bodyLen = n * 18;
  const len = frameLength(requestId, ACK_TAG, bodyLen);
  const out = frameBuffer(clientHeaderLength(len) + len);
  const head = putClientHeader(out, 0, len);
  let o = putFrameHead(out, head, requestId, ACK_TAG, bodyLen);
  for (let i = 0; i < n; i++) {
    out[o++] = 0x0a;
    out[o++] = 16;
    const s = idAt[i]!;
    for (let j = 0; j < 16; j++) out[o++] = buf[s + j]!;
  }
  maskInPlace(out, head, o);
  return out;
}

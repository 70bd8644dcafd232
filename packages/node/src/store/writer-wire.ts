/**
 * The byte layout between SqliteNodeStore (main thread) and its writer thread
 * (sqlite-writer.worker.js). A group of sends or acks crosses as ONE transferred ArrayBuffer, not
 * as structured-cloned objects: a Uint8Array view (a payload decoded from a WebSocket frame)
 * would be cloned with its whole underlying buffer, and a clone per field allocates on both sides.
 *
 *   enqueue group: u32 count, then per item:
 *     u16 |mailbox| mailbox, u16 |id| id, u16 |tokenHash| (0: tokenless lane) tokenHash,
 *     f64 receivedAt, u32 |payload| payload
 *   ack group: u32 count, then per request: u16 |mailbox| mailbox, u32 n, n × (u16 |id| id, f64 seq)
 *     (seq 0: unknown, the writer looks the id up)
 *
 * Integers are little-endian. The worker reads the same layout (it is plain JavaScript: worker
 * threads cannot load TypeScript sources under every runner the node has: tsx, vitest, dist).
 */
import type { AckRequest, EnqueueItem } from './node-store.js';

function bytesOf(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new TypeError(`${what} must be a Uint8Array`);
  if (v.length > 0xffff && what !== 'payload') throw new RangeError(`${what} too long`);
  return v;
}

export function packEnqueue(items: readonly EnqueueItem[]): ArrayBuffer {
  let size = 4;
  for (const it of items) {
    const th = it.tokenHash === undefined ? 0 : bytesOf(it.tokenHash, 'tokenHash').length;
    size += 2 + bytesOf(it.mailbox, 'mailbox').length + 2 + bytesOf(it.id, 'id').length + 2 + th + 8 + 4 + bytesOf(it.payload, 'payload').length;
    if (!Number.isFinite(it.receivedAt)) throw new TypeError('receivedAt must be a number');
  }
  const buf = new ArrayBuffer(size);
  const u8 = new Uint8Array(buf);
  const dv = new DataView(buf);
  dv.setUint32(0, items.length, true);
  let o = 4;
  const put16 = (b: Uint8Array): void => {
    dv.setUint16(o, b.length, true);
    u8.set(b, o + 2);
    o += 2 + b.length;
  };
  for (const it of items) {
    put16(it.mailbox);
    put16(it.id);
    if (it.tokenHash === undefined) {
      dv.setUint16(o, 0, true);
      o += 2;
    } else put16(it.tokenHash);
    dv.setFloat64(o, it.receivedAt, true);
    dv.setUint32(o + 8, it.payload.length, true);
    u8.set(it.payload, o + 12);
    o += 12 + it.payload.length;
  }
  return buf;
}

export function packAcks(requests: readonly AckRequest[]): ArrayBuffer {
  let size = 4;
  for (const r of requests) {
    size += 2 + bytesOf(r.mailbox, 'mailbox').length + 4;
    for (const id of r.ids) size += 2 + bytesOf(id, 'id').length + 8;
    if (r.seqs !== undefined && r.seqs.length !== r.ids.length) throw new RangeError('ack: seqs must match ids');
  }
  const buf = new ArrayBuffer(size);
  const u8 = new Uint8Array(buf);
  const dv = new DataView(buf);
  dv.setUint32(0, requests.length, true);
  let o = 4;
  for (const r of requests) {
    dv.setUint16(o, r.mailbox.length, true);
    u8.set(r.mailbox, o + 2);
    o += 2 + r.mailbox.length;
    dv.setUint32(o, r.ids.length, true);
    o += 4;
    for (let i = 0; i < r.ids.length; i++) {
      const id = r.ids[i]!;
      dv.setUint16(o, id.length, true);
      u8.set(id, o + 2);
      o += 2 + id.length;
      dv.setFloat64(o, r.seqs?.[i] ?? 0, true);
      o += 8;
    }
  }
  return buf;
}

/** Refusal codes in an enqueue result (a result is `seq > 0` or one of these, negated). */
export const REFUSALS = ['', 'unknown-mailbox', 'bad-token', 'lane-full', 'mailbox-full'] as const;

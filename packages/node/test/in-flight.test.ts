import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { InFlightTable, NOT_SETTLED, SETTLED, SETTLED_ACKED } from '../src/socket/in-flight.js';
import { xorshift32 } from './helpers.js';

const AHEAD = -1;
const hexOf = (id: Uint8Array): string => Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex');
/** A 16-byte id as a view at an odd offset of a larger buffer (as ids arrive: subarrays of frames and blocks). */
const viewOf = (bytes: Uint8Array): Uint8Array => {
  const b = new Uint8Array(bytes.length + 7);
  b.set(bytes, 3);
  return b.subarray(3, 3 + bytes.length);
};

describe('InFlightTable (a device connection\'s unacknowledged envelopes)', () => {
  it('agrees with a Map under random adds, deletes, settlements and acks, across growth, wrap-around and shrink (seqs, marks and attached refs)', () => {
    const rand = xorshift32(0x1f2e3d4c);
    const t = new InFlightTable();
    const model = new Map<string, { seq: number; acked: boolean; ref: object | undefined }>();
    const pool = Array.from({ length: 3000 }, () => new Uint8Array(randomBytes(16)));
    let checks = 0;
    let largest = 0;
    let emptiedAfterLarge = 0;
    for (let step = 0; step < 60_000; step++) {
      // Phases that grow the table towards ~2,500 entries and drain it again to zero (shrink).
      const growing = Math.floor(step / 6_000) % 2 === 0;
      const id = viewOf(pool[rand() % pool.length]!);
      const key = hexOf(id);
      const op = rand() % 10;
      if (op < (growing ? 6 : 3)) {
        const seq = rand() % 3 === 0 ? AHEAD : 1 + (rand() % 1_000_000);
        // An AHEAD entry carries its send (device.ts: retractAcked), as a fresh object.
        const ref = seq === AHEAD ? { key } : undefined;
        const added = t.add(id, seq, ref);
        expect(added).toBe(!model.has(key));
        if (added) model.set(key, { seq, acked: false, ref });
      } else if (op < 8) {
        expect(t.delete(id)).toBe(model.delete(key));
      } else if (op < 9) {
        const m = model.get(key);
        const marked = t.markAcked(id, AHEAD);
        expect(marked).toBe(m?.seq === AHEAD);
        if (marked) m!.acked = true;
      } else {
        const m = model.get(key);
        const seq = 1 + (rand() % 1_000_000);
        const r = t.settle(id, AHEAD, seq);
        if (m?.seq !== AHEAD) expect(r).toBe(NOT_SETTLED);
        else {
          expect(r).toBe(m.acked ? SETTLED_ACKED : SETTLED);
          m.seq = seq;
          m.acked = false;
          m.ref = undefined; // dropped as the entry settles
        }
      }
      expect(t.size).toBe(model.size);
      largest = Math.max(largest, t.size);
      if (step % 12_000 === 11_999) {
        // The end of a draining phase: the rest is acknowledged, in pool order.
        for (const p of pool) if (t.delete(viewOf(p)) !== model.delete(hexOf(p))) expect.fail('delete disagrees');
        expect(t.size).toBe(0);
        if (largest > 512) emptiedAfterLarge++;
      }
      if (step % 499 === 0) {
        // Plain comparisons (a vitest expect per id would dominate the run time).
        let wrong = 0;
        for (const p of pool) if (t.get(p) !== model.get(hexOf(p))?.seq || t.has(viewOf(p)) !== model.has(hexOf(p)) || t.ref(p) !== model.get(hexOf(p))?.ref) wrong++;
        expect(wrong).toBe(0);
        checks++;
      }
    }
    expect(checks).toBeGreaterThan(100);
    // The run did grow past 1,024 slots (512 entries) and empty again (the shrink).
    expect(largest).toBeGreaterThan(512);
    expect(emptiedAfterLarge).toBeGreaterThan(0);
  });

  it('finds nothing for ids of another length, and refuses to store them', () => {
    const t = new InFlightTable();
    const id = new Uint8Array(randomBytes(16));
    t.add(id, 7);
    expect(t.get(id.subarray(0, 15))).toBeUndefined();
    expect(t.has(new Uint8Array(0))).toBe(false);
    expect(t.delete(new Uint8Array(17))).toBe(false);
    expect(() => t.add(new Uint8Array(15), 1)).toThrow(RangeError);
    expect(() => t.add(new Uint8Array(0), 1)).toThrow(RangeError);
    expect(t.size).toBe(1);
    expect(t.get(id)).toBe(7);
  });

  it('holds a full delivery window (16,384), and keeps its answers exact for ids that differ in one byte only', () => {
    const t = new InFlightTable();
    const base = new Uint8Array(randomBytes(16));
    const ids: Uint8Array[] = [];
    for (let i = 0; i < 16_384; i++) {
      const id = base.slice();
      // Crafted-looking ids: all equal but for two bytes at the end.
      id[14] = i & 0xff;
      id[15] = i >> 8;
      ids.push(id);
      expect(t.add(id, i + 1)).toBe(true);
    }
    expect(t.size).toBe(16_384);
    for (let i = 0; i < ids.length; i++) expect(t.get(ids[i]!)).toBe(i + 1);
    const absent = base.slice();
    absent[15] = 0xff;
    absent[14] = 0xff;
    expect(t.get(absent)).toBeUndefined();
    for (let i = 0; i < ids.length; i += 2) expect(t.delete(ids[i]!)).toBe(true);
    for (let i = 0; i < ids.length; i++) expect(t.get(ids[i]!)).toBe(i % 2 === 0 ? undefined : i + 1);
    for (let i = 1; i < ids.length; i += 2) expect(t.delete(ids[i]!)).toBe(true);
    expect(t.size).toBe(0);
    // Emptied after growing large: small again, and usable.
    t.add(base, 3);
    expect(t.get(base)).toBe(3);
    t.clear();
    expect(t.size).toBe(0);
    expect(t.get(base)).toBeUndefined();
  });

  it('keeps an acknowledged mark through a seq update until the entry settles', () => {
    const t = new InFlightTable();
    const id = new Uint8Array(randomBytes(16));
    expect(t.markAcked(id, AHEAD)).toBe(false);
    t.add(id, AHEAD);
    expect(t.settle(id, AHEAD, 5)).toBe(SETTLED);
    expect(t.markAcked(id, AHEAD)).toBe(false); // has its seq: an ack of it commits at once
    expect(t.settle(id, AHEAD, 6)).toBe(NOT_SETTLED);
    expect(t.get(id)).toBe(5);
    const id2 = new Uint8Array(randomBytes(16));
    t.add(id2, AHEAD);
    expect(t.markAcked(id2, AHEAD)).toBe(true);
    expect(t.markAcked(id2, AHEAD)).toBe(true);
    expect(t.settle(id2, AHEAD, 9)).toBe(SETTLED_ACKED);
    expect(t.get(id2)).toBe(9);
    expect(t.settle(id2, AHEAD, 10)).toBe(NOT_SETTLED);
  });
});

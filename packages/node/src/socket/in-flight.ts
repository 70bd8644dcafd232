/**
 * What a device connection has sent and the device has not acknowledged yet: envelope id → seq
 * (AHEAD until the envelope's commit gives it one), and for an AHEAD envelope whether the device
 * already acknowledged it and the send it came from (socket/device.ts).
 *
 * Why not a `Map<string, number>`, as before: this table is on every delivery and every ack, and at
 * 10,000 msgs/s a connection's map churned between zero and a few entries. V8 re-makes a churned
 * map's backing table every few operations (a full table of deleted entries is rehashed, an emptied
 * one shrinks); each new table is held by the connection, an old object, so it outlived the young
 * generation. Sampling what the node promotes at 10,000/s put that `Map.delete` first (11 % of the
 * promoted bytes), and every scavenge copied those tables on their way out; with this table the
 * scavenges' pauses at 10,000/s fell from 13–20 to 8–14 ms a second (docs/benchmarks.md, twelfth
 * session). A map key also cost a 16-character string per delivery and per acked id.
 *
 * Here: open addressing with linear probing over typed arrays, keyed by the id's 16 bytes, deletion
 * by backward shift (no tombstones, so no rehash to clean up). The arrays are re-made only when the
 * table grows (at half full) or, emptied after having grown large, shrinks back. An idle connection
 * holds no arrays at all.
 *
 * Only MESSAGE_ID_LENGTH (16-byte) ids are stored: every envelope the node stores has such an id
 * (its own CSPRNG draw, mailbox/send.ts), and the protocol refuses acks naming ids of another length.
 * Lookups of any other length find nothing. Stored ids are random, and the hash is keyed by a
 * per-process random salt as well, so a device that acks crafted ids cannot make its probes long.
 */
import { randomFillSync } from 'node:crypto';

/** Key length: MESSAGE_ID_LENGTH. */
const ID_BYTES = 16;
/** The smallest table (slots); at most half of the slots are in use. */
const MIN_SLOTS = 16;
/** A table this large (slots) that empties is made small again. */
const SHRINK_FROM_SLOTS = 1024;
const EMPTY = 0;
const LIVE = 1;
/** LIVE, and the device acknowledged the envelope before its commit (AHEAD). */
const LIVE_ACKED = 2;

const SALT = randomFillSync(new Int32Array(4));
const S0 = SALT[0]!;
const S1 = SALT[1]!;
const S2 = SALT[2]!;
const S3 = SALT[3]!;

/** `settle`: no such entry, or it has its seq already. */
export const NOT_SETTLED = 0;
/** `settle`: the entry was AHEAD and now has its seq. */
export const SETTLED = 1;
/** `settle`: as SETTLED, and the device had acknowledged it meanwhile (markAcked): its ack can be committed now. */
export const SETTLED_ACKED = 2;

const word = (id: Uint8Array, o: number): number => id[o]! | (id[o + 1]! << 8) | (id[o + 2]! << 16) | (id[o + 3]! << 24);

const hash = (w0: number, w1: number, w2: number, w3: number): number => {
  const h = Math.imul(w0 ^ S0, 0x9e3779b1) ^ Math.imul(w1 ^ S1, 0x85ebca77) ^ Math.imul(w2 ^ S2, 0xc2b2ae3d) ^ Math.imul(w3 ^ S3, 0x27d4eb2f);
  return h ^ (h >>> 15);
};

export class InFlightTable {
  /** Four int32 words of the id per slot. */
  #words = new Int32Array(0);
  #seqs = new Float64Array(0);
  #state = new Uint8Array(0);
  /** Per slot, what the caller attached to an entry with `add` (the send of an AHEAD envelope), dropped when it settles. */
  #refs: (object | undefined)[] = [];
  /** Slots − 1 (slots are a power of two); −1 while no arrays are allocated. */
  #mask = -1;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** The seq sent with `id` (or the caller's AHEAD value), or undefined when `id` is not in flight. */
  get(id: Uint8Array): number | undefined {
    const i = this.#find(id);
    return i < 0 ? undefined : this.#seqs[i];
  }

  has(id: Uint8Array): boolean {
    return this.#find(id) >= 0;
  }

  /**
   * Adds `id` with `seq` unless it is in flight already (then: false, and nothing changes). A seq
   * changes only through `settle`. `ref` stays attached to the entry until it settles or is removed.
   */
  add(id: Uint8Array, seq: number, ref?: object): boolean {
    if (id.length !== ID_BYTES) throw new RangeError(`in-flight ids are ${ID_BYTES} bytes, not ${id.length}`);
    if ((this.#size + 1) * 2 > this.#mask + 1) this.#resize(this.#mask < 0 ? MIN_SLOTS : (this.#mask + 1) * 2);
    const i = this.#slot(id);
    if (i >= 0) return false;
    const free = ~i;
    const o = free * 4;
    this.#words[o] = word(id, 0);
    this.#words[o + 1] = word(id, 4);
    this.#words[o + 2] = word(id, 8);
    this.#words[o + 3] = word(id, 12);
    this.#state[free] = LIVE;
    this.#seqs[free] = seq;
    this.#refs[free] = ref;
    this.#size++;
    return true;
  }

  /** Removes `id`; false when it was not in flight. */
  delete(id: Uint8Array): boolean {
    const i = this.#find(id);
    if (i < 0) return false;
    this.#removeAt(i);
    return true;
  }

  /** What `add` attached to `id`'s entry (until it settles), or undefined. */
  ref(id: Uint8Array): object | undefined {
    const i = this.#find(id);
    return i < 0 ? undefined : this.#refs[i];
  }

  /** Marks an entry acknowledged by the device while its seq is still `ahead`; false when `id` is not in flight with that seq. */
  markAcked(id: Uint8Array, ahead: number): boolean {
    const i = this.#find(id);
    if (i < 0 || this.#seqs[i] !== ahead) return false;
    this.#state[i] = LIVE_ACKED;
    return true;
  }

  /** An entry whose seq is `ahead` takes `seq`: NOT_SETTLED, SETTLED or SETTLED_ACKED. */
  settle(id: Uint8Array, ahead: number, seq: number): number {
    const i = this.#find(id);
    if (i < 0 || this.#seqs[i] !== ahead) return NOT_SETTLED;
    this.#seqs[i] = seq;
    this.#refs[i] = undefined;
    if (this.#state[i] !== LIVE_ACKED) return SETTLED;
    this.#state[i] = LIVE;
    return SETTLED_ACKED;
  }

  clear(): void {
    this.#words = new Int32Array(0);
    this.#seqs = new Float64Array(0);
    this.#state = new Uint8Array(0);
    this.#refs = [];
    this.#mask = -1;
    this.#size = 0;
  }

  #find(id: Uint8Array): number {
    if (this.#size === 0 || id.length !== ID_BYTES) return -1;
    const i = this.#slot(id);
    return i < 0 ? -1 : i;
  }

  /** The slot holding `id` (16 bytes; arrays allocated), or the complement (~slot, negative) of the empty slot that ends its probe run. */
  #slot(id: Uint8Array): number {
    const w0 = word(id, 0);
    const w1 = word(id, 4);
    const w2 = word(id, 8);
    const w3 = word(id, 12);
    const words = this.#words;
    const state = this.#state;
    const mask = this.#mask;
    for (let i = hash(w0, w1, w2, w3) & mask; ; i = (i + 1) & mask) {
      if (state[i] === EMPTY) return ~i;
      const o = i * 4;
      if (words[o] === w0 && words[o + 1] === w1 && words[o + 2] === w2 && words[o + 3] === w3) return i;
    }
  }

  /** Linear probing's deletion: later entries of the same run move back into the hole (no tombstones). */
  #removeAt(hole: number): void {
    const words = this.#words;
    const state = this.#state;
    const seqs = this.#seqs;
    const refs = this.#refs;
    const mask = this.#mask;
    for (let j = (hole + 1) & mask; state[j] !== EMPTY; j = (j + 1) & mask) {
      const o = j * 4;
      const home = hash(words[o]!, words[o + 1]!, words[o + 2]!, words[o + 3]!) & mask;
      // The entry at j may fill the hole unless its home lies cyclically in (hole, j].
      if (hole <= j ? hole < home && home <= j : hole < home || home <= j) continue;
      const h = hole * 4;
      words[h] = words[o]!;
      words[h + 1] = words[o + 1]!;
      words[h + 2] = words[o + 2]!;
      words[h + 3] = words[o + 3]!;
      state[hole] = state[j]!;
      seqs[hole] = seqs[j]!;
      refs[hole] = refs[j];
      hole = j;
    }
    state[hole] = EMPTY;
    refs[hole] = undefined;
    if (--this.#size === 0 && this.#mask + 1 >= SHRINK_FROM_SLOTS) this.clear();
  }

  #resize(slots: number): void {
    const words = this.#words;
    const state = this.#state;
    const seqs = this.#seqs;
    const refs = this.#refs;
    const old = this.#mask + 1;
    this.#words = new Int32Array(slots * 4);
    this.#seqs = new Float64Array(slots);
    this.#state = new Uint8Array(slots);
    this.#refs = new Array<object | undefined>(slots).fill(undefined);
    this.#mask = slots - 1;
    const mask = this.#mask;
    for (let j = 0; j < old; j++) {
      if (state[j] === EMPTY) continue;
      const o = j * 4;
      let i = hash(words[o]!, words[o + 1]!, words[o + 2]!, words[o + 3]!) & mask;
      while (this.#state[i] !== EMPTY) i = (i + 1) & mask;
      const n = i * 4;
      this.#words[n] = words[o]!;
      this.#words[n + 1] = words[o + 1]!;
      this.#words[n + 2] = words[o + 2]!;
      this.#words[n + 3] = words[o + 3]!;
      this.#state[i] = state[j]!;
      this.#seqs[i] = seqs[j]!;
      this.#refs[i] = refs[j];
    }
  }
}

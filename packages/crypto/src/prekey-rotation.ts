/**
 * Prekey lifecycle on the owning device (docs/protocol.md §3.6): generating one-time prekeys in
 * batches, rotating the signed prekey and the last-resort KEM prekey every
 * SIGNED_PREKEY_ROTATION_MS while keeping superseded ones for PREKEY_GRACE_PERIOD_MS (initial
 * messages may wait that long in the node's queue), and pruning the replay cache with them.
 * The caller uploads what these functions return; the node never sees a secret.
 */
import { PREKEY_GRACE_PERIOD_MS, SIGNED_PREKEY_ROTATION_MS } from './constants.js';
import type { CryptoContext } from './context.js';
import type { KemPreKey, OneTimePreKey, SignedPreKey } from './prekeys.js';
import { KemPreKeyPair, X25519PreKeyPair, publicOneTimePreKey, signKemPreKey, signSignedPreKey } from './prekeys.js';
import type { ProtocolStore } from './stores.js';

/** Largest id handed out; ids wrap to 1 (0 is never used) — collisions are checked against the store. */
const MAX_ID = 0xffffffff;

function nextId(used: ReadonlySet<number>, hint: number): number {
  let id = hint;
  for (let i = 0; i < 1_000_000; i++) {
    id = id >= MAX_ID || id < 1 ? 1 : id + 1;
    if (!used.has(id)) return id;
  }
  throw new RangeError('prekey id space exhausted');
}

function randomId(ctx: CryptoContext): number {
  const b = ctx.random(4);
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

/** Generates and stores `count` one-time X25519 prekeys; returns their public halves for upload. */
export async function generateOneTimePreKeys(ctx: CryptoContext, store: ProtocolStore, count: number): Promise<OneTimePreKey[]> {
  if (!Number.isInteger(count) || count < 0 || count > 1000) throw new RangeError('generateOneTimePreKeys: count must be 0..1000');
  return store.transaction(async (tx) => {
    const out: OneTimePreKey[] = [];
    const used = new Set<number>();
    let id = randomId(ctx);
    for (let i = 0; i < count; i++) {
      do id = nextId(used, id);
      while (await tx.loadPreKey(id));
      used.add(id);
      const kp = X25519PreKeyPair.generate(ctx, id);
      await tx.storePreKey(kp);
      out.push(publicOneTimePreKey(kp));
    }
    return out;
  });
}

/** Generates and stores `count` signed one-time KEM prekeys; returns them for upload. */
export async function generateKemPreKeys(ctx: CryptoContext, store: ProtocolStore, count: number): Promise<KemPreKey[]> {
  if (!Number.isInteger(count) || count < 0 || count > 1000) throw new RangeError('generateKemPreKeys: count must be 0..1000');
  return store.transaction(async (tx) => {
    const { device } = await tx.getLocalIdentity();
    const used = new Set((await tx.listKemPreKeys()).map((k) => k.id));
    const out: KemPreKey[] = [];
    let id = randomId(ctx);
    for (let i = 0; i < count; i++) {
      id = nextId(used, id);
      used.add(id);
      const kp = KemPreKeyPair.generate(ctx, id, false);
      await tx.storeKemPreKey(kp);
      out.push(signKemPreKey(ctx, device, kp));
    }
    return out;
  });
}

export interface RotationResult {
  /** The current signed prekey (new if rotated) — upload it when `rotated.signedPreKey`. */
  readonly signedPreKey: SignedPreKey;
  /** The current last-resort KEM prekey (new if rotated). */
  readonly lastResortKemPreKey: KemPreKey;
  readonly rotated: { readonly signedPreKey: boolean; readonly lastResortKemPreKey: boolean };
  /** Ids of superseded keys deleted because their grace period ended. */
  readonly removed: { readonly signedPreKeys: number[]; readonly lastResortKemPreKeys: number[] };
  readonly prunedReplayEntries: number;
}

export interface RotationOptions {
  /**
   * Delete superseded keys whose grace period ended (default true). A device that was offline
   * passes false until it has processed the queue the node kept for it: first messages waiting
   * there may need exactly those keys (docs/spec/03-prekeys.md §3.6, "process the queue before
   * rotating").
   */
  readonly deleteSuperseded?: boolean;
}

/**
 * Makes sure a current signed prekey and last-resort KEM prekey exist and are younger than the
 * rotation period; deletes superseded ones whose grace period (counted from their replacement)
 * ended, unless `deleteSuperseded` is false; prunes the replay cache entries that name deleted
 * keys. Idempotent: call it at start-up and on a timer.
 */
export async function rotatePreKeys(ctx: CryptoContext, store: ProtocolStore, options: RotationOptions = {}): Promise<RotationResult> {
  const deleteSuperseded = options.deleteSuperseded ?? true;
  return store.transaction(async (tx) => {
    const { device } = await tx.getLocalIdentity();
    const now = ctx.now();
    const newest = <T extends { createdAt: number }>(xs: T[]): T | undefined => xs.reduce<T | undefined>((a, b) => (!a || b.createdAt > a.createdAt ? b : a), undefined);

    const spks = await tx.listSignedPreKeys();
    let spk = newest(spks);
    const rotateSpk = !spk || now - spk.createdAt >= SIGNED_PREKEY_ROTATION_MS;
    if (rotateSpk) {
      spk = X25519PreKeyPair.generate(ctx, nextId(new Set(spks.map((k) => k.id)), spk?.id ?? randomId(ctx)));
      await tx.storeSignedPreKey(spk);
      spks.push(spk);
    }
    const kems = await tx.listKemPreKeys();
    const lastResorts = kems.filter((k) => k.lastResort);
    let lr = newest(lastResorts);
    const rotateLr = !lr || now - lr.createdAt >= SIGNED_PREKEY_ROTATION_MS;
    if (rotateLr) {
      lr = KemPreKeyPair.generate(ctx, nextId(new Set(kems.map((k) => k.id)), lr?.id ?? randomId(ctx)), true);
      await tx.storeKemPreKey(lr);
      lastResorts.push(lr);
    }
    // A superseded key is kept for PREKEY_GRACE_PERIOD_MS counted from its REPLACEMENT, i.e. from
    // the creation of the next newer key of its kind — not from its own creation: a device that
    // was offline for weeks replaces its key only when it comes back, and first messages built
    // against the old key may still be waiting in the node's queue for the whole grace period.
    const replacedAt = (k: { createdAt: number }, all: readonly { createdAt: number }[]): number | undefined =>
      all.reduce<number | undefined>((a, b) => (b.createdAt > k.createdAt && (a === undefined || b.createdAt < a) ? b.createdAt : a), undefined);
    const expired = (k: { createdAt: number }, current: { createdAt: number }, all: readonly { createdAt: number }[]) => {
      if (!deleteSuperseded || k === current) return false;
      const at = replacedAt(k, all);
      return at !== undefined && now - at >= PREKEY_GRACE_PERIOD_MS;
    };
    const removedSpk = spks.filter((k) => expired(k, spk!, spks)).map((k) => k.id);
    const removedLr = lastResorts.filter((k) => expired(k, lr!, lastResorts)).map((k) => k.id);
    for (const id of removedSpk) await tx.removeSignedPreKey(id);
    for (const id of removedLr) await tx.removeKemPreKey(id);
    const liveSpk = new Set((await tx.listSignedPreKeys()).map((k) => k.id));
    const liveKem = new Set((await tx.listKemPreKeys()).map((k) => k.id));
    const prunedReplayEntries = await tx.pruneSeenInitialMessages(liveSpk, liveKem);
    return {
      signedPreKey: signSignedPreKey(ctx, device, spk!),
      lastResortKemPreKey: signKemPreKey(ctx, device, lr!),
      rotated: { signedPreKey: rotateSpk, lastResortKemPreKey: rotateLr },
      removed: { signedPreKeys: removedSpk, lastResortKemPreKeys: removedLr },
      prunedReplayEntries,
    };
  });
}

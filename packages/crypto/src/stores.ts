/**
 * Narrow async store interfaces (libsignal's habit), an in-memory reference implementation, and
 * `transaction()`: everything a session operation changes — consuming a one-time prekey, recording a
 * seen initial message, saving the advanced session (and, through the caller's hook, the outbound
 * ciphertext) — commits together or not at all. Later issues add SQLite and IndexedDB stores that
 * pass the same conformance tests.
 *
 * Stores hold storage-format bytes for sessions (see session.ts): they never interpret them.
 */
import { toHex } from './bytes.js';
import type { DeviceCertificate, DeviceKeyPair } from './keys.js';
import type { KemPreKeyPair, X25519PreKeyPair } from './prekeys.js';

/** A peer device's address: hex(account key) ":" hex(device signing key). */
export type DeviceAddress = string;

export function deviceAddress(c: Pick<DeviceCertificate, 'accountKey' | 'deviceSigningKey'>): DeviceAddress {
  return `${toHex(c.accountKey)}:${toHex(c.deviceSigningKey)}`;
}

export interface LocalIdentity {
  readonly certificate: DeviceCertificate;
  readonly device: DeviceKeyPair;
}

export interface IdentityStore {
  getLocalIdentity(): Promise<LocalIdentity>;
}

export interface PreKeyStore {
  loadPreKey(id: number): Promise<X25519PreKeyPair | undefined>;
  storePreKey(key: X25519PreKeyPair): Promise<void>;
  removePreKey(id: number): Promise<void>;
  countPreKeys(): Promise<number>;
}

export interface SignedPreKeyStore {
  loadSignedPreKey(id: number): Promise<X25519PreKeyPair | undefined>;
  storeSignedPreKey(key: X25519PreKeyPair): Promise<void>;
  removeSignedPreKey(id: number): Promise<void>;
  listSignedPreKeys(): Promise<X25519PreKeyPair[]>;
}

export interface KemPreKeyStore {
  loadKemPreKey(id: number): Promise<KemPreKeyPair | undefined>;
  storeKemPreKey(key: KemPreKeyPair): Promise<void>;
  /** Removes a one-time KEM prekey after use (last-resort keys are removed only by rotation). */
  removeKemPreKey(id: number): Promise<void>;
  listKemPreKeys(): Promise<KemPreKeyPair[]>;
}

export interface SessionStore {
  /** The serialised SessionRecord (session.ts) for a peer device, if any. */
  loadSession(address: DeviceAddress): Promise<Uint8Array | undefined>;
  storeSession(address: DeviceAddress, record: Uint8Array): Promise<void>;
  removeSession(address: DeviceAddress): Promise<void>;
  listSessionAddresses(): Promise<DeviceAddress[]>;
}

/** Which prekeys a seen initial message used: the entry can go once they are all gone. */
export interface SeenInitialMessage {
  readonly signedPreKeyId: number;
  readonly kemPreKeyId: number;
  readonly seenAt: number;
}

export interface SeenInitialMessageStore {
  hasSeenInitialMessage(digest: Uint8Array): Promise<boolean>;
  addSeenInitialMessage(digest: Uint8Array, info: SeenInitialMessage): Promise<void>;
  /** Drops entries that name a signed or KEM prekey that no longer exists (rotation housekeeping). */
  pruneSeenInitialMessages(liveSignedPreKeyIds: ReadonlySet<number>, liveKemPreKeyIds: ReadonlySet<number>): Promise<number>;
}

export interface ProtocolStores extends IdentityStore, PreKeyStore, SignedPreKeyStore, KemPreKeyStore, SessionStore, SeenInitialMessageStore {}

export interface ProtocolStore extends ProtocolStores {
  /**
   * Runs `fn` with a view of the stores whose writes become visible and durable together when `fn`
   * resolves, and are discarded entirely when it throws. Transactions on one store are serialised.
   */
  transaction<T>(fn: (tx: ProtocolStores) => Promise<T>): Promise<T>;
}

// ── In-memory reference implementation ─────────────────────────────────────────────────────

/** The slice of Map that the in-memory store uses, so that a transaction can overlay it. */
interface Table<K, V> {
  get(k: K): V | undefined;
  has(k: K): boolean;
  set(k: K, v: V): unknown;
  delete(k: K): unknown;
  readonly size: number;
  keys(): IterableIterator<K>;
  values(): IterableIterator<V>;
  entries(): IterableIterator<[K, V]>;
  [Symbol.iterator](): IterableIterator<[K, V]>;
}

const DELETED = Symbol('deleted');

/**
 * Copy-on-write view of a Map for one transaction: reads fall through to the committed map, writes
 * go to an overlay that `commit()` applies. O(writes) per transaction, whatever the table size.
 */
class Overlay<K, V> implements Table<K, V> {
  private readonly writes = new Map<K, V | typeof DELETED>();
  constructor(private readonly base: Map<K, V>) {}
  get(k: K): V | undefined {
    const w = this.writes.get(k);
    if (w === DELETED) return undefined;
    return w !== undefined ? w : this.base.get(k);
  }
  has(k: K): boolean {
    return this.get(k) !== undefined;
  }
  set(k: K, v: V): this {
    this.writes.set(k, v);
    return this;
  }
  delete(k: K): boolean {
    const had = this.has(k);
    this.writes.set(k, DELETED);
    return had;
  }
  get size(): number {
    let n = 0;
    for (const _ of this.keys()) n++;
    return n;
  }
  *entries(): IterableIterator<[K, V]> {
    for (const [k, v] of this.base) if (!this.writes.has(k)) yield [k, v];
    for (const [k, v] of this.writes) if (v !== DELETED) yield [k, v];
  }
  *keys(): IterableIterator<K> {
    for (const [k] of this.entries()) yield k;
  }
  *values(): IterableIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }
  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }
  commit(): void {
    for (const [k, v] of this.writes) {
      if (v === DELETED) this.base.delete(k);
      else this.base.set(k, v);
    }
  }
}

interface MemoryState {
  preKeys: Table<number, X25519PreKeyPair>;
  signedPreKeys: Table<number, X25519PreKeyPair>;
  kemPreKeys: Table<number, KemPreKeyPair>;
  sessions: Table<DeviceAddress, Uint8Array>;
  seen: Table<string, SeenInitialMessage>;
}

class MemoryView implements ProtocolStores {
  constructor(
    protected readonly identity: LocalIdentity,
    public state: MemoryState,
  ) {}
  async getLocalIdentity(): Promise<LocalIdentity> {
    return this.identity;
  }
  async loadPreKey(id: number): Promise<X25519PreKeyPair | undefined> {
    return this.state.preKeys.get(id);
  }
  async storePreKey(key: X25519PreKeyPair): Promise<void> {
    this.state.preKeys.set(key.id, key);
  }
  async removePreKey(id: number): Promise<void> {
    this.state.preKeys.delete(id);
  }
  async countPreKeys(): Promise<number> {
    return this.state.preKeys.size;
  }
  async loadSignedPreKey(id: number): Promise<X25519PreKeyPair | undefined> {
    return this.state.signedPreKeys.get(id);
  }
  async storeSignedPreKey(key: X25519PreKeyPair): Promise<void> {
    this.state.signedPreKeys.set(key.id, key);
  }
  async removeSignedPreKey(id: number): Promise<void> {
    this.state.signedPreKeys.delete(id);
  }
  async listSignedPreKeys(): Promise<X25519PreKeyPair[]> {
    return [...this.state.signedPreKeys.values()];
  }
  async loadKemPreKey(id: number): Promise<KemPreKeyPair | undefined> {
    return this.state.kemPreKeys.get(id);
  }
  async storeKemPreKey(key: KemPreKeyPair): Promise<void> {
    this.state.kemPreKeys.set(key.id, key);
  }
  async removeKemPreKey(id: number): Promise<void> {
    this.state.kemPreKeys.delete(id);
  }
  async listKemPreKeys(): Promise<KemPreKeyPair[]> {
    return [...this.state.kemPreKeys.values()];
  }
  async loadSession(address: DeviceAddress): Promise<Uint8Array | undefined> {
    const r = this.state.sessions.get(address);
    return r && new Uint8Array(r); // a copy (native; Uint8Array.from goes through the iterator)
  }
  async storeSession(address: DeviceAddress, record: Uint8Array): Promise<void> {
    this.state.sessions.set(address, new Uint8Array(record));
  }
  async removeSession(address: DeviceAddress): Promise<void> {
    this.state.sessions.delete(address);
  }
  async listSessionAddresses(): Promise<DeviceAddress[]> {
    return [...this.state.sessions.keys()];
  }
  async hasSeenInitialMessage(digest: Uint8Array): Promise<boolean> {
    return this.state.seen.has(toHex(digest));
  }
  async addSeenInitialMessage(digest: Uint8Array, info: SeenInitialMessage): Promise<void> {
    this.state.seen.set(toHex(digest), info);
  }
  async pruneSeenInitialMessages(liveSpk: ReadonlySet<number>, liveKem: ReadonlySet<number>): Promise<number> {
    let n = 0;
    for (const [k, v] of this.state.seen) {
      if (!liveSpk.has(v.signedPreKeyId) || !liveKem.has(v.kemPreKeyId)) {
        this.state.seen.delete(k);
        n++;
      }
    }
    return n;
  }
}

/**
 * In-memory ProtocolStore. Transactions run one at a time on a copy of the maps; the copy replaces
 * the live state only when the transaction's function resolves.
 */
export class MemoryProtocolStore extends MemoryView implements ProtocolStore {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly committed = {
    preKeys: new Map<number, X25519PreKeyPair>(),
    signedPreKeys: new Map<number, X25519PreKeyPair>(),
    kemPreKeys: new Map<number, KemPreKeyPair>(),
    sessions: new Map<DeviceAddress, Uint8Array>(),
    seen: new Map<string, SeenInitialMessage>(),
  };
  constructor(identity: LocalIdentity) {
    super(identity, { preKeys: new Map(), signedPreKeys: new Map(), kemPreKeys: new Map(), sessions: new Map(), seen: new Map() });
    this.state = this.committed;
    // Calls made outside transaction() are single-operation transactions, so they are serialised
    // with running transactions and can never be overwritten by one that commits later.
    const self = this as unknown as Record<string, unknown>;
    for (const name of Object.getOwnPropertyNames(MemoryView.prototype)) {
      if (name === 'constructor') continue;
      self[name] = (...args: unknown[]) =>
        this.transaction((tx) => (tx as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[name]!(...args));
    }
  }
  transaction<T>(fn: (tx: ProtocolStores) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      const c = this.committed;
      const overlay = {
        preKeys: new Overlay(c.preKeys),
        signedPreKeys: new Overlay(c.signedPreKeys),
        kemPreKeys: new Overlay(c.kemPreKeys),
        sessions: new Overlay(c.sessions),
        seen: new Overlay(c.seen),
      };
      const result = await fn(new MemoryView(this.identity, overlay));
      for (const t of Object.values(overlay)) t.commit();
      return result;
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }
}

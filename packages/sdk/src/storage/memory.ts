/**
 * The in-memory storage: the crypto core's MemoryProtocolStore (the reference implementation) with
 * the ProtocolStorage lifetime and identity rules, so the SDK treats all three adapters alike.
 * Nothing survives close(): use it for tests, bots and throw-away sessions.
 */
import type { DeviceAddress, DeviceCertificate, KemPreKeyPair, LocalIdentity, ProtocolStores, SeenInitialMessage, X25519PreKeyPair } from '@meshwhisper/crypto';
import { MemoryProtocolStore } from '@meshwhisper/crypto';
import { checkKey, checkListOptions, checkTable, checkValue, compareKeys } from './app-items.js';
import { StorageError, StorageErrorCode } from './errors.js';
import { SingleOperationStorage } from './single-op.js';
import type { AppItem, ListItemsOptions, ProtocolStorage, StorageTx } from './types.js';
import { checkIdentity, markStorageTx, renewedIdentity } from './types.js';

const DELETED = Symbol('deleted');
type AppTables = Map<string, Map<string, Uint8Array>>;

/** A transaction's app-item writes over the committed tables, applied by commit() (the reference store's overlay, for tables of items). */
class AppOverlay {
  readonly #writes = new Map<string, Map<string, Uint8Array | typeof DELETED>>();
  constructor(private readonly base: AppTables) {}
  get(table: string, key: string): Uint8Array | undefined {
    const w = this.#writes.get(table)?.get(key);
    return w === DELETED ? undefined : (w ?? this.base.get(table)?.get(key));
  }
  set(table: string, key: string, value: Uint8Array | typeof DELETED): void {
    let m = this.#writes.get(table);
    if (!m) this.#writes.set(table, (m = new Map()));
    m.set(key, value);
  }
  list(table: string, prefix: string, limit: number | undefined, after?: string): AppItem[] {
    const merged = new Map(this.base.get(table));
    for (const [k, v] of this.#writes.get(table) ?? []) {
      if (v === DELETED) merged.delete(k);
      else merged.set(k, v);
    }
    const keys = [...merged.keys()].filter((k) => k.startsWith(prefix) && (after === undefined || compareKeys(k, after) > 0)).sort(compareKeys);
    return keys.slice(0, limit).map((key) => ({ key, value: Uint8Array.from(merged.get(key)!) }));
  }
  commit(): void {
    for (const [table, m] of this.#writes) {
      let t = this.base.get(table);
      if (!t) this.base.set(table, (t = new Map()));
      for (const [k, v] of m) {
        if (v === DELETED) t.delete(k);
        else t.set(k, v);
      }
      if (t.size === 0) this.base.delete(table);
    }
  }
}

/** Delegates to a transaction view of the reference store; refuses use once its transaction ended. */
class MemoryTxView implements StorageTx {
  open = true;
  constructor(
    private readonly owner: MemoryStorage,
    private readonly inner: ProtocolStores,
    private readonly items: AppOverlay,
  ) {
    markStorageTx(this);
  }
  private tx(operation: string): ProtocolStores {
    if (!this.open) throw new StorageError(StorageErrorCode.TRANSACTION_CLOSED, operation, 'this transaction has already ended');
    return this.inner;
  }
  async getItem(table: string, key: string): Promise<Uint8Array | undefined> {
    const op = 'getItem';
    this.tx(op);
    const v = this.items.get(checkTable(table, op), checkKey(key, op));
    return v && Uint8Array.from(v);
  }
  async setItem(table: string, key: string, value: Uint8Array): Promise<void> {
    const op = 'setItem';
    this.tx(op);
    this.items.set(checkTable(table, op), checkKey(key, op), Uint8Array.from(checkValue(value, op)));
  }
  async deleteItem(table: string, key: string): Promise<void> {
    const op = 'deleteItem';
    this.tx(op);
    this.items.set(checkTable(table, op), checkKey(key, op), DELETED);
  }
  async listItems(table: string, options?: ListItemsOptions): Promise<AppItem[]> {
    const op = 'listItems';
    this.tx(op);
    const t = checkTable(table, op);
    const { prefix, limit, after } = checkListOptions(options, op);
    return this.items.list(t, prefix, limit, after);
  }
  async getLocalIdentity(): Promise<LocalIdentity> {
    this.tx('getLocalIdentity');
    return this.owner.identityOrThrow();
  }
  async loadPreKey(id: number): Promise<X25519PreKeyPair | undefined> {
    return this.tx('loadPreKey').loadPreKey(id);
  }
  async storePreKey(key: X25519PreKeyPair): Promise<void> {
    return this.tx('storePreKey').storePreKey(key);
  }
  async removePreKey(id: number): Promise<void> {
    return this.tx('removePreKey').removePreKey(id);
  }
  async countPreKeys(): Promise<number> {
    return this.tx('countPreKeys').countPreKeys();
  }
  async loadSignedPreKey(id: number): Promise<X25519PreKeyPair | undefined> {
    return this.tx('loadSignedPreKey').loadSignedPreKey(id);
  }
  async storeSignedPreKey(key: X25519PreKeyPair): Promise<void> {
    return this.tx('storeSignedPreKey').storeSignedPreKey(key);
  }
  async removeSignedPreKey(id: number): Promise<void> {
    return this.tx('removeSignedPreKey').removeSignedPreKey(id);
  }
  async listSignedPreKeys(): Promise<X25519PreKeyPair[]> {
    return this.tx('listSignedPreKeys').listSignedPreKeys();
  }
  async loadKemPreKey(id: number): Promise<KemPreKeyPair | undefined> {
    return this.tx('loadKemPreKey').loadKemPreKey(id);
  }
  async storeKemPreKey(key: KemPreKeyPair): Promise<void> {
    return this.tx('storeKemPreKey').storeKemPreKey(key);
  }
  async removeKemPreKey(id: number): Promise<void> {
    return this.tx('removeKemPreKey').removeKemPreKey(id);
  }
  async listKemPreKeys(): Promise<KemPreKeyPair[]> {
    return this.tx('listKemPreKeys').listKemPreKeys();
  }
  async loadSession(address: DeviceAddress): Promise<Uint8Array | undefined> {
    return this.tx('loadSession').loadSession(address);
  }
  async storeSession(address: DeviceAddress, record: Uint8Array): Promise<void> {
    return this.tx('storeSession').storeSession(address, record);
  }
  async removeSession(address: DeviceAddress): Promise<void> {
    return this.tx('removeSession').removeSession(address);
  }
  async listSessionAddresses(): Promise<DeviceAddress[]> {
    return this.tx('listSessionAddresses').listSessionAddresses();
  }
  async hasSeenInitialMessage(digest: Uint8Array): Promise<boolean> {
    return this.tx('hasSeenInitialMessage').hasSeenInitialMessage(digest);
  }
  async addSeenInitialMessage(digest: Uint8Array, info: SeenInitialMessage): Promise<void> {
    return this.tx('addSeenInitialMessage').addSeenInitialMessage(Uint8Array.from(digest), { ...info });
  }
  async pruneSeenInitialMessages(liveSignedPreKeyIds: ReadonlySet<number>, liveKemPreKeyIds: ReadonlySet<number>): Promise<number> {
    return this.tx('pruneSeenInitialMessages').pruneSeenInitialMessages(liveSignedPreKeyIds, liveKemPreKeyIds);
  }
}

export class MemoryStorage extends SingleOperationStorage implements ProtocolStorage {
  readonly kind = 'memory';
  #identity: LocalIdentity | undefined;
  #closed = false;
  // The reference store wants an identity up front; ours is set later and served by the views
  // above, so the reference store's own getLocalIdentity() is never called.
  readonly #inner = new MemoryProtocolStore(undefined as unknown as LocalIdentity);
  /** Committed app items: table → key → value. */
  readonly #items: AppTables = new Map();

  /** @internal */
  identityOrThrow(): LocalIdentity {
    if (!this.#identity) throw new StorageError(StorageErrorCode.NO_IDENTITY, 'getLocalIdentity', 'this storage holds no device identity yet');
    return this.#identity;
  }

  transaction<T>(fn: (tx: StorageTx) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new StorageError(StorageErrorCode.CLOSED, 'transaction', 'the storage is closed'));
    return this.#inner.transaction(async (inner) => {
      const items = new AppOverlay(this.#items);
      const view = new MemoryTxView(this, inner, items);
      try {
        const result = await fn(view);
        // The reference store commits its own overlay as soon as this resolves, in the same turn of
        // its queue: nobody can run between the two commits, and neither can fail.
        items.commit();
        return result;
      } finally {
        view.open = false;
      }
    });
  }

  async hasLocalIdentity(): Promise<boolean> {
    return this.transaction(async () => this.#identity !== undefined);
  }
  async setLocalIdentity(identity: LocalIdentity): Promise<void> {
    checkIdentity(identity, 'setLocalIdentity');
    await this.transaction(async () => {
      if (this.#identity) throw new StorageError(StorageErrorCode.IDENTITY_EXISTS, 'setLocalIdentity', 'this storage already holds a device identity');
      this.#identity = identity;
    });
  }
  async renewCertificate(certificate: DeviceCertificate): Promise<void> {
    await this.transaction(async () => {
      this.#identity = renewedIdentity(this.identityOrThrow(), certificate, 'renewCertificate');
    });
  }
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#inner.transaction(async () => undefined); // waits for the transactions already queued
  }
  async erase(): Promise<void> {
    await this.close();
    this.#items.clear();
    this.#identity = undefined;
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A fresh in-memory storage (optionally with its identity already set). */
export async function memoryStorage(options: { identity?: LocalIdentity } = {}): Promise<MemoryStorage> {
  const s = new MemoryStorage();
  if (options.identity) await s.setLocalIdentity(options.identity);
  return s;
}

/**
 * The in-memory storage: the crypto core's MemoryProtocolStore (the reference implementation) with
 * the ProtocolStorage lifetime and identity rules, so the SDK treats all three adapters alike.
 * Nothing survives close(): use it for tests, bots and throw-away sessions.
 */
import type { DeviceAddress, KemPreKeyPair, LocalIdentity, ProtocolStores, SeenInitialMessage, X25519PreKeyPair } from '@meshwhisper/crypto';
import { MemoryProtocolStore } from '@meshwhisper/crypto';
import { StorageError, StorageErrorCode } from './errors.js';
import type { ProtocolStorage } from './types.js';
import { checkIdentity } from './types.js';

/** Delegates to a transaction view of the reference store; refuses use once its transaction ended. */
class MemoryTxView implements ProtocolStores {
  open = true;
  constructor(
    private readonly owner: MemoryStorage,
    private readonly inner: ProtocolStores,
  ) {}
  private tx(operation: string): ProtocolStores {
    if (!this.open) throw new StorageError(StorageErrorCode.TRANSACTION_CLOSED, operation, 'this transaction has already ended');
    return this.inner;
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

export class MemoryStorage implements ProtocolStorage {
  readonly kind = 'memory';
  #identity: LocalIdentity | undefined;
  #closed = false;
  // The reference store wants an identity up front; ours is set later and served by the views
  // above, so the reference store's own getLocalIdentity() is never called.
  readonly #inner = new MemoryProtocolStore(undefined as unknown as LocalIdentity);

  /** @internal */
  identityOrThrow(): LocalIdentity {
    if (!this.#identity) throw new StorageError(StorageErrorCode.NO_IDENTITY, 'getLocalIdentity', 'this storage holds no device identity yet');
    return this.#identity;
  }

  transaction<T>(fn: (tx: ProtocolStores) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new StorageError(StorageErrorCode.CLOSED, 'transaction', 'the storage is closed'));
    return this.#inner.transaction(async (inner) => {
      const view = new MemoryTxView(this, inner);
      try {
        return await fn(view);
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
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#inner.transaction(async () => undefined); // waits for the transactions already queued
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  getLocalIdentity = (): Promise<LocalIdentity> => this.transaction((tx) => tx.getLocalIdentity());
  loadPreKey = (id: number): Promise<X25519PreKeyPair | undefined> => this.transaction((tx) => tx.loadPreKey(id));
  storePreKey = (key: X25519PreKeyPair): Promise<void> => this.transaction((tx) => tx.storePreKey(key));
  removePreKey = (id: number): Promise<void> => this.transaction((tx) => tx.removePreKey(id));
  countPreKeys = (): Promise<number> => this.transaction((tx) => tx.countPreKeys());
  loadSignedPreKey = (id: number): Promise<X25519PreKeyPair | undefined> => this.transaction((tx) => tx.loadSignedPreKey(id));
  storeSignedPreKey = (key: X25519PreKeyPair): Promise<void> => this.transaction((tx) => tx.storeSignedPreKey(key));
  removeSignedPreKey = (id: number): Promise<void> => this.transaction((tx) => tx.removeSignedPreKey(id));
  listSignedPreKeys = (): Promise<X25519PreKeyPair[]> => this.transaction((tx) => tx.listSignedPreKeys());
  loadKemPreKey = (id: number): Promise<KemPreKeyPair | undefined> => this.transaction((tx) => tx.loadKemPreKey(id));
  storeKemPreKey = (key: KemPreKeyPair): Promise<void> => this.transaction((tx) => tx.storeKemPreKey(key));
  removeKemPreKey = (id: number): Promise<void> => this.transaction((tx) => tx.removeKemPreKey(id));
  listKemPreKeys = (): Promise<KemPreKeyPair[]> => this.transaction((tx) => tx.listKemPreKeys());
  loadSession = (address: DeviceAddress): Promise<Uint8Array | undefined> => this.transaction((tx) => tx.loadSession(address));
  storeSession = (address: DeviceAddress, record: Uint8Array): Promise<void> => this.transaction((tx) => tx.storeSession(address, record));
  removeSession = (address: DeviceAddress): Promise<void> => this.transaction((tx) => tx.removeSession(address));
  listSessionAddresses = (): Promise<DeviceAddress[]> => this.transaction((tx) => tx.listSessionAddresses());
  hasSeenInitialMessage = (digest: Uint8Array): Promise<boolean> => this.transaction((tx) => tx.hasSeenInitialMessage(digest));
  addSeenInitialMessage = (digest: Uint8Array, info: SeenInitialMessage): Promise<void> => this.transaction((tx) => tx.addSeenInitialMessage(digest, info));
  pruneSeenInitialMessages = (spk: ReadonlySet<number>, kem: ReadonlySet<number>): Promise<number> =>
    this.transaction((tx) => tx.pruneSeenInitialMessages(spk, kem));
}

/** A fresh in-memory storage (optionally with its identity already set). */
export async function memoryStorage(options: { identity?: LocalIdentity } = {}): Promise<MemoryStorage> {
  const s = new MemoryStorage();
  if (options.identity) await s.setLocalIdentity(options.identity);
  return s;
}

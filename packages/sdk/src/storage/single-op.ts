/**
 * The ProtocolStorage methods callable outside transaction(): each is a one-operation transaction,
 * so it is serialised with running transactions and never interleaves with one. Shared by the
 * adapters whose transaction() already provides that serialisation (memory, SQLite).
 */
import type { DeviceAddress, KemPreKeyPair, LocalIdentity, SeenInitialMessage, X25519PreKeyPair } from '@meshwhisper/crypto';
import type { AppItem, ListItemsOptions, StorageTx } from './types.js';

export abstract class SingleOperationStorage {
  abstract transaction<T>(fn: (tx: StorageTx) => Promise<T>): Promise<T>;

  getLocalIdentity(): Promise<LocalIdentity> {
    return this.transaction((tx) => tx.getLocalIdentity());
  }
  loadPreKey(id: number): Promise<X25519PreKeyPair | undefined> {
    return this.transaction((tx) => tx.loadPreKey(id));
  }
  storePreKey(key: X25519PreKeyPair): Promise<void> {
    return this.transaction((tx) => tx.storePreKey(key));
  }
  removePreKey(id: number): Promise<void> {
    return this.transaction((tx) => tx.removePreKey(id));
  }
  countPreKeys(): Promise<number> {
    return this.transaction((tx) => tx.countPreKeys());
  }
  loadSignedPreKey(id: number): Promise<X25519PreKeyPair | undefined> {
    return this.transaction((tx) => tx.loadSignedPreKey(id));
  }
  storeSignedPreKey(key: X25519PreKeyPair): Promise<void> {
    return this.transaction((tx) => tx.storeSignedPreKey(key));
  }
  removeSignedPreKey(id: number): Promise<void> {
    return this.transaction((tx) => tx.removeSignedPreKey(id));
  }
  listSignedPreKeys(): Promise<X25519PreKeyPair[]> {
    return this.transaction((tx) => tx.listSignedPreKeys());
  }
  loadKemPreKey(id: number): Promise<KemPreKeyPair | undefined> {
    return this.transaction((tx) => tx.loadKemPreKey(id));
  }
  storeKemPreKey(key: KemPreKeyPair): Promise<void> {
    return this.transaction((tx) => tx.storeKemPreKey(key));
  }
  removeKemPreKey(id: number): Promise<void> {
    return this.transaction((tx) => tx.removeKemPreKey(id));
  }
  listKemPreKeys(): Promise<KemPreKeyPair[]> {
    return this.transaction((tx) => tx.listKemPreKeys());
  }
  loadSession(address: DeviceAddress): Promise<Uint8Array | undefined> {
    return this.transaction((tx) => tx.loadSession(address));
  }
  storeSession(address: DeviceAddress, record: Uint8Array): Promise<void> {
    return this.transaction((tx) => tx.storeSession(address, record));
  }
  removeSession(address: DeviceAddress): Promise<void> {
    return this.transaction((tx) => tx.removeSession(address));
  }
  listSessionAddresses(): Promise<DeviceAddress[]> {
    return this.transaction((tx) => tx.listSessionAddresses());
  }
  hasSeenInitialMessage(digest: Uint8Array): Promise<boolean> {
    return this.transaction((tx) => tx.hasSeenInitialMessage(digest));
  }
  addSeenInitialMessage(digest: Uint8Array, info: SeenInitialMessage): Promise<void> {
    return this.transaction((tx) => tx.addSeenInitialMessage(digest, info));
  }
  pruneSeenInitialMessages(spk: ReadonlySet<number>, kem: ReadonlySet<number>): Promise<number> {
    return this.transaction((tx) => tx.pruneSeenInitialMessages(spk, kem));
  }
  getItem(table: string, key: string): Promise<Uint8Array | undefined> {
    return this.transaction((tx) => tx.getItem(table, key));
  }
  setItem(table: string, key: string, value: Uint8Array): Promise<void> {
    return this.transaction((tx) => tx.setItem(table, key, value));
  }
  deleteItem(table: string, key: string): Promise<void> {
    return this.transaction((tx) => tx.deleteItem(table, key));
  }
  listItems(table: string, options?: ListItemsOptions): Promise<AppItem[]> {
    return this.transaction((tx) => tx.listItems(table, options));
  }
}

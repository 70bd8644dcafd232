/**
 * A ProtocolStore in IndexedDB (browsers, workers, service workers).
 *
 * An IndexedDB transaction commits as soon as it has no pending request at the end of a task, so it
 * cannot stay open while the caller awaits other work (crypto, the network, another store). So
 * transaction(fn) does not run fn inside an IDB transaction. Instead:
 *  1. it takes an exclusive Web Lock named after the database — every context of the origin that
 *     shares the database (tabs, workers, the service worker) queues on the same lock, so there is
 *     one writer at a time;
 *  2. fn runs against a buffer: writes go to memory, reads see the buffer first and committed data
 *     otherwise (read-your-writes); nobody else can commit meanwhile, so what fn read stays true;
 *  3. when fn resolves, every buffered write is applied in ONE readwrite IDB transaction with
 *     durability "strict", and transaction() resolves after it completes. When fn throws, the buffer
 *     is dropped and nothing was written. If the context dies mid-way, the lock is released and
 *     the half-built buffer dies with it.
 * Calls outside transaction() that write are one-operation transactions; those that only read see
 * committed data and do not wait for the lock.
 */
import type { CryptoContext, DeviceAddress, DeviceCertificate, LocalIdentity, SeenInitialMessage } from '@meshwhisper/crypto';
import {
  KemPreKeyPair,
  ML_KEM_768_PUBLIC_KEY_LENGTH,
  ML_KEM_768_SECRET_KEY_LENGTH,
  X25519PreKeyPair,
  X25519_KEY_LENGTH,
  createContext,
  toHex,
  wipe,
} from '@meshwhisper/crypto';
import { STORAGE_WEB_LOCK_PREFIX } from '../constants.js';
import { checkKey, checkListOptions, checkTable, checkValue, compareKeys, lowerBound, utf8 } from './app-items.js';
import { StorageError, StorageErrorCode } from './errors.js';
import type { AppItem, ListItemsOptions, ProtocolStorage, StorageTx } from './types.js';
import { adoptIdentity, checkBlob, checkIdentity, exportIdentity, importIdentity, markStorageTx, renewedIdentity } from './types.js';

const S = { meta: 'meta', preKey: 'prekey', signedPreKey: 'signedPrekey', kemPreKey: 'kemPrekey', session: 'session', seen: 'seen', app: 'appItems' } as const;
type StoreName = (typeof S)[keyof typeof S];
type Key = string | number;

/**
 * Numbered migrations: migration i (1-based) upgrades the database from version i-1 to i inside
 * IndexedDB's versionchange transaction. Append only.
 */
export const INDEXEDDB_MIGRATIONS: readonly { readonly description: string; readonly up: (db: IDBDatabase) => void }[] = [
  {
    description: 'protocol stores: identity, prekeys, sessions, replay cache',
    up: (db) => {
      db.createObjectStore(S.meta);
      db.createObjectStore(S.preKey, { keyPath: 'id' });
      db.createObjectStore(S.signedPreKey, { keyPath: 'id' });
      db.createObjectStore(S.kemPreKey, { keyPath: 'id' });
      db.createObjectStore(S.session, { keyPath: 'address' });
      db.createObjectStore(S.seen, { keyPath: 'digest' });
    },
  },
  {
    description: 'app items: opaque values in named tables, written in the protocol transactions',
    // The key is [table, UTF-8 bytes of the key]: binary keys compare bytewise, which gives the
    // UTF-8 byte order listItems promises (string keys would compare UTF-16 code units).
    up: (db) => {
      db.createObjectStore(S.app, { keyPath: ['table', 'key'] });
    },
  },
];

interface AppItemRow {
  table: string;
  /** UTF-8 bytes of the item's key. */
  key: Uint8Array;
  value: Uint8Array;
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true });

const IDENTITY_KEY = 'identity';

interface PreKeyRow {
  id: number;
  secretKey: Uint8Array;
  publicKey: Uint8Array;
  createdAt: number;
}
interface KemRow extends PreKeyRow {
  lastResort: boolean;
}
interface SessionRow {
  address: string;
  record: Uint8Array;
}
interface SeenRow {
  digest: string;
  signedPreKeyId: number;
  kemPreKeyId: number;
  seenAt: number;
}
interface IdentityRow {
  certificate: Uint8Array;
  signingSeed: Uint8Array;
  dhSecret: Uint8Array;
}
type Row = PreKeyRow | KemRow | SessionRow | SeenRow | IdentityRow;

/** The key of a row in its store (meta uses out-of-line keys). */
function rowKey(store: StoreName, row: Row, key?: Key): Key {
  if (store === S.meta) return key!;
  if (store === S.session) return (row as SessionRow).address;
  if (store === S.seen) return (row as SeenRow).digest;
  return (row as PreKeyRow).id;
}

function request<T>(r: IDBRequest<T>, operation: string): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(new StorageError(StorageErrorCode.IO, operation, `IndexedDB request failed (${r.error?.name ?? 'unknown'})`, { cause: r.error }));
  });
}

const x25519Row = (k: X25519PreKeyPair): PreKeyRow => ({ id: k.id, secretKey: Uint8Array.from(k.secretKey), publicKey: Uint8Array.from(k.publicKey), createdAt: k.createdAt });
const kemRow = (k: KemPreKeyPair): KemRow => ({ ...x25519Row(k as unknown as X25519PreKeyPair), lastResort: k.lastResort });

function x25519FromRow(r: PreKeyRow, op: string): X25519PreKeyPair {
  return new X25519PreKeyPair(
    r.id,
    checkBlob(r.secretKey, X25519_KEY_LENGTH, 'prekey secret', op),
    Uint8Array.from(checkBlob(r.publicKey, X25519_KEY_LENGTH, 'prekey public key', op)),
    r.createdAt,
  );
}
function kemFromRow(r: KemRow, op: string): KemPreKeyPair {
  return new KemPreKeyPair(
    r.id,
    r.lastResort === true,
    checkBlob(r.secretKey, ML_KEM_768_SECRET_KEY_LENGTH, 'KEM prekey secret', op),
    Uint8Array.from(checkBlob(r.publicKey, ML_KEM_768_PUBLIC_KEY_LENGTH, 'KEM prekey public key', op)),
    r.createdAt,
  );
}

/** Wipes the secret fields of rows this adapter owns (fresh clones read from IDB, or its buffer). */
function wipeRow(row: unknown): void {
  if (row && typeof row === 'object') {
    const r = row as Partial<PreKeyRow & IdentityRow>;
    wipe(r.secretKey, r.signingSeed, r.dhSecret);
  }
}

const DELETED = Symbol('deleted');

/**
 * Reads committed data, overlaid by this view's buffered writes. The storage's own read-only
 * calls use a view with `buffered = false`.
 */
class IdbView implements StorageTx {
  open = true;
  readonly writes = new Map<StoreName, Map<Key, Row | typeof DELETED>>();
  /** Buffered app-item writes: table → key → value (or deleted). */
  readonly appWrites = new Map<string, Map<string, Uint8Array | typeof DELETED>>();
  constructor(
    private readonly storage: IndexedDbStorage,
    private readonly buffered: boolean,
  ) {
    if (buffered) markStorageTx(this);
  }

  private check(operation: string): void {
    if (!this.open) throw new StorageError(StorageErrorCode.TRANSACTION_CLOSED, operation, 'this transaction has already ended');
    this.storage.checkUsable(operation);
  }
  private write(store: StoreName, key: Key, row: Row | typeof DELETED, operation: string): void {
    this.check(operation);
    if (!this.buffered) throw new Error(`${operation}: unreachable (write outside a transaction)`);
    let m = this.writes.get(store);
    if (!m) this.writes.set(store, (m = new Map()));
    const old = m.get(key);
    if (old !== undefined && old !== DELETED) wipeRow(old);
    m.set(key, row);
  }
  /** The committed-or-buffered row; `owned` tells whether the caller may wipe it. */
  private async get<R extends Row>(store: StoreName, key: Key, operation: string): Promise<{ row: R; owned: boolean } | undefined> {
    this.check(operation);
    const b = this.writes.get(store)?.get(key);
    if (b === DELETED) return undefined;
    if (b !== undefined) return { row: b as R, owned: false };
    const row = (await this.storage.read((tx) => tx.objectStore(store).get(key), [store], operation)) as R | undefined;
    return row === undefined ? undefined : { row, owned: true };
  }
  private async all<R extends Row>(store: StoreName, operation: string): Promise<{ row: R; owned: boolean }[]> {
    this.check(operation);
    const committed = (await this.storage.read((tx) => tx.objectStore(store).getAll(), [store], operation)) as R[];
    const out = new Map<Key, { row: R; owned: boolean }>();
    for (const row of committed) out.set(rowKey(store, row), { row, owned: true });
    for (const [k, v] of this.writes.get(store) ?? []) {
      const prev = out.get(k);
      if (prev?.owned) wipeRow(prev.row);
      if (v === DELETED) out.delete(k);
      else out.set(k, { row: v as R, owned: false });
    }
    return [...out.values()].sort((a, b) => (rowKey(store, a.row) < rowKey(store, b.row) ? -1 : 1));
  }
  private async keys(store: StoreName, operation: string): Promise<Set<Key>> {
    this.check(operation);
    const committed = (await this.storage.read((tx) => tx.objectStore(store).getAllKeys(), [store], operation)) as Key[];
    const set = new Set<Key>(committed);
    for (const [k, v] of this.writes.get(store) ?? []) {
      if (v === DELETED) set.delete(k);
      else set.add(k);
    }
    return set;
  }
  private async loadX25519(store: StoreName, id: number, operation: string): Promise<X25519PreKeyPair | undefined> {
    const got = await this.get<PreKeyRow>(store, id, operation);
    if (!got) return undefined;
    try {
      return x25519FromRow(got.row, operation);
    } finally {
      if (got.owned) wipeRow(got.row);
    }
  }
  private async listX25519(store: StoreName, operation: string): Promise<X25519PreKeyPair[]> {
    const rows = await this.all<PreKeyRow>(store, operation);
    try {
      return rows.map((r) => x25519FromRow(r.row, operation));
    } finally {
      for (const r of rows) if (r.owned) wipeRow(r.row);
    }
  }

  async getLocalIdentity(): Promise<LocalIdentity> {
    this.check('getLocalIdentity');
    return this.storage.identity(this);
  }
  /** @internal The caller wipes the row's secrets when `owned`. */
  identityRow(): Promise<{ row: IdentityRow; owned: boolean } | undefined> {
    return this.get<IdentityRow>(S.meta, IDENTITY_KEY, 'getLocalIdentity');
  }
  /** @internal */
  async hasIdentity(): Promise<boolean> {
    this.check('hasLocalIdentity');
    const b = this.writes.get(S.meta)?.get(IDENTITY_KEY);
    if (b !== undefined) return b !== DELETED;
    return (await this.storage.read((tx) => tx.objectStore(S.meta).count(IDENTITY_KEY), [S.meta], 'hasLocalIdentity')) > 0;
  }
  /** @internal */
  putIdentityRow(row: IdentityRow): void {
    this.write(S.meta, IDENTITY_KEY, row, 'setLocalIdentity');
  }

  loadPreKey(id: number): Promise<X25519PreKeyPair | undefined> {
    return this.loadX25519(S.preKey, id, 'loadPreKey');
  }
  async storePreKey(key: X25519PreKeyPair): Promise<void> {
    this.write(S.preKey, key.id, x25519Row(key), 'storePreKey');
  }
  async removePreKey(id: number): Promise<void> {
    this.write(S.preKey, id, DELETED, 'removePreKey');
  }
  async countPreKeys(): Promise<number> {
    return (await this.keys(S.preKey, 'countPreKeys')).size;
  }
  loadSignedPreKey(id: number): Promise<X25519PreKeyPair | undefined> {
    return this.loadX25519(S.signedPreKey, id, 'loadSignedPreKey');
  }
  async storeSignedPreKey(key: X25519PreKeyPair): Promise<void> {
    this.write(S.signedPreKey, key.id, x25519Row(key), 'storeSignedPreKey');
  }
  async removeSignedPreKey(id: number): Promise<void> {
    this.write(S.signedPreKey, id, DELETED, 'removeSignedPreKey');
  }
  listSignedPreKeys(): Promise<X25519PreKeyPair[]> {
    return this.listX25519(S.signedPreKey, 'listSignedPreKeys');
  }
  async loadKemPreKey(id: number): Promise<KemPreKeyPair | undefined> {
    const got = await this.get<KemRow>(S.kemPreKey, id, 'loadKemPreKey');
    if (!got) return undefined;
    try {
      return kemFromRow(got.row, 'loadKemPreKey');
    } finally {
      if (got.owned) wipeRow(got.row);
    }
  }
  async storeKemPreKey(key: KemPreKeyPair): Promise<void> {
    this.write(S.kemPreKey, key.id, kemRow(key), 'storeKemPreKey');
  }
  async removeKemPreKey(id: number): Promise<void> {
    this.write(S.kemPreKey, id, DELETED, 'removeKemPreKey');
  }
  async listKemPreKeys(): Promise<KemPreKeyPair[]> {
    const rows = await this.all<KemRow>(S.kemPreKey, 'listKemPreKeys');
    try {
      return rows.map((r) => kemFromRow(r.row, 'listKemPreKeys'));
    } finally {
      for (const r of rows) if (r.owned) wipeRow(r.row);
    }
  }
  async loadSession(address: DeviceAddress): Promise<Uint8Array | undefined> {
    const got = await this.get<SessionRow>(S.session, address, 'loadSession');
    return got && Uint8Array.from(checkBlob(got.row.record, undefined, 'session record', 'loadSession'));
  }
  async storeSession(address: DeviceAddress, record: Uint8Array): Promise<void> {
    this.write(S.session, address, { address, record: Uint8Array.from(record) }, 'storeSession');
  }
  async removeSession(address: DeviceAddress): Promise<void> {
    this.write(S.session, address, DELETED, 'removeSession');
  }
  async listSessionAddresses(): Promise<DeviceAddress[]> {
    return [...(await this.keys(S.session, 'listSessionAddresses'))].map(String).sort();
  }
  async hasSeenInitialMessage(digest: Uint8Array): Promise<boolean> {
    return (await this.get<SeenRow>(S.seen, toHex(digest), 'hasSeenInitialMessage')) !== undefined;
  }
  async addSeenInitialMessage(digest: Uint8Array, info: SeenInitialMessage): Promise<void> {
    const row: SeenRow = { digest: toHex(digest), signedPreKeyId: info.signedPreKeyId, kemPreKeyId: info.kemPreKeyId, seenAt: info.seenAt };
    this.write(S.seen, row.digest, row, 'addSeenInitialMessage');
  }
  async pruneSeenInitialMessages(liveSignedPreKeyIds: ReadonlySet<number>, liveKemPreKeyIds: ReadonlySet<number>): Promise<number> {
    const op = 'pruneSeenInitialMessages';
    let n = 0;
    for (const { row } of await this.all<SeenRow>(S.seen, op)) {
      if (!liveSignedPreKeyIds.has(row.signedPreKeyId) || !liveKemPreKeyIds.has(row.kemPreKeyId)) {
        this.write(S.seen, row.digest, DELETED, op);
        n++;
      }
    }
    return n;
  }

  async getItem(table: string, key: string): Promise<Uint8Array | undefined> {
    const op = 'getItem';
    this.check(op);
    const [t, k] = [checkTable(table, op), checkKey(key, op)];
    const b = this.appWrites.get(t)?.get(k);
    if (b === DELETED) return undefined;
    if (b !== undefined) return Uint8Array.from(b);
    const row = (await this.storage.read((tx) => tx.objectStore(S.app).get([t, utf8(k)]), [S.app], op)) as AppItemRow | undefined;
    return row && checkBlob(row.value, undefined, 'app item value', op); // a fresh clone: ours to hand out
  }
  async setItem(table: string, key: string, value: Uint8Array): Promise<void> {
    const op = 'setItem';
    this.check(op); // a stale view says so before it judges the arguments
    this.appWrite(checkTable(table, op), checkKey(key, op), Uint8Array.from(checkValue(value, op)), op);
  }
  async deleteItem(table: string, key: string): Promise<void> {
    const op = 'deleteItem';
    this.check(op); // a stale view says so before it judges the arguments
    this.appWrite(checkTable(table, op), checkKey(key, op), DELETED, op);
  }
  async listItems(table: string, options?: ListItemsOptions): Promise<AppItem[]> {
    const op = 'listItems';
    this.check(op);
    const t = checkTable(table, op);
    const { prefix, limit, after } = checkListOptions(options, op);
    if (limit === 0) return [];
    const buffered = [...(this.appWrites.get(t) ?? [])].filter(([k]) => k.startsWith(prefix) && (after === undefined || compareKeys(k, after) > 0));
    // Each buffered delete can hide at most one committed item, so the first `limit + deletes`
    // committed items are enough to fill `limit` after merging.
    const deletes = buffered.filter(([, v]) => v === DELETED).length;
    const count = limit === undefined || limit + deletes > 0xffffffff ? undefined : limit + deletes;
    // [t, P] ≤ key < [t, P with its last byte + 1] (0xFF never occurs in UTF-8, so no carry); an
    // empty prefix ends before [t, []] (arrays sort after every binary key).
    const p = utf8(prefix);
    const upper = p.length === 0 ? [t, []] : [t, Uint8Array.of(...p.subarray(0, -1), p[p.length - 1]! + 1)];
    const lo = lowerBound(prefix, after);
    // A cursor beyond every key with the prefix: nothing left (and IDBKeyRange would refuse lower > upper).
    if (lo.exclusive && !lo.key.startsWith(prefix)) return [];
    const range = IDBKeyRange.bound([t, lo.exclusive ? utf8(lo.key) : p], upper, lo.exclusive, true);
    const rows = (await this.storage.read((tx) => tx.objectStore(S.app).getAll(range, count), [S.app], op)) as AppItemRow[];
    const merged = new Map<string, { value: Uint8Array; owned: boolean }>();
    try {
      for (const row of rows) {
        let k: string;
        try {
          k = fatalUtf8.decode(checkBlob(row.key, undefined, 'app item key', op));
        } catch (e) {
          if (e instanceof StorageError) throw e;
          throw new StorageError(StorageErrorCode.CORRUPT, op, 'stored app item key is not UTF-8', { cause: e });
        }
        merged.set(k, { value: checkBlob(row.value, undefined, 'app item value', op), owned: true });
      }
      for (const [k, v] of buffered) {
        const prev = merged.get(k);
        if (prev?.owned) wipe(prev.value);
        if (v === DELETED) merged.delete(k);
        else merged.set(k, { value: v, owned: false });
      }
      const keys = [...merged.keys()].sort(compareKeys);
      const out = keys.slice(0, limit).map((key) => {
        const { value, owned } = merged.get(key)!;
        merged.delete(key);
        return { key, value: owned ? value : Uint8Array.from(value) };
      });
      return out;
    } finally {
      for (const { value, owned } of merged.values()) if (owned) wipe(value); // read but not returned
      for (const row of rows) if (row.key instanceof Uint8Array) wipe(row.key);
    }
  }
  private appWrite(table: string, key: string, value: Uint8Array | typeof DELETED, operation: string): void {
    this.check(operation);
    if (!this.buffered) throw new Error(`${operation}: unreachable (write outside a transaction)`);
    let m = this.appWrites.get(table);
    if (!m) this.appWrites.set(table, (m = new Map()));
    const old = m.get(key);
    if (old !== undefined && old !== DELETED) wipe(old);
    m.set(key, value);
  }

  /** Wipes the buffered secrets (after commit or rollback). */
  dispose(): void {
    this.open = false;
    for (const m of this.writes.values()) for (const v of m.values()) if (v !== DELETED) wipeRow(v);
    this.writes.clear();
    for (const m of this.appWrites.values()) for (const v of m.values()) if (v !== DELETED) wipe(v);
    this.appWrites.clear();
  }
}

export interface IndexedDbStorageOptions {
  /** The IndexedDB database name; also names the Web Lock that serialises its writers. */
  readonly name: string;
  /** Crypto context used to rebuild the device key pair from its stored secrets. */
  readonly ctx?: CryptoContext;
  /** Sets the identity on a new storage; on an existing one it must be the identity already stored. */
  readonly identity?: LocalIdentity;
  /** Defaults to globalThis.indexedDB. */
  readonly indexedDB?: IDBFactory;
  /** Defaults to navigator.locks (Web Locks API). */
  readonly locks?: LockManager;
}

export class IndexedDbStorage implements ProtocolStorage {
  readonly kind = 'indexeddb';
  readonly #db: IDBDatabase;
  readonly #factory: IDBFactory;
  readonly #locks: LockManager;
  readonly #lockName: string;
  readonly #ctx: CryptoContext;
  #identity: LocalIdentity | undefined;
  /** Why new operations are refused (close() called, or a schema upgrade elsewhere). */
  #closed: string | undefined;
  /** The connection itself is gone: even operations accepted earlier cannot proceed. */
  #dbGone: string | undefined;
  #inFlight = new Set<Promise<unknown>>();

  /** @internal Use openIndexedDbStorage(). */
  constructor(db: IDBDatabase, locks: LockManager, ctx: CryptoContext, factory: IDBFactory) {
    this.#factory = factory;
    this.#db = db;
    this.#locks = locks;
    this.#lockName = STORAGE_WEB_LOCK_PREFIX + db.name;
    this.#ctx = ctx;
    // Another context upgrading the schema: step aside (the upgrade waits for every connection to close).
    db.onversionchange = () => {
      this.#closed ??= 'a newer version of the app upgraded the storage; reload';
      this.#dbGone ??= this.#closed;
      db.close();
    };
    // The browser closed the connection itself (site data cleared, storage pressure).
    db.onclose = () => {
      this.#closed ??= 'the browser closed the database';
      this.#dbGone ??= this.#closed;
    };
  }

  /** The IndexedDB database name. */
  get name(): string {
    return this.#db.name;
  }

  /** @internal Whether a new operation may start. */
  checkOpen(operation: string): void {
    if (this.#closed !== undefined) throw new StorageError(StorageErrorCode.CLOSED, operation, `the storage is closed (${this.#closed})`);
  }
  /** @internal Whether an operation accepted before close() may still touch the database. */
  checkUsable(operation: string): void {
    if (this.#dbGone !== undefined) throw new StorageError(StorageErrorCode.CLOSED, operation, `the storage is closed (${this.#dbGone})`);
  }

  /** @internal One readonly IDB transaction for one request. */
  read<T>(make: (tx: IDBTransaction) => IDBRequest<T>, stores: StoreName[], operation: string): Promise<T> {
    this.checkUsable(operation);
    let tx: IDBTransaction;
    try {
      tx = this.#db.transaction(stores, 'readonly');
    } catch (e) {
      throw new StorageError(StorageErrorCode.IO, operation, `IndexedDB refused a transaction (${(e as Error).name})`, { cause: e });
    }
    return request(make(tx), operation);
  }

  /** @internal */
  async identity(view: IdbView): Promise<LocalIdentity> {
    if (this.#identity) return this.#identity;
    const got = await view.identityRow();
    if (!got) throw new StorageError(StorageErrorCode.NO_IDENTITY, 'getLocalIdentity', 'this storage holds no device identity yet');
    const op = 'getLocalIdentity';
    const { row, owned } = got;
    try {
      const stored = {
        certificate: checkBlob(row.certificate, undefined, 'certificate', op),
        signingSeed: Uint8Array.from(checkBlob(row.signingSeed, 32, 'signing seed', op)),
        dhSecret: Uint8Array.from(checkBlob(row.dhSecret, 32, 'DH secret', op)),
      };
      this.#identity = importIdentity(this.#ctx, stored, op); // wipes the copies
      return this.#identity;
    } finally {
      if (owned) wipeRow(row);
    }
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inFlight.add(p);
    const done = () => void this.#inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  async #commit(view: IdbView, operation: string): Promise<void> {
    if (view.writes.size === 0 && view.appWrites.size === 0) return;
    this.checkUsable(operation);
    const stores: StoreName[] = [...view.writes.keys()];
    if (view.appWrites.size > 0) stores.push(S.app);
    let tx: IDBTransaction;
    try {
      tx = this.#db.transaction(stores, 'readwrite', { durability: 'strict' });
    } catch (e) {
      throw new StorageError(StorageErrorCode.IO, operation, `IndexedDB refused a transaction (${(e as Error).name})`, { cause: e });
    }
    const done = new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      const fail = () => reject(new StorageError(StorageErrorCode.IO, operation, `IndexedDB commit failed (${tx.error?.name ?? 'aborted'})`, { cause: tx.error }));
      tx.onabort = fail;
      tx.onerror = fail;
    });
    done.catch(() => undefined); // observed below, or superseded by the error thrown when a put fails
    try {
      for (const [store, m] of view.writes) {
        const os = tx.objectStore(store);
        for (const [key, v] of m) {
          if (v === DELETED) os.delete(key);
          else if (store === S.meta) os.put(v, key);
          else os.put(v);
        }
      }
      if (view.appWrites.size > 0) {
        const os = tx.objectStore(S.app);
        for (const [table, m] of view.appWrites) {
          for (const [key, v] of m) {
            if (v === DELETED) os.delete([table, utf8(key)]);
            else os.put({ table, key: utf8(key), value: v } satisfies AppItemRow);
          }
        }
      }
    } catch (e) {
      try {
        tx.abort();
      } catch {
        // already finished
      }
      throw new StorageError(StorageErrorCode.IO, operation, `IndexedDB rejected a write (${(e as Error).name})`, { cause: e });
    }
    await done;
  }

  transaction<T>(fn: (tx: StorageTx) => Promise<T>): Promise<T> {
    return this.#exclusive('transaction', async (view) => fn(view));
  }

  /** Runs `body` on a buffered view under the Web Lock and commits its writes in one IDB transaction. */
  #exclusive<T>(operation: string, body: (view: IdbView) => Promise<T>): Promise<T> {
    try {
      this.checkOpen(operation);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#track(
      this.#locks.request(this.#lockName, { mode: 'exclusive' }, async () => {
        const view = new IdbView(this, true);
        try {
          const result = await body(view);
          view.open = false;
          await this.#commit(view, operation);
          return result;
        } finally {
          view.dispose();
        }
      }) as Promise<T>,
    );
  }

  /** A read outside any transaction: committed data only. */
  #read<T>(body: (view: IdbView) => Promise<T>): Promise<T> {
    try {
      this.checkOpen('read');
    } catch (e) {
      return Promise.reject(e);
    }
    const view = new IdbView(this, false);
    return this.#track(body(view));
  }

  async hasLocalIdentity(): Promise<boolean> {
    return this.#identity !== undefined || this.#read((v) => v.hasIdentity());
  }

  async setLocalIdentity(identity: LocalIdentity): Promise<void> {
    const op = 'setLocalIdentity';
    checkIdentity(identity, op);
    await this.#exclusive(op, async (view) => {
      if (await view.hasIdentity()) throw new StorageError(StorageErrorCode.IDENTITY_EXISTS, op, 'this storage already holds a device identity');
      view.putIdentityRow(exportIdentity(identity));
    });
    this.#identity = identity;
  }

  async renewCertificate(certificate: DeviceCertificate): Promise<void> {
    const op = 'renewCertificate';
    // The cached identity changes only once the new certificate has committed. Another context of
    // the origin (a service worker) that cached the identity sees the renewal when it next opens.
    this.#identity = await this.#exclusive(op, async (view) => {
      const renewed = renewedIdentity(await view.getLocalIdentity(), certificate, op);
      view.putIdentityRow(exportIdentity(renewed));
      return renewed;
    });
  }

  async close(): Promise<void> {
    if (this.#closed !== undefined) return;
    this.#closed = 'close() was called';
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    this.#dbGone ??= this.#closed;
    this.#db.close();
  }
  async erase(): Promise<void> {
    const name = this.#db.name;
    await this.close();
    const factory = this.#factory;
    await new Promise<void>((resolve, reject) => {
      const req = factory.deleteDatabase(name);
      req.onsuccess = () => resolve();
      req.onerror = () => reject(new StorageError(StorageErrorCode.UNAVAILABLE, 'erase', `IndexedDB refused to delete ${name}`, { cause: req.error }));
      // Another tab or the service worker still has it open: the deletion completes when they close
      // (they get versionchange and step aside); onsuccess then fires.
      req.onblocked = () => undefined;
    });
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  getLocalIdentity = (): Promise<LocalIdentity> => this.#read((v) => v.getLocalIdentity());
  loadPreKey = (id: number): Promise<X25519PreKeyPair | undefined> => this.#read((v) => v.loadPreKey(id));
  storePreKey = (key: X25519PreKeyPair): Promise<void> => this.transaction((tx) => tx.storePreKey(key));
  removePreKey = (id: number): Promise<void> => this.transaction((tx) => tx.removePreKey(id));
  countPreKeys = (): Promise<number> => this.#read((v) => v.countPreKeys());
  loadSignedPreKey = (id: number): Promise<X25519PreKeyPair | undefined> => this.#read((v) => v.loadSignedPreKey(id));
  storeSignedPreKey = (key: X25519PreKeyPair): Promise<void> => this.transaction((tx) => tx.storeSignedPreKey(key));
  removeSignedPreKey = (id: number): Promise<void> => this.transaction((tx) => tx.removeSignedPreKey(id));
  listSignedPreKeys = (): Promise<X25519PreKeyPair[]> => this.#read((v) => v.listSignedPreKeys());
  loadKemPreKey = (id: number): Promise<KemPreKeyPair | undefined> => this.#read((v) => v.loadKemPreKey(id));
  storeKemPreKey = (key: KemPreKeyPair): Promise<void> => this.transaction((tx) => tx.storeKemPreKey(key));
  removeKemPreKey = (id: number): Promise<void> => this.transaction((tx) => tx.removeKemPreKey(id));
  listKemPreKeys = (): Promise<KemPreKeyPair[]> => this.#read((v) => v.listKemPreKeys());
  loadSession = (address: DeviceAddress): Promise<Uint8Array | undefined> => this.#read((v) => v.loadSession(address));
  storeSession = (address: DeviceAddress, record: Uint8Array): Promise<void> => this.transaction((tx) => tx.storeSession(address, record));
  removeSession = (address: DeviceAddress): Promise<void> => this.transaction((tx) => tx.removeSession(address));
  listSessionAddresses = (): Promise<DeviceAddress[]> => this.#read((v) => v.listSessionAddresses());
  hasSeenInitialMessage = (digest: Uint8Array): Promise<boolean> => this.#read((v) => v.hasSeenInitialMessage(digest));
  addSeenInitialMessage = (digest: Uint8Array, info: SeenInitialMessage): Promise<void> => this.transaction((tx) => tx.addSeenInitialMessage(digest, info));
  pruneSeenInitialMessages = (spk: ReadonlySet<number>, kem: ReadonlySet<number>): Promise<number> =>
    this.transaction((tx) => tx.pruneSeenInitialMessages(spk, kem));
  getItem = (table: string, key: string): Promise<Uint8Array | undefined> => this.#read((v) => v.getItem(table, key));
  setItem = (table: string, key: string, value: Uint8Array): Promise<void> => this.transaction((tx) => tx.setItem(table, key, value));
  deleteItem = (table: string, key: string): Promise<void> => this.transaction((tx) => tx.deleteItem(table, key));
  listItems = (table: string, options?: ListItemsOptions): Promise<AppItem[]> => this.#read((v) => v.listItems(table, options));
}

function openDatabase(factory: IDBFactory, name: string, op: string): Promise<IDBDatabase> {
  const version = INDEXEDDB_MIGRATIONS.length;
  return new Promise((resolve, reject) => {
    let req: IDBOpenDBRequest;
    try {
      req = factory.open(name, version);
    } catch (e) {
      reject(new StorageError(StorageErrorCode.UNAVAILABLE, op, `IndexedDB refused to open the database (${(e as Error).name})`, { cause: e }));
      return;
    }
    req.onupgradeneeded = (ev) => {
      const db = req.result;
      for (let v = ev.oldVersion; v < version; v++) INDEXEDDB_MIGRATIONS[v]!.up(db);
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => {
      const err = req.error;
      if (err?.name === 'VersionError') {
        reject(new StorageError(StorageErrorCode.SCHEMA_TOO_NEW, op, `storage schema is newer than this SDK supports (${version}); upgrade the SDK`, { cause: err }));
      } else {
        reject(new StorageError(StorageErrorCode.IO, op, `IndexedDB open failed (${err?.name ?? 'unknown'})`, { cause: err }));
      }
    };
    // Another connection on an older version did not close: it is not ours (ours close on
    // versionchange), so waiting is the only safe thing to do; IndexedDB resumes when it closes.
    req.onblocked = () => undefined;
  });
}

/**
 * Opens (creating or upgrading if needed) the IndexedDB storage `options.name`. Several contexts of
 * one origin may open the same name: their writes are serialised by a Web Lock.
 */
export async function openIndexedDbStorage(options: IndexedDbStorageOptions): Promise<IndexedDbStorage> {
  const op = 'openIndexedDbStorage';
  if (typeof options?.name !== 'string' || options.name === '') throw new TypeError(`${op}: name must be a non-empty string`);
  if (options.identity) checkIdentity(options.identity, op);
  const factory = options.indexedDB ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (!factory) throw new StorageError(StorageErrorCode.UNAVAILABLE, op, 'IndexedDB is not available in this environment');
  const locks = options.locks ?? (globalThis as { navigator?: { locks?: LockManager } }).navigator?.locks;
  if (!locks) throw new StorageError(StorageErrorCode.UNAVAILABLE, op, 'the Web Locks API (navigator.locks) is not available: writers could not be serialised');
  const db = await openDatabase(factory, options.name, op);
  const storage = new IndexedDbStorage(db, locks, options.ctx ?? createContext(), factory);
  return adoptIdentity(storage, options.identity, op);
}

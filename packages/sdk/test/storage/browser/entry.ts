/**
 * Runs in a real browser page (bundled by indexeddb-browser.test.ts): the conformance suite against
 * IndexedDB, plus a check that a service worker and the page, writing to one database at the same
 * time, are serialised by the Web Lock. Results go to window.__mwStorage for the Node side.
 */
import type { ProtocolStorage } from '../../../src/index.js';
import { INDEXEDDB_MIGRATIONS, IndexedDbStorage, openIndexedDbStorage } from '../../../src/index.js'; // the whole SDK entry point must bundle for browsers
import type { CaseResult, StorageFactory } from '../conformance.js';
import { runConformance } from '../conformance.js';

const factory: StorageFactory = {
  name: 'indexeddb',
  create: (label) => openIndexedDbStorage({ name: label }),
  async reopen(s) {
    if (!(s instanceof IndexedDbStorage)) throw new TypeError('not an IndexedDbStorage');
    await s.close();
    return openIndexedDbStorage({ name: s.name });
  },
  openSecond(s) {
    if (!(s instanceof IndexedDbStorage)) throw new TypeError('not an IndexedDbStorage');
    return openIndexedDbStorage({ name: s.name });
  },
};

const u32 = (n: number): Uint8Array => Uint8Array.of(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
const fromU32 = (b: Uint8Array | undefined): number => (b ? ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0 : 0);

/** The page and the service worker each add `n` to one counter, concurrently, through their own storage instance. */
async function pageAndServiceWorker(): Promise<CaseResult> {
  const name = 'page and service worker share one database: their writes are serialised (Web Locks)';
  const t0 = Date.now();
  let s: ProtocolStorage | undefined;
  try {
    const reg = await navigator.serviceWorker.register('/sw.js', { type: 'module' });
    await navigator.serviceWorker.ready;
    const sw = reg.active;
    if (!sw) throw new Error('service worker did not activate');
    const db = `shared-sw-${Date.now()}`;
    s = await openIndexedDbStorage({ name: db });
    const n = 20;
    const ask = (): Promise<{ ok: boolean; error?: string }> =>
      new Promise((resolve) => {
        const ch = new MessageChannel();
        ch.port1.onmessage = (e) => resolve(e.data as { ok: boolean; error?: string });
        sw.postMessage({ db, n }, [ch.port2]);
      });
    const mine = (async () => {
      for (let i = 0; i < n; i++) {
        await s!.transaction(async (tx) => {
          const v = fromU32(await tx.loadSession('counter:1'));
          await new Promise((r) => setTimeout(r, 1));
          await tx.storeSession('counter:1', u32(v + 1));
        });
      }
    })();
    const [theirs] = await Promise.all([ask(), mine]);
    if (!theirs.ok) throw new Error(`service worker failed: ${theirs.error}`);
    const total = fromU32(await s.loadSession('counter:1'));
    if (total !== 2 * n) throw new Error(`lost updates: counter is ${total}, expected ${2 * n}`);
    return { name, status: 'passed', ms: Date.now() - t0 };
  } catch (e) {
    const err = e as Error;
    return { name, status: 'failed', ms: Date.now() - t0, error: `${err.name}: ${err.message}\n${err.stack ?? ''}` };
  } finally {
    await s?.close();
  }
}

/** A database left at a higher version (a newer SDK) is refused with a typed error. */
async function schemaTooNew(): Promise<CaseResult> {
  const name = 'a database written by a newer SDK is refused (MW_SDK_STORAGE_SCHEMA_TOO_NEW)';
  const t0 = Date.now();
  try {
    const db = `newer-${Date.now()}`;
    await new Promise<void>((resolve, reject) => {
      const r = indexedDB.open(db, INDEXEDDB_MIGRATIONS.length + 5);
      r.onsuccess = () => {
        r.result.close();
        resolve();
      };
      r.onerror = () => reject(r.error);
    });
    let code: unknown;
    try {
      await (await openIndexedDbStorage({ name: db })).close();
    } catch (e) {
      code = (e as { code?: unknown }).code;
    }
    if (code !== 'MW_SDK_STORAGE_SCHEMA_TOO_NEW') throw new Error(`expected MW_SDK_STORAGE_SCHEMA_TOO_NEW, got ${String(code)}`);
    return { name, status: 'passed', ms: Date.now() - t0 };
  } catch (e) {
    const err = e as Error;
    return { name, status: 'failed', ms: Date.now() - t0, error: `${err.name}: ${err.message}` };
  }
}

/** A database left at schema 1 (before app items) is upgraded in place: its data kept, app items usable. */
async function upgradeFromSchema1(): Promise<CaseResult> {
  const name = 'a schema-1 database (before app items) is upgraded in place: data kept, app items usable';
  const t0 = Date.now();
  try {
    const db = `schema1-${Date.now()}`;
    await new Promise<void>((resolve, reject) => {
      const r = indexedDB.open(db, 1);
      r.onupgradeneeded = () => INDEXEDDB_MIGRATIONS[0]!.up(r.result);
      r.onsuccess = () => {
        const tx = r.result.transaction('session', 'readwrite');
        tx.objectStore('session').put({ address: 'old:1', record: Uint8Array.of(1, 2, 3) });
        tx.oncomplete = () => {
          r.result.close();
          resolve();
        };
        tx.onerror = () => reject(tx.error);
      };
      r.onerror = () => reject(r.error);
    });
    const s = await openIndexedDbStorage({ name: db });
    try {
      const old = await s.loadSession('old:1');
      if (!old || old.join() !== '1,2,3') throw new Error(`schema-1 session lost: ${String(old)}`);
      await s.setItem('outbox', 'm1', Uint8Array.of(9));
      const items = await s.listItems('outbox');
      if (items.length !== 1 || items[0]!.key !== 'm1' || items[0]!.value.join() !== '9') throw new Error(`app items after upgrade: ${JSON.stringify(items)}`);
    } finally {
      await s.close();
    }
    const version = await new Promise<number>((resolve, reject) => {
      const r = indexedDB.open(db);
      r.onsuccess = () => {
        resolve(r.result.version);
        r.result.close();
      };
      r.onerror = () => reject(r.error);
    });
    if (version !== INDEXEDDB_MIGRATIONS.length) throw new Error(`version ${version}, expected ${INDEXEDDB_MIGRATIONS.length}`);
    return { name, status: 'passed', ms: Date.now() - t0 };
  } catch (e) {
    const err = e as Error;
    return { name, status: 'failed', ms: Date.now() - t0, error: `${err.name}: ${err.message}` };
  }
}

(window as unknown as { __mwStorage: unknown }).__mwStorage = {
  async run(): Promise<CaseResult[]> {
    const results = await runConformance(factory);
    results.push(await pageAndServiceWorker());
    results.push(await schemaTooNew());
    results.push(await upgradeFromSchema1());
    return results;
  },
  /** Commits "a:1", then leaves a transaction that wrote "a:2" hanging (the test reloads the page). */
  async crashStart(db: string): Promise<void> {
    const s = await openIndexedDbStorage({ name: db });
    await s.storeSession('a:1', Uint8Array.of(1));
    let started!: () => void;
    const inside = new Promise<void>((r) => (started = r));
    void s.transaction(async (tx) => {
      await tx.storeSession('a:2', Uint8Array.of(2));
      started();
      await new Promise(() => undefined);
    });
    await inside;
  },
  /** After the reload: the lock is free again, "a:1" is there and "a:2" is not. */
  async crashCheck(db: string): Promise<{ a1: boolean; a2: boolean; writable: boolean }> {
    const s = await openIndexedDbStorage({ name: db });
    try {
      const writable = await Promise.race([
        s.storeSession('a:3', Uint8Array.of(3)).then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 5000)),
      ]);
      return { a1: (await s.loadSession('a:1')) !== undefined, a2: (await s.loadSession('a:2')) !== undefined, writable };
    } finally {
      await s.close();
    }
  },
};
document.title = 'ready';

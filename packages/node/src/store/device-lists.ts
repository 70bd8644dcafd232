/** SQLite device-list area: account key → the newest account-signed device list (verified before it is written). */
import type { Sqlite } from './db.js';
import type { StoredDeviceList } from './node-store.js';

export class SqliteDeviceLists {
  readonly #get;
  readonly #put;
  readonly #del;
  constructor(db: Sqlite) {
    this.#get = db.prepare<[Uint8Array], { epoch: number; encoded: Buffer }>('SELECT epoch, encoded FROM device_lists WHERE account_key = ?');
    this.#put = db.prepare(
      `INSERT INTO device_lists (account_key, epoch, encoded, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (account_key) DO UPDATE SET epoch = excluded.epoch, encoded = excluded.encoded, updated_at = excluded.updated_at`,
    );
    this.#del = db.prepare('DELETE FROM device_lists WHERE account_key = ?');
  }
  get(accountKey: Uint8Array): StoredDeviceList | undefined {
    const r = this.#get.get(accountKey);
    return r ? { epoch: r.epoch, encoded: new Uint8Array(r.encoded) } : undefined;
  }
  put(accountKey: Uint8Array, epoch: number, encoded: Uint8Array, now: number): void {
    this.#put.run(accountKey, epoch, encoded, now);
  }
  delete(accountKey: Uint8Array): void {
    this.#del.run(accountKey);
  }
}

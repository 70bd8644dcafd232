/** SQLite username area: (namespace, username) → owner account key. */
import { equalBytes } from '@meshwhisper/crypto';
import type { Sqlite } from './db.js';
import type { UsernameRow } from './node-store.js';

export class SqliteUsernames {
  readonly #get;
  readonly #put;
  readonly #del;
  readonly #delOwned;
  constructor(db: Sqlite) {
    this.#get = db.prepare<[string, string], { owner_key: Buffer; updated_at: number }>('SELECT owner_key, updated_at FROM usernames WHERE namespace = ? AND username = ?');
    this.#put = db.prepare(
      `INSERT INTO usernames (namespace, username, owner_key, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (namespace, username) DO UPDATE SET owner_key = excluded.owner_key, updated_at = excluded.updated_at`,
    );
    this.#del = db.prepare('DELETE FROM usernames WHERE namespace = ? AND username = ?');
    this.#delOwned = db.prepare('DELETE FROM usernames WHERE owner_key = ?');
  }
  get(namespace: string, username: string): UsernameRow | undefined {
    const r = this.#get.get(namespace, username);
    return r ? { ownerKey: new Uint8Array(r.owner_key), updatedAt: r.updated_at } : undefined;
  }
  /** Compare-and-set (inside a transaction). */
  set(namespace: string, username: string, expected: Uint8Array | undefined, owner: Uint8Array | undefined, now: number): boolean {
    const current = this.get(namespace, username)?.ownerKey;
    const same = current === undefined || expected === undefined ? current === expected : equalBytes(current, expected);
    if (!same) return false;
    if (owner) this.#put.run(namespace, username, owner, now);
    else this.#del.run(namespace, username);
    return true;
  }
  deleteOwnedBy(ownerKey: Uint8Array): number {
    return this.#delOwned.run(ownerKey).changes;
  }
}

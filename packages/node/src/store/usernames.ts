/** Username storage: (namespace, username) → owner account key. */
import type { Sqlite } from './db.js';

export interface UsernameRow {
  readonly ownerKey: Uint8Array;
  readonly updatedAt: number;
}

export class UsernameReader {
  readonly #get;
  constructor(protected readonly db: Sqlite) {
    this.#get = db.prepare<[string, string], { owner_key: Buffer; updated_at: number }>('SELECT owner_key, updated_at FROM usernames WHERE namespace = ? AND username = ?');
  }
  get(namespace: string, username: string): UsernameRow | undefined {
    const r = this.#get.get(namespace, username);
    return r ? { ownerKey: new Uint8Array(r.owner_key), updatedAt: r.updated_at } : undefined;
  }
}

export class UsernameTransactor extends UsernameReader {
  readonly #put;
  readonly #del;
  constructor(db: Sqlite) {
    super(db);
    this.#put = db.prepare(
      `INSERT INTO usernames (namespace, username, owner_key, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (namespace, username) DO UPDATE SET owner_key = excluded.owner_key, updated_at = excluded.updated_at`,
    );
    this.#del = db.prepare('DELETE FROM usernames WHERE namespace = ? AND username = ?');
  }
  put(namespace: string, username: string, ownerKey: Uint8Array, now: number): void {
    this.#put.run(namespace, username, ownerKey, now);
  }
  delete(namespace: string, username: string): void {
    this.#del.run(namespace, username);
  }
  deleteOwnedBy(ownerKey: Uint8Array): number {
    return this.db.prepare('DELETE FROM usernames WHERE owner_key = ?').run(ownerKey).changes;
  }
}

/**
 * The node's store: one SQLite connection, readers for every area, and `transact` for writes.
 * Every write runs inside `transact` (BEGIN IMMEDIATE … COMMIT): it is all-or-nothing and, with
 * synchronous=FULL, durable once `transact` returns.
 */
import { openDatabase } from './db.js';
import type { Sqlite } from './db.js';
import type { BlobReader} from './blobs.js';
import { BlobTransactor } from './blobs.js';
import type { DirectoryReader} from './directory.js';
import { DirectoryTransactor } from './directory.js';
import type { MailboxReader} from './mailbox.js';
import { MailboxTransactor } from './mailbox.js';
import type { UsernameReader} from './usernames.js';
import { UsernameTransactor } from './usernames.js';

export interface StoreReaders {
  readonly mailbox: MailboxReader;
  readonly directory: DirectoryReader;
  readonly usernames: UsernameReader;
  readonly blobs: BlobReader;
}

export interface StoreTransactors {
  readonly mailbox: MailboxTransactor;
  readonly directory: DirectoryTransactor;
  readonly usernames: UsernameTransactor;
  readonly blobs: BlobTransactor;
}

export class Store implements StoreReaders, Disposable {
  readonly db: Sqlite;
  readonly mailbox: MailboxReader;
  readonly directory: DirectoryReader;
  readonly usernames: UsernameReader;
  readonly blobs: BlobReader;
  readonly #tx: StoreTransactors;

  constructor(file: string) {
    this.db = openDatabase(file);
    this.#tx = {
      mailbox: new MailboxTransactor(this.db),
      directory: new DirectoryTransactor(this.db),
      usernames: new UsernameTransactor(this.db),
      blobs: new BlobTransactor(this.db),
    };
    this.mailbox = this.#tx.mailbox;
    this.directory = this.#tx.directory;
    this.usernames = this.#tx.usernames;
    this.blobs = this.#tx.blobs;
  }

  /** Runs `fn` in one immediate transaction; rolls back if it throws. */
  transact<T>(fn: (tx: StoreTransactors) => T): T {
    return this.db.transaction(() => fn(this.#tx)).immediate();
  }

  /**
   * Group commit: runs `fn` for every item in ONE immediate transaction (one fsync), each item in
   * its own savepoint, so an item that throws (e.g. quota) is rolled back alone and reported,
   * while the others commit together.
   */
  transactEach<T, R>(items: readonly T[], fn: (tx: StoreTransactors, item: T) => R): ({ ok: true; value: R } | { ok: false; error: unknown })[] {
    const one = this.db.transaction((item: T) => fn(this.#tx, item));
    return this.db
      .transaction(() =>
        items.map((item): { ok: true; value: R } | { ok: false; error: unknown } => {
          try {
            return { ok: true, value: one(item) };
          } catch (error) {
            return { ok: false, error };
          }
        }),
      )
      .immediate();
  }

  /** True when the database accepts a write (for /ready). */
  writable(): boolean {
    try {
      this.transact(() => this.db.prepare("INSERT INTO meta (key, value) VALUES ('ready_probe', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(String(Date.now())));
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    if (!this.db.open) return;
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      this.db.close();
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

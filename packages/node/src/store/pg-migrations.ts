/**
 * PostgreSQL schema migrations (storage format of the cluster store, pg-store.ts). Applied in
 * order, each in its own transaction, under a transaction-scoped advisory lock so that several
 * node instances starting at once apply each migration exactly once. `mw_schema_migrations`
 * records what was applied. Never edit a released migration: add the next one.
 *
 * The tables mirror the SQLite schema after its migration 4 (migrations.ts): per-mailbox
 * sequences kept in mailbox_stats.next_seq, no sender column, media records that name no device.
 */
export interface PgMigration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const PG_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1,
    name: 'initial schema (as SQLite after its migration 4), challenges and leases',
    sql: `
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

      -- Key directory. mailbox = mailboxIdOf(device signing key).
      CREATE TABLE devices (
        mailbox BYTEA PRIMARY KEY,
        account_key BYTEA NOT NULL,
        certificate BYTEA NOT NULL,
        issued_at BIGINT NOT NULL,
        signed_prekey BYTEA,
        last_resort_kem_prekey BYTEA,
        updated_at BIGINT NOT NULL
      );
      CREATE INDEX devices_by_account ON devices (account_key);
      CREATE TABLE one_time_prekeys (mailbox BYTEA NOT NULL, key_id BIGINT NOT NULL, encoded BYTEA NOT NULL, PRIMARY KEY (mailbox, key_id));
      CREATE TABLE kem_prekeys (mailbox BYTEA NOT NULL, key_id BIGINT NOT NULL, encoded BYTEA NOT NULL, PRIMARY KEY (mailbox, key_id));

      -- Store-and-forward queue. (mailbox, seq) orders delivery; id is what the recipient acknowledges.
      -- No sender column: sends are anonymous (docs/threat-model.md).
      CREATE TABLE messages (
        mailbox BYTEA NOT NULL,
        seq BIGINT NOT NULL,
        id BYTEA NOT NULL,
        payload BYTEA NOT NULL,
        received_at BIGINT NOT NULL,
        with_token BOOLEAN NOT NULL,
        PRIMARY KEY (mailbox, seq)
      );
      CREATE UNIQUE INDEX messages_by_id ON messages (mailbox, id);
      CREATE INDEX messages_by_lane ON messages (mailbox, with_token, seq);
      CREATE INDEX messages_by_time ON messages (received_at);
      -- Payloads are sealed already: compressing them costs CPU for nothing.
      ALTER TABLE messages ALTER COLUMN payload SET STORAGE EXTERNAL;

      -- Per-mailbox counters, in step with messages (same transaction). Its row is the mailbox's
      -- writer lock: every transaction that changes the mailbox's envelopes locks it first, so
      -- envelopes of one mailbox commit in seq order. A drained mailbox keeps no row.
      CREATE TABLE mailbox_stats (
        mailbox BYTEA PRIMARY KEY,
        messages BIGINT NOT NULL DEFAULT 0,
        bytes BIGINT NOT NULL DEFAULT 0,
        tokenless BIGINT NOT NULL DEFAULT 0,
        gap_expired BIGINT NOT NULL DEFAULT 0,
        gap_evicted BIGINT NOT NULL DEFAULT 0,
        next_seq BIGINT NOT NULL DEFAULT 1
      );

      -- SHA-256 of each delivery token a recipient set; the token itself is never stored.
      CREATE TABLE delivery_tokens (mailbox BYTEA NOT NULL, token_hash BYTEA NOT NULL, PRIMARY KEY (mailbox, token_hash));

      CREATE TABLE usernames (
        namespace TEXT NOT NULL,
        username TEXT NOT NULL,
        owner_key BYTEA NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (namespace, username)
      );
      CREATE INDEX usernames_by_owner ON usernames (owner_key);

      CREATE TABLE media (id TEXT PRIMARY KEY, size BIGINT NOT NULL, expires_at BIGINT NOT NULL);
      CREATE INDEX media_by_expiry ON media (expires_at);
      CREATE TABLE media_budget (mailbox BYTEA NOT NULL, budget_window BIGINT NOT NULL, bytes BIGINT NOT NULL, PRIMARY KEY (mailbox, budget_window));

      CREATE TABLE archives (
        account_key BYTEA PRIMARY KEY,
        archive_key BYTEA NOT NULL UNIQUE,
        size BIGINT NOT NULL DEFAULT 0,
        updated_at BIGINT NOT NULL DEFAULT 0,
        key_source BYTEA
      );

      CREATE TABLE push_registrations (
        mailbox BYTEA PRIMARY KEY REFERENCES devices (mailbox) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('webpush', 'apns', 'fcm')),
        token TEXT NOT NULL,
        p256dh BYTEA,
        auth BYTEA,
        apns_mode TEXT CHECK (apns_mode IS NULL OR apns_mode IN ('background', 'alert')),
        updated_at BIGINT NOT NULL
      );

      -- Used challenge nonces (single use across every instance), forgotten after expires_at.
      CREATE TABLE used_challenges (nonce BYTEA PRIMARY KEY, expires_at BIGINT NOT NULL);
      CREATE INDEX used_challenges_by_expiry ON used_challenges (expires_at);

      -- Periodic jobs (the sweep) run by one instance at a time: a lease with an expiry in database time.
      CREATE TABLE leases (job TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at TIMESTAMPTZ NOT NULL);
    `,
  },
  {
    version: 2,
    name: 'device lists (as SQLite migration 5)',
    sql: `
      -- The newest account-signed device list per account (docs/spec/02-keys.md §2.5), verified
      -- before it is written; epoch copied out of the encoding for the compare-and-set.
      CREATE TABLE device_lists (
        account_key BYTEA PRIMARY KEY,
        epoch BIGINT NOT NULL,
        encoded BYTEA NOT NULL,
        updated_at BIGINT NOT NULL
      );
    `,
  },
  {
    version: 3,
    name: 'archive versions (as SQLite migration 6)',
    sql: `
      ALTER TABLE archives ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
      ALTER TABLE archives ADD COLUMN blob_name TEXT;
      UPDATE archives SET version = 1 WHERE updated_at > 0;
    `,
  },
  {
    version: 4,
    name: 'certificate renewals (as SQLite migration 8)',
    sql: `
      -- A manager-issued renewed certificate per device, until the device adopts it (docs/spec/02-keys.md §2.6).
      ALTER TABLE devices ADD COLUMN renewal_certificate BYTEA;
      ALTER TABLE devices ADD COLUMN renewal_issued_at BIGINT;
    `,
  },
];

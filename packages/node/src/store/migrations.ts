/**
 * Numbered schema migrations (storage format, separate from the wire format). Applied in order
 * inside one transaction each; PRAGMA user_version records the last applied number. Never edit a
 * released migration: add the next one.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema: mailboxes, directory, usernames, media, archives',
    sql: `
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;

      -- Store-and-forward queue. seq orders delivery; id is what the recipient acknowledges.
      -- No sender column exists: sends are anonymous (docs/threat-model.md).
      CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id BLOB NOT NULL UNIQUE,
        mailbox BLOB NOT NULL,
        payload BLOB NOT NULL,
        received_at INTEGER NOT NULL,
        with_token INTEGER NOT NULL CHECK (with_token IN (0, 1))
      );
      CREATE INDEX messages_by_mailbox ON messages (mailbox, seq);
      CREATE INDEX messages_by_lane ON messages (mailbox, with_token, seq);
      CREATE INDEX messages_by_time ON messages (received_at);

      -- Per-mailbox counters kept in step with messages (same transaction), and pending gap counts.
      CREATE TABLE mailbox_stats (
        mailbox BLOB PRIMARY KEY,
        messages INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        tokenless INTEGER NOT NULL DEFAULT 0,
        gap_expired INTEGER NOT NULL DEFAULT 0,
        gap_evicted INTEGER NOT NULL DEFAULT 0
      ) WITHOUT ROWID;

      -- SHA-256 of each delivery token a recipient set; the token itself is never stored.
      CREATE TABLE delivery_tokens (
        mailbox BLOB NOT NULL,
        token_hash BLOB NOT NULL,
        PRIMARY KEY (mailbox, token_hash)
      ) WITHOUT ROWID;

      -- Key directory. mailbox = mailboxIdOf(device signing key).
      CREATE TABLE devices (
        mailbox BLOB PRIMARY KEY,
        account_key BLOB NOT NULL,
        certificate BLOB NOT NULL,
        issued_at INTEGER NOT NULL,
        signed_prekey BLOB,
        last_resort_kem_prekey BLOB,
        updated_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX devices_by_account ON devices (account_key);
      CREATE TABLE one_time_prekeys (
        mailbox BLOB NOT NULL,
        key_id INTEGER NOT NULL,
        encoded BLOB NOT NULL,
        PRIMARY KEY (mailbox, key_id)
      ) WITHOUT ROWID;
      CREATE TABLE kem_prekeys (
        mailbox BLOB NOT NULL,
        key_id INTEGER NOT NULL,
        encoded BLOB NOT NULL,
        PRIMARY KEY (mailbox, key_id)
      ) WITHOUT ROWID;

      CREATE TABLE usernames (
        namespace TEXT NOT NULL,
        username TEXT NOT NULL,
        owner_key BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, username)
      ) WITHOUT ROWID;
      CREATE INDEX usernames_by_owner ON usernames (owner_key);

      CREATE TABLE media (
        id TEXT PRIMARY KEY,
        owner BLOB NOT NULL,
        size INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX media_by_owner ON media (owner);
      CREATE INDEX media_by_expiry ON media (expires_at);

      CREATE TABLE archives (
        account_key BLOB PRIMARY KEY,
        archive_key BLOB NOT NULL UNIQUE,
        size INTEGER NOT NULL DEFAULT 0,
        updated_at INTEGER NOT NULL DEFAULT 0
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 2,
    name: 'archive key-source record (public bootstrap data for a fresh device)',
    sql: `ALTER TABLE archives ADD COLUMN key_source BLOB;`,
  },
  {
    version: 3,
    name: 'push endpoints (one per device; removed with the device)',
    sql: `
      -- token: the Web Push endpoint URL, the APNs device token (hex) or the FCM registration
      -- token. p256dh/auth: Web Push only. apns_mode: APNs only. The foreign key removes the row
      -- in the same transaction that deletes the device (DELETE /v1/device, /v1/account).
      CREATE TABLE push_registrations (
        mailbox BLOB PRIMARY KEY REFERENCES devices (mailbox) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('webpush', 'apns', 'fcm')),
        token TEXT NOT NULL,
        p256dh BLOB,
        auth BLOB,
        apns_mode TEXT CHECK (apns_mode IS NULL OR apns_mode IN ('background', 'alert')),
        updated_at INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 4,
    name: 'per-mailbox sequences (no global counter), media records that name no device',
    sql: `
      -- Per-mailbox seq in a WITHOUT ROWID table: no AUTOINCREMENT (sqlite_sequence counted every
      -- envelope ever) and no rowid (a global insertion order). next_seq lives with the counters.
      CREATE TABLE messages_v4 (
        mailbox BLOB NOT NULL,
        seq INTEGER NOT NULL,
        id BLOB NOT NULL,
        payload BLOB NOT NULL,
        received_at INTEGER NOT NULL,
        with_token INTEGER NOT NULL CHECK (with_token IN (0, 1)),
        PRIMARY KEY (mailbox, seq)
      ) WITHOUT ROWID;
      INSERT INTO messages_v4 (mailbox, seq, id, payload, received_at, with_token)
        SELECT mailbox, row_number() OVER (PARTITION BY mailbox ORDER BY seq), id, payload, received_at, with_token FROM messages;
      DROP TABLE messages;
      ALTER TABLE messages_v4 RENAME TO messages;
      CREATE UNIQUE INDEX messages_by_id ON messages (mailbox, id);
      CREATE INDEX messages_by_lane ON messages (mailbox, with_token, seq);
      CREATE INDEX messages_by_time ON messages (received_at);
      DELETE FROM sqlite_sequence;

      ALTER TABLE mailbox_stats ADD COLUMN next_seq INTEGER NOT NULL DEFAULT 1;
      UPDATE mailbox_stats SET next_seq = 1 + coalesce((SELECT max(seq) FROM messages m WHERE m.mailbox = mailbox_stats.mailbox), 0);

      -- Media records name no device. The quota is an upload budget per device and window
      -- (media_budget), which says how much a device uploaded in a window, not which blob.
      CREATE TABLE media_v4 (
        id TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      INSERT INTO media_v4 (id, size, expires_at) SELECT id, size, expires_at FROM media;
      DROP TABLE media;
      ALTER TABLE media_v4 RENAME TO media;
      CREATE INDEX media_by_expiry ON media (expires_at);
      CREATE TABLE media_budget (
        mailbox BLOB NOT NULL,
        budget_window INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        PRIMARY KEY (mailbox, budget_window)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 5,
    name: 'device lists: the current account-signed device list per account',
    sql: `
      -- The newest device list per account (docs/spec/02-keys.md §2.5), verified before it is
      -- written. The node enforces it: a device whose mailbox it does not name is refused and its
      -- directory entry deleted. epoch is copied out of the encoding for the compare-and-set.
      CREATE TABLE device_lists (
        account_key BLOB PRIMARY KEY,
        epoch INTEGER NOT NULL,
        encoded BLOB NOT NULL,
        updated_at INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 6,
    name: 'archive versions: compare-and-swap of the account archive',
    sql: `
      -- docs/spec/node-protocol.md §9: every stored archive has a version, raised by one on each
      -- replacement; a write names the version it replaces (compare-and-swap, never last writer
      -- wins). Each version's bytes are a file of its own (blob_name) so two writes racing for the
      -- same version can never leave one's bytes under the other's version. NULL blob_name: the
      -- file of an archive stored before this migration (named after the account key).
      ALTER TABLE archives ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE archives ADD COLUMN blob_name TEXT;
      UPDATE archives SET version = 1 WHERE updated_at > 0;
    `,
  },
  {
    version: 7,
    name: 'no index on envelope ids: acks find rows by (mailbox, seq)',
    sql: `
      -- Ids are random: every insert and every ack dirtied a random leaf of this index, so a group
      -- commit wrote about one index page per envelope once the index outgrew the page cache (the
      -- 100,000 drain was not linear: 4.3 → 9.3 KiB written per envelope from 20,000 to 100,000).
      -- A device connection knows the seq of each envelope it delivered and acks by primary key.
      DROP INDEX messages_by_id;
    `,
  },
  {
    version: 8,
    name: 'certificate renewals: a manager-issued renewal per device, until the device adopts it',
    sql: `
      -- A renewed certificate a manager issued for this device (docs/spec/02-keys.md §2.6),
      -- verified before it is written (account signature, current device list, newer than the
      -- registered certificate). Served to the device it names; cleared when the device uploads a
      -- certificate at least as new; deleted with the device row.
      ALTER TABLE devices ADD COLUMN renewal_certificate BLOB;
      ALTER TABLE devices ADD COLUMN renewal_issued_at INTEGER;
    `,
  },
  {
    version: 9,
    name: 'envelopes in reused storage slots, indexed by (mailbox, seq)',
    sql: `
      -- Until now envelopes lived in a WITHOUT ROWID table keyed by (mailbox, seq): each 1 KiB row
      -- sat in the leaf of its mailbox, so a group commit of envelopes to N random mailboxes dirtied
      -- about N table pages (8 KiB each) to insert them and as many again to delete them, and the
      -- WAL — what every commit writes and fsyncs, and every checkpoint copies and truncates — grew
      -- by ~8 KiB per envelope per statement. Now the row lives at a storage slot (the rowid) that
      -- the store writer reuses, lowest free first (sqlite-writer.worker.js): envelopes written
      -- together sit on the same few pages and are deleted together; only the small index entries
      -- (mailbox, seq) → slot land in per-mailbox pages. A slot is a reused position, never a
      -- counter: it counts nothing and orders nothing beyond "stored while that position was free"
      -- (no AUTOINCREMENT, no global sequence; docs/threat-model.md).
      CREATE TABLE messages_v9 (
        slot INTEGER PRIMARY KEY,
        mailbox BLOB NOT NULL,
        seq INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        with_token INTEGER NOT NULL CHECK (with_token IN (0, 1)),
        id BLOB NOT NULL,
        payload BLOB NOT NULL
      );
      INSERT INTO messages_v9 (slot, mailbox, seq, received_at, with_token, id, payload)
        SELECT row_number() OVER (ORDER BY mailbox, seq), mailbox, seq, received_at, with_token, id, payload FROM messages;
      DROP TABLE messages;
      ALTER TABLE messages_v9 RENAME TO messages;
      CREATE UNIQUE INDEX messages_by_mailbox ON messages (mailbox, seq);
      -- First-contact (tokenless) mail is rare: a partial index finds the oldest for eviction.
      CREATE INDEX messages_tokenless ON messages (mailbox, seq) WHERE with_token = 0;
      CREATE INDEX messages_by_time ON messages (received_at);
    `,
  },
];

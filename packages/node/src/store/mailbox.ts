/**
 * SQLite mailbox area: the durable queue of sealed envelopes per recipient device, its quota
 * and gap counters (mailbox_stats, which also holds the per-mailbox next_seq), and the hashes of
 * its delivery tokens. Synchronous: SqliteNodeStore runs these inside its transactions. Inserting
 * and acknowledging (the hot path) live in the writer thread, sqlite-writer.worker.js.
 */
import type { Sqlite } from './db.js';
import type { MailboxStats, StoredEnvelope } from './node-store.js';

const EMPTY_STATS: MailboxStats = { messages: 0, bytes: 0, tokenless: 0, gapExpired: 0, gapEvicted: 0 };

interface StatsRow {
  messages: number;
  bytes: number;
  tokenless: number;
  gap_expired: number;
  gap_evicted: number;
  next_seq: number;
}

const toBytes = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

export class SqliteMailbox {
  readonly #batch;
  readonly #stats;
  readonly #token;
  readonly #upsertStats;
  readonly #dropEmptyStats;
  readonly #expiring;
  readonly #deleteExpired;
  readonly #anyExpired;
  readonly #gapAdd;
  readonly #gapClear;
  readonly #deleteTokens;
  readonly #insertToken;
  readonly #deleteMessages;
  readonly #deleteStats;
  readonly #totals;

  constructor(private readonly db: Sqlite) {
    // Raw rows ([seq, id, payload, received_at]): no object with named properties per row (a drain
    // reads ~930 rows per call). Iterated, not all(): the byte bound stops the read, and with
    // envelopes of up to 256 KiB, `limit` rows could be hundreds of megabytes.
    this.#batch = db
      .prepare<[Uint8Array, number, number], [number, Buffer, Buffer, number]>('SELECT seq, id, payload, received_at FROM messages WHERE mailbox = ? AND seq > ? ORDER BY seq LIMIT ?')
      .raw();
    this.#stats = db.prepare<[Uint8Array], StatsRow>('SELECT messages, bytes, tokenless, gap_expired, gap_evicted, next_seq FROM mailbox_stats WHERE mailbox = ?');
    this.#token = db.prepare<[Uint8Array, Uint8Array], { one: number }>('SELECT 1 AS one FROM delivery_tokens WHERE mailbox = ? AND token_hash = ?');
    this.#upsertStats = db.prepare(
      `INSERT INTO mailbox_stats (mailbox, messages, bytes, tokenless, next_seq) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (mailbox) DO UPDATE SET messages = messages + excluded.messages, bytes = bytes + excluded.bytes,
         tokenless = tokenless + excluded.tokenless, next_seq = max(next_seq, excluded.next_seq)`,
    );
    // A drained mailbox keeps no row: its next_seq would otherwise count every envelope it ever got.
    this.#dropEmptyStats = db.prepare('DELETE FROM mailbox_stats WHERE mailbox = ? AND messages <= 0 AND gap_expired <= 0 AND gap_evicted <= 0');
    this.#expiring = db.prepare<[number, number], { mailbox: Buffer; n: number; bytes: number; tokenless: number }>(
      `SELECT mailbox, count(*) AS n, sum(length(payload)) AS bytes, sum(1 - with_token) AS tokenless
       FROM messages WHERE received_at < ? GROUP BY mailbox LIMIT ?`,
    );
    this.#deleteExpired = db.prepare('DELETE FROM messages WHERE mailbox = ? AND received_at < ?');
    this.#anyExpired = db.prepare<[number], number>('SELECT 1 FROM messages WHERE received_at < ? LIMIT 1').pluck();
    this.#gapAdd = db.prepare(
      `INSERT INTO mailbox_stats (mailbox, gap_expired, gap_evicted) VALUES (?, ?, ?)
       ON CONFLICT (mailbox) DO UPDATE SET gap_expired = gap_expired + excluded.gap_expired, gap_evicted = gap_evicted + excluded.gap_evicted`,
    );
    this.#gapClear = db.prepare('UPDATE mailbox_stats SET gap_expired = max(0, gap_expired - ?), gap_evicted = max(0, gap_evicted - ?) WHERE mailbox = ?');
    this.#deleteTokens = db.prepare('DELETE FROM delivery_tokens WHERE mailbox = ?');
    this.#insertToken = db.prepare('INSERT OR IGNORE INTO delivery_tokens (mailbox, token_hash) VALUES (?, ?)');
    this.#deleteMessages = db.prepare('DELETE FROM messages WHERE mailbox = ?');
    this.#deleteStats = db.prepare('DELETE FROM mailbox_stats WHERE mailbox = ?');
    this.#totals = db.prepare<[], { envelopes: number | null; bytes: number | null }>('SELECT sum(messages) AS envelopes, sum(bytes) AS bytes FROM mailbox_stats');
  }

  /** Up to `limit` envelopes after `afterSeq`, oldest first, stopping before `maxBytes` of payload (at least one). */
  fetch(mailbox: Uint8Array, afterSeq: number, limit: number, maxBytes: number): StoredEnvelope[] {
    const out: StoredEnvelope[] = [];
    let bytes = 0;
    for (const [seq, id, payload, receivedAt] of this.#batch.iterate(mailbox, afterSeq, limit)) {
      if (out.length > 0 && bytes + payload.length > maxBytes) break;
      bytes += payload.length;
      out.push({ seq, id: toBytes(id), payload: toBytes(payload), receivedAt });
    }
    return out;
  }

  stats(mailbox: Uint8Array): MailboxStats {
    const r = this.#stats.get(mailbox);
    return r ? { messages: r.messages, bytes: r.bytes, tokenless: r.tokenless, gapExpired: r.gap_expired, gapEvicted: r.gap_evicted } : EMPTY_STATS;
  }

  hasTokenHash(mailbox: Uint8Array, tokenHash: Uint8Array): boolean {
    return this.#token.get(mailbox, tokenHash) !== undefined;
  }

  /** Is any envelope older than `before`? A plain read (messages_by_time): no write lock, no transaction of its own. */
  anyExpired(before: number): boolean {
    return this.#anyExpired.get(before) !== undefined;
  }

  expire(before: number, maxMailboxes: number): { envelopes: number; mailboxes: number } {
    let total = 0;
    const groups = this.#expiring.all(before, maxMailboxes);
    for (const g of groups) {
      this.#deleteExpired.run(g.mailbox, before);
      this.#upsertStats.run(g.mailbox, -g.n, -g.bytes, -g.tokenless, 1);
      this.#gapAdd.run(g.mailbox, g.n, 0);
      total += g.n;
    }
    return { envelopes: total, mailboxes: groups.length };
  }

  clearGap(mailbox: Uint8Array, expired: number, evicted: number): void {
    this.#gapClear.run(expired, evicted, mailbox);
    this.#dropEmptyStats.run(mailbox);
  }

  setTokenHashes(mailbox: Uint8Array, hashes: readonly Uint8Array[]): void {
    this.#deleteTokens.run(mailbox);
    for (const h of hashes) this.#insertToken.run(mailbox, h);
  }

  totals(): { envelopes: number; bytes: number } {
    const r = this.#totals.get();
    return { envelopes: r?.envelopes ?? 0, bytes: r?.bytes ?? 0 };
  }

  /** Everything stored for the mailbox: envelopes, counters, tokens. */
  deleteMailbox(mailbox: Uint8Array): void {
    this.#deleteMessages.run(mailbox);
    this.#deleteStats.run(mailbox);
    this.#deleteTokens.run(mailbox);
  }
}

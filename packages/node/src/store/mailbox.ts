/**
 * Mailbox storage: the durable queue of sealed envelopes per recipient device, its quota and gap
 * counters, and the hashes of its delivery tokens.
 */
import { ErrorCode, ProtocolError } from '@meshwhisper/protocol';
import type { Sqlite } from './db.js';

export interface StoredEnvelope {
  readonly seq: number;
  readonly id: Uint8Array;
  readonly payload: Uint8Array;
  readonly receivedAt: number;
}

export interface MailboxStats {
  readonly messages: number;
  readonly bytes: number;
  readonly tokenless: number;
  readonly gapExpired: number;
  readonly gapEvicted: number;
}

export interface MailboxLimits {
  readonly maxMessages: number;
  readonly maxBytes: number;
  readonly firstContactMaxMessages: number;
}

const EMPTY_STATS: MailboxStats = { messages: 0, bytes: 0, tokenless: 0, gapExpired: 0, gapEvicted: 0 };

interface StatsRow {
  messages: number;
  bytes: number;
  tokenless: number;
  gap_expired: number;
  gap_evicted: number;
}

const toBytes = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

export class MailboxReader {
  readonly #batch;
  readonly #stats;
  readonly #token;
  constructor(protected readonly db: Sqlite) {
    this.#batch = db.prepare<[Uint8Array, number, number], { seq: number; id: Buffer; payload: Buffer; received_at: number }>(
      'SELECT seq, id, payload, received_at FROM messages WHERE mailbox = ? AND seq > ? ORDER BY seq LIMIT ?',
    );
    this.#stats = db.prepare<[Uint8Array], StatsRow>('SELECT messages, bytes, tokenless, gap_expired, gap_evicted FROM mailbox_stats WHERE mailbox = ?');
    this.#token = db.prepare<[Uint8Array, Uint8Array], { one: number }>('SELECT 1 AS one FROM delivery_tokens WHERE mailbox = ? AND token_hash = ?');
  }

  /** Up to `limit` envelopes after `afterSeq`, oldest first, stopping before `maxBytes` of payload (at least one). */
  nextBatch(mailbox: Uint8Array, afterSeq: number, limit: number, maxBytes: number): StoredEnvelope[] {
    const out: StoredEnvelope[] = [];
    let bytes = 0;
    for (const r of this.#batch.iterate(mailbox, afterSeq, limit)) {
      if (out.length > 0 && bytes + r.payload.length > maxBytes) break;
      bytes += r.payload.length;
      out.push({ seq: r.seq, id: toBytes(r.id), payload: toBytes(r.payload), receivedAt: r.received_at });
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
}

export class MailboxTransactor extends MailboxReader {
  readonly #insert;
  readonly #upsertStats;
  readonly #oldest;
  readonly #deleteSeq;
  readonly #deleteAck;
  readonly #expiring;
  readonly #deleteExpired;
  readonly #gapAdd;
  readonly #gapClear;
  readonly #deleteTokens;
  readonly #insertToken;
  constructor(db: Sqlite) {
    super(db);
    this.#insert = db.prepare('INSERT INTO messages (id, mailbox, payload, received_at, with_token) VALUES (?, ?, ?, ?, ?)');
    this.#upsertStats = db.prepare(
      `INSERT INTO mailbox_stats (mailbox, messages, bytes, tokenless) VALUES (?, ?, ?, ?)
       ON CONFLICT (mailbox) DO UPDATE SET messages = messages + excluded.messages, bytes = bytes + excluded.bytes, tokenless = tokenless + excluded.tokenless`,
    );
    this.#oldest = db.prepare<[Uint8Array, number], { seq: number; size: number }>(
      'SELECT seq, length(payload) AS size FROM messages WHERE mailbox = ? AND with_token = ? ORDER BY seq LIMIT 1',
    );
    this.#deleteSeq = db.prepare('DELETE FROM messages WHERE seq = ?');
    this.#deleteAck = db.prepare<[Uint8Array, Uint8Array], { size: number; with_token: number }>(
      'DELETE FROM messages WHERE mailbox = ? AND id = ? RETURNING length(payload) AS size, with_token',
    );
    this.#expiring = db.prepare<[number, number], { mailbox: Buffer; n: number; bytes: number; tokenless: number }>(
      `SELECT mailbox, count(*) AS n, sum(length(payload)) AS bytes, sum(1 - with_token) AS tokenless
       FROM messages WHERE received_at < ? GROUP BY mailbox LIMIT ?`,
    );
    this.#deleteExpired = db.prepare('DELETE FROM messages WHERE mailbox = ? AND received_at < ?');
    this.#gapAdd = db.prepare(
      `INSERT INTO mailbox_stats (mailbox, gap_expired, gap_evicted) VALUES (?, ?, ?)
       ON CONFLICT (mailbox) DO UPDATE SET gap_expired = gap_expired + excluded.gap_expired, gap_evicted = gap_evicted + excluded.gap_evicted`,
    );
    this.#gapClear = db.prepare(
      'UPDATE mailbox_stats SET gap_expired = max(0, gap_expired - ?), gap_evicted = max(0, gap_evicted - ?) WHERE mailbox = ?',
    );
    this.#deleteTokens = db.prepare('DELETE FROM delivery_tokens WHERE mailbox = ?');
    this.#insertToken = db.prepare('INSERT OR IGNORE INTO delivery_tokens (mailbox, token_hash) VALUES (?, ?)');
  }

  /**
   * Stores one envelope within the mailbox quota. Tokenless (first-contact) mail never displaces
   * anything: it is refused when its own lane or the mailbox is full. Mail with a valid token makes
   * room by evicting the oldest tokenless envelopes first, then the oldest envelopes; every
   * eviction is counted for the recipient's gap notice. Returns the number evicted.
   */
  insert(e: { id: Uint8Array; mailbox: Uint8Array; payload: Uint8Array; receivedAt: number; withToken: boolean }, limits: MailboxLimits): number {
    const s = this.stats(e.mailbox);
    const size = e.payload.length;
    if (!e.withToken) {
      if (s.tokenless >= limits.firstContactMaxMessages) throw new ProtocolError(ErrorCode.QUOTA_EXCEEDED, 'the first-contact lane of this mailbox is full');
      if (s.messages + 1 > limits.maxMessages || s.bytes + size > limits.maxBytes) throw new ProtocolError(ErrorCode.QUOTA_EXCEEDED, 'mailbox is full');
    }
    let messages = s.messages;
    let bytes = s.bytes;
    let evicted = 0;
    let evictedTokenless = 0;
    while (messages + 1 > limits.maxMessages || bytes + size > limits.maxBytes) {
      const oldestTokenless = this.#oldest.get(e.mailbox, 0);
      const victim = oldestTokenless ?? this.#oldest.get(e.mailbox, 1);
      if (!victim) break;
      const wasTokenless = oldestTokenless !== undefined;
      this.#deleteSeq.run(victim.seq);
      messages--;
      bytes -= victim.size;
      evicted++;
      if (wasTokenless) evictedTokenless++;
    }
    this.#insert.run(e.id, e.mailbox, e.payload, e.receivedAt, e.withToken ? 1 : 0);
    this.#upsertStats.run(e.mailbox, 1 - evicted, size - (s.bytes - bytes), (e.withToken ? 0 : 1) - evictedTokenless);
    if (evicted > 0) this.#gapAdd.run(e.mailbox, 0, evicted);
    return evicted;
  }

  /** Deletes acknowledged envelopes of this mailbox (ids of other mailboxes are ignored). Returns how many. */
  ack(mailbox: Uint8Array, ids: readonly Uint8Array[]): number {
    let n = 0;
    let bytes = 0;
    let tokenless = 0;
    for (const id of ids) {
      const r = this.#deleteAck.get(mailbox, id);
      if (!r) continue;
      n++;
      bytes += r.size;
      if (r.with_token === 0) tokenless++;
    }
    if (n > 0) this.#upsertStats.run(mailbox, -n, -bytes, -tokenless);
    return n;
  }

  /**
   * Deletes the envelopes received before `before` of at most `maxMailboxes` mailboxes, counting
   * them as expired gaps. Returns the envelopes deleted and the mailboxes touched (call again
   * while `mailboxes === maxMailboxes`).
   */
  expire(before: number, maxMailboxes: number): { envelopes: number; mailboxes: number } {
    let total = 0;
    const groups = this.#expiring.all(before, maxMailboxes);
    for (const g of groups) {
      this.#deleteExpired.run(g.mailbox, before);
      this.#upsertStats.run(g.mailbox, -g.n, -g.bytes, -g.tokenless);
      this.#gapAdd.run(g.mailbox, g.n, 0);
      total += g.n;
    }
    return { envelopes: total, mailboxes: groups.length };
  }

  /** The device has been told about these gaps. */
  clearGap(mailbox: Uint8Array, expired: number, evicted: number): void {
    this.#gapClear.run(expired, evicted, mailbox);
  }

  setTokenHashes(mailbox: Uint8Array, hashes: readonly Uint8Array[]): void {
    this.#deleteTokens.run(mailbox);
    for (const h of hashes) this.#insertToken.run(mailbox, h);
  }

  /** Everything stored for the mailbox: envelopes, counters, tokens. */
  deleteMailbox(mailbox: Uint8Array): void {
    this.db.prepare('DELETE FROM messages WHERE mailbox = ?').run(mailbox);
    this.db.prepare('DELETE FROM mailbox_stats WHERE mailbox = ?').run(mailbox);
    this.#deleteTokens.run(mailbox);
  }
}

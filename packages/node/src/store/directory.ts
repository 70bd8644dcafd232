/**
 * Key directory storage: device certificates, the current signed prekey and last-resort KEM
 * prekey per device, and the pools of one-time X25519 and one-time KEM prekeys. All values are
 * the @meshwhisper/crypto encodings, verified before they are written.
 */
import type { Sqlite } from './db.js';

const toBytes = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

export interface DeviceRecord {
  readonly mailbox: Uint8Array;
  readonly accountKey: Uint8Array;
  readonly certificate: Uint8Array;
  readonly issuedAt: number;
  readonly signedPreKey: Uint8Array | undefined;
  readonly lastResortKemPreKey: Uint8Array | undefined;
}

export interface PoolCounts {
  readonly oneTimePreKeys: number;
  readonly kemPreKeys: number;
}

/** What a claim took: encodings ready to be assembled into a PreKeyBundle. */
export interface ClaimedKeys {
  readonly certificate: Uint8Array;
  readonly signedPreKey: Uint8Array;
  readonly oneTimePreKey: Uint8Array | undefined;
  /** A one-time KEM prekey, or the last-resort one when the pool is empty. */
  readonly kemPreKey: Uint8Array;
}

interface DeviceRow {
  mailbox: Buffer;
  account_key: Buffer;
  certificate: Buffer;
  issued_at: number;
  signed_prekey: Buffer | null;
  last_resort_kem_prekey: Buffer | null;
}

export class DirectoryReader {
  readonly #device;
  readonly #byAccount;
  readonly #countOtk;
  readonly #countKem;
  constructor(protected readonly db: Sqlite) {
    this.#device = db.prepare<[Uint8Array], DeviceRow>(
      'SELECT mailbox, account_key, certificate, issued_at, signed_prekey, last_resort_kem_prekey FROM devices WHERE mailbox = ?',
    );
    this.#byAccount = db.prepare<[Uint8Array], { mailbox: Buffer }>('SELECT mailbox FROM devices WHERE account_key = ? ORDER BY issued_at, mailbox');
    this.#countOtk = db.prepare<[Uint8Array], { n: number }>('SELECT count(*) AS n FROM one_time_prekeys WHERE mailbox = ?');
    this.#countKem = db.prepare<[Uint8Array], { n: number }>('SELECT count(*) AS n FROM kem_prekeys WHERE mailbox = ?');
  }

  device(mailbox: Uint8Array): DeviceRecord | undefined {
    const r = this.#device.get(mailbox);
    if (!r) return undefined;
    return {
      mailbox: toBytes(r.mailbox),
      accountKey: toBytes(r.account_key),
      certificate: toBytes(r.certificate),
      issuedAt: r.issued_at,
      signedPreKey: r.signed_prekey ? toBytes(r.signed_prekey) : undefined,
      lastResortKemPreKey: r.last_resort_kem_prekey ? toBytes(r.last_resort_kem_prekey) : undefined,
    };
  }

  devicesOfAccount(accountKey: Uint8Array): Uint8Array[] {
    return this.#byAccount.all(accountKey).map((r) => toBytes(r.mailbox));
  }

  counts(mailbox: Uint8Array): PoolCounts {
    return { oneTimePreKeys: this.#countOtk.get(mailbox)?.n ?? 0, kemPreKeys: this.#countKem.get(mailbox)?.n ?? 0 };
  }
}

export class DirectoryTransactor extends DirectoryReader {
  readonly #upsert;
  readonly #setSpk;
  readonly #setLr;
  readonly #addOtk;
  readonly #addKem;
  readonly #takeOtk;
  readonly #takeKem;
  constructor(db: Sqlite) {
    super(db);
    this.#upsert = db.prepare(
      `INSERT INTO devices (mailbox, account_key, certificate, issued_at, updated_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (mailbox) DO UPDATE SET account_key = excluded.account_key, certificate = excluded.certificate, issued_at = excluded.issued_at, updated_at = excluded.updated_at`,
    );
    this.#setSpk = db.prepare('UPDATE devices SET signed_prekey = ?, updated_at = ? WHERE mailbox = ?');
    this.#setLr = db.prepare('UPDATE devices SET last_resort_kem_prekey = ?, updated_at = ? WHERE mailbox = ?');
    // A key id already in the pool keeps its first upload: ids are the device's, not ours to reassign.
    this.#addOtk = db.prepare('INSERT OR IGNORE INTO one_time_prekeys (mailbox, key_id, encoded) VALUES (?, ?, ?)');
    this.#addKem = db.prepare('INSERT OR IGNORE INTO kem_prekeys (mailbox, key_id, encoded) VALUES (?, ?, ?)');
    this.#takeOtk = db.prepare<[Uint8Array, Uint8Array], { encoded: Buffer }>(
      'DELETE FROM one_time_prekeys WHERE mailbox = ? AND key_id = (SELECT min(key_id) FROM one_time_prekeys WHERE mailbox = ?) RETURNING encoded',
    );
    this.#takeKem = db.prepare<[Uint8Array, Uint8Array], { encoded: Buffer }>(
      'DELETE FROM kem_prekeys WHERE mailbox = ? AND key_id = (SELECT min(key_id) FROM kem_prekeys WHERE mailbox = ?) RETURNING encoded',
    );
  }

  upsertDevice(mailbox: Uint8Array, accountKey: Uint8Array, certificate: Uint8Array, issuedAt: number, now: number): void {
    this.#upsert.run(mailbox, accountKey, certificate, issuedAt, now);
  }
  setSignedPreKey(mailbox: Uint8Array, encoded: Uint8Array, now: number): void {
    this.#setSpk.run(encoded, now, mailbox);
  }
  setLastResortKemPreKey(mailbox: Uint8Array, encoded: Uint8Array, now: number): void {
    this.#setLr.run(encoded, now, mailbox);
  }
  addOneTimePreKeys(mailbox: Uint8Array, keys: readonly { id: number; encoded: Uint8Array }[]): void {
    for (const k of keys) this.#addOtk.run(mailbox, k.id, k.encoded);
  }
  addKemPreKeys(mailbox: Uint8Array, keys: readonly { id: number; encoded: Uint8Array }[]): void {
    for (const k of keys) this.#addKem.run(mailbox, k.id, k.encoded);
  }

  /**
   * Atomically takes one one-time prekey and one one-time KEM prekey (the last-resort KEM prekey
   * when the pool is empty). Undefined when the device has no signed prekey or no KEM prekey at
   * all (an incomplete bundle is never handed out: no classical downgrade). With `consume`
   * false (the per-target claim budget is spent) nothing is taken: no one-time prekey, and the
   * last-resort KEM prekey.
   */
  claim(mailbox: Uint8Array, consume = true): ClaimedKeys | undefined {
    const d = this.device(mailbox);
    if (!d || !d.signedPreKey) return undefined;
    const kem = consume ? this.#takeKem.get(mailbox, mailbox) : undefined;
    const kemPreKey = kem ? toBytes(kem.encoded) : d.lastResortKemPreKey;
    if (!kemPreKey) return undefined;
    const otk = consume ? this.#takeOtk.get(mailbox, mailbox) : undefined;
    return { certificate: d.certificate, signedPreKey: d.signedPreKey, oneTimePreKey: otk ? toBytes(otk.encoded) : undefined, kemPreKey };
  }

  deleteDevice(mailbox: Uint8Array): void {
    this.db.prepare('DELETE FROM one_time_prekeys WHERE mailbox = ?').run(mailbox);
    this.db.prepare('DELETE FROM kem_prekeys WHERE mailbox = ?').run(mailbox);
    this.db.prepare('DELETE FROM devices WHERE mailbox = ?').run(mailbox);
  }
}

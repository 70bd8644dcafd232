/**
 * SQLite key-directory area: device certificates, the current signed prekey and last-resort KEM
 * prekey per device, and the pools of one-time X25519 and one-time KEM prekeys. All values are
 * the @meshwhisper/crypto encodings, verified before they are written.
 */
import { equalBytes } from '@meshwhisper/crypto';
import type { Sqlite } from './db.js';
import type { CertificateRenewalOffer, ClaimedKeys, DeviceRecord, KeyPublication, PoolCounts, StoredCertificateRenewal } from './node-store.js';

const toBytes = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

interface DeviceRow {
  mailbox: Buffer;
  account_key: Buffer;
  certificate: Buffer;
  issued_at: number;
  signed_prekey: Buffer | null;
  last_resort_kem_prekey: Buffer | null;
}

export class SqliteDirectory {
  readonly #device;
  readonly #byAccount;
  readonly #countOtk;
  readonly #countKem;
  readonly #upsert;
  readonly #setSpk;
  readonly #setLr;
  readonly #addOtk;
  readonly #addKem;
  readonly #takeOtk;
  readonly #takeKem;
  readonly #delOtk;
  readonly #delKem;
  readonly #delDevice;
  readonly #exists;
  readonly #renewal;
  readonly #setRenewal;
  readonly #clearRenewal;
  constructor(db: Sqlite) {
    this.#renewal = db.prepare<[Uint8Array], { account_key: Buffer; issued_at: number; renewal_certificate: Buffer | null; renewal_issued_at: number | null }>(
      'SELECT account_key, issued_at, renewal_certificate, renewal_issued_at FROM devices WHERE mailbox = ?',
    );
    this.#setRenewal = db.prepare('UPDATE devices SET renewal_certificate = ?, renewal_issued_at = ? WHERE mailbox = ?');
    // A certificate at least as new as the held renewal was uploaded by the device: the renewal is done.
    this.#clearRenewal = db.prepare('UPDATE devices SET renewal_certificate = NULL, renewal_issued_at = NULL WHERE mailbox = ? AND renewal_issued_at <= ?');
    this.#exists = db.prepare<[Uint8Array], { one: number }>('SELECT 1 AS one FROM devices WHERE mailbox = ?');
    this.#device = db.prepare<[Uint8Array], DeviceRow>(
      'SELECT mailbox, account_key, certificate, issued_at, signed_prekey, last_resort_kem_prekey FROM devices WHERE mailbox = ?',
    );
    this.#byAccount = db.prepare<[Uint8Array], { mailbox: Buffer }>('SELECT mailbox FROM devices WHERE account_key = ? ORDER BY issued_at, mailbox');
    this.#countOtk = db.prepare<[Uint8Array], { n: number }>('SELECT count(*) AS n FROM one_time_prekeys WHERE mailbox = ?');
    this.#countKem = db.prepare<[Uint8Array], { n: number }>('SELECT count(*) AS n FROM kem_prekeys WHERE mailbox = ?');
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
    this.#delOtk = db.prepare('DELETE FROM one_time_prekeys WHERE mailbox = ?');
    this.#delKem = db.prepare('DELETE FROM kem_prekeys WHERE mailbox = ?');
    this.#delDevice = db.prepare('DELETE FROM devices WHERE mailbox = ?');
  }

  exists(mailbox: Uint8Array): boolean {
    return this.#exists.get(mailbox) !== undefined;
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

  /** Applies a verified upload (the caller runs this inside a transaction). */
  publish(p: KeyPublication): 'ok' | 'other-account' {
    const existing = this.device(p.mailbox);
    if (existing && !equalBytes(existing.accountKey, p.accountKey)) return 'other-account';
    if (!existing || p.issuedAt >= existing.issuedAt) {
      this.#upsert.run(p.mailbox, p.accountKey, p.certificate, p.issuedAt, p.now);
      this.#clearRenewal.run(p.mailbox, p.issuedAt);
    }
    if (p.signedPreKey) this.#setSpk.run(p.signedPreKey, p.now, p.mailbox);
    if (p.lastResortKemPreKey) this.#setLr.run(p.lastResortKemPreKey, p.now, p.mailbox);
    for (const k of p.oneTimePreKeys) this.#addOtk.run(p.mailbox, k.id, k.encoded);
    for (const k of p.kemPreKeys) this.#addKem.run(p.mailbox, k.id, k.encoded);
    return 'ok';
  }

  /** Holds a verified renewal for a registered device (the caller runs this inside a transaction). */
  offerRenewal(o: CertificateRenewalOffer): 'ok' | 'unknown-device' | 'stale' {
    const r = this.#renewal.get(o.mailbox);
    if (!r || !equalBytes(toBytes(r.account_key), o.accountKey)) return 'unknown-device';
    if (o.issuedAt <= r.issued_at) return 'stale';
    if (r.renewal_certificate && r.renewal_issued_at !== null) {
      if (o.issuedAt === r.renewal_issued_at && equalBytes(toBytes(r.renewal_certificate), o.certificate)) return 'ok'; // a re-offer
      if (o.issuedAt <= r.renewal_issued_at) return 'stale';
    }
    this.#setRenewal.run(o.certificate, o.issuedAt, o.mailbox);
    return 'ok';
  }

  renewal(mailbox: Uint8Array): StoredCertificateRenewal | undefined {
    const r = this.#renewal.get(mailbox);
    return r?.renewal_certificate && r.renewal_issued_at !== null ? { certificate: toBytes(r.renewal_certificate), issuedAt: r.renewal_issued_at } : undefined;
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
    this.#delOtk.run(mailbox);
    this.#delKem.run(mailbox);
    this.#delDevice.run(mailbox);
  }
}

/**
 * SQLite push-endpoint area (table push_registrations, migration 3): at most one endpoint per
 * device mailbox, removed with its device by the foreign key (ON DELETE CASCADE).
 */
import { fromHex } from '@meshwhisper/crypto';
import type { Sqlite } from './db.js';
import type { PushTarget } from './push-types.js';
import { targetToken } from './push-types.js';

interface Row {
  kind: string;
  token: string;
  p256dh: Buffer | null;
  auth: Buffer | null;
  apns_mode: string | null;
}

function fromRow(r: Row): PushTarget | undefined {
  switch (r.kind) {
    case 'webpush':
      return r.p256dh && r.auth ? { kind: 'webpush', endpoint: r.token, p256dh: new Uint8Array(r.p256dh), auth: new Uint8Array(r.auth) } : undefined;
    case 'apns':
      return { kind: 'apns', deviceToken: fromHex(r.token), mode: r.apns_mode === 'alert' ? 'alert' : 'background' };
    case 'fcm':
      return { kind: 'fcm', registrationToken: r.token };
    default:
      return undefined;
  }
}

export class SqlitePush {
  readonly #get;
  readonly #put;
  readonly #delete;
  readonly #deleteIf;
  constructor(db: Sqlite) {
    this.#get = db.prepare<[Uint8Array], Row>('SELECT kind, token, p256dh, auth, apns_mode FROM push_registrations WHERE mailbox = ?');
    this.#put = db.prepare(
      `INSERT INTO push_registrations (mailbox, kind, token, p256dh, auth, apns_mode, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (mailbox) DO UPDATE SET kind = excluded.kind, token = excluded.token, p256dh = excluded.p256dh, auth = excluded.auth,
         apns_mode = excluded.apns_mode, updated_at = excluded.updated_at`,
    );
    this.#delete = db.prepare<[Uint8Array]>('DELETE FROM push_registrations WHERE mailbox = ?');
    this.#deleteIf = db.prepare<[Uint8Array, string, string]>('DELETE FROM push_registrations WHERE mailbox = ? AND kind = ? AND token = ?');
  }
  get(mailbox: Uint8Array): PushTarget | undefined {
    const r = this.#get.get(mailbox);
    return r ? fromRow(r) : undefined;
  }
  put(mailbox: Uint8Array, target: PushTarget, now: number): void {
    const webpush = target.kind === 'webpush' ? target : undefined;
    this.#put.run(mailbox, target.kind, targetToken(target), webpush?.p256dh ?? null, webpush?.auth ?? null, target.kind === 'apns' ? target.mode : null, now);
  }
  delete(mailbox: Uint8Array): boolean {
    return this.#delete.run(mailbox).changes > 0;
  }
  deleteIf(mailbox: Uint8Array, target: PushTarget): boolean {
    return this.#deleteIf.run(mailbox, target.kind, targetToken(target)).changes > 0;
  }
}

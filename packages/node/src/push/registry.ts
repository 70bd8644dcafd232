/**
 * Push endpoint storage (table push_registrations, migration 3): at most one endpoint per device
 * mailbox. Writes run inside `store.transact` (same connection, same transaction). A row is removed
 * with its device by the foreign key (ON DELETE CASCADE), so every path that deletes a device —
 * DELETE /v1/device, DELETE /v1/account — removes its push endpoint in the same commit.
 */
import { fromHex, toHex } from '@meshwhisper/crypto';
import type { Sqlite } from '../store/db.js';

export type PushKind = 'webpush' | 'apns' | 'fcm';
export type ApnsPushMode = 'background' | 'alert';

/** Where a device is rung: one of the three push services. */
export type PushTarget =
  | { readonly kind: 'webpush'; readonly endpoint: string; readonly p256dh: Uint8Array; readonly auth: Uint8Array }
  | { readonly kind: 'apns'; readonly deviceToken: Uint8Array; readonly mode: ApnsPushMode }
  | { readonly kind: 'fcm'; readonly registrationToken: string };

interface Row {
  kind: string;
  token: string;
  p256dh: Buffer | null;
  auth: Buffer | null;
  apns_mode: string | null;
}

/** The stored token column of a target (what a prune compares). */
export function targetToken(t: PushTarget): string {
  switch (t.kind) {
    case 'webpush':
      return t.endpoint;
    case 'apns':
      return toHex(t.deviceToken);
    case 'fcm':
      return t.registrationToken;
  }
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

export class PushRegistryReader {
  readonly #get;
  constructor(protected readonly db: Sqlite) {
    this.#get = db.prepare<[Uint8Array], Row>('SELECT kind, token, p256dh, auth, apns_mode FROM push_registrations WHERE mailbox = ?');
  }

  /** The device's push endpoint, if it registered one. */
  get(mailbox: Uint8Array): PushTarget | undefined {
    const r = this.#get.get(mailbox);
    return r ? fromRow(r) : undefined;
  }
}

/** Reads anywhere; writes only inside `store.transact`. */
export class PushRegistry extends PushRegistryReader {
  readonly #put;
  readonly #delete;
  readonly #deleteIf;
  constructor(db: Sqlite) {
    super(db);
    this.#put = db.prepare(
      `INSERT INTO push_registrations (mailbox, kind, token, p256dh, auth, apns_mode, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (mailbox) DO UPDATE SET kind = excluded.kind, token = excluded.token, p256dh = excluded.p256dh, auth = excluded.auth,
         apns_mode = excluded.apns_mode, updated_at = excluded.updated_at`,
    );
    this.#delete = db.prepare<[Uint8Array]>('DELETE FROM push_registrations WHERE mailbox = ?');
    this.#deleteIf = db.prepare<[Uint8Array, string, string]>('DELETE FROM push_registrations WHERE mailbox = ? AND kind = ? AND token = ?');
  }

  /** Sets (replaces) the device's endpoint. The device must exist in the directory (foreign key). */
  put(mailbox: Uint8Array, target: PushTarget, now: number): void {
    const webpush = target.kind === 'webpush' ? target : undefined;
    this.#put.run(mailbox, target.kind, targetToken(target), webpush?.p256dh ?? null, webpush?.auth ?? null, target.kind === 'apns' ? target.mode : null, now);
  }

  /** Removes the device's endpoint; true if there was one. */
  delete(mailbox: Uint8Array): boolean {
    return this.#delete.run(mailbox).changes > 0;
  }

  /**
   * Removes the endpoint only if it is still `target` (a push service reported it gone): a device
   * that re-registered while the wake was in flight keeps its new endpoint.
   */
  deleteIf(mailbox: Uint8Array, target: PushTarget): boolean {
    return this.#deleteIf.run(mailbox, target.kind, targetToken(target)).changes > 0;
  }
}

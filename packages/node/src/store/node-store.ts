/**
 * NodeStore: the one narrow, asynchronous interface between the node and its database
 * (docs/architecture.md §Node storage). Nothing outside an implementation touches a database.
 *
 * Rules every implementation keeps (the conformance suite, packages/node/test/store/conformance.ts,
 * checks each of them against real files or a real server):
 *
 * - Every method is ONE transaction: all-or-nothing, and durable (fsynced) before its promise
 *   resolves. A method that returns a refusal (`'unknown-mailbox'`, `false`, …) changed nothing.
 * - Sequence numbers are per mailbox. Within one mailbox, envelopes are committed in `seq` order
 *   (an implementation serialises writers of one mailbox, e.g. with a row lock on its counter),
 *   so a reader that has seen `seq = n` will never later see a new envelope with `seq <= n` of
 *   that mailbox — except after the mailbox drained completely, when the counter may restart,
 *   and then only at 1 (the delivery cursor resets whenever nothing is in flight, and a live
 *   connection takes envelopes starting at seq 1 without re-reading: socket/device.ts).
 *   There is no global counter and no global order.
 * - Quota accounting is atomic with the write it accounts for (no read-modify-write race between
 *   concurrent writers of one mailbox or one device's media budget).
 * - Envelopes are deleted only by an ack of their recipient, by eviction (counted as a gap), by
 *   expiry (counted as a gap) or with their mailbox.
 * - Deleted data is gone from every file the implementation owns within `forgetWithinMs` (the
 *   SQLite store checkpoints and truncates its WAL).
 * - `consumeChallenge` is single-use across every process sharing the store.
 * - Sweeps (`expire*`) may run in several processes at once without double counting gaps;
 *   `tryLease` lets one process at a time do them.
 */
import type { ApnsPushMode, PushKind, PushTarget } from './push-types.js';

export type { ApnsPushMode, PushKind, PushTarget };

export interface StoredEnvelope {
  /** Per-mailbox sequence number (delivery order). */
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

/** One durable envelope to store. `tokenHash` (SHA-256 of the delivery token) selects the token lane. */
export interface EnqueueItem {
  /**
   * MESSAGE_ID_LENGTH (16) bytes, the node's own CSPRNG draw (mailbox/send.ts). Acks can name only
   * such ids (the protocol refuses others), and a device connection's in-flight table is keyed by
   * them (socket/in-flight.ts).
   */
  readonly id: Uint8Array;
  readonly mailbox: Uint8Array;
  readonly payload: Uint8Array;
  readonly receivedAt: number;
  /** undefined: first-contact lane (tokenless). */
  readonly tokenHash: Uint8Array | undefined;
}

export type EnqueueOutcome =
  | { readonly ok: true; readonly envelope: StoredEnvelope; readonly evicted: number }
  | { readonly ok: false; readonly reason: 'unknown-mailbox' | 'bad-token' | 'lane-full' | 'mailbox-full' };

export interface AckRequest {
  readonly mailbox: Uint8Array;
  readonly ids: readonly Uint8Array[];
  /**
   * The seq of each id (same order), when the caller knows it: a device connection remembers the
   * seq of every envelope it delivered. An implementation may find the row by (mailbox, seq) and
   * check its id, instead of looking the id up (SQLite keeps no index on random ids: every insert
   * and ack touched a random page of it — the 100,000 drain was not linear). A seq that does not
   * hold that id deletes nothing. Without seqs, ids are looked up (slower on SQLite: a scan of the
   * mailbox).
   */
  readonly seqs?: readonly number[];
}

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
  /** A one-time KEM prekey, or the last-resort one when the pool is empty (or `consume` was false). */
  readonly kemPreKey: Uint8Array;
}

/** A verified key upload (PUT /v1/keys), applied as one transaction. */
export interface KeyPublication {
  readonly mailbox: Uint8Array;
  /**
   * The epoch of the account's device list the caller checked this device against (it is listed
   * there). The store writes nothing and answers 'list-changed' unless the stored list still has
   * this epoch: a revocation that commits between the check and the upload always wins.
   */
  readonly deviceListEpoch: number;
  readonly accountKey: Uint8Array;
  readonly certificate: Uint8Array;
  readonly issuedAt: number;
  readonly signedPreKey: Uint8Array | undefined;
  readonly lastResortKemPreKey: Uint8Array | undefined;
  readonly oneTimePreKeys: readonly { id: number; encoded: Uint8Array }[];
  readonly kemPreKeys: readonly { id: number; encoded: Uint8Array }[];
  readonly now: number;
}

/**
 * A renewed certificate a manager issued for another registered device of its account
 * (docs/spec/02-keys.md §2.6), verified by the caller (account signature, same device keys and
 * index, issued and expiring after the registered certificate, device on the current list).
 */
export interface CertificateRenewalOffer {
  readonly mailbox: Uint8Array;
  readonly accountKey: Uint8Array;
  readonly certificate: Uint8Array;
  readonly issuedAt: number;
  /** As KeyPublication.deviceListEpoch: nothing is written unless the stored list still has this epoch. */
  readonly deviceListEpoch: number;
}

/** A renewal held for a device until it uploads a certificate at least as new. */
export interface StoredCertificateRenewal {
  readonly certificate: Uint8Array;
  readonly issuedAt: number;
}

/**
 * 'unknown-device': the mailbox is not registered to that account; 'stale': the registered
 * certificate, or the renewal already held, is issued at the same time or later (a byte-identical
 * re-offer of the held renewal is 'ok'); 'list-changed': as publishKeys.
 */
export type CertificateRenewalOutcome = 'ok' | 'unknown-device' | 'stale' | 'list-changed';

/** An account's current device list (docs/spec/02-keys.md §2.5) as stored: verified before it was written. */
export interface StoredDeviceList {
  readonly epoch: number;
  /** The DeviceList encoding (@meshwhisper/crypto encodeDeviceList), signature included. */
  readonly encoded: Uint8Array;
}

/** A verified device-list publication (PUT /v1/device-list), applied as one transaction. */
export interface DeviceListPublication {
  readonly accountKey: Uint8Array;
  readonly epoch: number;
  readonly encoded: Uint8Array;
  /** Compare-and-set: the stored list's epoch the caller verified against (undefined: none stored). */
  readonly expectedEpoch: number | undefined;
  /**
   * Mailbox ids of the devices the list names. Every other device registered to the account is
   * deleted (exactly as deleteDevices) in the same transaction: a revoked device loses its keys,
   * queue and push endpoint the moment the list that drops it is stored.
   */
  readonly listedMailboxes: readonly Uint8Array[];
  readonly now: number;
}

export type DeviceListOutcome = { readonly ok: true; readonly removed: Uint8Array[] } | { readonly ok: false; readonly reason: 'conflict' };

export interface UsernameRow {
  readonly ownerKey: Uint8Array;
  readonly updatedAt: number;
}

/** A media blob's record. It names no device: quota is an upload budget per device and window. */
export interface MediaRow {
  readonly id: string;
  readonly size: number;
  readonly expiresAt: number;
}

export interface ArchiveRow {
  readonly accountKey: Uint8Array;
  readonly archiveKey: Uint8Array;
  readonly size: number;
  readonly updatedAt: number;
  /** Raised by one on each replacement; 0 = nothing stored yet (docs/spec/node-protocol.md §9). */
  readonly version: number;
  /** The file holding this version's bytes; undefined for an archive stored before versions (named after the account). */
  readonly blobName: string | undefined;
}

/** A replacement of the stored archive (compare-and-swap on `expectedVersion`). */
export interface ArchiveReplacement {
  readonly expectedVersion: number;
  readonly blobName: string;
  readonly size: number;
  readonly now: number;
}

/**
 * The outcome of replaceArchive: stored as `version` (the caller then deletes `previousBlob`'s file),
 * or refused because the stored version is `version`, not the expected one (the caller deletes its
 * new file). undefined: the archive key is not registered.
 */
export type ArchiveReplaced =
  | { readonly stored: true; readonly version: number; readonly previousBlob: string | undefined; readonly hadPrevious: boolean }
  | { readonly stored: false; readonly version: number };

export interface MediaUpload {
  readonly id: string;
  readonly size: number;
  readonly expiresAt: number;
  /** The uploading device: charged in the budget table, never written into the media record. */
  readonly uploader: Uint8Array;
  /** Budget window this upload counts in (e.g. floor(now / MEDIA_TTL)). */
  readonly window: number;
  readonly budgetBytes: number;
}

/** Why the store cannot take writes (GET /ready, metrics, the log). */
export type StoreHealth =
  | { readonly writable: true }
  | { readonly writable: false; readonly reason: 'disk-full' | 'read-only' | 'io-error' | 'writer-failed' | 'closed' };

export interface NodeStore {
  /** 'sqlite', 'postgres', …: for logs and metrics. */
  readonly kind: string;
  /** Upper bound (ms) within which deleted or acknowledged data leaves every file the store owns. */
  readonly forgetWithinMs: number;
  /**
   * True when an `ack` call made just before an `enqueue` call (same event-loop turn) commits in the
   * same transaction as that enqueue: one commit and one fsync for both (SQLite: both reach the
   * writer thread together). The node then lets small ack groups wait briefly for the next send group
   * while sends flow (mailbox/acks.ts, ACK_CARRY_MS). False (or absent): acks are never held back.
   */
  readonly acksShareSendCommits?: boolean;

  // ── Mailboxes ──
  /**
   * Group commit: every item in ONE durable transaction; each item's outcome separately (a
   * refused item changes nothing, the others commit). Tokenless mail never displaces anything;
   * token mail evicts the oldest tokenless, then the oldest envelopes, counting them as gaps.
   * Rejects (as a whole) only when the transaction itself fails (disk full, I/O error).
   */
  enqueue(items: readonly EnqueueItem[], limits: MailboxLimits): Promise<EnqueueOutcome[]>;
  /** Up to `limit` envelopes with seq > afterSeq, oldest first, stopping before `maxBytes` of payload (at least one). */
  fetch(mailbox: Uint8Array, afterSeq: number, limit: number, maxBytes: number): Promise<StoredEnvelope[]>;
  /** Deletes acknowledged envelopes (ids of other mailboxes are ignored), all requests in one transaction. Must succeed on a full disk. */
  ack(requests: readonly AckRequest[]): Promise<number[]>;
  mailboxStats(mailbox: Uint8Array): Promise<MailboxStats>;
  /** The device has been told about these gaps. */
  clearGap(mailbox: Uint8Array, expired: number, evicted: number): Promise<void>;
  /** Replaces the mailbox's delivery-token hashes. */
  setDeliveryTokens(mailbox: Uint8Array, hashes: readonly Uint8Array[]): Promise<void>;
  /** For ephemeral sends (not stored): is the recipient known, is the token (hash) one of its own? */
  checkRecipient(mailbox: Uint8Array, tokenHash: Uint8Array | undefined): Promise<'ok' | 'unknown-mailbox' | 'bad-token'>;
  /** Deletes envelopes received before `before` (counted as expired gaps), at most `maxMailboxes` mailboxes per call. */
  expireEnvelopes(before: number, maxMailboxes: number): Promise<{ envelopes: number; mailboxes: number }>;
  /** Queue totals for metrics. */
  queueTotals(): Promise<{ envelopes: number; bytes: number }>;

  // ── Key directory ──
  device(mailbox: Uint8Array): Promise<DeviceRecord | undefined>;
  devicesOfAccount(accountKey: Uint8Array): Promise<Uint8Array[]>;
  preKeyCounts(mailbox: Uint8Array): Promise<PoolCounts>;
  /**
   * Applies a verified upload: the certificate replaces the stored one only if not older; prekeys
   * already in a pool keep their first upload. 'other-account' (nothing written) when the device
   * is registered to another account; 'list-changed' (nothing written) when the account's stored
   * device list no longer has epoch `deviceListEpoch`.
   */
  publishKeys(p: KeyPublication): Promise<'ok' | 'other-account' | 'list-changed'>;
  /** Atomically takes one one-time prekey and one one-time KEM prekey (see ClaimedKeys); nothing taken with consume=false. */
  claimPreKeys(mailbox: Uint8Array, consume: boolean): Promise<ClaimedKeys | undefined>;
  /**
   * Holds a manager-issued renewal for a registered device (one per device: the newest). A later
   * publishKeys whose certificate is issued at or after it clears it; deleting the device deletes it.
   */
  offerCertificateRenewal(o: CertificateRenewalOffer): Promise<CertificateRenewalOutcome>;
  /** The renewal held for this device, if any. */
  certificateRenewal(mailbox: Uint8Array): Promise<StoredCertificateRenewal | undefined>;
  /** Everything held for these devices: directory entry, prekeys, mailbox, tokens, push endpoint, media budget. */
  deleteDevices(mailboxes: readonly Uint8Array[]): Promise<void>;
  /** The account's devices (as deleteDevices), usernames, archive record and device list, in one transaction. Returns the deleted mailboxes. */
  deleteAccount(accountKey: Uint8Array): Promise<Uint8Array[]>;

  // ── Device lists (docs/spec/02-keys.md §2.5) ──
  /** The account's current device list, if one was published. */
  deviceList(accountKey: Uint8Array): Promise<StoredDeviceList | undefined>;
  /**
   * Stores the list if the stored epoch is still `expectedEpoch` (else 'conflict', nothing
   * written), and deletes the account's devices it does not name; returns their mailbox ids.
   */
  publishDeviceList(p: DeviceListPublication): Promise<DeviceListOutcome>;

  // ── Usernames ──
  username(namespace: string, username: string): Promise<UsernameRow | undefined>;
  /**
   * Compare-and-set: sets the owner (undefined releases) only if the current owner is still
   * `expected` (undefined = unowned). False, and nothing written, when another write came first.
   */
  setUsername(namespace: string, username: string, expected: Uint8Array | undefined, owner: Uint8Array | undefined, now: number): Promise<boolean>;

  // ── Media and archives (metadata; the bytes are files the node writes) ──
  media(id: string): Promise<MediaRow | undefined>;
  /** Charges the uploader's budget for the window and records the blob; false (nothing written) when the budget is spent. */
  addMedia(m: MediaUpload): Promise<boolean>;
  mediaBudgetUsed(uploader: Uint8Array, window: number): Promise<number>;
  /** Deletes the records of blobs expired at `now` (and budget windows older than `oldestWindow`); returns their ids. */
  expireMedia(now: number, oldestWindow: number, limit: number): Promise<string[]>;
  archiveByKey(archiveKey: Uint8Array): Promise<ArchiveRow | undefined>;
  archiveKeySource(accountKey: Uint8Array): Promise<Uint8Array | undefined>;
  /** Registers (or replaces) the account's archive-access key, unless another account holds it or the account has no device. */
  registerArchiveKey(accountKey: Uint8Array, archiveKey: Uint8Array, keySource: Uint8Array | undefined): Promise<'ok' | 'key-taken' | 'no-device'>;
  /**
   * Compare-and-swap of the stored archive: only if its version is `expectedVersion` does it become
   * version + 1 with the new blob file, size and time. Two replacements racing for one version:
   * exactly one is stored.
   */
  replaceArchive(archiveKey: Uint8Array, r: ArchiveReplacement): Promise<ArchiveReplaced | undefined>;
  /**
   * The names of the files that hold stored archives (each row's blobName, or the account key in
   * lower-case hex for an archive stored before versions): every other file in the archive
   * directory is an orphan a crash left behind (the node's sweep removes those).
   */
  archiveFileNames(): Promise<Set<string>>;

  // ── Push endpoints ──
  pushTarget(mailbox: Uint8Array): Promise<PushTarget | undefined>;
  /** False (nothing written) when the device is not in the directory. */
  setPushTarget(mailbox: Uint8Array, target: PushTarget, now: number): Promise<boolean>;
  deletePushTarget(mailbox: Uint8Array): Promise<boolean>;
  /** Deletes the endpoint only if it is still `target` (a re-registration in the meantime wins). */
  deletePushTargetIf(mailbox: Uint8Array, target: PushTarget): Promise<boolean>;

  // ── Authentication ──
  /**
   * Marks a challenge nonce used; false if it was used before (replay). `issuedAt` lets a store
   * refuse nonces it cannot vouch for (the SQLite store keeps its used set in memory and refuses
   * challenges issued before it opened). Entries may be forgotten after `expiresAt`.
   */
  consumeChallenge(nonce: Uint8Array, issuedAt: number, expiresAt: number): Promise<boolean>;

  // ── Operations ──
  /** Can the store take writes? Implementations cache the probe (GET /ready must not write each time). */
  health(): Promise<StoreHealth>;
  /** True if this process may run the named periodic job now (one process at a time, for `ttlMs`). */
  tryLease(job: string, holder: string, ttlMs: number): Promise<boolean>;
  /** Flushes and closes; after this every call rejects. */
  close(): Promise<void>;
}

/** A store factory for the conformance suite: `open` twice on the same `location` must see the same data. */
export interface NodeStoreFactory {
  readonly name: string;
  /** A fresh, empty location. */
  fresh(): Promise<string>;
  open(location: string, options: { now: () => number }): Promise<NodeStore>;
  /** Removes the location. */
  destroy(location: string): Promise<void>;
}

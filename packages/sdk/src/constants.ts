/**
 * Named limits and identifiers of the SDK, each with its reason (STYLE.md habit 9).
 */

// ── Storage ─────────────────────────────────────────────────────────────────────────────────

/**
 * PRAGMA application_id of a MeshWhisper SQLite storage ("MWSD"). Opening another application's
 * SQLite file fails with MW_SDK_STORAGE_CORRUPT instead of creating our tables inside it.
 */
export const SQLITE_APPLICATION_ID = 0x4d575344;

/**
 * How long a SQLite opener waits for a lock held by someone else: 0. The only holder can be the
 * storage's one writer, which keeps its exclusive lock for as long as it is open; waiting cannot
 * help, and failing at once gives the second opener a clear MW_SDK_STORAGE_LOCKED.
 */
export const SQLITE_BUSY_TIMEOUT_MS = 0;

/**
 * Prefix of the Web Lock name that serialises writers of one IndexedDB storage across every
 * context of the origin (pages, workers, the service worker); the database name follows it.
 */
export const STORAGE_WEB_LOCK_PREFIX = 'meshwhisper-storage:';

// ── App items (the app-level key/value area of a storage) ───────────────────────────────────

/**
 * Longest app-item table name, in UTF-8 bytes. Tables are a handful of names fixed by the app
 * (outbox, contacts, …); a bound keeps every stored row's key small and the schema honest.
 */
export const APP_TABLE_MAX_BYTES = 128;

/**
 * Longest app-item key, in UTF-8 bytes. Enough for a device address (two hex keys, 129 bytes) plus
 * a message id and a separator; small enough that a page of keys never costs much memory.
 */
export const APP_KEY_MAX_BYTES = 512;

/**
 * Largest app-item value, in bytes: 1 MiB. Values are written in the same transaction as a ratchet
 * advance, so a transaction must stay cheap to buffer (IndexedDB) and commit; the largest thing the
 * client stores is a sealed envelope, far below this. Bigger data belongs in a blob store.
 */
export const APP_VALUE_MAX_BYTES = 1024 * 1024;

// ── Push wake in a service worker (docs/api-push.md) ────────────────────────────────────────

/**
 * How long a service worker woken by a push spends connecting and fetching before it shows what
 * it has (default of handlePush's `timeoutMs`), and the bound on the app's notification callback.
 * A wake should turn into a notification within seconds; 20 s covers a slow mobile connect, the
 * key check and a backlog, and stays far below the minutes a browser lets a push event's
 * waitUntil() run before it gives up and shows its own "site updated in the background" notice.
 */
export const SW_PUSH_TIMEOUT_MS = 20_000;

/**
 * How long one HTTP request to the node may wait for its whole answer (MeshWhisperOptions
 * `requestTimeoutMs`) before it fails with MW_SDK_UNREACHABLE, like a request whose connection
 * failed. Without a bound, a node or network path that stops answering held the request until the
 * platform gave up, if ever: an outbox flush waiting on it sent nothing else meanwhile. Media and
 * archive transfers stream and are not bounded by it.
 */
export const HTTP_REQUEST_TIMEOUT_MS = 30_000;

/**
 * How long a woken service worker waits for its client to close (after fetching, before the app's
 * callback). Closing normally takes milliseconds; it waits for what is in flight (an outbox request,
 * a storage transaction), and one that never finishes must not keep the notification from showing.
 * The longest a wake takes until its notification is therefore 2 × SW_PUSH_TIMEOUT_MS + this.
 */
export const SW_CLOSE_GRACE_MS = 5_000;

/**
 * The notification shown when the app's callback fails, returns nothing, or nothing could be
 * fetched: browsers require a visible notification for every push (userVisibleOnly). Its tag makes
 * repeated generic notifications replace each other instead of piling up.
 */
export const GENERIC_NOTIFICATION_TITLE = 'New message';
export const GENERIC_NOTIFICATION_TAG = 'meshwhisper-wake';

/**
 * Largest inline thumbnail sendFile accepts. It travels inside the sealed message, whose content
 * is bounded by the envelope (256 KiB): 64 KiB leaves room for the PQXDH header on first contact
 * and keeps every message that carries a preview small; larger previews belong in their own blob.
 */
export const MAX_THUMBNAIL_BYTES = 64 * 1024;

// ── The client (docs/api.md) ────────────────────────────────────────────────────────────────

/** Content schema version this SDK writes and understands (content.proto `Content.version`). */
export const CONTENT_VERSION = 1;

/**
 * One-time X25519 and KEM prekeys uploaded per batch, and the low-water mark that triggers a
 * top-up: every first contact consumes one of each, and a node that runs dry falls back to the
 * last-resort KEM prekey (weaker forward secrecy), so the pool is refilled well before it empties.
 */
export const PREKEY_BATCH = 50;
export const PREKEY_LOW_WATER = 20;

/** Bytes of this device's delivery token (the node accepts 16–64; 32 is a full 256-bit secret). */
export const DELIVERY_TOKEN_LENGTH = 32;

/** Longest disappearing-message timer: one year (longer is "keep", which is 0 = off). */
export const MAX_DISAPPEARING_SECONDS = 365 * 24 * 3600;

/**
 * Upper bound on what the session layer adds to a content message (PQXDH header on first contact
 * 1309 bytes + ratchet overhead 85, plus margin): content larger than MAX_SEALED_CONTENT_LENGTH
 * minus this could not be sealed, so it is refused before any ratchet step.
 */
export const SESSION_OVERHEAD_BOUND = 1309 + 85 + 64;

/** Longest quoted snippet carried with a reply (characters): a preview, not a copy. */
export const MAX_REPLY_SNIPPET = 280;

/**
 * While the client runs, prekeys are checked (signed-prekey rotation, one-time pool top-up) this
 * often, and this soon after a first contact (which consumed one-time prekeys).
 */
export const KEY_CHECK_MS = 10 * 60_000;
export const KEY_CHECK_AFTER_CONTACT_MS = 3_000;

/**
 * A message is judged against the sender account's device list as fetched at most this long ago:
 * an older held list is refreshed first (docs/spec/02-keys.md §2.5). It bounds how long a peer that
 * hears nothing from the account keeps accepting a device the account has since revoked (before:
 * until the account's next message, or the revoked certificate's expiry, up to 90 days), for one
 * list fetch per sender account per day.
 */
export const DEVICE_LIST_MAX_AGE_MS = 24 * 3600 * 1000;

/** Retry interval of the outbox while something is queued and the client is running. */
export const OUTBOX_RETRY_MS = 15_000;

/**
 * Attempts (and the first backoff) of one envelope's delivery before the outbox leaves it queued for
 * the next flush: a passing 429/503/network blip is ridden out in ~2 s, a real outage is not waited on.
 */
export const SEND_ATTEMPTS = 4;
export const SEND_BACKOFF_MS = 250;

/**
 * Default validity of a username transfer consent (consentToUsernameTransfer): long enough to
 * reach the current owner by message and be used, short enough that a consent left lying around
 * soon stops working. The node accepts at most MAX_USERNAME_CONSENT_MS (7 days).
 */
export const USERNAME_CONSENT_DEFAULT_MS = 24 * 3600 * 1000;

/**
 * Delivery and read receipts wait a delay drawn uniformly from [min, max] before they go out, and
 * receipts to the same device queued meanwhile go in the same message (receipts.ts,
 * docs/threat-model.md §Receipt timing): a receipt posted milliseconds after the node handed a
 * message over would tell the node who writes to whom. Up to ten seconds of "sent" instead of
 * "delivered" is the price (a window users barely notice, and ~1000× the 10–24 ms pairing the
 * node saw before); MeshWhisperOptions.receiptDelay changes it.
 */
export const RECEIPT_MIN_DELAY_MS = 1_000;
export const RECEIPT_MAX_DELAY_MS = 10_000;
/** Message ids per Receipt: 256 × 18 bytes stays far below the sealed-content limit. */
export const RECEIPT_MAX_IDS = 256;

/**
 * How long a sent message is kept for re-sending to a device that has not confirmed it (no
 * delivery receipt) and later reports it could not decrypt: the node's retention (30 days) —
 * anything older the peer could not have been waiting for.
 */
export const UNCONFIRMED_MAX_AGE_MS = 30 * 24 * 3600 * 1000;

/**
 * At most this many unconfirmed messages are kept (one per message and recipient device), the
 * oldest pruned first. A device that has not confirmed a thousand messages is gone or far behind;
 * re-sending more than that after one decryption-error report would flood it anyway, and without a
 * bound a device that never answers would grow the storage for 30 days (a binary message can be
 * ~250 KB). Checked at start-up and after every UNCONFIRMED_PRUNE_EVERY kept messages, so the table
 * holds at most MAX_UNCONFIRMED + UNCONFIRMED_PRUNE_EVERY entries.
 */
export const MAX_UNCONFIRMED = 1000;
export const UNCONFIRMED_PRUNE_EVERY = 100;

// ── Devices and linking (client/link.ts, docs/spec/linking.md) ──

/** Devices an account may have unless the app says otherwise (MeshWhisperOptions.maxDevices). */
export const DEFAULT_MAX_DEVICES = 6;
/** Longest device name shown to the account's other devices. */
export const MAX_DEVICE_NAME_LENGTH = 64;
/** Longest single long poll of a link channel (the node caps it at 25 s). */
export const LINK_POLL_MS = 20_000;
/**
 * History bytes per link frame and frames per link: 36 × 200 KiB stays under the node's 8 MiB and
 * 64 messages per side with the introduction, grant and completion (and under the crypto layer's
 * 256 KiB frame).
 */
export const LINK_HISTORY_FRAME_BYTES = 200 * 1024;
export const LINK_MAX_HISTORY_FRAMES = 36;
/** How long the list of the account's other devices (own-device sync) is reused before it is looked up again. */
export const OWN_DEVICES_TTL_MS = 30_000;

// ── Account archive (client/archive.ts, docs/api.md §Recovery) ──────────────────────────────

/**
 * Uploads tried per backup before MW_SDK_ARCHIVE_CONFLICT: each 409 means another device stored a
 * version meanwhile and this one merges into it; five in a row means devices keep racing.
 */
export const ARCHIVE_CAS_ATTEMPTS = 5;
/** Messages per conversation in an archive with `history: true`: the recent past, bounded in size. */
export const ARCHIVE_DEFAULT_HISTORY = 1000;
/**
 * Passphrase rule (docs/api.md §Recovery, docs/threat-model.md): at least 16 characters (after
 * NFKC), at least 8 of them different. The node holds the blob and can test guesses offline at
 * Argon2id's cost; the rule keeps out the short and repetitive passphrases tried first.
 */
export const ARCHIVE_PASSPHRASE_MIN_LENGTH = 16;
export const ARCHIVE_PASSPHRASE_MIN_DISTINCT = 8;

// ── History replay with consent (client/replay.ts, docs/spec/content.md §History replay) ─────

/** Messages asked for when the app does not say (requestHistoryReplay). */
export const REPLAY_DEFAULT_MESSAGES = 200;
/** Most messages one answer replays: a conversation's recent past, not an export. */
export const REPLAY_MAX_MESSAGES = 500;
/** Most bytes one answer carries in all (larger messages — inline binaries — are skipped; files travel as references). */
export const REPLAY_MAX_BYTES = 1024 * 1024;
/** Bytes of replayed messages per answer part: one part fits one sealed envelope (256 KiB) with room to spare. */
export const REPLAY_PART_BYTES = 128 * 1024;
/** Requests of one account considered per day; more are answered "rate limited" without asking the user (no nagging). */
export const REPLAY_MAX_REQUESTS_PER_DAY = 3;
/** An ask the app has not answered within a day is forgotten (answering it later is refused). */
export const REPLAY_PENDING_TTL_MS = 24 * 3600 * 1000;

/**
 * How many of a group's newest messages markRead(groupConversation, ids) looks through to find each
 * id's sending device: read receipts are for what the user just saw, which is recent.
 */
export const GROUP_READ_LOOKBACK = 1000;

/**
 * Every limit and fixed parameter of the crypto core, each with the reason it has the value it
 * has. docs/protocol.md §Constants is normative and mirrors this file.
 */

// ── Versions ────────────────────────────────────────────────────────────────────────────────
/** Wire version of every crypto encoding (keys, bundles, PQXDH and ratchet messages, envelopes). */
export const WIRE_VERSION = 2;
/** Version of device certificates, device lists, succession and deletion records (docs/spec/02-keys.md). */
export const CERTIFICATE_VERSION = 2;
/**
 * Version byte of ratchet and ephemeral messages. 2 since protocol v2: the body key mixes in the
 * header nonce, new HKDF labels, ephemeral messages. A v1 message is refused (UNSUPPORTED_VERSION).
 */
export const RATCHET_WIRE_VERSION = 2;
/**
 * Version of the storage formats (serialised ratchet state, session records). 2 since protocol v2
 * (lost-key records, ephemeral replay time, no decryptOnly flag); v1 state is refused with
 * UNSUPPORTED_VERSION, never misread (v1 sessions cannot be migrated: their keys follow v1 labels).
 */
export const STORAGE_VERSION = 2;

// ── Key sizes ───────────────────────────────────────────────────────────────────────────────
export const X25519_KEY_LENGTH = 32;
export const ED25519_KEY_LENGTH = 32;
export const ED25519_SIGNATURE_LENGTH = 64;
export const ML_KEM_768_PUBLIC_KEY_LENGTH = 1184;
export const ML_KEM_768_SECRET_KEY_LENGTH = 2400;
export const ML_KEM_768_CIPHERTEXT_LENGTH = 1088;
export const ML_KEM_768_SHARED_SECRET_LENGTH = 32;
export const AES_GCM_NONCE_LENGTH = 12;
export const AES_GCM_TAG_LENGTH = 16;
/** Mailbox ids are SHA-256 outputs: 2^128 collision resistance, fixed 32 bytes on the wire. */
export const MAILBOX_ID_LENGTH = 32;

// ── Device authority (certificates, device lists) ──────────────────────────────────────────
/**
 * Default certificate lifetime. Long enough that a device whose account key lives on another
 * device (docs/spec/02-keys.md §2.6) needs a renewal only every couple of months; short enough
 * that a stolen certificate of a revoked device stops being accepted on its own.
 */
export const CERTIFICATE_VALIDITY_MS = 90 * 24 * 3600 * 1000;
/** Upper bound on expiresAt − issuedAt that verifiers accept: caps the life of a stolen certificate. */
export const MAX_CERTIFICATE_VALIDITY_MS = 400 * 24 * 3600 * 1000;
/** A device renews (asks a manager device for a new certificate) once less than this is left. */
export const CERTIFICATE_RENEW_BEFORE_MS = 30 * 24 * 3600 * 1000;
/**
 * An envelope may be opened this long after its sender's certificate expired: senders never seal
 * under an expired certificate, and the node keeps a message at most 30 days (its retention).
 */
export const CERTIFICATE_EXPIRY_GRACE_MS = 30 * 24 * 3600 * 1000;
/** Clock skew tolerated on a certificate's issuedAt in the future. */
export const MAX_CERTIFICATE_FUTURE_SKEW_MS = 24 * 3600 * 1000;
/** Largest certificate extension area: room for a few small extensions, bounds envelope overhead. */
export const MAX_CERTIFICATE_EXTENSIONS_LENGTH = 512;
/** Largest encoded certificate: the fixed 190 bytes plus the largest extension area, rounded up. */
export const MAX_DEVICE_CERTIFICATE_LENGTH = 1024;
/**
 * Most devices one device list may name. The SDK's default limit is lower (6, configurable); this
 * is the wire bound that keeps a list small enough to fetch and verify on every fan-out.
 */
export const MAX_DEVICE_LIST_ENTRIES = 32;
/** Largest device-list extension area (same rule as certificates). */
export const MAX_DEVICE_LIST_EXTENSIONS_LENGTH = 512;

// ── Prekeys ─────────────────────────────────────────────────────────────────────────────────
/**
 * Signed prekey and last-resort KEM prekey rotate weekly (Signal's cadence): short enough that a
 * stolen prekey secret exposes at most a week of first-contact sessions that used no one-time key.
 */
export const SIGNED_PREKEY_ROTATION_MS = 7 * 24 * 3600 * 1000;
/**
 * After rotation the previous signed/last-resort prekeys are kept this long so that initial
 * messages sent against the old bundle (and held in the node's 30-day queue) still decrypt.
 */
export const PREKEY_GRACE_PERIOD_MS = 30 * 24 * 3600 * 1000;
/** A bundle whose signed prekey is older than rotation + grace is refused by initiators. */
export const MAX_SIGNED_PREKEY_AGE_MS = SIGNED_PREKEY_ROTATION_MS + PREKEY_GRACE_PERIOD_MS;
/** Clock skew tolerated on prekey timestamps in the future. */
export const MAX_PREKEY_FUTURE_SKEW_MS = 24 * 3600 * 1000;

// ── Double Ratchet ──────────────────────────────────────────────────────────────────────────
/**
 * Most message keys skipped in one chain by a single message. 1000 covers any realistic loss
 * burst while bounding the work (HMAC steps) an attacker can force with one forged header that
 * decrypts under a live header key.
 */
export const MAX_SKIP = 1000;
/**
 * Most skipped message keys stored per session over all chains. Memory and storage bound:
 * 2000 × (32-byte header key + 4-byte n + 32-byte mk + 8-byte time) ≈ 150 KB worst case. The
 * oldest are evicted first.
 */
export const MAX_SKIPPED_KEYS = 2000;
/**
 * Skipped message keys expire after the node's default retention: a message cannot arrive later
 * than the node keeps it, and an old skipped key is a standing forward-secrecy liability.
 */
export const SKIPPED_KEY_MAX_AGE_MS = 30 * 24 * 3600 * 1000;
/**
 * Previous receiving header keys remembered per session only to classify late duplicates from
 * finished chains as DUPLICATE_MESSAGE rather than as undecryptable. Bounded, and they never
 * yield message keys.
 */
export const MAX_PREVIOUS_HEADER_KEYS = 5;
/**
 * Most receiving chains (distinct header keys) that may hold skipped message keys at once; the
 * oldest chain's keys are evicted first. Every incoming message that matches neither the current
 * nor the next receiving header key costs one trial AES-GCM header decryption per such chain, so
 * this bounds the work a garbage or foreign message can force (≤ 2 + 32 + MAX_PREVIOUS_HEADER_KEYS
 * tries), while still letting a lost message arrive 32 lossy turn-changes late (store-and-forward).
 */
export const MAX_SKIPPED_KEY_CHAINS = 32;
/**
 * Records of skipped keys that were evicted or expired (message number and reason, no key
 * material), kept so that a late message whose key is gone is reported as SKIPPED_KEY_EVICTED or
 * SKIPPED_KEY_EXPIRED — "lost, ask the sender again" — and not as a duplicate the app may ignore.
 * As many as live skipped keys (5 bytes each, ≈10 KB); the oldest records go first. A message
 * whose record was also dropped is reported as DUPLICATE_MESSAGE: 2000 further lost keys later.
 */
export const MAX_LOST_KEYS = 2000;
/** Chains holding lost-key records; each costs one trial header decryption for foreign messages. */
export const MAX_LOST_KEY_CHAINS = 32;

// ── Ephemeral messages (typing, presence) ─────────────────────────────────────────────────
/**
 * An ephemeral message is accepted only if its sender time is within this much of the receiver's
 * clock (either direction) and later than the last one accepted in the session. The node delivers
 * ephemeral envelopes at once or never, so only clock skew needs room; 5 minutes covers phones
 * with unsynchronised clocks while bounding how long a captured signal can be replayed.
 */
export const EPHEMERAL_MAX_SKEW_MS = 5 * 60 * 1000;

// ── Sessions ────────────────────────────────────────────────────────────────────────────────
/** Archived sessions kept per peer device and tried after the current one (libsignal uses 40). */
export const MAX_ARCHIVED_SESSIONS = 40;
/**
 * A session we initiated that the peer has never answered is not used for new messages after this
 * long (libsignal's MAX_UNACKNOWLEDGED_SESSION_AGE): the node has dropped anything older than its
 * 30-day retention, and the prekeys it names may be gone. The next send starts a fresh session.
 */
export const PENDING_SESSION_MAX_AGE_MS = 30 * 24 * 3600 * 1000;
/**
 * A device sends at most one decryption-error message per peer device per this interval, however
 * many of that peer's messages fail: a burst of undecryptable messages (a session lost on one
 * side) costs the peer one session restart, and a peer cannot make us flood it.
 */
export const DECRYPTION_ERROR_MIN_INTERVAL_MS = 60 * 1000;

// ── Envelopes and padding ───────────────────────────────────────────────────────────────────
/**
 * Smallest padding bucket. Chosen above the size of a PQXDH initial message with a short text
 * (~1.6 KB), so that first-contact messages are indistinguishable by size from ordinary ones.
 */
export const MIN_PADDED_ENVELOPE = 2048;
/** Largest sealed envelope (bytes): messages carry media by reference, so 256 KiB is generous. */
export const MAX_ENVELOPE_SIZE = 256 * 1024;

// ── Media ───────────────────────────────────────────────────────────────────────────────────
/** Plaintext bytes per media chunk: 64 KiB keeps per-chunk overhead at 16/65536 ≈ 0.024 % and memory small. */
export const MEDIA_CHUNK_SIZE = 64 * 1024;
/** Chunk indices are u32: 2^32 × 64 KiB = 256 TiB, far past any file we carry. */
export const MEDIA_MAX_CHUNKS = 0xffffffff;
/**
 * Largest chunk size a media decryptor accepts from a header. The header is read before anything
 * authenticates it, so this bounds the memory a forged header can make a receiver buffer (1 MiB =
 * 16 × MEDIA_CHUNK_SIZE, room to raise the default later without a format change).
 */
export const MEDIA_MAX_CHUNK_SIZE = 1024 * 1024;
/** Media stream format version (first header byte). */
export const MEDIA_VERSION = 2;
/**
 * Smallest padded media plaintext (file + marker): files under 256 bytes all look alike; above it,
 * buckets grow by ⌊b/20⌋ (≤ 5 % overhead, docs/spec/media.md §Padding).
 */
export const MEDIA_MIN_PADDED_LENGTH = 256;
/** Random per-file nonce prefix: 7 bytes + u32 chunk index + u8 final flag = the 12-byte GCM nonce. */
export const MEDIA_NONCE_PREFIX_LENGTH = 7;
/** Media keys are 32 random bytes, one per file, never reused. */
export const MEDIA_KEY_LENGTH = 32;

// ── Safety numbers ──────────────────────────────────────────────────────────────────────────
/** Hash iterations per fingerprint half (Signal's value): slows targeted collision search. */
export const SAFETY_NUMBER_ITERATIONS = 5200;
export const SAFETY_NUMBER_VERSION = 1;
/**
 * Longest app-supplied stable identifier mixed into a safety-number half. Bounds hashing work on
 * input that may come from a peer; 255 bytes fits any username or UUID form.
 */
export const SAFETY_NUMBER_MAX_STABLE_ID_LENGTH = 255;

// ── Groups (docs/spec/groups.md) ──────────────────────────────────────────────────────────
/** Version byte of sender-key distribution messages and group messages (docs/spec/groups.md §G2). */
export const GROUP_MESSAGE_VERSION = 1;
/** Version byte of signed group control operations (docs/spec/groups.md §G4). */
export const GROUP_OPERATION_VERSION = 1;
/** Group ids are 32 random bytes chosen by the creator: collisions are out of reach (2^128). */
export const GROUP_ID_LENGTH = 32;
/**
 * Most message keys one group message may skip in its sender's chain. Larger than MAX_SKIP (a
 * group has many senders and a device that was offline misses more), and it bounds the HMAC
 * steps a message can force — but only after its signature has verified, so only a member's
 * own sending device can make a receiver do this work.
 */
export const MAX_GROUP_SKIP = 2000;
/**
 * Skipped group message keys kept per sender chain (oldest evicted first): 2000 × (4 + 32 + 8)
 * ≈ 88 KB per sender device at worst.
 */
export const MAX_GROUP_SKIPPED_KEYS = 2000;
/**
 * A sending device rotates its sender key after this many messages (healing by count): a device
 * whose state leaked stops being readable at the next rotation; 1000 bounds what one leak exposes
 * in a busy group.
 */
export const SENDER_KEY_ROTATE_AFTER_MESSAGES = 1000;
/**
 * …and after this long, whatever the count (healing by time): a quiet group still heals weekly,
 * the cadence of the signed prekey rotation.
 */
export const SENDER_KEY_ROTATE_AFTER_MS = 7 * 24 * 3600 * 1000;
/**
 * A receiver keeps a superseded sender key (the previous generation of a sender) this long after
 * the newer one arrived, so that messages sent before the rotation and still queued on the node
 * decrypt; after it, the old key (and the signing key an attacker could have leaked with it) is
 * dropped. The node's retention (30 days) bounds how late a queued message can be.
 */
export const SENDER_KEY_SUPERSEDED_GRACE_MS = 30 * 24 * 3600 * 1000;
/** Superseded generations kept per sender device (each ≤ MAX_GROUP_SKIPPED_KEYS keys). */
export const MAX_SENDER_KEY_GENERATIONS = 3;
/** Longest group name in UTF-8 bytes: a line of text, bounds every control operation. */
export const MAX_GROUP_NAME_LENGTH = 256;
/** Most member accounts in a group (a create operation lists at most this many). */
export const MAX_GROUP_MEMBERS = 1000;
/** Most devices one member may list in a group (the device-list wire bound). */
export const MAX_GROUP_MEMBER_DEVICES = MAX_DEVICE_LIST_ENTRIES;
/**
 * Most parents one control operation may name (the heads its author knew). Concurrent heads
 * beyond this are merged by the next operation that names them; bounds the decode work.
 */
export const MAX_GROUP_OP_PARENTS = 64;
/**
 * Operations whose parents have not arrived yet, buffered per group. A peer cannot fill memory
 * with operations that never connect to the group's root.
 */
export const MAX_PENDING_GROUP_OPS = 1000;
/** Largest encoded control operation (a create listing MAX_GROUP_MEMBERS members with a few devices each). */
export const MAX_GROUP_OP_LENGTH = 256 * 1024;

// ── Archive (recovery key, passphrase KDF) ──────────────────────────────────────────────────
/** Archive blob format version (first byte). */
export const ARCHIVE_VERSION = 1;
/**
 * Production Argon2id cost (RFC 9106 Argon2id v1.3): 64 MiB, 2 passes, 1 lane. ≈0.8 s in pure JS
 * (@noble/hashes) on the reference 2-core machine, the top of what an unlock may take on a phone;
 * above OWASP's 19 MiB/t=2 floor. p=1 because JS runs lanes sequentially anyway.
 */
export const ARCHIVE_KDF_MEMORY_KIB = 64 * 1024;
export const ARCHIVE_KDF_ITERATIONS = 2;
export const ARCHIVE_KDF_PARALLELISM = 1;
/** Argon2 salt: 16 random bytes (RFC 9106 §3.1 recommends 128 bits). */
export const ARCHIVE_KDF_SALT_LENGTH = 16;
/**
 * Upper bounds on KDF parameters read from a stored archive header. The header is unauthenticated
 * until the key is derived, so without these a forged header could make a device allocate
 * gigabytes or spin for minutes. 4× production memory, 10× production passes.
 */
export const ARCHIVE_KDF_MAX_MEMORY_KIB = 256 * 1024;
/**
 * Least Argon2id cost accepted in a key-source record read from storage or from the node
 * (OWASP's minimum recommendation for Argon2id: 19 MiB, 2 passes). A lying node could otherwise
 * serve a record with trivial costs, and a fresh device that derived its archive-access key under
 * them would hand the node a key that is cheap to test passphrase guesses against.
 */
export const ARCHIVE_KDF_MIN_MEMORY_KIB = 19 * 1024;
export const ARCHIVE_KDF_MIN_ITERATIONS = 2;
export const ARCHIVE_KDF_MAX_ITERATIONS = 20;
export const ARCHIVE_KDF_MAX_PARALLELISM = 16;

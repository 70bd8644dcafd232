/** Limits and thresholds of the CLI, each with its reason. */

/**
 * Default timeout of every network check. A healthy node answers /health in milliseconds even
 * across continents; five seconds separates "slow" from "a firewall silently drops packets".
 */
export const DEFAULT_CHECK_TIMEOUT_MS = 5_000;

/** A spinner or progress line appears for anything still running after this long (issue 6). */
export const PROGRESS_AFTER_MS = 1_000;

/** Response bodies read by `doctor` are capped: it only needs a status word, never a stream. */
export const MAX_PROBE_BODY_BYTES = 64 * 1024;

/**
 * Clock skew. The `Date` header has one-second resolution and the round trip adds its own
 * uncertainty, so up to five seconds is noise. Beyond a minute, push provider tokens (APNs,
 * FCM and VAPID JWTs carry iat/exp), certificate validity and retention times go wrong.
 */
export const CLOCK_SKEW_WARN_MS = 5_000;
export const CLOCK_SKEW_FAIL_MS = 60_000;

/**
 * TLS certificate expiry. ACME clients (certbot, Caddy) renew 30 days before expiry, so fewer
 * than 21 days left means renewal has been failing for over a week.
 */
export const CERT_EXPIRY_WARN_DAYS = 21;

/**
 * Disk space next to the node: SQLite needs room for the WAL and a full copy during backup and
 * VACUUM. Below the FAIL bounds the next burst of media uploads can fill the disk.
 */
export const DISK_FREE_WARN_BYTES = 2 * 1024 ** 3;
export const DISK_FREE_WARN_FRACTION = 0.1;
export const DISK_FREE_FAIL_BYTES = 256 * 1024 ** 2;
export const DISK_FREE_FAIL_FRACTION = 0.02;

/**
 * Backup freshness: the node's schedule (and the documented cron line) is daily; two hours of
 * slack for a slow run. docs/backup-restore.md alerts at two days, so that is the FAIL bound.
 */
export const BACKUP_WARN_AGE_MS = 26 * 3600 * 1000;
export const BACKUP_FAIL_AGE_MS = 2 * 24 * 3600 * 1000;

/** Files holding secrets (the node's .env, APNs/FCM credentials): owner read/write only. */
export const SECRET_FILE_MODE = 0o600;
/** Directories holding secrets. */
export const SECRET_DIR_MODE = 0o700;

/**
 * How long the generated skeleton app waits for its first message before it gives up with
 * advice. Over a healthy node the message arrives within a second; half a minute also covers a
 * node under load and the SDK's retries (429/503 back-off), while a broken WebSocket path
 * (a proxy dropping the Upgrade header) still ends in a clear error instead of a hang.
 */
export const APP_FIRST_MESSAGE_TIMEOUT_MS = 30_000;

/** Port of the browser skeleton's dev server (`node serve.mjs`): Vite's default, rarely taken. */
export const APP_DEV_SERVER_PORT = 5173;

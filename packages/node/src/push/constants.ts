/**
 * Limits of the push wake (docs/push.md), each with its reason. Wire limits (endpoint and token
 * lengths, the wake payload) live in @meshwhisper/protocol's constants.ts.
 */

/** Default PUSH_COALESCE_MS: a burst of mail (a group message fanned out, a backlog flushed by a
 *  reconnecting sender) rings the device once, not once per envelope. */
export const DEFAULT_PUSH_COALESCE_MS = 2000;

/** Attempts per wake (first try + retries) on 429, 5xx, timeouts and connection errors: enough to
 *  ride out a push service blip, bounded so a dead service cannot pile up work. */
export const PUSH_MAX_ATTEMPTS = 4;
/** First retry delay; doubled per attempt, with ±50 % jitter so retries do not synchronise. */
export const PUSH_RETRY_BASE_MS = 1000;
/** Longest wait before a retry, including a push service's Retry-After: a wake that cannot go out
 *  within about a minute is stale (the device will find its mail when it next connects). */
export const PUSH_MAX_RETRY_DELAY_MS = 60_000;
/** One request to a push service (connect + response). */
export const PUSH_REQUEST_TIMEOUT_MS = 10_000;

/** Wakes being sent at once (all services): bounds sockets and memory under a fan-out burst. */
export const PUSH_MAX_CONCURRENT = 64;
/** Wakes waiting for a sending slot; beyond it new wakes are dropped (counted as failed): a push
 *  backlog must not grow the node's memory without bound. */
export const PUSH_MAX_QUEUED = 10_000;

/** How long a push service keeps an undelivered wake (Web Push TTL, APNs expiration, FCM ttl):
 *  a day; mail stays stored far longer (RETENTION_DAYS) and is fetched at the next connection. */
export const PUSH_TTL_SECONDS = 86_400;
/** Collapse key / Web Push Topic / apns-collapse-id: one constant for every device, never a
 *  mailbox id (it would link the wakes of one mailbox for the push service), so a wake still
 *  pending at the push service is replaced rather than queued behind another. */
export const PUSH_COLLAPSE_KEY = 'mw-wake';

/** APNs provider tokens are refused after 60 minutes and may be refreshed at most every 20
 *  (Apple, "Establishing a token-based connection to APNs"): refresh at 50. */
export const APNS_JWT_REFRESH_MS = 50 * 60_000;
/** FCM OAuth access tokens are used until this long before their stated expiry. */
export const FCM_TOKEN_EXPIRY_MARGIN_MS = 5 * 60_000;
/** Lifetime requested for the FCM JWT-bearer assertion (Google's maximum is one hour). */
export const FCM_ASSERTION_LIFETIME_S = 3600;
/** OAuth scope for the FCM HTTP v1 API. */
export const FCM_SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
/** Largest push service response body read (error JSON); the rest is discarded. */
export const PUSH_MAX_RESPONSE_BYTES = 64 * 1024;

/** Web Push services that browsers use today; WEBPUSH_ALLOWED_HOSTS defaults to these, so a
 *  device cannot make the node POST to an arbitrary host (SSRF). */
export const DEFAULT_WEBPUSH_ALLOWED_HOSTS = 'fcm.googleapis.com,*.push.services.mozilla.com,*.push.apple.com,*.notify.windows.com';

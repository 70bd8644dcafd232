/**
 * Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payload encryption (RFC 8291), through
 * the `web-push` library. The plaintext is PUSH_WAKE_PAYLOAD and nothing else; the push service
 * sees a fixed-size ciphertext, a constant Topic, and the VAPID identity of this node.
 */
import type { Agent } from 'node:https';
import webpush from 'web-push';
import { PUSH_WAKE_PAYLOAD } from '@meshwhisper/protocol';
import { PUSH_COLLAPSE_KEY, PUSH_REQUEST_TIMEOUT_MS, PUSH_TTL_SECONDS } from './constants.js';
import { retryAfterMs } from './_http.js';
import type { PushOutcome, PushSender } from './outcome.js';
import type { PushTarget } from '../store/push-types.js';
import { hostAllowed } from './settings.js';

/** Why a Web Push endpoint URL is refused, or undefined when it may be stored and used. */
export function webPushEndpointProblem(endpoint: string, allowedHosts: readonly string[]): string | undefined {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return 'endpoint is not a URL';
  }
  if (url.protocol !== 'https:') return 'endpoint must be an https: URL';
  if (url.username !== '' || url.password !== '') return 'endpoint must not carry credentials';
  if (!hostAllowed(allowedHosts, url.hostname)) return 'endpoint host is not a push service this node sends to (WEBPUSH_ALLOWED_HOSTS)';
  return undefined;
}

export interface VapidCredentials {
  /** base64url, 65-byte uncompressed P-256 point. */
  readonly publicKey: string;
  /** base64url, 32-byte P-256 scalar. */
  readonly privateKey: string;
  /** mailto: or https: contact of the operator (RFC 8292 §2.1 "sub"). */
  readonly subject: string;
}

export interface WebPushSenderOptions {
  readonly vapid: VapidCredentials;
  readonly allowedHosts: readonly string[];
  readonly now: () => number;
  /** TLS agent (tests pass one that trusts their CA). */
  readonly agent?: Agent | undefined;
}

export class WebPushSender implements PushSender {
  readonly kind = 'webpush';
  readonly #vapid: VapidCredentials;
  readonly #allowed: readonly string[];
  readonly #now: () => number;
  readonly #agent: Agent | undefined;

  constructor(options: WebPushSenderOptions) {
    this.#vapid = options.vapid;
    this.#allowed = options.allowedHosts;
    this.#now = options.now;
    this.#agent = options.agent;
  }

  /** The VAPID public key (the browser's applicationServerKey), raw 65 bytes. */
  get publicKey(): Uint8Array {
    return new Uint8Array(Buffer.from(this.#vapid.publicKey, 'base64url'));
  }

  async send(target: PushTarget, signal: AbortSignal): Promise<PushOutcome> {
    if (target.kind !== 'webpush') return { result: 'failed', reason: 'wrong_kind' };
    // Checked again at send time: the operator may have narrowed the list since registration.
    if (webPushEndpointProblem(target.endpoint, this.#allowed) !== undefined) return { result: 'failed', reason: 'host_not_allowed' };
    if (signal.aborted) return { result: 'retry', reason: 'aborted' };
    // web-push takes no AbortSignal: shutdown stops waiting here, and close() destroys the agent's sockets.
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<PushOutcome>((resolve) => {
      onAbort = () => resolve({ result: 'retry', reason: 'aborted' });
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([this.#post(target), aborted]);
    } finally {
      if (onAbort) signal.removeEventListener('abort', onAbort);
    }
  }

  async #post(target: Extract<PushTarget, { kind: 'webpush' }>): Promise<PushOutcome> {
    try {
      await webpush.sendNotification(
        { endpoint: target.endpoint, keys: { p256dh: Buffer.from(target.p256dh).toString('base64url'), auth: Buffer.from(target.auth).toString('base64url') } },
        Buffer.from(PUSH_WAKE_PAYLOAD, 'utf8'),
        {
          vapidDetails: { subject: this.#vapid.subject, publicKey: this.#vapid.publicKey, privateKey: this.#vapid.privateKey },
          contentEncoding: 'aes128gcm',
          TTL: PUSH_TTL_SECONDS,
          urgency: 'high',
          topic: PUSH_COLLAPSE_KEY,
          timeout: PUSH_REQUEST_TIMEOUT_MS,
          ...(this.#agent ? { agent: this.#agent } : {}),
        },
      );
      return { result: 'sent' };
    } catch (e) {
      if (e instanceof webpush.WebPushError) {
        const status = e.statusCode;
        // RFC 8030 §7.3: 404 / 410 — the subscription expired or was removed.
        if (status === 404 || status === 410) return { result: 'gone' };
        if (status === 429 || status >= 500) return { result: 'retry', reason: String(status), retryAfterMs: retryAfterMs(e.headers['retry-after'], this.#now()) };
        return { result: 'failed', reason: String(status) };
      }
      // Connection refused, TLS failure, timeout: transient from here.
      return { result: 'retry', reason: 'network' };
    }
  }

  close(): void {
    this.#agent?.destroy();
  }
}

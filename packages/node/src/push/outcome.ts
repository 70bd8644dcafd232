/** What a push service said about one wake, as the wake scheduler (wake.ts) needs it. */
import type { PushTarget } from '../store/push-types.js';

export type PushOutcome =
  /** Accepted by the push service. */
  | { readonly result: 'sent' }
  /** The endpoint is dead (Web Push 404/410, APNs 410, FCM UNREGISTERED): prune it. */
  | { readonly result: 'gone' }
  /** Transient (429, 5xx, timeout, connection error): try again, after `retryAfterMs` if given. */
  | { readonly result: 'retry'; readonly reason: string; readonly retryAfterMs?: number | undefined }
  /** Refused for a reason retrying will not fix (bad request, bad credentials). */
  | { readonly result: 'failed'; readonly reason: string };

/** One push service. `reason` strings are fixed words or a status code: never a token or URL. */
export interface PushSender {
  readonly kind: PushTarget['kind'];
  send(target: PushTarget, signal: AbortSignal): Promise<PushOutcome>;
  close(): void;
}

/**
 * Push registration (docs/push.md §1, docs/api-push.md): turns what the platform hands an app — a
 * browser PushSubscription, an APNs device token, an FCM registration token — into the node's
 * PushRegistration, and reads the node's PushInfo. The node only ever sends a fixed wake marker.
 */
import type { LocalIdentity } from '@meshwhisper/crypto';
import type { MessageInitShape } from '@bufbuild/protobuf';
import {
  ApnsMode,
  MAX_APNS_TOKEN_LENGTH,
  MAX_PUSH_ENDPOINT_LENGTH,
  MIN_APNS_TOKEN_LENGTH,
  PushInfoSchema,
  PushRegistrationSchema,
  WEB_PUSH_AUTH_LENGTH,
  WEB_PUSH_P256DH_LENGTH,
} from '@meshwhisper/protocol';
import { SdkError, SdkErrorCode } from './errors.js';
import type { NodeApi } from './node-api.js';

/** A browser PushSubscription (W3C Push API), or the object its `toJSON()` returns. */
export type WebPushSubscriptionInput =
  | { readonly endpoint: string; getKey(name: 'p256dh' | 'auth'): ArrayBuffer | null }
  | { readonly endpoint: string; readonly keys: { readonly p256dh: string; readonly auth: string } };

/** Where the node should ring this device (one endpoint per device; a new one replaces the old). */
export type PushRegistrationInput =
  /** A browser subscription made with `applicationServerKey = (await client.pushInfo()).vapidPublicKey`. */
  | { readonly kind: 'webpush'; readonly subscription: WebPushSubscriptionInput }
  /**
   * An APNs device token (hex string as apps usually log it, or the raw bytes). `alert` (default
   * `background`) makes the node send a generic visible alert the notification service extension
   * replaces; iOS throttles background pushes.
   */
  | { readonly kind: 'apns'; readonly token: string | Uint8Array; readonly mode?: 'background' | 'alert' }
  /** An FCM registration token. */
  | { readonly kind: 'fcm'; readonly token: string };

/** Which push services the node can ring (GET /v1/push/info). */
export interface PushInfo {
  /** The node's VAPID public key (65 bytes): `applicationServerKey` for `pushManager.subscribe`. Absent: Web Push is off. */
  readonly vapidPublicKey?: Uint8Array;
  readonly apns: boolean;
  readonly fcm: boolean;
}

const invalid = (message: string): SdkError => new SdkError(SdkErrorCode.INVALID_ARGUMENT, `registerPush: ${message}`);

/** base64url (RFC 4648 §5, padding optional) → bytes; undefined if it is not that. */
function fromBase64Url(s: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*={0,2}$/.test(s)) return undefined;
  const b64 = s.replace(/=+$/, '').replace(/-/g, '+').replace(/_/g, '/');
  if (b64.length % 4 === 1) return undefined;
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function webPushKeys(sub: WebPushSubscriptionInput): { p256dh: Uint8Array | undefined; auth: Uint8Array | undefined } {
  if ('getKey' in sub && typeof sub.getKey === 'function') {
    const k = (name: 'p256dh' | 'auth'): Uint8Array | undefined => {
      const b = sub.getKey(name);
      return b ? new Uint8Array(b.slice(0)) : undefined;
    };
    return { p256dh: k('p256dh'), auth: k('auth') };
  }
  const keys = (sub as { keys?: { p256dh?: unknown; auth?: unknown } }).keys;
  const k = (v: unknown): Uint8Array | undefined => (typeof v === 'string' ? fromBase64Url(v) : undefined);
  return { p256dh: k(keys?.p256dh), auth: k(keys?.auth) };
}

/** Checks a registration and builds the PushRegistration message; throws MW_SDK_INVALID_ARGUMENT. */
export function pushRegistrationMessage(reg: PushRegistrationInput): MessageInitShape<typeof PushRegistrationSchema> {
  if (!reg || typeof reg !== 'object') throw invalid('a registration { kind, … } is required');
  switch (reg.kind) {
    case 'webpush': {
      const sub = reg.subscription;
      if (!sub || typeof sub.endpoint !== 'string') throw invalid('subscription.endpoint is required');
      let url: URL;
      try {
        url = new URL(sub.endpoint);
      } catch {
        throw invalid('subscription.endpoint is not a URL');
      }
      if (url.protocol !== 'https:' || sub.endpoint.length > MAX_PUSH_ENDPOINT_LENGTH) throw invalid(`subscription.endpoint must be an https: URL of at most ${MAX_PUSH_ENDPOINT_LENGTH} characters`);
      const { p256dh, auth } = webPushKeys(sub);
      if (!p256dh || p256dh.length !== WEB_PUSH_P256DH_LENGTH || p256dh[0] !== 0x04) throw invalid(`subscription key p256dh must be a ${WEB_PUSH_P256DH_LENGTH}-byte uncompressed P-256 point`);
      if (!auth || auth.length !== WEB_PUSH_AUTH_LENGTH) throw invalid(`subscription key auth must be ${WEB_PUSH_AUTH_LENGTH} bytes`);
      return { target: { case: 'webPush', value: { endpoint: sub.endpoint, p256dh, auth } } };
    }
    case 'apns': {
      let token: Uint8Array;
      if (reg.token instanceof Uint8Array) token = reg.token.slice();
      else if (typeof reg.token === 'string' && /^([0-9a-fA-F]{2})+$/.test(reg.token)) token = Uint8Array.from(reg.token.match(/../g)!, (h) => parseInt(h, 16));
      else throw invalid('apns token must be hex or bytes');
      if (token.length < MIN_APNS_TOKEN_LENGTH || token.length > MAX_APNS_TOKEN_LENGTH) throw invalid(`apns token must be ${MIN_APNS_TOKEN_LENGTH}…${MAX_APNS_TOKEN_LENGTH} bytes`);
      const mode = reg.mode ?? 'background';
      if (mode !== 'background' && mode !== 'alert') throw invalid("apns mode must be 'background' or 'alert'");
      return { target: { case: 'apns', value: { deviceToken: token, mode: mode === 'alert' ? ApnsMode.ALERT : ApnsMode.BACKGROUND } } };
    }
    case 'fcm': {
      const t = reg.token;
      if (typeof t !== 'string' || t.length === 0 || t.length > MAX_PUSH_ENDPOINT_LENGTH || !/^[\x21-\x7e]+$/.test(t)) {
        throw invalid(`fcm token must be 1…${MAX_PUSH_ENDPOINT_LENGTH} printable ASCII characters`);
      }
      return { target: { case: 'fcm', value: { registrationToken: t } } };
    }
    default:
      throw invalid("kind must be 'webpush', 'apns' or 'fcm'");
  }
}

/** PUT /v1/push (DeviceAuth over the body digest). The reply is 204: any schema decodes its empty body. */
export async function registerPush(api: NodeApi, identity: LocalIdentity, reg: PushRegistrationInput): Promise<void> {
  await api.call('PUT', '/v1/push', { body: { schema: PushRegistrationSchema, value: pushRegistrationMessage(reg) }, reply: PushInfoSchema, auth: identity });
}

/** DELETE /v1/push (DeviceAuth, no body): the node stops ringing this device. Succeeds when none was registered. */
export async function unregisterPush(api: NodeApi, identity: LocalIdentity): Promise<void> {
  await api.call('DELETE', '/v1/push', { reply: PushInfoSchema, auth: identity });
}

/** GET /v1/push/info. */
export async function pushInfo(api: NodeApi): Promise<PushInfo> {
  const r = await api.call('GET', '/v1/push/info', { reply: PushInfoSchema });
  if (r.vapidPublicKey.length !== 0 && (r.vapidPublicKey.length !== WEB_PUSH_P256DH_LENGTH || r.vapidPublicKey[0] !== 0x04)) {
    throw new SdkError(SdkErrorCode.PROTOCOL, 'GET /v1/push/info: the VAPID public key is not an uncompressed P-256 point');
  }
  return { ...(r.vapidPublicKey.length ? { vapidPublicKey: r.vapidPublicKey } : {}), apns: r.apns, fcm: r.fcm };
}

/** Push endpoint types shared by the store interface and the push senders. */
import { toHex } from '@meshwhisper/crypto';

export type PushKind = 'webpush' | 'apns' | 'fcm';
export type ApnsPushMode = 'background' | 'alert';

/** Where a device is rung: one of the three push services. */
export type PushTarget =
  | { readonly kind: 'webpush'; readonly endpoint: string; readonly p256dh: Uint8Array; readonly auth: Uint8Array }
  | { readonly kind: 'apns'; readonly deviceToken: Uint8Array; readonly mode: ApnsPushMode }
  | { readonly kind: 'fcm'; readonly registrationToken: string };

/** The stored token of a target (what a prune compares). */
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

/**
 * Push credentials (issue 5: content-free wake through Web Push, APNs and FCM), by service. The
 * node's CONFIG_SCHEMA defines these variables (same names); where it does, the schema's
 * description and default are used and this list only says which service a variable belongs to
 * (for init's instructions and doctor's offline checks). A name the schema lacks is written to
 * the .env from here, so init works against a node without push support too.
 */

export type PushService = 'webpush' | 'apns' | 'fcm';
export const PUSH_SERVICES: readonly PushService[] = ['webpush', 'apns', 'fcm'];

export interface PushSetting {
  readonly env: string;
  readonly service: PushService;
  readonly default: string;
  readonly description: string;
  /** The value (or the file it names) is a secret. */
  readonly secret: boolean;
}

/** Where `init` puts credential files (mounted read-only into the container at the same relative path). */
export const SECRETS_DIR = 'secrets';
export const APNS_KEY_PLACEHOLDER = `./${SECRETS_DIR}/apns-key.p8`;
export const FCM_ACCOUNT_PLACEHOLDER = `./${SECRETS_DIR}/fcm-service-account.json`;

export const PUSH_SETTINGS: readonly PushSetting[] = [
  { env: 'VAPID_PUBLIC_KEY', service: 'webpush', default: '', secret: false, description: 'Web Push (RFC 8292) application server public key: base64url of the 65-byte uncompressed P-256 point. Browsers subscribe with it. Generate a pair with `meshwhisper keys vapid`.' },
  { env: 'VAPID_PRIVATE_KEY', service: 'webpush', default: '', secret: true, description: 'Web Push private key: base64url of the 32-byte P-256 scalar matching VAPID_PUBLIC_KEY. Secret.' },
  { env: 'VAPID_SUBJECT', service: 'webpush', default: '', secret: false, description: 'Contact for push services, a mailto: or https: URL (RFC 8292 §2.1), e.g. mailto:ops@example.com.' },
  { env: 'APNS_KEY_FILE', service: 'apns', default: '', secret: true, description: `APNs token-auth key (.p8, PKCS#8 P-256) downloaded from developer.apple.com → Certificates, IDs & Profiles → Keys. Put it at ${APNS_KEY_PLACEHOLDER} (mode 0600). Secret.` },
  { env: 'APNS_KEY_ID', service: 'apns', default: '', secret: false, description: 'The 10-character Key ID shown next to the .p8 key.' },
  { env: 'APNS_TEAM_ID', service: 'apns', default: '', secret: false, description: 'Your 10-character Apple Developer Team ID.' },
  { env: 'APNS_BUNDLE_ID', service: 'apns', default: '', secret: false, description: "The app's bundle id (the apns-topic), e.g. com.example.chat." },
  { env: 'FCM_SERVICE_ACCOUNT_FILE', service: 'fcm', default: '', secret: true, description: `Firebase service-account JSON (Firebase console → Project settings → Service accounts → Generate new private key). Put it at ${FCM_ACCOUNT_PLACEHOLDER} (mode 0600). Secret.` },
];

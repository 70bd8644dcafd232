/**
 * Builds the node's push wake from its configuration: which services are on (each only when all of
 * its credentials are set; none is required), their senders, the registry and the wake scheduler.
 */
import { readFileSync } from 'node:fs';
import type { SecureClientSessionOptions } from 'node:http2';
import { Agent } from 'node:https';
import type { CryptoContext } from '@meshwhisper/crypto';
import { NodeConfigError } from '../config.js';
import type { NodeConfig } from '../config.js';
import type { NodeStore } from '../store/node-store.js';
import { ApnsSender, loadApnsKey } from './apns.js';
import { FcmSender, parseServiceAccount } from './fcm.js';
import type { PushSender } from './outcome.js';
import type { PushKind } from '../store/push-types.js';
import { PushWaker } from './wake.js';
import type { PushEvents } from './wake.js';
import { WebPushSender } from './webpush.js';

/** TEST ONLY knobs: trust a test CA, shorten retry delays. */
export interface PushTestOptions {
  /** PEM CA certificate(s) trusted for every push service (replaces the default trust store). */
  readonly ca?: string | Buffer;
  readonly retryDelayMs?: (attempt: number, retryAfterMs: number | undefined) => number;
}

export interface NodePush extends AsyncDisposable {
  readonly waker: PushWaker;
  /** The Web Push sender when configured (its VAPID public key is published by GET /v1/push/info). */
  readonly webPush: WebPushSender | undefined;
  /** Which services are on. */
  readonly enabled: ReadonlySet<PushKind>;
  /** Web Push endpoint host patterns (WEBPUSH_ALLOWED_HOSTS). */
  readonly allowedHosts: readonly string[];
  close(): Promise<void>;
}

type PushConfig = Pick<
  NodeConfig,
  | 'pushCoalesceMs'
  | 'vapidPublicKey'
  | 'vapidPrivateKey'
  | 'vapidSubject'
  | 'webPushAllowedHosts'
  | 'apnsKeyFile'
  | 'apnsKeyId'
  | 'apnsTeamId'
  | 'apnsBundleId'
  | 'apnsUrl'
  | 'fcmServiceAccountFile'
  | 'fcmApiUrl'
>;

/** All of a service's variables or none: a half-configured service is an operator error at start. */
function allOrNone(group: Record<string, boolean>): boolean {
  const set = Object.entries(group).filter(([, v]) => v);
  if (set.length === 0) return false;
  const missing = Object.entries(group).find(([, v]) => !v);
  if (missing) throw new NodeConfigError(missing[0], `must be set too (${set.map(([k]) => k).join(', ')} ${set.length === 1 ? 'is' : 'are'} set)`);
  return true;
}

function readSecretFile(variable: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new NodeConfigError(variable, `cannot read the file (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

export function createPush(config: PushConfig, deps: { ctx: CryptoContext; store: NodeStore; events?: PushEvents; test?: PushTestOptions; claim?: (mailboxKey: string) => Promise<boolean> }): NodePush {
  const now = (): number => deps.ctx.now();
  const ca = deps.test?.ca;
  const agent = (): Agent => new Agent({ keepAlive: true, ...(ca !== undefined ? { ca } : {}) });
  const senders: Partial<Record<PushKind, PushSender>> = {};
  let webPush: WebPushSender | undefined;

  if (allOrNone({ VAPID_PUBLIC_KEY: config.vapidPublicKey !== '', VAPID_PRIVATE_KEY: config.vapidPrivateKey.isSet, VAPID_SUBJECT: config.vapidSubject !== '' })) {
    webPush = new WebPushSender({
      vapid: { publicKey: config.vapidPublicKey, privateKey: config.vapidPrivateKey.reveal(), subject: config.vapidSubject },
      allowedHosts: config.webPushAllowedHosts,
      now,
      agent: agent(),
    });
    senders.webpush = webPush;
  }
  if (allOrNone({ APNS_KEY_FILE: config.apnsKeyFile !== '', APNS_KEY_ID: config.apnsKeyId !== '', APNS_TEAM_ID: config.apnsTeamId !== '', APNS_BUNDLE_ID: config.apnsBundleId !== '' })) {
    let key;
    try {
      key = loadApnsKey(readSecretFile('APNS_KEY_FILE', config.apnsKeyFile));
    } catch (e) {
      if (e instanceof RangeError) throw new NodeConfigError('APNS_KEY_FILE', e.message);
      throw e;
    }
    const tls: SecureClientSessionOptions | undefined = ca !== undefined ? { ca } : undefined;
    senders.apns = new ApnsSender({ key, keyId: config.apnsKeyId, teamId: config.apnsTeamId, bundleId: config.apnsBundleId, url: config.apnsUrl, now, tls });
  }
  if (config.fcmServiceAccountFile !== '') {
    let account;
    try {
      account = parseServiceAccount(readSecretFile('FCM_SERVICE_ACCOUNT_FILE', config.fcmServiceAccountFile));
    } catch (e) {
      if (e instanceof RangeError) throw new NodeConfigError('FCM_SERVICE_ACCOUNT_FILE', e.message);
      throw e;
    }
    senders.fcm = new FcmSender({ account, apiUrl: config.fcmApiUrl, now, agent: agent() });
  }

  const waker = new PushWaker({
    store: deps.store,
    senders,
    coalesceMs: config.pushCoalesceMs,
    now,
    ...(deps.events ? { events: deps.events } : {}),
    ...(deps.test?.retryDelayMs ? { retryDelayMs: deps.test.retryDelayMs } : {}),
    ...(deps.claim ? { claim: deps.claim } : {}),
  });
  const close = (): Promise<void> => waker.close();
  return {
    waker,
    webPush,
    enabled: new Set(Object.keys(senders) as PushKind[]),
    allowedHosts: config.webPushAllowedHosts,
    close,
    [Symbol.asyncDispose]: close,
  };
}

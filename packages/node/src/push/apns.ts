/**
 * Apple Push Notification service, HTTP/2 provider API with token-based authentication (Apple,
 * "Sending notification requests to APNs", "Establishing a token-based connection to APNs").
 *
 * Provider token: a JWT { alg: ES256, kid: key id } { iss: team id, iat }, signed with the .p8 key;
 * reused until APNS_JWT_REFRESH_MS (Apple refuses tokens older than an hour and throttles refreshes
 * under 20 minutes). One HTTP/2 session, reopened when it closes or fails.
 *
 * Payloads are constants: background mode `content-available: 1` (push type background, priority 5,
 * required by Apple for background pushes); alert mode a generic alert with `mutable-content: 1`
 * (push type alert, priority 10) that the app's notification service extension replaces after it
 * fetched and decrypted the mail. apns-topic is the bundle id; apns-collapse-id a constant.
 */
import { connect, constants as h2 } from 'node:http2';
import type { ClientHttp2Session, SecureClientSessionOptions } from 'node:http2';
import { createPrivateKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { toHex } from '@meshwhisper/crypto';
import { PUSH_WAKE_PAYLOAD } from '@meshwhisper/protocol';
import { APNS_JWT_REFRESH_MS, PUSH_COLLAPSE_KEY, PUSH_MAX_RESPONSE_BYTES, PUSH_REQUEST_TIMEOUT_MS, PUSH_TTL_SECONDS } from './constants.js';
import { signJwt } from './_jwt.js';
import { retryAfterMs } from './_http.js';
import type { PushOutcome, PushSender } from './outcome.js';
import type { ApnsPushMode, PushTarget } from '../store/push-types.js';

const wake = JSON.parse(PUSH_WAKE_PAYLOAD) as Record<string, unknown>;
/** The two APNs payloads, byte-for-byte constant. */
export const APNS_PAYLOADS: Readonly<Record<ApnsPushMode, string>> = Object.freeze({
  background: JSON.stringify({ aps: { 'content-available': 1 }, ...wake }),
  alert: JSON.stringify({ aps: { alert: { body: 'New message' }, 'mutable-content': 1 }, ...wake }),
});

/** Loads an APNs .p8 signing key (PKCS#8 PEM, P-256). Throws RangeError naming what is wrong. */
export function loadApnsKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    throw new RangeError('is not a PEM private key (.p8)');
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new RangeError('is not a P-256 (ES256) key');
  return key;
}

export interface ApnsSenderOptions {
  readonly key: KeyObject;
  /** 10-character key id of the .p8 key (JWT header `kid`). */
  readonly keyId: string;
  /** 10-character Apple developer team id (JWT claim `iss`). */
  readonly teamId: string;
  /** The app's bundle id: apns-topic. */
  readonly bundleId: string;
  /** https://api.push.apple.com (production) or https://api.sandbox.push.apple.com. */
  readonly url: string;
  readonly now: () => number;
  /** Extra TLS options for the HTTP/2 session (tests pass their CA). */
  readonly tls?: SecureClientSessionOptions | undefined;
}

export class ApnsSender implements PushSender {
  readonly kind = 'apns';
  readonly #o: ApnsSenderOptions;
  #session: ClientHttp2Session | undefined;
  #jwt: { token: string; issuedAt: number } | undefined;

  constructor(options: ApnsSenderOptions) {
    this.#o = options;
  }

  /** The current provider token, signed anew once it is APNS_JWT_REFRESH_MS old. */
  providerToken(): string {
    const now = this.#o.now();
    if (!this.#jwt || now - this.#jwt.issuedAt >= APNS_JWT_REFRESH_MS || now < this.#jwt.issuedAt) {
      this.#jwt = { token: signJwt('ES256', this.#o.key, { kid: this.#o.keyId }, { iss: this.#o.teamId, iat: Math.floor(now / 1000) }), issuedAt: now };
    }
    return this.#jwt.token;
  }

  #sessionNow(): ClientHttp2Session {
    if (this.#session && !this.#session.closed && !this.#session.destroyed) return this.#session;
    const session = connect(this.#o.url, this.#o.tls ?? {});
    // A failed or closed session is dropped; the next wake opens a new one.
    const drop = (): void => {
      if (this.#session === session) this.#session = undefined;
    };
    session.on('error', drop);
    session.on('goaway', drop);
    session.on('close', drop);
    session.unref();
    this.#session = session;
    return session;
  }

  send(target: PushTarget, signal: AbortSignal): Promise<PushOutcome> {
    if (target.kind !== 'apns') return Promise.resolve({ result: 'failed', reason: 'wrong_kind' });
    if (signal.aborted) return Promise.resolve({ result: 'retry', reason: 'aborted' });
    const background = target.mode === 'background';
    const body = Buffer.from(APNS_PAYLOADS[target.mode]);
    return new Promise<PushOutcome>((resolve) => {
      let settled = false;
      const done = (o: PushOutcome): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        resolve(o);
      };
      let stream: ReturnType<ClientHttp2Session['request']>;
      try {
        stream = this.#sessionNow().request({
          [h2.HTTP2_HEADER_METHOD]: 'POST',
          [h2.HTTP2_HEADER_PATH]: `/3/device/${toHex(target.deviceToken)}`,
          [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/json',
          authorization: `bearer ${this.providerToken()}`,
          'apns-push-type': background ? 'background' : 'alert',
          'apns-priority': background ? '5' : '10',
          'apns-topic': this.#o.bundleId,
          'apns-expiration': String(Math.floor(this.#o.now() / 1000) + PUSH_TTL_SECONDS),
          'apns-collapse-id': PUSH_COLLAPSE_KEY,
        });
      } catch {
        resolve({ result: 'retry', reason: 'network' });
        return;
      }
      const timer = setTimeout(() => {
        stream.close(h2.NGHTTP2_CANCEL);
        done({ result: 'retry', reason: 'timeout' });
      }, PUSH_REQUEST_TIMEOUT_MS);
      const onAbort = (): void => {
        stream.close(h2.NGHTTP2_CANCEL);
        done({ result: 'retry', reason: 'aborted' });
      };
      signal.addEventListener('abort', onAbort);
      let status = 0;
      let retryAfter: string | string[] | undefined;
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on('response', (headers) => {
        status = Number(headers[h2.HTTP2_HEADER_STATUS] ?? 0);
        retryAfter = headers['retry-after'];
      });
      stream.on('data', (c: Buffer) => {
        if (size < PUSH_MAX_RESPONSE_BYTES) chunks.push(c.subarray(0, PUSH_MAX_RESPONSE_BYTES - size));
        size += c.length;
      });
      stream.on('error', () => done({ result: 'retry', reason: 'network' }));
      stream.on('close', () => {
        if (status === 0) return done({ result: 'retry', reason: 'network' });
        done(this.#outcome(status, Buffer.concat(chunks).toString('utf8'), retryAfter));
      });
      stream.end(body);
    });
  }

  #outcome(status: number, body: string, retryAfter: string | string[] | undefined): PushOutcome {
    if (status === 200) return { result: 'sent' };
    let reason = 'unknown';
    try {
      const r = (JSON.parse(body) as { reason?: unknown }).reason;
      if (typeof r === 'string' && /^[A-Za-z]{1,64}$/.test(r)) reason = r;
    } catch {
      // not JSON: keep 'unknown'
    }
    // 410: the token is no longer active for the topic (reason Unregistered or ExpiredToken).
    if (status === 410 || reason === 'Unregistered') return { result: 'gone' };
    if (status === 403 && reason === 'ExpiredProviderToken') {
      this.#jwt = undefined;
      return { result: 'retry', reason };
    }
    if (status === 429 || status >= 500) return { result: 'retry', reason: `${status} ${reason}`, retryAfterMs: retryAfterMs(retryAfter, this.#o.now()) };
    // BadDeviceToken is NOT pruned: it is also what a sandbox token sent to production (a wrong
    // APNS_URL) gets, and pruning on it would wipe every registration of a misconfigured node.
    return { result: 'failed', reason: `${status} ${reason}` };
  }

  close(): void {
    this.#session?.close();
    this.#session = undefined;
  }
}

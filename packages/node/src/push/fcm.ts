/**
 * Firebase Cloud Messaging, HTTP v1 API (POST {api}/v1/projects/{project}/messages:send) with an
 * OAuth 2.0 access token obtained through the JWT-bearer grant (RFC 7523) from a service account:
 * an RS256 assertion { iss: client_email, scope: firebase.messaging, aud: token_uri, iat, exp } is
 * exchanged at token_uri; the token is reused until FCM_TOKEN_EXPIRY_MARGIN_MS before it expires.
 *
 * The message is data-only (no `notification`: the app decides what to show after decrypting) and
 * high priority (so Android delivers it to a dozing device), with a constant collapse key.
 */
import { createPrivateKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { Agent } from 'node:https';
import { PUSH_WAKE_PAYLOAD } from '@meshwhisper/protocol';
import { FCM_ASSERTION_LIFETIME_S, FCM_SCOPE, FCM_TOKEN_EXPIRY_MARGIN_MS, PUSH_COLLAPSE_KEY, PUSH_REQUEST_TIMEOUT_MS, PUSH_TTL_SECONDS } from './constants.js';
import { signJwt } from './_jwt.js';
import { httpsRequest, retryAfterMs } from './_http.js';
import type { PushOutcome, PushSender } from './outcome.js';
import type { PushTarget } from '../store/push-types.js';

/** The FCM data payload: PUSH_WAKE_PAYLOAD's fields as strings (FCM data values are strings). */
export const FCM_DATA: Readonly<Record<string, string>> = Object.freeze(
  Object.fromEntries(Object.entries(JSON.parse(PUSH_WAKE_PAYLOAD) as Record<string, unknown>).map(([k, v]) => [k, String(v)])),
);

/** The fields of a Google service-account JSON key file that FCM needs. */
export interface ServiceAccount {
  readonly projectId: string;
  readonly clientEmail: string;
  readonly privateKeyId: string;
  readonly privateKey: KeyObject;
  readonly tokenUri: string;
}

/** Parses a service-account key file (JSON). Throws RangeError naming the missing or bad field. */
export function parseServiceAccount(json: string): ServiceAccount {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    throw new RangeError('is not JSON');
  }
  const str = (k: string): string => {
    const v = o[k];
    if (typeof v !== 'string' || v === '') throw new RangeError(`has no ${k}`);
    return v;
  };
  if (o.type !== undefined && o.type !== 'service_account') throw new RangeError('is not a service_account key');
  const pem = str('private_key');
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    // No cause attached on purpose: the parser's message may quote the key material.
    throw new RangeError('private_key is not a PEM private key');
  }
  if (privateKey.asymmetricKeyType !== 'rsa') throw new RangeError('private_key is not an RSA key');
  const tokenUri = typeof o.token_uri === 'string' && o.token_uri !== '' ? o.token_uri : 'https://oauth2.googleapis.com/token';
  if (!tokenUri.startsWith('https://')) throw new RangeError('token_uri must be an https: URL');
  return { projectId: str('project_id'), clientEmail: str('client_email'), privateKeyId: typeof o.private_key_id === 'string' ? o.private_key_id : '', privateKey, tokenUri };
}

export interface FcmSenderOptions {
  readonly account: ServiceAccount;
  /** https://fcm.googleapis.com unless testing. */
  readonly apiUrl: string;
  readonly now: () => number;
  readonly agent?: Agent | undefined;
}

class TransientError extends Error {
  constructor(
    readonly reason: string,
    readonly retryAfterMs?: number,
  ) {
    super(reason);
  }
}

export class FcmSender implements PushSender {
  readonly kind = 'fcm';
  readonly #o: FcmSenderOptions;
  readonly #sendUrl: URL;
  #token: { value: string; expiresAt: number } | undefined;
  #pending: Promise<string> | undefined;

  constructor(options: FcmSenderOptions) {
    this.#o = options;
    this.#sendUrl = new URL(`v1/projects/${encodeURIComponent(options.account.projectId)}/messages:send`, options.apiUrl.endsWith('/') ? options.apiUrl : `${options.apiUrl}/`);
  }

  /** An OAuth access token, fetched once and shared by concurrent sends until it nears expiry. */
  accessToken(signal?: AbortSignal): Promise<string> {
    const now = this.#o.now();
    if (this.#token && now < this.#token.expiresAt) return Promise.resolve(this.#token.value);
    this.#pending ??= this.#fetchToken(signal).finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  async #fetchToken(signal?: AbortSignal): Promise<string> {
    const { account } = this.#o;
    const iat = Math.floor(this.#o.now() / 1000);
    const assertion = signJwt('RS256', account.privateKey, { typ: 'JWT', ...(account.privateKeyId ? { kid: account.privateKeyId } : {}) }, {
      iss: account.clientEmail,
      scope: FCM_SCOPE,
      aud: account.tokenUri,
      iat,
      exp: iat + FCM_ASSERTION_LIFETIME_S,
    });
    const res = await httpsRequest(new URL(account.tokenUri), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }).toString(),
      agent: this.#o.agent,
      timeoutMs: PUSH_REQUEST_TIMEOUT_MS,
      signal,
    }).catch(() => {
      throw new TransientError('token_network');
    });
    if (res.status === 429 || res.status >= 500) throw new TransientError(`token_${res.status}`, retryAfterMs(res.headers['retry-after'], this.#o.now()));
    let parsed: { access_token?: unknown; expires_in?: unknown } = {};
    try {
      parsed = JSON.parse(res.body) as typeof parsed;
    } catch {
      // handled below
    }
    if (res.status !== 200 || typeof parsed.access_token !== 'string' || parsed.access_token === '') throw new Error(`token_${res.status}`);
    const lifetimeMs = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in * 1000 : 3_600_000;
    const margin = Math.min(FCM_TOKEN_EXPIRY_MARGIN_MS, lifetimeMs / 2);
    this.#token = { value: parsed.access_token, expiresAt: this.#o.now() + lifetimeMs - margin };
    return parsed.access_token;
  }

  async send(target: PushTarget, signal: AbortSignal): Promise<PushOutcome> {
    if (target.kind !== 'fcm') return { result: 'failed', reason: 'wrong_kind' };
    let token: string;
    try {
      token = await this.accessToken(signal);
    } catch (e) {
      if (e instanceof TransientError) return { result: 'retry', reason: e.reason, retryAfterMs: e.retryAfterMs };
      return { result: 'failed', reason: e instanceof Error ? e.message : 'token' };
    }
    const message = {
      message: {
        token: target.registrationToken,
        data: FCM_DATA,
        android: { priority: 'HIGH', collapse_key: PUSH_COLLAPSE_KEY, ttl: `${PUSH_TTL_SECONDS}s` },
      },
    };
    let res;
    try {
      res = await httpsRequest(this.#sendUrl, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json; charset=utf-8' },
        body: JSON.stringify(message),
        agent: this.#o.agent,
        timeoutMs: PUSH_REQUEST_TIMEOUT_MS,
        signal,
      });
    } catch {
      return { result: 'retry', reason: 'network' };
    }
    if (res.status === 200) return { result: 'sent' };
    const errorCode = fcmErrorCode(res.body);
    if (errorCode === 'UNREGISTERED') return { result: 'gone' };
    if (res.status === 401) {
      // The access token was revoked or expired early: fetch a new one on the retry.
      this.#token = undefined;
      return { result: 'retry', reason: '401' };
    }
    if (res.status === 429 || res.status >= 500) return { result: 'retry', reason: `${res.status} ${errorCode}`, retryAfterMs: retryAfterMs(res.headers['retry-after'], this.#o.now()) };
    return { result: 'failed', reason: `${res.status} ${errorCode}` };
  }

  close(): void {
    this.#o.agent?.destroy();
  }
}

/** The FcmError code of an HTTP v1 error reply (error.details[].errorCode), else error.status. */
function fcmErrorCode(body: string): string {
  try {
    const e = (JSON.parse(body) as { error?: { status?: unknown; details?: unknown } }).error;
    const details = Array.isArray(e?.details) ? (e.details as { errorCode?: unknown }[]) : [];
    const code = details.map((d) => d.errorCode).find((c) => typeof c === 'string') ?? e?.status;
    return typeof code === 'string' && /^[A-Z_]{1,64}$/.test(code) ? code : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** One HTTPS/1.1 request to a push service (FCM, Google OAuth), bounded in time and response size. */
import { request } from 'node:https';
import type { Agent } from 'node:https';
import { PUSH_MAX_RESPONSE_BYTES } from './constants.js';

export interface HttpResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** At most PUSH_MAX_RESPONSE_BYTES of the body, as UTF-8. */
  readonly body: string;
}

export function httpsRequest(
  url: URL,
  init: { method: 'POST'; headers: Record<string, string>; body: string; agent?: Agent | undefined; timeoutMs: number; signal?: AbortSignal | undefined },
): Promise<HttpResponse> {
  if (url.protocol !== 'https:') return Promise.reject(new TypeError(`httpsRequest: ${url.protocol} is not https:`));
  return new Promise((resolve, reject) => {
    const body = Buffer.from(init.body);
    const req = request(
      url,
      { method: init.method, headers: { ...init.headers, 'content-length': String(body.length) }, ...(init.agent ? { agent: init.agent } : {}), timeout: init.timeoutMs, ...(init.signal ? { signal: init.signal } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          if (size < PUSH_MAX_RESPONSE_BYTES) chunks.push(c.subarray(0, PUSH_MAX_RESPONSE_BYTES - size));
          size += c.length;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('push service request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/** Retry-After (seconds or an HTTP date) in ms, if present and sane. */
export function retryAfterMs(value: string | string[] | undefined, now: number): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.trim() === '') return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

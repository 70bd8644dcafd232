/**
 * Compact JWS (RFC 7515) signing for the push services' provider tokens: ES256 for APNs (RFC 7518
 * §3.4: the raw r ‖ s signature, not DER) and RS256 for Google's OAuth JWT-bearer grant
 * (RFC 7523). node:crypto signs; the keys stay KeyObjects and are never serialised.
 */
import { sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

const b64url = (data: string | Uint8Array): string => Buffer.from(data).toString('base64url');

export function signJwt(alg: 'ES256' | 'RS256', key: KeyObject, header: Record<string, string>, claims: Record<string, string | number>): string {
  const input = `${b64url(JSON.stringify({ alg, ...header }))}.${b64url(JSON.stringify(claims))}`;
  const signature = alg === 'ES256' ? sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }) : sign('sha256', Buffer.from(input), key);
  return `${input}.${b64url(signature)}`;
}

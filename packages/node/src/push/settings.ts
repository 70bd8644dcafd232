/**
 * Parsers of the push settings in CONFIG_SCHEMA (config.ts). Each checks its own variable; which
 * combinations switch a service on is decided by setup.ts when the node starts.
 */
import { resolve } from 'node:path';
import { inspect } from 'node:util';

/** A secret setting: kept in a private field, printed as [redacted] by inspect, String and JSON. */
export class SecretSetting {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  get isSet(): boolean {
    return this.#value !== '';
  }
  toString(): string {
    return '[redacted]';
  }
  toJSON(): string {
    return '[redacted]';
  }
  [inspect.custom](): string {
    return 'SecretSetting [redacted]';
  }
}

const b64urlBytes = (raw: string, n: number, what: string): string => {
  const v = raw.trim();
  if (v === '') return '';
  if (!/^[A-Za-z0-9_-]+$/.test(v) || Buffer.from(v, 'base64url').length !== n) throw new RangeError(`must be the base64url (no padding) encoding of a ${n}-byte ${what}`);
  return v;
};

export const parseVapidPublicKey = (raw: string): string => {
  const v = b64urlBytes(raw, 65, 'uncompressed P-256 point');
  if (v !== '' && Buffer.from(v, 'base64url')[0] !== 0x04) throw new RangeError('must be an uncompressed P-256 point (first byte 0x04)');
  return v;
};

export const parseVapidPrivateKey = (raw: string): SecretSetting => new SecretSetting(b64urlBytes(raw, 32, 'P-256 private key'));

export const parseVapidSubject = (raw: string): string => {
  const v = raw.trim();
  if (v === '') return '';
  if (!/^mailto:\S+@\S+$/.test(v) && !/^https:\/\/\S+$/.test(v)) throw new RangeError('must be a mailto: address or an https: URL (RFC 8292 §2.1)');
  return v;
};

/** An optional file path, resolved against the working directory. */
export const parseOptionalPath = (raw: string): string => (raw.trim() === '' ? '' : resolve(raw.trim()));

/** Apple key and team ids: 10 upper-case letters or digits. */
export const parseAppleId = (raw: string): string => {
  const v = raw.trim();
  if (v !== '' && !/^[A-Z0-9]{10}$/.test(v)) throw new RangeError('must be 10 upper-case letters or digits');
  return v;
};

export const parseBundleId = (raw: string): string => {
  const v = raw.trim();
  if (v !== '' && !/^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/.test(v)) throw new RangeError('must be a reverse-DNS bundle id such as org.example.app');
  return v;
};

/** An https: base URL without query or fragment; returned without a trailing slash. */
export const parseHttpsUrl = (raw: string): string => {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new RangeError('must be a URL');
  }
  if (url.protocol !== 'https:' || url.search !== '' || url.hash !== '' || url.username !== '') throw new RangeError('must be an https: URL without query, fragment or credentials');
  return url.href.replace(/\/+$/, '');
};

/** Host patterns: `host` (exact), `*.suffix` (any subdomain of suffix), `*` (any host: no SSRF guard). */
export function parseHostPatterns(raw: string): readonly string[] {
  const out: string[] = [];
  for (const p of raw.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean)) {
    if (p !== '*' && !/^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(p)) throw new RangeError(`"${p}" is not a host name, *.domain or *`);
    out.push(p);
  }
  return out;
}

export function hostAllowed(patterns: readonly string[], host: string): boolean {
  const h = host.toLowerCase();
  return patterns.some((p) => p === '*' || p === h || (p.startsWith('*.') && h.endsWith(p.slice(1))));
}

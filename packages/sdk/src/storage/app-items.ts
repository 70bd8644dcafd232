/**
 * Argument rules and key order of the app-item area (AppStore, types.ts), shared by the adapters so
 * that all three accept, refuse and order exactly the same things.
 *
 * Order: keys are ordered by the bytes of their UTF-8 encoding. For well-formed strings that is
 * code-point order, which SQLite's BINARY collation gives directly; JavaScript's `<` compares UTF-16
 * code units instead (U+FFFD sorts after U+1F600 there), so the memory adapter uses compareKeys()
 * and IndexedDB stores keys as binary (UTF-8) keys.
 */
import { APP_KEY_MAX_BYTES, APP_TABLE_MAX_BYTES, APP_VALUE_MAX_BYTES } from '../constants.js';
import { StorageError, StorageErrorCode } from './errors.js';
import type { ListItemsOptions } from './types.js';

const encoder = new TextEncoder();
/** A lone surrogate: such a string has no UTF-8 form (TextEncoder would silently turn it into U+FFFD, merging distinct keys). */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export const utf8 = (s: string): Uint8Array<ArrayBuffer> => encoder.encode(s);

function invalid(operation: string, message: string): StorageError {
  return new StorageError(StorageErrorCode.INVALID_ARGUMENT, operation, message);
}

function checkName(s: unknown, what: string, max: number, allowEmpty: boolean, operation: string): string {
  if (typeof s !== 'string') throw invalid(operation, `${what} must be a string`);
  if (s === '' && !allowEmpty) throw invalid(operation, `${what} must not be empty`);
  // Each UTF-16 unit encodes to at least one byte: a string this long cannot fit, whatever it holds.
  if (s.length > max || utf8(s).length > max) throw invalid(operation, `${what} is longer than ${max} UTF-8 bytes`);
  if (LONE_SURROGATE.test(s)) throw invalid(operation, `${what} is not well-formed Unicode (lone surrogate)`);
  return s;
}

export function checkTable(table: unknown, operation: string): string {
  return checkName(table, 'table name', APP_TABLE_MAX_BYTES, false, operation);
}

export function checkKey(key: unknown, operation: string): string {
  return checkName(key, 'key', APP_KEY_MAX_BYTES, false, operation);
}

export function checkValue(value: unknown, operation: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalid(operation, 'value must be a Uint8Array');
  if (value.length > APP_VALUE_MAX_BYTES) {
    throw new StorageError(StorageErrorCode.LIMIT, operation, `value is ${value.length} bytes, more than the ${APP_VALUE_MAX_BYTES} allowed`);
  }
  return value;
}

/** The normalised options of listItems(): `limit` undefined means all. */
export function checkListOptions(options: unknown, operation: string): { prefix: string; limit: number | undefined; after: string | undefined } {
  if (options === undefined) return { prefix: '', limit: undefined, after: undefined };
  if (typeof options !== 'object' || options === null) throw invalid(operation, 'options must be an object');
  const { prefix, limit, after } = options as ListItemsOptions;
  const p = prefix === undefined ? '' : checkName(prefix, 'prefix', APP_KEY_MAX_BYTES, true, operation);
  if (limit !== undefined && !(Number.isSafeInteger(limit) && limit >= 0)) throw invalid(operation, 'limit must be a non-negative integer');
  const a = after === undefined ? undefined : checkName(after, 'after', APP_KEY_MAX_BYTES, true, operation);
  return { prefix: p, limit, after: a };
}

/**
 * The lower bound of a listItems() scan: `after` (exclusive) when it lies at or beyond the prefix,
 * else the prefix itself (inclusive).
 */
export function lowerBound(prefix: string, after: string | undefined): { key: string; exclusive: boolean } {
  return after !== undefined && compareKeys(after, prefix) >= 0 ? { key: after, exclusive: true } : { key: prefix, exclusive: false };
}

/**
 * Compares two well-formed strings by code point (= UTF-8 byte order). UTF-16 order differs only
 * where a surrogate (U+D800–DFFF, half of a supplementary character) meets U+E000–FFFF: moving the
 * surrogates above that range fixes it without decoding.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return fixup(x) - fixup(y);
  }
  return a.length - b.length;
}
const fixup = (u: number): number => (u >= 0xd800 && u <= 0xdfff ? u + 0x2000 : u >= 0xe000 ? u - 0x800 : u);

/**
 * The least string greater than every string that starts with `prefix` (code-point order), or
 * undefined if there is none (empty prefix, or one made only of U+10FFFF). Range scans use it as an
 * exclusive upper bound.
 */
export function prefixUpperBound(prefix: string): string | undefined {
  const cps = [...prefix].map((c) => c.codePointAt(0)!);
  while (cps.length > 0) {
    const last = cps.pop()!;
    if (last < 0x10ffff) {
      cps.push(last === 0xd7ff ? 0xe000 : last + 1); // surrogate code points have no UTF-8 form
      return String.fromCodePoint(...cps);
    }
  }
  return undefined;
}

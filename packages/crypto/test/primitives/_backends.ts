import * as nodeCrypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { CryptoError } from '../../src/errors.js';
import type { CryptoBackend } from '../../src/primitives/backend.js';
import { nobleBackend } from '../../src/primitives/noble.js';
import { _nodeBackendWithOqs } from '../../src/primitives/index.js';
import { createNodeBackend } from '../../src/primitives/node.js';

export const nodeBackend: CryptoBackend = createNodeBackend(nodeCrypto);

/**
 * node:crypto plus liboqs's WebAssembly ML-KEM-768 (what platformBackend() picks on Node). The
 * package is a dependency, so it must load here: a missing or rejected binary fails the tests
 * rather than silently testing nothing.
 */
const oqs = _nodeBackendWithOqs(nodeCrypto);
if (!oqs) throw new Error('@oqs/liboqs-js ML-KEM-768 did not load or failed its self-test');
export const nodeOqsBackend: CryptoBackend = oqs;

/** Every backend under test; KATs run against each with describe.each. */
export const BACKENDS: readonly CryptoBackend[] = [nobleBackend, nodeBackend, nodeOqsBackend];

/** MW_DEEP=1 turns on the long property runs. */
export const DEEP = process.env['MW_DEEP'] === '1';
/** fast-check seed; fast-check prints it (and the counterexample path) on failure. */
export const FC_SEED = Number(process.env['MW_FC_SEED'] ?? 0x7e57);
export const runs = (normal: number, deep = normal * 50): number => (DEEP ? deep : normal);

export const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));
export const toHex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** Reads a committed vector file from test/vectors/ (never fetched at test time). */
export function loadVectors<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(`../vectors/${name}`, import.meta.url), 'utf8')) as T;
}

/**
 * What a call did, in a form two backends can be compared by: the output bytes, or the error's
 * class, code and message (with the backend's own operation prefix `noble.`/`node.` removed).
 */
export type Outcome = { ok: string } | { error: string; code?: string; message: string };

export function outcome(f: () => Uint8Array | boolean | { [k: string]: Uint8Array }): Outcome {
  try {
    const r = f();
    if (r instanceof Uint8Array) return { ok: toHex(r) };
    if (typeof r === 'boolean') return { ok: String(r) };
    return { ok: Object.entries(r).map(([k, v]) => `${k}=${toHex(v)}`).join(',') };
  } catch (e) {
    if (!(e instanceof Error)) throw e;
    const message = e.message.replace(/^(noble|node)\./, '');
    return e instanceof CryptoError ? { error: e.name, code: e.code, message } : { error: e.constructor.name, message };
  }
}

/** Runs `f` against both backends and returns the two outcomes: [noble, node]. */
export function both(f: (b: CryptoBackend) => Uint8Array | boolean | { [k: string]: Uint8Array }): [Outcome, Outcome] {
  return [outcome(() => f(nobleBackend)), outcome(() => f(nodeBackend))];
}

/** Runs `f` against every backend; returns the outcomes in BACKENDS order. */
export function all(f: (b: CryptoBackend) => Uint8Array | boolean | { [k: string]: Uint8Array }): Outcome[] {
  return BACKENDS.map((b) => outcome(() => f(b)));
}

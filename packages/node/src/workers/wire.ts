/**
 * The messages between the primary process of a multi-process SQLite node and its workers
 * (docs/architecture.md §Process model). They travel over node:cluster's IPC channel with
 * `serialization: 'advanced'` (structured clone: Uint8Arrays are copied as bytes, no base64).
 *
 * Bus events are batched: a worker sends at most one `ev` message per event-loop turn, and the
 * primary forwards at most one per destination worker per incoming batch.
 */
import type { StoredEnvelope } from '../store/node-store.js';

/** One bus event. `m`ail and `s`ignal go to the worker(s) watching the mailbox; `g`aps to all. */
export type BusEvent =
  | readonly ['m', string, readonly StoredEnvelope[] | undefined]
  | readonly ['s', string, Uint8Array]
  | readonly ['l', string, string]
  | readonly ['d', string]
  | readonly ['g']
  /** Watch-table changes: worker → primary without the worker id; primary → workers with it. */
  | readonly ['w', string, number?]
  | readonly ['u', string, number?];

export type WorkerRequest =
  | { readonly op: 'challenge'; readonly nonce: Uint8Array; readonly issuedAt: number; readonly expiresAt: number }
  | { readonly op: 'wake'; readonly key: string }
  | { readonly op: 'call'; readonly topic: string; readonly data: Uint8Array; readonly timeoutMs: number }
  | { readonly op: 'serve'; readonly topic: string }
  | { readonly op: 'unserve'; readonly topic: string }
  | { readonly op: 'metrics' };

export type PrimaryRequest = { readonly op: 'rpc'; readonly topic: string; readonly data: Uint8Array } | { readonly op: 'metrics-json' };

export type IpcMessage =
  | { readonly mw: 'ev'; readonly ev: readonly BusEvent[] }
  | { readonly mw: 'req'; readonly id: number; readonly req: WorkerRequest | PrimaryRequest }
  | { readonly mw: 'res'; readonly id: number; readonly value: unknown; readonly error?: string }
  /** Primary → workers: a worker died; read the store for every live connection (its events may be lost). */
  | { readonly mw: 'resync' }
  /** Primary → a new worker: the watch table of the others. */
  | { readonly mw: 'watched'; readonly entries: readonly (readonly [string, number])[] };

export const isIpcMessage = (m: unknown): m is IpcMessage => typeof m === 'object' && m !== null && typeof (m as { mw?: unknown }).mw === 'string';

/** What a worker learns at fork (environment variables set by the primary). */
export const WORKER_ENV = {
  /** The worker's index, 0…WORKERS-1 (kept by its replacement after a crash). Index 0 runs the sweeps and backups. */
  index: 'MW_WORKER_INDEX',
} as const;

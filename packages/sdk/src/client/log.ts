/**
 * The logger hook (MeshWhisperOptions.logger). The client recovers from many failures by itself
 * (the outbox retries, a receipt is best effort, a background key check tries again later); those
 * used to vanish in `.catch(() => undefined)`. Now each one is reported here, with a stable event
 * name, so an app can see why something is slow or missing.
 *
 * Never a secret: entries carry an event name, a human message and, for errors, only the error's
 * code and message (SDK, crypto and node errors never contain key material or plaintext).
 */
import { CryptoError } from '@meshwhisper/crypto';
import { SdkError } from './errors.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LogEntry {
  readonly level: LogLevel;
  /** Stable, dotted name of what happened, e.g. `outbox.retry-failed` (docs/api.md §Logging). */
  readonly event: string;
  readonly message: string;
  /** The error's stable code (`MW_…`) and message, when the entry reports one. */
  readonly error?: { readonly code: string; readonly nodeCode?: string; readonly message: string };
}

/** An app's logger: called synchronously; whatever it throws is ignored. */
export type Logger = (entry: LogEntry) => void;

/** What modules call: a bound, never-throwing logger. */
export interface Log {
  debug(event: string, message: string): void;
  warn(event: string, message: string, error?: unknown): void;
  error(event: string, message: string, error?: unknown): void;
}

function describe(e: unknown): LogEntry['error'] {
  if (e instanceof SdkError) return { code: e.code, ...(e.nodeCode ? { nodeCode: e.nodeCode } : {}), message: e.message };
  if (e instanceof CryptoError) return { code: e.code, message: e.message };
  if (e instanceof Error) return { code: 'MW_SDK_INTERNAL', message: e.message };
  return { code: 'MW_SDK_INTERNAL', message: String(e) };
}

export function makeLog(logger: Logger | undefined): Log {
  const write = (level: LogLevel, event: string, message: string, error?: unknown): void => {
    if (!logger) return;
    try {
      logger({ level, event, message, ...(error !== undefined ? { error: describe(error) } : {}) });
    } catch {
      // A logger's own failure must never break delivery.
    }
  };
  return {
    debug: (event, message) => write('debug', event, message),
    warn: (event, message, error) => write('warn', event, message, error),
    error: (event, message, error) => write('error', event, message, error),
  };
}

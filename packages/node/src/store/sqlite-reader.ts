/**
 * The main-thread side of SqliteNodeStore's reader thread (sqlite-reader.worker.js): `fetch` of
 * stored envelopes runs on the thread's own connection, off the event loop, and comes back as one
 * transferred buffer; the envelopes returned are views into it (no copy per envelope here). The
 * thread keeps the process alive only while a call is outstanding. If it dies, every call rejects
 * with code READER_DEAD and the store reads on its main connection instead (as before the thread).
 */
import { Worker } from 'node:worker_threads';
import type { StoredEnvelope } from './node-store.js';

interface Reply {
  readonly n: number;
  readonly ok: boolean;
  readonly buf?: ArrayBuffer;
  readonly error?: { code: string | undefined; message: string };
}

export class SqliteReader {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  #next = 1;
  #dead: Error | undefined;
  #closing = false;

  constructor(options: { readonly file: string; readonly schemaVersion: number; readonly onDead?: (e: Error) => void }) {
    // src/ (vitest, tsx) and dist/ both hold the worker as plain JavaScript (allowJs copies it).
    this.#worker = new Worker(new URL('./sqlite-reader.worker.js', import.meta.url), {
      workerData: { file: options.file, schemaVersion: options.schemaVersion },
      execArgv: process.execArgv.filter((a) => a.startsWith('--cpu-prof')),
    });
    this.#worker.unref();
    this.#worker.on('message', (r: Reply) => {
      const p = this.#pending.get(r.n);
      if (!p) return;
      this.#pending.delete(r.n);
      if (this.#pending.size === 0) this.#worker.unref();
      if (r.ok) p.resolve(r);
      else p.reject(Object.assign(new Error(r.error?.message ?? 'store reader failed'), { code: r.error?.code }));
    });
    const fail = (e: Error): void => {
      const first = this.#dead === undefined;
      this.#dead ??= Object.assign(new Error('store reader thread is not running'), { code: 'READER_DEAD', cause: e });
      for (const p of this.#pending.values()) p.reject(this.#dead);
      this.#pending.clear();
      if (first && !this.#closing) options.onDead?.(e);
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => fail(new Error(`store reader thread exited (code ${code})`)));
  }

  /** False once the thread died or was closed. */
  get alive(): boolean {
    return this.#dead === undefined;
  }

  #call(msg: Record<string, unknown>): Promise<Reply> {
    if (this.#dead) return Promise.reject(this.#dead);
    const n = this.#next++;
    return new Promise<Reply>((resolve, reject) => {
      if (this.#pending.size === 0) this.#worker.ref();
      this.#pending.set(n, { resolve, reject });
      this.#worker.postMessage({ ...msg, n });
    });
  }

  /** Up to `limit` envelopes after `afterSeq`, oldest first, stopping before `maxBytes` of payload (at least one). */
  async fetch(mailbox: Uint8Array, afterSeq: number, limit: number, maxBytes: number): Promise<StoredEnvelope[]> {
    const buf = (await this.#call({ t: 'f', mailbox, afterSeq, limit, maxBytes })).buf!;
    const u8 = new Uint8Array(buf);
    const dv = new DataView(buf);
    const n = dv.getUint32(0, true);
    const out = new Array<StoredEnvelope>(n);
    let o = 4;
    for (let i = 0; i < n; i++) {
      const seq = dv.getFloat64(o, true);
      const receivedAt = dv.getFloat64(o + 8, true);
      const idLength = dv.getUint16(o + 16, true);
      const payloadLength = dv.getUint32(o + 18, true);
      o += 22;
      const id = u8.subarray(o, o + idLength);
      o += idLength;
      out[i] = { seq, id, payload: u8.subarray(o, o + payloadLength), receivedAt };
      o += payloadLength;
    }
    return out;
  }

  /** TEST ONLY: the thread's own code throws outside any call (a stand-in for a bug in it). */
  crashForTest(): void {
    this.#worker.postMessage({ t: 'crash' });
  }

  async close(): Promise<void> {
    this.#closing = true;
    if (!this.#dead) {
      try {
        await this.#call({ t: 'close' });
      } catch {
        /* already gone */
      }
      this.#dead = new Error('store is closed');
    }
    await this.#worker.terminate();
  }
}

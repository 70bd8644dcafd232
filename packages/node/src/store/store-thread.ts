/**
 * What SqliteWriter and SqliteReader share: one worker thread (plain JavaScript, with its own
 * SQLite connection) called by numbered messages. Each call is a pending promise settled by the
 * thread's reply of the same number; the thread keeps the process alive only while a call is
 * outstanding; if it dies (an uncaught error, or it exits) every pending and later call rejects
 * with one error of code `deadCode`, and `onDead` hears of it once (not when close() stopped it).
 */
import { Worker } from 'node:worker_threads';

/** The fields every reply of a store thread carries. */
export interface ThreadReply {
  /** The call's number; 0 and negative numbers are the thread's own notices (see `notice`). */
  readonly n: number;
  readonly ok: boolean;
  readonly error?: { code: string | undefined; message: string };
}

export interface StoreThreadOptions {
  /** The thread's script (next to the subclass's module: src/ and dist/ both hold it). */
  readonly script: URL;
  readonly workerData: unknown;
  /** For errors: "store writer", "store reader". */
  readonly name: string;
  /** The code of the error every call rejects with once the thread is gone (WRITER_DEAD, READER_DEAD). */
  readonly deadCode: string;
  /** The thread died other than by close(). */
  readonly onDead?: ((e: Error) => void) | undefined;
}

export abstract class StoreThread<R extends ThreadReply> {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (r: R) => void; reject: (e: Error) => void }>();
  readonly #name: string;
  #next = 1;
  #dead: Error | undefined;
  #closing = false;

  constructor(options: StoreThreadOptions) {
    this.#name = options.name;
    this.#worker = new Worker(options.script, {
      workerData: options.workerData,
      // No loader hooks (tsx) in the thread: it is plain JavaScript and starts faster without them.
      // A CPU profile of the node (bench/node PROFILE=1) profiles the thread too.
      execArgv: process.execArgv.filter((a) => a.startsWith('--cpu-prof')),
    });
    this.#worker.unref();
    this.#worker.on('message', (r: R) => {
      if (this.notice(r)) return;
      const p = this.#pending.get(r.n);
      if (!p) return;
      this.#pending.delete(r.n);
      if (this.#pending.size === 0) this.#worker.unref();
      this.answered(r);
      if (r.ok) p.resolve(r);
      else p.reject(Object.assign(new Error(r.error?.message ?? `${this.#name} failed`), { code: r.error?.code }));
    });
    const fail = (e: Error): void => {
      const first = this.#dead === undefined;
      this.#dead ??= Object.assign(new Error(`${this.#name} thread is not running`), { code: options.deadCode, cause: e });
      for (const p of this.#pending.values()) p.reject(this.#dead);
      this.#pending.clear();
      if (first && !this.#closing) options.onDead?.(e);
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => fail(new Error(`${this.#name} thread exited (code ${code})`)));
  }

  /** A reply that is none of the calls' (the thread's own notices): handled here, true. Runs first, for every reply. */
  protected notice(_r: R): boolean {
    return false;
  }

  /** Runs for a call's reply before its promise settles. */
  protected answered(_r: R): void {}

  /** False once the thread died or was closed. */
  get alive(): boolean {
    return this.#dead === undefined;
  }

  /** One call: the message goes with its number; resolves with the reply (ok), rejects with its error. */
  protected call(msg: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<R> {
    if (this.#dead) return Promise.reject(this.#dead);
    const n = this.#next++;
    return new Promise<R>((resolve, reject) => {
      if (this.#pending.size === 0) this.#worker.ref();
      this.#pending.set(n, { resolve, reject });
      this.#worker.postMessage({ ...msg, n }, transfer);
    });
  }

  /** A message that is not a call (no reply is awaited); dropped once the thread is gone. */
  protected post(msg: Record<string, unknown>): void {
    if (!this.#dead) this.#worker.postMessage(msg);
  }

  /**
   * Asks the thread to finish (`{ t: 'close' }`: it commits or answers what it holds — the writer
   * also checkpoints — then closes its connection) and ends it.
   */
  async close(): Promise<void> {
    this.#closing = true;
    if (!this.#dead) {
      try {
        await this.call({ t: 'close' });
      } catch {
        /* already gone */
      }
      this.#dead = new Error('store is closed');
    }
    await this.#worker.terminate();
  }
}

/**
 * The client's typed event hub: on / once / iterate for the app, emit for the modules. A listener's
 * exception never reaches the module that emitted (it is logged): an app bug must not break delivery.
 */
import { SdkError, SdkErrorCode } from './errors.js';
import type { Log } from './log.js';
import type { MeshWhisperEvents } from './types.js';

export type Listener<T> = (value: T) => void;
export type Emit = <K extends keyof MeshWhisperEvents>(event: K, value: MeshWhisperEvents[K]) => void;

export class EventHub {
  readonly #listeners = new Map<keyof MeshWhisperEvents, Set<Listener<never>>>();

  constructor(
    private readonly log: Log,
    /** Whether the client has closed (iterate() then ends at once). */
    private readonly isClosed: () => boolean,
  ) {}

  on<K extends keyof MeshWhisperEvents>(event: K, listener: Listener<MeshWhisperEvents[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  readonly emit: Emit = (event, value) => {
    for (const l of this.#listeners.get(event) ?? []) {
      try {
        (l as Listener<typeof value>)(value);
      } catch (e) {
        this.log.warn('listener.threw', `a '${event}' listener threw`, e);
      }
    }
  };

  once<K extends keyof MeshWhisperEvents>(event: K, predicate: (v: MeshWhisperEvents[K]) => boolean = () => true, timeoutMs = 10_000): Promise<MeshWhisperEvents[K]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new SdkError(SdkErrorCode.PROTOCOL, `timed out waiting for ${event}`));
      }, timeoutMs);
      const off = this.on(event, (v) => {
        if (!predicate(v)) return;
        clearTimeout(timer);
        off();
        resolve(v);
      });
    });
  }

  iterate<K extends keyof MeshWhisperEvents>(event: K, options: { signal?: AbortSignal } = {}): AsyncIterableIterator<MeshWhisperEvents[K]> {
    const queue: MeshWhisperEvents[K][] = [];
    let wake: (() => void) | undefined;
    let done = this.isClosed() || options.signal?.aborted === true;
    const stop = () => {
      done = true;
      off();
      offClose();
      options.signal?.removeEventListener('abort', stop);
      wake?.();
    };
    const off = this.on(event, (v) => {
      queue.push(v);
      wake?.();
    });
    const offClose = this.on('connection', (s) => {
      if (s === 'closed') stop();
    });
    options.signal?.addEventListener('abort', stop, { once: true });
    if (done) stop();
    const iterator: AsyncIterableIterator<MeshWhisperEvents[K]> = {
      next: async () => {
        while (queue.length === 0 && !done) await new Promise<void>((r) => (wake = r));
        wake = undefined;
        if (queue.length > 0) return { value: queue.shift()!, done: false };
        return { value: undefined, done: true };
      },
      return: async () => {
        stop();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }
}

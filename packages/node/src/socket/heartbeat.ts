/**
 * WebSocket heartbeat, in slices (docs/spec/node-protocol.md §Heartbeat).
 *
 * Every connection is pinged once per interval; one that has not answered its previous ping when
 * its next one is due is dead (NAT timeout, vanished phone) and is terminated, freeing its slot
 * (its unacked envelopes stay stored).
 *
 * The connections are spread over groups (slices), and one slice is visited every HEARTBEAT_TICK_MS,
 * so each tick writes to 1/(interval ÷ tick) of the sockets: 1/300 with the default 30 s. A ping
 * is one socket write (a syscall: measured 8.9–12.4 µs per ping on loopback with 2,000 and 9,000
 * sockets, bench/node/heartbeat.ts): visiting every socket in one turn, as the node did before,
 * stopped its event loop for 16–39 ms with 2,000 connections and 81–115 ms with 9,000 every
 * interval (about a second with 100,000), and the pongs came back in one burst as well. Now a tick
 * pings ~7 of 2,000 sockets (0.2 ms), ~330 of 100,000 (~3–4 ms).
 */

/** What the heartbeat needs of a socket (ws's WebSocket). */
export interface Pingable {
  ping(): void;
  terminate(): void;
  /**
   * The node paused reading this socket (ws's isPaused: send backpressure, mailbox/send.ts): its
   * pong cannot be read, so it is neither pinged nor judged until it is resumed.
   */
  readonly isPaused?: boolean;
}

/** One slice of the connections is visited this often (ms). */
export const HEARTBEAT_TICK_MS = 100;

export class Heartbeat<S extends Pingable> {
  readonly #slices: Set<S>[];
  readonly #sliceOf = new Map<S, Set<S>>();
  /** Sockets that answered (or are new) since their last ping. */
  readonly #answered = new WeakSet<S>();
  #next = 0;
  #tick = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  /** `slices`: default one per HEARTBEAT_TICK_MS of the interval (300 for 30 s). */
  constructor(
    readonly intervalMs: number,
    readonly slices = Math.max(1, Math.round(intervalMs / HEARTBEAT_TICK_MS)),
  ) {
    if (!Number.isInteger(slices) || slices < 1) throw new RangeError('slices must be a positive integer');
    if (!(intervalMs >= slices)) throw new RangeError('intervalMs must be at least one millisecond per slice');
    this.#slices = Array.from({ length: slices }, () => new Set<S>());
  }

  /** Visits one slice every intervalMs ÷ slices (an unref'd timer: it never keeps the process alive). */
  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.tick(), this.intervalMs / this.slices);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** A new connection: counted as alive until its first ping goes unanswered for a whole interval. */
  add(s: S): void {
    if (this.#sliceOf.has(s)) return;
    const slice = this.#slices[this.#next]!;
    this.#next = (this.#next + 1) % this.slices;
    slice.add(s);
    this.#sliceOf.set(s, slice);
    this.#answered.add(s);
  }

  /** The socket answered a ping (a pong). */
  answered(s: S): void {
    this.#answered.add(s);
  }

  /** The socket closed. */
  remove(s: S): void {
    this.#sliceOf.get(s)?.delete(s);
    this.#sliceOf.delete(s);
  }

  /** Sockets tracked (a gauge for tests and metrics). */
  get size(): number {
    return this.#sliceOf.size;
  }

  /** Visits the next slice: terminates the silent, pings the rest. Returns how many of each. */
  tick(): { pinged: number; terminated: number } {
    const slice = this.#slices[this.#tick]!;
    this.#tick = (this.#tick + 1) % this.slices;
    let pinged = 0;
    let terminated = 0;
    for (const s of slice) {
      if (s.isPaused === true) {
        this.#answered.add(s); // a whole interval to answer once it reads again
        continue;
      }
      if (!this.#answered.has(s)) {
        this.remove(s);
        s.terminate();
        terminated++;
        continue;
      }
      this.#answered.delete(s);
      s.ping();
      pinged++;
    }
    return { pinged, terminated };
  }
}

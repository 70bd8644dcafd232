/**
 * Disappearing messages: each conversation's timer and its version (content.proto
 * `expire_seconds`, `expire_timer_version`), the rule that merges a peer's timer with ours, and the
 * sweeper that deletes what is due from the history and the outbox.
 */
import type { CryptoContext } from '@meshwhisper/crypto';
import { fromHex, toHex } from '@meshwhisper/crypto';
import type { AppStore, ProtocolStorage } from '../storage/types.js';
import { asStorageTx } from '../storage/types.js';
import { MAX_DISAPPEARING_SECONDS } from '../constants.js';
import type { Emit } from './events.js';
import { nextExpiry, sweepExpired } from './history.js';
import type { Log } from './log.js';
import { failIfQueued } from './message-states.js';
import { Table } from './tables.js';
import type { MessageRef } from './types.js';

export interface TimerRecord {
  readonly seconds: number;
  /** 0 = never set. */
  readonly version: number;
}

export class Timers {
  #sweepTimer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(
    private readonly deps: { readonly ctx: CryptoContext; readonly storage: ProtocolStorage; readonly emit: Emit; readonly log: Log },
  ) {}

  /** The conversation's timer and its version. Record: seconds ‖ version, 4-byte big-endian each. */
  async record(store: AppStore, peer: Uint8Array): Promise<TimerRecord> {
    const b = await store.getItem(Table.Timer, toHex(peer));
    if (!b || b.length !== 8) return { seconds: 0, version: 0 };
    const v = new DataView(b.buffer, b.byteOffset, 8);
    return { seconds: v.getUint32(0), version: v.getUint32(4) };
  }

  async set(store: AppStore, peer: Uint8Array, timer: TimerRecord): Promise<void> {
    const b = new Uint8Array(8);
    const v = new DataView(b.buffer);
    v.setUint32(0, timer.seconds);
    v.setUint32(4, timer.version);
    await store.setItem(Table.Timer, toHex(peer), b);
  }

  /**
   * Merges the timer a received message carries. A higher version wins; a message that crossed a
   * change in flight (lower version) cannot set the timer back. Equal versions, different values
   * (both changed it at once): the shorter timer wins, 0 (off) counting as the longest — both sides
   * agree. Returns the new seconds if they changed.
   */
  async merge(stx: AppStore, peer: Uint8Array, incoming: TimerRecord): Promise<number | undefined> {
    const { seconds, version } = incoming;
    const cur = await this.record(stx, peer);
    const rank = (x: number) => (x === 0 ? Infinity : x);
    const wins = version > cur.version || (version === cur.version && rank(seconds) < rank(cur.seconds));
    if (seconds <= MAX_DISAPPEARING_SECONDS && wins && (seconds !== cur.seconds || version !== cur.version)) {
      await this.set(stx, peer, incoming);
      if (seconds !== cur.seconds) return seconds;
    }
    return undefined;
  }

  /** Deletes what is due, then sets a timer for the next expiry. */
  async sweep(): Promise<void> {
    if (this.#stopped) return;
    const { storage, ctx, emit } = this.deps;
    const removed = await storage.transaction(async (tx) => {
      const stx = asStorageTx(tx);
      const gone = await sweepExpired(stx, ctx.now());
      // A disappearing message still waiting in the outbox disappears too: it is never sent.
      for (const g of gone) {
        if (!g.outgoing) continue;
        for (const { key } of await stx.listItems(Table.Outbox, { prefix: `${g.id}:` })) await stx.deleteItem(Table.Outbox, key);
      }
      return gone;
    });
    const byPeer = new Map<string, MessageRef[]>();
    for (const g of removed) {
      if (g.outgoing) await storage.transaction((tx) => failIfQueued(asStorageTx(tx), g.id, 'it disappeared (disappearing-message timer) before the node accepted it'));
      const list = byPeer.get(toHex(g.peer)) ?? [];
      list.push({ author: g.author, id: g.id });
      byPeer.set(toHex(g.peer), list);
    }
    for (const [peer, messages] of byPeer) emit('expired', { peer: fromHex(peer), messages });
    this.schedule();
  }

  /** Arms the sweeper for the earliest pending expiry. */
  schedule(): void {
    if (this.#stopped) return;
    nextExpiry(this.deps.storage).then(
      (at) => {
        if (this.#sweepTimer) clearTimeout(this.#sweepTimer);
        this.#sweepTimer = undefined;
        if (at === undefined || this.#stopped) return;
        const delay = Math.min(Math.max(0, at - this.deps.ctx.now()), 2 ** 31 - 1);
        this.#sweepTimer = setTimeout(() => {
          this.#sweepTimer = undefined;
          this.sweep().catch((e) => this.deps.log.warn('timers.sweep-failed', 'deleting disappeared messages failed; retried at the next schedule', e));
        }, delay);
        (this.#sweepTimer as { unref?: () => void }).unref?.();
      },
      (e) => this.deps.log.warn('timers.schedule-failed', 'could not read the next expiry', e),
    );
  }

  stop(): void {
    this.#stopped = true;
    if (this.#sweepTimer) clearTimeout(this.#sweepTimer);
  }
}

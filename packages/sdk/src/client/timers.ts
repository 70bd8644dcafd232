/**
 * Disappearing messages: each conversation's timer and its version (content.proto
 * `expire_seconds`, `expire_timer_version`), the rule that merges a peer's timer with ours, and the
 * sweeper that deletes what is due from the history and the outbox.
 */
import type { CryptoContext } from '@meshwhisper/crypto';
import { StoredTimerSchema, create, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { AppStore, ProtocolStorage } from '../storage/types.js';
import { asStorageTx } from '../storage/types.js';
import { MAX_DISAPPEARING_SECONDS } from '../constants.js';
import type { ConversationId } from './conversation.js';
import { conversationKey } from './conversation.js';
import { SdkError, SdkErrorCode } from './errors.js';
import type { Emit } from './events.js';
import { nextExpiry, sweepExpired } from './history.js';
import type { Log } from './log.js';
import { failIfQueued } from './message-states.js';
import { Table } from './tables.js';
import type { MessageRef } from './types.js';

export const TIMER_RECORD_VERSION = 1;

export function encodeTimer(timer: TimerRecord): Uint8Array {
  return toBinary(StoredTimerSchema, create(StoredTimerSchema, { version: TIMER_RECORD_VERSION, seconds: timer.seconds, timerVersion: timer.version }));
}

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

  /** The conversation's timer and its version (a StoredTimer record per conversation key). */
  async record(store: AppStore, conversation: ConversationId): Promise<TimerRecord> {
    const b = await store.getItem(Table.Timer, conversationKey(conversation));
    if (!b) return { seconds: 0, version: 0 };
    let r;
    try {
      r = fromBinary(StoredTimerSchema, b);
    } catch (e) {
      throw new SdkError(SdkErrorCode.PROTOCOL, 'a stored timer record cannot be decoded', undefined, { cause: e });
    }
    if (r.version > TIMER_RECORD_VERSION) throw new SdkError(SdkErrorCode.UNSUPPORTED_VERSION, `timer record version ${r.version} was written by a newer SDK: update the app`);
    return { seconds: r.seconds, version: r.timerVersion };
  }

  async set(store: AppStore, conversation: ConversationId, timer: TimerRecord): Promise<void> {
    await store.setItem(Table.Timer, conversationKey(conversation), encodeTimer(timer));
  }

  /**
   * Merges the timer a received message carries. A higher version wins; a message that crossed a
   * change in flight (lower version) cannot set the timer back. Equal versions, different values
   * (both changed it at once): the shorter timer wins, 0 (off) counting as the longest — both sides
   * agree. Returns the new seconds if they changed.
   */
  async merge(stx: AppStore, conversation: ConversationId, incoming: TimerRecord): Promise<number | undefined> {
    const { seconds, version } = incoming;
    const cur = await this.record(stx, conversation);
    const rank = (x: number) => (x === 0 ? Infinity : x);
    const wins = version > cur.version || (version === cur.version && rank(seconds) < rank(cur.seconds));
    if (seconds <= MAX_DISAPPEARING_SECONDS && wins && (seconds !== cur.seconds || version !== cur.version)) {
      await this.set(stx, conversation, incoming);
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
    const byConversation = new Map<string, { conversation: ConversationId; messages: MessageRef[] }>();
    for (const g of removed) {
      if (g.outgoing) {
        const failed = await storage.transaction((tx) => failIfQueued(asStorageTx(tx), g.id, 'it disappeared (disappearing-message timer) before the node accepted it'));
        if (failed) emit('messageState', failed);
      }
      const key = conversationKey(g.conversation);
      const entry = byConversation.get(key) ?? { conversation: g.conversation, messages: [] };
      entry.messages.push({ author: g.author, id: g.id });
      byConversation.set(key, entry);
    }
    for (const { conversation, messages } of byConversation.values()) {
      emit('expired', { conversation, ...(conversation.kind === 'direct' ? { peer: conversation.peer } : {}), messages });
    }
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

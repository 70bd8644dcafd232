/**
 * No silent loss (docs/api.md §Events `gap`): the node's gap notices (envelopes that expired or
 * were evicted before this device fetched them — the node cannot say from whom: sealed sender), and
 * gaps the sessions reveal, which name the conversation:
 *
 * - A message that jumps over earlier ones of the same peer device (skipped keys) while a node gap
 *   is being delivered (between the notice and the end of the backlog): the node's mailbox is FIFO,
 *   so what was jumped over is what the node dropped.
 * - Skipped keys that expired or were evicted (crypto session layer): those messages can no
 *   longer be read, whenever they come.
 */
import type { ConversationId } from './conversation.js';
import type { Emit } from './events.js';

export class Gaps {
  /** A node gap notice arrived and its backlog is still being delivered. */
  #nodeGap = false;

  constructor(private readonly emit: Emit) {}

  /** The node's notice (at login, or when its sweeper dropped more). */
  node(info: { expired: number; evicted: number }): void {
    this.#nodeGap = info.expired + info.evicted > 0;
    this.emit('gap', { source: 'node', expired: info.expired, evicted: info.evicted, missing: info.expired + info.evicted });
  }

  /** The backlog is delivered: later jumps are not attributed to the node's notice. */
  drained(): void {
    this.#nodeGap = false;
  }

  /** What one received message revealed about its conversation. */
  session(conversation: ConversationId, keys: { skipped: number; lost: number }): void {
    const missing = keys.lost + (this.#nodeGap ? keys.skipped : 0);
    if (missing > 0) this.emit('gap', { source: 'session', conversation, expired: 0, evicted: 0, missing });
  }
}

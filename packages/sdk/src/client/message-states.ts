/**
 * The state of each message this device sent (table mw.sent): queued → sent → delivered → read, or
 * failed (final, with a reason). States only move forward; every change is written inside the
 * caller's transaction (the outbox's delivery, a receipt's ratchet step), so it commits with the
 * step that caused it.
 *
 * Record: one byte, the index in STATES; failed = FAILED ‖ UTF-8 reason.
 */
import type { AppStore } from '../storage/types.js';
import { Table } from './tables.js';
import type { MessageState } from './types.js';

const STATES: readonly MessageState[] = ['queued', 'sent', 'delivered', 'read'];
const FAILED = 255;

export interface MessageStatus {
  readonly state: MessageState;
  readonly reason?: string;
}

/** Records a new message as queued (unless already known: a retry keeps its state). */
export async function trackQueued(stx: AppStore, id: string): Promise<void> {
  if (!(await stx.getItem(Table.Sent, id))) await stx.setItem(Table.Sent, id, Uint8Array.of(0));
}

/** Sets a failed message back to queued (an explicit retry). */
export async function requeue(stx: AppStore, id: string): Promise<void> {
  await stx.setItem(Table.Sent, id, Uint8Array.of(0));
}

/** Moves message `id` forward to `state`; false if unknown, already there or later, or failed (final). */
export async function advanceState(stx: AppStore, id: string, state: MessageState): Promise<boolean> {
  const next = STATES.indexOf(state);
  const cur = await stx.getItem(Table.Sent, id);
  if (!cur || cur.length !== 1 || cur[0]! >= next) return false;
  await stx.setItem(Table.Sent, id, Uint8Array.of(next));
  return true;
}

/** Marks a still-queued message failed for good, unless a recipient device still has it queued. Returns whether it did. */
export async function failIfQueued(stx: AppStore, id: string, reason: string): Promise<boolean> {
  const cur = await stx.getItem(Table.Sent, id);
  if (!cur || cur[0] !== 0) return false;
  if ((await stx.listItems(Table.Outbox, { prefix: `${id}:`, limit: 1 })).length > 0) return false;
  const r = new TextEncoder().encode(reason);
  const v = new Uint8Array(1 + r.length);
  v[0] = FAILED;
  v.set(r, 1);
  await stx.setItem(Table.Sent, id, v);
  return true;
}

export async function readStatus(store: AppStore, id: string): Promise<MessageStatus | undefined> {
  const b = await store.getItem(Table.Sent, id);
  if (!b || b.length === 0) return undefined;
  if (b[0] === FAILED) return { state: 'failed', reason: new TextDecoder().decode(b.subarray(1)) };
  const state = STATES[b[0]!];
  return state ? { state } : undefined;
}

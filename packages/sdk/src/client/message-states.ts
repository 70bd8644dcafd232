/**
 * The state of each message this device sent (table mw.sent, a StoredSentState record per message
 * id): queued → sent → delivered → read, or failed (final, with a reason). States only move
 * forward; every change is written inside the caller's transaction (the outbox's delivery, a
 * receipt's ratchet step), so it commits with the step that caused it. Each function returns what
 * changed, so its caller can emit `messageState` after the commit.
 */
import type { StoredSentState } from '@meshwhisper/protocol';
import { SentState, StoredSentStateSchema, create, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { AppStore } from '../storage/types.js';
import type { ConversationId } from './conversation.js';
import { fromRef, toRef } from './conversation.js';
import { SdkError, SdkErrorCode } from './errors.js';
import { Table } from './tables.js';
import type { MessageState } from './types.js';

export const SENT_RECORD_VERSION = 1;

const ORDER: readonly MessageState[] = ['queued', 'sent', 'delivered', 'read'];
const TO_WIRE: Record<MessageState, SentState> = {
  queued: SentState.QUEUED,
  sent: SentState.SENT,
  delivered: SentState.DELIVERED,
  read: SentState.READ,
  failed: SentState.FAILED,
};
const FROM_WIRE = new Map<SentState, MessageState>(Object.entries(TO_WIRE).map(([k, v]) => [v, k as MessageState]));

export interface MessageStatus {
  readonly state: MessageState;
  readonly reason?: string;
}

/** A state change, for the `messageState` event. */
export interface StateChange {
  readonly id: string;
  readonly conversation: ConversationId;
  readonly state: MessageState;
  readonly reason?: string;
}

async function read(store: AppStore, id: string): Promise<StoredSentState | undefined> {
  const b = await store.getItem(Table.Sent, id);
  if (!b) return undefined;
  let r: StoredSentState;
  try {
    r = fromBinary(StoredSentStateSchema, b);
  } catch (e) {
    throw new SdkError(SdkErrorCode.PROTOCOL, 'a stored message state cannot be decoded', undefined, { cause: e });
  }
  if (r.version > SENT_RECORD_VERSION) throw new SdkError(SdkErrorCode.UNSUPPORTED_VERSION, `message state record version ${r.version} was written by a newer SDK: update the app`);
  return r;
}

async function write(stx: AppStore, id: string, r: StoredSentState): Promise<void> {
  await stx.setItem(Table.Sent, id, toBinary(StoredSentStateSchema, r));
}

function change(id: string, r: StoredSentState): StateChange | undefined {
  const conversation = fromRef(r.conversation);
  const state = FROM_WIRE.get(r.state);
  if (!conversation || !state) return undefined;
  return { id, conversation, state, ...(r.failureReason ? { reason: r.failureReason } : {}) };
}

/** Records a new message as queued (unless already known: a retry keeps its state). */
export async function trackQueued(stx: AppStore, id: string, conversation: ConversationId): Promise<StateChange | undefined> {
  if (await read(stx, id)) return undefined;
  const r = create(StoredSentStateSchema, { version: SENT_RECORD_VERSION, state: SentState.QUEUED, conversation: toRef(conversation) });
  await write(stx, id, r);
  return change(id, r);
}

/** Sets a failed message back to queued (an explicit retry). */
export async function requeue(stx: AppStore, id: string): Promise<StateChange | undefined> {
  const r = await read(stx, id);
  if (!r) return undefined;
  r.version = SENT_RECORD_VERSION;
  r.state = SentState.QUEUED;
  r.failureReason = '';
  await write(stx, id, r);
  return change(id, r);
}

/** Moves message `id` forward to `state`; undefined if unknown, already there or later, or failed (final). */
export async function advanceState(stx: AppStore, id: string, state: MessageState): Promise<StateChange | undefined> {
  const r = await read(stx, id);
  const cur = r ? FROM_WIRE.get(r.state) : undefined;
  if (!r || !cur || cur === 'failed' || ORDER.indexOf(cur) >= ORDER.indexOf(state)) return undefined;
  r.version = SENT_RECORD_VERSION;
  r.state = TO_WIRE[state];
  await write(stx, id, r);
  return change(id, r);
}

/** Marks a still-queued message failed for good, unless a recipient device still has it queued. */
export async function failIfQueued(stx: AppStore, id: string, reason: string): Promise<StateChange | undefined> {
  const r = await read(stx, id);
  if (!r || r.state !== SentState.QUEUED) return undefined;
  if ((await stx.listItems(Table.Outbox, { prefix: `${id}:`, limit: 1 })).length > 0) return undefined;
  r.version = SENT_RECORD_VERSION;
  r.state = SentState.FAILED;
  r.failureReason = reason;
  await write(stx, id, r);
  return change(id, r);
}

export async function readStatus(store: AppStore, id: string): Promise<MessageStatus | undefined> {
  const r = await read(store, id);
  const state = r ? FROM_WIRE.get(r.state) : undefined;
  if (!r || !state) return undefined;
  return { state, ...(state === 'failed' ? { reason: r.failureReason } : {}) };
}

export async function readState(store: AppStore, id: string): Promise<MessageState | undefined> {
  return (await readStatus(store, id))?.state;
}

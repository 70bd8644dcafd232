/**
 * The local message history (docs/api.md §History). One StoredMessage per message shown in a
 * conversation, in the app's storage only; written in the same transaction as the ratchet step
 * that produced or consumed the message, so a crash never loses or duplicates an entry.
 *
 * Tables (app items):
 *   mw.history       `${conversation key}/${inverted time, 15 digits}/${inverted sequence, 15 digits}`
 *                    → StoredMessage. Inverted (10^15 − 1 − n), so key order is NEWEST first: the
 *                    newest page of a conversation is one prefix scan with a limit, and each older
 *                    page continues `after` the last key read — nothing loads the whole conversation.
 *   mw.history-ref   `${author hex}/${id hex}` → the mw.history key (dedup, edits, deletes, reactions)
 *   mw.expiry        `${expires at, 15 digits}/${mw.history key}` → empty (disappearing messages)
 *   mw.history-seq   'n' → 8-byte big-endian counter
 *   mw.conversation  conversation key → StoredConversation (newest message, unread count): the
 *                    conversation list without scanning any history
 */
import type { DeviceAddress } from '@meshwhisper/crypto';
import { equalBytes, fromHex, toHex } from '@meshwhisper/crypto';
import type { Content, StoredConversation, StoredMessage } from '@meshwhisper/protocol';
import { ContentSchema, StoredConversationSchema, StoredMessageSchema, StoredReactionSchema, create, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { AppStore } from '../storage/types.js';
import type { ConversationId } from './conversation.js';
import { conversationKey, directConversation, fromRef, toRef } from './conversation.js';
import { SdkError, SdkErrorCode } from './errors.js';
import { FileAttachment } from './media.js';
import type { MessageState } from './types.js';

export const HISTORY_VERSION = 2;
export const CONVERSATION_RECORD_VERSION = 1;

export const HistoryTable = {
  Messages: 'mw.history',
  Ref: 'mw.history-ref',
  Expiry: 'mw.expiry',
  Seq: 'mw.history-seq',
  Conversation: 'mw.conversation',
} as const;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();
const MAX15 = 999_999_999_999_999;
const pad = (n: number): string => String(Math.max(0, Math.floor(n))).padStart(15, '0');
const inv = (n: number): string => pad(MAX15 - Math.min(MAX15, Math.max(0, Math.floor(n))));

/**
 * One message, in one shape for live events and history (docs/api.md §Messages): `message` events
 * carry it (plus the sender's certificate), `history()` and `historyPage()` return it.
 */
export interface Message {
  /** The conversation it belongs to. */
  readonly conversation: ConversationId;
  /** Hex of the author-chosen 128-bit id; (author, id) names the message. */
  readonly id: string;
  /** The author's account key (this account's own key for outgoing messages). */
  readonly author: Uint8Array;
  readonly outgoing: boolean;
  /** The sending device's address (incoming only). */
  readonly from?: DeviceAddress;
  readonly sentAt: number;
  /** When it entered this device's history (ms since the epoch). */
  readonly receivedAt: number;
  /** When this message disappears (ms since the epoch), for a conversation with a timer. */
  readonly expiresAt?: number;
  /** The text, after the author's latest edit (absent once deleted). */
  readonly text?: string;
  readonly binary?: { readonly mimeType: string; readonly data: Uint8Array };
  readonly file?: FileAttachment;
  readonly replyTo?: { readonly author: Uint8Array; readonly id: string; readonly snippet: string };
  readonly forwarded?: boolean;
  readonly edited?: boolean;
  /** Deleted for everyone by its author: a tombstone without content. */
  readonly deleted?: boolean;
  /** Current reactions, one per (reacting account, emoji). */
  readonly reactions: readonly { readonly author: Uint8Array; readonly emoji: string }[];
  /** Arrived while its author was not an accepted contact (a contact request). */
  readonly request?: boolean;
  /** Incoming and not yet marked read (markConversationRead). */
  readonly unread?: boolean;
  /** Filed from a contact's history replay (requestHistoryReplay), not received live: vouched for by that contact only. */
  readonly replayed?: boolean;
  /** Outgoing: its delivery state (history entries; live events carry it in `messageState`). */
  readonly state?: MessageState;
}

/** A history entry is a Message (the name history() has always used). */
export type HistoryEntry = Message;

/** One row of the conversation list. */
export interface ConversationSummary {
  readonly conversation: ConversationId;
  /** The newest message still in the history. */
  readonly lastMessage?: Message;
  readonly unread: number;
  readonly lastActivityAt: number;
}

async function nextSequence(tx: AppStore): Promise<number> {
  const cur = await tx.getItem(HistoryTable.Seq, 'n');
  const n = cur && cur.length === 8 ? Number(new DataView(cur.buffer, cur.byteOffset, 8).getBigUint64(0)) + 1 : 0;
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  await tx.setItem(HistoryTable.Seq, 'n', b);
  return n;
}

function refKey(author: Uint8Array, id: string): string {
  return `${toHex(author)}/${id}`;
}

/** Decodes a stored record; a version-1 record (before conversations) is the direct conversation with `peer`. */
export function decodeStored(bytes: Uint8Array): StoredMessage {
  let m: StoredMessage;
  try {
    m = fromBinary(StoredMessageSchema, bytes);
  } catch (e) {
    throw new SdkError(SdkErrorCode.PROTOCOL, 'a stored history record cannot be decoded', undefined, { cause: e });
  }
  if (m.version > HISTORY_VERSION) throw new SdkError(SdkErrorCode.UNSUPPORTED_VERSION, `history record version ${m.version} was written by a newer SDK: update the app`);
  if (!m.conversation) m.conversation = toRef(directConversation(m.peer));
  return m;
}

function conversationOf(m: StoredMessage): ConversationId {
  const c = fromRef(m.conversation);
  if (!c) throw new SdkError(SdkErrorCode.PROTOCOL, 'a stored history record names no conversation');
  return c;
}

async function readConversation(store: AppStore, key: string): Promise<StoredConversation | undefined> {
  const b = await store.getItem(HistoryTable.Conversation, key);
  if (!b) return undefined;
  let r: StoredConversation;
  try {
    r = fromBinary(StoredConversationSchema, b);
  } catch (e) {
    throw new SdkError(SdkErrorCode.PROTOCOL, 'a stored conversation record cannot be decoded', undefined, { cause: e });
  }
  if (r.version > CONVERSATION_RECORD_VERSION) throw new SdkError(SdkErrorCode.UNSUPPORTED_VERSION, `conversation record version ${r.version} was written by a newer SDK: update the app`);
  return r;
}

async function writeConversation(tx: AppStore, key: string, r: StoredConversation): Promise<void> {
  await tx.setItem(HistoryTable.Conversation, key, toBinary(StoredConversationSchema, r));
}

export interface NewEntry {
  readonly conversation: ConversationId;
  readonly author: Uint8Array;
  /** The sending device's address ('' for this device's own messages). */
  readonly from: string;
  readonly content: Content;
  readonly receivedAt: number;
  readonly expiresAt: number;
  readonly outgoing: boolean;
  readonly request: boolean;
}

/**
 * Adds a message unless (author, id) is already in the history (at-least-once delivery: each
 * message is stored and shown exactly once). Returns the new unread count of its conversation, or
 * undefined for a duplicate.
 */
export async function addToHistory(tx: AppStore, entry: NewEntry): Promise<{ unread: number; record: StoredMessage } | undefined> {
  const id = toHex(entry.content.messageId);
  const ref = refKey(entry.author, id);
  if (await tx.getItem(HistoryTable.Ref, ref)) return undefined;
  const conv = conversationKey(entry.conversation);
  const key = `${conv}/${inv(entry.receivedAt)}/${inv(await nextSequence(tx))}`;
  const unread = !entry.outgoing;
  const record = create(StoredMessageSchema, {
    version: HISTORY_VERSION,
    peer: entry.conversation.kind === 'direct' ? entry.conversation.peer : new Uint8Array(0),
    conversation: toRef(entry.conversation),
    author: entry.author,
    from: entry.from,
    content: toBinary(ContentSchema, entry.content),
    receivedAt: BigInt(entry.receivedAt),
    expiresAt: BigInt(entry.expiresAt),
    outgoing: entry.outgoing,
    request: entry.request,
    unread,
  });
  await tx.setItem(HistoryTable.Messages, key, toBinary(StoredMessageSchema, record));
  await tx.setItem(HistoryTable.Ref, ref, utf8.encode(key));
  if (entry.expiresAt > 0) await tx.setItem(HistoryTable.Expiry, `${pad(entry.expiresAt)}/${key}`, new Uint8Array(0));
  const summary = (await readConversation(tx, conv)) ?? create(StoredConversationSchema, { version: CONVERSATION_RECORD_VERSION, conversation: toRef(entry.conversation) });
  // Keys order newest first: the smallest key is the newest message.
  if (!summary.lastKey || key < summary.lastKey) {
    summary.lastKey = key;
    summary.lastActivityAt = BigInt(entry.receivedAt);
  }
  if (unread) summary.unread++;
  await writeConversation(tx, conv, summary);
  return { unread: summary.unread, record };
}

/** The history key and stored record of message (author, id), if it is in the history. */
async function locate(store: AppStore, author: Uint8Array, id: string): Promise<{ key: string; record: StoredMessage } | undefined> {
  const keyBytes = await store.getItem(HistoryTable.Ref, refKey(author, id));
  if (!keyBytes) return undefined;
  const key = fromUtf8.decode(keyBytes);
  const bytes = await store.getItem(HistoryTable.Messages, key);
  return bytes ? { key, record: decodeStored(bytes) } : undefined;
}

/** The stored record of message (author, id), if it is in the history. */
export async function findInHistory(store: AppStore, author: Uint8Array, id: string): Promise<StoredMessage | undefined> {
  return (await locate(store, author, id))?.record;
}

/** The conversation of the stored message (author, id), if it is in the history. */
export async function conversationOfMessage(store: AppStore, author: Uint8Array, id: string): Promise<ConversationId | undefined> {
  const m = await findInHistory(store, author, id);
  return m ? conversationOf(m) : undefined;
}

/** Applies `change` to the stored message (author, id), if it is in the history. Returns whether it was. */
export async function updateHistory(tx: AppStore, author: Uint8Array, id: string, change: (m: StoredMessage) => void): Promise<boolean> {
  const found = await locate(tx, author, id);
  if (!found) return false;
  change(found.record);
  found.record.version = HISTORY_VERSION;
  await tx.setItem(HistoryTable.Messages, found.key, toBinary(StoredMessageSchema, found.record));
  return true;
}

/**
 * Applies an edit, delete or reaction sent by `author` to the stored history. Edits and deletes only
 * ever touch `author`'s own messages: the author is the authenticated sender, never a claim.
 */
export async function applyToHistory(store: AppStore, author: Uint8Array, content: Content): Promise<void> {
  const b = content.body;
  if (b.case === 'edit' && b.value.messageId.length === 16) {
    const text = b.value.text;
    await updateHistory(store, author, toHex(b.value.messageId), (m) => {
      if (m.deleted) return;
      m.edited = true;
      m.editedText = text;
    });
  } else if (b.case === 'delete' && b.value.messageId.length === 16) {
    await updateHistory(store, author, toHex(b.value.messageId), tombstone);
  } else if (b.case === 'reaction' && b.value.target && b.value.target.author.length === 32 && b.value.target.messageId.length === 16) {
    const { emoji, remove } = b.value;
    await updateHistory(store, b.value.target.author, toHex(b.value.target.messageId), (m) => {
      if (m.deleted) return;
      m.reactions = m.reactions.filter((r) => !(equalBytes(r.author, author) && r.emoji === emoji));
      if (!remove) m.reactions.push(create(StoredReactionSchema, { author, emoji }));
    });
  }
}

/** An author's delete for everyone: the content is erased, a tombstone stays (so a late edit cannot revive it). */
export function tombstone(m: StoredMessage): void {
  m.deleted = true;
  m.edited = false;
  m.editedText = '';
  m.reactions = [];
  const c = fromBinary(ContentSchema, m.content);
  c.body = { case: undefined };
  m.content = toBinary(ContentSchema, c);
}

/** Removes one stored message and its indexes, keeping its conversation's summary right. */
async function removeKey(tx: AppStore, key: string): Promise<StoredMessage | undefined> {
  const bytes = await tx.getItem(HistoryTable.Messages, key);
  await tx.deleteItem(HistoryTable.Messages, key);
  if (!bytes) return undefined;
  const m = decodeStored(bytes);
  const id = toHex(fromBinary(ContentSchema, m.content).messageId);
  await tx.deleteItem(HistoryTable.Ref, refKey(m.author, id));
  // The ref stays gone: a redelivered copy of an expired message would be a ratchet duplicate anyway.
  const expires = Number(m.expiresAt);
  if (expires > 0) await tx.deleteItem(HistoryTable.Expiry, `${pad(expires)}/${key}`);
  const conv = key.slice(0, key.indexOf('/'));
  const summary = await readConversation(tx, conv);
  if (summary) {
    if (m.unread && summary.unread > 0) summary.unread--;
    if (summary.lastKey === key) {
      const [next] = await tx.listItems(HistoryTable.Messages, { prefix: `${conv}/`, limit: 1 });
      summary.lastKey = next?.key ?? '';
    }
    await writeConversation(tx, conv, summary);
  }
  return m;
}

/** Removes every message whose time has come. Returns (conversation, author, id) of each removed one. */
export async function sweepExpired(tx: AppStore, now: number, limit = 500): Promise<{ conversation: ConversationId; author: Uint8Array; id: string; outgoing: boolean }[]> {
  const removed: { conversation: ConversationId; author: Uint8Array; id: string; outgoing: boolean }[] = [];
  for (const { key } of await tx.listItems(HistoryTable.Expiry, { limit })) {
    const slash = key.indexOf('/');
    if (Number(key.slice(0, slash)) > now) break;
    await tx.deleteItem(HistoryTable.Expiry, key);
    const m = await removeKey(tx, key.slice(slash + 1));
    if (m) removed.push({ conversation: conversationOf(m), author: m.author, id: toHex(fromBinary(ContentSchema, m.content).messageId), outgoing: m.outgoing });
  }
  return removed;
}

/** The earliest expiry still pending, if any. */
export async function nextExpiry(tx: AppStore): Promise<number | undefined> {
  const [first] = await tx.listItems(HistoryTable.Expiry, { limit: 1 });
  return first ? Number(first.key.slice(0, first.key.indexOf('/'))) : undefined;
}

/** Removes a whole conversation (declining a contact request, deleting a chat). */
export async function clearConversation(tx: AppStore, conversation: ConversationId): Promise<number> {
  const conv = conversationKey(conversation);
  let n = 0;
  for (const { key } of await tx.listItems(HistoryTable.Messages, { prefix: `${conv}/` })) {
    await removeKey(tx, key);
    n++;
  }
  await tx.deleteItem(HistoryTable.Conversation, conv);
  return n;
}

/** Marks every stored request in the direct conversation with `peer` as accepted. */
export async function acceptConversation(tx: AppStore, peer: Uint8Array): Promise<void> {
  for (const { key, value } of await tx.listItems(HistoryTable.Messages, { prefix: `${conversationKey(directConversation(peer))}/` })) {
    const m = decodeStored(value);
    if (!m.request) continue;
    m.request = false;
    m.version = HISTORY_VERSION;
    await tx.setItem(HistoryTable.Messages, key, toBinary(StoredMessageSchema, m));
  }
}

/**
 * Marks a conversation read: its unread count becomes 0. Unread messages are all newer than the
 * last time it was read, so the scan stops once it has cleared as many as were counted.
 */
export async function markConversationRead(tx: AppStore, conversation: ConversationId): Promise<{ changed: boolean; ids: { author: Uint8Array; id: string; from: string }[] }> {
  const conv = conversationKey(conversation);
  const summary = await readConversation(tx, conv);
  if (!summary || summary.unread === 0) return { changed: false, ids: [] };
  const ids: { author: Uint8Array; id: string; from: string }[] = [];
  let left = summary.unread;
  let after: string | undefined;
  while (left > 0) {
    const page = await tx.listItems(HistoryTable.Messages, { prefix: `${conv}/`, limit: 100, ...(after ? { after } : {}) });
    if (page.length === 0) break;
    for (const { key, value } of page) {
      const m = decodeStored(value);
      if (!m.unread) continue;
      m.unread = false;
      m.version = HISTORY_VERSION;
      await tx.setItem(HistoryTable.Messages, key, toBinary(StoredMessageSchema, m));
      ids.push({ author: m.author, id: toHex(fromBinary(ContentSchema, m.content).messageId), from: m.from });
      left--;
    }
    after = page[page.length - 1]!.key;
  }
  summary.unread = 0;
  await writeConversation(tx, conv, summary);
  return { changed: true, ids };
}

export function toEntry(m: StoredMessage, now: number, state?: MessageState): Message | undefined {
  const expiresAt = Number(m.expiresAt);
  if (expiresAt > 0 && expiresAt <= now) return undefined; // due; the sweeper removes it
  const c = fromBinary(ContentSchema, m.content);
  const base = {
    conversation: conversationOf(m),
    id: toHex(c.messageId),
    author: m.author,
    outgoing: m.outgoing,
    ...(m.from ? { from: m.from as DeviceAddress } : {}),
    sentAt: Number(c.sentAt),
    receivedAt: Number(m.receivedAt),
    ...(expiresAt > 0 ? { expiresAt } : {}),
    reactions: m.reactions.map((r) => ({ author: r.author, emoji: r.emoji })),
    ...(m.request ? { request: true } : {}),
    ...(m.unread ? { unread: true } : {}),
    ...(m.replayed ? { replayed: true } : {}),
    ...(state ? { state } : {}),
  };
  if (m.deleted) return { ...base, deleted: true };
  const edited = m.edited ? { edited: true } : {};
  switch (c.body.case) {
    case 'text': {
      const t = c.body.value;
      const reply = t.replyTo && t.replyTo.author.length === 32 && t.replyTo.messageId.length === 16 ? { replyTo: { author: t.replyTo.author, id: toHex(t.replyTo.messageId), snippet: t.replySnippet } } : {};
      return { ...base, ...edited, text: m.edited ? m.editedText : t.text, ...reply, ...(t.forwarded ? { forwarded: true } : {}) };
    }
    case 'binary':
      return { ...base, binary: { mimeType: c.body.value.mimeType, data: c.body.value.data } };
    case 'file':
      return { ...base, file: FileAttachment.fromContent(c.body.value) };
    default:
      return { ...base };
  }
}

/** Reads the state of an outgoing message (history entries carry it). */
export type StateReader = (store: AppStore, id: string) => Promise<MessageState | undefined>;

async function entries(store: AppStore, items: readonly { value: Uint8Array }[], now: number, stateOf: StateReader): Promise<Message[]> {
  const out: Message[] = [];
  for (const { value } of items) {
    const m = decodeStored(value);
    const state = m.outgoing ? await stateOf(store, toHex(fromBinary(ContentSchema, m.content).messageId)) : undefined;
    const e = toEntry(m, now, state);
    if (e) out.push(e);
  }
  return out.reverse(); // stored newest first, returned oldest first
}

/**
 * One page of a conversation, oldest first: the newest `limit` messages older than `cursor` (an
 * opaque string from the previous page), and the cursor of the next older page if there may be one.
 */
export async function readPage(
  store: AppStore,
  conversation: ConversationId,
  options: { now: number; limit: number; cursor?: string; stateOf: StateReader },
): Promise<{ messages: Message[]; cursor?: string }> {
  const prefix = `${conversationKey(conversation)}/`;
  if (options.cursor !== undefined && !options.cursor.startsWith(prefix)) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'this cursor belongs to another conversation');
  const items = await store.listItems(HistoryTable.Messages, { prefix, limit: options.limit, ...(options.cursor !== undefined ? { after: options.cursor } : {}) });
  const messages = await entries(store, items, options.now, options.stateOf);
  const last = items[items.length - 1];
  return { messages, ...(items.length === options.limit && last ? { cursor: last.key } : {}) };
}

/** Reads a conversation, oldest first; `before` (a receivedAt) and `limit` page backwards from the newest. */
export async function readHistory(store: AppStore, conversation: ConversationId, options: { now: number; limit?: number; before?: number; stateOf: StateReader }): Promise<Message[]> {
  const prefix = `${conversationKey(conversation)}/`;
  // Older than `before` = a larger inverted time; '~' sorts after every digit of the sequence part.
  const after = options.before !== undefined ? `${prefix}${inv(options.before)}/~` : undefined;
  const items = await store.listItems(HistoryTable.Messages, { prefix, ...(options.limit !== undefined ? { limit: options.limit } : {}), ...(after ? { after } : {}) });
  return entries(store, items, options.now, options.stateOf);
}

/** Every conversation with stored messages, most recently active first. */
export async function listConversations(store: AppStore, options: { now: number; stateOf: StateReader }): Promise<ConversationSummary[]> {
  const out: ConversationSummary[] = [];
  for (const { value } of await store.listItems(HistoryTable.Conversation)) {
    const r = fromBinary(StoredConversationSchema, value);
    const conversation = fromRef(r.conversation);
    if (!conversation || !r.lastKey) continue;
    const bytes = await store.getItem(HistoryTable.Messages, r.lastKey);
    const last = bytes ? (await entries(store, [{ value: bytes }], options.now, options.stateOf))[0] : undefined;
    out.push({ conversation, ...(last ? { lastMessage: last } : {}), unread: r.unread, lastActivityAt: Number(r.lastActivityAt) });
  }
  return out.sort((a, b) => b.lastActivityAt - a.lastActivityAt);
}

/** Account keys of the direct conversations with stored messages. */
export async function conversationPeers(store: AppStore): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const { key, value } of await store.listItems(HistoryTable.Conversation, { prefix: 'd.' })) {
    if (fromBinary(StoredConversationSchema, value).lastKey) out.push(fromHex(key.slice(2)));
  }
  return out;
}

/**
 * Raw history records for a device link (link.ts): per conversation the newest `perConversation`
 * records, as stored (edits, reactions and tombstones applied), newest first.
 */
export async function exportHistory(store: AppStore, perConversation: number): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const { key } of await store.listItems(HistoryTable.Conversation)) {
    for (const { value } of await store.listItems(HistoryTable.Messages, { prefix: `${key}/`, limit: perConversation })) out.push(value);
  }
  return out;
}

/**
 * Files a record copied from another device of this account (a device link) under a new local key,
 * unless (author, id) is already in the history: importing the same record twice stores it once.
 * Returns whether it was added.
 */
export async function importHistoryRecord(tx: AppStore, bytes: Uint8Array): Promise<boolean> {
  const record = decodeStored(bytes);
  const content = fromBinary(ContentSchema, record.content);
  const id = toHex(content.messageId);
  if (content.messageId.length !== 16 || record.author.length !== 32) throw new SdkError(SdkErrorCode.PROTOCOL, 'a linked history record names no valid message');
  const ref = refKey(record.author, id);
  if (await tx.getItem(HistoryTable.Ref, ref)) return false;
  const conversation = conversationOf(record);
  const conv = conversationKey(conversation);
  const receivedAt = Number(record.receivedAt);
  const key = `${conv}/${inv(receivedAt)}/${inv(await nextSequence(tx))}`;
  record.version = HISTORY_VERSION;
  await tx.setItem(HistoryTable.Messages, key, toBinary(StoredMessageSchema, record));
  await tx.setItem(HistoryTable.Ref, ref, utf8.encode(key));
  const expiresAt = Number(record.expiresAt);
  if (expiresAt > 0) await tx.setItem(HistoryTable.Expiry, `${pad(expiresAt)}/${key}`, new Uint8Array(0));
  const summary = (await readConversation(tx, conv)) ?? create(StoredConversationSchema, { version: CONVERSATION_RECORD_VERSION, conversation: toRef(conversation) });
  if (!summary.lastKey || key < summary.lastKey) {
    summary.lastKey = key;
    summary.lastActivityAt = BigInt(receivedAt);
  }
  if (record.unread) summary.unread++;
  await writeConversation(tx, conv, summary);
  return true;
}

/**
 * Marks messages (author, id) read on this device — another device of the account read them
 * (own-device sync). Returns each conversation whose unread count changed, with the new count.
 */
export async function markMessagesRead(tx: AppStore, author: Uint8Array, ids: readonly string[]): Promise<{ conversation: ConversationId; unread: number }[]> {
  const changed = new Map<string, { conversation: ConversationId; unread: number }>();
  for (const id of ids) {
    const found = await locate(tx, author, id);
    if (!found || !found.record.unread) continue;
    const m = found.record;
    m.unread = false;
    m.version = HISTORY_VERSION;
    await tx.setItem(HistoryTable.Messages, found.key, toBinary(StoredMessageSchema, m));
    const conversation = conversationOf(m);
    const conv = conversationKey(conversation);
    const summary = await readConversation(tx, conv);
    if (!summary) continue;
    summary.unread = Math.max(0, summary.unread - 1);
    await writeConversation(tx, conv, summary);
    changed.set(conv, { conversation, unread: summary.unread });
  }
  return [...changed.values()];
}

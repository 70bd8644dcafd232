/**
 * The local message history (docs/api.md §History). One StoredMessage per message shown in a
 * conversation, in the app's storage only; written in the same transaction as the ratchet step
 * that produced or consumed the message, so a crash never loses or duplicates an entry.
 *
 * Tables (app items):
 *   mw.history      `${peer hex}/${time, 15 digits}/${sequence, 15 digits}` → StoredMessage (the
 *                   sequence orders messages stored in the same millisecond as they were processed)
 *   mw.history-ref  `${author hex}/${id hex}` → the mw.history key (dedup, edits, deletes, reactions)
 *   mw.expiry       `${expires at, 15 digits}/${mw.history key}` → empty (disappearing messages)
 *   mw.history-seq  'n' → 8-byte big-endian counter
 */
import { equalBytes, fromHex, toHex } from '@meshwhisper/crypto';
import type { Content, StoredMessage } from '@meshwhisper/protocol';
import { ContentSchema, StoredMessageSchema, StoredReactionSchema, create, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { AppStore } from '../storage/types.js';
import { SdkError, SdkErrorCode } from './errors.js';
import { FileAttachment } from './media.js';
import type { DeviceAddress } from '@meshwhisper/crypto';

export const HISTORY_VERSION = 1;

export const HistoryTable = {
  Messages: 'mw.history',
  Ref: 'mw.history-ref',
  Expiry: 'mw.expiry',
  Seq: 'mw.history-seq',
} as const;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();
const pad = (n: number): string => String(Math.max(0, Math.floor(n))).padStart(15, '0');

/** One message of a conversation's history, as `history()` returns it. */
export interface HistoryEntry {
  /** Hex of the author-chosen 128-bit id; (author, id) names the message. */
  readonly id: string;
  /** The author's account key (this account's own key for outgoing messages). */
  readonly author: Uint8Array;
  readonly outgoing: boolean;
  /** The sending device's address (incoming only). */
  readonly from?: DeviceAddress;
  readonly sentAt: number;
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

function decodeStored(bytes: Uint8Array): StoredMessage {
  let m: StoredMessage;
  try {
    m = fromBinary(StoredMessageSchema, bytes);
  } catch (e) {
    throw new SdkError(SdkErrorCode.PROTOCOL, 'a stored history record cannot be decoded', undefined, { cause: e });
  }
  if (m.version > HISTORY_VERSION) throw new SdkError(SdkErrorCode.UNSUPPORTED_CONTENT, `history record version ${m.version} was written by a newer SDK`);
  return m;
}

/**
 * Adds a message unless (author, id) is already in the history (at-least-once delivery: each
 * message is stored and shown exactly once). Returns false for a duplicate.
 */
export async function addToHistory(
  tx: AppStore,
  entry: { peer: Uint8Array; author: Uint8Array; from: string; content: Content; receivedAt: number; expiresAt: number; outgoing: boolean; request: boolean },
): Promise<boolean> {
  const id = toHex(entry.content.messageId);
  const ref = refKey(entry.author, id);
  if (await tx.getItem(HistoryTable.Ref, ref)) return false;
  const key = `${toHex(entry.peer)}/${pad(entry.receivedAt)}/${pad(await nextSequence(tx))}`;
  const record = create(StoredMessageSchema, {
    version: HISTORY_VERSION,
    peer: entry.peer,
    author: entry.author,
    from: entry.from,
    content: toBinary(ContentSchema, entry.content),
    receivedAt: BigInt(entry.receivedAt),
    expiresAt: BigInt(entry.expiresAt),
    outgoing: entry.outgoing,
    request: entry.request,
  });
  await tx.setItem(HistoryTable.Messages, key, toBinary(StoredMessageSchema, record));
  await tx.setItem(HistoryTable.Ref, ref, utf8.encode(key));
  if (entry.expiresAt > 0) await tx.setItem(HistoryTable.Expiry, `${pad(entry.expiresAt)}/${key}`, new Uint8Array(0));
  return true;
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

/** Applies `change` to the stored message (author, id), if it is in the history. Returns whether it was. */
export async function updateHistory(tx: AppStore, author: Uint8Array, id: string, change: (m: StoredMessage) => void): Promise<boolean> {
  const found = await locate(tx, author, id);
  if (!found) return false;
  change(found.record);
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
  return m;
}

/** Removes every message whose time has come. Returns (peer hex, author, id) of each removed one. */
export async function sweepExpired(tx: AppStore, now: number, limit = 500): Promise<{ peer: Uint8Array; author: Uint8Array; id: string; outgoing: boolean }[]> {
  const removed: { peer: Uint8Array; author: Uint8Array; id: string; outgoing: boolean }[] = [];
  for (const { key } of await tx.listItems(HistoryTable.Expiry, { limit })) {
    const slash = key.indexOf('/');
    if (Number(key.slice(0, slash)) > now) break;
    await tx.deleteItem(HistoryTable.Expiry, key);
    const m = await removeKey(tx, key.slice(slash + 1));
    if (m) removed.push({ peer: m.peer, author: m.author, id: toHex(fromBinary(ContentSchema, m.content).messageId), outgoing: m.outgoing });
  }
  return removed;
}

/** The earliest expiry still pending, if any. */
export async function nextExpiry(tx: AppStore): Promise<number | undefined> {
  const [first] = await tx.listItems(HistoryTable.Expiry, { limit: 1 });
  return first ? Number(first.key.slice(0, first.key.indexOf('/'))) : undefined;
}

/** Removes a whole conversation (declining a contact request, deleting a chat). */
export async function clearConversation(tx: AppStore, peer: Uint8Array): Promise<number> {
  let n = 0;
  for (const { key } of await tx.listItems(HistoryTable.Messages, { prefix: `${toHex(peer)}/` })) {
    await removeKey(tx, key);
    n++;
  }
  return n;
}

/** Marks every stored request from `peer` as accepted. */
export async function acceptConversation(tx: AppStore, peer: Uint8Array): Promise<void> {
  for (const { key, value } of await tx.listItems(HistoryTable.Messages, { prefix: `${toHex(peer)}/` })) {
    const m = decodeStored(value);
    if (!m.request) continue;
    m.request = false;
    await tx.setItem(HistoryTable.Messages, key, toBinary(StoredMessageSchema, m));
  }
}

export function toEntry(m: StoredMessage, now: number): HistoryEntry | undefined {
  const expiresAt = Number(m.expiresAt);
  if (expiresAt > 0 && expiresAt <= now) return undefined; // due; the sweeper removes it
  const c = fromBinary(ContentSchema, m.content);
  const base = {
    id: toHex(c.messageId),
    author: m.author,
    outgoing: m.outgoing,
    ...(m.from ? { from: m.from as DeviceAddress } : {}),
    sentAt: Number(c.sentAt),
    receivedAt: Number(m.receivedAt),
    ...(expiresAt > 0 ? { expiresAt } : {}),
    reactions: m.reactions.map((r) => ({ author: r.author, emoji: r.emoji })),
    ...(m.request ? { request: true } : {}),
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

/** Reads a conversation, oldest first; `before` (a receivedAt) and `limit` page backwards from the newest. */
export async function readHistory(store: AppStore, peer: Uint8Array, now: number, options: { limit?: number; before?: number } = {}): Promise<HistoryEntry[]> {
  const items = await store.listItems(HistoryTable.Messages, { prefix: `${toHex(peer)}/` });
  const peerPrefix = toHex(peer).length + 1;
  const before = options.before;
  const filtered = before === undefined ? items : items.filter((i) => Number(i.key.slice(peerPrefix, peerPrefix + 15)) < before);
  const page = options.limit !== undefined ? filtered.slice(Math.max(0, filtered.length - options.limit)) : filtered;
  const out: HistoryEntry[] = [];
  for (const { value } of page) {
    const e = toEntry(decodeStored(value), now);
    if (e) out.push(e);
  }
  return out;
}

/** Peers with at least one stored message, as account keys. */
export async function conversationPeers(store: AppStore): Promise<Uint8Array[]> {
  const peers = new Set<string>();
  for (const { key } of await store.listItems(HistoryTable.Messages)) peers.add(key.slice(0, key.indexOf('/')));
  return [...peers].map(fromHex);
}

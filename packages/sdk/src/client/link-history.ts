/**
 * History entries on the link channel (docs/spec/linking.md §History): the link's own wire message
 * (`LinkHistoryEntry`), converted from and to this device's stored record (history.proto), so
 * that the storage format can change without changing what two devices say to each other.
 */
import type { LinkHistoryEntry, StoredMessage } from '@meshwhisper/protocol';
import { LinkHistoryEntrySchema, StoredMessageSchema, create, toBinary } from '@meshwhisper/protocol';
import { fromRef, toRef } from './conversation.js';
import { SdkError, SdkErrorCode } from './errors.js';
import { HISTORY_VERSION, decodeStored } from './history.js';

/** A stored history record (as exportHistory returns it) as the link carries it. */
export function toLinkEntry(stored: Uint8Array): LinkHistoryEntry {
  const m = decodeStored(stored);
  const c = fromRef(m.conversation);
  if (!c) throw new SdkError(SdkErrorCode.PROTOCOL, 'a stored history record names no conversation');
  return create(LinkHistoryEntrySchema, {
    conversation: c.kind === 'direct' ? { case: 'peer', value: c.peer } : { case: 'groupId', value: c.groupId },
    author: m.author,
    content: m.content,
    receivedAt: m.receivedAt,
    expiresAt: m.expiresAt,
    outgoing: m.outgoing,
    deleted: m.deleted,
    edited: m.edited,
    editedText: m.editedText,
    reactions: m.reactions.map((r) => ({ author: r.author, emoji: r.emoji })),
    request: m.request,
    unread: m.unread,
    replayed: m.replayed,
    senderDevice: m.from,
  });
}

/** A received entry as this device stores it (then filed by importHistoryRecord); throws MW_SDK_PROTOCOL for one that names no conversation. */
export function fromLinkEntry(e: LinkHistoryEntry): Uint8Array {
  const conv = e.conversation;
  const conversation = conv.case === 'peer' && conv.value.length === 32 ? toRef({ kind: 'direct', peer: conv.value }) : conv.case === 'groupId' && conv.value.length > 0 ? toRef({ kind: 'group', groupId: conv.value }) : undefined;
  if (!conversation) throw new SdkError(SdkErrorCode.PROTOCOL, 'a linked history entry names no conversation');
  const record: StoredMessage = create(StoredMessageSchema, {
    version: HISTORY_VERSION,
    peer: conv.case === 'peer' ? conv.value : new Uint8Array(0),
    author: e.author,
    from: e.senderDevice,
    content: e.content,
    receivedAt: e.receivedAt,
    expiresAt: e.expiresAt,
    outgoing: e.outgoing,
    deleted: e.deleted,
    edited: e.edited,
    editedText: e.editedText,
    reactions: e.reactions.map((r) => ({ author: r.author, emoji: r.emoji })),
    request: e.request,
    conversation,
    unread: e.unread,
    replayed: e.replayed,
  });
  return toBinary(StoredMessageSchema, record);
}

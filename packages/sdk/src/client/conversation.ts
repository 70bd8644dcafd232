/**
 * Conversations: every message, timer, receipt and unread count belongs to one. A direct
 * conversation is named by the peer's account key; a group by its id (groups: a later issue).
 * On the wire, content.proto's `conversation_id` is empty for a direct message; a receiver files
 * a message only under a conversation it knows, and refuses any other (MW_SDK_UNKNOWN_CONVERSATION).
 */
import { equalBytes, fromHex, toHex } from '@meshwhisper/crypto';
import type { ConversationRef } from '@meshwhisper/protocol';
import { ConversationRefSchema, create } from '@meshwhisper/protocol';
import { SdkError, SdkErrorCode } from './errors.js';

export type ConversationId = { readonly kind: 'direct'; readonly peer: Uint8Array } | { readonly kind: 'group'; readonly groupId: Uint8Array };

/** The direct conversation with an account. */
export function directConversation(peer: Uint8Array): ConversationId {
  return { kind: 'direct', peer };
}

/** Accepts a ConversationId, or a bare account key (the direct conversation with it), checked. */
export function toConversation(c: ConversationId | Uint8Array, operation: string): ConversationId {
  if (c instanceof Uint8Array) c = directConversation(c);
  const id = c && typeof c === 'object' ? (c.kind === 'direct' ? c.peer : c.kind === 'group' ? c.groupId : undefined) : undefined;
  if (!(id instanceof Uint8Array) || id.length === 0 || id.length > 64 || (c.kind === 'direct' && id.length !== 32)) {
    throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `${operation}: a conversation is an account key (32 bytes) or { kind: 'direct', peer } / { kind: 'group', groupId }`);
  }
  return c;
}

/** The storage key of a conversation: `d.<peer hex>` or `g.<group id hex>`. */
export function conversationKey(c: ConversationId): string {
  return c.kind === 'direct' ? `d.${toHex(c.peer)}` : `g.${toHex(c.groupId)}`;
}

export function conversationFromKey(key: string): ConversationId | undefined {
  const id = /^[dg]\.[0-9a-f]+$/.test(key) ? fromHex(key.slice(2)) : undefined;
  if (!id) return undefined;
  return key[0] === 'd' ? directConversation(id) : { kind: 'group', groupId: id };
}

export function sameConversation(a: ConversationId, b: ConversationId): boolean {
  if (a.kind === 'direct' && b.kind === 'direct') return equalBytes(a.peer, b.peer);
  if (a.kind === 'group' && b.kind === 'group') return equalBytes(a.groupId, b.groupId);
  return false;
}

export function toRef(c: ConversationId): ConversationRef {
  return create(ConversationRefSchema, { kind: c.kind === 'direct' ? { case: 'directPeer', value: c.peer } : { case: 'groupId', value: c.groupId } });
}

export function fromRef(r: ConversationRef | undefined): ConversationId | undefined {
  if (r?.kind.case === 'directPeer' && r.kind.value.length === 32) return directConversation(r.kind.value);
  if (r?.kind.case === 'groupId' && r.kind.value.length > 0) return { kind: 'group', groupId: r.kind.value };
  return undefined;
}

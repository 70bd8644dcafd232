/**
 * The layout of the client's tables, versioned as a whole (mw.self 'layout', a StoredClientLayout).
 *
 *   1 (no marker): history keyed by the peer's account key, oldest first; message states, contact
 *     states, timers and outbox items as ad-hoc bytes.
 *   2: conversations (`d.<peer hex>` / `g.<group hex>`) throughout, history newest first with a
 *     conversation table, every record a versioned protobuf (client_state.proto, history.proto).
 *     (Pending receipts, mw.receipt, came later as ad-hoc bytes; unconfirmed messages,
 *     mw.unconfirmed, as the bare Content keyed `${id}:${mailbox}`.)
 *   3: mw.receipt holds StoredReceipt records; mw.unconfirmed holds StoredUnconfirmed records keyed
 *     `${mailbox hex}/${id hex}`, with the age index mw.unconfirmed-age (so it can be bounded).
 *   4: every group log (mw.group) has its stamp, the SHA-256 of its bytes (mw.group-stamp), so a
 *     device knows without reading the log whether the one it decoded before is still current.
 *
 * Opening a layout-1 storage migrates it in ONE transaction (all or nothing); a layout newer than
 * this SDK is refused with MW_SDK_UNSUPPORTED_VERSION — never misread.
 */
import { fromHex, toHex } from '@meshwhisper/crypto';
import { ContentSchema, SentState, StoredClientLayoutSchema, StoredSentStateSchema, StoredMessageSchema, StoredConversationSchema, create, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { StoredConversation } from '@meshwhisper/protocol';
import type { CryptoContext } from '@meshwhisper/crypto';
import type { AppStore, ProtocolStorage } from '../storage/types.js';
import { asStorageTx } from '../storage/types.js';
import { encodeContact } from './contacts.js';
import { GroupTable } from './groups/store.js';
import { conversationKey, directConversation, toRef } from './conversation.js';
import { SdkError, SdkErrorCode } from './errors.js';
import { CONVERSATION_RECORD_VERSION, HISTORY_VERSION, HistoryTable } from './history.js';
import { SENT_RECORD_VERSION } from './message-states.js';
import { encodeOutboxItem } from './outbox.js';
import { encodeReceiptRecord } from './receipts.js';
import { Table } from './tables.js';
import { encodeTimer } from './timers.js';
import { keepUnconfirmed } from './unconfirmed.js';

export const CLIENT_LAYOUT_VERSION = 4;

const MAX15 = 999_999_999_999_999;
const pad = (n: number): string => String(Math.max(0, Math.floor(n))).padStart(15, '0');
const inv = (n: number): string => pad(MAX15 - n);
const utf8 = new TextEncoder();

/** Brings the storage to CLIENT_LAYOUT_VERSION (or refuses a newer one). Returns whether it migrated. */
export async function ensureLayout(storage: ProtocolStorage, ctx: CryptoContext): Promise<boolean> {
  return storage.transaction(async (tx) => {
    const stx = asStorageTx(tx);
    const marker = await stx.getItem(Table.Self, 'layout');
    if (marker) {
      let version: number;
      try {
        version = fromBinary(StoredClientLayoutSchema, marker).version;
      } catch (e) {
        throw new SdkError(SdkErrorCode.PROTOCOL, 'the stored layout marker cannot be decoded', undefined, { cause: e });
      }
      if (version > CLIENT_LAYOUT_VERSION) {
        throw new SdkError(SdkErrorCode.UNSUPPORTED_VERSION, `this storage was written by a newer SDK (client layout ${version}; this SDK knows up to ${CLIENT_LAYOUT_VERSION}): update the app`);
      }
      if (version === CLIENT_LAYOUT_VERSION) return false;
      if (version < 2) await migrateFrom1(stx);
      if (version < 3) await migrateFrom2(stx);
    } else {
      await migrateFrom1(stx);
      await migrateFrom2(stx);
    }
    await migrateFrom3(stx, ctx);
    await stx.setItem(Table.Self, 'layout', toBinary(StoredClientLayoutSchema, create(StoredClientLayoutSchema, { version: CLIENT_LAYOUT_VERSION })));
    return true;
  });
}

async function migrateFrom1(stx: AppStore): Promise<void> {
  // History: `${peer hex}/${time}/${seq}` → `d.${peer hex}/${inverted time}/${inverted seq}`.
  const summaries = new Map<string, StoredConversation>();
  const ownIds = new Map<string, string>(); // message id → conversation key, for this device's sent messages
  for (const { key, value } of await stx.listItems(HistoryTable.Messages)) {
    const [peerHex, time, seq] = key.split('/');
    if (!peerHex || !/^[0-9a-f]{64}$/.test(peerHex) || time === undefined || seq === undefined) continue;
    const m = fromBinary(StoredMessageSchema, value);
    const conversation = directConversation(fromHex(peerHex));
    const conv = conversationKey(conversation);
    const newKey = `${conv}/${inv(Number(time))}/${inv(Number(seq))}`;
    m.version = HISTORY_VERSION;
    m.conversation = toRef(conversation);
    m.unread = false; // what was there before counts as read
    await stx.deleteItem(HistoryTable.Messages, key);
    await stx.setItem(HistoryTable.Messages, newKey, toBinary(StoredMessageSchema, m));
    const id = toHex(fromBinary(ContentSchema, m.content).messageId);
    await stx.setItem(HistoryTable.Ref, `${toHex(m.author)}/${id}`, utf8.encode(newKey));
    const expires = Number(m.expiresAt);
    if (expires > 0) {
      await stx.deleteItem(HistoryTable.Expiry, `${pad(expires)}/${key}`);
      await stx.setItem(HistoryTable.Expiry, `${pad(expires)}/${newKey}`, new Uint8Array(0));
    }
    if (m.outgoing) ownIds.set(id, conv);
    const s = summaries.get(conv) ?? create(StoredConversationSchema, { version: CONVERSATION_RECORD_VERSION, conversation: toRef(conversation) });
    if (!s.lastKey || newKey < s.lastKey) {
      s.lastKey = newKey;
      s.lastActivityAt = m.receivedAt;
    }
    summaries.set(conv, s);
  }
  for (const [conv, s] of summaries) await stx.setItem(HistoryTable.Conversation, conv, toBinary(StoredConversationSchema, s));
  // Timers: peer hex → d.<peer hex>, seconds ‖ version (4 + 4 bytes big-endian) → StoredTimer.
  for (const { key, value } of await stx.listItems(Table.Timer)) {
    if (!/^[0-9a-f]{64}$/.test(key)) continue;
    await stx.deleteItem(Table.Timer, key);
    if (value.length !== 8) continue;
    const v = new DataView(value.buffer, value.byteOffset, 8);
    await stx.setItem(Table.Timer, `d.${key}`, encodeTimer({ seconds: v.getUint32(0), version: v.getUint32(4) }));
  }
  // Message states: one byte (queued, sent, delivered, read) or 255 ‖ reason → StoredSentState.
  const states = [SentState.QUEUED, SentState.SENT, SentState.DELIVERED, SentState.READ];
  for (const { key, value } of await stx.listItems(Table.Sent)) {
    if (value.length === 0) continue;
    const failed = value[0] === 255;
    const state = failed ? SentState.FAILED : states[value[0]!];
    if (state === undefined || (!failed && value.length !== 1)) continue;
    const conv = ownIds.get(key);
    const conversation = conv ? directConversation(fromHex(conv.slice(2))) : undefined;
    const r = create(StoredSentStateSchema, {
      version: SENT_RECORD_VERSION,
      state,
      ...(failed ? { failureReason: new TextDecoder().decode(value.subarray(1)) } : {}),
      ...(conversation ? { conversation: toRef(conversation) } : {}),
    });
    await stx.setItem(Table.Sent, key, toBinary(StoredSentStateSchema, r));
  }
  // Contact states: one byte (0 request, 1 accepted) → StoredContact.
  for (const { key, value } of await stx.listItems(Table.Contact)) {
    if (value.length !== 1 || value[0]! > 1) continue;
    await stx.setItem(Table.Contact, key, encodeContact(value[0] === 1 ? 'accepted' : 'request'));
  }
  // Outbox: 32-byte mailbox id ‖ envelope → StoredOutboxItem.
  for (const { key, value } of await stx.listItems(Table.Outbox)) {
    if (value.length <= 32) continue;
    await stx.setItem(Table.Outbox, key, encodeOutboxItem(value.subarray(0, 32), value.subarray(32)));
  }
}

async function migrateFrom2(stx: AppStore): Promise<void> {
  // Receipts: version 1 ‖ due time (u64 big-endian) ‖ per id: length (u8) ‖ id → StoredReceipt.
  for (const { key, value } of await stx.listItems(Table.Receipt)) {
    if (value.length < 9 || value[0] !== 1) continue;
    const dueAt = Number(new DataView(value.buffer, value.byteOffset, value.byteLength).getBigUint64(1));
    const ids: Uint8Array[] = [];
    let ok = true;
    for (let o = 9; o < value.length; ) {
      const n = value[o++]!;
      if (o + n > value.length) {
        ok = false;
        break;
      }
      ids.push(value.slice(o, o + n));
      o += n;
    }
    if (ok) await stx.setItem(Table.Receipt, key, encodeReceiptRecord({ dueAt, ids }));
    else await stx.deleteItem(Table.Receipt, key);
  }
  // Unconfirmed: `${id hex}:${mailbox hex}` → the bare Content; now `${mailbox hex}/${id hex}` → StoredUnconfirmed (+ age index).
  for (const { key, value } of await stx.listItems(Table.Unconfirmed)) {
    const m = /^([0-9a-f]{32}):([0-9a-f]{64})$/.exec(key);
    if (!m) continue;
    await stx.deleteItem(Table.Unconfirmed, key);
    let sentAt: number;
    try {
      sentAt = Number(fromBinary(ContentSchema, value).sentAt);
    } catch {
      continue; // unreadable: nothing to re-send
    }
    await keepUnconfirmed(stx, { mailboxId: fromHex(m[2]!), messageId: m[1]!, sentAt, content: value });
  }
}

async function migrateFrom3(stx: AppStore, ctx: CryptoContext): Promise<void> {
  // Group logs get their stamp (groups/store.ts GroupLogs): the SHA-256 of the stored bytes.
  for (const { key, value } of await stx.listItems(GroupTable.Log)) await stx.setItem(GroupTable.Stamp, key, ctx.backend.sha256(value));
}

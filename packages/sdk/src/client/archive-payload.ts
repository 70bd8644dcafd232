/**
 * The account archive's plaintext (docs/spec/archive.md §Payload, archive.proto ArchivePayload):
 * gathering it from a device's storage, installing it into a fresh device's storage, and merging
 * two devices' updates entry by entry (§Merge).
 *
 * Every entry has a merge key (`c:` contact, `b:` blocked, `t:` timer, `u:` username, `s` app
 * settings, `m:` message, `g:` group). A device remembers a short digest of each entry of its own state as of
 * its last stored version (the base, table mw.archive-base). An update is: the node's current
 * archive, plus this device's changes since its base — entries it added or changed replace
 * theirs, entries it removed are removed — and nothing else. Entries another device added stay,
 * whatever this device holds, so two devices writing at once lose nothing (the compare-and-swap
 * on the node's version makes the second one merge into the first one's result).
 */
import type { CryptoContext } from '@meshwhisper/crypto';
import { equalBytes, fromHex, toHex } from '@meshwhisper/crypto';
import type { ArchiveEntry, ArchivePayload } from '@meshwhisper/protocol';
import {
  ArchiveContactState,
  ArchiveEntrySchema,
  ArchivePayloadSchema,
  ContentSchema,
  StoredMessageSchema,
  StoredTimerSchema,
  create,
  fromBinary,
  toBinary,
} from '@meshwhisper/protocol';
import type { AppStore, StorageTx } from '../storage/types.js';
import { decodeContact, encodeContact } from './contacts.js';
import { conversationFromKey, conversationKey, directConversation, fromRef, toRef } from './conversation.js';
import { SdkError, SdkErrorCode } from './errors.js';
import { HISTORY_VERSION, HistoryTable, decodeStored, importHistoryRecord } from './history.js';
import { GroupTable } from './groups/store.js';
import { Table } from './tables.js';
import { encodeTimer } from './timers.js';

/** ArchivePayload.version this SDK writes and reads. */
export const ARCHIVE_PAYLOAD_VERSION = 1;
/** App settings kept in the archive (as in a device link). */
export const ARCHIVE_MAX_APP_SETTINGS = 64 * 1024;
/** A history record larger than this (an inline binary) is left out of the archive. */
export const ARCHIVE_MAX_MESSAGE_BYTES = 64 * 1024;
/** Bytes of SHA-256 kept per entry in the base: 128 bits, no accidental collision. */
const BASE_DIGEST_LENGTH = 16;
/** This device's base (its state as of its last stored version): merge key → digest. */
export const ARCHIVE_BASE_TABLE = 'mw.archive-base';

/** Entries by merge key, each with its encoding (what the digest is taken over). */
export type EntryMap = Map<string, { entry: ArchiveEntry; bytes: Uint8Array }>;

function corrupt(message: string, cause?: unknown): SdkError {
  return new SdkError(SdkErrorCode.ARCHIVE_CORRUPT, message, undefined, cause === undefined ? undefined : { cause });
}

/** The merge key of an entry (docs/spec/archive.md §Merge); undefined for an entry this SDK does not know (kept as it is). */
export function mergeKey(e: ArchiveEntry): string | undefined {
  const v = e.entry;
  switch (v.case) {
    case 'contact':
      return `c:${toHex(v.value.accountKey)}`;
    case 'blocked':
      return `b:${toHex(v.value)}`;
    case 'timer':
      return `t:${toHex(v.value.peer)}`;
    case 'username':
      return `u:${v.value.username}`;
    case 'appSettings':
      return 's';
    case 'message': {
      let id: Uint8Array;
      try {
        id = fromBinary(ContentSchema, v.value.content).messageId;
      } catch {
        return undefined;
      }
      return `m:${toHex(v.value.author)}:${toHex(id)}`;
    }
    case 'group':
      return `g:${toHex(v.value.groupId)}`;
    default:
      return undefined;
  }
}

function put(map: EntryMap, entry: ArchiveEntry): void {
  const key = mergeKey(entry);
  if (key !== undefined) map.set(key, { entry, bytes: toBinary(ArchiveEntrySchema, entry) });
}

/** This device's own state as archive entries. `perConversation` messages per conversation (newest first; 0: no history). */
export async function gatherEntries(store: AppStore, options: { perConversation: number; appSettings: Uint8Array | undefined }): Promise<EntryMap> {
  const map: EntryMap = new Map();
  for (const { key, value } of await store.listItems(Table.Contact)) {
    const state = decodeContact(value);
    if (state) put(map, create(ArchiveEntrySchema, { entry: { case: 'contact', value: { accountKey: fromHex(key), state: state === 'accepted' ? ArchiveContactState.ACCEPTED : ArchiveContactState.REQUEST } } }));
  }
  for (const { key } of await store.listItems(Table.Blocked)) put(map, create(ArchiveEntrySchema, { entry: { case: 'blocked', value: fromHex(key) } }));
  for (const { key, value } of await store.listItems(Table.Timer)) {
    const c = conversationFromKey(key);
    if (c?.kind !== 'direct') continue;
    const t = fromBinary(StoredTimerSchema, value);
    put(map, create(ArchiveEntrySchema, { entry: { case: 'timer', value: { peer: c.peer, seconds: t.seconds, version: t.timerVersion } } }));
  }
  for (const { key, value } of await store.listItems(Table.ContactAccount)) put(map, create(ArchiveEntrySchema, { entry: { case: 'username', value: { username: key, accountKey: value } } }));
  if (options.appSettings) put(map, create(ArchiveEntrySchema, { entry: { case: 'appSettings', value: options.appSettings } }));
  // Groups: the log as held (what a restored device rejoins from, docs/spec/groups.md §G6.5).
  for (const { key, value } of await store.listItems(GroupTable.Log)) put(map, create(ArchiveEntrySchema, { entry: { case: 'group', value: { groupId: fromHex(key), log: value } } }));
  if (options.perConversation > 0) {
    for (const { key } of await store.listItems(HistoryTable.Conversation)) {
      if (conversationFromKey(key)?.kind !== 'direct') continue;
      for (const { value } of await store.listItems(HistoryTable.Messages, { prefix: `${key}/`, limit: options.perConversation })) {
        if (value.length > ARCHIVE_MAX_MESSAGE_BYTES) continue;
        const m = decodeStored(value);
        const c = fromRef(m.conversation) ?? (m.peer.length === 32 ? directConversation(m.peer) : undefined);
        if (c?.kind !== 'direct') continue;
        put(
          map,
          create(ArchiveEntrySchema, {
            entry: {
              case: 'message',
              value: {
                peer: c.peer,
                author: m.author,
                outgoing: m.outgoing,
                content: m.content,
                receivedAt: m.receivedAt,
                expiresAt: m.expiresAt,
                deleted: m.deleted,
                edited: m.edited,
                editedText: m.editedText,
                reactions: m.reactions.map((r) => ({ author: r.author, emoji: r.emoji })),
              },
            },
          }),
        );
      }
    }
  }
  return map;
}

export function digestOf(ctx: CryptoContext, bytes: Uint8Array): Uint8Array {
  return ctx.backend.sha256(bytes).slice(0, BASE_DIGEST_LENGTH);
}

/** The base this device stored with its last version: merge key → digest. */
export async function readBase(store: AppStore): Promise<Map<string, Uint8Array>> {
  const base = new Map<string, Uint8Array>();
  let after: string | undefined;
  for (;;) {
    const page = await store.listItems(ARCHIVE_BASE_TABLE, { limit: 1000, ...(after !== undefined ? { after } : {}) });
    for (const { key, value } of page) base.set(key, value);
    if (page.length < 1000) return base;
    after = page[page.length - 1]!.key;
  }
}

/** Replaces the base with the digests of `entries` (in the caller's transaction). */
export async function writeBase(ctx: CryptoContext, tx: AppStore, entries: EntryMap): Promise<void> {
  const old = await readBase(tx);
  for (const key of old.keys()) if (!entries.has(key)) await tx.deleteItem(ARCHIVE_BASE_TABLE, key);
  for (const [key, { bytes }] of entries) {
    const d = digestOf(ctx, bytes);
    const prev = old.get(key);
    if (!prev || !equalBytes(prev, d)) await tx.setItem(ARCHIVE_BASE_TABLE, key, d);
  }
}

/**
 * The three-way merge (docs/spec/archive.md §Merge): `remote` (the node's current version) plus
 * what changed in `local` since `base`. Entries of `remote` without a merge key this SDK knows are kept.
 * `manages(key)` false: this device does not back that entry up (history when it includes none, app
 * settings when none were given): it removes nothing of it.
 */
export function mergeEntries(ctx: CryptoContext, input: { remote: readonly ArchiveEntry[]; local: EntryMap; base: ReadonlyMap<string, Uint8Array>; manages: (key: string) => boolean }): ArchiveEntry[] {
  const { remote, local, base, manages } = input;
  const merged = new Map<string, ArchiveEntry>();
  const unknown: ArchiveEntry[] = [];
  for (const e of remote) {
    const key = mergeKey(e);
    if (key === undefined) unknown.push(e);
    else merged.set(key, e);
  }
  for (const [key, { entry, bytes }] of local) {
    const b = base.get(key);
    if (!b || !equalBytes(b, digestOf(ctx, bytes))) merged.set(key, entry); // added or changed here
  }
  for (const key of base.keys()) {
    if (local.has(key)) continue;
    if (!manages(key)) continue;
    merged.delete(key); // removed here since the last version this device stored
  }
  return [...merged.values(), ...unknown];
}

export function encodePayload(p: { accountKey: Uint8Array; accountSeed: Uint8Array; writtenAt: number; entries: readonly ArchiveEntry[] }): Uint8Array {
  return toBinary(ArchivePayloadSchema, create(ArchivePayloadSchema, { version: ARCHIVE_PAYLOAD_VERSION, accountKey: p.accountKey, accountSeed: p.accountSeed, writtenAt: BigInt(p.writtenAt), entries: [...p.entries] }));
}

/** Decodes and checks a payload (MW_SDK_ARCHIVE_CORRUPT; a newer format: MW_SDK_UNSUPPORTED_VERSION). */
export function decodePayload(bytes: Uint8Array): ArchivePayload {
  let p: ArchivePayload;
  try {
    p = fromBinary(ArchivePayloadSchema, bytes);
  } catch (e) {
    throw corrupt('the archive opened but its contents cannot be read', e);
  }
  if (p.version > ARCHIVE_PAYLOAD_VERSION) throw new SdkError(SdkErrorCode.UNSUPPORTED_VERSION, `archive format ${p.version} was written by a newer app: update the app`);
  if (p.version < 1 || p.accountKey.length !== 32 || p.accountSeed.length !== 32) throw corrupt('the archive names no account');
  return p;
}

/**
 * Writes archive entries into a fresh device's storage (in the caller's transaction). Idempotent:
 * a message already held (same author and id) is skipped, everything else is overwritten with the
 * same value. Returns the app settings, if any, and how many messages were added.
 */
export async function installEntries(tx: StorageTx, entries: readonly ArchiveEntry[]): Promise<{ appSettings: Uint8Array | undefined; historyEntries: number }> {
  let appSettings: Uint8Array | undefined;
  let historyEntries = 0;
  for (const e of entries) {
    const v = e.entry;
    switch (v.case) {
      case 'contact': {
        const state = v.value.state === ArchiveContactState.ACCEPTED ? 'accepted' : v.value.state === ArchiveContactState.REQUEST ? 'request' : undefined;
        if (v.value.accountKey.length === 32 && state) await tx.setItem(Table.Contact, toHex(v.value.accountKey), encodeContact(state));
        break;
      }
      case 'blocked':
        if (v.value.length === 32) await tx.setItem(Table.Blocked, toHex(v.value), new Uint8Array(0));
        break;
      case 'timer':
        if (v.value.peer.length === 32) await tx.setItem(Table.Timer, conversationKey(directConversation(v.value.peer)), encodeTimer({ seconds: v.value.seconds, version: v.value.version }));
        break;
      case 'username':
        if (v.value.accountKey.length === 32 && v.value.username.length > 0 && v.value.username.length <= 64) await tx.setItem(Table.ContactAccount, v.value.username, v.value.accountKey);
        break;
      case 'appSettings':
        if (v.value.length <= ARCHIVE_MAX_APP_SETTINGS) appSettings = v.value;
        break;
      case 'message': {
        const m = v.value;
        if (m.peer.length !== 32 || m.author.length !== 32) continue;
        const record = create(StoredMessageSchema, {
          version: HISTORY_VERSION,
          peer: m.peer,
          author: m.author,
          from: '',
          content: m.content,
          receivedAt: m.receivedAt,
          expiresAt: m.expiresAt,
          outgoing: m.outgoing,
          deleted: m.deleted,
          edited: m.edited,
          editedText: m.editedText,
          reactions: m.reactions.map((r) => ({ author: r.author, emoji: r.emoji })),
          conversation: toRef(directConversation(m.peer)),
        });
        try {
          if (await importHistoryRecord(tx, toBinary(StoredMessageSchema, record))) historyEntries++;
        } catch (err) {
          throw corrupt('a message in the archive cannot be read', err);
        }
        break;
      }
      case 'group':
        // Checked (every operation re-verified) when the restored device rejoins; a log that does not load is skipped then.
        // No stamp (groups/store.ts GroupLogs): the log is decoded from its bytes until it is next saved.
        if (v.value.groupId.length === 32 && v.value.log.length > 0) {
          await tx.setItem(GroupTable.Log, toHex(v.value.groupId), v.value.log);
          await tx.deleteItem(GroupTable.Stamp, toHex(v.value.groupId));
        }
        break;
      default:
        break; // an entry kind of a newer app: nothing to install here
    }
  }
  return { appSettings, historyEntries };
}

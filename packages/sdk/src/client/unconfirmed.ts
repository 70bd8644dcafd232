/**
 * Sent messages a recipient device has not confirmed (mw.unconfirmed): kept to re-send them —
 * encrypted anew, never the stored envelope — when that device reports it could not decrypt
 * (docs/spec/06-session.md §6.6). One entry per message and recipient device, written in the
 * transaction that seals it, deleted by that device's delivery receipt.
 *
 * Bounded (pruneUnconfirmed): an entry older than UNCONFIRMED_MAX_AGE_MS (the node's retention:
 * nothing older can still be waiting) goes, and so do the oldest beyond MAX_UNCONFIRMED. An age
 * index (mw.unconfirmed-age, keys only) makes pruning a read of small keys in time order, not of
 * the stored messages.
 */
import { toHex } from '@meshwhisper/crypto';
import { StoredUnconfirmedSchema, create, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { AppStore, ProtocolStorage } from '../storage/types.js';
import { MAX_UNCONFIRMED, UNCONFIRMED_MAX_AGE_MS } from '../constants.js';
import { Table } from './tables.js';

export const UNCONFIRMED_RECORD_VERSION = 1;

const pad = (n: number): string => String(Math.max(0, Math.floor(n))).padStart(15, '0');
const EMPTY = new Uint8Array(0);

export function unconfirmedKey(mailboxId: Uint8Array, messageId: string): string {
  return `${toHex(mailboxId)}/${messageId}`;
}

/** The record's sent time, or undefined for a record this SDK cannot read (left alone). */
function sentAtOf(value: Uint8Array): number | undefined {
  try {
    const r = fromBinary(StoredUnconfirmedSchema, value);
    return r.version === UNCONFIRMED_RECORD_VERSION ? Number(r.sentAt) : undefined;
  } catch {
    return undefined;
  }
}

/** Keeps `content` (a Content, as sent) for the device `mailboxId` until it confirms it. */
export async function keepUnconfirmed(stx: AppStore, entry: { mailboxId: Uint8Array; messageId: string; sentAt: number; content: Uint8Array }): Promise<void> {
  const key = unconfirmedKey(entry.mailboxId, entry.messageId);
  // The same message sent again to the same device (retry): one entry, at its new age.
  await forget(stx, key);
  await stx.setItem(Table.Unconfirmed, key, toBinary(StoredUnconfirmedSchema, create(StoredUnconfirmedSchema, { version: UNCONFIRMED_RECORD_VERSION, sentAt: BigInt(entry.sentAt), content: entry.content })));
  await stx.setItem(Table.UnconfirmedAge, `${pad(entry.sentAt)}/${key}`, EMPTY);
}

/** The device confirmed the message (a delivery receipt): nothing to re-send any more. */
export async function confirmUnconfirmed(stx: AppStore, mailboxId: Uint8Array, messageId: string): Promise<void> {
  await forget(stx, unconfirmedKey(mailboxId, messageId));
}

async function forget(stx: AppStore, key: string): Promise<void> {
  const stored = await stx.getItem(Table.Unconfirmed, key);
  if (!stored) return;
  const sentAt = sentAtOf(stored);
  await stx.deleteItem(Table.Unconfirmed, key);
  if (sentAt !== undefined) await stx.deleteItem(Table.UnconfirmedAge, `${pad(sentAt)}/${key}`);
}

/** What this device has not confirmed, oldest first; entries past UNCONFIRMED_MAX_AGE_MS are deleted instead. */
export async function takeUnconfirmed(storage: ProtocolStorage, mailboxId: Uint8Array, now: number): Promise<{ key: string; messageId: string; content: Uint8Array }[]> {
  return storage.transaction(async (stx) => {
    const out: { key: string; messageId: string; content: Uint8Array; sentAt: number }[] = [];
    for (const { key, value } of await stx.listItems(Table.Unconfirmed, { prefix: `${toHex(mailboxId)}/` })) {
      let r;
      try {
        r = fromBinary(StoredUnconfirmedSchema, value);
      } catch {
        continue;
      }
      if (r.version !== UNCONFIRMED_RECORD_VERSION) continue; // a newer SDK's record: left alone
      const sentAt = Number(r.sentAt);
      if (now - sentAt > UNCONFIRMED_MAX_AGE_MS) {
        await forget(stx, key);
        continue;
      }
      out.push({ key, messageId: key.slice(key.indexOf('/') + 1), content: r.content, sentAt });
    }
    return out.sort((a, b) => a.sentAt - b.sentAt).map(({ key, messageId, content }) => ({ key, messageId, content }));
  });
}

/**
 * Deletes entries older than UNCONFIRMED_MAX_AGE_MS, then the oldest beyond `max`
 * (MAX_UNCONFIRMED). One transaction; reads only the age index's keys. Returns how many went.
 */
export async function pruneUnconfirmed(storage: ProtocolStorage, now: number, max = MAX_UNCONFIRMED): Promise<number> {
  return storage.transaction(async (stx) => {
    const index = await stx.listItems(Table.UnconfirmedAge);
    const cutoff = now - UNCONFIRMED_MAX_AGE_MS;
    let pruned = 0;
    for (let i = 0; i < index.length; i++) {
      const key = index[i]!.key;
      const slash = key.indexOf('/');
      const sentAt = Number(key.slice(0, slash));
      const tooMany = index.length - i > max;
      if (!(sentAt < cutoff) && !tooMany) break; // time order: everything after is newer and within the bound
      await stx.deleteItem(Table.UnconfirmedAge, key);
      await stx.deleteItem(Table.Unconfirmed, key.slice(slash + 1));
      pruned++;
    }
    return pruned;
  });
}

/**
 * Receipts go out late, at a random moment, and together (docs/threat-model.md §Receipt timing).
 *
 * A delivery receipt sent the moment a message arrives is a sealed envelope to the sender's
 * mailbox posted ~10 ms after the node handed the message over: the node (or anyone watching it)
 * pairs the two and learns who writes to whom, although sealed sender hides the sender of each.
 * So every receipt waits: the first one for a peer device (per kind) draws a delay uniformly from
 * [minDelayMs, maxDelayMs]; receipts for the same device and kind that come in meanwhile join it,
 * and one Receipt message carries them all when the delay is over.
 *
 * Nothing is lost: a pending receipt is stored (table mw.receipt) before `add` resolves, and is
 * removed only after the Receipt was sealed into the outbox (which delivers it, with retries). A
 * client closed before the delay is over leaves it stored; the next client on this storage sends
 * it at its due time (at once if that has passed). A crash between sealing and the removal sends
 * the receipt twice, which is harmless (message states only move forward).
 */
import { fromHex, toHex } from '@meshwhisper/crypto';
import { StoredReceiptSchema, create, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { AppStore, ProtocolStorage } from '../storage/types.js';
import { RECEIPT_MAX_IDS } from '../constants.js';
import type { Log } from './log.js';
import { Table } from './tables.js';

export type ReceiptKindName = 'delivered' | 'read';

export interface ReceiptDelay {
  /** No receipt leaves before this many ms after the first one for its device was queued. */
  readonly minDelayMs: number;
  /** Every receipt has left (or been sealed into the outbox) by this many ms. */
  readonly maxDelayMs: number;
}

export interface ReceiptQueueDeps {
  readonly storage: Pick<ProtocolStorage, 'transaction'> & AppStore;
  readonly delay: ReceiptDelay;
  /** Seals one Receipt for `mailboxId` into the outbox; resolves once it is stored there. */
  readonly send: (mailboxId: Uint8Array, kind: ReceiptKindName, ids: Uint8Array[]) => Promise<void>;
  /** Uniform in [0, 1). */
  readonly random: () => number;
  readonly now: () => number;
  readonly log: Log;
  /** Timer functions (tests drive them by hand); default setTimeout / clearTimeout. */
  readonly setTimer?: (fn: () => void, ms: number) => unknown;
  readonly clearTimer?: (handle: unknown) => void;
}

/** StoredReceipt.version this SDK writes and reads (layout 3; layout 2's ad-hoc bytes are migrated, layout.ts). */
export const RECEIPT_RECORD_VERSION = 1;

interface Pending {
  dueAt: number;
  ids: Uint8Array[];
}

export function encodeReceiptRecord(p: Pending): Uint8Array {
  return toBinary(StoredReceiptSchema, create(StoredReceiptSchema, { version: RECEIPT_RECORD_VERSION, dueAt: BigInt(p.dueAt), messageIds: p.ids }));
}

/** The record, or undefined for one this SDK cannot read (a newer SDK's: left alone, never misread). */
function decodeRecord(bytes: Uint8Array): Pending | undefined {
  try {
    const r = fromBinary(StoredReceiptSchema, bytes);
    return r.version === RECEIPT_RECORD_VERSION ? { dueAt: Number(r.dueAt), ids: r.messageIds } : undefined;
  } catch {
    return undefined;
  }
}

const keyOf = (kind: ReceiptKindName, mailboxId: Uint8Array): string => `${kind}:${toHex(mailboxId)}`;

export class ReceiptQueue {
  readonly #timers = new Map<string, unknown>();
  /** Keys being sent now: a receipt queued meanwhile is scheduled when that send is done. */
  readonly #flushing = new Set<string>();
  /** Due times asked for while a key was being sent. */
  readonly #again = new Map<string, number>();
  readonly #running = new Set<Promise<void>>();
  #closed = false;

  constructor(private readonly deps: ReceiptQueueDeps) {
    const { minDelayMs, maxDelayMs } = deps.delay;
    if (!Number.isSafeInteger(minDelayMs) || !Number.isSafeInteger(maxDelayMs) || minDelayMs < 0 || maxDelayMs < minDelayMs) {
      throw new RangeError('ReceiptQueue: delay needs integers 0 ≤ minDelayMs ≤ maxDelayMs');
    }
  }

  /** Queues receipts for these message ids to the device `mailboxId`; resolves once they are stored. */
  async add(mailboxId: Uint8Array, kind: ReceiptKindName, ids: readonly Uint8Array[]): Promise<void> {
    if (ids.length === 0) return;
    const key = keyOf(kind, mailboxId);
    const { storage, now } = this.deps;
    const dueAt = await storage.transaction(async (tx) => {
      const stored = await tx.getItem(Table.Receipt, key);
      const p = (stored && decodeRecord(stored)) || { dueAt: this.#drawDueAt(), ids: [] };
      const have = new Set(p.ids.map(toHex));
      for (const id of ids) {
        if (have.has(toHex(id))) continue;
        p.ids.push(id);
        have.add(toHex(id));
      }
      // A full receipt goes now: waiting longer would only make the next one larger.
      if (p.ids.length >= RECEIPT_MAX_IDS) p.dueAt = Math.min(p.dueAt, now());
      await tx.setItem(Table.Receipt, key, encodeReceiptRecord(p));
      return p.dueAt;
    });
    this.#schedule(key, dueAt);
  }

  /** Schedules every stored receipt (those a previous client left) at its due time. */
  async start(): Promise<void> {
    for (const item of await this.deps.storage.listItems(Table.Receipt)) {
      const p = decodeRecord(item.value);
      // A record of another version (a newer SDK wrote it) is left alone, never misread.
      if (p) this.#schedule(item.key, p.dueAt);
      else this.deps.log.warn('receipts.unknown-record', 'a stored receipt of an unknown version was left alone');
    }
  }

  /** Stops the timers and waits for a send in progress. Pending receipts stay stored for the next client. */
  async close(): Promise<void> {
    this.#closed = true;
    const clear = this.deps.clearTimer ?? ((h) => clearTimeout(h as ReturnType<typeof setTimeout>));
    for (const h of this.#timers.values()) clear(h);
    this.#timers.clear();
    await Promise.allSettled([...this.#running]);
  }

  /** now + a delay drawn uniformly from [minDelayMs, maxDelayMs]. */
  #drawDueAt(): number {
    const { minDelayMs, maxDelayMs } = this.deps.delay;
    return this.deps.now() + minDelayMs + Math.floor(this.deps.random() * (maxDelayMs - minDelayMs + 1));
  }

  #schedule(key: string, dueAt: number): void {
    if (this.#closed || this.#timers.has(key)) return;
    if (this.#flushing.has(key)) {
      this.#again.set(key, Math.min(dueAt, this.#again.get(key) ?? Infinity));
      return;
    }
    const set = this.deps.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.#timers.set(
      key,
      set(() => {
        this.#timers.delete(key);
        this.#flushing.add(key);
        const run = this.#flush(key).finally(() => {
          this.#flushing.delete(key);
          this.#running.delete(run);
        });
        this.#running.add(run);
      }, Math.max(0, dueAt - this.deps.now())),
    );
  }

  async #flush(key: string): Promise<void> {
    const next = await this.#send(key);
    this.#flushing.delete(key);
    const again = this.#again.get(key);
    this.#again.delete(key);
    if (next !== undefined || again !== undefined) this.#schedule(key, Math.min(next ?? Infinity, again ?? Infinity));
  }

  /** Sends what is stored under `key`; returns when to run again, if anything is left. */
  async #send(key: string): Promise<number | undefined> {
    const { storage, log } = this.deps;
    const stored = await storage.getItem(Table.Receipt, key);
    const p = stored && decodeRecord(stored);
    if (!p) return undefined;
    const [kind, mailboxHex] = key.split(':') as [ReceiptKindName, string];
    const sent = p.ids.slice(0, RECEIPT_MAX_IDS);
    try {
      await this.deps.send(fromHex(mailboxHex), kind, sent);
    } catch (e) {
      // Sealing failed (the outbox would have retried a failed post itself): keep the receipt and
      // try again after a fresh delay; a device that is gone for good is dropped.
      const gone = (e as { nodeCode?: string }).nodeCode === 'MW_NOT_FOUND';
      log.warn('receipts.send-failed', gone ? 'a receipt to a deleted device was dropped' : 'a receipt could not be sealed; it stays queued and is tried again later', e);
      if (gone) {
        await storage.deleteItem(Table.Receipt, key);
        return undefined;
      }
      return this.#drawDueAt();
    }
    // Receipts queued while this one was being sealed stay, with a delay of their own.
    return storage.transaction(async (tx) => {
      const raw = await tx.getItem(Table.Receipt, key);
      const current = raw && decodeRecord(raw);
      const done = new Set(sent.map(toHex));
      const left = current ? current.ids.filter((id) => !done.has(toHex(id))) : [];
      if (left.length === 0) {
        await tx.deleteItem(Table.Receipt, key);
        return undefined;
      }
      const dueAt = left.length >= RECEIPT_MAX_IDS ? this.deps.now() : this.#drawDueAt();
      await tx.setItem(Table.Receipt, key, encodeReceiptRecord({ dueAt, ids: left }));
      return dueAt;
    });
  }
}

/**
 * The outbox (table mw.outbox): sealed envelopes not yet accepted by the transport. An envelope is
 * written in the transaction that advanced the ratchet to seal it, and what goes out — now, on a
 * retry, or after a crash — is always those stored bytes, never a re-encryption (that would reuse
 * a message key). It leaves the outbox in the same commit that marks its message 'sent', or when
 * the transport says the mailbox can never be reached (the message then fails, with a reason).
 *
 * Item: key `${message id hex}:${mailbox hex}`, value a StoredOutboxItem (mailbox id, envelope).
 */
import type { DeviceAddress } from '@meshwhisper/crypto';
import { toHex } from '@meshwhisper/crypto';
import { StoredOutboxItemSchema, create, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { AppStore, ProtocolStorage } from '../storage/types.js';
import { asStorageTx } from '../storage/types.js';
import { OUTBOX_RETRY_MS, SEND_ATTEMPTS, SEND_BACKOFF_MS } from '../constants.js';
import type { Directory } from './directory.js';
import { SdkError, SdkErrorCode } from './errors.js';
import type { Emit } from './events.js';
import type { Log } from './log.js';
import type { StateChange } from './message-states.js';
import { advanceState, failIfQueued, readStatus } from './message-states.js';
import { Table } from './tables.js';
import type { Transport } from './transport.js';
import type { SendOutcome } from './transport.js';
import { sendFailureOf } from './transport.js';

export function outboxKey(messageId: string, mailboxId: Uint8Array): string {
  return `${messageId}:${toHex(mailboxId)}`;
}

export const OUTBOX_RECORD_VERSION = 1;

/** Queued envelopes handed to the transport per batch when the outbox is flushed (the node's MAX_SEND_BATCH_ITEMS). */
const FLUSH_SLICE = 64;

export function encodeOutboxItem(mailboxId: Uint8Array, envelope: Uint8Array): Uint8Array {
  return toBinary(StoredOutboxItemSchema, create(StoredOutboxItemSchema, { version: OUTBOX_RECORD_VERSION, mailboxId, envelope }));
}

function decodeOutboxItem(b: Uint8Array): { mailboxId: Uint8Array; envelope: Uint8Array } {
  let r;
  try {
    r = fromBinary(StoredOutboxItemSchema, b);
  } catch (e) {
    throw new SdkError(SdkErrorCode.PROTOCOL, 'a stored outbox item cannot be decoded', undefined, { cause: e });
  }
  if (r.version > OUTBOX_RECORD_VERSION) throw new SdkError(SdkErrorCode.UNSUPPORTED_VERSION, `outbox record version ${r.version} was written by a newer SDK: update the app`);
  if (r.mailboxId.length !== 32 || r.envelope.length === 0) throw new SdkError(SdkErrorCode.PROTOCOL, 'a stored outbox item is incomplete');
  return { mailboxId: r.mailboxId, envelope: r.envelope };
}

/** Queues a sealed envelope (inside the transaction that sealed it). */
export async function enqueue(stx: AppStore, key: string, mailboxId: Uint8Array, envelope: Uint8Array): Promise<void> {
  await stx.setItem(Table.Outbox, key, encodeOutboxItem(mailboxId, envelope));
}

/** Removes every queued copy of a message (it disappeared before it could be sent). */
export async function dropMessage(stx: AppStore, messageId: string): Promise<void> {
  for (const { key } of await stx.listItems(Table.Outbox, { prefix: `${messageId}:` })) await stx.deleteItem(Table.Outbox, key);
}

export class Outbox {
  #flushing: Promise<number> | undefined;
  /** Outbox keys being sent now, with the send in progress (one send per key at a time). */
  readonly #delivering = new Map<string, Promise<boolean>>();
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(
    private readonly deps: { readonly storage: ProtocolStorage; readonly transport: Transport; readonly directory: Directory; readonly emit: Emit; readonly log: Log },
  ) {}

  /**
   * Hands every queued envelope to the transport. Stops at the first unreachable error (the rest
   * would fail the same way, one backoff each); the retry timer or the next reconnect tries again.
   * Returns how many were sent.
   */
  flush(): Promise<number> {
    if (this.#flushing) return this.#flushing.then(() => this.flush());
    const run = (async () => {
      let sent = 0;
      let left = 0;
      // In slices: each slice is one request to the transport and one commit.
      const keys = (await this.deps.storage.listItems(Table.Outbox)).map(({ key }) => key);
      for (let i = 0; i < keys.length && !this.#stopped; i += FLUSH_SLICE) {
        let stop = false;
        for (const r of await this.deliverMany(keys.slice(i, i + FLUSH_SLICE))) {
          if (r.status === 'fulfilled') {
            if (r.value) sent++;
            continue;
          }
          left++; // still queued (or failed for good, and already removed)
          const e: unknown = r.reason;
          if (e instanceof SdkError && (e.code === SdkErrorCode.UNREACHABLE || e.code === SdkErrorCode.CLOSED)) stop = true;
        }
        if (stop) break;
      }
      if (left > 0) this.#scheduleRetry();
      return sent;
    })();
    this.#flushing = run;
    return run.finally(() => {
      if (this.#flushing === run) this.#flushing = undefined;
    });
  }

  /** flush() in the background; a failure is logged (the retry timer tries again). */
  flushSoon(reason: string): void {
    this.flush().catch((e) => this.deps.log.warn('outbox.flush-failed', `flushing the outbox (${reason}) failed; it stays queued`, e));
  }

  /**
   * Sends one queued envelope (by outbox key); true once the transport accepted it. A key already
   * being sent (sendText's deliverNow racing a flush on reconnect) is not sent a second time: the
   * second caller gets the first call's outcome. Sending it twice made the recipient get the same
   * envelope twice whenever the node took longer to answer than the reconnect took to happen.
   */
  deliver(key: string): Promise<boolean> {
    return this.deliverMany([key]).then(([r]) => {
      if (r!.status === 'rejected') throw r!.reason;
      return r!.value;
    });
  }

  /**
   * Sends several queued envelopes (by outbox key) in one `Transport.sendBatch` — a fan-out's copies
   * go to the node in one request — and settles each on its own: the accepted ones leave the outbox
   * and advance their messages to 'sent' in ONE storage commit; a refused delivery token is dropped
   * and that envelope resent without it; a mailbox that is gone fails its copy for good; a passing
   * failure retries just the items it hit (SEND_ATTEMPTS, with backoff). Keys already being sent
   * are not sent again (their running send's outcome is returned). Each outcome: true once
   * accepted, false when the key was not queued (or went meanwhile), or the error.
   */
  deliverMany(keys: readonly string[]): Promise<PromiseSettledResult<boolean>[]> {
    const fresh = [...new Set(keys)].filter((k) => !this.#delivering.has(k));
    if (fresh.length > 0) {
      const run = this.#deliverBatch(fresh);
      // Anything left queued (not failed for good) is retried later.
      void run.then(
        (m) => {
          for (const r of m.values()) if (r !== true && sendFailureOf(r.error) !== 'gone') return this.#scheduleRetry();
        },
        () => this.#scheduleRetry(),
      );
      for (const k of fresh) {
        const p = run.then((m) => {
          const r = m.get(k);
          if (r === undefined) return false;
          if (r === true) return true;
          throw r.error;
        });
        this.#delivering.set(k, p);
        void p.then(
          () => this.#delivering.delete(k),
          () => this.#delivering.delete(k),
        );
      }
    }
    return Promise.allSettled(keys.map((k) => this.#delivering.get(k) ?? Promise.resolve(false)));
  }

  /** One batched send of `keys` (not being sent by anyone else): key → true (accepted) or its error; absent: nothing to send. */
  async #deliverBatch(keys: readonly string[]): Promise<Map<string, true | { error: unknown }>> {
    const { storage, transport, directory } = this.deps;
    const out = new Map<string, true | { error: unknown }>();
    type Item = { key: string; messageId: string; mailboxId: Uint8Array; payload: Uint8Array; address: DeviceAddress | undefined; token: Uint8Array | undefined };
    let pending: Item[] = [];
    for (const key of keys) {
      const bytes = await storage.getItem(Table.Outbox, key);
      if (!bytes) continue;
      try {
        const { mailboxId, envelope } = decodeOutboxItem(bytes);
        const address = await directory.addressOf(mailboxId);
        const token = address ? await directory.peerToken(address) : undefined;
        pending.push({ key, messageId: key.split(':')[0]!, mailboxId, payload: envelope, address, token });
      } catch (error) {
        out.set(key, { error });
      }
    }
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt > 0) {
        // Closing: stop retrying (the envelopes stay queued for the next start).
        if (this.#stopped) {
          for (const it of pending) out.set(it.key, { error: new SdkError(SdkErrorCode.CLOSED, 'client closed while sending; the message stays queued') });
          break;
        }
        // Gone meanwhile (a disappearing timer ran out, or another flush sent it): nothing to do.
        const still: Item[] = [];
        for (const it of pending) if (await storage.getItem(Table.Outbox, it.key)) still.push(it);
        pending = still;
        if (pending.length === 0) break;
      }
      let answers: SendOutcome[];
      try {
        answers = await transport.sendBatch(pending.map(({ mailboxId, payload, token }) => ({ mailboxId, payload, ...(token ? { deliveryToken: token } : {}) })));
      } catch (error) {
        // No answer at all: every item is in the same position.
        answers = pending.map(() => ({ ok: false as const, error: error instanceof SdkError ? error : new SdkError(SdkErrorCode.UNREACHABLE, 'sending failed', undefined, { cause: error }) }));
      }
      const accepted: Item[] = [];
      const retry: Item[] = [];
      let transient = false;
      for (const [i, it] of pending.entries()) {
        const a = answers[i]!;
        if (a.ok) {
          accepted.push(it);
          continue;
        }
        const failure = sendFailureOf(a.error);
        if (failure === 'token-refused' && it.token) {
          // A token the peer has since replaced: forget it and use the first-contact lane, now.
          if (it.address) await directory.forgetPeerToken(it.address);
          retry.push({ ...it, token: undefined });
        } else if (failure === 'gone') {
          // No such mailbox (the device or account was deleted): it can never be delivered.
          await storage.deleteItem(Table.Outbox, it.key);
          await this.fail(it.messageId, 'the recipient device no longer exists on the node');
          out.set(it.key, { error: a.error });
        } else if (failure === 'transient' && attempt + 1 < SEND_ATTEMPTS) {
          transient = true;
          retry.push(it);
          out.set(it.key, { error: a.error }); // replaced if a later attempt succeeds
        } else {
          out.set(it.key, { error: a.error });
        }
      }
      if (accepted.length > 0) {
        // One commit (one fsync) for all: the envelopes leave the outbox and their messages are 'sent'.
        const changes = await storage.transaction(async (tx) => {
          const stx = asStorageTx(tx);
          const sent: StateChange[] = [];
          for (const it of accepted) {
            await stx.deleteItem(Table.Outbox, it.key);
            const change = await advanceState(stx, it.messageId, 'sent');
            if (change) sent.push(change);
          }
          return sent;
        });
        for (const it of accepted) out.set(it.key, true);
        for (const change of changes) this.deps.emit('messageState', change);
      }
      pending = retry;
      if (transient && pending.length > 0) await new Promise((r) => setTimeout(r, SEND_BACKOFF_MS * 2 ** attempt));
    }
    return out;
  }

  /** Hands one sealed envelope to the transport now; on a passing failure the outbox retries it later. */  /** Hands one sealed envelope to the transport now; on a passing failure the outbox retries it later. */
  async deliverNow(messageId: string, key: string): Promise<void> {
    try {
      if (!(await this.deliver(key)) && (await readStatus(this.deps.storage, messageId))?.state === 'failed') {
        throw new SdkError(SdkErrorCode.UNREACHABLE, 'the node could not be reached before the message disappeared (its disappearing-message timer ran out)');
      }
    } catch (e) {
      if (sendFailureOf(e) !== 'gone') this.#scheduleRetry();
      throw e;
    }
  }

  /** Sends every queued copy of one message now (retry of a queued message). */
  async deliverMessage(messageId: string): Promise<void> {
    for (const { key } of await this.deps.storage.listItems(Table.Outbox, { prefix: `${messageId}:` })) await this.deliver(key);
  }

  /** Marks a still-queued message failed for good, unless another recipient device still has it queued. */
  async fail(messageId: string, reason: string): Promise<void> {
    const failed = await this.deps.storage.transaction((tx) => failIfQueued(asStorageTx(tx), messageId, reason));
    if (failed) this.deps.emit('messageState', failed);
  }

  /** While something is queued, retries every OUTBOX_RETRY_MS (and at every reconnect). */
  #scheduleRetry(): void {
    if (this.#stopped || this.#retryTimer) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.flushSoon('retry timer');
    }, OUTBOX_RETRY_MS);
    (this.#retryTimer as { unref?: () => void }).unref?.();
  }

  /** Stops retrying and waits for a running flush to finish. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    await this.#flushing?.catch(() => undefined); // its failures were already counted and logged
  }
}

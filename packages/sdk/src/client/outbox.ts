/**
 * The outbox (table mw.outbox): sealed envelopes not yet accepted by the transport. An envelope is
 * written in the transaction that advanced the ratchet to seal it, and what goes out — now, on a
 * retry, or after a crash — is always those stored bytes, never a re-encryption (that would reuse
 * a message key). It leaves the outbox in the same commit that marks its message 'sent', or when
 * the transport says the mailbox can never be reached (the message then fails, with a reason).
 *
 * Item: key `${message id hex}:${mailbox hex}`, value a StoredOutboxItem (mailbox id, envelope).
 */
import { toHex } from '@meshwhisper/crypto';
import { StoredOutboxItemSchema, create, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { AppStore, ProtocolStorage } from '../storage/types.js';
import { asStorageTx } from '../storage/types.js';
import { OUTBOX_RETRY_MS, SEND_ATTEMPTS, SEND_BACKOFF_MS } from '../constants.js';
import type { Directory } from './directory.js';
import { SdkError, SdkErrorCode } from './errors.js';
import type { Emit } from './events.js';
import type { Log } from './log.js';
import { advanceState, failIfQueued, readStatus } from './message-states.js';
import { Table } from './tables.js';
import type { Transport } from './transport.js';
import { sendFailureOf } from './transport.js';

export function outboxKey(messageId: string, mailboxId: Uint8Array): string {
  return `${messageId}:${toHex(mailboxId)}`;
}

export const OUTBOX_RECORD_VERSION = 1;

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
      for (const { key } of await this.deps.storage.listItems(Table.Outbox)) {
        if (this.#stopped) break;
        try {
          if (await this.deliver(key)) sent++;
        } catch (e) {
          left++; // still queued (or failed for good, and already removed)
          if (e instanceof SdkError && (e.code === SdkErrorCode.UNREACHABLE || e.code === SdkErrorCode.CLOSED)) break;
        }
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
    const running = this.#delivering.get(key);
    if (running) return running;
    const p = this.#deliverOnce(key).finally(() => this.#delivering.delete(key));
    this.#delivering.set(key, p);
    return p;
  }

  async #deliverOnce(key: string): Promise<boolean> {
    const { storage, transport, directory } = this.deps;
    const item = await storage.getItem(Table.Outbox, key);
    if (!item) return false;
    const { mailboxId, envelope: payload } = decodeOutboxItem(item);
    const messageId = key.split(':')[0]!;
    const address = await directory.addressOf(mailboxId);
    const token = address ? await directory.peerToken(address) : undefined;
    let lastError: unknown;
    for (let attempt = 0; attempt < SEND_ATTEMPTS; attempt++) {
      // Closing: stop retrying (the envelope stays queued for the next start).
      if (attempt > 0 && this.#stopped) throw new SdkError(SdkErrorCode.CLOSED, 'client closed while sending; the message stays queued');
      // Gone meanwhile (its disappearing timer ran out, or another flush sent it): nothing to do.
      if (attempt > 0 && !(await storage.getItem(Table.Outbox, key))) return false;
      try {
        try {
          await transport.send({ mailboxId, payload, ...(token ? { deliveryToken: token } : {}) });
        } catch (e) {
          // A token the peer has since replaced: forget it and use the first-contact lane.
          if (!(token && sendFailureOf(e) === 'token-refused')) throw e;
          if (address) await directory.forgetPeerToken(address);
          await transport.send({ mailboxId, payload });
        }
        // One commit (one fsync) for both: the envelope leaves the outbox and the message is 'sent'.
        const sent = await storage.transaction(async (tx) => {
          const stx = asStorageTx(tx);
          await stx.deleteItem(Table.Outbox, key);
          return advanceState(stx, messageId, 'sent');
        });
        if (sent) this.deps.emit('messageState', sent);
        return true;
      } catch (e) {
        lastError = e;
        const failure = sendFailureOf(e);
        if (failure === 'gone') {
          // No such mailbox (the device or account was deleted): it can never be delivered.
          await storage.deleteItem(Table.Outbox, key);
          await this.fail(messageId, 'the recipient device no longer exists on the node');
          throw e;
        }
        if (failure !== 'transient') throw e;
        await new Promise((r) => setTimeout(r, SEND_BACKOFF_MS * 2 ** attempt));
      }
    }
    throw lastError;
  }

  /** Hands one sealed envelope to the transport now; on a passing failure the outbox retries it later. */
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

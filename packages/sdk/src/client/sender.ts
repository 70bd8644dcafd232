/**
 * Sending: a Content is built (carrying the conversation's timer and our delivery token), sealed for
 * each recipient device, and committed — sealed bytes in the outbox, message state, history entry,
 * contact and timer changes — in the transaction that advances the ratchet. Only then is anything
 * handed to the transport (seal first, post later: an outage part-way leaves every copy queued).
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { CryptoContext, DeviceAddress } from '@meshwhisper/crypto';
import { CryptoError, CryptoErrorCode, MAX_SEALED_CONTENT_LENGTH, equalBytes, sealEphemeral, sealMessage, sessionPeer, toHex, withinTransaction } from '@meshwhisper/crypto';
import type { Content } from '@meshwhisper/protocol';
import type { ContactAction } from '@meshwhisper/protocol';
import { ContentSchema, ReceiptKind, create, toBinary } from '@meshwhisper/protocol';
import type { AppStore, ProtocolStorage } from '../storage/types.js';
import { asStorageTx } from '../storage/types.js';
import { CONTENT_VERSION, OWN_DEVICES_TTL_MS, SESSION_OVERHEAD_BOUND, UNCONFIRMED_PRUNE_EVERY } from '../constants.js';
import type { Contacts } from './contacts.js';
import type { DeviceLists } from './device-lists.js';
import type { ConversationId } from './conversation.js';
import { directConversation } from './conversation.js';
import type { Directory } from './directory.js';
import type { Emit } from './events.js';
import { SdkError, SdkErrorCode } from './errors.js';
import { addToHistory, applyToHistory } from './history.js';
import type { Log } from './log.js';
import type { StateChange } from './message-states.js';
import { trackQueued } from './message-states.js';
import type { Outbox } from './outbox.js';
import { enqueue, outboxKey } from './outbox.js';
import type { Timers } from './timers.js';
import { keepUnconfirmed, pruneUnconfirmed, takeUnconfirmed } from './unconfirmed.js';
import type { Transport } from './transport.js';
import type { Recipient } from './types.js';

export type ContentBody = MessageInitShape<typeof ContentSchema>['body'];

export interface SealOptions {
  /** The recipient device. */
  readonly mailboxId: Uint8Array;
  readonly body: ContentBody;
  /** The message id (one id for every device of a fan-out; a retry reuses the original). Default: fresh. */
  readonly messageId?: Uint8Array;
  /** Every device must be certified by this account (sending to a username, account or card). */
  readonly expectedAccountKey?: Uint8Array;
  /** Written by the user (not an automatic receipt): the peer becomes an accepted contact. */
  readonly userAction?: boolean;
}

export interface Sealed {
  readonly id: string;
  /** The binary Content that was sealed (for own-device sync). */
  readonly content: Uint8Array;
  /** The peer's account key (undefined only for a session without a known peer). */
  readonly peer: Uint8Array | undefined;
  readonly outboxKey: string;
}

/** One copy, ready to be sealed inside a transaction (Sender.sealAll). */
interface Prepared {
  readonly mailboxId: Uint8Array;
  readonly address: DeviceAddress;
  readonly peer: Uint8Array | undefined;
  readonly conversation: ConversationId | undefined;
  readonly content: Content;
  readonly plaintext: Uint8Array;
  readonly id: string;
  readonly key: string;
  readonly tracked: boolean;
  readonly setting: boolean;
  readonly expireSeconds: number;
  readonly expireTimerVersion: number;
  readonly now: number;
  readonly expiresAt: number;
  readonly userAction: boolean;
}

export class Sender {
  constructor(
    private readonly deps: {
      readonly ctx: CryptoContext;
      readonly storage: ProtocolStorage;
      readonly accountKey: Uint8Array;
      /** This device's own mailbox (never mirrored to). */
      readonly ownMailboxId: Uint8Array;
      readonly directory: Directory;
      readonly lists: DeviceLists;
      readonly contacts: Contacts;
      readonly timers: Timers;
      readonly outbox: Outbox;
      readonly transport: Transport;
      readonly log: Log;
      readonly emit: Emit;
      readonly deliveryToken: () => Uint8Array;
      readonly isClosed: () => boolean;
    },
  ) {}

  #keptSincePrune = 0;

  /** Bounds mw.unconfirmed by age and count (unconfirmed.ts); never throws (logged). */
  async pruneUnconfirmed(): Promise<void> {
    try {
      await pruneUnconfirmed(this.deps.storage, this.deps.ctx.now());
    } catch (e) {
      this.deps.log.warn('send.unconfirmed-prune-failed', 'the store of unconfirmed messages could not be pruned now; the next check retries', e);
    }
  }

  /** The account's other devices (mailbox ids) and when they were looked up. */
  #ownDevices: { at: number; mailboxes: Uint8Array[] } | undefined;

  #checkOpen(): void {
    if (this.deps.isClosed()) throw new SdkError(SdkErrorCode.CLOSED, 'client is closed');
  }

  /** Other accounts' devices (mailbox ids), by account hex, and when they were looked up (receipts). */
  readonly #accountDevices = new Map<string, { at: number; mailboxes: Uint8Array[] }>();

  /**
   * The devices of `accountKey` other than `except`, looked up at most every OWN_DEVICES_TTL_MS:
   * a receipt goes to every device of the account that sent the message, so the message's state
   * advances on the sender's other devices too (own-device sync).
   */
  async otherDevicesOf(accountKey: Uint8Array, except: Uint8Array): Promise<Uint8Array[]> {
    const { ctx } = this.deps;
    const key = toHex(accountKey);
    const now = ctx.now();
    let cached = this.#accountDevices.get(key);
    if (!cached || now - cached.at >= OWN_DEVICES_TTL_MS) {
      let mailboxes: Uint8Array[] = [];
      try {
        mailboxes = await this.#listedDevices(accountKey);
      } catch (e) {
        if (!(e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND')) throw e;
      }
      if (this.#accountDevices.size > 1000) this.#accountDevices.clear();
      this.#accountDevices.set(key, (cached = { at: now, mailboxes }));
    }
    return cached.mailboxes.filter((m) => !equalBytes(m, except));
  }

  /** The devices of an account the node names AND the account's verified device list names (directory.resolve); none listed: none. */
  async #listedDevices(accountKey: Uint8Array): Promise<Uint8Array[]> {
    try {
      return (await this.deps.directory.resolve({ accountKey })).mailboxes;
    } catch (e) {
      if (e instanceof CryptoError && e.code === CryptoErrorCode.DEVICE_NOT_LISTED) return [];
      throw e;
    }
  }

  /** Forgets the cached list of this account's other devices (a device was linked or revoked). */
  forgetOwnDevices(): void {
    this.#ownDevices = undefined;
  }

  /** The account's other devices, looked up at most every OWN_DEVICES_TTL_MS. */
  async ownDevices(): Promise<Uint8Array[]> {
    const { ctx, accountKey, ownMailboxId } = this.deps;
    const now = ctx.now();
    if (this.#ownDevices && now - this.#ownDevices.at < OWN_DEVICES_TTL_MS) return this.#ownDevices.mailboxes;
    let all: Uint8Array[] = [];
    try {
      all = await this.#listedDevices(accountKey);
    } catch (e) {
      if (!(e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND')) throw e;
    }
    const mailboxes = all.filter((m) => toHex(m) !== toHex(ownMailboxId));
    this.#ownDevices = { at: now, mailboxes };
    return mailboxes;
  }

  /**
   * Own-device sync (docs/spec/content.md §2): a Content this account sent to `peer` (or, for a
   * READ receipt, the messages of `peer` it read), sealed for
   * each other device of this account and handed to the outbox. A copy that cannot go now stays
   * queued; a failure here never fails the send itself.
   */
  async syncToOwnDevices(peer: Uint8Array, content: Uint8Array): Promise<void> {
    const { log } = this.deps;
    const mirrors = await this.#prepareMirrors(await this.#mirrorCopies(peer, content));
    if (mirrors.length === 0) return;
    let sealed: Sealed[];
    try {
      sealed = await this.#sealPrepared(mirrors);
    } catch (e) {
      log.warn('send.mirror-failed', 'the copies for the other devices of this account could not be sealed', e);
      return;
    }
    await this.#postMirrors(sealed.map((x) => x.outboxKey));
  }

  /** The seal options of a mirror copy for each other device of this account (none if they cannot be looked up). */
  async #mirrorCopies(peer: Uint8Array, content: Uint8Array): Promise<SealOptions[]> {
    const { ctx, accountKey, log } = this.deps;
    let mailboxes: Uint8Array[];
    try {
      mailboxes = await this.ownDevices();
    } catch (e) {
      log.warn('send.mirror-lookup-failed', "the account's other devices could not be looked up: this message is not mirrored to them", e);
      return [];
    }
    return mailboxes.map((mailboxId) => ({ mailboxId, body: { case: 'sent' as const, value: { peer, content } }, messageId: ctx.random(16), expectedAccountKey: accountKey }));
  }

  /** Posts queued mirror copies; one that cannot go now stays queued (logged), never failing the send. */
  async #postMirrors(keys: readonly string[]): Promise<void> {
    for (const r of await this.deps.outbox.deliverMany(keys)) {
      if (r.status === 'rejected') this.deps.log.warn('send.mirror-queued', 'a copy for another device of this account stays queued', r.reason);
    }
  }

  /** Seals one message for one device into the outbox (nothing is sent yet). */
  async seal(options: SealOptions): Promise<Sealed> {
    return (await this.sealAll([options]))[0]!;
  }

  /**
   * Seals several messages (one per device of a fan-out, and the mirror copies) into the outbox in
   * ONE storage transaction: every ratchet advance, sealed envelope, history entry and state commits
   * together (one fsync), or nothing does. Everything that needs the network or its own transaction
   * (looking up devices, starting sessions) happens first.
   */
  async sealAll(list: readonly SealOptions[]): Promise<Sealed[]> {
    this.#checkOpen();
    const prepared: Prepared[] = [];
    for (const options of list) prepared.push(await this.#prepare(options));
    return this.#sealPrepared(prepared);
  }

  /** Mirror copies that can be prepared; one that cannot (no session can be set up now) is left out and logged. */
  async #prepareMirrors(list: readonly SealOptions[]): Promise<Prepared[]> {
    const out: Prepared[] = [];
    for (const options of list) {
      try {
        out.push(await this.#prepare(options));
      } catch (e) {
        this.deps.log.warn('send.mirror-failed', 'a copy for another device of this account could not be sealed', e);
      }
    }
    return out;
  }

  async #sealPrepared(prepared: readonly Prepared[]): Promise<Sealed[]> {
    this.#checkOpen();
    const { ctx, storage } = this.deps;
    const queued: StateChange[] = [];
    await storage.transaction(async (tx) => {
      const joined = withinTransaction(storage, tx);
      for (const p of prepared) {
        // The ratchet advance and the sealed bytes commit together.
        await sealMessage(ctx, joined, p.address, p.plaintext, { persist: async (t, envelope) => this.#persist(asStorageTx(t), p, envelope, queued) });
      }
    });
    for (const change of queued) this.deps.emit('messageState', change);
    for (const p of prepared) {
      if (p.tracked && ++this.#keptSincePrune >= UNCONFIRMED_PRUNE_EVERY) {
        this.#keptSincePrune = 0;
        await this.pruneUnconfirmed();
      }
    }
    if (prepared.some((p) => p.expiresAt > 0)) this.deps.timers.schedule();
    return prepared.map((p) => ({ id: p.id, content: p.plaintext, peer: p.peer, outboxKey: p.key }));
  }

  /** Everything about one copy that can be known before its transaction (reads, session set-up). */
  async #prepare(options: SealOptions): Promise<Prepared> {
    const { ctx, storage, directory, contacts, timers } = this.deps;
    const { mailboxId, body, expectedAccountKey } = options;
    const messageId = options.messageId ?? ctx.random(16);
    if (!(mailboxId instanceof Uint8Array) || mailboxId.length !== 32) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'mailboxId must be 32 bytes');
    const address = await directory.sessionFor(mailboxId, expectedAccountKey);
    const peer = await sessionPeer(storage, address);
    if (peer && (await contacts.isBlocked(peer.accountKey))) throw new SdkError(SdkErrorCode.BLOCKED, 'this contact is blocked');
    // Every message carries the conversation's timer and its version; setting the timer carries the
    // new value under the next version.
    const conversation = peer ? directConversation(peer.accountKey) : undefined;
    const timer = conversation ? await timers.record(storage, conversation) : { seconds: 0, version: 0 };
    const setting = body?.case === 'expireTimer';
    const expireSeconds = setting ? (body.value.seconds ?? 0) : timer.seconds;
    const expireTimerVersion = setting ? timer.version + 1 : timer.version;
    const now = ctx.now();
    // Our list's epoch: a peer holding an older list of ours refetches it (docs/spec/02-keys.md §2.5).
    const deviceListEpoch = BigInt(await this.deps.lists.ownEpoch());
    const content = create(ContentSchema, { version: CONTENT_VERSION, messageId, sentAt: BigInt(now), deliveryToken: this.deps.deliveryToken(), expireSeconds, expireTimerVersion, deviceListEpoch, body });
    const id = toHex(messageId);
    const tracked = body?.case === 'text' || body?.case === 'binary' || body?.case === 'file';
    const plaintext = toBinary(ContentSchema, content);
    if (plaintext.length > MAX_SEALED_CONTENT_LENGTH - SESSION_OVERHEAD_BOUND) {
      throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `message of ${plaintext.length} bytes is too large (at most ${MAX_SEALED_CONTENT_LENGTH - SESSION_OVERHEAD_BOUND}); send files as media`);
    }
    return {
      mailboxId,
      address,
      peer: peer?.accountKey,
      conversation,
      content,
      plaintext,
      id,
      // Keyed per recipient device, since one message fans out to several.
      key: outboxKey(id, mailboxId),
      tracked,
      setting,
      expireSeconds,
      expireTimerVersion,
      now,
      expiresAt: tracked && expireSeconds > 0 ? now + expireSeconds * 1000 : 0,
      userAction: options.userAction === true,
    };
  }

  /** The writes that commit with one copy's ratchet advance. */
  async #persist(stx: AppStore, p: Prepared, envelope: Uint8Array, queued: StateChange[]): Promise<void> {
    const { contacts, timers } = this.deps;
    await enqueue(stx, p.key, p.mailboxId, envelope);
    // Kept until this device confirms it (a delivery receipt), to re-send if it reports it
    // could not decrypt (unconfirmed.ts).
    if (p.tracked) await keepUnconfirmed(stx, { mailboxId: p.mailboxId, messageId: p.id, sentAt: p.now, content: p.plaintext });
    if (!p.peer || !p.conversation) return;
    if (p.tracked) {
      const change = await trackQueued(stx, p.id, p.conversation);
      if (change) queued.push(change);
    }
    // Writing to someone (not an automatic receipt) makes them a contact.
    if (p.userAction) await contacts.setStateIn(stx, p.peer, 'accepted');
    if (p.setting) await timers.set(stx, p.conversation, { seconds: p.expireSeconds, version: p.expireTimerVersion });
    if (p.tracked) {
      await addToHistory(stx, { conversation: p.conversation, author: this.deps.accountKey, from: '', content: p.content, receivedAt: p.now, expiresAt: p.expiresAt, outgoing: true, request: false });
    } else if (p.content.body.case === 'edit' || p.content.body.case === 'delete' || p.content.body.case === 'reaction') {
      await applyToHistory(stx, this.deps.accountKey, p.content);
    }
  }

  /**
   * The peer device `mailboxId` reported that it could not decrypt something of ours (a
   * decryption-error message; our session with it was dropped if it was the one named): re-seal
   * every message it has not confirmed, in the session we use now (a new one after a reset) — a
   * new encryption, never the stored envelope — and send them. Entries older than
   * UNCONFIRMED_MAX_AGE_MS are dropped instead. Returns how many were re-sent.
   */
  async resendUnconfirmed(mailboxId: Uint8Array): Promise<number> {
    this.#checkOpen();
    const { ctx, storage, directory } = this.deps;
    let sent = 0;
    for (const { messageId, content } of await takeUnconfirmed(storage, mailboxId, ctx.now())) {
      const address = await directory.sessionFor(mailboxId);
      const key = outboxKey(messageId, mailboxId);
      await sealMessage(ctx, storage, address, content, {
        persist: async (tx, envelope) => enqueue(asStorageTx(tx), key, mailboxId, envelope),
      });
      await this.deps.outbox.deliverNow(messageId, key).catch((e) => this.deps.log.warn('send.resend-queued', 'a re-sent message stays queued', e));
      sent++;
    }
    return sent;
  }

  /** Tells the account's other devices that these messages of `peer` were read here. */
  async syncRead(peer: Uint8Array, ids: readonly Uint8Array[]): Promise<void> {
    if (ids.length === 0 || equalBytes(peer, this.deps.accountKey)) return;
    const { ctx } = this.deps;
    const content = create(ContentSchema, { version: CONTENT_VERSION, messageId: ctx.random(16), sentAt: BigInt(ctx.now()), body: { case: 'receipt', value: { kind: ReceiptKind.READ, messageIds: [...ids] } } });
    await this.syncToOwnDevices(peer, toBinary(ContentSchema, content));
  }

  /** Tells the account's other devices about a contact decision made here (docs/spec/content.md §2). */
  async syncContact(peer: Uint8Array, action: ContactAction): Promise<void> {
    if (equalBytes(peer, this.deps.accountKey)) return;
    const { ctx } = this.deps;
    const content = create(ContentSchema, { version: CONTENT_VERSION, messageId: ctx.random(16), sentAt: BigInt(ctx.now()), body: { case: 'contactSync', value: { action } } });
    await this.syncToOwnDevices(peer, toBinary(ContentSchema, content));
  }

  /** Seals for one device and sends it now (receipts). */
  async sendToDevice(options: SealOptions): Promise<Sealed> {
    const sealed = await this.seal(options);
    await this.deps.outbox.deliverNow(sealed.id, sealed.outboxKey);
    return sealed;
  }

  /**
   * Sends one message to every device a recipient names: all copies are sealed first, then posted.
   * One deleted device of several is skipped; the send fails only when none exists.
   */
  async sendTo(to: Recipient, body: ContentBody, options: { messageId?: Uint8Array } = {}): Promise<{ id: string; peer: Uint8Array | undefined }> {
    const { mailboxes, accountKey } = await this.deps.directory.resolve(to);
    // A fresh look at the account's devices: receipts to it use the same list (otherDevicesOf).
    if (accountKey && !equalBytes(accountKey, this.deps.accountKey)) this.#accountDevices.set(toHex(accountKey), { at: this.deps.ctx.now(), mailboxes: [...mailboxes] });
    return this.fanOut({ mailboxes, ...(accountKey ? { accountKey } : {}), body, messageId: options.messageId ?? this.deps.ctx.random(16) });
  }

  /**
   * Seals `body` for each of `mailboxes` (under one message id) — and a mirror copy for each other
   * device of this account — in ONE storage transaction, then hands every copy to the transport in
   * ONE batch (one request to the node, one commit there). Each copy is settled on its own.
   */
  async fanOut(options: { mailboxes: readonly Uint8Array[]; accountKey?: Uint8Array; body: ContentBody; messageId: Uint8Array }): Promise<{ id: string; peer: Uint8Array | undefined }> {
    const { mailboxes, accountKey, body, messageId } = options;
    if (mailboxes.length === 0) throw new SdkError(SdkErrorCode.NODE_ERROR, 'the recipient has no registered device', 'MW_NOT_FOUND');
    const copies: SealOptions[] = mailboxes.map((mailboxId) => ({ mailboxId, body, messageId, ...(accountKey ? { expectedAccountKey: accountKey } : {}), userAction: true }));
    // The mirror copies carry the Content as sealed for the recipient (what this device sent).
    const [first, ...rest] = copies;
    const head = await this.#prepare(first!);
    const prepared = [head];
    for (const c of rest) prepared.push(await this.#prepare(c));
    const mirrors = head.peer && !equalBytes(head.peer, this.deps.accountKey) ? await this.#prepareMirrors(await this.#mirrorCopies(head.peer, head.plaintext)) : [];
    const all = await this.#sealPrepared([...prepared, ...mirrors]);
    const sealed = all.slice(0, copies.length);
    const mirrorKeys = all.slice(copies.length).map((x) => x.outboxKey);
    const id = sealed[0]!.id;
    const peer = sealed[0]!.peer;
    const keys = sealed.map((x) => x.outboxKey);
    const results = await this.deps.outbox.deliverMany([...keys, ...mirrorKeys]);
    for (const r of results.slice(keys.length)) {
      if (r.status === 'rejected') this.deps.log.warn('send.mirror-queued', 'a copy for another device of this account stays queued', r.reason);
    }
    const failures = results.slice(0, keys.length).flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    // One deleted device of a multi-device account: the others still get it.
    const gone = (e: unknown): boolean => e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND';
    const blocking = failures.find((e) => !gone(e));
    if (blocking !== undefined) throw blocking; // unreachable: whatever is left stays queued and goes out with the next flush
    if (failures.length === keys.length) throw failures[0];
    return { id, peer };
  }

  /**
   * An ephemeral signal (typing, presence) to every device of a recipient: sealed and posted in the
   * ephemeral lane, nothing persisted — a signal that is lost is simply not shown (and logged).
   */
  async sendEphemeral(to: Recipient, body: ContentBody): Promise<void> {
    this.#checkOpen();
    const { ctx, storage, directory, transport } = this.deps;
    const { mailboxes, accountKey } = await directory.resolve(to);
    for (const mailboxId of mailboxes) {
      const address = await directory.sessionFor(mailboxId, accountKey);
      const content = create(ContentSchema, { version: CONTENT_VERSION, messageId: ctx.random(16), sentAt: BigInt(ctx.now()), deviceListEpoch: BigInt(await this.deps.lists.ownEpoch()), body });
      // The session's ephemeral key schedule: nothing advances, so a lost signal costs the
      // durable chain nothing (docs/protocol.md §6.5).
      const payload = await sealEphemeral(ctx, storage, address, toBinary(ContentSchema, content));
      const token = await directory.peerToken(address);
      await transport
        .send({ mailboxId, payload, ephemeral: true, ...(token ? { deliveryToken: token } : {}) })
        .catch((e) => this.deps.log.debug('send.ephemeral-lost', `an ephemeral ${body?.case ?? ''} signal was not delivered: ${e instanceof Error ? e.message : String(e)}`));
    }
  }
}

/**
 * The receive pipeline: open each delivered envelope, and — in the transaction that advances the
 * ratchet — apply what its Content means (peer token, contact state, timer, history, message
 * states). ONE dispatch on the body decides both the stored effects and the events the app sees;
 * the events are emitted only after the commit, so the app never sees something a crash could undo.
 *
 * Per batch, the messages each sending device stored are queued for its delivery receipt, which
 * goes out after a random delay together with others to that device (receipts.ts).
 *
 * Undecryptable messages (docs/protocol.md §6.6): a true duplicate (a redelivery) is acknowledged
 * quietly, as is a stale ephemeral signal; anything else is an `undecryptable` event with its code,
 * and when the session layer says the message is lost unless re-sent, a sealed decryption-error
 * report goes back to the sender device. A report from a peer makes us re-send what that device
 * has not confirmed, encrypted anew (sender.resendUnconfirmed).
 */
import type { CryptoContext, DeviceAddress, DeviceCertificate } from '@meshwhisper/crypto';
import { CryptoError, CryptoErrorCode, assertDeviceListed, deviceAddress, equalBytes, mailboxIdOf, receiveSealed, toHex } from '@meshwhisper/crypto';
import type { Content, Envelope, SentSync } from '@meshwhisper/protocol';
import { ContactAction, ContentSchema, ReceiptKind, fromBinary } from '@meshwhisper/protocol';
import type { AppStore, ProtocolStorage } from '../storage/types.js';
import { asStorageTx } from '../storage/types.js';
import { CONTENT_VERSION, DEVICE_LIST_MAX_AGE_MS, MAX_DISAPPEARING_SECONDS } from '../constants.js';
import type { ContactDecision, Contacts } from './contacts.js';
import type { Groups } from './groups/groups.js';
import type { DeviceLists } from './device-lists.js';
import { heldListIn, listCheckedAtIn } from './device-lists.js';
import type { Directory } from './directory.js';
import { SdkError, SdkErrorCode } from './errors.js';
import type { Emit } from './events.js';
import { addToHistory, applyToHistory, markMessagesRead, toEntry } from './history.js';
import type { ConversationId } from './conversation.js';
import { directConversation } from './conversation.js';
import type { Log } from './log.js';
import { advanceState, trackQueued } from './message-states.js';
import type { ReceiptQueue } from './receipts.js';
import type { Gaps } from './gaps.js';
import type { HistoryReplay } from './replay.js';
import type { Sender } from './sender.js';
import type { Timers } from './timers.js';
import type { Transport } from './transport.js';
import { confirmUnconfirmed } from './unconfirmed.js';
import type { MeshWhisperEvents } from './types.js';

const CONTACT_ACTIONS = new Map<ContactAction, ContactDecision>([
  [ContactAction.ACCEPT, 'accept'],
  [ContactAction.DECLINE, 'decline'],
  [ContactAction.BLOCK, 'block'],
  [ContactAction.UNBLOCK, 'unblock'],
]);

/** An event decided inside the transaction, emitted after it committed. */
type Pending = { [K in keyof MeshWhisperEvents]: readonly [K, MeshWhisperEvents[K]] }[keyof MeshWhisperEvents];

/** A failure after the envelope opened: the sender is known. */
class ReceiveFailure extends Error {
  constructor(
    readonly error: CryptoError,
    readonly from: DeviceAddress,
  ) {
    super(error.message);
  }
}

/**
 * Thrown inside the ratchet transaction (which it rolls back: nothing is consumed) when the sender's
 * device list must be fetched before the message can be judged: none is held, or the message states
 * a newer epoch than the held one. The envelope is opened again once the list is fetched.
 */
class NeedDeviceList extends Error {
  constructor(
    readonly accountKey: Uint8Array,
    readonly epoch: number,
    /** The held list is new enough but was checked more than DEVICE_LIST_MAX_AGE_MS ago: refresh it. */
    readonly refresh = false,
  ) {
    super('the sender’s device list must be fetched first');
  }
}

/** The list fetch failed (node unreachable…): the batch is not acknowledged and comes again — nothing is lost. */
class DeviceListUnavailable extends Error {
  constructor(readonly error: unknown) {
    super('the sender’s device list could not be fetched');
  }
}

/** What processing one envelope produced. */
interface Outcome {
  readonly events: Pending[];
  /** A stored message to acknowledge with a delivery receipt. */
  deliveredId?: Uint8Array;
  /** The sender became a contact request (a first contact consumed one-time prekeys). */
  newContact?: boolean;
  /** A disappearing message was stored: arm the sweeper. */
  expires?: boolean;
  /** Refused after the ratchet step (e.g. content from a newer app): reported as undecryptable. */
  refused?: SdkError;
  /** Work that needs the network, run after the commit and the events (a group invitation accepted: add the account). */
  after?: () => Promise<void>;
  /** Earlier messages of the sender's session this one jumped over, and kept keys lost in this step (gaps.ts). */
  keys?: { readonly skipped: number; readonly lost: number };
}

export class ReceivePipeline {
  constructor(
    private readonly deps: {
      readonly ctx: CryptoContext;
      readonly storage: ProtocolStorage;
      /** This device's own account (own-device sync is accepted only from it). */
      readonly accountKey: Uint8Array;
      readonly lists: DeviceLists;
      readonly contacts: Contacts;
      readonly directory: Directory;
      readonly timers: Timers;
      readonly sender: Sender;
      /** Delivery receipts wait here for their random delay. */
      readonly receipts: Pick<ReceiptQueue, 'add'>;
      readonly transport: Transport;
      readonly emit: Emit;
      readonly log: Log;
      /** A first contact consumed one-time prekeys: check the pool soon. */
      readonly onFirstContact: () => void;
      /**
       * The conversation a non-empty content.proto `conversation_id` names, if this device knows it
       * and the sender belongs to it (groups plug in here). Absent or undefined: refused.
       */
      readonly resolveConversation?: (stx: AppStore, input: { conversationId: Uint8Array; from: DeviceCertificate }) => Promise<ConversationId | undefined>;
      /** Groups (groups/groups.ts): group messages, control operations, sender keys, invitations, per-member receipts. */
      readonly groups?: Groups;
      /** History replay with consent (replay.ts). */
      readonly replay?: HistoryReplay;
      /** Gaps a session reveals (gaps.ts). */
      readonly gaps?: Gaps;
    },
  ) {}

  /** Processes one delivered batch; resolves when everything in it is committed and emitted. */
  async receive(envelopes: Envelope[]): Promise<void> {
    // Delivery receipts, one per sender device per batch, sent after the batch was processed.
    const delivered = new Map<DeviceAddress, { mailbox: Uint8Array; ids: Uint8Array[] }>();
    for (const env of envelopes) {
      try {
        const { outcome, sender } = await this.#open(env);
        for (const [event, value] of outcome.events) this.deps.emit(event, value as never);
        if (outcome.keys) this.deps.gaps?.session(directConversation(sender.accountKey), outcome.keys);
        if (outcome.refused) throw outcome.refused;
        if (outcome.newContact) this.deps.onFirstContact();
        if (outcome.expires) this.deps.timers.schedule();
        if (outcome.after) void outcome.after().catch((e: unknown) => this.deps.log.warn('receive.after-failed', 'follow-up work of a received message failed', e));
        if (outcome.deliveredId) {
          const from = deviceAddress(sender);
          const list = delivered.get(from) ?? { mailbox: mailboxIdOf(this.deps.ctx, sender.deviceSigningKey), ids: [] as Uint8Array[] };
          list.ids.push(outcome.deliveredId);
          delivered.set(from, list);
        }
      } catch (e) {
        if (e instanceof DeviceListUnavailable) throw e.error; // the batch stays unacknowledged
        // A redelivery of something already processed (connection dropped before the ack) is a
        // duplicate at the ratchet: acknowledge it quietly. Anything else is reported, then acked
        // (it can never decrypt, and must not block the mailbox).
        // A stale ephemeral signal (replayed, or older than one already shown) is simply not shown.
        const err = e instanceof ReceiveFailure ? e.error : e;
        if (err instanceof CryptoError && (err.code === CryptoErrorCode.DUPLICATE_MESSAGE || err.code === CryptoErrorCode.STALE_EPHEMERAL)) continue;
        const code = err instanceof CryptoError || err instanceof SdkError ? err.code : 'MW_SDK_INTERNAL';
        const from = e instanceof ReceiveFailure ? { from: e.from } : {};
        this.deps.emit('undecryptable', { envelopeId: toHex(env.id), code, message: err instanceof Error ? err.message : String(err), ...from });
      }
    }
    // Queued (stored) before the batch is acknowledged; they go out after a random delay (receipts.ts).
    for (const { mailbox, ids } of delivered.values()) {
      await this.deps.receipts.add(mailbox, 'delivered', ids).catch((e: unknown) => this.deps.log.warn('receive.receipt-failed', 'a delivery receipt could not be queued', e));
    }
  }

  /**
   * Opens one envelope. The sender's device must be on the newest device list held for its account
   * (docs/spec/02-keys.md §2.5): when none is held, or the message states a newer epoch, the
   * transaction is rolled back, the list fetched (a node that still serves an older one is reported:
   * `deviceListWithheld`) and the envelope opened once more — then judged against the newest list.
   */
  async #open(env: Envelope): Promise<{ outcome: Outcome; sender: DeviceCertificate }> {
    try {
      return await this.#openOnce(env, false);
    } catch (e) {
      if (!(e instanceof NeedDeviceList)) throw e;
      try {
        if (e.refresh) await this.deps.lists.fetch(e.accountKey);
        else await this.deps.lists.current(e.accountKey, e.epoch);
      } catch (fetchError) {
        // A refresh of a list that is recent enough by epoch does not hold the message back: it is
        // judged against the held list (and the next message tries again).
        if (e.refresh && !(fetchError instanceof CryptoError)) {
          this.deps.log.warn('receive.device-list-refresh-failed', "the sender account's device list could not be refreshed; the message is judged against the list held", fetchError);
          return this.#openOnce(env, true);
        }
        // A list that does not verify (a forgery, a fork) is the message's problem: reported below.
        if (fetchError instanceof CryptoError) throw fetchError;
        throw new DeviceListUnavailable(fetchError);
      }
      return this.#openOnce(env, true);
    }
  }

  async #openOnce(env: Envelope, fetched: boolean): Promise<{ outcome: Outcome; sender: DeviceCertificate }> {
    const { ctx, storage } = this.deps;
    let outcome: Outcome | undefined;
    const r = await receiveSealed(ctx, storage, env.payload, {
      // Runs in the transaction that advances the ratchet: everything the message changes commits
      // together with the step that decrypted it.
      persist: async (tx, plaintext, from, kind) => {
        let content: Content;
        try {
          content = fromBinary(ContentSchema, plaintext);
        } catch {
          throw new SdkError(SdkErrorCode.PROTOCOL, 'message content is not a valid Content');
        }
        // The ephemeral key schedule has no forward secrecy per message: it carries signals only.
        if (kind === 'ephemeral' && content.body.case !== 'typing' && content.body.case !== 'presence') {
          throw new SdkError(SdkErrorCode.PROTOCOL, `an ephemeral message may carry only typing or presence, not ${content.body.case ?? 'nothing'}`);
        }
        const stx = asStorageTx(tx);
        // A revoked (or never listed) device cannot speak as its account: refused before anything
        // of the message is applied; the CryptoError rolls the ratchet step back.
        const list = await heldListIn(stx, from.accountKey);
        const stated = Number(content.deviceListEpoch);
        if (!fetched && (!list || list.epoch < stated)) throw new NeedDeviceList(from.accountKey, stated);
        if (!fetched && ctx.now() - (await listCheckedAtIn(stx, from.accountKey)) > DEVICE_LIST_MAX_AGE_MS) throw new NeedDeviceList(from.accountKey, stated, true);
        if (!list) throw new CryptoError(CryptoErrorCode.DEVICE_NOT_LISTED, 'receive', 'the sender’s account has no device list: none of its devices can be trusted');
        assertDeviceListed(list, from, 'receive');
        outcome = await this.#apply(stx, { content, from });
      },
    });
    const fromMailbox = mailboxIdOf(ctx, r.sender.deviceSigningKey);
    if (r.kind === 'group') return { outcome: await this.#openGroup(r.sender, r.message, fetched), sender: r.sender };
    if (r.kind === 'failed') {
      // An ephemeral signal (typing, presence) under a session this device does not hold yet — its
      // sender started one whose first durable message has not arrived — is lost by design: a
      // signal, not a message, so nothing is reported (docs/protocol.md §6.5).
      if (r.ephemeral && r.error.code === CryptoErrorCode.UNKNOWN_SESSION) {
        this.deps.log.debug('receive.ephemeral-unopened', 'an ephemeral signal opened under no session held (its session has not reached this device yet); not shown');
        return { outcome: { events: [] }, sender: r.sender };
      }
      if (r.report) this.#sendReport(r.sender, fromMailbox, r.report);
      throw new ReceiveFailure(r.error, deviceAddress(r.sender));
    }
    if (r.kind === 'decryption-error') {
      this.deps.log.debug('receive.decryption-error', `a peer device could not decrypt a message of ours (${r.report.reason})${r.sessionReset ? '; starting a new session' : ''}; re-sending what it has not confirmed`);
      this.deps.sender
        .resendUnconfirmed(fromMailbox)
        .catch((e) => this.deps.log.warn('receive.resend-failed', 'messages could not be re-sent after a decryption-error report', e));
      return { outcome: { events: [] }, sender: r.sender };
    }
    if (!outcome) throw new SdkError(SdkErrorCode.PROTOCOL, 'message had no content');
    if (r.kind === 'message' && (r.skipped > 0 || r.lost > 0)) outcome.keys = { skipped: r.skipped, lost: r.lost };
    return { outcome, sender: r.sender };
  }

  /**
   * A sender-key group message (MessageType.Group) from the sealed sender `from`: the sender's device
   * list is checked as for any message, the group layer opens it (header names `from`, member
   * device, signature under the key `from` distributed), and its Content is applied in the same
   * transaction as the chain step. All-or-nothing.
   */
  async #openGroup(from: DeviceCertificate, message: Uint8Array, fetched: boolean, replaying = false): Promise<Outcome> {
    const groups = this.deps.groups;
    const address = deviceAddress(from);
    if (!groups) throw new ReceiveFailure(new CryptoError(CryptoErrorCode.MALFORMED, 'receive', 'a group message, and this client has no groups'), address);
    try {
      return await this.deps.storage.transaction(async (tx) => {
        const stx = asStorageTx(tx);
        const content = await groups.openMessage(stx, from, message);
        const list = await heldListIn(stx, from.accountKey);
        const stated = Number(content.deviceListEpoch);
        if (!fetched && (!list || list.epoch < stated)) throw new NeedDeviceList(from.accountKey, stated);
        if (!fetched && this.deps.ctx.now() - (await listCheckedAtIn(stx, from.accountKey)) > DEVICE_LIST_MAX_AGE_MS) throw new NeedDeviceList(from.accountKey, stated, true);
        if (!list) throw new CryptoError(CryptoErrorCode.DEVICE_NOT_LISTED, 'receive', 'the sender’s account has no device list: none of its devices can be trusted');
        assertDeviceListed(list, from, 'receive');
        const outcome = await this.#apply(stx, { content, from });
        // A refused content must not consume the chain step: roll back.
        if (outcome.refused) throw outcome.refused;
        return outcome;
      });
    } catch (e) {
      // For a group this device does not hold yet (its create or our add crossed this message on
      // the way): reported now as before, and kept to open when the group arrives (§G6.2).
      if (e instanceof SdkError && e.code === SdkErrorCode.UNKNOWN_CONVERSATION && !replaying) {
        const kept = await groups.holdForUnknownGroup(from, message).catch((h: unknown) => {
          this.deps.log.warn('receive.hold-failed', 'a group message for a group not held yet could not be kept', h);
          return false;
        });
        if (kept) this.deps.log.debug('receive.group-pending', 'a group message for a group this device does not hold yet: kept until it arrives');
      }
      if (e instanceof CryptoError) {
        // Before its key (the sender's copies crossed on the way): reported, and kept to open when
        // the key comes (the app then gets the message after all).
        if (e.code === CryptoErrorCode.UNKNOWN_SENDER_KEY && !replaying) {
          const kept = await groups.hold(from, message).catch((h: unknown) => {
            this.deps.log.warn('receive.hold-failed', 'a group message waiting for its key could not be kept', h);
            return false;
          });
          if (kept) this.deps.log.debug('receive.group-held', 'a group message came before its sender key: kept until the key arrives');
        }
        throw new ReceiveFailure(e, address);
      }
      throw e;
    }
  }

  /** Opens again the group messages of `from` that were waiting for its sender key (oldest first). */
  async #replayHeld(groupId: Uint8Array, from: DeviceCertificate): Promise<void> {
    const groups = this.deps.groups!;
    for (const h of await groups.held(groupId, from.deviceSigningKey)) {
      let outcome: Outcome;
      try {
        outcome = await this.#openGroup(h.from, h.message, true, true);
      } catch (e) {
        const err = e instanceof ReceiveFailure ? e.error : e;
        if (err instanceof CryptoError && err.code === CryptoErrorCode.UNKNOWN_SENDER_KEY) continue; // still waiting
        await groups.dropHeld(h.key);
        if (!(err instanceof CryptoError && err.code === CryptoErrorCode.DUPLICATE_MESSAGE)) this.deps.log.warn('receive.held-refused', 'a held group message was refused when its key arrived', err);
        continue;
      }
      await groups.dropHeld(h.key);
      for (const [event, value] of outcome.events) this.deps.emit(event, value as never);
      if (outcome.expires) this.deps.timers.schedule();
      if (outcome.deliveredId) await this.deps.receipts.add(mailboxIdOf(this.deps.ctx, h.from.deviceSigningKey), 'delivered', [outcome.deliveredId]);
    }
  }

  /**
   * Replays what was kept for groups that arrived meanwhile but whose replay did not finish (the
   * client stopped in between): called once after start.
   */
  async resumePending(): Promise<void> {
    const groups = this.deps.groups;
    if (!groups) return;
    for (const groupId of await groups.pendingHeldGroups()) await this.#replayPending(groupId);
  }

  /**
   * Replays, in arrival order, what came for `groupId` before this device held it (sender keys,
   * group messages, control operations of any member device): each is judged by the group's rules
   * now — a sender key or message from a device that is not a member device is refused and dropped,
   * as it would have been had the group come first. A message whose sender key is still missing
   * moves to the held messages (opened when that key comes).
   */
  async #replayPending(groupId: Uint8Array): Promise<void> {
    const groups = this.deps.groups!;
    for (const item of await groups.pending(groupId)) {
      if (item.kind === 'message') {
        let outcome: Outcome | undefined;
        try {
          try {
            outcome = await this.#openGroup(item.from, item.payload, false);
          } catch (e) {
            // The sender's device list, as for any message (kept items may be days old): fetched, then judged.
            if (!(e instanceof NeedDeviceList)) throw e;
            await (e.refresh ? this.deps.lists.fetch(e.accountKey) : this.deps.lists.current(e.accountKey, e.epoch)).catch((f: unknown) => this.deps.log.warn('receive.device-list-refresh-failed', "the sender account's device list could not be fetched; the kept message is judged against the list held", f));
            outcome = await this.#openGroup(item.from, item.payload, true);
          }
        } catch (e) {
          const err = e instanceof ReceiveFailure ? e.error : e;
          // Not a judgment (storage failed…): kept for the next start, not lost.
          if (!(err instanceof CryptoError || err instanceof SdkError)) {
            this.deps.log.warn('receive.pending-resume-failed', 'a group message kept until its group arrived could not be replayed now; kept for the next start', err);
            continue;
          }
          const quiet = err instanceof CryptoError && (err.code === CryptoErrorCode.DUPLICATE_MESSAGE || err.code === CryptoErrorCode.UNKNOWN_SENDER_KEY);
          if (!quiet) this.deps.log.warn('receive.pending-refused', 'a group message kept until its group arrived was refused', err);
        }
        // Dropped after it was judged: a crash in between replays it once more, and the chain step
        // (DUPLICATE_MESSAGE) and the history (same id) keep it shown once.
        await groups.dropPending(item.key);
        if (!outcome) continue;
        for (const [event, value] of outcome.events) this.deps.emit(event, value as never);
        if (outcome.expires) this.deps.timers.schedule();
        if (outcome.deliveredId) await this.deps.receipts.add(mailboxIdOf(this.deps.ctx, item.from.deviceSigningKey), 'delivered', [outcome.deliveredId]);
        continue;
      }
      let r: Awaited<ReturnType<Groups['replayPending']>>;
      try {
        r = await groups.replayPending(item);
      } catch (e) {
        // The transaction rolled back: a judgment drops the item, anything else keeps it for the next start.
        if (!(e instanceof CryptoError || e instanceof SdkError)) {
          this.deps.log.warn('receive.pending-resume-failed', 'an item kept until its group arrived could not be replayed now; kept for the next start', e);
          continue;
        }
        this.deps.log.warn('receive.pending-refused', `a ${item.kind === 'key' ? 'sender key' : 'control operation'} kept until its group arrived was refused`, e);
        await groups.dropPending(item.key);
        continue;
      }
      for (const [event, value] of r.events) this.deps.emit(event, value as never);
      if (item.kind === 'key') await this.#replayHeld(groupId, item.from);
      if (r.after) await r.after().catch((e: unknown) => this.deps.log.warn('receive.after-failed', 'follow-up work of a replayed group operation failed', e));
    }
  }

  /** Posts a sealed decryption-error report to the sender's mailbox (normal class: it looks like any message). */
  #sendReport(sender: DeviceCertificate, mailboxId: Uint8Array, report: Uint8Array): void {
    void (async () => {
      const token = await this.deps.directory.peerToken(deviceAddress(sender));
      await this.deps.transport.send({ mailboxId, payload: report, ...(token ? { deliveryToken: token } : {}) });
    })().catch((e) => this.deps.log.warn('receive.report-failed', 'a decryption-error report could not be sent', e));
  }

  /** The one dispatch: stores what `content` changes and returns the events to emit after commit. */
  async #apply(stx: AppStore, input: { content: Content; from: DeviceCertificate }): Promise<Outcome> {
    const { content: c, from } = input;
    const { ctx, contacts, directory, timers } = this.deps;
    const events: Pending[] = [];
    const out: Outcome = { events };
    // Blocked: removed from the node's queue (acknowledged), but nothing is stored or shown, no
    // receipt of any kind goes back, and its token is never stored (we will not answer).
    if (await contacts.isBlockedIn(stx, from.accountKey)) return out;
    const address = deviceAddress(from);
    await directory.setPeerToken(stx, address, c.deliveryToken);
    if (c.version > CONTENT_VERSION) {
      out.refused = new SdkError(SdkErrorCode.UNSUPPORTED_CONTENT, `the sender's app writes content version ${c.version}; this SDK understands up to ${CONTENT_VERSION}: update the app`);
      return out;
    }
    // The conversation: direct (no conversation id), or one this device knows (a group it is in).
    // Anything else is refused — never filed under the sender's direct conversation.
    let conversation: ConversationId | undefined = directConversation(from.accountKey);
    if (c.conversationId.length > 0) {
      conversation = this.deps.resolveConversation ? await this.deps.resolveConversation(stx, { conversationId: c.conversationId, from }) : undefined;
      if (!conversation) {
        out.refused = new SdkError(SdkErrorCode.UNKNOWN_CONVERSATION, 'the message names a conversation this device does not know (a group it is not a member of); nothing was stored');
        return out;
      }
    }
    let contact = await contacts.stateIn(stx, from.accountKey);
    const base = { from: address, fromMailboxId: mailboxIdOf(ctx, from.deviceSigningKey) };
    const body = c.body;
    switch (body.case) {
      case 'text':
      case 'binary':
      case 'file':
      case 'expireTimer': {
        const seconds = body.case === 'expireTimer' ? body.value.seconds : c.expireSeconds;
        const changed = await timers.merge(stx, conversation, { seconds, version: c.expireTimerVersion });
        const timerEvent = (s: number): Pending => ['disappearingTimer', { conversation, ...(conversation.kind === 'direct' ? { peer: conversation.peer } : {}), seconds: s, by: 'peer' }];
        if (body.case === 'expireTimer') {
          if (changed !== undefined) events.push(timerEvent(changed));
          return out;
        }
        const group = conversation.kind === 'group';
        const own = equalBytes(from.accountKey, this.deps.accountKey);
        if (contact === undefined && !group) {
          contact = 'request';
          out.newContact = true;
          await contacts.setStateIn(stx, from.accountKey, 'request');
          events.push(['contactRequest', { accountKey: from.accountKey, ...base }]);
        }
        if (changed !== undefined) events.push(timerEvent(changed));
        const now = ctx.now();
        const keep = Math.min(c.expireSeconds, MAX_DISAPPEARING_SECONDS);
        const expiresAt = keep > 0 ? now + keep * 1000 : 0;
        // In a group, members need not be contacts; this account's own messages (sent from another
        // of its devices) are filed as sent by the account.
        const request = !group && contact === 'request';
        const added = await addToHistory(stx, { conversation, author: from.accountKey, from: address, content: c, receivedAt: now, expiresAt, outgoing: group && own, request });
        if (!added) return { events: [] }; // shown once: a redelivered message is not an event again
        out.expires = expiresAt > 0;
        if (!(group && own)) out.deliveredId = c.messageId;
        // Exactly the entry history() returns for it, plus the sending device.
        const entry = toEntry(added.record, now, group && own ? 'sent' : undefined);
        if (entry) events.push(['message', { ...entry, ...base, sender: from }]);
        events.push(['unread', { conversation, unread: added.unread }]);
        return out;
      }
      case 'receipt': {
        // Message states advance in the same commit as the ratchet step that opened the receipt.
        const state = body.value.kind === ReceiptKind.READ ? 'read' : 'delivered';
        const ids = body.value.messageIds.map(toHex);
        for (const id of ids) {
          const advanced = await advanceState(stx, id, state);
          if (advanced) events.push(['messageState', advanced]);
          await confirmUnconfirmed(stx, base.fromMailboxId, id); // confirmed: nothing to re-send
        }
        await this.deps.groups?.noteReceipt(stx, from, ids, state);
        events.push(['receipt', { from: address, state, messageIds: ids }]);
        return out;
      }
      case 'reaction': {
        await applyToHistory(stx, from.accountKey, c);
        const r = body.value;
        if (r.target && r.target.author.length === 32 && r.target.messageId.length === 16 && r.emoji.length > 0 && r.emoji.length <= 16) {
          events.push(['reaction', { from: address, author: from.accountKey, target: { author: r.target.author, id: toHex(r.target.messageId) }, emoji: r.emoji, remove: r.remove }]);
        }
        return out;
      }
      case 'edit':
      case 'delete': {
        // The author is the SENDER's authenticated account: an edit or delete can only ever name
        // messages (author, id) of the account that sent it — nobody can touch another's message.
        await applyToHistory(stx, from.accountKey, c);
        const id = body.value.messageId;
        if (id.length === 16) {
          if (body.case === 'edit') events.push(['edit', { from: address, author: from.accountKey, id: toHex(id), text: body.value.text }]);
          else events.push(['delete', { from: address, author: from.accountKey, id: toHex(id) }]);
        }
        return out;
      }
      case 'sent':
        return this.#applySent(stx, { sync: body.value, from, base, out });
      case 'typing':
        // Not shown for strangers and unanswered requests (nobody can watch you type uninvited);
        // in a group, for members (resolved above).
        if (conversation.kind === 'group') events.push(['typing', { from: address, typing: body.value.typing, conversation }]);
        else if (contact === 'accepted') events.push(['typing', { from: address, typing: body.value.typing }]);
        return out;
      case 'groupUpdate':
      case 'senderKey':
      case 'groupInvite':
      case 'groupInviteAnswer':
        return this.#applyGroup(stx, { body, from, out });
      case 'presence':
        if (contact === 'accepted') events.push(['presence', { from: address, online: body.value.online, lastSeen: Number(body.value.lastSeen) }]);
        return out;
      case 'replayRequest':
      case 'replayResponse': {
        const replay = this.deps.replay;
        if (!replay || conversation.kind !== 'direct') return out;
        if (body.case === 'replayRequest') {
          const r = await replay.applyRequest(stx, from, body.value);
          events.push(...r.events);
          if (r.after) out.after = r.after;
        } else {
          const r = await replay.applyResponse(stx, from, body.value);
          events.push(...r.events);
          if (r.refused) out.refused = r.refused;
        }
        return out;
      }
      default:
        return out;
    }
  }

  /** Group control content over the pairwise session (groups/groups.ts). */
  async #applyGroup(stx: AppStore, input: { body: Content['body']; from: DeviceCertificate; out: Outcome }): Promise<Outcome> {
    const { body, from, out } = input;
    const groups = this.deps.groups;
    const events = out.events as Pending[];
    if (!groups) {
      out.refused = new SdkError(SdkErrorCode.UNKNOWN_CONVERSATION, 'group content, and this client has no groups');
      return out;
    }
    try {
      if (body.case === 'groupUpdate') {
        const r = await groups.applyUpdate(stx, from, body.value);
        events.push(...r.events);
        if (r.held) {
          this.deps.log.debug('receive.group-pending', 'control operations for a group this device does not hold yet: kept until it arrives');
          return out;
        }
        // A member restored from its archive rejoined from an older log: send it ours (§G6.5);
        // operations concurrent with an add go on to the devices it added (§G6.2).
        const update = body.value;
        out.after = async () => {
          // The group just arrived: what came for it before (sender keys, messages, operations) now.
          if (r.joined) await this.#replayPending(update.groupId);
          await groups.answerRejoin(update);
          await r.after?.();
        };
      }
      else if (body.case === 'senderKey') {
        const { groupId, held } = await groups.applySenderKey(stx, from, body.value);
        if (held) this.deps.log.debug('receive.group-pending', 'a sender key for a group this device does not hold yet: kept until it arrives');
        // Messages of this device that came before its key open now.
        else out.after = () => this.#replayHeld(groupId, from);
      }
      else if (body.case === 'groupInvite') events.push(...(await groups.applyInvite(stx, from, body.value)));
      else if (body.case === 'groupInviteAnswer') {
        const r = await groups.applyInviteAnswer(stx, from, body.value);
        events.push(...r.events);
        if (r.after) out.after = r.after;
      }
    } catch (e) {
      // Refused, but the pairwise step stands (the message was authentic; its group content is not acceptable).
      if (e instanceof SdkError) out.refused = e;
      else if (e instanceof CryptoError) out.refused = new SdkError(SdkErrorCode.PROTOCOL, `group content refused (${e.code}): ${e.message}`);
      else throw e;
    }
    return out;
  }

  /**
   * Own-device sync (docs/spec/content.md §2): what this account sent from another of its devices,
   * filed as the account's own message in the conversation with `peer` — same id, state 'sent' —
   * or applied (edit, delete, reaction, timer) with the account as author.
   */
  async #applySent(stx: AppStore, input: { sync: SentSync; from: DeviceCertificate; base: { from: DeviceAddress; fromMailboxId: Uint8Array }; out: Outcome }): Promise<Outcome> {
    const { sync, from, base, out } = input;
    const { ctx, contacts, timers, accountKey } = this.deps;
    const refuse = (why: string): Outcome => {
      out.refused = new SdkError(SdkErrorCode.PROTOCOL, why);
      return out;
    };
    if (!equalBytes(from.accountKey, accountKey)) return refuse('a copy of a sent message came from another account (only the own account may send one)');
    if (sync.peer.length !== 32) return refuse('a copy of a sent message names no conversation');
    let inner: Content;
    try {
      inner = fromBinary(ContentSchema, sync.content);
    } catch {
      return refuse('a copy of a sent message carries no valid Content');
    }
    if (inner.version > CONTENT_VERSION) {
      out.refused = new SdkError(SdkErrorCode.UNSUPPORTED_CONTENT, `another device of this account writes content version ${inner.version}; this SDK understands up to ${CONTENT_VERSION}: update the app`);
      return out;
    }
    const peer = sync.peer;
    const conversation = directConversation(peer);
    const events = out.events as Pending[];
    const b = inner.body;
    switch (b.case) {
      case 'text':
      case 'binary':
      case 'file': {
        if (inner.messageId.length !== 16) return refuse('a copy of a sent message has no valid id');
        // Writing to someone makes them a contact, on every device of the account.
        await contacts.setStateIn(stx, peer, 'accepted');
        const changed = await timers.merge(stx, conversation, { seconds: inner.expireSeconds, version: inner.expireTimerVersion });
        if (changed !== undefined) events.push(['disappearingTimer', { conversation, peer, seconds: changed, by: 'me' }]);
        const now = ctx.now();
        const keep = Math.min(inner.expireSeconds, MAX_DISAPPEARING_SECONDS);
        const expiresAt = keep > 0 ? now + keep * 1000 : 0;
        const added = await addToHistory(stx, { conversation, author: accountKey, from: base.from, content: inner, receivedAt: now, expiresAt, outgoing: true, request: false });
        if (!added) return { events: [] };
        const id = toHex(inner.messageId);
        const queued = await trackQueued(stx, id, conversation);
        const sent = await advanceState(stx, id, 'sent');
        out.expires = expiresAt > 0;
        const entry = toEntry(added.record, now, 'sent');
        if (entry) events.push(['message', { ...entry, ...base, sender: from }]);
        if (sent ?? queued) events.push(['messageState', sent ?? queued!]);
        return out;
      }
      case 'receipt': {
        // Only READ is synced: the messages of `peer` this account read on another device.
        if (b.value.kind !== ReceiptKind.READ) return refuse('only read state is synced between devices of an account');
        for (const u of await markMessagesRead(stx, peer, b.value.messageIds.map(toHex))) events.push(['unread', u]);
        return out;
      }
      case 'contactSync': {
        // A contact decision made on another device of this account.
        const action = CONTACT_ACTIONS.get(b.value.action);
        if (!action) return refuse('a contact decision from another device names no known action');
        await contacts.applyIn(stx, peer, action);
        events.push(['contactChanged', { accountKey: peer, action }]);
        return out;
      }
      case 'expireTimer': {
        const changed = await timers.merge(stx, conversation, { seconds: b.value.seconds, version: inner.expireTimerVersion });
        if (changed !== undefined) events.push(['disappearingTimer', { conversation, peer, seconds: changed, by: 'me' }]);
        return out;
      }
      case 'reaction': {
        await applyToHistory(stx, accountKey, inner);
        const r = b.value;
        if (r.target && r.target.author.length === 32 && r.target.messageId.length === 16 && r.emoji.length > 0 && r.emoji.length <= 16) {
          events.push(['reaction', { from: base.from, author: accountKey, target: { author: r.target.author, id: toHex(r.target.messageId) }, emoji: r.emoji, remove: r.remove }]);
        }
        return out;
      }
      case 'edit':
      case 'delete': {
        await applyToHistory(stx, accountKey, inner);
        const id = b.value.messageId;
        if (id.length === 16) {
          if (b.case === 'edit') events.push(['edit', { from: base.from, author: accountKey, id: toHex(id), text: b.value.text }]);
          else events.push(['delete', { from: base.from, author: accountKey, id: toHex(id) }]);
        }
        return out;
      }
      // An invitation made, or answered, on another device of this account (docs/spec/groups.md
      // §G6.3): nothing to file; an answered one is forgotten here too, so it is not answered twice.
      case 'groupInvite':
        return out;
      case 'groupInviteAnswer':
        await this.deps.groups?.forgetAnswered(stx, b.value);
        return out;
      default:
        return refuse(`a copy of a sent message may not carry ${b.case ?? 'nothing'}`);
    }
  }
}

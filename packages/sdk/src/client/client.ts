/**
 * The MeshWhisper client (docs/api.md): a thin facade over modules with one job each —
 * devices.ts (identity, prekeys), directory.ts (recipients, sessions, usernames), sender.ts and
 * outbox.ts (sealing, queueing, delivery), receive.ts (the receive pipeline), contacts.ts,
 * history.ts, timers.ts (disappearing messages), message-states.ts — talking to the network only
 * through a `Transport` (transport.ts). One instance per device identity; any number of instances
 * can live in one process (no singletons). Everything the node sees is sealed ciphertext.
 */
import type { AccountKeyPair, CryptoContext, DeviceAddress, DeviceList, ScannedSafetyNumberResult } from '@meshwhisper/crypto';
import { DeviceFlag, computeSafetyNumber, createContext, deviceAddress, equalBytes, fromHex, mailboxIdOf, safetyNumberGroups, signAccountDeletion, verifyScannedSafetyNumber } from '@meshwhisper/crypto';
import { AccountDeletionRequestSchema, ContactAction, ContentSchema, MAX_USERNAME_CONSENT_MS, ReceiptKind, SignedUsernameOperationSchema, USERNAME_PATTERN, UsernameAction, UsernameRecordSchema, fromBinary, signUsernameOperation, signUsernameTransferConsent } from '@meshwhisper/protocol';
import type { ProtocolStorage } from '../storage/types.js';
import { asStorageTx } from '../storage/types.js';
import { DEFAULT_MAX_DEVICES, GROUP_READ_LOOKBACK, KEY_CHECK_AFTER_CONTACT_MS, KEY_CHECK_MS, MAX_DISAPPEARING_SECONDS, MAX_REPLY_SNIPPET, RECEIPT_MAX_DELAY_MS, RECEIPT_MIN_DELAY_MS, USERNAME_CONSENT_DEFAULT_MS } from '../constants.js';
import type { ConnectionState, WebSocketConstructor } from './connection.js';
import type { ContactCard } from './contact-card.js';
import { CONTACT_CARD_MAX_MAILBOX_IDS, encodeContactCard } from './contact-card.js';
import { Contacts } from './contacts.js';
import { Groups } from './groups/groups.js';
import { DeviceLists } from './device-lists.js';
import { DeviceIdentity, DeviceKeys, loadDeliveryToken, openIdentity } from './devices.js';
import { Directory, checkAccountKey } from './directory.js';
import { SdkError, SdkErrorCode } from './errors.js';
import type { Listener } from './events.js';
import { EventHub } from './events.js';
import type { ConversationSummary, HistoryEntry, Message } from './history.js';
import { conversationPeers, findInHistory, listConversations, markConversationRead as markRead, readHistory, readPage } from './history.js';
import type { ConversationId } from './conversation.js';
import { directConversation, toConversation } from './conversation.js';
import { ensureLayout } from './layout.js';
import { Table } from './tables.js';
import type { ArchiveEnabled, ArchiveStatus, BackupOptions, BackupResult, EnableArchiveOptions, RestoreOptions, RestoredDevice } from './archive.js';
import { Archive, restoreFromArchive } from './archive.js';
import { HistoryReplay } from './replay.js';
import { Gaps } from './gaps.js';
import type { AcceptLinkOptions, CreateLinkOfferOptions, LinkAccepted, LinkOfferHandle, OwnDeviceList } from './link.js';
import { acceptLinkOffer, finishPendingLink, startLinkOffer } from './link.js';
import type { Log } from './log.js';
import { makeLog } from './log.js';
import type { FileAttachment, FileSource, SendFileOptions } from './media.js';
import { downloadFile, downloadFileBytes, uploadFile } from './media.js';
import { readState, readStatus, requeue } from './message-states.js';
import { NodeApi } from './node-api.js';
import { Outbox } from './outbox.js';
import type { PushInfo, PushRegistrationInput } from './push.js';
import { pushInfo, registerPush, unregisterPush } from './push.js';
import type { QrSvgOptions } from './qr.js';
import { qrSvg } from './qr.js';
import { ReceiptQueue } from './receipts.js';
import { ReceivePipeline } from './receive.js';
import type { ContentBody } from './sender.js';
import { Sender } from './sender.js';
import { Timers } from './timers.js';
import { NodeTransport } from './transport.js';
import type { ContactState, IncomingMessage, MeshWhisperEvents, MeshWhisperOptions, MessageRef, MessageState, Recipient, TextOptions, UsernameRecord } from './types.js';

/** How long, after a link, the linking device waits for the new device to register before leaving the group sync to its next group message. */
const LINK_GROUP_SYNC_WAIT_MS = 10 * 60_000;

export type { ContactState, IncomingMessage, MeshWhisperEvents, MeshWhisperOptions, MessageRef, MessageState, Recipient, TextOptions, UndecryptableMessage, UsernameRecord } from './types.js';
export { CONTENT_VERSION, DELIVERY_TOKEN_LENGTH, MAX_DISAPPEARING_SECONDS, PREKEY_BATCH, PREKEY_LOW_WATER } from '../constants.js';

/** The peer of a direct conversation; read receipts in groups are not defined yet. */
function directPeerOf(c: ConversationId | Uint8Array): Uint8Array {
  const conversation = toConversation(c, 'markRead');
  if (conversation.kind !== 'direct') throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'markRead: read receipts exist for direct conversations only');
  return conversation.peer;
}

function messageIdBytes(id: string): Uint8Array {
  const b = /^[0-9a-f]{32}$/.test(id) ? fromHex(id) : undefined;
  if (!b) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'message ids are 32 lower-case hex characters');
  return b;
}

async function defaultWebSocket(): Promise<WebSocketConstructor> {
  const g = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (g) return g;
  const name = 'ws'; // computed, so browser bundlers never try to include it
  const mod = (await import(/* @vite-ignore */ name)) as { default: WebSocketConstructor };
  return mod.default;
}

/**
 * Where a message goes: a recipient (mailbox id, username, account) or a conversation — the direct
 * conversation with an account, or a group (`{ kind: 'group', groupId }`).
 */
export type Destination = Recipient | ConversationId;

function destination(to: Destination): { group?: Uint8Array; recipient: Recipient } {
  if (to && typeof to === 'object' && !(to instanceof Uint8Array) && 'kind' in to) {
    const c = toConversation(to, 'send');
    return c.kind === 'group' ? { group: c.groupId, recipient: new Uint8Array(0) } : { recipient: { accountKey: c.peer } };
  }
  return { recipient: to };
}

export class MeshWhisper {
  readonly #ctx: CryptoContext;
  readonly #storage: ProtocolStorage;
  readonly #api: NodeApi;
  readonly #identity: DeviceIdentity;
  readonly #nodeUrl: string;
  readonly #sharePresence: boolean;
  readonly #events: EventHub;
  readonly #transport: NodeTransport;
  readonly #directory: Directory;
  readonly #contacts: Contacts;
  readonly #timers: Timers;
  readonly #outbox: Outbox;
  readonly #sender: Sender;
  readonly #receiver: ReceivePipeline;
  readonly #receipts: ReceiptQueue;
  readonly #keys: DeviceKeys;
  readonly #log: Log;
  readonly #maxDevices: number;
  readonly #lists: DeviceLists;
  readonly #groups: Groups;
  readonly #archive: Archive;
  readonly #replay: HistoryReplay;
  #closed = false;
  /** Stops background waits (the group sync after a link) when the client closes. */
  readonly #stopping = new AbortController();
  /** The running group sync after a link, awaited at close. */
  #linkGroupSync: Promise<void> = Promise.resolve();
  /** deleteDevice(), deleteAccount() or a verified revocation is erasing this device's storage. */
  #erasing = false;
  /** create() ran while the node was unreachable: the own list and keys go out once online. */
  #publishPending = false;
  #deliveryToken: Uint8Array = new Uint8Array(0);
  /** The token was given to the node (device socket authenticated): only then do peers get it. */
  #deliveryTokenRegistered = false;
  /** The account key pair: present on the device that created the account (stored with the device's other secrets). */
  readonly account: AccountKeyPair | undefined;
  readonly namespace: string;

  private constructor(opts: MeshWhisperOptions, ctx: CryptoContext, identity: DeviceIdentity, account: AccountKeyPair | undefined, WS: WebSocketConstructor) {
    this.#ctx = ctx;
    this.#storage = opts.storage;
    this.#identity = identity;
    this.account = account;
    this.namespace = opts.namespace;
    this.#nodeUrl = opts.node;
    this.#sharePresence = opts.sharePresence !== false;
    const log = (this.#log = makeLog(opts.logger));
    this.#maxDevices = opts.maxDevices ?? DEFAULT_MAX_DEVICES;
    const storage = opts.storage;
    const isClosed = () => this.#closed;
    const events = (this.#events = new EventHub(log, isClosed));
    const emit = events.emit;
    const gaps = new Gaps(emit);
    this.#api = new NodeApi(ctx, opts.node, opts.fetch ?? globalThis.fetch.bind(globalThis), opts.requestTimeoutMs);
    this.#lists = new DeviceLists({ ctx, storage, api: this.#api, emit, self: identity.certificate, account });
    this.#transport = new NodeTransport(this.#api, {
      ctx,
      identity,
      WebSocket: WS,
      sink: {
        deliveryTokens: () => (this.#deliveryToken.length ? [this.#deliveryToken] : []),
        deliver: (envs) => this.#receiver.receive(envs),
        gap: (info) => gaps.node(info),
        state: (s) => {
          // 'online' follows the setDeliveryTokens frame on the same socket.
          if (s === 'online') this.#deliveryTokenRegistered = true;
          emit('connection', s);
          // Back online: whatever the outage left in the outbox goes out now.
          if (s === 'online') this.#outbox.flushSoon('reconnected');
          // Started offline: what create() could not publish goes now (the next online retries on failure).
          if (s === 'online' && this.#publishPending) {
            this.#publishOwnAndKeys().catch((e: unknown) => log.warn('keys.publish-deferred-failed', 'the keys deferred by an offline start could not be published; retried at the next reconnect', e));
          }
        },
        queueEmpty: () => {
          // The backlog is processed: superseded prekeys may be deleted from now on (devices.ts).
          this.#keys.queueDrained();
          gaps.drained();
          emit('synced', undefined);
        },
        stopped: (reason, message, error) => {
          log.warn('transport.stopped', `the device connection stopped (${reason}): ${message}`, error);
          if (error) emit('error', error);
          emit('stopped', { reason, message });
          if (reason === 'device-deleted') void this.#wipeIfRevoked();
        },
        failed: (e) => log.error('receive.batch-failed', 'a delivered batch could not be processed; it was not acknowledged and will be delivered again', e),
      },
    });
    this.#directory = new Directory({ ctx, storage, transport: this.#transport, lists: this.#lists, emit, nodeUrl: opts.node, namespace: opts.namespace, holdOnIdentityChange: opts.holdOnIdentityChange !== false });
    this.#contacts = new Contacts(storage);
    this.#timers = new Timers({ ctx, storage, emit, log });
    this.#outbox = new Outbox({ storage, transport: this.#transport, directory: this.#directory, emit, log });
    this.#sender = new Sender({
      ctx,
      storage,
      accountKey: identity.certificate.accountKey,
      ownMailboxId: mailboxIdOf(ctx, identity.certificate.deviceSigningKey),
      directory: this.#directory,
      lists: this.#lists,
      contacts: this.#contacts,
      timers: this.#timers,
      outbox: this.#outbox,
      transport: this.#transport,
      log,
      emit,
      // A token the node never saw (this client has not connected yet, e.g. `connect: false`) would
      // make the peer's replies fail with 403 in the token lane: it is sent only once registered.
      deliveryToken: () => (this.#deliveryTokenRegistered ? this.#deliveryToken : new Uint8Array(0)),
      isClosed,
    });
    this.#keys = new DeviceKeys({ ctx, storage, api: this.#api, identity, account, lists: this.#lists, log });
    this.#archive = new Archive({ ctx, storage, api: this.#api, identity, account, log });
    this.#receipts = new ReceiptQueue({
      storage,
      delay: opts.receiptDelay ?? { minDelayMs: RECEIPT_MIN_DELAY_MS, maxDelayMs: RECEIPT_MAX_DELAY_MS },
      random: () => new DataView(ctx.random(4).buffer).getUint32(0) / 2 ** 32,
      now: () => ctx.now(),
      log,
      send: async (mailboxId, kind, ids) => {
        const body = { case: 'receipt', value: { kind: kind === 'read' ? ReceiptKind.READ : ReceiptKind.DELIVERED, messageIds: ids } } as const;
        const sealed = await this.#sender.seal({ mailboxId, body });
        // Sealed into the outbox: from here on the outbox retries it.
        this.#outbox.deliverNow(sealed.id, sealed.outboxKey).catch((e: unknown) => log.warn('receipts.post-failed', 'a receipt could not be posted now; it stays in the outbox', e));
        // Receipts go to the account: its other devices hold the same messages (own-device sync).
        if (!sealed.peer) return;
        let others: Uint8Array[] = [];
        try {
          others = await this.#sender.otherDevicesOf(sealed.peer, mailboxId);
        } catch (e) {
          log.warn('receipts.account-lookup-failed', "the sender's other devices could not be looked up: the receipt went to the sending device only", e);
        }
        for (const other of others) {
          try {
            const copy = await this.#sender.seal({ mailboxId: other, body, expectedAccountKey: sealed.peer });
            this.#outbox.deliverNow(copy.id, copy.outboxKey).catch((e: unknown) => log.warn('receipts.post-failed', 'a receipt could not be posted now; it stays in the outbox', e));
          } catch (e) {
            log.warn('receipts.copy-failed', "a receipt for another device of the sender's account could not be sealed", e);
          }
        }
      },
    });
    this.#groups = new Groups({
      ctx,
      storage,
      identity,
      nodeUrl: opts.node,
      directory: this.#directory,
      lists: this.#lists,
      sender: this.#sender,
      outbox: this.#outbox,
      transport: this.#transport,
      timers: this.#timers,
      emit,
      log,
      deliveryToken: () => (this.#deliveryTokenRegistered ? this.#deliveryToken : new Uint8Array(0)),
      isClosed,
    });
    const groups = this.#groups;
    const policy = opts.historyReplay ?? 'ask';
    if (policy !== 'ask' && policy !== 'always' && policy !== 'never') throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, "historyReplay must be 'ask', 'always' or 'never'");
    this.#replay = new HistoryReplay({
      ctx,
      storage,
      accountKey: identity.certificate.accountKey,
      sender: this.#sender,
      directory: this.#directory,
      contacts: this.#contacts,
      log,
      policy,
      group: (store, groupId) => groups.membership(store, groupId),
    });
    this.#receiver = new ReceivePipeline({
      groups,
      replay: this.#replay,
      gaps,
      resolveConversation: (stx, input) => groups.resolveConversation(stx, input),
      ctx,
      storage,
      accountKey: identity.certificate.accountKey,
      lists: this.#lists,
      contacts: this.#contacts,
      directory: this.#directory,
      timers: this.#timers,
      sender: this.#sender,
      receipts: this.#receipts,
      transport: this.#transport,
      emit,
      log,
      onFirstContact: () => this.#keys.schedule(KEY_CHECK_AFTER_CONTACT_MS),
    });
  }

  /** Opens (or, on first use, creates) this device's identity, publishes its keys and connects. */
  static async create(opts: MeshWhisperOptions): Promise<MeshWhisper> {
    if (!opts || typeof opts.node !== 'string' || typeof opts.namespace !== 'string' || !opts.storage) {
      throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'MeshWhisper.create: node, namespace and storage are required');
    }
    const ctx = opts.crypto ?? createContext();
    const opened = await openIdentity(ctx, opts.storage);
    const identity = new DeviceIdentity(opened.identity);
    const account = opened.account;
    // Older client tables are migrated (one transaction); a newer layout is refused, never misread.
    await ensureLayout(opts.storage, ctx);
    const client = new MeshWhisper(opts, ctx, identity, account, opts.WebSocket ?? (await defaultWebSocket()));
    client.#deliveryToken = await loadDeliveryToken(ctx, opts.storage);
    try {
      await client.#publishOwnAndKeys();
    } catch (e) {
      // A device the node has accepted before starts from its storage while the node is unreachable
      // (history, contacts, the outbox); it publishes once the socket is online again.
      if (!(e instanceof SdkError && e.code === SdkErrorCode.UNREACHABLE && (await opts.storage.getItem(Table.Self, 'certificate-published')))) throw e;
      client.#publishPending = true;
      client.#log.warn('keys.publish-deferred', 'the node is unreachable: starting from local storage; keys are published once the connection is online', e);
    }
    // A link this device was in the middle of when it stopped: keep or drop the half-added device.
    if (!client.#publishPending && client.account) await client.#finishPendingLink();
    // Envelopes sealed before a crash or while the node was unreachable go out now, as the same bytes.
    await client.flushOutbox();
    // Messages whose disappearing timer ran out while the app was closed go now.
    await client.#timers.sweep();
    // Unconfirmed messages kept for re-sending stay bounded in age and number (unconfirmed.ts).
    await client.#sender.pruneUnconfirmed();
    // Receipts a previous run left waiting go out at their due time.
    await client.#receipts.start();
    client.#keys.schedule(KEY_CHECK_MS);
    // Connect last: the socket's handshake needs network round trips, so nothing can be delivered
    // before the caller's code after `await create()` has registered its listeners.
    if (opts.connect !== false) client.#transport.start();
    // Items kept for a group that arrived before the last stop, whose replay did not finish: after
    // the caller registered its listeners (a timer, not a microtask).
    setTimeout(() => {
      if (client.#closed) return;
      client.#receiver.resumePending().catch((e: unknown) => client.#log.warn('receive.pending-resume-failed', 'items kept for a group could not be replayed at start', e));
    }, 0);
    return client;
  }

  /**
   * On a NEW device (empty storage): opens a one-time link channel on the node and returns the
   * offer to show as a QR code. An existing device of the account scans it (acceptLinkOffer);
   * `completed` then resolves with this device's client, on the account, with its contacts, blocks,
   * settings and (if the user chose) recent history (docs/api.md §Devices).
   */
  static async createLinkOffer(options: MeshWhisperOptions & CreateLinkOfferOptions): Promise<LinkOfferHandle<MeshWhisper>> {
    if (!options || typeof options.node !== 'string' || typeof options.namespace !== 'string' || !options.storage) {
      throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'MeshWhisper.createLinkOffer: node, namespace and storage are required');
    }
    const ctx = options.crypto ?? createContext();
    const api = new NodeApi(ctx, options.node, options.fetch ?? globalThis.fetch.bind(globalThis), options.requestTimeoutMs);
    const { deviceName, onIntroduced, ...createOptions } = options;
    return startLinkOffer(
      { ctx, api, storage: options.storage, nodeUrl: options.node, log: makeLog(options.logger) },
      { ...(deviceName !== undefined ? { deviceName } : {}), ...(onIntroduced ? { onIntroduced } : {}) },
      () => MeshWhisper.create({ ...createOptions, crypto: ctx }),
    );
  }

  /** The node accepts this device's keys and login only once the account's list names it: the list first. */
  async #publishOwnAndKeys(): Promise<void> {
    await this.#lists.publishOwn();
    await this.publishKeys();
    this.#publishPending = false;
  }

  /**
   * On a FRESH device (empty storage): restores the account from its encrypted archive with the
   * recovery key (the default) or the passphrase, joins the account's device list as a manager (the
   * archive carries the account key) and returns the connected client (docs/api.md §Recovery).
   * Rerun after a crash with the same storage, it finishes what the killed run started.
   */
  static async restoreFromArchive(options: MeshWhisperOptions & RestoreOptions): Promise<RestoredDevice<MeshWhisper>> {
    if (!options || typeof options.node !== 'string' || typeof options.namespace !== 'string' || !options.storage) {
      throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'MeshWhisper.restoreFromArchive: node, namespace and storage are required');
    }
    const ctx = options.crypto ?? createContext();
    const api = new NodeApi(ctx, options.node, options.fetch ?? globalThis.fetch.bind(globalThis), options.requestTimeoutMs);
    const createOptions: MeshWhisperOptions & Partial<RestoreOptions> = { ...options };
    for (const k of ['recoveryKey', 'passphrase', 'accountKey', 'username', 'revokeOtherDevices', 'onProgress'] as const) delete createOptions[k];
    return restoreFromArchive(
      { ctx, api, storage: options.storage, namespace: options.namespace, maxDevices: options.maxDevices ?? DEFAULT_MAX_DEVICES, log: makeLog(options.logger) },
      options,
      async () => {
        const client = await MeshWhisper.create({ ...createOptions, crypto: ctx });
        // Archived groups: take this account's place back (docs/spec/groups.md §G6.5). Idempotent, so
        // a restore killed here and run again rejoins what is left.
        if (client.account) await client.#groups.rejoinAfterRestore(client.account);
        return client;
      },
    );
  }

  #checkOpen(): void {
    if (this.#closed) throw new SdkError(SdkErrorCode.CLOSED, 'client is closed');
  }

  // ── Identity and lifecycle ────────────────────────────────────────────────────────────────

  /** This device's mailbox id: what a contact needs to send to it. */
  get mailboxId(): Uint8Array {
    return mailboxIdOf(this.#ctx, this.#identity.certificate.deviceSigningKey);
  }
  get accountKey(): Uint8Array {
    return this.#identity.certificate.accountKey;
  }
  get address(): DeviceAddress {
    return deviceAddress(this.#identity.certificate);
  }
  /** Opens the device connection (only needed when created with `connect: false`). */
  connect(): void {
    this.#checkOpen();
    this.#transport.start();
  }

  get connectionState(): ConnectionState {
    return this.#transport.state;
  }

  on<K extends keyof MeshWhisperEvents>(event: K, listener: Listener<MeshWhisperEvents[K]>): () => void {
    return this.#events.on(event, listener);
  }

  /** Resolves with the next `event` (convenience for scripts and tests). */
  once<K extends keyof MeshWhisperEvents>(event: K, predicate: (v: MeshWhisperEvents[K]) => boolean = () => true, timeoutMs = 10_000): Promise<MeshWhisperEvents[K]> {
    // Nothing will ever be emitted again: say so now rather than after the timeout.
    if (this.#closed) return Promise.reject(new SdkError(SdkErrorCode.CLOSED, 'client is closed'));
    return this.#events.once(event, predicate, timeoutMs);
  }

  /**
   * The events of one kind as an async iterator (`for await (const m of client.iterate('message'))`).
   * Events are buffered from this call on, so none is missed while the loop body runs; the iteration
   * ends when the client closes, when `signal` aborts, or when the loop breaks.
   */
  iterate<K extends keyof MeshWhisperEvents>(event: K, options: { signal?: AbortSignal } = {}): AsyncIterableIterator<MeshWhisperEvents[K]> {
    return this.#events.iterate(event, options);
  }

  /**
   * Renews this device's certificate if it is due (less than 30 days left; a device without the
   * account key adopts the renewal a manager left on the node), uploads it, and rotates and tops up
   * this device's prekeys on the node now; on a manager device whose queue was processed, also
   * renews the certificates of the account's other devices that are due (docs/api.md §Devices).
   * Also done at create and on a schedule.
   */
  async publishKeys(): Promise<void> {
    this.#checkOpen();
    return this.#keys.check();
  }

  /**
   * Hands every queued envelope to the node. An envelope leaves the outbox only once the node has
   * durably accepted it, or the node said it can never be delivered. Returns how many were sent.
   */
  async flushOutbox(): Promise<number> {
    this.#checkOpen();
    return this.#outbox.flush();
  }

  /** Waits until everything received so far has been processed. */
  async idle(): Promise<void> {
    await this.#transport.idle();
  }

  /** Disconnects and releases the storage. The client cannot be used afterwards. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#shutdown();
    await this.#storage.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Stops timers, lets a running outbox flush finish, and closes the connection. */
  async #shutdown(): Promise<void> {
    this.#closed = true;
    this.#stopping.abort();
    await this.#linkGroupSync;
    // First: a receipt being sealed finishes before the outbox stops; the others stay stored.
    await this.#receipts.close();
    this.#timers.stop();
    this.#keys.stop();
    await this.#outbox.stop();
    await this.#transport.close();
  }

  // ── Devices (docs/api.md §Devices, docs/spec/linking.md) ──────────────────────────────────

  /**
   * Links a new device from the link offer it shows (the scanned QR bytes): certifies it, publishes
   * the account's next device list, and hands over contacts, blocks, settings and, with `history`,
   * recent messages. Only a manager device (one that holds the account key) can link. Resolves once
   * the new device has stored everything.
   */
  async acceptLinkOffer(payload: Uint8Array, options: AcceptLinkOptions = {}): Promise<LinkAccepted> {
    this.#checkOpen();
    const r = await acceptLinkOffer(
      {
        ctx: this.#ctx,
        api: this.#api,
        storage: this.#storage,
        account: this.account,
        nodeUrl: this.#nodeUrl,
        log: this.#log,
        maxDevices: this.#maxDevices,
        // Linking adds the device through the account's list (signed one epoch up, published, kept).
        ownList: this.#ownList(),
      },
      payload,
      options,
    );
    this.#sender.forgetOwnDevices();
    // The new device registers with the node only when it starts its client, after this resolves:
    // once the node lists it, the account's groups take it in (docs/spec/groups.md §G6.2).
    const previous = this.#linkGroupSync;
    this.#linkGroupSync = previous.then(() => this.#syncGroupsWhenRegistered(r.mailboxId));
    return r;
  }

  /**
   * Waits (backing off, up to LINK_GROUP_SYNC_WAIT_MS; stops at close) until the node lists
   * `mailboxId` among the account's registered devices, then brings every group this device is in
   * in line with the device list (groups.followOwnDevices). If it gives up, the next message the
   * account sends to a group still adds the device. Never throws.
   */
  async #syncGroupsWhenRegistered(mailboxId: Uint8Array): Promise<void> {
    const signal = this.#stopping.signal;
    const until = Date.now() + LINK_GROUP_SYNC_WAIT_MS;
    let delay = 100;
    try {
      for (;;) {
        if (signal.aborted) return;
        const devices = await this.#transport.accountDevices(this.accountKey).catch(() => undefined);
        if (devices?.mailboxIds.some((m) => equalBytes(m, mailboxId))) break;
        if (Date.now() + delay > until) {
          this.#log.warn('link.group-sync-gave-up', "the linked device did not register with the node in time; the account's next message in each group adds it");
          return;
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
        });
        delay = Math.min(delay * 2, 5_000);
      }
      if (signal.aborted) return;
      await this.#groups.followOwnDevices();
    } catch (e) {
      if (!signal.aborted) this.#log.warn('link.group-sync-failed', "the account's groups could not take in the linked device now; the next message in each group does", e);
    }
  }

  /** The account's list as this device manages it when linking (sign one epoch up, publish, keep). */
  #ownList(): OwnDeviceList {
    return {
      held: () => this.#lists.held(),
      add: (signingKey, o) => this.#lists.add(signingKey, o),
      remove: async (deviceIndex) => {
        await this.#lists.revoke(deviceIndex);
      },
    };
  }

  /** finishPendingLink at start-up; a failure is logged and retried at the next start. */
  async #finishPendingLink(): Promise<void> {
    try {
      const outcome = await finishPendingLink({
        ctx: this.#ctx,
        storage: this.#storage,
        ownList: this.#ownList(),
        registered: async (mailboxId) => (await this.#transport.accountDevices(this.accountKey)).mailboxIds.some((m) => equalBytes(m, mailboxId)),
      });
      if (outcome === 'removed') this.#log.warn('link.pending-removed', 'a device whose link was interrupted by a stop of this device never finished linking: it was taken off the device list again');
    } catch (e) {
      this.#log.warn('link.pending-check-failed', 'an interrupted link could not be checked now; the next start tries again', e);
    }
  }

  // ── Push wake (docs/push.md, docs/api-push.md) ────────────────────────────────────────────

  /** Sets where the node rings this device when mail arrives while it is offline (replaces any earlier endpoint). */
  async registerPush(registration: PushRegistrationInput): Promise<void> {
    this.#checkOpen();
    await registerPush(this.#api, this.#identity, registration);
  }
  /** Removes this device's push endpoint (no error when none was registered). */
  async unregisterPush(): Promise<void> {
    this.#checkOpen();
    await unregisterPush(this.#api, this.#identity);
  }
  /** Which push services the node can ring, and its VAPID key (the browser's applicationServerKey). */
  async pushInfo(): Promise<PushInfo> {
    this.#checkOpen();
    return pushInfo(this.#api);
  }

  // ── Usernames (docs/spec/node-protocol.md §7) ─────────────────────────────────────────────

  async #usernameOperation(username: string, action: UsernameAction, transfer?: { newOwnerKey: Uint8Array; consent: Uint8Array }): Promise<void> {
    if (!this.account) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'this device does not hold the account key');
    const challenge = await this.#api.challenge();
    const signed = signUsernameOperation(this.#ctx, this.account, {
      namespace: this.namespace,
      username,
      action,
      signerKey: this.account.publicKey,
      ...(transfer ? { newOwnerKey: transfer.newOwnerKey, transferConsent: transfer.consent } : {}),
      challenge,
    });
    await this.#api.call('POST', '/v1/usernames', { body: { schema: SignedUsernameOperationSchema, value: signed }, reply: UsernameRecordSchema });
  }

  /** Claims `username` in this client's namespace for this account (policy per namespace: docs/self-hosting.md). */
  async claimUsername(username: string): Promise<void> {
    this.#checkOpen();
    return this.#usernameOperation(username, UsernameAction.CLAIM);
  }
  /** Gives up `username`. */
  async releaseUsername(username: string): Promise<void> {
    this.#checkOpen();
    return this.#usernameOperation(username, UsernameAction.RELEASE);
  }
  /**
   * Signs `username` over to another account, which must have consented: `consent` is what that
   * account's consentToUsernameTransfer returned (the node refuses a transfer without it).
   */
  async transferUsername(username: string, newOwnerAccountKey: Uint8Array, consent: Uint8Array): Promise<void> {
    this.#checkOpen();
    checkAccountKey(newOwnerAccountKey);
    if (!(consent instanceof Uint8Array) || consent.length === 0) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'transferUsername needs the receiving account’s consent (consentToUsernameTransfer)');
    return this.#usernameOperation(username, UsernameAction.TRANSFER, { newOwnerKey: newOwnerAccountKey, consent });
  }
  /**
   * This account's signed consent to receive `username` (in this client's namespace) from the
   * account `fromAccountKey`, its current owner. Made offline; hand the bytes to the owner (in a
   * message, say), who passes them to transferUsername. Valid for `validForMs` (default a day, at
   * most MAX_USERNAME_CONSENT_MS = 7 days) and, within that time, usable more than once.
   */
  consentToUsernameTransfer(username: string, fromAccountKey: Uint8Array, options: { validForMs?: number } = {}): Uint8Array {
    this.#checkOpen();
    if (!this.account) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'this device does not hold the account key');
    checkAccountKey(fromAccountKey);
    if (typeof username !== 'string' || !USERNAME_PATTERN.test(username)) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'username must be 1–64 of a-z 0-9 _ . - and start with a letter or digit');
    const validForMs = options.validForMs ?? USERNAME_CONSENT_DEFAULT_MS;
    if (!Number.isSafeInteger(validForMs) || validForMs < 1 || validForMs > MAX_USERNAME_CONSENT_MS) {
      throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `validForMs must be an integer in [1, ${MAX_USERNAME_CONSENT_MS}]`);
    }
    return signUsernameTransferConsent(this.#ctx, this.account, {
      namespace: this.namespace,
      username,
      previousOwnerKey: fromAccountKey,
      newOwnerKey: this.account.publicKey,
      expiresAtMs: BigInt(this.#ctx.now() + validForMs),
    });
  }
  /** Resolves a username in this namespace. The node could lie: compare safety numbers before trusting it. */
  async lookupUsername(username: string): Promise<UsernameRecord> {
    this.#checkOpen();
    const { namespace, accountKey, mailboxIds } = await this.#directory.lookupUsername(username);
    return { namespace, username, accountKey, mailboxIds };
  }
  /** Trusts the account key the directory now names for `username` (after comparing safety numbers). */
  async acceptIdentityChange(username: string): Promise<void> {
    this.#checkOpen();
    return this.#directory.acceptIdentityChange(username);
  }

  // ── Deletion (docs/spec/node-protocol.md §10) ─────────────────────────────────────────────

  /**
   * Deletes this account everywhere: the node removes every device of the account (mailboxes,
   * queued mail, keys, push registrations, media), its usernames and its archive; then this device
   * erases its storage (identity, sessions, history) and the client closes. Irreversible.
   */
  async deleteAccount(): Promise<void> {
    this.#checkOpen();
    // The node deletes an account only on the account key's statement (docs/spec/02-keys.md §2.8).
    if (!this.account) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'only a manager device (one that holds the account key) can delete the account');
    const own = (await this.#lists.held()) ?? (await this.#lists.fetch(this.accountKey));
    if (!own) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'this device holds no device list for its account');
    const statement = signAccountDeletion(this.#ctx, this.account, own.epoch, await this.#api.challenge());
    const value = { accountKey: statement.accountKey, epoch: BigInt(statement.epoch), challenge: statement.challenge, signature: statement.signature };
    this.#erasing = true;
    const res = await this.#api.rawCall('DELETE', '/v1/account', undefined, { schema: AccountDeletionRequestSchema, value });
    await this.#erase(res);
  }

  /**
   * Removes this one device from the node (other devices of the account stay) and erases its
   * storage. On a manager device, while another manager remains on the list, the device first
   * revokes itself from the account's device list (the node then deletes it in the same
   * transaction); otherwise the node deletes its registration and the list entry stays until a
   * manager revokes it (docs/spec/node-protocol.md §10).
   */
  async deleteDevice(): Promise<void> {
    this.#checkOpen();
    const self = this.#identity.certificate.deviceIndex;
    const own = this.account ? await this.#lists.held() : undefined;
    this.#erasing = true;
    if (own && own.devices.some((d) => d.deviceIndex !== self && (d.flags & DeviceFlag.Manager) !== 0)) {
      try {
        await this.#lists.revoke(self);
      } catch (e) {
        this.#erasing = false;
        throw e;
      }
      await this.#erase(undefined);
      return;
    }
    await this.#erase(await this.#api.rawCall('DELETE', '/v1/device', this.#identity));
  }

  /**
   * The node says this device was deleted. It wipes itself — closes and erases its storage
   * (identity, sessions, history, outbox) — only when the account says so: a device list signed by
   * the account key, newer than the one held (DeviceLists.fetch verifies both), that no longer names
   * this device. The node's word alone is not enough (a node could otherwise make devices destroy
   * their data): without such a list the device only stays stopped, and says why in the log.
   */
  async #wipeIfRevoked(): Promise<void> {
    if (this.#closed || this.#erasing) return; // deleteDevice()/deleteAccount() erase by themselves
    const { deviceIndex, deviceSigningKey } = this.#identity.certificate;
    let list: DeviceList | undefined;
    try {
      list = await this.#lists.fetch(this.accountKey);
    } catch (e) {
      this.#log.warn('device.revocation-unverified', 'the node says this device was deleted, but no valid device list of the account confirms it: not wiping', e);
      return;
    }
    if (!list || list.devices.some((d) => d.deviceIndex === deviceIndex && equalBytes(d.signingKey, deviceSigningKey))) {
      this.#log.warn('device.revocation-unverified', "the node says this device was deleted, but the account's device list still names it (or there is none): not wiping");
      return;
    }
    if (this.#closed || this.#erasing) return;
    this.#erasing = true;
    try {
      await this.#shutdown();
      await this.#storage.erase();
    } catch (e) {
      this.#log.error('device.wipe-failed', 'this device was revoked but its storage could not be erased', e);
      return;
    }
    this.#events.emit('wiped', { reason: 'revoked', epoch: list.epoch });
  }

  async #erase(res: Response | undefined): Promise<void> {
    await res?.body?.cancel();
    await this.#shutdown();
    await this.#storage.erase();
  }

  // ── Device lists (docs/spec/02-keys.md §2.5) ─────────────────────────────────────────────

  /**
   * The newest verified device list this device holds for an account (its own by default), fetched
   * from the node and verified when none is held yet. Undefined when the account has none.
   */
  async deviceList(accountKey: Uint8Array = this.accountKey): Promise<DeviceList | undefined> {
    this.#checkOpen();
    checkAccountKey(accountKey);
    return this.#lists.current(accountKey);
  }
  /** Fetches an account's list from the node now and verifies it against the one held (see deviceListWithheld). */
  async refreshDeviceList(accountKey: Uint8Array = this.accountKey): Promise<DeviceList | undefined> {
    this.#checkOpen();
    checkAccountKey(accountKey);
    return this.#lists.fetch(accountKey);
  }
  /**
   * Manager devices only: puts another device's signing key on this account's list (the next free
   * index, a new epoch), publishes it, and returns the index to certify that device with.
   */
  async addDevice(signingKey: Uint8Array, options: { manager?: boolean } = {}): Promise<{ deviceIndex: number; list: DeviceList }> {
    this.#checkOpen();
    return this.#lists.add(signingKey, options);
  }
  /**
   * Manager devices only: removes the device with this index from the account's list. The node
   * deletes it at once (keys, queued mail, connection) and peers refuse its messages from then on.
   */
  async revokeDevice(deviceIndex: number): Promise<DeviceList> {
    this.#checkOpen();
    if (!Number.isInteger(deviceIndex) || deviceIndex < 0) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'deviceIndex must be a non-negative integer');
    return this.#lists.revoke(deviceIndex);
  }

  // ── Sending (docs/api.md) ─────────────────────────────────────────────────────────────────

  /**
   * Sends a text message: to one device (mailbox id) or to every device of a username's account.
   * Resolves when the node has durably stored it for each device (or the device acknowledged it
   * before the node's commit, which then never writes it).
   */
  async sendText(to: Destination, text: string, options: TextOptions = {}): Promise<{ id: string }> {
    this.#checkOpen();
    if (typeof text !== 'string') throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'text must be a string');
    const r = options.replyTo;
    return this.#sendTo(to, {
      case: 'text',
      value: {
        text,
        ...(r ? { replyTo: { author: r.author, messageId: messageIdBytes(r.id) }, replySnippet: (r.snippet ?? '').slice(0, MAX_REPLY_SNIPPET) } : {}),
        ...(options.forwarded ? { forwarded: true } : {}),
      },
    });
  }

  /** Sends arbitrary bytes with a MIME type. */
  async sendBinary(to: Destination, data: Uint8Array, mimeType = 'application/octet-stream'): Promise<{ id: string }> {
    this.#checkOpen();
    return this.#sendTo(to, { case: 'binary', value: { data, mimeType } });
  }

  /**
   * Sends a file as an encrypted attachment (docs/api.md §Files): encrypts it streaming under a
   * fresh key, uploads the ciphertext to the node's blob store, then sends the key and digest in a
   * message (same fan-out as sendText). `options.size` is required for a stream or iterable source.
   */
  async sendFile(to: Destination, source: FileSource, options: SendFileOptions): Promise<{ id: string; file: FileAttachment }> {
    this.#checkOpen();
    const { body, file } = await uploadFile({ ctx: this.#ctx, api: this.#api, identity: this.#identity }, source, options);
    try {
      const { id } = await this.#sendTo(to, { case: 'file', value: body });
      return { id, file };
    } finally {
      body.key?.fill(0); // sealed by now (or never sent); `file` keeps its own copy for downloadFile
    }
  }

  /** Downloads an attachment as a stream of verified plaintext; it errors with MW_SDK_MEDIA_CORRUPT on tampering. */
  async downloadFile(file: FileAttachment): Promise<ReadableStream<Uint8Array>> {
    this.#checkOpen();
    return downloadFile(this.#ctx, this.#api, file);
  }

  /** Downloads an attachment into memory (for small files). */
  async downloadFileBytes(file: FileAttachment): Promise<Uint8Array> {
    this.#checkOpen();
    return downloadFileBytes(this.#ctx, this.#api, file);
  }

  /** Forwards a received text (marked as forwarded; its original author is not claimed). */
  async forward(to: Destination, message: Pick<IncomingMessage, 'text'>): Promise<{ id: string }> {
    this.#checkOpen();
    if (typeof message.text !== 'string') throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'only text messages can be forwarded this way');
    return this.sendText(to, message.text, { forwarded: true });
  }

  /** Adds (or, with `remove`, removes) an emoji reaction to a message. */
  async react(to: Destination, target: MessageRef, emoji: string, options: { remove?: boolean } = {}): Promise<{ id: string }> {
    this.#checkOpen();
    if (typeof emoji !== 'string' || emoji.length === 0 || emoji.length > 16) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'emoji must be 1–16 characters');
    return this.#sendTo(to, { case: 'reaction', value: { target: { author: target.author, messageId: messageIdBytes(target.id) }, emoji, remove: options.remove === true } });
  }

  /** Edits one of this account's own messages for the recipients. */
  async editMessage(to: Destination, id: string, text: string): Promise<{ id: string }> {
    this.#checkOpen();
    return this.#sendTo(to, { case: 'edit', value: { messageId: messageIdBytes(id), text } });
  }

  /** Deletes one of this account's own messages for everyone. Receivers honour it only for the author. */
  async deleteMessage(to: Destination, id: string): Promise<{ id: string }> {
    this.#checkOpen();
    return this.#sendTo(to, { case: 'delete', value: { messageId: messageIdBytes(id) } });
  }

  /** Ephemeral typing indicator (never stored by the node, never wakes a device). */
  async setTyping(to: Destination, typing: boolean): Promise<void> {
    this.#checkOpen();
    const d = destination(to);
    if (d.group) return this.#groups.sendEphemeral(d.group, { case: 'typing', value: { typing } });
    await this.#sender.sendEphemeral(d.recipient, { case: 'typing', value: { typing } });
  }

  /** Ephemeral presence (online / last seen); does nothing when the client opted out (`sharePresence: false`). */
  async setPresence(to: Recipient, online: boolean): Promise<void> {
    this.#checkOpen();
    if (!this.#sharePresence) return;
    await this.#sender.sendEphemeral(to, { case: 'presence', value: { online, lastSeen: BigInt(this.#ctx.now()) } });
  }

  async #sendTo(to: Destination, body: ContentBody): Promise<{ id: string; peer: Uint8Array | undefined }> {
    this.#checkOpen();
    const d = destination(to);
    if (d.group) return { ...(await this.#groups.send(d.group, body)), peer: undefined };
    return this.#sender.sendTo(d.recipient, body);
  }

  /**
   * Groups (docs/api.md §Groups): create, invite (account, username, link/QR) with accept/decline,
   * add, kick, leave, rename, promote, transfer admin, make admin-less, info, list, per-member
   * receipts. Messages go to a group with the ordinary calls (sendText, sendFile, react, editMessage,
   * deleteMessage, forward, setTyping, setDisappearingTimer, markRead) and `{ kind: 'group', groupId }`.
   */
  get groups(): Groups {
    return this.#groups;
  }

  // ── Recovery: the encrypted account archive (docs/api.md §Recovery) ─────────────────────

  /**
   * Sets up the account archive on this (manager) device and stores its first version: returns the
   * new recovery key to show the user once (or, with `passphrase`, protects it with that instead;
   * with `recoveryKey`, joins the archive another device of the account set up).
   */
  async enableArchive(options: EnableArchiveOptions = {}): Promise<ArchiveEnabled> {
    this.#checkOpen();
    return this.#archive.enable(options);
  }

  /** Stores a new archive version: this device's changes merged into the node's current version (compare-and-swap, retried on a race). */
  async backup(options: BackupOptions = {}): Promise<BackupResult> {
    this.#checkOpen();
    return this.#archive.backup(options);
  }

  /** Whether the archive is set up on this device, how it is protected, and the version it last saw. */
  async archiveStatus(): Promise<ArchiveStatus> {
    this.#checkOpen();
    return this.#archive.status();
  }

  /**
   * Asks the devices of `peer` (an accepted contact) to replay your direct conversation to this
   * device — or, with `groupId`, the group's history as `peer` (another member) holds it. Their app
   * decides (MeshWhisperOptions.historyReplay); the answer arrives as `historyReplayed` events, the
   * messages merged into the history (marked `replayed`, nothing twice).
   */
  async requestHistoryReplay(peer: Uint8Array, options: { maxMessages?: number; groupId?: Uint8Array } = {}): Promise<{ requestId: string }> {
    this.#checkOpen();
    return this.#replay.request(peer, options);
  }

  /** Answers a `historyReplayRequest` event: `allow` replays the conversation to the asking device, otherwise it is told no. */
  async answerHistoryReplay(requestId: string, allow: boolean): Promise<void> {
    this.#checkOpen();
    return this.#replay.answer(requestId, allow);
  }

  // ── Message states ────────────────────────────────────────────────────────────────────────

  /**
   * Tells the sender that these of its messages were read (a read receipt). `target` is the received
   * message (its `fromMailboxId` and `sender`), or the conversation (a ConversationId — direct or a
   * group this device is in — or the peer's account key): then each message's sending device is
   * taken from the history, so an app can answer messages it read from `history()`. Resolves once
   * the receipt is queued (stored); it goes out after a random delay (MeshWhisperOptions.receiptDelay).
   */
  async markRead(target: (Pick<IncomingMessage, 'fromMailboxId' | 'sender'> & { conversation?: ConversationId }) | ConversationId | Uint8Array, messageIds: string[]): Promise<void> {
    this.#checkOpen();
    if (!Array.isArray(messageIds)) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'markRead: messageIds must be an array of message ids');
    for (const id of messageIds) messageIdBytes(id);
    if (messageIds.length === 0) return;
    const byMessage = target && typeof target === 'object' && 'fromMailboxId' in target;
    if (!byMessage && !(target instanceof Uint8Array) && target?.kind === 'group') return this.#markGroupRead(target, messageIds);
    const peer = byMessage ? target.sender.accountKey : directPeerOf(target as ConversationId | Uint8Array);
    // No read receipts to a contact request: the sender learns nothing until the user accepts. In a
    // group this device is in, members get them (the sender sees who read: groups.receipts).
    const conversation = byMessage ? target.conversation : undefined;
    const inGroup = conversation?.kind === 'group' && (await this.#groups.isMember(conversation.groupId));
    if (!inGroup && (await this.contactState(peer)) !== 'accepted') return;
    const ids = messageIds.map(fromHex);
    if (byMessage) {
      await this.#receipts.add(target.fromMailboxId, 'read', ids);
    } else {
      // From the history: each message's sending device (its mailbox) gets the receipt for its messages.
      const byDevice = new Map<string, { mailboxId: Uint8Array; ids: Uint8Array[] }>();
      for (const id of messageIds) {
        const stored = await findInHistory(this.#storage, peer, id);
        const deviceKey = stored?.from.split(':')[1];
        if (!deviceKey || !/^[0-9a-f]{64}$/.test(deviceKey)) continue; // not a message of this peer on this device
        const mailboxId = mailboxIdOf(this.#ctx, fromHex(deviceKey));
        const group = byDevice.get(deviceKey) ?? byDevice.set(deviceKey, { mailboxId, ids: [] }).get(deviceKey)!;
        group.ids.push(fromHex(id));
      }
      for (const { mailboxId, ids: some } of byDevice.values()) await this.#receipts.add(mailboxId, 'read', some);
    }
    // Read here = read on the account's other devices too (own-device sync).
    await this.#sender.syncRead(peer, ids);
  }

  /** markRead for a group read from history(): each message's sending device (the history's `from`) gets a receipt for its messages. */
  async #markGroupRead(conversation: Extract<ConversationId, { kind: 'group' }>, messageIds: string[]): Promise<void> {
    if (!(await this.#groups.isMember(conversation.groupId))) return;
    const wanted = new Set(messageIds);
    const byDevice = new Map<string, Uint8Array[]>();
    for (const e of await this.history(conversation, { limit: GROUP_READ_LOOKBACK })) {
      const deviceKey = e.from?.split(':')[1];
      if (e.outgoing || !wanted.has(e.id) || !deviceKey || !/^[0-9a-f]{64}$/.test(deviceKey)) continue;
      (byDevice.get(deviceKey) ?? byDevice.set(deviceKey, []).get(deviceKey)!).push(fromHex(e.id));
    }
    for (const [deviceKey, ids] of byDevice) await this.#receipts.add(mailboxIdOf(this.#ctx, fromHex(deviceKey)), 'read', ids);
  }

  /** The state of a message this device sent, or undefined for an unknown id. */
  async messageState(id: string): Promise<MessageState | undefined> {
    this.#checkOpen();
    return (await this.messageStatus(id))?.state;
  }

  /** The state of a message this device sent and, for 'failed', why. */
  async messageStatus(id: string): Promise<{ state: MessageState; reason?: string } | undefined> {
    this.#checkOpen();
    return readStatus(this.#storage, id);
  }

  /**
   * Tries a message this device sent again. Still queued (node unreachable): its sealed envelopes go
   * out now, as the same bytes. Failed (its recipient device is gone): the same message — same id,
   * so nobody is shown it twice — is sent to every current device of the conversation's account.
   * Resolves with the state afterwards. A message that disappeared cannot be retried.
   */
  async retry(id: string): Promise<MessageState> {
    this.#checkOpen();
    messageIdBytes(id);
    const status = await this.messageStatus(id);
    if (!status) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `no message ${id} was sent from this device`);
    if (status.state === 'queued') {
      await this.#outbox.deliverMessage(id);
      return (await this.messageState(id)) ?? 'queued';
    }
    if (status.state !== 'failed') return status.state;
    const stored = await findInHistory(this.#storage, this.accountKey, id);
    if (!stored) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `message ${id} is no longer in the history (it disappeared or was deleted): it cannot be retried`);
    const content = fromBinary(ContentSchema, stored.content);
    const requeued = await this.#storage.transaction((tx) => requeue(asStorageTx(tx), id)); // failed → queued again, explicitly
    if (requeued) this.#events.emit('messageState', requeued);
    const { mailboxes } = await this.#directory.resolve({ accountKey: stored.peer });
    for (const mailboxId of mailboxes) await this.#sender.sendToDevice({ mailboxId, body: content.body, messageId: content.messageId, expectedAccountKey: stored.peer, userAction: true });
    return (await this.messageState(id)) ?? 'queued';
  }

  // ── Conversations, contacts, disappearing messages (docs/api.md) ──────────────────────────

  /**
   * A stored conversation, oldest first: texts after their latest edit, deleted messages as
   * tombstones, current reactions, disappeared messages gone. `conversation` is a ConversationId or
   * a peer's account key (the direct conversation). `limit` returns the newest `limit` entries;
   * `before` (a receivedAt) pages back. For long conversations prefer historyPage().
   */
  async history(conversation: ConversationId | Uint8Array, options: { limit?: number; before?: number } = {}): Promise<HistoryEntry[]> {
    this.#checkOpen();
    const c = toConversation(conversation, 'history');
    if (options.limit !== undefined && !(Number.isSafeInteger(options.limit) && options.limit >= 0)) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'history: limit must be a non-negative integer');
    return readHistory(this.#storage, c, { now: this.#ctx.now(), stateOf: readState, ...options });
  }

  /**
   * One page of a conversation, oldest first: the newest `limit` (default 50) messages, or with
   * `cursor` (from the previous page) the `limit` before them. Reads only that page from storage.
   * `cursor` in the result is absent once the oldest message was returned.
   */
  async historyPage(conversation: ConversationId | Uint8Array, options: { limit?: number; cursor?: string } = {}): Promise<{ messages: Message[]; cursor?: string }> {
    this.#checkOpen();
    const c = toConversation(conversation, 'historyPage');
    const limit = options.limit ?? 50;
    if (!(Number.isSafeInteger(limit) && limit > 0)) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'historyPage: limit must be a positive integer');
    return readPage(this.#storage, c, { now: this.#ctx.now(), limit, stateOf: readState, ...(options.cursor !== undefined ? { cursor: options.cursor } : {}) });
  }

  /** The conversation list: every conversation with stored messages, most recent first, with its newest message and unread count. */
  async conversationList(): Promise<ConversationSummary[]> {
    this.#checkOpen();
    return listConversations(this.#storage, { now: this.#ctx.now(), stateOf: readState });
  }

  /**
   * Marks every message of a conversation read on this device (its unread count becomes 0; an
   * `unread` event fires if it changed). Read receipts to the sender stay the app's choice (markRead).
   */
  async markConversationRead(conversation: ConversationId | Uint8Array): Promise<void> {
    this.#checkOpen();
    const c = toConversation(conversation, 'markConversationRead');
    const { changed, ids } = await this.#storage.transaction((tx) => markRead(asStorageTx(tx), c));
    if (changed) this.#events.emit('unread', { conversation: c, unread: 0 });
    // The account's other devices mark the same messages read (own-device sync).
    if (c.kind === 'direct') await this.#sender.syncRead(c.peer, ids.filter((m) => equalBytes(m.author, c.peer)).map((m) => fromHex(m.id)));
  }

  /** Account keys of the direct conversations with stored messages (conversationList() has groups, last messages and unread counts). */
  async conversations(): Promise<Uint8Array[]> {
    this.#checkOpen();
    return conversationPeers(this.#storage);
  }

  /**
   * Sets the disappearing-message timer of the conversation with `to` (0 turns it off). Either
   * side may set it; it applies on both sides to every message sent from then on.
   */
  async setDisappearingTimer(to: Destination, seconds: number): Promise<void> {
    this.#checkOpen();
    if (!Number.isInteger(seconds) || seconds < 0 || seconds > MAX_DISAPPEARING_SECONDS) {
      throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `seconds must be an integer from 0 to ${MAX_DISAPPEARING_SECONDS}`);
    }
    const { peer } = await this.#sendTo(to, { case: 'expireTimer', value: { seconds } });
    if (peer) this.#events.emit('disappearingTimer', { conversation: directConversation(peer), peer, seconds, by: 'me' });
  }

  /** The disappearing-message timer (seconds, 0 = off) of a conversation (or of the direct conversation with this account). */
  async disappearingTimer(conversation: ConversationId | Uint8Array): Promise<number> {
    this.#checkOpen();
    return (await this.#timers.record(this.#storage, toConversation(conversation, 'disappearingTimer'))).seconds;
  }

  /** The contact state of an account: 'accepted', 'request', or undefined (never in touch, or declined). */
  async contactState(accountKey: Uint8Array): Promise<ContactState | undefined> {
    this.#checkOpen();
    return this.#contacts.state(accountKey);
  }

  /** Every account this device is in touch with, and its state. */
  async contacts(): Promise<{ accountKey: Uint8Array; state: ContactState }[]> {
    this.#checkOpen();
    return this.#contacts.list();
  }

  /** Accepts a contact request: its messages stop being requests, read receipts, typing and presence flow. */
  async acceptContact(accountKey: Uint8Array): Promise<void> {
    this.#checkOpen();
    await this.#contacts.accept(accountKey);
    await this.#syncContact(accountKey, ContactAction.ACCEPT);
  }

  /** Tells the account's other devices (own-device sync); a failure is logged, the decision stands here. */
  async #syncContact(accountKey: Uint8Array, action: ContactAction): Promise<void> {
    await this.#sender.syncContact(accountKey, action).catch((e: unknown) => this.#log.warn('contacts.sync-failed', "a contact decision could not be sent to this account's other devices", e));
  }

  /**
   * Declines a contact request (or drops a contact): its conversation is deleted from this device and
   * its delivery token forgotten; with `block: true` it is also blocked.
   */
  async declineContact(accountKey: Uint8Array, options: { block?: boolean } = {}): Promise<void> {
    this.#checkOpen();
    await this.#contacts.decline(accountKey, options);
    await this.#syncContact(accountKey, ContactAction.DECLINE);
    if (options.block) await this.#syncContact(accountKey, ContactAction.BLOCK);
  }

  /**
   * Blocks an account on this device: nothing it sends is shown or answered (no receipts), its
   * delivery token is forgotten, and sending to it fails with MW_SDK_BLOCKED until unblock().
   */
  async block(accountKey: Uint8Array): Promise<void> {
    this.#checkOpen();
    await this.#contacts.block(accountKey);
    await this.#syncContact(accountKey, ContactAction.BLOCK);
  }

  async unblock(accountKey: Uint8Array): Promise<void> {
    this.#checkOpen();
    checkAccountKey(accountKey);
    await this.#contacts.unblock(accountKey);
    await this.#syncContact(accountKey, ContactAction.UNBLOCK);
  }

  async isBlocked(accountKey: Uint8Array): Promise<boolean> {
    this.#checkOpen();
    return this.#contacts.isBlocked(accountKey);
  }

  // ── Verification and contact cards ────────────────────────────────────────────────────────

  /**
   * The 60-digit safety number between this account and `peerAccountKey`, and the payload to show
   * as a QR code. Both people see the same digits; a mismatch means someone substituted a key.
   */
  safetyNumber(peerAccountKey: Uint8Array): { digits: string; groups: string[]; scannable: Uint8Array } {
    this.#checkOpen();
    const sn = computeSafetyNumber(this.#ctx, { accountKey: this.accountKey }, { accountKey: peerAccountKey });
    return { digits: sn.digits, groups: safetyNumberGroups(sn.digits), scannable: sn.scannable };
  }

  /** The safety number's QR code as an SVG document (the other person scans it with verifySafetyNumber). */
  safetyNumberQrSvg(peerAccountKey: Uint8Array, options?: QrSvgOptions): string {
    this.#checkOpen();
    return qrSvg(this.safetyNumber(peerAccountKey).scannable, options);
  }

  /** Checks a scanned safety-number QR payload against `peerAccountKey`: 'match' only if both sides agree. */
  verifySafetyNumber(peerAccountKey: Uint8Array, scanned: Uint8Array): ScannedSafetyNumberResult {
    this.#checkOpen();
    return verifyScannedSafetyNumber(computeSafetyNumber(this.#ctx, { accountKey: this.accountKey }, { accountKey: peerAccountKey }), scanned);
  }

  /**
   * This account's contact card: node, namespace, account key and the mailbox ids of its devices
   * (from the node's directory, else just this device).
   */
  async contactCard(options: { username?: string } = {}): Promise<ContactCard> {
    this.#checkOpen();
    let mailboxIds = [this.mailboxId];
    try {
      mailboxIds = (await this.#transport.accountDevices(this.accountKey)).mailboxIds.slice(0, CONTACT_CARD_MAX_MAILBOX_IDS);
    } catch (e) {
      if (!(e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND')) throw e;
    }
    return { node: this.#nodeUrl, namespace: this.namespace, accountKey: this.accountKey, mailboxIds, ...(options.username ? { username: options.username } : {}) };
  }

  /** The contact card as a QR code (SVG document). */
  async contactQrSvg(options: { username?: string } & QrSvgOptions = {}): Promise<string> {
    this.#checkOpen();
    return qrSvg(encodeContactCard(await this.contactCard(options)), options);
  }
}

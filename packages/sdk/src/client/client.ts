/**
 * The MeshWhisper client (docs/api.md). One instance per device identity; any number of instances
 * can live in one process (no singletons). Everything the node sees is sealed ciphertext.
 */
import type { CryptoContext, DeviceAddress, DeviceCertificate, LocalIdentity, ScannedSafetyNumberResult } from '@meshwhisper/crypto';
import {
  AccountKeyPair,
  CryptoError,
  CryptoErrorCode,
  DeviceKeyPair,
  createContext,
  decodePreKeyBundle,
  deviceAddress,
  encodeKemPreKey,
  encodeOneTimePreKey,
  encodeSignedPreKey,
  equalBytes,
  fromHex,
  generateKemPreKeys,
  generateOneTimePreKeys,
  hasSession,
  sessionPeer,
  computeSafetyNumber,
  safetyNumberGroups,
  verifyScannedSafetyNumber,
  initiateSession,
  issueDeviceCertificate,
  MAX_SEALED_CONTENT_LENGTH,
  mailboxIdOf,
  openSealedMessage,
  rotatePreKeys,
  sealMessage,
  toHex,
} from '@meshwhisper/crypto';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { Content, Envelope } from '@meshwhisper/protocol';
import {
  AccountDevicesSchema,
  ClaimRequestSchema,
  ClaimResultSchema,
  ContentSchema,
  StoredReactionSchema,
  EnvelopeClass,
  KeyUploadSchema,
  PreKeyCountsSchema,
  ReceiptKind,
  SendRequestSchema,
  SendResultSchema,
  SignedUsernameOperationSchema,
  UsernameAction,
  UsernameRecordSchema,
  create,
  signUsernameOperation,
  fromBinary,
  toBinary,
} from '@meshwhisper/protocol';
import type { AppStore, ProtocolStorage } from '../storage/types.js';
import { asStorageTx } from '../storage/types.js';
import type { ConnectionState, WebSocketConstructor } from './connection.js';
import { DeviceConnection } from './connection.js';
import { SdkError, SdkErrorCode } from './errors.js';
import { NodeApi } from './node-api.js';
import type { FileSource, SendFileOptions } from './media.js';
import { FileAttachment, downloadFile, downloadFileBytes, uploadFile } from './media.js';
import type { HistoryEntry } from './history.js';
import { acceptConversation, addToHistory, clearConversation, conversationPeers, findInHistory, nextExpiry, readHistory, sweepExpired, tombstone, updateHistory } from './history.js';
import type { PushInfo, PushRegistrationInput } from './push.js';
import type { ContactCard } from './contact-card.js';
import { CONTACT_CARD_MAX_MAILBOX_IDS, encodeContactCard } from './contact-card.js';
import type { QrSvgOptions } from './qr.js';
import { qrSvg } from './qr.js';
import { pushInfo, registerPush, unregisterPush } from './push.js';

/** Content schema version this SDK writes and understands. */
export const CONTENT_VERSION = 1;
/** One-time X25519 and KEM prekeys kept on the node; replenished when fewer remain than the low-water mark. */
export const PREKEY_BATCH = 50;
export const PREKEY_LOW_WATER = 20;
/**
 * Upper bound on what the session layer adds to a content message (PQXDH header on first contact
 * 1309 bytes + ratchet overhead 85): content larger than MAX_SEALED_CONTENT_LENGTH minus this
 * could not be sealed.
 */
const SESSION_OVERHEAD_BOUND = 1309 + 85 + 64;
/** Longest quoted snippet carried with a reply (characters). */
const MAX_REPLY_SNIPPET = 280;

function checkAccountKey(accountKey: Uint8Array): void {
  if (!(accountKey instanceof Uint8Array) || accountKey.length !== 32) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'accountKey must be 32 bytes');
}

function messageIdBytes(id: string): Uint8Array {
  const b = /^[0-9a-f]{32}$/.test(id) ? fromHex(id) : undefined;
  if (!b) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'message ids are 32 lower-case hex characters');
  return b;
}

/** Bytes of this device's delivery token (the node accepts 16–64). */
export const DELIVERY_TOKEN_LENGTH = 32;

/** App tables this client keeps in its storage (docs/api.md §Storage). */
const Table = {
  /** This device's own settings: 'delivery-token'. */
  Self: 'mw.self',
  /** Sealed envelopes not yet accepted by the node, by message id: 32-byte mailbox id ‖ envelope. */
  Outbox: 'mw.outbox',
  /** The delivery token each peer device gave us, by device address. */
  PeerToken: 'mw.peer-token',
  /** State of each message this device sent, by message id: one byte (MessageState order). */
  Sent: 'mw.sent',
  /** The account key first seen for each username (trust on first use), by username. */
  ContactAccount: 'mw.contact-account',
  /** Blocked accounts, by account key hex (value empty). */
  Blocked: 'mw.blocked',
  /** Contact state per account key hex: one byte, ContactState order (absent = never in touch). */
  Contact: 'mw.contact',
  /** Disappearing-message timer per conversation (peer account key hex): 4-byte big-endian seconds. */
  Timer: 'mw.timer',
} as const;

/** Whether an account is a contact: 'request' = it wrote first and the app has not accepted it yet. */
export type ContactState = 'request' | 'accepted';
const CONTACT_STATES: readonly ContactState[] = ['request', 'accepted'];
/** Longest disappearing-message timer: one year. */
export const MAX_DISAPPEARING_SECONDS = 365 * 24 * 3600;
/**
 * While the client runs, prekeys are checked (signed-prekey rotation, one-time pool top-up) this
 * often, and a few seconds after a first contact (which consumed one-time prekeys).
 */
const KEY_CHECK_MS = 10 * 60_000;
const KEY_CHECK_AFTER_CONTACT_MS = 3_000;
/** Retry interval for the outbox while something is queued and the client is running. */
const OUTBOX_RETRY_MS = 15_000;
const FAILED = 255;

/**
 * Lifecycle of a message this device sent (docs/api.md). Later states never go back; 'failed' is
 * final (messageStatus() says why: the recipient's device no longer exists, or it disappeared
 * before it could be sent).
 */
export type MessageState = 'queued' | 'sent' | 'delivered' | 'read' | 'failed';
const STATES: readonly MessageState[] = ['queued', 'sent', 'delivered', 'read'];

/** What a username resolves to (the node's directory: verify with safety numbers). */
export interface UsernameRecord {
  readonly namespace: string;
  readonly username: string;
  /** The owner's account key. */
  readonly accountKey: Uint8Array;
  /** Mailbox ids of the owner's devices registered on this node. */
  readonly mailboxIds: Uint8Array[];
}

/** Names a message: its author's account key and the author-chosen id (hex). */
export interface MessageRef {
  readonly author: Uint8Array;
  readonly id: string;
}

export interface TextOptions {
  /** Quote a message (a reply); `snippet` is the text shown with the quote. */
  readonly replyTo?: MessageRef & { readonly snippet?: string };
  /** Mark as forwarded. */
  readonly forwarded?: boolean;
}

/**
 * Whom to send to: one device by mailbox id; every device of the account behind a username; or
 * every device of an account known by its public key (a scanned ContactCard fits this shape —
 * without `mailboxIds` the node's device list for the account is used). With a username or an
 * account key, every device reached must be certified by that account.
 */
export type Recipient = Uint8Array | { readonly username: string } | { readonly accountKey: Uint8Array; readonly mailboxIds?: readonly Uint8Array[]; readonly node?: string };

export interface MeshWhisperOptions {
  /** Base URL of the node, e.g. `https://chat.example.com` or `http://127.0.0.1:8080`. */
  readonly node: string;
  /** The app's namespace on the node (usernames live in it). */
  readonly namespace: string;
  /** Where identity, prekeys and sessions live: memoryStorage(), openSqliteStorage(), openIndexedDbStorage(). */
  readonly storage: ProtocolStorage;
  /** Crypto backend, RNG and clock (default: platform backend, CSPRNG, Date.now). */
  readonly crypto?: CryptoContext;
  /** WebSocket implementation (default: globalThis.WebSocket, else the `ws` package on Node). */
  readonly WebSocket?: WebSocketConstructor;
  /** fetch implementation (default: globalThis.fetch). */
  readonly fetch?: typeof fetch;
  /** Connect the device socket at once (default true). */
  readonly connect?: boolean;
  /** Share presence (online / last seen) with contacts (default true; false = opt out). */
  readonly sharePresence?: boolean;
  /**
   * When a username's account key changes (identityChange), hold sends to it until
   * acceptIdentityChange() (default true). false: the event still fires, and the new key is trusted
   * at once — only for apps that show the change and let the user verify safety numbers later.
   */
  readonly holdOnIdentityChange?: boolean;
}

export interface IncomingMessage {
  /** Hex of the sender-chosen 128-bit id. Unique per sender account. */
  readonly id: string;
  /** The sending device's address (account key hex ":" device key hex). */
  readonly from: DeviceAddress;
  /** The sending device's mailbox id: reply to it with `sendText(from mailbox, …)`. */
  readonly fromMailboxId: Uint8Array;
  readonly sender: DeviceCertificate;
  readonly sentAt: number;
  readonly receivedAt: number;
  readonly text?: string;
  readonly binary?: { readonly mimeType: string; readonly data: Uint8Array };
  /** For a quoted reply: the message answered (author account key + id) and the quoted snippet. */
  readonly replyTo?: MessageRef & { readonly snippet: string };
  /** Marked as forwarded by its sender (no original author is claimed). */
  readonly forwarded?: boolean;
  /** An encrypted attachment: show its metadata, fetch it with `downloadFile(message.file)`. */
  readonly file?: FileAttachment;
  /** From an account that is not an accepted contact yet: show it as a contact request. */
  readonly request?: boolean;
  /** When it disappears (ms since the epoch), in a conversation with a disappearing-message timer. */
  readonly expiresAt?: number;
}

export interface UndecryptableMessage {
  readonly envelopeId: string;
  readonly code: string;
  readonly message: string;
}

export interface MeshWhisperEvents {
  message: IncomingMessage;
  /** An envelope that could not be opened (tampered, from an unknown session…): never silently dropped. */
  undecryptable: UndecryptableMessage;
  /** The node reports messages that expired or were evicted before this device fetched them. */
  gap: { readonly expired: number; readonly evicted: number };
  connection: ConnectionState;
  /**
   * The directory now maps a username to a different account key than the one first seen: possibly
   * an attack by the node, or the person reinstalled. Sends to that username are held (throwing
   * MW_SDK_IDENTITY_CHANGED) until acceptIdentityChange(username); compare safety numbers first.
   */
  identityChange: { readonly username: string; readonly previousAccountKey: Uint8Array; readonly accountKey: Uint8Array };
  /** A reaction added or removed by `author` (the sender's account) on message `target`. */
  reaction: { readonly from: DeviceAddress; readonly author: Uint8Array; readonly target: MessageRef; readonly emoji: string; readonly remove: boolean };
  /** The sender edited one of ITS OWN messages: apply only to the message (author, id). */
  edit: { readonly from: DeviceAddress; readonly author: Uint8Array; readonly id: string; readonly text: string };
  /** The sender deleted one of ITS OWN messages for everyone: remove only the message (author, id). */
  delete: { readonly from: DeviceAddress; readonly author: Uint8Array; readonly id: string };
  /** Ephemeral: the peer is (or stopped) typing. Never stored by the node. */
  typing: { readonly from: DeviceAddress; readonly typing: boolean };
  /** Ephemeral: the peer's presence. Never stored by the node. */
  presence: { readonly from: DeviceAddress; readonly online: boolean; readonly lastSeen: number };
  /** A peer device reports that it received or read messages this device sent. */
  receipt: { readonly from: DeviceAddress; readonly state: 'delivered' | 'read'; readonly messageIds: string[] };
  /** The backlog queued while this device was offline has been delivered. */
  synced: undefined;
  /**
   * First message from an account that is not a contact: show it as a request the user can accept
   * (acceptContact) or decline / block (declineContact). Until accepted no read receipts are sent
   * and its typing and presence are not shown; its messages arrive with `request: true`.
   */
  contactRequest: { readonly accountKey: Uint8Array; readonly from: DeviceAddress; readonly fromMailboxId: Uint8Array };
  /** A conversation's disappearing-message timer changed (by the peer, or by this device). */
  disappearingTimer: { readonly peer: Uint8Array; readonly seconds: number; readonly by: 'peer' | 'me' };
  /** Messages whose timer ran out were deleted from the history (and, if still queued, from the outbox). */
  expired: { readonly peer: Uint8Array; readonly messages: MessageRef[] };
  /** A failure the client cannot recover from by itself, e.g. a node speaking only a newer protocol version. */
  error: SdkError;
}

type Listener<T> = (value: T) => void;

async function defaultWebSocket(): Promise<WebSocketConstructor> {
  const g = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (g) return g;
  const name = 'ws'; // computed, so browser bundlers never try to include it
  const mod = (await import(/* @vite-ignore */ name)) as { default: WebSocketConstructor };
  return mod.default;
}

export class MeshWhisper {
  readonly #ctx: CryptoContext;
  readonly #storage: ProtocolStorage;
  readonly #api: NodeApi;
  readonly #identity: LocalIdentity;
  readonly #listeners = new Map<keyof MeshWhisperEvents, Set<Listener<never>>>();
  readonly #connection: DeviceConnection;
  readonly #nodeUrl: string;
  #closed = false;
  #deliveryToken: Uint8Array = new Uint8Array(0);
  /** The token was given to the node (device socket authenticated): only then do peers get it. */
  #deliveryTokenRegistered = false;
  #sharePresence = true;
  #holdOnIdentityChange = true;
  #sweepTimer: ReturnType<typeof setTimeout> | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #keyTimer: ReturnType<typeof setTimeout> | undefined;
  /** Mailbox id (hex) → session address, see #addressOf. */
  readonly #addresses = new Map<string, DeviceAddress>();
  #flushing: Promise<number> | undefined;
  /** The account key pair: present on the device that created the account (stored with the device's other secrets). */
  readonly account: AccountKeyPair | undefined;
  readonly namespace: string;

  private constructor(opts: MeshWhisperOptions, ctx: CryptoContext, identity: LocalIdentity, account: AccountKeyPair | undefined, WS: WebSocketConstructor) {
    this.#ctx = ctx;
    this.#storage = opts.storage;
    this.#identity = identity;
    this.account = account;
    this.namespace = opts.namespace;
    this.#nodeUrl = opts.node;
    this.#sharePresence = opts.sharePresence !== false;
    this.#holdOnIdentityChange = opts.holdOnIdentityChange !== false;
    this.#api = new NodeApi(ctx, opts.node, opts.fetch ?? globalThis.fetch.bind(globalThis));
    this.#connection = new DeviceConnection(ctx, opts.node, identity, WS, {
      deliveryTokens: () => (this.#deliveryToken.length ? [this.#deliveryToken] : []),
      onDeliver: (envs) => this.#receive(envs),
      onGap: (expired, evicted) => this.#emit('gap', { expired, evicted }),
      onState: (s) => {
        // 'online' follows the setDeliveryTokens frame on the same socket.
        if (s === 'online') this.#deliveryTokenRegistered = true;
        this.#emit('connection', s);
        // Back online: whatever the outage left in the outbox goes out now.
        if (s === 'online') this.flushOutbox().catch(() => undefined);
      },
      onFatal: (e) => this.#emit('error', e),
      onQueueEmpty: () => this.#emit('synced', undefined),
    });
  }

  /** Opens (or, on first use, creates) this device's identity, publishes its keys and connects. */
  static async create(opts: MeshWhisperOptions): Promise<MeshWhisper> {
    if (!opts || typeof opts.node !== 'string' || typeof opts.namespace !== 'string' || !opts.storage) {
      throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'MeshWhisper.create: node, namespace and storage are required');
    }
    const ctx = opts.crypto ?? createContext();
    let account: AccountKeyPair | undefined;
    let identity: LocalIdentity;
    if (await opts.storage.hasLocalIdentity()) {
      identity = await opts.storage.getLocalIdentity();
      const seed = await opts.storage.getItem(Table.Self, 'account-seed');
      if (seed) {
        account = AccountKeyPair.fromSeed(ctx, seed);
        seed.fill(0);
        if (!equalBytes(account.publicKey, identity.certificate.accountKey)) account = undefined;
      }
    } else {
      account = AccountKeyPair.generate(ctx);
      const device = DeviceKeyPair.generate(ctx);
      identity = { certificate: issueDeviceCertificate(ctx, account, device), device };
      await opts.storage.setLocalIdentity(identity);
      const seed = account.exportSeed();
      await opts.storage.setItem(Table.Self, 'account-seed', seed);
      seed.fill(0);
    }
    const client = new MeshWhisper(opts, ctx, identity, account, opts.WebSocket ?? (await defaultWebSocket()));
    client.#deliveryToken = await client.#loadDeliveryToken();
    await client.publishKeys();
    // Envelopes sealed before a crash or while the node was unreachable go out now, as the same bytes.
    await client.flushOutbox();
    // Messages whose disappearing timer ran out while the app was closed go now.
    await client.#sweep();
    client.#scheduleKeyCheck(KEY_CHECK_MS);
    // Connect last: the socket's handshake needs network round trips, so nothing can be delivered
    // before the caller's code after `await create()` has registered its listeners. (Connecting
    // earlier lost backlog messages to a slow start: emitted before anyone listened.)
    if (opts.connect !== false) client.#connection.start();
    return client;
  }

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
    if (this.#closed) throw new SdkError(SdkErrorCode.CLOSED, 'client is closed');
    this.#connection.start();
  }

  get connectionState(): ConnectionState {
    return this.#connection.state;
  }

  on<K extends keyof MeshWhisperEvents>(event: K, listener: Listener<MeshWhisperEvents[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  #emit<K extends keyof MeshWhisperEvents>(event: K, value: MeshWhisperEvents[K]): void {
    for (const l of this.#listeners.get(event) ?? []) {
      try {
        (l as Listener<MeshWhisperEvents[K]>)(value);
      } catch {
        // An app listener's bug must not break delivery.
      }
    }
  }

  /** Resolves with the next `event` (convenience for scripts and tests). */
  once<K extends keyof MeshWhisperEvents>(event: K, predicate: (v: MeshWhisperEvents[K]) => boolean = () => true, timeoutMs = 10_000): Promise<MeshWhisperEvents[K]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new SdkError(SdkErrorCode.PROTOCOL, `timed out waiting for ${event}`));
      }, timeoutMs);
      const off = this.on(event, (v) => {
        if (!predicate(v)) return;
        clearTimeout(timer);
        off();
        resolve(v);
      });
    });
  }

  /**
   * The events of one kind as an async iterator (`for await (const m of client.iterate('message'))`).
   * Events are buffered from this call on, so none is missed while the loop body runs; the iteration
   * ends when the client closes, when `signal` aborts, or when the loop breaks.
   */
  iterate<K extends keyof MeshWhisperEvents>(event: K, options: { signal?: AbortSignal } = {}): AsyncIterableIterator<MeshWhisperEvents[K]> {
    const queue: MeshWhisperEvents[K][] = [];
    let wake: (() => void) | undefined;
    let done = this.#closed || options.signal?.aborted === true;
    const stop = () => {
      done = true;
      off();
      offClose();
      options.signal?.removeEventListener('abort', stop);
      wake?.();
    };
    const off = this.on(event, (v) => {
      queue.push(v);
      wake?.();
    });
    const offClose = this.on('connection', (s) => {
      if (s === 'closed') stop();
    });
    options.signal?.addEventListener('abort', stop, { once: true });
    if (done) stop();
    const iterator: AsyncIterableIterator<MeshWhisperEvents[K]> = {
      next: async () => {
        while (queue.length === 0 && !done) await new Promise<void>((r) => (wake = r));
        wake = undefined;
        if (queue.length > 0) return { value: queue.shift()!, done: false };
        return { value: undefined, done: true };
      },
      return: async () => {
        stop();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  /**
   * Uploads the device certificate, a current signed prekey and last-resort KEM prekey (rotated
   * weekly), and tops up one-time X25519 and KEM prekeys when fewer than PREKEY_LOW_WATER remain.
   */
  async publishKeys(): Promise<void> {
    const rotation = await rotatePreKeys(this.#ctx, this.#storage);
    let counts: { oneTimePrekeys: number; kemPrekeys: number; hasSignedPrekey: boolean } | undefined;
    try {
      counts = await this.#api.call('GET', '/v1/keys', undefined, undefined, PreKeyCountsSchema, this.#identity);
    } catch (e) {
      if (!(e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND')) throw e;
    }
    const first = !counts || !counts.hasSignedPrekey;
    const needOtk = !counts || counts.oneTimePrekeys < PREKEY_LOW_WATER;
    const needKem = !counts || counts.kemPrekeys < PREKEY_LOW_WATER;
    if (!first && !needOtk && !needKem && !rotation.rotated.signedPreKey && !rotation.rotated.lastResortKemPreKey) return;
    const otks = needOtk ? await generateOneTimePreKeys(this.#ctx, this.#storage, PREKEY_BATCH) : [];
    const kems = needKem ? await generateKemPreKeys(this.#ctx, this.#storage, PREKEY_BATCH) : [];
    await this.#api.call(
      'PUT',
      '/v1/keys',
      KeyUploadSchema,
      {
        signedPrekey: encodeSignedPreKey(rotation.signedPreKey),
        lastResortKemPrekey: encodeKemPreKey(rotation.lastResortKemPreKey),
        oneTimePrekeys: otks.map(encodeOneTimePreKey),
        kemPrekeys: kems.map(encodeKemPreKey),
      },
      PreKeyCountsSchema,
      this.#identity,
    );
  }

  async #loadDeliveryToken(): Promise<Uint8Array> {
    const stored = await this.#storage.getItem(Table.Self, 'delivery-token');
    if (stored && stored.length === DELIVERY_TOKEN_LENGTH) return stored;
    const token = this.#ctx.random(DELIVERY_TOKEN_LENGTH);
    await this.#storage.setItem(Table.Self, 'delivery-token', token);
    return token;
  }

  /**
   * Hands every queued envelope to the node (oldest message id order is not guaranteed). An
   * envelope leaves the outbox only once the node has durably accepted it, or the node said it can
   * never be delivered (unknown mailbox). Returns how many were sent.
   */
  flushOutbox(): Promise<number> {
    if (this.#flushing) return this.#flushing.then(() => this.flushOutbox());
    const run = (async () => {
      let sent = 0;
      let left = 0;
      for (const { key } of await this.#storage.listItems(Table.Outbox)) {
        if (this.#closed) break;
        try {
          if (await this.#deliver(key)) sent++;
        } catch (e) {
          left++; // still queued (or failed for good, and already removed)
          // The node is unreachable: the rest would fail the same way, one backoff each. Stop; the
          // retry timer (or the next reconnect) tries again.
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

  /** Runs publishKeys() after `delay` ms (an earlier pending check wins), then every KEY_CHECK_MS. */
  #scheduleKeyCheck(delay: number): void {
    if (this.#closed) return;
    if (this.#keyTimer) {
      if (delay >= KEY_CHECK_MS) return;
      clearTimeout(this.#keyTimer);
    }
    this.#keyTimer = setTimeout(() => {
      this.#keyTimer = undefined;
      this.publishKeys()
        .catch(() => undefined) // node unreachable: the next check retries
        .finally(() => this.#scheduleKeyCheck(KEY_CHECK_MS));
    }, delay);
    (this.#keyTimer as { unref?: () => void }).unref?.();
  }

  /** While something is queued, retries the outbox every OUTBOX_RETRY_MS (and at every reconnect). */
  #scheduleRetry(): void {
    if (this.#closed || this.#retryTimer) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.flushOutbox().catch(() => undefined);
    }, OUTBOX_RETRY_MS);
    (this.#retryTimer as { unref?: () => void }).unref?.();
  }

  /** Sends one queued envelope; true once the node accepted it. */
  async #deliver(messageId: string): Promise<boolean> {
    // `messageId` is the outbox key: message id hex ':' recipient mailbox hex.
    const item = await this.#storage.getItem(Table.Outbox, messageId);
    if (!item || item.length <= 32) return false;
    const mailboxId = item.subarray(0, 32);
    const payload = item.subarray(32);
    const address = await this.#addressOf(mailboxId);
    const token = address ? await this.#storage.getItem(Table.PeerToken, address) : undefined;
    const post = (deliveryToken?: Uint8Array) =>
      this.#api.call('POST', '/v1/send', SendRequestSchema, { mailboxId, payload, class: EnvelopeClass.DURABLE, ...(deliveryToken ? { deliveryToken } : {}) }, SendResultSchema);
    let lastError: unknown;
    for (let attempt = 0; attempt < 4; attempt++) {
      // Closing: stop retrying (the envelope stays queued for the next start).
      if (attempt > 0 && this.#closed) throw new SdkError(SdkErrorCode.CLOSED, 'client closed while sending; the message stays queued');
      // Gone meanwhile (its disappearing timer ran out, or another flush sent it): nothing to do.
      if (attempt > 0 && !(await this.#storage.getItem(Table.Outbox, messageId))) return false;
      try {
        try {
          await post(token);
        } catch (e) {
          // A token the peer has since replaced: forget it and use the first-contact lane.
          if (!(token && e instanceof SdkError && e.nodeCode === 'MW_AUTH_FORBIDDEN')) throw e;
          if (address) await this.#storage.deleteItem(Table.PeerToken, address);
          await post(undefined);
        }
        // One commit (one fsync) for both: the envelope leaves the outbox and the message is 'sent'.
        await this.#storage.transaction(async (tx) => {
          const stx = asStorageTx(tx);
          await stx.deleteItem(Table.Outbox, messageId);
          await this.#advanceStateIn(stx, messageId.split(':')[0]!, 'sent');
        });
        return true;
      } catch (e) {
        lastError = e;
        if (e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND') {
          // No such mailbox (the device or account was deleted): it can never be delivered.
          await this.#storage.deleteItem(Table.Outbox, messageId);
          await this.#fail(messageId.split(':')[0]!, 'the recipient device no longer exists on the node');
          throw e;
        }
        if (!(e instanceof SdkError && (e.code === SdkErrorCode.UNREACHABLE || e.nodeCode === 'MW_RATE_LIMITED' || e.nodeCode === 'MW_UNAVAILABLE'))) throw e;
        await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
      }
    }
    throw lastError;
  }

  /**
   * The address of the peer device with this mailbox id, if we have a session with it. The mailbox
   * id is a hash of the address's device key, so the mapping never changes: it is remembered, and
   * only an unknown mailbox id costs a pass over the session addresses (every send and delivery asks).
   */
  async #addressOf(mailboxId: Uint8Array): Promise<DeviceAddress | undefined> {
    const hex = toHex(mailboxId);
    const known = this.#addresses.get(hex);
    if (known) return known;
    for (const address of await this.#storage.listSessionAddresses()) {
      const signing = fromHex(address.split(':')[1] ?? '');
      if (signing.length !== 32) continue;
      const m = toHex(mailboxIdOf(this.#ctx, signing));
      if (!this.#addresses.has(m)) this.#addresses.set(m, address); // the first match wins, as before
    }
    return this.#addresses.get(hex);
  }

  /** Finds the session address for a peer mailbox, claiming its bundle and running PQXDH on first contact. */
  async #sessionFor(mailboxId: Uint8Array, expectedAccountKey?: Uint8Array): Promise<DeviceAddress> {
    const known = await this.#addressOf(mailboxId);
    if (known && (await hasSession(this.#storage, known))) {
      const peer = await sessionPeer(this.#storage, known);
      if (expectedAccountKey && peer && !equalBytes(peer.accountKey, expectedAccountKey)) {
        throw new SdkError(SdkErrorCode.IDENTITY_CHANGED, 'this device belongs to another account than the contact');
      }
      return known;
    }
    const claim = await this.#api.call('POST', '/v1/keys/claim', ClaimRequestSchema, { mailboxId }, ClaimResultSchema);
    const bundle = decodePreKeyBundle(claim.bundle);
    if (!equalBytes(mailboxIdOf(this.#ctx, bundle.certificate.deviceSigningKey), mailboxId)) {
      throw new SdkError(SdkErrorCode.PROTOCOL, 'the node returned a bundle for another device');
    }
    // With an expected account (sending by username), a device certified by any other account is
    // refused (MW_CRYPTO_UNTRUSTED_IDENTITY): a node cannot slip its own device into the fan-out.
    return initiateSession(this.#ctx, this.#storage, bundle, expectedAccountKey ? { expectedAccountKey } : {});
  }

  async #sendContent(
    mailboxId: Uint8Array,
    body: MessageInitShape<typeof ContentSchema>['body'],
    messageId = this.#ctx.random(16),
    expectedAccountKey?: Uint8Array,
    userAction = false,
    deliverNow = true,
  ): Promise<{ id: string; peer: Uint8Array | undefined; outboxKey: string }> {
    if (this.#closed) throw new SdkError(SdkErrorCode.CLOSED, 'client is closed');
    if (!(mailboxId instanceof Uint8Array) || mailboxId.length !== 32) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'mailboxId must be 32 bytes');
    const address = await this.#sessionFor(mailboxId, expectedAccountKey);
    const peer = await sessionPeer(this.#storage, address);
    if (peer && (await this.isBlocked(peer.accountKey))) throw new SdkError(SdkErrorCode.BLOCKED, 'this contact is blocked');
    // Every message carries the conversation's timer and its version; setting the timer carries the
    // new value under the next version.
    const timer = peer ? await this.#timerRecord(this.#storage, peer.accountKey) : { seconds: 0, version: 0 };
    const setting = body?.case === 'expireTimer';
    const expireSeconds = setting ? (body.value.seconds ?? 0) : timer.seconds;
    const expireTimerVersion = setting ? timer.version + 1 : timer.version;
    const now = this.#ctx.now();
    // A token the node never saw (this client has not connected yet, e.g. `connect: false`) would
    // make the peer's replies fail with 403 in the token lane: it is sent only once registered.
    const content = create(ContentSchema, { version: CONTENT_VERSION, messageId, sentAt: BigInt(now), deliveryToken: this.#deliveryTokenRegistered ? this.#deliveryToken : new Uint8Array(0), expireSeconds, expireTimerVersion, body });
    const id = toHex(messageId);
    // The ratchet advance and the sealed bytes commit together; what is sent (now or after a
    // crash) is always these stored bytes, never a re-encryption (that would reuse a message key).
    // The outbox is keyed per recipient device, since one message fans out to several.
    const outboxKey = `${id}:${toHex(mailboxId)}`;
    const tracked = body?.case === 'text' || body?.case === 'binary' || body?.case === 'file';
    const plaintext = toBinary(ContentSchema, content);
    if (plaintext.length > MAX_SEALED_CONTENT_LENGTH - SESSION_OVERHEAD_BOUND) {
      throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `message of ${plaintext.length} bytes is too large (at most ${MAX_SEALED_CONTENT_LENGTH - SESSION_OVERHEAD_BOUND}); send files as media`);
    }
    let expiresAt = 0;
    await sealMessage(this.#ctx, this.#storage, address, plaintext, {
      persist: async (tx, envelope) => {
        const item = new Uint8Array(32 + envelope.length);
        item.set(mailboxId);
        item.set(envelope, 32);
        const stx = asStorageTx(tx);
        await stx.setItem(Table.Outbox, outboxKey, item);
        if (tracked && !(await stx.getItem(Table.Sent, id))) await stx.setItem(Table.Sent, id, Uint8Array.of(0));
        if (!peer) return;
        // Writing to someone (not an automatic receipt) makes them a contact.
        if (userAction) await stx.setItem(Table.Contact, toHex(peer.accountKey), Uint8Array.of(CONTACT_STATES.indexOf('accepted')));
        if (setting) await this.#setTimer(stx, peer.accountKey, expireSeconds, expireTimerVersion);
        if (tracked) {
          expiresAt = expireSeconds > 0 ? now + expireSeconds * 1000 : 0;
          await addToHistory(stx, { peer: peer.accountKey, author: this.accountKey, from: '', content, receivedAt: now, expiresAt, outgoing: true, request: false });
        } else if (body?.case === 'edit' || body?.case === 'delete' || body?.case === 'reaction') {
          await this.#applyToHistory(stx, this.accountKey, content);
        }
      },
    });
    if (expiresAt > 0) this.#scheduleSweep();
    if (deliverNow) await this.#deliverSealed(id, outboxKey);
    return { id, peer: peer?.accountKey, outboxKey };
  }

  /** Hands one sealed envelope to the node; on a passing failure the outbox retries it later. */
  async #deliverSealed(id: string, outboxKey: string): Promise<void> {
    try {
      if (!(await this.#deliver(outboxKey)) && (await this.messageState(id)) === 'failed') {
        throw new SdkError(SdkErrorCode.UNREACHABLE, 'the node could not be reached before the message disappeared (its disappearing-message timer ran out)');
      }
    } catch (e) {
      if (!(e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND')) this.#scheduleRetry();
      throw e;
    }
  }

  /** Resolves a recipient to device mailbox ids (a username fans out to every device of its account). */
  async #mailboxesOf(to: Recipient): Promise<{ mailboxes: Uint8Array[]; accountKey?: Uint8Array }> {
    if (to instanceof Uint8Array) return { mailboxes: [to] };
    if (to && 'accountKey' in to) {
      const accountKey = to.accountKey;
      checkAccountKey(accountKey);
      if (to.node !== undefined && new URL(to.node).origin !== new URL(this.#nodeUrl).origin) {
        throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `this contact lives on another node (${new URL(to.node).origin}); federation between nodes is not supported yet`);
      }
      const given = to.mailboxIds ?? [];
      if (given.some((m) => !(m instanceof Uint8Array) || m.length !== 32)) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'mailboxIds must be 32 bytes each');
      const mailboxes = given.length > 0 ? [...given] : (await this.#api.call('GET', `/v1/accounts/${toHex(accountKey)}/devices`, undefined, undefined, AccountDevicesSchema)).mailboxIds;
      return { mailboxes, accountKey };
    }
    if (to && typeof to.username === 'string') {
      const record = await this.lookupUsername(to.username);
      const known = await this.#storage.getItem(Table.ContactAccount, to.username);
      if (!known) await this.#storage.setItem(Table.ContactAccount, to.username, record.accountKey);
      else if (!equalBytes(known, record.accountKey)) {
        this.#emit('identityChange', { username: to.username, previousAccountKey: known, accountKey: record.accountKey });
        if (!this.#holdOnIdentityChange) {
          await this.#storage.setItem(Table.ContactAccount, to.username, record.accountKey);
          return { mailboxes: record.mailboxIds, accountKey: record.accountKey };
        }
        throw new SdkError(SdkErrorCode.IDENTITY_CHANGED, `${to.username} now belongs to another account key: verify safety numbers, then acceptIdentityChange()`);
      }
      if (record.mailboxIds.length === 0) throw new SdkError(SdkErrorCode.NODE_ERROR, `${to.username} has no registered device`, 'MW_NOT_FOUND');
      return { mailboxes: record.mailboxIds, accountKey: record.accountKey };
    }
    throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'recipient must be a mailbox id or { username }');
  }

  async #sendTo(to: Recipient, body: MessageInitShape<typeof ContentSchema>['body']): Promise<{ id: string; peer: Uint8Array | undefined }> {
    const { mailboxes, accountKey } = await this.#mailboxesOf(to);
    const messageId = this.#ctx.random(16);
    let id = '';
    let peer: Uint8Array | undefined;
    // Seal for every device first (each commits its envelope to the outbox), then hand them to the
    // node: an outage part-way leaves every device's copy queued, none unsealed.
    const keys: string[] = [];
    for (const m of mailboxes) {
      let outboxKey: string;
      ({ id, peer, outboxKey } = await this.#sendContent(m, body, messageId, accountKey, true, false));
      keys.push(outboxKey);
    }
    let gone = 0;
    for (const key of keys) {
      try {
        await this.#deliverSealed(id, key);
      } catch (e) {
        // One deleted device of a multi-device account: the others still get it.
        if (e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND' && ++gone < keys.length) continue;
        throw e; // unreachable: whatever is left stays queued and goes out with the next flush
      }
    }
    return { id, peer };
  }

  // ── Contacts, history, disappearing messages (docs/api.md) ─────────────────────────────────

  async #timerOf(store: AppStore, peer: Uint8Array): Promise<number> {
    return (await this.#timerRecord(store, peer)).seconds;
  }

  /** The conversation's timer and its version (content.proto `expire_timer_version`; 0 = never set). */
  async #timerRecord(store: AppStore, peer: Uint8Array): Promise<{ seconds: number; version: number }> {
    const b = await store.getItem(Table.Timer, toHex(peer));
    if (!b || b.length !== 8) return { seconds: 0, version: 0 };
    const v = new DataView(b.buffer, b.byteOffset, 8);
    return { seconds: v.getUint32(0), version: v.getUint32(4) };
  }

  async #setTimer(store: AppStore, peer: Uint8Array, seconds: number, version: number): Promise<void> {
    const b = new Uint8Array(8);
    const v = new DataView(b.buffer);
    v.setUint32(0, seconds);
    v.setUint32(4, version);
    await store.setItem(Table.Timer, toHex(peer), b);
  }

  /** Applies an edit, delete or reaction by `author` to the stored history (only ever to `author`'s own messages for edits and deletes). */
  async #applyToHistory(store: AppStore, author: Uint8Array, content: Content): Promise<void> {
    const b = content.body;
    if (b.case === 'edit' && b.value.messageId.length === 16) {
      const text = b.value.text;
      await updateHistory(store, author, toHex(b.value.messageId), (m) => {
        if (m.deleted) return;
        m.edited = true;
        m.editedText = text;
      });
    } else if (b.case === 'delete' && b.value.messageId.length === 16) {
      await updateHistory(store, author, toHex(b.value.messageId), tombstone);
    } else if (b.case === 'reaction' && b.value.target && b.value.target.author.length === 32 && b.value.target.messageId.length === 16) {
      const { emoji, remove } = b.value;
      await updateHistory(store, b.value.target.author, toHex(b.value.target.messageId), (m) => {
        if (m.deleted) return;
        m.reactions = m.reactions.filter((r) => !(equalBytes(r.author, author) && r.emoji === emoji));
        if (!remove) m.reactions.push(create(StoredReactionSchema, { author, emoji }));
      });
    }
  }

  /** Deletes what is due, then sets a timer for the next expiry. */
  async #sweep(): Promise<void> {
    if (this.#closed) return;
    const removed = await this.#storage.transaction(async (tx) => {
      const stx = asStorageTx(tx);
      const gone = await sweepExpired(stx, this.#ctx.now());
      // A disappearing message still waiting in the outbox disappears too: it is never sent.
      for (const g of gone) {
        if (!g.outgoing) continue;
        for (const { key } of await stx.listItems(Table.Outbox, { prefix: `${g.id}:` })) await stx.deleteItem(Table.Outbox, key);
      }
      return gone;
    });
    const byPeer = new Map<string, MessageRef[]>();
    for (const g of removed) {
      if (g.outgoing) await this.#fail(g.id, 'it disappeared (disappearing-message timer) before the node accepted it');
      const list = byPeer.get(toHex(g.peer)) ?? [];
      list.push({ author: g.author, id: g.id });
      byPeer.set(toHex(g.peer), list);
    }
    for (const [peer, messages] of byPeer) this.#emit('expired', { peer: fromHex(peer), messages });
    this.#scheduleSweep();
  }

  #scheduleSweep(): void {
    if (this.#closed) return;
    void nextExpiry(this.#storage).then((at) => {
      if (this.#sweepTimer) clearTimeout(this.#sweepTimer);
      this.#sweepTimer = undefined;
      if (at === undefined || this.#closed) return;
      const delay = Math.min(Math.max(0, at - this.#ctx.now()), 2 ** 31 - 1);
      this.#sweepTimer = setTimeout(() => {
        this.#sweepTimer = undefined;
        this.#sweep().catch(() => undefined);
      }, delay);
      (this.#sweepTimer as { unref?: () => void }).unref?.();
    }, () => undefined);
  }

  /**
   * Sets the disappearing-message timer of the conversation with `to` (0 turns it off). Either
   * side may set it; it applies on both sides to every message sent from then on, which is deleted
   * from both histories `seconds` after it was sent (sender) or received (receiver) — and from the
   * outbox, if it could not be sent by then.
   */
  async setDisappearingTimer(to: Recipient, seconds: number): Promise<void> {
    if (!Number.isInteger(seconds) || seconds < 0 || seconds > MAX_DISAPPEARING_SECONDS) {
      throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `seconds must be an integer from 0 to ${MAX_DISAPPEARING_SECONDS}`);
    }
    const { peer } = await this.#sendTo(to, { case: 'expireTimer', value: { seconds } });
    if (peer) this.#emit('disappearingTimer', { peer, seconds, by: 'me' });
  }

  /** The disappearing-message timer (seconds, 0 = off) of the conversation with this account. */
  disappearingTimer(peerAccountKey: Uint8Array): Promise<number> {
    return this.#timerOf(this.#storage, peerAccountKey);
  }

  /**
   * The stored conversation with an account, oldest first: texts after their latest edit, deleted
   * messages as tombstones, current reactions, disappeared messages gone. `limit` returns the
   * newest `limit` entries; `before` (a receivedAt) pages back.
   */
  history(peerAccountKey: Uint8Array, options: { limit?: number; before?: number } = {}): Promise<HistoryEntry[]> {
    return readHistory(this.#storage, peerAccountKey, this.#ctx.now(), options);
  }

  /** Account keys of every conversation with stored messages. */
  conversations(): Promise<Uint8Array[]> {
    return conversationPeers(this.#storage);
  }

  /** The contact state of an account: 'accepted', 'request', or undefined (never in touch, or declined). */
  async contactState(accountKey: Uint8Array): Promise<ContactState | undefined> {
    const b = await this.#storage.getItem(Table.Contact, toHex(accountKey));
    return b && b.length === 1 ? CONTACT_STATES[b[0]!] : undefined;
  }

  /** Every account this device is in touch with, and its state. */
  async contacts(): Promise<{ accountKey: Uint8Array; state: ContactState }[]> {
    const out: { accountKey: Uint8Array; state: ContactState }[] = [];
    for (const { key, value } of await this.#storage.listItems(Table.Contact)) {
      const state = value.length === 1 ? CONTACT_STATES[value[0]!] : undefined;
      if (state) out.push({ accountKey: fromHex(key), state });
    }
    return out;
  }

  /** Accepts a contact request: its messages stop being requests, read receipts, typing and presence flow. */
  async acceptContact(accountKey: Uint8Array): Promise<void> {
    checkAccountKey(accountKey);
    await this.#storage.transaction(async (tx) => {
      const stx = asStorageTx(tx);
      await stx.setItem(Table.Contact, toHex(accountKey), Uint8Array.of(CONTACT_STATES.indexOf('accepted')));
      await acceptConversation(stx, accountKey);
    });
  }

  /**
   * Declines a contact request (or drops a contact): its conversation is deleted from this device and
   * its delivery token forgotten; with `block: true` it is also blocked. Without blocking, a new
   * message from it raises a new request.
   */
  async declineContact(accountKey: Uint8Array, options: { block?: boolean } = {}): Promise<void> {
    checkAccountKey(accountKey);
    await this.#storage.transaction(async (tx) => {
      const stx = asStorageTx(tx);
      await stx.deleteItem(Table.Contact, toHex(accountKey));
      await clearConversation(stx, accountKey);
      for (const { key } of await stx.listItems(Table.PeerToken, { prefix: `${toHex(accountKey)}:` })) await stx.deleteItem(Table.PeerToken, key);
    });
    if (options.block) await this.block(accountKey);
  }

  /**
   * Blocks an account on this device: nothing it sends is shown or answered (no receipts), its
   * delivery token is forgotten, and sending to it fails with MW_SDK_BLOCKED until unblock().
   */
  async block(accountKey: Uint8Array): Promise<void> {
    checkAccountKey(accountKey);
    await this.#storage.transaction(async (tx) => {
      const stx = asStorageTx(tx);
      await stx.setItem(Table.Blocked, toHex(accountKey), new Uint8Array(0));
      for (const { key } of await stx.listItems(Table.PeerToken, { prefix: `${toHex(accountKey)}:` })) await stx.deleteItem(Table.PeerToken, key);
    });
  }

  async unblock(accountKey: Uint8Array): Promise<void> {
    await this.#storage.deleteItem(Table.Blocked, toHex(accountKey));
  }

  async isBlocked(accountKey: Uint8Array): Promise<boolean> {
    return (await this.#storage.getItem(Table.Blocked, toHex(accountKey))) !== undefined;
  }

  /** Trusts the account key the directory now names for `username` (after comparing safety numbers). */
  async acceptIdentityChange(username: string): Promise<void> {
    const record = await this.lookupUsername(username);
    await this.#storage.setItem(Table.ContactAccount, username, record.accountKey);
  }

  /**
   * The 60-digit safety number between this account and `peerAccountKey`, and the payload to show
   * as a QR code. Both people see the same digits; a mismatch means someone (possibly the node)
   * substituted a key.
   */
  safetyNumber(peerAccountKey: Uint8Array): { digits: string; groups: string[]; scannable: Uint8Array } {
    const sn = computeSafetyNumber(this.#ctx, { accountKey: this.accountKey }, { accountKey: peerAccountKey });
    return { digits: sn.digits, groups: safetyNumberGroups(sn.digits), scannable: sn.scannable };
  }

  /** The safety number's QR code as an SVG document (the other person scans it with verifySafetyNumber). */
  safetyNumberQrSvg(peerAccountKey: Uint8Array, options?: QrSvgOptions): string {
    return qrSvg(this.safetyNumber(peerAccountKey).scannable, options);
  }

  /**
   * This account's contact card: node, namespace, account key and the mailbox ids of its devices
   * (from the node's directory, else just this device). Show `contactQrSvg()` or share
   * `encodeContactCard(card)`; whoever scans it can `sendText(decodeContactCard(text), …)`.
   */
  async contactCard(options: { username?: string } = {}): Promise<ContactCard> {
    let mailboxIds = [this.mailboxId];
    try {
      mailboxIds = (await this.#api.call('GET', `/v1/accounts/${toHex(this.accountKey)}/devices`, undefined, undefined, AccountDevicesSchema)).mailboxIds.slice(0, CONTACT_CARD_MAX_MAILBOX_IDS);
    } catch (e) {
      if (!(e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND')) throw e;
    }
    return { node: this.#nodeUrl, namespace: this.namespace, accountKey: this.accountKey, mailboxIds, ...(options.username ? { username: options.username } : {}) };
  }

  /** The contact card as a QR code (SVG document). */
  async contactQrSvg(options: { username?: string } & QrSvgOptions = {}): Promise<string> {
    return qrSvg(encodeContactCard(await this.contactCard(options)), options);
  }

  /** Checks a scanned safety-number QR payload against `peerAccountKey`: 'match' only if both sides agree. */
  verifySafetyNumber(peerAccountKey: Uint8Array, scanned: Uint8Array): ScannedSafetyNumberResult {
    return verifyScannedSafetyNumber(computeSafetyNumber(this.#ctx, { accountKey: this.accountKey }, { accountKey: peerAccountKey }), scanned);
  }

  /**
   * Sends a text message: to one device (mailbox id) or to every device of a username's account.
   * Resolves when the node has durably stored it for each device.
   */
  sendText(to: Recipient, text: string, options: TextOptions = {}): Promise<{ id: string }> {
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

  /** Forwards a received text (marked as forwarded; its original author is not claimed). */
  forward(to: Recipient, message: Pick<IncomingMessage, 'text'>): Promise<{ id: string }> {
    if (typeof message.text !== 'string') throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'only text messages can be forwarded this way');
    return this.sendText(to, message.text, { forwarded: true });
  }

  /** Adds (or, with `remove`, removes) an emoji reaction to a message. */
  react(to: Recipient, target: MessageRef, emoji: string, options: { remove?: boolean } = {}): Promise<{ id: string }> {
    if (typeof emoji !== 'string' || emoji.length === 0 || emoji.length > 16) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'emoji must be 1–16 characters');
    return this.#sendTo(to, { case: 'reaction', value: { target: { author: target.author, messageId: messageIdBytes(target.id) }, emoji, remove: options.remove === true } });
  }

  /** Edits one of this account's own messages for the recipients. */
  editMessage(to: Recipient, id: string, text: string): Promise<{ id: string }> {
    return this.#sendTo(to, { case: 'edit', value: { messageId: messageIdBytes(id), text } });
  }

  /** Deletes one of this account's own messages for everyone. Receivers honour it only for the author. */
  deleteMessage(to: Recipient, id: string): Promise<{ id: string }> {
    return this.#sendTo(to, { case: 'delete', value: { messageId: messageIdBytes(id) } });
  }

  /** Ephemeral typing indicator (never stored by the node, never wakes a device). */
  async setTyping(to: Recipient, typing: boolean): Promise<void> {
    await this.#sendEphemeral(to, { case: 'typing', value: { typing } });
  }

  /** Ephemeral presence (online / last seen); does nothing when the client opted out (`sharePresence: false`). */
  async setPresence(to: Recipient, online: boolean): Promise<void> {
    if (!this.#sharePresence) return;
    await this.#sendEphemeral(to, { case: 'presence', value: { online, lastSeen: BigInt(this.#ctx.now()) } });
  }

  async #sendEphemeral(to: Recipient, body: MessageInitShape<typeof ContentSchema>['body']): Promise<void> {
    if (this.#closed) throw new SdkError(SdkErrorCode.CLOSED, 'client is closed');
    const { mailboxes, accountKey } = await this.#mailboxesOf(to);
    for (const mailboxId of mailboxes) {
      const address = await this.#sessionFor(mailboxId, accountKey);
      const content = create(ContentSchema, { version: CONTENT_VERSION, messageId: this.#ctx.random(16), sentAt: BigInt(this.#ctx.now()), body });
      // Nothing to persist: an ephemeral signal that is lost is simply not shown.
      const payload = await sealMessage(this.#ctx, this.#storage, address, toBinary(ContentSchema, content));
      const token = await this.#storage.getItem(Table.PeerToken, address);
      await this.#api
        .call('POST', '/v1/send', SendRequestSchema, { mailboxId, payload, class: EnvelopeClass.EPHEMERAL, ...(token ? { deliveryToken: token } : {}) }, SendResultSchema)
        .catch(() => undefined);
    }
  }

  /** Sends arbitrary bytes with a MIME type. */
  sendBinary(to: Recipient, data: Uint8Array, mimeType = 'application/octet-stream'): Promise<{ id: string }> {
    return this.#sendTo(to, { case: 'binary', value: { data, mimeType } });
  }

  /**
   * Sends a file as an encrypted attachment (docs/api.md §Files): encrypts it streaming under a
   * fresh key, uploads the ciphertext to the node's blob store, then sends the key and digest in a
   * message (same fan-out as sendText). `options.size` is required for a stream or iterable source.
   */
  async sendFile(to: Recipient, source: FileSource, options: SendFileOptions): Promise<{ id: string; file: FileAttachment }> {
    if (this.#closed) throw new SdkError(SdkErrorCode.CLOSED, 'client is closed');
    const { body, file } = await uploadFile(this.#ctx, this.#api, this.#identity, source, options);
    try {
      const { id } = await this.#sendTo(to, { case: 'file', value: body });
      return { id, file };
    } finally {
      body.key?.fill(0); // sealed by now (or never sent); `file` keeps its own copy for downloadFile
    }
  }

  /** Downloads an attachment as a stream of verified plaintext; it errors with MW_SDK_MEDIA_CORRUPT on tampering. */
  downloadFile(file: FileAttachment): Promise<ReadableStream<Uint8Array>> {
    return downloadFile(this.#ctx, this.#api, file);
  }

  /** Downloads an attachment into memory (for small files). */
  downloadFileBytes(file: FileAttachment): Promise<Uint8Array> {
    return downloadFileBytes(this.#ctx, this.#api, file);
  }

  /** Tells the sender's device that these of its messages were read (a read receipt). */
  async markRead(message: Pick<IncomingMessage, 'fromMailboxId' | 'sender'>, messageIds: string[]): Promise<void> {
    if (messageIds.length === 0) return;
    // No read receipts to a contact request: the sender learns nothing until the user accepts.
    if ((await this.contactState(message.sender.accountKey)) !== 'accepted') return;
    await this.#sendContent(message.fromMailboxId, { case: 'receipt', value: { kind: ReceiptKind.READ, messageIds: messageIds.map(fromHex) } });
  }

  /** The state of a message this device sent, or undefined for an unknown id. */
  async messageState(id: string): Promise<MessageState | undefined> {
    return (await this.messageStatus(id))?.state;
  }

  /** The state of a message this device sent and, for 'failed', why. */
  async messageStatus(id: string): Promise<{ state: MessageState; reason?: string } | undefined> {
    const b = await this.#storage.getItem(Table.Sent, id);
    if (!b || b.length === 0) return undefined;
    if (b[0] === FAILED) return { state: 'failed', reason: new TextDecoder().decode(b.subarray(1)) };
    const state = STATES[b[0]!];
    return state ? { state } : undefined;
  }

  /**
   * Tries a message this device sent again. Still queued (node unreachable): its sealed envelopes go
   * out now, as the same bytes. Failed (its recipient device is gone): the same message — same id,
   * so nobody is shown it twice — is sent to every current device of the conversation's account.
   * Resolves with the state afterwards. A message that disappeared cannot be retried.
   */
  async retry(id: string): Promise<MessageState> {
    if (this.#closed) throw new SdkError(SdkErrorCode.CLOSED, 'client is closed');
    messageIdBytes(id);
    const status = await this.messageStatus(id);
    if (!status) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `no message ${id} was sent from this device`);
    if (status.state === 'queued') {
      for (const { key } of await this.#storage.listItems(Table.Outbox, { prefix: `${id}:` })) await this.#deliver(key);
      return (await this.messageState(id)) ?? 'queued';
    }
    if (status.state !== 'failed') return status.state;
    const stored = await findInHistory(this.#storage, this.accountKey, id);
    if (!stored) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `message ${id} is no longer in the history (it disappeared or was deleted): it cannot be retried`);
    const content = fromBinary(ContentSchema, stored.content);
    await this.#storage.setItem(Table.Sent, id, Uint8Array.of(0)); // failed → queued again, explicitly
    const { mailboxes } = await this.#mailboxesOf({ accountKey: stored.peer });
    for (const m of mailboxes) await this.#sendContent(m, content.body, content.messageId, stored.peer, true);
    return (await this.messageState(id)) ?? 'queued';
  }

  /** Marks a still-queued message failed for good, unless another recipient device still has it queued. */
  async #fail(id: string, reason: string): Promise<void> {
    await this.#storage.transaction(async (tx) => {
      const stx = asStorageTx(tx);
      const cur = await stx.getItem(Table.Sent, id);
      if (!cur || cur[0] !== 0) return;
      if ((await stx.listItems(Table.Outbox, { prefix: `${id}:`, limit: 1 })).length > 0) return;
      const r = new TextEncoder().encode(reason);
      const v = new Uint8Array(1 + r.length);
      v[0] = FAILED;
      v.set(r, 1);
      await stx.setItem(Table.Sent, id, v);
    });
  }

  async #advanceStateIn(stx: AppStore, id: string, state: MessageState): Promise<boolean> {
    const next = STATES.indexOf(state);
    const cur = await stx.getItem(Table.Sent, id);
    if (!cur || cur.length !== 1 || cur[0]! >= next) return false; // unknown, later, or failed (final)
    await stx.setItem(Table.Sent, id, Uint8Array.of(next));
    return true;
  }

  // ── Push wake (docs/push.md, docs/api-push.md) ────────────────────────────────────────────

  /** Sets where the node rings this device when mail arrives while it is offline (replaces any earlier endpoint). */
  async registerPush(registration: PushRegistrationInput): Promise<void> {
    if (this.#closed) throw new SdkError(SdkErrorCode.CLOSED, 'client is closed');
    await registerPush(this.#api, this.#identity, registration);
  }
  /** Removes this device's push endpoint (no error when none was registered). */
  async unregisterPush(): Promise<void> {
    if (this.#closed) throw new SdkError(SdkErrorCode.CLOSED, 'client is closed');
    await unregisterPush(this.#api, this.#identity);
  }
  /** Which push services the node can ring, and its VAPID key (the browser's applicationServerKey). */
  pushInfo(): Promise<PushInfo> {
    return pushInfo(this.#api);
  }

  // ── Usernames (docs/spec/node-protocol.md §7) ─────────────────────────────────────────────

  async #usernameOperation(username: string, action: UsernameAction, newOwnerKey?: Uint8Array): Promise<void> {
    if (!this.account) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'this device does not hold the account key');
    const challenge = await this.#api.challenge();
    const signed = signUsernameOperation(this.#ctx, this.account, {
      namespace: this.namespace,
      username,
      action,
      signerKey: this.account.publicKey,
      ...(newOwnerKey ? { newOwnerKey } : {}),
      challenge,
    });
    await this.#api.call('POST', '/v1/usernames', SignedUsernameOperationSchema, signed, UsernameRecordSchema);
  }

  /** Claims `username` in this client's namespace for this account (policy per namespace: docs/self-hosting.md). */
  claimUsername(username: string): Promise<void> {
    return this.#usernameOperation(username, UsernameAction.CLAIM);
  }
  /** Gives up `username`. */
  releaseUsername(username: string): Promise<void> {
    return this.#usernameOperation(username, UsernameAction.RELEASE);
  }
  /** Signs `username` over to another account key. */
  transferUsername(username: string, newOwnerAccountKey: Uint8Array): Promise<void> {
    return this.#usernameOperation(username, UsernameAction.TRANSFER, newOwnerAccountKey);
  }
  /** Resolves a username in this namespace. The node could lie: compare safety numbers before trusting it. */
  async lookupUsername(username: string): Promise<UsernameRecord> {
    const path = `/v1/usernames/${encodeURIComponent(this.namespace)}/${encodeURIComponent(username)}`;
    const r = await this.#api.call('GET', path, undefined, undefined, UsernameRecordSchema);
    return { namespace: r.namespace, username: r.username, accountKey: r.ownerKey, mailboxIds: r.mailboxIds };
  }

  async #receive(envelopes: Envelope[]): Promise<void> {
    // Delivery receipts, one per sender device per batch, sent after the batch was processed.
    const delivered = new Map<DeviceAddress, { mailbox: Uint8Array; ids: Uint8Array[] }>();
    await this.#receiveAll(envelopes, delivered);
    for (const { mailbox, ids } of delivered.values()) {
      this.#sendContent(mailbox, { case: 'receipt', value: { kind: ReceiptKind.DELIVERED, messageIds: ids } }).catch(() => undefined);
    }
  }

  async #receiveAll(envelopes: Envelope[], delivered: Map<DeviceAddress, { mailbox: Uint8Array; ids: Uint8Array[] }>): Promise<void> {
    for (const env of envelopes) {
      try {
        let content: Content | undefined;
        let blocked = false;
        let contact: ContactState | undefined;
        let newRequest = false;
        let duplicate = false;
        let timerChanged: number | undefined;
        let expiresAt = 0;
        const { sender } = await openSealedMessage(this.#ctx, this.#storage, env.payload, {
          // Runs in the transaction that advances the ratchet: the peer's delivery token, the history
          // entry and the contact state commit together with the step that decrypted the message.
          persist: async (tx, plaintext, from) => {
            let c: Content;
            try {
              c = fromBinary(ContentSchema, plaintext);
            } catch {
              throw new SdkError(SdkErrorCode.PROTOCOL, 'message content is not a valid Content');
            }
            content = c;
            const t = c.deliveryToken;
            const stx = asStorageTx(tx);
            const peerHex = toHex(from.accountKey);
            // A blocked sender's token is never stored: we will not answer, let alone in the token lane.
            blocked = (await stx.getItem(Table.Blocked, peerHex)) !== undefined;
            if (blocked) return;
            if (t.length >= 16 && t.length <= 64) await stx.setItem(Table.PeerToken, deviceAddress(from), t);
            if (c.version > CONTENT_VERSION) return; // reported below, nothing stored
            const cs = await stx.getItem(Table.Contact, peerHex);
            contact = cs && cs.length === 1 ? CONTACT_STATES[cs[0]!] : undefined;
            const body = c.body.case;
            if (body === 'text' || body === 'binary' || body === 'file' || body === 'expireTimer') {
              // A higher version wins; a message that crossed a change in flight (lower version)
              // cannot set the timer back. Equal versions, different values (both changed it at
              // once): the shorter timer wins, 0 (off) counting as the longest — both sides agree.
              const seconds = body === 'expireTimer' ? c.body.value.seconds : c.expireSeconds;
              const version = c.expireTimerVersion;
              const cur = await this.#timerRecord(stx, from.accountKey);
              const rank = (x: number) => (x === 0 ? Infinity : x);
              const wins = version > cur.version || (version === cur.version && rank(seconds) < rank(cur.seconds));
              if (seconds <= MAX_DISAPPEARING_SECONDS && wins && (seconds !== cur.seconds || version !== cur.version)) {
                await this.#setTimer(stx, from.accountKey, seconds, version);
                if (seconds !== cur.seconds) timerChanged = seconds;
              }
            }
            if (body === 'text' || body === 'binary' || body === 'file') {
              if (contact === undefined) {
                contact = 'request';
                newRequest = true;
                await stx.setItem(Table.Contact, peerHex, Uint8Array.of(CONTACT_STATES.indexOf('request')));
              }
              const now = this.#ctx.now();
              const seconds = Math.min(c.expireSeconds, MAX_DISAPPEARING_SECONDS);
              expiresAt = seconds > 0 ? now + seconds * 1000 : 0;
              const fresh = await addToHistory(stx, { peer: from.accountKey, author: from.accountKey, from: deviceAddress(from), content: c, receivedAt: now, expiresAt, outgoing: false, request: contact === 'request' });
              duplicate = !fresh;
            } else if (body === 'edit' || body === 'delete' || body === 'reaction') {
              await this.#applyToHistory(stx, from.accountKey, c);
            } else if (body === 'receipt') {
              // Message states advance in the same commit as the ratchet step that opened the receipt.
              const state = c.body.value.kind === ReceiptKind.READ ? 'read' : 'delivered';
              for (const id of c.body.value.messageIds) await this.#advanceStateIn(stx, toHex(id), state);
            }
          },
        });
        if (!content) throw new SdkError(SdkErrorCode.PROTOCOL, 'message had no content');
        // Blocked: removed from the node's queue (acknowledged to the node, or the mailbox would
        // fill), but nothing is shown and no receipt of any kind goes back to the sender.
        if (blocked) continue;
        if (content.version > CONTENT_VERSION) {
          throw new SdkError(SdkErrorCode.UNSUPPORTED_CONTENT, `the sender's app writes content version ${content.version}; this SDK understands up to ${CONTENT_VERSION}: update the app`);
        }
        if (duplicate) continue;
        const base = {
          id: toHex(content.messageId),
          from: deviceAddress(sender),
          fromMailboxId: mailboxIdOf(this.#ctx, sender.deviceSigningKey),
          sender,
          sentAt: Number(content.sentAt),
          receivedAt: Number(env.receivedAt),
        };
        if (newRequest) {
          this.#emit('contactRequest', { accountKey: sender.accountKey, from: base.from, fromMailboxId: base.fromMailboxId });
          this.#scheduleKeyCheck(KEY_CHECK_AFTER_CONTACT_MS); // a first contact used up one-time prekeys
        }
        if (timerChanged !== undefined) this.#emit('disappearingTimer', { peer: sender.accountKey, seconds: timerChanged, by: 'peer' });
        if (expiresAt > 0) this.#scheduleSweep();
        const extra = { ...(contact === 'request' ? { request: true } : {}), ...(expiresAt > 0 ? { expiresAt } : {}) };
        if (content.body.case === 'text' || content.body.case === 'binary' || content.body.case === 'file') {
          if (content.body.case === 'text') {
            const t = content.body.value;
            const reply = t.replyTo && t.replyTo.author.length === 32 && t.replyTo.messageId.length === 16
              ? { replyTo: { author: t.replyTo.author, id: toHex(t.replyTo.messageId), snippet: t.replySnippet } }
              : {};
            this.#emit('message', { ...base, ...extra, text: t.text, ...reply, ...(t.forwarded ? { forwarded: true } : {}) });
          }
          else if (content.body.case === 'file') this.#emit('message', { ...base, ...extra, file: FileAttachment.fromContent(content.body.value) });
          else this.#emit('message', { ...base, ...extra, binary: { mimeType: content.body.value.mimeType, data: content.body.value.data } });
          const list = delivered.get(base.from) ?? { mailbox: base.fromMailboxId, ids: [] as Uint8Array[] };
          list.ids.push(content.messageId);
          delivered.set(base.from, list);
        } else if (content.body.case === 'receipt') {
          const state = content.body.value.kind === ReceiptKind.READ ? 'read' : 'delivered';
          const ids = content.body.value.messageIds.map(toHex);
          this.#emit('receipt', { from: base.from, state, messageIds: ids });
        } else if (content.body.case === 'reaction') {
          const r = content.body.value;
          if (r.target && r.target.author.length === 32 && r.target.messageId.length === 16 && r.emoji.length > 0 && r.emoji.length <= 16) {
            this.#emit('reaction', { from: base.from, author: sender.accountKey, target: { author: r.target.author, id: toHex(r.target.messageId) }, emoji: r.emoji, remove: r.remove });
          }
        } else if (content.body.case === 'edit' || content.body.case === 'delete') {
          // The author is the SENDER's authenticated account: an edit or delete can only ever name
          // messages (author, id) of the account that sent it — nobody can touch another's message.
          const id = content.body.value.messageId;
          if (id.length === 16) {
            if (content.body.case === 'edit') this.#emit('edit', { from: base.from, author: sender.accountKey, id: toHex(id), text: content.body.value.text });
            else this.#emit('delete', { from: base.from, author: sender.accountKey, id: toHex(id) });
          }
        } else if (content.body.case === 'typing') {
          // Not shown for strangers and unanswered requests (nobody can watch you type uninvited).
          if (contact === 'accepted') this.#emit('typing', { from: base.from, typing: content.body.value.typing });
        } else if (content.body.case === 'presence') {
          if (contact === 'accepted') this.#emit('presence', { from: base.from, online: content.body.value.online, lastSeen: Number(content.body.value.lastSeen) });
        }
      } catch (e) {
        // A redelivery of something already processed (connection dropped before the ack) is a
        // duplicate at the ratchet: acknowledge it quietly. Anything else is reported, then acked
        // (it can never decrypt, and must not block the mailbox).
        if (e instanceof CryptoError && e.code === CryptoErrorCode.DUPLICATE_MESSAGE) continue;
        const code = e instanceof CryptoError || e instanceof SdkError ? e.code : 'MW_SDK_INTERNAL';
        this.#emit('undecryptable', { envelopeId: toHex(env.id), code, message: e instanceof Error ? e.message : String(e) });
      }
    }
  }

  // ── Deletion (docs/spec/node-protocol.md §10) ─────────────────────────────────────────────

  /**
   * Deletes this account everywhere: the node removes every device of the account (mailboxes,
   * queued mail, keys, push registrations, media), its usernames and its archive; then this device
   * erases its storage (identity, sessions, history) and the client closes. Contacts' next
   * messages to it fail with MW_NOT_FOUND. Irreversible.
   */
  async deleteAccount(): Promise<void> {
    await this.#deleteAt('/v1/account');
  }

  /** Removes this one device from the node (other devices of the account stay) and erases its storage. */
  async deleteDevice(): Promise<void> {
    await this.#deleteAt('/v1/device');
  }

  async #deleteAt(path: string): Promise<void> {
    if (this.#closed) throw new SdkError(SdkErrorCode.CLOSED, 'client is closed');
    const res = await this.#api.rawCall('DELETE', path, this.#identity);
    await res.body?.cancel();
    await this.#shutdown();
    await this.#storage.erase();
  }

  /** Stops timers, lets a running outbox flush finish, and closes the connection. */
  async #shutdown(): Promise<void> {
    this.#closed = true;
    if (this.#sweepTimer) clearTimeout(this.#sweepTimer);
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    if (this.#keyTimer) clearTimeout(this.#keyTimer);
    await this.#flushing?.catch(() => undefined);
    await this.#connection.close();
  }

  /** Waits until everything received so far has been processed. */
  async idle(): Promise<void> {
    await this.#connection.idle();
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
}

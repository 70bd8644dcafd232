/**
 * The client's public types (docs/api.md): options, events and the shapes they carry. Kept apart
 * from the modules that produce them so every module (and docs/api.md's coverage test) reads one
 * definition.
 */
import type { CryptoContext, DeviceAddress, DeviceCertificate } from '@meshwhisper/crypto';
import type { ProtocolStorage } from '../storage/types.js';
import type { ConnectionState, WebSocketConstructor } from './connection.js';
import type { SdkError } from './errors.js';
import type { ConversationId } from './conversation.js';
import type { GroupChange, GroupInvitation } from './groups/groups.js';
import type { Message } from './history.js';
import type { Logger } from './log.js';
import type { StopReason } from './transport.js';

/**
 * Lifecycle of a message this device sent (docs/api.md). Later states never go back; 'failed' is
 * final (messageStatus() says why: the recipient's device no longer exists, or it disappeared
 * before it could be sent).
 */
export type MessageState = 'queued' | 'sent' | 'delivered' | 'read' | 'failed';

/** Whether an account is a contact: 'request' = it wrote first and the app has not accepted it yet. */
export type ContactState = 'request' | 'accepted';

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
  /**
   * How long one request to the node may wait for its answer before it fails with
   * MW_SDK_UNREACHABLE (default HTTP_REQUEST_TIMEOUT_MS, 30 s). Media and archive transfers are not
   * bounded by it.
   */
  readonly requestTimeoutMs?: number;
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
  /**
   * How long delivery and read receipts wait before they go out, in ms: each is delayed by a time
   * drawn uniformly from [minDelayMs, maxDelayMs], and receipts to the same device queued meanwhile
   * go in one message, so that the node cannot pair a receipt with the message it answers by timing
   * (docs/threat-model.md §Receipt timing). Default 1,000–10,000.
   */
  readonly receiptDelay?: { readonly minDelayMs: number; readonly maxDelayMs: number };
  /**
   * Receives what the client recovers from by itself (a retry that failed, a receipt that could not
   * be sent, a background key check that did not reach the node…). Never secrets: an event name, a
   * message and an error code. Default: nothing is logged.
   */
  readonly logger?: Logger;
  /** How many devices the account may have; acceptLinkOffer refuses beyond it (MW_SDK_DEVICE_LIMIT). Default 6. */
  readonly maxDevices?: number;
  /**
   * What to do when a contact asks this device to replay your conversation (requestHistoryReplay):
   * 'ask' (default: a `historyReplayRequest` event, answered with answerHistoryReplay), 'always'
   * (replay without asking), 'never' (refuse without asking).
   */
  readonly historyReplay?: 'ask' | 'always' | 'never';
}

/**
 * A received message, as the `message` event carries it: exactly the `Message` that history()
 * returns for it (one shape, live and stored), plus the sending device.
 */
export interface IncomingMessage extends Message {
  /** The sending device's address (account key hex ":" device key hex). */
  readonly from: DeviceAddress;
  /** The sending device's mailbox id: reply to it with `sendText(from mailbox, …)`. */
  readonly fromMailboxId: Uint8Array;
  readonly sender: DeviceCertificate;
}

export interface UndecryptableMessage {
  readonly envelopeId: string;
  /**
   * Why (a stable code): e.g. MW_CRYPTO_SKIPPED_KEY_EVICTED / MW_CRYPTO_SKIPPED_KEY_EXPIRED (a late
   * message whose key is gone), MW_CRYPTO_UNKNOWN_SESSION, MW_CRYPTO_TOO_FAR_AHEAD,
   * MW_CRYPTO_UNKNOWN_PREKEY, MW_CRYPTO_BAD_MAC (forged or corrupted). True duplicates are never
   * reported. For the lost-unless-re-sent codes the sender was told and re-sends.
   */
  readonly code: string;
  readonly message: string;
  /** The sending device, when the sealed envelope opened (it authenticates the sender). */
  readonly from?: DeviceAddress;
}

export interface MeshWhisperEvents {
  message: IncomingMessage;
  /**
   * A group changed (docs/api.md §Groups): this device joined (was added, or created it), a member
   * was added or removed (kicked or left — `accountKey` may be this account: then this device is out),
   * devices changed, renamed, admin granted or revoked, the policy became admin-less.
   */
  groupChange: { readonly groupId: Uint8Array; readonly change: GroupChange };
  /** An invitation to a group arrived: accept or decline it (client.groups.acceptInvite / declineInvite). */
  groupInvite: GroupInvitation;
  /** An account answered an invitation this device made; if it accepted, this device adds it. */
  groupInviteAnswer: { readonly groupId: Uint8Array; readonly accountKey: Uint8Array; readonly accept: boolean };
  /** An envelope that could not be opened (tampered, from an unknown session…): never silently dropped. */
  undecryptable: UndecryptableMessage;
  /**
   * A contact asks this device to replay your direct conversation (policy 'ask'): call
   * answerHistoryReplay(requestId, true | false). Unanswered requests are forgotten after a day.
   */
  historyReplayRequest: { readonly requestId: string; readonly conversation: ConversationId; readonly from: Uint8Array; readonly maxMessages: number };
  /**
   * An answer to requestHistoryReplay: granted (a part of the replay: `added` messages merged into
   * the history, marked `replayed`; `complete` on the last part), refused, or rate-limited.
   */
  historyReplayed: {
    readonly requestId: string;
    readonly conversation: ConversationId;
    readonly from: Uint8Array;
    readonly decision: 'granted' | 'refused' | 'rate-limited';
    readonly added: number;
    readonly complete: boolean;
  };
  /**
   * Messages this device missed and will not get (no silent loss). `source: 'node'`: the node reports
   * `expired` / `evicted` envelopes it dropped before this device fetched them (it cannot know from
   * whom). `source: 'session'`: a conversation is known to have `missing` messages — the node's
   * drop showed up as a jump in that contact's messages, or message keys kept for late messages
   * expired or were evicted (`expired`/`evicted` are 0 then). Ask the contact to re-send, or
   * requestHistoryReplay.
   */
  gap: { readonly source: 'node' | 'session'; readonly expired: number; readonly evicted: number; readonly missing: number; readonly conversation?: ConversationId };
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
  typing: { readonly from: DeviceAddress; readonly typing: boolean; readonly conversation?: ConversationId };
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
  /** A conversation's disappearing-message timer changed (by the peer, or by this device). `peer`: direct conversations. */
  disappearingTimer: { readonly conversation: ConversationId; readonly peer?: Uint8Array; readonly seconds: number; readonly by: 'peer' | 'me' };
  /** Messages whose timer ran out were deleted from the history (and, if still queued, from the outbox). `peer`: direct conversations. */
  expired: { readonly conversation: ConversationId; readonly peer?: Uint8Array; readonly messages: MessageRef[] };
  /**
   * A message this device sent changed state: queued (sealed, in the outbox) → sent (the node has
   * it) → delivered → read, or failed (final; `reason` says why). Emitted after the change is stored.
   */
  messageState: { readonly id: string; readonly conversation: ConversationId; readonly state: MessageState; readonly reason?: string };
  /** A conversation's unread count changed (a message arrived, or markConversationRead). */
  unread: { readonly conversation: ConversationId; readonly unread: number };
  /** A failure the client cannot recover from by itself, e.g. a node speaking only a newer protocol version. */
  error: SdkError;
  /**
   * The device connection stopped and will not reconnect by itself — tell the user why:
   * 'replaced' (another tab, window or process of this same device logged in: only one connection
   * per device receives), 'device-deleted', 'auth-failed', 'unsupported-version' (also an `error`).
   * `connect()` takes the connection back (and stops the other one).
   */
  stopped: { readonly reason: StopReason; readonly message: string };
  /**
   * This device was revoked — the account's newest device list, signed by the account key, no
   * longer names it — and it erased its storage (identity, sessions, history) and closed. Follows a
   * `stopped` ('device-deleted'). `epoch`: the list that revoked it. The app should forget the
   * client and start over (link again). A node claiming a deletion the account did not sign wipes
   * nothing.
   */
  wiped: { readonly reason: 'revoked'; readonly epoch: number };
  /**
   * A contact decision made on another device of this account reached this one and was applied
   * here (own-device sync): 'accept', 'decline' (conversation deleted), 'block' or 'unblock'.
   */
  contactChanged: { readonly accountKey: Uint8Array; readonly action: 'accept' | 'decline' | 'block' | 'unblock' };
  /**
   * The node named a device of `accountKey` that the account's verified device list does not name
   * (docs/spec/02-keys.md §2.5): nothing was encrypted to it. A node slipping its own device into a
   * fan-out, or a lookup racing a revocation.
   */
  unlistedDevice: { readonly accountKey: Uint8Array; readonly mailboxId: Uint8Array };
  /**
   * The node served an older device list for `accountKey` (epoch `servedEpoch`) than one this device
   * knows exists (`knownEpoch`: a list it verified before, or the epoch a message from that account
   * stated). The node may be withholding a revocation or a new device: the newest list this device
   * holds stays in force; tell the user if it persists (docs/threat-model.md §Device lists).
   */
  deviceListWithheld: { readonly accountKey: Uint8Array; readonly knownEpoch: number; readonly servedEpoch: number };
}

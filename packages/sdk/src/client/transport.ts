/**
 * How sealed envelopes leave and reach this device. The client's modules talk to a `Transport`, never
 * to HTTP or WebSocket directly: the node (`NodeTransport`, docs/spec/node-protocol.md §3–§6) is the
 * first implementation; LAN delivery and federation are further implementations (or a router that
 * picks one per recipient) of the same interface, not a rewrite of the outbox or receive pipeline.
 *
 * The contract every implementation keeps:
 * - `send` resolves only once the envelope is durably accepted (durable lane) or handed over
 *   (ephemeral lane). It rejects with an SdkError that `sendFailureOf` classifies: `transient`
 *   (retry the same bytes later), `gone` (the mailbox does not exist: never deliverable),
 *   `token-refused` (the delivery token presented is no longer valid: resend without it), or
 *   `other` (a bug or a refusal that retrying cannot fix).
 * - Inbound envelopes are handed to `sink.deliver` strictly in order, and acknowledged to the sender
 *   side only after it resolved (at-least-once); duplicates are the session layer's business.
 * - `sink.stopped` says why the transport stopped reconnecting by itself, so the app can tell the
 *   user (another tab took over, the device was deleted…) instead of going silent.
 */
import type { CryptoContext, LocalIdentity } from '@meshwhisper/crypto';
import { toHex } from '@meshwhisper/crypto';
import type { Envelope } from '@meshwhisper/protocol';
import { AccountDevicesSchema, ClaimRequestSchema, ClaimResultSchema, EnvelopeClass, SendRequestSchema, SendResultSchema, UsernameRecordSchema } from '@meshwhisper/protocol';
import type { ConnectionState, WebSocketConstructor } from './connection.js';
import { DeviceConnection } from './connection.js';
import { SdkError, SdkErrorCode } from './errors.js';
import type { NodeApi } from './node-api.js';
import type { UsernameRecord } from './types.js';

export interface OutgoingEnvelope {
  /** The recipient device's mailbox id (32 bytes). */
  readonly mailboxId: Uint8Array;
  /** A sealed envelope (docs/spec/sealed-sender). */
  readonly payload: Uint8Array;
  /** Ephemeral lane: live delivery only, never stored, never wakes a device (typing, presence). */
  readonly ephemeral?: boolean;
  /** The recipient device's delivery token, when known (the node's token lane). */
  readonly deliveryToken?: Uint8Array;
}

/** Why a transport stopped reconnecting by itself (the `stopped` event). */
export type StopReason = 'replaced' | 'auth-failed' | 'device-deleted' | 'unsupported-version';

export interface TransportSink {
  /** Delivery tokens to register after each login (the node stores only their hashes). */
  deliveryTokens(): Uint8Array[];
  /** Processes envelopes in order; they are acknowledged once this resolves. */
  deliver(envelopes: Envelope[]): Promise<void>;
  /** Mail was dropped before this device fetched it. */
  gap(info: { expired: number; evicted: number }): void;
  state(state: ConnectionState): void;
  /** The backlog queued while offline has been delivered. */
  queueEmpty(): void;
  /** The transport stopped and will not reconnect by itself; `error` for a failure the app must see. */
  stopped(reason: StopReason, message: string, error?: SdkError): void;
  /** Processing inbound data failed; it was not acknowledged and will be delivered again. */
  failed(error: unknown): void;
}

export interface Transport {
  readonly state: ConnectionState;
  /** Starts (or restarts after a stop) receiving. */
  start(): void;
  send(envelope: OutgoingEnvelope): Promise<void>;
  /** A device's prekey bundle (encoded PreKeyBundle); consumes one-time prekeys. */
  claimBundle(mailboxId: Uint8Array): Promise<Uint8Array>;
  /** Mailbox ids of every device of an account, with the account's device list as served (empty: none). */
  accountDevices(accountKey: Uint8Array): Promise<AccountDevices>;
  lookupUsername(namespace: string, username: string): Promise<UsernameLookup>;
  /** Resolves when everything received so far has been processed. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

/** A device lookup: mailbox ids as the node names them, and the account's list to verify them against. */
export interface AccountDevices {
  readonly mailboxIds: Uint8Array[];
  /** The DeviceList encoding as served (unverified; empty when the node sent none). */
  readonly deviceList: Uint8Array;
}

/** A username lookup, with the owner's device list as served (unverified; empty: none). */
export interface UsernameLookup extends UsernameRecord {
  readonly deviceList: Uint8Array;
}

export type SendFailure = 'transient' | 'gone' | 'token-refused' | 'other';

/** Classifies a `Transport.send` rejection (see the contract above). */
export function sendFailureOf(e: unknown): SendFailure {
  if (!(e instanceof SdkError)) return 'other';
  if (e.code === SdkErrorCode.UNREACHABLE || e.nodeCode === 'MW_RATE_LIMITED' || e.nodeCode === 'MW_UNAVAILABLE') return 'transient';
  if (e.nodeCode === 'MW_NOT_FOUND') return 'gone';
  if (e.nodeCode === 'MW_AUTH_FORBIDDEN') return 'token-refused';
  return 'other';
}

/** The node as a transport: HTTP for sending and lookups, the device WebSocket for receiving. */
export class NodeTransport implements Transport {
  readonly #connection: DeviceConnection;

  constructor(
    private readonly api: NodeApi,
    options: { ctx: CryptoContext; identity: LocalIdentity; WebSocket: WebSocketConstructor; sink: TransportSink },
  ) {
    const { sink } = options;
    this.#connection = new DeviceConnection({ ctx: options.ctx, url: api.baseUrl, identity: options.identity, WebSocket: options.WebSocket }, {
      deliveryTokens: () => sink.deliveryTokens(),
      onDeliver: (envs) => sink.deliver(envs),
      onGap: (expired, evicted) => sink.gap({ expired, evicted }),
      onState: (s) => sink.state(s),
      onQueueEmpty: () => sink.queueEmpty(),
      onStopped: (reason, message, error) => sink.stopped(reason, message, error),
      onHandlerError: (e) => sink.failed(e),
    });
  }

  get state(): ConnectionState {
    return this.#connection.state;
  }

  start(): void {
    this.#connection.start();
  }

  async send(envelope: OutgoingEnvelope): Promise<void> {
    const { mailboxId, payload, deliveryToken } = envelope;
    const value = { mailboxId, payload, class: envelope.ephemeral ? EnvelopeClass.EPHEMERAL : EnvelopeClass.DURABLE, ...(deliveryToken ? { deliveryToken } : {}) };
    await this.api.call('POST', '/v1/send', { body: { schema: SendRequestSchema, value }, reply: SendResultSchema });
  }

  async claimBundle(mailboxId: Uint8Array): Promise<Uint8Array> {
    return (await this.api.call('POST', '/v1/keys/claim', { body: { schema: ClaimRequestSchema, value: { mailboxId } }, reply: ClaimResultSchema })).bundle;
  }

  async accountDevices(accountKey: Uint8Array): Promise<AccountDevices> {
    const r = await this.api.call('GET', `/v1/accounts/${toHex(accountKey)}/devices`, { reply: AccountDevicesSchema });
    return { mailboxIds: r.mailboxIds, deviceList: r.deviceList };
  }

  async lookupUsername(namespace: string, username: string): Promise<UsernameLookup> {
    const path = `/v1/usernames/${encodeURIComponent(namespace)}/${encodeURIComponent(username)}`;
    const r = await this.api.call('GET', path, { reply: UsernameRecordSchema });
    return { namespace: r.namespace, username: r.username, accountKey: r.ownerKey, mailboxIds: r.mailboxIds, deviceList: r.deviceList };
  }

  idle(): Promise<void> {
    return this.#connection.idle();
  }

  close(): Promise<void> {
    return this.#connection.close();
  }
}

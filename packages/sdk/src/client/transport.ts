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
import { AccountDevicesSchema, ClaimRequestSchema, ClaimResultSchema, EnvelopeClass, MAX_HTTP_BODY_BYTES, MAX_SEND_BATCH_ITEMS, SendBatchRequestSchema, SendBatchResultSchema, SendRequestSchema, SendResultSchema, UsernameRecordSchema } from '@meshwhisper/protocol';
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
  /**
   * Several durable envelopes (e.g. one message for every device of an account) handed over at
   * once — the node takes them in one request and one commit — and answered one by one, in order,
   * each as `send` would have: accepted, or the error `sendFailureOf` classifies. Rejects (with a
   * transient error) only when no answer arrived at all: then any of them may have been accepted,
   * and resending them all is safe (recipients drop duplicates by message id).
   */
  sendBatch(envelopes: readonly OutgoingEnvelope[]): Promise<SendOutcome[]>;
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

/** One envelope's answer in `Transport.sendBatch`. */
export type SendOutcome = { readonly ok: true } | { readonly ok: false; readonly error: SdkError };

export type SendFailure = 'transient' | 'gone' | 'token-refused' | 'other';

/** Classifies a `Transport.send` rejection (see the contract above). */
export function sendFailureOf(e: unknown): SendFailure {
  if (!(e instanceof SdkError)) return 'other';
  if (e.code === SdkErrorCode.UNREACHABLE || e.nodeCode === 'MW_RATE_LIMITED' || e.nodeCode === 'MW_UNAVAILABLE') return 'transient';
  // A load balancer's "bad gateway" / "gateway timeout": the instance behind it died or stalled mid-request
  // (docs/scale-out.md §Failure behaviour). The same bytes go again; if the first try was stored, the
  // recipient drops the copy at its ratchet.
  if (e.nodeCode === 'HTTP_502' || e.nodeCode === 'HTTP_504') return 'transient';
  if (e.nodeCode === 'MW_NOT_FOUND') return 'gone';
  if (e.nodeCode === 'MW_AUTH_FORBIDDEN') return 'token-refused';
  return 'other';
}

/** The node as a transport: HTTP for sending and lookups, the device WebSocket for receiving. */
/** Protobuf framing per batch item (tags and lengths), bounded generously. */
const BATCH_ITEM_OVERHEAD = 32;

export class NodeTransport implements Transport {
  readonly #connection: DeviceConnection;
  /** False once the node answered that it has no POST /v1/send/batch (an older node). */
  #batchRoute = true;

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

  /**
   * POST /v1/send/batch (node-protocol.md §4.1), in slices of at most MAX_SEND_BATCH_ITEMS items and
   * a body under MAX_HTTP_BODY_BYTES; the slices go out together. A node that predates the batch
   * route (404 for the route itself) gets the envelopes one by one.
   */
  async sendBatch(envelopes: readonly OutgoingEnvelope[]): Promise<SendOutcome[]> {
    const slices: OutgoingEnvelope[][] = [];
    let bytes = 0;
    for (const e of envelopes) {
      const size = e.payload.length + e.mailboxId.length + (e.deliveryToken?.length ?? 0) + BATCH_ITEM_OVERHEAD;
      const last = slices.at(-1);
      if (!last || last.length >= MAX_SEND_BATCH_ITEMS || bytes + size > MAX_HTTP_BODY_BYTES - BATCH_ITEM_OVERHEAD) {
        slices.push([e]);
        bytes = size;
      } else {
        last.push(e);
        bytes += size;
      }
    }
    const answers = await Promise.all(slices.map((slice) => this.#sendSlice(slice)));
    return answers.flat();
  }

  async #sendSlice(slice: readonly OutgoingEnvelope[]): Promise<SendOutcome[]> {
    if (slice.length === 1) return this.#oneByOne(slice); // POST /v1/send: no batch framing for one
    const items = slice.map(({ mailboxId, payload, deliveryToken }) => ({ mailboxId, payload, class: EnvelopeClass.DURABLE, ...(deliveryToken ? { deliveryToken } : {}) }));
    if (!this.#batchRoute) return this.#oneByOne(slice);
    let r;
    try {
      r = await this.api.call('POST', '/v1/send/batch', { body: { schema: SendBatchRequestSchema, value: { items } }, reply: SendBatchResultSchema });
    } catch (e) {
      if (!(e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND')) throw e;
      this.#batchRoute = false; // an older node: no batch route
      return this.#oneByOne(slice);
    }
    if (r.results.length !== slice.length) throw new SdkError(SdkErrorCode.PROTOCOL, `POST /v1/send/batch: ${r.results.length} results for ${slice.length} items`);
    return r.results.map((x): SendOutcome => {
      if (x.outcome.case === 'ok') return { ok: true };
      const d = x.outcome.case === 'error' ? x.outcome.value : { code: 'MW_PROTO_MALFORMED', message: 'no outcome' };
      return { ok: false, error: new SdkError(SdkErrorCode.NODE_ERROR, `POST /v1/send/batch: ${d.message}`, d.code) };
    });
  }

  async #oneByOne(slice: readonly OutgoingEnvelope[]): Promise<SendOutcome[]> {
    return Promise.all(
      slice.map((e) =>
        this.send(e).then(
          (): SendOutcome => ({ ok: true }),
          (error: unknown): SendOutcome => {
            if (error instanceof SdkError) return { ok: false, error };
            throw error;
          },
        ),
      ),
    );
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

/**
 * The device connection, GET /v1/device (docs/spec/node-protocol.md §Device connection):
 *
 *   hello → authenticate → ready
 *
 * In `ready` the node pushes stored envelopes oldest first, at most DELIVERY_WINDOW
 * unacknowledged at a time and only while the socket's send buffer is below HIGH_WATER_BYTES
 * (a slow reader stalls delivery instead of growing the node's memory), then QueueEmpty; new
 * mail is pushed as it commits. Envelopes are deleted only when the device acknowledges them; if
 * the connection drops, unacknowledged envelopes stay stored and are delivered again next time.
 */
import { randomBytes } from 'node:crypto';
import type { CryptoContext } from '@meshwhisper/crypto';
import type { Envelope, FastEnvelope, Frame } from '@meshwhisper/protocol';
import {
  DEVICE_SOCKET_METHOD,
  DEVICE_SOCKET_PATH,
  ErrorCode,
  MAX_DELIVER_BATCH,
  MAX_ENVELOPE_SIZE,
  MAX_FRAME_BYTES,
  ProtocolError,
  encodeDeliverFrame,
  requestDigest,
} from '@meshwhisper/protocol';
import type { WebSocket } from 'ws';
import type { ChallengeIssuer } from '../auth.js';
import { verifyDeviceAuth } from '../auth.js';
import type { DeliveryHub, LiveSession } from '../mailbox/hub.js';
import { AHEAD_SENT } from '../mailbox/hub.js';
import { deliveryTokenHash } from '../mailbox/send.js';
import { hexKey } from '../hex.js';
import type { RateLimiter } from '../rate-limit.js';
import type { NodeStore, StoredEnvelope } from '../store/node-store.js';
import type { AckCommitter } from '../mailbox/acks.js';
import type { FrameLog } from './connection.js';
import { CloseCode, FrameConnection, WS_FRAME_BUFFER } from './connection.js';
import { InFlightTable, NOT_SETTLED, SETTLED_ACKED } from './in-flight.js';

/** Pause delivery while this many bytes wait in the socket's send buffer. */
export const HIGH_WATER_BYTES = 1024 * 1024;
/** The next turn of the event loop, after its I/O (setImmediate). */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
/** Payload bytes per Deliver frame, leaving room for framing under MAX_FRAME_BYTES. */
const BATCH_PAYLOAD_BYTES = MAX_FRAME_BYTES - 64 * 1024;
/** The in-flight "seq" of an envelope delivered ahead of its commit: its seq comes with the commit. */
const AHEAD = -1;
/** Delivery tokens a connection remembers as accepted by a commit (the set starts again when full). */
const MAX_TOKENS_SEEN = 1024;
/** Ack frames with a request id held for envelopes delivered ahead of their commit; beyond it such ids are ignored (delivered again later). */
const MAX_HELD_ACKS = 1024;

export interface DeviceConnectionDeps {
  readonly ctx: CryptoContext;
  readonly store: NodeStore;
  readonly hub: DeliveryHub;
  readonly issuer: ChallengeIssuer;
  readonly limiter: RateLimiter;
  readonly deliveryWindow: number;
  /** Group commit for acks (shared by every connection of the node). */
  readonly acks: AckCommitter;
  /**
   * SendService.retractAcked: an envelope delivered ahead that the device acknowledged (ack
   * without a request id) before its group commit started is answered and never written; true if
   * so. Absent (WRITE_ACKED_AHEAD=true): such acks wait for the commit.
   */
  readonly retractAcked?: (envelope: FastEnvelope) => boolean;
  readonly events?: {
    authenticated?(): void;
    authFailed?(code: string): void;
    delivered?(n: number): void;
  };
}

type State = 'hello' | 'auth' | 'authenticating' | 'ready';

export class DeviceConnection extends FrameConnection implements LiveSession {
  #state: State = 'hello';
  #mailbox: Uint8Array | undefined;
  mailboxKey = '';
  // Opaque, compared on login elsewhere (hub.ts); hex from Buffer is one flat string (randomUUID() is a rope of ~20 pieces, kept per connection).
  readonly sessionId = randomBytes(16).toString('hex');
  /** Ids sent and not yet acknowledged → their seq (acks delete by (mailbox, seq)), AHEAD until their commit. */
  readonly #inFlight = new InFlightTable();
  /** Entries of #inFlight that are AHEAD. */
  #ahead = 0;
  /** Envelopes taken ahead in this turn, written together when the turn's I/O is done (#flushAheadAll). */
  #aheadOut: FastEnvelope[] | undefined;
  /** Connections with envelopes in #aheadOut (one setImmediate for all). */
  static #aheadDirty: DeviceConnection[] = [];
  /**
   * Ack frames with a request id naming an envelope still AHEAD: handled again as such envelopes
   * commit (or are dropped), so that the Ok follows the deletion of all their ids. (An ack without
   * a request id — the SDK's — marks such an envelope in #inFlight instead: it is deleted with its
   * commit's settlement, #settle.)
   */
  #heldAcks: { requestId: number; ids: readonly Uint8Array[] }[] = [];
  /** Delivery tokens (hash, latin1) that a commit accepted for this mailbox since the last token change (made at the first: an idle connection holds no set). */
  #tokensSeen: Set<string> | undefined;
  /** Incremented when a token change starts and when it ends: a commit's acceptance counts only if none happened since its send was admitted. */
  #tokenEpoch = 0;
  /** Token changes in progress (no token is remembered meanwhile). */
  #tokenWrites = 0;
  /** Highest seq delivered on this connection (the fetch cursor). */
  #lastSeq = 0;
  #initialDrainDone = false;
  /** Stored envelopes after the cursor may exist that this connection has not sent (window or buffer was full). */
  #behind = true;
  #bufferTimer: ReturnType<typeof setTimeout> | undefined;
  #fetching = false;
  #wakeAgain = false;
  /** The login's gap counters were read (and a notice sent if due): deliveries may start. */
  #gapChecked = false;
  /** Frames that arrived while the authentication was being checked: handled after it. */
  #held: Frame[] = [];
  /** Gap counts announced and awaiting the device's Ok (request id → counts). */
  readonly #gapPending = new Map<number, { expired: number; evicted: number }>();
  #nextRequestId = 1;

  constructor(
    ws: WebSocket,
    clientKey: string,
    log: FrameLog,
    private readonly deps: DeviceConnectionDeps,
  ) {
    super(ws, deps.limiter, clientKey, log);
  }

  protected onFrame(frame: Frame): void {
    switch (this.#state) {
      case 'hello': {
        if (!this.hello(frame)) return;
        this.#state = 'auth';
        this.send({ requestId: frame.requestId, body: { case: 'serverHello', value: { version: this.version, challenge: this.deps.issuer.issue(), maxFrameBytes: MAX_FRAME_BYTES } } });
        return;
      }
      case 'auth':
        this.#state = 'authenticating';
        void this.#authenticate(frame);
        return;
      case 'authenticating':
        this.#held.push(frame);
        return;
      case 'ready':
        return this.#ready(frame);
    }
  }

  async #authenticate(frame: Frame): Promise<void> {
    if (frame.body.case !== 'authenticate') {
      this.fail(frame.requestId, new ProtocolError(ErrorCode.AUTH_REQUIRED, 'authenticate first'), CloseCode.AUTH_FAILED);
      return;
    }
    const { ctx, issuer, hub, store } = this.deps;
    try {
      const device = await verifyDeviceAuth(ctx, issuer, store, frame.body.value, requestDigest(ctx, DEVICE_SOCKET_METHOD, DEVICE_SOCKET_PATH));
      this.#mailbox = device.mailbox;
      this.mailboxKey = hexKey(device.mailbox); // one flat string (toHex builds a rope of 32 pieces, kept per connection)
    } catch (e) {
      const err = e instanceof ProtocolError ? e : new ProtocolError(ErrorCode.AUTH_INVALID, 'authentication failed');
      this.deps.events?.authFailed?.(err.code);
      this.fail(frame.requestId, err, CloseCode.AUTH_FAILED);
      return;
    }
    if (this.closed) return;
    this.#state = 'ready';
    this.handshakeDone();
    this.deps.events?.authenticated?.();
    this.send({ requestId: frame.requestId, body: { case: 'authenticated', value: { mailboxId: this.#mailbox } } });
    hub.attach(this);
    // The gap notice goes before the queue: the SDK reconciles the node's counts with the gaps its
    // sessions saw when the queue is drained (queueEmpty). So the first delivery waits for the
    // counters (on PostgreSQL they and the first batch would be two queries finishing in any order).
    this.#background(
      this.#gapCheck().finally(() => {
        this.#gapChecked = true;
        this.wake();
      }),
    );
    for (const f of this.#held.splice(0)) this.dispatch(f);
  }

  #ready(frame: Frame): void {
    const mailbox = this.#mailbox!;
    switch (frame.body.case) {
      case 'ack':
        return this.#ack(mailbox, frame.requestId, frame.body.value.ids);
      case 'ok': {
        const gap = this.#gapPending.get(frame.requestId);
        if (gap) {
          this.#gapPending.delete(frame.requestId);
          this.#background(this.deps.store.clearGap(mailbox, gap.expired, gap.evicted));
        }
        return;
      }
      case 'setDeliveryTokens': {
        const hashes = frame.body.value.tokens.map((t) => deliveryTokenHash(this.deps.ctx, t));
        const requestId = frame.requestId;
        // Nothing is delivered ahead on a remembered token from now until the new set is stored
        // and a commit accepts a token again (the epoch keeps acceptances of earlier sends out).
        this.#tokensSeen = undefined;
        this.#tokenEpoch++;
        this.#tokenWrites++;
        this.deps.store
          .setDeliveryTokens(mailbox, hashes)
          .finally(() => {
            this.#tokenEpoch++;
            this.#tokenWrites--;
          })
          .then(
            () => this.send({ requestId, body: { case: 'ok', value: {} } }),
            () => this.sendError(requestId, new ProtocolError(ErrorCode.UNAVAILABLE, 'storage failed; retry', 1000)),
          );
        return;
      }
      default:
        throw new ProtocolError(ErrorCode.UNEXPECTED_FRAME, `${frame.body.case ?? 'empty'} is not accepted on an authenticated device connection`);
    }
  }

  /**
   * Only ids delivered on this connection are deleted (found by seq, no id lookup). Another id —
   * delivered on an earlier connection of this device, or none of its own — is ignored: an
   * envelope still stored is delivered again here and acknowledged then. An ack naming an
   * envelope delivered ahead of its commit waits for that commit (its seq): marked in #inFlight
   * when the ack has no request id, otherwise held whole (#heldAcks) so that its Ok comes last. An
   * ack without a request id of such an envelope whose commit has not started yet ends it instead:
   * it is never written (deps.retractAcked), and settles here as if its deletion had committed.
   */
  #ack(mailbox: Uint8Array, requestId: number, ackIds: readonly Uint8Array[]): void {
    const ids: Uint8Array[] = [];
    const seqs: number[] = [];
    let unstored = 0;
    for (const id of ackIds) {
      const seq = this.#inFlight.get(id);
      if (seq === undefined) continue;
      if (seq === AHEAD) {
        if (requestId === 0) {
          // Not committed yet: if its group commit has not started either, it is never written.
          const ref = this.deps.retractAcked && this.#inFlight.ref(id);
          if (ref && this.deps.retractAcked!(ref as FastEnvelope)) {
            this.#inFlight.delete(id);
            this.#ahead--;
            unstored++;
            continue;
          }
          this.#inFlight.markAcked(id, AHEAD);
          continue;
        }
        if (this.#heldAcks.length >= MAX_HELD_ACKS) continue;
        this.#heldAcks.push({ requestId, ids: ackIds });
        return;
      }
      ids.push(id);
      seqs.push(seq);
    }
    if (unstored > 0) {
      this.deps.events?.delivered?.(unstored);
      this.#releaseAcks();
      if (this.#behind) this.wake(); // room in the window
    }
    // Nothing of this connection's and no Ok to send: no commit either.
    if (ids.length === 0 && requestId === 0) return;
    this.#commitAcks(mailbox, requestId, ids, seqs);
  }

  #commitAcks(mailbox: Uint8Array, requestId: number, ids: Uint8Array[], seqs: number[]): void {
    this.deps.acks.add(mailbox, ids, seqs, (n) => {
      if (n instanceof Error) {
        this.log.warn({ err: n.name }, 'ack commit failed');
        if (!this.closed) this.sendError(requestId, new ProtocolError(ErrorCode.UNAVAILABLE, 'storage failed; ack again', 1000));
        return;
      }
      for (const id of ids) this.#inFlight.delete(id);
      if (n > 0) this.deps.events?.delivered?.(n);
      if (this.closed) return;
      if (requestId !== 0) this.send({ requestId, body: { case: 'ok', value: {} } });
      // Room in the window: read more only if something may be waiting (no empty SELECT per ack).
      if (this.#behind) this.wake();
    });
  }

  /** Acks held for envelopes that were AHEAD, handled again now that some of those committed or were dropped. */
  #releaseAcks(): void {
    if (this.#heldAcks.length === 0 || this.closed) return;
    const held = this.#heldAcks;
    this.#heldAcks = [];
    for (const a of held) this.#ack(this.#mailbox!, a.requestId, a.ids);
  }

  // ── Delivery ahead of the commit (mailbox/hub.ts AheadDelivery) ──

  ahead(envelope: FastEnvelope, tokenKey: string): number {
    if (
      this.#tokenWrites > 0 ||
      this.#tokensSeen?.has(tokenKey) !== true ||
      // Caught up, not reading the store, and the window and the socket buffer have room: the
      // envelope is the next one the device would get once committed anyway.
      this.#state !== 'ready' ||
      this.closed ||
      !this.#gapChecked ||
      !this.#initialDrainDone ||
      this.#behind ||
      this.#fetching ||
      this.#inFlight.size >= this.deps.deliveryWindow ||
      this.ws.bufferedAmount >= HIGH_WATER_BYTES
    )
      return this.#tokenEpoch;
    // A new envelope: never in flight yet. The send is kept with it while AHEAD (retractAcked).
    this.#inFlight.add(envelope.id, AHEAD, this.deps.retractAcked ? envelope : undefined);
    this.#ahead++;
    // Written once this turn's I/O has been read: what several senders sent this device in one
    // turn leaves in one Deliver frame (and comes back in one ack), as a commit's envelopes do.
    const out = this.#aheadOut;
    if (out !== undefined) out.push(envelope);
    else {
      this.#aheadOut = [envelope];
      if (DeviceConnection.#aheadDirty.push(this) === 1) setImmediate(DeviceConnection.#flushAheadAll);
    }
    return AHEAD_SENT;
  }

  static #flushAheadAll(this: void): void {
    const list = DeviceConnection.#aheadDirty;
    DeviceConnection.#aheadDirty = [];
    for (const c of list) c.#flushAhead();
  }

  #flushAhead(): void {
    const out = this.#aheadOut;
    this.#aheadOut = undefined;
    // Closed meanwhile: they are stored (or their commit fails) and come again at the next login.
    if (out === undefined || this.closed) return;
    let from = 0;
    let bytes = 0;
    for (let i = 0; i < out.length; i++) {
      const size = out[i]!.payload.length;
      if (i > from && (i - from >= MAX_DELIVER_BATCH || bytes + size > BATCH_PAYLOAD_BYTES)) {
        this.sendFramed(encodeDeliverFrame(this.frameVersion, out.slice(from, i), WS_FRAME_BUFFER));
        from = i;
        bytes = 0;
      }
      bytes += size;
    }
    this.sendFramed(encodeDeliverFrame(this.frameVersion, from === 0 ? out : out.slice(from), WS_FRAME_BUFFER));
  }

  aheadDropped(id: Uint8Array): void {
    if (this.#inFlight.get(id) !== AHEAD) return;
    this.#inFlight.delete(id);
    this.#ahead--;
    this.#releaseAcks();
  }

  tokenAccepted(tokenKey: string, epoch: number): void {
    if (epoch !== this.#tokenEpoch || this.#tokenWrites > 0) return;
    const seen = (this.#tokensSeen ??= new Set());
    if (seen.size >= MAX_TOKENS_SEEN) seen.clear();
    seen.add(tokenKey);
  }

  #background(p: Promise<unknown>): void {
    p.catch((e: unknown) => this.log.warn({ err: e instanceof Error ? e.name : 'unknown' }, 'store call failed'));
  }

  #room(): number {
    if (this.closed) return 0;
    if (this.ws.bufferedAmount >= HIGH_WATER_BYTES) {
      // A slow reader: look again shortly (the socket has no "drained" event).
      this.#bufferTimer ??= setTimeout(() => {
        this.#bufferTimer = undefined;
        this.wake();
      }, 10);
      return 0;
    }
    return Math.max(0, Math.min(MAX_DELIVER_BATCH, this.deps.deliveryWindow - this.#inFlight.size));
  }

  /** Sends `batch` (seq order) but for the envelopes already in flight here (delivered ahead of their commit, settled first). */
  #deliver(batch: readonly StoredEnvelope[]): void {
    this.#lastSeq = batch[batch.length - 1]!.seq;
    let rest: StoredEnvelope[] | undefined;
    for (let i = 0; i < batch.length; i++) {
      const e = batch[i]!;
      if (!this.#inFlight.add(e.id, e.seq)) {
        rest ??= batch.slice(0, i);
        continue;
      }
      rest?.push(e);
    }
    const out = rest ?? batch;
    if (out.length > 0) this.sendFramed(encodeDeliverFrame(this.frameVersion, out, WS_FRAME_BUFFER)); // class DURABLE
  }

  /**
   * Committed envelopes that went ahead take their seq (whatever the window or the cursor), and
   * those the device acknowledged meanwhile go to the ack commit: returns how many settled.
   */
  #settle(envelopes: readonly StoredEnvelope[]): number {
    let n = 0;
    let ackIds: Uint8Array[] | undefined;
    let ackSeqs: number[] | undefined;
    for (const e of envelopes) {
      const r = this.#inFlight.settle(e.id, AHEAD, e.seq);
      if (r === NOT_SETTLED) continue;
      this.#ahead--;
      n++;
      if (r === SETTLED_ACKED) {
        (ackIds ??= []).push(e.id);
        (ackSeqs ??= []).push(e.seq);
      }
    }
    if (ackIds !== undefined) this.#commitAcks(this.#mailbox!, 0, ackIds, ackSeqs!);
    if (n > 0) this.#releaseAcks();
    return n;
  }

  /**
   * New mail, or room in the window. Envelopes handed over by the publisher that follow on
   * directly from the cursor (seq = lastSeq + 1: per-mailbox sequences are dense) are sent
   * without re-reading them — and so are envelopes that start at seq 1: the counter restarts only
   * when the mailbox was empty (node-store.ts), so nothing stored precedes them. Otherwise the
   * store is asked for what comes after the cursor.
   */
  wake(envelopes?: readonly StoredEnvelope[]): void {
    // Before the login's gap check nothing is delivered; the wake that follows it reads the store.
    if (this.#state !== 'ready' || this.closed || !this.#gapChecked) return;
    // Envelopes delivered ahead take their seq first, whatever follows: acks held for them go on.
    const settled = envelopes && this.#ahead > 0 ? this.#settle(envelopes) : 0;
    if (this.#fetching) {
      this.#wakeAgain = true;
      return;
    }
    const first = envelopes?.[0]?.seq;
    if (envelopes && first !== undefined && !this.#behind && this.#initialDrainDone && (first === this.#lastSeq + 1 || first === 1)) {
      if (settled === envelopes.length) {
        this.#lastSeq = envelopes[envelopes.length - 1]!.seq; // all of them went ahead
        return;
      }
      const room = this.#room();
      if (room >= envelopes.length - settled) return this.#deliver(envelopes);
      // As many as the window takes (those already in flight take no room); the rest is fetched when acks make room.
      let k = 0;
      for (let fresh = 0; k < envelopes.length; k++) {
        if (this.#inFlight.has(envelopes[k]!.id)) continue;
        if (fresh === room) break;
        fresh++;
      }
      if (k > 0) this.#deliver(envelopes.slice(0, k));
      this.#behind = true;
      return;
    }
    this.#behind = true;
    void this.#pump();
  }

  async #pump(): Promise<void> {
    this.#fetching = true;
    try {
      const mailbox = this.#mailbox!;
      for (;;) {
        this.#wakeAgain = false;
        const room = this.#room();
        if (room === 0) break;
        // Nothing in flight: everything this connection delivered is acknowledged and deleted, so
        // reading from the start is exact (and survives a mailbox whose counter restarted).
        // (Envelopes delivered ahead are not stored yet, or are read again here and take their seq.)
        if (this.#inFlight.size === this.#ahead) this.#lastSeq = 0;
        const batch = await this.deps.store.fetch(mailbox, this.#lastSeq, room, BATCH_PAYLOAD_BYTES);
        if (this.closed) return;
        // Fewer than asked for: nothing more is stored after this batch (until new mail, which
        // arrives through wake(envelopes)). A full batch may have more behind it.
        let bytes = 0;
        for (const e of batch) bytes += e.payload.length;
        this.#behind = batch.length >= room || bytes > BATCH_PAYLOAD_BYTES - MAX_ENVELOPE_SIZE;
        if (batch.length === 0) {
          if (!this.#initialDrainDone) {
            this.#initialDrainDone = true;
            this.send({ body: { case: 'queueEmpty', value: {} } });
          }
          if (!this.#wakeAgain) break;
          continue;
        }
        if (this.#ahead > 0) this.#settle(batch);
        this.#deliver(batch);
        if (!this.#behind && !this.#wakeAgain) {
          // Caught up (a short batch): no empty SELECT needed to prove it.
          if (!this.#initialDrainDone) {
            this.#initialDrainDone = true;
            this.send({ body: { case: 'queueEmpty', value: {} } });
          }
          break;
        }
        // More to read: first let this batch leave and the event loop turn. A store that answers
        // without I/O (SQLite read on the event loop before its reader thread, and does again if
        // that thread died) would otherwise keep this loop in one run of microtasks until the
        // window was full: up to DELIVERY_WINDOW envelopes read, and held in memory, before the
        // first byte went out (the frames leave at the end of the turn, connection.ts), the
        // socket's buffer never showing the backlog the window check reads, and every other
        // connection waiting for all of it.
        await nextTurn();
        if (this.closed) return;
      }
    } catch (e) {
      this.log.warn({ err: e instanceof Error ? e.name : 'unknown' }, 'fetch failed');
    } finally {
      this.#fetching = false;
    }
  }

  signal(envelope: Envelope): boolean {
    if (this.#state !== 'ready' || this.closed || this.ws.bufferedAmount >= HIGH_WATER_BYTES) return false;
    this.send({ body: { case: 'deliver', value: { envelopes: [envelope] } } });
    return true;
  }

  /** The gap counters may have changed (eviction, expiry): announce what is new. */
  checkGap(): void {
    this.#background(this.#gapCheck());
  }

  async #gapCheck(): Promise<void> {
    if (this.#state !== 'ready' || this.closed) return;
    const s = await this.deps.store.mailboxStats(this.#mailbox!);
    if (this.closed) return;
    let expired = s.gapExpired;
    let evicted = s.gapEvicted;
    for (const g of this.#gapPending.values()) {
      expired -= g.expired;
      evicted -= g.evicted;
    }
    if (expired <= 0 && evicted <= 0) return;
    const requestId = this.#nextRequestId++;
    const gap = { expired: Math.max(0, expired), evicted: Math.max(0, evicted) };
    this.#gapPending.set(requestId, gap);
    this.send({ requestId, body: { case: 'gapNotice', value: gap } });
  }

  protected onClosed(): void {
    clearTimeout(this.#bufferTimer);
    if (this.#mailbox) this.deps.hub.detach(this);
    this.#inFlight.clear();
    this.#ahead = 0;
    this.#aheadOut = undefined;
    this.#heldAcks = [];
    this.#held = [];
  }
}

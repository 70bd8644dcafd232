/**
 * Provisioning channels for device linking (docs/spec/linking.md §Provisioning channel): one-time, two-sided
 * mailboxes that relay opaque bytes between a new device and the existing device that scanned its
 * QR code. The node learns only sizes and timing (and, like every request, the client addresses
 * its rate limits use): every byte it relays is either the public hello or an AEAD frame under a
 * key derived from keys it never sees (docs/threat-model.md §Device linking).
 *
 * Invariants:
 * - A channel is created unauthenticated (the new device has no identity yet), bounded by a
 *   per-address rate limit, a node-wide cap on open channels, and a short lifetime.
 * - Single use: the first claim takes the channel; nobody can claim it again, and a channel is
 *   never reopened once closed or expired.
 * - Each side is authorised by a random 32-byte token it alone received; tokens are kept as
 *   SHA-256 hashes and compared in constant time.
 * - Bounded: per message, per side (count and bytes), and in lifetime. Everything lives in memory
 *   and is gone at expiry, at close by both sides, or at restart (a link in flight is then simply
 *   retried by the user).
 * - In a cluster the channel lives in the instance that created it; the other instances forward
 *   requests for it over NATS (link/relay.ts), so no sticky routing is needed.
 */
import type { CryptoContext } from '@meshwhisper/crypto';
import { equalBytes, toHex } from '@meshwhisper/crypto';
import { ErrorCode, ProtocolError } from '@meshwhisper/protocol';

/** Bytes of a channel id (LINK_CHANNEL_ID_LENGTH in @meshwhisper/crypto). */
export const LINK_CHANNEL_ID_BYTES = 16;
/** Bytes of a side's token. */
export const LINK_TOKEN_BYTES = 32;
/** An unclaimed channel (a QR on screen) is forgotten after this: a photographed QR is useless later. */
export const LINK_OFFER_TTL_MS = 5 * 60_000;
/** A claimed channel lives at most this long from creation: enough to move a few MB of history. */
export const LINK_CHANNEL_TTL_MS = 15 * 60_000;
/** Largest hello (a crypto hello is 1122 bytes; slack for a later version). */
export const LINK_MAX_HELLO_BYTES = 4096;
/** Largest relayed message: a full link frame (256 KiB payload + 20 bytes) with slack. */
export const LINK_MAX_MESSAGE_BYTES = 260 * 1024;
/** Messages and bytes one side may post over the channel's life. */
export const LINK_MAX_MESSAGES_PER_SIDE = 64;
export const LINK_MAX_BYTES_PER_SIDE = 8 * 1024 * 1024;
/** Open channels per node: bounds memory (≤ cap × 2 × LINK_MAX_BYTES_PER_SIDE in the worst case). */
export const LINK_MAX_CHANNELS = 256;
/** Longest long-poll a reader may ask for. */
export const LINK_MAX_WAIT_MS = 25_000;

export type LinkSide = 'owner' | 'scanner';

interface Side {
  tokenHash: Uint8Array | undefined;
  /** Messages this side posted, for the other side to read; sequence = index + 1. */
  readonly messages: Uint8Array[];
  bytes: number;
  closed: boolean;
}

interface Channel {
  readonly id: string;
  readonly createdAt: number;
  readonly owner: Side;
  readonly scanner: Side;
  claimed: boolean;
  /** Readers waiting for the other side's next message or close. */
  readonly waiters: Set<() => void>;
}

export interface LinkChannelStats {
  readonly open: number;
}

export class LinkChannels {
  readonly #channels = new Map<string, Channel>();
  readonly #timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly ctx: CryptoContext,
    private readonly limits: { readonly maxChannels?: number } = {},
    /** Told when a channel is forgotten (closed by both sides, expired, disposed). */
    private readonly onDrop?: (channelIdHex: string) => void,
  ) {
    this.#timer = setInterval(() => this.sweep(), 30_000);
    this.#timer.unref();
  }

  get stats(): LinkChannelStats {
    return { open: this.#channels.size };
  }

  #hash(token: Uint8Array): Uint8Array {
    return this.ctx.backend.sha256(token);
  }

  #expiresAt(c: Channel): number {
    return c.createdAt + (c.claimed ? LINK_CHANNEL_TTL_MS : LINK_OFFER_TTL_MS);
  }

  #live(id: Uint8Array): Channel {
    if (id.length !== LINK_CHANNEL_ID_BYTES) throw new ProtocolError(ErrorCode.BAD_REQUEST, `a link channel id is ${LINK_CHANNEL_ID_BYTES} bytes`);
    const c = this.#channels.get(toHex(id));
    if (!c || this.ctx.now() >= this.#expiresAt(c)) {
      if (c) this.#drop(c);
      throw new ProtocolError(ErrorCode.NOT_FOUND, 'no such link channel (never opened, expired, or closed)');
    }
    return c;
  }

  #side(c: Channel, token: Uint8Array | undefined): LinkSide {
    if (!token) throw new ProtocolError(ErrorCode.AUTH_REQUIRED, 'this request needs the mw-link-token header');
    const h = this.#hash(token);
    if (c.owner.tokenHash && equalBytes(h, c.owner.tokenHash)) return 'owner';
    if (c.scanner.tokenHash && equalBytes(h, c.scanner.tokenHash)) return 'scanner';
    throw new ProtocolError(ErrorCode.FORBIDDEN, 'the link token does not open this channel');
  }

  #drop(c: Channel): void {
    if (!this.#channels.delete(c.id)) return;
    this.onDrop?.(c.id);
    for (const w of c.waiters) w();
    c.waiters.clear();
  }

  #wake(c: Channel): void {
    for (const w of c.waiters) w();
    c.waiters.clear();
  }

  /** Whether this process holds the channel (open or not yet swept). */
  has(id: Uint8Array): boolean {
    return this.#channels.has(toHex(id));
  }

  /** Opens a channel for a new device: its id, the owner's token and when an unclaimed offer expires. */
  create(): { channelId: Uint8Array; ownerToken: Uint8Array; expiresAt: number } {
    this.sweep();
    if (this.#channels.size >= (this.limits.maxChannels ?? LINK_MAX_CHANNELS)) {
      throw new ProtocolError(ErrorCode.UNAVAILABLE, 'too many device links are in progress on this node; retry in a minute');
    }
    let channelId: Uint8Array;
    do channelId = this.ctx.random(LINK_CHANNEL_ID_BYTES);
    while (this.#channels.has(toHex(channelId)));
    const ownerToken = this.ctx.random(LINK_TOKEN_BYTES);
    const c: Channel = {
      id: toHex(channelId),
      createdAt: this.ctx.now(),
      owner: { tokenHash: this.#hash(ownerToken), messages: [], bytes: 0, closed: false },
      scanner: { tokenHash: undefined, messages: [], bytes: 0, closed: false },
      claimed: false,
      waiters: new Set(),
    };
    this.#channels.set(c.id, c);
    return { channelId, ownerToken, expiresAt: this.#expiresAt(c) };
  }

  /** The scanner takes the channel (once) and posts its hello as its first message. */
  claim(id: Uint8Array, hello: Uint8Array): { scannerToken: Uint8Array; expiresAt: number } {
    const c = this.#live(id);
    if (c.claimed) throw new ProtocolError(ErrorCode.CONFLICT, 'this link offer was already used: show a new QR code');
    if (hello.length === 0 || hello.length > LINK_MAX_HELLO_BYTES) throw new ProtocolError(ErrorCode.BAD_REQUEST, `a link hello is 1..${LINK_MAX_HELLO_BYTES} bytes`);
    const scannerToken = this.ctx.random(LINK_TOKEN_BYTES);
    c.claimed = true;
    c.scanner.tokenHash = this.#hash(scannerToken);
    c.scanner.messages.push(hello.slice());
    c.scanner.bytes += hello.length;
    this.#wake(c);
    return { scannerToken, expiresAt: this.#expiresAt(c) };
  }

  /** Appends one message from the token's side. */
  post(id: Uint8Array, token: Uint8Array | undefined, data: Uint8Array): void {
    const c = this.#live(id);
    const side = c[this.#side(c, token)];
    if (side.closed) throw new ProtocolError(ErrorCode.CONFLICT, 'this side closed the link channel');
    if (data.length === 0 || data.length > LINK_MAX_MESSAGE_BYTES) throw new ProtocolError(ErrorCode.TOO_LARGE, `a link message is 1..${LINK_MAX_MESSAGE_BYTES} bytes`);
    if (side.messages.length >= LINK_MAX_MESSAGES_PER_SIDE || side.bytes + data.length > LINK_MAX_BYTES_PER_SIDE) {
      throw new ProtocolError(ErrorCode.QUOTA_EXCEEDED, `a link channel carries at most ${LINK_MAX_MESSAGES_PER_SIDE} messages and ${LINK_MAX_BYTES_PER_SIDE} bytes per side`);
    }
    side.messages.push(data.slice());
    side.bytes += data.length;
    this.#wake(c);
  }

  /**
   * The other side's messages after sequence `after`, waiting up to `waitMs` for one to arrive.
   * `closed` once the other side closed and everything it posted was returned. With `maxBytes`,
   * only as many messages as fit (at least one) are returned; `last` says where to go on.
   */
  async read(id: Uint8Array, token: Uint8Array | undefined, after: number, waitMs: number, signal?: AbortSignal, maxBytes = Infinity): Promise<{ messages: Uint8Array[]; last: number; closed: boolean }> {
    const c = this.#live(id);
    const me = this.#side(c, token);
    const other = c[me === 'owner' ? 'scanner' : 'owner'];
    const wait = Math.max(0, Math.min(waitMs, LINK_MAX_WAIT_MS));
    if (other.messages.length <= after && !other.closed && wait > 0) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(t);
          c.waiters.delete(done);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const t = setTimeout(done, Math.min(wait, Math.max(0, this.#expiresAt(c) - this.ctx.now())));
        c.waiters.add(done);
        signal?.addEventListener('abort', done);
      });
      if (!this.#channels.has(c.id)) throw new ProtocolError(ErrorCode.NOT_FOUND, 'the link channel expired or was closed');
    }
    const messages: Uint8Array[] = [];
    let bytes = 0;
    for (const m of other.messages.slice(Math.max(0, after))) {
      if (messages.length > 0 && bytes + m.length > maxBytes) break;
      messages.push(m);
      bytes += m.length;
    }
    const last = Math.max(after, Math.max(0, after) + messages.length);
    return { messages, last, closed: other.closed && other.messages.length <= last };
  }

  /** The token's side is done; the channel is forgotten once both sides closed. */
  close(id: Uint8Array, token: Uint8Array | undefined): void {
    const c = this.#live(id);
    const side = c[this.#side(c, token)];
    side.closed = true;
    if (c.owner.closed && (c.scanner.closed || !c.claimed)) this.#drop(c);
    else this.#wake(c);
  }

  /** Forgets expired channels (also runs on a timer and before each create). */
  sweep(): void {
    const now = this.ctx.now();
    for (const c of this.#channels.values()) if (now >= this.#expiresAt(c)) this.#drop(c);
  }

  dispose(): void {
    clearInterval(this.#timer);
    for (const c of [...this.#channels.values()]) this.#drop(c);
  }
}

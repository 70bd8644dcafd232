/**
 * A minimal RFC 6455 WebSocket client on `net.Socket`, for the load generator's sockets (device and
 * anonymous), so that the generator spends as little CPU as it can per message and leaves the rest
 * of the machine to the node under test. What it does, and why each shortcut is still RFC 6455:
 *
 * - Opening handshake (§4.1) by hand: GET with a random Sec-WebSocket-Key, no extensions and no
 *   subprotocol offered; the answer must be 101 with the right Sec-WebSocket-Accept and must not
 *   select an extension or subprotocol.
 * - Client frames are masked (§5.3 requires it) with ONE key for the whole run whose four bytes
 *   are the same random non-zero byte, MASK_BYTE. Same byte four times: masking is then an XOR with
 *   MASK_BYTE whatever a byte's position in the frame, so constant parts (a recipient's whole
 *   SendRequest body, wire.ts) are masked once at start and each send only XORs its few varying
 *   bytes. Not zero, although an all-zero key is valid and would make masking a no-op: the node's
 *   ws server skips unmasking for a zero key, which would take ~1.7 µs per 1 KiB Send off the
 *   node's main thread (its JS unmask loop, measured) that a real client's random key costs it —
 *   the benchmark must not make the node's work cheaper than a real client does. §5.3 asks for an
 *   unpredictable key per frame to protect intermediaries that cache by content from a hostile
 *   script in a browser; the benchmark runs over loopback with no intermediary and no script.
 * - Writes are batched: every frame queued for a socket during one turn of the event loop (one I/O
 *   callback, one timer tick) goes out in ONE socket write (several frames: cork/uncork, i.e. one
 *   writev), for all sockets with something queued at once: at the end of the read that caused
 *   them, or at a single process.nextTick otherwise (e.g. a timer's sends).
 * - Server frames (§5.2) are parsed by hand: several per read or split across reads, 7-, 16- and
 *   64-bit lengths; binary messages, fragmented ones reassembled (§5.4); ping answered with a pong
 *   carrying its payload, pong ignored, close answered with a close (§5.5). Anything else — a masked
 *   or text frame, RSV bits (no extension was negotiated), an unknown opcode, an oversized message,
 *   a socket error or close we did not ask for — throws: the benchmark stops loudly rather than
 *   measure a broken run.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import type { Socket } from 'node:net';

/** RFC 6455 §1.3: appended to Sec-WebSocket-Key before hashing into Sec-WebSocket-Accept. */
const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** The largest message accepted (the node's Deliver frames stay far below; ws's maxPayload of the old client). */
export const MAX_MESSAGE = 4 * 1024 * 1024;
/** The masking key's byte (see above): random per run, never 0. */
export const MASK_BYTE = 1 + (randomBytes(1)[0]! % 255);
/** An HTTP answer to the upgrade longer than this is refused. */
const MAX_HANDSHAKE_BYTES = 16 * 1024;

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

/** Bytes of a client frame header (§5.2) for a payload of `len` bytes: masking key included. */
export function clientHeaderLength(len: number): number {
  return len < 126 ? 6 : len < 65536 ? 8 : 14;
}

/**
 * Writes the header of a final client frame with `opcode` for a payload of `len` bytes at
 * `buf[off]`, mask bit set and masking key MASK_BYTE × 4 (see above), and returns where the
 * payload starts; the caller writes the payload masked (maskInPlace, or bytes masked beforehand).
 */
export function putClientHeader(buf: Uint8Array, off: number, len: number, opcode = OP_BINARY): number {
  buf[off++] = 0x80 | opcode;
  if (len < 126) buf[off++] = 0x80 | len;
  else if (len < 65536) {
    buf[off++] = 0x80 | 126;
    buf[off++] = len >>> 8;
    buf[off++] = len & 0xff;
  } else {
    buf[off++] = 0x80 | 127;
    const hi = Math.floor(len / 2 ** 32);
    const lo = len >>> 0;
    buf[off++] = 0;
    buf[off++] = 0;
    buf[off++] = hi >>> 8;
    buf[off++] = hi & 0xff;
    buf[off++] = lo >>> 24;
    buf[off++] = (lo >>> 16) & 0xff;
    buf[off++] = (lo >>> 8) & 0xff;
    buf[off++] = lo & 0xff;
  }
  buf[off++] = MASK_BYTE;
  buf[off++] = MASK_BYTE;
  buf[off++] = MASK_BYTE;
  buf[off++] = MASK_BYTE;
  return off;
}

/** Masks (or unmasks) buf[start, end) with the run's key (§5.3: XOR; the same byte at every position). */
export function maskInPlace(buf: Uint8Array, start: number, end: number): void {
  for (let i = start; i < end; i++) buf[i]! ^= MASK_BYTE;
}

/** A complete client frame carrying `payload` (copied, masked). */
export function clientFrame(payload: Uint8Array, opcode = OP_BINARY): Buffer {
  const buf = Buffer.allocUnsafe(clientHeaderLength(payload.length) + payload.length);
  const at = putClientHeader(buf, 0, payload.length, opcode);
  buf.set(payload, at);
  maskInPlace(buf, at, buf.length);
  return buf;
}

export class WebSocketProtocolError extends Error {
  override name = 'WebSocketProtocolError';
}

/**
 * Parser of server frames (§5.2): `push()` each chunk read from the socket, in order; the chunk's
 * bytes may be overwritten once push returns (what it keeps, it copies). Frames may be split
 * across chunks or several to a chunk. Calls `onMessage(buf, start, end)` for each
 * complete binary message (a range of `buf`, valid only during the call: no copy unless the
 * message was split across reads or fragmented), `onPing(payload)` and `onClose(code, reason)`;
 * pongs are ignored; anything else throws WebSocketProtocolError. After onClose, nothing more is
 * parsed.
 */
export class FrameReader {
  onMessage: (buf: Buffer, start: number, end: number) => void = () => {
    throw new WebSocketProtocolError('binary message with no handler');
  };
  onPing: (payload: Buffer) => void = () => {};
  onClose: (code: number, reason: string) => void = () => {};
  /** Set by onClose (or by the owner): later bytes are dropped. */
  stopped = false;
  /** Bytes of an incomplete frame (the tail of earlier reads), and how many are needed to go on. */
  #parts: Buffer[] = [];
  #have = 0;
  #need = 0;
  /** Fragments of a message not finished yet (§5.4). */
  #fragments: Buffer[] | undefined;
  #fragmentBytes = 0;

  /** The next `len` bytes read (chunk[0, len)). */
  push(chunk: Buffer, len = chunk.length): void {
    if (this.stopped) return;
    let buf = chunk;
    let n = len;
    if (this.#have > 0) {
      this.#parts.push(Buffer.from(chunk.subarray(0, len)));
      this.#have += len;
      if (this.#have < this.#need) return;
      buf = Buffer.concat(this.#parts, this.#have);
      n = buf.length;
      this.#parts = [];
      this.#have = 0;
    }
    let off = 0;
    while (off < n && !this.stopped) {
      const left = n - off;
      if (left < 2) return this.#keep(buf, off, n, 2);
      const b0 = buf[off]!;
      const b1 = buf[off + 1]!;
      if ((b1 & 0x80) !== 0) throw new WebSocketProtocolError('masked frame from the server (RFC 6455 §5.1)');
      if ((b0 & 0x70) !== 0) throw new WebSocketProtocolError('RSV bits set, no extension negotiated (§5.2)');
      let len = b1 & 0x7f;
      let h = 2;
      if (len === 126) {
        if (left < 4) return this.#keep(buf, off, n, 4);
        len = buf.readUInt16BE(off + 2);
        h = 4;
      } else if (len === 127) {
        if (left < 10) return this.#keep(buf, off, n, 10);
        const hi = buf.readUInt32BE(off + 2);
        if (hi > 0x1fffff) throw new WebSocketProtocolError('64-bit length beyond 2^53 (§5.2)');
        len = hi * 2 ** 32 + buf.readUInt32BE(off + 6);
        h = 10;
      }
      if (len > MAX_MESSAGE) throw new WebSocketProtocolError(`frame of ${len} bytes (limit ${MAX_MESSAGE})`);
      if (left < h + len) return this.#keep(buf, off, n, h + len);
      const start = off + h;
      off = start + len;
      this.#frame(b0, buf, start, off);
    }
  }

  /** Keeps buf[off, end) until `need` bytes of the frame that starts at off have arrived. */
  #keep(buf: Buffer, off: number, end: number, need: number): void {
    const tail = Buffer.from(buf.subarray(off, end)); // a copy: the reader's buffer is reused for the next read
    this.#parts = [tail];
    this.#have = tail.length;
    this.#need = need;
  }

  #frame(b0: number, buf: Buffer, start: number, end: number): void {
    const fin = (b0 & 0x80) !== 0;
    const op = b0 & 0x0f;
    if (op >= 0x8) {
      if (!fin || end - start > 125) throw new WebSocketProtocolError(`fragmented or long control frame (opcode ${op}, §5.5)`);
      if (op === OP_PING) this.onPing(buf.subarray(start, end));
      else if (op === OP_CLOSE) {
        if (end - start === 1) throw new WebSocketProtocolError('close frame with a 1-byte body (§5.5.1)');
        this.stopped = true;
        this.onClose(end - start >= 2 ? buf.readUInt16BE(start) : 0, end - start > 2 ? buf.toString('utf8', start + 2, end) : '');
      } else if (op !== OP_PONG) throw new WebSocketProtocolError(`unknown control opcode ${op}`);
      return;
    }
    if (op === OP_BINARY) {
      if (this.#fragments) throw new WebSocketProtocolError('new message inside a fragmented one (§5.4)');
      if (fin) this.onMessage(buf, start, end);
      else {
        this.#fragments = [Buffer.from(buf.subarray(start, end))];
        this.#fragmentBytes = end - start;
      }
    } else if (op === OP_CONTINUATION) {
      if (!this.#fragments) throw new WebSocketProtocolError('continuation frame without a message (§5.4)');
      this.#fragments.push(Buffer.from(buf.subarray(start, end)));
      this.#fragmentBytes += end - start;
      if (this.#fragmentBytes > MAX_MESSAGE) throw new WebSocketProtocolError(`message of more than ${MAX_MESSAGE} bytes`);
      if (fin) {
        const m = Buffer.concat(this.#fragments, this.#fragmentBytes);
        this.#fragments = undefined;
        this.#fragmentBytes = 0;
        this.onMessage(m, 0, m.length);
      }
    } else if (op === OP_TEXT) throw new WebSocketProtocolError('text frame (the node speaks binary protobuf only)');
    else throw new WebSocketProtocolError(`unknown data opcode ${op}`);
  }
}

/** Sockets with frames queued in this turn (the first dirtyCount entries); flushed together at one process.nextTick. */
const dirty: WsClient[] = [];
let dirtyCount = 0;
let flushScheduled = false;
/** A read is being handled: it flushes when done (see WsClient.connect). */
let inRead = false;
function flushAll(): void {
  flushScheduled = false;
  let pending = false;
  for (let i = 0; i < dirtyCount; i++) pending = dirty[i]!._flush() || pending;
  dirtyCount = 0;
  // Every write of this slab went to the kernel at once: its bytes are free again. Otherwise a
  // write still holds part of it (a socket the node does not read fast enough): the slab is no
  // longer rewound, and is left to that write once full (frameBuffer).
  if (pending) slabPinned = true;
  if (!slabPinned) slabAt = 0;
}

/**
 * Output slab: the hot path's frames are written into it (frameBuffer) rather than each into a
 * Buffer of its own — a new ArrayBuffer per frame (the Buffer pool's 8 KiB slabs, ~25 MB/s at
 * 12k msgs/s) is external memory to V8, whose growth triggers full mark-compact collections.
 */
const SLAB_BYTES = 1024 * 1024;
let slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
let slabAt = 0;
/** A write still holds part of the slab: do not rewind it. */
let slabPinned = false;

/**
 * Room for one frame of `len` bytes, valid until it is sent (sendFrame) in this same turn: a view
 * of the output slab, or a Buffer of its own when the frame is larger than a slab.
 */
export function frameBuffer(len: number): Buffer {
  if (len > SLAB_BYTES) return Buffer.allocUnsafeSlow(len);
  if (slabAt + len > SLAB_BYTES) {
    // Frames queued in this turn, and pending writes, keep the old slab alive through their views.
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    slabAt = 0;
    slabPinned = false;
  }
  const b = slab.subarray(slabAt, slabAt + len);
  slabAt += len;
  return b;
}

/** The buffer every connection reads into (see WsClient.connect). */
const readBuffer = Buffer.allocUnsafe(64 * 1024);

/** Connections not closed or terminated yet (for terminateAll). */
const live = new Set<WsClient>();

/** Terminates every connection still open: before the server goes away on purpose, e.g. after a failed run. */
export function terminateAll(): void {
  for (const c of live) c.terminate();
}

/**
 * One client connection. Set `reader.onMessage` for the binary messages (see FrameReader); pings
 * are answered; a close frame from the server, a socket error or a close without a close frame
 * throws (the run is broken), unless this side closed first.
 */
export class WsClient {
  readonly reader = new FrameReader();
  /** Set once a close frame was sent or received, or the socket was terminated. */
  closing = false;
  /** This turn's frames: the first (the usual case: one per turn), then any others. */
  #first: Buffer | undefined;
  readonly #more: Buffer[] = [];
  readonly #closed: Promise<void>;

  private constructor(
    readonly socket: Socket,
    readonly label: string,
  ) {
    live.add(this);
    this.#closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('close', () => {
      live.delete(this);
      if (!this.closing) throw new WebSocketProtocolError(`${label}: connection closed by the peer without a close frame`);
    });
    socket.on('error', (e) => {
      if (!this.closing) throw new WebSocketProtocolError(`${label}: ${e.message}`);
    });
    this.reader.onPing = (payload) => this.sendFrame(clientFrame(payload, OP_PONG));
    this.reader.onClose = (code, reason) => {
      if (this.closing) return; // the answer to our close
      // Answer (§5.5.1: echo the status code); the server then closes the TCP connection.
      const body = Buffer.allocUnsafe(code ? 2 : 0);
      if (code) body.writeUInt16BE(code, 0);
      this.sendFrame(clientFrame(body, OP_CLOSE));
      this.closing = true;
      setTimeout(() => this.socket.destroy(), 5000).unref();
      throw new WebSocketProtocolError(`${label}: closed by the server (code ${code || 'none'}${reason ? `, ${reason}` : ''})`);
    };
  }

  /** @internal The socket's bytes after the handshake. */
  _read(chunk: Buffer, len = chunk.length): void {
    try {
      this.reader.push(chunk, len);
    } catch (e) {
      if (e instanceof WebSocketProtocolError && !e.message.startsWith(this.label)) e.message = `${this.label}: ${e.message}`;
      throw e;
    }
  }

  /** Connects to ws://host:port/path and completes the opening handshake (§4.1). */
  static connect(host: string, port: number, path: string, timeoutMs = 20_000): Promise<WsClient> {
    const key = randomBytes(16).toString('base64');
    const accept = createHash('sha1').update(key + ACCEPT_GUID).digest('base64');
    const label = `ws://${host}:${port}${path}`;
    return new Promise((resolve, reject) => {
      let ws: WsClient | undefined;
      // Reads go into one buffer shared by every connection (net's `onread`: no stream machinery,
      // no buffer per read); each is handled before the next read can overwrite it.
      const socket = connect({
        host,
        port,
        noDelay: true,
        onread: {
          buffer: readBuffer,
          callback: (n: number): boolean => {
            if (!ws) onData(readBuffer.subarray(0, n));
            else {
              // The frames this read makes us send go out when it has been handled (no tick needed).
              inRead = true;
              try {
                ws._read(readBuffer, n);
              } finally {
                inRead = false;
              }
              if (dirtyCount > 0) flushAll();
            }
            return true;
          },
        },
      });
      let head = Buffer.alloc(0);
      let done = false;
      const fail = (e: Error): void => {
        clearTimeout(t);
        done = true;
        socket.destroy();
        reject(e);
      };
      const t = setTimeout(() => fail(new Error(`${label}: handshake timeout`)), timeoutMs);
      const early = (): void => fail(new Error(`${label}: connection closed during the handshake`));
      const onData = (chunk: Buffer): void => {
        if (done) return;
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) {
          if (head.length > MAX_HANDSHAKE_BYTES) fail(new Error(`${label}: handshake answer too long`));
          return;
        }
        const lines = head.subarray(0, end).toString('latin1').split('\r\n');
        const status = /^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '');
        const headers = new Map<string, string>();
        for (const l of lines.slice(1)) {
          const c = l.indexOf(':');
          if (c > 0) headers.set(l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim());
        }
        if (status?.[1] !== '101') return fail(new Error(`${label}: upgrade refused: ${lines[0] ?? ''}`));
        if (headers.get('upgrade')?.toLowerCase() !== 'websocket' || !/\bupgrade\b/i.test(headers.get('connection') ?? '')) return fail(new Error(`${label}: not a WebSocket upgrade`));
        if (headers.get('sec-websocket-accept') !== accept) return fail(new Error(`${label}: wrong Sec-WebSocket-Accept`));
        if (headers.has('sec-websocket-extensions') || headers.has('sec-websocket-protocol')) return fail(new Error(`${label}: the server selected an extension or subprotocol that was not offered`));
        clearTimeout(t);
        done = true;
        socket.removeListener('error', fail);
        socket.removeListener('close', early);
        const client = new WsClient(socket, label);
        const rest = head.subarray(end + 4);
        // Frames that came with the 101 answer (a copy: head is ours): after the caller has had a turn to set its handler.
        if (rest.length > 0) {
          process.nextTick(() => {
            client._read(rest);
            ws = client;
          });
        } else ws = client;
        resolve(client);
      };
      socket.once('error', fail);
      socket.once('close', early);
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
  }

  /** Queues a complete client frame (header included, e.g. from putClientHeader); sent at the end of this turn. */
  sendFrame(frame: Buffer): void {
    if (this.closing) return;
    if (this.#first) {
      this.#more.push(frame);
      return;
    }
    this.#first = frame;
    dirty[dirtyCount++] = this;
    if (!flushScheduled && !inRead) {
      flushScheduled = true;
      process.nextTick(flushAll);
    }
  }

  /** Queues `payload` as one binary message (a copy is made: setup path). */
  send(payload: Uint8Array): void {
    this.sendFrame(clientFrame(payload));
  }

  /**
   * @internal flushAll: this turn's frames in one write (several: cork/uncork, one writev).
   * Returns whether some of it is still pending (not taken by the kernel at once).
   */
  _flush(): boolean {
    const first = this.#first;
    if (!first) return false;
    this.#first = undefined;
    const s = this.socket;
    if (this.#more.length === 0) s.write(first);
    else {
      s.cork();
      s.write(first);
      for (const f of this.#more) s.write(f);
      s.uncork();
      this.#more.length = 0;
    }
    return s.writableLength > 0;
  }

  /** Closing handshake (§5.5.1, §7.1.2): sends a close frame, waits for the server to close the TCP connection. */
  close(code = 1000): Promise<void> {
    if (!this.closing) {
      const body = Buffer.allocUnsafe(2);
      body.writeUInt16BE(code, 0);
      this.sendFrame(clientFrame(body, OP_CLOSE));
      this.closing = true;
      this.reader.stopped = true;
      setTimeout(() => this.socket.destroy(), 5000).unref();
    }
    return this.#closed;
  }

  /** Drops the connection at once (no close frame). */
  terminate(): void {
    this.closing = true;
    this.reader.stopped = true;
    this.socket.destroy();
  }
}

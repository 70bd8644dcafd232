// The hot-path WebSocket frame reader (src/socket/ws-frames.ts): the splitter against a model of
// RFC 6455 framing under every chunking, the word-wise unmask, and the endpoints over a real socket
// with frames ws must still handle (pings, fragments, frames cut into single bytes).
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { EnvelopeClass, encodeFrame } from '@meshwhisper/protocol';
import { ANONYMOUS_SOCKET_PATH } from '../src/node.js';
import WebSocket, { WebSocketServer } from 'ws';
import { FrameSplitter, readBinaryFrames, unmask } from '../src/socket/ws-frames.js';
import { TestDevice, generousLimits, startTestNode, xorshift32 } from './helpers.js';
import { WsClient } from './ws-client.js';


/** A client frame (RFC 6455 §5.2): masked unless `unmasked`, with the header fields given. */
function clientFrame(opcode: number, payload: Uint8Array, o: { fin?: boolean; rsv?: number; unmasked?: boolean; lenForm?: 7 | 16 | 64 } = {}): Buffer {
  const len = payload.length;
  const form = o.lenForm ?? (len < 126 ? 7 : len < 0x10000 ? 16 : 64);
  const head = [((o.fin ?? true) ? 0x80 : 0) | ((o.rsv ?? 0) << 4) | opcode];
  const m = o.unmasked ? 0 : 0x80;
  if (form === 7) head.push(m | len);
  else if (form === 16) head.push(m | 126, len >>> 8, len & 0xff);
  else head.push(m | 127, 0, 0, 0, 0, (len >>> 24) & 0xff, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff);
  const mask = o.unmasked ? Buffer.alloc(0) : randomBytes(4);
  const body = Buffer.from(payload);
  if (!o.unmasked) for (let i = 0; i < body.length; i++) body[i]! ^= mask[i & 3]!;
  return Buffer.concat([Buffer.from(head), mask, body]);
}

type Event = { bin: string } | { ws: string };

/** Runs the splitter over `stream` cut at the given points; binary payloads and the bytes ws got, in order. */
function split(stream: Buffer, cuts: number[], maxPayload: number): Event[] {
  const events: Event[] = [];
  const s = new FrameSplitter(
    maxPayload,
    (p) => events.push({ bin: Buffer.from(p).toString('hex') }),
    (b) => {
      const last = events.at(-1);
      if (last && 'ws' in last) last.ws += b.toString('hex');
      else events.push({ ws: b.toString('hex') });
      return true;
    },
  );
  const copy = Buffer.from(stream); // the splitter unmasks in place
  let at = 0;
  for (const c of [...cuts, copy.length]) {
    if (c > at) s.push(copy.subarray(at, c));
    at = Math.max(at, c);
  }
  return events;
}

describe('unmask (RFC 6455 §5.3) a word at a time', () => {
  it('equals the byte-wise XOR at every offset and length', () => {
    const r = xorshift32(7);
    for (let n = 0; n < 2000; n++) {
      const len = n < 200 ? n : r() % 5000;
      const buf = randomBytes(len + 20);
      const maskAt = r() % 4;
      const at = maskAt + 4 + (r() % 12); // the payload follows its mask
      const want = Buffer.from(buf);
      for (let i = 0; i < len; i++) want[at + i]! ^= want[maskAt + (i & 3)]!;
      // An odd byteOffset too: the aligned middle is found from the buffer's real address.
      const view = new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
      unmask(view, at, len, maskAt);
      expect(Buffer.from(view).equals(want)).toBe(true);
    }
  });
});

describe('FrameSplitter: whole binary frames here, everything else to ws, in stream order', () => {
  const seed = Number(process.env.MW_FUZZ_SEED ?? Date.now() % 2 ** 31);

  it(`matches the model for random streams under random chunkings (seed ${seed})`, () => {
    const r = xorshift32(seed);
    const maxPayload = 70_000;
    for (let round = 0; round < 300; round++) {
      const parts: Buffer[] = [];
      const want: Event[] = [];
      const wsBytes = (b: Buffer): void => {
        const last = want.at(-1);
        if (last && 'ws' in last) last.ws += b.toString('hex');
        else want.push({ ws: b.toString('hex') });
      };
      const frames = 1 + (r() % 12);
      let through = false;
      for (let f = 0; f < frames; f++) {
        const kind = r() % 20;
        let frame: Buffer;
        let hot = false;
        if (kind < 12) {
          const len = [0, 1, 20, 125, 126, 1100, 65535, 65536, 70_000][r() % 9]!;
          const payload = randomBytes(len);
          const lenForm = r() % 6 === 0 ? (len < 0x10000 && r() % 2 === 0 ? 16 : 64) : undefined; // longer length forms than needed are valid too
          frame = clientFrame(2, payload, lenForm ? { lenForm } : {});
          hot = true;
          if (!through) want.push({ bin: payload.toString('hex') });
        } else if (kind < 15) {
          frame = clientFrame(kind === 12 ? 9 : 10, randomBytes(r() % 126));
        } else {
          // Each of these hands the rest of the stream to ws, this frame included.
          const trigger = r() % 9;
          const p = randomBytes(r() % 300);
          frame = [
            () => clientFrame(1, Buffer.from('text')),
            () => clientFrame(8, Buffer.from([3, 232])),
            () => clientFrame(2, p, { fin: false }),
            () => clientFrame(0, p),
            () => clientFrame(2, p, { unmasked: true }),
            () => clientFrame(2, p, { rsv: 1 + (r() % 7) }),
            () => clientFrame(2, randomBytes(maxPayload + 1)),
            () => clientFrame(9, randomBytes(126 + (r() % 10))),
            () => clientFrame(3 + (r() % 5), p),
          ][trigger]!();
        }
        parts.push(frame);
        if (through || !hot) wsBytes(frame);
        if (kind >= 15) through = true;
      }
      const stream = Buffer.concat(parts);
      const cuts = Array.from({ length: r() % 8 }, () => r() % (stream.length + 1)).sort((a, b) => a - b);
      if (r() % 5 === 0) for (let i = 1; i < Math.min(stream.length, 40); i++) cuts.push(i); // byte by byte at the start
      cuts.sort((a, b) => a - b);
      expect(split(stream, cuts, maxPayload), `round ${round}`).toEqual(want);
    }
  });

  it('a frame cut anywhere, even inside its header or mask, arrives once and whole', () => {
    const payload = randomBytes(300);
    const frame = clientFrame(2, payload);
    for (let cut = 0; cut <= frame.length; cut++) {
      expect(split(frame, [cut], 0)).toEqual([{ bin: payload.toString('hex') }]);
    }
  });

  it('a maxPayload of 0 (ws: no limit) takes frames of any length', () => {
    const payload = randomBytes(200_000);
    expect(split(clientFrame(2, payload), [5, 70_000, 140_000], 0)).toEqual([{ bin: payload.toString('hex') }]);
  });

  it('a 64-bit length of 2^32 or more goes to ws (which refuses it) without waiting for the payload', () => {
    const head = Buffer.from([0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4]);
    expect(split(head, [], 0)).toEqual([{ ws: head.toString('hex') }]);
  });
});

describe('the endpoints over a real socket, with frames only ws handles', () => {
  const open: { close(): unknown }[] = [];
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.close();
  });

  it('the installed ws has the Receiver readBinaryFrames hooks into (else the node would silently fall back to the ws parser)', async () => {
    const wss = new WebSocketServer({ port: 0, maxPayload: 1000 });
    open.push({ close: () => new Promise((r) => wss.close(r)) });
    const got: string[] = [];
    wss.on('connection', (ws) => {
      expect(readBinaryFrames(ws, (p) => got.push(`hot ${Buffer.from(p).toString()}`))).toBe(true);
      ws.on('message', (m, isBinary) => got.push(`ws ${isBinary ? 'binary' : 'text'} ${String(m)}`));
      ws.on('error', (e) => got.push(`error ${(e as Error & { code?: string }).code}`));
    });
    const c = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
    open.push({ close: () => c.terminate() });
    await new Promise((r) => c.once('open', r));
    c.send(Buffer.from('one'));
    c.send(Buffer.from('two'));
    c.send('three'); // text: ws's from here on
    c.send(Buffer.from('four'));
    c.send(Buffer.alloc(2000)); // over maxPayload: ws closes with 1009
    const code = await new Promise<number>((r) => c.once('close', r));
    expect(got).toEqual(['hot one', 'hot two', 'ws text three', 'ws binary four', 'error WS_ERR_UNSUPPORTED_MESSAGE_LENGTH']);
    expect(code).toBe(1009);
  });

  it('pings are answered, fragmented messages are assembled, and frames written a byte at a time are read', async () => {
    const t = await startTestNode({ RATE_LIMITS: generousLimits() });
    open.push(t);
    const port = ((await t.node.listen()) as AddressInfo).port;
    const d = new TestDevice();
    await d.register(t.node);
    const dev = await WsClient.device(port, d);
    open.push({ close: () => dev.terminate() });
    await dev.nextKind('queueEmpty');

    // autoPong off: this test writes frames to the client's socket by hand, and a pong from the
    // client's ws (answering the node's heartbeat ping, which reaches a young connection within
    // its first few 100 ms ticks) would land in the middle of the frame written byte by byte — the
    // node then reads the pong's 6 bytes as part of that frame and closes with 4002 (5 runs of 6
    // on one VM, once in CI). The heartbeat only closes a silent socket after a whole interval.
    const a = await WsClient.connect(port, ANONYMOUS_SOCKET_PATH, { autoPong: false });
    open.push({ close: () => a.terminate() });
    a.send({ body: { case: 'clientHello', value: { versions: [2] } } });
    await a.nextKind('serverHello');
    const sendFrame = (requestId: number, text: string): Uint8Array =>
      encodeFrame({ requestId, body: { case: 'send', value: { mailboxId: d.mailbox, payload: new TextEncoder().encode(text), class: EnvelopeClass.DURABLE } } });

    // A ping from the client: ws answers it.
    const pong = new Promise<Buffer>((resolve) => a.ws.once('pong', resolve));
    a.ws.ping(Buffer.from('are you there'));
    expect((await pong).toString()).toBe('are you there');

    // A send whose frame is written one byte per TCP write (each byte its own read on the node).
    const socket = (a.ws as unknown as { _socket: { write(b: Uint8Array): boolean } })._socket;
    const slow = clientFrame(2, sendFrame(101, 'byte by byte'));
    for (const b of slow) {
      socket.write(Uint8Array.of(b));
      await new Promise((r) => setTimeout(r, 1));
    }
    expect((await a.next((f) => f.requestId === 101)).body.case).toBe('sendResult');

    // Two sends and a ping in one TCP write.
    socket.write(Buffer.concat([clientFrame(2, sendFrame(102, 'two')), clientFrame(9, Buffer.from('p')), clientFrame(2, sendFrame(103, 'three'))]));
    expect((await a.next((f) => f.requestId === 102)).body.case).toBe('sendResult');
    expect((await a.next((f) => f.requestId === 103)).body.case).toBe('sendResult');

    // A send in three fragments (ws assembles it; from here on this connection is ws's alone).
    const whole = sendFrame(104, 'fragmented');
    const third = Math.ceil(whole.length / 3);
    a.ws.send(whole.subarray(0, third), { fin: false });
    a.ws.send(whole.subarray(third, 2 * third), { fin: false });
    a.ws.send(whole.subarray(2 * third), { fin: true });
    expect((await a.next((f) => f.requestId === 104)).body.case).toBe('sendResult');
    a.send({ requestId: 105, body: { case: 'send', value: { mailboxId: d.mailbox, payload: new TextEncoder().encode('after'), class: EnvelopeClass.DURABLE } } });
    expect((await a.next((f) => f.requestId === 105)).body.case).toBe('sendResult');

    const got: string[] = [];
    while (got.length < 5) {
      const f = await dev.nextKind('deliver');
      for (const e of f.body.value.envelopes) got.push(new TextDecoder().decode(e.payload));
      dev.ack(f.body.value.envelopes.map((e) => e.id));
    }
    expect(got).toEqual(['byte by byte', 'two', 'three', 'fragmented', 'after']);

    // A close from the client is ws's: the closing handshake completes with the client's code.
    a.ws.close(4321, 'bye');
    expect((await a.waitClosed()).code).toBe(4321);
  });
});

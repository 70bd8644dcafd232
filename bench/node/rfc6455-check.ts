/**
 * Proof that rfc6455.ts speaks RFC 6455 as the `ws` library does (the node's server side):
 *
 * - checkFraming() (every bench start, ~0.1 s): server frames made by ws's Sender (binary of every
 *   length class, fragmented, ping, pong, close) are read by FrameReader whole, several to a chunk
 *   and split at every byte; client frames made by putClientHeader/clientFrame are read back by
 *   ws's Receiver in server mode (which requires masking) with the same bytes; malformed server
 *   frames are refused.
 * - Run directly (`node --import tsx ./rfc6455-check.ts`): the above, then a live exchange with a
 *   ws WebSocketServer on loopback — handshake, messages both ways, a server ping answered, a close
 *   by the client and a close by the server (which WsClient reports as an error).
 */
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import * as wsModule from 'ws';
import type WebSocket from 'ws';
import { WebSocketServer } from 'ws';
import { FrameReader, WebSocketProtocolError, WsClient, clientFrame, clientHeaderLength, frameBuffer, maskInPlace, putClientHeader } from './rfc6455.js';

// ws's frame codec (not in its type definitions): Sender.frame(data, options) → [header, payload].
type WsFrameOptions = { fin: boolean; opcode: number; mask: boolean; readOnly: boolean; rsv1: boolean };
const Sender = (wsModule as unknown as { Sender: { frame(data: Buffer, o: WsFrameOptions): Buffer[] } }).Sender;
const Receiver = (wsModule as unknown as { Receiver: new (o: object) => NodeJS.WritableStream & NodeJS.EventEmitter }).Receiver;

function serverFrame(data: Buffer, opcode = 2, fin = true, rsv1 = false): Buffer {
  return Buffer.concat(Sender.frame(data, { fin, opcode, mask: false, readOnly: false, rsv1 }));
}

function payloadOf(len: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

interface Seen {
  messages: Buffer[];
  pings: Buffer[];
  closes: [number, string][];
}
function reader(): [FrameReader, Seen] {
  const r = new FrameReader();
  const seen: Seen = { messages: [], pings: [], closes: [] };
  r.onMessage = (b, s, e) => seen.messages.push(Buffer.from(b.subarray(s, e)));
  r.onPing = (p) => seen.pings.push(Buffer.from(p));
  r.onClose = (code, reason) => seen.closes.push([code, reason]);
  return [r, seen];
}

function expectRefused(what: string, bytes: Buffer): void {
  const [r] = reader();
  try {
    r.push(bytes);
  } catch (e) {
    if (e instanceof WebSocketProtocolError) return;
    throw e;
  }
  throw new Error(`FrameReader accepted ${what}`);
}

export async function checkFraming(): Promise<void> {
  const sizes = [0, 1, 125, 126, 127, 1_200, 65_535, 65_536, 70_000];
  const msgs = sizes.map((n, i) => payloadOf(n, i));
  const ping = Buffer.from('are you there');
  // A stream of server frames: every length class, a message in three fragments, ping, pong, close.
  const parts = [
    ...msgs.map((m) => serverFrame(m)),
    serverFrame(payloadOf(10, 1), 2, false),
    serverFrame(ping, 9),
    serverFrame(payloadOf(300, 2), 0, false),
    serverFrame(Buffer.from('pong'), 10),
    serverFrame(payloadOf(5, 3), 0, true),
    serverFrame(msgs[3]!),
  ];
  const closeBody = Buffer.concat([Buffer.from([0x0f, 0xa0]), Buffer.from('bye')]); // 4000 "bye"
  const stream = Buffer.concat([...parts, serverFrame(closeBody, 8), serverFrame(msgs[1]!)]);
  const expected = [...msgs, Buffer.concat([payloadOf(10, 1), payloadOf(300, 2), payloadOf(5, 3)]), msgs[3]!];
  const verify = (seen: Seen, how: string): void => {
    if (seen.messages.length !== expected.length || seen.messages.some((m, i) => !m.equals(expected[i]!))) throw new Error(`FrameReader (${how}): messages differ from what ws sent`);
    if (seen.pings.length !== 1 || !seen.pings[0]!.equals(ping)) throw new Error(`FrameReader (${how}): ping`);
    if (seen.closes.length !== 1 || seen.closes[0]![0] !== 4000 || seen.closes[0]![1] !== 'bye') throw new Error(`FrameReader (${how}): close`);
  };
  // Whole; in chunks of every size from 1 to 17 bytes and a few larger; split at each byte of the first 300.
  const chunkings: [string, number[]][] = [['one chunk', [stream.length]]];
  for (const c of [1, 2, 3, 5, 7, 13, 17, 1000, 65_536]) chunkings.push([`chunks of ${c}`, Array.from({ length: Math.ceil(stream.length / c) }, () => c)]);
  for (let at = 1; at < 300; at++) chunkings.push([`split at ${at}`, [at, stream.length - at]]);
  // Each chunk at the start of one reused buffer, scribbled over after push (as WsClient's shared read buffer is).
  const scratch = Buffer.allocUnsafe(stream.length);
  for (const [how, lens] of chunkings) {
    const [r, seen] = reader();
    let off = 0;
    for (const l of lens) {
      const n = stream.copy(scratch, 0, off, Math.min(stream.length, off + l));
      scratch.fill(0xee, n, Math.min(scratch.length, n + 64)); // bytes past the read's length are not the stream's
      r.push(scratch, n);
      scratch.fill(0xee, 0, n);
      off += l;
    }
    verify(seen, how);
  }
  expectRefused('a masked frame', Buffer.concat(Sender.frame(Buffer.from('x'), { fin: true, opcode: 2, mask: true, readOnly: false, rsv1: false })));
  expectRefused('a text frame', serverFrame(Buffer.from('x'), 1));
  expectRefused('RSV1 (no extension negotiated)', serverFrame(Buffer.from('x'), 2, true, true));
  expectRefused('opcode 3', serverFrame(Buffer.from('x'), 3));
  expectRefused('a fragmented ping', serverFrame(Buffer.from('x'), 9, false));
  expectRefused('a continuation with no message', serverFrame(Buffer.from('x'), 0));
  expectRefused('a new message inside a fragmented one', Buffer.concat([serverFrame(Buffer.from('x'), 2, false), serverFrame(Buffer.from('y'))]));
  expectRefused('a 64-bit length beyond 2^53', Buffer.from([0x82, 127, 0xff, 0, 0, 0, 0, 0, 0, 1]));

  // Client frames → ws's Receiver in server mode: same bytes out.
  const rx = new Receiver({ isServer: true, maxPayload: 0, binaryType: 'nodebuffer' });
  const got: Buffer[] = [];
  rx.on('message', (data: Buffer) => got.push(Buffer.from(data)));
  const gotPing = once(rx, 'ping');
  const done = new Promise<void>((resolve, reject) => {
    rx.on('error', reject);
    rx.on('conclude', (code: number) => (code === 1000 ? resolve() : reject(new Error(`ws Receiver: close code ${code}`))));
  });
  for (const m of msgs) rx.write(clientFrame(m));
  rx.write(clientFrame(ping, 9));
  rx.write(clientFrame(Buffer.from([0x03, 0xe8]), 8));
  // ws emits synchronously; a frame it still waits the rest of (a wrong length) must not hang the run.
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_r, reject) => (timer = setTimeout(() => reject(new Error('client frames: ws Receiver did not read them all (wrong length?)')), 2000)));
  try {
    await Promise.race([Promise.all([done, gotPing]), late]);
  } finally {
    clearTimeout(timer);
  }
  if (got.length !== msgs.length || got.some((m, i) => !m.equals(msgs[i]!))) throw new Error('client frames: ws Receiver read other bytes');
}

/** Live exchange with a ws server on loopback (run this file directly). */
async function checkLive(): Promise<void> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  const port = (wss.address() as { port: number }).port;
  try {
    const serverSide = once(wss, 'connection') as Promise<[WebSocket]>;
    const c = await WsClient.connect('127.0.0.1', port, '/v1/anonymous');
    const [s] = await serverSide;
    const fromClient: Buffer[] = [];
    s.on('message', (d: Buffer) => fromClient.push(Buffer.from(d)));
    const fromServer: Buffer[] = [];
    c.reader.onMessage = (b, st, e) => fromServer.push(Buffer.from(b.subarray(st, e)));
    const big = payloadOf(200_000, 9);
    // Several frames queued in one turn: one write.
    c.send(Buffer.from('a'));
    c.send(big);
    c.send(Buffer.from('c'));
    s.send(big);
    s.send(Buffer.from('z'));
    const pong = once(s, 'pong');
    s.ping(Buffer.from('p1'));
    const [pongData] = (await pong) as [Buffer];
    if (pongData.toString() !== 'p1') throw new Error('live: pong payload');
    for (let i = 0; i < 200 && (fromClient.length < 3 || fromServer.length < 2); i++) await new Promise((r) => setTimeout(r, 5));
    if (fromClient.length !== 3 || !fromClient[1]!.equals(big) || fromClient[2]!.toString() !== 'c') throw new Error('live: server got other messages');
    if (fromServer.length !== 2 || !fromServer[0]!.equals(big) || fromServer[1]!.toString() !== 'z') throw new Error('live: client got other messages');
    // Frames in the output slab while the server does not read: writes stay pending, and the
    // slab must not be rewound under them (every frame arrives intact).
    fromClient.length = 0;
    s.pause();
    const N = 4000;
    for (let i = 0; i < N; i++) {
      const len = 1500;
      const f = frameBuffer(clientHeaderLength(len) + len);
      const at = putClientHeader(f, 0, len);
      f.fill(i & 0xff, at);
      f.writeUInt32LE(i, at);
      maskInPlace(f, at, f.length);
      c.sendFrame(f);
      if (i % 50 === 49) await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 20));
    s.resume();
    for (let i = 0; i < 400 && fromClient.length < N; i++) await new Promise((r) => setTimeout(r, 5));
    for (let i = 0; i < N; i++) {
      const m = fromClient[i];
      if (!m || m.length !== 1500 || m.readUInt32LE(0) !== i || m[1499] !== (i & 0xff)) throw new Error(`live: slab frame ${i} of ${N} arrived damaged or not at all (${fromClient.length} arrived)`);
    }
    const closed = once(s, 'close') as Promise<[number, Buffer]>;
    await c.close(4001);
    const [code] = await closed;
    if (code !== 4001) throw new Error(`live: server saw close code ${code}`);

    // A close from the server is an error for the benchmark's client (it never expects one).
    const serverSide2 = once(wss, 'connection') as Promise<[WebSocket]>;
    const c2 = await WsClient.connect('127.0.0.1', port, '/v1/anonymous');
    const [s2] = await serverSide2;
    const threw = new Promise<string>((resolve) => {
      const read = c2._read.bind(c2);
      c2._read = (d: Buffer, len?: number): void => {
        try {
          read(d, len);
        } catch (e) {
          resolve(e instanceof WebSocketProtocolError ? e.message : `other: ${String(e)}`);
        }
      };
    });
    const s2closed = once(s2, 'close') as Promise<[number, Buffer]>;
    s2.close(4002, 'going');
    const msg = await threw;
    if (!/closed by the server \(code 4002, going\)/.test(msg)) throw new Error(`live: server close reported as ${msg}`);
    const [code2] = await s2closed;
    if (code2 !== 4002) throw new Error(`live: close not echoed (${code2})`);
  } finally {
    for (const c of wss.clients) c.terminate();
    wss.close();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await checkFraming();
  console.log('framing: FrameReader and clientFrame agree with ws');
  await checkLive();
  console.log('live: handshake, messages both ways, ping/pong, slab frames behind a server that does not read, client close, server close');
}

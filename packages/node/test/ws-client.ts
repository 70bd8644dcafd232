// A minimal device/anonymous client over a real WebSocket, for tests.
import WebSocket from 'ws';
import type { Frame, FrameInit, FrameKind } from '@meshwhisper/protocol';
import { DEVICE_SOCKET_METHOD, DEVICE_SOCKET_PATH, decodeFrame, encodeFrame, requestDigest, signDeviceAuth } from '@meshwhisper/protocol';
import type { TestDevice } from './helpers.js';
import { ctx } from './helpers.js';

export class WsClient {
  readonly frames: Frame[] = [];
  #waiters: (() => void)[] = [];
  closed: { code: number; reason: string } | undefined;
  #nextId = 1;

  /** `pings`: when each WebSocket ping from the node arrived (performance.now()), recorded from before the upgrade completed. */
  private constructor(
    readonly ws: WebSocket,
    readonly pings: number[] = [],
  ) {
    ws.on('message', (data: Buffer) => {
      const d = decodeFrame(new Uint8Array(data));
      if (!d.ok) throw new Error(`client got undecodable frame: ${d.error.message}`);
      this.frames.push(d.value);
      this.#notify();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.#notify();
    });
  }

  /** `autoPong: false`: the client never answers the node's pings (a dead peer, as the heartbeat sees it). */
  static async connect(port: number, path: string, options: { autoPong?: boolean } = {}): Promise<WsClient> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { maxPayload: 4 * 1024 * 1024, autoPong: options.autoPong ?? true });
    // Listening before 'open': a ping right behind the 101 response is parsed in the same turn as 'open'.
    const pings: number[] = [];
    ws.on('ping', () => pings.push(performance.now()));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    return new WsClient(ws, pings);
  }

  #notify(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  send(init: FrameInit): number {
    const requestId = init.requestId ?? this.#nextId++;
    this.ws.send(encodeFrame({ ...init, requestId }));
    return requestId;
  }

  sendRaw(bytes: Uint8Array | string): void {
    this.ws.send(bytes);
  }

  /** Waits until a frame satisfying `pred` has arrived; removes and returns it. */
  async next(pred: (f: Frame) => boolean = () => true, timeoutMs = 5000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i >= 0) return this.frames.splice(i, 1)[0]!;
      if (this.closed) throw new Error(`connection closed (${this.closed.code} ${this.closed.reason}) while waiting`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout; frames so far: ${this.frames.map((f) => f.body.case).join(',')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  nextKind<K extends FrameKind>(kind: K, timeoutMs?: number): Promise<Frame & { body: Extract<Frame['body'], { case: K }> }> {
    return this.next((f) => f.body.case === kind, timeoutMs) as Promise<Frame & { body: Extract<Frame['body'], { case: K }> }>;
  }

  async waitClosed(timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('timeout waiting for close');
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.closed;
  }

  /** hello (+ authenticate as `device` on the device endpoint). */
  static async device(port: number, device: TestDevice): Promise<WsClient> {
    const c = await WsClient.connect(port, DEVICE_SOCKET_PATH);
    c.send({ body: { case: 'clientHello', value: { versions: [2] } } });
    const hello = await c.nextKind('serverHello');
    const auth = signDeviceAuth(ctx, device.device, device.certificateBytes, hello.body.value.challenge, requestDigest(ctx, DEVICE_SOCKET_METHOD, DEVICE_SOCKET_PATH));
    c.send({ body: { case: 'authenticate', value: auth } });
    await c.nextKind('authenticated');
    return c;
  }

  ack(ids: Uint8Array[], requestId = 0): void {
    this.send({ requestId, body: { case: 'ack', value: { ids } } });
  }

  close(): void {
    this.ws.close();
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/**
 * The anonymous sending connection, GET /v1/anonymous: hello, then any number of `send` frames,
 * each answered by `sendResult` or `error` with the same request id. Never authenticated, so it
 * is not linked to any mailbox login (docs/threat-model.md).
 */
import type { Frame } from '@meshwhisper/protocol';
import { ErrorCode, MAX_FRAME_BYTES, ProtocolError, encodeSendResultFrame } from '@meshwhisper/protocol';
import type { WebSocket } from 'ws';
import type { SendService, SendSink } from '../mailbox/send.js';
import type { RateLimiter } from '../rate-limit.js';
import type { FrameLog } from './connection.js';
import { FrameConnection, WS_FRAME_BUFFER } from './connection.js';

export class AnonymousConnection extends FrameConnection implements SendSink {
  #helloDone = false;
  /** Reads are paused until the send backlog is relieved (SendService.congested). */
  #paused = false;
  readonly #resume = (): void => {
    this.#paused = false;
    if (!this.closed) this.ws.resume();
  };
  constructor(
    ws: WebSocket,
    clientKey: string,
    log: FrameLog,
    limiter: RateLimiter,
    private readonly sender: SendService,
  ) {
    super(ws, limiter, clientKey, log);
  }

  protected onFrame(frame: Frame): void {
    if (!this.#helloDone) {
      if (!this.hello(frame)) return;
      this.#helloDone = true;
      this.handshakeDone();
      this.send({ requestId: frame.requestId, body: { case: 'serverHello', value: { version: this.version, maxFrameBytes: MAX_FRAME_BYTES } } });
      return;
    }
    if (frame.body.case !== 'send') throw new ProtocolError(ErrorCode.UNEXPECTED_FRAME, 'only send frames are accepted on the anonymous connection');
    // The answer comes back through sent()/refused() with the request id (no promise per send).
    this.sender.sendTo(frame.body.value, this.clientKey, this, frame.requestId);
    // Backpressure: while the node's backlog in front of the disk is at its high mark, this socket
    // reads nothing more (TCP flow control holds the sender back); the frames of the chunk already
    // read are still handled and answered. Nothing is dropped.
    if (this.sender.congested && !this.#paused) {
      this.#paused = true;
      this.ws.pause();
      this.sender.whenRelieved(this.#resume);
    }
  }

  sent(requestId: number, id: Uint8Array, deliveredLive: boolean): void {
    this.sendFramed(encodeSendResultFrame(this.frameVersion, requestId, id, deliveredLive, WS_FRAME_BUFFER));
  }

  refused(requestId: number, e: unknown): void {
    this.sendError(requestId, e instanceof ProtocolError ? e : new ProtocolError(ErrorCode.INTERNAL, 'internal error'));
  }

  protected onClosed(): void {}
}

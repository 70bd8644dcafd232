/**
 * Every HTTP error the node sends is `{ error: { code, message } }` with a registry code
 * (docs/spec/node-protocol.md §5, docs/spec/errors.md) — also the ones raised below the routes:
 *
 *  - Node's HTTP parser (`clientError`): headers or request line too long → 431, a request that
 *    does not parse (`Content-Length: -1`, two lengths, garbage) → 400, too slow → 408;
 *  - fastify's router (`frameworkErrors`): a path that is not valid %-encoding → 400, a path
 *    parameter over the router's limit → 414;
 *  - fastify's body parsing and our routes (`setErrorHandler`).
 *
 * Messages never repeat the request: paths carry capabilities (media ids) and names, so an echo
 * would put them into whatever logs the reply (proxies, browsers' consoles).
 */
import type { Socket } from 'node:net';
import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { WireErrorCode } from '@meshwhisper/protocol';
import { CONTENT_TYPE_PROTOBUF, ErrorCode, MAX_HTTP_BODY_BYTES, ProtocolError, httpErrorBody } from '@meshwhisper/protocol';
import { RateLimitError, retryAfterSeconds } from './rate-limit.js';

interface ErrorLog {
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

/** Errors of fastify's router, before any route runs (fastify's `frameworkErrors` option). */
export function frameworkErrorHandler(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    void reply.code(414).send(httpErrorBody(ErrorCode.TOO_LARGE, 'a path segment is too long'));
    return;
  }
  // FST_ERR_BAD_URL (invalid %-encoding) and anything else the router refuses.
  void reply.code(400).send(httpErrorBody(ErrorCode.MALFORMED, 'the request path is not valid'));
}

/**
 * Requests Node's HTTP parser refused (fastify's `clientErrorHandler` option). There is no request
 * object, so the reply is written on the socket, which is then closed: after a parse error the
 * rest of the stream cannot be trusted.
 */
export function clientErrorHandler(this: { log: ErrorLog }, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  let status: number;
  let code: WireErrorCode;
  let message: string;
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    status = 431;
    code = ErrorCode.TOO_LARGE;
    message = 'request line and headers are too large';
  } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    status = 408;
    code = ErrorCode.MALFORMED;
    message = 'the request was not received in time';
  } else {
    status = 400;
    code = ErrorCode.MALFORMED;
    message = 'the request could not be parsed';
  }
  // The parser's code only: its error carries the raw bytes read (paths, headers).
  this.log.debug({ code: err.code }, 'unparsable HTTP request');
  if (socket.writable) {
    const body = JSON.stringify(httpErrorBody(code, message));
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}

/** Errors thrown by routes, hooks and fastify's body parsing (`app.setErrorHandler`). */
export function routeErrorHandler(err: FastifyError | ProtocolError | RateLimitError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (err instanceof ProtocolError) {
    if (err.retryAfterMs > 0) reply.header('retry-after', String(retryAfterSeconds(err.retryAfterMs)));
    return reply.code(err.httpStatus).send(err.toJSON());
  }
  if (err instanceof RateLimitError) {
    if (err.statusCode === 429) reply.header('retry-after', String(err.retryAfterSeconds));
    return reply.code(err.statusCode).send(err.toJSON());
  }
  const status = typeof err.statusCode === 'number' ? err.statusCode : 500;
  if (status === 413) return reply.code(413).send(httpErrorBody(ErrorCode.TOO_LARGE, `body exceeds ${MAX_HTTP_BODY_BYTES} bytes`));
  if (status === 415) return reply.code(415).send(httpErrorBody(ErrorCode.UNSUPPORTED_MEDIA_TYPE, `use Content-Type ${CONTENT_TYPE_PROTOBUF} (or application/octet-stream for blobs)`));
  if (status >= 400 && status < 500) return reply.code(status).send(httpErrorBody(ErrorCode.MALFORMED, 'request could not be parsed'));
  request.log.error({ err: { name: err.name, code: (err as FastifyError).code, message: err.message } }, 'request failed');
  return reply.code(500).send(httpErrorBody(ErrorCode.INTERNAL, 'internal error'));
}

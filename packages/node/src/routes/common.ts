/** Helpers shared by the HTTP route plugins: protobuf replies and authentication from headers. */
import type { DescMessage, MessageInitShape } from '@bufbuild/protobuf';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AUTH_HEADER, ArchiveAuthSchema, CONTENT_TYPE_PROTOBUF, DeviceAuthSchema, ErrorCode, ProtocolError, decodeBody, deviceAuthProblem, encodeBody, fromBase64Url, requestDigest } from '@meshwhisper/protocol';
import type { AuthenticatedDevice } from '../auth.js';
import { verifyArchiveAuth, verifyDeviceAuth } from '../auth.js';
import type { NodeServices } from '../services.js';

/** Largest mw-auth header we parse (a DeviceAuth is ~330 bytes encoded). */
const MAX_AUTH_HEADER_BYTES = 2048;

export function sendProto<Desc extends DescMessage>(reply: FastifyReply, schema: Desc, init: MessageInitShape<Desc>, status = 200): FastifyReply {
  return reply.code(status).type(CONTENT_TYPE_PROTOBUF).send(Buffer.from(encodeBody(schema, init)));
}

/** The raw protobuf body (the content-type parser hands it over as a Buffer). */
export function protoBody(request: FastifyRequest): Uint8Array {
  const b = request.body;
  if (!(b instanceof Uint8Array)) throw new ProtocolError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, `body must be ${CONTENT_TYPE_PROTOBUF}`);
  return b;
}

export function decodeOrThrow<T>(d: { ok: true; value: T } | { ok: false; error: ProtocolError }): T {
  if (!d.ok) throw d.error;
  return d.value;
}

function authHeaderBytes(request: FastifyRequest): Uint8Array {
  const header = request.headers[AUTH_HEADER];
  if (typeof header !== 'string' || header === '') throw new ProtocolError(ErrorCode.AUTH_REQUIRED, `this request needs an ${AUTH_HEADER} header`);
  const raw = header.length <= MAX_AUTH_HEADER_BYTES ? fromBase64Url(header) : undefined;
  if (!raw) throw new ProtocolError(ErrorCode.AUTH_INVALID, `${AUTH_HEADER} is not base64url`);
  return raw;
}

const pathOf = (request: FastifyRequest): string => request.url.split('?')[0] ?? '/';

/** Verifies the DeviceAuth in the mw-auth header against this request (and its body, if buffered). */
export function requireDevice(svc: NodeServices, request: FastifyRequest, body?: Uint8Array): Promise<AuthenticatedDevice> {
  const auth = decodeBody(DeviceAuthSchema, authHeaderBytes(request), deviceAuthProblem);
  if (!auth.ok) return Promise.reject(new ProtocolError(ErrorCode.AUTH_INVALID, auth.error.message));
  return verifyDeviceAuth(svc.ctx, svc.issuer, svc.store, auth.value, requestDigest(svc.ctx, request.method, pathOf(request), body));
}

/** Verifies the ArchiveAuth in the mw-auth header; returns the archive-access key. */
export function requireArchiveKey(svc: NodeServices, request: FastifyRequest): Promise<Uint8Array> {
  const auth = decodeBody(ArchiveAuthSchema, authHeaderBytes(request));
  if (!auth.ok) return Promise.reject(new ProtocolError(ErrorCode.AUTH_INVALID, auth.error.message));
  return verifyArchiveAuth(svc.ctx, svc.issuer, auth.value, requestDigest(svc.ctx, request.method, pathOf(request)));
}

/**
 * Device-linking provisioning channels (docs/spec/linking.md §Provisioning channel), over a LinkRelay
 * (LinkChannels in this process, or forwarded to the cluster instance that holds the channel):
 *   POST   /v1/link                 → LinkChannelCreated (unauthenticated; the new device has no identity yet)
 *   POST   /v1/link/:id/claim       LinkChannelClaim → LinkChannelClaimed (single use: a second claim is MW_CONFLICT)
 *   POST   /v1/link/:id/messages    LinkChannelPost, mw-link-token → 204
 *   GET    /v1/link/:id/messages?after=N&wait=MS, mw-link-token → LinkChannelMessages (long poll)
 *   DELETE /v1/link/:id             mw-link-token → 204
 * Ids and tokens travel base64url. Every route spends the per-address 'link' bucket; creating a
 * channel also spends the strict 'link-create' bucket.
 */
import type { FastifyInstance } from 'fastify';
import { ErrorCode, LINK_TOKEN_HEADER, LinkChannelClaimSchema, LinkChannelClaimedSchema, LinkChannelCreatedSchema, LinkChannelMessagesSchema, LinkChannelPostSchema, ProtocolError, decodeBody, fromBase64Url } from '@meshwhisper/protocol';
import type { LinkRelay } from '../link/relay.js';
import { LINK_MAX_WAIT_MS } from '../link/channels.js';
import { decodeOrThrow, protoBody, sendProto } from './common.js';

function idOf(text: string): Uint8Array {
  const id = text.length <= 64 ? fromBase64Url(text) : undefined;
  if (!id) throw new ProtocolError(ErrorCode.BAD_REQUEST, 'link channel id is not base64url');
  return id;
}

function tokenOf(header: unknown): Uint8Array | undefined {
  if (header === undefined) return undefined;
  const t = typeof header === 'string' && header.length <= 64 ? fromBase64Url(header) : undefined;
  if (!t) throw new ProtocolError(ErrorCode.AUTH_INVALID, `${LINK_TOKEN_HEADER} is not base64url`);
  return t;
}

function intParam(v: unknown, name: string, max: number): number {
  if (v === undefined) return 0;
  const n = typeof v === 'string' && /^\d{1,9}$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n > max) throw new ProtocolError(ErrorCode.BAD_REQUEST, `${name} must be an integer from 0 to ${max}`);
  return n;
}

export function linkRoutes(channels: LinkRelay) {
  return async (app: FastifyInstance): Promise<void> => {
    const rateLimit = ['http', 'link'];

    app.post('/v1/link', { config: { rateLimit: ['http', 'link', 'link-create'] } }, async (_request, reply) => {
      const c = await channels.create();
      return sendProto(reply, LinkChannelCreatedSchema, { channelId: c.channelId, ownerToken: c.ownerToken, expiresAt: BigInt(c.expiresAt) }, 201);
    });

    app.post<{ Params: { id: string } }>('/v1/link/:id/claim', { config: { rateLimit } }, async (request, reply) => {
      const body = decodeOrThrow(decodeBody(LinkChannelClaimSchema, protoBody(request)));
      const r = await channels.claim(idOf(request.params.id), body.hello);
      return sendProto(reply, LinkChannelClaimedSchema, { scannerToken: r.scannerToken, expiresAt: BigInt(r.expiresAt) });
    });

    app.post<{ Params: { id: string } }>('/v1/link/:id/messages', { config: { rateLimit } }, async (request, reply) => {
      const body = decodeOrThrow(decodeBody(LinkChannelPostSchema, protoBody(request)));
      await channels.post(idOf(request.params.id), tokenOf(request.headers[LINK_TOKEN_HEADER]), body.data);
      return reply.code(204).send();
    });

    app.get<{ Params: { id: string }; Querystring: { after?: string; wait?: string } }>('/v1/link/:id/messages', { config: { rateLimit } }, async (request, reply) => {
      const after = intParam(request.query.after, 'after', 1_000_000);
      const wait = intParam(request.query.wait, 'wait', LINK_MAX_WAIT_MS);
      const abort = new AbortController();
      reply.raw.once('close', () => abort.abort()); // the client went away: stop waiting
      const r = await channels.read(idOf(request.params.id), tokenOf(request.headers[LINK_TOKEN_HEADER]), after, wait, abort.signal);
      return sendProto(reply, LinkChannelMessagesSchema, { messages: r.messages, last: r.last, closed: r.closed });
    });

    app.delete<{ Params: { id: string } }>('/v1/link/:id', { config: { rateLimit } }, async (request, reply) => {
      await channels.close(idOf(request.params.id), tokenOf(request.headers[LINK_TOKEN_HEADER]));
      return reply.code(204).send();
    });
  };
}

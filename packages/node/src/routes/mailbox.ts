/** POST /v1/send and /v1/send/batch (anonymous), GET /v1/auth/challenge, /health, /ready. */
import type { FastifyInstance } from 'fastify';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { SendBatchItemResultSchema} from '@meshwhisper/protocol';
import { ChallengeSchema, ErrorCode, ProtocolError, SendBatchRequestSchema, SendBatchResultSchema, SendRequestSchema, SendResultSchema, decodeBody, sendBatchProblem, sendRequestProblem } from '@meshwhisper/protocol';
import { requestClientKey } from '../rate-limit.js';
import type { NodeServices } from '../services.js';
import { decodeOrThrow, protoBody, sendProto } from './common.js';

export function mailboxRoutes(svc: NodeServices) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get('/v1/auth/challenge', { config: { rateLimit: ['http', 'auth'] } }, async (_request, reply) => {
      return sendProto(reply, ChallengeSchema, { challenge: svc.issuer.issue() });
    });

    // Anonymous: no mw-auth header is read here, and the response never depends on who asks.
    app.post('/v1/send', async (request, reply) => {
      const req = decodeOrThrow(decodeBody(SendRequestSchema, protoBody(request), sendRequestProblem));
      const result = await svc.sender.send(req, requestClientKey(request, svc.config.trustProxy));
      return sendProto(reply, SendResultSchema, result);
    });

    // Several sends in one request (node-protocol.md §4.1): one answer per item, in order. Only a
    // request that is malformed as a whole (not protobuf, no items, too many) fails as a whole —
    // and then nothing of it was written.
    app.post('/v1/send/batch', async (request, reply) => {
      const req = decodeOrThrow(decodeBody(SendBatchRequestSchema, protoBody(request), sendBatchProblem));
      const outcomes = await svc.sender.sendBatch(req.items, requestClientKey(request, svc.config.trustProxy));
      const results = outcomes.map((o): MessageInitShape<typeof SendBatchItemResultSchema> => {
        if (o.ok) return { outcome: { case: 'ok', value: o.result } };
        const e = o.error instanceof ProtocolError ? o.error : undefined;
        if (!e) request.log.error({ err: o.error }, 'a batch item failed unexpectedly');
        const detail = e ? { code: e.code, message: e.message, retryAfterMs: e.retryAfterMs } : { code: ErrorCode.INTERNAL, message: 'internal error' };
        return { outcome: { case: 'error', value: detail } };
      });
      return sendProto(reply, SendBatchResultSchema, { results });
    });

    app.get('/health', { config: { rateLimit: false } }, async () => ({ status: 'ok' }));

    // Rate-limited like /health's callers deserve, and the write probe is cached by the store
    // (HEALTH_PROBE_INTERVAL_MS): a flood of /ready costs no disk writes.
    app.get('/ready', { config: { rateLimit: ['ready'] } }, async (_request, reply) => {
      if (svc.shuttingDown()) return reply.code(503).send({ status: 'shutting down' });
      const h = await svc.store.health();
      if (h.writable) return { status: 'ready' };
      const status =
        h.reason === 'disk-full'
          ? 'disk full: new mail refused, acks still served'
          : h.reason === 'writer-failed'
            ? 'store writer restarting: new mail and acks refused'
            : 'database not writable';
      return reply.code(503).send({ status, reason: h.reason });
    });
  };
}

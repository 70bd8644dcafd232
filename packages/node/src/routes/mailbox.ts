/** POST /v1/send (anonymous), GET /v1/auth/challenge, /health, /ready. */
import type { FastifyInstance } from 'fastify';
import { ChallengeSchema, SendRequestSchema, SendResultSchema, decodeBody, sendRequestProblem } from '@meshwhisper/protocol';
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

    app.get('/health', { config: { rateLimit: false } }, async () => ({ status: 'ok' }));

    app.get('/ready', { config: { rateLimit: false } }, async (_request, reply) => {
      if (svc.shuttingDown()) return reply.code(503).send({ status: 'shutting down' });
      return svc.store.writable() ? { status: 'ready' } : reply.code(503).send({ status: 'database not writable' });
    });
  };
}

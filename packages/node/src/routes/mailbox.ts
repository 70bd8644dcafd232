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

    // Rate-limited like /health's callers deserve, and the write probe is cached by the store
    // (HEALTH_PROBE_INTERVAL_MS): a flood of /ready costs no disk writes.
    app.get('/ready', { config: { rateLimit: ['ready'] } }, async (_request, reply) => {
      if (svc.shuttingDown()) return reply.code(503).send({ status: 'shutting down' });
      const h = await svc.store.health();
      if (h.writable) return { status: 'ready' };
      return reply.code(503).send({ status: h.reason === 'disk-full' ? 'disk full: new mail refused, acks still served' : 'database not writable', reason: h.reason });
    });
  };
}

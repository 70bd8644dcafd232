/**
 * Deletion (docs/spec/node-protocol.md §Deletion): DELETE /v1/device removes everything the node
 * holds for the authenticated device; DELETE /v1/account does so for every device of its account,
 * plus the account's usernames and archive.
 */
import type { FastifyInstance } from 'fastify';
import { toHex } from '@meshwhisper/crypto';
import type { NodeServices } from '../services.js';
import { removeArchiveFile } from './blobs.js';
import { requireDevice } from './common.js';

/** Connections of deleted devices close, in every process. */
async function closeDeleted(svc: NodeServices, mailboxes: readonly Uint8Array[]): Promise<void> {
  for (const m of mailboxes) await svc.hub.bus.publishDeleted(toHex(m));
}

export function accountRoutes(svc: NodeServices) {
  return async (app: FastifyInstance): Promise<void> => {
    app.delete('/v1/device', { config: { rateLimit: ['http', 'directory-write'] } }, async (request, reply) => {
      const device = await requireDevice(svc, request);
      await svc.store.deleteDevices([device.mailbox]);
      await closeDeleted(svc, [device.mailbox]);
      return reply.code(204).send();
    });

    app.delete('/v1/account', { config: { rateLimit: ['http', 'directory-write'] } }, async (request, reply) => {
      const device = await requireDevice(svc, request);
      const account = device.certificate.accountKey;
      const mailboxes = await svc.store.deleteAccount(account);
      await svc.store.deleteDevices([device.mailbox]); // the calling device, even if it never uploaded keys
      await closeDeleted(svc, [device.mailbox, ...mailboxes]);
      await removeArchiveFile(svc, account);
      return reply.code(204).send();
    });
  };
}

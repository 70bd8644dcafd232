/**
 * Deletion (docs/spec/node-protocol.md §Deletion): DELETE /v1/device removes everything the node
 * holds for the authenticated device; DELETE /v1/account does so for every device of its account,
 * plus the account's usernames and archive.
 */
import type { FastifyInstance } from 'fastify';
import { toHex } from '@meshwhisper/crypto';
import type { NodeServices } from '../services.js';
import { removeArchiveFile, removeMediaFiles } from './blobs.js';
import { requireDevice } from './common.js';

async function deleteDevices(svc: NodeServices, mailboxes: readonly Uint8Array[]): Promise<void> {
  const media: string[] = [];
  svc.store.transact((tx) => {
    for (const m of mailboxes) {
      for (const id of tx.blobs.mediaOwnedBy(m)) {
        tx.blobs.deleteMedia(id);
        media.push(id);
      }
      tx.mailbox.deleteMailbox(m);
      tx.directory.deleteDevice(m);
    }
  });
  for (const m of mailboxes) svc.hub.forEach((s) => s.mailboxKey === toHex(m) && s.close(4004, 'device deleted'));
  await removeMediaFiles(svc, media);
}

export function accountRoutes(svc: NodeServices) {
  return async (app: FastifyInstance): Promise<void> => {
    app.delete('/v1/device', { config: { rateLimit: ['http', 'directory-write'] } }, async (request, reply) => {
      const device = requireDevice(svc, request);
      await deleteDevices(svc, [device.mailbox]);
      return reply.code(204).send();
    });

    app.delete('/v1/account', { config: { rateLimit: ['http', 'directory-write'] } }, async (request, reply) => {
      const device = requireDevice(svc, request);
      const account = device.certificate.accountKey;
      const mailboxes = [device.mailbox, ...svc.store.directory.devicesOfAccount(account).filter((m) => toHex(m) !== toHex(device.mailbox))];
      await deleteDevices(svc, mailboxes);
      svc.store.transact((tx) => {
        tx.usernames.deleteOwnedBy(account);
        tx.blobs.deleteArchive(account);
      });
      await removeArchiveFile(svc, account);
      return reply.code(204).send();
    });
  };
}

/**
 * Deletion (docs/spec/node-protocol.md §10): DELETE /v1/device removes everything the node holds
 * for the authenticated device; DELETE /v1/account does so for every device of an account, plus the
 * account's usernames, archive and device list — only on the account key's deletion statement
 * (docs/spec/02-keys.md §2.8), never on the word of one device.
 */
import type { FastifyInstance } from 'fastify';
import { toHex, verifyAccountDeletion } from '@meshwhisper/crypto';
import { AccountDeletionRequestSchema, ErrorCode, ProtocolError, decodeBody } from '@meshwhisper/protocol';
import type { NodeServices } from '../services.js';
import { removeArchiveFile } from './blobs.js';
import { decodeOrThrow, requireDevice } from './common.js';

/** Connections of deleted devices close, in every process. */
async function closeDeleted(svc: NodeServices, mailboxes: readonly Uint8Array[]): Promise<void> {
  for (const m of mailboxes) await svc.hub.bus.publishDeleted(toHex(m));
}

const deletionProblem = (m: { accountKey: Uint8Array; signature: Uint8Array }): string | undefined =>
  m.accountKey.length !== 32 ? 'accountKey must be 32 bytes' : m.signature.length !== 64 ? 'signature must be 64 bytes' : undefined;

export function accountRoutes(svc: NodeServices) {
  return async (app: FastifyInstance): Promise<void> => {
    app.delete('/v1/device', { config: { rateLimit: ['http', 'directory-write'] } }, async (request, reply) => {
      const device = await requireDevice(svc, request);
      await svc.store.deleteDevices([device.mailbox]);
      await closeDeleted(svc, [device.mailbox]);
      return reply.code(204).send();
    });

    // Order of checks: the challenge (this node's, fresh, genuine: as for a DeviceAuth), the account
    // signature; then the challenge is consumed (a statement works once) and the epoch is checked
    // against the stored list (a statement made before the latest list change is refused).
    app.delete('/v1/account', { config: { rateLimit: ['http', 'directory-write'] } }, async (request, reply) => {
      const body = request.body;
      if (!(body instanceof Uint8Array) || body.length === 0) {
        throw new ProtocolError(ErrorCode.AUTH_REQUIRED, "deleting an account needs the account key's deletion statement (AccountDeletionRequest), not a device's authentication");
      }
      const req = decodeOrThrow(decodeBody(AccountDeletionRequestSchema, body, deletionProblem));
      const challenge = svc.issuer.check(req.challenge);
      if (req.epoch > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError(ErrorCode.BAD_REQUEST, 'epoch out of range');
      const statement = { accountKey: req.accountKey, epoch: Number(req.epoch), challenge: req.challenge, signature: req.signature };
      if (!verifyAccountDeletion(svc.ctx, statement)) throw new ProtocolError(ErrorCode.AUTH_INVALID, 'the deletion statement does not verify under the account key');
      await svc.issuer.consume(challenge);
      const stored = await svc.store.deviceList(req.accountKey);
      if (!stored) throw new ProtocolError(ErrorCode.NOT_FOUND, 'this account has no device list on this node');
      if (stored.epoch !== statement.epoch) {
        throw new ProtocolError(ErrorCode.STALE_DEVICE_LIST, `the deletion statement names epoch ${statement.epoch}; the account's current device list has epoch ${stored.epoch}`);
      }
      const mailboxes = await svc.store.deleteAccount(req.accountKey);
      await closeDeleted(svc, mailboxes);
      await removeArchiveFile(svc, req.accountKey);
      return reply.code(204).send();
    });
  };
}

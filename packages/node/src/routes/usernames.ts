/**
 * Usernames (docs/spec/node-protocol.md §Usernames): POST /v1/usernames applies a signed claim,
 * transfer or release; GET /v1/usernames/:namespace/:username returns the bundle reference only
 * (owner account key and the mailbox ids of its devices).
 *
 * Policies, per namespace (USERNAME_NAMESPACES):
 *  - signed (default): a name is yours until you sign it away. Claim succeeds only if the name is
 *    free (or already yours); transfer and release must be signed by the current owner, and a
 *    transfer also carries the receiving account's signed consent.
 *  - last-writer-wins: any signed claim takes the name; transfer and release still need the owner.
 * Every operation is signed by the account key it names and carries a fresh node challenge, so it
 * cannot be forged, replayed, or replayed at another node.
 */
import type { FastifyInstance } from 'fastify';
import type { CryptoContext } from '@meshwhisper/crypto';
import { equalBytes, signedMessage } from '@meshwhisper/crypto';
import type { UsernameOperation } from '@meshwhisper/protocol';
import {
  AuthLabel,
  CHALLENGE_FUTURE_SKEW_MS,
  ErrorCode,
  MAX_USERNAME_CONSENT_MS,
  NAMESPACE_PATTERN,
  ProtocolError,
  SignedUsernameOperationSchema,
  SignedUsernameTransferConsentSchema,
  USERNAME_PATTERN,
  UsernameAction,
  UsernameOperationSchema,
  UsernameRecordSchema,
  UsernameTransferConsentSchema,
  decodeBody,
} from '@meshwhisper/protocol';
import type { NodeServices } from '../services.js';
import { decodeOrThrow, protoBody, sendProto } from './common.js';

function operationProblem(op: UsernameOperation): string | undefined {
  if (!NAMESPACE_PATTERN.test(op.namespace)) return 'namespace has an invalid syntax';
  if (!USERNAME_PATTERN.test(op.username)) return 'username must be 1–64 of a-z 0-9 _ . - and start with a letter or digit';
  if (op.signerKey.length !== 32) return 'signerKey must be 32 bytes';
  if (op.action === UsernameAction.TRANSFER ? op.newOwnerKey.length !== 32 : op.newOwnerKey.length !== 0) return 'newOwnerKey must be 32 bytes for a transfer and empty otherwise';
  if (op.action !== UsernameAction.CLAIM && op.action !== UsernameAction.TRANSFER && op.action !== UsernameAction.RELEASE) return 'unknown action';
  if (op.action === UsernameAction.TRANSFER ? op.transferConsent.length === 0 : op.transferConsent.length !== 0) {
    return "transferConsent (the receiving account's signed consent) is required for a transfer and empty otherwise";
  }
  return undefined;
}

/**
 * Checks the receiving account's consent carried by a TRANSFER (§7): signed by new_owner_key,
 * naming this namespace, username, giver and receiver, and not expired. Throws ProtocolError.
 */
function checkTransferConsent(ctx: CryptoContext, op: UsernameOperation): void {
  const signed = decodeOrThrow(
    decodeBody(SignedUsernameTransferConsentSchema, op.transferConsent, (m) => (m.signature.length === 64 ? undefined : 'transfer consent signature must be 64 bytes')),
  );
  const c = decodeOrThrow(decodeBody(UsernameTransferConsentSchema, signed.consent));
  if (!ctx.backend.ed25519Verify(op.newOwnerKey, signedMessage(AuthLabel.UsernameConsent, signed.consent), signed.signature)) {
    throw new ProtocolError(ErrorCode.BAD_SIGNATURE, 'transfer consent signature does not verify with newOwnerKey');
  }
  if (c.namespace !== op.namespace || c.username !== op.username || !equalBytes(c.previousOwnerKey, op.signerKey) || !equalBytes(c.newOwnerKey, op.newOwnerKey)) {
    throw new ProtocolError(ErrorCode.BAD_REQUEST, 'transfer consent names another username, namespace, giver or receiver');
  }
  const now = ctx.now();
  if (c.expiresAtMs > BigInt(now + MAX_USERNAME_CONSENT_MS + CHALLENGE_FUTURE_SKEW_MS)) {
    throw new ProtocolError(ErrorCode.BAD_REQUEST, `transfer consent may be valid for at most ${MAX_USERNAME_CONSENT_MS / 86_400_000} days`);
  }
  if (c.expiresAtMs <= BigInt(now)) throw new ProtocolError(ErrorCode.FORBIDDEN, 'transfer consent has expired; ask the receiver for a new one');
}

export function usernameRoutes(svc: NodeServices) {
  const { ctx, store, config } = svc;
  const record = async (namespace: string, username: string) => {
    const row = await store.username(namespace, username);
    const list = row ? await store.deviceList(row.ownerKey) : undefined;
    return { namespace, username, ownerKey: row?.ownerKey ?? new Uint8Array(0), mailboxIds: row ? await store.devicesOfAccount(row.ownerKey) : [], deviceList: list?.encoded ?? new Uint8Array(0) };
  };

  return async (app: FastifyInstance): Promise<void> => {
    app.post('/v1/usernames', { config: { rateLimit: ['http', 'username-write'] } }, async (request, reply) => {
      const signed = decodeOrThrow(decodeBody(SignedUsernameOperationSchema, protoBody(request), (m) => (m.signature.length === 64 ? undefined : 'signature must be 64 bytes')));
      const op = decodeOrThrow(decodeBody(UsernameOperationSchema, signed.operation, operationProblem));
      const policy = config.usernameNamespaces.get(op.namespace);
      if (!policy) throw new ProtocolError(ErrorCode.UNKNOWN_NAMESPACE, `namespace ${op.namespace} is not served by this node`);
      const challenge = svc.issuer.check(op.challenge);
      if (!ctx.backend.ed25519Verify(op.signerKey, signedMessage(AuthLabel.Username, signed.operation), signed.signature)) {
        throw new ProtocolError(ErrorCode.BAD_SIGNATURE, 'username operation signature does not verify with signerKey');
      }
      if (op.action === UsernameAction.TRANSFER) checkTransferConsent(ctx, op);
      await svc.issuer.consume(challenge);
      if ((await store.devicesOfAccount(op.signerKey)).length === 0) {
        throw new ProtocolError(ErrorCode.FORBIDDEN, 'the signing account has no device registered on this node');
      }
      const now = ctx.now();
      // Decide on the current owner, then compare-and-set: a concurrent change makes the write
      // fail instead of being overwritten, and the decision is taken again.
      for (let attempt = 0; ; attempt++) {
        const current = (await store.username(op.namespace, op.username))?.ownerKey;
        const ownedBySigner = current !== undefined && equalBytes(current, op.signerKey);
        let owner: Uint8Array | undefined;
        switch (op.action) {
          case UsernameAction.CLAIM:
            if (current && !ownedBySigner && policy === 'signed') throw new ProtocolError(ErrorCode.USERNAME_TAKEN, 'username is owned by another key');
            owner = op.signerKey;
            break;
          case UsernameAction.TRANSFER:
            if (!ownedBySigner) throw new ProtocolError(current ? ErrorCode.FORBIDDEN : ErrorCode.NOT_FOUND, current ? 'only the owner can transfer a username' : 'no such username');
            owner = op.newOwnerKey;
            break;
          default:
            if (!ownedBySigner) throw new ProtocolError(current ? ErrorCode.FORBIDDEN : ErrorCode.NOT_FOUND, current ? 'only the owner can release a username' : 'no such username');
            owner = undefined;
        }
        if (await store.setUsername(op.namespace, op.username, current, owner, now)) break;
        if (attempt >= 3) throw new ProtocolError(ErrorCode.CONFLICT, 'username changed concurrently; retry');
      }
      return sendProto(reply, UsernameRecordSchema, await record(op.namespace, op.username));
    });

    app.get<{ Params: { namespace: string; username: string } }>(
      '/v1/usernames/:namespace/:username',
      { config: { rateLimit: ['http', 'username-lookup'] } },
      async (request, reply) => {
        const { namespace, username } = request.params;
        if (!config.usernameNamespaces.has(namespace)) throw new ProtocolError(ErrorCode.UNKNOWN_NAMESPACE, 'namespace is not served by this node');
        if (!USERNAME_PATTERN.test(username)) throw new ProtocolError(ErrorCode.BAD_REQUEST, 'invalid username');
        const r = await record(namespace, username);
        if (r.ownerKey.length === 0) throw new ProtocolError(ErrorCode.NOT_FOUND, 'no such username');
        return sendProto(reply, UsernameRecordSchema, r);
      },
    );
  };
}

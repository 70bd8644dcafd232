/**
 * Device lists (docs/spec/node-protocol.md §6.1): PUT /v1/device-list stores an account's new
 * account-signed list (device-authority.ts has the rules), GET /v1/accounts/{key}/device-list serves
 * it. No DeviceAuth on the write: the account signature inside the list is the authority, so a
 * manager device can revoke every other device, itself included.
 */
import type { FastifyInstance } from 'fastify';
import { fromHex, toHex } from '@meshwhisper/crypto';
import { DeviceListRecordSchema, ErrorCode, PublishDeviceListSchema, ProtocolError, decodeBody } from '@meshwhisper/protocol';
import { publishDeviceList } from '../device-authority.js';
import type { NodeServices } from '../services.js';
import { decodeOrThrow, protoBody, sendProto } from './common.js';

/** The account key of a `/v1/accounts/:account/…` path (64 lower-case hex characters). */
export function accountParam(hex: string): Uint8Array {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new ProtocolError(ErrorCode.BAD_REQUEST, 'account key must be 64 lower-case hex characters');
  return fromHex(hex);
}

export function deviceListRoutes(svc: NodeServices) {
  const { ctx, store } = svc;
  return async (app: FastifyInstance): Promise<void> => {
    app.put('/v1/device-list', { config: { rateLimit: ['http', 'directory-write'] } }, async (request, reply) => {
      const req = decodeOrThrow(decodeBody(PublishDeviceListSchema, protoBody(request), (m) => (m.deviceList.length > 0 ? undefined : 'deviceList is required')));
      const { encoded, removed } = await publishDeviceList(ctx, store, req.deviceList);
      // Revoked devices lose their live connection at once, in every process.
      for (const m of removed) await svc.hub.bus.publishDeleted(toHex(m));
      return sendProto(reply, DeviceListRecordSchema, { deviceList: encoded });
    });

    app.get<{ Params: { account: string } }>('/v1/accounts/:account/device-list', { config: { rateLimit: ['http', 'username-lookup'] } }, async (request, reply) => {
      const stored = await store.deviceList(accountParam(request.params.account));
      if (!stored) throw new ProtocolError(ErrorCode.NOT_FOUND, 'this account has published no device list on this node');
      return sendProto(reply, DeviceListRecordSchema, { deviceList: stored.encoded });
    });
  };
}

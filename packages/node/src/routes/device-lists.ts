/**
 * Device lists (docs/spec/node-protocol.md §6.1): PUT /v1/device-list stores an account's new
 * account-signed list (device-authority.ts has the rules), GET /v1/accounts/{key}/device-list serves
 * it. No DeviceAuth on the write: the account signature inside the list is the authority, so a
 * manager device can revoke every other device, itself included.
 *
 * Certificate renewals (§6.2): PUT /v1/certificate-renewal holds a manager-issued renewal for
 * another device of the uploader's account; GET /v1/devices/{mailbox}/certificate-renewal serves it
 * to that device. The read needs no authentication: a certificate is public (every bundle carries
 * one), and a device whose certificate already expired could not authenticate to fetch its renewal.
 */
import type { FastifyInstance } from 'fastify';
import { fromHex, toHex } from '@meshwhisper/crypto';
import { CertificateRenewalSchema, DeviceListRecordSchema, ErrorCode, MAILBOX_ID_LENGTH, PublishDeviceListSchema, ProtocolError, decodeBody } from '@meshwhisper/protocol';
import { offerCertificateRenewal, publishDeviceList } from '../device-authority.js';
import type { NodeServices } from '../services.js';
import { decodeOrThrow, protoBody, requireDevice, sendProto } from './common.js';

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

    app.put('/v1/certificate-renewal', { config: { rateLimit: ['http', 'directory-write'] } }, async (request, reply) => {
      const body = protoBody(request);
      const uploader = await requireDevice(svc, request, body);
      const req = decodeOrThrow(decodeBody(CertificateRenewalSchema, body, (m) => (m.certificate.length > 0 ? undefined : 'certificate is required')));
      await offerCertificateRenewal(ctx, store, uploader.certificate, req.certificate);
      return sendProto(reply, CertificateRenewalSchema, { certificate: req.certificate });
    });

    app.get<{ Params: { mailbox: string } }>('/v1/devices/:mailbox/certificate-renewal', { config: { rateLimit: ['http', 'username-lookup'] } }, async (request, reply) => {
      const hex = request.params.mailbox;
      if (!new RegExp(`^[0-9a-f]{${MAILBOX_ID_LENGTH * 2}}$`).test(hex)) throw new ProtocolError(ErrorCode.BAD_REQUEST, `mailbox id must be ${MAILBOX_ID_LENGTH * 2} lower-case hex characters`);
      const held = await store.certificateRenewal(fromHex(hex));
      if (!held) throw new ProtocolError(ErrorCode.NOT_FOUND, 'no certificate renewal is waiting for this device');
      return sendProto(reply, CertificateRenewalSchema, { certificate: held.certificate });
    });
  };
}

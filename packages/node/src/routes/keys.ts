/**
 * The key directory (docs/spec/node-protocol.md §Key directory): PUT /v1/keys, GET /v1/keys,
 * POST /v1/keys/claim. Every write is authenticated by a DeviceAuth covering the body, and every
 * signed prekey is verified against the certified device key before anything is stored.
 */
import type { FastifyInstance } from 'fastify';
import type { DeviceCertificate } from '@meshwhisper/crypto';
import {
  CryptoError,
  decodeDeviceCertificate,
  decodeKemPreKey,
  decodeOneTimePreKey,
  decodeSignedPreKey,
  encodePreKeyBundle,
  equalBytes,
  sameDevice,
  toHex,
  verifyDeviceCertificate,
  verifyKemPreKey,
  verifySignedPreKey,
} from '@meshwhisper/crypto';
import type { KeyUpload } from '@meshwhisper/protocol';
import {
  AccountDevicesSchema,
  ClaimRequestSchema,
  ClaimResultSchema,
  ErrorCode,
  KeyUploadSchema,
  MAILBOX_ID_LENGTH,
  MAX_PREKEYS_PER_UPLOAD,
  PreKeyCountsSchema,
  ProtocolError,
  decodeBody,
} from '@meshwhisper/protocol';
import { requireListed } from '../device-authority.js';
import type { NodeServices } from '../services.js';
import { decodeOrThrow, protoBody, requireDevice, sendProto } from './common.js';
import { accountParam } from './device-lists.js';

function uploadProblem(u: KeyUpload): string | undefined {
  if (u.oneTimePrekeys.length > MAX_PREKEYS_PER_UPLOAD || u.kemPrekeys.length > MAX_PREKEYS_PER_UPLOAD) return `at most ${MAX_PREKEYS_PER_UPLOAD} prekeys of each kind per upload`;
  return undefined;
}

/** Runs a crypto decode/verify; a CryptoError becomes MW_BAD_SIGNATURE or MW_PROTO_BAD_REQUEST naming the object. */
function checked<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof CryptoError) {
      const bad = e.code === 'MW_CRYPTO_BAD_SIGNATURE' || e.code === 'MW_CRYPTO_UNTRUSTED_IDENTITY';
      throw new ProtocolError(bad ? ErrorCode.BAD_SIGNATURE : ErrorCode.BAD_REQUEST, `${what} rejected (${e.code})`);
    }
    throw e;
  }
}

export function keyRoutes(svc: NodeServices) {
  const { ctx, store } = svc;
  const counts = async (mailbox: Uint8Array) => {
    const d = await store.device(mailbox);
    const c = await store.preKeyCounts(mailbox);
    return { oneTimePrekeys: c.oneTimePreKeys, kemPrekeys: c.kemPreKeys, hasSignedPrekey: !!d?.signedPreKey, hasLastResortKemPrekey: !!d?.lastResortKemPreKey };
  };

  return async (app: FastifyInstance): Promise<void> => {
    app.put('/v1/keys', { config: { rateLimit: ['http', 'directory-write'] } }, async (request, reply) => {
      const body = protoBody(request);
      const device = await requireDevice(svc, request, body);
      const upload = decodeOrThrow(decodeBody(KeyUploadSchema, body, uploadProblem));
      const signingKey = device.certificate.deviceSigningKey;

      let certificate: DeviceCertificate = device.certificate;
      let encodedCertificate = device.encodedCertificate;
      if (upload.certificate.length > 0) {
        certificate = checked('certificate', () => {
          const c = decodeDeviceCertificate(upload.certificate);
          verifyDeviceCertificate(ctx, c);
          return c;
        });
        if (!sameDevice(certificate, device.certificate)) throw new ProtocolError(ErrorCode.FORBIDDEN, 'certificate is for another device than the one authenticated');
        encodedCertificate = upload.certificate;
      }
      // The authentication checked the DeviceAuth's certificate against the list; an uploaded one
      // (a renewal) must be listed too, under the same index.
      let deviceListEpoch = certificate === device.certificate ? device.deviceListEpoch : await requireListed(store, certificate);
      const existing = await store.device(device.mailbox);
      if (existing && !equalBytes(existing.accountKey, certificate.accountKey)) {
        throw new ProtocolError(ErrorCode.CONFLICT, 'this device is registered to another account; delete it first');
      }
      const spk = upload.signedPrekey.length > 0 ? checked('signed prekey', () => {
        const k = decodeSignedPreKey(upload.signedPrekey);
        verifySignedPreKey(ctx, signingKey, k);
        return k;
      }) : undefined;
      const lastResort = upload.lastResortKemPrekey.length > 0 ? checked('last-resort KEM prekey', () => {
        const k = decodeKemPreKey(upload.lastResortKemPrekey);
        verifyKemPreKey(ctx, signingKey, k);
        if (!k.lastResort) throw new ProtocolError(ErrorCode.BAD_REQUEST, 'lastResortKemPrekey must have lastResort set');
        return k;
      }) : undefined;
      const oneTime = upload.oneTimePrekeys.map((enc, i) => ({ id: checked(`one-time prekey ${i}`, () => decodeOneTimePreKey(enc)).id, encoded: enc }));
      const kems = upload.kemPrekeys.map((enc, i) => {
        const k = checked(`KEM prekey ${i}`, () => {
          const kk = decodeKemPreKey(enc);
          verifyKemPreKey(ctx, signingKey, kk);
          return kk;
        });
        if (k.lastResort) throw new ProtocolError(ErrorCode.BAD_REQUEST, `KEM prekey ${i} is a last-resort key; send it as lastResortKemPrekey`);
        return { id: k.id, encoded: enc };
      });
      if (!existing && (!spk || !lastResort)) {
        throw new ProtocolError(ErrorCode.BAD_REQUEST, 'the first upload of a device must include a signed prekey and a last-resort KEM prekey');
      }
      const now = ctx.now();
      const publication = {
        mailbox: device.mailbox,
        accountKey: certificate.accountKey,
        certificate: encodedCertificate,
        issuedAt: certificate.issuedAt,
        signedPreKey: spk ? upload.signedPrekey : undefined,
        lastResortKemPreKey: lastResort ? upload.lastResortKemPrekey : undefined,
        oneTimePreKeys: oneTime,
        kemPreKeys: kems,
        now,
      };
      let published = await store.publishKeys({ ...publication, deviceListEpoch });
      if (published === 'list-changed') {
        // A new list was stored since the check: check again against it (a revocation wins).
        deviceListEpoch = await requireListed(store, certificate);
        published = await store.publishKeys({ ...publication, deviceListEpoch });
        if (published === 'list-changed') throw new ProtocolError(ErrorCode.CONFLICT, "the account's device list changed during the upload; retry");
      }
      if (published === 'other-account') throw new ProtocolError(ErrorCode.CONFLICT, 'this device is registered to another account; delete it first');
      return sendProto(reply, PreKeyCountsSchema, await counts(device.mailbox));
    });

    app.get('/v1/keys', { config: { rateLimit: ['http', 'directory-write'] } }, async (request, reply) => {
      const device = await requireDevice(svc, request);
      return sendProto(reply, PreKeyCountsSchema, await counts(device.mailbox));
    });

    app.post('/v1/keys/claim', { config: { rateLimit: ['http', 'prekey-claim'] } }, async (request, reply) => {
      const req = decodeOrThrow(
        decodeBody(ClaimRequestSchema, protoBody(request), (m) => (m.mailboxId.length === MAILBOX_ID_LENGTH ? undefined : `mailboxId must be ${MAILBOX_ID_LENGTH} bytes`)),
      );
      // Past the per-target budget the claim still succeeds, but consumes nothing: no one-time
      // X25519 prekey and the last-resort KEM prekey. Nobody can drain a device's pools, and
      // nobody is prevented from starting a session.
      const consume = svc.limiter.take('prekey-claim-target', toHex(req.mailboxId)).allowed;
      const claimed = await store.claimPreKeys(req.mailboxId, consume);
      if (!claimed) throw new ProtocolError(ErrorCode.NOT_FOUND, 'no complete prekey bundle for this mailbox');
      const bundle = encodePreKeyBundle({
        certificate: decodeDeviceCertificate(claimed.certificate),
        signedPreKey: decodeSignedPreKey(claimed.signedPreKey),
        ...(claimed.oneTimePreKey ? { oneTimePreKey: decodeOneTimePreKey(claimed.oneTimePreKey) } : {}),
        kemPreKey: decodeKemPreKey(claimed.kemPreKey),
      });
      return sendProto(reply, ClaimResultSchema, { bundle });
    });

    // First contact by public key: the mailbox ids of an account's devices, with the account's
    // device list (a sender verifies it and encrypts only to the devices it names). Nothing new is
    // revealed: a username lookup returns the same, and every claimed bundle names its account.
    app.get<{ Params: { account: string }; Querystring: { certificates?: string } }>('/v1/accounts/:account/devices', { config: { rateLimit: ['http', 'username-lookup'] } }, async (request, reply) => {
      const accountKey = accountParam(request.params.account);
      const mailboxIds = await store.devicesOfAccount(accountKey);
      if (mailboxIds.length === 0) throw new ProtocolError(ErrorCode.NOT_FOUND, 'no device of this account is registered on this node');
      const list = await store.deviceList(accountKey);
      const deviceList = list?.encoded ?? new Uint8Array(0);
      if (request.query.certificates !== '1') return sendProto(reply, AccountDevicesSchema, { accountKey, mailboxIds, deviceList });
      // ?certificates=1 (a manager renewing its account's devices, §6.2): each device's registered
      // certificate, in the order of mailboxIds.
      const listed: Uint8Array[] = [];
      const certificates: Uint8Array[] = [];
      for (const m of mailboxIds) {
        const d = await store.device(m);
        if (!d) continue; // deleted since the listing
        listed.push(m);
        certificates.push(d.certificate);
      }
      return sendProto(reply, AccountDevicesSchema, { accountKey, mailboxIds: listed, deviceList, certificates });
    });
  };
}

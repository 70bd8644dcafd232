/**
 * Push endpoints (docs/push.md): GET /v1/push/info (which services this node rings, and its VAPID
 * key), PUT /v1/push (DeviceAuth over the body: set the device's endpoint), DELETE /v1/push
 * (DeviceAuth: remove it). One endpoint per device; it is removed with the device.
 */
import type { FastifyInstance } from 'fastify';
import type { PushRegistration } from '@meshwhisper/protocol';
import {
  ApnsMode,
  ErrorCode,
  MAX_APNS_TOKEN_LENGTH,
  MAX_PUSH_ENDPOINT_LENGTH,
  MIN_APNS_TOKEN_LENGTH,
  ProtocolError,
  PushInfoSchema,
  PushRegistrationSchema,
  WEB_PUSH_AUTH_LENGTH,
  WEB_PUSH_P256DH_LENGTH,
  decodeBody,
} from '@meshwhisper/protocol';
import type { NodePush } from '../push/setup.js';
import type { PushTarget } from '../store/push-types.js';
import { webPushEndpointProblem } from '../push/webpush.js';
import type { NodeServices } from '../services.js';
import { decodeOrThrow, protoBody, requireDevice, sendProto } from './common.js';

/** Wire-level checks (lengths, syntax) of a PushRegistration; undefined when well-formed. */
export function pushRegistrationProblem(m: PushRegistration): string | undefined {
  const t = m.target;
  switch (t.case) {
    case 'webPush': {
      const s = t.value;
      if (s.endpoint.length === 0 || s.endpoint.length > MAX_PUSH_ENDPOINT_LENGTH) return `webPush.endpoint must be 1…${MAX_PUSH_ENDPOINT_LENGTH} characters`;
      if (s.p256dh.length !== WEB_PUSH_P256DH_LENGTH || s.p256dh[0] !== 0x04) return `webPush.p256dh must be a ${WEB_PUSH_P256DH_LENGTH}-byte uncompressed P-256 point`;
      if (s.auth.length !== WEB_PUSH_AUTH_LENGTH) return `webPush.auth must be ${WEB_PUSH_AUTH_LENGTH} bytes`;
      return undefined;
    }
    case 'apns':
      if (t.value.deviceToken.length < MIN_APNS_TOKEN_LENGTH || t.value.deviceToken.length > MAX_APNS_TOKEN_LENGTH) return `apns.deviceToken must be ${MIN_APNS_TOKEN_LENGTH}…${MAX_APNS_TOKEN_LENGTH} bytes`;
      if (t.value.mode !== ApnsMode.UNSPECIFIED && t.value.mode !== ApnsMode.BACKGROUND && t.value.mode !== ApnsMode.ALERT) return 'apns.mode is unknown';
      return undefined;
    case 'fcm': {
      const tok = t.value.registrationToken;
      if (tok.length === 0 || tok.length > MAX_PUSH_ENDPOINT_LENGTH || !/^[\x21-\x7e]+$/.test(tok)) return `fcm.registrationToken must be 1…${MAX_PUSH_ENDPOINT_LENGTH} printable ASCII characters`;
      return undefined;
    }
    default:
      return 'no push target (webPush, apns or fcm)';
  }
}

const SERVICE_NAME = { webpush: 'Web Push (VAPID_* not configured)', apns: 'APNs (APNS_* not configured)', fcm: 'FCM (FCM_SERVICE_ACCOUNT_FILE not configured)' } as const;

function toTarget(m: PushRegistration, push: NodePush): PushTarget {
  const t = m.target;
  let target: PushTarget;
  switch (t.case) {
    case 'webPush':
      target = { kind: 'webpush', endpoint: t.value.endpoint, p256dh: t.value.p256dh, auth: t.value.auth };
      break;
    case 'apns':
      target = { kind: 'apns', deviceToken: t.value.deviceToken, mode: t.value.mode === ApnsMode.ALERT ? 'alert' : 'background' };
      break;
    case 'fcm':
      target = { kind: 'fcm', registrationToken: t.value.registrationToken };
      break;
    default:
      throw new ProtocolError(ErrorCode.BAD_REQUEST, 'no push target');
  }
  if (!push.enabled.has(target.kind)) throw new ProtocolError(ErrorCode.BAD_REQUEST, `this node does not send ${SERVICE_NAME[target.kind]}; see GET /v1/push/info`);
  if (target.kind === 'webpush') {
    const problem = webPushEndpointProblem(target.endpoint, push.allowedHosts);
    if (problem) throw new ProtocolError(ErrorCode.BAD_REQUEST, problem);
  }
  return target;
}

export function pushRoutes(svc: NodeServices, push: NodePush) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get('/v1/push/info', { config: { rateLimit: ['http'] } }, async (_request, reply) =>
      sendProto(reply, PushInfoSchema, { vapidPublicKey: push.webPush?.publicKey ?? new Uint8Array(0), apns: push.enabled.has('apns'), fcm: push.enabled.has('fcm') }),
    );

    app.put('/v1/push', { config: { rateLimit: ['http', 'directory-write'] } }, async (request, reply) => {
      const body = protoBody(request);
      const device = await requireDevice(svc, request, body);
      const target = toTarget(decodeOrThrow(decodeBody(PushRegistrationSchema, body, pushRegistrationProblem)), push);
      const now = svc.ctx.now();
      // The endpoint belongs to a directory entry (and is deleted with it): the keys come first.
      if (!(await svc.store.setPushTarget(device.mailbox, target, now))) {
        throw new ProtocolError(ErrorCode.NOT_FOUND, 'this device is not registered on this node; upload its keys first (PUT /v1/keys)');
      }
      return reply.code(204).send();
    });

    app.delete('/v1/push', { config: { rateLimit: ['http', 'directory-write'] } }, async (request, reply) => {
      const device = await requireDevice(svc, request);
      await svc.store.deletePushTarget(device.mailbox);
      return reply.code(204).send();
    });
  };
}

/**
 * The load generators' devices (run.ts and cluster.ts): an account with one certified device, its
 * epoch-1 device list and its key upload, made up front; and their registration on a node over
 * HTTP (list first: the node refuses keys of a device its account's list does not name).
 */
import type { CryptoContext } from '../../packages/crypto/src/index.js';
import {
  AccountKeyPair,
  DeviceFlag,
  DeviceKeyPair,
  KemPreKeyPair,
  X25519PreKeyPair,
  encodeDeviceCertificate,
  encodeDeviceList,
  encodeKemPreKey,
  encodeSignedPreKey,
  issueDeviceCertificate,
  issueDeviceList,
  mailboxIdOf,
  signKemPreKey,
  signSignedPreKey,
} from '../../packages/crypto/src/index.js';
import {
  AUTH_HEADER,
  CONTENT_TYPE_PROTOBUF,
  ChallengeSchema,
  KeyUploadSchema,
  PublishDeviceListSchema,
  encodeBody,
  encodeDeviceAuthHeader,
  fromBinary,
  requestDigest,
  signDeviceAuth,
} from '../../packages/protocol/src/index.js';

export interface BenchDevice {
  readonly device: DeviceKeyPair;
  readonly certificate: Uint8Array;
  readonly mailbox: Uint8Array;
  readonly token: Uint8Array;
  /** KeyUpload body: signed prekey and last-resort ML-KEM prekey. */
  readonly upload: Uint8Array;
  /** PublishDeviceList body: the account's epoch-1 list naming this device. */
  readonly list: Uint8Array;
}

export function makeDevice(ctx: CryptoContext): BenchDevice {
  const account = AccountKeyPair.generate(ctx);
  const device = DeviceKeyPair.generate(ctx);
  const certificate = encodeDeviceCertificate(issueDeviceCertificate(ctx, account, device));
  const spk = signSignedPreKey(ctx, device, X25519PreKeyPair.generate(ctx, 1));
  const lr = signKemPreKey(ctx, device, KemPreKeyPair.generate(ctx, 2, true));
  const upload = encodeBody(KeyUploadSchema, { signedPrekey: encodeSignedPreKey(spk), lastResortKemPrekey: encodeKemPreKey(lr) });
  const list = encodeBody(PublishDeviceListSchema, { deviceList: encodeDeviceList(issueDeviceList(ctx, account, { epoch: 1, devices: [{ deviceIndex: 0, signingKey: device.signingPublicKey, flags: DeviceFlag.Manager }] })) });
  return { device, certificate, mailbox: mailboxIdOf(ctx, device.signingPublicKey), token: ctx.random(32), upload, list };
}

/** PUT /v1/device-list, then PUT /v1/keys (signed) on the node at `base` (http://host:port). */
export async function registerDevice(ctx: CryptoContext, base: string, d: BenchDevice): Promise<void> {
  const listed = await fetch(`${base}/v1/device-list`, { method: 'PUT', headers: { 'content-type': CONTENT_TYPE_PROTOBUF }, body: Buffer.from(d.list) });
  // A BASELINE build from before device lists (issue 10 §2) has no such endpoint and needs none.
  if (listed.status !== 200 && listed.status !== 404) throw new Error(`PUT /v1/device-list: HTTP ${listed.status} ${await listed.text()}`);
  await listed.arrayBuffer();
  const ch = await fetch(`${base}/v1/auth/challenge`);
  if (ch.status !== 200) throw new Error(`challenge: HTTP ${ch.status} ${await ch.text()}`);
  const challenge = fromBinary(ChallengeSchema, new Uint8Array(await ch.arrayBuffer())).challenge;
  const auth = signDeviceAuth(ctx, d.device, d.certificate, challenge, requestDigest(ctx, 'PUT', '/v1/keys', d.upload));
  const res = await fetch(`${base}/v1/keys`, {
    method: 'PUT',
    headers: { 'content-type': CONTENT_TYPE_PROTOBUF, [AUTH_HEADER]: encodeDeviceAuthHeader(auth) },
    body: Buffer.from(d.upload),
  });
  if (res.status !== 200) throw new Error(`PUT /v1/keys: HTTP ${res.status} ${await res.text()}`);
  await res.arrayBuffer();
}

/**
 * Device authority at the node (docs/spec/02-keys.md §2.5, docs/spec/node-protocol.md §6.1): the
 * node stores each account's newest device list and enforces it.
 *
 * Invariants kept here and in the store:
 * - A stored list verified under its own account key, and its epoch only ever rises (a lower epoch,
 *   or another list with the stored epoch, is refused with MW_STALE_DEVICE_LIST; a byte-identical
 *   re-publish is a no-op, so a client may retry a publication whose reply it lost).
 * - A device that the stored list does not name — same signing key AND same device index as its
 *   certificate — cannot log in, cannot make any device-authenticated request and cannot upload
 *   keys (MW_DEVICE_NOT_LISTED). An account without a list has no listed device.
 * - Storing a list deletes (in the same transaction) every registered device of the account it no
 *   longer names, so nobody can send to a revoked device (MW_NOT_FOUND, as for any unknown mailbox)
 *   and the node never returns it in a device lookup.
 *
 * - A certificate renewal (docs/spec/02-keys.md §2.6) is held for a device only if it verifies under
 *   the account key, renews the device's registered certificate (same keys and index, issued and
 *   expiring later), is offered by a listed device of the same account and names a listed device.
 *
 * The account signature is the only authority for a list: the node cannot make one, but it can
 * withhold a newer one (serve an older list it once stored); clients detect that through the epoch
 * every message carries (docs/threat-model.md §Device lists).
 */
import type { CryptoContext, DeviceCertificate, DeviceList } from '@meshwhisper/crypto';
import {
  CryptoError,
  CryptoErrorCode,
  assertDeviceListed,
  decodeDeviceCertificate,
  decodeDeviceList,
  encodeDeviceList,
  equalBytes,
  mailboxIdOf,
  verifyCertificateRenewal,
  verifyDeviceList,
} from '@meshwhisper/crypto';
import { ErrorCode, ProtocolError } from '@meshwhisper/protocol';
import type { NodeStore } from './store/node-store.js';

/** The account's stored list, decoded (it was verified before it was stored). */
export async function storedDeviceList(store: Pick<NodeStore, 'deviceList'>, accountKey: Uint8Array): Promise<DeviceList | undefined> {
  const stored = await store.deviceList(accountKey);
  return stored ? decodeDeviceList(stored.encoded) : undefined;
}

/** The stored list's epoch, if it names this certificate's device (key and index); else MW_DEVICE_NOT_LISTED. */
export async function requireListed(store: Pick<NodeStore, 'deviceList'>, certificate: DeviceCertificate): Promise<number> {
  const list = await storedDeviceList(store, certificate.accountKey);
  if (!list) throw new ProtocolError(ErrorCode.DEVICE_NOT_LISTED, "the device's account has published no device list on this node (PUT /v1/device-list first)");
  try {
    assertDeviceListed(list, certificate);
  } catch (e) {
    if (e instanceof CryptoError) throw new ProtocolError(ErrorCode.DEVICE_NOT_LISTED, `the device is not on its account's current device list (epoch ${list.epoch})`);
    throw e;
  }
  return list.epoch;
}

export type PublishListResult = { readonly list: DeviceList; readonly encoded: Uint8Array; readonly removed: Uint8Array[] };

/**
 * Verifies `encoded` and stores it as its account's list: MW_PROTO_BAD_REQUEST (undecodable),
 * MW_BAD_SIGNATURE, MW_STALE_DEVICE_LIST (not newer than, or inconsistent with, the stored one),
 * MW_CONFLICT (another publication for the account committed in between: fetch and retry).
 */
export async function publishDeviceList(ctx: CryptoContext, store: NodeStore, encoded: Uint8Array): Promise<PublishListResult> {
  let list: DeviceList;
  try {
    list = decodeDeviceList(encoded);
  } catch (e) {
    if (e instanceof CryptoError) throw new ProtocolError(ErrorCode.BAD_REQUEST, `device list rejected (${e.code}): ${e.message}`);
    throw e;
  }
  const stored = await store.deviceList(list.accountKey);
  const previous = stored ? decodeDeviceList(stored.encoded) : undefined;
  try {
    verifyDeviceList(ctx, list, previous ? { previous } : {});
  } catch (e) {
    if (!(e instanceof CryptoError)) throw e;
    if (e.code === CryptoErrorCode.STALE_DEVICE_LIST) throw new ProtocolError(ErrorCode.STALE_DEVICE_LIST, `device list refused: ${e.message}`);
    if (e.code === CryptoErrorCode.BAD_SIGNATURE) throw new ProtocolError(ErrorCode.BAD_SIGNATURE, 'device list rejected: the account signature does not verify');
    throw new ProtocolError(ErrorCode.BAD_REQUEST, `device list rejected (${e.code}): ${e.message}`);
  }
  const canonical = encodeDeviceList(list);
  if (stored && equalBytes(stored.encoded, canonical)) return { list, encoded: canonical, removed: [] }; // a re-publish
  const outcome = await store.publishDeviceList({
    accountKey: list.accountKey,
    epoch: list.epoch,
    encoded: canonical,
    expectedEpoch: stored?.epoch,
    listedMailboxes: list.devices.map((d) => mailboxIdOf(ctx, d.signingKey)),
    now: ctx.now(),
  });
  if (!outcome.ok) throw new ProtocolError(ErrorCode.CONFLICT, 'another device list for this account was stored at the same time; fetch it and retry');
  return { list, encoded: canonical, removed: outcome.removed };
}

/**
 * Verifies a renewed certificate that `uploader` (an authenticated, listed device) offers for
 * another registered device of its account, and holds it for that device
 * (GET /v1/devices/{mailbox}/certificate-renewal serves it). Refusals: MW_PROTO_BAD_REQUEST
 * (undecodable, expired, unsupported), MW_BAD_SIGNATURE (not signed by its account key),
 * MW_FORBIDDEN (for another account than the uploader's, or not a renewal of the registered
 * device: other device keys or index), MW_DEVICE_NOT_LISTED, MW_NOT_FOUND (no such registered
 * device), MW_STALE_CERTIFICATE (not issued and expiring after the registered certificate, or older
 * than the renewal already held), MW_CONFLICT (the list changed twice during the offer).
 */
export async function offerCertificateRenewal(ctx: CryptoContext, store: NodeStore, uploader: DeviceCertificate, encoded: Uint8Array): Promise<{ mailbox: Uint8Array }> {
  let renewal: DeviceCertificate;
  try {
    renewal = decodeDeviceCertificate(encoded);
  } catch (e) {
    if (e instanceof CryptoError) throw new ProtocolError(ErrorCode.BAD_REQUEST, `certificate rejected (${e.code}): ${e.message}`);
    throw e;
  }
  if (!equalBytes(renewal.accountKey, uploader.accountKey)) throw new ProtocolError(ErrorCode.FORBIDDEN, 'a device may offer renewals only for devices of its own account');
  const mailbox = mailboxIdOf(ctx, renewal.deviceSigningKey);
  const registered = await store.device(mailbox);
  if (!registered || !equalBytes(registered.accountKey, renewal.accountKey)) throw new ProtocolError(ErrorCode.NOT_FOUND, 'no device with these keys is registered to this account on this node');
  try {
    verifyCertificateRenewal(ctx, decodeDeviceCertificate(registered.certificate), renewal);
  } catch (e) {
    if (!(e instanceof CryptoError)) throw e;
    if (e.code === CryptoErrorCode.BAD_SIGNATURE) throw new ProtocolError(ErrorCode.BAD_SIGNATURE, 'certificate rejected: the account signature does not verify');
    if (e.code === CryptoErrorCode.UNTRUSTED_IDENTITY) throw new ProtocolError(ErrorCode.FORBIDDEN, 'the certificate is not a renewal of the registered device (other device keys or index)');
    if (e.code === CryptoErrorCode.STALE_CERTIFICATE) throw new ProtocolError(ErrorCode.STALE_CERTIFICATE, 'the certificate is not issued and expiring after the registered one');
    throw new ProtocolError(ErrorCode.BAD_REQUEST, `certificate rejected (${e.code}): ${e.message}`);
  }
  const offer = { mailbox, accountKey: renewal.accountKey, certificate: encoded, issuedAt: renewal.issuedAt };
  // A revocation committing between the list check and the write always wins (as for key uploads).
  for (let attempt = 0; attempt < 2; attempt++) {
    const deviceListEpoch = await requireListed(store, renewal);
    const outcome = await store.offerCertificateRenewal({ ...offer, deviceListEpoch });
    if (outcome === 'ok') return { mailbox };
    if (outcome === 'stale') throw new ProtocolError(ErrorCode.STALE_CERTIFICATE, 'the device already has a certificate or a renewal issued at the same time or later');
    if (outcome === 'unknown-device') throw new ProtocolError(ErrorCode.NOT_FOUND, 'no device with these keys is registered to this account on this node');
  }
  throw new ProtocolError(ErrorCode.CONFLICT, "the account's device list changed during the offer; retry");
}

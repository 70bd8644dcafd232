/**
 * This device: its identity (created once, then only loaded), the account key pair on the device
 * that created the account, its delivery token, its certificate (renewed before it expires,
 * docs/spec/02-keys.md §2.4), its prekeys on the node (published, rotated and topped up on a
 * schedule), and its deletion.
 */
import type { CryptoContext, DeviceCertificate, LocalIdentity } from '@meshwhisper/crypto';
import {
  AccountKeyPair,
  DeviceKeyPair,
  certificateNeedsRenewal,
  encodeDeviceCertificate,
  encodeKemPreKey,
  encodeOneTimePreKey,
  encodeSignedPreKey,
  encodeDeviceList,
  equalBytes,
  generateKemPreKeys,
  generateOneTimePreKeys,
  issueDeviceCertificate,
  rotatePreKeys,
  toHex,
} from '@meshwhisper/crypto';
import { KeyUploadSchema, PreKeyCountsSchema } from '@meshwhisper/protocol';
import type { ProtocolStorage } from '../storage/types.js';
import { DELIVERY_TOKEN_LENGTH, KEY_CHECK_MS, PREKEY_BATCH, PREKEY_LOW_WATER } from '../constants.js';
import { firstDeviceList } from './device-lists.js';
import { SdkError } from './errors.js';
import type { Log } from './log.js';
import type { NodeApi } from './node-api.js';
import { Table } from './tables.js';

/**
 * This device's identity as every client module sees it: one object, whose certificate is replaced
 * in place when it is renewed (so the socket login, request signatures, sealing and uploads all use
 * the current one without being rebuilt).
 */
export class DeviceIdentity implements LocalIdentity {
  #certificate: DeviceCertificate;
  readonly device: DeviceKeyPair;
  constructor(identity: LocalIdentity) {
    this.#certificate = identity.certificate;
    this.device = identity.device;
  }
  get certificate(): DeviceCertificate {
    return this.#certificate;
  }
  /** Called once storage.renewCertificate() has committed the renewal. */
  renewed(certificate: DeviceCertificate): void {
    this.#certificate = certificate;
  }
}

/**
 * Opens this device's identity, or creates account, device keys, certificate and the account's
 * first device list (epoch 1, this device as its manager: docs/spec/02-keys.md §2.5) on first use.
 * A device that was given its identity (a linked device) fetches its account's list at create().
 */
export async function openIdentity(ctx: CryptoContext, storage: ProtocolStorage): Promise<{ identity: LocalIdentity; account: AccountKeyPair | undefined }> {
  if (await storage.hasLocalIdentity()) {
    const identity = await storage.getLocalIdentity();
    let account: AccountKeyPair | undefined;
    const seed = await storage.getItem(Table.Self, 'account-seed');
    if (seed) {
      account = AccountKeyPair.fromSeed(ctx, seed);
      seed.fill(0);
      if (!equalBytes(account.publicKey, identity.certificate.accountKey)) account = undefined;
    }
    return { identity, account };
  }
  const account = AccountKeyPair.generate(ctx);
  const device = DeviceKeyPair.generate(ctx);
  const identity = { certificate: issueDeviceCertificate(ctx, account, device), device };
  const list = encodeDeviceList(firstDeviceList(ctx, account, identity.certificate));
  const seed = account.exportSeed();
  // The list first: an identity is only ever stored with the list that names it.
  await storage.setItem(Table.DeviceList, toHex(account.publicKey), list);
  await storage.setItem(Table.Self, 'account-seed', seed);
  await storage.setLocalIdentity(identity);
  seed.fill(0);
  return { identity, account };
}

/** This device's delivery token, created on first use. */
export async function loadDeliveryToken(ctx: CryptoContext, storage: ProtocolStorage): Promise<Uint8Array> {
  const stored = await storage.getItem(Table.Self, 'delivery-token');
  if (stored && stored.length === DELIVERY_TOKEN_LENGTH) return stored;
  const token = ctx.random(DELIVERY_TOKEN_LENGTH);
  await storage.setItem(Table.Self, 'delivery-token', token);
  return token;
}

/**
 * Until the queue is processed, a due renewal waits — except in the last day of the certificate
 * (MAX_CERTIFICATE_FUTURE_SKEW_MS: the node's clock may be that far ahead), when the socket login
 * itself needs the new one.
 */
const RENEW_BEFORE_LOGIN_MS = 24 * 3600 * 1000;

const u64 = (n: number): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
};

/**
 * The certificate and prekeys on the node: renewal of the certificate, publication, rotation and
 * top-up of prekeys, now and on a schedule.
 */
export class DeviceKeys {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  /** Whether the node's queue was drained since start-up: only then are superseded prekeys deleted. */
  #drained = false;
  #warnedNoManager = false;

  constructor(
    private readonly deps: {
      readonly ctx: CryptoContext;
      readonly storage: ProtocolStorage;
      readonly api: NodeApi;
      readonly identity: DeviceIdentity;
      /** The account key pair, on a manager device (the one that created the account): it renews the certificate. */
      readonly account: AccountKeyPair | undefined;
      readonly log: Log;
    },
  ) {}

  /**
   * The node's queue was delivered and processed (a `queueEmpty` after connecting): from now on a
   * rotation may delete superseded prekeys. Before it, first messages still waiting in the queue
   * may need them (a device back after weeks offline) — issue 10 §1.3, "process the queue before
   * rotating".
   */
  queueDrained(): void {
    if (this.#drained) return;
    this.#drained = true;
    this.schedule(0);
  }

  /**
   * Renews this device's certificate once less than CERTIFICATE_RENEW_BEFORE_MS (30 days) of it is
   * left, after the node's queue was processed (at once if less than a day is left or it expired
   * while the device was away): the account key (held on a manager device)
   * certifies the same keys, index, capabilities and extensions for another CERTIFICATE_VALIDITY_MS,
   * the storage commits it, and the next publish() uploads it. Purely local: works offline. A device
   * without the account key cannot renew itself (a manager renews it, docs/spec/02-keys.md §2.6):
   * it logs `keys.certificate-renewal-needs-manager`. Returns whether it renewed.
   */
  async renewCertificate(): Promise<boolean> {
    const { ctx, storage, identity, account, log } = this.deps;
    const current = identity.certificate;
    const now = ctx.now();
    if (!certificateNeedsRenewal(current, now)) return false;
    if (!account) {
      if (!this.#warnedNoManager) {
        this.#warnedNoManager = true;
        log.warn('keys.certificate-renewal-needs-manager', `this device's certificate expires at ${new Date(current.expiresAt).toISOString()} and this device does not hold the account key to renew it`);
      }
      return false;
    }
    // First messages waiting in the node's queue were built on bundles carrying the current
    // certificate, whose whole bytes are in their transcript (PQXDH TH): process them first —
    // unless the certificate can no longer log in (renewing is then the only way back to the node).
    if (!this.#drained && now < current.expiresAt - RENEW_BEFORE_LOGIN_MS) return false;
    const renewed = issueDeviceCertificate(ctx, account, identity.device, {
      issuedAt: Math.max(ctx.now(), current.issuedAt + 1),
      deviceIndex: current.deviceIndex,
      capabilities: current.capabilities,
      extensions: current.extensions,
    });
    await storage.renewCertificate(renewed);
    identity.renewed(renewed);
    return true;
  }

  /**
   * Renews the certificate when due, uploads it when the node does not have it yet, keeps a current
   * signed prekey and last-resort KEM prekey (rotated weekly; superseded ones deleted only after the
   * queue was drained), and tops up one-time X25519 and KEM prekeys when fewer than PREKEY_LOW_WATER remain.
   */
  async publish(): Promise<void> {
    const { ctx, storage, api, identity } = this.deps;
    await this.renewCertificate();
    const certificate = identity.certificate;
    const published = await storage.getItem(Table.Self, 'certificate-published');
    const uploadCertificate = !published || !equalBytes(published, u64(certificate.issuedAt));
    const rotation = await rotatePreKeys(ctx, storage, { deleteSuperseded: this.#drained });
    let counts: { oneTimePrekeys: number; kemPrekeys: number; hasSignedPrekey: boolean } | undefined;
    try {
      counts = await api.call('GET', '/v1/keys', { reply: PreKeyCountsSchema, auth: identity });
    } catch (e) {
      if (!(e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND')) throw e;
    }
    const first = !counts || !counts.hasSignedPrekey;
    const needOtk = !counts || counts.oneTimePrekeys < PREKEY_LOW_WATER;
    const needKem = !counts || counts.kemPrekeys < PREKEY_LOW_WATER;
    if (!first && !needOtk && !needKem && !uploadCertificate && !rotation.rotated.signedPreKey && !rotation.rotated.lastResortKemPreKey) return;
    const otks = needOtk ? await generateOneTimePreKeys(ctx, storage, PREKEY_BATCH) : [];
    const kems = needKem ? await generateKemPreKeys(ctx, storage, PREKEY_BATCH) : [];
    await api.call('PUT', '/v1/keys', {
      body: {
        schema: KeyUploadSchema,
        value: {
          // The request's signature carries the certificate too; sending it in the body says
          // "store this one" (the node keeps the newest of a device's certificates).
          ...(uploadCertificate ? { certificate: encodeDeviceCertificate(certificate) } : {}),
          signedPrekey: encodeSignedPreKey(rotation.signedPreKey),
          lastResortKemPrekey: encodeKemPreKey(rotation.lastResortKemPreKey),
          oneTimePrekeys: otks.map(encodeOneTimePreKey),
          kemPrekeys: kems.map(encodeKemPreKey),
        },
      },
      reply: PreKeyCountsSchema,
      auth: identity,
    });
    if (uploadCertificate) await storage.setItem(Table.Self, 'certificate-published', u64(certificate.issuedAt));
  }

  /** Runs publish() after `delay` ms (an earlier pending check wins), then every KEY_CHECK_MS. */
  schedule(delay: number): void {
    if (this.#stopped) return;
    if (this.#timer) {
      if (delay >= KEY_CHECK_MS) return;
      clearTimeout(this.#timer);
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.publish()
        .catch((e) => this.deps.log.warn('keys.check-failed', 'the prekey check did not reach the node; the next check retries', e))
        .finally(() => this.schedule(KEY_CHECK_MS));
    }, delay);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
  }
}

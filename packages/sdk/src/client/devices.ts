/**
 * This device: its identity (created once, then only loaded), the account key pair on the device
 * that created the account, its delivery token, its certificate (renewed before it expires,
 * docs/spec/02-keys.md §2.4), its prekeys on the node (published, rotated and topped up on a
 * schedule), and its deletion.
 */
import type { CryptoContext, DeviceCertificate, LocalIdentity } from '@meshwhisper/crypto';
import {
  AccountKeyPair,
  CryptoError,
  DeviceKeyPair,
  assertDeviceListed,
  certificateNeedsRenewal,
  decodeDeviceCertificate,
  encodeDeviceCertificate,
  encodeKemPreKey,
  encodeOneTimePreKey,
  encodeSignedPreKey,
  encodeDeviceList,
  equalBytes,
  generateKemPreKeys,
  generateOneTimePreKeys,
  issueDeviceCertificate,
  mailboxIdOf,
  rotatePreKeys,
  sameDevice,
  toHex,
  verifyCertificateRenewal,
  verifyDeviceCertificate,
} from '@meshwhisper/crypto';
import { AccountDevicesSchema, CertificateRenewalSchema, KeyUploadSchema, PreKeyCountsSchema } from '@meshwhisper/protocol';
import type { ProtocolStorage } from '../storage/types.js';
import { DELIVERY_TOKEN_LENGTH, KEY_CHECK_MS, PREKEY_BATCH, PREKEY_LOW_WATER } from '../constants.js';
import type { DeviceLists } from './device-lists.js';
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
  /** The last renewal the node served that this device refused (logged once, not every check). */
  #refusedRenewal = '';

  constructor(
    private readonly deps: {
      readonly ctx: CryptoContext;
      readonly storage: ProtocolStorage;
      readonly api: NodeApi;
      readonly identity: DeviceIdentity;
      /** The account key pair, on a manager device (the one that created the account): it renews the certificate. */
      readonly account: AccountKeyPair | undefined;
      /** The own account's device list (a manager renews the devices it names). */
      readonly lists: Pick<DeviceLists, 'accept'>;
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
   * while the device was away), and the next publish() uploads it. On a manager device (it holds the
   * account key) the account key certifies the same keys, index, capabilities and extensions for
   * another CERTIFICATE_VALIDITY_MS, offline. Any other device adopts the renewal a manager left for
   * it on the node (docs/spec/02-keys.md §2.6) after checking it is a renewal of its own certificate
   * (its keys and index, the account signature, issued and expiring later: `keys.certificate-renewal-refused`
   * otherwise); while none is waiting it logs `keys.certificate-renewal-needs-manager` once. The
   * storage commits the renewal before it is used. Returns whether it renewed.
   */
  async renewCertificate(): Promise<boolean> {
    const { ctx, storage, identity, account } = this.deps;
    const current = identity.certificate;
    const now = ctx.now();
    if (!certificateNeedsRenewal(current, now)) return false;
    // First messages waiting in the node's queue were built on bundles carrying the current
    // certificate, whose whole bytes are in their transcript (PQXDH TH): process them first —
    // unless the certificate can no longer log in (renewing is then the only way back to the node).
    const mayRenew = this.#drained || now >= current.expiresAt - RENEW_BEFORE_LOGIN_MS;
    let renewed: DeviceCertificate | undefined;
    if (account) {
      if (!mayRenew) return false;
      renewed = issueDeviceCertificate(ctx, account, identity.device, {
        issuedAt: Math.max(ctx.now(), current.issuedAt + 1),
        deviceIndex: current.deviceIndex,
        capabilities: current.capabilities,
        extensions: current.extensions,
      });
    } else {
      renewed = await this.#renewalFromManager(current);
      if (!renewed || !mayRenew) return false;
    }
    await storage.renewCertificate(renewed);
    identity.renewed(renewed);
    return true;
  }

  /**
   * The renewal a manager left on the node for this device (GET /v1/devices/{mailbox}/certificate-renewal,
   * no authentication: it works with an expired certificate), if it is one of this device's certificate.
   */
  async #renewalFromManager(current: DeviceCertificate): Promise<DeviceCertificate | undefined> {
    const { ctx, api, log } = this.deps;
    let served: Uint8Array;
    try {
      served = (await api.call('GET', `/v1/devices/${toHex(mailboxIdOf(ctx, current.deviceSigningKey))}/certificate-renewal`, { reply: CertificateRenewalSchema })).certificate;
    } catch (e) {
      if (!(e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND')) throw e;
      if (!this.#warnedNoManager) {
        this.#warnedNoManager = true;
        log.warn('keys.certificate-renewal-needs-manager', `this device's certificate expires at ${new Date(current.expiresAt).toISOString()}; it does not hold the account key and no manager device has renewed it yet (a manager does once it runs)`);
      }
      return undefined;
    }
    try {
      const renewal = decodeDeviceCertificate(served);
      verifyCertificateRenewal(ctx, current, renewal);
      return renewal;
    } catch (e) {
      if (!(e instanceof CryptoError)) throw e;
      const key = toHex(served);
      if (this.#refusedRenewal !== key) {
        this.#refusedRenewal = key;
        log.warn('keys.certificate-renewal-refused', `the node served a certificate renewal that is not one of this device's certificate (${e.code}); kept the current one`, e);
      }
      return undefined;
    }
  }

  /**
   * On a manager device: issues a renewed certificate for every other device of the account whose
   * registered certificate has less than 30 days left, and leaves it on the node for that device
   * (PUT /v1/certificate-renewal; docs/spec/02-keys.md §2.6). Only keys the account already
   * certified, of devices the verified list names, are certified again: a node serving another key
   * gets nothing signed. A renewal already waiting and good for more than 30 days is not re-issued.
   * Returns how many it issued.
   */
  async renewAccountDevices(): Promise<number> {
    const { ctx, api, identity, account, lists, log } = this.deps;
    if (!account) return 0;
    const accountKey = account.publicKey;
    const r = await api.call('GET', `/v1/accounts/${toHex(accountKey)}/devices?certificates=1`, { reply: AccountDevicesSchema });
    const list = await lists.accept(accountKey, r.deviceList);
    if (!list) return 0;
    const now = ctx.now();
    let issued = 0;
    for (const encoded of r.certificates) {
      let c: DeviceCertificate;
      try {
        c = decodeDeviceCertificate(encoded);
        if (sameDevice(c, identity.certificate) || !certificateNeedsRenewal(c, now)) continue;
        // Any age: an expired certificate still says which keys the account certified.
        verifyDeviceCertificate(ctx, c, { expectedAccountKey: accountKey, graceMs: Number.MAX_SAFE_INTEGER });
        assertDeviceListed(list, c);
      } catch (e) {
        if (!(e instanceof CryptoError)) throw e;
        log.warn('keys.device-renewal-skipped', `a certificate the node lists for this account was not renewed (${e.code})`, e);
        continue;
      }
      if (await this.#renewalWaiting(c)) continue;
      const renewal = issueDeviceCertificate(ctx, account, { signingPublicKey: c.deviceSigningKey, dhPublicKey: c.deviceDhKey }, {
        issuedAt: Math.max(now, c.issuedAt + 1),
        deviceIndex: c.deviceIndex,
        capabilities: c.capabilities,
        extensions: c.extensions,
      });
      try {
        await api.call('PUT', '/v1/certificate-renewal', { body: { schema: CertificateRenewalSchema, value: { certificate: encodeDeviceCertificate(renewal) } }, reply: CertificateRenewalSchema, auth: identity });
        issued++;
      } catch (e) {
        // Another manager's renewal (or the device's own upload) got there first.
        if (e instanceof SdkError && e.nodeCode === 'MW_STALE_CERTIFICATE') continue;
        throw e;
      }
    }
    return issued;
  }

  /** Whether a renewal of `c` is already waiting on the node and good for more than the renewal window. */
  async #renewalWaiting(c: DeviceCertificate): Promise<boolean> {
    const { ctx, api } = this.deps;
    try {
      const served = (await api.call('GET', `/v1/devices/${toHex(mailboxIdOf(ctx, c.deviceSigningKey))}/certificate-renewal`, { reply: CertificateRenewalSchema })).certificate;
      const waiting = decodeDeviceCertificate(served);
      verifyCertificateRenewal(ctx, c, waiting);
      return !certificateNeedsRenewal(waiting, ctx.now());
    } catch (e) {
      if (e instanceof CryptoError || (e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND')) return false;
      throw e;
    }
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

  /** publish(), then — on a manager, once the queue was processed — renewAccountDevices(). */
  async check(): Promise<void> {
    await this.publish();
    if (!this.deps.account || !this.#drained) return;
    try {
      await this.renewAccountDevices();
    } catch (e) {
      this.deps.log.warn('keys.device-renewal-failed', "the account's other devices could not be renewed now; the next check retries", e);
    }
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
      this.check()
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

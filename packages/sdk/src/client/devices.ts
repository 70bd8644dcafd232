/**
 * This device: its identity (created once, then only loaded), the account key pair on the device
 * that created the account, its delivery token, its prekeys on the node (published, rotated and
 * topped up on a schedule), and its deletion.
 */
import type { CryptoContext, LocalIdentity } from '@meshwhisper/crypto';
import {
  AccountKeyPair,
  DeviceKeyPair,
  encodeKemPreKey,
  encodeOneTimePreKey,
  encodeSignedPreKey,
  equalBytes,
  generateKemPreKeys,
  generateOneTimePreKeys,
  issueDeviceCertificate,
  rotatePreKeys,
} from '@meshwhisper/crypto';
import { KeyUploadSchema, PreKeyCountsSchema } from '@meshwhisper/protocol';
import type { ProtocolStorage } from '../storage/types.js';
import { DELIVERY_TOKEN_LENGTH, KEY_CHECK_MS, PREKEY_BATCH, PREKEY_LOW_WATER } from '../constants.js';
import { SdkError } from './errors.js';
import type { Log } from './log.js';
import type { NodeApi } from './node-api.js';
import { Table } from './tables.js';

/** Opens this device's identity, or creates account, device keys and certificate on first use. */
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
  await storage.setLocalIdentity(identity);
  const seed = account.exportSeed();
  await storage.setItem(Table.Self, 'account-seed', seed);
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

/** Prekeys on the node: publication, rotation and top-up, now and on a schedule. */
export class DeviceKeys {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(private readonly deps: { readonly ctx: CryptoContext; readonly storage: ProtocolStorage; readonly api: NodeApi; readonly identity: LocalIdentity; readonly log: Log }) {}

  /**
   * Uploads the device certificate, a current signed prekey and last-resort KEM prekey (rotated
   * weekly), and tops up one-time X25519 and KEM prekeys when fewer than PREKEY_LOW_WATER remain.
   */
  async publish(): Promise<void> {
    const { ctx, storage, api, identity } = this.deps;
    const rotation = await rotatePreKeys(ctx, storage);
    let counts: { oneTimePrekeys: number; kemPrekeys: number; hasSignedPrekey: boolean } | undefined;
    try {
      counts = await api.call('GET', '/v1/keys', { reply: PreKeyCountsSchema, auth: identity });
    } catch (e) {
      if (!(e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND')) throw e;
    }
    const first = !counts || !counts.hasSignedPrekey;
    const needOtk = !counts || counts.oneTimePrekeys < PREKEY_LOW_WATER;
    const needKem = !counts || counts.kemPrekeys < PREKEY_LOW_WATER;
    if (!first && !needOtk && !needKem && !rotation.rotated.signedPreKey && !rotation.rotated.lastResortKemPreKey) return;
    const otks = needOtk ? await generateOneTimePreKeys(ctx, storage, PREKEY_BATCH) : [];
    const kems = needKem ? await generateKemPreKeys(ctx, storage, PREKEY_BATCH) : [];
    await api.call('PUT', '/v1/keys', {
      body: {
        schema: KeyUploadSchema,
        value: {
          signedPrekey: encodeSignedPreKey(rotation.signedPreKey),
          lastResortKemPrekey: encodeKemPreKey(rotation.lastResortKemPreKey),
          oneTimePrekeys: otks.map(encodeOneTimePreKey),
          kemPrekeys: kems.map(encodeKemPreKey),
        },
      },
      reply: PreKeyCountsSchema,
      auth: identity,
    });
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

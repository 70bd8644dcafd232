/**
 * Device lists (docs/spec/02-keys.md §2.5–2.8): the newest verified account-signed device list this
 * device holds for each account — its own and its peers' — and how they are published, fetched,
 * verified and changed.
 *
 * Rules kept here:
 * - A list is stored only after it verified under the account key the caller expects, and against
 *   the list already held (higher epoch, or byte-identical; never a fork or a reused index). The
 *   stored value is the list's own encoding (versioned by its first byte, signed).
 * - A node serving an OLDER list than one already held (or than the epoch a peer's message states)
 *   is withholding a newer one: the held list stays, and `deviceListWithheld` tells the app.
 * - A device is a peer's device only if the newest held list names it, under the index its
 *   certificate carries (assertListed → MW_CRYPTO_DEVICE_NOT_LISTED).
 */
import type { AccountKeyPair, CryptoContext, DeviceCertificate, DeviceList, DeviceListEntry } from '@meshwhisper/crypto';
import {
  CryptoError,
  CryptoErrorCode,
  DeviceFlag,
  assertDeviceListed,
  decodeDeviceList,
  encodeDeviceList,
  equalBytes,
  issueDeviceList,
  toHex,
  verifyDeviceList,
} from '@meshwhisper/crypto';
import { DeviceListRecordSchema, PublishDeviceListSchema } from '@meshwhisper/protocol';
import type { AppStore, ProtocolStorage } from '../storage/types.js';
import { SdkError, SdkErrorCode } from './errors.js';
import type { Emit } from './events.js';
import type { NodeApi } from './node-api.js';
import { Table } from './tables.js';

/** The first list of a new account: epoch 1, its first device (index 0) as the manager. */
export function firstDeviceList(ctx: CryptoContext, account: AccountKeyPair, certificate: DeviceCertificate): DeviceList {
  return issueDeviceList(ctx, account, { epoch: 1, devices: [{ deviceIndex: certificate.deviceIndex, signingKey: certificate.deviceSigningKey, flags: DeviceFlag.Manager }] });
}

const u64 = (n: number): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
};

/** When the node was last asked for the account's list (0: never), read inside a transaction. */
export async function listCheckedAtIn(stx: AppStore, accountKey: Uint8Array): Promise<number> {
  const b = await stx.getItem(Table.DeviceListChecked, toHex(accountKey));
  return b && b.length === 8 ? Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0)) : 0;
}

/** The newest list held for an account, read inside a transaction (the receive pipeline). */
export async function heldListIn(stx: AppStore, accountKey: Uint8Array): Promise<DeviceList | undefined> {
  const bytes = await stx.getItem(Table.DeviceList, toHex(accountKey));
  return bytes ? decodeDeviceList(bytes) : undefined;
}

/**
 * How many times a manager's list change is built and published when other managers' changes keep
 * winning the race (each lost round fetches their list first): enough for a few managers changing
 * the list at once, bounded so a node that keeps refusing cannot keep a client looping.
 */
export const LIST_UPDATE_ATTEMPTS = 4;

export class DeviceLists {
  constructor(
    private readonly deps: {
      readonly ctx: CryptoContext;
      readonly storage: ProtocolStorage;
      readonly api: NodeApi;
      readonly emit: Emit;
      /** This device's certificate (its account is "own"). */
      readonly self: DeviceCertificate;
      /** The account key pair, on a manager device. */
      readonly account: AccountKeyPair | undefined;
    },
  ) {}

  /** The newest verified list this device holds for the account (its own by default). */
  held(accountKey: Uint8Array = this.deps.self.accountKey): Promise<DeviceList | undefined> {
    return heldListIn(this.deps.storage, accountKey);
  }

  /**
   * Verifies a list the node served for `accountKey` and keeps it if it is newer than the held one.
   * Returns the newest list now held. An older served list leaves the held one in place and emits
   * `deviceListWithheld`; a fork or a bad signature throws CryptoError (MW_CRYPTO_STALE_DEVICE_LIST,
   * MW_CRYPTO_BAD_SIGNATURE, MW_CRYPTO_UNTRUSTED_IDENTITY); an empty `served` returns the held list.
   */
  async accept(accountKey: Uint8Array, served: Uint8Array | undefined): Promise<DeviceList | undefined> {
    const { ctx, storage } = this.deps;
    const held = await this.held(accountKey);
    if (!served || served.length === 0) return held;
    const list = decodeDeviceList(served);
    if (held && list.epoch < held.epoch) {
      verifyDeviceList(ctx, list, { expectedAccountKey: accountKey }); // a genuine old list, or garbage?
      this.deps.emit('deviceListWithheld', { accountKey, knownEpoch: held.epoch, servedEpoch: list.epoch });
      return held;
    }
    verifyDeviceList(ctx, list, { expectedAccountKey: accountKey, ...(held ? { previous: held } : {}) });
    if (!held || list.epoch > held.epoch) await storage.setItem(Table.DeviceList, toHex(accountKey), encodeDeviceList(list));
    return held && list.epoch === held.epoch ? held : list;
  }

  /** Fetches the account's list from the node (GET /v1/accounts/{key}/device-list) and accepts it. */
  async fetch(accountKey: Uint8Array): Promise<DeviceList | undefined> {
    const { ctx, storage } = this.deps;
    let served: Uint8Array | undefined;
    try {
      served = (await this.deps.api.call('GET', `/v1/accounts/${toHex(accountKey)}/device-list`, { reply: DeviceListRecordSchema })).deviceList;
    } catch (e) {
      if (!(e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND')) throw e;
    }
    const list = await this.accept(accountKey, served);
    await storage.setItem(Table.DeviceListChecked, toHex(accountKey), u64(ctx.now()));
    return list;
  }

  /**
   * The list to check a device of `accountKey` against: the held one, refetched when there is none
   * or when `minEpoch` (an epoch a message stated) is above it. If the node still serves nothing as
   * new as `minEpoch`, it is withholding: `deviceListWithheld`, and the held list is used.
   */
  async current(accountKey: Uint8Array, minEpoch = 0): Promise<DeviceList | undefined> {
    const held = await this.held(accountKey);
    if (held && held.epoch >= minEpoch) return held;
    const fetched = await this.fetch(accountKey);
    if (fetched && fetched.epoch < minEpoch) this.deps.emit('deviceListWithheld', { accountKey, knownEpoch: minEpoch, servedEpoch: fetched.epoch });
    return fetched;
  }

  /**
   * Throws CryptoError(MW_CRYPTO_DEVICE_NOT_LISTED) unless the newest list of the certificate's
   * account (fetched if none is held) names its device under its index.
   */
  async assertListed(certificate: DeviceCertificate, operation: string): Promise<DeviceList> {
    const list = await this.current(certificate.accountKey);
    if (!list) throw new CryptoError(CryptoErrorCode.DEVICE_NOT_LISTED, operation, 'the account has no device list: none of its devices can be trusted');
    assertDeviceListed(list, certificate, operation);
    return list;
  }

  /** The own list's epoch (0 when none is held yet): stated in every message this device sends. */
  async ownEpoch(): Promise<number> {
    return (await this.held())?.epoch ?? 0;
  }

  /**
   * Publishes the held own list to the node (PUT /v1/device-list; a re-publish is a no-op there).
   * When the node holds a newer one (another manager changed the list), that one is fetched instead.
   * A device that holds no own list yet (a linked device; or a manager whose storage predates
   * device lists) fetches it first; with none on the node either, a manager with index 0 makes epoch 1.
   */
  async publishOwn(): Promise<void> {
    const { ctx, self, account, storage } = this.deps;
    let own = (await this.held()) ?? (await this.fetch(self.accountKey));
    if (!own && account && self.deviceIndex === 0) {
      own = firstDeviceList(ctx, account, self);
      await storage.setItem(Table.DeviceList, toHex(self.accountKey), encodeDeviceList(own));
    }
    if (!own) return;
    try {
      await this.#put(encodeDeviceList(own));
    } catch (e) {
      if (!(e instanceof SdkError && e.nodeCode === 'MW_STALE_DEVICE_LIST')) throw e;
      await this.fetch(own.accountKey);
    }
  }

  async #put(encoded: Uint8Array): Promise<void> {
    await this.deps.api.call('PUT', '/v1/device-list', { body: { schema: PublishDeviceListSchema, value: { deviceList: encoded } }, reply: DeviceListRecordSchema });
  }

  /**
   * A manager's change to the own account's list: `change` gets the current entries and returns the
   * new ones; the result is signed one epoch up, verified against the held list, published, and only
   * then stored (a refused publication changes nothing here). When another manager changed the list
   * meanwhile (the node answers MW_CONFLICT or MW_STALE_DEVICE_LIST), the node's newer list is
   * fetched and verified, `change` is applied to it again and the result published — at most
   * LIST_UPDATE_ATTEMPTS times in all.
   */
  async update(change: (devices: readonly DeviceListEntry[], current: DeviceList) => readonly DeviceListEntry[]): Promise<DeviceList> {
    const { ctx, account } = this.deps;
    if (!account) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'only a manager device (one that holds the account key) can change the device list');
    for (let attempt = 1; ; attempt++) {
      const current = await this.held();
      if (!current) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'this device holds no device list for its account');
      const devices = change(current.devices, current);
      const nextDeviceIndex = Math.max(current.nextDeviceIndex, ...devices.map((d) => d.deviceIndex + 1));
      let next: DeviceList;
      try {
        next = issueDeviceList(ctx, account, { epoch: current.epoch + 1, nextDeviceIndex, devices, successorCommitment: current.successorCommitment });
        verifyDeviceList(ctx, next, { previous: current });
      } catch (e) {
        if (e instanceof CryptoError) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `device list change refused: ${e.message}`, undefined, { cause: e });
        throw e;
      }
      try {
        await this.#put(encodeDeviceList(next));
      } catch (e) {
        const raced = e instanceof SdkError && (e.nodeCode === 'MW_CONFLICT' || e.nodeCode === 'MW_STALE_DEVICE_LIST');
        if (!raced || attempt >= LIST_UPDATE_ATTEMPTS) throw e;
        const fetched = await this.fetch(account.publicKey);
        // The node holds nothing newer than what this change was built on: not a race, do not loop.
        if (!fetched || fetched.epoch <= current.epoch) throw e;
        continue;
      }
      await this.deps.storage.setItem(Table.DeviceList, toHex(account.publicKey), encodeDeviceList(next));
      return next;
    }
  }

  /** Adds a device key to the own list under the next free index; returns the index (certify the device with it). */
  async add(signingKey: Uint8Array, options: { manager?: boolean } = {}): Promise<{ deviceIndex: number; list: DeviceList }> {
    if (!(signingKey instanceof Uint8Array) || signingKey.length !== 32) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'signingKey must be 32 bytes');
    let deviceIndex = -1;
    const list = await this.update((devices, current) => {
      if (devices.some((d) => equalBytes(d.signingKey, signingKey))) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'this device is already on the list');
      deviceIndex = current.nextDeviceIndex;
      return [...devices, { deviceIndex, signingKey, flags: options.manager ? DeviceFlag.Manager : 0 }];
    });
    return { deviceIndex, list };
  }

  /** Removes a device from the own list (the node deletes it at once; peers refuse it from then on). */
  async revoke(deviceIndex: number): Promise<DeviceList> {
    return this.update((devices) => {
      if (!devices.some((d) => d.deviceIndex === deviceIndex)) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `no device with index ${deviceIndex} on the list`);
      return devices.filter((d) => d.deviceIndex !== deviceIndex);
    });
  }
}

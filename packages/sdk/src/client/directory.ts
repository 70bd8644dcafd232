/**
 * Recipients and the directory: which devices a `Recipient` names, which session serves a mailbox
 * (claiming a bundle and running PQXDH on first contact), the delivery tokens peers gave us, and
 * trust on first use for usernames (identityChange).
 */
import type { CryptoContext, DeviceAddress } from '@meshwhisper/crypto';
import { CryptoError, CryptoErrorCode, decodePreKeyBundle, equalBytes, fromHex, hasSession, initiateSession, mailboxIdOf, sessionPeer, toHex } from '@meshwhisper/crypto';
import type { AppStore, ProtocolStorage } from '../storage/types.js';
import type { DeviceLists } from './device-lists.js';
import { SdkError, SdkErrorCode } from './errors.js';
import type { Emit } from './events.js';
import { Table } from './tables.js';
import type { Transport, UsernameLookup } from './transport.js';
import type { Recipient } from './types.js';

export function checkAccountKey(accountKey: Uint8Array): void {
  if (!(accountKey instanceof Uint8Array) || accountKey.length !== 32) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'accountKey must be 32 bytes');
}

/** The devices a recipient names, and the account every one of them must be certified by (if known). */
export interface ResolvedRecipient {
  readonly mailboxes: Uint8Array[];
  readonly accountKey?: Uint8Array;
}

export class Directory {
  /** Mailbox id (hex) → session address, see addressOf. */
  readonly #addresses = new Map<string, DeviceAddress>();
  /** Session addresses already hashed into #addresses. */
  readonly #scanned = new Set<string>();

  constructor(
    private readonly deps: {
      readonly ctx: CryptoContext;
      readonly storage: ProtocolStorage;
      readonly transport: Transport;
      readonly lists: DeviceLists;
      readonly emit: Emit;
      readonly nodeUrl: string;
      readonly namespace: string;
      readonly holdOnIdentityChange: boolean;
    },
  ) {}

  /**
   * Resolves a recipient to device mailbox ids (a username or account fans out to every device of
   * the account). For an account, the account's device list — served with the lookup, verified
   * here, or the newest held — decides: a mailbox it does not name is dropped and reported
   * (`unlistedDevice`), never encrypted to (docs/spec/02-keys.md §2.5).
   */
  async resolve(to: Recipient): Promise<ResolvedRecipient> {
    const r = await this.#resolveUnchecked(to);
    if (!r.accountKey) return { mailboxes: r.mailboxes };
    return { mailboxes: await this.#listedOnly(r.accountKey, r.mailboxes, r.deviceList), accountKey: r.accountKey };
  }

  async #listedOnly(accountKey: Uint8Array, mailboxes: readonly Uint8Array[], served: Uint8Array | undefined): Promise<Uint8Array[]> {
    const { ctx, lists, emit } = this.deps;
    const list = (await lists.accept(accountKey, served)) ?? (await lists.current(accountKey));
    if (!list) throw new CryptoError(CryptoErrorCode.DEVICE_NOT_LISTED, 'resolve', 'the account has published no device list: none of its devices can be trusted');
    const listed = new Set(list.devices.map((d) => toHex(mailboxIdOf(ctx, d.signingKey))));
    const kept = mailboxes.filter((m) => {
      if (listed.has(toHex(m))) return true;
      emit('unlistedDevice', { accountKey, mailboxId: m });
      return false;
    });
    if (kept.length === 0 && mailboxes.length > 0) {
      throw new CryptoError(CryptoErrorCode.DEVICE_NOT_LISTED, 'resolve', `none of the devices the node named is on the account's device list (epoch ${list.epoch})`);
    }
    return kept;
  }

  async #resolveUnchecked(to: Recipient): Promise<ResolvedRecipient & { deviceList?: Uint8Array }> {
    const { transport, storage } = this.deps;
    if (to instanceof Uint8Array) return { mailboxes: [to] };
    if (to && 'accountKey' in to) {
      const accountKey = to.accountKey;
      checkAccountKey(accountKey);
      if (to.node !== undefined && new URL(to.node).origin !== new URL(this.deps.nodeUrl).origin) {
        throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `this contact lives on another node (${new URL(to.node).origin}); federation between nodes is not supported yet`);
      }
      const given = to.mailboxIds ?? [];
      if (given.some((m) => !(m instanceof Uint8Array) || m.length !== 32)) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'mailboxIds must be 32 bytes each');
      if (given.length > 0) return { mailboxes: [...given], accountKey };
      const devices = await transport.accountDevices(accountKey);
      return { mailboxes: devices.mailboxIds, accountKey, deviceList: devices.deviceList };
    }
    if (to && typeof to.username === 'string') {
      const record = await this.lookupUsername(to.username);
      const known = await storage.getItem(Table.ContactAccount, to.username);
      if (!known) await storage.setItem(Table.ContactAccount, to.username, record.accountKey);
      else if (!equalBytes(known, record.accountKey)) {
        this.deps.emit('identityChange', { username: to.username, previousAccountKey: known, accountKey: record.accountKey });
        if (!this.deps.holdOnIdentityChange) {
          await storage.setItem(Table.ContactAccount, to.username, record.accountKey);
          return { mailboxes: record.mailboxIds, accountKey: record.accountKey, deviceList: record.deviceList };
        }
        throw new SdkError(SdkErrorCode.IDENTITY_CHANGED, `${to.username} now belongs to another account key: verify safety numbers, then acceptIdentityChange()`);
      }
      if (record.mailboxIds.length === 0) throw new SdkError(SdkErrorCode.NODE_ERROR, `${to.username} has no registered device`, 'MW_NOT_FOUND');
      return { mailboxes: record.mailboxIds, accountKey: record.accountKey, deviceList: record.deviceList };
    }
    throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'recipient must be a mailbox id or { username }');
  }

  lookupUsername(username: string): Promise<UsernameLookup> {
    return this.deps.transport.lookupUsername(this.deps.namespace, username);
  }

  /** Trusts the account key the directory now names for `username`. */
  async acceptIdentityChange(username: string): Promise<void> {
    const record = await this.lookupUsername(username);
    await this.deps.storage.setItem(Table.ContactAccount, username, record.accountKey);
  }

  /**
   * The address of the peer device with this mailbox id, if we have a session with it. The mailbox
   * id is a hash of the address's device key, so the mapping never changes: it is remembered, and
   * only an unknown mailbox id costs a pass over the session addresses (every send and delivery asks).
   */
  async addressOf(mailboxId: Uint8Array): Promise<DeviceAddress | undefined> {
    const hex = toHex(mailboxId);
    const known = this.#addresses.get(hex);
    if (known) return known;
    // Only the addresses not seen before are hashed: a fan-out to N new devices (a group's creation)
    // misses N times, and hashing every session address on each miss made that O(N²).
    for (const address of await this.deps.storage.listSessionAddresses()) {
      if (this.#scanned.has(address)) continue;
      this.#scanned.add(address);
      const signing = fromHex(address.split(':')[1] ?? '');
      if (signing.length !== 32) continue;
      const m = toHex(mailboxIdOf(this.deps.ctx, signing));
      if (!this.#addresses.has(m)) this.#addresses.set(m, address); // the first match wins
    }
    return this.#addresses.get(hex);
  }

  /**
   * Finds the session address for a peer mailbox, claiming its bundle and running PQXDH on first
   * contact. Either way the peer device must be on the newest device list held (or fetched) for its
   * account, under its certificate's index (MW_CRYPTO_DEVICE_NOT_LISTED): nothing is ever encrypted
   * to a device its account did not list, or has since revoked.
   */
  async sessionFor(mailboxId: Uint8Array, expectedAccountKey?: Uint8Array): Promise<DeviceAddress> {
    const { ctx, storage, transport, lists } = this.deps;
    const known = await this.addressOf(mailboxId);
    if (known && (await hasSession(ctx, storage, known))) {
      const peer = await sessionPeer(storage, known);
      if (expectedAccountKey && peer && !equalBytes(peer.accountKey, expectedAccountKey)) {
        throw new SdkError(SdkErrorCode.IDENTITY_CHANGED, 'this device belongs to another account than the contact');
      }
      if (peer) await lists.assertListed(peer, 'sessionFor');
      return known;
    }
    const bundle = decodePreKeyBundle(await transport.claimBundle(mailboxId));
    if (!equalBytes(mailboxIdOf(ctx, bundle.certificate.deviceSigningKey), mailboxId)) {
      throw new SdkError(SdkErrorCode.PROTOCOL, 'the node returned a bundle for another device');
    }
    if (expectedAccountKey && !equalBytes(bundle.certificate.accountKey, expectedAccountKey)) {
      throw new CryptoError(CryptoErrorCode.UNTRUSTED_IDENTITY, 'sessionFor', 'the bundle is certified by another account than the contact');
    }
    // Before any session exists: a device its account did not list gets nothing.
    await lists.assertListed(bundle.certificate, 'sessionFor');
    // With an expected account (sending by username), a device certified by any other account is
    // refused (MW_CRYPTO_UNTRUSTED_IDENTITY): a node cannot slip its own device into the fan-out.
    return initiateSession(ctx, storage, bundle, expectedAccountKey ? { expectedAccountKey } : {});
  }

  /** The delivery token the device at `address` gave us, if any. */
  async peerToken(address: DeviceAddress): Promise<Uint8Array | undefined> {
    return this.deps.storage.getItem(Table.PeerToken, address);
  }

  /** Stores a peer device's delivery token (inside the ratchet step that carried it). */
  async setPeerToken(stx: AppStore, address: DeviceAddress, token: Uint8Array): Promise<void> {
    if (token.length >= 16 && token.length <= 64) await stx.setItem(Table.PeerToken, address, token);
  }

  async forgetPeerToken(address: DeviceAddress): Promise<void> {
    await this.deps.storage.deleteItem(Table.PeerToken, address);
  }

  /** Forgets the delivery tokens of every device of an account (blocked, declined). */
  static async forgetAccountTokens(stx: AppStore, accountKey: Uint8Array): Promise<void> {
    for (const { key } of await stx.listItems(Table.PeerToken, { prefix: `${toHex(accountKey)}:` })) await stx.deleteItem(Table.PeerToken, key);
  }
}

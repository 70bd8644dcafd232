/**
 * Device linking (docs/spec/linking.md, docs/api.md §Devices): the new device shows a link offer
 * (a QR code) for a one-time provisioning channel on the node; an existing manager device of the
 * account scans it, and over the end-to-end channel the QR anchors it certifies the new device,
 * publishes the account's next device list, and hands over contacts, blocks, timers, trusted
 * usernames, app settings and — if the user chose — recent history.
 *
 * The node relays opaque frames only (crypto link.ts). The scanner issues nothing before the new
 * device's request opened under the channel key and its proof of possession verified; the new
 * device stores nothing before the certificate and list verified against the account the
 * introduction named. Its identity is written last, after everything else committed: a crash in
 * between leaves a storage without identity, on which a new link simply starts again (the history
 * import skips what it already holds).
 */
import type { AccountKeyPair, CryptoContext, DeviceList, LinkChannel } from '@meshwhisper/crypto';
import {
  AccountKeyPair as AccountKeys,
  CryptoError,
  DeviceFlag,
  DeviceKeyPair,
  acceptLinkHello,
  answerLinkOffer,
  assertDeviceListed,
  createLinkOffer as createCryptoLinkOffer,
  decodeDeviceCertificate,
  decodeDeviceList,
  decodeLinkOffer,
  encodeDeviceCertificate,
  encodeDeviceList,
  encodeLinkOffer,
  equalBytes,
  findListedDevice,
  fromHex,
  issueDeviceCertificate,
  mailboxIdOf,
  signLinkRequest,
  toHex,
  verifyDeviceCertificate,
  verifyDeviceList,
  verifyLinkRequest,
} from '@meshwhisper/crypto';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { LinkGrant, LinkHistoryEntry, LinkMessage } from '@meshwhisper/protocol';
import {
  LINK_TOKEN_HEADER,
  LinkChannelClaimSchema,
  LinkChannelClaimedSchema,
  LinkChannelCreatedSchema,
  LinkChannelMessagesSchema,
  LinkChannelPostSchema,
  LinkContactState,
  LinkHistoryEntrySchema,
  LinkMessageSchema,
  StoredTimerSchema,
  create,
  fromBinary,
  toBase64Url,
  toBinary,
} from '@meshwhisper/protocol';
import type { ProtocolStorage, StorageTx } from '../storage/types.js';
import { LINK_HISTORY_FRAME_BYTES, LINK_MAX_HISTORY_FRAMES, LINK_POLL_MS, MAX_DEVICE_NAME_LENGTH } from '../constants.js';
import { Contacts, encodeContact } from './contacts.js';
import { conversationFromKey, conversationKey, directConversation } from './conversation.js';
import { SdkError, SdkErrorCode } from './errors.js';
import { exportHistory, importHistoryRecord } from './history.js';
import { fromLinkEntry, toLinkEntry } from './link-history.js';
import type { Log } from './log.js';
import type { NodeApi } from './node-api.js';
import type { QrSvgOptions } from './qr.js';
import { qrSvg } from './qr.js';
import { Table } from './tables.js';
import { encodeTimer } from './timers.js';

// ── The account's own device list (docs/spec/02-keys.md §2.5) ──────────────────────────────

/**
 * What linking needs from the account's own device list (device-lists.ts owns it): the newest list
 * held, a manager's addition of a device (signed one epoch up, published to the node, then kept),
 * its removal (an aborted link), and keeping a list received in a grant (inside the new device's
 * install transaction).
 */
export interface OwnDeviceList {
  held(): Promise<DeviceList | undefined>;
  add(signingKey: Uint8Array, options: { manager: boolean }): Promise<{ deviceIndex: number; list: DeviceList }>;
  remove(deviceIndex: number): Promise<void>;
}

/** Where the new device keeps the list it was granted: mw.device-list under its account key, where device-lists.ts reads it. */
export async function keepGrantedList(store: Pick<StorageTx, 'setItem'>, list: DeviceList): Promise<void> {
  await store.setItem(Table.DeviceList, toHex(list.accountKey), encodeDeviceList(list));
}

// ── Public shapes (docs/api.md §Devices) ────────────────────────────────────────────────────

export interface CreateLinkOfferOptions {
  /** A name for this device, shown on the account's other devices (at most 64 characters). */
  readonly deviceName?: string;
  /** Called once an existing device scanned the offer and introduced the account (before anything is stored). */
  readonly onIntroduced?: (info: { readonly accountKey: Uint8Array; readonly deviceName: string }) => void;
}

/** What the new device gets once the link completed. */
export interface LinkedDevice<Client> {
  /** The client of the new device, opened on the linked identity and connected. */
  readonly client: Client;
  readonly accountKey: Uint8Array;
  readonly deviceIndex: number;
  /** Whether this device was made a manager (holds the account key). */
  readonly manager: boolean;
  /** The app's own settings, as the scanning app passed them (acceptLinkOffer's `appSettings`). */
  readonly appSettings: Uint8Array;
  /** History records copied (0 when the user chose no history). */
  readonly historyEntries: number;
}

export interface LinkOfferHandle<Client> {
  /** The bytes to show as a QR code (about 1,250: use qrSvg()). */
  readonly payload: Uint8Array;
  /** When the offer stops being scannable (ms since the epoch). */
  readonly expiresAt: number;
  /** The payload as a QR code (SVG document). */
  qrSvg(options?: QrSvgOptions): string;
  /**
   * Resolves when the link completed; rejects with SdkError MW_SDK_LINK_EXPIRED (nobody scanned in
   * time, or the channel expired), MW_SDK_LINK_FAILED (a frame failed authentication — a relay that
   * tampered — the other device gave up, or what it sent did not verify) or MW_SDK_CLOSED (cancel()).
   */
  readonly completed: Promise<LinkedDevice<Client>>;
  /** Abandons the link; `completed` rejects with MW_SDK_CLOSED. */
  cancel(): Promise<void>;
}

export interface AcceptLinkOptions {
  /**
   * Copy recent history to the new device: false (default), true (the newest 200 messages of each
   * conversation) or `{ perConversation: n }`. Bounded by the channel (about 7 MB in all).
   */
  readonly history?: boolean | { readonly perConversation: number };
  /** Make the new device a manager: it receives the account key and can link and revoke devices (default false). */
  readonly manager?: boolean;
  /** This device's name as the new device shows it. */
  readonly deviceName?: string;
  /** Opaque app settings handed to the new device (LinkedDevice.appSettings), at most 64 KiB. */
  readonly appSettings?: Uint8Array;
}

export interface LinkAccepted {
  readonly deviceIndex: number;
  /** The new device's mailbox id. */
  readonly mailboxId: Uint8Array;
  readonly deviceName: string;
  /** The account's device-list epoch after the link. */
  readonly epoch: number;
  readonly historyEntries: number;
}

// ── The provisioning channel, one side ──────────────────────────────────────────────────────

function linkFailed(message: string, cause?: unknown): SdkError {
  return new SdkError(SdkErrorCode.LINK_FAILED, message, undefined, cause === undefined ? undefined : { cause });
}

/** Maps node and crypto failures of a link to the link error codes. */
function linkError(e: unknown): unknown {
  if (e instanceof SdkError && e.code === SdkErrorCode.NODE_ERROR) {
    if (e.nodeCode === 'MW_NOT_FOUND') return new SdkError(SdkErrorCode.LINK_EXPIRED, 'the link offer expired or was closed: show a new QR code', undefined, { cause: e });
    if (e.nodeCode === 'MW_CONFLICT') return linkFailed('this link offer was already used: show a new QR code', e);
  }
  if (e instanceof CryptoError) return linkFailed(`the link did not authenticate (${e.code}): someone between the devices may have tampered with it; nothing was issued or stored`, e);
  return e;
}

class Relay {
  #after = 0;
  readonly #buffer: Uint8Array[] = [];
  #peerClosed = false;
  #cancelled = false;
  readonly #path: string;
  readonly #headers: Record<string, string>;

  constructor(
    private readonly api: NodeApi,
    channelId: Uint8Array,
    token: Uint8Array,
  ) {
    this.#path = `/v1/link/${toBase64Url(channelId)}`;
    this.#headers = { [LINK_TOKEN_HEADER]: toBase64Url(token) };
  }

  cancel(): void {
    this.#cancelled = true;
  }

  get cancelled(): boolean {
    return this.#cancelled;
  }

  async post(data: Uint8Array): Promise<void> {
    await this.api.callEmpty('POST', `${this.#path}/messages`, { body: { schema: LinkChannelPostSchema, value: { data } }, headers: this.#headers });
  }

  /** The other side's next message, long-polling until `deadline` (ms since the epoch). */
  async next(now: () => number, deadline: number): Promise<Uint8Array> {
    for (;;) {
      const m = this.#buffer.shift();
      if (m) return m;
      if (this.#cancelled) throw new SdkError(SdkErrorCode.CLOSED, 'the link was cancelled');
      if (this.#peerClosed) throw linkFailed('the other device closed the link before it finished');
      const left = deadline - now();
      if (left <= 0) throw new SdkError(SdkErrorCode.LINK_EXPIRED, 'the link timed out: show a new QR code');
      const r = await this.api.call('GET', `${this.#path}/messages?after=${this.#after}&wait=${Math.min(left, LINK_POLL_MS, pollWithin(this.api.requestTimeoutMs))}`, { reply: LinkChannelMessagesSchema, headers: this.#headers });
      this.#buffer.push(...r.messages);
      this.#after = r.last;
      this.#peerClosed = r.closed;
    }
  }

  /** Closes this side (best effort: the node forgets the channel at expiry anyway). */
  async close(log: Log): Promise<void> {
    await this.api.callEmpty('DELETE', this.#path, { headers: this.#headers }).catch((e: unknown) => log.warn('link.close-failed', 'the link channel could not be closed; the node forgets it at expiry', e));
  }
}

/** The longest wait to ask of a long poll: two thirds of the request timeout (20 s with the default 30 s), leaving the rest for the answer. */
function pollWithin(requestTimeoutMs: number): number {
  return Math.floor((requestTimeoutMs * 2) / 3);
}

function decodeMessage(bytes: Uint8Array): LinkMessage {
  try {
    return fromBinary(LinkMessageSchema, bytes);
  } catch (e) {
    throw linkFailed('the other device sent something that is not a link message', e);
  }
}

type LinkBodyCase = NonNullable<LinkMessage['body']['case']>;
type LinkBody<K extends LinkBodyCase> = Extract<LinkMessage['body'], { case: K }> extends { value: infer V } ? V : never;
type LinkBodyInit = MessageInitShape<typeof LinkMessageSchema>['body'];

async function receive<K extends LinkBodyCase>(io: { ctx: CryptoContext; relay: Relay; channel: LinkChannel; deadline: number }, kind: K): Promise<LinkBody<K>> {
  const m = decodeMessage(io.channel.open(io.ctx, await io.relay.next(io.ctx.now, io.deadline)));
  if (m.body.case === 'abort') throw linkFailed('the other device abandoned the link');
  if (m.body.case !== kind) throw linkFailed(`the other device sent ${m.body.case ?? 'nothing'} where ${kind} was expected`);
  return m.body.value as unknown as LinkBody<K>;
}

async function send(io: { ctx: CryptoContext; relay: Relay; channel: LinkChannel }, body: LinkBodyInit): Promise<void> {
  await io.relay.post(io.channel.seal(io.ctx, toBinary(LinkMessageSchema, create(LinkMessageSchema, { body }))));
}

/** Tells the other side (best effort) that this side gave up. */
async function abort(io: { ctx: CryptoContext; relay: Relay; channel: LinkChannel | undefined }, log: Log): Promise<void> {
  if (!io.channel) return;
  const channel = io.channel;
  await send({ ...io, channel }, { case: 'abort', value: { reason: 'abandoned' } }).catch((e: unknown) => log.warn('link.abort-failed', 'the other device could not be told that the link was abandoned', e));
}

function checkName(name: string | undefined, what: string): string {
  if (name === undefined) return '';
  if (typeof name !== 'string' || name.length > MAX_DEVICE_NAME_LENGTH) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `${what} must be a string of at most ${MAX_DEVICE_NAME_LENGTH} characters`);
  return name;
}

// ── The new device ──────────────────────────────────────────────────────────────────────────

export interface NewDeviceDeps {
  readonly ctx: CryptoContext;
  readonly api: NodeApi;
  readonly storage: ProtocolStorage;
  readonly nodeUrl: string;
  readonly log: Log;
}

/** Opens a channel and starts waiting for a scan; `open` makes the client once the identity is stored. */
export async function startLinkOffer<Client>(deps: NewDeviceDeps, options: CreateLinkOfferOptions, open: () => Promise<Client>): Promise<LinkOfferHandle<Client>> {
  const { ctx, api, storage, log } = deps;
  const deviceName = checkName(options.deviceName, 'deviceName');
  if (await storage.hasLocalIdentity()) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'createLinkOffer: this storage already holds a device identity (link a fresh storage)');
  const created = await api.call('POST', '/v1/link', { reply: LinkChannelCreatedSchema }).catch((e: unknown) => {
    throw linkError(e);
  });
  const secret = createCryptoLinkOffer(ctx, { channelId: created.channelId, nodeUrl: deps.nodeUrl });
  const payload = encodeLinkOffer(secret.offer);
  const relay = new Relay(api, created.channelId, created.ownerToken);
  const offerDeadline = Number(created.expiresAt);
  let channel: LinkChannel | undefined;

  const run = async (): Promise<LinkedDevice<Client>> => {
    const hello = await relay.next(ctx.now, offerDeadline);
    channel = acceptLinkHello(ctx, secret, hello);
    secret.destroy();
    // Claimed: the node keeps the channel up to LINK_CHANNEL_TTL_MS (15 min) from creation.
    const io = { ctx, relay, channel, deadline: offerDeadline + 10 * 60_000 };
    const intro = await receive(io, 'introduction');
    if (intro.accountKey.length !== 32) throw linkFailed('the introduction names no account');
    options.onIntroduced?.({ accountKey: intro.accountKey, deviceName: intro.deviceName.slice(0, MAX_DEVICE_NAME_LENGTH) });
    const device = DeviceKeyPair.generate(ctx);
    await send(io, {
      case: 'request',
      value: { deviceSigningKey: device.signingPublicKey, deviceDhKey: device.dhPublicKey, deviceName, proof: signLinkRequest(ctx, device, channel.transcriptHash) },
    });
    const grant = await receive(io, 'grant');
    const verified = verifyGrant(ctx, grant, intro.accountKey, device);
    const records: Uint8Array[] = [];
    for (let i = 0; i < grant.historyFrames; i++) {
      for (const entry of (await receive(io, 'history')).entries) {
        try {
          records.push(fromLinkEntry(entry));
        } catch (e) {
          throw linkFailed('a history entry the other device sent cannot be read', e);
        }
      }
    }
    await receive(io, 'complete');
    let imported = 0;
    await storage.transaction(async (tx) => {
      imported = await installGrant(tx, grant, verified.list, records);
    });
    await storage.setLocalIdentity({ certificate: verified.certificate, device });
    await send(io, { case: 'installed', value: {} });
    await relay.close(log);
    const client = await open();
    return { client, accountKey: intro.accountKey, deviceIndex: verified.certificate.deviceIndex, manager: verified.manager, appSettings: grant.appSettings, historyEntries: imported };
  };

  const completed = run().catch(async (e: unknown) => {
    await abort({ ctx, relay, channel }, log);
    await relay.close(log);
    if (relay.cancelled) throw new SdkError(SdkErrorCode.CLOSED, 'the link offer was cancelled', undefined, { cause: e });
    throw linkError(e);
  });
  const done = completed.finally(() => {
    secret.destroy();
    channel?.destroy();
  });
  done.catch(() => undefined); // an app that only ever calls cancel() must not see an unhandled rejection
  return {
    payload,
    expiresAt: offerDeadline,
    qrSvg: (o?: QrSvgOptions) => qrSvg(payload, o),
    completed: done,
    async cancel() {
      relay.cancel();
      await relay.close(log); // wakes the long poll of an unclaimed channel (the node forgets it)
      await completed.catch(() => undefined);
    },
  };
}

function verifyGrant(ctx: CryptoContext, grant: LinkGrant, accountKey: Uint8Array, device: DeviceKeyPair) {
  let certificate, list;
  try {
    certificate = decodeDeviceCertificate(grant.certificate);
    verifyDeviceCertificate(ctx, certificate, { expectedAccountKey: accountKey });
    list = decodeDeviceList(grant.deviceList);
    verifyDeviceList(ctx, list, { expectedAccountKey: accountKey });
    assertDeviceListed(list, certificate, 'link');
  } catch (e) {
    throw linkFailed('the certificate or device list the other device sent does not verify', e);
  }
  if (!equalBytes(certificate.deviceSigningKey, device.signingPublicKey) || !equalBytes(certificate.deviceDhKey, device.dhPublicKey)) {
    throw linkFailed('the certificate certifies other keys than this device’s');
  }
  const manager = ((findListedDevice(list, certificate.deviceSigningKey)?.flags ?? 0) & DeviceFlag.Manager) !== 0;
  if (grant.accountSeed.length > 0) {
    const k = grant.accountSeed.length === 32 ? AccountKeys.fromSeed(ctx, grant.accountSeed) : undefined;
    const ok = k !== undefined && equalBytes(k.publicKey, accountKey) && manager;
    k?.destroy();
    if (!ok) throw linkFailed('the account key sent does not match the account, or the device is not listed as a manager');
  }
  return { certificate, list, manager };
}

/** Stores what a grant carries, in the caller's transaction. Returns how many history records were new. */
async function installGrant(tx: StorageTx, grant: LinkGrant, list: DeviceList, records: readonly Uint8Array[]): Promise<number> {
  for (const c of grant.contacts) {
    if (c.accountKey.length !== 32) continue;
    const state = c.state === LinkContactState.ACCEPTED ? 'accepted' : c.state === LinkContactState.REQUEST ? 'request' : undefined;
    if (state) await tx.setItem(Table.Contact, toHex(c.accountKey), encodeContact(state));
  }
  for (const b of grant.blocked) if (b.length === 32) await tx.setItem(Table.Blocked, toHex(b), new Uint8Array(0));
  for (const t of grant.timers) if (t.peer.length === 32) await tx.setItem(Table.Timer, conversationKey(directConversation(t.peer)), encodeTimer({ seconds: t.seconds, version: t.version }));
  for (const u of grant.usernames) if (u.accountKey.length === 32 && u.username.length > 0 && u.username.length <= 64) await tx.setItem(Table.ContactAccount, u.username, u.accountKey);
  if (grant.accountSeed.length === 32) await tx.setItem(Table.Self, 'account-seed', grant.accountSeed);
  await keepGrantedList(tx, list);
  let n = 0;
  for (const r of records) {
    try {
      if (await importHistoryRecord(tx, r)) n++;
    } catch (e) {
      throw linkFailed('a history record the other device sent cannot be read', e);
    }
  }
  return n;
}

// ── The scanning (existing) device ──────────────────────────────────────────────────────────

export interface ScannerDeps {
  readonly ctx: CryptoContext;
  readonly api: NodeApi;
  readonly storage: ProtocolStorage;
  readonly account: AccountKeyPair | undefined;
  readonly nodeUrl: string;
  readonly log: Log;
  readonly maxDevices: number;
  readonly ownList: OwnDeviceList;
}

export async function acceptLinkOffer(deps: ScannerDeps, payload: Uint8Array, options: AcceptLinkOptions = {}): Promise<LinkAccepted> {
  const { ctx, api, storage, account, log } = deps;
  if (!(payload instanceof Uint8Array)) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'acceptLinkOffer: payload must be the scanned bytes');
  let offer;
  try {
    offer = decodeLinkOffer(payload);
  } catch (e) {
    throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'acceptLinkOffer: this is not a MeshWhisper link offer (or it was made by a newer app)', undefined, { cause: e });
  }
  let sameNode: boolean;
  try {
    sameNode = new URL(offer.nodeUrl).origin === new URL(deps.nodeUrl).origin;
  } catch {
    sameNode = false;
  }
  if (!sameNode) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'acceptLinkOffer: the new device uses another node than this account');
  if (!account) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'acceptLinkOffer: this device does not hold the account key (link from a manager device)');
  const myName = checkName(options.deviceName, 'deviceName');
  const appSettings = options.appSettings ?? new Uint8Array(0);
  if (!(appSettings instanceof Uint8Array) || appSettings.length > 64 * 1024) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'appSettings must be at most 64 KiB of bytes');
  const h = options.history;
  const perConversation = h === true ? 200 : h && typeof h === 'object' ? h.perConversation : 0;
  if (!Number.isSafeInteger(perConversation) || perConversation < 0) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'history.perConversation must be a non-negative integer');
  const current = await deps.ownList.held();
  if (!current) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'acceptLinkOffer: this device holds no device list of its account');
  if (current.devices.length >= deps.maxDevices) {
    throw new SdkError(SdkErrorCode.DEVICE_LIMIT, `this account already has ${current.devices.length} devices (the limit is ${deps.maxDevices}): revoke one first`);
  }

  const { hello, channel } = answerLinkOffer(ctx, offer);
  let relay: Relay | undefined;
  /** The index this link put on the list, until the new device confirmed it installed everything. */
  let added: number | undefined;
  try {
    const claimed = await api.call('POST', `/v1/link/${toBase64Url(offer.channelId)}/claim`, { body: { schema: LinkChannelClaimSchema, value: { hello } }, reply: LinkChannelClaimedSchema });
    relay = new Relay(api, offer.channelId, claimed.scannerToken);
    const io = { ctx, relay, channel, deadline: Number(claimed.expiresAt) };
    await send(io, { case: 'introduction', value: { accountKey: account.publicKey, deviceName: myName } });
    const req = await receive(io, 'request');
    if (req.deviceSigningKey.length !== 32 || req.deviceDhKey.length !== 32) throw linkFailed('the new device sent malformed keys');
    if (!verifyLinkRequest(ctx, req.deviceSigningKey, channel.transcriptHash, req.proof)) throw linkFailed('the new device did not prove it holds its signing key');
    if (findListedDevice(current, req.deviceSigningKey)) throw linkFailed('that device is already on the account');
    const deviceName = req.deviceName.slice(0, MAX_DEVICE_NAME_LENGTH);
    // Only now, with the request authenticated: the certificate and the next list.
    // The next list (epoch + 1, published to the node before anything is handed over) and the
    // certificate under the index it gives the new device.
    // Kept until the link is over: a crash between this list and 'installed' leaves a device on the
    // list that may never have been set up; the next start checks it (finishPendingLink).
    await storage.setItem(Table.Self, LINK_PENDING_KEY, req.deviceSigningKey);
    const { deviceIndex, list } = await deps.ownList.add(req.deviceSigningKey, { manager: options.manager === true });
    added = deviceIndex;
    const certificate = issueDeviceCertificate(ctx, account, { signingPublicKey: req.deviceSigningKey, dhPublicKey: req.deviceDhKey }, { deviceIndex });
    const state = await gatherState(storage, perConversation);
    const seed = options.manager ? account.exportSeed() : new Uint8Array(0);
    try {
      await send(io, {
        case: 'grant',
        value: {
          certificate: encodeDeviceCertificate(certificate),
          deviceList: encodeDeviceList(list),
          accountSeed: seed,
          contacts: state.contacts,
          blocked: state.blocked,
          timers: state.timers,
          usernames: state.usernames,
          appSettings,
          historyFrames: state.historyFrames.length,
        },
      });
    } finally {
      seed.fill(0);
    }
    for (const entries of state.historyFrames) await send(io, { case: 'history', value: { entries } });
    await send(io, { case: 'complete', value: { historyEntries: state.historyEntries } });
    await receive(io, 'installed');
    added = undefined;
    await storage.deleteItem(Table.Self, LINK_PENDING_KEY);
    return { deviceIndex, mailboxId: mailboxIdOf(ctx, req.deviceSigningKey), deviceName, epoch: list.epoch, historyEntries: state.historyEntries };
  } catch (e) {
    if (relay) await abort({ ctx, relay, channel }, log);
    // A device that never finished installing does not stay on the account.
    let undone = true;
    if (added !== undefined) {
      await deps.ownList.remove(added).catch((r: unknown) => {
        undone = false; // the marker stays: the next start tries again
        log.warn('link.unlist-failed', 'a device whose link failed could not be taken off the device list: revoke it', r);
      });
    }
    if (undone) await storage.deleteItem(Table.Self, LINK_PENDING_KEY).catch((r: unknown) => log.warn('link.pending-clear-failed', 'the record of a finished link could not be cleared; the next start checks it', r));
    throw linkError(e);
  } finally {
    await relay?.close(log);
    channel.destroy();
  }
}

/** Table.Self key: the signing key of a device this device is linking (set before the list names it). */
export const LINK_PENDING_KEY = 'link-pending';

/**
 * At start-up, after a crash in the middle of linking a device (between publishing the list that
 * names it and its 'installed'): if the new device registered with the node, it finished linking on
 * its side and stays; otherwise it never got set up, and the next list drops it again — so the
 * account's list names only devices that exist, even across a crash. Returns what it did.
 */
export async function finishPendingLink(deps: {
  readonly ctx: CryptoContext;
  readonly storage: ProtocolStorage;
  readonly ownList: OwnDeviceList;
  readonly registered: (mailboxId: Uint8Array) => Promise<boolean>;
}): Promise<'none' | 'kept' | 'removed'> {
  const { ctx, storage, ownList } = deps;
  const key = await storage.getItem(Table.Self, LINK_PENDING_KEY);
  if (!key) return 'none';
  const held = await ownList.held();
  const entry = held && key.length === 32 ? findListedDevice(held, key) : undefined;
  let outcome: 'none' | 'kept' | 'removed' = 'none';
  if (entry) {
    if (await deps.registered(mailboxIdOf(ctx, key))) outcome = 'kept';
    else {
      await ownList.remove(entry.deviceIndex);
      outcome = 'removed';
    }
  }
  await storage.deleteItem(Table.Self, LINK_PENDING_KEY);
  return outcome;
}

async function gatherState(storage: ProtocolStorage, perConversation: number) {
  const contacts = (await new Contacts(storage).list()).map((c) => ({ accountKey: c.accountKey, state: c.state === 'accepted' ? LinkContactState.ACCEPTED : LinkContactState.REQUEST }));
  const blocked = (await storage.listItems(Table.Blocked)).map((i) => fromHex(i.key));
  const timers = [];
  for (const { key, value } of await storage.listItems(Table.Timer)) {
    const c = conversationFromKey(key);
    if (c?.kind !== 'direct') continue;
    const t = fromBinary(StoredTimerSchema, value);
    timers.push({ peer: c.peer, seconds: t.seconds, version: t.timerVersion });
  }
  const usernames = (await storage.listItems(Table.ContactAccount)).map((i) => ({ username: i.key, accountKey: i.value }));
  const historyFrames: LinkHistoryEntry[][] = [];
  let historyEntries = 0;
  if (perConversation > 0) {
    let frame: LinkHistoryEntry[] = [];
    let size = 0;
    for (const stored of await exportHistory(storage, perConversation)) {
      const entry = toLinkEntry(stored);
      const length = toBinary(LinkHistoryEntrySchema, entry).length + 16;
      if (length > LINK_HISTORY_FRAME_BYTES) continue; // one oversized entry (an inline binary) is left behind
      if (size + length > LINK_HISTORY_FRAME_BYTES) {
        historyFrames.push(frame);
        frame = [];
        size = 0;
        if (historyFrames.length >= LINK_MAX_HISTORY_FRAMES) break;
      }
      frame.push(entry);
      size += length;
      historyEntries++;
    }
    if (frame.length > 0 && historyFrames.length < LINK_MAX_HISTORY_FRAMES) historyFrames.push(frame);
    historyEntries = historyFrames.reduce((n, f) => n + f.length, 0);
  }
  return { contacts, blocked, timers, usernames, historyFrames, historyEntries };
}

/**
 * Groups in the SDK (docs/spec/groups.md §G6, docs/api.md §Groups): the signed control operations
 * of group-state.ts and the sender keys of sender-key.ts, carried to every device of every member.
 *
 * - Control operations (create, add, kick, leave, rename, promote, transfer, admin-less, set
 *   devices) and sender-key distributions travel only inside the pairwise PQXDH/Double Ratchet
 *   sessions (content.proto GroupUpdate, SenderKey). A device that joins gets the whole log.
 * - A group message is encrypted once under this device's sender key (signed), then sealed once per
 *   member device as a MessageType.Group envelope — one padded size for all, as a direct message.
 * - A receiver accepts a group message only from a device the group's state lists for the sealed
 *   sender's account, whose header names that very device, signed by the key that device itself
 *   distributed (§G2.4): forgeries and non-members are refused with a stable code.
 * - Whenever applying operations removes a device (kick, leave, dropped device: `requiresRekey`),
 *   this device rotates its sender key at once; the new key goes only to the remaining devices,
 *   lazily, before the next message. Keys also rotate by count and time (needsSenderKeyRotation).
 * - Invitations: nothing changes in the group until the invitee accepts; then the inviting device
 *   (it must still be a manager) adds the devices of the accepting account (§G6.3).
 */
import type { AccountKeyPair, CryptoContext, DeviceCertificate, GroupEvent, GroupLog, GroupMemberEntry, GroupOpBody, GroupState, OwnSenderKey } from '@meshwhisper/crypto';
import {
  CryptoError,
  CryptoErrorCode,
  GroupPolicy,
  MessageType,
  createGroup,
  decodeGroupOperation,
  decodeSenderKeyDistribution,
  decryptGroupMessage,
  diffGroupStates,
  encodeSenderKeyDistribution,
  encryptGroupMessage,
  equalBytes,
  fromHex,
  generateSenderKey,
  hasSession,
  mailboxIdOf,
  needsSenderKeyRotation,
  openGroup,
  processSenderKeyDistribution,
  proposeGroupOperation,
  readGroupMessageHeader,
  receiveGroupOperation,
  rotateSenderKey,
  sealEnvelope,
  sealEphemeral,
  sessionPeer,
  toHex,
} from '@meshwhisper/crypto';
import type { Content, GroupInvite, GroupInviteAnswer, GroupUpdate, SenderKey } from '@meshwhisper/protocol';
import { ContentSchema, GroupUpdateSchema, SenderKeySchema, create, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { AppStore, ProtocolStorage } from '../../storage/types.js';
import { asStorageTx } from '../../storage/types.js';
import { CONTENT_VERSION } from '../../constants.js';
import type { ConversationId } from '../conversation.js';
import type { DeviceIdentity } from '../devices.js';
import type { DeviceLists } from '../device-lists.js';
import type { Directory } from '../directory.js';
import { SdkError, SdkErrorCode } from '../errors.js';
import type { Emit } from '../events.js';
import { addToHistory, applyToHistory } from '../history.js';
import type { Log } from '../log.js';
import type { StateChange } from '../message-states.js';
import { advanceState, trackQueued } from '../message-states.js';
import type { Outbox } from '../outbox.js';
import { enqueue, outboxKey } from '../outbox.js';
import type { ContentBody, Sender } from '../sender.js';
import type { Timers } from '../timers.js';
import type { Transport } from '../transport.js';
import type { Recipient } from '../types.js';
import type { MemberReceipt } from './store.js';
import * as db from './store.js';
import { decodeGroupLink, encodeGroupLink } from './link.js';

/** A member of a group as the app sees it. */
export interface GroupMember {
  readonly accountKey: Uint8Array;
  /** Device signing keys of the member's devices in the group (from its verified device list). */
  readonly devices: readonly Uint8Array[];
  readonly admin: boolean;
}

/** A group's current state on this device (docs/api.md §Groups). */
export interface GroupInfo {
  readonly groupId: Uint8Array;
  readonly conversation: ConversationId;
  readonly name: string;
  /** 'admins': admins add, kick, rename, promote; 'admin-less': every member adds and renames, nobody kicks. */
  readonly policy: 'admins' | 'admin-less';
  readonly members: readonly GroupMember[];
  /** Whether this device is (still) a member device. */
  readonly isMember: boolean;
  /** Whether this account is an admin. */
  readonly isAdmin: boolean;
  /** Number of control operations held (equal on devices that hold the same operations). */
  readonly version: number;
  /** Hex SHA-256 of the canonical state (docs/spec/groups.md §G4.6): equal on every converged device. */
  readonly digest: string;
}

/** A membership or settings change, as a typed event (`groupChange`). */
export type GroupChange =
  | { readonly type: 'joined'; readonly name: string }
  | { readonly type: 'memberAdded'; readonly accountKey: Uint8Array }
  | { readonly type: 'memberRemoved'; readonly accountKey: Uint8Array }
  | { readonly type: 'devicesChanged'; readonly accountKey: Uint8Array }
  | { readonly type: 'renamed'; readonly name: string }
  | { readonly type: 'adminGranted'; readonly accountKey: Uint8Array }
  | { readonly type: 'adminRevoked'; readonly accountKey: Uint8Array }
  | { readonly type: 'policyChanged'; readonly policy: 'admins' | 'admin-less' };

/** An invitation received (`groupInvite` event, groups.invitations()). */
export interface GroupInvitation {
  readonly groupId: Uint8Array;
  /** Hex of the invitation's 16-byte id. */
  readonly inviteId: string;
  /** The inviting account. */
  readonly inviter: Uint8Array;
  readonly name: string;
}

/** Per-member state of a group message this account sent (groups.receipts). */
export interface GroupReceipt {
  readonly accountKey: Uint8Array;
  readonly state: 'sent' | MemberReceipt;
}

export type GroupEventPending =
  | readonly ['groupChange', { readonly groupId: Uint8Array; readonly change: GroupChange }]
  | readonly ['groupInvite', GroupInvitation]
  | readonly ['groupInviteAnswer', { readonly groupId: Uint8Array; readonly accountKey: Uint8Array; readonly accept: boolean }];

/** Group operations in one GroupUpdate at most (so that a whole log fits in sealed messages). */
const OPS_PER_UPDATE_BYTES = 192 * 1024;

/** Unanswered invitations kept at most (a new one beyond is dropped and logged). */
const MAX_PENDING_INVITES = 100;

/** Bodies a group message may carry. */
const GROUP_BODIES = new Set(['text', 'binary', 'file', 'reaction', 'edit', 'delete', 'expireTimer']);

function policyName(p: GroupPolicy): 'admins' | 'admin-less' {
  return p === GroupPolicy.AdminLess ? 'admin-less' : 'admins';
}

function toChange(e: GroupEvent): GroupChange {
  switch (e.type) {
    case 'renamed':
      return { type: 'renamed', name: e.name };
    case 'policyChanged':
      return { type: 'policyChanged', policy: policyName(e.policy) };
    default:
      return { type: e.type, accountKey: e.account };
  }
}

const byBytes = (a: Uint8Array, b: Uint8Array): number => {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
};

function checkGroupId(groupId: Uint8Array, op: string): void {
  if (!(groupId instanceof Uint8Array) || groupId.length !== 32) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `${op}: a group id is 32 bytes`);
}

interface Target {
  readonly account: Uint8Array;
  readonly device: Uint8Array;
  readonly mailbox: Uint8Array;
}

export class Groups {
  readonly #locks = new Map<string, Promise<unknown>>();
  /** The group logs, decoded once and kept across messages (store.ts GroupLogs). */
  readonly #logs: db.GroupLogs;

  constructor(
    private readonly deps: {
      readonly ctx: CryptoContext;
      readonly storage: ProtocolStorage;
      readonly identity: DeviceIdentity;
      readonly nodeUrl: string;
      readonly directory: Directory;
      readonly lists: DeviceLists;
      readonly sender: Sender;
      readonly outbox: Outbox;
      readonly transport: Transport;
      readonly timers: Timers;
      readonly emit: Emit;
      readonly log: Log;
      readonly deliveryToken: () => Uint8Array;
      readonly isClosed: () => boolean;
    },
  ) {
    this.#logs = new db.GroupLogs(deps.ctx);
  }

  get #account(): Uint8Array {
    return this.deps.identity.certificate.accountKey;
  }
  get #device(): Uint8Array {
    return this.deps.identity.certificate.deviceSigningKey;
  }

  #checkOpen(): void {
    if (this.deps.isClosed()) throw new SdkError(SdkErrorCode.CLOSED, 'client is closed');
  }

  /** Runs `f` after every earlier call for the same group (sends and changes of one group never interleave on this device). */
  #serial<T>(groupId: Uint8Array, f: () => Promise<T>): Promise<T> {
    const k = toHex(groupId);
    const prev = this.#locks.get(k) ?? Promise.resolve();
    const run = prev.then(f, f);
    const tail = run.catch(() => undefined);
    this.#locks.set(k, tail);
    void tail.then(() => {
      if (this.#locks.get(k) === tail) this.#locks.delete(k);
    });
    return run;
  }

  /** Whether this device is a member device in `state` (O(1) once the state is indexed). */
  #isMember(state: GroupState): boolean {
    return db.listsDevice(state, this.#account, this.#device);
  }

  #info(state: GroupState): GroupInfo {
    const me = state.members.find((m) => equalBytes(m.account, this.#account));
    return {
      groupId: state.groupId,
      conversation: { kind: 'group', groupId: state.groupId },
      name: state.name,
      policy: policyName(state.policy),
      members: state.members.map((m) => ({ accountKey: m.account, devices: m.devices, admin: m.admin })),
      isMember: me !== undefined && me.devices.some((d) => equalBytes(d, this.#device)),
      isAdmin: me?.admin === true,
      version: state.version,
      digest: toHex(state.digest),
    };
  }

  // ── Reading ────────────────────────────────────────────────────────────────────────────────

  /** The group's state on this device, or undefined if this device never was in it. */
  async info(groupId: Uint8Array): Promise<GroupInfo | undefined> {
    this.#checkOpen();
    checkGroupId(groupId, 'groups.info');
    const log = await this.#logs.load(this.deps.storage, groupId);
    return log ? this.#info(log.state) : undefined;
  }

  /** Whether this device is a member device of the group (false for a group it does not hold). O(1) per call once the group's log is decoded. */
  async isMember(groupId: Uint8Array): Promise<boolean> {
    this.#checkOpen();
    checkGroupId(groupId, 'groups.isMember');
    const log = await this.#logs.load(this.deps.storage, groupId);
    return log !== undefined && this.#isMember(log.state);
  }

  /** @internal For the history replay: whether this device is a member device, and the member accounts, as `store` holds them. */
  async membership(store: AppStore, groupId: Uint8Array): Promise<{ isMember: boolean; accounts: Uint8Array[] } | undefined> {
    const log = await this.#logs.load(store, groupId);
    if (!log) return undefined;
    return { isMember: this.#isMember(log.state), accounts: log.state.members.map((m) => m.account) };
  }

  /** Every group this device holds (including ones it was removed from or left: isMember false). */
  async list(): Promise<GroupInfo[]> {
    this.#checkOpen();
    const out: GroupInfo[] = [];
    for (const id of await db.allGroupIds(this.deps.storage)) {
      const log = await this.#logs.load(this.deps.storage, id);
      if (log) out.push(this.#info(log.state));
    }
    return out;
  }

  /** Invitations received and not yet answered. */
  async invitations(): Promise<GroupInvitation[]> {
    this.#checkOpen();
    return (await db.listInvitesIn(this.deps.storage)).map((i) => ({ groupId: i.groupId, inviteId: toHex(i.inviteId), inviter: i.inviter, name: i.name }));
  }

  /**
   * Who has received and read a group message this account sent: one entry per other member
   * ('sent' until a device of that member sends a receipt).
   */
  async receipts(groupId: Uint8Array, messageId: string): Promise<GroupReceipt[]> {
    this.#checkOpen();
    checkGroupId(groupId, 'groups.receipts');
    const log = await this.#logs.load(this.deps.storage, groupId);
    if (!log) return [];
    const held = await db.receiptsOf(this.deps.storage, messageId);
    return log.state.members.filter((m) => !equalBytes(m.account, this.#account)).map((m) => ({ accountKey: m.account, state: held.get(toHex(m.account)) ?? 'sent' }));
  }

  // ── Changing the group (signed control operations) ─────────────────────────────────────────

  /** The devices of `accountKey` to put in a group: those its verified device list names and the node has registered. */
  async #devicesOf(accountKey: Uint8Array): Promise<Uint8Array[]> {
    const { ctx, directory, lists } = this.deps;
    const { mailboxes } = await directory.resolve({ accountKey });
    const list = await lists.current(accountKey);
    const registered = new Set(mailboxes.map(toHex));
    const devices = (list?.devices ?? []).map((d) => d.signingKey).filter((k) => registered.has(toHex(mailboxIdOf(ctx, k))));
    if (equalBytes(accountKey, this.#account) && !devices.some((d) => equalBytes(d, this.#device))) devices.push(this.#device);
    if (devices.length === 0) throw new SdkError(SdkErrorCode.NODE_ERROR, 'the account has no registered device on its device list', 'MW_NOT_FOUND');
    return devices.sort(byBytes);
  }

  async #accountOf(member: Recipient): Promise<Uint8Array> {
    if (member instanceof Uint8Array && member.length === 32) return member;
    if (member && typeof member === 'object' && !(member instanceof Uint8Array)) {
      if ('accountKey' in member) return member.accountKey;
      const r = await this.deps.directory.resolve(member);
      if (r.accountKey) return r.accountKey;
    }
    throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'a member is an account key (32 bytes), { accountKey } or { username }');
  }

  /**
   * Creates a group with this account (every listed device) as its first member — its admin unless
   * `policy: 'admin-less'` — and `members` added at once (their listed devices). The create
   * operation goes to every device of every member; resolves with the group.
   */
  async create(name: string, members: readonly Recipient[], options: { policy?: 'admins' | 'admin-less' } = {}): Promise<GroupInfo> {
    this.#checkOpen();
    if (typeof name !== 'string' || name.length === 0) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'groups.create: a name is required');
    const { ctx, storage, identity } = this.deps;
    const accounts: Uint8Array[] = [];
    const seen = new Set([toHex(this.#account)]);
    for (const m of members) {
      const account = await this.#accountOf(m);
      if (seen.has(toHex(account))) continue;
      seen.add(toHex(account));
      accounts.push(account);
    }
    // Each member's devices need its device list and the node's registrations (two requests for an
    // account not seen before): a few at once, not one round trip after another for a large group.
    const entries: GroupMemberEntry[] = await mapLimited(accounts, SESSION_SETUP_CONCURRENCY, async (account) => ({ account, devices: await this.#devicesOf(account) }));
    entries.sort((a, b) => byBytes(a.account, b.account));
    let created: { log: GroupLog; operation: Uint8Array };
    try {
      created = createGroup(ctx, {
        signer: identity.device,
        account: this.#account,
        name,
        policy: options.policy === 'admin-less' ? GroupPolicy.AdminLess : GroupPolicy.Admins,
        members: entries,
        authorDevices: await this.#devicesOf(this.#account),
      });
    } catch (e) {
      if (e instanceof TypeError || e instanceof RangeError || e instanceof CryptoError) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `groups.create: ${e.message}`, undefined, { cause: e });
      throw e;
    }
    const log = created.log;
    await storage.transaction((tx) => this.#logs.save(asStorageTx(tx), log)); // the log and its stamp together
    this.deps.emit('groupChange', { groupId: log.state.groupId, change: { type: 'joined', name } });
    await this.#fanOutUpdate(undefined, log, [created.operation]);
    return this.#info(log.state);
  }

  /** Adds an account (every device on its verified list) at once; managers only (admins, or anyone in an admin-less group). */
  async add(groupId: Uint8Array, member: Recipient): Promise<GroupInfo> {
    this.#checkOpen();
    const account = await this.#accountOf(member);
    const devices = await this.#devicesOf(account);
    return this.#change(groupId, { type: 'add', member: { account, devices } });
  }

  /** Removes a member (admins of an "admins" group only); everyone remaining rotates their sender key. */
  kick(groupId: Uint8Array, accountKey: Uint8Array): Promise<GroupInfo> {
    return this.#change(groupId, { type: 'kick', account: accountKey });
  }

  /** Leaves the group (every device of this account); the others rotate their sender keys. */
  leave(groupId: Uint8Array): Promise<GroupInfo> {
    return this.#change(groupId, { type: 'leave' });
  }

  async rename(groupId: Uint8Array, name: string): Promise<GroupInfo> {
    this.#checkOpen();
    if (typeof name !== 'string' || name.length === 0) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'groups.rename: a name is required');
    return this.#change(groupId, { type: 'rename', name });
  }

  /** Makes a member an admin too (admins only). */
  promote(groupId: Uint8Array, accountKey: Uint8Array): Promise<GroupInfo> {
    return this.#change(groupId, { type: 'promote', account: accountKey });
  }

  /** Makes `accountKey` admin and this account not (admins only). */
  transferAdmin(groupId: Uint8Array, accountKey: Uint8Array): Promise<GroupInfo> {
    return this.#change(groupId, { type: 'transferAdmin', account: accountKey });
  }

  /** Switches the group to admin-less (one way; admins only): every member may add and rename, nobody can kick. */
  makeAdminLess(groupId: Uint8Array): Promise<GroupInfo> {
    return this.#change(groupId, { type: 'makeAdminLess' });
  }

  /** Replaces this account's devices in the group by the ones its device list names now (after linking or revoking a device). */
  async syncDevices(groupId: Uint8Array): Promise<GroupInfo> {
    this.#checkOpen();
    const devices = await this.#devicesOf(this.#account);
    return this.#change(groupId, { type: 'setDevices', devices });
  }

  /**
   * When the devices this account has on its held device list AND registered with the node differ
   * from the devices the group lists for it (a device was linked or revoked since), proposes
   * set-devices so the group follows: a new device gets the log and, from the next message on, the
   * keys; a revoked one is removed (everyone rekeys). A listed device that has not registered yet
   * (a link whose new device has not started its client) is left out — it could get neither the
   * log nor keys — and is added at the next send once it has. Best effort: a failure is logged and
   * the send goes on with the group as it is. Returns whether it changed the group.
   */
  async #followOwnDevices(groupId: Uint8Array): Promise<boolean> {
    const { storage, lists, log } = this.deps;
    try {
      const held = await this.#logs.load(storage, groupId);
      const me = held?.state.members.find((m) => equalBytes(m.account, this.#account));
      if (!held || !me || !me.devices.some((d) => equalBytes(d, this.#device))) return false;
      const list = await lists.current(this.#account);
      if (!list) return false;
      if (!list.devices.some((d) => equalBytes(d.signingKey, this.#device))) return false; // this device itself is revoked
      // Listed and registered only (#devicesOf): set-devices never names a device that cannot be reached.
      const devices = await this.#devicesOf(this.#account);
      const inGroup = new Set(me.devices.map(toHex));
      if (devices.length === inGroup.size && devices.every((d) => inGroup.has(toHex(d)))) return false;
      await this.#change(groupId, { type: 'setDevices', devices });
      return true;
    } catch (e) {
      log.warn('groups.devices-sync-failed', "the group could not be brought in line with this account's device list now", e);
      return false;
    }
  }

  /**
   * Brings every group this device is in in line with the account's device list and the devices
   * the node has registered (set-devices where they differ; §G6.2). The client calls it after a
   * link, once the node lists the new device, so the new device is a member of the account's
   * groups without waiting for the account's next message in each. Each group on its own: a
   * failure is logged and the others go on. Returns the ids of the groups changed.
   */
  async followOwnDevices(): Promise<Uint8Array[]> {
    this.#checkOpen();
    const changed: Uint8Array[] = [];
    for (const groupId of await db.allGroupIds(this.deps.storage)) {
      if (await this.#followOwnDevices(groupId)) changed.push(groupId);
    }
    return changed;
  }

  /**
   * After a restore from the archive (docs/spec/groups.md §G6.5): for every archived group that
   * lists this account as a member but not this device, proposes a rejoin — this account's devices
   * (as its device list names them) signed with the account key — and sends it to every member
   * device. Members that hold newer operations answer with their log. Each group on its own: a
   * failure is logged and the others go on. Returns the groups rejoined.
   */
  async rejoinAfterRestore(account: AccountKeyPair): Promise<Uint8Array[]> {
    this.#checkOpen();
    const { storage, log } = this.deps;
    const done: Uint8Array[] = [];
    for (const groupId of await db.allGroupIds(storage)) {
      try {
        const held = await this.#logs.load(storage, groupId);
        if (!held) continue;
        const me = held.state.members.find((m) => equalBytes(m.account, this.#account));
        if (!me || me.devices.some((d) => equalBytes(d, this.#device))) continue; // not ours, or already rejoined
        const devices = await this.#devicesOf(this.#account);
        await this.#change(groupId, { type: 'rejoin', devices }, account);
        done.push(groupId);
      } catch (e) {
        log.warn('groups.rejoin-failed', 'an archived group could not be rejoined', e);
      }
    }
    return done;
  }

  /**
   * After a received GroupUpdate committed: for each rejoin in it that took effect here, by another
   * device, whose author did not know every operation this device holds, sends that device the
   * whole log (it rejoined from an archived, possibly older log). Best effort.
   */
  async answerRejoin(update: GroupUpdate): Promise<void> {
    const { ctx, storage } = this.deps;
    const rejoins = update.operations.flatMap((o) => {
      try {
        const d = decodeGroupOperation(ctx, o);
        return d.body.type === 'rejoin' && !equalBytes(d.authorDevice, this.#device) ? [d] : [];
      } catch {
        return [];
      }
    });
    if (rejoins.length === 0) return;
    const held = await this.#logs.load(storage, update.groupId);
    if (!held || !this.#isMember(held.state)) return;
    const full = held.operations();
    for (const r of rejoins) {
      if (!held.operationTookEffect(r.id)) continue;
      if (held.state.heads.length === 1 && equalBytes(held.state.heads[0]!, r.id)) continue; // it knew everything
      for (const operations of chunks(full)) {
        await this.#sealAndPost([{ account: r.authorAccount, device: r.authorDevice, body: { case: 'groupUpdate', value: { groupId: held.state.groupId, operations } } as ContentBody }], 'a group log for a rejoined device');
      }
    }
  }

  async #change(groupId: Uint8Array, body: GroupOpBody, accountSigner?: AccountKeyPair): Promise<GroupInfo> {
    this.#checkOpen();
    checkGroupId(groupId, `groups.${body.type}`);
    const { ctx, storage, identity } = this.deps;
    return this.#serial(groupId, async () => {
      const done = await storage.transaction(async (tx) => {
        const stx = asStorageTx(tx);
        const log = await this.#logs.load(stx, groupId);
        if (!log) throw new SdkError(SdkErrorCode.UNKNOWN_CONVERSATION, 'this device holds no such group');
        let r: ReturnType<typeof proposeGroupOperation>;
        try {
          r = proposeGroupOperation(ctx, log, { signer: identity.device, account: this.#account, body, ...(accountSigner ? { accountSigner } : {}) });
        } catch (e) {
          if (e instanceof CryptoError && e.code === CryptoErrorCode.GROUP_NOT_AUTHORIZED) throw new SdkError(SdkErrorCode.GROUP_NOT_ALLOWED, `${body.type}: ${e.message}`, undefined, { cause: e });
          if (e instanceof CryptoError || e instanceof TypeError || e instanceof RangeError) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `${body.type}: ${e.message}`, undefined, { cause: e });
          throw e;
        }
        await this.#logs.save(stx, r.log);
        if (r.requiresRekey) await this.#rekey(stx, log.state, r.log.state);
        return { before: log, after: r.log, operation: r.operation, events: r.events };
      });
      for (const e of done.events) this.deps.emit('groupChange', { groupId, change: toChange(e) });
      await this.#fanOutUpdate(done.before, done.after, [done.operation]);
      return this.#info(done.after.state);
    });
  }

  /**
   * A device left the group: this device's key rotates (if it has one) and the removed devices' keys
   * are forgotten. If this device itself is out, it wipes every key of the group it held (it can no
   * longer read or send; nothing kept can help anyone who later takes the device).
   */
  async #rekey(stx: AppStore, before: GroupState, after: GroupState): Promise<void> {
    const { ctx } = this.deps;
    if (!this.#isMember(after)) {
      await stx.deleteItem(db.GroupTable.OwnKey, toHex(after.groupId));
      for (const m of before.members) for (const d of m.devices) await db.deleteRecord(stx, after.groupId, d);
      return;
    }
    const own = await db.loadOwnKey(ctx, stx, after.groupId);
    if (own) await db.saveOwnKey(stx, rotateSenderKey(ctx, own));
    for (const d of db.removedDevices(before, after)) await db.deleteRecord(stx, after.groupId, d);
  }

  /**
   * Sends `operations` (the new ones) to every device that was or is a member device (removed ones
   * learn of their removal), and the whole log to devices that were not member devices before.
   */
  async #fanOutUpdate(before: GroupLog | undefined, after: GroupLog, operations: Uint8Array[]): Promise<void> {
    const had = new Map<string, Uint8Array>();
    for (const m of before?.state.members ?? []) for (const d of m.devices) had.set(toHex(d), m.account);
    const targets = new Map<string, { account: Uint8Array; device: Uint8Array; full: boolean }>();
    for (const m of after.state.members) for (const d of m.devices) targets.set(toHex(d), { account: m.account, device: d, full: !had.has(toHex(d)) });
    for (const [k, account] of had) if (!targets.has(k)) targets.set(k, { account, device: fromHex(k), full: false });
    targets.delete(toHex(this.#device));
    const full = after.operations();
    const list = [...targets.values()].map((t) => ({ ...t, chunks: chunks(t.full ? full : operations) }));
    // One batch per round: every device's first chunk, then the second ones… (a device's chunks
    // reach its mailbox in order).
    for (let round = 0; list.some((t) => t.chunks.length > round); round++) {
      const items = list.filter((t) => t.chunks.length > round).map((t) => ({ account: t.account, device: t.device, body: { case: 'groupUpdate', value: { groupId: after.state.groupId, operations: t.chunks[round]! } } as ContentBody }));
      await this.#sealAndPost(items, 'a group control message');
    }
  }

  /**
   * Seals one pairwise message per item (each device checked by sessionFor first; an unreachable
   * one is skipped and logged) in ONE storage transaction, and posts them in ONE batch
   * (Outbox.deliverMany → Transport.sendBatch). Copies that cannot go now stay queued. Returns the
   * devices (hex) whose copy was sealed.
   */
  async #sealAndPost(items: readonly { account: Uint8Array; device: Uint8Array; body: ContentBody }[], what: string): Promise<Set<string>> {
    const { ctx, directory, sender, outbox, log } = this.deps;
    const checked = await mapLimited(items, SESSION_SETUP_CONCURRENCY, async (it) => {
      const mailboxId = mailboxIdOf(ctx, it.device);
      try {
        await directory.sessionFor(mailboxId, it.account);
        return { device: it.device, options: { mailboxId, body: it.body, expectedAccountKey: it.account } as Parameters<Sender['seal']>[0] };
      } catch (e) {
        log.warn('groups.device-skipped', `${what} could not be sealed for a member device (no session, or not on its device list)`, e);
        return undefined;
      }
    });
    const ready = checked.filter((r) => r !== undefined);
    if (ready.length === 0) return new Set();
    let sealed: Awaited<ReturnType<Sender['sealAll']>>;
    try {
      sealed = await sender.sealAll(ready.map((r) => r.options));
    } catch (e) {
      log.warn('groups.seal-failed', `${what} could not be sealed`, e);
      return new Set();
    }
    const results = await outbox.deliverMany(sealed.map((x) => x.outboxKey));
    for (const r of results) if (r.status === 'rejected') log.warn('groups.post-queued', `${what} stays queued`, r.reason);
    return new Set(ready.map((r) => toHex(r.device)));
  }

  // ── Invitations (docs/spec/groups.md §G6.3) ────────────────────────────────────────────────

  async #requireManager(groupId: Uint8Array, op: string): Promise<GroupInfo> {
    const info = await this.info(groupId);
    if (!info) throw new SdkError(SdkErrorCode.UNKNOWN_CONVERSATION, `${op}: this device holds no such group`);
    if (!info.isMember || (info.policy === 'admins' && !info.isAdmin)) throw new SdkError(SdkErrorCode.GROUP_NOT_ALLOWED, `${op}: only ${info.policy === 'admins' ? 'admins' : 'members'} may invite`);
    return info;
  }

  /**
   * Invites an account (by account key or username): its devices are asked, and the group does
   * not change until it accepts — then this device adds it (if it may still add). Returns the
   * invitation id (hex).
   */
  async invite(groupId: Uint8Array, member: Recipient): Promise<string> {
    this.#checkOpen();
    checkGroupId(groupId, 'groups.invite');
    const info = await this.#requireManager(groupId, 'groups.invite');
    const account = await this.#accountOf(member);
    if (info.members.some((m) => equalBytes(m.accountKey, account))) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'groups.invite: already a member');
    const inviteId = this.deps.ctx.random(16);
    await db.saveInviteOut(this.deps.storage, groupId, inviteId, account);
    await this.deps.sender.sendTo({ accountKey: account }, { case: 'groupInvite', value: { groupId, name: info.name, inviteId, memberCount: info.members.length } });
    return toHex(inviteId);
  }

  /**
   * A link (text, for a QR code or a message) with which anyone may ask to join: whoever opens it
   * with joinByLink() is added by this device when it next runs (while this account may still add).
   * Revoke it with revokeInvite().
   */
  async inviteLink(groupId: Uint8Array): Promise<string> {
    this.#checkOpen();
    checkGroupId(groupId, 'groups.inviteLink');
    const info = await this.#requireManager(groupId, 'groups.inviteLink');
    const inviteId = this.deps.ctx.random(16);
    await db.saveInviteOut(this.deps.storage, groupId, inviteId, undefined);
    return encodeGroupLink({ node: this.deps.nodeUrl, groupId, inviteId, inviter: this.#account, name: info.name });
  }

  /** Forgets an invitation or link this device made: answers to it are ignored from now on. */
  async revokeInvite(groupId: Uint8Array, inviteId: string): Promise<void> {
    this.#checkOpen();
    await db.deleteInviteOut(this.deps.storage, groupId, fromHex(inviteId));
  }

  /** Accepts a received invitation: the inviting account's devices are asked to add this account. */
  acceptInvite(invitation: Pick<GroupInvitation, 'groupId' | 'inviteId'>): Promise<void> {
    return this.#answer(invitation, true);
  }

  /** Declines a received invitation (the inviter is told; nothing else changes). */
  declineInvite(invitation: Pick<GroupInvitation, 'groupId' | 'inviteId'>): Promise<void> {
    return this.#answer(invitation, false);
  }

  /** Asks to join through a group link (inviteLink): the inviter's devices add this account. */
  async joinByLink(link: string): Promise<{ groupId: Uint8Array; name: string }> {
    this.#checkOpen();
    const l = decodeGroupLink(link);
    if (new URL(l.node).origin !== new URL(this.deps.nodeUrl).origin) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'this group lives on another node');
    await this.deps.sender.sendTo({ accountKey: l.inviter }, { case: 'groupInviteAnswer', value: { groupId: l.groupId, inviteId: l.inviteId, accept: true } });
    return { groupId: l.groupId, name: l.name };
  }

  async #answer(invitation: Pick<GroupInvitation, 'groupId' | 'inviteId'>, accept: boolean): Promise<void> {
    this.#checkOpen();
    const inviteId = fromHex(invitation.inviteId);
    const held = await db.loadInviteIn(this.deps.storage, invitation.groupId, inviteId);
    if (!held) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'no such invitation on this device');
    await this.deps.sender.sendTo({ accountKey: held.inviter }, { case: 'groupInviteAnswer', value: { groupId: invitation.groupId, inviteId, accept } });
    await db.deleteInviteIn(this.deps.storage, invitation.groupId, inviteId);
  }

  // ── Sending group messages ─────────────────────────────────────────────────────────────────

  /** The member devices other than this one, each checked against its account's device list by sessionFor. */
  #targets(state: GroupState): Target[] {
    const out: Target[] = [];
    for (const m of state.members) {
      for (const d of m.devices) {
        if (equalBytes(d, this.#device)) continue;
        out.push({ account: m.account, device: d, mailbox: mailboxIdOf(this.deps.ctx, d) });
      }
    }
    return out;
  }

  /** This device's sender key for the group, new or rotated when due (count/time), stored. */
  async #ownKey(groupId: Uint8Array): Promise<OwnSenderKey> {
    const { ctx, storage } = this.deps;
    return storage.transaction(async (tx) => {
      const stx = asStorageTx(tx);
      let key = await db.loadOwnKey(ctx, stx, groupId);
      if (key && !needsSenderKeyRotation(key, ctx.now())) return key;
      key = key ? rotateSenderKey(ctx, key) : generateSenderKey(ctx, { groupId, senderDevice: this.#device });
      await db.saveOwnKey(stx, key);
      return key;
    });
  }

  /**
   * Sends one Content body to the group: this device's sender key goes first to every member device
   * that lacks it (pairwise), then the message is encrypted once and sealed for every member device
   * (this account's other devices included: they file it as sent). All copies are committed with
   * the history entry and the chain step, then posted.
   */
  async send(groupId: Uint8Array, body: ContentBody, options: { messageId?: Uint8Array } = {}): Promise<{ id: string }> {
    this.#checkOpen();
    checkGroupId(groupId, 'group send');
    if (!body?.case || !GROUP_BODIES.has(body.case)) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `a group message cannot carry ${body?.case ?? 'nothing'}`);
    const { ctx, storage, timers, identity } = this.deps;
    // This account's devices changed (one linked or revoked): the group follows its device list first.
    await this.#followOwnDevices(groupId);
    // A removal applied while this message was being prepared rotated the key (the sending starts
    // over, so the new key goes out first) or removed this device (GROUP_NOT_MEMBER, nothing kept).
    const rotated = new Error('sender key rotated meanwhile');
    const once = async (): Promise<{ id: string }> => {
      const log = await this.#logs.load(storage, groupId);
      if (!log) throw new SdkError(SdkErrorCode.UNKNOWN_CONVERSATION, 'this device holds no such group');
      if (!this.#isMember(log.state)) throw new SdkError(SdkErrorCode.GROUP_NOT_MEMBER, 'this device is not a member of the group');
      const targets = this.#targets(log.state);
      const key = await this.#ownKey(groupId);
      // Peer certificates (sessions are set up here if needed; unlisted devices are refused).
      const found = await mapLimited(targets, SESSION_SETUP_CONCURRENCY, async (t) => {
        try {
          const address = await this.deps.directory.sessionFor(t.mailbox, t.account);
          const certificate = await sessionPeer(storage, address);
          if (!certificate) return undefined;
          return { target: t, certificate, lacks: (await db.distributedKeyId(storage, groupId, t.device)) !== key.keyId };
        } catch (e) {
          this.deps.log.warn('groups.device-skipped', 'a member device could not be reached securely (no session, or not on its device list); it does not get this message', e);
          return undefined;
        }
      });
      const peers = found.filter((p) => p !== undefined);
      const lacking = peers.filter((p) => p.lacks).map((p) => p.target);
      // This device's current key to every member device that lacks it, in one batch, before the
      // message (each mailbox is delivered in order).
      if (lacking.length > 0) {
        const distribution = encodeSenderKeyDistribution(key);
        const done = await this.#sealAndPost(
          lacking.map((t) => ({ account: t.account, device: t.device, body: { case: 'senderKey', value: { distribution } } })),
          'a sender key',
        );
        await storage.transaction(async (tx) => {
          const stx = asStorageTx(tx);
          for (const t of lacking) if (done.has(toHex(t.device))) await db.setDistributed(stx, groupId, t.device, key.keyId);
        });
      }
      const conversation: ConversationId = { kind: 'group', groupId };
      const messageId = options.messageId ?? ctx.random(16);
      const id = toHex(messageId);
      const timer = await timers.record(storage, conversation);
      const setting = body.case === 'expireTimer';
      const expireSeconds = setting ? (body.value.seconds ?? 0) : timer.seconds;
      const expireTimerVersion = setting ? timer.version + 1 : timer.version;
      const now = ctx.now();
      const content = create(ContentSchema, {
        version: CONTENT_VERSION,
        messageId,
        sentAt: BigInt(now),
        conversationId: groupId,
        deliveryToken: this.deps.deliveryToken(),
        expireSeconds,
        expireTimerVersion,
        deviceListEpoch: BigInt(await this.deps.lists.ownEpoch()),
        body,
      });
      const tracked = body.case === 'text' || body.case === 'binary' || body.case === 'file';
      const keys: string[] = [];
      let state: StateChange | undefined;
      let expiresAt = 0;
      await storage.transaction(async (tx) => {
        const stx = asStorageTx(tx);
        const held = await this.#logs.load(stx, groupId);
        if (!held || !this.#isMember(held.state)) throw new SdkError(SdkErrorCode.GROUP_NOT_MEMBER, 'this device was removed from the group while the message was being prepared; nothing was sent');
        const own = await db.loadOwnKey(ctx, stx, groupId);
        if (!own || own.keyId !== key.keyId) throw rotated;
        const { key: next, message } = encryptGroupMessage(ctx, own, toBinary(ContentSchema, content));
        await db.saveOwnKey(stx, next);
        for (const { target, certificate } of peers) {
          const envelope = sealEnvelope(ctx, { sender: identity, recipientDhKey: certificate.deviceDhKey, contentType: MessageType.Group, content: message });
          const k = outboxKey(id, target.mailbox);
          await enqueue(stx, k, target.mailbox, envelope);
          keys.push(k);
        }
        if (setting) await timers.set(stx, conversation, { seconds: expireSeconds, version: expireTimerVersion });
        if (tracked) {
          state = await trackQueued(stx, id, conversation);
          await db.markSent(stx, id, groupId);
          expiresAt = expireSeconds > 0 ? now + expireSeconds * 1000 : 0;
          await addToHistory(stx, { conversation, author: this.#account, from: '', content, receivedAt: now, expiresAt, outgoing: true, request: false });
          // Alone in the group: nothing to post, the message is as sent as it gets.
          if (keys.length === 0) state = (await advanceState(stx, id, 'sent')) ?? state;
        } else if (body.case === 'edit' || body.case === 'delete' || body.case === 'reaction') {
          await applyToHistory(stx, this.#account, content);
        }
      });
      if (state) this.deps.emit('messageState', state);
      if (expiresAt > 0) timers.schedule();
      if (setting) this.deps.emit('disappearingTimer', { conversation, seconds: expireSeconds, by: 'me' });
      // Every copy in one batch: one request to the node, one commit there.
      const results = keys.length > 0 ? await this.deps.outbox.deliverMany(keys) : [];
      for (const r of results) if (r.status === 'rejected') this.deps.log.warn('groups.message-queued', 'a copy of a group message stays queued', r.reason);
      return { id };
    };
    return this.#serial(groupId, async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await once();
        } catch (e) {
          if (e !== rotated) throw e;
          if (attempt >= 5) throw new SdkError(SdkErrorCode.PROTOCOL, 'the group lost a member during each of 5 attempts to send; nothing was sent, try again');
        }
      }
    });
  }

  /** An ephemeral signal (typing) to every member device, pairwise in the ephemeral lane: nothing is stored. */
  async sendEphemeral(groupId: Uint8Array, body: ContentBody): Promise<void> {
    this.#checkOpen();
    const { ctx, storage, directory, transport } = this.deps;
    const log = await this.#logs.load(storage, groupId);
    if (!log) throw new SdkError(SdkErrorCode.UNKNOWN_CONVERSATION, 'this device holds no such group');
    if (!this.#isMember(log.state)) throw new SdkError(SdkErrorCode.GROUP_NOT_MEMBER, 'this device is not a member of the group');
    const content = toBinary(ContentSchema, create(ContentSchema, { version: CONTENT_VERSION, messageId: ctx.random(16), sentAt: BigInt(ctx.now()), conversationId: groupId, deviceListEpoch: BigInt(await this.deps.lists.ownEpoch()), body }));
    await Promise.all(
      this.#targets(log.state).map(async (t) => {
        try {
          // A signal never starts a session: the member device could not open it before the
          // session's first durable message (a sender key, a message) reached it.
          const known = await directory.addressOf(t.mailbox);
          if (!known || !(await hasSession(ctx, storage, known))) return;
          const address = await directory.sessionFor(t.mailbox, t.account);
          const payload = await sealEphemeral(ctx, storage, address, content);
          const token = await directory.peerToken(address);
          await transport.send({ mailboxId: t.mailbox, payload, ephemeral: true, ...(token ? { deliveryToken: token } : {}) });
        } catch (e) {
          this.deps.log.debug('groups.ephemeral-lost', `an ephemeral group signal was not delivered: ${e instanceof Error ? e.message : String(e)}`);
        }
      }),
    );
  }

  // ── Receiving (called by the receive pipeline inside its transaction) ───────────────────────

  /** The group conversation a content's conversation_id names, if this device is in it and `from` is a member device. */
  async resolveConversation(stx: AppStore, input: { conversationId: Uint8Array; from: DeviceCertificate }): Promise<ConversationId | undefined> {
    if (input.conversationId.length !== 32) return undefined;
    const log = await this.#logs.load(stx, input.conversationId);
    if (!log || !this.#isMember(log.state)) return undefined;
    if (!this.#lists(log.state, input.from)) return undefined;
    return { kind: 'group', groupId: input.conversationId };
  }

  /** Whether the state lists `from`'s device under `from`'s account. */
  #lists(state: GroupState, from: DeviceCertificate): boolean {
    return db.listsDevice(state, from.accountKey, from.deviceSigningKey);
  }

  /**
   * Opens a group message delivered in a sealed envelope from `from` (§G2.4 plus §G5): the header
   * must name the sealed sender's device; the group must be one this device is in; the sender
   * device must be a member device of its account; the signature must verify under the key that
   * device distributed. Returns the inner Content; the record's step is stored in `stx`.
   */
  async openMessage(stx: AppStore, from: DeviceCertificate, message: Uint8Array): Promise<Content> {
    const { ctx } = this.deps;
    const header = readGroupMessageHeader(message);
    if (!equalBytes(header.sender, from.deviceSigningKey)) throw new CryptoError(CryptoErrorCode.SENDER_MISMATCH, 'openGroupMessage', 'the group message names another device than the one that sealed it');
    const log = await this.#logs.load(stx, header.groupId);
    if (!log || !this.#isMember(log.state)) throw new SdkError(SdkErrorCode.UNKNOWN_CONVERSATION, 'a group message for a group this device is not in; nothing was stored');
    if (!this.#lists(log.state, from)) throw new SdkError(SdkErrorCode.GROUP_NOT_MEMBER, 'a group message from a device that is not a member device of the group; nothing was stored');
    const record = await db.loadRecord(stx, header.groupId, header.sender);
    const { record: next, plaintext } = decryptGroupMessage(ctx, record, message);
    await db.saveRecord(stx, header.groupId, header.sender, next);
    let content: Content;
    try {
      content = fromBinary(ContentSchema, plaintext);
    } catch {
      throw new SdkError(SdkErrorCode.PROTOCOL, 'group message content is not a valid Content');
    }
    if (!equalBytes(content.conversationId, header.groupId)) throw new SdkError(SdkErrorCode.PROTOCOL, 'a group message whose content names another conversation');
    if (!content.body.case || !GROUP_BODIES.has(content.body.case)) throw new SdkError(SdkErrorCode.PROTOCOL, `a group message may not carry ${content.body.case ?? 'nothing'}`);
    return content;
  }

  /**
   * A group message that needs a sender key this device does not hold yet, from a member device of
   * a group this device is in: kept (bounded) to be opened again when that device's key arrives.
   * Returns whether it was kept.
   */
  async hold(from: DeviceCertificate, message: Uint8Array): Promise<boolean> {
    const { ctx, storage } = this.deps;
    const groupId = groupOfSender(from, message);
    if (!groupId) return false;
    return storage.transaction(async (tx) => {
      const stx = asStorageTx(tx);
      const log = await this.#logs.load(stx, groupId);
      if (!log || !this.#isMember(log.state) || !this.#lists(log.state, from)) return false;
      await db.holdMessage(stx, groupId, from, message, ctx.now());
      return true;
    });
  }

  /** The held messages of one sender device (oldest first), to open again now that its key arrived. */
  held(groupId: Uint8Array, device: Uint8Array): Promise<{ key: string; from: DeviceCertificate; message: Uint8Array }[]> {
    return db.heldMessages(this.deps.storage, groupId, device, this.deps.ctx.now());
  }

  dropHeld(key: string): Promise<void> {
    return db.dropHeld(this.deps.storage, key);
  }

  /**
   * A group message for a group this device does not hold at all (its create, or the add that makes
   * this device a member, is still on its way over another pairwise session): kept (bounded, §G6.2 "Before the group")
   * to be opened when the group arrives. Returns whether it was kept. A group this device holds —
   * member or not — is judged now, never kept.
   */
  async holdForUnknownGroup(from: DeviceCertificate, message: Uint8Array): Promise<boolean> {
    const { ctx, storage } = this.deps;
    const groupId = groupOfSender(from, message);
    if (!groupId) return false;
    return storage.transaction(async (tx) => {
      const stx = asStorageTx(tx);
      if (await this.#logs.load(stx, groupId)) return false;
      return db.holdPending(stx, 'message', groupId, from, message, ctx.now());
    });
  }

  /** What was kept for `groupId` before this device held it (arrival order), to replay now that it does. */
  pending(groupId: Uint8Array): Promise<db.PendingItem[]> {
    return db.pendingFor(this.deps.storage, groupId, this.deps.ctx.now());
  }

  /**
   * Groups this device holds (and is in) with kept items still waiting: a stop (or crash) after the
   * group arrived and before their replay finished. Replayed at the next start.
   */
  async pendingHeldGroups(): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    for (const hex of await db.pendingGroups(this.deps.storage)) {
      const log = await this.#logs.load(this.deps.storage, fromHex(hex));
      if (log && this.#isMember(log.state)) out.push(fromHex(hex));
    }
    return out;
  }

  dropPending(key: string): Promise<void> {
    return db.dropPending(this.deps.storage, key);
  }

  /**
   * Replays one kept sender key or control operation (pending()) with every check of its first
   * arrival's group rules, in one transaction with dropping it: applied exactly once, or refused
   * (and dropped) exactly as it would have been had the group been here first.
   */
  async replayPending(item: db.PendingItem): Promise<{ events: GroupEventPending[]; after?: () => Promise<void> }> {
    return this.deps.storage.transaction(async (tx) => {
      const stx = asStorageTx(tx);
      await db.dropPending(stx, item.key);
      if (item.kind === 'key') {
        const r = await this.applySenderKey(stx, item.from, fromBinary(SenderKeySchema, item.payload), false);
        if (r.held) throw new SdkError(SdkErrorCode.UNKNOWN_CONVERSATION, 'a kept sender key whose group this device still does not hold');
        return { events: [] };
      }
      return this.applyUpdate(stx, item.from, fromBinary(GroupUpdateSchema, item.payload), false);
    });
  }

  /**
   * A sender key from `from` (pairwise): accepted only from a member device of a group this device
   * is in. For a group this device does not hold at all, kept (in `stx`, with the ratchet step) until
   * the group arrives: `held`.
   */
  async applySenderKey(stx: AppStore, from: DeviceCertificate, sk: SenderKey, keep = true): Promise<{ groupId: Uint8Array; held: boolean }> {
    const { ctx } = this.deps;
    const d = decodeSenderKeyDistribution(sk.distribution);
    const log = await this.#logs.load(stx, d.groupId);
    if (!log && keep && (await db.holdPending(stx, 'key', d.groupId, from, toBinary(SenderKeySchema, sk), ctx.now()))) return { groupId: d.groupId, held: true };
    if (!log || !this.#isMember(log.state)) throw new SdkError(SdkErrorCode.UNKNOWN_CONVERSATION, 'a sender key for a group this device is not in');
    if (!this.#lists(log.state, from)) throw new SdkError(SdkErrorCode.GROUP_NOT_MEMBER, 'a sender key from a device that is not a member device of the group');
    const record = await db.loadRecord(stx, d.groupId, from.deviceSigningKey);
    const next = processSenderKeyDistribution(ctx, { groupId: d.groupId, sender: from.deviceSigningKey, distribution: sk.distribution, ...(record ? { record } : {}) });
    await db.saveRecord(stx, d.groupId, from.deviceSigningKey, next);
    return { groupId: d.groupId, held: false };
  }

  /**
   * Control operations from `from` (pairwise). A group this device does not hold is opened from its
   * create operation, and kept only if its state lists this device (someone added us). Operations
   * that do not verify or are not allowed are skipped (logged); the rest fold into the state.
   */
  async applyUpdate(stx: AppStore, from: DeviceCertificate, update: GroupUpdate, keep = true): Promise<{ events: GroupEventPending[]; after?: () => Promise<void>; joined?: boolean; held?: boolean }> {
    const { ctx } = this.deps;
    checkGroupId(update.groupId, 'groupUpdate');
    let log = await this.#logs.load(stx, update.groupId);
    const held = log;
    const before = log?.state;
    const ops = [...update.operations];
    if (!log) {
      const root = ops.findIndex((o) => {
        try {
          return decodeGroupOperation(ctx, o).body.type === 'create';
        } catch {
          return false;
        }
      });
      if (root < 0) {
        // Kept until the group arrives (its create comes over another session): replayed then.
        if (keep && (await db.holdPending(stx, 'update', update.groupId, from, toBinary(GroupUpdateSchema, update), ctx.now()))) return { events: [], held: true };
        throw new SdkError(SdkErrorCode.UNKNOWN_CONVERSATION, 'control operations for a group this device does not hold, without its create operation');
      }
      log = openGroup(ctx, ops[root]!);
      if (!equalBytes(log.state.groupId, update.groupId)) throw new CryptoError(CryptoErrorCode.GROUP_MISMATCH, 'groupUpdate', 'operations for another group');
      ops.splice(root, 1);
    }
    for (const o of ops) {
      try {
        log = receiveGroupOperation(ctx, log, o).log;
      } catch (e) {
        if (!(e instanceof CryptoError)) throw e;
        this.deps.log.warn('groups.operation-refused', `a group control operation was refused (${e.code})`);
      }
    }
    const after = log.state;
    const meNow = this.#isMember(after);
    if (!before && !meNow) return { events: [] }; // not about us: nothing stored
    await this.#logs.save(stx, log);
    const diff = diffGroupStates(before, after);
    if (diff.requiresRekey && before) await this.#rekey(stx, before, after);
    const groupId = after.groupId;
    const gossip = this.#gossip(held, log);
    const events: GroupEventPending[] = !before ? [['groupChange', { groupId, change: { type: 'joined', name: after.name } }]] : diff.events.map((e) => ['groupChange', { groupId, change: toChange(e) }] as const);
    const joined = !before;
    return gossip ? { events, after: gossip, joined } : { events, joined };
  }

  /**
   * Operations the devices of a concurrent add (or set devices, rejoin) never got from their
   * authors (§G6.2): when `after` pairs such a listing operation with an operation concurrent with
   * it, one of them new here and one of them by this device, this device passes them on — the whole
   * log to a listed device that is a member device now (it may not even hold the group yet), only
   * the concurrent operations to one that is not (an add that did not take effect: it learns why,
   * nothing more). Returns the sending to do after the commit, if any. Best effort.
   */
  #gossip(before: GroupLog | undefined, after: GroupLog): (() => Promise<void>) | undefined {
    const pairs = after.concurrentWithListings(before, this.#device);
    if (pairs.length === 0) return undefined;
    const members = new Set(after.state.members.flatMap((m) => m.devices.map(toHex)));
    const full = after.operations();
    const to = new Map<string, { account: Uint8Array; device: Uint8Array; operations: Uint8Array[] }>();
    for (const p of pairs) {
      for (const d of p.devices) {
        const k = toHex(d);
        if (k === toHex(this.#device)) continue;
        if (members.has(k)) to.set(k, { account: after.state.members.find((m) => m.devices.some((x) => equalBytes(x, d)))!.account, device: d, operations: full });
        // With the create operation first: a device that does not hold the group (yet) opens it, finds itself absent, keeps nothing and reports nothing.
        else if (!to.has(k)) to.set(k, { account: p.account, device: d, operations: [full[0]!, ...p.concurrent] });
        else to.get(k)!.operations.push(...p.concurrent.filter((o) => !to.get(k)!.operations.some((x) => equalBytes(x, o))));
      }
    }
    const groupId = after.state.groupId;
    return async () => {
      const list = [...to.values()].map((t) => ({ ...t, chunks: chunks(t.operations) }));
      for (let round = 0; list.some((t) => t.chunks.length > round); round++) {
        const items = list.filter((t) => t.chunks.length > round).map((t) => ({ account: t.account, device: t.device, body: { case: 'groupUpdate', value: { groupId, operations: t.chunks[round]! } } as ContentBody }));
        await this.#sealAndPost(items, 'group operations passed on');
      }
    };
  }

  /** A received invitation: kept until answered, shown as a `groupInvite` event. */
  async applyInvite(stx: AppStore, from: DeviceCertificate, invite: GroupInvite): Promise<GroupEventPending[]> {
    checkGroupId(invite.groupId, 'groupInvite');
    if (invite.inviteId.length !== 16) throw new SdkError(SdkErrorCode.PROTOCOL, 'an invitation without a valid id');
    const name = invite.name.slice(0, 256);
    // Bounded: invitations nobody answers cannot fill the storage (the oldest unanswered ones stay).
    if ((await stx.listItems(db.GroupTable.InviteIn, { limit: MAX_PENDING_INVITES })).length >= MAX_PENDING_INVITES) {
      this.deps.log.warn('groups.invites-full', `more than ${MAX_PENDING_INVITES} unanswered group invitations: a new one was dropped`);
      return [];
    }
    await db.saveInviteIn(stx, invite.groupId, invite.inviteId, from.accountKey, name);
    return [['groupInvite', { groupId: invite.groupId, inviteId: toHex(invite.inviteId), inviter: from.accountKey, name }]];
  }

  /**
   * An answer to an invitation of this device. Accepted: returns the work to do after the commit
   * (adding the account needs the network: its device list).
   */
  async applyInviteAnswer(stx: AppStore, from: DeviceCertificate, answer: GroupInviteAnswer): Promise<{ events: GroupEventPending[]; after?: () => Promise<void> }> {
    if (answer.groupId.length !== 32 || answer.inviteId.length !== 16) return { events: [] };
    const held = await db.loadInviteOut(stx, answer.groupId, answer.inviteId);
    if (!held) return { events: [] }; // not ours (another device of this account made it), or revoked
    if (held.invitee && !equalBytes(held.invitee, from.accountKey)) return { events: [] };
    const events: GroupEventPending[] = [['groupInviteAnswer', { groupId: answer.groupId, accountKey: from.accountKey, accept: answer.accept }]];
    // A personal invitation is used once; a link stays until revoked.
    if (held.invitee) await db.deleteInviteOut(stx, answer.groupId, answer.inviteId);
    if (!answer.accept) return { events };
    const account = from.accountKey;
    return {
      events,
      after: async () => {
        const info = await this.info(answer.groupId);
        if (!info || info.members.some((m) => equalBytes(m.accountKey, account))) return;
        await this.add(answer.groupId, account);
      },
    };
  }

  /** This account answered an invitation on another of its devices (the copy of its answer): this device forgets it too. */
  async forgetAnswered(stx: AppStore, answer: GroupInviteAnswer): Promise<void> {
    if (answer.groupId.length !== 32 || answer.inviteId.length !== 16) return;
    await db.deleteInviteIn(stx, answer.groupId, answer.inviteId);
  }

  /** A receipt from `from` for messages this account sent: per-member state of group messages. */
  async noteReceipt(stx: AppStore, from: DeviceCertificate, ids: readonly string[], state: MemberReceipt): Promise<void> {
    if (equalBytes(from.accountKey, this.#account)) return;
    for (const id of ids) if (await db.sentGroup(stx, id)) await db.noteReceipt(stx, id, from.accountKey, state);
  }
}

/**
 * Sessions set up at once for a fan-out (a first contact claims a bundle over the network and runs
 * PQXDH): enough to overlap the round trips, few enough not to flood the node or the storage.
 */
const SESSION_SETUP_CONCURRENCY = 8;

/** `f` over `xs` with at most `limit` running at once; results in the order of `xs`. */
async function mapLimited<T, R>(xs: readonly T[], limit: number, f: (x: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(xs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < xs.length) {
      const i = next++;
      out[i] = await f(xs[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, xs.length) }, worker));
  return out;
}

function chunks(ops: readonly Uint8Array[]): Uint8Array[][] {
  const out: Uint8Array[][] = [];
  let cur: Uint8Array[] = [];
  let size = 0;
  for (const o of ops) {
    if (cur.length > 0 && size + o.length > OPS_PER_UPDATE_BYTES) {
      out.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(o);
    size += o.length + 8;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** The group a group message names, if its header parses and names `from` as its sender; else undefined. */
function groupOfSender(from: DeviceCertificate, message: Uint8Array): Uint8Array | undefined {
  try {
    const h = readGroupMessageHeader(message);
    return equalBytes(h.sender, from.deviceSigningKey) ? h.groupId : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The group tables (docs/api.md §Storage tables): each group's log of signed control operations,
 * this device's own sender key per group, the sender keys received from other member devices,
 * which devices hold our current key, invitations, and per-member receipts of our group messages.
 * Values are the crypto layer's versioned storage formats or small versioned records.
 */
import type { CryptoContext, DeviceCertificate, GroupLog, GroupMemberState, GroupState, OwnSenderKey, SenderKeyRecord } from '@meshwhisper/crypto';
import { ByteReader, ByteWriter, decodeDeviceCertificate, encodeDeviceCertificate, deserializeGroupLog, deserializeOwnSenderKey, deserializeSenderKeyRecord, equalBytes, fromHex, serializeGroupLog, serializeOwnSenderKey, serializeSenderKeyRecord, toHex } from '@meshwhisper/crypto';
import type { AppStore } from '../../storage/types.js';

export const GroupTable = {
  /** The group's log (serializeGroupLog), by group id hex. */
  Log: 'mw.group',
  /**
   * SHA-256 of the group's stored log bytes, by group id hex, written with every log (client layout
   * 4): a device reads these 32 bytes, not the whole log, to know whether the log it decoded before
   * is still the stored one (GroupLogs).
   */
  Stamp: 'mw.group-stamp',
  /** This device's sender key for the group (serializeOwnSenderKey), by group id hex. */
  OwnKey: 'mw.group-own-key',
  /** A member device's sender key record (serializeSenderKeyRecord), by `${group hex}/${device hex}`. */
  SenderKey: 'mw.group-sender-key',
  /** The key id of our sender key that a member device was sent (u32 BE), by `${group hex}/${device hex}`. */
  Distributed: 'mw.group-distributed',
  /** Group messages this account sent: the group id, by message id hex (per-member receipts). */
  Sent: 'mw.group-sent',
  /** Per-member receipts: u8 1 delivered / 2 read, by `${message id hex}/${account hex}`. */
  Receipt: 'mw.group-receipt',
  /** Invitations this device made: u8 version 1 ‖ invitee account (32) or nothing for a link, by `${group hex}/${invite id hex}`. */
  InviteOut: 'mw.group-invite-out',
  /**
   * Group messages that arrived before the sender key they need (the sender's outbox retried its
   * copies in another order): u8 version 1 ‖ u64 received at ‖ vec16 sender certificate ‖ message, by
   * `${group hex}/${device hex}/${sequence}` (at most HELD_PER_DEVICE per device, HELD_MAX_AGE_MS).
   */
  Held: 'mw.group-held',
  /**
   * What came for a group this device does not hold yet (its create or the add that makes this device
   * a member is still on the way over another pairwise session): u8 version 1 ‖ u8 kind (1 sender
   * key distribution, 2 group message, 3 control operations) ‖ u64 received at ‖ 32-byte group id ‖
   * vec16 sender certificate ‖ payload, by `${device hex}/${sequence}` (at most HELD_PER_DEVICE per
   * sender device, PENDING_MAX in all, HELD_MAX_AGE_MS). Replayed, oldest first, when the group arrives.
   */
  Pending: 'mw.group-pending',
  /** Invitations received: u8 version 1 ‖ inviter account (32) ‖ UTF-8 name, by `${group hex}/${invite id hex}`. */
  InviteIn: 'mw.group-invite-in',
} as const;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** Stores a group's log bytes with their stamp (every writer of GroupTable.Log goes through here). */
export async function saveLogBytes(ctx: CryptoContext, store: AppStore, groupId: Uint8Array, bytes: Uint8Array): Promise<Uint8Array> {
  const stamp = ctx.backend.sha256(bytes);
  await store.setItem(GroupTable.Log, toHex(groupId), bytes);
  await store.setItem(GroupTable.Stamp, toHex(groupId), stamp);
  return stamp;
}

/** Decoded logs kept per client at most (least recently used dropped beyond). */
export const GROUP_LOG_CACHE_SIZE = 32;

/** Bytewise order (GroupState keeps members ascending by account in it). */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** The member `account` of `state`, by binary search (members are ascending by account): O(log members), no allocation. */
export function findMember(state: GroupState, account: Uint8Array): GroupMemberState | undefined {
  const ms = state.members;
  let lo = 0;
  let hi = ms.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareBytes(ms[mid]!.account, account);
    if (c === 0) return ms[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return undefined;
}

/** Whether `state` lists `device` under `account`. */
export function listsDevice(state: GroupState, account: Uint8Array, device: Uint8Array): boolean {
  return findMember(state, account)?.devices.some((d) => equalBytes(d, device)) === true;
}

/** The devices `before` lists and `after` does not (under any account). */
export function removedDevices(before: GroupState, after: GroupState): Uint8Array[] {
  const gone: Uint8Array[] = [];
  for (const m of before.members) for (const d of m.devices) if (!listsDevice(after, m.account, d)) gone.push(d);
  // A device no longer under its account is checked against every member (never the case for a
  // kick or a leave, the frequent removals: O(members) only for the devices actually gone).
  return gone.filter((d) => !after.members.some((m) => m.devices.some((x) => equalBytes(x, d))));
}

/**
 * The group logs of one client, decoded once and kept in memory across messages.
 *
 * Decoding a stored log re-verifies every operation and folds the whole state — O(members) and more
 * (a 1,000-member create operation alone is ~66 KB and 1,000 entries). Done for every group message
 * received, it made a group of N cost O(N²) per message across its members. Here a load reads the
 * log's stamp (GroupTable.Stamp, 32 bytes) and returns the log decoded before if the stored stamp is
 * still the one it was decoded from; otherwise it reads and decodes the bytes and keeps them only if
 * they hash to the stored stamp (a read outside a transaction can interleave with a commit).
 *
 * Correct with any number of clients on one storage and with transactions that roll back: the stamp
 * is the SHA-256 of the stored bytes, written in the same transaction as them, so an equal stamp
 * means equal bytes, which decode to an equal log (GroupLog is immutable). A log saved in a
 * transaction that rolls back leaves the older stamp stored, which no longer matches: the next load
 * decodes again.
 */
export class GroupLogs {
  readonly #entries = new Map<string, { stamp: Uint8Array; log: GroupLog }>();

  constructor(private readonly ctx: CryptoContext) {}

  async load(store: AppStore, groupId: Uint8Array): Promise<GroupLog | undefined> {
    const k = toHex(groupId);
    const stamp = await store.getItem(GroupTable.Stamp, k);
    const held = this.#entries.get(k);
    if (held && stamp && equalBytes(held.stamp, stamp)) {
      this.#remember(k, held.stamp, held.log);
      return held.log;
    }
    const bytes = await store.getItem(GroupTable.Log, k);
    if (!bytes) {
      this.#entries.delete(k);
      return undefined;
    }
    const log = deserializeGroupLog(this.ctx, bytes);
    if (stamp && equalBytes(stamp, this.ctx.backend.sha256(bytes))) this.#remember(k, stamp, log);
    else this.#entries.delete(k);
    return log;
  }

  async save(store: AppStore, log: GroupLog): Promise<void> {
    const stamp = await saveLogBytes(this.ctx, store, log.state.groupId, serializeGroupLog(log));
    this.#remember(toHex(log.state.groupId), stamp, log);
  }

  #remember(k: string, stamp: Uint8Array, log: GroupLog): void {
    this.#entries.delete(k);
    this.#entries.set(k, { stamp, log });
    if (this.#entries.size > GROUP_LOG_CACHE_SIZE) this.#entries.delete(this.#entries.keys().next().value!);
  }
}

export async function allGroupIds(store: AppStore): Promise<Uint8Array[]> {
  return (await store.listItems(GroupTable.Log)).map((i) => fromHex(i.key));
}

export async function loadOwnKey(ctx: CryptoContext, store: AppStore, groupId: Uint8Array): Promise<OwnSenderKey | undefined> {
  const b = await store.getItem(GroupTable.OwnKey, toHex(groupId));
  return b ? deserializeOwnSenderKey(ctx, b) : undefined;
}

export async function saveOwnKey(store: AppStore, key: OwnSenderKey): Promise<void> {
  await store.setItem(GroupTable.OwnKey, toHex(key.groupId), serializeOwnSenderKey(key));
}

const pairKey = (groupId: Uint8Array, device: Uint8Array): string => `${toHex(groupId)}/${toHex(device)}`;

export async function loadRecord(store: AppStore, groupId: Uint8Array, device: Uint8Array): Promise<SenderKeyRecord | undefined> {
  const b = await store.getItem(GroupTable.SenderKey, pairKey(groupId, device));
  return b ? deserializeSenderKeyRecord(b) : undefined;
}

export async function saveRecord(store: AppStore, groupId: Uint8Array, device: Uint8Array, record: SenderKeyRecord): Promise<void> {
  await store.setItem(GroupTable.SenderKey, pairKey(groupId, device), serializeSenderKeyRecord(record));
}

export async function deleteRecord(store: AppStore, groupId: Uint8Array, device: Uint8Array): Promise<void> {
  await store.deleteItem(GroupTable.SenderKey, pairKey(groupId, device));
}

export async function distributedKeyId(store: AppStore, groupId: Uint8Array, device: Uint8Array): Promise<number | undefined> {
  const b = await store.getItem(GroupTable.Distributed, pairKey(groupId, device));
  return b && b.length === 4 ? new DataView(b.buffer, b.byteOffset).getUint32(0) : undefined;
}

export async function setDistributed(store: AppStore, groupId: Uint8Array, device: Uint8Array, keyId: number): Promise<void> {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, keyId);
  await store.setItem(GroupTable.Distributed, pairKey(groupId, device), b);
}

export async function markSent(store: AppStore, messageId: string, groupId: Uint8Array): Promise<void> {
  await store.setItem(GroupTable.Sent, messageId, groupId);
}

export async function sentGroup(store: AppStore, messageId: string): Promise<Uint8Array | undefined> {
  return store.getItem(GroupTable.Sent, messageId);
}

export type MemberReceipt = 'delivered' | 'read';

/** Records that `account` received or read `messageId` (never moves back from read). Returns whether it changed. */
export async function noteReceipt(store: AppStore, messageId: string, account: Uint8Array, state: MemberReceipt): Promise<boolean> {
  const key = `${messageId}/${toHex(account)}`;
  const held = (await store.getItem(GroupTable.Receipt, key))?.[0] ?? 0;
  const next = state === 'read' ? 2 : 1;
  if (held >= next) return false;
  await store.setItem(GroupTable.Receipt, key, Uint8Array.of(next));
  return true;
}

export async function receiptsOf(store: AppStore, messageId: string): Promise<Map<string, MemberReceipt>> {
  const out = new Map<string, MemberReceipt>();
  for (const { key, value } of await store.listItems(GroupTable.Receipt, { prefix: `${messageId}/` })) {
    out.set(key.slice(messageId.length + 1), value[0] === 2 ? 'read' : 'delivered');
  }
  return out;
}

const inviteKey = (groupId: Uint8Array, inviteId: Uint8Array): string => `${toHex(groupId)}/${toHex(inviteId)}`;

/** An invitation this device made: `invitee` undefined for a link (anyone holding it may join). */
export async function saveInviteOut(store: AppStore, groupId: Uint8Array, inviteId: Uint8Array, invitee: Uint8Array | undefined): Promise<void> {
  const v = new Uint8Array(1 + (invitee ? 32 : 0));
  v[0] = 1;
  if (invitee) v.set(invitee, 1);
  await store.setItem(GroupTable.InviteOut, inviteKey(groupId, inviteId), v);
}

export async function loadInviteOut(store: AppStore, groupId: Uint8Array, inviteId: Uint8Array): Promise<{ invitee: Uint8Array | undefined } | undefined> {
  const v = await store.getItem(GroupTable.InviteOut, inviteKey(groupId, inviteId));
  if (!v || v[0] !== 1 || (v.length !== 1 && v.length !== 33)) return undefined;
  return { invitee: v.length === 33 ? v.slice(1) : undefined };
}

export async function deleteInviteOut(store: AppStore, groupId: Uint8Array, inviteId: Uint8Array): Promise<void> {
  await store.deleteItem(GroupTable.InviteOut, inviteKey(groupId, inviteId));
}

export async function saveInviteIn(store: AppStore, groupId: Uint8Array, inviteId: Uint8Array, inviter: Uint8Array, name: string): Promise<void> {
  const n = utf8.encode(name);
  const v = new Uint8Array(33 + n.length);
  v[0] = 1;
  v.set(inviter, 1);
  v.set(n, 33);
  await store.setItem(GroupTable.InviteIn, inviteKey(groupId, inviteId), v);
}

export async function loadInviteIn(store: AppStore, groupId: Uint8Array, inviteId: Uint8Array): Promise<{ inviter: Uint8Array; name: string } | undefined> {
  const v = await store.getItem(GroupTable.InviteIn, inviteKey(groupId, inviteId));
  if (!v || v[0] !== 1 || v.length < 33) return undefined;
  return { inviter: v.slice(1, 33), name: fromUtf8.decode(v.subarray(33)) };
}

export async function listInvitesIn(store: AppStore): Promise<{ groupId: Uint8Array; inviteId: Uint8Array; inviter: Uint8Array; name: string }[]> {
  const out: { groupId: Uint8Array; inviteId: Uint8Array; inviter: Uint8Array; name: string }[] = [];
  for (const { key, value } of await store.listItems(GroupTable.InviteIn)) {
    const [g, i] = key.split('/');
    if (!g || !i || value[0] !== 1 || value.length < 33) continue;
    out.push({ groupId: fromHex(g), inviteId: fromHex(i), inviter: value.slice(1, 33), name: fromUtf8.decode(value.subarray(33)) });
  }
  return out;
}

export async function deleteInviteIn(store: AppStore, groupId: Uint8Array, inviteId: Uint8Array): Promise<void> {
  await store.deleteItem(GroupTable.InviteIn, inviteKey(groupId, inviteId));
}

/** Held group messages kept per sender device (the oldest is dropped beyond). */
export const HELD_PER_DEVICE = 200;
/** Held group messages older than this are dropped (the node keeps mail 30 days; a key sent with the message comes within minutes). */
export const HELD_MAX_AGE_MS = 7 * 24 * 3600 * 1000;

export async function holdMessage(store: AppStore, groupId: Uint8Array, from: DeviceCertificate, message: Uint8Array, now: number): Promise<void> {
  const prefix = pairKey(groupId, from.deviceSigningKey) + '/';
  const held = await store.listItems(GroupTable.Held, { prefix });
  for (const old of held.slice(0, Math.max(0, held.length - HELD_PER_DEVICE + 1))) await store.deleteItem(GroupTable.Held, old.key);
  const seq = held.length > 0 ? Number(held.at(-1)!.key.slice(prefix.length)) + 1 : 0;
  const v = new ByteWriter().u8(1).u64(now).vec16(encodeDeviceCertificate(from)).bytes(message).finish();
  await store.setItem(GroupTable.Held, prefix + String(seq).padStart(15, '0'), v);
}

export async function heldMessages(store: AppStore, groupId: Uint8Array, device: Uint8Array, now: number): Promise<{ key: string; from: DeviceCertificate; message: Uint8Array }[]> {
  const out: { key: string; from: DeviceCertificate; message: Uint8Array }[] = [];
  for (const { key, value } of await store.listItems(GroupTable.Held, { prefix: pairKey(groupId, device) + '/' })) {
    try {
      const r = new ByteReader(value, 'heldMessages');
      if (r.u8() !== 1) throw new RangeError('version');
      const at = r.u64();
      const from = decodeDeviceCertificate(r.vec16('certificate'));
      if (now - at > HELD_MAX_AGE_MS) {
        await store.deleteItem(GroupTable.Held, key);
        continue;
      }
      out.push({ key, from, message: r.rest() });
    } catch {
      await store.deleteItem(GroupTable.Held, key);
    }
  }
  return out;
}

export async function dropHeld(store: AppStore, key: string): Promise<void> {
  await store.deleteItem(GroupTable.Held, key);
}

/** What a device may keep for groups it does not hold yet, in all (beyond, new items are refused, as before). */
export const PENDING_MAX = 2000;

export type PendingKind = 'key' | 'message' | 'update';
const PENDING_KINDS: readonly PendingKind[] = ['key', 'message', 'update'];

export interface PendingItem {
  readonly key: string;
  readonly kind: PendingKind;
  readonly at: number;
  readonly groupId: Uint8Array;
  readonly from: DeviceCertificate;
  readonly payload: Uint8Array;
}

/**
 * Keeps `payload` (of `kind`) from `from` for the group `groupId` this device does not hold yet.
 * Bounded: the oldest of the sender device beyond HELD_PER_DEVICE is dropped, anything older than
 * HELD_MAX_AGE_MS is dropped, and nothing new is kept once PENDING_MAX items are. Returns whether it was kept.
 */
export async function holdPending(store: AppStore, kind: PendingKind, groupId: Uint8Array, from: DeviceCertificate, payload: Uint8Array, now: number): Promise<boolean> {
  const prefix = toHex(from.deviceSigningKey) + '/';
  const mine = await store.listItems(GroupTable.Pending, { prefix });
  let kept = mine.length;
  for (const [i, old] of mine.entries()) {
    let at = 0;
    try {
      const r = new ByteReader(old.value, 'holdPending');
      r.bytes(2);
      at = r.u64();
    } catch {
      // unreadable: dropped below (received at 0)
    }
    if (i < mine.length - HELD_PER_DEVICE + 1 || now - at > HELD_MAX_AGE_MS) {
      await store.deleteItem(GroupTable.Pending, old.key);
      kept--;
    }
  }
  if (kept >= HELD_PER_DEVICE) return false;
  if ((await store.listItems(GroupTable.Pending, { limit: PENDING_MAX })).length >= PENDING_MAX) return false;
  const seq = mine.length > 0 ? Number(mine.at(-1)!.key.slice(prefix.length)) + 1 : 0;
  const v = new ByteWriter().u8(1).u8(PENDING_KINDS.indexOf(kind) + 1).u64(now).bytes(groupId).vec16(encodeDeviceCertificate(from)).bytes(payload).finish();
  await store.setItem(GroupTable.Pending, prefix + String(seq).padStart(15, '0'), v);
  return true;
}

/** The items kept for `groupId`, in arrival order (expired and unreadable ones are dropped). */
export async function pendingFor(store: AppStore, groupId: Uint8Array, now: number): Promise<PendingItem[]> {
  const out: PendingItem[] = [];
  for (const { key, value } of await store.listItems(GroupTable.Pending)) {
    try {
      const r = new ByteReader(value, 'pendingFor');
      if (r.u8() !== 1) throw new RangeError('version');
      const kind = PENDING_KINDS[r.u8() - 1];
      if (!kind) throw new RangeError('kind');
      const at = r.u64();
      const g = r.bytes(32);
      if (now - at > HELD_MAX_AGE_MS) {
        await store.deleteItem(GroupTable.Pending, key);
        continue;
      }
      if (!equalBytes(g, groupId)) continue;
      const from = decodeDeviceCertificate(r.vec16('certificate'));
      out.push({ key, kind, at, groupId: g, from, payload: r.rest() });
    } catch {
      await store.deleteItem(GroupTable.Pending, key);
    }
  }
  return out.sort((a, b) => a.at - b.at || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** The group ids anything is kept for (hex). */
export async function pendingGroups(store: AppStore): Promise<Set<string>> {
  const out = new Set<string>();
  for (const { value } of await store.listItems(GroupTable.Pending)) if (value.length >= 42) out.add(toHex(value.subarray(10, 42)));
  return out;
}

export async function dropPending(store: AppStore, key: string): Promise<void> {
  await store.deleteItem(GroupTable.Pending, key);
}

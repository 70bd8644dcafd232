/**
 * Group state as a causal DAG of signed control operations (docs/spec/groups.md §G4).
 *
 * Invariants this file keeps:
 *  - The state (name, policy, members with their devices, admins) is a pure function of the SET of
 *    operations a device holds. It never depends on the order they arrived in, so every device that
 *    holds the same operations holds the same state — convergence, whatever the delivery order and
 *    however long a member was offline.
 *  - An operation changes the state only if its author's device is a member device, with the right
 *    for it, at the operation's place in the deterministic total order (§4.3), and no *effective*
 *    removal of that author is concurrent with it (§4.4 "removal wins"): a removed member cannot
 *    back-date operations by naming old parents.
 *  - Every operation is signed by its author device (Ed25519, label MeshWhisper_GroupOp_v1) and named
 *    by the SHA-256 of its encoding; it names the operations it saw last (its parents), so the DAG
 *    records causality that no author can rewrite.
 *  - All-or-nothing: a GroupLog is immutable; receiving or proposing returns a new log, and a failed
 *    call leaves the old one as it was.
 */
import { _Redacted } from './_secret.js';
import { concatBytes, copyBytes, equalBytes, toHex, utf8 } from './bytes.js';
import {
  ED25519_KEY_LENGTH,
  ED25519_SIGNATURE_LENGTH,
  GROUP_ID_LENGTH,
  GROUP_OPERATION_VERSION,
  MAX_GROUP_MEMBER_DEVICES,
  MAX_GROUP_MEMBERS,
  MAX_GROUP_NAME_LENGTH,
  MAX_GROUP_OP_LENGTH,
  MAX_GROUP_OP_PARENTS,
  MAX_PENDING_GROUP_OPS,
} from './constants.js';
import type { CryptoContext } from './context.js';
import { ByteReader, ByteWriter } from './encoding.js';
import { CryptoError, CryptoErrorCode, assertBytes } from './errors.js';
import type { AccountKeyPair, DeviceKeyPair } from './keys.js';
import { signedMessage } from './keys.js';

/** Signature label of control operations; the digest label of states. */
export const GroupLabel = {
  Operation: 'MeshWhisper_GroupOp_v1',
  StateDigest: 'MeshWhisper_GroupState_v1',
  /** Account signature inside a rejoin operation (§G4.1 type 10). */
  Rejoin: 'MeshWhisper_GroupRejoin_v1',
} as const;

/** Wire codes (docs/spec/groups.md §G4.1). */
export const GroupPolicy = { Admins: 1, AdminLess: 2 } as const;
export type GroupPolicy = (typeof GroupPolicy)[keyof typeof GroupPolicy];

export const GroupOpType = {
  Create: 1,
  Add: 2,
  Kick: 3,
  Leave: 4,
  Rename: 5,
  Promote: 6,
  TransferAdmin: 7,
  MakeAdminLess: 8,
  SetDevices: 9,
  Rejoin: 10,
} as const;
export type GroupOpType = (typeof GroupOpType)[keyof typeof GroupOpType];

/** A member as an operation lists it: account public key and device signing public keys (ascending, unique). */
export interface GroupMemberEntry {
  readonly account: Uint8Array;
  readonly devices: readonly Uint8Array[];
}

export type GroupOpBody =
  | { readonly type: 'create'; readonly name: string; readonly policy: GroupPolicy; readonly members: readonly GroupMemberEntry[] }
  | { readonly type: 'add'; readonly member: GroupMemberEntry }
  | { readonly type: 'kick'; readonly account: Uint8Array }
  | { readonly type: 'leave' }
  | { readonly type: 'rename'; readonly name: string }
  | { readonly type: 'promote'; readonly account: Uint8Array }
  | { readonly type: 'transferAdmin'; readonly account: Uint8Array }
  | { readonly type: 'makeAdminLess' }
  | { readonly type: 'setDevices'; readonly devices: readonly Uint8Array[] }
  /**
   * Set devices authorized by the ACCOUNT key (§G4.4): how a device restored from the archive, with
   * none of its account's old devices, takes its account's place back. `accountSignature` is filled
   * in by decoding; to sign one, pass `accountSigner` to signGroupOperation / proposeGroupOperation.
   */
  | { readonly type: 'rejoin'; readonly devices: readonly Uint8Array[]; readonly accountSignature?: Uint8Array };

/** A decoded, signature-checked control operation. */
export interface GroupOperation {
  /** SHA-256 of `encoded`. */
  readonly id: Uint8Array;
  readonly groupId: Uint8Array;
  readonly authorAccount: Uint8Array;
  readonly authorDevice: Uint8Array;
  /** Author's clock, ms: display only, never used for ordering or authorization. */
  readonly time: number;
  /** Ids of the operations the author had last seen (ascending, unique); empty only for create. */
  readonly parents: readonly Uint8Array[];
  readonly body: GroupOpBody;
  readonly encoded: Uint8Array;
}

// ── Encoding (docs/spec/groups.md §G4.1) ───────────────────────────────────────────────────────

const TYPE_OF: Record<GroupOpBody['type'], GroupOpType> = {
  create: GroupOpType.Create,
  add: GroupOpType.Add,
  kick: GroupOpType.Kick,
  leave: GroupOpType.Leave,
  rename: GroupOpType.Rename,
  promote: GroupOpType.Promote,
  transferAdmin: GroupOpType.TransferAdmin,
  makeAdminLess: GroupOpType.MakeAdminLess,
  setDevices: GroupOpType.SetDevices,
  rejoin: GroupOpType.Rejoin,
};

const compareBytes = (a: Uint8Array, b: Uint8Array): number => {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
};
const sortedUnique = (xs: readonly Uint8Array[]): Uint8Array[] => {
  const s = xs.map(copyBytes).sort(compareBytes);
  return s.filter((x, i) => i === 0 || compareBytes(s[i - 1]!, x) !== 0);
};

const utf8Fatal = new TextDecoder('utf-8', { fatal: true });

function writeName(w: ByteWriter, name: string, op: string): void {
  if (typeof name !== 'string') throw new TypeError(`${op}: name must be a string`);
  const b = utf8(name);
  if (b.length < 1 || b.length > MAX_GROUP_NAME_LENGTH) throw new RangeError(`${op}: name must be 1..${MAX_GROUP_NAME_LENGTH} UTF-8 bytes`);
  w.vec16(b);
}

function writeDevices(w: ByteWriter, devices: readonly Uint8Array[], op: string): void {
  const d = sortedUnique(devices);
  if (d.length < 1 || d.length > MAX_GROUP_MEMBER_DEVICES) throw new RangeError(`${op}: a member lists 1..${MAX_GROUP_MEMBER_DEVICES} devices`);
  w.u8(d.length);
  for (const x of d) {
    assertBytes(x, op, 'device', ED25519_KEY_LENGTH);
    w.bytes(x);
  }
}

function writeMember(w: ByteWriter, m: GroupMemberEntry, op: string): void {
  assertBytes(m.account, op, 'member account', ED25519_KEY_LENGTH);
  w.bytes(m.account);
  writeDevices(w, m.devices, op);
}

function encodeBody(w: ByteWriter, body: GroupOpBody, op: string): void {
  const type = TYPE_OF[body.type];
  if (type === undefined) throw new TypeError(`${op}: unknown operation type`);
  w.u8(type);
  switch (body.type) {
    case 'create': {
      if (body.policy !== GroupPolicy.Admins && body.policy !== GroupPolicy.AdminLess) throw new RangeError(`${op}: unknown policy`);
      w.u8(body.policy);
      writeName(w, body.name, op);
      const ms = [...body.members].sort((a, b) => compareBytes(a.account, b.account));
      if (ms.length < 1 || ms.length > MAX_GROUP_MEMBERS) throw new RangeError(`${op}: a group has 1..${MAX_GROUP_MEMBERS} members`);
      for (let i = 1; i < ms.length; i++) if (compareBytes(ms[i - 1]!.account, ms[i]!.account) === 0) throw new RangeError(`${op}: member listed twice`);
      w.u16(ms.length);
      for (const m of ms) writeMember(w, m, op);
      return;
    }
    case 'add':
      return void writeMember(w, body.member, op);
    case 'kick':
    case 'promote':
    case 'transferAdmin':
      assertBytes(body.account, op, 'account', ED25519_KEY_LENGTH);
      return void w.bytes(body.account);
    case 'rename':
      return writeName(w, body.name, op);
    case 'setDevices':
    case 'rejoin':
      return writeDevices(w, body.devices, op);
    case 'leave':
    case 'makeAdminLess':
      return;
  }
}

function readDevices(r: ByteReader, op: string): Uint8Array[] {
  const n = r.u8('device count');
  if (n < 1 || n > MAX_GROUP_MEMBER_DEVICES) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'device count out of range');
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const d = r.bytes(ED25519_KEY_LENGTH, 'device');
    if (i > 0 && compareBytes(out[i - 1]!, d) >= 0) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'devices not strictly ascending');
    out.push(d);
  }
  return out;
}

function readMember(r: ByteReader, op: string): GroupMemberEntry {
  return { account: r.bytes(ED25519_KEY_LENGTH, 'account'), devices: readDevices(r, op) };
}

function readName(r: ByteReader, op: string): string {
  const b = r.vec16('name', MAX_GROUP_NAME_LENGTH);
  if (b.length < 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'empty name');
  try {
    return utf8Fatal.decode(b);
  } catch {
    throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'name is not UTF-8');
  }
}

function readBody(r: ByteReader, op: string): GroupOpBody {
  const type = r.u8('type');
  switch (type) {
    case GroupOpType.Create: {
      const policy = r.u8('policy');
      if (policy !== GroupPolicy.Admins && policy !== GroupPolicy.AdminLess) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'unknown policy');
      const name = readName(r, op);
      const n = r.u16('member count');
      if (n < 1 || n > MAX_GROUP_MEMBERS) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'member count out of range');
      const members: GroupMemberEntry[] = [];
      for (let i = 0; i < n; i++) {
        const m = readMember(r, op);
        if (i > 0 && compareBytes(members[i - 1]!.account, m.account) >= 0) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'members not strictly ascending');
        members.push(m);
      }
      return { type: 'create', policy, name, members };
    }
    case GroupOpType.Add:
      return { type: 'add', member: readMember(r, op) };
    case GroupOpType.Kick:
      return { type: 'kick', account: r.bytes(ED25519_KEY_LENGTH, 'account') };
    case GroupOpType.Leave:
      return { type: 'leave' };
    case GroupOpType.Rename:
      return { type: 'rename', name: readName(r, op) };
    case GroupOpType.Promote:
      return { type: 'promote', account: r.bytes(ED25519_KEY_LENGTH, 'account') };
    case GroupOpType.TransferAdmin:
      return { type: 'transferAdmin', account: r.bytes(ED25519_KEY_LENGTH, 'account') };
    case GroupOpType.MakeAdminLess:
      return { type: 'makeAdminLess' };
    case GroupOpType.SetDevices:
      return { type: 'setDevices', devices: readDevices(r, op) };
    case GroupOpType.Rejoin:
      return { type: 'rejoin', devices: readDevices(r, op), accountSignature: r.bytes(ED25519_SIGNATURE_LENGTH, 'account signature') };
    default:
      throw new CryptoError(CryptoErrorCode.MALFORMED, op, `unknown operation type ${type}`);
  }
}

/**
 * Builds and signs one control operation. Low level: it does not check that the operation is
 * authorized (proposeGroupOperation does); receivers decide that from the DAG.
 */
export function signGroupOperation(
  ctx: CryptoContext,
  p: {
    signer: DeviceKeyPair;
    account: Uint8Array;
    groupId: Uint8Array;
    parents: readonly Uint8Array[];
    body: GroupOpBody;
    time?: number;
    /** The account key pair, required for (and only used by) a rejoin. */
    accountSigner?: AccountKeyPair;
  },
): Uint8Array {
  const op = 'signGroupOperation';
  assertBytes(p.account, op, 'account', ED25519_KEY_LENGTH);
  assertBytes(p.groupId, op, 'groupId', GROUP_ID_LENGTH);
  const parents = sortedUnique(p.parents);
  for (const x of parents) assertBytes(x, op, 'parent', 32);
  if (parents.length > MAX_GROUP_OP_PARENTS) throw new RangeError(`${op}: more than ${MAX_GROUP_OP_PARENTS} parents`);
  if ((p.body.type === 'create') !== (parents.length === 0)) throw new RangeError(`${op}: create has no parents, every other operation has some`);
  const time = p.time ?? Math.max(0, Math.floor(ctx.now()));
  const w = new ByteWriter()
    .u8(GROUP_OPERATION_VERSION)
    .bytes(p.groupId)
    .bytes(p.account)
    .bytes(p.signer.signingPublicKey)
    .u64(time)
    .u8(parents.length);
  for (const x of parents) w.bytes(x);
  encodeBody(w, p.body, op);
  if (p.body.type === 'rejoin') {
    if (!p.accountSigner || !equalBytes(p.accountSigner.publicKey, p.account)) throw new TypeError(`${op}: a rejoin is signed by the account key of its author account (accountSigner)`);
    if (!p.body.devices.some((d) => equalBytes(d, p.signer.signingPublicKey))) throw new RangeError(`${op}: a rejoin lists its author device`);
    const inner = w.finish();
    const withAccount = concatBytes(inner, p.accountSigner.sign(ctx, GroupLabel.Rejoin, inner));
    if (withAccount.length + ED25519_SIGNATURE_LENGTH > MAX_GROUP_OP_LENGTH) throw new CryptoError(CryptoErrorCode.LIMIT_EXCEEDED, op, 'operation too large');
    return concatBytes(withAccount, p.signer.sign(ctx, GroupLabel.Operation, withAccount));
  }
  const unsigned = w.finish();
  if (unsigned.length + ED25519_SIGNATURE_LENGTH > MAX_GROUP_OP_LENGTH) throw new CryptoError(CryptoErrorCode.LIMIT_EXCEEDED, op, 'operation too large');
  return concatBytes(unsigned, p.signer.sign(ctx, GroupLabel.Operation, unsigned));
}

/** Decodes and verifies the signature of one operation (MALFORMED, UNSUPPORTED_VERSION, BAD_SIGNATURE, LIMIT_EXCEEDED). */
export function decodeGroupOperation(ctx: CryptoContext, encoded: Uint8Array): GroupOperation {
  const op = 'decodeGroupOperation';
  assertBytes(encoded, op, 'encoded');
  if (encoded.length > MAX_GROUP_OP_LENGTH) throw new CryptoError(CryptoErrorCode.LIMIT_EXCEEDED, op, 'operation too large');
  const r = new ByteReader(encoded, op);
  const v = r.u8('version');
  if (v !== GROUP_OPERATION_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `operation version ${v}`);
  const groupId = r.bytes(GROUP_ID_LENGTH, 'group id');
  const authorAccount = r.bytes(ED25519_KEY_LENGTH, 'author account');
  const authorDevice = r.bytes(ED25519_KEY_LENGTH, 'author device');
  const time = r.u64('time');
  const np = r.u8('parent count');
  if (np > MAX_GROUP_OP_PARENTS) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'too many parents');
  const parents: Uint8Array[] = [];
  for (let i = 0; i < np; i++) {
    const x = r.bytes(32, 'parent');
    if (i > 0 && compareBytes(parents[i - 1]!, x) >= 0) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'parents not strictly ascending');
    parents.push(x);
  }
  const bodyStart = encoded.length - r.remaining;
  const body = readBody(r, op);
  if ((body.type === 'create') !== (np === 0)) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'create has no parents, every other operation has some');
  const end = encoded.length - ED25519_SIGNATURE_LENGTH;
  if (r.remaining !== ED25519_SIGNATURE_LENGTH) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'missing or trailing bytes');
  if (!ctx.backend.ed25519Verify(authorDevice, signedMessage(GroupLabel.Operation, encoded.subarray(0, end)), encoded.subarray(end))) {
    throw new CryptoError(CryptoErrorCode.BAD_SIGNATURE, op, 'operation signature does not verify for its author device');
  }
  if (body.type === 'rejoin') {
    if (!body.devices.some((d) => equalBytes(d, authorDevice))) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'a rejoin does not list its author device');
    const accountSigned = end - ED25519_SIGNATURE_LENGTH;
    if (accountSigned < bodyStart || !ctx.backend.ed25519Verify(authorAccount, signedMessage(GroupLabel.Rejoin, encoded.subarray(0, accountSigned)), body.accountSignature!)) {
      throw new CryptoError(CryptoErrorCode.BAD_SIGNATURE, op, 'rejoin: the account signature does not verify for its author account');
    }
  }
  return { id: ctx.backend.sha256(encoded), groupId, authorAccount, authorDevice, time, parents, body, encoded: copyBytes(encoded) };
}

// ── State and the fold (docs/spec/groups.md §G4.3–G4.5) ────────────────────────────────────────

export interface GroupMemberState {
  readonly account: Uint8Array;
  /** Device signing public keys, ascending. */
  readonly devices: readonly Uint8Array[];
  readonly admin: boolean;
}

export interface GroupState {
  readonly groupId: Uint8Array;
  /** Id of the create operation: with the group id, it names the group. */
  readonly rootId: Uint8Array;
  readonly name: string;
  readonly policy: GroupPolicy;
  /** Ascending by account. Empty once the last member has left. */
  readonly members: readonly GroupMemberState[];
  /** Operations held (connected to the root). Grows with every new operation; equal on devices that hold the same set. */
  readonly version: number;
  /** Operations no other held operation names as a parent, ascending: the parents of the next proposal. */
  readonly heads: readonly Uint8Array[];
  /** SHA-256 of the canonical encoding of (group id, name, policy, members with devices and admin flags). */
  readonly digest: Uint8Array;
}

/** Typed changes between two states of one group, for the app (docs/spec/groups.md §G4.7). */
export type GroupEvent =
  | { readonly type: 'memberAdded'; readonly account: Uint8Array }
  | { readonly type: 'memberRemoved'; readonly account: Uint8Array }
  | { readonly type: 'devicesChanged'; readonly account: Uint8Array }
  | { readonly type: 'renamed'; readonly name: string }
  | { readonly type: 'adminGranted'; readonly account: Uint8Array }
  | { readonly type: 'adminRevoked'; readonly account: Uint8Array }
  | { readonly type: 'policyChanged'; readonly policy: GroupPolicy };

interface Node {
  readonly op: GroupOperation;
  readonly hex: string;
  readonly index: number;
  readonly depth: number;
  /** Indices of all strict ancestors. */
  readonly ancestors: ReadonlySet<number>;
}

interface MemberAcc {
  account: Uint8Array;
  devices: Map<string, Uint8Array>;
  admin: boolean;
  /** (position in the fold, position in its operation): the successor rule picks the smallest. */
  joined: [number, number];
}

interface FoldAcc {
  name: string;
  policy: GroupPolicy;
  members: Map<string, MemberAcc>;
}

const isRemoval = (b: GroupOpBody): boolean => b.type === 'kick' || b.type === 'leave' || b.type === 'setDevices' || b.type === 'rejoin';

/** Does removal `r` remove the author of `o` (account for kick/leave, that device for setDevices)? */
function removesAuthorOf(r: GroupOperation, o: GroupOperation): boolean {
  switch (r.body.type) {
    case 'kick':
      return equalBytes(r.body.account, o.authorAccount);
    case 'leave':
      return equalBytes(r.authorAccount, o.authorAccount);
    case 'setDevices':
    case 'rejoin':
      return equalBytes(r.authorAccount, o.authorAccount) && !r.body.devices.some((d) => equalBytes(d, o.authorDevice));
    default:
      return false;
  }
}

class Dag {
  readonly nodes: Node[] = [];
  readonly byHex = new Map<string, Node>();
  /** Removal operations (kick, leave, setDevices) by index. */
  readonly removals: Node[] = [];
  readonly effective = new Map<number, boolean>();

  add(op: GroupOperation): Node {
    const parents = op.parents.map((p) => this.byHex.get(toHex(p))!);
    const ancestors = new Set<number>();
    let depth = 0;
    for (const p of parents) {
      ancestors.add(p.index);
      for (const a of p.ancestors) ancestors.add(a);
      depth = Math.max(depth, p.depth + 1);
    }
    const node: Node = { op, hex: toHex(op.id), index: this.nodes.length, depth, ancestors };
    this.nodes.push(node);
    this.byHex.set(node.hex, node);
    if (isRemoval(op.body)) this.removals.push(node);
    return node;
  }

  clone(): Dag {
    const d = new Dag();
    d.nodes.push(...this.nodes);
    for (const [k, v] of this.byHex) d.byHex.set(k, v);
    d.removals.push(...this.removals);
    for (const [k, v] of this.effective) d.effective.set(k, v);
    return d;
  }

  /** The total order of §4.3: depth ascending, then id ascending (bytewise). */
  ordered(members: Iterable<Node>): Node[] {
    return [...members].sort((a, b) => a.depth - b.depth || compareBytes(a.op.id, b.op.id));
  }

  concurrent(a: Node, b: Node): boolean {
    return a !== b && !a.ancestors.has(b.index) && !b.ancestors.has(a.index);
  }

  /** A removal is effective if it takes effect in the fold of its own causal past (§4.4). */
  isEffective(r: Node): boolean {
    let e = this.effective.get(r.index);
    if (e === undefined) {
      const set = [...r.ancestors].map((i) => this.nodes[i]!);
      set.push(r);
      e = this.fold(set).applied.has(r.index);
      this.effective.set(r.index, e);
    }
    return e;
  }

  fold(set: Node[]): { acc: FoldAcc; applied: Set<number> } {
    const inSet = new Set(set.map((n) => n.index));
    const order = this.ordered(set);
    const acc: FoldAcc = { name: '', policy: GroupPolicy.Admins, members: new Map() };
    const applied = new Set<number>();
    order.forEach((n, pos) => {
      if (this.step(acc, n, pos, inSet)) applied.add(n.index);
      successorRule(acc);
    });
    return { acc, applied };
  }

  /** Applies `n` to `acc` if authorized; returns whether it was. */
  private step(acc: FoldAcc, n: Node, pos: number, inSet: ReadonlySet<number>): boolean {
    const o = n.op;
    const b = o.body;
    if (b.type === 'create') {
      if (n.index !== 0) return false;
      acc.name = b.name;
      acc.policy = b.policy;
      b.members.forEach((m, i) => acc.members.set(toHex(m.account), { account: m.account, devices: deviceMap(m.devices), admin: false, joined: [pos, i] }));
      const author = acc.members.get(toHex(o.authorAccount));
      if (!author || !author.devices.has(toHex(o.authorDevice))) {
        acc.members.clear();
        return false;
      }
      if (b.policy === GroupPolicy.Admins) author.admin = true;
      return true;
    }
    const me = acc.members.get(toHex(o.authorAccount));
    // A rejoin is authorized by its account signature (checked when decoding): the author account
    // must be a member, its device need not be one yet.
    if (!me || (b.type !== 'rejoin' && !me.devices.has(toHex(o.authorDevice)))) return false;
    // Removal wins (§4.4). A leave is exempt: leaving from two devices at once must still leave.
    for (const r of b.type === 'leave' ? [] : this.removals) {
      if (inSet.has(r.index) && this.concurrent(r, n) && removesAuthorOf(r.op, o) && this.isEffective(r)) return false;
    }
    const admins = acc.policy === GroupPolicy.Admins;
    const mayManage = admins ? me.admin : true;
    switch (b.type) {
      case 'add': {
        if (!mayManage || acc.members.has(toHex(b.member.account)) || acc.members.size >= MAX_GROUP_MEMBERS) return false;
        for (const m of acc.members.values()) for (const d of b.member.devices) if (m.devices.has(toHex(d))) return false;
        acc.members.set(toHex(b.member.account), { account: b.member.account, devices: deviceMap(b.member.devices), admin: false, joined: [pos, 0] });
        return true;
      }
      case 'kick': {
        const target = acc.members.get(toHex(b.account));
        if (!admins || !me.admin || !target || target === me) return false;
        acc.members.delete(toHex(b.account));
        return true;
      }
      case 'leave':
        acc.members.delete(toHex(o.authorAccount));
        return true;
      case 'rename':
        if (!mayManage) return false;
        acc.name = b.name;
        return true;
      case 'promote':
      case 'transferAdmin': {
        const target = acc.members.get(toHex(b.account));
        if (!admins || !me.admin || !target || target.admin) return false;
        target.admin = true;
        if (b.type === 'transferAdmin') me.admin = false;
        return true;
      }
      case 'makeAdminLess':
        if (!admins || !me.admin) return false;
        acc.policy = GroupPolicy.AdminLess;
        for (const m of acc.members.values()) m.admin = false;
        return true;
      case 'setDevices':
      case 'rejoin': {
        for (const m of acc.members.values()) {
          if (m === me) continue;
          for (const d of b.devices) if (m.devices.has(toHex(d))) return false;
        }
        me.devices = deviceMap(b.devices);
        return true;
      }
    }
  }
}

function deviceMap(devices: readonly Uint8Array[]): Map<string, Uint8Array> {
  return new Map(devices.map((d) => [toHex(d), d]));
}

/** §4.5: an admin-ful group with members and no admin makes its longest-standing member admin. */
function successorRule(acc: FoldAcc): void {
  if (acc.policy !== GroupPolicy.Admins || acc.members.size === 0) return;
  let best: MemberAcc | undefined;
  for (const m of acc.members.values()) {
    if (m.admin) return;
    if (!best || m.joined[0] < best.joined[0] || (m.joined[0] === best.joined[0] && m.joined[1] < best.joined[1])) best = m;
  }
  best!.admin = true;
}

function stateOf(ctx: CryptoContext, dag: Dag, acc: FoldAcc): GroupState {
  const root = dag.nodes[0]!.op;
  const members = [...acc.members.values()]
    .sort((a, b) => compareBytes(a.account, b.account))
    .map((m) => ({ account: m.account, devices: [...m.devices.values()].sort(compareBytes), admin: m.admin }));
  const named = new Set<number>();
  for (const n of dag.nodes) for (const p of n.op.parents) named.add(dag.byHex.get(toHex(p))!.index);
  const heads = dag.nodes.filter((n) => !named.has(n.index)).map((n) => n.op.id).sort(compareBytes);
  const w = new ByteWriter().bytes(root.groupId).u8(acc.policy);
  w.vec16(utf8(acc.name)).u16(members.length);
  for (const m of members) {
    w.bytes(m.account).u8(m.admin ? 1 : 0).u8(m.devices.length);
    for (const d of m.devices) w.bytes(d);
  }
  const digest = ctx.backend.sha256(signedMessage(GroupLabel.StateDigest, w.finish()));
  return Object.freeze({ groupId: root.groupId, rootId: root.id, name: acc.name, policy: acc.policy, members: Object.freeze(members), version: dag.nodes.length, heads: Object.freeze(heads), digest });
}

// ── The log ────────────────────────────────────────────────────────────────────────────────────

let dagOf: (log: unknown, op: string) => { dag: Dag; pending: ReadonlyMap<string, GroupOperation> };
let makeLog: (ctx: CryptoContext, dag: Dag, pending: ReadonlyMap<string, GroupOperation>) => GroupLog;

/**
 * Every control operation of one group that this device holds, and the state they determine.
 * Immutable. Operations whose parents have not arrived yet wait in a bounded buffer
 * (MAX_PENDING_GROUP_OPS) and join as soon as they connect.
 */
export class GroupLog extends _Redacted {
  readonly #dag: Dag;
  readonly #pending: ReadonlyMap<string, GroupOperation>;
  readonly state: GroupState;
  /** Indices of the operations that took effect in `state` (for `operationTookEffect`). */
  readonly #applied: ReadonlySet<number>;
  private constructor(ctx: CryptoContext, dag: Dag, pending: ReadonlyMap<string, GroupOperation>) {
    super();
    this.#dag = dag;
    this.#pending = pending;
    const { acc, applied } = dag.fold(dag.nodes);
    this.#applied = applied;
    this.state = stateOf(ctx, dag, acc);
  }
  static {
    dagOf = (log, op) => {
      if (typeof log !== 'object' || log === null || !(#dag in log)) throw new TypeError(`${op}: expected a GroupLog`);
      return { dag: (log as GroupLog).#dag, pending: (log as GroupLog).#pending };
    };
    makeLog = (ctx, dag, pending) => new GroupLog(ctx, dag, pending);
  }
  /** Operations waiting for their parents. */
  get pendingCount(): number {
    return this.#pending.size;
  }
  /** Whether the held operation `id` took effect (false: unauthorized, suppressed, or not held). */
  operationTookEffect(id: Uint8Array): boolean {
    const n = this.#dag.byHex.get(toHex(id));
    return n !== undefined && this.#applied.has(n.index);
  }
  /** The encoded operations held, in the total order (what a device replays to a member who lacks them). */
  operations(): Uint8Array[] {
    return this.#dag.ordered(this.#dag.nodes).map((n) => copyBytes(n.op.encoded));
  }
  /**
   * What to pass on (docs/spec/groups.md §G6.2): an operation `a` that lists devices (add, set
   * devices, rejoin) and an operation `o` concurrent with it were each sent by their authors to the
   * member devices THEY knew — the devices `a` lists got neither `o` from its author nor from `a`'s
   * author (who sent them the log as it knew it). For every such `a` with at least one concurrent
   * operation, where `a` or one of those is not held by `before` (new here) and `a` or one of those
   * is authored by `device`: `a`'s id, the account and devices it lists, and the operations held
   * concurrent with it (encoded, in the total order).
   */
  concurrentWithListings(before: GroupLog | undefined, device: Uint8Array): { operation: Uint8Array; account: Uint8Array; devices: Uint8Array[]; concurrent: Uint8Array[] }[] {
    const dag = this.#dag;
    const old = before ? before.#dag.byHex : undefined;
    const fresh = (n: Node): boolean => !old?.has(n.hex);
    const mine = (n: Node): boolean => equalBytes(n.op.authorDevice, device);
    const out: { operation: Uint8Array; account: Uint8Array; devices: Uint8Array[]; concurrent: Uint8Array[] }[] = [];
    const freshNodes = dag.nodes.filter(fresh);
    // Nothing new, or nothing of ours (a device that just joined): nothing to pass on.
    if (freshNodes.length === 0 || !dag.nodes.some(mine)) return out;
    for (const a of dag.nodes) {
      const b = a.op.body;
      const devices = b.type === 'add' ? b.member.devices : b.type === 'setDevices' || b.type === 'rejoin' ? b.devices : undefined;
      if (!devices) continue;
      // Pairs with a new operation only: an old `a` is checked against the new operations alone.
      if (!(fresh(a) ? dag.nodes : freshNodes).some((o) => dag.concurrent(a, o))) continue;
      const concurrent = dag.nodes.filter((o) => dag.concurrent(a, o));
      if (!mine(a) && !concurrent.some(mine)) continue;
      const account = b.type === 'add' ? b.member.account : a.op.authorAccount;
      out.push({ operation: copyBytes(a.op.id), account: copyBytes(account), devices: devices.map(copyBytes), concurrent: dag.ordered(concurrent).map((n) => copyBytes(n.op.encoded)) });
    }
    return out;
  }
  protected describe(): Record<string, unknown> {
    return { groupId: toHex(this.state.groupId), version: this.state.version, members: this.state.members.length, pending: this.#pending.size };
  }
}

/** Typed events from `before` to `after`, and whether any device left the group (then every remaining device rotates its sender key). */
export function diffGroupStates(before: GroupState | undefined, after: GroupState): { events: GroupEvent[]; requiresRekey: boolean } {
  // Both member lists are ascending by account and each member's devices ascending (stateOf): one
  // merge pass, O(members + devices), no maps — every member device runs this for every change.
  const events: GroupEvent[] = [];
  const added: GroupEvent[] = [];
  const old = before?.members ?? [];
  const now = after.members;
  let requiresRekey = false;
  if (before && before.name !== after.name) events.push({ type: 'renamed', name: after.name });
  if (before && before.policy !== after.policy) events.push({ type: 'policyChanged', policy: after.policy });
  const addedMember = (n: GroupMemberState): void => {
    added.push({ type: 'memberAdded', account: n.account });
    if (n.admin && before) added.push({ type: 'adminGranted', account: n.account });
  };
  let j = 0;
  for (const m of old) {
    while (j < now.length && compareBytes(now[j]!.account, m.account) < 0) addedMember(now[j++]!);
    const n = j < now.length && equalBytes(now[j]!.account, m.account) ? now[j++] : undefined;
    if (!n) {
      events.push({ type: 'memberRemoved', account: m.account });
      requiresRekey = true;
      continue;
    }
    const d = compareDevices(m.devices, n.devices);
    if (d.removed) requiresRekey = true;
    if (d.changed) events.push({ type: 'devicesChanged', account: m.account });
    if (m.admin !== n.admin) events.push({ type: n.admin ? 'adminGranted' : 'adminRevoked', account: m.account });
  }
  while (j < now.length) addedMember(now[j++]!);
  events.push(...added);
  return { events, requiresRekey };
}

/** Two ascending device lists: whether they differ, and whether a device of `a` is missing from `b`. */
function compareDevices(a: readonly Uint8Array[], b: readonly Uint8Array[]): { changed: boolean; removed: boolean } {
  if (a.length === b.length && a.every((d, i) => equalBytes(d, b[i]!))) return { changed: false, removed: false };
  let j = 0;
  for (const d of a) {
    while (j < b.length && compareBytes(b[j]!, d) < 0) j++;
    if (j >= b.length || !equalBytes(b[j]!, d)) return { changed: true, removed: true };
    j++;
  }
  return { changed: true, removed: false };
}

/**
 * Creates a group: signs the create operation (parents: none) and returns the log holding it.
 * `members` are the other initial members (accounts with devices); the author is added with
 * `authorDevices` (default: the signer alone). The group id is 32 bytes from ctx.random unless given.
 */
export function createGroup(
  ctx: CryptoContext,
  p: {
    signer: DeviceKeyPair;
    account: Uint8Array;
    name: string;
    policy?: GroupPolicy;
    members?: readonly GroupMemberEntry[];
    authorDevices?: readonly Uint8Array[];
    groupId?: Uint8Array;
  },
): { log: GroupLog; operation: Uint8Array } {
  const groupId = p.groupId ? copyBytes(p.groupId) : copyBytes(ctx.random(GROUP_ID_LENGTH));
  const me: GroupMemberEntry = { account: p.account, devices: p.authorDevices ?? [p.signer.signingPublicKey] };
  const operation = signGroupOperation(ctx, {
    signer: p.signer,
    account: p.account,
    groupId,
    parents: [],
    body: { type: 'create', name: p.name, policy: p.policy ?? GroupPolicy.Admins, members: [me, ...(p.members ?? [])] },
  });
  return { log: openGroup(ctx, operation), operation };
}

/**
 * A log holding only the group's create operation (how an invited device starts: the invite
 * carries the create operation; the rest arrive as operations). GROUP_NOT_AUTHORIZED if the create
 * operation does not list its own author device.
 */
export function openGroup(ctx: CryptoContext, createOperation: Uint8Array): GroupLog {
  const op = 'openGroup';
  const o = decodeGroupOperation(ctx, createOperation);
  if (o.body.type !== 'create') throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'the root of a group is its create operation');
  const dag = new Dag();
  dag.add(o);
  const log = makeLog(ctx, dag, new Map());
  if (!log.operationTookEffect(o.id)) throw new CryptoError(CryptoErrorCode.GROUP_NOT_AUTHORIZED, op, 'the create operation does not list its author device');
  return log;
}

export type GroupOperationStatus = 'accepted' | 'duplicate' | 'pending';

/**
 * Adds a received operation. Checks: decoding and signature (MALFORMED, BAD_SIGNATURE, …); the group
 * (GROUP_MISMATCH); a second create (MALFORMED); an author device named by no operation among its
 * ancestors — someone who was never a member device (GROUP_NOT_AUTHORIZED, not stored). An operation
 * whose parents are missing waits ('pending'; LIMIT_EXCEEDED when the buffer is full). An accepted
 * operation may still have no effect (unauthorized at its place in the order): that is part of the
 * state, identical on every device, and `tookEffect` says so.
 */
export function receiveGroupOperation(
  ctx: CryptoContext,
  log: GroupLog,
  encoded: Uint8Array,
): { log: GroupLog; status: GroupOperationStatus; tookEffect: boolean; events: GroupEvent[]; requiresRekey: boolean } {
  const opName = 'receiveGroupOperation';
  const { dag, pending } = dagOf(log, opName);
  const o = decodeGroupOperation(ctx, encoded);
  const root = dag.nodes[0]!.op;
  if (!equalBytes(o.groupId, root.groupId)) throw new CryptoError(CryptoErrorCode.GROUP_MISMATCH, opName, 'operation is for another group');
  const hex = toHex(o.id);
  const unchanged = { log, tookEffect: log.operationTookEffect(o.id), events: [], requiresRekey: false };
  if (dag.byHex.has(hex)) return { ...unchanged, status: 'duplicate' };
  if (pending.has(hex)) return { ...unchanged, status: 'pending' };
  if (o.body.type === 'create') throw new CryptoError(CryptoErrorCode.MALFORMED, opName, 'a group has exactly one create operation');
  if (!o.parents.every((p) => dag.byHex.has(toHex(p)))) {
    if (pending.size >= MAX_PENDING_GROUP_OPS) throw new CryptoError(CryptoErrorCode.LIMIT_EXCEEDED, opName, 'too many operations waiting for their parents');
    const next = new Map(pending);
    next.set(hex, o);
    return { log: makeLog(ctx, dag, next), status: 'pending', tookEffect: false, events: [], requiresRekey: false };
  }
  const next = dag.clone();
  connect(next, o, opName);
  // Pending operations whose parents are now all present join, repeatedly; ones from never-member devices are dropped.
  const rest = new Map(pending);
  for (let progress = true; progress; ) {
    progress = false;
    for (const [k, q] of rest) {
      if (!q.parents.every((p) => next.byHex.has(toHex(p)))) continue;
      rest.delete(k);
      progress = true;
      try {
        connect(next, q, opName);
      } catch (e) {
        if (!(e instanceof CryptoError)) throw e;
      }
    }
  }
  const out = makeLog(ctx, next, rest);
  const diff = diffGroupStates(log.state, out.state);
  return { log: out, status: 'accepted', tookEffect: out.operationTookEffect(o.id), ...diff };
}

function connect(dag: Dag, o: GroupOperation, opName: string): void {
  const probe = { index: -1, ancestors: new Set<number>() };
  for (const p of o.parents) {
    const n = dag.byHex.get(toHex(p))!;
    probe.ancestors.add(n.index);
    for (const a of n.ancestors) probe.ancestors.add(a);
  }
  const dev = o.authorDevice;
  const listed = [...probe.ancestors].some((i) => {
    const b = dag.nodes[i]!.op.body;
    if (b.type === 'create') return b.members.some((m) => m.devices.some((d) => equalBytes(d, dev)));
    if (b.type === 'add') return b.member.devices.some((d) => equalBytes(d, dev));
    if (b.type === 'setDevices' || b.type === 'rejoin') return b.devices.some((d) => equalBytes(d, dev));
    return false;
  });
  // A rejoin's author device may be new to the group: its account signature authorizes it (§G4.2).
  if (!listed && o.body.type !== 'rejoin') throw new CryptoError(CryptoErrorCode.GROUP_NOT_AUTHORIZED, opName, 'the author device was never a member device of this group');
  dag.add(o);
}

/**
 * Signs `body` as this device with the current heads as parents, and adds it. GROUP_NOT_AUTHORIZED
 * (nothing changes) if it would not take effect — not a member, not an admin where one is needed,
 * a kick in an admin-less group, adding a member already there, …
 */
export function proposeGroupOperation(
  ctx: CryptoContext,
  log: GroupLog,
  p: { signer: DeviceKeyPair; account: Uint8Array; body: GroupOpBody; accountSigner?: AccountKeyPair },
): { log: GroupLog; operation: Uint8Array; events: GroupEvent[]; requiresRekey: boolean } {
  const opName = 'proposeGroupOperation';
  dagOf(log, opName);
  if (p.body.type === 'create') throw new TypeError(`${opName}: use createGroup`);
  const operation = signGroupOperation(ctx, { signer: p.signer, account: p.account, groupId: log.state.groupId, parents: log.state.heads, body: p.body, ...(p.accountSigner ? { accountSigner: p.accountSigner } : {}) });
  let r: ReturnType<typeof receiveGroupOperation>;
  try {
    r = receiveGroupOperation(ctx, log, operation);
  } catch (e) {
    if (e instanceof CryptoError && e.code === CryptoErrorCode.GROUP_NOT_AUTHORIZED) throw new CryptoError(e.code, opName, 'this device is not a member device of the group');
    throw e;
  }
  if (!r.tookEffect) throw new CryptoError(CryptoErrorCode.GROUP_NOT_AUTHORIZED, opName, `${p.body.type} is not allowed for this member in the group's current state`);
  return { log: r.log, operation, events: r.events, requiresRekey: r.requiresRekey };
}

// ── Storage (docs/spec/groups.md §G4.8) ────────────────────────────────────────────────────────

/** Storage format version of a serialized GroupLog. */
export const GROUP_LOG_STORAGE_VERSION = 1;

/** version ‖ u32 n ‖ n × vec32(operation) (root first, then the held ones in order) ‖ u32 m ‖ m × vec32(pending). */
export function serializeGroupLog(log: GroupLog): Uint8Array {
  const { dag, pending } = dagOf(log, 'serializeGroupLog');
  const ops = dag.ordered(dag.nodes);
  const w = new ByteWriter().u8(GROUP_LOG_STORAGE_VERSION).u32(ops.length);
  for (const n of ops) w.vec32(n.op.encoded);
  w.u32(pending.size);
  for (const o of pending.values()) w.vec32(o.encoded);
  return w.finish();
}

/** Rebuilds a log, re-verifying every operation (the bytes come from storage, which may be corrupt). */
export function deserializeGroupLog(ctx: CryptoContext, bytes: Uint8Array): GroupLog {
  const op = 'deserializeGroupLog';
  assertBytes(bytes, op, 'bytes');
  const r = new ByteReader(bytes, op);
  const v = r.u8('version');
  if (v !== GROUP_LOG_STORAGE_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `storage version ${v}`);
  const n = r.u32('count');
  if (n < 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'no create operation');
  const rootLog = openGroup(ctx, r.vec32('operation', MAX_GROUP_OP_LENGTH));
  // One fold at the end, not one per operation: stored operations come parents first.
  const dag = dagOf(rootLog, op).dag.clone();
  for (let i = 1; i < n; i++) {
    const o = decodeGroupOperation(ctx, r.vec32('operation', MAX_GROUP_OP_LENGTH));
    if (!equalBytes(o.groupId, dag.nodes[0]!.op.groupId)) throw new CryptoError(CryptoErrorCode.GROUP_MISMATCH, op, 'stored operation of another group');
    if (o.body.type === 'create' || dag.byHex.has(toHex(o.id)) || !o.parents.every((p) => dag.byHex.has(toHex(p)))) {
      throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'stored operations out of order or repeated');
    }
    connect(dag, o, op);
  }
  let log = makeLog(ctx, dag, new Map());
  const m = r.u32('pending count');
  if (m > MAX_PENDING_GROUP_OPS) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'too many pending operations');
  for (let i = 0; i < m; i++) log = receiveGroupOperation(ctx, log, r.vec32('operation', MAX_GROUP_OP_LENGTH)).log;
  r.finish();
  return log;
}

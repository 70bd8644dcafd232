/**
 * Device authority (docs/spec/02-keys.md §2.5–2.8): the account-signed device list, the succession
 * record that replaces a lost account key, and the account-deletion statement.
 *
 * The device list is the only way a device joins or leaves an account. It is signed by the account
 * key and carries a monotonic epoch: every change makes a list with a higher epoch, and everyone
 * who has seen epoch e refuses anything older (STALE_DEVICE_LIST). A device that is not on the
 * current list cannot speak as the account (DEVICE_NOT_LISTED), whatever certificate it holds.
 *
 * Custody: only "manager" devices (flag in the list) hold the account private key; they sign list
 * updates and certificates. Other devices hold only their own keys. A list may commit to a
 * successor key kept offline (e.g. in the recovery archive): if every manager is lost, a record
 * signed by that key names the new account key.
 *
 * Pure: no I/O. Who fetches which list from where is the SDK's and node's business.
 */
import { concatBytes, copyBytes, equalBytes, utf8 } from './bytes.js';
import { CERTIFICATE_VERSION, ED25519_SIGNATURE_LENGTH, MAX_DEVICE_LIST_ENTRIES, MAX_DEVICE_LIST_EXTENSIONS_LENGTH } from './constants.js';
import type { CryptoContext } from './context.js';
import { ByteReader, ByteWriter } from './encoding.js';
import { CryptoError, CryptoErrorCode, assertBytes } from './errors.js';
import type { AccountKeyPair, DeviceCertificate } from './keys.js';
import { KeyType, SignatureLabel, checkExtensions, encodePublicKey, readPublicKey, signedMessage } from './keys.js';

/** Flags of one device-list entry. */
export const DeviceFlag = {
  /** Holds the account key: may sign device lists and certificates (and delete the account). */
  Manager: 1 << 0,
} as const;

export interface DeviceListEntry {
  /** u32, unique in the list, never reused for another key within the account. */
  readonly deviceIndex: number;
  /** The device's Ed25519 signing key (its mailbox id derives from it). */
  readonly signingKey: Uint8Array;
  /** DeviceFlag bits. */
  readonly flags: number;
}

export interface DeviceList {
  readonly version: number;
  readonly accountKey: Uint8Array;
  /** u64 ≥ 1, strictly increasing with every change. */
  readonly epoch: number;
  readonly issuedAt: number;
  /** SHA-256 commitment to the successor key (successorCommitment()), if the account keeps one. */
  readonly successorCommitment?: Uint8Array | undefined;
  /**
   * u32 high-water mark: every listed index is below it, it never decreases, and a device that
   * joins gets an index at or above the previous list's value — so a revoked device's index is
   * never given to another key, even once it has left the list.
   */
  readonly nextDeviceIndex: number;
  /** Ascending by deviceIndex, 1..MAX_DEVICE_LIST_ENTRIES entries. */
  readonly devices: readonly DeviceListEntry[];
  readonly extensions: Uint8Array;
  readonly signature: Uint8Array;
}

const SUCCESSOR_COMMITMENT_LABEL = 'MeshWhisper_SuccessorCommitment_v2';

/** SHA-256(label ‖ Encode(successor public key)): what a device list stores instead of the key. */
export function successorCommitment(ctx: CryptoContext, successorPublicKey: Uint8Array): Uint8Array {
  return ctx.backend.sha256(concatBytes(utf8(SUCCESSOR_COMMITMENT_LABEL), encodePublicKey(KeyType.Ed25519, successorPublicKey)));
}

function listBody(l: Omit<DeviceList, 'signature'>): Uint8Array {
  const w = new ByteWriter().u8(l.version).bytes(encodePublicKey(KeyType.Ed25519, l.accountKey)).u64(l.epoch).u64(l.issuedAt);
  if (l.successorCommitment) w.u8(1).bytes(l.successorCommitment);
  else w.u8(0);
  w.u32(l.nextDeviceIndex).u8(l.devices.length);
  for (const d of l.devices) w.u32(d.deviceIndex).bytes(encodePublicKey(KeyType.Ed25519, d.signingKey)).u8(d.flags);
  return w.vec16(l.extensions).finish();
}

function checkListShape(l: Omit<DeviceList, 'signature'>, op: string): void {
  if (!Number.isInteger(l.nextDeviceIndex) || l.nextDeviceIndex < 0 || l.nextDeviceIndex > 0xffffffff) {
    throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'nextDeviceIndex must be a u32');
  }
  if (!Number.isSafeInteger(l.epoch) || l.epoch < 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'device list epoch must be ≥ 1');
  if (l.devices.length < 1 || l.devices.length > MAX_DEVICE_LIST_ENTRIES) {
    throw new CryptoError(CryptoErrorCode.MALFORMED, op, `a device list names 1..${MAX_DEVICE_LIST_ENTRIES} devices, got ${l.devices.length}`);
  }
  let last = -1;
  const keys = new Set<string>();
  let managers = 0;
  for (const d of l.devices) {
    if (!Number.isInteger(d.deviceIndex) || d.deviceIndex < 0 || d.deviceIndex > 0xffffffff || d.deviceIndex <= last) {
      throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'device indices must be u32, strictly ascending');
    }
    last = d.deviceIndex;
    if (d.deviceIndex >= l.nextDeviceIndex) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'a device index is not below nextDeviceIndex');
    if (d.flags & ~DeviceFlag.Manager) throw new CryptoError(CryptoErrorCode.MALFORMED, op, `unknown device flags ${d.flags}`);
    if (d.flags & DeviceFlag.Manager) managers++;
    const k = String(d.signingKey);
    if (keys.has(k)) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'a device key appears twice');
    keys.add(k);
  }
  if (managers === 0) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'a device list names at least one manager device');
  if (l.successorCommitment && l.successorCommitment.length !== 32) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'successor commitment must be 32 bytes');
  if (l.extensions.length > MAX_DEVICE_LIST_EXTENSIONS_LENGTH) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'extension area too long');
  checkExtensions(l.extensions, op);
}

export interface IssueDeviceListParams {
  readonly epoch: number;
  /** Default: one above the highest listed index. Pass the previous list's value when it is higher. */
  readonly nextDeviceIndex?: number;
  readonly devices: readonly DeviceListEntry[];
  readonly successorCommitment?: Uint8Array | undefined;
  readonly issuedAt?: number;
  readonly extensions?: Uint8Array;
}

/** Signs a device list with the account key (held by a manager device). Entries are sorted by index. */
export function issueDeviceList(ctx: CryptoContext, account: AccountKeyPair, p: IssueDeviceListParams): DeviceList {
  const op = 'issueDeviceList';
  const devices = [...p.devices]
    .map((d) => {
      assertBytes(d.signingKey, op, 'signingKey', 32);
      return { deviceIndex: d.deviceIndex, signingKey: copyBytes(d.signingKey), flags: d.flags };
    })
    .sort((a, b) => a.deviceIndex - b.deviceIndex);
  const unsigned = {
    version: CERTIFICATE_VERSION,
    accountKey: copyBytes(account.publicKey),
    epoch: p.epoch,
    issuedAt: p.issuedAt ?? ctx.now(),
    successorCommitment: p.successorCommitment && copyBytes(p.successorCommitment),
    nextDeviceIndex: p.nextDeviceIndex ?? Math.max(0, ...devices.map((d) => d.deviceIndex + 1)),
    devices,
    extensions: copyBytes(p.extensions ?? new Uint8Array(0)),
  };
  checkListShape(unsigned, op);
  return { ...unsigned, signature: account.sign(ctx, SignatureLabel.DeviceList, listBody(unsigned)) };
}

export function encodeDeviceList(l: DeviceList): Uint8Array {
  return concatBytes(listBody(l), l.signature);
}

/** Decodes (does not verify: call verifyDeviceList). Throws CryptoError(MALFORMED | UNSUPPORTED_VERSION | INVALID_KEY). */
export function decodeDeviceList(bytes: Uint8Array): DeviceList {
  const op = 'decodeDeviceList';
  assertBytes(bytes, op, 'bytes');
  const r = new ByteReader(bytes, op);
  const version = r.u8('version');
  if (version !== CERTIFICATE_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `device list version ${version}`);
  const accountKey = readPublicKey(r, KeyType.Ed25519, op);
  const epoch = r.u64('epoch');
  const issuedAt = r.u64('issuedAt');
  const has = r.u8('successor flag');
  if (has > 1) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'successor flag must be 0 or 1');
  const commitment = has ? r.bytes(32, 'successor commitment') : undefined;
  const nextDeviceIndex = r.u32('nextDeviceIndex');
  const n = r.u8('device count');
  if (n > MAX_DEVICE_LIST_ENTRIES) throw new CryptoError(CryptoErrorCode.MALFORMED, op, `more than ${MAX_DEVICE_LIST_ENTRIES} devices`);
  const devices: DeviceListEntry[] = [];
  for (let i = 0; i < n; i++) {
    const deviceIndex = r.u32('device index');
    const signingKey = readPublicKey(r, KeyType.Ed25519, op);
    devices.push({ deviceIndex, signingKey, flags: r.u8('device flags') });
  }
  const extensions = r.vec16('extensions', MAX_DEVICE_LIST_EXTENSIONS_LENGTH);
  const signature = r.bytes(ED25519_SIGNATURE_LENGTH, 'signature');
  r.finish();
  const l = { version, accountKey, epoch, issuedAt, ...(commitment ? { successorCommitment: commitment } : {}), nextDeviceIndex, devices, extensions, signature };
  checkListShape(l, op);
  return l;
}

export interface VerifyDeviceListOptions {
  /** The list must be signed by this account key (UNTRUSTED_IDENTITY otherwise). */
  readonly expectedAccountKey?: Uint8Array | undefined;
  /**
   * The newest list the verifier already holds for this account. The new one must have a higher
   * epoch (or be byte-identical: a re-fetch), and must not give an index to a different key.
   */
  readonly previous?: DeviceList | undefined;
}

/**
 * Verifies the account signature and, against `previous`, monotonicity. Throws CryptoError:
 * UNTRUSTED_IDENTITY, BAD_SIGNATURE, STALE_DEVICE_LIST (lower epoch; same epoch with other content;
 * an index reused for another key), MALFORMED.
 */
export function verifyDeviceList(ctx: CryptoContext, l: DeviceList, options: VerifyDeviceListOptions = {}): void {
  const op = 'verifyDeviceList';
  checkListShape(l, op);
  const expected = options.expectedAccountKey ?? options.previous?.accountKey;
  if (expected && !equalBytes(expected, l.accountKey)) throw new CryptoError(CryptoErrorCode.UNTRUSTED_IDENTITY, op, 'device list is for a different account');
  if (!ctx.backend.ed25519Verify(l.accountKey, signedMessage(SignatureLabel.DeviceList, listBody(l)), l.signature)) {
    throw new CryptoError(CryptoErrorCode.BAD_SIGNATURE, op, 'account signature does not verify');
  }
  const prev = options.previous;
  if (!prev) return;
  if (l.epoch < prev.epoch) throw new CryptoError(CryptoErrorCode.STALE_DEVICE_LIST, op, `epoch ${l.epoch} is older than the known ${prev.epoch}`);
  if (l.epoch === prev.epoch) {
    if (!equalBytes(encodeDeviceList(l), encodeDeviceList(prev))) {
      throw new CryptoError(CryptoErrorCode.STALE_DEVICE_LIST, op, `two different lists for epoch ${l.epoch}`);
    }
    return;
  }
  if (l.nextDeviceIndex < prev.nextDeviceIndex) throw new CryptoError(CryptoErrorCode.STALE_DEVICE_LIST, op, 'nextDeviceIndex went down');
  for (const d of l.devices) {
    const old = prev.devices.find((p) => p.deviceIndex === d.deviceIndex);
    if (old ? !equalBytes(old.signingKey, d.signingKey) : d.deviceIndex < prev.nextDeviceIndex) {
      throw new CryptoError(CryptoErrorCode.STALE_DEVICE_LIST, op, `device index ${d.deviceIndex} reused for another key`);
    }
  }
}

/** The entry for `signingKey`, if the list names it. */
export function findListedDevice(l: DeviceList, signingKey: Uint8Array): DeviceListEntry | undefined {
  return l.devices.find((d) => equalBytes(d.signingKey, signingKey));
}

/**
 * Throws CryptoError(DEVICE_NOT_LISTED) unless the list names this certificate's device under the
 * same index, and UNTRUSTED_IDENTITY if the list belongs to another account. Does not verify either
 * signature (the caller verified both).
 */
export function assertDeviceListed(l: DeviceList, c: DeviceCertificate, operation = 'assertDeviceListed'): DeviceListEntry {
  if (!equalBytes(l.accountKey, c.accountKey)) throw new CryptoError(CryptoErrorCode.UNTRUSTED_IDENTITY, operation, 'device list and certificate name different accounts');
  const e = findListedDevice(l, c.deviceSigningKey);
  if (!e) throw new CryptoError(CryptoErrorCode.DEVICE_NOT_LISTED, operation, `device is not on the account's device list (epoch ${l.epoch})`);
  if (e.deviceIndex !== c.deviceIndex) {
    throw new CryptoError(CryptoErrorCode.DEVICE_NOT_LISTED, operation, `certificate index ${c.deviceIndex} differs from the listed ${e.deviceIndex}`);
  }
  return e;
}

// ── Succession: replacing a lost account key ─────────────────────────────────────────────────

export const SuccessionAuthority = {
  /** Signed by the old account key (the key still exists; a planned rotation). */
  OldAccountKey: 1,
  /** Signed by the successor key the old account's device list committed to (the key is lost). */
  SuccessorKey: 2,
} as const;
export type SuccessionAuthority = (typeof SuccessionAuthority)[keyof typeof SuccessionAuthority];

export interface SuccessionRecord {
  readonly version: number;
  readonly oldAccountKey: Uint8Array;
  readonly newAccountKey: Uint8Array;
  /** The epoch of the last device list under the old key; the new key's first list continues above it. */
  readonly lastEpoch: number;
  readonly issuedAt: number;
  readonly authority: SuccessionAuthority;
  /** Present iff authority = SuccessorKey. */
  readonly successorKey?: Uint8Array | undefined;
  /** By the old account key or the successor key. */
  readonly authoritySignature: Uint8Array;
  /** By the new account key: its holder consents to being named (no one can be "succeeded" into a key they do not hold). */
  readonly consentSignature: Uint8Array;
}

function successionBody(s: Omit<SuccessionRecord, 'authoritySignature' | 'consentSignature'>): Uint8Array {
  const w = new ByteWriter()
    .u8(s.version)
    .bytes(encodePublicKey(KeyType.Ed25519, s.oldAccountKey))
    .bytes(encodePublicKey(KeyType.Ed25519, s.newAccountKey))
    .u64(s.lastEpoch)
    .u64(s.issuedAt)
    .u8(s.authority);
  if (s.authority === SuccessionAuthority.SuccessorKey) w.bytes(encodePublicKey(KeyType.Ed25519, s.successorKey!));
  return w.finish();
}

/**
 * Makes a succession record. `signer` is the old account key (authority OldAccountKey) or the
 * committed successor key (authority SuccessorKey); `newAccount` signs its consent.
 */
export function issueSuccessionRecord(
  ctx: CryptoContext,
  p: { oldAccountKey: Uint8Array; newAccount: AccountKeyPair; lastEpoch: number; authority: SuccessionAuthority; signer: AccountKeyPair; issuedAt?: number },
): SuccessionRecord {
  const op = 'issueSuccessionRecord';
  assertBytes(p.oldAccountKey, op, 'oldAccountKey', 32);
  if (p.authority === SuccessionAuthority.OldAccountKey && !equalBytes(p.signer.publicKey, p.oldAccountKey)) {
    throw new CryptoError(CryptoErrorCode.INVALID_ARGUMENT, op, 'authority OldAccountKey needs the old account key as signer');
  }
  const body = {
    version: CERTIFICATE_VERSION,
    oldAccountKey: copyBytes(p.oldAccountKey),
    newAccountKey: copyBytes(p.newAccount.publicKey),
    lastEpoch: p.lastEpoch,
    issuedAt: p.issuedAt ?? ctx.now(),
    authority: p.authority,
    ...(p.authority === SuccessionAuthority.SuccessorKey ? { successorKey: copyBytes(p.signer.publicKey) } : {}),
  };
  const bytes = successionBody(body);
  return {
    ...body,
    authoritySignature: p.signer.sign(ctx, SignatureLabel.Succession, bytes),
    consentSignature: p.newAccount.sign(ctx, SignatureLabel.SuccessionConsent, bytes),
  };
}

export function encodeSuccessionRecord(s: SuccessionRecord): Uint8Array {
  return concatBytes(successionBody(s), s.authoritySignature, s.consentSignature);
}

export function decodeSuccessionRecord(bytes: Uint8Array): SuccessionRecord {
  const op = 'decodeSuccessionRecord';
  assertBytes(bytes, op, 'bytes');
  const r = new ByteReader(bytes, op);
  const version = r.u8('version');
  if (version !== CERTIFICATE_VERSION) throw new CryptoError(CryptoErrorCode.UNSUPPORTED_VERSION, op, `succession record version ${version}`);
  const oldAccountKey = readPublicKey(r, KeyType.Ed25519, op);
  const newAccountKey = readPublicKey(r, KeyType.Ed25519, op);
  const lastEpoch = r.u64('lastEpoch');
  const issuedAt = r.u64('issuedAt');
  const authority = r.u8('authority');
  if (authority !== SuccessionAuthority.OldAccountKey && authority !== SuccessionAuthority.SuccessorKey) {
    throw new CryptoError(CryptoErrorCode.MALFORMED, op, `unknown succession authority ${authority}`);
  }
  const successorKey = authority === SuccessionAuthority.SuccessorKey ? readPublicKey(r, KeyType.Ed25519, op) : undefined;
  const authoritySignature = r.bytes(ED25519_SIGNATURE_LENGTH, 'authority signature');
  const consentSignature = r.bytes(ED25519_SIGNATURE_LENGTH, 'consent signature');
  r.finish();
  return { version, oldAccountKey, newAccountKey, lastEpoch, issuedAt, authority, ...(successorKey ? { successorKey } : {}), authoritySignature, consentSignature };
}

/**
 * Verifies a succession record against the newest device list the verifier holds for the old
 * account (`lastKnownList`). Both signatures must verify; for authority SuccessorKey the successor
 * key must match that list's commitment; lastEpoch must not be below the known epoch (a record
 * made before a newer list — perhaps one that changed the commitment — is refused). Throws
 * CryptoError(UNTRUSTED_IDENTITY | BAD_SIGNATURE | STALE_DEVICE_LIST | MALFORMED).
 *
 * A verified record means "the same person, new key": apps should still tell the user (the safety
 * number changes), but need not treat it as a stranger.
 */
export function verifySuccessionRecord(ctx: CryptoContext, s: SuccessionRecord, lastKnownList: DeviceList): void {
  const op = 'verifySuccessionRecord';
  if (!equalBytes(s.oldAccountKey, lastKnownList.accountKey)) throw new CryptoError(CryptoErrorCode.UNTRUSTED_IDENTITY, op, 'record is for another account');
  if (equalBytes(s.oldAccountKey, s.newAccountKey)) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'old and new account keys are the same');
  if (s.lastEpoch < lastKnownList.epoch) throw new CryptoError(CryptoErrorCode.STALE_DEVICE_LIST, op, 'record predates the newest known device list');
  const body = successionBody(s);
  let authorityKey: Uint8Array;
  if (s.authority === SuccessionAuthority.OldAccountKey) authorityKey = s.oldAccountKey;
  else {
    if (!s.successorKey) throw new CryptoError(CryptoErrorCode.MALFORMED, op, 'missing successor key');
    if (!lastKnownList.successorCommitment || !equalBytes(successorCommitment(ctx, s.successorKey), lastKnownList.successorCommitment)) {
      throw new CryptoError(CryptoErrorCode.UNTRUSTED_IDENTITY, op, 'successor key does not match the device list commitment');
    }
    authorityKey = s.successorKey;
  }
  if (!ctx.backend.ed25519Verify(authorityKey, signedMessage(SignatureLabel.Succession, body), s.authoritySignature)) {
    throw new CryptoError(CryptoErrorCode.BAD_SIGNATURE, op, 'authority signature does not verify');
  }
  if (!ctx.backend.ed25519Verify(s.newAccountKey, signedMessage(SignatureLabel.SuccessionConsent, body), s.consentSignature)) {
    throw new CryptoError(CryptoErrorCode.BAD_SIGNATURE, op, 'consent signature does not verify');
  }
}

// ── Account deletion ─────────────────────────────────────────────────────────────────────────

/**
 * The statement a node requires to delete an account: signed by the account key, so no single
 * non-manager device (nor a thief holding one) can delete the account. It names the latest epoch
 * and a node-issued challenge, so it cannot be replayed against a re-created account or another node.
 */
export interface AccountDeletion {
  readonly accountKey: Uint8Array;
  readonly epoch: number;
  readonly challenge: Uint8Array;
  readonly signature: Uint8Array;
}

function deletionBody(d: Omit<AccountDeletion, 'signature'>): Uint8Array {
  return new ByteWriter().u8(CERTIFICATE_VERSION).bytes(encodePublicKey(KeyType.Ed25519, d.accountKey)).u64(d.epoch).vec16(d.challenge).finish();
}

export function signAccountDeletion(ctx: CryptoContext, account: AccountKeyPair, epoch: number, challenge: Uint8Array): AccountDeletion {
  assertBytes(challenge, 'signAccountDeletion', 'challenge');
  const d = { accountKey: copyBytes(account.publicKey), epoch, challenge: copyBytes(challenge) };
  return { ...d, signature: account.sign(ctx, SignatureLabel.AccountDeletion, deletionBody(d)) };
}

export function verifyAccountDeletion(ctx: CryptoContext, d: AccountDeletion): boolean {
  return ctx.backend.ed25519Verify(d.accountKey, signedMessage(SignatureLabel.AccountDeletion, deletionBody(d)), d.signature);
}

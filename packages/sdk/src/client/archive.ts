/**
 * The encrypted account archive (docs/api.md §Recovery, docs/spec/archive.md): set up on a manager
 * device, updated by compare-and-swap on the node's version, restored on a fresh device from the
 * recovery key (the default) or a passphrase.
 *
 * - Everything is sealed on the device (encryptArchive); the node stores an opaque blob and serves
 *   it only to a request signed by the archive-access key, which only the recovery secret derives.
 * - The archive carries the account key: a restored device signs the account's next device list
 *   itself, listing itself as a manager (docs/spec/archive.md §Restore). Whoever holds the recovery
 *   key or the passphrase can take the account over — which is what recovery is.
 * - An update merges this device's changes into the node's current version (archive-payload.ts)
 *   and uploads with that version as the expected one; a 409 (another device wrote meanwhile)
 *   means: fetch, merge again, retry.
 * - Restore stores everything in one transaction and the identity last, and publishes the new
 *   device list only from MeshWhisper.create; a marker says a restore is being finished. Killed
 *   anywhere, a rerun either starts over (no identity yet: nothing was published, the history
 *   import skips what it holds) or finishes (identity stored): nothing lost, nothing twice.
 */
import type { AccountKeyPair, ArchiveAccessKeyPair, ArchiveKeySource, CryptoContext, DeviceList, LocalIdentity } from '@meshwhisper/crypto';
import {
  AccountKeyPair as AccountKeys,
  ArchiveRootSecret,
  CryptoError,
  CryptoErrorCode,
  DeviceFlag,
  DeviceKeyPair,
  RecoveryKey,
  createArchiveKdfParams,
  decodeArchiveKeySource,
  decodeDeviceList,
  decryptArchive,
  encodeArchiveKeySource,
  encryptArchive,
  equalBytes,
  issueDeviceCertificate,
  issueDeviceList,
  toHex,
  verifyDeviceList,
} from '@meshwhisper/crypto';
import {
  ARCHIVE_VERSION_HEADER,
  AUTH_HEADER,
  ArchiveKeySourceRecordSchema,
  ArchiveStoredSchema,
  CONTENT_TYPE_OCTETS,
  DeviceListRecordSchema,
  RegisterArchiveKeySchema,
  StoredArchiveStateSchema,
  UsernameRecordSchema,
  create,
  encodeArchiveAuthHeader,
  fromBinary,
  requestDigest,
  signArchiveAuth,
  toBinary,
} from '@meshwhisper/protocol';
import type { ArchiveEntry } from '@meshwhisper/protocol';
import type { ProtocolStorage } from '../storage/types.js';
import { ARCHIVE_CAS_ATTEMPTS, ARCHIVE_DEFAULT_HISTORY, ARCHIVE_PASSPHRASE_MIN_DISTINCT, ARCHIVE_PASSPHRASE_MIN_LENGTH } from '../constants.js';
import type { EntryMap } from './archive-payload.js';
import { ARCHIVE_MAX_APP_SETTINGS, decodePayload, encodePayload, gatherEntries, installEntries, mergeEntries, readBase, writeBase } from './archive-payload.js';
import { SdkError, SdkErrorCode } from './errors.js';
import { keepGrantedList } from './link.js';
import type { Log } from './log.js';
import type { NodeApi } from './node-api.js';
import { retryBrokenConnection } from './node-api.js';
import { Table } from './tables.js';

/** App table of the archive state (StoredArchiveState under 'state'). */
export const ARCHIVE_TABLE = 'mw.archive';
const STATE_KEY = 'state';
export const ARCHIVE_STATE_VERSION = 1;

// ── Public shapes (docs/api.md §Recovery) ───────────────────────────────────────────────────

export interface EnableArchiveOptions {
  /**
   * Protect the archive with this passphrase instead of a recovery key. It must pass
   * checkArchivePassphrase (MW_SDK_WEAK_PASSPHRASE otherwise): the node stores the blob, so it can
   * try guesses offline at the KDF's cost.
   */
  readonly passphrase?: string;
  /** Use the account's existing recovery key (shown when another device set the archive up) instead of making a new one. */
  readonly recoveryKey?: string;
  /** Include message history: false (default), true (the newest 1,000 messages per conversation) or `{ perConversation }`. */
  readonly history?: boolean | { readonly perConversation: number };
  /** The app's own settings to keep in the archive (opaque, at most 64 KiB). */
  readonly appSettings?: Uint8Array;
}

export interface ArchiveEnabled {
  /** The new recovery key's display form (56 characters in groups of 4) — only when one was generated. SECRET: show it once, let the user write it down. */
  readonly recoveryKey?: string;
  /** The archive version now stored. */
  readonly version: number;
}

export interface BackupOptions {
  /** The app's own settings to keep (replacing the archived ones); absent: the archived ones stay. */
  readonly appSettings?: Uint8Array;
}

export interface BackupResult {
  /** The version stored (the node's version counter). */
  readonly version: number;
  /** Size of the sealed blob in bytes. */
  readonly size: number;
  /** Entries in the archive (contacts, blocked accounts, timers, usernames, settings, messages). */
  readonly entries: number;
}

export interface ArchiveStatus {
  readonly enabled: boolean;
  /** How the archive is protected. */
  readonly protection?: 'recovery-key' | 'passphrase';
  /** The node's archive version this device last read or wrote (0: none). */
  readonly version: number;
  /** When this device last stored a version (ms since the epoch; 0: never). */
  readonly lastBackupAt: number;
  /** Messages per conversation included (0: no history). */
  readonly historyPerConversation: number;
}

export interface RestoreOptions {
  /** The recovery key as the user typed it (case, separators and O/0, I/L/1 confusions are forgiven). */
  readonly recoveryKey?: string;
  /** The passphrase; then `accountKey` or `username` must name the account (its KDF salt is looked up). */
  readonly passphrase?: string;
  readonly accountKey?: Uint8Array;
  /** The account's username in the client's namespace (with `passphrase`). */
  readonly username?: string;
  /** Take every other device off the account's list (a lost phone): they stop receiving at once. Default false. */
  readonly revokeOtherDevices?: boolean;
  /** Progress of the passphrase derivation, 0..1 (it takes about a second, longer on slow phones). */
  readonly onProgress?: (fraction: number) => void;
}

export interface RestoredDevice<Client> {
  /** The restored device's client, connected, on the account. */
  readonly client: Client;
  readonly accountKey: Uint8Array;
  /** This device's index on the account's device list. */
  readonly deviceIndex: number;
  /** The app settings the archive held (undefined: none). */
  readonly appSettings: Uint8Array | undefined;
  /** Entries the archive held. */
  readonly entries: number;
  /** Messages added to this device's history by this call. */
  readonly historyEntries: number;
}

// ── Passphrase strength ─────────────────────────────────────────────────────────────────────

/**
 * Whether a passphrase is acceptable for the archive (docs/api.md §Recovery): at least
 * ARCHIVE_PASSPHRASE_MIN_LENGTH (16) characters after Unicode NFKC normalisation, of which at least
 * ARCHIVE_PASSPHRASE_MIN_DISTINCT (8) different. A rule that cannot see randomness only keeps out
 * the short passphrases an offline guesser tries first; four random words pass it.
 */
export function checkArchivePassphrase(passphrase: string): { ok: true } | { ok: false; reason: string } {
  if (typeof passphrase !== 'string') return { ok: false, reason: 'the passphrase must be a string' };
  const chars = [...passphrase.normalize('NFKC')];
  if (chars.length < ARCHIVE_PASSPHRASE_MIN_LENGTH) return { ok: false, reason: `use at least ${ARCHIVE_PASSPHRASE_MIN_LENGTH} characters (four random words, for example)` };
  if (new Set(chars).size < ARCHIVE_PASSPHRASE_MIN_DISTINCT) return { ok: false, reason: `use at least ${ARCHIVE_PASSPHRASE_MIN_DISTINCT} different characters` };
  return { ok: true };
}

// ── Node calls ──────────────────────────────────────────────────────────────────────────────

function sdkError(code: SdkErrorCode, message: string, cause?: unknown): SdkError {
  return new SdkError(code, message, undefined, cause === undefined ? undefined : { cause });
}

async function archiveAuth(ctx: CryptoContext, api: NodeApi, access: ArchiveAccessKeyPair, method: string): Promise<string> {
  const challenge = await api.challenge();
  return encodeArchiveAuthHeader(signArchiveAuth(ctx, access, challenge, requestDigest(ctx, method, '/v1/archive')));
}

async function request(api: NodeApi, method: string, init: RequestInit): Promise<Response> {
  let res: Response;
  try {
    res = await api.fetchImpl(new URL('/v1/archive', api.baseUrl), { method, ...init });
  } catch (cause) {
    throw new SdkError(SdkErrorCode.UNREACHABLE, `${method} /v1/archive: node unreachable`, undefined, { cause });
  }
  return res;
}

/** The node's current archive: its version and blob (version 0, no blob: nothing stored yet). */
async function fetchArchive(ctx: CryptoContext, api: NodeApi, access: ArchiveAccessKeyPair): Promise<{ version: number; blob: Uint8Array | undefined }> {
  const res = await retryBrokenConnection('GET', async () => request(api, 'GET', { headers: { [AUTH_HEADER]: await archiveAuth(ctx, api, access, 'GET') } }));
  if (res.status === 404) {
    await res.body?.cancel();
    return { version: 0, blob: undefined };
  }
  await api.check('GET', '/v1/archive', res);
  const version = Number(res.headers.get(ARCHIVE_VERSION_HEADER) ?? NaN);
  const blob = new Uint8Array(await res.arrayBuffer());
  if (!Number.isSafeInteger(version) || version < 1) throw sdkError(SdkErrorCode.PROTOCOL, 'GET /v1/archive: the node named no archive version');
  return { version, blob };
}

/** Uploads a blob replacing `expected`; undefined when another version is stored (409). */
async function storeArchive(ctx: CryptoContext, api: NodeApi, access: ArchiveAccessKeyPair, blob: Uint8Array, expected: number): Promise<{ version: number } | undefined> {
  const res = await request(api, 'PUT', {
    headers: { [AUTH_HEADER]: await archiveAuth(ctx, api, access, 'PUT'), 'content-type': CONTENT_TYPE_OCTETS, [ARCHIVE_VERSION_HEADER]: String(expected) },
    body: blob as BodyInit,
  });
  if (res.status === 409) {
    await res.body?.cancel();
    return undefined;
  }
  await api.check('PUT', '/v1/archive', res);
  const stored = fromBinary(ArchiveStoredSchema, new Uint8Array(await res.arrayBuffer()));
  return { version: Number(stored.version) };
}

// ── Local state ─────────────────────────────────────────────────────────────────────────────

interface ArchiveState {
  readonly root: Uint8Array;
  readonly source: ArchiveKeySource;
  readonly version: number;
  readonly lastBackupAt: number;
  readonly perConversation: number;
  /** A restore stored the identity but did not finish; the app settings it restored. */
  readonly pending?: { readonly appSettings: Uint8Array | undefined };
}

function encodeState(s: ArchiveState): Uint8Array {
  return toBinary(
    StoredArchiveStateSchema,
    create(StoredArchiveStateSchema, {
      version: ARCHIVE_STATE_VERSION,
      rootSecret: s.root,
      keySource: encodeArchiveKeySource(s.source),
      archiveVersion: BigInt(s.version),
      lastBackupAt: BigInt(s.lastBackupAt),
      historyPerConversation: s.perConversation,
      restorePending: s.pending !== undefined,
      restoredAppSettings: s.pending?.appSettings ?? new Uint8Array(0),
    }),
  );
}

async function readState(store: Pick<ProtocolStorage, 'getItem'>): Promise<ArchiveState | undefined> {
  const b = await store.getItem(ARCHIVE_TABLE, STATE_KEY);
  if (!b) return undefined;
  const r = fromBinary(StoredArchiveStateSchema, b);
  if (r.version > ARCHIVE_STATE_VERSION) throw sdkError(SdkErrorCode.UNSUPPORTED_VERSION, `archive state record version ${r.version} was written by a newer SDK: update the app`);
  // Our own record: the KDF cost floor was checked when it was first read from the node.
  return {
    root: r.rootSecret,
    source: decodeArchiveKeySource(r.keySource, { allowWeakParams: true }),
    version: Number(r.archiveVersion),
    lastBackupAt: Number(r.lastBackupAt),
    perConversation: r.historyPerConversation,
    ...(r.restorePending ? { pending: { appSettings: r.restoredAppSettings.length > 0 ? r.restoredAppSettings : undefined } } : {}),
  };
}

/** Clears the restore-pending flag once the restored client runs. */
async function restoreFinished(storage: ProtocolStorage): Promise<void> {
  await storage.transaction(async (tx) => {
    const s = await readState(tx);
    if (s?.pending) {
      const { pending: _done, ...rest } = s;
      await tx.setItem(ARCHIVE_TABLE, STATE_KEY, encodeState(rest));
    }
  });
}

function historyCount(h: EnableArchiveOptions['history']): number {
  const n = h === true ? ARCHIVE_DEFAULT_HISTORY : h && typeof h === 'object' ? h.perConversation : 0;
  if (!Number.isSafeInteger(n) || n < 0) throw sdkError(SdkErrorCode.INVALID_ARGUMENT, 'history.perConversation must be a non-negative integer');
  return n;
}

function checkAppSettings(a: Uint8Array | undefined): void {
  if (a !== undefined && (!(a instanceof Uint8Array) || a.length > ARCHIVE_MAX_APP_SETTINGS)) throw sdkError(SdkErrorCode.INVALID_ARGUMENT, 'appSettings must be at most 64 KiB of bytes');
}

function parseRecoveryKey(ctx: CryptoContext, text: string): RecoveryKey {
  if (typeof text !== 'string') throw sdkError(SdkErrorCode.INVALID_ARGUMENT, 'recoveryKey must be a string');
  try {
    return RecoveryKey.parse(ctx, text);
  } catch (e) {
    if (e instanceof CryptoError) {
      throw sdkError(SdkErrorCode.RECOVERY_KEY_INVALID, e.code === CryptoErrorCode.BAD_CHECKSUM ? 'this recovery key has a typo (its checksum does not match): check every character' : 'this is not a recovery key (56 characters: digits and letters except I, L, O, U)', e);
    }
    throw e;
  }
}

// ── The archive of one device's account ─────────────────────────────────────────────────────

export interface ArchiveDeps {
  readonly ctx: CryptoContext;
  readonly storage: ProtocolStorage;
  readonly api: NodeApi;
  readonly identity: LocalIdentity;
  readonly account: AccountKeyPair | undefined;
  readonly log: Log;
}

export class Archive {
  /** Backups of this client run one at a time. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: ArchiveDeps) {}

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async status(): Promise<ArchiveStatus> {
    const s = await readState(this.deps.storage);
    if (!s) return { enabled: false, version: 0, lastBackupAt: 0, historyPerConversation: 0 };
    return { enabled: true, protection: s.source.kind, version: s.version, lastBackupAt: s.lastBackupAt, historyPerConversation: s.perConversation };
  }

  enable(options: EnableArchiveOptions = {}): Promise<ArchiveEnabled> {
    return this.#serial(async () => {
      const { ctx, api, storage, identity, account } = this.deps;
      if (!account) throw sdkError(SdkErrorCode.INVALID_ARGUMENT, 'enableArchive: only a device that holds the account key can set up the archive (the archive carries it)');
      if (options.passphrase !== undefined && options.recoveryKey !== undefined) throw sdkError(SdkErrorCode.INVALID_ARGUMENT, 'enableArchive: give a passphrase or a recovery key, not both');
      const perConversation = historyCount(options.history);
      checkAppSettings(options.appSettings);
      let root: ArchiveRootSecret;
      let shown: string | undefined;
      if (options.passphrase !== undefined) {
        const check = checkArchivePassphrase(options.passphrase);
        if (!check.ok) throw sdkError(SdkErrorCode.WEAK_PASSPHRASE, `this passphrase is too weak: ${check.reason}`);
        root = await ArchiveRootSecret.fromPassphraseAsync(options.passphrase, createArchiveKdfParams(ctx));
      } else {
        const rk = options.recoveryKey !== undefined ? parseRecoveryKey(ctx, options.recoveryKey) : RecoveryKey.generate(ctx);
        if (options.recoveryKey === undefined) shown = rk.exportDisplayString();
        root = ArchiveRootSecret.fromRecoveryKey(rk);
        rk.destroy();
      }
      const access = root.accessKeyPair(ctx);
      try {
        const res = await api.rawCall('PUT', '/v1/archive/key', identity, { schema: RegisterArchiveKeySchema, value: { archiveKey: access.publicKey, keySource: encodeArchiveKeySource(root.source) } });
        await res.body?.cancel();
        const secret = root.exportSecret();
        const previous = await readState(storage);
        // Another key than before (a new recovery key or passphrase): what this device knew of the old archive does not apply.
        const sameKey = previous !== undefined && equalBytes(previous.root, secret);
        await storage.transaction(async (tx) => {
          await tx.setItem(ARCHIVE_TABLE, STATE_KEY, encodeState({ root: secret, source: root.source, version: sameKey ? previous.version : 0, lastBackupAt: previous?.lastBackupAt ?? 0, perConversation }));
        });
        secret.fill(0);
        const stored = await this.#backup(root, access, options.appSettings);
        return { ...(shown !== undefined ? { recoveryKey: shown } : {}), version: stored.version };
      } finally {
        access.destroy();
        root.destroy();
      }
    });
  }

  backup(options: BackupOptions = {}): Promise<BackupResult> {
    checkAppSettings(options.appSettings);
    return this.#serial(async () => {
      const s = await readState(this.deps.storage);
      if (!s) throw sdkError(SdkErrorCode.ARCHIVE_NOT_ENABLED, 'backup: the archive is not set up on this device (enableArchive first)');
      const root = ArchiveRootSecret.fromSecret(s.root, s.source);
      const access = root.accessKeyPair(this.deps.ctx);
      try {
        return await this.#backup(root, access, options.appSettings);
      } finally {
        access.destroy();
        root.destroy();
      }
    });
  }

  async #backup(root: ArchiveRootSecret, access: ArchiveAccessKeyPair, appSettings: Uint8Array | undefined): Promise<BackupResult> {
    const { ctx, api, storage, account, identity } = this.deps;
    if (!account) throw sdkError(SdkErrorCode.INVALID_ARGUMENT, 'backup: only a device that holds the account key can update the archive');
    for (let attempt = 0; attempt < ARCHIVE_CAS_ATTEMPTS; attempt++) {
      const s = (await readState(storage))!;
      let remote: { version: number; blob: Uint8Array | undefined };
      try {
        remote = await fetchArchive(ctx, api, access);
      } catch (e) {
        // The node no longer knows this key: another device set the archive up with a new one.
        if (e instanceof SdkError && e.nodeCode === 'MW_AUTH_FORBIDDEN') throw sdkError(SdkErrorCode.ARCHIVE_WRONG_KEY, 'the archive’s recovery key or passphrase was changed on another device: enableArchive here with the new one', e);
        throw e;
      }
      let remoteEntries: readonly ArchiveEntry[] = [];
      if (remote.blob) {
        let plaintext: Uint8Array | undefined;
        try {
          plaintext = decryptArchive(ctx, root, remote.blob);
        } catch (e) {
          // Sealed under the key this one replaced (enableArchive with a new key): start from this device's state.
          if (!(e instanceof CryptoError && e.code === CryptoErrorCode.BAD_MAC && s.version === 0)) throw sdkError(SdkErrorCode.ARCHIVE_CORRUPT, 'the stored archive does not open with this device’s key: it was modified', e);
        }
        if (plaintext) {
          const p = decodePayload(plaintext);
          if (!equalBytes(p.accountKey, identity.certificate.accountKey)) throw sdkError(SdkErrorCode.ARCHIVE_CORRUPT, 'the stored archive belongs to another account');
          remoteEntries = p.entries;
        }
      }
      const local = await gatherEntries(storage, { perConversation: s.perConversation, appSettings });
      const base = await readBase(storage);
      const entries = mergeEntries(ctx, { remote: remoteEntries, local, base, manages: (key) => (key.startsWith('m:') ? s.perConversation > 0 : key === 's' ? appSettings !== undefined : true) });
      const seed = account.exportSeed();
      const plaintext = encodePayload({ accountKey: account.publicKey, accountSeed: seed, writtenAt: ctx.now(), entries });
      seed.fill(0);
      const blob = encryptArchive(ctx, root, plaintext);
      plaintext.fill(0);
      const stored = await storeArchive(ctx, api, access, blob, remote.version);
      if (!stored) {
        this.deps.log.debug('archive.conflict', 'another device stored an archive version meanwhile: merging into it');
        continue;
      }
      await this.#committed(local, stored.version);
      return { version: stored.version, size: blob.length, entries: entries.length };
    }
    throw sdkError(SdkErrorCode.ARCHIVE_CONFLICT, `backup: other devices kept storing new archive versions (${ARCHIVE_CAS_ATTEMPTS} attempts): try again later`);
  }

  async #committed(local: EntryMap, version: number): Promise<void> {
    const { ctx, storage } = this.deps;
    await storage.transaction(async (tx) => {
      await writeBase(ctx, tx, local);
      const s = (await readState(tx))!;
      await tx.setItem(ARCHIVE_TABLE, STATE_KEY, encodeState({ ...s, version, lastBackupAt: ctx.now() }));
    });
  }
}

// ── Restore on a fresh device ───────────────────────────────────────────────────────────────

export interface RestoreDeps {
  readonly ctx: CryptoContext;
  readonly api: NodeApi;
  readonly storage: ProtocolStorage;
  readonly namespace: string;
  readonly maxDevices: number;
  readonly log: Log;
}

async function accountOf(api: NodeApi, namespace: string, options: RestoreOptions): Promise<Uint8Array> {
  if (options.accountKey !== undefined) {
    if (!(options.accountKey instanceof Uint8Array) || options.accountKey.length !== 32) throw sdkError(SdkErrorCode.INVALID_ARGUMENT, 'accountKey must be 32 bytes');
    return options.accountKey;
  }
  if (typeof options.username !== 'string' || options.username === '') throw sdkError(SdkErrorCode.INVALID_ARGUMENT, 'restoring with a passphrase needs the accountKey or the username');
  try {
    return (await api.call('GET', `/v1/usernames/${encodeURIComponent(namespace)}/${encodeURIComponent(options.username)}`, { reply: UsernameRecordSchema })).ownerKey;
  } catch (e) {
    if (e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND') throw sdkError(SdkErrorCode.ARCHIVE_NOT_FOUND, 'no account has this username', e);
    throw e;
  }
}

async function rootFor(deps: RestoreDeps, options: RestoreOptions): Promise<ArchiveRootSecret> {
  const { ctx, api } = deps;
  if ((options.recoveryKey === undefined) === (options.passphrase === undefined)) throw sdkError(SdkErrorCode.INVALID_ARGUMENT, 'restoreFromArchive: give the recovery key or the passphrase');
  if (options.recoveryKey !== undefined) {
    const rk = parseRecoveryKey(ctx, options.recoveryKey);
    const root = ArchiveRootSecret.fromRecoveryKey(rk);
    rk.destroy();
    return root;
  }
  if (typeof options.passphrase !== 'string' || options.passphrase === '') throw sdkError(SdkErrorCode.INVALID_ARGUMENT, 'passphrase must be a non-empty string');
  const accountKey = await accountOf(api, deps.namespace, options);
  let record: Uint8Array;
  try {
    record = (await api.call('GET', `/v1/archive/source/${toHex(accountKey)}`, { reply: ArchiveKeySourceRecordSchema })).keySource;
  } catch (e) {
    if (e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND') throw sdkError(SdkErrorCode.ARCHIVE_NOT_FOUND, 'this account has no archive', e);
    throw e;
  }
  let source: ArchiveKeySource;
  try {
    source = decodeArchiveKeySource(record); // refuses KDF costs below the floor: a node must not make guessing cheap
  } catch (e) {
    throw sdkError(SdkErrorCode.ARCHIVE_CORRUPT, 'the node serves an archive key record this app refuses (unreadable, or KDF costs below the minimum)', e);
  }
  if (source.kind !== 'passphrase') throw sdkError(SdkErrorCode.ARCHIVE_WRONG_KEY, 'this account’s archive is protected by a recovery key, not a passphrase');
  return ArchiveRootSecret.fromPassphraseAsync(options.passphrase, source.params, options.onProgress);
}

async function currentList(deps: RestoreDeps, account: AccountKeyPair): Promise<DeviceList> {
  let served: Uint8Array;
  try {
    served = (await deps.api.call('GET', `/v1/accounts/${toHex(account.publicKey)}/device-list`, { reply: DeviceListRecordSchema })).deviceList;
  } catch (e) {
    if (e instanceof SdkError && e.nodeCode === 'MW_NOT_FOUND') throw sdkError(SdkErrorCode.ARCHIVE_NOT_FOUND, 'the account has no device list on this node', e);
    throw e;
  }
  try {
    const list = decodeDeviceList(served);
    verifyDeviceList(deps.ctx, list, { expectedAccountKey: account.publicKey });
    return list;
  } catch (e) {
    throw sdkError(SdkErrorCode.PROTOCOL, 'the node serves a device list the account did not sign', e);
  }
}

/**
 * Restores the account on a fresh storage; `open` makes the client once the identity is stored
 * (MeshWhisper.create, which publishes the new device list and the device's keys).
 */
export async function restoreFromArchive<Client>(deps: RestoreDeps, options: RestoreOptions, open: () => Promise<Client>): Promise<RestoredDevice<Client>> {
  const { ctx, api, storage } = deps;
  if (!options || typeof options !== 'object') throw sdkError(SdkErrorCode.INVALID_ARGUMENT, 'restoreFromArchive: options are required');
  if (await storage.hasLocalIdentity()) {
    // A restore killed after the identity was stored: finish it (publish, connect), once.
    const pending = (await readState(storage))?.pending;
    if (!pending) throw sdkError(SdkErrorCode.INVALID_ARGUMENT, 'restoreFromArchive: this storage already holds a device identity (restore into a fresh storage)');
    const client = await open();
    const identity = await storage.getLocalIdentity();
    await restoreFinished(storage);
    return { client, accountKey: identity.certificate.accountKey, deviceIndex: identity.certificate.deviceIndex, appSettings: pending.appSettings, entries: 0, historyEntries: 0 };
  }

  const root = await rootFor(deps, options);
  const access = root.accessKeyPair(ctx);
  let account: AccountKeyPair | undefined;
  try {
    let remote: { version: number; blob: Uint8Array | undefined };
    try {
      remote = await fetchArchive(ctx, api, access);
    } catch (e) {
      if (e instanceof SdkError && e.nodeCode === 'MW_AUTH_FORBIDDEN') {
        throw sdkError(SdkErrorCode.ARCHIVE_WRONG_KEY, options.recoveryKey !== undefined ? 'no archive opens with this recovery key: check it (or it belongs to another node)' : 'wrong passphrase', e);
      }
      throw e;
    }
    if (!remote.blob) throw sdkError(SdkErrorCode.ARCHIVE_NOT_FOUND, 'the archive was set up but never stored');
    let plaintext: Uint8Array;
    try {
      plaintext = decryptArchive(ctx, root, remote.blob);
    } catch (e) {
      // The node accepted our access key, so the key is right: the blob was modified.
      throw sdkError(SdkErrorCode.ARCHIVE_CORRUPT, 'the archive does not open: it was modified or damaged', e);
    }
    const payload = decodePayload(plaintext);
    account = AccountKeys.fromSeed(ctx, payload.accountSeed);
    if (!equalBytes(account.publicKey, payload.accountKey)) throw sdkError(SdkErrorCode.ARCHIVE_CORRUPT, 'the archive’s account key does not match its account');
    if (options.accountKey !== undefined && !equalBytes(options.accountKey, payload.accountKey)) throw sdkError(SdkErrorCode.ARCHIVE_WRONG_KEY, 'this archive belongs to another account');

    // The account's next device list, signed here with the archived account key: this device is a manager.
    const current = await currentList(deps, account);
    const kept = options.revokeOtherDevices ? [] : current.devices;
    if (kept.length + 1 > deps.maxDevices) throw sdkError(SdkErrorCode.DEVICE_LIMIT, `this account already has ${kept.length} devices (the limit is ${deps.maxDevices}): restore with revokeOtherDevices, or revoke one first`);
    const device = DeviceKeyPair.generate(ctx);
    const deviceIndex = current.nextDeviceIndex;
    const next = issueDeviceList(ctx, account, {
      epoch: current.epoch + 1,
      nextDeviceIndex: deviceIndex + 1,
      devices: [...kept, { deviceIndex, signingKey: device.signingPublicKey, flags: DeviceFlag.Manager }],
      successorCommitment: current.successorCommitment,
    });
    verifyDeviceList(ctx, next, { previous: current });
    const certificate = issueDeviceCertificate(ctx, account, device, { deviceIndex });

    const perConversation = payload.entries.some((e) => e.entry.case === 'message') ? ARCHIVE_DEFAULT_HISTORY : 0;
    let installed = { appSettings: undefined as Uint8Array | undefined, historyEntries: 0 };
    const secret = root.exportSecret();
    const seed = account.exportSeed();
    await storage.transaction(async (tx) => {
      installed = await installEntries(tx, payload.entries);
      await tx.setItem(Table.Self, 'account-seed', seed);
      await keepGrantedList(tx, next);
      await tx.setItem(ARCHIVE_TABLE, STATE_KEY, encodeState({ root: secret, source: root.source, version: remote.version, lastBackupAt: 0, perConversation, pending: { appSettings: installed.appSettings } }));
      // The base: this device's state as the archive gave it, so its next backup changes only what changed here.
      await writeBase(ctx, tx, await gatherEntries(tx, { perConversation, appSettings: installed.appSettings }));
    });
    secret.fill(0);
    seed.fill(0);
    // Last: the identity. Killed before this line, a rerun starts over; after it, a rerun finishes.
    await storage.setLocalIdentity({ certificate, device });
    const client = await open();
    await restoreFinished(storage);
    return { client, accountKey: payload.accountKey, deviceIndex, appSettings: installed.appSettings, entries: payload.entries.length, historyEntries: installed.historyEntries };
  } finally {
    account?.destroy();
    access.destroy();
    root.destroy();
  }
}

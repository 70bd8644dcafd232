/**
 * Everything Prudence does with the SDK, in one place, with no UI: the account (username), the
 * conversation list, names, unread counts, typing and presence, key changes, sending and files.
 * The screens read its state and call its methods; `subscribe` tells them when to re-render.
 *
 * Prudence's own records live in app tables of the SDK storage (one IndexedDB database, shared with
 * the service worker): `prudence.profile` (this account's username), `prudence.names` (account →
 * username, checked against the node's directory),
 * `prudence.settings`, `prudence.introduced` (peers we told our username), `prudence.verified`
 * (safety numbers compared), `prudence.keychange` (pending key-change warnings), `prudence.devices`
 * (device index → the name given when it was linked).
 */
import type { ArchiveStatus, ContactCard, ContactState, ConversationId, FileAttachment, GroupChange, GroupInfo, GroupInvitation, GroupReceipt, HistoryEntry, IncomingMessage, LinkAccepted, LinkOfferHandle, LinkedDevice, MessageState, ProtocolStorage, Recipient, RestoredDevice } from '@meshwhisper/sdk';
import { MeshWhisper, SdkError, checkArchivePassphrase, decodeContactCard, encodeContactCard, openIndexedDbStorage } from '@meshwhisper/sdk';
import { equalBytes, fromBase64Url, fromHex, fromUtf8, toBase64Url, toHex, utf8 } from './util.js';

import { DB_NAME, NAMESPACE, NAMES_TABLE, PROFILE_MIME } from './constants.js';

export { DB_NAME, NAMESPACE, PROFILE_MIME } from './constants.js';
/** How long a "typing…" lasts without a refresh. */
const TYPING_TTL_MS = 6000;
/** Bytes of a file read per step while encrypting it (the SDK's media chunk size). */
const UPLOAD_SLICE_BYTES = 64 * 1024;

const T = {
  profile: 'prudence.profile',
  names: NAMES_TABLE,
  settings: 'prudence.settings',
  introduced: 'prudence.introduced',
  verified: 'prudence.verified',
  keyChange: 'prudence.keychange',
  devices: 'prudence.devices',
  groupLog: 'prudence.grouplog',
} as const;

/** Prefix of a group's conversation key in the screens (`g:` + group id hex); a direct chat's key is the peer's account key hex. */
export const GROUP_PREFIX = 'g:';
export const isGroupKey = (peer: string): boolean => peer.startsWith(GROUP_PREFIX);
const groupHex = (peer: string): string => peer.slice(GROUP_PREFIX.length);

/** A membership change as Prudence keeps it for the chat's system lines (from the SDK's `groupChange` events). */
export interface GroupLogLine {
  readonly at: number;
  readonly change: { readonly type: GroupChange['type']; readonly accountKey?: string; readonly name?: string; readonly policy?: string };
}
/** System lines kept per group. */
const GROUP_LOG_MAX = 200;

/** Device list flag: the device holds the account key (can link and remove devices). */
const MANAGER_FLAG = 1;
/** What Prudence hands a device it links (acceptLinkOffer's opaque `appSettings`), as JSON. */
interface LinkedAppSettings {
  readonly v: 1;
  readonly username?: string;
  readonly settings: Settings;
  readonly names: [string, string][];
  readonly verified: string[];
  readonly introduced: string[];
  readonly devices: [string, string][];
}

export interface DeviceInfo {
  readonly index: number;
  readonly name: string;
  readonly manager: boolean;
  readonly self: boolean;
}

export interface Settings {
  /** Tell contacts when Prudence is open (presence). */
  sharePresence: boolean;
  /** Send read receipts. */
  readReceipts: boolean;
  /** Send "typing…". */
  typingIndicators: boolean;
}
const DEFAULT_SETTINGS: Settings = { sharePresence: true, readReceipts: true, typingIndicators: true };

export interface ConversationSummary {
  readonly kind: 'direct' | 'group';
  /** The peer's account key (direct) or the group id (group), hex: the conversation's id. */
  readonly peer: string;
  readonly name: string;
  readonly last?: HistoryEntry;
  readonly unread: number;
  readonly state?: ContactState;
  readonly blocked: boolean;
}

export interface Upload {
  readonly key: string;
  readonly peer: string;
  readonly name: string;
  readonly size: number;
  /** Plaintext bytes read and encrypted so far. */
  done: number;
  phase: 'encrypting' | 'uploading' | 'failed';
  error?: string;
}

export interface KeyChange {
  readonly username: string;
  readonly previous: string;
  readonly next: string;
}

/** A message an app shows: everything but Prudence's own profile messages. */
export const isShown = (e: Pick<HistoryEntry, 'binary'>): boolean => e.binary?.mimeType !== PROFILE_MIME;

/** Human text for an error from the SDK (its code stays visible for bug reports). */
export function describeError(e: unknown): string {
  if (e instanceof SdkError) {
    if (e.nodeCode === 'MW_USERNAME_TAKEN') return 'That username is taken.';
    if (e.nodeCode === 'MW_NOT_FOUND') return `Not found on this node (${e.message}).`;
    if (e.code === 'MW_SDK_UNREACHABLE') return 'The node cannot be reached; it will be retried.';
    if (e.code === 'MW_SDK_LINK_EXPIRED') return 'That link code expired or was already used: show a new code on the new device (MW_SDK_LINK_EXPIRED).';
    if (e.code === 'MW_SDK_LINK_FAILED') return `Linking failed: ${e.message} (MW_SDK_LINK_FAILED).`;
    if (e.code === 'MW_SDK_DEVICE_LIMIT') return 'Your account already has as many devices as it may have: remove one first (MW_SDK_DEVICE_LIMIT).';
    if (e.code === 'MW_SDK_RECOVERY_KEY_INVALID') return 'That is not a recovery key: check it for a typo (MW_SDK_RECOVERY_KEY_INVALID).';
    if (e.code === 'MW_SDK_ARCHIVE_WRONG_KEY') return 'The backup does not open with that recovery key or passphrase (MW_SDK_ARCHIVE_WRONG_KEY).';
    if (e.code === 'MW_SDK_ARCHIVE_NOT_FOUND') return 'No backup was found for that account on this node (MW_SDK_ARCHIVE_NOT_FOUND).';
    if (e.code === 'MW_SDK_ARCHIVE_CORRUPT') return 'The backup on the node is damaged and cannot be opened (MW_SDK_ARCHIVE_CORRUPT).';
    if (e.code === 'MW_SDK_WEAK_PASSPHRASE') return `That passphrase is too easy to guess: ${e.message} (MW_SDK_WEAK_PASSPHRASE).`;
    if (e.code === 'MW_SDK_IDENTITY_CHANGED') return 'Not sent: this contact’s key changed — see the warning above (MW_SDK_IDENTITY_CHANGED).';
    return `${e.message} (${e.nodeCode ?? e.code})`;
  }
  return e instanceof Error ? e.message : String(e);
}

async function loadSettings(storage: ProtocolStorage): Promise<Settings> {
  return { ...DEFAULT_SETTINGS, ...(await getJson<Partial<Settings>>(storage, T.settings, 'settings')) };
}

async function getJson<T>(storage: ProtocolStorage, table: string, key: string): Promise<T | undefined> {
  const v = await storage.getItem(table, key);
  return v ? (JSON.parse(fromUtf8.decode(v)) as T) : undefined;
}
const setJson = (storage: ProtocolStorage, table: string, key: string, value: unknown): Promise<void> => storage.setItem(table, key, utf8.encode(JSON.stringify(value)));

export class Messenger {
  readonly names = new Map<string, string>();
  readonly typing = new Map<string, number>();
  /** Who typed last in a group conversation (conversation key → account key hex). */
  readonly typingWho = new Map<string, string>();
  readonly presence = new Map<string, { online: boolean; lastSeen?: number }>();
  readonly keyChanges = new Map<string, KeyChange>();
  readonly uploads = new Map<string, Upload>();
  readonly verified = new Set<string>();
  readonly #listeners = new Set<() => void>();
  /** The open conversation (its messages are read while the page is visible). */
  openPeer: string | undefined;
  /** The open group conversation (group id hex). */
  openGroup: string | undefined;
  notices: string[] = [];
  /** Why the connection stopped for good (until `takeOver`), if it did. */
  stopped: string | undefined;
  /** This device was removed from the account (by another device): only starting over helps. */
  removed = false;
  /** Why the first username claim failed (shown on the welcome screen). */
  welcomeError: string | undefined;
  version = 0;

  private constructor(
    readonly client: MeshWhisper,
    readonly storage: ProtocolStorage,
    public username: string | undefined,
    public settings: Settings,
  ) {}

  /**
   * Opens this browser's account. A browser without a device identity gets a FreshDevice: it either
   * creates an account or is linked to an existing one (linking needs an empty storage).
   */
  static async open(): Promise<Messenger | FreshDevice> {
    const storage = await openIndexedDbStorage({ name: DB_NAME });
    if (!(await storage.hasLocalIdentity())) return new FreshDevice(storage);
    return Messenger.start(storage);
  }

  /**
   * Opens (or on a fresh storage creates) the identity. A device the node knows starts offline too
   * (the SDK then publishes its keys once the node is reachable): history and contacts are local.
   */
  static async start(storage: ProtocolStorage): Promise<Messenger> {
    const settings = await loadSettings(storage);
    let client: MeshWhisper;
    try {
      client = await MeshWhisper.create({ node: location.origin, namespace: NAMESPACE, storage, connect: false, sharePresence: settings.sharePresence });
    } catch (e) {
      await storage.close();
      throw e;
    }
    return Messenger.#ready(client, storage);
  }

  static async #ready(client: MeshWhisper, storage: ProtocolStorage): Promise<Messenger> {
    const profile = await getJson<{ username: string }>(storage, T.profile, 'me');
    const m = new Messenger(client, storage, profile?.username, await loadSettings(storage));
    await m.#load();
    m.#wire();
    // Listeners are in place: now the backlog can arrive.
    client.connect();
    return m;
  }

  /** A device linked by another one (FreshDevice.linked): Prudence's records from the other device, then the usual start. */
  static linked(storage: ProtocolStorage, done: LinkedDevice<MeshWhisper>, ownName: string): Promise<Messenger> {
    return Messenger.#adopt(storage, done.client, done.appSettings, done.deviceIndex, ownName);
  }

  /** A device restored from the account archive (FreshDevice.restore): Prudence's records from the backup, then the usual start. */
  static restored(storage: ProtocolStorage, done: RestoredDevice<MeshWhisper>, ownName: string): Promise<Messenger> {
    return Messenger.#adopt(storage, done.client, done.appSettings, done.deviceIndex, ownName);
  }

  static async #adopt(storage: ProtocolStorage, client: MeshWhisper, appSettings: Uint8Array | undefined, deviceIndex: number, ownName: string): Promise<Messenger> {
    let app: Partial<LinkedAppSettings> = {};
    try {
      if (appSettings && appSettings.length > 0) app = JSON.parse(fromUtf8.decode(appSettings)) as Partial<LinkedAppSettings>;
    } catch {
      // Another app wrote them (or none were sent): start with defaults.
    }
    await storage.transaction(async (tx) => {
      if (typeof app.username === 'string') await tx.setItem(T.profile, 'me', utf8.encode(JSON.stringify({ username: app.username })));
      if (app.settings) await tx.setItem(T.settings, 'settings', utf8.encode(JSON.stringify({ ...DEFAULT_SETTINGS, ...app.settings })));
      for (const [peer, name] of app.names ?? []) await tx.setItem(T.names, peer, utf8.encode(name));
      for (const peer of app.verified ?? []) await tx.setItem(T.verified, peer, new Uint8Array([1]));
      for (const peer of app.introduced ?? []) await tx.setItem(T.introduced, peer, new Uint8Array([1]));
      for (const [index, name] of app.devices ?? []) await tx.setItem(T.devices, index, utf8.encode(name));
      await tx.setItem(T.devices, String(deviceIndex), utf8.encode(ownName));
    });
    return Messenger.#ready(client, storage);
  }

  async #load(): Promise<void> {
    for (const { key, value } of await this.storage.listItems(T.names)) this.names.set(key, fromUtf8.decode(value));
    for (const { key } of await this.storage.listItems(T.verified)) this.verified.add(key);
    for (const { key, value } of await this.storage.listItems(T.keyChange)) this.keyChanges.set(key, JSON.parse(fromUtf8.decode(value)) as KeyChange);
  }

  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  changed(): void {
    this.version++;
    for (const l of this.#listeners) l();
  }

  notice(text: string): void {
    this.notices = [...this.notices.slice(-3), text];
    this.changed();
  }

  #wire(): void {
    const c = this.client;
    c.on('message', (m) => void this.#onMessage(m));
    c.on('contactRequest', () => this.changed());
    c.on('receipt', () => this.changed());
    c.on('messageState', () => this.changed());
    c.on('unread', () => this.changed());
    c.on('reaction', () => this.changed());
    c.on('edit', () => this.changed());
    c.on('delete', () => this.changed());
    c.on('expired', () => this.changed());
    c.on('groupChange', ({ groupId, change }) => void this.#logGroupChange(toHex(groupId), change));
    c.on('groupInvite', () => this.changed());
    c.on('groupInviteAnswer', () => this.changed());
    c.on('disappearingTimer', () => this.changed());
    c.on('connection', (state) => {
      if (state === 'online') void this.#announcePresence(true);
      this.changed();
    });
    c.on('typing', ({ from, typing, conversation }) => {
      const author = from.split(':')[0]!;
      // In a group, the conversation is typing and `typingWho` says who.
      const peer = conversation?.kind === 'group' ? GROUP_PREFIX + toHex(conversation.groupId) : author;
      if (typing) this.typing.set(peer, Date.now() + TYPING_TTL_MS);
      else this.typing.delete(peer);
      if (typing) this.typingWho.set(peer, author);
      this.changed();
      if (typing) setTimeout(() => this.changed(), TYPING_TTL_MS + 50);
    });
    c.on('presence', ({ from, online, lastSeen }) => {
      this.presence.set(from.split(':')[0]!, { online, ...(lastSeen ? { lastSeen } : {}) });
      this.changed();
    });
    c.on('identityChange', ({ username, previousAccountKey, accountKey }) => {
      const change: KeyChange = { username, previous: toHex(previousAccountKey), next: toHex(accountKey) };
      this.keyChanges.set(username, change);
      void setJson(this.storage, T.keyChange, username, change);
      this.verified.delete(change.previous);
      void this.storage.deleteItem(T.verified, change.previous);
      this.changed();
    });
    // Only one connection per device receives: another tab of this profile (or the service worker) took over.
    c.on('stopped', ({ reason, message }) => {
      this.removed = reason === 'device-deleted';
      this.stopped =
        reason === 'replaced' ? 'Prudence is open in another tab or window of this browser profile.' : this.removed ? 'This device was removed from your account (on another of your devices). Messages no longer reach it.' : message;
      this.changed();
    });
    // Revoked for real (the account's signed list no longer names this device): the SDK erased this browser's data.
    c.on('wiped', () => {
      this.removed = true;
      this.stopped = 'This device was removed from your account (on another of your devices), and Prudence erased its data in this browser.';
      this.changed();
    });
    c.on('undecryptable', (u) => this.notice(`A message could not be decrypted (${u.code}).`));
    c.on('gap', ({ source, missing }) => {
      if (source === 'node') this.notice(`The node dropped ${missing} message(s) before this device fetched them.`);
    });
    c.on('error', (e) => this.notice(describeError(e)));
  }

  async #onMessage(m: IncomingMessage): Promise<void> {
    if (m.conversation.kind === 'group') {
      // A member's profile message (its username): believed only if the directory agrees, as in a direct chat.
      if (m.binary?.mimeType === PROFILE_MIME) {
        if (!m.outgoing) await this.#onProfile(toHex(m.author), m.binary.data);
        this.changed();
        return;
      }
      if (!m.outgoing) this.typing.delete(GROUP_PREFIX + toHex(m.conversation.groupId));
      if (!m.outgoing && toHex(m.conversation.groupId) === this.openGroup && document.visibilityState === 'visible') await this.markGroupRead(this.openGroup);
      this.changed();
      return;
    }
    // An outgoing message is one this account sent from another of its devices (own-device sync).
    const peer = toHex(m.conversation.peer);
    if (!m.outgoing) this.typing.delete(peer);
    if (m.binary?.mimeType === PROFILE_MIME) {
      if (!m.outgoing) await this.#onProfile(peer, m.binary.data);
    } else if (!m.outgoing && peer === this.openPeer && document.visibilityState === 'visible') await this.markRead(peer);
    this.changed();
  }

  /** A contact told us their username: believe it only if the node's directory agrees. */
  async #onProfile(peer: string, data: Uint8Array): Promise<void> {
    try {
      const { username } = JSON.parse(fromUtf8.decode(data)) as { username?: unknown };
      if (typeof username !== 'string' || this.names.get(peer) === username) return;
      const record = await this.client.lookupUsername(username);
      if (toHex(record.accountKey) === peer) await this.#setName(peer, username);
    } catch {
      // Malformed or unverifiable: the contact stays known by its key.
    }
  }

  async #setName(peer: string, username: string): Promise<void> {
    this.names.set(peer, username);
    await this.storage.setItem(T.names, peer, utf8.encode(username));
  }

  // ── Account ──

  get registered(): boolean {
    return this.username !== undefined;
  }

  /** Claims a username for this account (signed by the account key). */
  async register(username: string): Promise<void> {
    const name = username.trim().toLowerCase();
    await this.client.claimUsername(name);
    await setJson(this.storage, T.profile, 'me', { username: name });
    this.username = name;
    this.changed();
  }

  async saveSettings(settings: Settings): Promise<void> {
    this.settings = settings;
    await setJson(this.storage, T.settings, 'settings', settings);
    if (!settings.sharePresence) await this.#announcePresence(false);
    this.changed();
  }

  async deleteAccount(): Promise<void> {
    await this.client.deleteAccount();
  }

  /** Receive here again (the other tab's connection stops). */
  takeOver(): void {
    this.stopped = undefined;
    this.client.connect();
    this.changed();
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  // ── Devices (linking: docs/api.md §Devices) ──

  /** Only a manager device (it holds the account key) can link and remove devices. */
  get isManager(): boolean {
    return this.client.account !== undefined;
  }

  /** The account's devices, from its signed device list (fetched fresh when the node answers). */
  async devices(): Promise<DeviceInfo[]> {
    const list = await this.client.refreshDeviceList().catch(() => this.client.deviceList());
    const names = new Map((await this.storage.listItems(T.devices)).map(({ key, value }) => [key, fromUtf8.decode(value)]));
    const me = this.client.address.split(':')[1];
    return (list?.devices ?? []).map((d) => ({
      index: d.deviceIndex,
      name: names.get(String(d.deviceIndex)) ?? (d.deviceIndex === 0 ? 'First device' : `Device ${d.deviceIndex + 1}`),
      manager: (d.flags & MANAGER_FLAG) !== 0,
      self: toHex(d.signingKey) === me,
    }));
  }

  /** Links the device whose code was scanned (bytes) or pasted (text): it joins this account with Prudence's records. */
  async linkDevice(offer: Uint8Array | string, options: { history: boolean; manager: boolean }): Promise<LinkAccepted> {
    const payload = typeof offer === 'string' ? decodeLinkText(offer) : offer;
    const self = (await this.devices()).find((d) => d.self);
    const r = await this.client.acceptLinkOffer(payload, {
      history: options.history,
      manager: options.manager,
      ...(self ? { deviceName: self.name } : {}),
      appSettings: await this.#appSettings(),
    });
    await this.storage.setItem(T.devices, String(r.deviceIndex), utf8.encode(r.deviceName || `Device ${r.deviceIndex + 1}`));
    this.changed();
    return r;
  }

  /** Removes a device from the account (it is told, and receives nothing more). */
  async revokeDevice(index: number): Promise<void> {
    await this.client.revokeDevice(index);
    await this.storage.deleteItem(T.devices, String(index));
    this.changed();
  }

  /** This browser starts over: everything stored here is erased (the SDK did it already when the revocation verified). */
  async erase(): Promise<void> {
    await this.client.close().catch(() => undefined);
    const storage = await openIndexedDbStorage({ name: DB_NAME });
    await storage.erase();
  }

  /** Prudence's own records for a device being linked (names, settings, verified contacts), within the SDK's 64 KiB. */
  async #appSettings(): Promise<Uint8Array> {
    const list = async (table: string) => (await this.storage.listItems(table)).map(({ key }) => key);
    const app: LinkedAppSettings = {
      v: 1,
      ...(this.username !== undefined ? { username: this.username } : {}),
      settings: this.settings,
      names: [...this.names].slice(0, 400),
      verified: (await list(T.verified)).slice(0, 200),
      introduced: (await list(T.introduced)).slice(0, 200),
      devices: (await this.storage.listItems(T.devices)).map(({ key, value }): [string, string] => [key, fromUtf8.decode(value)]),
    };
    return utf8.encode(JSON.stringify(app));
  }

  // ── Backup: the account archive (docs/api.md §Recovery) ──

  archiveStatus(): Promise<ArchiveStatus> {
    return this.client.archiveStatus();
  }

  /** Turns the backup on; returns the recovery key to show once (none with a passphrase). */
  async enableBackup(options: { passphrase?: string; history: boolean }): Promise<string | undefined> {
    const r = await this.client.enableArchive({ history: options.history, appSettings: await this.#appSettings(), ...(options.passphrase !== undefined ? { passphrase: options.passphrase } : {}) });
    this.changed();
    return r.recoveryKey;
  }

  /** A new backup version now (with Prudence's records as they are). */
  async backupNow(): Promise<number> {
    const r = await this.client.backup({ appSettings: await this.#appSettings() });
    this.changed();
    return r.version;
  }

  // ── Names and contacts ──

  nameOf(peer: string): string {
    return this.names.get(peer) ?? `${peer.slice(0, 4)} ${peer.slice(4, 8)} (no name)`;
  }

  /** Where a message to this conversation goes: the group, or the peer (by username when known). */
  #dest(peer: string): Recipient | ConversationId {
    return isGroupKey(peer) ? Messenger.groupConversation(groupHex(peer)) : this.recipientOf(peer);
  }

  /** How to address a peer: by username when known (the SDK then watches for key changes), else by account key. */

  recipientOf(peer: string): Recipient {
    const name = this.names.get(peer);
    return name !== undefined ? { username: name } : { accountKey: fromHex(peer) };
  }

  /** Looks a username up in the node's directory; returns the conversation id. */
  async addByUsername(username: string): Promise<string> {
    const name = username.trim().toLowerCase();
    const record = await this.client.lookupUsername(name);
    if (record.mailboxIds.length === 0) throw new Error(`${name} has no device on this node.`);
    const peer = toHex(record.accountKey);
    if (peer === toHex(this.client.accountKey)) throw new Error('That is you.');
    await this.#setName(peer, name);
    this.changed();
    return peer;
  }

  /** A scanned or pasted contact card ("mwc1:…"); its username is kept only if the directory agrees. */
  async addByCard(text: string): Promise<string> {
    const card: ContactCard = decodeContactCard(text.trim());
    if (new URL(card.node).origin !== location.origin) throw new Error(`This contact lives on another node (${card.node}).`);
    const peer = toHex(card.accountKey);
    if (peer === toHex(this.client.accountKey)) throw new Error('That is your own code.');
    if (card.username !== undefined) {
      const record = await this.client.lookupUsername(card.username).catch(() => undefined);
      if (record && equalBytes(record.accountKey, card.accountKey)) await this.#setName(peer, card.username);
    }
    this.changed();
    return peer;
  }

  async myCard(): Promise<{ text: string; svg: string }> {
    const options = this.username !== undefined ? { username: this.username } : {};
    const card = await this.client.contactCard(options);
    return { text: encodeContactCard(card), svg: await this.client.contactQrSvg({ ...options, margin: 2, moduleSize: 6 }) };
  }

  async acceptRequest(peer: string): Promise<void> {
    await this.client.acceptContact(fromHex(peer));
    await this.#introduce(peer);
    // What was read while it was a request got no read receipt (the SDK sends none to requests): now it may.
    await this.#sendReadReceipt(peer, (await this.history(peer, 200)).filter((e) => !e.outgoing && !e.unread).map((e) => e.id));
    this.changed();
  }

  async declineRequest(peer: string, block: boolean): Promise<void> {
    await this.client.declineContact(fromHex(peer), { block });
    this.changed();
  }

  async setBlocked(peer: string, blocked: boolean): Promise<void> {
    if (blocked) await this.client.block(fromHex(peer));
    else await this.client.unblock(fromHex(peer));
    this.changed();
  }

  /** Sends our username once to a contact, so they see a name rather than a key. */
  async #introduce(peer: string): Promise<void> {
    if (this.username === undefined || (await this.storage.getItem(T.introduced, peer))) return;
    await this.client.sendBinary(this.recipientOf(peer), utf8.encode(JSON.stringify({ username: this.username })), PROFILE_MIME);
    await this.storage.setItem(T.introduced, peer, new Uint8Array([1]));
  }

  // ── Conversations ──

  /**
   * The list: the SDK's conversation list (last message, unread count) plus contacts and names
   * without messages yet. Prudence's own profile messages are in the SDK's list and counts but never
   * shown, so where one could be involved the newest messages are looked at.
   */
  async conversations(): Promise<ConversationSummary[]> {
    const listed = new Map<string, { last?: HistoryEntry; unread: number }>();
    const out: ConversationSummary[] = [];
    for (const c of await this.client.conversationList()) {
      if (c.conversation.kind !== 'direct') continue;
      listed.set(toHex(c.conversation.peer), { ...(c.lastMessage ? { last: c.lastMessage } : {}), unread: c.unread });
    }
    for (const g of await this.client.groups.list()) {
      if (!g.isMember) continue;
      const recent = await this.client.history(g.conversation, { limit: 50 });
      const last = recent.filter(isShown).at(-1);
      out.push({ kind: 'group', peer: toHex(g.groupId), name: g.name, ...(last ? { last } : {}), unread: recent.filter((e) => !e.outgoing && e.unread && isShown(e)).length, blocked: false });
    }
    const peers = new Set<string>(listed.keys());
    const states = new Map<string, ContactState>();
    for (const { accountKey, state } of await this.client.contacts()) {
      const p = toHex(accountKey);
      states.set(p, state);
      peers.add(p);
    }
    for (const p of this.names.keys()) peers.add(p);
    for (const peer of peers) {
      const key = fromHex(peer);
      let { last, unread } = listed.get(peer) ?? { unread: 0 };
      if (unread > 0 || (last && !isShown(last))) {
        const recent = await this.client.history(key, { limit: unread + 20 });
        unread = recent.filter((e) => !e.outgoing && e.unread && isShown(e)).length;
        last = recent.filter(isShown).at(-1);
      }
      const state = states.get(peer);
      out.push({ kind: 'direct', peer, name: this.nameOf(peer), ...(last ? { last } : {}), unread, ...(state ? { state } : {}), blocked: await this.client.isBlocked(key) });
    }
    return out.sort((a, b) => (b.last?.receivedAt ?? 0) - (a.last?.receivedAt ?? 0) || a.name.localeCompare(b.name));
  }

  async history(peer: string, limit = 500): Promise<HistoryEntry[]> {
    return (await this.client.history(this.#conv(peer), { limit })).filter(isShown);
  }

  /** The SDK's conversation for a screen's key: a group (`g:…`) or a peer's account key. */
  #conv(peer: string): ConversationId | Uint8Array {
    return isGroupKey(peer) ? Messenger.groupConversation(groupHex(peer)) : fromHex(peer);
  }

  /** Everything in the conversation is read: the SDK's unread count goes to 0, and a read receipt goes to the sender. */
  async markRead(peer: string): Promise<void> {
    const entries = await this.client.history(this.#conv(peer), { limit: 200 });
    if (!entries.some((e) => e.unread)) return;
    await this.client.markConversationRead(this.#conv(peer));
    await this.#sendReadReceipt(
      peer,
      entries.filter((e) => !e.outgoing && e.unread && isShown(e)).map((e) => e.id),
    );
    this.changed();
  }

  /** Read receipts for messages shown from the history: the SDK finds each one's sending device. */
  async #sendReadReceipt(peer: string, ids: string[]): Promise<void> {
    if (ids.length === 0 || !this.settings.readReceipts) return;
    await this.client.markRead(this.#conv(peer), ids).catch((e: unknown) => this.notice(`A read receipt could not be queued: ${describeError(e)}`));
  }

  /** The delivery state of each outgoing message, as the SDK stored it (live changes arrive as `messageState` events). */
  states(entries: readonly HistoryEntry[]): Map<string, MessageState> {
    return new Map(entries.filter((e) => e.outgoing && e.state !== undefined).map((e) => [e.id, e.state!]));
  }

  async #before(peer: string): Promise<Recipient | ConversationId> {
    if (isGroupKey(peer)) return Messenger.groupConversation(groupHex(peer));
    await this.#introduce(peer);
    return this.recipientOf(peer);
  }

  async sendText(peer: string, text: string, options: { replyTo?: HistoryEntry } = {}): Promise<void> {
    const to = await this.#before(peer);
    const r = options.replyTo;
    await this.client.sendText(to, text, r ? { replyTo: { author: r.author, id: r.id, snippet: (r.text ?? r.file?.name ?? '').slice(0, 120) } } : {});
    await this.setTyping(peer, false);
    this.changed();
  }

  async forward(peer: string, entry: HistoryEntry): Promise<void> {
    const to = await this.#before(peer);
    await this.client.forward(to, { text: entry.text ?? '' });
    this.changed();
  }

  async react(peer: string, entry: HistoryEntry, emoji: string): Promise<void> {
    const mine = entry.reactions.some((r) => r.emoji === emoji && equalBytes(r.author, this.client.accountKey));
    await this.client.react(await this.#before(peer), { author: entry.author, id: entry.id }, emoji, { remove: mine });
    this.changed();
  }

  async edit(peer: string, id: string, text: string): Promise<void> {
    await this.client.editMessage(this.#dest(peer), id, text);
    this.changed();
  }

  async remove(peer: string, id: string): Promise<void> {
    await this.client.deleteMessage(this.#dest(peer), id);
    this.changed();
  }

  async retry(id: string): Promise<void> {
    await this.client.retry(id);
    this.changed();
  }

  timer(peer: string): Promise<number> {
    return this.client.disappearingTimer(this.#conv(peer));
  }

  async setTimer(peer: string, seconds: number): Promise<void> {
    await this.client.setDisappearingTimer(await this.#before(peer), seconds);
    this.changed();
  }

  #typingSent = new Map<string, number>();
  /** "typing…" to the peer, at most every 3 s while typing; `false` once sent or cleared. */
  async setTyping(peer: string, typing: boolean): Promise<void> {
    if (!this.settings.typingIndicators) return;
    const last = this.#typingSent.get(peer);
    if (typing && last !== undefined && Date.now() - last < 3000) return;
    if (!typing && last === undefined) return;
    if (typing) this.#typingSent.set(peer, Date.now());
    else this.#typingSent.delete(peer);
    if (!isGroupKey(peer) && (await this.client.contactState(fromHex(peer))) !== 'accepted') return;
    await this.client.setTyping(this.#dest(peer), typing).catch(() => undefined);
  }

  isTyping(peer: string): boolean {
    return (this.typing.get(peer) ?? 0) > Date.now();
  }

  async #announcePresence(online: boolean): Promise<void> {
    if (online && !this.settings.sharePresence) return;
    const contacts = (await this.client.contacts()).filter((c) => c.state === 'accepted').slice(0, 50);
    await Promise.all(contacts.map((c) => this.client.setPresence(this.recipientOf(toHex(c.accountKey)), online).catch(() => undefined)));
  }

  /** The page is hidden or shown: tell contacts (presence), and read the open conversation. */
  async visibility(visible: boolean): Promise<void> {
    await this.#announcePresence(visible);
    if (visible && this.openPeer) await this.markRead(this.openPeer);
    if (visible && this.openGroup) await this.markGroupRead(this.openGroup);
  }

  // ── Groups (docs/api.md §Groups) ──

  static groupConversation(groupId: string): ConversationId {
    return { kind: 'group', groupId: fromHex(groupId) };
  }

  /** A new group with these usernames as members (each with every device its verified list names); returns its id. */
  async createGroup(name: string, usernames: readonly string[]): Promise<string> {
    const members = [...new Set(usernames.map((u) => u.trim().toLowerCase()).filter((u) => u !== '' && u !== this.username))];
    if (members.length === 0) throw new Error('Choose at least one member.');
    const g = await this.client.groups.create(name.trim(), members.map((username) => ({ username })));
    this.changed();
    return toHex(g.groupId);
  }

  groupInfo(groupId: string): Promise<GroupInfo | undefined> {
    return this.client.groups.info(fromHex(groupId));
  }

  async groupHistory(groupId: string): Promise<HistoryEntry[]> {
    return (await this.client.history(Messenger.groupConversation(groupId), { limit: 500 })).filter(isShown);
  }

  async sendGroupText(groupId: string, text: string): Promise<void> {
    await this.client.sendText(Messenger.groupConversation(groupId), text);
    this.changed();
  }

  /** The group's unread count goes to 0 (on this account's other devices too), and read receipts go to each sender. */
  markGroupRead(groupId: string): Promise<void> {
    return this.markRead(GROUP_PREFIX + groupId);
  }

  /** Who of the other members has an own message: sent, delivered (received) or read. */
  groupReceipts(groupId: string, messageId: string): Promise<GroupReceipt[]> {
    return this.client.groups.receipts(fromHex(groupId), messageId);
  }

  /** Adds an account by username at once (admins, or anyone in an admin-less group). */
  async addToGroup(groupId: string, username: string): Promise<void> {
    await this.client.groups.add(fromHex(groupId), { accountKey: await this.#accountOf(username) });
    this.changed();
  }

  /** Asks an account (by username) to join; the group changes only once it accepts. */
  async inviteToGroup(groupId: string, username: string): Promise<void> {
    await this.client.groups.invite(fromHex(groupId), { accountKey: await this.#accountOf(username) });
  }

  /** A username → its account key, and the name remembered for the member list. */
  async #accountOf(username: string): Promise<Uint8Array> {
    const name = username.trim().toLowerCase();
    if (name === '') throw new Error('Type a username.');
    const record = await this.client.lookupUsername(name);
    await this.#setName(toHex(record.accountKey), name);
    return record.accountKey;
  }

  inviteLink(groupId: string): Promise<string> {
    return this.client.groups.inviteLink(fromHex(groupId));
  }

  async joinByLink(link: string): Promise<string> {
    const { groupId } = await this.client.groups.joinByLink(link.trim());
    return toHex(groupId);
  }

  invitations(): Promise<GroupInvitation[]> {
    return this.client.groups.invitations();
  }

  async answerInvite(invitation: GroupInvitation, accept: boolean): Promise<void> {
    if (accept) await this.client.groups.acceptInvite(invitation);
    else await this.client.groups.declineInvite(invitation);
    this.changed();
  }

  /** Admin and management actions on a member or the group (docs/api.md §Groups). */
  async manageGroup(groupId: string, action: 'kick' | 'promote' | 'transfer', member: string): Promise<void> {
    const id = fromHex(groupId);
    const key = fromHex(member);
    if (action === 'kick') await this.client.groups.kick(id, key);
    else if (action === 'promote') await this.client.groups.promote(id, key);
    else await this.client.groups.transferAdmin(id, key);
    this.changed();
  }

  async renameGroup(groupId: string, name: string): Promise<void> {
    await this.client.groups.rename(fromHex(groupId), name.trim());
    this.changed();
  }

  async makeAdminLess(groupId: string): Promise<void> {
    await this.client.groups.makeAdminLess(fromHex(groupId));
    this.changed();
  }

  /** The group's membership changes seen on this device, oldest first (the chat's system lines). */
  async groupLog(groupId: string): Promise<GroupLogLine[]> {
    return (await getJson<GroupLogLine[]>(this.storage, T.groupLog, groupId)) ?? [];
  }

  #logChain: Promise<void> = Promise.resolve();
  /** Events of one change arrive together: appended one after another, none lost. */
  #logGroupChange(groupId: string, change: GroupChange): Promise<void> {
    this.#logChain = this.#logChain.then(() => this.#appendGroupLog(groupId, change)).catch(() => undefined);
    return this.#logChain;
  }

  async #appendGroupLog(groupId: string, change: GroupChange): Promise<void> {
    const line: GroupLogLine = {
      at: Date.now(),
      change: {
        type: change.type,
        ...('accountKey' in change ? { accountKey: toHex(change.accountKey) } : {}),
        ...('name' in change ? { name: change.name } : {}),
        ...('policy' in change ? { policy: change.policy } : {}),
      },
    };
    // Device changes are routine (a member linked a browser): not worth a line.
    if (change.type !== 'devicesChanged') await setJson(this.storage, T.groupLog, groupId, [...(await this.groupLog(groupId)), line].slice(-GROUP_LOG_MAX));
    this.changed();
    // Members who are not contacts learn our username from the group (joined: everyone; added: the newcomer).
    const me = toHex(this.client.accountKey);
    if (change.type === 'joined' || (change.type === 'memberAdded' && line.change.accountKey !== me)) void this.#introduceToGroup(groupId);
  }

  /** Our username to the group, in Prudence's hidden profile message (never shown; checked by each receiver against the directory). */
  async #introduceToGroup(groupId: string): Promise<void> {
    if (this.username === undefined || (await this.groupInfo(groupId))?.isMember !== true) return;
    await this.client
      .sendBinary(Messenger.groupConversation(groupId), utf8.encode(JSON.stringify({ username: this.username })), PROFILE_MIME)
      .catch((e: unknown) => this.notice(`Your name could not be sent to the group: ${describeError(e)}`));
  }

  async leaveGroup(groupId: string): Promise<void> {
    await this.client.groups.leave(fromHex(groupId));
    this.changed();
  }

  // ── Files ──

  /** Encrypts and uploads a file, with progress (bytes read into the encryptor) in `uploads`. */
  async sendFile(peer: string, file: File, thumbnail?: { data: Uint8Array; mimeType: string }): Promise<void> {
    const key = `${Date.now()}-${Math.random()}`;
    const upload: Upload = { key, peer, name: file.name, size: file.size, done: 0, phase: 'encrypting' };
    this.uploads.set(key, upload);
    this.changed();
    // Handed to the SDK slice by slice: each pull is one chunk read and encrypted, so `done` is real progress.
    let offset = 0;
    const counted = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (offset >= file.size) return controller.close();
        const slice = new Uint8Array(await file.slice(offset, offset + UPLOAD_SLICE_BYTES).arrayBuffer());
        offset += slice.byteLength;
        upload.done = offset;
        if (offset >= file.size) upload.phase = 'uploading';
        this.changed();
        controller.enqueue(slice);
      },
    });
    try {
      const to = await this.#before(peer);
      await this.client.sendFile(to, counted, { mimeType: file.type || 'application/octet-stream', name: file.name, size: file.size, ...(thumbnail ? { thumbnail } : {}) });
      this.uploads.delete(key);
    } catch (e) {
      upload.phase = 'failed';
      upload.error = describeError(e);
    }
    this.changed();
  }

  /** Downloads and decrypts an attachment; `progress(bytes)` as each verified chunk arrives. */
  async download(file: FileAttachment, progress: (bytes: number) => void): Promise<Blob> {
    const stream = await this.client.downloadFile(file);
    const parts: Uint8Array[] = [];
    let n = 0;
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      n += value.byteLength;
      progress(n);
    }
    return new Blob(parts as BlobPart[], { type: file.mimeType });
  }

  // ── Safety numbers and key changes ──

  safetyNumber(peer: string): { groups: string[]; code: string; svg: string } {
    const key = fromHex(peer);
    const n = this.client.safetyNumber(key);
    return { groups: n.groups, code: toBase64Url(n.scannable), svg: this.client.safetyNumberQrSvg(key, { margin: 2, moduleSize: 5 }) };
  }

  /** Compares the other phone's code (scanned bytes or pasted text); a match marks the contact verified. */
  async verify(peer: string, scanned: Uint8Array | string): Promise<'match' | 'mismatch' | 'version-mismatch' | 'malformed'> {
    const bytes = typeof scanned === 'string' ? fromBase64Url(scanned) : scanned;
    if (!bytes) return 'malformed';
    const { status } = this.client.verifySafetyNumber(fromHex(peer), bytes);
    if (status === 'match') {
      this.verified.add(peer);
      await this.storage.setItem(T.verified, peer, new Uint8Array([1]));
      this.changed();
    }
    return status;
  }

  keyChangeFor(peer: string): KeyChange | undefined {
    for (const k of this.keyChanges.values()) if (k.previous === peer || k.next === peer) return k;
    return undefined;
  }

  /** Trust the new key for that username; the conversation continues under the new account. */
  async acceptKeyChange(change: KeyChange): Promise<string> {
    await this.client.acceptIdentityChange(change.username);
    this.keyChanges.delete(change.username);
    await this.storage.deleteItem(T.keyChange, change.username);
    this.names.delete(change.previous);
    await this.storage.deleteItem(T.names, change.previous);
    await this.#setName(change.next, change.username);
    this.changed();
    return change.next;
  }

  // ── Search and export ──

  async search(query: string): Promise<{ peer: string; entry: HistoryEntry }[]> {
    const q = query.trim().toLowerCase();
    if (q === '') return [];
    const out: { peer: string; entry: HistoryEntry }[] = [];
    for (const k of await this.client.conversations()) {
      const peer = toHex(k);
      for (const entry of await this.history(peer, 5000)) {
        const hay = `${entry.text ?? ''} ${entry.file?.name ?? ''}`.toLowerCase();
        if (hay.includes(q)) out.push({ peer, entry });
      }
    }
    return out.sort((a, b) => b.entry.receivedAt - a.entry.receivedAt);
  }

  /** The conversation as plain text (one line per message), for the user to keep. */
  async exportText(peer: string): Promise<string> {
    const entries = await this.history(peer, 100_000);
    const me = this.username ?? 'me';
    const group = isGroupKey(peer) ? await this.groupInfo(groupHex(peer)) : undefined;
    const them = group ? group.name : this.nameOf(peer);
    const lines = [`Prudence conversation ${group ? 'in the group' : 'with'} ${them}, exported ${new Date().toISOString()}`, ''];
    for (const e of entries) {
      const who = e.outgoing ? me : group ? this.nameOf(toHex(e.author)) : them;
      const what = e.deleted ? '(deleted)' : e.file ? `[file ${e.file.name}, ${e.file.size} bytes]` : (e.text ?? '');
      const marks = [e.forwarded ? 'forwarded' : '', e.edited ? 'edited' : '', e.replyTo ? `reply to "${e.replyTo.snippet}"` : ''].filter(Boolean).join(', ');
      const reactions = e.reactions.map((r) => r.emoji).join('');
      lines.push(`[${new Date(e.sentAt).toISOString()}] ${who}: ${what}${marks ? ` (${marks})` : ''}${reactions ? ` ${reactions}` : ''}`);
    }
    return lines.join('\n') + '\n';
  }
}

/** Prudence's text form of a link offer (to paste where no camera is): `mwl1:` + base64url of the QR bytes. */
export const LINK_TEXT_PREFIX = 'mwl1:';

function decodeLinkText(text: string): Uint8Array {
  const t = text.trim();
  const bytes = t.startsWith(LINK_TEXT_PREFIX) ? fromBase64Url(t.slice(LINK_TEXT_PREFIX.length)) : undefined;
  if (!bytes || bytes.length === 0) throw new Error(`That is not a link code (it starts with ${LINK_TEXT_PREFIX}).`);
  return bytes;
}

/**
 * A browser with no device identity yet: it creates an account, or shows a link offer that a device
 * of an existing account scans (the SDK requires an empty storage for that).
 */
export class FreshDevice {
  constructor(public storage: ProtocolStorage) {}

  async createAccount(): Promise<Messenger> {
    try {
      return await Messenger.start(this.storage);
    } catch (e) {
      // start() closed the storage (e.g. the node was unreachable): open it again, so "Create account" can be retried.
      this.storage = await openIndexedDbStorage({ name: DB_NAME });
      throw e;
    }
  }

  /** A one-time link offer (5 minutes) to show as a QR code; `onIntroduced` once a device scanned it. */
  offer(deviceName: string, onIntroduced: (info: { accountKey: Uint8Array; deviceName: string }) => void): Promise<LinkOfferHandle<MeshWhisper>> {
    return MeshWhisper.createLinkOffer({ node: location.origin, namespace: NAMESPACE, storage: this.storage, connect: false, deviceName, onIntroduced });
  }

  static offerText(handle: LinkOfferHandle<MeshWhisper>): string {
    return LINK_TEXT_PREFIX + toBase64Url(handle.payload);
  }

  /** Waits for the other device to finish, then opens Prudence on the linked account. */
  async linked(handle: LinkOfferHandle<MeshWhisper>, deviceName: string): Promise<Messenger> {
    return Messenger.linked(this.storage, await handle.completed, deviceName);
  }

  /** Restores the account from its backup onto this browser (a new manager device of the account). */
  async restore(options: { recoveryKey?: string; passphrase?: string; username?: string; revokeOtherDevices: boolean; onProgress: (fraction: number) => void }, deviceName: string): Promise<Messenger> {
    const done = await MeshWhisper.restoreFromArchive({
      node: location.origin,
      namespace: NAMESPACE,
      storage: this.storage,
      connect: false,
      revokeOtherDevices: options.revokeOtherDevices,
      onProgress: options.onProgress,
      ...(options.recoveryKey !== undefined ? { recoveryKey: options.recoveryKey } : {}),
      ...(options.passphrase !== undefined ? { passphrase: options.passphrase } : {}),
      ...(options.username !== undefined ? { username: options.username.trim().toLowerCase() } : {}),
    });
    return Messenger.restored(this.storage, done, deviceName);
  }

  close(): Promise<void> {
    return this.storage.close();
  }
}

/** Whether a passphrase is strong enough for the backup (the SDK's rule), and why not. */
export function passphraseProblem(passphrase: string): string | undefined {
  const r = checkArchivePassphrase(passphrase);
  return r.ok ? undefined : r.reason;
}

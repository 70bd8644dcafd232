/**
 * History replay with consent (docs/spec/content.md §History replay, docs/api.md §Recovery): a
 * device asks a contact's devices to replay their direct conversation; the contact's app decides
 * (policy `ask` — the default: a `historyReplayRequest` event the app answers —, `always`, `never`);
 * the answer goes to the asking device only, over the existing pairwise sessions; replayed messages
 * merge into its history by (author, id) — nothing twice — and are marked `replayed`.
 *
 * Limits (constants.ts): at most REPLAY_MAX_MESSAGES messages and REPLAY_MAX_BYTES per answer, in
 * parts of at most REPLAY_PART_BYTES; at most REPLAY_MAX_REQUESTS_PER_DAY requests per asking
 * account are considered per day (more are answered RATE_LIMITED without asking the user);
 * requests only from accepted contacts; an unanswered ask is forgotten after REPLAY_PENDING_TTL_MS.
 */
import type { CryptoContext, DeviceCertificate } from '@meshwhisper/crypto';
import { GROUP_ID_LENGTH, equalBytes, fromHex, mailboxIdOf, toHex } from '@meshwhisper/crypto';
import type { HistoryReplayRequest, HistoryReplayResponse, ReplayedMessage } from '@meshwhisper/protocol';
import {
  ContentSchema,
  HistoryReplayDecision,
  ReplayedMessageSchema,
  StoredMessageSchema,
  StoredReplayRateSchema,
  StoredReplayRequestSchema,
  create,
  fromBinary,
  toBinary,
} from '@meshwhisper/protocol';
import type { AppStore, ProtocolStorage } from '../storage/types.js';
import { REPLAY_DEFAULT_MESSAGES, REPLAY_MAX_BYTES, REPLAY_MAX_MESSAGES, REPLAY_MAX_REQUESTS_PER_DAY, REPLAY_PART_BYTES, REPLAY_PENDING_TTL_MS } from '../constants.js';
import type { Contacts } from './contacts.js';
import { conversationKey, directConversation, toRef } from './conversation.js';
import type { ConversationId } from './conversation.js';
import { checkAccountKey } from './directory.js';
import type { Directory } from './directory.js';
import { SdkError, SdkErrorCode } from './errors.js';
import type { MeshWhisperEvents } from './types.js';
import { HISTORY_VERSION, HistoryTable, decodeStored, importHistoryRecord } from './history.js';
import type { Log } from './log.js';
import type { Sender } from './sender.js';

/** What the app's answer is when a contact asks for a replay. */
export type HistoryReplayPolicy = 'ask' | 'always' | 'never';

export const ReplayTable = {
  /** Requests this device made, by request id hex: StoredReplayRequest. */
  Out: 'mw.replay-out',
  /** Requests waiting for the app's answer (policy 'ask'), by request id hex: StoredReplayRequest. */
  In: 'mw.replay-in',
  /** Recent requests per asking account (account hex): StoredReplayRate. */
  Rate: 'mw.replay-rate',
} as const;
const RECORD_VERSION = 1;
const DAY_MS = 24 * 3600 * 1000;

type Pending = { [K in keyof MeshWhisperEvents]: readonly [K, MeshWhisperEvents[K]] }[keyof MeshWhisperEvents];
const decisionName = (d: HistoryReplayDecision): MeshWhisperEvents['historyReplayed']['decision'] =>
  d === HistoryReplayDecision.GRANTED ? 'granted' : d === HistoryReplayDecision.RATE_LIMITED ? 'rate-limited' : 'refused';

export interface ReplayDeps {
  readonly ctx: CryptoContext;
  readonly storage: ProtocolStorage;
  readonly accountKey: Uint8Array;
  readonly sender: Pick<Sender, 'sendToDevice'>;
  readonly directory: Pick<Directory, 'resolve'>;
  readonly contacts: Pick<Contacts, 'stateIn' | 'isBlockedIn'>;
  readonly log: Log;
  readonly policy: HistoryReplayPolicy;
  /**
   * A group as this device holds it (`store`: the current transaction or the storage): whether this
   * device is a member, and the member accounts. Undefined: no such group here.
   */
  readonly group: (store: AppStore, groupId: Uint8Array) => Promise<{ isMember: boolean; accounts: Uint8Array[] } | undefined>;
}

const conversationFor = (peer: Uint8Array, groupId: Uint8Array): ConversationId => (groupId.length > 0 ? { kind: 'group', groupId } : directConversation(peer));

function readRequest(b: Uint8Array | undefined) {
  if (!b) return undefined;
  const r = fromBinary(StoredReplayRequestSchema, b);
  if (r.version > RECORD_VERSION) throw new SdkError(SdkErrorCode.UNSUPPORTED_VERSION, 'a stored replay request was written by a newer SDK: update the app');
  return r;
}

export class HistoryReplay {
  constructor(private readonly deps: ReplayDeps) {}

  // ── The asking device ─────────────────────────────────────────────────────────────────────

  /**
   * Asks every device of `peer` to replay the direct conversation (`peer` an accepted contact), or
   * the group `groupId` (this device and `peer` both members of it, as this device holds the group).
   */
  async request(peer: Uint8Array, options: { maxMessages?: number; groupId?: Uint8Array } = {}): Promise<{ requestId: string }> {
    const { ctx, storage, contacts, directory, sender } = this.deps;
    checkAccountKey(peer);
    const max = options.maxMessages ?? REPLAY_DEFAULT_MESSAGES;
    if (!Number.isSafeInteger(max) || max < 1 || max > REPLAY_MAX_MESSAGES) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `maxMessages must be an integer from 1 to ${REPLAY_MAX_MESSAGES}`);
    const groupId = options.groupId ?? new Uint8Array(0);
    if (options.groupId !== undefined) {
      if (!(groupId instanceof Uint8Array) || groupId.length !== GROUP_ID_LENGTH) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `groupId must be ${GROUP_ID_LENGTH} bytes`);
      const g = await this.deps.group(storage, groupId);
      if (!g) throw new SdkError(SdkErrorCode.UNKNOWN_CONVERSATION, 'this device holds no such group');
      if (!g.isMember) throw new SdkError(SdkErrorCode.GROUP_NOT_MEMBER, 'this device is not a member of the group');
      if (equalBytes(peer, this.deps.accountKey) || !g.accounts.some((a) => equalBytes(a, peer))) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'requestHistoryReplay: only another member of the group can be asked');
    } else if ((await contacts.stateIn(storage, peer)) !== 'accepted') throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'requestHistoryReplay: only an accepted contact can be asked');
    if (await contacts.isBlockedIn(storage, peer)) throw new SdkError(SdkErrorCode.BLOCKED, 'this contact is blocked');
    const id = ctx.random(16);
    const requestId = toHex(id);
    await storage.setItem(ReplayTable.Out, requestId, toBinary(StoredReplayRequestSchema, create(StoredReplayRequestSchema, { version: RECORD_VERSION, peer, maxMessages: max, createdAt: BigInt(ctx.now()), groupId })));
    const { mailboxes } = await directory.resolve({ accountKey: peer });
    for (const mailboxId of mailboxes) {
      await sender.sendToDevice({ mailboxId, body: { case: 'replayRequest', value: { requestId: id, maxMessages: max, groupId } }, expectedAccountKey: peer });
    }
    return { requestId };
  }

  /** An answer part from `from` (in the ratchet step's transaction): merges what it carries. */
  async applyResponse(stx: AppStore, from: DeviceCertificate, r: HistoryReplayResponse): Promise<{ events: Pending[]; refused?: SdkError }> {
    const requestId = toHex(r.requestId);
    const out = r.requestId.length === 16 ? readRequest(await stx.getItem(ReplayTable.Out, requestId)) : undefined;
    // Already complete (another device of the contact answered first): nothing more is merged.
    if (!out) return { events: [] };
    // From another account than the one asked: refused (reported as undecryptable).
    if (!equalBytes(out.peer, from.accountKey)) return { events: [], refused: new SdkError(SdkErrorCode.PROTOCOL, 'a history replay from an account that was not asked') };
    const conversation = conversationFor(from.accountKey, out.groupId);
    const decision = decisionName(r.decision);
    if (decision !== 'granted') {
      await stx.deleteItem(ReplayTable.Out, requestId);
      return { events: [['historyReplayed', { requestId, conversation, from: from.accountKey, decision, added: 0, complete: true }]] };
    }
    let added = 0;
    let budget = out.maxMessages;
    for (const m of r.messages) {
      if (budget-- <= 0) break;
      if (await (out.groupId.length > 0 ? this.#mergeGroup(stx, out.groupId, m) : this.#merge(stx, from.accountKey, m))) added++;
    }
    const partsReceived = out.partsReceived + 1;
    // A grant has at most this many parts however many it claims (a contact cannot keep the request open).
    const complete = partsReceived >= Math.min(Math.max(1, r.parts), Math.ceil(REPLAY_MAX_BYTES / REPLAY_PART_BYTES) + 1);
    if (complete) await stx.deleteItem(ReplayTable.Out, requestId);
    else await stx.setItem(ReplayTable.Out, requestId, toBinary(StoredReplayRequestSchema, { ...out, partsReceived }));
    return { events: [['historyReplayed', { requestId, conversation, from: from.accountKey, decision, added, complete }]] };
  }

  /**
   * Files one replayed group message, unless (author, id) is already held: any author (a member
   * then, perhaps gone since), of kind text, binary or file, naming this group.
   */
  async #mergeGroup(stx: AppStore, groupId: Uint8Array, m: ReplayedMessage): Promise<boolean> {
    if (m.author.length !== 32) return false;
    let content;
    try {
      content = fromBinary(ContentSchema, m.content);
    } catch {
      return false;
    }
    const kind = content.body.case;
    if (content.messageId.length !== 16 || (kind !== 'text' && kind !== 'binary' && kind !== 'file') || !equalBytes(content.conversationId, groupId)) return false;
    const record = create(StoredMessageSchema, {
      version: HISTORY_VERSION,
      peer: new Uint8Array(0),
      author: m.author,
      from: '',
      content: m.content,
      receivedAt: content.sentAt,
      expiresAt: 0n,
      outgoing: equalBytes(m.author, this.deps.accountKey),
      deleted: false,
      edited: m.edited,
      editedText: m.editedText,
      conversation: toRef({ kind: 'group', groupId }),
      replayed: true,
    });
    return importHistoryRecord(stx, toBinary(StoredMessageSchema, record));
  }

  /** Files one replayed message, unless (author, id) is already held. */
  async #merge(stx: AppStore, peer: Uint8Array, m: ReplayedMessage): Promise<boolean> {
    const own = equalBytes(m.author, this.deps.accountKey);
    if (!own && !equalBytes(m.author, peer)) return false; // only the two accounts of this conversation
    let content;
    try {
      content = fromBinary(ContentSchema, m.content);
    } catch {
      return false;
    }
    const kind = content.body.case;
    if (content.messageId.length !== 16 || (kind !== 'text' && kind !== 'binary' && kind !== 'file') || content.conversationId.length > 0) return false;
    const record = create(StoredMessageSchema, {
      version: HISTORY_VERSION,
      peer,
      author: m.author,
      from: '',
      content: m.content,
      // Filed at the time it was written: replayed history goes where it belongs, not to the end.
      receivedAt: content.sentAt,
      expiresAt: 0n,
      outgoing: own,
      deleted: m.deleted,
      edited: m.edited,
      editedText: m.editedText,
      conversation: toRef(directConversation(peer)),
      replayed: true,
    });
    return importHistoryRecord(stx, toBinary(StoredMessageSchema, record));
  }

  // ── The asked device ──────────────────────────────────────────────────────────────────────

  /**
   * A request from `from` (in the ratchet step's transaction). Returns the events to emit and the
   * answer to send after the commit, if the policy or the limits decide without the app.
   */
  async applyRequest(stx: AppStore, from: DeviceCertificate, r: HistoryReplayRequest): Promise<{ events: Pending[]; after?: () => Promise<void> }> {
    const { ctx, contacts, policy } = this.deps;
    if (r.requestId.length !== 16) return { events: [] };
    const requestId = toHex(r.requestId);
    const mailbox = mailboxIdOf(ctx, from.deviceSigningKey);
    const peer = from.accountKey;
    const max = Math.min(Math.max(1, r.maxMessages), REPLAY_MAX_MESSAGES);
    const groupId = r.groupId;
    const answer = (decision: HistoryReplayDecision) => ({ events: [] as Pending[], after: () => this.#answer({ peer, mailbox, requestId, max, decision, groupId }) });
    if (equalBytes(peer, this.deps.accountKey)) return answer(HistoryReplayDecision.REFUSED);
    if (groupId.length > 0) {
      // A group: this device and the asking account must both be members as this device holds the
      // group now; anyone else (a stranger, a removed member) learns only "no".
      const g = groupId.length === GROUP_ID_LENGTH ? await this.deps.group(stx, groupId) : undefined;
      if (!g?.isMember || !g.accounts.some((a) => equalBytes(a, peer)) || (await contacts.isBlockedIn(stx, peer))) return answer(HistoryReplayDecision.REFUSED);
    } else if ((await contacts.stateIn(stx, peer)) !== 'accepted') return answer(HistoryReplayDecision.REFUSED); // only accepted contacts may ask
    if (policy === 'never') return answer(HistoryReplayDecision.REFUSED);
    // Rate: the requests of this account within the last day, counted whatever the answer.
    const now = ctx.now();
    const rateBytes = await stx.getItem(ReplayTable.Rate, toHex(peer));
    const recent = (rateBytes ? fromBinary(StoredReplayRateSchema, rateBytes).requestedAt : []).filter((t) => now - Number(t) < DAY_MS);
    if (recent.length >= REPLAY_MAX_REQUESTS_PER_DAY) return answer(HistoryReplayDecision.RATE_LIMITED);
    await stx.setItem(ReplayTable.Rate, toHex(peer), toBinary(StoredReplayRateSchema, create(StoredReplayRateSchema, { version: RECORD_VERSION, requestedAt: [...recent, BigInt(now)] })));
    if (policy === 'always') return answer(HistoryReplayDecision.GRANTED);
    await stx.setItem(ReplayTable.In, requestId, toBinary(StoredReplayRequestSchema, create(StoredReplayRequestSchema, { version: RECORD_VERSION, peer, mailbox, maxMessages: max, createdAt: BigInt(now), groupId })));
    return { events: [['historyReplayRequest', { requestId, conversation: conversationFor(peer, groupId), from: peer, maxMessages: max }]] };
  }

  /** The app's answer to a `historyReplayRequest` event. */
  async answer(requestId: string, allow: boolean): Promise<void> {
    const { ctx, storage } = this.deps;
    if (typeof requestId !== 'string' || !/^[0-9a-f]{32}$/.test(requestId)) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'requestId must be the id of a historyReplayRequest event');
    const r = readRequest(await storage.getItem(ReplayTable.In, requestId));
    if (!r) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'no history replay request with this id is waiting (answered already, or forgotten)');
    await storage.deleteItem(ReplayTable.In, requestId);
    if (ctx.now() - Number(r.createdAt) > REPLAY_PENDING_TTL_MS) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'this history replay request is too old to answer');
    let decision = allow ? HistoryReplayDecision.GRANTED : HistoryReplayDecision.REFUSED;
    // A group's membership may have changed while the app was deciding: still both members?
    if (decision === HistoryReplayDecision.GRANTED && r.groupId.length > 0) {
      const g = await this.deps.group(storage, r.groupId);
      if (!g?.isMember || !g.accounts.some((a) => equalBytes(a, r.peer))) decision = HistoryReplayDecision.REFUSED;
    }
    await this.#answer({ peer: r.peer, mailbox: r.mailbox, requestId, max: r.maxMessages, decision, groupId: r.groupId });
  }

  async #answer(a: { peer: Uint8Array; mailbox: Uint8Array; requestId: string; max: number; decision: HistoryReplayDecision; groupId: Uint8Array }): Promise<void> {
    const requestId = fromHex(a.requestId);
    const send = (value: { decision: HistoryReplayDecision; messages: ReplayedMessage[]; part: number; parts: number }) =>
      this.deps.sender.sendToDevice({ mailboxId: a.mailbox, body: { case: 'replayResponse', value: { requestId, ...value } }, expectedAccountKey: a.peer });
    if (a.decision !== HistoryReplayDecision.GRANTED) {
      await send({ decision: a.decision, messages: [], part: 1, parts: 1 });
      return;
    }
    const parts = await this.#gather(conversationFor(a.peer, a.groupId), a.max);
    for (let i = 0; i < parts.length; i++) await send({ decision: a.decision, messages: parts[i]!, part: i + 1, parts: parts.length });
  }

  /**
   * The newest `max` messages of `conversation` this device holds, oldest first, in parts. In a
   * group that is only what this device could read itself (it holds nothing else).
   */
  async #gather(conversation: ConversationId, max: number): Promise<ReplayedMessage[][]> {
    const items = await this.deps.storage.listItems(HistoryTable.Messages, { prefix: `${conversationKey(conversation)}/`, limit: max });
    const parts: ReplayedMessage[][] = [[]];
    let partBytes = 0;
    let total = 0;
    for (const { value } of items.reverse()) {
      const s = decodeStored(value);
      // Disappearing messages are not replayed: their author chose that they go.
      if (Number(s.expiresAt) > 0) continue;
      const m = create(ReplayedMessageSchema, { author: s.author, content: s.deleted ? new Uint8Array(0) : s.content, deleted: s.deleted, edited: s.edited, editedText: s.editedText });
      if (s.deleted) continue; // a tombstone has no content left to replay
      const size = toBinary(ReplayedMessageSchema, m).length + 8;
      if (size > REPLAY_PART_BYTES) continue;
      if (total + size > REPLAY_MAX_BYTES) break;
      if (partBytes + size > REPLAY_PART_BYTES) {
        parts.push([]);
        partBytes = 0;
      }
      parts[parts.length - 1]!.push(m);
      partBytes += size;
      total += size;
    }
    return parts;
  }
}


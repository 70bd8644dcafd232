/**
 * Contact cards: what a contact QR code carries (docs/api.md §Contacts). A card names an account
 * (its Ed25519 account key), where it lives (node URL and namespace) and the mailbox ids of its
 * devices, so someone standing in front of its screen can write to it without a username.
 *
 * Text form (proto/meshwhisper/v1/contact.proto): "mwc1:" ‖ unpadded base64url(protobuf
 * ContactCard). The card is not signed; the channel (a screen in front of you) is what makes it
 * trustworthy, and every device later reached is checked to be certified by the account key.
 *
 * decodeContactCard() reads untrusted input (any QR code a camera sees, any pasted text). It is
 * strict and total: anything but a well-formed version-1 card within the bounds below throws
 * SdkError(INVALID_CONTACT_CARD), and it throws nothing else.
 */
import { ContactCardSchema, NAMESPACE_PATTERN, USERNAME_PATTERN, create, fromBase64Url, fromBinary, toBase64Url, toBinary } from '@meshwhisper/protocol';
import { SdkError, SdkErrorCode } from './errors.js';

/** A decoded contact card (the protobuf `ContactCard` minus its version). */
export interface ContactCard {
  /** Base URL of the account's node, e.g. "https://chat.example.com" (http or https). */
  node: string;
  /** The app namespace on that node. */
  namespace: string;
  /** The account's raw 32-byte Ed25519 public key. */
  accountKey: Uint8Array;
  /** Mailbox ids (32 bytes each, 1..16, no duplicates) of the account's devices. */
  mailboxIds: Uint8Array[];
  /** The account's username in `namespace`, if it has one (informational, not verified). */
  username?: string;
}

/** Text prefix of a version-1 card. */
export const CONTACT_CARD_PREFIX = 'mwc1:';
/** The card format version this SDK writes and reads. */
export const CONTACT_CARD_VERSION = 1;
/** Longest card text decodeContactCard() looks at (characters; a valid card is ASCII). */
export const CONTACT_CARD_MAX_LENGTH = 2048;
/** Most mailbox ids one card may list. */
export const CONTACT_CARD_MAX_MAILBOX_IDS = 16;
/** Longest node URL a card may carry: keeps the largest valid card under CONTACT_CARD_MAX_LENGTH. */
export const CONTACT_CARD_MAX_NODE_LENGTH = 512;

const KEY_LENGTH = 32;
const MAILBOX_ID_LENGTH = 32;

/** Why a card's fields are unacceptable, or undefined when they are fine. Shared by encode and decode. */
function fieldProblem(node: unknown, namespace: unknown, accountKey: unknown, mailboxIds: unknown, username: unknown): string | undefined {
  const nodeProblem = nodeUrlProblem(node);
  if (nodeProblem !== undefined) return nodeProblem;
  if (typeof namespace !== 'string' || !NAMESPACE_PATTERN.test(namespace)) {
    return 'namespace must be 1..64 characters of a-z 0-9 _ . - starting with a letter or digit';
  }
  if (!(accountKey instanceof Uint8Array) || accountKey.length !== KEY_LENGTH) return `accountKey must be ${KEY_LENGTH} bytes`;
  if (!Array.isArray(mailboxIds) || mailboxIds.length < 1 || mailboxIds.length > CONTACT_CARD_MAX_MAILBOX_IDS) {
    return `mailboxIds must list 1..${CONTACT_CARD_MAX_MAILBOX_IDS} ids`;
  }
  const seen = new Set<string>();
  for (const id of mailboxIds as unknown[]) {
    if (!(id instanceof Uint8Array) || id.length !== MAILBOX_ID_LENGTH) return `every mailbox id must be ${MAILBOX_ID_LENGTH} bytes`;
    const key = toBase64Url(id);
    if (seen.has(key)) return 'mailbox ids must not repeat';
    seen.add(key);
  }
  if (username !== undefined && (typeof username !== 'string' || !USERNAME_PATTERN.test(username))) {
    return 'username must be 1..64 characters of a-z 0-9 _ . - starting with a letter or digit';
  }
  return undefined;
}

function nodeUrlProblem(node: unknown): string | undefined {
  if (typeof node !== 'string' || node.length === 0 || node.length > CONTACT_CARD_MAX_NODE_LENGTH) {
    return `node must be a URL of 1..${CONTACT_CARD_MAX_NODE_LENGTH} characters`;
  }
  // The URL parser silently strips surrounding whitespace and some control characters; a card
  // must carry the URL exactly as it will be used.
  if (/\s/u.test(node)) return 'node must not contain whitespace';
  for (let i = 0; i < node.length; i++) {
    const c = node.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return 'node must not contain control characters';
  }
  let url: URL;
  try {
    url = new URL(node);
  } catch {
    return 'node is not a URL';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'node must be an http(s) URL';
  if (url.hostname === '') return 'node URL has no host';
  if (url.username !== '' || url.password !== '') return 'node URL must not carry credentials';
  if (url.search !== '' || url.hash !== '' || node.includes('?') || node.includes('#')) return 'node URL must not have a query or fragment';
  return undefined;
}

/** The "mwc1:…" text of a card (what a contact QR code shows). Throws INVALID_ARGUMENT on a bad card. */
export function encodeContactCard(card: ContactCard): string {
  if (typeof card !== 'object' || card === null) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'encodeContactCard: card must be an object');
  const problem = fieldProblem(card.node, card.namespace, card.accountKey, card.mailboxIds, card.username);
  if (problem !== undefined) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `encodeContactCard: ${problem}`);
  const message = create(ContactCardSchema, {
    version: CONTACT_CARD_VERSION,
    node: card.node,
    namespace: card.namespace,
    accountKey: card.accountKey,
    mailboxIds: card.mailboxIds,
    username: card.username ?? '',
  });
  return CONTACT_CARD_PREFIX + toBase64Url(toBinary(ContactCardSchema, message));
}

function invalid(message: string, cause?: unknown): SdkError {
  return new SdkError(SdkErrorCode.INVALID_CONTACT_CARD, `decodeContactCard: ${message}`, undefined, cause === undefined ? undefined : { cause });
}

function newerApp(version: number): SdkError {
  return invalid(`this contact card uses format version ${version}; this app reads version ${CONTACT_CARD_VERSION} only — update the app to read it`);
}

/**
 * Reads the text of a contact card (a scanned QR code or pasted text, exactly as given: surrounding
 * whitespace is not trimmed). Throws SdkError(INVALID_CONTACT_CARD) for anything that is not a
 * well-formed version-1 card, including cards from a newer app (the message says to update).
 */
export function decodeContactCard(text: string): ContactCard {
  if (typeof text !== 'string') throw invalid('a contact card is text');
  if (text.length > CONTACT_CARD_MAX_LENGTH) throw invalid(`longer than ${CONTACT_CARD_MAX_LENGTH} characters`);
  if (!text.startsWith(CONTACT_CARD_PREFIX)) {
    // "mwc2:" and later: a text format this SDK predates, not garbage.
    const m = /^mwc([1-9][0-9]{0,8}):/.exec(text);
    if (m && Number(m[1]) > CONTACT_CARD_VERSION) throw newerApp(Number(m[1]));
    throw invalid(`not a MeshWhisper contact card (expected the prefix "${CONTACT_CARD_PREFIX}")`);
  }
  const payload = text.slice(CONTACT_CARD_PREFIX.length);
  const bytes = fromBase64Url(payload);
  // Canonical only: re-encoding must give the same text (no stray low bits in the last character).
  if (bytes === undefined || toBase64Url(bytes) !== payload) throw invalid('the payload is not unpadded base64url');
  let message;
  try {
    message = fromBinary(ContactCardSchema, bytes);
  } catch (e) {
    throw invalid('the payload is not a ContactCard message', e);
  }
  if (message.version > CONTACT_CARD_VERSION) throw newerApp(message.version);
  if (message.version !== CONTACT_CARD_VERSION) throw invalid(`unknown card version ${message.version}`);
  const username = message.username === '' ? undefined : message.username;
  const problem = fieldProblem(message.node, message.namespace, message.accountKey, message.mailboxIds, username);
  if (problem !== undefined) throw invalid(problem);
  const card: ContactCard = {
    node: message.node,
    namespace: message.namespace,
    accountKey: message.accountKey.slice(),
    mailboxIds: message.mailboxIds.map((id) => id.slice()),
  };
  if (username !== undefined) card.username = username;
  return card;
}

/**
 * Group invitation links (docs/spec/groups.md §G6.3), text for a QR code or a message:
 * "mwg1:" ‖ unpadded base64url(u8 version = 1 ‖ u16 len ‖ node URL ‖ 32 group id ‖ 16 invite id ‖
 * 32 inviter account ‖ u16 len ‖ group name (UTF-8)). The invite id is the secret: whoever holds
 * the link may ask the inviter to be added. The name is display only (the log decides).
 */
import { ByteReader, ByteWriter, CryptoError } from '@meshwhisper/crypto';
import { fromBase64Url, toBase64Url } from '@meshwhisper/protocol';
import { SdkError, SdkErrorCode } from '../errors.js';

export const GROUP_LINK_PREFIX = 'mwg1:';
export const GROUP_LINK_VERSION = 1;
/** Longest link text accepted (a QR code holds about 2,900 bytes at low error correction). */
export const GROUP_LINK_MAX_LENGTH = 2048;

export interface GroupLink {
  readonly node: string;
  readonly groupId: Uint8Array;
  readonly inviteId: Uint8Array;
  readonly inviter: Uint8Array;
  readonly name: string;
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

export function encodeGroupLink(l: GroupLink): string {
  const node = utf8.encode(l.node);
  const name = utf8.encode(l.name.slice(0, 256));
  const w = new ByteWriter().u8(GROUP_LINK_VERSION).u16(node.length).bytes(node).bytes(l.groupId).bytes(l.inviteId).bytes(l.inviter).u16(name.length).bytes(name);
  return GROUP_LINK_PREFIX + toBase64Url(w.finish());
}

/** Reads a group link; MW_SDK_INVALID_ARGUMENT for anything else (never throws another error). */
export function decodeGroupLink(text: string): GroupLink {
  const bad = (why: string): SdkError => new SdkError(SdkErrorCode.INVALID_ARGUMENT, `not a group link: ${why}`);
  if (typeof text !== 'string' || !text.startsWith(GROUP_LINK_PREFIX)) throw bad(`it does not start with ${GROUP_LINK_PREFIX}`);
  if (text.length > GROUP_LINK_MAX_LENGTH) throw bad('too long');
  const bytes = fromBase64Url(text.slice(GROUP_LINK_PREFIX.length));
  if (!bytes) throw bad('damaged');
  try {
    const r = new ByteReader(bytes, 'decodeGroupLink');
    const v = r.u8('version');
    if (v !== GROUP_LINK_VERSION) throw bad(`version ${v} (made by a newer app?)`);
    const node = fromUtf8.decode(r.bytes(r.u16('node length'), 'node'));
    const groupId = r.bytes(32, 'group id');
    const inviteId = r.bytes(16, 'invite id');
    const inviter = r.bytes(32, 'inviter');
    const name = fromUtf8.decode(r.bytes(r.u16('name length'), 'name'));
    r.finish();
    new URL(node);
    return { node, groupId, inviteId, inviter, name };
  } catch (e) {
    if (e instanceof SdkError) throw e;
    if (e instanceof CryptoError || e instanceof TypeError || e instanceof RangeError) throw bad('damaged');
    throw e;
  }
}

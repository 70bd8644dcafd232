/**
 * Vectors for the link's history frames (docs/spec/linking.md §History): test-vectors/
 * link-history.json. A direct-conversation entry (edited, with a reaction, unread) and a group
 * entry, as `LinkMessage { history { entries } }`; the link's own wire format, not the storage
 * record. Written with MW_WRITE_VECTORS=1; otherwise the implementation must reproduce the file,
 * and the file is checked with protobuf decoding alone. (test-vectors/link.json holds the channel
 * layer, produced by @meshwhisper/crypto, which knows no protobuf messages.)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '@meshwhisper/crypto';
import { ContentSchema, LinkMessageSchema, StoredMessageSchema, create, fromBinary, toBinary } from '@meshwhisper/protocol';
import { fromLinkEntry, toLinkEntry } from '../../src/client/link-history.js';
import { toRef } from '../../src/client/conversation.js';

const FILE = new URL('../../../../test-vectors/link-history.json', import.meta.url);
const seq = (n: number, from: number) => Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);

function build() {
  const me = seq(32, 1);
  const peer = seq(32, 0x80);
  const group = seq(16, 0x60);
  const text = (id: number, t: string) => toBinary(ContentSchema, create(ContentSchema, { version: 2, messageId: seq(16, id), sentAt: 1_759_999_999_000n, body: { case: 'text', value: { text: t } } }));
  const direct = create(StoredMessageSchema, {
    version: 2,
    peer,
    author: peer,
    from: 'device-address-of-the-peer',
    content: text(0xa0, 'hello from carol'),
    receivedAt: 1_760_000_000_000n,
    expiresAt: 1_760_003_600_000n,
    edited: true,
    editedText: 'hello from carol (edited)',
    reactions: [{ author: me, emoji: '👍' }],
    conversation: toRef({ kind: 'direct', peer }),
    unread: true,
  });
  const inGroup = create(StoredMessageSchema, { version: 2, author: me, content: text(0xb0, 'to the group'), receivedAt: 1_760_000_001_000n, outgoing: true, conversation: toRef({ kind: 'group', groupId: group }) });
  const stored = [direct, inGroup].map((m) => toBinary(StoredMessageSchema, m));
  const entries = stored.map(toLinkEntry);
  const frame = toBinary(LinkMessageSchema, create(LinkMessageSchema, { body: { case: 'history', value: { entries } } }));
  return {
    description:
      "MeshWhisper device link history frame (docs/spec/linking.md §History): LinkMessage { history { entries: [LinkHistoryEntry] } } (link.proto), the payload of one channel frame. Hex unless noted. entries: the fields of each entry as a reader decodes them; frame: the LinkMessage encoding. The first entry is a direct conversation's incoming message (edited, a reaction, unread, an expiry), the second an outgoing group message.",
    entries: entries.map((e) => ({
      conversation: e.conversation.case === 'peer' ? { peer: toHex(e.conversation.value) } : { groupId: toHex(e.conversation.value as Uint8Array) },
      author: toHex(e.author),
      content: toHex(e.content),
      receivedAt: e.receivedAt.toString(),
      expiresAt: e.expiresAt.toString(),
      outgoing: e.outgoing,
      deleted: e.deleted,
      edited: e.edited,
      editedText: e.editedText,
      reactions: e.reactions.map((r) => ({ author: toHex(r.author), emoji: r.emoji })),
      request: e.request,
      unread: e.unread,
      replayed: e.replayed,
      senderDevice: e.senderDevice,
    })),
    frame: toHex(frame),
    stored: stored.map(toHex),
  };
}

describe('test-vectors/link-history.json', () => {
  const generated = build();
  if (process.env['MW_WRITE_VECTORS'] === '1') writeFileSync(FILE, `${JSON.stringify(generated, null, 2)}\n`);
  const v = JSON.parse(readFileSync(FILE, 'utf8')) as ReturnType<typeof build>;

  it('the committed file is exactly what the implementation produces', () => {
    expect(v).toEqual(JSON.parse(JSON.stringify(generated)));
  });

  it('from the JSON alone: the frame decodes to the listed fields', () => {
    const m = fromBinary(LinkMessageSchema, fromHex(v.frame));
    expect(m.body.case).toBe('history');
    const entries = m.body.case === 'history' ? m.body.value.entries : [];
    expect(entries.length).toBe(v.entries.length);
    for (const [i, e] of entries.entries()) {
      const want = v.entries[i]!;
      expect(e.conversation.case === 'peer' ? { peer: toHex(e.conversation.value) } : { groupId: toHex(e.conversation.value as Uint8Array) }).toEqual(want.conversation);
      expect([toHex(e.author), toHex(e.content), e.receivedAt.toString(), e.expiresAt.toString(), e.editedText, e.unread, e.outgoing]).toEqual([want.author, want.content, want.receivedAt, want.expiresAt, want.editedText, want.unread, want.outgoing]);
      expect(e.reactions.map((r) => ({ author: toHex(r.author), emoji: r.emoji }))).toEqual(want.reactions);
    }
  });

  it('an entry received becomes the stored record the scanning device had (storage and wire kept apart)', () => {
    const m = fromBinary(LinkMessageSchema, fromHex(v.frame));
    const entries = m.body.case === 'history' ? m.body.value.entries : [];
    for (const [i, e] of entries.entries()) expect(toHex(fromLinkEntry(e))).toBe(v.stored[i]);
  });
});

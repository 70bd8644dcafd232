/**
 * Vectors for the archive payload (docs/spec/archive.md §Payload, §Merge): test-vectors/
 * archive-payload.json. A payload with one entry of each kind, its encoding, each entry's merge key
 * and base digest, the payload sealed under the recovery-key vector of test-vectors/archive.json,
 * and a three-way merge. Written with MW_WRITE_VECTORS=1; otherwise the implementation must
 * reproduce the file, and the file is checked with @noble/* and protobuf decoding alone.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { gcm } from '@noble/ciphers/aes.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { describe, expect, it } from 'vitest';
import { AccountKeyPair, ArchiveRootSecret, RecoveryKey, createContext, encryptArchive, fromHex, toHex } from '@meshwhisper/crypto';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { ArchiveEntry } from '@meshwhisper/protocol';
import { ArchiveContactState, ArchiveEntrySchema, ArchivePayloadSchema, ContentSchema, create, fromBinary, toBinary } from '@meshwhisper/protocol';
import type { EntryMap } from '../../src/client/archive-payload.js';
import { digestOf, encodePayload, mergeEntries, mergeKey } from '../../src/client/archive-payload.js';

const FILE = new URL('../../../../test-vectors/archive-payload.json', import.meta.url);
const archiveVectors = JSON.parse(readFileSync(new URL('../../../../test-vectors/archive.json', import.meta.url), 'utf8')) as { recovery: { R: string } };

const seq = (n: number, from: number) => Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);
const entry = (e: MessageInitShape<typeof ArchiveEntrySchema>['entry']) => create(ArchiveEntrySchema, { entry: e });

function build() {
  const ctx = createContext({ now: () => 1_760_000_000_000, random: (n) => seq(n, 0x40) });
  const account = AccountKeyPair.fromSeed(ctx, seq(32, 1));
  const peer = seq(32, 0x80);
  const content = toBinary(ContentSchema, create(ContentSchema, { version: 2, messageId: seq(16, 0xa0), sentAt: 1_759_999_999_000n, body: { case: 'text', value: { text: 'hello archive' } } }));
  const entries = [
    entry({ case: 'contact', value: { accountKey: peer, state: ArchiveContactState.ACCEPTED } }),
    entry({ case: 'contact', value: { accountKey: seq(32, 0x90), state: ArchiveContactState.REQUEST } }),
    entry({ case: 'blocked', value: seq(32, 0xc0) }),
    entry({ case: 'timer', value: { peer, seconds: 3600, version: 2 } }),
    entry({ case: 'username', value: { username: 'carol', accountKey: peer } }),
    entry({ case: 'appSettings', value: new TextEncoder().encode('{"theme":"dark"}') }),
    entry({ case: 'message', value: { peer, author: account.publicKey, outgoing: true, content, receivedAt: 1_759_999_999_500n, reactions: [{ author: peer, emoji: '👍' }] } }),
  ];
  const payload = encodePayload({ accountKey: account.publicKey, accountSeed: account.exportSeed(), writtenAt: ctx.now(), entries });
  const root = ArchiveRootSecret.fromRecoveryKey(RecoveryKey.fromBytes(ctx, fromHex(archiveVectors.recovery.R)));
  const blob = encryptArchive(ctx, root, payload);

  // Merge: base = this device's state at its last version; local = now; remote = the node's version.
  const bytesOf = (e: ArchiveEntry) => toBinary(ArchiveEntrySchema, e);
  const mapOf = (list: ArchiveEntry[]): EntryMap => new Map(list.map((e) => [mergeKey(e)!, { entry: e, bytes: bytesOf(e) }]));
  const contactX = entries[0]!;
  const contactXRequest = entry({ case: 'contact', value: { accountKey: peer, state: ArchiveContactState.REQUEST } });
  const blockedY = entries[2]!;
  const timerZ = entries[3]!;
  const usernameW = entries[4]!;
  const base = new Map([contactXRequest, blockedY].map((e) => [mergeKey(e)!, digestOf(ctx, bytesOf(e))]));
  const local = mapOf([contactX, timerZ]); // contact changed, blocked removed, timer added
  const remote = [contactXRequest, blockedY, usernameW]; // another device added the username
  const merged = mergeEntries(ctx, { remote, local, base, manages: () => true });

  return {
    description:
      'MeshWhisper archive payload (docs/spec/archive.md §Payload, §Merge). Hex unless noted. payload: ArchivePayload protobuf (archive.proto); entries: each entry\'s encoding, merge key and base digest (first 16 bytes of SHA-256 of the entry encoding). blob: the payload sealed under the recovery-key R of test-vectors/archive.json with the given nonce (docs/spec/archive.md §Archive blob). merge: base digests, local entries, remote entries (encodings) and the merged entries in order.',
    accountSeed: toHex(seq(32, 1)),
    accountKey: toHex(account.publicKey),
    writtenAt: ctx.now(),
    entries: entries.map((e) => ({ mergeKey: mergeKey(e)!, entry: toHex(bytesOf(e)), digest: toHex(digestOf(ctx, bytesOf(e))) })),
    payload: toHex(payload),
    sealed: { R: archiveVectors.recovery.R, nonce: toHex(seq(12, 0x40)), blob: toHex(blob) },
    merge: {
      base: [...base].map(([k, d]) => ({ mergeKey: k, digest: toHex(d) })),
      local: [...local.values()].map((v) => toHex(v.bytes)),
      remote: remote.map((e) => toHex(bytesOf(e))),
      merged: merged.map((e) => ({ mergeKey: mergeKey(e)!, entry: toHex(bytesOf(e)) })),
    },
  };
}

describe('archive payload vectors (test-vectors/archive-payload.json)', () => {
  const built = build();
  if (process.env['MW_WRITE_VECTORS'] === '1') writeFileSync(FILE, JSON.stringify(built, null, 1) + '\n');
  const V = JSON.parse(readFileSync(FILE, 'utf8')) as ReturnType<typeof build>;

  it('the implementation reproduces the file', () => {
    expect(built).toEqual(V);
  });

  it('the file holds together with protobuf decoding and @noble/* alone', () => {
    const p = fromBinary(ArchivePayloadSchema, fromHex(V.payload));
    expect(p.version).toBe(1);
    expect(toHex(p.accountKey)).toBe(V.accountKey);
    expect(p.entries.map((e) => toHex(toBinary(ArchiveEntrySchema, e)))).toEqual(V.entries.map((e) => e.entry));
    for (const e of V.entries) expect(toHex(sha256(fromHex(e.entry)).slice(0, 16))).toBe(e.digest);
    // Open the blob: K_enc = HKDF(R, "", "MeshWhisper_ArchiveEncryptionKey_v1"), header = 01 01 nonce.
    const blob = fromHex(V.sealed.blob);
    const header = blob.subarray(0, 14);
    expect(toHex(header)).toBe(`0101${V.sealed.nonce}`);
    const k = hkdf(sha256, fromHex(V.sealed.R), new Uint8Array(0), new TextEncoder().encode('MeshWhisper_ArchiveEncryptionKey_v1'), 32);
    expect(toHex(gcm(k, fromHex(V.sealed.nonce), header).decrypt(blob.subarray(14)))).toBe(V.payload);
    // The merge: the remote entries, local additions and changes over them, local removals taken out.
    expect(V.merge.merged.map((m) => m.mergeKey)).toEqual([`c:${V.entries[0]!.mergeKey.slice(2)}`, V.entries[4]!.mergeKey, V.entries[3]!.mergeKey]);
    expect(V.merge.merged[0]!.entry).toBe(V.entries[0]!.entry); // the local (changed) contact state
  });
});

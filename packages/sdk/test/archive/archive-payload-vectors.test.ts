/**
 * Vectors for the archive payload (docs/spec/archive.md §Payload, §Merge): test-vectors/
 * archive-payload.json. A payload with one entry of each kind, its encoding, each entry's merge key
 * and base digest, the payload sealed under the recovery-key vector of test-vectors/archive.json,
 * and a three-way merge; a group entry (docs/spec/groups.md §G6.5) whose log holds a create and a
 * rejoin signed with the account key (decoded and both signatures checked with @noble/* alone). Written with MW_WRITE_VECTORS=1; otherwise the implementation must
 * reproduce the file, and the file is checked with @noble/* and protobuf decoding alone.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { gcm } from '@noble/ciphers/aes.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { describe, expect, it } from 'vitest';
import { ed25519 } from '@noble/curves/ed25519.js';
import { AccountKeyPair, ArchiveRootSecret, DeviceKeyPair, RecoveryKey, createContext, createGroup, encryptArchive, fromHex, proposeGroupOperation, serializeGroupLog, toHex } from '@meshwhisper/crypto';
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

  // A group entry: the creator (another account) made the group with this account; this account's
  // restored device rejoined it, signing with the account key (docs/spec/groups.md §G4.1 type 10).
  const creator = DeviceKeyPair.fromSecrets(ctx, seq(32, 0x11), seq(32, 0x12));
  const oldDevice = DeviceKeyPair.fromSecrets(ctx, seq(32, 0x21), seq(32, 0x22));
  const restored = DeviceKeyPair.fromSecrets(ctx, seq(32, 0x31), seq(32, 0x32));
  const made = createGroup(ctx, { signer: creator, account: seq(32, 0x50), name: 'hikers', groupId: seq(32, 0x60), members: [{ account: account.publicKey, devices: [oldDevice.signingPublicKey] }] });
  const rejoin = proposeGroupOperation(ctx, made.log, { signer: restored, account: account.publicKey, accountSigner: account, body: { type: 'rejoin', devices: [restored.signingPublicKey] } });
  const groupEntry = entry({ case: 'group', value: { groupId: made.log.state.groupId, log: serializeGroupLog(rejoin.log) } });

  return {
    description:
      'MeshWhisper archive payload (docs/spec/archive.md §Payload, §Merge). Hex unless noted. group: an ArchiveEntry.group (added later; the payload above has none, as archives written before it) whose log (docs/spec/groups.md §G4.8) holds the create operation and a rejoin (§G4.1 type 10) by the restored device, signed by the account key. payload: ArchivePayload protobuf (archive.proto); entries: each entry\'s encoding, merge key and base digest (first 16 bytes of SHA-256 of the entry encoding). blob: the payload sealed under the recovery-key R of test-vectors/archive.json with the given nonce (docs/spec/archive.md §Archive blob). merge: base digests, local entries, remote entries (encodings) and the merged entries in order.',
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
    group: {
      mergeKey: mergeKey(groupEntry)!,
      entry: toHex(bytesOf(groupEntry)),
      create: toHex(made.operation),
      rejoin: toHex(rejoin.operation),
      restoredDevice: toHex(restored.signingPublicKey),
      digestAfter: toHex(rejoin.log.state.digest),
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

  it('the group entry and its rejoin hold together with protobuf decoding and @noble/* alone', () => {
    const e = fromBinary(ArchiveEntrySchema, fromHex(V.group.entry));
    expect(e.entry.case).toBe('group');
    if (e.entry.case !== 'group') return;
    expect(V.group.mergeKey).toBe(`g:${toHex(e.entry.value.groupId)}`);
    // The log: u8 1 ‖ u32 n ‖ n × (u32 len ‖ operation) ‖ u32 0 — create, then the rejoin.
    const log = e.entry.value.log;
    const view = new DataView(log.buffer, log.byteOffset, log.byteLength);
    expect(log[0]).toBe(1);
    expect(view.getUint32(1)).toBe(2);
    const ops: string[] = [];
    let at = 5;
    for (let i = 0; i < 2; i++) {
      const n = view.getUint32(at);
      ops.push(toHex(log.subarray(at + 4, at + 4 + n)));
      at += 4 + n;
    }
    expect(ops).toEqual([V.group.create, V.group.rejoin]);
    expect(view.getUint32(at)).toBe(0);
    // The rejoin: version ‖ group id ‖ author account ‖ author device ‖ u64 time ‖ u8 1 ‖ parent ‖
    // u8 10 ‖ u8 1 ‖ device ‖ account signature (64) ‖ device signature (64).
    const op = fromHex(V.group.rejoin);
    const label = (l: string) => new Uint8Array([l.length, ...new TextEncoder().encode(l)]);
    const account = op.subarray(33, 65);
    const device = op.subarray(65, 97);
    expect(toHex(account)).toBe(V.accountKey);
    expect(toHex(device)).toBe(V.group.restoredDevice);
    expect(op[105]).toBe(1);
    expect(toHex(op.subarray(106, 138))).toBe(toHex(sha256(fromHex(V.group.create))));
    expect([op[138], op[139]]).toEqual([10, 1]);
    expect(toHex(op.subarray(140, 172))).toBe(V.group.restoredDevice);
    expect(op.length).toBe(172 + 128);
    const accountSigned = op.subarray(0, 172);
    expect(ed25519.verify(op.subarray(172, 236), new Uint8Array([...label('MeshWhisper_GroupRejoin_v1'), ...accountSigned]), account)).toBe(true);
    expect(ed25519.verify(op.subarray(236), new Uint8Array([...label('MeshWhisper_GroupOp_v1'), ...op.subarray(0, 236)]), device)).toBe(true);
  });
});

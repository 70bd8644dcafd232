/**
 * Generator of test-vectors/session.json: the session layer's byte formats (docs/spec/06-session.md)
 * — PreKey message framing (§6.1), session records with their ratchet states (§6.2, the storage
 * format), decryption-error reports (§6.6) — and negative prekey-bundle cases (03-prekeys.md §3.3),
 * from a scripted Alice/Bob run over a deterministic RNG and a manual clock.
 *
 * Plain TypeScript, no test framework: packages/crypto/test/session/session-vectors.test.ts imports
 * it, writes the JSON when MW_WRITE_VECTORS=1 and otherwise requires the committed file byte for
 * byte, then re-reads every value from the JSON alone with its own parser of the documented layouts.
 */
import { fromHex, toHex, utf8 } from '../../packages/crypto/src/bytes.js';
import { MAX_SIGNED_PREKEY_AGE_MS } from '../../packages/crypto/src/constants.js';
import { createContext } from '../../packages/crypto/src/context.js';
import type { CryptoContext } from '../../packages/crypto/src/context.js';
import { CryptoError, CryptoErrorCode } from '../../packages/crypto/src/errors.js';
import type { DeviceCertificate } from '../../packages/crypto/src/keys.js';
import { AccountKeyPair, DeviceKeyPair, encodeDeviceCertificate, issueDeviceCertificate } from '../../packages/crypto/src/keys.js';
import { decodePqxdhHeader } from '../../packages/crypto/src/pqxdh.js';
import type { PreKeyBundle } from '../../packages/crypto/src/prekeys.js';
import {
  KemPreKeyPair,
  X25519PreKeyPair,
  decodePreKeyBundle,
  encodePreKeyBundle,
  publicOneTimePreKey,
  signKemPreKey,
  signSignedPreKey,
  verifyPreKeyBundle,
} from '../../packages/crypto/src/prekeys.js';
import type { CryptoBackend } from '../../packages/crypto/src/primitives/backend.js';
import { nobleBackend } from '../../packages/crypto/src/primitives/noble.js';
import {
  MessageType,
  decodeDecryptionError,
  decryptMessage,
  deserializeSessionRecord,
  encodeDecryptionError,
  encryptMessage,
  initiateSession,
  sealDecryptionError,
} from '../../packages/crypto/src/session.js';
import { MemoryProtocolStore, deviceAddress } from '../../packages/crypto/src/stores.js';
import { deterministicRng, manualClock } from '../../packages/crypto/src/testing.js';

export const SESSION_VECTOR_SEED = '5e5510';
export const SESSION_VECTOR_CLOCK_START = 1_750_000_000_000;

export interface PreKeyMessageVector {
  name: string;
  type: number;
  header: { version: number; certificate: string; baseKey: string; signedPreKeyId: number; oneTimePreKeyId: number | null; kemPreKeyId: number; kemCiphertext: string };
  ratchetMessage: string;
  body: string;
}
export interface RecordVector {
  name: string;
  /** The record as the session store holds it (docs/spec/06-session.md §6.2). */
  record: string;
  lastErrorSentAt: number;
  lastErrorBaseKey: string;
  current: EntryVector | null;
  archived: EntryVector[];
}
export interface EntryVector {
  initiator: boolean;
  peerCertificate: string;
  baseKey: string;
  createdAt: number;
  lastEphemeralAt: number;
  /** The PQXDH header repeated until the peer answers (an encoded header), or null. */
  pendingHeader: string | null;
  /** The ratchet state in its storage format (docs/spec/ratchet.md §Storage format). */
  ratchetState: string;
}
export interface SessionVectors {
  description: string;
  generator: string;
  rng: string;
  clockStart: number;
  identities: { alice: { certificate: string }; bob: { certificate: string } };
  preKeyMessages: PreKeyMessageVector[];
  ratchetMessage: { type: number; body: string };
  records: RecordVector[];
  invalidRecords: { name: string; record: string; expectedError: string }[];
  decryptionErrors: {
    reasons: string[];
    valid: { reason: string; failedAt: number; baseKey: string | null; encoded: string }[];
    invalid: { name: string; encoded: string; expectedError: string }[];
  };
  invalidBundles: { name: string; bundle: string; verifyAt: number; expectedAccountKey: string | null; expectedError: string }[];
}

// ── Readers of the stored bytes, for the decoded view (own cursor, per the spec's layout) ───────

function reader(bytes: Uint8Array) {
  let off = 0;
  const take = (n: number): Uint8Array => {
    if (off + n > bytes.length) throw new Error('truncated');
    const out = bytes.subarray(off, off + n);
    off += n;
    return out;
  };
  const u8 = (): number => take(1)[0]!;
  const u16 = (): number => (u8() << 8) | u8();
  const u32 = (): number => new DataView(take(4).slice().buffer).getUint32(0, false);
  const u64 = (): number => {
    const dv = new DataView(take(8).slice().buffer);
    return dv.getUint32(0, false) * 2 ** 32 + dv.getUint32(4, false);
  };
  return { take, u8, u16, u32, u64, done: () => off === bytes.length };
}

export function readEntryVector(bytes: Uint8Array): EntryVector {
  const r = reader(bytes);
  const flags = r.u8();
  if (flags > 1) throw new Error('entry flags');
  const peerCertificate = toHex(r.take(r.u16()));
  const baseKey = toHex(r.take(32));
  const createdAt = r.u64();
  const lastEphemeralAt = r.u64();
  const hasPending = r.u8();
  if (hasPending > 1) throw new Error('pending flag');
  const pendingHeader = hasPending ? toHex(r.take(r.u16())) : null;
  const ratchetState = toHex(r.take(r.u32()));
  if (!r.done()) throw new Error('entry trailing bytes');
  return { initiator: flags === 1, peerCertificate, baseKey, createdAt, lastEphemeralAt, pendingHeader, ratchetState };
}

export function readRecordVector(bytes: Uint8Array): Omit<RecordVector, 'name' | 'record'> {
  const r = reader(bytes);
  if (r.u8() !== 2) throw new Error('record version');
  const lastErrorSentAt = r.u64();
  const lastErrorBaseKey = toHex(r.take(32));
  const has = r.u8();
  if (has > 1) throw new Error('current flag');
  const current = has ? readEntryVector(r.take(r.u32())) : null;
  const archived: EntryVector[] = [];
  for (let n = r.u16(); n > 0; n--) archived.push(readEntryVector(r.take(r.u32())));
  if (!r.done()) throw new Error('record trailing bytes');
  return { lastErrorSentAt, lastErrorBaseKey, current, archived };
}

function preKeyMessageVector(name: string, body: Uint8Array): PreKeyMessageVector {
  // The header's length follows from its fields: version, vec16(cert), Encode(EK_A), ids, CT.
  const certLength = (body[1]! << 8) | body[2]!;
  const hasOpk = body[3 + certLength + 33 + 4]!;
  const headerLength = 3 + certLength + 33 + 4 + 1 + (hasOpk ? 4 : 0) + 4 + 1088;
  const h = decodePqxdhHeader(body.subarray(0, headerLength));
  return {
    name,
    type: MessageType.PreKey,
    header: {
      version: body[0]!,
      certificate: toHex(encodeDeviceCertificate(h.initiator)),
      baseKey: toHex(h.baseKey),
      signedPreKeyId: h.signedPreKeyId,
      oneTimePreKeyId: h.oneTimePreKeyId ?? null,
      kemPreKeyId: h.kemPreKeyId,
      kemCiphertext: toHex(h.kemCiphertext),
    },
    ratchetMessage: toHex(body.subarray(headerLength)),
    body: toHex(body),
  };
}

// ── The run ────────────────────────────────────────────────────────────────────────────────

interface Device {
  account: AccountKeyPair;
  device: DeviceKeyPair;
  certificate: DeviceCertificate;
  store: MemoryProtocolStore;
}

function makeDevice(ctx: CryptoContext): Device {
  const account = AccountKeyPair.generate(ctx);
  const device = DeviceKeyPair.generate(ctx);
  const certificate = issueDeviceCertificate(ctx, account, device);
  return { account, device, certificate, store: new MemoryProtocolStore({ certificate, device }) };
}

async function bundle(ctx: CryptoContext, d: Device, ids: { spk: number; opk?: number; kem: number; lastResort: boolean }): Promise<PreKeyBundle> {
  const spk = X25519PreKeyPair.generate(ctx, ids.spk);
  const kem = KemPreKeyPair.generate(ctx, ids.kem, ids.lastResort);
  const opk = ids.opk !== undefined ? X25519PreKeyPair.generate(ctx, ids.opk) : undefined;
  await d.store.storeSignedPreKey(spk);
  await d.store.storeKemPreKey(kem);
  if (opk) await d.store.storePreKey(opk);
  return { certificate: d.certificate, signedPreKey: signSignedPreKey(ctx, d.device, spk), ...(opk ? { oneTimePreKey: publicOneTimePreKey(opk) } : {}), kemPreKey: signKemPreKey(ctx, d.device, kem) };
}

async function recordVector(name: string, d: Device, peer: DeviceCertificate): Promise<RecordVector> {
  const bytes = (await d.store.loadSession(deviceAddress(peer)))!;
  return { name, record: toHex(bytes), ...readRecordVector(bytes) };
}

function errorCode(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof CryptoError) return e.code;
    throw e;
  }
  throw new Error('expected an error');
}

export async function generateSessionVectors(backend: CryptoBackend = nobleBackend): Promise<SessionVectors> {
  const clock = manualClock(SESSION_VECTOR_CLOCK_START);
  const ctx = createContext({ backend, random: deterministicRng(SESSION_VECTOR_SEED), now: clock.now });
  const alice = makeDevice(ctx);
  const bob = makeDevice(ctx);
  const bobAddress = deviceAddress(bob.certificate);

  // First contact: a bundle with a one-time X25519 prekey and a one-time KEM prekey.
  const b1 = await bundle(ctx, bob, { spk: 1, opk: 2, kem: 3, lastResort: false });
  await initiateSession(ctx, alice.store, b1);
  clock.advance(1000);
  const m1 = await encryptMessage(ctx, alice.store, bobAddress, utf8('hello Bob'));
  const aliceAfterFirst = await recordVector('alice after her first message: current session pending (PQXDH header repeated)', alice, bob.certificate);
  clock.advance(1000);
  await decryptMessage(ctx, bob.store, alice.certificate, m1);
  const bobAfterFirst = await recordVector('bob after accepting it: responder session, one message received', bob, alice.certificate);
  clock.advance(1000);
  const m2 = await encryptMessage(ctx, bob.store, deviceAddress(alice.certificate), utf8('hello Alice'));
  clock.advance(1000);
  await decryptMessage(ctx, alice.store, bob.certificate, m2);
  const aliceEstablished = await recordVector('alice after the reply: session established (no pending header)', alice, bob.certificate);

  // A second session (last-resort KEM prekey, no one-time prekey) archives the first.
  const b2 = await bundle(ctx, bob, { spk: 4, kem: 5, lastResort: true });
  clock.advance(1000);
  await initiateSession(ctx, alice.store, b2);
  const m3 = await encryptMessage(ctx, alice.store, bobAddress, utf8('new session'));
  const pm1 = preKeyMessageVector('first message, with one-time X25519 and KEM prekeys', m1.body);
  const pm3 = preKeyMessageVector('first message of a second session, last-resort KEM prekey, no one-time prekey', m3.body);
  clock.advance(1000);
  // A decryption-error report sent to Bob is recorded (rate limit) in the same record.
  await sealDecryptionError(ctx, alice.store, bob.certificate, { reason: CryptoErrorCode.UNKNOWN_PREKEY, baseKey: fromHex(pm3.header.baseKey) });
  const aliceArchived = await recordVector('alice with a new pending session, the first one archived, a decryption-error report recorded', alice, bob.certificate);

  const records = [aliceAfterFirst, bobAfterFirst, aliceEstablished, aliceArchived];
  const base = fromHex(aliceArchived.record);
  const mutate = (f: (b: Uint8Array) => Uint8Array): string => toHex(f(Uint8Array.from(base)));
  const invalidRecordsRaw: { name: string; record: string }[] = [
    { name: 'storage version 1 (a v1 record)', record: mutate((b) => ((b[0] = 1), b)) },
    { name: 'current flag 2', record: mutate((b) => ((b[41] = 2), b)) },
    { name: 'truncated by one byte', record: mutate((b) => b.subarray(0, b.length - 1)) },
    { name: 'one trailing byte', record: mutate((b) => Uint8Array.from([...b, 0])) },
    { name: 'current entry flags 2 (unknown flag bit)', record: mutate((b) => ((b[46] = 2), b)) },
  ];
  const invalidRecords = invalidRecordsRaw.map((x) => ({ ...x, expectedError: errorCode(() => deserializeSessionRecord(fromHex(x.record)).current) }));

  // Decryption-error reports: every reason, with and without a base key.
  const reasons = [
    CryptoErrorCode.UNKNOWN_SESSION,
    CryptoErrorCode.TOO_FAR_AHEAD,
    CryptoErrorCode.UNKNOWN_PREKEY,
    CryptoErrorCode.BAD_MAC,
    CryptoErrorCode.SKIPPED_KEY_EVICTED,
    CryptoErrorCode.SKIPPED_KEY_EXPIRED,
    CryptoErrorCode.REPLAYED_INITIAL_MESSAGE,
  ];
  const baseKey = fromHex(aliceAfterFirst.current!.baseKey);
  const valid = reasons.map((reason, i) => {
    const report = { reason, failedAt: SESSION_VECTOR_CLOCK_START + i, ...(i % 2 === 0 ? { baseKey } : {}) };
    return { reason, failedAt: report.failedAt, baseKey: i % 2 === 0 ? toHex(baseKey) : null, encoded: toHex(encodeDecryptionError(report)) };
  });
  const good = valid[0]!.encoded;
  const invalidRaw = [
    { name: 'version 2', encoded: `02${good.slice(2)}` },
    { name: 'reason 0', encoded: `0100${good.slice(4)}` },
    { name: 'reason 8', encoded: `0108${good.slice(4)}` },
    { name: 'base-key flag 2', encoded: `${good.slice(0, 20)}02${good.slice(22)}` },
    { name: 'base key announced, 31 bytes given', encoded: good.slice(0, -2) },
    { name: 'no base key announced, one trailing byte', encoded: `${valid[1]!.encoded}00` },
  ];
  const invalid = invalidRaw.map((x) => ({ ...x, expectedError: errorCode(() => decodeDecryptionError(fromHex(x.encoded))) }));

  // Negative bundles: each refused by decodePreKeyBundle or verifyPreKeyBundle at `verifyAt`.
  const now = clock.now();
  const good1 = encodePreKeyBundle(b1);
  const other = makeDevice(ctx);
  const flip = (bytes: Uint8Array, at: number): Uint8Array => {
    const c = Uint8Array.from(bytes);
    c[at] = c[at]! ^ 1;
    return c;
  };
  const certLen = (good1[1]! << 8) | good1[2]!;
  const spkAt = 3 + certLen; // u32 id ‖ u64 createdAt ‖ Encode(X25519) 33 ‖ signature 64
  const spkSigAt = spkAt + 4 + 8 + 33;
  const kemSigEnd = good1.length; // the KEM prekey's signature is last
  const expiredCert = issueDeviceCertificate(ctx, bob.account, bob.device, { issuedAt: now - 100 * 24 * 3600 * 1000 });
  const bundles: { name: string; bundle: Uint8Array; verifyAt: number; expectedAccountKey?: Uint8Array }[] = [
    { name: 'signed prekey signature byte flipped', bundle: flip(good1, spkSigAt), verifyAt: now },
    { name: 'KEM prekey signature byte flipped', bundle: flip(good1, kemSigEnd - 1), verifyAt: now },
    { name: 'signed prekey signed by another device', bundle: encodePreKeyBundle({ ...b1, signedPreKey: signSignedPreKey(ctx, other.device, new X25519PreKeyPair(b1.signedPreKey.id, new Uint8Array(32).fill(7), backend.x25519PublicKey(new Uint8Array(32).fill(7)), b1.signedPreKey.createdAt)) }), verifyAt: now },
    { name: 'certificate by another account than expected', bundle: good1, verifyAt: now, expectedAccountKey: other.account.publicKey },
    { name: 'certificate expired', bundle: encodePreKeyBundle({ ...b1, certificate: expiredCert }), verifyAt: now },
    { name: 'signed prekey older than MAX_SIGNED_PREKEY_AGE_MS', bundle: good1, verifyAt: b1.signedPreKey.createdAt + MAX_SIGNED_PREKEY_AGE_MS + 1 },
    { name: 'version byte 1', bundle: Uint8Array.from([1, ...good1.subarray(1)]), verifyAt: now },
    { name: 'one-time prekey flag 2', bundle: ((c) => ((c[spkAt + 4 + 8 + 33 + 64] = 2), c))(Uint8Array.from(good1)), verifyAt: now },
    { name: 'truncated by one byte', bundle: good1.subarray(0, good1.length - 1), verifyAt: now },
    { name: 'signed prekey tagged as Ed25519', bundle: ((c) => ((c[spkAt + 12] = 0x01), c))(Uint8Array.from(good1)), verifyAt: now },
  ];
  const invalidBundles = bundles.map((x) => {
    const at = createContext({ backend, now: () => x.verifyAt, random: () => new Uint8Array(0) });
    return {
      name: x.name,
      bundle: toHex(x.bundle),
      verifyAt: x.verifyAt,
      expectedAccountKey: x.expectedAccountKey ? toHex(x.expectedAccountKey) : null,
      expectedError: errorCode(() => verifyPreKeyBundle(at, decodePreKeyBundle(x.bundle), x.expectedAccountKey)),
    };
  });

  return {
    description:
      'MeshWhisper session layer v2 (docs/spec/06-session.md): PreKey message framing (§6.1), session records and their ratchet states in the storage format (§6.2, ratchet.md §Storage format), decryption-error reports (§6.6); negative prekey bundles (03-prekeys.md §3.3). All values hex; times ms since the epoch.',
    generator: 'MW_WRITE_VECTORS=1 npx vitest run packages/crypto/test/session/session-vectors.test.ts (scripts/vectors/session.ts)',
    rng: `deterministicRng('${SESSION_VECTOR_SEED}') (the stream SHA-256(seed ‖ be32(i))), one stream for the whole run in the order of scripts/vectors/session.ts; the values below do not depend on it`,
    clockStart: SESSION_VECTOR_CLOCK_START,
    identities: { alice: { certificate: toHex(encodeDeviceCertificate(alice.certificate)) }, bob: { certificate: toHex(encodeDeviceCertificate(bob.certificate)) } },
    preKeyMessages: [pm1, pm3],
    ratchetMessage: { type: m2.type, body: toHex(m2.body) },
    records,
    invalidRecords,
    decryptionErrors: { reasons, valid, invalid },
    invalidBundles,
  };
}

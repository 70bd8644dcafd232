/**
 * Generator of test-vectors/ratchet.json: a scripted Alice/Bob conversation (≥ 20 messages) with
 * DH ratchet steps, out-of-order delivery, skipped keys, duplicates, tampering and expiry, run
 * over deterministic RNGs and a manual clock. Every step records the wire message and every
 * intermediate key (root, chain, header, message, body key/nonce, DH outputs) so that a
 * re-implementation can check itself one step at a time (docs/spec/ratchet.md §Test vectors).
 *
 * Plain TypeScript, no test framework: packages/crypto/test/ratchet/vectors.test.ts imports it,
 * writes the JSON when MW_WRITE_VECTORS=1 and otherwise compares it with the committed file.
 * Intermediate values come from decoding the implementation's storage encoding (a second,
 * independent reader of the documented layout) and from recomputing derivations with primitives.
 */
import { concatBytes, equalBytes, fromHex, toHex, utf8 } from '../../packages/crypto/src/bytes.js';
import { RATCHET_WIRE_VERSION, SKIPPED_KEY_MAX_AGE_MS, STORAGE_VERSION } from '../../packages/crypto/src/constants.js';
import { createContext } from '../../packages/crypto/src/context.js';
import { CryptoError, CryptoErrorCode } from '../../packages/crypto/src/errors.js';
import type { CryptoBackend } from '../../packages/crypto/src/primitives/backend.js';
import { nobleBackend } from '../../packages/crypto/src/primitives/noble.js';
import type { RatchetState } from '../../packages/crypto/src/ratchet.js';
import {
  RatchetLabel,
  initRatchetAsInitiator,
  initRatchetAsResponder,
  ratchetDecrypt,
  ratchetDecryptEphemeral,
  ratchetEncrypt,
  ratchetEncryptEphemeral,
  serializeRatchetState,
} from '../../packages/crypto/src/ratchet.js';
import { deterministicRng, manualClock } from '../../packages/crypto/src/testing.js';

let b: CryptoBackend = nobleBackend;
const ZERO32 = new Uint8Array(32);

// ── Decoded state (docs/spec/ratchet.md §Storage format) ──────────────────────────────────────

export interface StateSnapshot {
  role: 'initiator' | 'responder';
  RK: string;
  DHs: { secretKey: string; publicKey: string };
  DHr: string | null;
  CKs: string | null;
  CKr: string | null;
  HKs: string | null;
  HKr: string | null;
  NHKs: string;
  NHKr: string;
  Ns: number;
  Nr: number;
  PN: number;
  previousHeaderKeys: string[];
  skipped: { headerKey: string; keys: { n: number; messageKey: string; storedAt: number }[] }[];
  /** Records of skipped keys gone unused (storage reason 1 = evicted, 2 = expired). */
  lost: { headerKey: string; keys: { n: number; reason: 'evicted' | 'expired' }[] }[];
}

/** Reads the storage encoding with its own cursor (independent of the implementation's reader). */
export function decodeStateSnapshot(bytes: Uint8Array): StateSnapshot & { associatedData: string } {
  let off = 0;
  const take = (n: number): Uint8Array => {
    if (off + n > bytes.length) throw new Error('snapshot truncated');
    const out = bytes.subarray(off, off + n);
    off += n;
    return out;
  };
  const u8 = (): number => take(1)[0]!;
  const u16 = (): number => {
    const x = take(2);
    return (x[0]! << 8) | x[1]!;
  };
  const u32 = (): number => new DataView(take(4).slice().buffer).getUint32(0, false);
  const u64 = (): number => {
    const dv = new DataView(take(8).slice().buffer);
    return dv.getUint32(0, false) * 2 ** 32 + dv.getUint32(4, false);
  };
  const key = (): string => toHex(take(32));
  if (u8() !== STORAGE_VERSION) throw new Error('snapshot version');
  const initiator = u8() === 0;
  const received = u8() === 1;
  const RK = key();
  const DHs = { secretKey: key(), publicKey: key() };
  const sending = initiator || received;
  const DHr = sending ? key() : null;
  const CKs = sending ? key() : null;
  const HKs = sending ? key() : null;
  const CKr = received ? key() : null;
  const HKr = received ? key() : null;
  const NHKs = key();
  const NHKr = key();
  const Ns = u32();
  const Nr = u32();
  const PN = u32();
  const associatedData = toHex(take(u16()));
  const previousHeaderKeys: string[] = [];
  for (let i = u8(); i > 0; i--) previousHeaderKeys.push(key());
  const skipped: StateSnapshot['skipped'] = [];
  for (let i = u8(); i > 0; i--) {
    const headerKey = key();
    const keys: StateSnapshot['skipped'][number]['keys'] = [];
    for (let j = u16(); j > 0; j--) {
      const n = u32();
      const storedAt = u64();
      keys.push({ n, storedAt, messageKey: key() });
    }
    skipped.push({ headerKey, keys });
  }
  const lost: StateSnapshot['lost'] = [];
  for (let i = u8(); i > 0; i--) {
    const headerKey = key();
    const keys: StateSnapshot['lost'][number]['keys'] = [];
    for (let j = u16(); j > 0; j--) {
      const n = u32();
      const reason = u8() === 1 ? 'evicted' : 'expired';
      keys.push({ n, reason });
    }
    lost.push({ headerKey, keys });
  }
  if (off !== bytes.length) throw new Error('snapshot trailing bytes');
  return { role: initiator ? 'initiator' : 'responder', RK, DHs, DHr, CKs, CKr, HKs, HKr, NHKs, NHKr, Ns, Nr, PN, previousHeaderKeys, skipped, lost, associatedData };
}

function snapshot(s: RatchetState): StateSnapshot {
  const { associatedData: _ad, ...rest } = decodeStateSnapshot(serializeRatchetState(s));
  return rest;
}

// ── Vector file shape ──────────────────────────────────────────────────────────────────────────

export interface HeaderInfo {
  headerKey: string;
  nonce: string;
  plaintext: string;
  dh: string;
  pn: number;
  n: number;
}

export interface DhRatchetInfo {
  remoteRatchetKey: string;
  dhReceive: string;
  rootKeyAfterReceive: string;
  receivingChainKey: string;
  nextReceivingHeaderKey: string;
  newRatchetKeyPair: { secretKey: string; publicKey: string };
  dhSend: string;
  rootKey: string;
  sendingChainKey: string;
  nextSendingHeaderKey: string;
}

export interface VectorStep {
  step: number;
  party: 'alice' | 'bob';
  op: 'encrypt' | 'decrypt';
  time: number;
  note: string;
  /** encrypt: index of the message produced; decrypt: index of the message delivered. */
  message: number;
  /** decrypt only, when the bytes delivered are not the original message (tampering). */
  deliveredBytes?: string;
  /** Bytes this step drew from the party's RNG stream, in order. */
  rngConsumed: string;
  plaintext?: string;
  error?: string;
  path?: 'current-chain' | 'skipped' | 'dh-ratchet';
  header?: HeaderInfo;
  dhRatchet?: DhRatchetInfo;
  /** The chain key the message key was derived from, its successor, and the keys skipped on the way. */
  chainKey?: string;
  nextChainKey?: string;
  skippedKeys?: { headerKey: string; n: number; messageKey: string }[];
  messageKey?: string;
  bodyKey?: string;
  bodyNonce?: string;
  state: StateSnapshot;
}

export interface RatchetVectors {
  description: string;
  spec: string;
  labels: typeof RatchetLabel;
  constants: { RATCHET_WIRE_VERSION: number; STORAGE_VERSION: number; SKIPPED_KEY_MAX_AGE_MS: number };
  inputs: {
    sharedSecret: string;
    associatedData: string;
    responderRatchetKeyPair: { secretKey: string; publicKey: string };
    rngSeeds: { alice: string; bob: string };
    clockStart: number;
  };
  init: { RK0: string; sharedHKa: string; sharedNHKb: string; alice: StateSnapshot; bob: StateSnapshot };
  headerEncryption: { headerKey: string; nonce: string; associatedData: string; headerPlaintext: string; encryptedHeader: string }[];
  messages: { index: number; from: 'alice' | 'bob'; plaintext: string; wire: string }[];
  steps: VectorStep[];
  /** Ephemeral messages sent after the script (docs/spec/ratchet.md §Ephemeral messages); none changes a state. */
  ephemeral: EphemeralVector[];
}

export interface EphemeralVector {
  from: 'alice' | 'bob';
  time: number;
  /** The sender's HKs, the 16 random salt bytes drawn, and EPH_KEYS(HKs, salt). */
  headerKey: string;
  salt: string;
  key: string;
  nonce: string;
  plaintext: string;
  wire: string;
  /** Which of the receiver's keys opened it: HKr, NHKr or a previous header key. */
  openedWith: 'HKr' | 'NHKr' | 'previous';
}

// ── Script ─────────────────────────────────────────────────────────────────────────────────────

type Action =
  | { op: 'send'; from: 'alice' | 'bob'; text: string; note?: string }
  | { op: 'recv'; to: 'alice' | 'bob'; message: number; note: string; tamper?: 'body' | 'header'; error?: string }
  | { op: 'advance'; ms: number };

const DUP = CryptoErrorCode.DUPLICATE_MESSAGE;
const BAD = CryptoErrorCode.BAD_MAC;
const FOREIGN = CryptoErrorCode.UNKNOWN_SESSION;
const EXPIRED = CryptoErrorCode.SKIPPED_KEY_EXPIRED;

const SCRIPT: Action[] = [
  { op: 'send', from: 'alice', text: 'Hi Bob, this is Alice (m0)' },
  { op: 'send', from: 'alice', text: 'm1: will arrive late' },
  { op: 'send', from: 'alice', text: 'm2' },
  { op: 'recv', to: 'bob', message: 0, note: 'first message: header opens under NHKr (shared HKa), DH ratchet' },
  { op: 'recv', to: 'bob', message: 2, note: 'current chain, skips m1' },
  { op: 'send', from: 'bob', text: 'Hello Alice (m3), lost for a while' },
  { op: 'send', from: 'bob', text: 'm4' },
  { op: 'send', from: 'bob', text: 'm5' },
  { op: 'recv', to: 'alice', message: 4, note: 'DH ratchet (header under shared NHKb), skips m3 in the new chain' },
  { op: 'recv', to: 'alice', message: 3, note: 'skipped key of the current chain' },
  { op: 'send', from: 'alice', text: 'm6' },
  { op: 'send', from: 'alice', text: 'm7' },
  { op: 'recv', to: 'bob', message: 1, note: 'skipped key (Bob has not ratcheted since)' },
  { op: 'recv', to: 'bob', message: 7, note: 'DH ratchet, PN = 3 = Nr so nothing skipped in the old chain; skips m6' },
  { op: 'recv', to: 'bob', message: 7, note: 'duplicate in the current chain', error: DUP },
  { op: 'recv', to: 'bob', message: 1, note: 'late duplicate from a finished chain (previous header key)', error: DUP },
  { op: 'send', from: 'bob', text: 'm8' },
  { op: 'recv', to: 'alice', message: 8, note: 'DH ratchet, skips m5 of the finished chain (PN = 3, Nr = 2)' },
  { op: 'recv', to: 'bob', message: 6, note: 'skipped key' },
  { op: 'recv', to: 'alice', message: 5, note: 'skipped key of a finished chain' },
  { op: 'send', from: 'bob', text: 'm9' },
  { op: 'send', from: 'bob', text: 'm10' },
  { op: 'send', from: 'bob', text: 'm11' },
  { op: 'send', from: 'bob', text: 'm12' },
  { op: 'recv', to: 'alice', message: 12, note: 'current chain, skips m9, m10, m11' },
  { op: 'recv', to: 'alice', message: 10, note: 'skipped key' },
  { op: 'recv', to: 'alice', message: 9, tamper: 'body', note: 'body tampered: BAD_MAC, state unchanged', error: BAD },
  { op: 'recv', to: 'alice', message: 9, tamper: 'header', note: 'encrypted header tampered: opens under no key, UNKNOWN_SESSION', error: FOREIGN },
  { op: 'send', from: 'alice', text: 'm13' },
  { op: 'send', from: 'alice', text: 'm14' },
  { op: 'recv', to: 'bob', message: 14, note: 'DH ratchet, skips m13' },
  { op: 'recv', to: 'bob', message: 13, note: 'skipped key' },
  { op: 'advance', ms: SKIPPED_KEY_MAX_AGE_MS + 1 },
  { op: 'recv', to: 'alice', message: 9, note: 'skipped key expired: SKIPPED_KEY_EXPIRED, state unchanged', error: EXPIRED },
  { op: 'send', from: 'alice', text: 'm15: this state advance prunes the expired keys (recorded as lost)' },
  { op: 'recv', to: 'alice', message: 11, note: 'pruned key: its lost-key record says SKIPPED_KEY_EXPIRED', error: EXPIRED },
  { op: 'recv', to: 'bob', message: 15, note: 'current chain' },
  { op: 'send', from: 'bob', text: 'm16' },
  { op: 'send', from: 'bob', text: 'm17' },
  { op: 'recv', to: 'alice', message: 17, note: 'DH ratchet, skips m16' },
  { op: 'send', from: 'alice', text: 'm18' },
  { op: 'recv', to: 'alice', message: 16, note: 'skipped key' },
  { op: 'send', from: 'alice', text: 'm19' },
  { op: 'recv', to: 'bob', message: 19, note: 'DH ratchet, skips m18' },
  { op: 'recv', to: 'bob', message: 18, note: 'skipped key' },
  { op: 'send', from: 'bob', text: 'm20: the last one' },
  { op: 'recv', to: 'alice', message: 20, note: 'DH ratchet' },
];

/** Wraps an RNG so each step can report the bytes it drew. */
function recordingRng(seed: string): { rng: (n: number) => Uint8Array; take: () => Uint8Array } {
  const inner = deterministicRng(seed);
  let drawn: Uint8Array[] = [];
  return {
    rng: (n) => {
      const out = inner(n);
      drawn.push(out.slice());
      return out;
    },
    take: () => {
      const all = concatBytes(...drawn);
      drawn = [];
      return all;
    },
  };
}

const hmac = (k: string, x: number): string => toHex(b.hmacSha256(fromHex(k), Uint8Array.of(x)));
function kdfRk(rk: string, dh: Uint8Array): [string, string, string] {
  const out = b.hkdfSha256(dh, fromHex(rk), utf8(RatchetLabel.Root), 96);
  return [toHex(out.subarray(0, 32)), toHex(out.subarray(32, 64)), toHex(out.subarray(64, 96))];
}

function openHeader(hk: string | null, wire: Uint8Array, headerAad: Uint8Array): HeaderInfo | null {
  if (hk === null) return null;
  try {
    const pt = b.aes256GcmDecrypt(fromHex(hk), wire.subarray(1, 13), wire.subarray(13, 69), headerAad);
    const dv = new DataView(pt.buffer, pt.byteOffset, pt.byteLength);
    return { headerKey: hk, nonce: toHex(wire.subarray(1, 13)), plaintext: toHex(pt), dh: toHex(pt.subarray(0, 32)), pn: dv.getUint32(32, false), n: dv.getUint32(36, false) };
  } catch {
    return null;
  }
}

/** Walks a chain from `ck` (at index `from`) to index `to`; returns the skipped keys and the chain key at `to`. */
function walk(ck: string, from: number, to: number, hk: string): { ck: string; skipped: { headerKey: string; n: number; messageKey: string }[] } {
  const skipped: { headerKey: string; n: number; messageKey: string }[] = [];
  for (let n = from; n < to; n++) {
    skipped.push({ headerKey: hk, n, messageKey: hmac(ck, 1) });
    ck = hmac(ck, 2);
  }
  return { ck, skipped };
}

/** Runs the script; `backend` lets the test check that every backend produces the same file. */
export function generateRatchetVectors(backend: CryptoBackend = nobleBackend): RatchetVectors {
  b = backend;
  const setup = deterministicRng('4d65736857686973706572205261746368657420766563746f7273');
  const sharedSecret = setup(32);
  const associatedData = utf8('MeshWhisper ratchet vectors: AD = encoded identity of Alice || encoded identity of Bob');
  const spkSecret = setup(32);
  const spk = { secretKey: spkSecret, publicKey: b.x25519PublicKey(spkSecret) };
  const seeds = { alice: toHex(setup(16)), bob: toHex(setup(16)) };
  const clock = manualClock(1_750_000_000_000);
  const rngs = { alice: recordingRng(seeds.alice), bob: recordingRng(seeds.bob) };
  const ctx = {
    alice: createContext({ backend: b, random: rngs.alice.rng, now: clock.now }),
    bob: createContext({ backend: b, random: rngs.bob.rng, now: clock.now }),
  };
  const headerAad = concatBytes(associatedData, Uint8Array.of(RATCHET_WIRE_VERSION));

  const init = b.hkdfSha256(sharedSecret, ZERO32, utf8(RatchetLabel.Init), 96);
  const state = {
    alice: initRatchetAsInitiator(ctx.alice, { sharedSecret, associatedData, remoteRatchetKey: spk.publicKey }),
    bob: initRatchetAsResponder(ctx.bob, { sharedSecret, associatedData, ownRatchetKeyPair: spk }),
  };
  rngs.alice.take();
  rngs.bob.take();

  const vectors: RatchetVectors = {
    description:
      'MeshWhisper Double Ratchet with header encryption (DR-HE). A scripted conversation: every wire message, every intermediate key, the full state after every step. Hex strings; message numbers are decimal.',
    spec: 'docs/spec/ratchet.md',
    labels: { ...RatchetLabel },
    constants: { RATCHET_WIRE_VERSION, STORAGE_VERSION, SKIPPED_KEY_MAX_AGE_MS },
    inputs: {
      sharedSecret: toHex(sharedSecret),
      associatedData: toHex(associatedData),
      responderRatchetKeyPair: { secretKey: toHex(spk.secretKey), publicKey: toHex(spk.publicKey) },
      rngSeeds: seeds,
      clockStart: clock.now(),
    },
    init: {
      RK0: toHex(init.subarray(0, 32)),
      sharedHKa: toHex(init.subarray(32, 64)),
      sharedNHKb: toHex(init.subarray(64, 96)),
      alice: snapshot(state.alice),
      bob: snapshot(state.bob),
    },
    headerEncryption: [],
    messages: [],
    steps: [],
    ephemeral: [],
  };

  for (const action of SCRIPT) {
    if (action.op === 'advance') {
      clock.advance(action.ms);
      continue;
    }
    const party = action.op === 'send' ? action.from : action.to;
    const before = snapshot(state[party]);
    const step: Partial<VectorStep> = { step: vectors.steps.length, party, op: action.op === 'send' ? 'encrypt' : 'decrypt', time: clock.now() };
    if (action.op === 'send') {
      const plaintext = utf8(action.text);
      const r = ratchetEncrypt(ctx[party], state[party], plaintext);
      state[party] = r.state;
      const index = vectors.messages.length;
      vectors.messages.push({ index, from: party, plaintext: toHex(plaintext), wire: toHex(r.message) });
      const header = openHeader(before.HKs, r.message, headerAad)!;
      const mk = hmac(before.CKs!, 1);
      const km = b.hkdfSha256(fromHex(mk), r.message.subarray(1, 13), utf8(RatchetLabel.Message), 44);
      Object.assign(step, {
        note: action.note ?? `${party} sends m${index}`,
        message: index,
        plaintext: toHex(plaintext),
        header,
        chainKey: before.CKs!,
        nextChainKey: hmac(before.CKs!, 2),
        messageKey: mk,
        bodyKey: toHex(km.subarray(0, 32)),
        bodyNonce: toHex(km.subarray(32)),
      });
      if (index === 0 || index === 8) {
        vectors.headerEncryption.push({
          headerKey: header.headerKey,
          nonce: header.nonce,
          associatedData: toHex(headerAad),
          headerPlaintext: header.plaintext,
          encryptedHeader: toHex(r.message.subarray(1, 69)),
        });
      }
    } else {
      const original = fromHex(vectors.messages[action.message]!.wire);
      const wire = original.slice();
      if (action.tamper !== undefined) wire[action.tamper === 'body' ? wire.length - 1 : 20]! ^= 0x01;
      Object.assign(step, { note: action.note, message: action.message });
      if (action.tamper !== undefined) step.deliveredBytes = toHex(wire);
      try {
        const r = ratchetDecrypt(ctx[party], state[party], wire);
        state[party] = r.state;
        step.plaintext = toHex(r.plaintext);
      } catch (e) {
        if (!(e instanceof CryptoError)) throw e;
        step.error = e.code;
      }
      if (step.error !== action.error) throw new Error(`script step ${step.step}: expected ${action.error ?? 'success'}, got ${step.error ?? 'success'}`);
      if (step.error === undefined) describeDecrypt(step, before, wire, associatedData, state[party]);
    }
    step.rngConsumed = toHex(rngs[party].take());
    step.state = snapshot(state[party]);
    vectors.steps.push(step as VectorStep);
  }
  // Ephemeral messages in both directions; they change no state.
  for (const [from, text] of [['alice', 'typing: true'], ['bob', 'presence: online'], ['alice', 'typing: false']] as const) {
    const to = from === 'alice' ? 'bob' : 'alice';
    const sender = snapshot(state[from]);
    const receiver = snapshot(state[to]);
    const plaintext = utf8(text);
    const wire = ratchetEncryptEphemeral(ctx[from], state[from], plaintext);
    const salt = rngs[from].take();
    const km = b.hkdfSha256(fromHex(sender.HKs!), salt, utf8(RatchetLabel.Ephemeral), 44);
    const opened = ratchetDecryptEphemeral(ctx[to], state[to], wire);
    if (!equalBytes(opened.plaintext, plaintext) || opened.sentAt !== clock.now()) throw new Error('ephemeral round trip');
    if (JSON.stringify(snapshot(state[from])) !== JSON.stringify(sender) || JSON.stringify(snapshot(state[to])) !== JSON.stringify(receiver)) {
      throw new Error('an ephemeral message changed a state');
    }
    vectors.ephemeral.push({
      from,
      time: clock.now(),
      headerKey: sender.HKs!,
      salt: toHex(salt),
      key: toHex(km.subarray(0, 32)),
      nonce: toHex(km.subarray(32)),
      plaintext: toHex(plaintext),
      wire: toHex(wire),
      openedWith: receiver.HKr === sender.HKs ? 'HKr' : receiver.NHKr === sender.HKs ? 'NHKr' : 'previous',
    });
    clock.advance(1000);
  }
  return vectors;
}

/** Fills path, header, DH ratchet values and the key schedule of a successful decryption. */
function describeDecrypt(step: Partial<VectorStep>, before: StateSnapshot, wire: Uint8Array, associatedData: Uint8Array, after: RatchetState): void {
  const headerAad = concatBytes(associatedData, Uint8Array.of(RATCHET_WIRE_VERSION));
  let header = openHeader(before.HKr, wire, headerAad);
  if (header && header.n >= before.Nr) {
    step.path = 'current-chain';
    const w = walk(before.CKr!, before.Nr, header.n, before.HKr!);
    Object.assign(step, { chainKey: w.ck, skippedKeys: w.skipped });
  } else if (!header && (header = openHeader(before.NHKr, wire, headerAad))) {
    step.path = 'dh-ratchet';
    const old = before.CKr === null ? { skipped: [] } : walk(before.CKr, before.Nr, header.pn, before.HKr!);
    const dhReceive = b.x25519(fromHex(before.DHs.secretKey), fromHex(header.dh));
    const [rootKeyAfterReceive, receivingChainKey, nextReceivingHeaderKey] = kdfRk(before.RK, dhReceive);
    const snap = decodeStateSnapshot(serializeRatchetState(after));
    const dhSend = b.x25519(fromHex(snap.DHs.secretKey), fromHex(header.dh));
    const [rootKey, sendingChainKey, nextSendingHeaderKey] = kdfRk(rootKeyAfterReceive, dhSend);
    step.dhRatchet = {
      remoteRatchetKey: header.dh,
      dhReceive: toHex(dhReceive),
      rootKeyAfterReceive,
      receivingChainKey,
      nextReceivingHeaderKey,
      newRatchetKeyPair: snap.DHs,
      dhSend: toHex(dhSend),
      rootKey,
      sendingChainKey,
      nextSendingHeaderKey,
    };
    const w = walk(receivingChainKey, 0, header.n, before.NHKr);
    Object.assign(step, { chainKey: w.ck, skippedKeys: [...old.skipped, ...w.skipped] });
  } else {
    step.path = 'skipped';
    if (!header) {
      for (const c of before.skipped) if ((header = openHeader(c.headerKey, wire, headerAad))) break;
    }
  }
  step.header = header!;
  const mk =
    step.path === 'skipped'
      ? before.skipped.find((c) => c.headerKey === header!.headerKey)!.keys.find((k) => k.n === header!.n)!.messageKey
      : hmac(step.chainKey!, 1);
  if (step.path !== 'skipped') step.nextChainKey = hmac(step.chainKey!, 2);
  const km = b.hkdfSha256(fromHex(mk), wire.subarray(1, 13), utf8(RatchetLabel.Message), 44);
  Object.assign(step, { messageKey: mk, bodyKey: toHex(km.subarray(0, 32)), bodyNonce: toHex(km.subarray(32)) });
  if (!equalBytes(fromHex(step.plaintext!), b.aes256GcmDecrypt(km.subarray(0, 32), km.subarray(32), wire.subarray(69), concatBytes(associatedData, wire.subarray(0, 69))))) {
    throw new Error(`step ${step.step}: recomputed plaintext differs`);
  }
}

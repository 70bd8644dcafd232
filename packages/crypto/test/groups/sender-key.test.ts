/**
 * Sender keys (docs/spec/groups.md §G2–G3): fresh key per message, bounded skipping, signatures
 * checked against the claimed sending device, rotation on removal and by count/time (healing).
 * Every member here is a separate device with its own records, as the SDK will hold them.
 */
import { describe, expect, it } from 'vitest';
import { toHex } from '../../src/bytes.js';
import {
  MAX_GROUP_SKIP,
  MAX_GROUP_SKIPPED_KEYS,
  SENDER_KEY_ROTATE_AFTER_MESSAGES,
  SENDER_KEY_ROTATE_AFTER_MS,
  SENDER_KEY_SUPERSEDED_GRACE_MS,
} from '../../src/constants.js';
import { CryptoError } from '../../src/errors.js';
import { isPaddingBucket } from '../../src/padding.js';
import { SEALED_ENVELOPE_OVERHEAD } from '../../src/sealed-sender.js';
import type { OwnSenderKey, SenderKeyRecord } from '../../src/sender-key.js';
import {
  GROUP_MESSAGE_OVERHEAD,
  decodeSenderKeyDistribution,
  decryptGroupMessage,
  deserializeOwnSenderKey,
  deserializeSenderKeyRecord,
  encodeSenderKeyDistribution,
  encryptGroupMessage,
  generateSenderKey,
  needsSenderKeyRotation,
  processSenderKeyDistribution,
  readGroupMessageHeader,
  rotateSenderKey,
  serializeOwnSenderKey,
  serializeSenderKeyRecord,
} from '../../src/sender-key.js';
import { str, testContext, text } from '../_fixtures.js';
import { specGroupMessage, specMessageKey } from './_spec.js';

const ctx = testContext('sender-key-tests');
const groupId = ctx.random(32);

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof CryptoError) return e.code;
    throw e;
  }
  return 'ok';
}

/** One member device: its own sender key and the records it holds of the others (by sender hex). */
class Member {
  key: OwnSenderKey;
  readonly device: Uint8Array;
  readonly records = new Map<string, SenderKeyRecord>();
  constructor(readonly name: string) {
    this.device = ctx.random(32);
    this.key = generateSenderKey(ctx, { groupId, senderDevice: this.device });
  }
  /** Receives `from`'s current distribution over the (simulated) pairwise session. */
  receiveDistribution(from: Member, distribution = encodeSenderKeyDistribution(from.key)): void {
    const id = toHex(from.device);
    this.records.set(id, processSenderKeyDistribution(ctx, { groupId, sender: from.device, distribution, record: this.records.get(id) }));
  }
  send(s: string): Uint8Array {
    const r = encryptGroupMessage(ctx, this.key, text(s));
    this.key = r.key;
    return r.message;
  }
  receive(message: Uint8Array): string {
    const h = readGroupMessageHeader(message);
    const id = toHex(h.sender);
    const r = decryptGroupMessage(ctx, this.records.get(id), message);
    this.records.set(id, r.record);
    return str(r.plaintext);
  }
  /** A snapshot of everything this device holds (what a thief or a removed member keeps). */
  snapshot(): Member {
    const m = Object.create(Member.prototype) as Member;
    Object.assign(m, { name: `${this.name} (copy)`, key: this.key, device: this.device, records: new Map(this.records) });
    return m;
  }
}

function group(...names: string[]): Member[] {
  const ms = names.map((n) => new Member(n));
  for (const a of ms) for (const b of ms) if (a !== b) b.receiveDistribution(a);
  return ms;
}

describe('sender keys: the chain', () => {
  it('every member reads every other member; each message has its own key', () => {
    const [a, b, c] = group('alice', 'bob', 'carol');
    const m1 = a!.send('hello group');
    const m2 = a!.send('hello group');
    expect(toHex(m1)).not.toBe(toHex(m2));
    expect(b!.receive(m1)).toBe('hello group');
    expect(c!.receive(m2)).toBe('hello group');
    expect(c!.receive(m1)).toBe('hello group');
    expect(a!.receive(b!.send('hi alice'))).toBe('hi alice');
  });

  it('out of order within MAX_GROUP_SKIP; duplicates and too-far-ahead refused with their codes, nothing changed', () => {
    const [a, b] = group('alice', 'bob');
    const ms = Array.from({ length: 5 }, (_, i) => a!.send(`m${i}`));
    expect(b!.receive(ms[3]!)).toBe('m3');
    expect(b!.receive(ms[0]!)).toBe('m0');
    expect(codeOf(() => b!.receive(ms[3]!))).toBe('MW_CRYPTO_DUPLICATE_MESSAGE');
    expect(b!.receive(ms[4]!)).toBe('m4');
    expect(b!.receive(ms[1]!)).toBe('m1');
    // A message MAX_GROUP_SKIP + 1 ahead of the chain is refused; the record is untouched.
    for (let i = 0; i < MAX_GROUP_SKIP + 1; i++) a!.key = encryptGroupMessage(ctx, a!.key, new Uint8Array(0)).key;
    const far = a!.send('far');
    const before = serializeSenderKeyRecord(b!.records.get(toHex(a!.device))!);
    expect(codeOf(() => b!.receive(far))).toBe('MW_CRYPTO_TOO_FAR_AHEAD');
    expect(toHex(serializeSenderKeyRecord(b!.records.get(toHex(a!.device))!))).toBe(toHex(before));
    expect(b!.receive(ms[2]!)).toBe('m2');
  });

  it('evicted skipped keys are reported as SKIPPED_KEY_EVICTED, not as duplicates', () => {
    const [a, b] = group('alice', 'bob');
    const first = a!.send('first');
    const msgs: Uint8Array[] = [];
    // One jump of MAX_GROUP_SKIP fills the skipped-key store (MAX_GROUP_SKIPPED_KEYS); five more push out the oldest.
    expect(MAX_GROUP_SKIPPED_KEYS).toBe(MAX_GROUP_SKIP);
    for (let i = 0; i < MAX_GROUP_SKIP - 1; i++) a!.key = encryptGroupMessage(ctx, a!.key, new Uint8Array(0)).key;
    msgs.push(a!.send('mid'));
    for (let i = 0; i < 5; i++) a!.key = encryptGroupMessage(ctx, a!.key, new Uint8Array(0)).key;
    msgs.push(a!.send('last'));
    expect(b!.receive(msgs[0]!)).toBe('mid');
    expect(b!.receive(msgs[1]!)).toBe('last');
    expect(codeOf(() => b!.receive(first))).toBe('MW_CRYPTO_SKIPPED_KEY_EVICTED');
  });

  it('a tampered ciphertext fails (BAD_SIGNATURE, before any chain work); a failed decrypt changes nothing', () => {
    const [a, b] = group('alice', 'bob');
    const m = a!.send('intact');
    const bad = m.slice();
    bad[100]! ^= 1;
    expect(codeOf(() => b!.receive(bad))).toBe('MW_CRYPTO_BAD_SIGNATURE');
    expect(b!.receive(m)).toBe('intact');
  });

  it('padding: a group message in a sealed envelope fills a padding bucket exactly', () => {
    const [a] = group('alice');
    for (const n of [0, 1, 500, 1618, 1619, 3000, 100_000]) {
      const m = encryptGroupMessage(ctx, a!.key, new Uint8Array(n)).message;
      expect(isPaddingBucket(m.length + SEALED_ENVELOPE_OVERHEAD), `${n} bytes`).toBe(true);
      expect(m.length).toBeGreaterThanOrEqual(n + GROUP_MESSAGE_OVERHEAD + 1);
    }
    expect(codeOf(() => encryptGroupMessage(ctx, a!.key, new Uint8Array(262_144)))).toBe('MW_CRYPTO_LIMIT_EXCEEDED');
  });

  it('a joiner reads from the distribution on, not before', () => {
    const [a, b] = group('alice', 'bob');
    const before = a!.send('before you joined');
    const d = new Member('dave');
    d.receiveDistribution(a!);
    expect(codeOf(() => d.receive(before))).toBe('MW_CRYPTO_UNKNOWN_SENDER_KEY');
    const after = a!.send('welcome dave');
    expect(d.receive(after)).toBe('welcome dave');
    expect(b!.receive(before)).toBe('before you joined');
  });
});

describe('sender keys: forgery', () => {
  it('a member who holds another member’s chain cannot send as that member (signature checked against the claimed device)', () => {
    const [alice, bob, carol] = group('alice', 'bob', 'carol');
    alice!.send('one');
    // Bob holds Alice's chain key (from her distribution) and can compute every later message key.
    const aliceDist = decodeSenderKeyDistribution(encodeSenderKeyDistribution(alice!.key));
    const forged = specGroupMessage({
      groupId,
      sender: alice!.device,
      keyId: aliceDist.keyId,
      iteration: aliceDist.iteration,
      salt: new Uint8Array(16).fill(7),
      mk: specMessageKey(aliceDist.chainKey, aliceDist.iteration, aliceDist.iteration),
      plaintext: text('I, Alice, resign'),
      signingSeed: ctx.random(32), // Bob's own key: he has no other
    });
    expect(codeOf(() => carol!.receive(forged))).toBe('MW_CRYPTO_BAD_SIGNATURE');
    // And the real message at that iteration still decrypts (the forgery changed nothing).
    expect(carol!.receive(alice!.send('real'))).toBe('real');
    void bob;
  });

  it('a message looked up under the wrong record is SENDER_MISMATCH; another group is GROUP_MISMATCH', () => {
    const [alice, bob, carol] = group('alice', 'bob', 'carol');
    const m = alice!.send('x');
    expect(codeOf(() => decryptGroupMessage(ctx, carol!.records.get(toHex(bob!.device)), m))).toBe('MW_CRYPTO_SENDER_MISMATCH');
    const other = generateSenderKey(ctx, { groupId: ctx.random(32), senderDevice: alice!.device });
    expect(codeOf(() => carol!.receive(encryptGroupMessage(ctx, other, text('x')).message))).toBe('MW_CRYPTO_GROUP_MISMATCH');
    expect(codeOf(() => processSenderKeyDistribution(ctx, { groupId, sender: alice!.device, distribution: encodeSenderKeyDistribution(other) }))).toBe('MW_CRYPTO_GROUP_MISMATCH');
  });

  it('a non-member with the group id is refused: unknown sender key under its own id, bad signature under a member’s', () => {
    const [alice, bob] = group('alice', 'bob');
    const mallory = new Member('mallory'); // knows the group id, was never given anyone's key
    expect(codeOf(() => bob!.receive(mallory.send('let me in')))).toBe('MW_CRYPTO_UNKNOWN_SENDER_KEY');
    const aliceKeyId = alice!.key.keyId;
    const forged = specGroupMessage({
      groupId,
      sender: alice!.device,
      keyId: aliceKeyId,
      iteration: 0,
      salt: new Uint8Array(16),
      mk: ctx.random(32),
      plaintext: text('hi'),
      signingSeed: ctx.random(32),
    });
    expect(codeOf(() => bob!.receive(forged))).toBe('MW_CRYPTO_BAD_SIGNATURE');
  });
});

describe('sender keys: rotation', () => {
  it('after a kick the remaining members rotate; the removed member with its full old state reads nothing new', () => {
    const [alice, bob, carol] = group('alice', 'bob', 'carol');
    carol!.receive(alice!.send('while carol is a member'));
    const carolKept = carol!.snapshot();
    // Carol is removed: alice and bob rotate and distribute to each other only.
    alice!.key = rotateSenderKey(ctx, alice!.key);
    bob!.key = rotateSenderKey(ctx, bob!.key);
    bob!.receiveDistribution(alice!);
    alice!.receiveDistribution(bob!);
    const m1 = alice!.send('after carol left');
    const m2 = bob!.send('after carol left, bob');
    expect(bob!.receive(m1)).toBe('after carol left');
    expect(alice!.receive(m2)).toBe('after carol left, bob');
    for (const m of [m1, m2]) expect(codeOf(() => carolKept.receive(m))).toBe('MW_CRYPTO_UNKNOWN_SENDER_KEY');
    // Even forcing the new key id onto her old chain does not help: the signature and the chain are new.
    const relabelled = m1.slice();
    new DataView(relabelled.buffer).setUint32(65, carolKept.records.get(toHex(alice!.device))!.keyIds.at(-1)!);
    expect(codeOf(() => carolKept.receive(relabelled))).toBe('MW_CRYPTO_BAD_SIGNATURE');
  });

  it('healing: a leaked device state reads until the next rotation and nothing after it', () => {
    const [alice, bob] = group('alice', 'bob');
    bob!.receive(alice!.send('before the leak'));
    const thief = bob!.snapshot(); // Bob's storage is copied
    expect(thief.receive(alice!.send('after the leak'))).toBe('after the leak');
    const t0 = ctx.now();
    expect(needsSenderKeyRotation(alice!.key, t0)).toBe(false);
    expect(needsSenderKeyRotation(alice!.key, t0 + SENDER_KEY_ROTATE_AFTER_MS)).toBe(true);
    alice!.key = rotateSenderKey(ctx, alice!.key);
    bob!.receiveDistribution(alice!); // over the pairwise session, which the thief does not hold (healed)
    const m = alice!.send('after rotation');
    expect(bob!.receive(m)).toBe('after rotation');
    expect(codeOf(() => thief.receive(m))).toBe('MW_CRYPTO_UNKNOWN_SENDER_KEY');
  });

  it('a leaked own key stops being usable for forgery at rotation: the old key is closed at the announced end', () => {
    const [alice, bob] = group('alice', 'bob');
    const late = alice!.send('queued before rotation');
    const stolen = alice!.key; // alice's own state, signing key included, is copied
    alice!.key = rotateSenderKey(ctx, alice!.key);
    bob!.receiveDistribution(alice!);
    const forged = encryptGroupMessage(ctx, stolen, text('alice says: send money')).message;
    expect(codeOf(() => bob!.receive(forged))).toBe('MW_CRYPTO_UNKNOWN_SENDER_KEY');
    expect(bob!.receive(late)).toBe('queued before rotation');
  });

  it('rotation by count', () => {
    let k = generateSenderKey(ctx, { groupId, senderDevice: ctx.random(32) });
    for (let i = 0; i < SENDER_KEY_ROTATE_AFTER_MESSAGES - 1; i++) k = encryptGroupMessage(ctx, k, new Uint8Array(0)).key;
    expect(needsSenderKeyRotation(k, k.createdAt)).toBe(false);
    k = encryptGroupMessage(ctx, k, new Uint8Array(0)).key;
    expect(needsSenderKeyRotation(k, k.createdAt)).toBe(true);
    expect(needsSenderKeyRotation(rotateSenderKey(ctx, k), k.createdAt)).toBe(false);
  });

  it('a superseded key still opens late messages for the grace period, then is dropped', () => {
    const [alice, bob] = group('alice', 'bob');
    const late = alice!.send('sent before rotation, delivered late');
    alice!.key = rotateSenderKey(ctx, alice!.key);
    bob!.receiveDistribution(alice!);
    const saved = bob!.records.get(toHex(alice!.device))!;
    expect(bob!.receive(late)).toBe('sent before rotation, delivered late');
    bob!.records.set(toHex(alice!.device), saved);
    ctx.clock.advance(SENDER_KEY_SUPERSEDED_GRACE_MS + 1);
    expect(codeOf(() => bob!.receive(late))).toBe('MW_CRYPTO_UNKNOWN_SENDER_KEY');
    expect(bob!.receive(alice!.send('current'))).toBe('current');
  });

  it('a repeated distribution is a no-op (it does not rewind the chain)', () => {
    const [alice, bob] = group('alice', 'bob');
    const d = encodeSenderKeyDistribution(alice!.key);
    const m = alice!.send('once');
    expect(bob!.receive(m)).toBe('once');
    bob!.receiveDistribution(alice!, d);
    expect(codeOf(() => bob!.receive(m))).toBe('MW_CRYPTO_DUPLICATE_MESSAGE');
  });
});

describe('sender keys: storage and hygiene', () => {
  it('own keys and records survive serialisation; bad bytes fail with codes', () => {
    const [alice, bob] = group('alice', 'bob');
    bob!.receive(alice!.send('a'));
    alice!.send('b');
    const m = alice!.send('c');
    const own = deserializeOwnSenderKey(ctx, serializeOwnSenderKey(alice!.key));
    expect(toHex(serializeOwnSenderKey(own))).toBe(toHex(serializeOwnSenderKey(alice!.key)));
    const rec = bob!.records.get(toHex(alice!.device))!;
    const back = deserializeSenderKeyRecord(serializeSenderKeyRecord(rec));
    expect(str(decryptGroupMessage(ctx, back, m).plaintext)).toBe('c');
    expect(codeOf(() => deserializeSenderKeyRecord(serializeSenderKeyRecord(rec).slice(0, -1)))).toBe('MW_CRYPTO_MALFORMED');
    expect(codeOf(() => deserializeSenderKeyRecord(Uint8Array.of(9, 2)))).toBe('MW_CRYPTO_UNSUPPORTED_VERSION');
    expect(codeOf(() => readGroupMessageHeader(Uint8Array.of(1, 2, 3)))).toBe('MW_CRYPTO_MALFORMED');
    expect(codeOf(() => readGroupMessageHeader(Uint8Array.of(2, 2, 3)))).toBe('MW_CRYPTO_UNSUPPORTED_VERSION');
    expect(codeOf(() => decodeSenderKeyDistribution(new Uint8Array(104).fill(1)))).toBe('MW_CRYPTO_MALFORMED');
  });

  it('inspect, toString and JSON show no secret', () => {
    const [alice, bob] = group('alice', 'bob');
    const secrets = [toHex(decodeSenderKeyDistribution(encodeSenderKeyDistribution(alice!.key)).chainKey)];
    const rec = bob!.records.get(toHex(alice!.device))!;
    for (const v of [alice!.key, rec]) {
      const shown = `${String(v)} ${JSON.stringify(v)}`;
      for (const s of secrets) expect(shown).not.toContain(s);
      expect(shown).toContain('[redacted]');
    }
  });
});

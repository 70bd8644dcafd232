/**
 * test-vectors/ratchet.json: `MW_WRITE_VECTORS=1 npx vitest run packages/crypto/test/ratchet/vectors.test.ts`
 * regenerates it; a normal run (1) regenerates it in memory with every backend and requires the
 * committed file byte for byte, and (2) re-checks every recorded step from the JSON alone with
 * bare primitives, the way a re-implementer would (docs/spec/ratchet.md).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { concatBytes, fromHex, toHex, utf8 } from '../../src/bytes.js';
import { nobleBackend } from '../../src/primitives/noble.js';
import { platformBackend } from '../../src/primitives/index.js';
import { deterministicRng } from '../../src/testing.js';
import type { RatchetVectors, StateSnapshot, VectorStep } from '../../../../scripts/vectors/ratchet.js';
import { generateRatchetVectors } from '../../../../scripts/vectors/ratchet.js';

const FILE = fileURLToPath(new URL('../../../../test-vectors/ratchet.json', import.meta.url));
const serialize = (v: RatchetVectors): string => `${JSON.stringify(v, null, 2)}\n`;

if (process.env['MW_WRITE_VECTORS'] === '1') {
  writeFileSync(FILE, serialize(generateRatchetVectors()));
  console.log(`wrote ${FILE}`);
}

const committed = (): RatchetVectors => JSON.parse(readFileSync(FILE, 'utf8')) as RatchetVectors;

describe('test-vectors/ratchet.json', () => {
  it('the implementation reproduces the committed file exactly, on every backend', () => {
    const text = readFileSync(FILE, 'utf8');
    expect(serialize(generateRatchetVectors(nobleBackend))).toBe(text);
    expect(serialize(generateRatchetVectors(platformBackend()))).toBe(text);
  });

  it('covers what it claims: ≥ 20 messages, DH steps, skipped keys, out-of-order, errors', () => {
    const v = committed();
    expect(v.messages.length).toBeGreaterThanOrEqual(20);
    const paths = v.steps.map((s) => s.path);
    expect(paths.filter((p) => p === 'dh-ratchet').length).toBeGreaterThanOrEqual(6);
    expect(paths.filter((p) => p === 'skipped').length).toBeGreaterThanOrEqual(6);
    expect(v.steps.filter((s) => (s.skippedKeys ?? []).length > 0).length).toBeGreaterThanOrEqual(5);
    const errors = v.steps.map((s) => s.error).filter(Boolean);
    expect(errors).toContain('MW_CRYPTO_DUPLICATE_MESSAGE');
    expect(errors).toContain('MW_CRYPTO_BAD_MAC');
    expect(errors).toContain('MW_CRYPTO_UNKNOWN_SESSION');
    expect(errors).toContain('MW_CRYPTO_SKIPPED_KEY_EXPIRED');
    expect(v.steps.some((s) => s.state.lost.length > 0)).toBe(true);
    expect(v.headerEncryption.length).toBeGreaterThanOrEqual(2);
    expect(v.ephemeral.map((e) => e.from)).toEqual(['alice', 'bob', 'alice']);
  });

  it('every step checks out from the JSON alone (independent re-derivation)', () => {
    verify(committed());
  });

  it('the re-derivation notices any single changed value', () => {
    const flip = (h: string): string => (h[0] === '0' ? '1' : '0') + h.slice(1);
    const edits: ((v: RatchetVectors) => void)[] = [
      (v) => void (v.init.alice.RK = flip(v.init.alice.RK)),
      (v) => void (v.messages[5]!.wire = v.messages[5]!.wire.slice(0, -2) + flip(v.messages[5]!.wire.slice(-2))),
      (v) => void (v.steps[0]!.bodyNonce = flip(v.steps[0]!.bodyNonce!)),
      (v) => void (v.steps[8]!.dhRatchet!.rootKey = flip(v.steps[8]!.dhRatchet!.rootKey)),
      (v) => void (v.steps[4]!.skippedKeys![0]!.messageKey = flip(v.steps[4]!.skippedKeys![0]!.messageKey)),
      (v) => void (v.steps[30]!.state.NHKr = flip(v.steps[30]!.state.NHKr)),
      (v) => void (v.steps[14]!.state.Nr += 1),
      (v) => void (v.steps[10]!.rngConsumed = flip(v.steps[10]!.rngConsumed)),
      (v) => void (v.ephemeral[1]!.wire = v.ephemeral[1]!.wire.slice(0, -2) + flip(v.ephemeral[1]!.wire.slice(-2))),
      (v) => void (v.ephemeral[0]!.time += 1),
    ];
    for (const edit of edits) {
      const v = committed();
      edit(v);
      expect(() => verify(v)).toThrow();
    }
  });
});

// ── The re-implementer's check: primitives only, nothing from ratchet.ts ────────────────────────

const b = nobleBackend;
const ZERO = new Uint8Array(32);
const hx = fromHex;
const hmac = (k: string, x: number): string => toHex(b.hmacSha256(hx(k), Uint8Array.of(x)));
const hkdf = (ikm: Uint8Array, salt: Uint8Array, label: string, n: number): Uint8Array => b.hkdfSha256(ikm, salt, utf8(label), n);
const split = (x: Uint8Array): [string, string, string] => [toHex(x.subarray(0, 32)), toHex(x.subarray(32, 64)), toHex(x.subarray(64, 96))];

function verify(v: RatchetVectors): void {
  const ad = hx(v.inputs.associatedData);
  const headerAad = concatBytes(ad, Uint8Array.of(v.constants.RATCHET_WIRE_VERSION));
  const rng = { alice: deterministicRng(v.inputs.rngSeeds.alice), bob: deterministicRng(v.inputs.rngSeeds.bob) };

  // Initialisation (§Initialisation).
  const [rk0, hka, nhkb] = split(hkdf(hx(v.inputs.sharedSecret), ZERO, v.labels.Init, 96));
  expect([rk0, hka, nhkb]).toEqual([v.init.RK0, v.init.sharedHKa, v.init.sharedNHKb]);
  const spk = v.inputs.responderRatchetKeyPair;
  expect(toHex(b.x25519PublicKey(hx(spk.secretKey)))).toBe(spk.publicKey);
  const a = v.init.alice;
  expect(a.DHs.secretKey).toBe(toHex(rng.alice(32)));
  expect(a.DHs.publicKey).toBe(toHex(b.x25519PublicKey(hx(a.DHs.secretKey))));
  const [rk, cks, nhks] = split(hkdf(b.x25519(hx(a.DHs.secretKey), hx(spk.publicKey)), hx(rk0), v.labels.Root, 96));
  expect(a).toMatchObject({ role: 'initiator', RK: rk, CKs: cks, NHKs: nhks, HKs: hka, NHKr: nhkb, DHr: spk.publicKey, CKr: null, HKr: null, Ns: 0, Nr: 0, PN: 0 });
  expect(v.init.bob).toMatchObject({ role: 'responder', RK: rk0, DHs: spk, NHKs: nhkb, NHKr: hka, DHr: null, CKs: null, HKs: null, CKr: null, HKr: null });

  const current: Record<'alice' | 'bob', StateSnapshot> = { alice: v.init.alice, bob: v.init.bob };
  for (const s of v.steps) {
    const prev = current[s.party];
    const ctx = `step ${s.step} (${s.note})`;
    expect(s.rngConsumed, ctx).toBe(toHex(rng[s.party](s.rngConsumed.length / 2)));
    if (s.op === 'encrypt') verifyEncrypt(v, s, prev, headerAad, ad, ctx);
    else if (s.error !== undefined) expect(s.state, ctx).toEqual(prev);
    else verifyDecrypt(v, s, prev, headerAad, ad, ctx);
    current[s.party] = s.state;
  }
  // Ephemeral messages (§Ephemeral messages): EPH_KEYS(HKs, salt), the sender time inside, no state change.
  for (const e of v.ephemeral) {
    const to = e.from === 'alice' ? 'bob' : 'alice';
    expect(e.headerKey).toBe(current[e.from].HKs);
    expect(e.salt).toBe(toHex(rng[e.from](16)));
    const km = hkdf(hx(e.headerKey), hx(e.salt), v.labels.Ephemeral, 44);
    expect(toHex(km)).toBe(e.key + e.nonce);
    const wire = hx(e.wire);
    expect(wire[0]).toBe(v.constants.RATCHET_WIRE_VERSION);
    expect(toHex(wire.subarray(1, 17))).toBe(e.salt);
    const inner = b.aes256GcmDecrypt(km.subarray(0, 32), km.subarray(32), wire.subarray(17), concatBytes(ad, wire.subarray(0, 17)));
    const time = new DataView(inner.buffer, inner.byteOffset, 8);
    expect(time.getUint32(0) * 2 ** 32 + time.getUint32(4)).toBe(e.time);
    expect(toHex(inner.subarray(8))).toBe(e.plaintext);
    const r = current[to];
    const expected = r.HKr === e.headerKey ? 'HKr' : r.NHKr === e.headerKey ? 'NHKr' : r.previousHeaderKeys.includes(e.headerKey) ? 'previous' : 'none';
    expect(e.openedWith).toBe(expected);
  }
}

function bodyOf(s: VectorStep, wire: Uint8Array, ad: Uint8Array): Uint8Array {
  // The salt is the header nonce (wire bytes 1..13): a rolled-back state never reuses key and nonce.
  const km = hkdf(hx(s.messageKey!), wire.subarray(1, 13), 'MeshWhisper_DR_Message_v2', 44);
  expect(toHex(km)).toBe(s.bodyKey! + s.bodyNonce!);
  return b.aes256GcmDecrypt(km.subarray(0, 32), km.subarray(32), wire.subarray(69), concatBytes(ad, wire.subarray(0, 69)));
}

function verifyEncrypt(v: RatchetVectors, s: VectorStep, prev: StateSnapshot, headerAad: Uint8Array, ad: Uint8Array, ctx: string): void {
  const m = v.messages[s.message]!;
  const wire = hx(m.wire);
  const h = s.header!;
  expect(h, ctx).toMatchObject({ headerKey: prev.HKs, dh: prev.DHs.publicKey, pn: prev.PN, n: prev.Ns, nonce: s.rngConsumed });
  expect(h.plaintext).toBe(h.dh + toHex(new Uint8Array([h.pn >>> 24, (h.pn >>> 16) & 255, (h.pn >>> 8) & 255, h.pn & 255, h.n >>> 24, (h.n >>> 16) & 255, (h.n >>> 8) & 255, h.n & 255])));
  expect(s.chainKey).toBe(prev.CKs);
  expect(s.messageKey).toBe(hmac(prev.CKs!, 1));
  expect(s.nextChainKey).toBe(hmac(prev.CKs!, 2));
  const encHeader = b.aes256GcmEncrypt(hx(h.headerKey), hx(h.nonce), hx(h.plaintext), headerAad);
  const prefix = concatBytes(Uint8Array.of(v.constants.RATCHET_WIRE_VERSION), hx(h.nonce), encHeader);
  expect(toHex(wire.subarray(0, 69)), ctx).toBe(toHex(prefix));
  expect(toHex(bodyOf(s, wire, ad)), ctx).toBe(m.plaintext);
  expect(s.plaintext).toBe(m.plaintext);
  expect(s.state, ctx).toMatchObject({ ...prev, CKs: s.nextChainKey, Ns: prev.Ns + 1, skipped: s.state.skipped, lost: s.state.lost });
  // Expiry pruning is the only change an encryption may make to the skipped keys, and every
  // pruned key leaves an 'expired' record.
  for (const c of s.state.skipped) for (const k of c.keys) expect(s.time - k.storedAt).toBeLessThanOrEqual(v.constants.SKIPPED_KEY_MAX_AGE_MS);
  for (const c of prev.skipped) {
    for (const k of c.keys) {
      if (s.time - k.storedAt <= v.constants.SKIPPED_KEY_MAX_AGE_MS) continue;
      expect(s.state.lost.find((l) => l.headerKey === c.headerKey)?.keys.some((l) => l.n === k.n && l.reason === 'expired'), ctx).toBe(true);
    }
  }
}

function verifyDecrypt(v: RatchetVectors, s: VectorStep, prev: StateSnapshot, headerAad: Uint8Array, ad: Uint8Array, ctx: string): void {
  const m = v.messages[s.message]!;
  const wire = hx(m.wire);
  const h = s.header!;
  const pt = b.aes256GcmDecrypt(hx(h.headerKey), wire.subarray(1, 13), wire.subarray(13, 69), headerAad);
  expect(toHex(pt), ctx).toBe(h.plaintext);
  const hasKey = (st: StateSnapshot, hk: string, n: number, mk: string): boolean =>
    st.skipped.some((c) => c.headerKey === hk && c.keys.some((k) => k.n === n && k.messageKey === mk));

  if (s.path === 'skipped') {
    expect(hasKey(prev, h.headerKey, h.n, s.messageKey!), ctx).toBe(true);
    expect(hasKey(s.state, h.headerKey, h.n, s.messageKey!), ctx).toBe(false);
    expect(s.state, ctx).toMatchObject({ ...prev, skipped: s.state.skipped, lost: s.state.lost });
  } else {
    let ck: string;
    const skipped: { headerKey: string; n: number; messageKey: string }[] = [];
    const walk = (from: string, i0: number, until: number, hk: string): string => {
      let c = from;
      for (let i = i0; i < until; i++) {
        skipped.push({ headerKey: hk, n: i, messageKey: hmac(c, 1) });
        c = hmac(c, 2);
      }
      return c;
    };
    if (s.path === 'current-chain') {
      expect(h.headerKey).toBe(prev.HKr);
      ck = walk(prev.CKr!, prev.Nr, h.n, prev.HKr!);
      expect(s.state, ctx).toMatchObject({ ...prev, CKr: hmac(ck, 2), Nr: h.n + 1, skipped: s.state.skipped, lost: s.state.lost });
    } else {
      expect(s.path).toBe('dh-ratchet');
      expect(h.headerKey).toBe(prev.NHKr);
      const d = s.dhRatchet!;
      if (prev.CKr !== null) walk(prev.CKr, prev.Nr, h.pn, prev.HKr!);
      expect(d.remoteRatchetKey).toBe(h.dh);
      expect(d.dhReceive).toBe(toHex(b.x25519(hx(prev.DHs.secretKey), hx(h.dh))));
      expect([d.rootKeyAfterReceive, d.receivingChainKey, d.nextReceivingHeaderKey]).toEqual(split(hkdf(hx(d.dhReceive), hx(prev.RK), v.labels.Root, 96)));
      expect(d.newRatchetKeyPair.secretKey).toBe(s.rngConsumed);
      expect(d.newRatchetKeyPair.publicKey).toBe(toHex(b.x25519PublicKey(hx(s.rngConsumed))));
      expect(d.dhSend).toBe(toHex(b.x25519(hx(d.newRatchetKeyPair.secretKey), hx(h.dh))));
      expect([d.rootKey, d.sendingChainKey, d.nextSendingHeaderKey]).toEqual(split(hkdf(hx(d.dhSend), hx(d.rootKeyAfterReceive), v.labels.Root, 96)));
      ck = walk(d.receivingChainKey, 0, h.n, prev.NHKr);
      expect(s.state, ctx).toMatchObject({
        RK: d.rootKey,
        DHs: d.newRatchetKeyPair,
        DHr: h.dh,
        CKs: d.sendingChainKey,
        CKr: hmac(ck, 2),
        HKs: prev.NHKs,
        HKr: prev.NHKr,
        NHKs: d.nextSendingHeaderKey,
        NHKr: d.nextReceivingHeaderKey,
        PN: prev.Ns,
        Ns: 0,
        Nr: h.n + 1,
      });
    }
    expect(s.chainKey).toBe(ck);
    expect(s.nextChainKey).toBe(hmac(ck, 2));
    expect(s.messageKey).toBe(hmac(ck, 1));
    expect(s.skippedKeys).toEqual(skipped);
    for (const k of skipped) expect(hasKey(s.state, k.headerKey, k.n, k.messageKey), ctx).toBe(true);
  }
  expect(toHex(bodyOf(s, wire, ad)), ctx).toBe(m.plaintext);
  expect(s.plaintext).toBe(m.plaintext);
}

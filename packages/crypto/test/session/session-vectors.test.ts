/**
 * test-vectors/session.json: `MW_WRITE_VECTORS=1 npx vitest run packages/crypto/test/session/session-vectors.test.ts`
 * regenerates it; a normal run (1) regenerates it in memory on every backend and requires the
 * committed file byte for byte, and (2) re-reads every value from the JSON alone with its own
 * parser of the layouts in docs/spec/06-session.md (§6.1 PreKey framing, §6.2 records, §6.6
 * decryption-error reports) and ratchet.md §Storage format, the way a re-implementer would.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fromHex } from '../../src/bytes.js';
import { createContext } from '../../src/context.js';
import { decodePreKeyBundle, verifyPreKeyBundle } from '../../src/prekeys.js';
import { nobleBackend } from '../../src/primitives/noble.js';
import { platformBackend } from '../../src/primitives/index.js';
import { decodeDecryptionError, deserializeSessionRecord } from '../../src/session.js';
import { decodeStateSnapshot } from '../../../../scripts/vectors/ratchet.js';
import type { SessionVectors } from '../../../../scripts/vectors/session.js';
import { generateSessionVectors } from '../../../../scripts/vectors/session.js';

const FILE = fileURLToPath(new URL('../../../../test-vectors/session.json', import.meta.url));
const serialize = (v: SessionVectors): string => `${JSON.stringify(v, null, 2)}\n`;

if (process.env['MW_WRITE_VECTORS'] === '1') {
  writeFileSync(FILE, serialize(await generateSessionVectors()));
  console.log(`wrote ${FILE}`);
}

const committed = (): SessionVectors => JSON.parse(readFileSync(FILE, 'utf8')) as SessionVectors;

// ── The re-implementer's side: hex string building and parsing, nothing from session.ts ───────

const hx = (n: number, bytes: number): string => n.toString(16).padStart(bytes * 2, '0');

/** §4 header encoding then §6.1: version ‖ vec16(cert) ‖ Encode(EK_A) ‖ u32 spkId ‖ (01 ‖ u32 opkId | 00) ‖ u32 kemId ‖ CT ‖ ratchet message. */
function preKeyBody(m: SessionVectors['preKeyMessages'][number]): string {
  const h = m.header;
  return (
    hx(h.version, 1) +
    hx(h.certificate.length / 2, 2) +
    h.certificate +
    '02' +
    h.baseKey +
    hx(h.signedPreKeyId, 4) +
    (h.oneTimePreKeyId === null ? '00' : `01${hx(h.oneTimePreKeyId, 4)}`) +
    hx(h.kemPreKeyId, 4) +
    h.kemCiphertext +
    m.ratchetMessage
  );
}

/** §6.2 with a hex cursor. */
function parseRecord(hex: string) {
  let at = 0;
  const take = (bytes: number): string => {
    if (at + bytes * 2 > hex.length) throw new Error('truncated');
    const s = hex.slice(at, at + bytes * 2);
    at += bytes * 2;
    return s;
  };
  const int = (bytes: number): number => parseInt(take(bytes), 16);
  const entry = (end: number) => {
    const flags = int(1);
    if (flags > 1) throw new Error('flags');
    const peerCertificate = take(int(2));
    const baseKey = take(32);
    const createdAt = int(8);
    const lastEphemeralAt = int(8);
    const hasPending = int(1);
    if (hasPending > 1) throw new Error('pending flag');
    const pendingHeader = hasPending ? take(int(2)) : null;
    const ratchetState = take(int(4));
    if (at !== end) throw new Error('entry length');
    return { initiator: flags === 1, peerCertificate, baseKey, createdAt, lastEphemeralAt, pendingHeader, ratchetState };
  };
  if (int(1) !== 2) throw new Error('version');
  const lastErrorSentAt = int(8);
  const lastErrorBaseKey = take(32);
  const has = int(1);
  if (has > 1) throw new Error('current flag');
  let current = null;
  if (has) {
    const n = int(4);
    current = entry(at + n * 2);
  }
  const archived = [];
  for (let k = int(2); k > 0; k--) {
    const n = int(4);
    archived.push(entry(at + n * 2));
  }
  if (at !== hex.length) throw new Error('trailing bytes');
  return { lastErrorSentAt, lastErrorBaseKey, current, archived };
}

function verify(v: SessionVectors): void {
  const check = (cond: boolean, what: string): void => {
    if (!cond) throw new Error(what);
  };
  // §6.1: PreKey framing.
  for (const m of v.preKeyMessages) {
    check(m.type === 1, 'PreKey type');
    check(m.header.version === 2 && m.ratchetMessage.startsWith('02'), 'versions');
    check(m.header.certificate === v.identities.alice.certificate, 'initiator certificate');
    check(m.header.kemCiphertext.length === 1088 * 2, 'ML-KEM-768 ciphertext length');
    check(preKeyBody(m) === m.body, `PreKey body of "${m.name}"`);
  }
  check(v.ratchetMessage.type === 2 && v.ratchetMessage.body.startsWith('02'), 'Ratchet message');
  // §6.2: records.
  for (const r of v.records) {
    const parsed = parseRecord(r.record);
    check(JSON.stringify(parsed) === JSON.stringify({ lastErrorSentAt: r.lastErrorSentAt, lastErrorBaseKey: r.lastErrorBaseKey, current: r.current, archived: r.archived }), `record "${r.name}"`);
    for (const e of [...(parsed.current ? [parsed.current] : []), ...parsed.archived]) decodeStateSnapshot(fromHex(e.ratchetState));
  }
  const [aliceFirst, bobFirst, aliceEstablished, aliceArchived] = v.records;
  const headerOf = (m: SessionVectors['preKeyMessages'][number]): string => preKeyBody(m).slice(0, -m.ratchetMessage.length);
  check(aliceFirst!.current!.initiator && aliceFirst!.current!.pendingHeader === headerOf(v.preKeyMessages[0]!), 'pending header is the first message header');
  check(aliceFirst!.current!.peerCertificate === v.identities.bob.certificate && aliceFirst!.current!.baseKey === v.preKeyMessages[0]!.header.baseKey, 'initiator entry');
  const s1 = decodeStateSnapshot(fromHex(aliceFirst!.current!.ratchetState));
  check(s1.role === 'initiator' && s1.Ns === 1 && s1.Nr === 0, 'initiator state after one message');
  check(!bobFirst!.current!.initiator && bobFirst!.current!.pendingHeader === null && bobFirst!.current!.peerCertificate === v.identities.alice.certificate, 'responder entry');
  const s2 = decodeStateSnapshot(fromHex(bobFirst!.current!.ratchetState));
  check(s2.role === 'responder' && s2.Nr === 1 && s2.Ns === 0, 'responder state after one message');
  check(aliceEstablished!.current!.pendingHeader === null && aliceEstablished!.archived.length === 0, 'established');
  check(aliceArchived!.current!.pendingHeader === headerOf(v.preKeyMessages[1]!) && aliceArchived!.archived.length === 1, 'new pending session');
  check(aliceArchived!.archived[0]!.baseKey === v.preKeyMessages[0]!.header.baseKey, 'archived first session');
  check(aliceArchived!.lastErrorSentAt > v.clockStart && aliceArchived!.lastErrorBaseKey === v.preKeyMessages[1]!.header.baseKey, 'decryption-error rate limit recorded');
  check(aliceFirst!.lastErrorSentAt === 0 && aliceFirst!.lastErrorBaseKey === '00'.repeat(32), 'no report yet');
  for (const r of v.invalidRecords) {
    let refused = false;
    try {
      parseRecord(r.record);
    } catch {
      refused = true;
    }
    check(refused, `independent parser refuses "${r.name}"`);
  }
  // §6.6: decryption-error reports.
  check(v.decryptionErrors.reasons.length === 7, 'seven reasons');
  for (const d of v.decryptionErrors.valid) {
    const reason = v.decryptionErrors.reasons.indexOf(d.reason) + 1;
    check(reason > 0, 'known reason');
    check(d.encoded === `01${hx(reason, 1)}${hx(d.failedAt, 8)}${d.baseKey === null ? '00' : `01${d.baseKey}`}`, `report ${d.reason}`);
  }
}

describe('test-vectors/session.json', () => {
  it('the implementation reproduces the committed file exactly, on every backend', async () => {
    const text = readFileSync(FILE, 'utf8');
    expect(serialize(await generateSessionVectors(nobleBackend))).toBe(text);
    expect(serialize(await generateSessionVectors(platformBackend()))).toBe(text);
  });

  it('every value checks out from the JSON alone (independent parser of the spec layouts)', () => {
    verify(committed());
  });

  it('the independent check notices any single changed value', () => {
    const flip = (h: string, at = 0): string => h.slice(0, at) + (h[at] === '0' ? '1' : '0') + h.slice(at + 1);
    const edits: ((v: SessionVectors) => void)[] = [
      (v) => void (v.preKeyMessages[0]!.body = flip(v.preKeyMessages[0]!.body, 200)),
      (v) => void (v.preKeyMessages[1]!.header.signedPreKeyId += 1),
      (v) => void (v.records[0]!.record = flip(v.records[0]!.record, 30)),
      (v) => void (v.records[3]!.archived[0]!.createdAt += 1),
      (v) => void (v.records[1]!.current!.ratchetState = flip(v.records[1]!.current!.ratchetState, 10)),
      (v) => void (v.decryptionErrors.valid[2]!.failedAt += 1),
      (v) => void (v.decryptionErrors.valid[3]!.encoded = flip(v.decryptionErrors.valid[3]!.encoded, 3)),
    ];
    for (const edit of edits) {
      const v = committed();
      edit(v);
      expect(() => verify(v)).toThrow();
    }
  });

  it('invalid records, reports and bundles are refused with the listed codes', () => {
    const v = committed();
    for (const r of v.invalidRecords) expect(() => deserializeSessionRecord(fromHex(r.record)), r.name).toThrow(expect.objectContaining({ code: r.expectedError }));
    expect(new Set(v.invalidRecords.map((r) => r.expectedError))).toEqual(new Set(['MW_CRYPTO_UNSUPPORTED_VERSION', 'MW_CRYPTO_MALFORMED']));
    for (const d of v.decryptionErrors.invalid) expect(() => decodeDecryptionError(fromHex(d.encoded)), d.name).toThrow(expect.objectContaining({ code: d.expectedError }));
    for (const d of v.decryptionErrors.valid) expect(decodeDecryptionError(fromHex(d.encoded)).reason).toBe(d.reason);
    for (const b of v.invalidBundles) {
      const ctx = createContext({ now: () => b.verifyAt });
      expect(() => verifyPreKeyBundle(ctx, decodePreKeyBundle(fromHex(b.bundle)), b.expectedAccountKey ? fromHex(b.expectedAccountKey) : undefined), b.name).toThrow(
        expect.objectContaining({ code: b.expectedError }),
      );
    }
    expect(new Set(v.invalidBundles.map((b) => b.expectedError))).toEqual(
      new Set(['MW_CRYPTO_BAD_SIGNATURE', 'MW_CRYPTO_UNTRUSTED_IDENTITY', 'MW_CRYPTO_CERTIFICATE_EXPIRED', 'MW_CRYPTO_INVALID_BUNDLE', 'MW_CRYPTO_UNSUPPORTED_VERSION', 'MW_CRYPTO_MALFORMED', 'MW_CRYPTO_INVALID_KEY']),
    );
  });
});

import { createContext, DeviceKeyPair, AccountKeyPair, encodeDeviceCertificate, issueDeviceCertificate, signedMessage } from '@meshwhisper/crypto';
import { deterministicRng } from '@meshwhisper/crypto/testing';
import { describe, expect, it } from 'vitest';
import {
  ALL_ERROR_CODES,
  AuthLabel,
  CHALLENGE_LENGTH,
  EnvelopeClass,
  ErrorCode,
  HTTP_STATUS,
  MAX_FRAME_BYTES,
  ProtocolError,
  SendRequestSchema,
  authSignedBytes,
  buildChallenge,
  create,
  decodeBody,
  decodeFrame,
  encodeFrame,
  fromBase64Url,
  negotiateVersion,
  parseChallenge,
  requestDigest,
  sendRequestProblem,
  signDeviceAuth,
  toBase64Url,
  toBinary,
} from '../src/index.js';

const ctx = createContext({ random: deterministicRng('f7'), now: () => 1_750_000_000_000 });

describe('frames', () => {
  it('round-trips every body kind it validates', () => {
    const id = new Uint8Array(16).fill(1);
    const frames = [
      encodeFrame({ requestId: 1, body: { case: 'clientHello', value: { versions: [2] } } }),
      encodeFrame({ body: { case: 'serverHello', value: { version: 2, challenge: new Uint8Array(CHALLENGE_LENGTH), maxFrameBytes: MAX_FRAME_BYTES } } }),
      encodeFrame({ body: { case: 'deliver', value: { envelopes: [{ id, payload: Uint8Array.of(1, 2), class: EnvelopeClass.DURABLE, receivedAt: 5n }] } } }),
      encodeFrame({ requestId: 9, body: { case: 'ack', value: { ids: [id, id] } } }),
      encodeFrame({ body: { case: 'gapNotice', value: { expired: 3, evicted: 1 } } }),
      encodeFrame({ body: { case: 'error', value: { code: ErrorCode.RATE_LIMITED, message: 'slow down', retryAfterMs: 100 } } }),
    ];
    for (const bytes of frames) {
      const d = decodeFrame(bytes);
      expect(d.ok, d.ok ? '' : d.error.message).toBe(true);
    }
    const ack = decodeFrame(frames[3]!);
    expect(ack.ok && ack.value.requestId === 9 && ack.value.body.case === 'ack' && ack.value.body.value.ids.length === 2).toBe(true);
  });

  it('rejects an oversize frame with TOO_LARGE before parsing', () => {
    const d = decodeFrame(new Uint8Array(MAX_FRAME_BYTES + 1));
    expect(!d.ok && d.error.code).toBe(ErrorCode.TOO_LARGE);
  });

  it('rejects garbage, empty bodies, wrong versions and bad field lengths with distinct codes', () => {
    const bad = decodeFrame(Uint8Array.of(0xff, 0xff, 0xff));
    expect(!bad.ok && bad.error.code).toBe(ErrorCode.MALFORMED);
    const empty = decodeFrame(encodeFrame({}));
    expect(!empty.ok && empty.error.code).toBe(ErrorCode.EMPTY_FRAME);
    // Version 1 (before device certificate v2) and a future version 3 are both refused.
    for (const version of [1, 3]) {
      const other = decodeFrame(encodeFrame({ version, body: { case: 'ok', value: {} } }));
      expect(!other.ok && other.error.code).toBe(ErrorCode.UNSUPPORTED_VERSION);
    }
    const ackShort = decodeFrame(encodeFrame({ body: { case: 'ack', value: { ids: [new Uint8Array(15)] } } }));
    expect(!ackShort.ok && ackShort.error.code).toBe(ErrorCode.BAD_REQUEST);
    const negotiated = decodeFrame(encodeFrame({ version: 1, body: { case: 'ok', value: {} } }), { version: 3 });
    expect(!negotiated.ok && negotiated.error.code).toBe(ErrorCode.UNSUPPORTED_VERSION);
  });

  it('keeps unknown fields of a newer peer (forward compatibility) but refuses an unknown body', () => {
    // Field 99 (a future addition) next to a known body: accepted.
    const known = encodeFrame({ body: { case: 'ok', value: {} } });
    const withUnknown = new Uint8Array([...known, 0x98, 0x06, 0x01]); // tag (99<<3|0), varint 1
    expect(decodeFrame(withUnknown).ok).toBe(true);
    // Only a future body kind (field 200, length-delimited, empty): EMPTY_FRAME.
    const future = new Uint8Array([0x08, 0x01, 0xc2, 0x0c, 0x00]);
    const d = decodeFrame(future);
    expect(!d.ok && d.error.code).toBe(ErrorCode.EMPTY_FRAME);
  });
});

describe('version negotiation', () => {
  it('picks the newest common version', () => {
    expect(negotiateVersion([1, 2, 3], [1, 2])).toEqual({ ok: true, value: 2 });
  });
  it('fails with UNSUPPORTED_VERSION when nothing is common', () => {
    const r = negotiateVersion([7]);
    expect(!r.ok && r.error.code).toBe(ErrorCode.UNSUPPORTED_VERSION);
  });
});

describe('send requests and bodies', () => {
  const good = { mailboxId: new Uint8Array(32), payload: Uint8Array.of(1), class: EnvelopeClass.DURABLE };
  it('validates lengths and classes', () => {
    expect(sendRequestProblem(create(SendRequestSchema, good))).toBeUndefined();
    expect(sendRequestProblem(create(SendRequestSchema, { ...good, mailboxId: new Uint8Array(31) }))).toMatch(/mailboxId/);
    expect(sendRequestProblem(create(SendRequestSchema, { ...good, class: EnvelopeClass.UNSPECIFIED }))).toMatch(/class/);
    expect(sendRequestProblem(create(SendRequestSchema, { ...good, deliveryToken: new Uint8Array(4) }))).toMatch(/token/);
  });
  it('decodeBody turns garbage into MALFORMED and oversize into TOO_LARGE', () => {
    const g = decodeBody(SendRequestSchema, Uint8Array.of(0x0a, 0xff));
    expect(!g.ok && g.error.code).toBe(ErrorCode.MALFORMED);
    const big = decodeBody(SendRequestSchema, new Uint8Array(10), undefined, 5);
    expect(!big.ok && big.error.code).toBe(ErrorCode.TOO_LARGE);
    const fine = decodeBody(SendRequestSchema, toBinary(SendRequestSchema, create(SendRequestSchema, good)), sendRequestProblem);
    expect(fine.ok).toBe(true);
  });
});

describe('authentication messages', () => {
  it('challenge layout round-trips', () => {
    const c = buildChallenge(new Uint8Array(32).fill(1), new Uint8Array(32).fill(2), 1_750_000_000_123);
    expect(c.length).toBe(CHALLENGE_LENGTH);
    const p = parseChallenge(c)!;
    expect(p.issuedAt).toBe(1_750_000_000_123);
    expect(p.nodeKey).toEqual(new Uint8Array(32).fill(1));
    expect(parseChallenge(c.subarray(1))).toBeUndefined();
  });
  it('a device proof verifies over exactly authSignedBytes and not for another request', () => {
    const account = AccountKeyPair.generate(ctx);
    const device = DeviceKeyPair.generate(ctx);
    const cert = encodeDeviceCertificate(issueDeviceCertificate(ctx, account, device));
    const challenge = buildChallenge(new Uint8Array(32), new Uint8Array(32), 1);
    const digest = requestDigest(ctx, 'PUT', '/v1/keys', Uint8Array.of(1));
    const auth = signDeviceAuth(ctx, device, cert, challenge, digest);
    const msg = authSignedBytes(AuthLabel.Device, challenge, digest);
    expect(ctx.backend.ed25519Verify(device.signingPublicKey, msg, auth.signature)).toBe(true);
    const other = authSignedBytes(AuthLabel.Device, challenge, requestDigest(ctx, 'PUT', '/v1/keys', Uint8Array.of(2)));
    expect(ctx.backend.ed25519Verify(device.signingPublicKey, other, auth.signature)).toBe(false);
    expect(signedMessage(AuthLabel.Device, new Uint8Array(0))[0]).toBe(AuthLabel.Device.length);
  });
  it('base64url round-trips and rejects other alphabets', () => {
    const b = Uint8Array.from({ length: 100 }, (_, i) => i * 7);
    expect(fromBase64Url(toBase64Url(b))).toEqual(b);
    expect(fromBase64Url('ab+/')).toBeUndefined();
    expect(fromBase64Url('a')).toBeUndefined();
  });
});

describe('error registry', () => {
  it('every protocol code has an HTTP status and all codes are unique MW_ strings', () => {
    for (const code of Object.values(ErrorCode)) expect(HTTP_STATUS[code]).toBeGreaterThanOrEqual(400);
    expect(new Set(ALL_ERROR_CODES).size).toBe(ALL_ERROR_CODES.length);
    for (const c of ALL_ERROR_CODES) expect(c).toMatch(/^MW_[A-Z_]+$/);
  });
  it('ProtocolError serialises to the HTTP error shape', () => {
    expect(JSON.parse(JSON.stringify(new ProtocolError(ErrorCode.NOT_FOUND, 'no such blob')))).toEqual({ error: { code: 'MW_NOT_FOUND', message: 'no such blob' } });
  });
});

describe('docs/spec/errors.md', () => {
  it('documents every code in the registry', async () => {
    const { readFileSync } = await import('node:fs');
    const doc = readFileSync(new URL('../../../docs/spec/errors.md', import.meta.url), 'utf8');
    for (const c of ALL_ERROR_CODES) expect(doc, `${c} missing from docs/spec/errors.md`).toContain(`\`${c}\``);
  });
});

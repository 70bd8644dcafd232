// The hand-written deliver / send_result encoders must produce exactly encodeFrame's bytes (so a
// peer cannot tell them apart), and decodeFrame must read them back.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EnvelopeClass, ErrorCode, MAX_ACK_IDS, MAX_DELIVER_BATCH, MAX_ENVELOPE_SIZE, PROTOCOL_VERSION, ProtocolError, decodeFrame, decodeFrameFast, encodeDeliverFrame, encodeFrame, encodeSendResultFrame } from '../src/index.js';
import type { Decoded, Frame } from '../src/index.js';
import { decodeHotFrame } from '../src/fast-frames.js';

const bytes = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

describe('fast frame encoders', () => {
  it('deliver: byte-identical to encodeFrame for ids, payload sizes, times, classes and batch sizes', () => {
    const times = [0, 1, 127, 128, 16_383, 16_384, 1_796_411_548_318, Number.MAX_SAFE_INTEGER];
    const sizes = [1, 127, 128, 1024, 16_384, 200_000];
    // Each size alone (a frame stays under MAX_FRAME_BYTES), then full batches of small envelopes.
    const cases = [...sizes.map((size) => ({ n: 1, size })), { n: 6, size: 0 }, { n: 64, size: 40 }, { n: MAX_DELIVER_BATCH, size: 900 }];
    for (const { n, size } of cases) {
      const envelopes = Array.from({ length: n }, (_, i) => ({
        id: i % 7 === 3 ? new Uint8Array(0) : bytes(16),
        payload: bytes(size || sizes[i % 4]!),
        receivedAt: times[i % times.length]!,
        cls: i % 5 === 4 ? EnvelopeClass.EPHEMERAL : i % 5 === 1 ? undefined : EnvelopeClass.DURABLE,
      }));
      const fast = encodeDeliverFrame(PROTOCOL_VERSION, envelopes);
      const lib = encodeFrame({
        version: PROTOCOL_VERSION,
        body: { case: 'deliver', value: { envelopes: envelopes.map((e) => ({ id: e.id, payload: e.payload, receivedAt: BigInt(e.receivedAt), class: e.cls ?? EnvelopeClass.DURABLE })) } },
      });
      expect(Buffer.from(fast).equals(Buffer.from(lib))).toBe(true);
      const d = decodeFrame(fast, { version: PROTOCOL_VERSION });
      expect(d.ok && d.value.body.case === 'deliver' && d.value.body.value.envelopes.length).toBe(n);
    }
  });

  it('send_result: byte-identical to encodeFrame for request ids, ids and the live flag', () => {
    for (const requestId of [0, 1, 127, 128, 300_000, 0xffffffff]) {
      for (const id of [new Uint8Array(0), bytes(16)]) {
        for (const live of [false, true]) {
          const fast = encodeSendResultFrame(PROTOCOL_VERSION, requestId, id, live);
          const lib = encodeFrame({ version: PROTOCOL_VERSION, requestId, body: { case: 'sendResult', value: { id, deliveredLive: live } } });
          expect(Buffer.from(fast).equals(Buffer.from(lib)), `requestId ${requestId}`).toBe(true);
        }
      }
    }
  });
});

describe('fast frame encoders with headroom (FrameBuffer)', () => {
  it('write the same frame after the headroom, into the allocator’s buffer, touching no byte before it', () => {
    const into = { headroom: 10, alloc: (n: number) => new Uint8Array(n).fill(0xee) };
    const envelopes = [{ id: bytes(16), payload: bytes(1000), receivedAt: 1_796_411_548_318 }];
    const d = encodeDeliverFrame(PROTOCOL_VERSION, envelopes, into);
    expect(Buffer.from(d.subarray(10)).equals(Buffer.from(encodeDeliverFrame(PROTOCOL_VERSION, envelopes)))).toBe(true);
    expect([...d.subarray(0, 10)]).toEqual(new Array(10).fill(0xee));
    const id = bytes(16);
    const r = encodeSendResultFrame(PROTOCOL_VERSION, 300, id, true, into);
    expect(Buffer.from(r.subarray(10)).equals(Buffer.from(encodeSendResultFrame(PROTOCOL_VERSION, 300, id, true)))).toBe(true);
    expect([...r.subarray(0, 10)]).toEqual(new Array(10).fill(0xee));
  });
});

/** xorshift32, seeded: the property test below is reproducible (MW_FUZZ_SEED). */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
}

/** Same outcome: equal frames, or errors with the same code and message. */
function expectSame(a: Decoded<Frame>, b: Decoded<Frame>, what: string): void {
  if (a.ok || b.ok) expect(a, what).toEqual(b);
  else {
    expect(a.error, what).toBeInstanceOf(ProtocolError);
    expect([a.error.code, a.error.message], what).toEqual([b.error.code, b.error.message]);
  }
}

describe('fast frame decoder (send, ack)', () => {
  const send = (requestId: number, o: { mailbox?: number; payload?: number; cls?: number; token?: number; version?: number } = {}): Uint8Array =>
    encodeFrame({
      version: o.version ?? PROTOCOL_VERSION,
      requestId,
      body: { case: 'send', value: { mailboxId: bytes(o.mailbox ?? 32), payload: bytes(o.payload ?? 1024), class: o.cls ?? EnvelopeClass.DURABLE, deliveryToken: bytes(o.token ?? 32) } },
    });
  const ack = (requestId: number, n: number, idLen = 16): Uint8Array =>
    encodeFrame({ version: PROTOCOL_VERSION, requestId, body: { case: 'ack', value: { ids: Array.from({ length: n }, () => bytes(idLen)) } } });

  it('takes canonical send and ack frames by hand and returns exactly what decodeFrame returns', () => {
    const frames: Uint8Array[] = [];
    for (const requestId of [0, 1, 127, 128, 16_383, 16_384, 2_097_152, 2 ** 28 - 1]) {
      for (const token of [0, 16, 32, 64]) for (const payload of [1, 127, 128, 1024]) frames.push(send(requestId, { token, payload }));
      frames.push(send(requestId, { cls: EnvelopeClass.EPHEMERAL }));
      for (const n of [1, 2, 7, 128, MAX_ACK_IDS]) frames.push(ack(requestId, n));
    }
    for (const payload of [16_383, 16_384, MAX_ENVELOPE_SIZE]) frames.push(send(300, { payload }));
    for (const f of frames) {
      const hot = decodeHotFrame(f, PROTOCOL_VERSION);
      expect(hot, 'the hand-written path takes it').toBeDefined();
      expect({ ok: true, value: hot }).toEqual(decodeFrame(f, { version: PROTOCOL_VERSION }));
      expect(decodeHotFrame(f, undefined)).toEqual(hot); // before a version is agreed: the supported list decides
      expectSame(decodeFrameFast(f, { version: PROTOCOL_VERSION }), decodeFrame(f, { version: PROTOCOL_VERSION }), 'decodeFrameFast');
    }
  });

  it('leaves invalid and unusual frames to decodeFrame: the same typed errors', () => {
    const cases: [Uint8Array, ErrorCode][] = [
      [send(1, { mailbox: 31 }), ErrorCode.BAD_REQUEST],
      [send(1, { payload: 0 }), ErrorCode.BAD_REQUEST],
      [send(1, { token: 8 }), ErrorCode.BAD_REQUEST],
      [send(1, { cls: 0 }), ErrorCode.BAD_REQUEST],
      [send(1, { cls: 3 }), ErrorCode.BAD_REQUEST],
      [send(1, { version: PROTOCOL_VERSION + 1 }), ErrorCode.UNSUPPORTED_VERSION],
      [ack(1, 0), ErrorCode.BAD_REQUEST],
      [ack(1, 1, 15), ErrorCode.BAD_REQUEST],
      [ack(1, MAX_ACK_IDS + 1), ErrorCode.BAD_REQUEST],
      [send(1).subarray(0, 100), ErrorCode.MALFORMED],
      [ack(1, 3).subarray(0, 30), ErrorCode.MALFORMED],
    ];
    for (const [f, code] of cases) {
      expect(decodeHotFrame(f, PROTOCOL_VERSION)).toBeUndefined();
      const d = decodeFrameFast(f, { version: PROTOCOL_VERSION });
      expect(d.ok ? 'ok' : d.error.code).toBe(code);
      expectSame(d, decodeFrame(f, { version: PROTOCOL_VERSION }), code);
    }
    // Oversize: the size limit is checked before anything is parsed.
    const big = send(1, { payload: 64 });
    expect(decodeFrameFast(big, { maxBytes: big.length - 1 })).toMatchObject({ ok: false, error: { code: ErrorCode.TOO_LARGE } });
  });

  // 8,000 cases by default (a few seconds); MW_DEEP=1 runs 40,000.
  const CASES = process.env.MW_DEEP === '1' ? 40_000 : 8_000;
  it(`agrees with decodeFrame on ${CASES} random and mutated send/ack frames (seeded), each with and without a negotiated version`, () => {
    const seed = Number(process.env.MW_FUZZ_SEED ?? Date.now() % 2 ** 31);
    console.log(`decodeFrameFast property test seed: ${seed} (rerun with MW_FUZZ_SEED=${seed})`);
    const rnd = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[rnd() % xs.length]!;
    let hot = 0;
    let total = 0;
    for (let i = 0; i < CASES; i++) {
      const base =
        rnd() % 2 === 0
          ? send(pick([0, 1, 300, 2 ** 28 - 1, 2 ** 28, 0xffffffff]), { mailbox: pick([32, 32, 32, 0, 31]), payload: pick([1, 40, 200]), cls: pick([1, 1, 2, 0, 3]), token: pick([0, 32, 32, 15, 16]) })
          : ack(pick([0, 7, 2 ** 30]), pick([1, 1, 3, 0]), pick([16, 16, 16, 15, 17]));
      const f = new Uint8Array(base);
      let m: Uint8Array = f;
      switch (rnd() % 8) {
        case 0: // untouched
          break;
        case 1: // one byte flipped anywhere (header, tags and lengths included)
          f[rnd() % f.length]! ^= 1 << rnd() % 8;
          break;
        case 2: // truncated
          m = f.subarray(0, rnd() % f.length);
          break;
        case 3: // an unknown or repeated field appended (protobuf merges or skips it)
          m = Buffer.concat([f, Buffer.from([pick([0x08, 0x10, 0x18, 0x0a, 0xca, 0xaa, 0xf8]), 0x01, 0x02, 0x01, 0x01])]);
          break;
        case 4: // one random byte inserted
          {
            const at = rnd() % f.length;
            m = Buffer.concat([f.subarray(0, at), Buffer.from([rnd() & 0xff]), f.subarray(at)]);
          }
          break;
        case 5: // a byte of the first 8 (version, request id, body key and length) set at random
          f[rnd() % Math.min(8, f.length)] = rnd() & 0xff;
          break;
        case 6: // the body's own fields: a byte flipped near the start of the body
          f[Math.min(f.length - 1, 4 + (rnd() % 12))]! ^= 1 << rnd() % 8;
          break;
        default: // random bytes of a plausible length
          m = new Uint8Array(1 + (rnd() % 64)).map(() => rnd() & 0xff);
      }
      for (const version of [PROTOCOL_VERSION, undefined]) {
        total++;
        const h = decodeHotFrame(m, version);
        const lib = decodeFrame(m, version === undefined ? {} : { version });
        if (h !== undefined) {
          hot++;
          expect({ ok: true, value: h }, `seed ${seed} case ${i}`).toEqual(lib);
        }
        expectSame(decodeFrameFast(m, version === undefined ? {} : { version }), lib, `seed ${seed} case ${i}`);
      }
    }
    // The hand-written path must actually have been exercised (valid inputs are a good share of the mix).
    expect(hot).toBeGreaterThan(total / 20);
  }, 180_000);
});

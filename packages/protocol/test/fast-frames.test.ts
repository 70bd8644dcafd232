// The hand-written deliver / send_result encoders must produce exactly encodeFrame's bytes (so a
// peer cannot tell them apart), and decodeFrame must read them back.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EnvelopeClass, MAX_DELIVER_BATCH, PROTOCOL_VERSION, decodeFrame, encodeDeliverFrame, encodeFrame, encodeSendResultFrame } from '../src/index.js';

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

// Fuzzes the frame decoder: ≥ 100k random and mutated inputs, seeded (MW_FUZZ_SEED), seed printed.
// The contract under test: decodeFrame never throws and every rejection is a ProtocolError with a registry code.
import { describe, expect, it } from 'vitest';
import { EnvelopeClass, ErrorCode, MAX_FRAME_BYTES, ProtocolError, decodeFrame, encodeFrame } from '../src/index.js';

/** xorshift128+ — small, seeded, good enough to drive a fuzzer. */
function prng(seed: number): () => number {
  let a = seed >>> 0 || 1;
  let b = (seed * 2654435761) >>> 0 || 2;
  return () => {
    let t = a ^ (a << 11);
    a = b;
    b = (b ^ (b >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    t = b;
    return t >>> 0;
  };
}

const CODES = new Set<string>(Object.values(ErrorCode));

describe('decodeFrame fuzz', () => {
  it('turns ≥ 100k random and mutated inputs into frames or typed errors only', () => {
    const seed = Number(process.env.MW_FUZZ_SEED ?? Date.now() % 2 ** 31);
    console.log(`decodeFrame fuzz seed: ${seed} (rerun with MW_FUZZ_SEED=${seed})`);
    const rnd = prng(seed);
    const byte = () => rnd() & 0xff;
    const id = new Uint8Array(16).fill(3);
    const corpus = [
      encodeFrame({ requestId: 1, body: { case: 'clientHello', value: { versions: [1, 2] } } }),
      encodeFrame({ body: { case: 'deliver', value: { envelopes: [{ id, payload: new Uint8Array(300).fill(9), class: EnvelopeClass.DURABLE, receivedAt: 123n }] } } }),
      encodeFrame({ requestId: 7, body: { case: 'ack', value: { ids: [id, id, id] } } }),
      encodeFrame({ body: { case: 'send', value: { mailboxId: new Uint8Array(32), payload: Uint8Array.of(1, 2, 3), class: EnvelopeClass.EPHEMERAL } } }),
      encodeFrame({ body: { case: 'authenticate', value: { challenge: new Uint8Array(72), certificate: new Uint8Array(172), signature: new Uint8Array(64) } } }),
      encodeFrame({ body: { case: 'error', value: { code: 'MW_X', message: 'm' } } }),
    ];
    const runs = Number(process.env.MW_DEEP ? 1_000_000 : 120_000);
    let accepted = 0;
    const seen = new Map<string, number>();
    for (let i = 0; i < runs; i++) {
      let input: Uint8Array;
      const mode = rnd() % 4;
      if (mode === 0) {
        input = Uint8Array.from({ length: rnd() % 96 }, byte);
      } else {
        const base = corpus[rnd() % corpus.length]!;
        input = Uint8Array.from(base);
        const flips = 1 + (rnd() % 4);
        for (let f = 0; f < flips; f++) {
          const op = rnd() % 4;
          const at = input.length ? rnd() % input.length : 0;
          if (op === 0 && input.length) input[at] = byte();
          else if (op === 1) input = input.subarray(0, at);
          else if (op === 2) input = Uint8Array.from([...input.subarray(0, at), byte(), byte(), ...input.subarray(at)]);
          else input = Uint8Array.from([...input, ...Uint8Array.from({ length: rnd() % 8 }, byte)]);
        }
      }
      let r: ReturnType<typeof decodeFrame>;
      try {
        r = decodeFrame(input);
      } catch (e) {
        throw new Error(`seed ${seed}, iteration ${i}: decodeFrame threw ${String(e)} on ${Buffer.from(input).toString("hex")}`, { cause: e });
      }
      if (r.ok) accepted++;
      else {
        expect(r.error).toBeInstanceOf(ProtocolError);
        expect(CODES.has(r.error.code)).toBe(true);
        seen.set(r.error.code, (seen.get(r.error.code) ?? 0) + 1);
      }
    }
    // Oversize input is rejected up front.
    const huge = decodeFrame(new Uint8Array(MAX_FRAME_BYTES + 1));
    expect(!huge.ok && huge.error.code).toBe(ErrorCode.TOO_LARGE);
    console.log(`accepted ${accepted}/${runs}; rejections by code: ${JSON.stringify(Object.fromEntries(seen))}`);
    expect(accepted).toBeGreaterThan(0);
    expect(seen.size).toBeGreaterThan(2);
  });
});

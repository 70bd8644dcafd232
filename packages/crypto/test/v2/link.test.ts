/**
 * Device linking (docs/spec/linking.md): the offer codec, the hybrid key agreement, the framed
 * channel, the request proof, the attacks a relaying node can try, and the published vectors
 * test-vectors/link.json (regenerate with MW_WRITE_VECTORS=1): the generator must reproduce the
 * committed file byte for byte, and the new-device side must open every frame from the JSON alone.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex, utf8 } from '../../src/bytes.js';
import type { CryptoContext } from '../../src/context.js';
import { createContext } from '../../src/context.js';
import { CryptoError } from '../../src/errors.js';
import { DeviceKeyPair } from '../../src/keys.js';
import {
  LINK_HELLO_LENGTH,
  LinkOfferSecret,
  MAX_LINK_FRAME_PAYLOAD,
  acceptLinkHello,
  answerLinkOffer,
  createLinkOffer,
  decodeLinkOffer,
  encodeLinkOffer,
  signLinkRequest,
  verifyLinkRequest,
} from '../../src/link.js';
import { nobleBackend } from '../../src/primitives/noble.js';
import { deterministicRng } from '../../src/testing.js';

const WRITE = process.env['MW_WRITE_VECTORS'] === '1';
const VECTORS = fileURLToPath(new URL('../../../../test-vectors/link.json', import.meta.url));
const T0 = 1_750_000_000_000;
const NEW_SEED = '11c0000000000000000000000000000000000000000000000000000000000001';
const SCANNER_SEED = '11c0000000000000000000000000000000000000000000000000000000000002';
const CHANNEL = '00112233445566778899aabbccddeeff';
const NODE_URL = 'https://node.example.org';

const ctxOf = (seed: string): CryptoContext => createContext({ backend: nobleBackend, random: deterministicRng(seed), now: () => T0 });
const live = (): CryptoContext => createContext();

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return e instanceof CryptoError ? e.code : `not a CryptoError: ${String(e)}`;
  }
  return 'ok';
}

function pair(ctx = live()): { secret: LinkOfferSecret; offerBytes: Uint8Array; hello: Uint8Array; scanner: ReturnType<typeof answerLinkOffer>['channel']; newDevice: ReturnType<typeof acceptLinkHello> } {
  const secret = createLinkOffer(ctx, { channelId: ctx.random(16), nodeUrl: NODE_URL });
  const offerBytes = encodeLinkOffer(secret.offer);
  const { hello, channel: scanner } = answerLinkOffer(ctx, decodeLinkOffer(offerBytes));
  const newDevice = acceptLinkHello(ctx, secret, hello);
  return { secret, offerBytes, hello, scanner, newDevice };
}

describe('link channel', () => {
  it('both sides derive one transcript and exchange frames both ways', () => {
    const ctx = live();
    const { scanner, newDevice, hello } = pair(ctx);
    expect(hello.length).toBe(LINK_HELLO_LENGTH);
    expect(toHex(scanner.transcriptHash)).toBe(toHex(newDevice.transcriptHash));
    expect(new TextDecoder().decode(newDevice.open(ctx, scanner.seal(ctx, utf8('introduction'))))).toBe('introduction');
    expect(new TextDecoder().decode(scanner.open(ctx, newDevice.seal(ctx, utf8('request'))))).toBe('request');
    for (let i = 0; i < 3; i++) expect(newDevice.open(ctx, scanner.seal(ctx, Uint8Array.of(i)))).toEqual(Uint8Array.of(i));
  });

  it('a frame cannot be replayed, dropped, reordered or reflected', () => {
    const ctx = live();
    const { scanner, newDevice } = pair(ctx);
    const f0 = scanner.seal(ctx, utf8('a'));
    const f1 = scanner.seal(ctx, utf8('b'));
    expect(codeOf(() => newDevice.open(ctx, f1))).toBe('MW_CRYPTO_BAD_MAC'); // f0 dropped
    newDevice.open(ctx, f0);
    expect(codeOf(() => newDevice.open(ctx, f0))).toBe('MW_CRYPTO_BAD_MAC'); // replay
    newDevice.open(ctx, f1);
    // Reflection: the scanner's own frame sent back to it fails (direction is in the AAD and key).
    const back = scanner.seal(ctx, utf8('c'));
    expect(codeOf(() => scanner.open(ctx, back))).toBe('MW_CRYPTO_BAD_MAC');
    // A failed open does not advance: the right frame still opens afterwards.
    const tampered = scanner.seal(ctx, utf8('d'));
    tampered[tampered.length - 1]! ^= 1;
    expect(codeOf(() => newDevice.open(ctx, tampered))).toBe('MW_CRYPTO_BAD_MAC');
  });

  it('size limits are enforced before any decryption', () => {
    const ctx = live();
    const { scanner, newDevice } = pair(ctx);
    expect(codeOf(() => scanner.seal(ctx, new Uint8Array(MAX_LINK_FRAME_PAYLOAD + 1)))).toBe('MW_CRYPTO_LIMIT_EXCEEDED');
    expect(codeOf(() => newDevice.open(ctx, new Uint8Array(MAX_LINK_FRAME_PAYLOAD + 21)))).toBe('MW_CRYPTO_LIMIT_EXCEEDED');
    expect(codeOf(() => newDevice.open(ctx, new Uint8Array(19)))).toBe('MW_CRYPTO_MALFORMED');
    expect(newDevice.open(ctx, scanner.seal(ctx, new Uint8Array(MAX_LINK_FRAME_PAYLOAD))).length).toBe(MAX_LINK_FRAME_PAYLOAD);
  });

  it('the request proof binds the new device key to this transcript', () => {
    const ctx = live();
    const a = pair(ctx);
    const b = pair(ctx);
    const device = DeviceKeyPair.generate(ctx);
    const proof = signLinkRequest(ctx, device, a.newDevice.transcriptHash);
    expect(verifyLinkRequest(ctx, device.signingPublicKey, a.scanner.transcriptHash, proof)).toBe(true);
    expect(verifyLinkRequest(ctx, device.signingPublicKey, b.scanner.transcriptHash, proof)).toBe(false);
    expect(verifyLinkRequest(ctx, DeviceKeyPair.generate(ctx).signingPublicKey, a.scanner.transcriptHash, proof)).toBe(false);
  });

  it('offer codec: round trip; wrong magic, version, key tags, truncation and trailing bytes are refused', () => {
    const ctx = live();
    const { offerBytes, secret } = pair(ctx);
    const o = decodeLinkOffer(offerBytes);
    expect(toHex(o.kemKey)).toBe(toHex(secret.offer.kemKey));
    expect(o.nodeUrl).toBe(NODE_URL);
    const bad = (i: number, v: number): Uint8Array => {
      const b = offerBytes.slice();
      b[i] = v;
      return b;
    };
    expect(codeOf(() => decodeLinkOffer(bad(0, 0x4e)))).toBe('MW_CRYPTO_MALFORMED');
    expect(codeOf(() => decodeLinkOffer(bad(3, 2)))).toBe('MW_CRYPTO_UNSUPPORTED_VERSION');
    expect(codeOf(() => decodeLinkOffer(bad(20, 0x01)))).toBe('MW_CRYPTO_INVALID_KEY'); // X25519 tag → Ed25519
    expect(codeOf(() => decodeLinkOffer(offerBytes.subarray(0, offerBytes.length - 1)))).toBe('MW_CRYPTO_MALFORMED');
    expect(codeOf(() => decodeLinkOffer(Uint8Array.from([...offerBytes, 0])))).toBe('MW_CRYPTO_MALFORMED');
    expect(codeOf(() => createLinkOffer(ctx, { channelId: new Uint8Array(16).fill(1), nodeUrl: 'x'.repeat(256) }))).toBe('MW_CRYPTO_LIMIT_EXCEEDED');
    // The offer secret never shows its keys.
    expect(String(secret)).not.toContain(toHex(secret._secrets().x25519));
    expect(JSON.stringify(secret)).toContain('[redacted]');
  });
});

describe('a relaying node that swaps keys', () => {
  it('replacing the hello with its own (a KEM key of its own, its X25519): the new device opens nothing', () => {
    const ctx = live();
    const { secret, scanner } = pair(ctx);
    // The node cannot encapsulate to the QR's KEM key without it... but even if it saw the offer
    // keys' encodings it lacks the secrets: it answers the offer itself, as if it were the scanner,
    // with keys it chose — here with an offer whose keys it substituted (it never saw the real QR).
    const forged = createLinkOffer(ctx, { channelId: secret.offer.channelId, nodeUrl: NODE_URL });
    const attacker = answerLinkOffer(ctx, forged.offer);
    const victim = acceptLinkHello(ctx, secret, attacker.hello); // decapsulation "succeeds" (implicit rejection)
    expect(codeOf(() => victim.open(ctx, attacker.channel.seal(ctx, utf8('your certificate'))))).toBe('MW_CRYPTO_BAD_MAC');
    // And the genuine scanner's frames do not open under the keys from the forged hello either.
    expect(codeOf(() => victim.open(ctx, scanner.seal(ctx, utf8('x'))))).toBe('MW_CRYPTO_BAD_MAC');
  });

  it('swapping the X25519 half or the KEM ciphertext of the real hello: both halves count', () => {
    const ctx = live();
    const { secret, hello, scanner } = pair(ctx);
    const frame = scanner.seal(ctx, utf8('introduction'));
    const other = createLinkOffer(ctx, { channelId: secret.offer.channelId, nodeUrl: NODE_URL });
    const x = hello.slice();
    x.set(other.offer.offerKey, 2); // its own X25519 key in the hello
    expect(codeOf(() => acceptLinkHello(ctx, secret, x).open(ctx, frame))).toBe('MW_CRYPTO_BAD_MAC');
    const k = hello.slice();
    k[40]! ^= 0x80; // a different KEM ciphertext
    expect(codeOf(() => acceptLinkHello(ctx, secret, k).open(ctx, frame))).toBe('MW_CRYPTO_BAD_MAC');
  });

  it('impersonating the new device to the scanner (answering with its own keys): the scanner opens nothing', () => {
    const ctx = live();
    const { scanner, secret } = pair(ctx);
    // The node forges "new device" frames under a channel it derived from an offer of its own.
    const fake = createLinkOffer(ctx, { channelId: secret.offer.channelId, nodeUrl: NODE_URL });
    const nodeScannerSide = answerLinkOffer(ctx, fake.offer);
    const nodeNewSide = acceptLinkHello(ctx, fake, nodeScannerSide.hello);
    const device = DeviceKeyPair.generate(ctx);
    expect(codeOf(() => scanner.open(ctx, nodeNewSide.seal(ctx, signLinkRequest(ctx, device, nodeNewSide.transcriptHash))))).toBe('MW_CRYPTO_BAD_MAC');
  });
});

// ── Published vectors ──────────────────────────────────────────────────────────────────────

interface Vectors {
  description: string;
  newDeviceSeed: string;
  scannerSeed: string;
  offer: { channelId: string; nodeUrl: string; x25519Secret: string; kemSeed: string; encoded: string };
  hello: { encoded: string; transcriptHash: string };
  frames: { direction: 'toNewDevice' | 'toScanner'; seq: number; payload: string; frame: string }[];
  requestProof: { deviceSigningSeed: string; deviceDhSecret: string; signingPublicKey: string; proof: string };
}

function generate(): Vectors {
  const n = ctxOf(NEW_SEED);
  const s = ctxOf(SCANNER_SEED);
  // Record the draws as the spec orders them (X25519 secret, then the 64-byte KEM seed).
  const draws = ctxOf(NEW_SEED);
  const x25519Secret = draws.random(32);
  const kemSeed = draws.random(64);
  const secret = createLinkOffer(n, { channelId: fromHex(CHANNEL), nodeUrl: NODE_URL });
  const encoded = encodeLinkOffer(secret.offer);
  const { hello, channel: scanner } = answerLinkOffer(s, decodeLinkOffer(encoded));
  const newDevice = acceptLinkHello(n, secret, hello);
  const frames: Vectors['frames'] = [];
  const push = (direction: 'toNewDevice' | 'toScanner', payload: string): void => {
    const side = direction === 'toNewDevice' ? scanner : newDevice;
    const seq = frames.filter((f) => f.direction === direction).length;
    frames.push({ direction, seq, payload: toHex(utf8(payload)), frame: toHex(side.seal(direction === 'toNewDevice' ? s : n, utf8(payload))) });
  };
  push('toNewDevice', 'introduction');
  push('toScanner', 'request');
  push('toNewDevice', 'grant');
  push('toNewDevice', 'complete');
  push('toScanner', 'installed');
  const deviceDraws = ctxOf(NEW_SEED + '00');
  const signingSeed = deviceDraws.random(32);
  const dhSecret = deviceDraws.random(32);
  const device = DeviceKeyPair.fromSecrets(n, signingSeed, dhSecret);
  return {
    description:
      'MeshWhisper device linking v1 (docs/spec/linking.md): the QR offer, the scanner hello, the transcript hash, channel frames in both directions and the new device request proof. Hex. Randomness: deterministicRng(seed); the new device draws its X25519 secret (32) then the ML-KEM-768 seed (64); the scanner draws its X25519 secret (32) then the KEM encapsulation randomness (32).',
    newDeviceSeed: NEW_SEED,
    scannerSeed: SCANNER_SEED,
    offer: { channelId: CHANNEL, nodeUrl: NODE_URL, x25519Secret: toHex(x25519Secret), kemSeed: toHex(kemSeed), encoded: toHex(encoded) },
    hello: { encoded: toHex(hello), transcriptHash: toHex(scanner.transcriptHash) },
    frames,
    requestProof: { deviceSigningSeed: toHex(signingSeed), deviceDhSecret: toHex(dhSecret), signingPublicKey: toHex(device.signingPublicKey), proof: toHex(signLinkRequest(n, device, newDevice.transcriptHash)) },
  };
}

describe('test-vectors/link.json', () => {
  const generated = generate();
  if (WRITE) writeFileSync(VECTORS, `${JSON.stringify(generated, null, 2)}\n`);
  if (!existsSync(VECTORS)) throw new Error('link.json missing: run with MW_WRITE_VECTORS=1');
  const v = JSON.parse(readFileSync(VECTORS, 'utf8')) as Vectors;

  it('the committed file is exactly what the generator produces', () => {
    expect(v).toEqual(JSON.parse(JSON.stringify(generated)));
  });

  it('from the JSON alone: the new device rebuilds its offer, accepts the hello and opens and seals every frame', () => {
    const ctx = createContext({ backend: nobleBackend, now: () => T0 });
    const kem = nobleBackend.mlKem768KeyGen(fromHex(v.offer.kemSeed));
    const offer = decodeLinkOffer(fromHex(v.offer.encoded));
    expect(toHex(offer.offerKey)).toBe(toHex(nobleBackend.x25519PublicKey(fromHex(v.offer.x25519Secret))));
    expect(toHex(offer.kemKey)).toBe(toHex(kem.publicKey));
    const secret = new LinkOfferSecret(offer, fromHex(v.offer.x25519Secret), kem.secretKey);
    const channel = acceptLinkHello(ctx, secret, fromHex(v.hello.encoded));
    expect(toHex(channel.transcriptHash)).toBe(v.hello.transcriptHash);
    for (const f of v.frames) {
      if (f.direction === 'toNewDevice') expect(toHex(channel.open(ctx, fromHex(f.frame)))).toBe(f.payload);
      else expect(toHex(channel.seal(ctx, fromHex(f.payload)))).toBe(f.frame);
    }
    const p = v.requestProof;
    expect(verifyLinkRequest(ctx, fromHex(p.signingPublicKey), fromHex(v.hello.transcriptHash), fromHex(p.proof))).toBe(true);
  });
});

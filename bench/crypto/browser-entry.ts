/**
 * Runs inside headless Chromium (bundled by ./browser.ts): the primitives MeshWhisper's noble
 * backend uses, the same operations through Web Crypto (native in Chromium: X25519, Ed25519,
 * AES-256-GCM; async), and the session benchmark with the noble backend (what browsers run today).
 */
import { freshBundle as makeFreshBundle, mkDevice as mkBenchDevice } from './devices.js';
import type { BenchDevice } from './devices.js';
import {
  createContext,
  decryptMessage,
  deviceAddress,
  encryptMessage,
  initiateSession,
  nobleBackend,
} from '../../packages/crypto/src/index.js';
import type { PreKeyBundle } from '../../packages/crypto/src/index.js';

type Row = { op: string; noble_us: number; webcrypto_us: number | null; note?: string };

async function per(n: number, f: () => unknown | Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(20, n); i++) await f();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await f();
  return ((performance.now() - t0) / n) * 1000;
}

const b = nobleBackend;
const subtle = crypto.subtle;
const rnd = (n: number): Uint8Array => crypto.getRandomValues(new Uint8Array(n));
const PKCS8_X25519 = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);
const PKCS8_ED25519 = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);
const pkcs8 = (prefix: Uint8Array, raw: Uint8Array): Uint8Array => {
  const out = new Uint8Array(48);
  out.set(prefix);
  out.set(raw, 16);
  return out;
};

async function primitives(N: number): Promise<Row[]> {
  const rows: Row[] = [];
  const sk = rnd(32);
  const peerSk = rnd(32);
  const peer = b.x25519PublicKey(peerSk);
  // X25519: a DH from raw bytes (what the backend interface gets) — import both keys each time.
  const wcDh = async (): Promise<Uint8Array> => {
    const priv = await subtle.importKey('pkcs8', pkcs8(PKCS8_X25519, sk), { name: 'X25519' }, false, ['deriveBits']);
    const pub = await subtle.importKey('raw', peer, { name: 'X25519' }, false, []);
    return new Uint8Array(await subtle.deriveBits({ name: 'X25519', public: pub }, priv, 256));
  };
  const same = (await wcDh()).join() === b.x25519(sk, peer).join();
  rows.push({ op: 'X25519 DH (raw keys in, 32 bytes out)', noble_us: await per(N, () => b.x25519(sk, peer)), webcrypto_us: await per(N, wcDh), note: same ? 'same output' : 'OUTPUT DIFFERS' });
  // X25519 key pair from 32 random bytes (public key derivation).
  const wcPub = async (): Promise<Uint8Array> => {
    const priv = await subtle.importKey('pkcs8', pkcs8(PKCS8_X25519, sk), { name: 'X25519' }, true, ['deriveBits']);
    const jwk = await subtle.exportKey('jwk', priv);
    return Uint8Array.from(atob((jwk.x ?? '').replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
  };
  rows.push({ op: 'X25519 public key of a secret', noble_us: await per(N, () => b.x25519PublicKey(sk)), webcrypto_us: await per(N, wcPub) });
  // Ed25519 sign / verify from raw bytes.
  const seed = rnd(32);
  const msg = rnd(200);
  const pk = b.ed25519PublicKey(seed);
  const sig = b.ed25519Sign(seed, msg);
  const wcSign = async (): Promise<Uint8Array> => {
    const key = await subtle.importKey('pkcs8', pkcs8(PKCS8_ED25519, seed), { name: 'Ed25519' }, false, ['sign']);
    return new Uint8Array(await subtle.sign({ name: 'Ed25519' }, key, msg));
  };
  const wcVerify = async (): Promise<boolean> => {
    const key = await subtle.importKey('raw', pk, { name: 'Ed25519' }, false, ['verify']);
    return subtle.verify({ name: 'Ed25519' }, key, sig, msg);
  };
  rows.push({ op: 'Ed25519 sign, 200-byte message', noble_us: await per(N, () => b.ed25519Sign(seed, msg)), webcrypto_us: await per(N, wcSign), note: (await wcSign()).join() === sig.join() ? 'same signature' : 'SIGNATURE DIFFERS' });
  rows.push({ op: 'Ed25519 verify (MeshWhisper strict rules) vs Web Crypto verify', noble_us: await per(N, () => b.ed25519Verify(pk, msg, sig)), webcrypto_us: await per(N, wcVerify), note: 'Web Crypto alone does not apply our strict rules (docs/protocol.md §11.4); the byte pre-check would stay in JS' });
  // AES-256-GCM, 1 KiB.
  const key = rnd(32);
  const nonce = rnd(12);
  const pt = rnd(1024);
  const aad = rnd(64);
  const wcEnc = async (): Promise<Uint8Array> => {
    const k = await subtle.importKey('raw', key, { name: 'AES-GCM' }, false, ['encrypt']);
    return new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad, tagLength: 128 }, k, pt));
  };
  rows.push({ op: 'AES-256-GCM encrypt 1 KiB (fresh key each time)', noble_us: await per(N, () => b.aes256GcmEncrypt(key, nonce, pt, aad)), webcrypto_us: await per(N, wcEnc), note: (await wcEnc()).join() === b.aes256GcmEncrypt(key, nonce, pt, aad).join() ? 'same output' : 'OUTPUT DIFFERS' });
  rows.push({ op: 'AES-256-GCM encrypt 64 bytes (a ratchet header)', noble_us: await per(N, () => b.aes256GcmEncrypt(key, nonce, pt.subarray(0, 40), aad)), webcrypto_us: await per(N, async () => {
    const k = await subtle.importKey('raw', key, { name: 'AES-GCM' }, false, ['encrypt']);
    return subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad }, k, pt.subarray(0, 40));
  }) });
  rows.push({ op: 'HMAC-SHA-256, 32-byte key and message', noble_us: await per(N, () => b.hmacSha256(key, key)), webcrypto_us: await per(N, async () => {
    const k = await subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    return subtle.sign('HMAC', k, key);
  }) });
  const kp = b.mlKem768KeyGen(rnd(64));
  const enc = b.mlKem768Encapsulate(kp.publicKey, rnd(32));
  rows.push({ op: 'ML-KEM-768 encapsulate (no Web Crypto equivalent)', noble_us: await per(Math.ceil(N / 5), () => b.mlKem768Encapsulate(kp.publicKey, rnd(32))), webcrypto_us: null });
  rows.push({ op: 'ML-KEM-768 decapsulate (no Web Crypto equivalent)', noble_us: await per(Math.ceil(N / 5), () => b.mlKem768Decapsulate(enc.ciphertext, kp.secretKey)), webcrypto_us: null });
  return rows;
}

async function sessions(SETUPS: number, MESSAGES: number, PINGPONG: number) {
  const ctx = createContext({ backend: nobleBackend });
  const payload = new Uint8Array(1024).fill(0x61);
  const mkDevice = () => mkBenchDevice(ctx);
  const freshBundle = (d: BenchDevice, id: number): Promise<PreKeyBundle> => makeFreshBundle(ctx, d, id);
  const pairs = [];
  for (let i = 0; i < SETUPS; i++) {
    const a = await mkDevice();
    const bb = await mkDevice();
    pairs.push({ a, b: bb, bundle: await freshBundle(bb, 10) });
  }
  let t0 = performance.now();
  for (const { a, b: bb, bundle } of pairs) {
    await initiateSession(ctx, a.store, bundle);
    await decryptMessage(ctx, bb.store, a.certificate, await encryptMessage(ctx, a.store, deviceAddress(bb.certificate), payload));
  }
  const setupMs = (performance.now() - t0) / SETUPS;
  const a = await mkDevice();
  const bb = await mkDevice();
  await initiateSession(ctx, a.store, await freshBundle(bb, 10));
  const toB = deviceAddress(bb.certificate);
  const toA = deviceAddress(a.certificate);
  await decryptMessage(ctx, bb.store, a.certificate, await encryptMessage(ctx, a.store, toB, payload));
  await decryptMessage(ctx, a.store, bb.certificate, await encryptMessage(ctx, bb.store, toA, payload));
  t0 = performance.now();
  for (let i = 0; i < MESSAGES; i++) await decryptMessage(ctx, bb.store, a.certificate, await encryptMessage(ctx, a.store, toB, payload));
  const oneWay = MESSAGES / ((performance.now() - t0) / 1000);
  t0 = performance.now();
  for (let i = 0; i < PINGPONG; i++) {
    const [from, to, addr] = i % 2 === 0 ? [a, bb, toB] : [bb, a, toA];
    await decryptMessage(ctx, to.store, from.certificate, await encryptMessage(ctx, from.store, addr, payload));
  }
  const pingPong = PINGPONG / ((performance.now() - t0) / 1000);
  return { setupMs, oneWay, pingPong };
}

(globalThis as { runBench?: (q: boolean) => Promise<unknown> }).runBench = async (quick: boolean) => ({
  userAgent: navigator.userAgent,
  primitives: await primitives(quick ? 200 : 1000),
  sessions: await sessions(quick ? 10 : 50, quick ? 300 : 2000, quick ? 100 : 600),
});

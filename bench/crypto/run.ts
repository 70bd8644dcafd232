/**
 * Crypto benchmark: MeshWhisper vs @signalapp/libsignal-client, side by side in one run.
 *   cd bench/crypto && npm install && npm run bench           (QUICK=1 for a short run)
 *
 * Same work on both sides, each through its library's session API and in-memory stores:
 *  - setup: initiator processes a fresh prekey bundle (with one-time EC and KEM prekeys), encrypts a
 *    1 KiB message, responder decrypts it (PQXDH + first ratchet step). Bundle generation excluded.
 *  - one-way: N × (encrypt 1 KiB, decrypt) in one direction (symmetric-key ratchet steps only).
 *  - ping-pong: alternate directions every message, so every message carries a DH ratchet step.
 * libsignal uses ML-KEM-1024 (Kyber1024 prekeys); MeshWhisper uses ML-KEM-768.
 * SKIP_NOBLE=1 leaves out the (slow) noble row. CPU profiles of one phase: see ./profile.ts.
 */
import { freshBundle as makeFreshBundle, mkDevice as mkBenchDevice } from './devices.js';
import type { BenchDevice } from './devices.js';
import * as SignalClient from '@signalapp/libsignal-client';
import { _nodeBackendWithOqs, createContext, createNodeBackend, nobleBackend } from '../../packages/crypto/src/index.js';
import type { CryptoBackend, PreKeyBundle } from '../../packages/crypto/src/index.js';
import {
  decryptMessage,
  deviceAddress,
  encryptMessage,
  initiateSession,
} from '../../packages/crypto/src/index.js';
import * as nodeCrypto from 'node:crypto';

const QUICK = process.env['QUICK'] === '1';
const SETUPS = QUICK ? 30 : 200;
const MESSAGES = QUICK ? 2000 : 20000;
const PINGPONG = QUICK ? 1000 : 6000;
const payload = new Uint8Array(1024).fill(0x61);

/** CPU milliseconds (user + system, all threads of this process) of every time() call, by call order. */
const cpuMs: number[] = [];
function time(fn: () => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  return fn().then(() => {
    const c = process.cpuUsage(c0);
    cpuMs.push((c.user + c.system) / 1000);
    return Number(process.hrtime.bigint() - t0) / 1e6;
  });
}

// ── MeshWhisper ─────────────────────────────────────────────────────────────────────────────
async function meshwhisper(backend: CryptoBackend) {
  const ctx = createContext({ backend });
  const mkDevice = () => mkBenchDevice(ctx);
  const freshBundle = (d: BenchDevice, id: number): Promise<PreKeyBundle> => makeFreshBundle(ctx, d, id);

  // setup
  const pairs = [];
  for (let i = 0; i < SETUPS; i++) {
    const a = await mkDevice();
    const b = await mkDevice();
    pairs.push({ a, b, bundle: await freshBundle(b, 10) });
  }
  const setupMs = await time(async () => {
    for (const { a, b, bundle } of pairs) {
      await initiateSession(ctx, a.store, bundle);
      const m = await encryptMessage(ctx, a.store, deviceAddress(b.certificate), payload);
      await decryptMessage(ctx, b.store, a.certificate, m);
    }
  });

  const a = await mkDevice();
  const b = await mkDevice();
  await initiateSession(ctx, a.store, await freshBundle(b, 10));
  const toB = deviceAddress(b.certificate);
  const toA = deviceAddress(a.certificate);
  await decryptMessage(ctx, b.store, a.certificate, await encryptMessage(ctx, a.store, toB, payload));
  await decryptMessage(ctx, a.store, b.certificate, await encryptMessage(ctx, b.store, toA, payload));

  const oneWayMs = await time(async () => {
    for (let i = 0; i < MESSAGES; i++) {
      const m = await encryptMessage(ctx, a.store, toB, payload);
      await decryptMessage(ctx, b.store, a.certificate, m);
    }
  });
  const pingPongMs = await time(async () => {
    for (let i = 0; i < PINGPONG; i++) {
      const [from, to, addr] = i % 2 === 0 ? [a, b, toB] : [b, a, toA];
      const m = await encryptMessage(ctx, from.store, addr, payload);
      await decryptMessage(ctx, to.store, from.certificate, m);
    }
  });
  const [cSetup, cOne, cPing] = cpuMs.slice(-3) as [number, number, number];
  return { setupMs: setupMs / SETUPS, oneWay: MESSAGES / (oneWayMs / 1000), pingPong: PINGPONG / (pingPongMs / 1000), cpu: { setupMs: cSetup / SETUPS, oneWay: MESSAGES / (cOne / 1000), pingPong: PINGPONG / (cPing / 1000) } };
}

// ── libsignal ───────────────────────────────────────────────────────────────────────────────
class Stores {
  sessions = new Map<string, SignalClient.SessionRecord>();
  identities = new Map<string, SignalClient.PublicKey>();
  preKeys = new Map<number, SignalClient.PreKeyRecord>();
  signed = new Map<number, SignalClient.SignedPreKeyRecord>();
  kyber = new Map<number, SignalClient.KyberPreKeyRecord>();
  constructor(readonly identity: SignalClient.IdentityKeyPair, readonly regId: number) {}
  // Store objects are built once per party (as an app would), not per call.
  private cache = new Map<string, unknown>();
  private once<T>(k: string, make: () => T): T {
    if (!this.cache.has(k)) this.cache.set(k, make());
    return this.cache.get(k) as T;
  }
  session(): SignalClient.SessionStore {
    return this.once('session', () => this.makeSession());
  }
  identityStore(): SignalClient.IdentityKeyStore {
    return this.once('identity', () => this.makeIdentity());
  }
  preKeyStore(): SignalClient.PreKeyStore {
    return this.once('pre', () => this.makePre());
  }
  signedStore(): SignalClient.SignedPreKeyStore {
    return this.once('signed', () => this.makeSigned());
  }
  kyberStore(): SignalClient.KyberPreKeyStore {
    return this.once('kyber', () => this.makeKyber());
  }
  private makeSession(): SignalClient.SessionStore {
    const s = this.sessions;
    return new (class extends SignalClient.SessionStore {
      async saveSession(n: SignalClient.ProtocolAddress, r: SignalClient.SessionRecord) { s.set(n.toString(), r); }
      async getSession(n: SignalClient.ProtocolAddress) { return s.get(n.toString()) ?? null; }
      async getExistingSessions(ns: SignalClient.ProtocolAddress[]) { return ns.map((n) => s.get(n.toString())!); }
    })();
  }
  private makeIdentity(): SignalClient.IdentityKeyStore {
    const { identity, regId, identities } = this;
    return new (class extends SignalClient.IdentityKeyStore {
      async getIdentityKey() { return identity.privateKey; }
      async getLocalRegistrationId() { return regId; }
      async saveIdentity(n: SignalClient.ProtocolAddress, k: SignalClient.PublicKey) { identities.set(n.toString(), k); return SignalClient.IdentityChange.NewOrUnchanged; }
      async isTrustedIdentity() { return true; }
      async getIdentity(n: SignalClient.ProtocolAddress) { return identities.get(n.toString()) ?? null; }
    })();
  }
  private makePre(): SignalClient.PreKeyStore {
    const m = this.preKeys;
    return new (class extends SignalClient.PreKeyStore {
      async savePreKey(id: number, r: SignalClient.PreKeyRecord) { m.set(id, r); }
      async getPreKey(id: number) { return m.get(id)!; }
      async removePreKey(id: number) { m.delete(id); }
    })();
  }
  private makeSigned(): SignalClient.SignedPreKeyStore {
    const m = this.signed;
    return new (class extends SignalClient.SignedPreKeyStore {
      async saveSignedPreKey(id: number, r: SignalClient.SignedPreKeyRecord) { m.set(id, r); }
      async getSignedPreKey(id: number) { return m.get(id)!; }
    })();
  }
  private makeKyber(): SignalClient.KyberPreKeyStore {
    const m = this.kyber;
    return new (class extends SignalClient.KyberPreKeyStore {
      async saveKyberPreKey(id: number, r: SignalClient.KyberPreKeyRecord) { m.set(id, r); }
      async getKyberPreKey(id: number) { return m.get(id)!; }
      async markKyberPreKeyUsed(id: number) { m.delete(id); }
    })();
  }
}

async function libsignal() {
  let nextName = 0;
  const mk = () => {
    const identity = SignalClient.IdentityKeyPair.generate();
    const st = new Stores(identity, 1 + (nextName % 16000));
    const address = SignalClient.ProtocolAddress.new(`user-${nextName++}`, 1);
    return { st, address, identity };
  };
  const freshBundle = (d: ReturnType<typeof mk>) => {
    const pre = SignalClient.PrivateKey.generate();
    const spk = SignalClient.PrivateKey.generate();
    const spkSig = d.identity.privateKey.sign(spk.getPublicKey().serialize());
    const kyber = SignalClient.KEMKeyPair.generate();
    const kyberSig = d.identity.privateKey.sign(kyber.getPublicKey().serialize());
    d.st.preKeys.set(10, SignalClient.PreKeyRecord.new(10, pre.getPublicKey(), pre));
    d.st.signed.set(1, SignalClient.SignedPreKeyRecord.new(1, Date.now(), spk.getPublicKey(), spk, spkSig));
    d.st.kyber.set(10, SignalClient.KyberPreKeyRecord.new(10, Date.now(), kyber, kyberSig));
    return SignalClient.PreKeyBundle.new(d.st.regId, 1, 10, pre.getPublicKey(), 1, spk.getPublicKey(), spkSig, d.identity.publicKey, 10, kyber.getPublicKey(), kyberSig);
  };
  const send = (from: ReturnType<typeof mk>, to: ReturnType<typeof mk>) =>
    SignalClient.signalEncrypt(payload, to.address, from.address, from.st.session(), from.st.identityStore());
  const receive = async (to: ReturnType<typeof mk>, from: ReturnType<typeof mk>, c: SignalClient.CiphertextMessage) => {
    if (c.type() === SignalClient.CiphertextMessageType.PreKey) {
      await SignalClient.signalDecryptPreKey(SignalClient.PreKeySignalMessage.deserialize(c.serialize()), from.address, to.address, to.st.session(), to.st.identityStore(), to.st.preKeyStore(), to.st.signedStore(), to.st.kyberStore());
    } else {
      await SignalClient.signalDecrypt(SignalClient.SignalMessage.deserialize(c.serialize()), from.address, to.address, to.st.session(), to.st.identityStore());
    }
  };

  const pairs = [];
  for (let i = 0; i < SETUPS; i++) {
    const a = mk();
    const b = mk();
    pairs.push({ a, b, bundle: freshBundle(b) });
  }
  const setupMs = await time(async () => {
    for (const { a, b, bundle } of pairs) {
      await SignalClient.processPreKeyBundle(bundle, b.address, a.address, a.st.session(), a.st.identityStore());
      await receive(b, a, await send(a, b));
    }
  });
  const a = mk();
  const b = mk();
  await SignalClient.processPreKeyBundle(freshBundle(b), b.address, a.address, a.st.session(), a.st.identityStore());
  await receive(b, a, await send(a, b));
  await receive(a, b, await send(b, a));
  const oneWayMs = await time(async () => {
    for (let i = 0; i < MESSAGES; i++) await receive(b, a, await send(a, b));
  });
  const pingPongMs = await time(async () => {
    for (let i = 0; i < PINGPONG; i++) {
      if (i % 2 === 0) await receive(b, a, await send(a, b));
      else await receive(a, b, await send(b, a));
    }
  });
  const [cSetup, cOne, cPing] = cpuMs.slice(-3) as [number, number, number];
  return { setupMs: setupMs / SETUPS, oneWay: MESSAGES / (oneWayMs / 1000), pingPong: PINGPONG / (pingPongMs / 1000), cpu: { setupMs: cSetup / SETUPS, oneWay: MESSAGES / (cOne / 1000), pingPong: PINGPONG / (cPing / 1000) } };
}

const oqs = _nodeBackendWithOqs(nodeCrypto);
if (!oqs) throw new Error('@oqs/liboqs-js did not load: run npm ci at the repository root');
const results = {
  'libsignal-client 0.103.0 (ML-KEM-1024)¹': await libsignal(),
  'MeshWhisper, node:crypto + liboqs WASM ML-KEM (Node default)': await meshwhisper(oqs),
  'MeshWhisper, node:crypto, noble ML-KEM': await meshwhisper(createNodeBackend(nodeCrypto)),
  ...(process.env['SKIP_NOBLE'] === '1' ? {} : { 'MeshWhisper, noble backend (browsers)': await meshwhisper(nobleBackend) }),
};
const cpu = process.cpuUsage();
const base = results['libsignal-client 0.103.0 (ML-KEM-1024)¹'];
console.log(`\nnode ${process.version}, ${SETUPS} setups, ${MESSAGES} one-way and ${PINGPONG} ping-pong messages of 1 KiB; load average ${(await import('node:os')).loadavg().map((x) => x.toFixed(1)).join(' / ')}; process CPU ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s\n`);
console.log('| implementation | session setup (ms) | one-way (msgs/s) | ping-pong (msgs/s) |');
console.log('|---|---:|---:|---:|');
for (const [name, r] of Object.entries(results)) {
  const rel = name.startsWith('libsignal') ? '' : ` (${(r.setupMs / base.setupMs).toFixed(2)}×)`;
  const relOne = name.startsWith('libsignal') ? '' : ` (${(r.oneWay / base.oneWay).toFixed(2)}×)`;
  const relPing = name.startsWith('libsignal') ? '' : ` (${(r.pingPong / base.pingPong).toFixed(2)}×)`;
  console.log(`| ${name} | ${r.setupMs.toFixed(3)}${rel} | ${Math.round(r.oneWay)}${relOne} | ${Math.round(r.pingPong)}${relPing} |`);
}
// The same runs measured in process CPU time (all threads): fairer than wall time when other work
// shares the machine, since a descheduled process accrues no CPU time.
console.log('\nBy CPU time (process user + system, all threads):\n');
console.log('| implementation | setup (CPU ms) | one-way (msgs per CPU-s) | ping-pong (msgs per CPU-s) |');
console.log('|---|---:|---:|---:|');
for (const [name, { cpu: r }] of Object.entries(results)) {
  const b = base.cpu;
  const lib = name.startsWith('libsignal');
  const x = (v: number): string => (lib ? '' : ` (${v.toFixed(2)}×)`);
  console.log(`| ${name} | ${r.setupMs.toFixed(3)}${x(r.setupMs / b.setupMs)} | ${Math.round(r.oneWay)}${x(r.oneWay / b.oneWay)} | ${Math.round(r.pingPong)}${x(r.pingPong / b.pingPong)} |`);
}

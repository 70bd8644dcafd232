// One device maker and one fresh-bundle maker for the crypto benches (run.ts, profile.ts and the
// Chromium entry), so that all three measure exactly the same setup.
import {
  AccountKeyPair,
  DeviceKeyPair,
  KemPreKeyPair,
  MemoryProtocolStore,
  X25519PreKeyPair,
  issueDeviceCertificate,
  publicOneTimePreKey,
  signKemPreKey,
  signSignedPreKey,
} from '../../packages/crypto/src/index.js';
import type { CryptoContext, PreKeyBundle } from '../../packages/crypto/src/index.js';

export async function mkDevice(ctx: CryptoContext) {
  const account = AccountKeyPair.generate(ctx);
  const device = DeviceKeyPair.generate(ctx);
  const certificate = issueDeviceCertificate(ctx, account, device);
  const store = new MemoryProtocolStore({ certificate, device });
  const spk = X25519PreKeyPair.generate(ctx, 1);
  await store.storeSignedPreKey(spk);
  return { device, certificate, store, spk };
}

export type BenchDevice = Awaited<ReturnType<typeof mkDevice>>;

/** A bundle with a fresh one-time prekey and KEM prekey of id `id`, stored on `d`. */
export async function freshBundle(ctx: CryptoContext, d: BenchDevice, id: number): Promise<PreKeyBundle> {
  const opk = X25519PreKeyPair.generate(ctx, id);
  const kem = KemPreKeyPair.generate(ctx, id, false);
  await d.store.storePreKey(opk);
  await d.store.storeKemPreKey(kem);
  return { certificate: d.certificate, signedPreKey: signSignedPreKey(ctx, d.device, d.spk), oneTimePreKey: publicOneTimePreKey(opk), kemPreKey: signKemPreKey(ctx, d.device, kem) };
}

import type { CryptoContext } from '../src/context.js';
import { createContext } from '../src/context.js';
import type { DeviceCertificate } from '../src/keys.js';
import { AccountKeyPair, DeviceKeyPair, issueDeviceCertificate } from '../src/keys.js';
import type { PreKeyBundle } from '../src/prekeys.js';
import { KemPreKeyPair, X25519PreKeyPair, publicOneTimePreKey, signKemPreKey, signSignedPreKey } from '../src/prekeys.js';
import { MemoryProtocolStore } from '../src/stores.js';
import { deterministicRng, manualClock } from '../src/testing.js';

export interface TestDevice {
  readonly name: string;
  readonly account: AccountKeyPair;
  readonly device: DeviceKeyPair;
  readonly certificate: DeviceCertificate;
  readonly store: MemoryProtocolStore;
  readonly signedPreKey: X25519PreKeyPair;
  readonly lastResortKem: KemPreKeyPair;
  nextId: number;
}

/** A deterministic context: seeded RNG and a manual clock. */
export function testContext(seed: string, clock = manualClock()): CryptoContext & { clock: ReturnType<typeof manualClock> } {
  return { ...createContext({ random: deterministicRng(new TextEncoder().encode(seed)), now: clock.now }), clock };
}

export async function makeDevice(ctx: CryptoContext, name: string, account = AccountKeyPair.generate(ctx)): Promise<TestDevice> {
  const device = DeviceKeyPair.generate(ctx);
  const certificate = issueDeviceCertificate(ctx, account, device);
  const store = new MemoryProtocolStore({ certificate, device });
  const signedPreKey = X25519PreKeyPair.generate(ctx, 1);
  const lastResortKem = KemPreKeyPair.generate(ctx, 1, true);
  await store.storeSignedPreKey(signedPreKey);
  await store.storeKemPreKey(lastResortKem);
  return { name, account, device, certificate, store, signedPreKey, lastResortKem, nextId: 100 };
}

/** A bundle as the node would serve it: with a fresh one-time X25519 and KEM prekey unless told otherwise. */
export async function bundleOf(ctx: CryptoContext, d: TestDevice, opts: { oneTime?: boolean; kemOneTime?: boolean } = {}): Promise<PreKeyBundle> {
  const { oneTime = true, kemOneTime = true } = opts;
  let kem = d.lastResortKem;
  if (kemOneTime) {
    kem = KemPreKeyPair.generate(ctx, d.nextId++, false);
    await d.store.storeKemPreKey(kem);
  }
  const base = {
    certificate: d.certificate,
    signedPreKey: signSignedPreKey(ctx, d.device, d.signedPreKey),
    kemPreKey: signKemPreKey(ctx, d.device, kem),
  };
  if (!oneTime) return base;
  const opk = X25519PreKeyPair.generate(ctx, d.nextId++);
  await d.store.storePreKey(opk);
  return { ...base, oneTimePreKey: publicOneTimePreKey(opk) };
}

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);
export const str = (b: Uint8Array): string => new TextDecoder().decode(b);

/**
 * The ProtocolStorage conformance suite: ONE list of cases that every storage adapter must pass.
 * It imports no test framework, so the same cases run under vitest in Node (memory, SQLite) and
 * inside a real browser page (IndexedDB); see storage.test.ts and indexeddb-browser.test.ts.
 */
import type { CryptoContext, DeviceAddress, LocalIdentity, PreKeyBundle, ProtocolStores, SessionMessage } from '@meshwhisper/crypto';
import {
  AccountKeyPair,
  DeviceKeyPair,
  KemPreKeyPair,
  MessageType,
  X25519PreKeyPair,
  createContext,
  decryptMessage,
  deviceAddress,
  encryptMessage,
  equalBytes,
  initiateSession,
  issueDeviceCertificate,
  MemoryProtocolStore,
  publicOneTimePreKey,
  signKemPreKey,
  signSignedPreKey,
  toHex,
} from '@meshwhisper/crypto';
import { APP_KEY_MAX_BYTES, APP_TABLE_MAX_BYTES, APP_VALUE_MAX_BYTES } from '../../src/constants.js';
import type { AppItem, ProtocolStorage, StorageTx } from '../../src/storage/types.js';
import { asStorageTx, isStorageTx } from '../../src/storage/types.js';

export interface StorageFactory {
  readonly name: string;
  /** A fresh, empty storage; `label` is unique per call (use it for file or database names). */
  create(label: string): Promise<ProtocolStorage>;
  /** Closes `storage` and opens the same storage again (persistent adapters only). */
  reopen?(storage: ProtocolStorage): Promise<ProtocolStorage>;
  /** A second, independent instance on the same underlying storage, where the adapter allows one. */
  openSecond?(storage: ProtocolStorage): Promise<ProtocolStorage>;
}

export interface ConformanceCase {
  readonly name: string;
  /** Cases that need an optional factory capability. */
  readonly needs?: 'reopen' | 'openSecond';
  run(f: StorageFactory): Promise<void>;
}

export interface CaseResult {
  readonly name: string;
  readonly status: 'passed' | 'failed' | 'skipped';
  readonly ms: number;
  readonly error?: string;
}

// ── Assertions (framework-free) ─────────────────────────────────────────────────────────────

class AssertionError extends Error {
  override readonly name = 'AssertionError';
}
function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new AssertionError(message);
}
function eq<T>(actual: T, expected: T, what: string): void {
  const a = JSON.stringify(actual, bytesAsHex);
  const e = JSON.stringify(expected, bytesAsHex);
  if (a !== e) throw new AssertionError(`${what}: expected ${e}, got ${a}`);
}
function bytesAsHex(_k: string, v: unknown): unknown {
  return v instanceof Uint8Array ? `0x${toHex(v)}` : v;
}
function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined, what: string): void {
  assert(a !== undefined && b !== undefined, `${what}: missing bytes`);
  assert(a instanceof Uint8Array, `${what}: not a Uint8Array`);
  assert(equalBytes(a, b), `${what}: bytes differ`);
}
async function rejectsWith(p: Promise<unknown>, match: { code?: string; name?: string; is?: unknown }, what: string): Promise<unknown> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert(caught !== undefined, `${what}: expected a rejection, got success`);
  if (match.is !== undefined) assert(caught === match.is, `${what}: rejected with a different error: ${String(caught)}`);
  const c = caught as { code?: unknown; name?: unknown };
  if (match.code !== undefined) assert(c.code === match.code, `${what}: expected code ${match.code}, got ${String(c.code)} (${String(caught)})`);
  if (match.name !== undefined) assert(c.name === match.name, `${what}: expected ${match.name}, got ${String(c.name)} (${String(caught)})`);
  return caught;
}
const tick = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** The UTF-8 bytes of `s` in hex: sorting by it is sorting by UTF-8 bytes (written independently of the adapters' comparator). */
const utf8Hex = (s: string): string => toHex(new TextEncoder().encode(s));
const byUtf8 = (a: string, b: string): number => (utf8Hex(a) < utf8Hex(b) ? -1 : utf8Hex(a) > utf8Hex(b) ? 1 : 0);
const itemKeys = (items: AppItem[]): string[] => items.map((i) => i.key);
/** Every item of `tables`, as one comparable string. */
async function itemsSnapshot(s: StorageTx | ProtocolStorage, tables: readonly string[]): Promise<string> {
  const parts: string[] = [];
  for (const t of tables) for (const { key, value } of await s.listItems(t)) parts.push(`${t}/${utf8Hex(key)}=${toHex(value)}`);
  return parts.join('|');
}
/** Keys chosen to tell UTF-8 byte order from UTF-16 order and from locale order. */
const ORDERED_KEYS = ['Z', 'a', 'a\u0000', 'a\u0000b', 'ab', 'b', '~', '\u007f', 'é', '\ud7ff', '\ud7ff\u0001', '\ue000', '\ufffd', '😀', '😀x', '\u{10ffff}', '\u{10ffff}a'];
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (b: Uint8Array): string => new TextDecoder().decode(b);
const u32 = (n: number): Uint8Array => Uint8Array.of(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
const fromU32 = (b: Uint8Array | undefined): number => (b ? ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0 : 0);

// ── Fixtures ────────────────────────────────────────────────────────────────────────────────

let counter = 0;
const label = (s: string): string => `${s}-${Date.now().toString(36)}-${(counter++).toString(36)}`;

function newIdentity(ctx: CryptoContext): LocalIdentity {
  const account = AccountKeyPair.generate(ctx);
  const device = DeviceKeyPair.generate(ctx);
  return { certificate: issueDeviceCertificate(ctx, account, device), device };
}

async function withIdentity(f: StorageFactory, name: string, ctx: CryptoContext): Promise<{ s: ProtocolStorage; id: LocalIdentity }> {
  const s = await f.create(label(name));
  const id = newIdentity(ctx);
  await s.setLocalIdentity(id);
  return { s, id };
}

/** Runs `fn` on a fresh storage holding a new identity, and closes the storage afterwards. */
async function withStorage(f: StorageFactory, name: string, fn: (s: ProtocolStorage) => Promise<void>): Promise<void> {
  const { s } = await withIdentity(f, name, ctx);
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

interface Device {
  store: ProtocolStorage;
  identity: LocalIdentity;
  signedPreKey: X25519PreKeyPair;
  lastResortKem: KemPreKeyPair;
  nextId: number;
}

async function makeDevice(ctx: CryptoContext, store: ProtocolStorage): Promise<Device> {
  const identity = newIdentity(ctx);
  await store.setLocalIdentity(identity);
  const signedPreKey = X25519PreKeyPair.generate(ctx, 1);
  const lastResortKem = KemPreKeyPair.generate(ctx, 1, true);
  await store.transaction(async (tx) => {
    await tx.storeSignedPreKey(signedPreKey);
    await tx.storeKemPreKey(lastResortKem);
  });
  return { store, identity, signedPreKey, lastResortKem, nextId: 100 };
}

/** A bundle as the node would serve it, with fresh one-time X25519 and KEM prekeys. */
async function bundleOf(ctx: CryptoContext, d: Device): Promise<PreKeyBundle> {
  const kem = KemPreKeyPair.generate(ctx, d.nextId++, false);
  const opk = X25519PreKeyPair.generate(ctx, d.nextId++);
  await d.store.storeKemPreKey(kem);
  await d.store.storePreKey(opk);
  return {
    certificate: d.identity.certificate,
    signedPreKey: signSignedPreKey(ctx, d.identity.device, d.signedPreKey),
    oneTimePreKey: publicOneTimePreKey(opk),
    kemPreKey: signKemPreKey(ctx, d.identity.device, kem),
  };
}

/** Everything a store holds, as one comparable string (secrets included, as hex). */
async function snapshot(s: ProtocolStores): Promise<string> {
  const parts: string[] = [];
  for (const a of (await s.listSessionAddresses()).sort()) parts.push(`s:${a}=${toHex((await s.loadSession(a))!)}`);
  for (const k of await s.listSignedPreKeys()) parts.push(`spk:${k.id}=${toHex(k.secretKey)}`);
  for (const k of await s.listKemPreKeys()) parts.push(`kem:${k.id}:${k.lastResort}=${toHex(k.secretKey).slice(0, 64)}`);
  parts.push(`opk#${await s.countPreKeys()}`);
  return parts.sort().join('|');
}

const ctx = createContext();

// ── Cases ───────────────────────────────────────────────────────────────────────────────────

export const conformanceCases: readonly ConformanceCase[] = [
  {
    name: 'identity: absent at first, set once, loaded back, never replaced',
    async run(f) {
      const s = await f.create(label('identity'));
      try {
        assert((await s.hasLocalIdentity()) === false, 'a new storage has no identity');
        await rejectsWith(s.getLocalIdentity(), { code: 'MW_SDK_STORAGE_NO_IDENTITY' }, 'getLocalIdentity before set');
        const id = newIdentity(ctx);
        await s.setLocalIdentity(id);
        assert(await s.hasLocalIdentity(), 'identity present after set');
        const got = await s.getLocalIdentity();
        sameBytes(got.device.signingPublicKey, id.device.signingPublicKey, 'signing key');
        sameBytes(got.device.dhPublicKey, id.device.dhPublicKey, 'dh key');
        sameBytes(got.certificate.signature, id.certificate.signature, 'certificate signature');
        // The loaded secret works: same DH output as the original.
        const peer = X25519PreKeyPair.generate(ctx, 1);
        sameBytes(got.device.dh(ctx, peer.publicKey), id.device.dh(ctx, peer.publicKey), 'DH with loaded identity');
        const inTx = await s.transaction((tx) => tx.getLocalIdentity());
        sameBytes(inTx.device.signingPublicKey, id.device.signingPublicKey, 'identity inside a transaction');
        await rejectsWith(s.setLocalIdentity(newIdentity(ctx)), { code: 'MW_SDK_STORAGE_IDENTITY_EXISTS' }, 'second setLocalIdentity');
        sameBytes((await s.getLocalIdentity()).device.signingPublicKey, id.device.signingPublicKey, 'identity unchanged');
        // A certificate that certifies other keys is refused outright.
        const other = newIdentity(ctx);
        const s2 = await f.create(label('identity-bad'));
        try {
          await rejectsWith(s2.setLocalIdentity({ certificate: other.certificate, device: id.device }), { name: 'RangeError' }, 'mismatched certificate');
          assert((await s2.hasLocalIdentity()) === false, 'nothing stored after a refused identity');
        } finally {
          await s2.close();
        }
      } finally {
        await s.close();
      }
    },
  },
  {
    name: 'identity: renewCertificate replaces the certificate of the same device keys only, and it persists',
    async run(f) {
      let s = await f.create(label('renew'));
      try {
        const account = AccountKeyPair.generate(ctx);
        const device = DeviceKeyPair.generate(ctx);
        const first = issueDeviceCertificate(ctx, account, device, { issuedAt: 1_000_000, deviceIndex: 3 });
        await rejectsWith(s.renewCertificate(first), { code: 'MW_SDK_STORAGE_NO_IDENTITY' }, 'renewCertificate before setLocalIdentity');
        await s.setLocalIdentity({ certificate: first, device });
        const renewed = issueDeviceCertificate(ctx, account, device, { issuedAt: 2_000_000, deviceIndex: 3 });
        // Another device's certificate, another account's, and one not newer are refused; nothing changes.
        const other = newIdentity(ctx);
        await rejectsWith(s.renewCertificate(other.certificate), { name: 'RangeError' }, 'certificate of other keys');
        await rejectsWith(s.renewCertificate(issueDeviceCertificate(ctx, AccountKeyPair.generate(ctx), device, { issuedAt: 2_000_000 })), { name: 'RangeError' }, 'certificate of another account');
        await rejectsWith(s.renewCertificate(issueDeviceCertificate(ctx, account, device, { issuedAt: 1_000_000 })), { name: 'RangeError' }, 'not issued later');
        sameBytes((await s.getLocalIdentity()).certificate.signature, first.signature, 'unchanged after refusals');
        await s.renewCertificate(renewed);
        sameBytes((await s.getLocalIdentity()).certificate.signature, renewed.signature, 'renewed certificate loaded');
        sameBytes((await s.transaction((tx) => tx.getLocalIdentity())).certificate.signature, renewed.signature, 'renewed certificate inside a transaction');
        const peer = X25519PreKeyPair.generate(ctx, 1);
        sameBytes((await s.getLocalIdentity()).device.dh(ctx, peer.publicKey), device.dh(ctx, peer.publicKey), 'device keys kept');
        if (f.reopen) {
          s = await f.reopen(s);
          const back = await s.getLocalIdentity();
          sameBytes(back.certificate.signature, renewed.signature, 'renewed certificate after reopening');
          eq(back.certificate.deviceIndex, 3, 'device index after reopening');
          sameBytes(back.device.dh(ctx, peer.publicKey), device.dh(ctx, peer.publicKey), 'device keys after reopening');
        }
      } finally {
        await s.close();
      }
    },
  },
  {
    name: 'one-time prekeys: store, load, count, overwrite, remove (ids 0 and 2^32-1)',
    async run(f) {
      await withStorage(f, 'opk', async (s) => {
        assert((await s.loadPreKey(1)) === undefined, 'missing prekey is undefined');
        eq(await s.countPreKeys(), 0, 'count when empty');
        const keys = [0, 1, 0xffffffff].map((id) => X25519PreKeyPair.generate(ctx, id));
        for (const k of keys) await s.storePreKey(k);
        eq(await s.countPreKeys(), 3, 'count after three stores');
        for (const k of keys) {
          const got = await s.loadPreKey(k.id);
          assert(got instanceof X25519PreKeyPair, 'loads an X25519PreKeyPair');
          eq(got.id, k.id, 'id');
          eq(got.createdAt, k.createdAt, 'createdAt');
          sameBytes(got.publicKey, k.publicKey, 'public key');
          sameBytes(got.secretKey, k.secretKey, 'secret key');
        }
        const replacement = X25519PreKeyPair.generate(ctx, 1);
        await s.storePreKey(replacement);
        eq(await s.countPreKeys(), 3, 'overwrite keeps the count');
        sameBytes((await s.loadPreKey(1))!.secretKey, replacement.secretKey, 'overwritten secret');
        await s.removePreKey(1);
        await s.removePreKey(12345); // removing a missing key is not an error
        assert((await s.loadPreKey(1)) === undefined, 'removed prekey is gone');
        eq(await s.countPreKeys(), 2, 'count after remove');
      });
    },
  },
  {
    name: 'signed prekeys: store, load, list, remove',
    async run(f) {
      await withStorage(f, 'spk', async (s) => {
        eq((await s.listSignedPreKeys()).length, 0, 'empty list');
        const a = X25519PreKeyPair.generate(ctx, 7);
        const b = X25519PreKeyPair.generate(ctx, 8);
        await s.storeSignedPreKey(a);
        await s.storeSignedPreKey(b);
        const got = await s.loadSignedPreKey(7);
        sameBytes(got?.secretKey, a.secretKey, 'signed prekey secret');
        eq(got?.createdAt, a.createdAt, 'createdAt');
        eq((await s.listSignedPreKeys()).map((k) => k.id).sort(), [7, 8], 'list ids');
        assert((await s.loadPreKey(7)) === undefined, 'signed prekeys are not one-time prekeys');
        await s.removeSignedPreKey(7);
        assert((await s.loadSignedPreKey(7)) === undefined, 'removed');
        eq((await s.listSignedPreKeys()).map((k) => k.id), [8], 'list after remove');
      });
    },
  },
  {
    name: 'KEM prekeys: store, load, list, remove, last-resort flag',
    async run(f) {
      await withStorage(f, 'kem', async (s) => {
        const one = KemPreKeyPair.generate(ctx, 5, false);
        const lr = KemPreKeyPair.generate(ctx, 6, true);
        await s.storeKemPreKey(one);
        await s.storeKemPreKey(lr);
        const got = await s.loadKemPreKey(6);
        assert(got instanceof KemPreKeyPair, 'loads a KemPreKeyPair');
        eq(got.lastResort, true, 'last-resort flag');
        eq((await s.loadKemPreKey(5))?.lastResort, false, 'one-time flag');
        sameBytes(got.secretKey, lr.secretKey, 'KEM secret');
        sameBytes(got.publicKey, lr.publicKey, 'KEM public key');
        eq(got.createdAt, lr.createdAt, 'createdAt');
        eq(
          (await s.listKemPreKeys()).map((k) => [k.id, k.lastResort]).sort(),
          [
            [5, false],
            [6, true],
          ],
          'list',
        );
        await s.removeKemPreKey(5);
        assert((await s.loadKemPreKey(5)) === undefined, 'removed');
        eq((await s.listKemPreKeys()).map((k) => k.id), [6], 'list after remove');
      });
    },
  },
  {
    name: 'sessions: store, load, list, remove; bytes are copies; a 1 MiB record round-trips',
    async run(f) {
      await withStorage(f, 'sessions', async (s) => {
        const a: DeviceAddress = 'aa:01';
        const b: DeviceAddress = 'bb:02';
        assert((await s.loadSession(a)) === undefined, 'missing session');
        const rec = Uint8Array.of(1, 2, 3);
        await s.storeSession(a, rec);
        rec[0] = 99; // the store must have copied the caller's bytes
        sameBytes(await s.loadSession(a), Uint8Array.of(1, 2, 3), 'stored copy');
        const loaded = (await s.loadSession(a))!;
        loaded[1] = 99; // and must hand out copies
        sameBytes(await s.loadSession(a), Uint8Array.of(1, 2, 3), 'returned copy');
        const big = new Uint8Array(1024 * 1024).map((_, i) => (i * 31 + (i >> 8)) & 255);
        await s.storeSession(b, big);
        sameBytes(await s.loadSession(b), big, 'large record');
        eq((await s.listSessionAddresses()).sort(), [a, b], 'addresses');
        await s.storeSession(a, Uint8Array.of(4));
        sameBytes(await s.loadSession(a), Uint8Array.of(4), 'overwrite');
        await s.removeSession(a);
        assert((await s.loadSession(a)) === undefined, 'removed');
        eq(await s.listSessionAddresses(), [b], 'addresses after remove');
      });
    },
  },
  {
    name: 'replay cache: add, has, prune drops exactly the entries naming a dead prekey',
    async run(f) {
      await withStorage(f, 'seen', async (s) => {
        const d = [1, 2, 3, 4].map(() => ctx.random(32));
        assert(!(await s.hasSeenInitialMessage(d[0]!)), 'unseen');
        await s.addSeenInitialMessage(d[0]!, { signedPreKeyId: 1, kemPreKeyId: 10, seenAt: 1 });
        await s.addSeenInitialMessage(d[1]!, { signedPreKeyId: 2, kemPreKeyId: 10, seenAt: 2 });
        await s.addSeenInitialMessage(d[2]!, { signedPreKeyId: 1, kemPreKeyId: 11, seenAt: 3 });
        await s.addSeenInitialMessage(d[3]!, { signedPreKeyId: 1, kemPreKeyId: 10, seenAt: 4 });
        for (const x of d) assert(await s.hasSeenInitialMessage(x), 'seen after add');
        assert(!(await s.hasSeenInitialMessage(ctx.random(32))), 'another digest is unseen');
        // Signed prekey 2 and KEM prekey 11 are gone: entries 1 and 2 must go, 0 and 3 stay.
        eq(await s.pruneSeenInitialMessages(new Set([1]), new Set([10])), 2, 'pruned count');
        eq(
          await Promise.all(d.map((x) => s.hasSeenInitialMessage(x))),
          [true, false, false, true],
          'survivors',
        );
        eq(await s.pruneSeenInitialMessages(new Set([1]), new Set([10])), 0, 'prune is idempotent');
        eq(await s.pruneSeenInitialMessages(new Set(), new Set()), 2, 'prune with nothing live');
        assert(!(await s.hasSeenInitialMessage(d[0]!)), 'all gone');
      });
    },
  },
  {
    name: 'transaction: all writes commit together and the value of fn is returned',
    async run(f) {
      await withStorage(f, 'commit', async (s) => {
        const opk = X25519PreKeyPair.generate(ctx, 3);
        const spk = X25519PreKeyPair.generate(ctx, 4);
        const kem = KemPreKeyPair.generate(ctx, 5, false);
        const digest = ctx.random(32);
        const out = await s.transaction(async (tx) => {
          await tx.storePreKey(opk);
          await tx.storeSignedPreKey(spk);
          await tx.storeKemPreKey(kem);
          await tx.storeSession('x:1', Uint8Array.of(7));
          await tx.addSeenInitialMessage(digest, { signedPreKeyId: 4, kemPreKeyId: 5, seenAt: 0 });
          return 'done';
        });
        eq(out, 'done', 'return value');
        assert((await s.loadPreKey(3)) !== undefined, 'prekey committed');
        assert((await s.loadSignedPreKey(4)) !== undefined, 'signed prekey committed');
        assert((await s.loadKemPreKey(5)) !== undefined, 'KEM prekey committed');
        sameBytes(await s.loadSession('x:1'), Uint8Array.of(7), 'session committed');
        assert(await s.hasSeenInitialMessage(digest), 'replay entry committed');
        // Removals commit together too.
        await s.transaction(async (tx) => {
          await tx.removePreKey(3);
          await tx.removeSignedPreKey(4);
          await tx.removeKemPreKey(5);
          await tx.removeSession('x:1');
          await tx.pruneSeenInitialMessages(new Set(), new Set());
        });
        eq(await snapshot(s), 'opk#0', 'everything removed');
        assert(!(await s.hasSeenInitialMessage(digest)), 'replay entry pruned');
      });
    },
  },
  {
    name: 'transaction: a throwing fn rolls back every write, and its error is rethrown as is',
    async run(f) {
      await withStorage(f, 'rollback', async (s) => {
        await s.storePreKey(X25519PreKeyPair.generate(ctx, 1));
        await s.storeSession('keep:1', Uint8Array.of(1));
        const digest = ctx.random(32);
        await s.addSeenInitialMessage(digest, { signedPreKeyId: 9, kemPreKeyId: 9, seenAt: 0 });
        const before = await snapshot(s);
        const boom = new Error('boom');
        await rejectsWith(
          s.transaction(async (tx) => {
            await tx.storePreKey(X25519PreKeyPair.generate(ctx, 2));
            await tx.removePreKey(1);
            await tx.storeSignedPreKey(X25519PreKeyPair.generate(ctx, 3));
            await tx.storeKemPreKey(KemPreKeyPair.generate(ctx, 4, true));
            await tx.storeSession('keep:1', Uint8Array.of(2));
            await tx.storeSession('new:1', Uint8Array.of(3));
            await tx.pruneSeenInitialMessages(new Set(), new Set());
            await tx.addSeenInitialMessage(ctx.random(32), { signedPreKeyId: 1, kemPreKeyId: 1, seenAt: 0 });
            await tick();
            throw boom;
          }),
          { is: boom },
          'the error thrown by fn',
        );
        eq(await snapshot(s), before, 'state after rollback');
        assert(await s.hasSeenInitialMessage(digest), 'pruned entry restored');
        // The storage is still usable afterwards.
        await s.storePreKey(X25519PreKeyPair.generate(ctx, 5));
        eq(await s.countPreKeys(), 2, 'usable after rollback');
      });
    },
  },
  {
    name: 'transaction: reads see the transaction’s own writes (read-your-writes)',
    async run(f) {
      await withStorage(f, 'ryw', async (s) => {
        await s.storePreKey(X25519PreKeyPair.generate(ctx, 1));
        await s.storeSession('old:1', Uint8Array.of(1));
        await s.storeKemPreKey(KemPreKeyPair.generate(ctx, 1, true));
        await s.addSeenInitialMessage(Uint8Array.of(1, 1), { signedPreKeyId: 1, kemPreKeyId: 1, seenAt: 0 });
        await s.transaction(async (tx) => {
          const k = X25519PreKeyPair.generate(ctx, 2);
          await tx.storePreKey(k);
          sameBytes((await tx.loadPreKey(2))?.secretKey, k.secretKey, 'own prekey write');
          eq(await tx.countPreKeys(), 2, 'count includes own write');
          await tx.removePreKey(1);
          assert((await tx.loadPreKey(1)) === undefined, 'own delete');
          eq(await tx.countPreKeys(), 1, 'count includes own delete');
          await tx.storeSession('new:1', Uint8Array.of(9));
          await tx.removeSession('old:1');
          sameBytes(await tx.loadSession('new:1'), Uint8Array.of(9), 'own session write');
          eq(await tx.listSessionAddresses(), ['new:1'], 'list includes own writes and deletes');
          await tx.storeSignedPreKey(X25519PreKeyPair.generate(ctx, 3));
          eq((await tx.listSignedPreKeys()).map((x) => x.id), [3], 'signed list includes own write');
          await tx.storeKemPreKey(KemPreKeyPair.generate(ctx, 2, false));
          await tx.removeKemPreKey(1);
          eq((await tx.listKemPreKeys()).map((x) => x.id), [2], 'KEM list includes own write and delete');
          await tx.addSeenInitialMessage(Uint8Array.of(2, 2), { signedPreKeyId: 3, kemPreKeyId: 2, seenAt: 0 });
          assert(await tx.hasSeenInitialMessage(Uint8Array.of(2, 2)), 'own replay entry');
          // Prune against the transaction's view: entry 1,1 names prekeys that are gone in it.
          eq(await tx.pruneSeenInitialMessages(new Set([3]), new Set([2])), 1, 'prune sees own writes');
          assert(!(await tx.hasSeenInitialMessage(Uint8Array.of(1, 1))), 'pruned inside the transaction');
          assert(await tx.hasSeenInitialMessage(Uint8Array.of(2, 2)), 'own entry survives prune');
        });
        eq(await s.listSessionAddresses(), ['new:1'], 'committed');
        assert(!(await s.hasSeenInitialMessage(Uint8Array.of(1, 1))), 'prune committed');
      });
    },
  },
  {
    name: 'transaction: nobody outside sees a transaction’s intermediate state',
    async run(f) {
      await withStorage(f, 'isolation', async (s) => {
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        let entered!: () => void;
        const inside = new Promise<void>((r) => (entered = r));
        const tx = s.transaction(async (t) => {
          await t.storeSession('iso:1', Uint8Array.of(1)); // intermediate
          entered();
          await gate;
          await t.storeSession('iso:1', Uint8Array.of(2)); // final
        });
        await inside;
        const outside = s.loadSession('iso:1');
        const outsideCount = s.listSessionAddresses();
        await tick(5);
        release();
        await tx;
        const seen = await outside;
        assert(seen === undefined || (seen.length === 1 && seen[0] === 2), `outside read saw an intermediate state: ${String(seen)}`);
        const addrs = await outsideCount;
        assert(addrs.length === 0 || (addrs.length === 1 && addrs[0] === 'iso:1'), 'outside list is before or after');
        sameBytes(await s.loadSession('iso:1'), Uint8Array.of(2), 'final state after commit');
      });
    },
  },
  {
    name: 'transaction: concurrent transactions are serialised (no overlap, no lost update)',
    async run(f) {
      await withStorage(f, 'serial', async (s) => {
        const events: string[] = [];
        const n = 8;
        const runs = Array.from({ length: n }, (_, i) =>
          s.transaction(async (tx) => {
            events.push(`start ${i}`);
            const v = fromU32(await tx.loadSession('counter:1'));
            await tick(i % 3);
            await tx.storeSession('counter:1', u32(v + 1));
            await tick();
            events.push(`end ${i}`);
            if (i === 3) throw new Error('one of them fails');
            return v;
          }),
        );
        const settled = await Promise.allSettled(runs);
        eq(settled.filter((r) => r.status === 'rejected').length, 1, 'exactly the failing transaction rejects');
        for (let k = 0; k < events.length; k += 2) {
          const [a, b] = [events[k]!, events[k + 1]!];
          assert(a.startsWith('start') && b === a.replace('start', 'end'), `transactions overlapped: ${events.join(', ')}`);
        }
        eq(fromU32(await s.loadSession('counter:1')), n - 1, 'every committed increment counted');
        // Calls outside transaction() are serialised with them too.
        const mixed = await Promise.all([
          s.transaction(async (tx) => {
            await tick(5);
            await tx.storeSession('mixed:1', Uint8Array.of(1));
          }),
          s.storeSession('mixed:1', Uint8Array.of(2)),
        ]);
        eq(mixed.length, 2, 'both ran');
        const final = await s.loadSession('mixed:1');
        assert(final !== undefined && (final[0] === 1 || final[0] === 2), 'one of the two writes won whole');
      });
    },
  },
  {
    name: 'transaction: its view refuses use after the transaction ended',
    async run(f) {
      await withStorage(f, 'stale', async (s) => {
        let leaked: ProtocolStores | undefined;
        await s.transaction(async (tx) => {
          leaked = tx;
        });
        await rejectsWith(leaked!.storeSession('late:1', Uint8Array.of(1)), { code: 'MW_SDK_STORAGE_TRANSACTION_CLOSED' }, 'write after commit');
        await rejectsWith(leaked!.loadSession('late:1'), { code: 'MW_SDK_STORAGE_TRANSACTION_CLOSED' }, 'read after commit');
        await rejectsWith(
          s.transaction(async (tx) => {
            leaked = tx;
            throw new Error('x');
          }),
          { name: 'Error' },
          'rollback',
        );
        await rejectsWith(leaked!.storePreKey(X25519PreKeyPair.generate(ctx, 1)), { code: 'MW_SDK_STORAGE_TRANSACTION_CLOSED' }, 'write after rollback');
        assert((await s.loadSession('late:1')) === undefined, 'nothing leaked into the store');
        eq(await s.countPreKeys(), 0, 'no prekey leaked');
      });
    },
  },
  {
    name: 'session layer: two devices converse; prekeys consumed and replay recorded in the store',
    async run(f) {
      const [sa, sb] = [await f.create(label('alice')), await f.create(label('bob'))];
      try {
        const alice = await makeDevice(ctx, sa);
        const bob = await makeDevice(ctx, sb);
        const bundle = await bundleOf(ctx, bob);
        const bobAddr = await initiateSession(ctx, alice.store, bundle);
        eq(bobAddr, deviceAddress(bob.identity.certificate), 'initiateSession returns the peer address');
        const aliceAddr = deviceAddress(alice.identity.certificate);
        const send = (from: Device, to: DeviceAddress, s: string) => encryptMessage(ctx, from.store, to, text(s));
        const recv = async (to: Device, from: Device, m: SessionMessage) => str(await decryptMessage(ctx, to.store, from.identity.certificate, m));

        const m1 = await send(alice, bobAddr, 'hello bob');
        const m2 = await send(alice, bobAddr, 'second');
        eq(m1.type, MessageType.PreKey, 'first message carries the PQXDH header');
        eq(await recv(bob, alice, m2), 'second', 'out of order');
        eq(await recv(bob, alice, m1), 'hello bob', 'first');
        eq(await bob.store.countPreKeys(), 0, 'one-time prekey consumed');
        eq((await bob.store.listKemPreKeys()).map((k) => k.lastResort), [true], 'one-time KEM prekey consumed, last resort kept');
        eq(await bob.store.listSessionAddresses(), [aliceAddr], 'bob stored the session');
        for (let i = 0; i < 3; i++) {
          const r = await send(bob, aliceAddr, `reply ${i}`);
          eq(r.type, MessageType.Ratchet, 'replies are ratchet messages');
          eq(await recv(alice, bob, r), `reply ${i}`, 'reply');
          eq(await recv(bob, alice, await send(alice, bobAddr, `again ${i}`)), `again ${i}`, 'again');
        }
        // A replayed message is refused and changes nothing.
        const before = await snapshot(bob.store);
        await rejectsWith(recv(bob, alice, m1), { name: 'CryptoError' }, 'replayed first message');
        eq(await snapshot(bob.store), before, 'replay left the store unchanged');
      } finally {
        await sa.close();
        await sb.close();
      }
    },
  },
  {
    name: 'session layer: a failed decrypt or a throwing persist hook leaves the store unchanged',
    async run(f) {
      const [sa, sb] = [await f.create(label('alice')), await f.create(label('bob'))];
      try {
        const alice = await makeDevice(ctx, sa);
        const bob = await makeDevice(ctx, sb);
        const bobAddr = await initiateSession(ctx, alice.store, await bundleOf(ctx, bob));
        const m = await encryptMessage(ctx, alice.store, bobAddr, text('x'));
        const tampered = { ...m, body: Uint8Array.from(m.body) };
        tampered.body[tampered.body.length - 1]! ^= 1;
        const bobBefore = await snapshot(bob.store);
        await rejectsWith(decryptMessage(ctx, bob.store, alice.identity.certificate, tampered), { name: 'CryptoError' }, 'tampered message');
        eq(await snapshot(bob.store), bobBefore, 'bob unchanged after a failed decrypt');
        const aliceBefore = await snapshot(alice.store);
        const hookError = new Error('outbox full');
        await rejectsWith(
          encryptMessage(ctx, alice.store, bobAddr, text('y'), {
            persist: async () => {
              throw hookError;
            },
          }),
          { is: hookError },
          'persist hook error',
        );
        eq(await snapshot(alice.store), aliceBefore, 'no ratchet advance when the persist hook throws');
        eq(str(await decryptMessage(ctx, bob.store, alice.identity.certificate, m)), 'x', 'the genuine message still decrypts');
      } finally {
        await sa.close();
        await sb.close();
      }
    },
  },
  {
    name: 'app items: get, set, overwrite, delete; values are copies; empty and 1 MiB values round-trip',
    async run(f) {
      const s = await f.create(label('items'));
      try {
        assert((await s.getItem('contacts', 'alice')) === undefined, 'missing item is undefined');
        const v = Uint8Array.of(1, 2, 3);
        await s.setItem('contacts', 'alice', v);
        v[0] = 99; // the storage must have copied the caller's bytes
        sameBytes(await s.getItem('contacts', 'alice'), Uint8Array.of(1, 2, 3), 'stored copy');
        const got = (await s.getItem('contacts', 'alice'))!;
        got[1] = 99; // and must hand out copies
        sameBytes(await s.getItem('contacts', 'alice'), Uint8Array.of(1, 2, 3), 'returned copy');
        const listed = (await s.listItems('contacts'))[0]!;
        listed.value[2] = 99;
        sameBytes(await s.getItem('contacts', 'alice'), Uint8Array.of(1, 2, 3), 'listed copy');
        await s.setItem('contacts', 'alice', Uint8Array.of(4));
        sameBytes(await s.getItem('contacts', 'alice'), Uint8Array.of(4), 'overwrite');
        await s.setItem('seen', 'm1', new Uint8Array(0));
        const empty = await s.getItem('seen', 'm1');
        assert(empty instanceof Uint8Array && empty.length === 0, 'an empty value is stored and is not "missing"');
        eq(await s.listItems('seen'), [{ key: 'm1', value: new Uint8Array(0) }], 'empty value listed');
        const big = new Uint8Array(APP_VALUE_MAX_BYTES).map((_, i) => (i * 7 + (i >> 9)) & 255);
        await s.setItem('outbox', 'big', big);
        sameBytes(await s.getItem('outbox', 'big'), big, 'a value of exactly APP_VALUE_MAX_BYTES');
        await s.deleteItem('contacts', 'alice');
        await s.deleteItem('contacts', 'nobody'); // deleting a missing item is not an error
        assert((await s.getItem('contacts', 'alice')) === undefined, 'deleted');
        eq(await s.listItems('contacts'), [], 'table empty after delete');
        // The app area and the protocol stores are separate: no item shows up as a session or vice versa.
        await s.storeSession('alice', Uint8Array.of(5));
        assert((await s.getItem('session', 'alice')) === undefined, 'a session is not an item');
        eq(await s.listSessionAddresses(), ['alice'], 'an item is not a session');
      } finally {
        await s.close();
      }
    },
  },
  {
    name: 'app items: listItems orders by UTF-8 bytes, filters by prefix, honours limit',
    async run(f) {
      const s = await f.create(label('items-order'));
      try {
        const shuffled = [...ORDERED_KEYS].sort(() => 0.5 - Math.random());
        for (const [i, k] of shuffled.entries()) await s.setItem('t', k, u32(i));
        const all = await s.listItems('t');
        eq(itemKeys(all), ORDERED_KEYS, 'UTF-8 byte order');
        eq([...ORDERED_KEYS].sort(byUtf8), ORDERED_KEYS, 'the expected order is UTF-8 byte order');
        for (const { key, value } of all) eq(fromU32(value), shuffled.indexOf(key), `value of ${JSON.stringify(key)}`);
        const withPrefix = async (prefix: string, limit?: number): Promise<string[]> =>
          itemKeys(await s.listItems('t', limit === undefined ? { prefix } : { prefix, limit }));
        const expect = (prefix: string): string[] => ORDERED_KEYS.filter((k) => k.startsWith(prefix));
        for (const prefix of ['', 'a', 'a\u0000', 'ab', 'abc', '\ud7ff', '😀', '\u{10ffff}', 'é', 'y']) {
          eq(await withPrefix(prefix), expect(prefix), `prefix ${JSON.stringify(prefix)}`);
          eq(await withPrefix(prefix, 1), expect(prefix).slice(0, 1), `prefix ${JSON.stringify(prefix)}, limit 1`);
        }
        eq(itemKeys(await s.listItems('t', { limit: 3 })), ORDERED_KEYS.slice(0, 3), 'limit 3');
        eq(await s.listItems('t', { limit: 0 }), [], 'limit 0');
        eq(itemKeys(await s.listItems('t', { limit: 1000 })), ORDERED_KEYS, 'limit above the count');
        eq(await s.listItems('empty-table'), [], 'a table never written is empty');
      } finally {
        await s.close();
      }
    },
  },
  {
    name: 'app items: listItems pages with an `after` cursor (exclusive), with a prefix, and over buffered writes in a transaction',
    async run(f) {
      const s = await f.create(label('items-after'));
      try {
        for (const [i, k] of ORDERED_KEYS.entries()) await s.setItem('t', k, u32(i));
        const after = (k: string): string[] => ORDERED_KEYS.filter((x) => byUtf8(x, k) > 0);
        for (const cursor of ['', 'Z', 'a', 'a\u0000', 'ab', 'ac', '\ud7ff', '😀', '\u{10ffff}a', '\u{10ffff}b']) {
          eq(itemKeys(await s.listItems('t', { after: cursor })), after(cursor), `after ${JSON.stringify(cursor)}`);
          eq(itemKeys(await s.listItems('t', { after: cursor, limit: 2 })), after(cursor).slice(0, 2), `after ${JSON.stringify(cursor)}, limit 2`);
          for (const prefix of ['a', '😀', 'b']) {
            const want = after(cursor).filter((k) => k.startsWith(prefix));
            eq(itemKeys(await s.listItems('t', { prefix, after: cursor })), want, `prefix ${JSON.stringify(prefix)} after ${JSON.stringify(cursor)}`);
          }
        }
        // Paging through the whole table two at a time visits every key once, in order.
        const paged: string[] = [];
        for (let cursor: string | undefined; ; ) {
          const page = itemKeys(await s.listItems('t', { limit: 2, ...(cursor === undefined ? {} : { after: cursor }) }));
          if (page.length === 0) break;
          paged.push(...page);
          cursor = page[page.length - 1];
        }
        eq(paged, ORDERED_KEYS, 'paging with after');
        // Inside a transaction the cursor sees buffered inserts and hides buffered deletes.
        await s.transaction(async (tx) => {
          const v = asStorageTx(tx);
          await v.deleteItem('t', 'b');
          await v.setItem('t', 'ba', u32(99));
          eq(itemKeys(await v.listItems('t', { after: 'ab', limit: 3 })), ['ba', '~', '\u007f'], 'buffered delete hidden, insert shown');
        });
        eq(itemKeys(await s.listItems('t', { after: 'ab', limit: 2 })), ['ba', '~'], 'committed');
      } finally {
        await s.close();
      }
    },
  },
  {
    name: 'app items: tables are isolated (same key, tables whose names are prefixes of each other)',
    async run(f) {
      const s = await f.create(label('items-tables'));
      try {
        for (const t of ['a', 'ab', 'a\u0000', 'b']) await s.setItem(t, 'k', text(t));
        await s.setItem('ab', 'k2', text('x'));
        for (const t of ['a', 'ab', 'a\u0000', 'b']) sameBytes(await s.getItem(t, 'k'), text(t), `table ${JSON.stringify(t)}`);
        eq(itemKeys(await s.listItems('a')), ['k'], 'list of "a" holds only its own items');
        eq(itemKeys(await s.listItems('ab')), ['k', 'k2'], 'list of "ab"');
        await s.deleteItem('a', 'k');
        assert((await s.getItem('a', 'k')) === undefined, 'deleted in "a"');
        sameBytes(await s.getItem('ab', 'k'), text('ab'), 'untouched in "ab"');
        sameBytes(await s.getItem('a\u0000', 'k'), text('a\u0000'), 'untouched in "a\\0"');
        await s.transaction(async (tx) => {
          await tx.deleteItem('ab', 'k');
          await tx.setItem('b', 'k2', text('y'));
          eq(itemKeys(await tx.listItems('ab')), ['k2'], 'buffered delete stays in its table');
          eq(itemKeys(await tx.listItems('b')), ['k', 'k2'], 'buffered insert stays in its table');
          eq(await tx.listItems('a'), [], 'other tables unaffected inside the transaction');
        });
        eq(itemKeys(await s.listItems('ab')), ['k2'], 'committed delete');
        eq(itemKeys(await s.listItems('b')), ['k', 'k2'], 'committed insert');
      } finally {
        await s.close();
      }
    },
  },
  {
    name: 'app items: a throwing transaction stores none of its item (or protocol) writes',
    async run(f) {
      await withStorage(f, 'items-rollback', async (s) => {
        await s.setItem('outbox', 'm1', Uint8Array.of(1));
        await s.setItem('outbox', 'm2', Uint8Array.of(2));
        await s.setItem('contacts', 'c1', Uint8Array.of(3));
        const tables = ['outbox', 'contacts', 'new'];
        const before = await itemsSnapshot(s, tables);
        const protocolBefore = await snapshot(s);
        const boom = new Error('boom');
        await rejectsWith(
          s.transaction(async (tx) => {
            await tx.setItem('outbox', 'm1', Uint8Array.of(9));
            await tx.deleteItem('outbox', 'm2');
            await tx.setItem('outbox', 'm3', Uint8Array.of(9));
            await tx.setItem('new', 'x', Uint8Array.of(9));
            await tx.deleteItem('contacts', 'c1');
            await tx.storeSession('with:1', Uint8Array.of(9));
            eq(itemKeys(await tx.listItems('outbox')), ['m1', 'm3'], 'visible inside before the throw');
            await tick();
            throw boom;
          }),
          { is: boom },
          'the error thrown by fn',
        );
        eq(await itemsSnapshot(s, tables), before, 'items after rollback');
        eq(await snapshot(s), protocolBefore, 'protocol stores after rollback');
        // Single-operation calls are transactions of their own: a refused one changes nothing either.
        await rejectsWith(s.setItem('outbox', 'm1', new Uint8Array(APP_VALUE_MAX_BYTES + 1)), { code: 'MW_SDK_STORAGE_LIMIT' }, 'oversized value');
        eq(await itemsSnapshot(s, tables), before, 'items after a refused setItem');
        await s.setItem('outbox', 'm4', Uint8Array.of(4));
        eq(itemKeys(await s.listItems('outbox')), ['m1', 'm2', 'm4'], 'usable after rollback');
      });
    },
  },
  {
    name: 'app items: read-your-writes in a transaction, listItems merging buffered deletes, inserts and overwrites',
    async run(f) {
      const s = await f.create(label('items-ryw'));
      try {
        const keys = Array.from({ length: 10 }, (_, i) => `k${String(i + 1).padStart(2, '0')}`); // k01 … k10
        for (const k of keys) await s.setItem('q', k, text(k));
        await s.setItem('q', 'other', text('other'));
        await s.transaction(async (tx) => {
          await tx.deleteItem('q', 'k02');
          await tx.deleteItem('q', 'k03');
          await tx.deleteItem('q', 'k99'); // missing: hides nothing
          await tx.setItem('q', 'k025', text('new'));
          await tx.setItem('q', 'k05', text('changed'));
          await tx.setItem('q', 'k07', text('gone soon'));
          await tx.deleteItem('q', 'k07'); // set then delete: gone
          await tx.deleteItem('q', 'k08');
          await tx.setItem('q', 'k08', text('back')); // delete then set: present
          assert((await tx.getItem('q', 'k02')) === undefined, 'own delete');
          assert((await tx.getItem('q', 'k07')) === undefined, 'set then delete');
          sameBytes(await tx.getItem('q', 'k025'), text('new'), 'own insert');
          sameBytes(await tx.getItem('q', 'k05'), text('changed'), 'own overwrite');
          sameBytes(await tx.getItem('q', 'k08'), text('back'), 'delete then set');
          sameBytes(await tx.getItem('q', 'k01'), text('k01'), 'committed item');
          const expected = ['k01', 'k025', 'k04', 'k05', 'k06', 'k08', 'k09', 'k10'];
          eq(itemKeys(await tx.listItems('q', { prefix: 'k' })), expected, 'list merges buffered writes');
          // A limit must be filled past the committed items hidden by buffered deletes.
          for (let limit = 0; limit <= expected.length + 1; limit++) {
            eq(itemKeys(await tx.listItems('q', { prefix: 'k', limit })), expected.slice(0, limit), `limit ${limit}`);
          }
          eq(
            (await tx.listItems('q', { prefix: 'k0', limit: 4 })).map((i) => [i.key, str(i.value)]),
            [
              ['k01', 'k01'],
              ['k025', 'new'],
              ['k04', 'k04'],
              ['k05', 'changed'],
            ],
            'values in a merged list',
          );
          eq(itemKeys(await tx.listItems('q', { limit: 2 })), ['k01', 'k025'], 'no prefix, limit 2');
          eq(itemKeys(await tx.listItems('q')).at(-1), 'other', 'keys outside the prefix are still listed without one');
          // Delete everything committed: the list is exactly the buffered inserts.
          for (const k of keys) await tx.deleteItem('q', k);
          await tx.deleteItem('q', 'other');
          eq(itemKeys(await tx.listItems('q', { limit: 5 })), ['k025'], 'only buffered inserts remain');
          await tx.setItem('q', 'k01', text('again'));
        });
        eq((await s.listItems('q')).map((i) => [i.key, str(i.value)]), [['k01', 'again'], ['k025', 'new']], 'committed');
      } finally {
        await s.close();
      }
    },
  },
  {
    name: 'app items: names, sizes and options are checked; a refused call changes nothing and does not poison its transaction',
    async run(f) {
      const s = await f.create(label('items-limits'));
      const bad = 'MW_SDK_STORAGE_INVALID_ARGUMENT';
      try {
        const maxTable = 'é'.repeat(APP_TABLE_MAX_BYTES / 2); // 2 UTF-8 bytes each
        const maxKey = '😀'.repeat(APP_KEY_MAX_BYTES / 4); // 4 UTF-8 bytes each
        await s.setItem(maxTable, maxKey, Uint8Array.of(1));
        sameBytes(await s.getItem(maxTable, maxKey), Uint8Array.of(1), 'longest table and key');
        eq(itemKeys(await s.listItems(maxTable, { prefix: maxKey })), [maxKey], 'longest prefix');
        const cases: [string, () => Promise<unknown>, string][] = [
          ['empty table', () => s.setItem('', 'k', Uint8Array.of(1)), bad],
          ['empty key', () => s.setItem('t', '', Uint8Array.of(1)), bad],
          ['table one byte too long', () => s.setItem(`${maxTable}a`, 'k', Uint8Array.of(1)), bad],
          ['key one byte too long', () => s.setItem('t', `${maxKey}a`, Uint8Array.of(1)), bad],
          ['table too long (UTF-16 length)', () => s.getItem('t'.repeat(APP_TABLE_MAX_BYTES + 1), 'k'), bad],
          ['lone high surrogate key', () => s.setItem('t', 'a\ud83d', Uint8Array.of(1)), bad],
          ['lone low surrogate table', () => s.getItem('\ude00', 'k'), bad],
          ['non-string key', () => s.getItem('t', 5 as unknown as string), bad],
          ['non-string table', () => s.deleteItem(undefined as unknown as string, 'k'), bad],
          ['value not bytes', () => s.setItem('t', 'k', [1, 2] as unknown as Uint8Array), bad],
          ['value too large', () => s.setItem('t', 'k', new Uint8Array(APP_VALUE_MAX_BYTES + 1)), 'MW_SDK_STORAGE_LIMIT'],
          ['negative limit', () => s.listItems('t', { limit: -1 }), bad],
          ['fractional limit', () => s.listItems('t', { limit: 1.5 }), bad],
          ['prefix too long', () => s.listItems('t', { prefix: `${maxKey}a` }), bad],
          ['lone surrogate prefix', () => s.listItems('t', { prefix: '\ud83d' }), bad],
          ['empty table in list', () => s.listItems(''), bad],
        ];
        for (const [what, call, code] of cases) await rejectsWith(call(), { name: 'StorageError', code }, what);
        eq(await s.listItems('t'), [], 'nothing stored by refused calls');
        // A refused call inside a transaction rejects only that call: fn may handle it and commit.
        await s.transaction(async (tx) => {
          await tx.setItem('t', 'before', Uint8Array.of(1));
          await rejectsWith(tx.setItem('t', 'big', new Uint8Array(APP_VALUE_MAX_BYTES + 1)), { code: 'MW_SDK_STORAGE_LIMIT' }, 'oversized in a transaction');
          await rejectsWith(tx.getItem('', 'k'), { code: bad }, 'bad table in a transaction');
          await tx.setItem('t', 'after', Uint8Array.of(2));
        });
        eq(itemKeys(await s.listItems('t')), ['after', 'before'], 'the transaction committed its valid writes');
      } finally {
        await s.close();
      }
    },
  },
  {
    name: 'app items: survive close and reopen, alongside the protocol stores',
    needs: 'reopen',
    async run(f) {
      let { s } = await withIdentity(f, 'items-reopen', ctx);
      try {
        await s.transaction(async (tx) => {
          await tx.setItem('outbox', 'm1', Uint8Array.of(1, 2));
          await tx.setItem('contacts', '😀', text('smile'));
          await tx.setItem('contacts', 'a', new Uint8Array(0));
          await tx.storeSession('x:1', Uint8Array.of(7));
        });
        await s.deleteItem('outbox', 'gone');
        const tables = ['outbox', 'contacts'];
        const before = await itemsSnapshot(s, tables);
        s = await f.reopen!(s);
        eq(await itemsSnapshot(s, tables), before, 'items survive');
        eq(itemKeys(await s.listItems('contacts')), ['a', '😀'], 'order survives');
        sameBytes(await s.loadSession('x:1'), Uint8Array.of(7), 'session written in the same transaction survives');
        await s.setItem('outbox', 'm2', Uint8Array.of(3));
        eq(itemKeys(await s.listItems('outbox')), ['m1', 'm2'], 'writable after reopen');
      } finally {
        await s.close();
      }
    },
  },
  {
    name: 'app items: asStorageTx in an encryptMessage persist hook commits the item with the session advance, or neither',
    async run(f) {
      const [sa, sb] = [await f.create(label('alice')), await f.create(label('bob'))];
      try {
        const alice = await makeDevice(ctx, sa);
        const bob = await makeDevice(ctx, sb);
        const bobAddr = await initiateSession(ctx, alice.store, await bundleOf(ctx, bob));
        // Committed: the outbox holds exactly the bytes that were sent.
        const m1 = await encryptMessage(ctx, alice.store, bobAddr, text('one'), {
          persist: async (tx, message) => {
            assert(isStorageTx(tx), 'the crypto layer passes the SDK view through');
            await asStorageTx(tx).setItem('outbox', 'm1', message.body);
            sameBytes(await asStorageTx(tx).getItem('outbox', 'm1'), message.body, 'visible inside the hook');
          },
        });
        sameBytes(await alice.store.getItem('outbox', 'm1'), m1.body, 'stored ciphertext = sent ciphertext');
        // The hook throws after writing an item: neither the item nor the ratchet advance is stored.
        const before = await snapshot(alice.store);
        const hookError = new Error('after the item');
        await rejectsWith(
          encryptMessage(ctx, alice.store, bobAddr, text('two'), {
            persist: async (tx, message) => {
              await asStorageTx(tx).setItem('outbox', 'm2', message.body);
              await asStorageTx(tx).deleteItem('outbox', 'm1');
              throw hookError;
            },
          }),
          { is: hookError },
          'hook error rethrown',
        );
        eq(await snapshot(alice.store), before, 'no session advance');
        eq(itemKeys(await alice.store.listItems('outbox')), ['m1'], 'no item written, none deleted');
        // A refused item write (too large) makes the hook, and so the whole encryption, fail.
        await rejectsWith(
          encryptMessage(ctx, alice.store, bobAddr, text('three'), {
            persist: async (tx) => asStorageTx(tx).setItem('outbox', 'm3', new Uint8Array(APP_VALUE_MAX_BYTES + 1)),
          }),
          { code: 'MW_SDK_STORAGE_LIMIT' },
          'oversized item in the hook',
        );
        eq(await snapshot(alice.store), before, 'no session advance after a refused item');
        // The receiving side: a dedup mark committed with the decryption.
        eq(
          str(
            await decryptMessage(ctx, bob.store, alice.identity.certificate, m1, {
              persist: async (tx) => asStorageTx(tx).setItem('seen', 'm1', new Uint8Array(0)),
            }),
          ),
          'one',
          'decrypts the stored bytes',
        );
        assert((await bob.store.getItem('seen', 'm1')) !== undefined, 'dedup mark committed with the decryption');
        // A view that is not an SDK storage's is refused with a typed error, not written around.
        const foreign = new MemoryProtocolStore(alice.identity);
        await rejectsWith(
          foreign.transaction(async (tx) => asStorageTx(tx)),
          { name: 'StorageError', code: 'MW_SDK_STORAGE_INVALID_ARGUMENT' },
          'asStorageTx on another ProtocolStore',
        );
        assert(!isStorageTx({} as ProtocolStores), 'a plain object is not a storage view');
        // A view that outlived its transaction refuses item calls too.
        let leaked: ProtocolStores | undefined;
        await alice.store.transaction(async (tx) => {
          leaked = tx;
        });
        await rejectsWith(asStorageTx(leaked!).setItem('outbox', 'late', Uint8Array.of(1)), { code: 'MW_SDK_STORAGE_TRANSACTION_CLOSED' }, 'item write after commit');
        await rejectsWith(asStorageTx(leaked!).listItems('outbox'), { code: 'MW_SDK_STORAGE_TRANSACTION_CLOSED' }, 'item list after commit');
        eq(itemKeys(await alice.store.listItems('outbox')), ['m1'], 'nothing leaked');
      } finally {
        await sa.close();
        await sb.close();
      }
    },
  },
  {
    name: 'close: waits for running transactions, then refuses further use',
    async run(f) {
      const { s } = await withIdentity(f, 'close', ctx);
      const running = s.transaction(async (tx) => {
        await tick(10);
        await tx.storeSession('closing:1', Uint8Array.of(1));
        return 'finished';
      });
      await tick();
      await s.close();
      eq(await running, 'finished', 'running transaction completed');
      await rejectsWith(s.loadSession('closing:1'), { code: 'MW_SDK_STORAGE_CLOSED' }, 'read after close');
      await rejectsWith(s.storePreKey(X25519PreKeyPair.generate(ctx, 1)), { code: 'MW_SDK_STORAGE_CLOSED' }, 'write after close');
      await rejectsWith(s.getItem('t', 'k'), { code: 'MW_SDK_STORAGE_CLOSED' }, 'item read after close');
      await rejectsWith(s.setItem('t', 'k', Uint8Array.of(1)), { code: 'MW_SDK_STORAGE_CLOSED' }, 'item write after close');
      await rejectsWith(
        s.transaction(async () => undefined),
        { code: 'MW_SDK_STORAGE_CLOSED' },
        'transaction after close',
      );
      await s.close(); // idempotent
    },
  },
  {
    name: 'reopen: identity, prekeys, sessions and a conversation survive close and reopen',
    needs: 'reopen',
    async run(f) {
      let [sa, sb] = [await f.create(label('alice')), await f.create(label('bob'))];
      try {
        const alice = await makeDevice(ctx, sa);
        const bob = await makeDevice(ctx, sb);
        const bobAddr = await initiateSession(ctx, alice.store, await bundleOf(ctx, bob));
        const aliceAddr = deviceAddress(alice.identity.certificate);
        const extra = X25519PreKeyPair.generate(ctx, 77);
        await bob.store.storePreKey(extra);
        eq(str(await decryptMessage(ctx, bob.store, alice.identity.certificate, await encryptMessage(ctx, alice.store, bobAddr, text('before')))), 'before', 'before restart');
        const aliceBefore = await snapshot(alice.store);
        const bobBefore = await snapshot(bob.store);

        sa = alice.store = await f.reopen!(sa);
        sb = bob.store = await f.reopen!(sb);
        eq(await snapshot(alice.store), aliceBefore, 'alice state survives');
        eq(await snapshot(bob.store), bobBefore, 'bob state survives');
        sameBytes((await sa.getLocalIdentity()).device.signingPublicKey, alice.identity.device.signingPublicKey, 'same identity');
        sameBytes((await sb.loadPreKey(77))?.secretKey, extra.secretKey, 'same prekey');
        // The conversation continues in both directions.
        const r = await encryptMessage(ctx, bob.store, aliceAddr, text('after'));
        eq(str(await decryptMessage(ctx, alice.store, bob.identity.certificate, r)), 'after', 'reply after restart');
        const m = await encryptMessage(ctx, alice.store, bobAddr, text('and on'));
        eq(m.type, MessageType.Ratchet, 'key confirmation survived the restart');
        eq(str(await decryptMessage(ctx, bob.store, alice.identity.certificate, m)), 'and on', 'message after restart');
      } finally {
        await sa.close();
        await sb.close();
      }
    },
  },
  {
    name: 'two instances on one storage: writers are serialised across them',
    needs: 'openSecond',
    async run(f) {
      const { s } = await withIdentity(f, 'shared', ctx);
      const t = await f.openSecond!(s);
      try {
        sameBytes((await t.getLocalIdentity()).device.signingPublicKey, (await s.getLocalIdentity()).device.signingPublicKey, 'same identity');
        const inc = (st: ProtocolStorage) =>
          st.transaction(async (tx) => {
            const v = fromU32(await tx.loadSession('counter:1'));
            await tick(1);
            await tx.storeSession('counter:1', u32(v + 1));
          });
        await Promise.all(Array.from({ length: 10 }, (_, i) => inc(i % 2 === 0 ? s : t)));
        eq(fromU32(await s.loadSession('counter:1')), 10, 'no lost update across instances');
        eq(fromU32(await t.loadSession('counter:1')), 10, 'both instances see it');
      } finally {
        await t.close();
        await s.close();
      }
    },
  },
  {
    name: 'random transactions, some rolled back, always match a simple model (seeded)',
    async run(f) {
      const seed = randomSeed ?? (Date.now() ^ (Math.random() * 0x7fffffff)) >>> 0;
      try {
        await randomModelRun(f, seed, deepRuns ? 300 : 40);
      } catch (e) {
        const err = e as Error;
        err.message = `${err.message} [seed ${seed}; rerun with MW_STORAGE_SEED=${seed}]`;
        throw err;
      }
    },
  },
  {
    name: 'erase: closes the storage and erases everything it held (identity, sessions, items)',
    async run(f) {
      const { s } = await withIdentity(f, 'erase', ctx);
      await s.transaction(async (tx) => {
        await tx.setItem('outbox', 'm1', Uint8Array.of(1));
        await tx.storeSession('x:1', Uint8Array.of(7));
      });
      await s.erase();
      let refused = false;
      try {
        await s.getItem('outbox', 'm1');
      } catch (e) {
        refused = (e as { code?: string }).code === 'MW_SDK_STORAGE_CLOSED';
      }
      assert(refused, 'an erased storage refuses further use with MW_SDK_STORAGE_CLOSED');
      await s.erase(); // idempotent
    },
  },
  {
    name: 'erase: opening the same storage again finds it empty',
    needs: 'reopen',
    async run(f) {
      const { s } = await withIdentity(f, 'erase-reopen', ctx);
      await s.setItem('outbox', 'm1', Uint8Array.of(1));
      await s.storeSession('x:1', Uint8Array.of(7));
      await s.erase();
      const again = await f.reopen!(s);
      try {
        assert(!(await again.hasLocalIdentity()), 'no identity after erase');
        eq(itemKeys(await again.listItems('outbox')), [], 'no items after erase');
        assert((await again.loadSession('x:1')) === undefined, 'no session after erase');
      } finally {
        await again.close();
      }
    },
  },
];

/** Runs every case (or those matching `filter`) and reports each; never throws. */
export async function runConformance(f: StorageFactory, filter?: (name: string) => boolean): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  for (const c of conformanceCases) {
    if (filter && !filter(c.name)) continue;
    const t0 = Date.now();
    if (c.needs && !f[c.needs]) {
      results.push({ name: c.name, status: 'skipped', ms: 0 });
      continue;
    }
    try {
      await c.run(f);
      results.push({ name: c.name, status: 'passed', ms: Date.now() - t0 });
    } catch (e) {
      const err = e as { name?: string; message?: string; stack?: string };
      results.push({ name: c.name, status: 'failed', ms: Date.now() - t0, error: `${err.name}: ${err.message}\n${err.stack ?? ''}` });
    }
  }
  return results;
}

// ── Model-based random test ─────────────────────────────────────────────────────────────────

const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env ?? {};
const randomSeed = env['MW_STORAGE_SEED'] !== undefined ? Number(env['MW_STORAGE_SEED']) >>> 0 : undefined;
const deepRuns = env['MW_DEEP'] === '1';

/** xorshift32: a small seeded PRNG, so a failing sequence can be replayed from its seed. */
function prng(seed: number): (n: number) => number {
  let x = seed || 0x9e3779b9;
  return (n) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

interface Model {
  opk: Map<number, string>;
  spk: Map<number, string>;
  kem: Map<number, string>;
  sessions: Map<string, string>;
  seen: Map<string, { spk: number; kem: number }>;
  /** App items: table → key → hex value. */
  items: Map<string, Map<string, string>>;
}
const cloneModel = (m: Model): Model => ({
  opk: new Map(m.opk),
  spk: new Map(m.spk),
  kem: new Map(m.kem),
  sessions: new Map(m.sessions),
  seen: new Map(m.seen),
  items: new Map([...m.items].map(([t, v]) => [t, new Map(v)])),
});
const TABLES = ['t', 'tt'];
const ITEM_KEYS = ['a', 'a\u0000', 'ab', 'b', 'é', '\ufffd', '😀'];
const PREFIXES = ['', 'a', 'ab', 'b', '😀', 'x'];
const LIMITS = [undefined, 0, 1, 2, 5];

function modelItems(m: Model, table: string, prefix = '', limit?: number): string {
  const t = m.items.get(table) ?? new Map<string, string>();
  const keys = [...t.keys()].filter((k) => k.startsWith(prefix)).sort(byUtf8).slice(0, limit);
  return keys.map((k) => `${utf8Hex(k)}=${t.get(k)}`).join(',');
}
async function storeItems(s: StorageTx, table: string, prefix = '', limit?: number): Promise<string> {
  const items = await s.listItems(table, limit === undefined ? { prefix } : { prefix, limit });
  return items.map((i) => `${utf8Hex(i.key)}=${toHex(i.value)}`).join(',');
}
const IDS = [1, 2, 3, 4, 5, 6];
const ADDRS = ['r:1', 'r:2', 'r:3', 'r:4'];

function modelState(m: Model, digests: Uint8Array[]): string {
  const parts: string[] = [];
  for (const id of IDS) parts.push(`opk${id}=${m.opk.get(id) ?? '-'}`, `spk${id}=${m.spk.get(id) ?? '-'}`, `kem${id}=${m.kem.get(id) ?? '-'}`);
  parts.push(`opk#${m.opk.size}`, `spkl=${[...m.spk.keys()].sort().join(',')}`, `keml=${[...m.kem.keys()].sort().join(',')}`);
  for (const a of ADDRS) parts.push(`${a}=${m.sessions.get(a) ?? '-'}`);
  parts.push(`addrs=${[...m.sessions.keys()].sort().join(',')}`);
  for (const d of digests) parts.push(`seen${toHex(d)}=${m.seen.has(toHex(d))}`);
  for (const t of TABLES) {
    parts.push(`items ${t}: ${modelItems(m, t)}`);
    for (const k of ITEM_KEYS) parts.push(`${t}/${utf8Hex(k)}=${m.items.get(t)?.get(k) ?? '-'}`);
  }
  return parts.join(' ');
}

async function storeState(s: StorageTx, digests: Uint8Array[]): Promise<string> {
  const parts: string[] = [];
  for (const id of IDS) {
    const [o, p, k] = [await s.loadPreKey(id), await s.loadSignedPreKey(id), await s.loadKemPreKey(id)];
    parts.push(`opk${id}=${o ? toHex(o.secretKey) : '-'}`, `spk${id}=${p ? toHex(p.secretKey) : '-'}`, `kem${id}=${k ? `${k.lastResort}:${toHex(k.secretKey.subarray(0, 16))}` : '-'}`);
  }
  parts.push(
    `opk#${await s.countPreKeys()}`,
    `spkl=${(await s.listSignedPreKeys()).map((k) => k.id).sort().join(',')}`,
    `keml=${(await s.listKemPreKeys()).map((k) => k.id).sort().join(',')}`,
  );
  for (const a of ADDRS) {
    const r = await s.loadSession(a);
    parts.push(`${a}=${r ? `[${toHex(r)}]` : '-'}`);
  }
  parts.push(`addrs=${(await s.listSessionAddresses()).sort().join(',')}`);
  for (const d of digests) parts.push(`seen${toHex(d)}=${await s.hasSeenInitialMessage(d)}`);
  for (const t of TABLES) {
    parts.push(`items ${t}: ${await storeItems(s, t)}`);
    for (const k of ITEM_KEYS) {
      const v = await s.getItem(t, k);
      parts.push(`${t}/${utf8Hex(k)}=${v ? toHex(v) : '-'}`);
    }
  }
  return parts.join(' ');
}

async function randomModelRun(f: StorageFactory, seed: number, rounds: number): Promise<void> {
  const rnd = prng(seed);
  const { s } = await withIdentity(f, 'model', ctx);
  try {
    const x25519 = IDS.map((id) => [X25519PreKeyPair.generate(ctx, id), X25519PreKeyPair.generate(ctx, id)] as const);
    const kems = IDS.map((id) => KemPreKeyPair.generate(ctx, id, id % 2 === 0));
    const digests = [0, 1, 2, 3, 4].map((i) => Uint8Array.of(i, 0xd1, 0x6e, 0x57));
    let model: Model = { opk: new Map(), spk: new Map(), kem: new Map(), sessions: new Map(), seen: new Map(), items: new Map() };
    const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)]!;
    const kemDesc = (k: KemPreKeyPair): string => `${k.lastResort}:${toHex(k.secretKey.subarray(0, 16))}`;

    for (let round = 0; round < rounds; round++) {
      const next = cloneModel(model);
      const ops = 1 + rnd(8);
      const fail = rnd(4) === 0;
      const body = async (tx: StorageTx): Promise<void> => {
        for (let i = 0; i < ops; i++) {
          const id = pick(IDS);
          const where = `round ${round} op ${i}`;
          switch (rnd(18)) {
            case 0: {
              const k = x25519[id - 1]![rnd(2)]!;
              await tx.storePreKey(k);
              next.opk.set(id, toHex(k.secretKey));
              break;
            }
            case 1:
              await tx.removePreKey(id);
              next.opk.delete(id);
              break;
            case 2: {
              const k = x25519[id - 1]![rnd(2)]!;
              await tx.storeSignedPreKey(k);
              next.spk.set(id, toHex(k.secretKey));
              break;
            }
            case 3:
              await tx.removeSignedPreKey(id);
              next.spk.delete(id);
              break;
            case 4: {
              const k = kems[id - 1]!;
              await tx.storeKemPreKey(k);
              next.kem.set(id, kemDesc(k));
              break;
            }
            case 5:
              await tx.removeKemPreKey(id);
              next.kem.delete(id);
              break;
            case 6: {
              const a = pick(ADDRS);
              const rec = Uint8Array.from({ length: rnd(40) }, () => rnd(256));
              await tx.storeSession(a, rec);
              next.sessions.set(a, `[${toHex(rec)}]`);
              break;
            }
            case 7: {
              const a = pick(ADDRS);
              await tx.removeSession(a);
              next.sessions.delete(a);
              break;
            }
            case 8: {
              const d = pick(digests);
              const info = { signedPreKeyId: pick(IDS), kemPreKeyId: pick(IDS), seenAt: round };
              await tx.addSeenInitialMessage(d, info);
              next.seen.set(toHex(d), { spk: info.signedPreKeyId, kem: info.kemPreKeyId });
              break;
            }
            case 9: {
              const liveS = new Set(IDS.filter(() => rnd(3) > 0));
              const liveK = new Set(IDS.filter(() => rnd(3) > 0));
              let n = 0;
              for (const [k, v] of next.seen) {
                if (!liveS.has(v.spk) || !liveK.has(v.kem)) {
                  next.seen.delete(k);
                  n++;
                }
              }
              eq(await tx.pruneSeenInitialMessages(liveS, liveK), n, `${where}: prune count`);
              break;
            }
            case 10: {
              const [t, k] = [pick(TABLES), pick(ITEM_KEYS)];
              const v = Uint8Array.from({ length: rnd(12) }, () => rnd(256));
              await tx.setItem(t, k, v);
              let m = next.items.get(t);
              if (!m) next.items.set(t, (m = new Map()));
              m.set(k, toHex(v));
              break;
            }
            case 11: {
              const [t, k] = [pick(TABLES), pick(ITEM_KEYS)];
              await tx.deleteItem(t, k);
              next.items.get(t)?.delete(k);
              break;
            }
            case 12: {
              const [t, prefix, limit] = [pick(TABLES), pick(PREFIXES), pick(LIMITS)];
              eq(await storeItems(tx, t, prefix, limit), modelItems(next, t, prefix, limit), `${where}: listItems(${t}, ${JSON.stringify(prefix)}, ${limit})`);
              break;
            }
            case 13: {
              const [t, k] = [pick(TABLES), pick(ITEM_KEYS)];
              const v = await tx.getItem(t, k);
              eq(v ? toHex(v) : '-', next.items.get(t)?.get(k) ?? '-', `${where}: getItem(${t}, ${utf8Hex(k)})`);
              break;
            }
            default:
              // Read-your-writes: the view agrees with the model of this transaction.
              eq(await storeState(tx, digests), modelState(next, digests), `${where}: state inside the transaction`);
          }
        }
        if (fail) throw new Error('planned rollback');
      };
      if (rnd(5) === 0 && !fail) {
        // A burst of calls outside transaction(): each one its own transaction.
        await body({
          getLocalIdentity: () => s.getLocalIdentity(),
          loadPreKey: (i) => s.loadPreKey(i),
          storePreKey: (k) => s.storePreKey(k),
          removePreKey: (i) => s.removePreKey(i),
          countPreKeys: () => s.countPreKeys(),
          loadSignedPreKey: (i) => s.loadSignedPreKey(i),
          storeSignedPreKey: (k) => s.storeSignedPreKey(k),
          removeSignedPreKey: (i) => s.removeSignedPreKey(i),
          listSignedPreKeys: () => s.listSignedPreKeys(),
          loadKemPreKey: (i) => s.loadKemPreKey(i),
          storeKemPreKey: (k) => s.storeKemPreKey(k),
          removeKemPreKey: (i) => s.removeKemPreKey(i),
          listKemPreKeys: () => s.listKemPreKeys(),
          loadSession: (a) => s.loadSession(a),
          storeSession: (a, r) => s.storeSession(a, r),
          removeSession: (a) => s.removeSession(a),
          listSessionAddresses: () => s.listSessionAddresses(),
          hasSeenInitialMessage: (d) => s.hasSeenInitialMessage(d),
          addSeenInitialMessage: (d, i) => s.addSeenInitialMessage(d, i),
          pruneSeenInitialMessages: (a, b) => s.pruneSeenInitialMessages(a, b),
          getItem: (t, k) => s.getItem(t, k),
          setItem: (t, k, v) => s.setItem(t, k, v),
          deleteItem: (t, k) => s.deleteItem(t, k),
          listItems: (t, o) => s.listItems(t, o),
        } satisfies StorageTx);
        model = next;
      } else {
        let threw = false;
        try {
          await s.transaction(body);
        } catch (e) {
          if (!fail || (e as Error).message !== 'planned rollback') throw e;
          threw = true;
        }
        if (!threw) model = next;
      }
      eq(await storeState(s, digests), modelState(model, digests), `after round ${round} (${fail ? 'rolled back' : 'committed'})`);
    }
  } finally {
    await s.close();
  }
}

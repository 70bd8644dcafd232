// Test fixtures: a node on a temporary data directory, and devices that authenticate to it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { CryptoContext, DeviceCertificate, DeviceList, DeviceListEntry } from '@meshwhisper/crypto';
import {
  AccountKeyPair,
  DeviceFlag,
  DeviceKeyPair,
  KemPreKeyPair,
  X25519PreKeyPair,
  createContext,
  encodeDeviceCertificate,
  encodeDeviceList,
  encodeKemPreKey,
  encodeOneTimePreKey,
  encodeSignedPreKey,
  issueDeviceCertificate,
  issueDeviceList,
  mailboxIdOf,
  signAccountDeletion,
  publicOneTimePreKey,
  signKemPreKey,
  signSignedPreKey,
} from '@meshwhisper/crypto';
import type { MessageInitShape } from '@bufbuild/protobuf';
import {
  AUTH_HEADER,
  CONTENT_TYPE_PROTOBUF,
  ChallengeSchema,
  EnvelopeClass,
  AccountDeletionRequestSchema,
  KeyUploadSchema,
  PublishDeviceListSchema,
  encodeBody,
  encodeDeviceAuthHeader,
  fromBinary,
  requestDigest,
  signDeviceAuth,
} from '@meshwhisper/protocol';
import type { SendRequest } from '@meshwhisper/protocol';
import { loadConfig } from '../src/config.js';
import type { NodeConfig } from '../src/config.js';
import { createNode } from '../src/node.js';
import type { MeshWhisperNode } from '../src/node.js';
import { SqliteNodeStore } from '../src/store/sqlite-store.js';
import type { Sqlite } from '../src/store/db.js';
import type { NodeStore } from '../src/store/node-store.js';
import { LocalDeliveryBus } from '../src/mailbox/bus.js';
import { SendService } from '../src/mailbox/send.js';
import type { SendEvents, SendOptions } from '../src/mailbox/send.js';
import type { AheadDelivery } from '../src/mailbox/hub.js';
import { DEFAULT_BUCKETS, RateLimiter } from '../src/rate-limit.js';

export const ctx: CryptoContext = createContext();

export interface TestNode {
  node: MeshWhisperNode;
  dataDir: string;
  logs: string[];
  close(): Promise<void>;
}

/** A node on a fresh temporary DATA_DIR, logs captured, metrics off. */
export async function startTestNode(env: Record<string, string> = {}, overrides: Partial<NodeConfig> = {}, options: { ctx?: CryptoContext; dataDir?: string; /** NodeMetrics on (read through node.services.metrics; METRICS_PORT stays off). */ metrics?: boolean } = {}): Promise<TestNode> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'mw-node-'));
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info', METRICS_PORT: 'off', ...env }, overrides);
  const logs: string[] = [];
  const logStream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(chunk.toString());
      cb();
    },
  });
  const node = await createNode(config, { logStream, metrics: options.metrics ?? false, ...(options.ctx ? { ctx: options.ctx } : {}) });
  await node.app.ready();
  return {
    node,
    dataDir,
    logs,
    async close() {
      await node.close();
      if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface KeyUploadParts {
  signedPrekey: Uint8Array;
  oneTimePrekeys: Uint8Array[];
  kemPrekeys: Uint8Array[];
  lastResortKemPrekey: Uint8Array;
}

/** The device list each test account has signed so far (the first device is its manager). */
interface TestAccountState {
  nextIndex: number;
  entries: DeviceListEntry[];
  list: DeviceList | undefined;
}
const accounts = new WeakMap<AccountKeyPair, TestAccountState>();
const accountState = (account: AccountKeyPair): TestAccountState => {
  let st = accounts.get(account);
  if (!st) accounts.set(account, (st = { nextIndex: 0, entries: [], list: undefined }));
  return st;
};

/** PUT /v1/device-list over inject. */
export async function publishList(node: MeshWhisperNode, list: DeviceList | Uint8Array) {
  const deviceList = list instanceof Uint8Array ? list : encodeDeviceList(list);
  return node.app.inject({ method: 'PUT', url: '/v1/device-list', headers: { 'content-type': CONTENT_TYPE_PROTOBUF }, payload: Buffer.from(encodeBody(PublishDeviceListSchema, { deviceList })) });
}

/** PUT /v1/device-list over a real socket (`base` = http://host:port): the account's list naming `d`. */
export async function enlistOverHttp(base: string, d: TestDevice): Promise<void> {
  const body = Buffer.from(encodeBody(PublishDeviceListSchema, { deviceList: encodeDeviceList(d.listed()) }));
  const res = await fetch(`${base}/v1/device-list`, { method: 'PUT', headers: { 'content-type': CONTENT_TYPE_PROTOBUF }, body });
  if (res.status !== 200) throw new Error(`device list: ${res.status} ${await res.text()}`);
}

/** Enlists `d` (enlistOverHttp), then uploads its keys with a signed PUT /v1/keys: a registered device, over a real socket. */
export async function registerOverHttp(base: string, d: TestDevice): Promise<void> {
  await enlistOverHttp(base, d);
  const body = encodeBody(KeyUploadSchema, d.keyUpload(1));
  const ch = fromBinary(ChallengeSchema, new Uint8Array(await (await fetch(`${base}/v1/auth/challenge`)).arrayBuffer())).challenge;
  const header = encodeDeviceAuthHeader(signDeviceAuth(ctx, d.device, d.certificateBytes, ch, requestDigest(ctx, 'PUT', '/v1/keys', body)));
  const res = await fetch(`${base}/v1/keys`, { method: 'PUT', headers: { 'content-type': CONTENT_TYPE_PROTOBUF, [AUTH_HEADER]: header }, body: Buffer.from(body) });
  if (res.status !== 200) throw new Error(`register: ${res.status} ${await res.text()}`);
}

export class TestDevice {
  readonly certificate: DeviceCertificate;
  readonly certificateBytes: Uint8Array;
  readonly mailbox: Uint8Array;
  /** Index in the account's device list (the account's devices are numbered as they are made). */
  readonly deviceIndex: number;
  #nextId = 1;
  constructor(
    readonly account: AccountKeyPair = AccountKeyPair.generate(ctx),
    readonly device: DeviceKeyPair = DeviceKeyPair.generate(ctx),
  ) {
    this.deviceIndex = accountState(account).nextIndex++;
    this.certificate = issueDeviceCertificate(ctx, account, device, { deviceIndex: this.deviceIndex });
    this.certificateBytes = encodeDeviceCertificate(this.certificate);
    this.mailbox = mailboxIdOf(ctx, device.signingPublicKey);
  }

  /**
   * The account's device list with this device on it (a new list, one epoch up, when it was not
   * yet): what the account key signs when a device joins.
   */
  listed(): DeviceList {
    const st = accountState(this.account);
    if (!st.list || !st.entries.some((e) => e.deviceIndex === this.deviceIndex)) {
      st.entries.push({ deviceIndex: this.deviceIndex, signingKey: this.device.signingPublicKey, flags: st.entries.length === 0 ? DeviceFlag.Manager : 0 });
      const nextDeviceIndex = Math.max(st.list?.nextDeviceIndex ?? 0, ...st.entries.map((e) => e.deviceIndex + 1));
      st.list = issueDeviceList(ctx, this.account, { epoch: (st.list?.epoch ?? 0) + 1, nextDeviceIndex, devices: st.entries });
    }
    return st.list;
  }

  /** DELETE /v1/account with the account key's deletion statement over a fresh challenge (epoch: the list's, unless given). */
  async deleteAccount(node: MeshWhisperNode, options: { epoch?: number; signer?: AccountKeyPair; challenge?: Uint8Array } = {}) {
    const challenge = options.challenge ?? (await TestDevice.challenge(node));
    const epoch = options.epoch ?? accountState(this.account).list?.epoch ?? 1;
    const d = signAccountDeletion(ctx, options.signer ?? this.account, epoch, challenge);
    const payload = Buffer.from(encodeBody(AccountDeletionRequestSchema, { accountKey: this.account.publicKey, epoch: BigInt(d.epoch), challenge: d.challenge, signature: d.signature }));
    return node.app.inject({ method: 'DELETE', url: '/v1/account', headers: { 'content-type': CONTENT_TYPE_PROTOBUF }, payload });
  }

  /** Publishes the account's list naming this device (a no-op when the node has it already). */
  async enlist(node: MeshWhisperNode): Promise<void> {
    const res = await publishList(node, this.listed());
    if (res.statusCode !== 200) throw new Error(`device list: ${res.statusCode} ${res.body}`);
  }

  /** A fresh challenge from the node (over inject). */
  static async challenge(node: MeshWhisperNode): Promise<Uint8Array> {
    const res = await node.app.inject({ method: 'GET', url: '/v1/auth/challenge' });
    if (res.statusCode !== 200) throw new Error(`challenge: ${res.statusCode} ${res.body}`);
    return fromBinary(ChallengeSchema, res.rawPayload).challenge;
  }

  /** The mw-auth header value for METHOD path (body digest over `body` if given). */
  async authHeader(node: MeshWhisperNode, method: string, path: string, body?: Uint8Array, signer: DeviceKeyPair = this.device): Promise<string> {
    const challenge = await TestDevice.challenge(node);
    return encodeDeviceAuthHeader(signDeviceAuth(ctx, signer, this.certificateBytes, challenge, requestDigest(ctx, method, path, body)));
  }

  /** A complete first upload: signed prekey, `n` one-time prekeys, `n` KEM prekeys, last-resort KEM. */
  keyUpload(n = 3, options: { signer?: DeviceKeyPair } = {}): KeyUploadParts {
    const signer = options.signer ?? this.device;
    const spk = signSignedPreKey(ctx, signer, X25519PreKeyPair.generate(ctx, this.#nextId++));
    const otks = Array.from({ length: n }, () => encodeOneTimePreKey(publicOneTimePreKey(X25519PreKeyPair.generate(ctx, this.#nextId++))));
    const kems = Array.from({ length: n }, () => encodeKemPreKey(signKemPreKey(ctx, signer, KemPreKeyPair.generate(ctx, this.#nextId++, false))));
    const lr = signKemPreKey(ctx, signer, KemPreKeyPair.generate(ctx, this.#nextId++, true));
    return { signedPrekey: encodeSignedPreKey(spk), oneTimePrekeys: otks, kemPrekeys: kems, lastResortKemPrekey: encodeKemPreKey(lr) };
  }

  /** Puts the device on its account's list (enlist), then PUT /v1/keys with a valid signature; returns the inject response. */
  async register(node: MeshWhisperNode, upload: MessageInitShape<typeof KeyUploadSchema> = this.keyUpload(), options: { enlist?: boolean } = {}) {
    if (options.enlist !== false) await this.enlist(node);
    const body = encodeBody(KeyUploadSchema, upload);
    return node.app.inject({
      method: 'PUT',
      url: '/v1/keys',
      headers: { 'content-type': CONTENT_TYPE_PROTOBUF, [AUTH_HEADER]: await this.authHeader(node, 'PUT', '/v1/keys', body) },
      payload: Buffer.from(body),
    });
  }
}

export const proto = { 'content-type': CONTENT_TYPE_PROTOBUF };

/** xorshift32: a reproducible stream of uint32 values from `seed` (seeded fuzzing and kill points). */
export function xorshift32(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/** Buckets opened wide so functional tests are not throttled; attack tests override specific ones. */
export function generousLimits(except: readonly string[] = []): string {
  const names = ['http', 'ws-upgrade', 'ws-frame', 'auth', 'send-token', 'send-first-contact', 'send-first-contact-target', 'prekey-claim', 'prekey-claim-target', 'directory-write', 'username-lookup', 'username-write', 'blob-upload', 'blob-download', 'archive', 'link', 'link-create', 'ready'];
  return names.filter((n) => !except.includes(n)).map((n) => `${n}=100000:1000000`).join(',');
}

/** The SQLite handle behind a test node's store: tests of the SQLite implementation inspect its tables. */
export function sqliteOf(node: MeshWhisperNode): Sqlite {
  const store = node.services.store;
  if (!(store instanceof SqliteNodeStore)) throw new TypeError('sqliteOf: the node does not use the SQLite store');
  return store.database;
}

/**
 * store.enqueue behind a gate: while closed, each group commit waits (`held` counts them); `open()`
 * lets them go to the real store, `fail()` makes them fail as a full disk would.
 */
export class CommitGate {
  #waiting: { go: () => void; stop: (e: Error) => void }[] = [];
  closed = false;
  held = 0;
  constructor(store: NodeStore) {
    const real = store.enqueue.bind(store);
    store.enqueue = async (items, limits) => {
      if (this.closed) {
        this.held++;
        await new Promise<void>((go, stop) => this.#waiting.push({ go, stop }));
      }
      return real(items, limits);
    };
  }
  close(): void {
    this.closed = true;
  }
  open(): void {
    this.closed = false;
    for (const w of this.#waiting.splice(0)) w.go();
  }
  fail(): void {
    this.closed = false;
    for (const w of this.#waiting.splice(0)) w.stop(Object.assign(new Error('SQLITE_FULL: database or disk is full'), { code: 'SQLITE_FULL' }));
  }
}

/** A SendService on `store` alone (no node), with rate limits and quotas that never refuse: unit tests of its grouping, backlog and delivery ahead (`aheadTo`). */
export function looseSendService(store: NodeStore, events: SendEvents = {}, options: SendOptions = {}, aheadTo?: AheadDelivery): SendService {
  const buckets = Object.fromEntries(Object.keys(DEFAULT_BUCKETS).map((b) => [b, { rate: 1e9, burst: 1e9 }]));
  return new SendService(ctx, store, new LocalDeliveryBus(), new RateLimiter({ buckets }), { maxMessages: 1e9, maxBytes: 1e12, firstContactMaxMessages: 10 }, events, aheadTo, options);
}

/** A durable token-lane SendRequest with a `size`-byte payload, for looseSendService. */
export function durableRequest(size: number): SendRequest {
  return { mailboxId: new Uint8Array(32).fill(1), payload: new Uint8Array(size), class: EnvelopeClass.DURABLE, deliveryToken: new Uint8Array(32).fill(2) } as SendRequest;
}

// Test fixtures: a node on a temporary data directory, and devices that authenticate to it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { CryptoContext, DeviceCertificate } from '@meshwhisper/crypto';
import {
  AccountKeyPair,
  DeviceKeyPair,
  KemPreKeyPair,
  X25519PreKeyPair,
  createContext,
  encodeDeviceCertificate,
  encodeKemPreKey,
  encodeOneTimePreKey,
  encodeSignedPreKey,
  issueDeviceCertificate,
  mailboxIdOf,
  publicOneTimePreKey,
  signKemPreKey,
  signSignedPreKey,
} from '@meshwhisper/crypto';
import type { MessageInitShape } from '@bufbuild/protobuf';
import {
  AUTH_HEADER,
  CONTENT_TYPE_PROTOBUF,
  ChallengeSchema,
  KeyUploadSchema,
  encodeBody,
  encodeDeviceAuthHeader,
  fromBinary,
  requestDigest,
  signDeviceAuth,
} from '@meshwhisper/protocol';
import { loadConfig } from '../src/config.js';
import type { NodeConfig } from '../src/config.js';
import { createNode } from '../src/node.js';
import type { MeshWhisperNode } from '../src/node.js';
import { SqliteNodeStore } from '../src/store/sqlite-store.js';
import type { Sqlite } from '../src/store/db.js';

export const ctx: CryptoContext = createContext();

export interface TestNode {
  node: MeshWhisperNode;
  dataDir: string;
  logs: string[];
  close(): Promise<void>;
}

/** A node on a fresh temporary DATA_DIR, logs captured, metrics off. */
export async function startTestNode(env: Record<string, string> = {}, overrides: Partial<NodeConfig> = {}, options: { ctx?: CryptoContext; dataDir?: string } = {}): Promise<TestNode> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'mw-node-'));
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info', METRICS_PORT: 'off', ...env }, overrides);
  const logs: string[] = [];
  const logStream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(chunk.toString());
      cb();
    },
  });
  const node = await createNode(config, { logStream, metrics: false, ...(options.ctx ? { ctx: options.ctx } : {}) });
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

export class TestDevice {
  readonly certificate: DeviceCertificate;
  readonly certificateBytes: Uint8Array;
  readonly mailbox: Uint8Array;
  #nextId = 1;
  constructor(
    readonly account: AccountKeyPair = AccountKeyPair.generate(ctx),
    readonly device: DeviceKeyPair = DeviceKeyPair.generate(ctx),
  ) {
    this.certificate = issueDeviceCertificate(ctx, account, device);
    this.certificateBytes = encodeDeviceCertificate(this.certificate);
    this.mailbox = mailboxIdOf(ctx, device.signingPublicKey);
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

  /** PUT /v1/keys with a valid signature; returns the inject response. */
  async register(node: MeshWhisperNode, upload: MessageInitShape<typeof KeyUploadSchema> = this.keyUpload()) {
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

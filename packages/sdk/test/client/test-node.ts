/**
 * A real node for SDK end-to-end tests: its own SQLite data directory, a real listener on
 * 127.0.0.1, every rate-limit bucket opened wide for the loopback address (dozens of clients
 * register and send within seconds), and its log output captured for metadata scans.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { DeviceKeyPair, createContext, issueDeviceCertificate } from '@meshwhisper/crypto';
import { createNode, loadConfig } from '@meshwhisper/node';
import type { CreateNodeOptions, MeshWhisperNode } from '@meshwhisper/node';
import type { MeshWhisper } from '../../src/index.js';
import type { ProtocolStorage } from '../../src/storage/types.js';

const BUCKETS = ['http', 'ws-upgrade', 'ws-frame', 'auth', 'send-token', 'send-first-contact', 'send-first-contact-target', 'prekey-claim', 'prekey-claim-target', 'directory-write', 'username-lookup', 'username-write', 'blob-upload', 'blob-download', 'archive', 'link', 'link-create'];

/** RATE_LIMITS value that lets the loopback tests through every bucket. */
export const OPEN_RATE_LIMITS = BUCKETS.map((b) => `${b}=100000:1000000`).join(',');

export interface E2eNode {
  readonly node: MeshWhisperNode;
  readonly url: string;
  readonly dataDir: string;
  /** Everything the node logged so far. */
  readonly logs: string[];
  close(): Promise<void>;
}

/** `env` overrides the settings above; `options` are createNode's (e.g. `push` for a local push service). */
export async function startE2eNode(env: Record<string, string> = {}, options: CreateNodeOptions = {}): Promise<E2eNode> {
  const work = mkdtempSync(join(tmpdir(), 'mw-sdk-node-'));
  const dataDir = join(work, 'node');
  const logs: string[] = [];
  const node = await createNode(
    loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, METRICS_PORT: 'off', LOG_LEVEL: 'info', RATE_LIMITS: OPEN_RATE_LIMITS, USERNAME_NAMESPACES: 'test:signed', ...env }),
    {
      metrics: false,
      ...options,
      logStream: new Writable({
        write(chunk: Buffer, _e, cb) {
          logs.push(chunk.toString());
          cb();
        },
      }),
    },
  );
  const { port } = await node.listen();
  return {
    node,
    url: `http://127.0.0.1:${port}`,
    dataDir,
    logs,
    async close() {
      await node.close();
      rmSync(work, { recursive: true, force: true });
    },
  };
}

/**
 * Gives `storage` the identity of a new device of `primary`'s account: the primary (a manager)
 * puts its key on the account's device list, certifies it with the index it got, and — like a
 * manager-to-manager link — hands over the account seed. MeshWhisper.create on `storage` then
 * fetches the list and registers. (QR linking between real devices is docs/api.md §Devices.)
 */
export async function addAccountDevice(primary: MeshWhisper, storage: ProtocolStorage): Promise<void> {
  const ctx = createContext();
  const device = DeviceKeyPair.generate(ctx);
  const { deviceIndex } = await primary.addDevice(device.signingPublicKey, { manager: true });
  await storage.setLocalIdentity({ certificate: issueDeviceCertificate(ctx, primary.account!, device, { deviceIndex }), device });
  await storage.setItem('mw.self', 'account-seed', primary.account!.exportSeed());
}

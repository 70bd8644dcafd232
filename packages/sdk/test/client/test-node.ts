/**
 * A real node for SDK end-to-end tests: its own SQLite data directory, a real listener on
 * 127.0.0.1, every rate-limit bucket opened wide for the loopback address (dozens of clients
 * register and send within seconds), and its log output captured for metadata scans.
 *
 * With MW_E2E_TARGET=cluster (set by the suites in packages/sdk/test/cluster/), the same call starts
 * three instances on PostgreSQL + NATS instead (a fresh schema and subject prefix, a shared
 * DATA_DIR) behind a round-robin load balancer: `url` is the balancer's, so every client's
 * requests and sockets are spread over the instances, and `node` is instance 1 (its store is the
 * shared one).
 *
 * With MW_E2E_TARGET=workers (set by the suites in packages/sdk/test/workers/), it starts the built
 * `meshwhisper-node` with WORKERS=2 instead: a primary and two worker processes on one SQLite file,
 * the port shared (node:cluster hands connections to the workers in turn, so senders and
 * recipients sit on different workers). `node` is not in this process: touching it throws.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { DeviceKeyPair, createContext, issueDeviceCertificate } from '@meshwhisper/crypto';
import { createNode, loadConfig } from '@meshwhisper/node';
import type { CreateNodeOptions, MeshWhisperNode } from '@meshwhisper/node';
import { it } from 'vitest';
import { RoundRobinBalancer } from '../../../node/test/cluster/balancer.js';
import { startCluster } from '../../../node/test/cluster/harness.js';
import { buildNodeDist } from '../../../node/test/build-dist.js';
import { startWorkersNode } from '../../../node/test/workers/harness.js';
import type { MeshWhisper } from '../../src/index.js';
import type { ProtocolStorage } from '../../src/storage/types.js';

const BUCKETS = ['http', 'ws-upgrade', 'ws-frame', 'auth', 'send-token', 'send-first-contact', 'send-first-contact-target', 'prekey-claim', 'prekey-claim-target', 'directory-write', 'username-lookup', 'username-write', 'blob-upload', 'blob-download', 'archive', 'link', 'link-create'];

/** RATE_LIMITS value that lets the loopback tests through every bucket. */
export const OPEN_RATE_LIMITS = BUCKETS.map((b) => `${b}=100000:1000000`).join(',');

/** Which deployment the SDK end-to-end suites run against (see above). */
export const E2E_TARGET: 'single' | 'cluster' | 'workers' = process.env.MW_E2E_TARGET === 'cluster' ? 'cluster' : process.env.MW_E2E_TARGET === 'workers' ? 'workers' : 'single';

/** `it` for a case about the single in-process SQLite node itself (its files, its restart): not run on the cluster or workers targets. */
export const itSingleNode = E2E_TARGET === 'single' ? it : it.skip;

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
  if (E2E_TARGET === 'cluster') return startE2eCluster(env, options);
  if (E2E_TARGET === 'workers') return startE2eWorkers(env, options);
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

async function startE2eWorkers(env: Record<string, string>, options: CreateNodeOptions): Promise<E2eNode> {
  if (Object.keys(options).length > 0) throw new Error('the workers target runs the node as processes: createNode options (push test CA, …) cannot reach it');
  await buildNodeDist();
  const n = await startWorkersNode({ workers: 2, env: { LOG_LEVEL: 'info', RATE_LIMITS: OPEN_RATE_LIMITS, USERNAME_NAMESPACES: 'test:signed', ...env } });
  const notHere = new Proxy({} as MeshWhisperNode, {
    get() {
      throw new Error('MW_E2E_TARGET=workers: the node runs in other processes (use its HTTP API at `url`)');
    },
  });
  return { node: notHere, url: n.url, dataDir: n.dataDir, logs: n.lines, close: () => n.close() };
}

async function startE2eCluster(env: Record<string, string>, options: CreateNodeOptions): Promise<E2eNode> {
  const logs: string[] = [];
  const cluster = await startCluster(3, {
    env: { LOG_LEVEL: 'info', RATE_LIMITS: OPEN_RATE_LIMITS, USERNAME_NAMESPACES: 'test:signed', SHUTDOWN_GRACE_SECONDS: '1', ...env },
    nodeOptions: options,
    logs,
  });
  const lb = await RoundRobinBalancer.start(cluster.instances.map((i) => i.port));
  return {
    node: cluster.instances[0]!.node,
    url: lb.url,
    dataDir: cluster.dataDir,
    logs,
    async close() {
      await lb.close();
      await cluster.close();
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

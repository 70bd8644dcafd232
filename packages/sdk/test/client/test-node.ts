/**
 * A real node for SDK end-to-end tests: its own SQLite data directory, a real listener on
 * 127.0.0.1, every rate-limit bucket opened wide for the loopback address (dozens of clients
 * register and send within seconds), and its log output captured for metadata scans.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createNode, loadConfig } from '@meshwhisper/node';
import type { CreateNodeOptions, MeshWhisperNode } from '@meshwhisper/node';

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

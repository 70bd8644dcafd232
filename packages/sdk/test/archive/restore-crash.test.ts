/**
 * Restore killed mid-way with SIGKILL (a real child process over a real SQLite file), then run
 * again on the same file: the account ends up with exactly one new device, the history holds each
 * message once, and the restored device receives. Kill points: after the archive was opened
 * (nothing stored yet), after the identity was stored (device list not published), after the list
 * was published (keys not uploaded).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeDeviceList, toHex } from '@meshwhisper/crypto';
import { DeviceListRecordSchema, fromBinary } from '@meshwhisper/protocol';
import { MeshWhisper, memoryStorage, openSqliteStorage } from '../../src/index.js';
import type { E2eNode } from '../client/test-node.js';
import { startE2eNode } from '../client/test-node.js';
import type { LineChild } from '../line-child.js';
import { spawnLineChild } from '../line-child.js';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mw-sdk-restore-crash-'));
const bundle = join(dir, 'restore-child.mjs');
let t: E2eNode;

beforeAll(async () => {
  t = await startE2eNode();
  await build({
    entryPoints: [fileURLToPath(new URL('./restore-child.ts', import.meta.url))],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['better-sqlite3', 'ws'],
    alias: {
      '@meshwhisper/crypto': join(repo, 'packages/crypto/src/index.ts'),
      '@meshwhisper/protocol': join(repo, 'packages/protocol/src/index.ts'),
    },
    logLevel: 'error',
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
}, 60_000);
afterAll(async () => {
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

type Child = LineChild;

function run(args: string[]): Child {
  return spawnLineChild(bundle, args, { env: { ...process.env, MW_REPO: repo }, timeoutMs: 60_000 });
}

async function deviceList(accountKey: Uint8Array) {
  const res = await fetch(`${t.url}/v1/accounts/${toHex(accountKey)}/device-list`);
  return decodeDeviceList(fromBinary(DeviceListRecordSchema, new Uint8Array(await res.arrayBuffer())).deviceList);
}

describe('crash: a restore killed mid-way, run again over the same SQLite file', () => {
  it('at each step: one new device on the account, each message once, and the restored device receives', async () => {
    const fast = { receiptDelay: { minDelayMs: 0, maxDelayMs: 0 } };
    const a = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...fast });
    const carol = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage(), ...fast });
    for (const text of ['one', 'two', 'three']) {
      const got = carol.once('message', (m) => m.text === text);
      await a.sendText({ accountKey: carol.accountKey }, text);
      await got;
    }
    const { recoveryKey } = await a.enableArchive({ history: true });

    for (const block of ['GET /v1/accounts', 'PUT /v1/device-list', 'PUT /v1/keys']) {
      const before = await deviceList(a.accountKey);
      const db = join(dir, `${block.replace(/\W+/g, '-')}.db`);
      const first = run([t.url, db, recoveryKey!, block]);
      await first.until((l) => typeof l['blocked'] === 'string');
      first.proc.kill('SIGKILL');
      await first.exited;
      const second = run([t.url, db, recoveryKey!]);
      const done = await second.until((l) => typeof l['restored'] === 'number');
      expect(await second.exited).toBe(0);
      expect(done['history'], block).toEqual(['one', 'two', 'three']);
      const after = await deviceList(a.accountKey);
      expect(after.devices.length, block).toBe(before.devices.length + 1);
      expect(after.devices.at(-1)!.deviceIndex, block).toBe(done['restored']);

      // The restored device, opened again over its file, receives the account's next message.
      const restored = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await openSqliteStorage({ path: db }), ...fast });
      const got = restored.once('message', (m) => m.text === `after ${block}`);
      await carol.sendText({ accountKey: a.accountKey }, `after ${block}`);
      await got;
      expect((await restored.history(carol.accountKey)).map((m) => m.text)).toEqual(['one', 'two', 'three', `after ${block}`]);
      await restored.close();
    }
    await Promise.all([a.close(), carol.close()]);
  }, 180_000);
});

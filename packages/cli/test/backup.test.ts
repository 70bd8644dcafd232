// `meshwhisper backup` / `restore` wrap the node's backup module with paths from the node's .env.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, removeDir, startNode, tempDir, writeEnv } from './helpers.js';
import type { RunningNode } from './helpers.js';

describe('backup and restore', () => {
  let node: RunningNode;
  let dir: string;
  let envFile: string;
  beforeAll(async () => {
    dir = tempDir();
    node = await startNode();
    // A relative DATA_DIR resolves against the .env's folder, BACKUP_DIR against DATA_DIR, as in the node.
    envFile = writeEnv(dir, { DATA_DIR: node.dataDir, BACKUP_DIR: 'snapshots', BACKUP_RETENTION: '2' });
  });
  afterAll(async () => {
    await node.close();
    removeDir(dir);
    removeDir(node.dataDir);
  });

  it('backs up the running node into BACKUP_DIR (relative to DATA_DIR), lists, applies BACKUP_RETENTION', async () => {
    // Before the first backup the folder does not exist: `list` says so instead of printing nothing.
    const none = await cli('backup', 'list', '--env', envFile);
    expect(none.code, none.err).toBe(0);
    expect(none.out).toContain(`no backups: ${join(node.dataDir, 'snapshots')} does not exist`);
    for (let i = 0; i < 3; i++) {
      const r = await cli('backup', '--env', envFile);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(new RegExp(`backup written: ${join(node.dataDir, 'snapshots')}/meshwhisper-\\d{8}T\\d{9}Z-[0-9a-f]{8}\\.sqlite3`));
    }
    const files = readdirSync(join(node.dataDir, 'snapshots')).filter((f) => f.endsWith('.sqlite3'));
    expect(files).toHaveLength(2);
    const list = await cli('backup', 'list', '--env', envFile);
    expect(list.code).toBe(0);
    expect(list.out.split('\n')).toHaveLength(2);
    const keep = await cli('backup', '--env', envFile, '--keep', '1');
    expect(keep.code).toBe(0);
    expect(keep.out).toMatch(/pruned old backup/);
  });

  it('restore refuses an existing database without --force (exit 1), moves it aside with --force', async () => {
    const b = await cli('backup', '--env', envFile);
    const file = /backup written: (\S+)/.exec(b.out)?.[1] ?? '';
    expect(existsSync(file)).toBe(true);
    await node.close();
    const refused = await cli('restore', file, '--env', envFile);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/MW_RESTORE_TARGET_EXISTS/);
    const forced = await cli('restore', file, '--env', envFile, '--force');
    expect(forced.code, forced.err).toBe(0);
    expect(forced.out).toMatch(/moved aside: .*meshwhisper\.sqlite3\.pre-restore-/);
    expect(forced.out).toMatch(/integrity_check ok/);
    // The node starts on the restored database.
    const again = await startNode({}, node.dataDir);
    await again.close();
  });

  it('usage errors exit 2', async () => {
    expect((await cli('restore', '--env', envFile)).code).toBe(2);
    expect((await cli('backup', 'restore', 'x', '--env', envFile)).code).toBe(2);
    expect((await cli('backup', '--env', envFile, '--keep', 'zero')).code).toBe(2);
    const missing = await cli('backup', '--env', join(dir, 'nope.env'));
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/MW_CLI_NOT_FOUND/);
  });
});

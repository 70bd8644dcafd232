import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { toHex } from '@meshwhisper/crypto';
import { CONFIG_SCHEMA, NodeConfigError, loadConfig } from '../src/config.js';
import { loadOrCreateNodeKey } from '../src/node-key.js';
import { ctx } from './helpers.js';

describe('config', () => {
  it('has a default for every setting: PORT 8080, DATA_DIR ./data, 30 days retention', () => {
    const c = loadConfig({});
    expect(c.port).toBe(8080);
    expect(c.dataDir).toBe(join(process.cwd(), 'data'));
    expect(c.retentionMs).toBe(30 * 24 * 3600 * 1000);
    expect(c.usernameNamespaces.get('default')).toBe('signed');
    expect(c.trustProxy).toBe(false);
  });

  it('rejects invalid values naming the variable', () => {
    expect(() => loadConfig({ PORT: 'eighty' })).toThrow(NodeConfigError);
    expect(() => loadConfig({ PORT: '70000' })).toThrow(/PORT/);
    expect(() => loadConfig({ USERNAME_NAMESPACES: 'x:anything' })).toThrow(/USERNAME_NAMESPACES/);
    expect(() => loadConfig({ RATE_LIMITS: 'nope=1:1' })).toThrow(/RATE_LIMITS/);
    expect(() => loadConfig({ AHEAD_HOLD_MS: '201' })).toThrow(/AHEAD_HOLD_MS/);
    expect(loadConfig({}).aheadHoldMs).toBe(40);
    expect(() => loadConfig({ METRICS_TOKEN: 'short' })).toThrow(/METRICS/);
  });

  it('cluster settings: STORE=postgres needs DATABASE_URL, NATS_URL needs STORE=postgres; URLs and names are checked', () => {
    expect(loadConfig({}).store).toBe('sqlite');
    expect(() => loadConfig({ STORE: 'postgres' })).toThrow(/DATABASE_URL.*needs DATABASE_URL/);
    expect(() => loadConfig({ NATS_URL: 'nats://127.0.0.1:4222' })).toThrow(/NATS_URL/);
    expect(() => loadConfig({ STORE: 'mysql' })).toThrow(/STORE/);
    expect(() => loadConfig({ STORE: 'postgres', DATABASE_URL: 'mysql://x' })).toThrow(/DATABASE_URL/);
    expect(() => loadConfig({ STORE: 'postgres', DATABASE_URL: 'postgres://h/db', DATABASE_SCHEMA: 'Bad;' })).toThrow(/DATABASE_SCHEMA/);
    expect(() => loadConfig({ STORE: 'postgres', DATABASE_URL: 'postgres://h/db', NATS_URL: 'http://x' })).toThrow(/NATS_URL/);
    expect(() => loadConfig({ STORE: 'postgres', DATABASE_URL: 'postgres://h/db', NATS_SUBJECT_PREFIX: 'a b' })).toThrow(/NATS_SUBJECT_PREFIX/);
    const c = loadConfig({ STORE: 'postgres', DATABASE_URL: 'postgres://mw:secret@db:5432/mw', NATS_URL: 'nats://nats:4222, nats://nats2:4222' });
    expect(c).toMatchObject({ store: 'postgres', databaseSchema: 'public', databasePoolSize: 10, natsSubjectPrefix: 'mw' });
  });


  it('docs/self-hosting.md documents every environment variable', () => {
    const doc = readFileSync(new URL('../../../docs/self-hosting.md', import.meta.url), 'utf8');
    for (const s of Object.values(CONFIG_SCHEMA)) expect(doc, `${s.env} missing from docs/self-hosting.md`).toContain(`\`${s.env}\``);
  });
});

describe('node key', () => {
  it('is generated once (mode 0600) and reloaded; inspect and JSON show only the public key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mw-key-'));
    try {
      const a = loadOrCreateNodeKey(ctx, dir);
      expect(a.created).toBe(true);
      expect(statSync(join(dir, 'node-key')).mode & 0o777).toBe(0o600);
      const b = loadOrCreateNodeKey(ctx, dir);
      expect(b.created).toBe(false);
      expect(toHex(b.key.publicKey)).toBe(toHex(a.key.publicKey));
      const seedHex = readFileSync(join(dir, 'node-key'), 'utf8').trim().split('\n')[1]!;
      const { inspect } = await import('node:util');
      for (const text of [inspect(a.key), JSON.stringify(a.key), String(a.key)]) {
        expect(text).toContain(toHex(a.key.publicKey));
        expect(text).not.toContain(seedHex);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

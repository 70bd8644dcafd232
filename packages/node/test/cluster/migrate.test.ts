// Growing from one SQLite node to a cluster: migrate-to-postgres on a node with queued mail,
// prekeys, usernames, media, an archive key and a push endpoint — nothing lost, sequences go on,
// and a cluster instance on the same DATA_DIR serves it all. Refusals leave nothing behind.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EnvelopeClass, SendRequestSchema, encodeBody } from '@meshwhisper/protocol';
import { toHex } from '@meshwhisper/crypto';
import { DATABASE_FILE } from '../../src/node.js';
import { MigrateErrorCode, migrateSqliteToPostgres } from '../../src/store/sqlite-to-pg.js';
import { TestDevice, generousLimits, proto, startTestNode } from '../helpers.js';
import { WsClient } from '../ws-client.js';
import { PG_TEST_URL, dropSchema, freshSchema, pgQuery } from '../store/pg-test-db.js';
import { startCluster } from './harness.js';

/** A well-formed media id (22 base64url characters). */
const MEDIA_ID = 'AAAAAAAAAAAAAAAAAAAAAA';

describe('migrate-to-postgres', () => {
  it('moves a node with queued mail, keys, usernames, media, archive and push to PostgreSQL; a cluster instance on the same DATA_DIR serves it', async () => {
    const t = await startTestNode({ RATE_LIMITS: generousLimits() });
    const schema = await freshSchema();
    try {
      const alice = new TestDevice();
      const bob = new TestDevice();
      expect((await alice.register(t.node, alice.keyUpload(5))).statusCode).toBe(200);
      expect((await bob.register(t.node)).statusCode).toBe(200);
      for (const text of ['one', 'two', 'three']) {
        const r = await t.node.app.inject({ method: 'POST', url: '/v1/send', headers: proto, payload: Buffer.from(encodeBody(SendRequestSchema, { mailboxId: bob.mailbox, payload: new TextEncoder().encode(text), class: EnvelopeClass.DURABLE })) });
        expect(r.statusCode).toBe(200);
      }
      const store = t.node.services.store;
      expect(await store.setUsername('default', 'alice', undefined, alice.account.publicKey, 5)).toBe(true);
      expect(await store.addMedia({ id: MEDIA_ID, size: 3, expiresAt: Date.now() + 86_400_000, uploader: alice.mailbox, window: 7, budgetBytes: 1000 })).toBe(true);
      writeFileSync(join(t.dataDir, 'media', MEDIA_ID), 'abc');
      expect(await store.registerArchiveKey(alice.account.publicKey, new Uint8Array(32).fill(9), new Uint8Array([1, 2]))).toBe('ok');
      expect(await store.setPushTarget(bob.mailbox, { kind: 'fcm', registrationToken: 'fcm-token' }, 5)).toBe(true);
      const before = { otk: await store.preKeyCounts(alice.mailbox), stats: await store.mailboxStats(bob.mailbox), nodeKey: toHex(t.node.nodeKey.publicKey) };

      // A running node holds DATA_DIR: refused, nothing written.
      await expect(migrateSqliteToPostgres({ dataDir: t.dataDir, sqliteFile: join(t.dataDir, DATABASE_FILE), connectionString: PG_TEST_URL, schema })).rejects.toMatchObject({ code: 'MW_DATA_DIR_LOCKED' });
      await t.node.close();

      const r = await migrateSqliteToPostgres({ dataDir: t.dataDir, sqliteFile: join(t.dataDir, DATABASE_FILE), connectionString: PG_TEST_URL, schema });
      expect(r.tables).toMatchObject({ devices: 2, messages: 3, usernames: 1, media: 1, media_budget: 1, archives: 1, push_registrations: 1, one_time_prekeys: 8, kem_prekeys: 8 });
      // Twice: the target is not empty any more — refused as a whole.
      await expect(migrateSqliteToPostgres({ dataDir: t.dataDir, sqliteFile: join(t.dataDir, DATABASE_FILE), connectionString: PG_TEST_URL, schema })).rejects.toMatchObject({ code: MigrateErrorCode.TARGET_NOT_EMPTY });
      expect((await pgQuery<{ n: string }>(`SELECT count(*)::text AS n FROM ${schema}.messages`))[0]!.n).toBe('3');

      // A cluster instance on the migrated schema and the same DATA_DIR (node key, blobs).
      const c = await startCluster(1, { env: { DATA_DIR: t.dataDir, DATABASE_SCHEMA: schema } });
      try {
        const n = c.instances[0]!;
        const s = n.node.services.store;
        expect(s.kind).toBe('postgres');
        expect(toHex(n.node.nodeKey.publicKey)).toBe(before.nodeKey);
        expect(await s.preKeyCounts(alice.mailbox)).toEqual(before.otk);
        expect(await s.mailboxStats(bob.mailbox)).toEqual(before.stats);
        expect((await s.username('default', 'alice'))?.ownerKey).toEqual(alice.account.publicKey);
        expect(await s.media(MEDIA_ID)).toMatchObject({ id: MEDIA_ID, size: 3 });
        expect(await s.mediaBudgetUsed(alice.mailbox, 7)).toBe(3);
        expect(await s.archiveKeySource(alice.account.publicKey)).toEqual(new Uint8Array([1, 2]));
        expect(await s.pushTarget(bob.mailbox)).toEqual({ kind: 'fcm', registrationToken: 'fcm-token' });
        const media = await fetch(`${n.url}/v1/media/${MEDIA_ID}`);
        expect(media.status).toBe(200);
        expect(await media.text()).toBe('abc');
        // Bob logs in to the instance and gets his queued mail, in order, then new mail with the next seq.
        const ws = await WsClient.device(n.port, bob);
        try {
          const f = await ws.nextKind('deliver');
          expect(f.body.value.envelopes.map((e) => new TextDecoder().decode(e.payload))).toEqual(['one', 'two', 'three']);
          const next = await s.enqueue([{ id: new Uint8Array(16).fill(4), mailbox: bob.mailbox, payload: new Uint8Array([4]), receivedAt: 1, tokenHash: undefined }], { maxMessages: 100, maxBytes: 1e6, firstContactMaxMessages: 10 });
          expect(next[0]).toMatchObject({ ok: true, envelope: { seq: 4 } });
        } finally {
          ws.terminate();
        }
      } finally {
        await c.close();
      }
    } finally {
      await t.close().catch(() => undefined);
      await dropSchema(schema).catch(() => undefined);
    }
  });

  it('a missing source is a typed error', async () => {
    const schema = await freshSchema();
    const dir = mkdtempSync(join(tmpdir(), 'mw-migrate-'));
    try {
      await expect(migrateSqliteToPostgres({ dataDir: dir, sqliteFile: join(dir, DATABASE_FILE), connectionString: PG_TEST_URL, schema })).rejects.toMatchObject({ code: MigrateErrorCode.NO_SOURCE });
      expect(existsSync(join(dir, DATABASE_FILE))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await dropSchema(schema);
    }
  });
});

// The PostgreSQL NodeStore on the machine's real server: the same conformance suite as SQLite
// (with two instances — two pools, as two node processes have — on one schema), plus what only
// this store has: migrations under a lock, schema version checks, cross-instance sweeps and leases.
import { describe, expect, it } from 'vitest';
import { PG_MIGRATIONS } from '../../src/store/pg-migrations.js';
import { PgNodeStore, PgStoreErrorCode } from '../../src/store/pg-store.js';
import type { MailboxLimits } from '../../src/store/node-store.js';
import { storeConformance } from './conformance.js';
import { PG_TEST_URL, dropSchema, freshSchema, pgQuery } from './pg-test-db.js';
import { randomBytes } from 'node:crypto';

storeConformance(
  {
    name: 'PostgreSQL',
    fresh: freshSchema,
    open: (schema, { now }) => PgNodeStore.open({ connectionString: PG_TEST_URL, schema, now, poolSize: 4 }),
    destroy: dropSchema,
  },
  { sharedAcrossInstances: true },
);

const bytes = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
const LIMITS: MailboxLimits = { maxMessages: 100_000, maxBytes: 1e12, firstContactMaxMessages: 100 };

async function withSchema(fn: (schema: string) => Promise<void>): Promise<void> {
  const schema = await freshSchema();
  try {
    await fn(schema);
  } finally {
    await dropSchema(schema);
  }
}

describe('PostgreSQL specifics', () => {
  it('three instances opening one empty schema at once apply each migration exactly once', () =>
    withSchema(async (schema) => {
      const stores = await Promise.all([0, 1, 2].map(() => PgNodeStore.open({ connectionString: PG_TEST_URL, schema, poolSize: 2 })));
      try {
        const rows = await pgQuery<{ version: number }>(`SELECT version FROM ${schema}.mw_schema_migrations ORDER BY version`);
        expect(rows.map((r) => r.version)).toEqual(PG_MIGRATIONS.map((m) => m.version));
      } finally {
        for (const s of stores) await s.close();
      }
    }));

  it('refuses a schema written by a newer node, with a typed error', () =>
    withSchema(async (schema) => {
      await (await PgNodeStore.open({ connectionString: PG_TEST_URL, schema })).close();
      await pgQuery(`INSERT INTO ${schema}.mw_schema_migrations (version, name) VALUES (999, 'from the future')`);
      await expect(PgNodeStore.open({ connectionString: PG_TEST_URL, schema })).rejects.toMatchObject({ code: PgStoreErrorCode.SCHEMA_NEWER });
      await expect(PgNodeStore.open({ connectionString: PG_TEST_URL, schema: 'Bad; DROP' })).rejects.toMatchObject({ code: PgStoreErrorCode.INVALID });
    }));

  it('an unreachable server fails open with a connection error, not a hang', async () => {
    const started = Date.now();
    await expect(PgNodeStore.open({ connectionString: 'postgres://postgres@127.0.0.1:1/test', connectTimeoutMs: 2000 })).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('three instances writing many mailboxes at once: dense per-mailbox seqs, counters equal to the rows, sweeps never double count', () =>
    withSchema(async (schema) => {
      let clock = 1_000_000;
      const stores = await Promise.all([0, 1, 2].map(() => PgNodeStore.open({ connectionString: PG_TEST_URL, schema, poolSize: 3, now: () => clock })));
      try {
        const boxes: Uint8Array[] = [];
        for (let i = 0; i < 4; i++) {
          const mailbox = bytes(32);
          const accountKey = bytes(32);
          await stores[0]!.publishDeviceList({ accountKey, epoch: 1, encoded: bytes(60), expectedEpoch: undefined, listedMailboxes: [mailbox], now: 1 });
          await stores[0]!.publishKeys({ mailbox, accountKey, certificate: bytes(10), issuedAt: 1, signedPreKey: undefined, lastResortKemPreKey: undefined, oneTimePreKeys: [], kemPreKeys: [], now: 1, deviceListEpoch: 1 });
          boxes.push(mailbox);
        }
        // Each group touches several mailboxes in different orders (lock-order test).
        const writes = [];
        for (let round = 0; round < 15; round++) {
          for (const [i, s] of stores.entries()) {
            const order = i % 2 ? [...boxes].reverse() : boxes;
            writes.push(s.enqueue(order.flatMap((mailbox) => [0, 1].map(() => ({ id: bytes(16), mailbox, payload: bytes(50), receivedAt: clock, tokenHash: undefined }))), LIMITS));
          }
        }
        const outcomes = (await Promise.all(writes)).flat();
        expect(outcomes.every((o) => o.ok)).toBe(true);
        for (const mailbox of boxes) {
          const all = await stores[1]!.fetch(mailbox, 0, 10_000, 1e12);
          expect(all.map((e) => e.seq)).toEqual(Array.from({ length: 90 }, (_, i) => i + 1));
          expect(await stores[2]!.mailboxStats(mailbox)).toEqual({ messages: 90, bytes: 4500, tokenless: 90, gapExpired: 0, gapEvicted: 0 });
        }
        clock += 10_000;
        const sweeps = await Promise.all(stores.map((s) => s.expireEnvelopes(clock, 10)));
        expect(sweeps.reduce((n, r) => n + r.envelopes, 0)).toBe(360);
        for (const mailbox of boxes) expect(await stores[0]!.mailboxStats(mailbox)).toEqual({ messages: 0, bytes: 0, tokenless: 0, gapExpired: 90, gapEvicted: 0 });
      } finally {
        for (const s of stores) await s.close();
      }
    }));

  it('a lease runs out and another instance takes it; its holder renews it; release hands it over at once', () =>
    withSchema(async (schema) => {
      const a = await PgNodeStore.open({ connectionString: PG_TEST_URL, schema, poolSize: 1 });
      const b = await PgNodeStore.open({ connectionString: PG_TEST_URL, schema, poolSize: 1 });
      try {
        expect(await a.tryLease('sweep', 'a', 300)).toBe(true);
        expect(await a.tryLease('sweep', 'a', 300)).toBe(true);
        expect(await b.tryLease('sweep', 'b', 300)).toBe(false);
        await new Promise((r) => setTimeout(r, 400));
        expect(await b.tryLease('sweep', 'b', 60_000)).toBe(true);
        expect(await a.tryLease('sweep', 'a', 300)).toBe(false);
        await b.releaseLease('sweep', 'b');
        expect(await a.tryLease('sweep', 'a', 300)).toBe(true);
      } finally {
        await a.close();
        await b.close();
      }
    }));

  it('stores sealed payloads without compression and keeps no sender column', () =>
    withSchema(async (schema) => {
      await (await PgNodeStore.open({ connectionString: PG_TEST_URL, schema })).close();
      const cols = await pgQuery<{ column_name: string }>(`SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'messages' ORDER BY column_name`, [schema]);
      expect(cols.map((c) => c.column_name)).toEqual(['id', 'mailbox', 'payload', 'received_at', 'seq', 'with_token']);
    }));
});

// The test PostgreSQL server (127.0.0.1:5432, trust auth; .ci/run starts it if down). Every test
// works in a schema of its own, made fresh and dropped afterwards.
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** MW_TEST_DATABASE_URL overrides the machine's default server. */
export const PG_TEST_URL = process.env.MW_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: PG_TEST_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** A new, empty schema's name. */
export async function freshSchema(): Promise<string> {
  const name = `mw_t_${randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(`CREATE SCHEMA ${name}`));
  return name;
}

export async function dropSchema(name: string): Promise<void> {
  if (!/^mw_t_[0-9a-f]{12}$/.test(name)) throw new Error(`not a test schema: ${name}`);
  await admin((c) => c.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`));
}

/** Runs one statement on the test server (as the superuser) and returns its rows. */
export async function pgQuery<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> {
  return admin(async (c) => (await c.query<R>(text, values)).rows);
}

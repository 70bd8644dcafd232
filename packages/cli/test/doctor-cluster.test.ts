// `meshwhisper doctor` on a cluster's settings (STORE=postgres): PostgreSQL and NATS reachability,
// primary/replica, replication lag and round trips, against the machine's real services and a
// cluster instance; unreachable and unresolvable engines FAIL with a fix; no password is printed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { check, doctorJson, freePort, removeDir, tempDir, writeEnv } from './helpers.js';
import { MACHINE_NATS_URL, startCluster } from '../../node/test/cluster/harness.js';
import type { TestCluster } from '../../node/test/cluster/harness.js';

const PASSWORD = 'doctor-must-not-print-this-7f3a';

let cluster: TestCluster;
let dir: string;
beforeAll(async () => {
  cluster = await startCluster(1);
  dir = tempDir();
});
afterAll(async () => {
  await cluster?.close();
  removeDir(dir);
});

const pgUrl = (port = 5432, host = '127.0.0.1'): string => `postgres://postgres:${PASSWORD}@${host}:${port}/test`;

describe('doctor on a cluster', () => {
  it('PostgreSQL (a primary, its lag) and NATS (round trip, JetStream) reachable: OK', async () => {
    const n = cluster.instances[0]!;
    const env = writeEnv(dir, { PORT: String(n.port), METRICS_PORT: 'off', STORE: 'postgres', DATABASE_URL: pgUrl(), DATABASE_SCHEMA: cluster.schema, NATS_URL: MACHINE_NATS_URL, NATS_SUBJECT_PREFIX: cluster.prefix });
    const { report, err } = await doctorJson(n.url, '--env', env);
    const pg = check(report, 'postgres');
    expect(pg.status, pg.message).toBe('ok');
    expect(pg.message).toMatch(/127\.0\.0\.1:5432\/test: PostgreSQL 1\d.*primary.*(no streaming replica|replica)/);
    const nats = check(report, 'nats');
    expect(nats.status, nats.message).toBe('ok');
    expect(nats.message).toMatch(/round trip [\d.]+ ms, JetStream on/);
    expect(check(report, 'ready').status).toBe('ok');
    expect(JSON.stringify(report) + err).not.toContain(PASSWORD);
  });

  it('engines down or named by compose service names: FAIL with the fix, still no password', async () => {
    const n = cluster.instances[0]!;
    const closed = await freePort();
    const down = writeEnv(dir, { PORT: String(n.port), METRICS_PORT: 'off', STORE: 'postgres', DATABASE_URL: pgUrl(closed), NATS_URL: `nats://127.0.0.1:${closed}` }, 'down.env');
    const r1 = await doctorJson(n.url, '--env', down);
    expect(r1.code).toBe(1);
    expect(check(r1.report, 'postgres')).toMatchObject({ status: 'fail', fix: expect.stringMatching(/start PostgreSQL/) });
    expect(check(r1.report, 'nats')).toMatchObject({ status: 'fail', fix: expect.stringMatching(/nats-server -js/) });
    const compose = writeEnv(dir, { PORT: String(n.port), METRICS_PORT: 'off', STORE: 'postgres', DATABASE_URL: pgUrl(5432, 'postgres.invalid'), NATS_URL: 'nats://nats.invalid:4222' }, 'compose.env');
    const r2 = await doctorJson(n.url, '--env', compose);
    expect(check(r2.report, 'postgres')).toMatchObject({ status: 'fail', fix: expect.stringMatching(/compose network/) });
    expect(check(r2.report, 'nats')).toMatchObject({ status: 'fail', fix: expect.stringMatching(/compose network/) });
    expect(JSON.stringify(r1.report) + JSON.stringify(r2.report) + r1.err + r2.err).not.toContain(PASSWORD);
  });
});

// kill -9 of one cluster instance under sustained load, with SDK clients (docs/scale-out.md §Failure
// behaviour): three instances as separate processes (the built node) on one PostgreSQL schema and
// NATS, behind a round-robin load balancer; six clients each sending a stream of texts to the next.
// The instance holding the most device sockets is SIGKILLed mid-load and taken out of the rotation.
// Its clients reconnect through the balancer to the others; every send the SDK acknowledged
// (sendText resolved) reaches its recipient; none reaches the app twice (one 'message' event per
// id, one history entry per id) — even though sends cut off mid-request are sent again and may be
// stored twice.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toHex } from '@meshwhisper/crypto';
import { buildNodeDist } from '../../../node/test/build-dist.js';
import { RoundRobinBalancer } from '../../../node/test/cluster/balancer.js';
import { MACHINE_NATS_URL, startInstanceProcess } from '../../../node/test/cluster/harness.js';
import type { ProcessInstance } from '../../../node/test/cluster/harness.js';
import { PG_TEST_URL, dropSchema, freshSchema } from '../../../node/test/store/pg-test-db.js';
import type { ConnectionState } from '../../src/index.js';
import { MeshWhisper, memoryStorage } from '../../src/index.js';
import { OPEN_RATE_LIMITS } from './test-node.js';

const CLIENTS = 6;
const PER_SENDER = 25;
/** The kill happens once this many sends were acknowledged: well inside the load. */
const KILL_AFTER = 40;

let schema: string;
let dataDir: string;
const instances: ProcessInstance[] = [];
let lb: RoundRobinBalancer | undefined;
const clients: MeshWhisper[] = [];

beforeAll(async () => {
  await buildNodeDist();
  schema = await freshSchema();
  dataDir = mkdtempSync(join(tmpdir(), 'mw-sdk-failover-'));
}, 240_000);

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  await lb?.close();
  for (const i of instances) await i.kill();
  if (schema) await dropSchema(schema);
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('kill -9 of an instance under load, SDK clients', () => {
  it('its clients reconnect to the others; every acknowledged message arrives; none reaches the app twice', async () => {
    const prefix = `mwk${randomBytes(5).toString('hex')}`;
    const env = {
      DATA_DIR: dataDir,
      PORT: '0',
      HOST: '127.0.0.1',
      METRICS_PORT: 'off',
      LOG_LEVEL: 'info',
      RATE_LIMITS: OPEN_RATE_LIMITS,
      USERNAME_NAMESPACES: 'test:signed',
      STORE: 'postgres',
      DATABASE_URL: PG_TEST_URL,
      DATABASE_SCHEMA: schema,
      DATABASE_POOL_SIZE: '4',
      NATS_URL: MACHINE_NATS_URL,
      NATS_SUBJECT_PREFIX: prefix,
    };
    // One instance first (schema migrations), then the other two.
    instances.push(await startInstanceProcess(env));
    instances.push(...(await Promise.all([startInstanceProcess(env), startInstanceProcess(env)])));
    const balancer = await RoundRobinBalancer.start(instances.map((i) => i.port));
    lb = balancer;

    for (let k = 0; k < CLIENTS; k++) {
      clients.push(await MeshWhisper.create({ node: balancer.url, namespace: 'test', storage: await memoryStorage(), receiptDelay: { minDelayMs: 0, maxDelayMs: 0 } }));
    }
    await until('every client online', () => clients.every((c) => c.connectionState === 'online'));
    const states = clients.map(() => [] as ConnectionState[]);
    clients.forEach((c, k) => c.on('connection', (s) => states[k]!.push(s)));
    /** Per receiving client: message id → 'message' events seen. */
    const seen = clients.map(() => new Map<string, number>());
    clients.forEach((c, k) =>
      c.on('message', (m) => {
        if (!m.outgoing) seen[k]!.set(m.id, (seen[k]!.get(m.id) ?? 0) + 1);
      }),
    );
    const peer = (k: number): MeshWhisper => clients[(k + 1) % CLIENTS]!;

    // Sessions first (first contact claims prekeys over HTTP), so the load is the steady state.
    const warm = clients.map((_, k) => peer(k).once('message', (m) => m.text === `hello from ${k}`, 30_000));
    await Promise.all(clients.map((c, k) => c.sendText(peer(k).mailboxId, `hello from ${k}`)));
    await Promise.all(warm);

    /** Per receiving client: ids the SDK acknowledged to their senders. */
    const acknowledged = clients.map(() => new Set<string>());
    const rejected: unknown[] = [];
    let acked = 0;
    let victim = -1;
    let socketsOnVictim = 0;
    let killed: Promise<void> | undefined;
    const sender = async (k: number): Promise<void> => {
      const to = (k + 1) % CLIENTS;
      for (let n = 0; n < PER_SENDER; n++) {
        try {
          const { id } = await clients[k]!.sendText(peer(k).mailboxId, `${k}:${n}`);
          acknowledged[to]!.add(id);
          acked++;
        } catch (e) {
          rejected.push(e);
        }
        if (acked >= KILL_AFTER && !killed) {
          // The instance with the most device sockets: its health check fails, then it dies hard.
          const counts = instances.map((_, i) => balancer.openTunnels(i));
          victim = counts.indexOf(Math.max(...counts));
          socketsOnVictim = counts[victim]!;
          balancer.down(victim);
          killed = instances[victim]!.kill();
        }
      }
    };
    await Promise.all(clients.map((_, k) => sender(k)));
    await killed;
    // Said with every assertion below, so that a failure in CI can be read without a rerun.
    const context = (): string => JSON.stringify({ victim, socketsOnVictim, gatewayErrors: balancer.gatewayErrors, acked, rejected: rejected.map(String), states: states.map((s) => s.join('>')) });
    expect(victim).toBeGreaterThanOrEqual(0);
    expect(socketsOnVictim).toBeGreaterThan(0);
    if (process.env.MW_DEBUG_FAILOVER) console.log({ victim, socketsOnVictim, gatewayErrors: balancer.gatewayErrors, rejected: rejected.map(String) });
    expect(rejected, context()).toEqual([]);
    expect(acked, context()).toBe(CLIENTS * PER_SENDER);

    // The killed instance's clients noticed and came back online through the others.
    await until('every client online again', () => clients.every((c) => c.connectionState === 'online')).catch((e: unknown) => {
      throw new Error(`${String(e)}: ${context()}`);
    });
    const reconnected = states.filter((s) => s.some((x) => x !== 'online') && s.at(-1) === 'online').length;
    expect(reconnected, context()).toBeGreaterThanOrEqual(socketsOnVictim);
    expect(balancer.openTunnels(victim), context()).toBe(0);

    // Every acknowledged message arrived…
    await until('every acknowledged message delivered', () => acknowledged.every((ids, k) => [...ids].every((id) => seen[k]!.has(id))), 90_000).catch((e: unknown) => {
      const missing = acknowledged.map((ids, k) => [...ids].filter((id) => !seen[k]!.has(id)).length);
      throw new Error(`${String(e)}: missing per client ${JSON.stringify(missing)}; ${context()}`);
    });
    // …and a little more time for a duplicate to show up (none may): every client's queue drains.
    await Promise.all(clients.map((c) => c.idle()));
    for (let k = 0; k < CLIENTS; k++) {
      const twice = [...seen[k]!].filter(([, n]) => n > 1);
      expect(twice, context()).toEqual([]);
      // The app's history: each message exactly once.
      const from = clients[(k + CLIENTS - 1) % CLIENTS]!;
      const history = await clients[k]!.history(from.accountKey, { limit: 1000 });
      const ids = history.filter((m) => !m.outgoing).map((m) => m.id);
      expect(ids.length).toBe(new Set(ids).size);
      for (const id of acknowledged[k]!) expect(ids).toContain(id);
      expect(toHex(from.accountKey)).not.toBe(toHex(clients[k]!.accountKey));
    }
  }, 240_000);
});

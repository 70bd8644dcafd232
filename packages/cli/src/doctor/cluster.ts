/**
 * Doctor checks of a cluster's engines (STORE=postgres in the node's settings): PostgreSQL and
 * NATS reachable from where doctor runs, PostgreSQL a writable primary with its replication lag,
 * NATS with JetStream on and its round trip. Compose service names (postgres, nats) resolve only
 * inside the compose network: then the fix says where to run doctor.
 */
import { describePgUrl, probeNats, probePostgres } from '@meshwhisper/node';
import type { NodeEnv } from '../node-env.js';
import type { CheckResult } from './report.js';

/** Replication lag (ms) above which doctor warns: a failover would lose that much. */
export const REPLICA_LAG_WARN_MS = 10_000;
/** Round trip to NATS (ms) above which doctor warns: every cross-instance delivery pays it. */
export const NATS_RTT_WARN_MS = 50;

const unresolved = (code: string): boolean => code === 'ENOTFOUND' || code === 'EAI_AGAIN';

export async function checkPostgres(env: NodeEnv, timeoutMs: number): Promise<CheckResult> {
  const id = 'postgres';
  const url = env.value('DATABASE_URL');
  const where = describePgUrl(url);
  const r = await probePostgres(url, timeoutMs);
  if (!r.ok) {
    if (unresolved(r.code)) return { id, status: 'fail', message: `${where}: the host does not resolve from here (${r.code})`, fix: 'a compose service name resolves only inside the compose network: run doctor there (docker compose run), or point DATABASE_URL at a reachable host' };
    return { id, status: 'fail', message: `${where}: ${r.code} ${r.message}`, fix: 'start PostgreSQL (docker compose up -d postgres), check DATABASE_URL (user, password, database) and pg_hba.conf' };
  }
  const v = r.value;
  if (v.inRecovery) return { id, status: 'fail', message: `${where}: PostgreSQL ${v.version} is a read-only replica`, fix: 'DATABASE_URL must name the primary (after a failover: the promoted one)' };
  const lag = v.replicaLagMs === undefined ? (v.replicas > 0 ? `${v.replicas} replica(s), no lag reported` : 'no streaming replica') : `${v.replicas} replica(s), replay lag ${Math.round(v.replicaLagMs)} ms`;
  const msg = `${where}: PostgreSQL ${v.version}, primary, round trip ${v.roundTripMs.toFixed(1)} ms, ${lag}`;
  if (v.replicaLagMs !== undefined && v.replicaLagMs > REPLICA_LAG_WARN_MS) return { id, status: 'warn', message: msg, fix: 'the replica falls behind: a failover now would lose that much acknowledged mail; check its disk and network' };
  return { id, status: 'ok', message: msg };
}

export async function checkNats(env: NodeEnv, timeoutMs: number): Promise<CheckResult> {
  const id = 'nats';
  const servers = env.value('NATS_URL');
  if (servers === '') return { id, status: 'warn', message: 'STORE=postgres without NATS_URL: instances cannot tell each other about new mail', fix: 'run ONE instance, or set NATS_URL (nats://host:4222, JetStream on) for several' };
  const r = await probeNats(servers, timeoutMs);
  if (!r.ok) {
    if (unresolved(r.code) || /ENOTFOUND|EAI_AGAIN/.test(r.message)) return { id, status: 'fail', message: `${servers}: the host does not resolve from here`, fix: 'a compose service name resolves only inside the compose network: run doctor there, or point NATS_URL at a reachable host' };
    return { id, status: 'fail', message: `${servers}: ${r.code} ${r.message}`, fix: 'start NATS with JetStream (nats-server -js); meanwhile the instances fall back to reading the store every second' };
  }
  const v = r.value;
  const msg = `${servers}: ${v.server}, round trip ${v.roundTripMs.toFixed(1)} ms, JetStream ${v.jetstream ? 'on' : 'OFF'}`;
  if (!v.jetstream) return { id, status: 'fail', message: msg, fix: 'start nats-server with -js: push wakes are claimed once per burst in a JetStream bucket (without it every instance may ring)' };
  if (v.roundTripMs > NATS_RTT_WARN_MS) return { id, status: 'warn', message: msg, fix: 'NATS is far from this host: every delivery between instances pays the round trip; run it close to the nodes' };
  return { id, status: 'ok', message: msg };
}

/**
 * Reachability probes of a cluster's engines, for `meshwhisper doctor` (packages/cli): PostgreSQL
 * (connect, server version, primary or replica, replication lag) and NATS (connect, round trip,
 * JetStream on). They never return or throw the connection URL's password.
 */
import pg from 'pg';
import { connect } from 'nats';

export type ProbeOutcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly code: string; readonly message: string };

/** Host, port and database of a postgres:// URL, without user or password (for messages). */
export function describePgUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '5432'}${u.pathname}`;
  } catch {
    return '(unparseable DATABASE_URL)';
  }
}

const failure = (e: unknown, secret?: string): { ok: false; code: string; message: string } => {
  const code = (e as { code?: unknown } | undefined)?.code;
  let message = e instanceof Error ? e.message : String(e);
  if (secret) message = message.split(secret).join('***');
  return { ok: false, code: typeof code === 'string' ? code : 'ERROR', message };
};

export interface PgProbe {
  readonly version: string;
  /** True on a replica (hot standby): the node needs the primary. */
  readonly inRecovery: boolean;
  /** The largest replay lag of the primary's streaming replicas (ms), if any replicate. */
  readonly replicaLagMs: number | undefined;
  readonly replicas: number;
  readonly roundTripMs: number;
}

export async function probePostgres(url: string, timeoutMs: number): Promise<ProbeOutcome<PgProbe>> {
  let password: string | undefined;
  try {
    password = decodeURIComponent(new URL(url).password) || undefined;
  } catch {
    password = undefined;
  }
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, statement_timeout: timeoutMs, application_name: 'meshwhisper-doctor' });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const started = performance.now();
    const r = await client.query<{ v: string; rec: boolean }>('SELECT current_setting(\'server_version\') AS v, pg_is_in_recovery() AS rec');
    const roundTripMs = performance.now() - started;
    const rep = await client.query<{ n: string; lag: string | null }>(
      'SELECT count(*)::text AS n, (extract(epoch FROM max(replay_lag)) * 1000)::text AS lag FROM pg_stat_replication',
    );
    const lag = rep.rows[0]?.lag;
    return { ok: true, value: { version: r.rows[0]!.v, inRecovery: r.rows[0]!.rec, replicas: Number(rep.rows[0]?.n ?? 0), replicaLagMs: lag === null || lag === undefined ? undefined : Number(lag), roundTripMs } };
  } catch (e) {
    return failure(e, password);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export interface NatsProbe {
  readonly server: string;
  readonly roundTripMs: number;
  /** JetStream answers for this account (the push-wake bucket needs it). */
  readonly jetstream: boolean;
}

export async function probeNats(servers: string, timeoutMs: number): Promise<ProbeOutcome<NatsProbe>> {
  let nc;
  try {
    nc = await connect({ servers: servers.split(',').map((s) => s.trim()), timeout: timeoutMs, reconnect: false, name: 'meshwhisper-doctor' });
  } catch (e) {
    return failure(e);
  }
  try {
    const roundTripMs = await nc.rtt();
    let jetstream = true;
    try {
      await (await nc.jetstreamManager({ timeout: timeoutMs })).getAccountInfo();
    } catch {
      jetstream = false;
    }
    return { ok: true, value: { server: `${nc.info?.server_name ?? 'nats'} ${nc.info?.version ?? ''}`.trim(), roundTripMs, jetstream } };
  } catch (e) {
    return failure(e);
  } finally {
    await nc.close().catch(() => undefined);
  }
}

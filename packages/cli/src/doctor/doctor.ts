/**
 * `meshwhisper doctor`: walks the layers between a client and the node, outermost first — DNS,
 * TCP, TLS, HTTP (/health, /ready), the node's clock, the WebSocket upgrade through whatever
 * proxy is in front — then the node's own settings (metrics exposure, push credentials) and, on
 * the node's host, its data directory, disk and backups. A layer that is down turns the layers
 * behind it into SKIP, so the first FAIL is the one to fix.
 */
import { rootCertificates } from 'node:tls';
import { ANONYMOUS_SOCKET_PATH, loadConfig } from '@meshwhisper/node';
import type { NodeConfig } from '@meshwhisper/node';
import { CERT_EXPIRY_WARN_DAYS, CLOCK_SKEW_FAIL_MS, CLOCK_SKEW_WARN_MS, DEFAULT_CHECK_TIMEOUT_MS } from '../constants.js';
import { CliError, CliErrorCode } from '../errors.js';
import { withProgress } from '../io.js';
import type { CliIo } from '../io.js';
import { backupDirOf } from '../node-env.js';
import type { NodeEnv } from '../node-env.js';
import { checkBackups, checkDataDir, checkDisk } from './local.js';
import { checkNats, checkPostgres } from './cluster.js';
import { httpGet, isLoopback, resolveHost, tcpConnect, tlsInspect, wsUpgrade } from './probe.js';
import type { HttpResponse, ProbeError } from './probe.js';
import { checkApns, checkFcm, checkWebPush } from './push.js';
import { summarize } from './report.js';
import type { CheckResult, DoctorReport } from './report.js';

export interface DoctorOptions {
  /** Node URL (http, https, ws, wss); default http://127.0.0.1:$PORT from the env. */
  readonly url?: string;
  readonly env: NodeEnv;
  /** The node's DATA_DIR on this host: enables the data-dir, disk and backups checks. */
  readonly dataDir?: string;
  readonly timeoutMs?: number;
  /** This machine's clock (tests inject a skewed one). */
  readonly now?: () => number;
  /** For progress lines on long checks. */
  readonly io?: CliIo;
  /** PEM of a private CA to trust in addition to Node's default set (internal deployments). */
  readonly ca?: string;
}

/** How HTTPS probes verify the server: with extra CAs, or not at all once the TLS check has failed. */
interface Trust {
  readonly insecure: boolean;
  readonly ca: readonly string[] | undefined;
}

/** Parses the target; ws/wss map to http/https, a bare host gets https (http on loopback). */
export function normalizeTarget(raw: string): URL {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `${isLoopback(raw.split(/[:/]/)[0] ?? '') ? 'http' : 'https'}://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new CliError(CliErrorCode.INVALID_VALUE, `${JSON.stringify(raw)} is not a URL`);
  }
  if (url.protocol === 'ws:') url.protocol = 'http:';
  else if (url.protocol === 'wss:') url.protocol = 'https:';
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(CliErrorCode.INVALID_VALUE, `unsupported scheme ${url.protocol} (use https://, wss://, http:// or ws://)`);
  // Credentials in the URL are never sent by doctor, and never printed in its report.
  url.username = '';
  url.password = '';
  url.search = '';
  url.hash = '';
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

const portOf = (url: URL): number => (url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80);
/** A path of the node under the target (a reverse proxy may serve the node under a prefix). */
const under = (base: URL, path: string, protocol?: string): URL => {
  const u = new URL(path.replace(/^\//, ''), base);
  if (protocol) u.protocol = protocol;
  return u;
};

function jsonStatus(r: HttpResponse): string | undefined {
  try {
    const v: unknown = JSON.parse(r.body);
    return v && typeof v === 'object' && typeof (v as { status?: unknown }).status === 'string' ? (v as { status: string }).status : undefined;
  } catch {
    return undefined;
  }
}

const isProxyError = (status: number): boolean => status === 502 || status === 503 || status === 504;

function connectFailure(id: string, url: URL, error: ProbeError, env: NodeEnv): CheckResult {
  const where = `${url.hostname}:${portOf(url)}`;
  if (error.code === 'ECONNREFUSED') {
    const configured = env.known ? env.value('PORT') : undefined;
    const hint =
      isLoopback(url.hostname) && configured !== undefined && configured !== String(portOf(url))
        ? `the node's .env says PORT=${configured}: wrong port? try ${url.protocol}//${url.hostname}:${configured}`
        : 'start the node (`docker compose up -d`, or `meshwhisper-node` with the .env loaded) and check the port: nothing listens there';
    return { id, status: 'fail', message: `connection refused at ${where}: the node is down or this is the wrong port`, fix: hint };
  }
  if (error.code === 'ETIMEDOUT') return { id, status: 'fail', message: `no answer from ${where} (${error.message})`, fix: 'a firewall or security group drops the traffic, or the host is down: open the port (443 for the proxy) and check the host' };
  if (error.code === 'EHOSTUNREACH' || error.code === 'ENETUNREACH') return { id, status: 'fail', message: `${where} is unreachable (${error.code})`, fix: 'check routing/VPN and that the address in DNS is the server\'s' };
  return { id, status: 'fail', message: `cannot connect to ${where}: ${error.code} ${error.message}`, fix: 'check that the node (or its proxy) runs and listens on this address' };
}

function httpFailure(id: string, error: ProbeError, url: URL): CheckResult {
  if (error.code === 'ETIMEDOUT') return { id, status: 'fail', message: `${url.pathname}: ${error.message}`, fix: 'the connection opens but nothing answers: the node is overloaded or hung, or a proxy waits on a dead upstream; check the node\'s log' };
  if (/^HPE_/.test(error.code) || error.code === 'ECONNRESET') {
    const tlsHint = url.protocol === 'http:' ? ' — if this port speaks TLS, use https://' : '';
    return { id, status: 'fail', message: `${url.pathname}: the server did not answer with HTTP (${error.code})${tlsHint}`, fix: 'wrong port: point the URL at the node (default 8080) or at the proxy in front of it' };
  }
  if (error.code === 'EPROTO' || /wrong version number|WRONG_VERSION_NUMBER/i.test(error.message)) return { id, status: 'fail', message: `${url.pathname}: the port does not speak TLS (${error.code})`, fix: 'use http:// for a node without a proxy, or fix the TLS listener of the proxy' };
  return { id, status: 'fail', message: `${url.pathname}: ${error.code} ${error.message}`, fix: 'check the node and the proxy in front of it' };
}

async function checkTls(url: URL, timeoutMs: number, now: number, ca: readonly string[] | undefined): Promise<CheckResult> {
  const id = 'tls';
  if (url.protocol !== 'https:') {
    if (isLoopback(url.hostname)) return { id, status: 'skip', message: 'plain HTTP on a loopback address (fine for local development)' };
    return { id, status: 'warn', message: `plain HTTP to ${url.hostname}: messages are end-to-end encrypted, but metadata and auth proofs travel in the clear`, fix: 'put a TLS-terminating proxy in front (Caddy gets certificates automatically) and use https:// / wss:// in clients' };
  }
  const r = await tlsInspect(url.hostname, portOf(url), timeoutMs, ca);
  if (!r.ok) {
    if (r.error.code === 'EPROTO' || /wrong version number|WRONG_VERSION_NUMBER|packet length too long/i.test(r.error.message)) {
      return { id, status: 'fail', message: `${url.hostname}:${portOf(url)} does not speak TLS`, fix: 'this port serves plain HTTP: use http:// here, or configure TLS on the proxy that owns this port' };
    }
    return { id, status: 'fail', message: `TLS handshake failed: ${r.error.code} ${r.error.message}`, fix: 'check the proxy\'s TLS configuration (certificate and key files, protocols)' };
  }
  const cert = r.certificate;
  if (!cert) return { id, status: 'fail', message: 'the server sent no certificate', fix: 'configure a certificate on the TLS listener' };
  const daysLeft = Math.floor((cert.validTo.getTime() - now) / 86_400_000);
  const until = cert.validTo.toISOString().slice(0, 10);
  const renew = 'renew the certificate and reload the proxy (certbot renew && systemctl reload nginx; Caddy renews automatically if it can reach Let\'s Encrypt on port 80/443)';
  if (cert.validTo.getTime() <= now) {
    const trust = r.authorizationError && r.authorizationError !== 'CERT_HAS_EXPIRED' ? `; also ${r.authorizationError}` : '';
    return { id, status: 'fail', message: `certificate EXPIRED on ${until} (${-daysLeft} days ago)${cert.selfSigned ? ', self-signed' : ''}${trust}: clients refuse to connect`, fix: cert.selfSigned ? `replace the self-signed certificate with one from a public CA (Let's Encrypt), then ${renew}` : renew };
  }
  if (cert.validFrom.getTime() > now) return { id, status: 'fail', message: `certificate not valid before ${cert.validFrom.toISOString()}: this machine's clock or the certificate is wrong`, fix: 'check the clock (see the clock check) and the certificate dates' };
  if (!r.authorized) {
    const why =
      r.authorizationError === 'DEPTH_ZERO_SELF_SIGNED_CERT' || r.authorizationError === 'SELF_SIGNED_CERT_IN_CHAIN'
        ? 'self-signed certificate'
        : r.authorizationError === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || r.authorizationError === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'
          ? `issuer ${cert.issuer} unknown: the intermediate certificate is not sent, or a private CA signed it (then pass --ca)`
          : r.authorizationError === 'ERR_TLS_CERT_ALTNAME_INVALID'
            ? `certificate is for ${cert.altNames || cert.subject}, not ${url.hostname}`
            : (r.authorizationError ?? 'not trusted');
    return { id, status: 'fail', message: `certificate not trusted: ${why}`, fix: 'serve a certificate from a public CA for this exact host name, with the full chain (fullchain.pem, not cert.pem); for a private CA, pass it with --ca FILE' };
  }
  if (daysLeft < CERT_EXPIRY_WARN_DAYS) return { id, status: 'warn', message: `certificate expires on ${until} (in ${daysLeft} days)`, fix: `automatic renewal seems to be failing: ${renew}` };
  return { id, status: 'ok', message: `valid, trusted, expires ${until} (in ${daysLeft} days), ${r.protocol ?? 'TLS'}` };
}

function checkClock(response: HttpResponse | undefined): CheckResult {
  const id = 'clock';
  const date = response?.headers.date;
  if (!response || !date) return { id, status: 'skip', message: 'no Date header from the node' };
  const server = Date.parse(date);
  if (Number.isNaN(server)) return { id, status: 'warn', message: `unparseable Date header ${JSON.stringify(date)}`, fix: 'a proxy rewrites the Date header; check its configuration' };
  // The Date header truncates to the second: the node's clock read somewhere in [server, server+1000).
  const skew = server + 500 - (response.sentAt + response.receivedAt) / 2;
  const uncertainty = 500 + (response.receivedAt - response.sentAt) / 2;
  const abs = Math.abs(skew);
  const text = `node clock ${abs < uncertainty ? 'matches this machine\'s' : `is ${(abs / 1000).toFixed(abs < 10_000 ? 1 : 0)} s ${skew > 0 ? 'ahead of' : 'behind'} this machine's`} (±${(uncertainty / 1000).toFixed(1)} s)`;
  const fix = 'one of the two clocks is wrong: enable NTP on both (`timedatectl set-ntp true`, or chrony); a node clock off by minutes breaks push provider tokens and certificate checks';
  if (abs - uncertainty > CLOCK_SKEW_FAIL_MS) return { id, status: 'fail', message: text, fix };
  if (abs - uncertainty > CLOCK_SKEW_WARN_MS) return { id, status: 'warn', message: text, fix };
  return { id, status: 'ok', message: text };
}

async function checkWebSocket(base: URL, timeoutMs: number, trust: Trust, now: () => number): Promise<CheckResult> {
  const id = 'websocket';
  const url = under(base, ANONYMOUS_SOCKET_PATH);
  const shown = `${url.protocol === 'https:' ? 'wss' : 'ws'}://${url.host}${url.pathname}`;
  const proxyFix =
    'the proxy in front drops the Upgrade/Connection headers. nginx: `proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";` in the location; Apache: `ProxyPass … upgrade=websocket`; Caddy and Traefik pass WebSockets by default (check for a middleware/CDN that blocks them)';
  const r = await wsUpgrade(url, { timeoutMs, ...trust, now });
  if (!r.ok) {
    if (r.error.code === 'ETIMEDOUT') return { id, status: 'fail', message: `WebSocket upgrade to ${shown} got no answer (${r.error.message})`, fix: `${proxyFix}; also check proxy read timeouts` };
    return { id, status: 'fail', message: `WebSocket upgrade to ${shown} failed: ${r.error.code} ${r.error.message}`, fix: proxyFix };
  }
  if (r.kind === 'upgraded') {
    if (!r.acceptValid) return { id, status: 'fail', message: `101 from ${shown} with a wrong Sec-WebSocket-Accept`, fix: 'something between client and node answers the handshake itself; remove it or pass the upgrade through' };
    return { id, status: 'ok', message: `upgrade to ${shown}: 101 Switching Protocols` };
  }
  const s = r.response.status;
  if (s === 429) return { id, status: 'warn', message: `upgrade to ${shown} rate-limited (429)`, fix: 'too many connections from this address; wait, or raise ws-upgrade in RATE_LIMITS (behind a proxy: set TRUST_PROXY so clients are not all counted as the proxy)' };
  if (s === 503 && jsonStatus(r.response) === undefined && /shutting down/.test(r.response.body)) return { id, status: 'fail', message: `upgrade to ${shown}: node is shutting down (503)`, fix: 'wait for the restart to finish' };
  if (isProxyError(s)) return { id, status: 'fail', message: `upgrade to ${shown}: ${s} from the proxy`, fix: 'the proxy cannot reach the node for WebSocket traffic: check its upstream address/port and that it forwards upgrades' };
  return {
    id,
    status: 'fail',
    message: `upgrade to ${shown} answered HTTP ${s} instead of 101 Switching Protocols: the Upgrade header did not reach the node (classic reverse-proxy misconfiguration)`,
    fix: proxyFix,
  };
}

/** The node's own parser over the .env: what the node would do with these settings at start. */
function checkConfig(env: NodeEnv): { result: CheckResult; config: NodeConfig | undefined } {
  const id = 'config';
  if (!env.known) return { result: { id, status: 'skip', message: 'no .env found: pass --env FILE (the node\'s settings) to check them' }, config: undefined };
  try {
    const config = loadConfig(env.record());
    const warnings = config.metrics.warnings;
    if (warnings.length > 0) return { result: { id, status: 'warn', message: warnings.join('; '), fix: 'bind METRICS_HOST to 127.0.0.1 or set METRICS_TOKEN' }, config };
    return { result: { id, status: 'ok', message: `the node accepts every setting in ${env.file ?? 'the environment'}` }, config };
  } catch (e) {
    return { result: { id, status: 'fail', message: `the node would refuse to start: ${(e as Error).message}`, fix: 'correct that variable in the .env (`meshwhisper-node help` lists every setting and its format)' }, config: undefined };
  }
}

async function checkMetrics(base: URL, config: NodeConfig | undefined, local: boolean, timeoutMs: number, trust: Trust): Promise<CheckResult> {
  const id = 'metrics';
  if (!config) return { id, status: 'skip', message: 'the node\'s settings are unknown or invalid (see config): pass --env FILE' };
  const exposure = config.metrics;
  const token = exposure.token;
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const parts: CheckResult[] = [];
  const probe = async (url: URL, where: string): Promise<CheckResult> => {
    const r = await httpGet(url, { timeoutMs, ...trust, headers });
    if (!r.ok) {
      if (r.error.code === 'ECONNREFUSED') return { id, status: 'fail', message: `${where}: connection refused`, fix: 'the metrics listener is not running there: check METRICS_PORT/METRICS_HOST; in Docker it listens inside the container, publish it with ports: "127.0.0.1:9464:9464" and METRICS_HOST=0.0.0.0' };
      return { id, status: 'fail', message: `${where}: ${r.error.code} ${r.error.message}`, fix: 'check METRICS_HOST/METRICS_PORT and firewalls' };
    }
    const s = r.response.status;
    if (s === 200 && /meshwhisper_/.test(r.response.body)) return { id, status: 'ok', message: `${where}: 200, Prometheus text` };
    if (s === 401) return { id, status: 'fail', message: `${where}: 401, the node rejects METRICS_TOKEN from this .env`, fix: 'the node runs with a different METRICS_TOKEN: restart it after editing .env, or use the same token in your Prometheus scrape config' };
    if (s === 404 && token) return { id, status: 'fail', message: `${where}: 404, the node does not serve /metrics on its main port`, fix: 'the node runs without METRICS_TOKEN (restart it with the .env), or the proxy does not forward /metrics' };
    return { id, status: 'fail', message: `${where}: HTTP ${s}, not Prometheus metrics`, fix: 'another service answers on this address; check METRICS_PORT' };
  };
  if (token) parts.push(await probe(under(base, '/metrics'), `${under(base, '/metrics').href} (bearer token)`));
  if (exposure.listener) {
    const { host, port } = exposure.listener;
    const connectHost = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '::1' : host;
    const where = `http://${connectHost.includes(':') ? `[${connectHost}]` : connectHost}:${port}/metrics`;
    if (local) parts.push(await probe(new URL(where), where));
    else if (!token) parts.push({ id, status: 'skip', message: `metrics listener ${host}:${port} is private to the node's host; run doctor there (with --data-dir) to check it` });
  }
  if (parts.length === 0) return { id, status: 'warn', message: 'metrics are off (METRICS_PORT=off, no METRICS_TOKEN): backlog, failures and backup age go unseen', fix: 'set METRICS_PORT (loopback listener) or METRICS_TOKEN (≥ 32 chars) and scrape it with Prometheus' };
  const worst = parts.find((p) => p.status === 'fail') ?? parts.find((p) => p.status === 'warn') ?? parts.find((p) => p.status === 'ok') ?? parts[0];
  return { ...(worst as CheckResult), message: parts.map((p) => p.message).join('; ') };
}

/** Runs every check; never throws for a broken deployment (that is a FAIL in the report). */
export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const env = options.env;
  const timeoutMs = options.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
  const now = options.now ?? Date.now;
  const base = normalizeTarget(options.url ?? `http://127.0.0.1:${env.value('PORT')}`);
  const checks: CheckResult[] = [];
  const io = options.io;
  const step = async (id: string, label: string, run: () => Promise<CheckResult>): Promise<CheckResult> => {
    const started = performance.now();
    const work = run();
    const r = await (io ? withProgress(io, label, work) : work);
    const timed = { ...r, id, durationMs: Math.round(performance.now() - started) };
    checks.push(timed);
    return timed;
  };
  const skip = (id: string, why: string): void => void checks.push({ id, status: 'skip', message: why });
  const host = base.hostname;
  const port = portOf(base);

  const dns = await step('dns', `resolving ${host}`, async () => {
    const r = await resolveHost(host, timeoutMs);
    if (r.ok) return { id: 'dns', status: 'ok', message: r.literal ? `${host} is an IP address` : `${host} → ${r.addresses.join(', ')}` };
    if (r.error.code === 'ENOTFOUND' || r.error.code === 'ENODATA') return { id: 'dns', status: 'fail', message: `${host} does not resolve (${r.error.code}): it's DNS`, fix: `create an A/AAAA record for ${host} pointing at the server (check for typos; new records can take the TTL to appear)` };
    return { id: 'dns', status: 'fail', message: `DNS lookup of ${host} failed: ${r.error.code} ${r.error.message}`, fix: 'check this machine\'s resolver (/etc/resolv.conf) and the domain\'s name servers' };
  });

  let reachable = false;
  if (dns.status === 'ok') {
    const c = await step('connect', `connecting to ${host}:${port}`, async () => {
      const r = await tcpConnect(host, port, timeoutMs);
      return r.ok ? { id: 'connect', status: 'ok', message: `TCP connection to ${host}:${port} accepted` } : connectFailure('connect', base, r.error, env);
    });
    reachable = c.status === 'ok';
  } else skip('connect', 'DNS failed');

  let health: HttpResponse | undefined;
  /**
   * Why the checks still to come cannot tell anything new (no TLS on an https port, no HTTP
   * answer, not a node): they are skipped with this reason instead of repeating the failure.
   */
  let blocked: string | undefined = reachable ? undefined : 'node not reachable';
  const ca = options.ca === undefined ? undefined : [...rootCertificates, options.ca];
  let trust: Trust = { insecure: false, ca };
  const gated = async (id: string, label: string, run: () => Promise<CheckResult>): Promise<CheckResult | undefined> => {
    if (blocked !== undefined) {
      skip(id, blocked);
      return undefined;
    }
    return step(id, label, run);
  };

  const tls = await gated('tls', `checking the TLS certificate of ${host}`, () => checkTls(base, timeoutMs, now(), ca));
  if (tls?.status === 'fail' && /does not speak TLS/.test(tls.message)) blocked = 'no TLS on this port (see tls)';
  // Any other TLS verdict is reported once; the checks behind it still look at the node.
  trust = { insecure: tls?.status === 'fail', ca };
  await gated('health', 'GET /health', async () => {
    const url = under(base, '/health');
    const r = await httpGet(url, { timeoutMs, ...trust, now });
    if (!r.ok) {
      blocked = 'no HTTP answer (see health)';
      return httpFailure('health', r.error, url);
    }
    health = r.response;
    const s = r.response.status;
    if (s === 200 && jsonStatus(r.response) === 'ok') return { id: 'health', status: 'ok', message: `${url.pathname}: 200 {"status":"ok"}` };
    if (isProxyError(s)) return { id: 'health', status: 'fail', message: `${url.pathname}: ${s} from the proxy`, fix: 'the proxy cannot reach the node: the node is down behind it, or the proxy\'s upstream port is wrong (the node listens on PORT, default 8080)' };
    blocked = 'not a MeshWhisper node (see health)';
    return { id: 'health', status: 'fail', message: `${url.pathname}: HTTP ${s}, and the answer is not a MeshWhisper node's`, fix: 'wrong port or wrong upstream: point the URL (or the proxy) at the node\'s PORT, default 8080' };
  });
  await gated('ready', 'GET /ready', async () => {
    const url = under(base, '/ready');
    const r = await httpGet(url, { timeoutMs, ...trust, now });
    if (!r.ok) return httpFailure('ready', r.error, url);
    const s = r.response.status;
    const status = jsonStatus(r.response);
    if (s === 200 && status === 'ready') return { id: 'ready', status: 'ok', message: `${url.pathname}: 200 {"status":"ready"}, database writable` };
    if (s === 503 && status === 'shutting down') return { id: 'ready', status: 'fail', message: `${url.pathname}: 503, the node is shutting down`, fix: 'wait for the restart; if it stays, the orchestrator keeps stopping it: check `docker compose ps` / logs' };
    if (s === 503 && status !== undefined) return { id: 'ready', status: 'fail', message: `${url.pathname}: 503, ${status}`, fix: 'the database refuses writes: check disk space and that DATA_DIR is writable by the node\'s user (run doctor with --data-dir on the host)' };
    return { id: 'ready', status: 'fail', message: `${url.pathname}: HTTP ${s}, not a MeshWhisper node's answer`, fix: 'wrong port or wrong proxy upstream: point it at the node\'s PORT (default 8080)' };
  });
  await gated('clock', 'comparing clocks', async () => checkClock(health));
  await gated('websocket', 'trying the WebSocket upgrade', () => checkWebSocket(base, timeoutMs, trust, now));
  const { result: configResult, config } = checkConfig(env);
  checks.push(configResult);
  await gated('metrics', 'checking the metrics endpoint', () => checkMetrics(base, config, isLoopback(host) || options.dataDir !== undefined, timeoutMs, trust));

  if (config?.store === 'postgres') {
    await step('postgres', 'connecting to PostgreSQL', () => checkPostgres(env, timeoutMs));
    await step('nats', 'connecting to NATS', () => checkNats(env, timeoutMs));
  }

  if (env.known) {
    checks.push(await checkWebPush(env), await checkApns(env), await checkFcm(env));
  } else {
    for (const id of ['push.webpush', 'push.apns', 'push.fcm']) skip(id, 'no .env found: pass --env FILE to check push credentials');
  }

  if (options.dataDir !== undefined) {
    const dataDir = options.dataDir;
    checks.push(await checkDataDir(dataDir), await checkDisk(dataDir));
    await step('backups', 'listing backups', () => checkBackups(backupDirOf(env, dataDir), now()));
  } else {
    for (const id of ['data-dir', 'disk', 'backups']) skip(id, 'run on the node\'s host with --data-dir DIR to check');
  }
  return summarize(base.href, env.file, options.dataDir, checks);
}

// `meshwhisper doctor` over real sockets: a healthy node, then each classic broken set-up.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDoctor } from '../src/doctor/doctor.js';
import type { DoctorReport } from '../src/doctor/report.js';
import { loadNodeEnv } from '../src/node-env.js';
import { generateVapidKeys } from '../src/vapid.js';
import { check, cli, doctorJson, freePort, removeDir, startNode, tempDir, writeEnv, writePushCredentials } from './helpers.js';
import type { RunningNode } from './helpers.js';
import { ownConnectionHeaders } from '../../node/test/cluster/balancer.js';

const METRICS_TOKEN = 'doctor-test-token-0123456789abcdef0123';

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}
const closeServer = (server: Server): Promise<void> =>
  new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });

describe('doctor against a healthy node', () => {
  let node: RunningNode;
  let dir: string;
  let envFile: string;
  let vapidPrivate: string;

  beforeAll(async () => {
    dir = tempDir();
    const metricsPort = await freePort();
    node = await startNode({ METRICS_PORT: String(metricsPort), METRICS_TOKEN });
    const creds = writePushCredentials(dir);
    const vapid = generateVapidKeys();
    vapidPrivate = vapid.privateKey;
    envFile = writeEnv(dir, {
      PORT: String(node.port),
      DATA_DIR: node.dataDir,
      METRICS_PORT: String(metricsPort),
      METRICS_TOKEN,
      VAPID_PUBLIC_KEY: vapid.publicKey,
      VAPID_PRIVATE_KEY: vapid.privateKey,
      VAPID_SUBJECT: 'mailto:ops@example.com',
      APNS_KEY_FILE: creds.apnsKeyFile,
      APNS_KEY_ID: 'ABC123DEFG',
      APNS_TEAM_ID: 'TEAM123456',
      APNS_BUNDLE_ID: 'com.example.chat',
      FCM_SERVICE_ACCOUNT_FILE: creds.fcmFile,
    });
    // A fresh backup, so the backup-freshness check has something to judge.
    const b = await cli('backup', '--env', envFile);
    expect(b.code, b.err).toBe(0);
  });
  afterAll(async () => {
    await node.close();
    removeDir(dir);
    removeDir(node.dataDir);
  });

  it('reports every check OK (TLS skipped on plain loopback HTTP) and exits 0', async () => {
    const { code, report } = await doctorJson(node.url, '--env', envFile, '--data-dir', node.dataDir);
    const notOk = report.checks.filter((c) => c.status !== 'ok' && !(c.id === 'tls' && c.status === 'skip'));
    expect(notOk).toEqual([]);
    expect(code).toBe(0);
    expect(report.healthy).toBe(true);
    expect(report.checks.map((c) => c.id)).toEqual(['dns', 'connect', 'tls', 'health', 'ready', 'clock', 'websocket', 'config', 'metrics', 'push.webpush', 'push.apns', 'push.fcm', 'data-dir', 'disk', 'backups']);
    expect(check(report, 'websocket').message).toContain('101 Switching Protocols');
    expect(check(report, 'metrics').message).toMatch(/bearer token.*200.*127\.0\.0\.1:\d+\/metrics: 200/);
  });

  it('the text report prints OK lines and never a secret', async () => {
    const r = await cli('doctor', node.url, '--env', envFile, '--data-dir', node.dataDir);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^ {2}OK {4}health/m);
    expect(r.out).toMatch(/0 FAIL, 0 WARN, 14 OK, 1 skipped/);
    expect(r.out).not.toContain(vapidPrivate);
    expect(r.out).not.toContain(METRICS_TOKEN);
    const json = await cli('doctor', node.url, '--env', envFile, '--json');
    expect(json.out).not.toContain(vapidPrivate);
    expect(json.out).not.toContain(METRICS_TOKEN);
  });

  it('a clock 10 minutes off (injected) is a FAIL with NTP advice', async () => {
    const env = await loadNodeEnv(envFile);
    const report = await runDoctor({ url: node.url, env, now: () => Date.now() - 10 * 60_000, timeoutMs: 3000 });
    const clock = check(report, 'clock');
    expect(clock.status).toBe('fail');
    expect(clock.message).toMatch(/is 600 s ahead of this machine's/);
    expect(clock.fix).toMatch(/NTP/);
    expect(report.healthy).toBe(false);
  });

  it('a setting the node would refuse is a config FAIL naming the variable', async () => {
    const bad = writeEnv(dir, { PORT: String(node.port), METRICS_PORT: 'off', RETENTION_DAYS: 'forever' }, 'bad-setting.env');
    const { code, report } = await doctorJson(node.url, '--env', bad);
    expect(code).toBe(1);
    expect(check(report, 'config')).toMatchObject({ status: 'fail' });
    expect(check(report, 'config').message).toMatch(/the node would refuse to start: RETENTION_DAYS: must be an integer/);
    expect(check(report, 'metrics').status).toBe('skip');
  });

  it('the wrong METRICS_TOKEN is a FAIL naming the token', async () => {
    const bad = writeEnv(dir, { PORT: String(node.port), METRICS_PORT: 'off', METRICS_TOKEN: 'x'.repeat(40) }, 'wrong-token.env');
    const { code, report } = await doctorJson(node.url, '--env', bad);
    expect(code).toBe(1);
    expect(check(report, 'metrics')).toMatchObject({ status: 'fail' });
    expect(check(report, 'metrics').message).toMatch(/401.*METRICS_TOKEN/);
  });
});

describe('doctor against broken set-ups', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(() => removeDir(dir));

  it('node down: connection refused, FAIL with "start the node", later checks skipped, exit 1', async () => {
    const node = await startNode();
    const url = node.url;
    await node.close();
    removeDir(node.dataDir);
    const { code, report } = await doctorJson(url);
    expect(code).toBe(1);
    const c = check(report, 'connect');
    expect(c.status).toBe('fail');
    expect(c.message).toMatch(/connection refused.*node is down or this is the wrong port/);
    expect(c.fix).toMatch(/start the node/);
    for (const id of ['health', 'ready', 'websocket']) expect(check(report, id).status).toBe('skip');
  });

  it('wrong port (nothing there): FAIL pointing at the PORT from the .env', async () => {
    const node = await startNode();
    try {
      const envFile = writeEnv(dir, { PORT: String(node.port) }, 'wrong-port.env');
      const wrong = await freePort();
      const { code, report } = await doctorJson(`http://127.0.0.1:${wrong}`, '--env', envFile);
      expect(code).toBe(1);
      const c = check(report, 'connect');
      expect(c.status).toBe('fail');
      expect(c.fix).toContain(`PORT=${node.port}: wrong port? try http://127.0.0.1:${node.port}`);
    } finally {
      await node.close();
      removeDir(node.dataDir);
    }
  });

  it('wrong port (another web server answers): /health FAIL "not a MeshWhisper node"', async () => {
    const other = createHttpServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'text/html' });
      res.end('<h1>Not Found</h1>');
    });
    const port = await listen(other);
    try {
      const { code, report } = await doctorJson(`http://127.0.0.1:${port}`);
      expect(code).toBe(1);
      const h = check(report, 'health');
      expect(h.status).toBe('fail');
      expect(h.message).toMatch(/HTTP 404, and the answer is not a MeshWhisper node's/);
      expect(h.fix).toMatch(/wrong port/);
    } finally {
      await closeServer(other);
    }
  });

  it('a TLS server with an expired self-signed certificate (openssl): tls FAIL "EXPIRED" with renewal advice', async () => {
    const certDir = join(dir, 'expired-cert');
    mkdirSync(join(certDir, 'db'), { recursive: true });
    writeFileSync(join(certDir, 'db', 'index.txt'), '');
    writeFileSync(join(certDir, 'db', 'serial'), '1000\n');
    writeFileSync(
      join(certDir, 'ca.cnf'),
      [
        '[ ca ]',
        'default_ca = CA_default',
        '[ CA_default ]',
        `database = ${join(certDir, 'db', 'index.txt')}`,
        `new_certs_dir = ${join(certDir, 'db')}`,
        `serial = ${join(certDir, 'db', 'serial')}`,
        'default_md = sha256',
        'policy = pol',
        'unique_subject = no',
        '[ pol ]',
        'commonName = supplied',
        '[ ext ]',
        'subjectAltName = DNS:localhost,IP:127.0.0.1',
        '',
      ].join('\n'),
    );
    const key = join(certDir, 'key.pem');
    const csr = join(certDir, 'req.csr');
    const cert = join(certDir, 'cert.pem');
    const run = (args: string[]): void => void execFileSync('openssl', args, { cwd: certDir, stdio: 'pipe' });
    run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=localhost']);
    // Valid for one day in 2020: long expired.
    run(['ca', '-batch', '-config', join(certDir, 'ca.cnf'), '-selfsign', '-keyfile', key, '-in', csr, '-out', cert, '-startdate', '20200101000000Z', '-enddate', '20200102000000Z', '-extensions', 'ext']);

    const server = createHttpsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: req.url === '/ready' ? 'ready' : 'ok' }));
    });
    const port = await listen(server);
    try {
      const { code, report } = await doctorJson(`https://localhost:${port}`);
      expect(code).toBe(1);
      const t = check(report, 'tls');
      expect(t.status).toBe('fail');
      expect(t.message).toMatch(/certificate EXPIRED on 2020-01-02 \(\d+ days ago\), self-signed/);
      expect(t.fix).toMatch(/renew/);
      // The checks behind TLS still look at the server.
      expect(check(report, 'health').status).toBe('ok');
      const text = await cli('doctor', `https://localhost:${port}`, '--timeout', '3000');
      expect(text.out).toMatch(/FAIL {2}tls .*EXPIRED/);
      expect(text.out).toMatch(/fix: .*renew/);
    } finally {
      await closeServer(server);
    }
  });

  it('an HTTP proxy that strips the WebSocket Upgrade header: websocket FAIL with proxy advice, HTTP checks OK', async () => {
    const node = await startNode();
    const HOP_BY_HOP = ['connection', 'upgrade', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding'];
    // Like nginx without `proxy_set_header Upgrade/Connection`: forwards every request as a plain one.
    const proxy = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => !HOP_BY_HOP.includes(k) && !k.startsWith('sec-websocket-')));
      const upstream = httpRequest({ host: '127.0.0.1', port: node.port, method: req.method, path: req.url, headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, ownConnectionHeaders(up.headers));
        up.pipe(res);
      });
      upstream.on('error', () => {
        res.writeHead(502);
        res.end();
      });
      req.pipe(upstream);
    });
    const port = await listen(proxy);
    try {
      const { code, report } = await doctorJson(`http://127.0.0.1:${port}`);
      expect(code).toBe(1);
      for (const id of ['connect', 'health', 'ready', 'clock']) expect(check(report, id).status).toBe('ok');
      const ws = check(report, 'websocket');
      expect(ws.status).toBe('fail');
      expect(ws.message).toMatch(/answered HTTP 404 instead of 101 Switching Protocols: the Upgrade header did not reach the node/);
      expect(ws.fix).toContain('proxy_set_header Upgrade $http_upgrade');
      // The same node without the proxy upgrades fine.
      const direct = await doctorJson(node.url);
      expect(check(direct.report, 'websocket').status).toBe('ok');
    } finally {
      await closeServer(proxy);
      await node.close();
      removeDir(node.dataDir);
    }
  });

  it('a node whose Date header is 10 minutes ahead: clock FAIL', async () => {
    const skewed = createHttpServer((req, res) => {
      res.setHeader('date', new Date(Date.now() + 10 * 60_000).toUTCString());
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: req.url === '/ready' ? 'ready' : 'ok' }));
    });
    const port = await listen(skewed);
    try {
      const { code, report } = await doctorJson(`http://127.0.0.1:${port}`);
      expect(code).toBe(1);
      const c = check(report, 'clock');
      expect(c.status).toBe('fail');
      expect(c.message).toMatch(/node clock is 60\d s ahead of this machine's/);
      expect(c.fix).toMatch(/NTP/);
      expect(check(report, 'health').status).toBe('ok');
    } finally {
      await closeServer(skewed);
    }
  });

  it('https:// to a plain HTTP port: tls FAIL "does not speak TLS", the checks behind it skipped', async () => {
    const node = await startNode();
    try {
      const { code, report } = await doctorJson(`https://127.0.0.1:${node.port}`);
      expect(code).toBe(1);
      expect(check(report, 'tls')).toMatchObject({ status: 'fail', message: `127.0.0.1:${node.port} does not speak TLS` });
      expect(check(report, 'tls').fix).toMatch(/use http:\/\//);
      for (const id of ['health', 'ready', 'clock', 'websocket']) expect(check(report, id)).toMatchObject({ status: 'skip', message: 'no TLS on this port (see tls)' });
    } finally {
      await node.close();
      removeDir(node.dataDir);
    }
  });

  it('a name that does not resolve: dns FAIL ("it\'s DNS"), everything behind it skipped', async () => {
    const { code, report } = await doctorJson('https://meshwhisper-doctor-test.invalid');
    expect(code).toBe(1);
    const d = check(report, 'dns');
    expect(d.status).toBe('fail');
    expect(d.message).toMatch(/does not resolve/);
    expect(check(report, 'connect').status).toBe('skip');
  });

  it('a node that does not answer in time: FAIL after the timeout, not a hang', async () => {
    const silent = createHttpServer(() => undefined); // accepts, never answers
    const port = await listen(silent);
    try {
      const started = Date.now();
      const r = await cli('doctor', `http://127.0.0.1:${port}`, '--json', '--timeout', '300');
      expect(r.code).toBe(1);
      const report = JSON.parse(r.out) as DoctorReport;
      expect(check(report, 'health').message).toMatch(/timed out after 300 ms/);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await closeServer(silent);
    }
  });
});

describe('doctor over TLS (a private CA, a TLS-terminating proxy in front of a real node)', () => {
  let dir: string;
  let node: RunningNode;
  const servers: { close(cb: () => void): unknown }[] = [];

  /** A leaf certificate for localhost/127.0.0.1 signed by the test CA, valid for `days`. */
  function leaf(name: string, days: number): { key: string; cert: string } {
    const run = (args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/CN=localhost']);
    writeFileSync(join(dir, 'leaf.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n');
    run(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', String(days), '-extfile', 'leaf.ext']);
    return { key: readFileSync(join(dir, `${name}.key`), 'utf8'), cert: readFileSync(join(dir, `${name}.pem`), 'utf8') };
  }

  /** Terminates TLS and pipes the bytes to the node: HTTP and WebSocket upgrades pass through untouched. */
  async function tlsProxy(creds: { key: string; cert: string }): Promise<number> {
    const server = createTlsServer(creds, (client) => {
      const upstream = connect(node.port, '127.0.0.1');
      client.pipe(upstream).pipe(client);
      const end = (): void => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end);
      upstream.on('error', end);
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as AddressInfo).port;
  }

  beforeAll(async () => {
    dir = tempDir();
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '30', '-subj', '/CN=MeshWhisper Test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], { cwd: dir, stdio: 'pipe' });
    node = await startNode();
  });
  afterAll(async () => {
    for (const s of servers) await new Promise<void>((resolve) => s.close(() => resolve()));
    await node.close();
    removeDir(dir);
    removeDir(node.dataDir);
  });

  it('a trusted certificate with a year left: tls OK, wss upgrade through the proxy OK, exit 0', async () => {
    const port = await tlsProxy(leaf('year', 365));
    const { code, report } = await doctorJson(`wss://localhost:${port}`, '--ca', join(dir, 'ca.pem'));
    expect(check(report, 'tls').status).toBe('ok');
    expect(check(report, 'tls').message).toMatch(/valid, trusted, expires \d{4}-\d\d-\d\d \(in 36[45] days\), TLSv1\.3/);
    for (const id of ['dns', 'connect', 'health', 'ready', 'clock', 'websocket']) expect(check(report, id).status, id).toBe('ok');
    expect(check(report, 'websocket').message).toContain(`wss://localhost:${port}/v1/anonymous: 101`);
    expect(code).toBe(0);
  });

  it('a certificate 10 days from expiry: WARN (renewal is failing), exit 0', async () => {
    const port = await tlsProxy(leaf('soon', 10));
    const { code, report } = await doctorJson(`https://localhost:${port}`, '--ca', join(dir, 'ca.pem'));
    const t = check(report, 'tls');
    expect(t.status).toBe('warn');
    expect(t.message).toMatch(/expires on \d{4}-\d\d-\d\d \(in [89] days\)/);
    expect(t.fix).toMatch(/renewal seems to be failing/);
    expect(code).toBe(0);
  });

  it('the same certificate without its CA: tls FAIL "not trusted", advice names --ca and the chain', async () => {
    const port = await tlsProxy(leaf('untrusted', 365));
    const { code, report } = await doctorJson(`https://localhost:${port}`);
    const t = check(report, 'tls');
    expect(t.status).toBe('fail');
    expect(t.message).toMatch(/certificate not trusted: issuer .*MeshWhisper Test CA unknown/);
    expect(t.message).toMatch(/--ca/);
    expect(check(report, 'websocket').status).toBe('ok'); // checked past the reported TLS failure
    expect(code).toBe(1);
  });
});

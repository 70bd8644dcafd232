// `meshwhisper init --cluster`: the generated compose file, .env, HAProxy configuration and
// PostgreSQL secret, validated as far as this machine allows without a Docker engine (none runs
// here): compose.yaml parsed as YAML (Debian's python3-yaml, merge keys resolved) and checked
// service by service; haproxy.cfg checked by `haproxy -c` AND run for real in front of three node
// instances started from the generated .env (addresses rewritten to loopback), a device login and
// a send going through it.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '@meshwhisper/node';
import { EnvelopeClass, SendRequestSchema, encodeBody, CONTENT_TYPE_PROTOBUF } from '@meshwhisper/protocol';
import { runInit, POSTGRES_PASSWORD_FILE } from '../src/init.js';
import { parseEnv } from '../src/env-file.js';
import { captureIo, freePort, removeDir, tempDir } from './helpers.js';
import { startCluster } from '../../node/test/cluster/harness.js';
import { TestDevice } from '../../node/test/helpers.js';
import { WsClient } from '../../node/test/ws-client.js';

const HAPROXY = process.env.MW_HAPROXY ?? '/usr/sbin/haproxy';
const PYTHON = '/usr/bin/python3';
const mode = (p: string): number => statSync(p).mode & 0o777;

/** compose.yaml → JSON, YAML anchors and merge keys resolved. */
function parseYaml(file: string): Record<string, unknown> {
  const out = execFileSync(PYTHON, ['-c', 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', file], { encoding: 'utf8' });
  return JSON.parse(out) as Record<string, unknown>;
}

interface Service {
  image: string;
  environment?: Record<string, string>;
  env_file?: string;
  volumes?: string[];
  ports?: string[];
  command?: string[];
  depends_on?: unknown;
  healthcheck?: unknown;
  secrets?: string[];
}

describe('init --cluster', () => {
  let root: string;
  beforeEach(() => {
    root = tempDir();
  });
  afterEach(() => removeDir(root));

  it('writes compose (PostgreSQL, NATS with JetStream, three instances, HAProxy), a cluster .env the node accepts, a 0600 password', async () => {
    const dir = join(root, 'd');
    const r = await runInit({ dir, yes: true, cluster: true, url: 'https://chat.example.com' }, captureIo().io);
    expect(r.cluster).toBe(true);
    const env = parseEnv(readFileSync(join(dir, '.env'), 'utf8'));
    expect(env.get('STORE')).toBe('postgres');
    expect(env.get('NATS_URL')).toBe('nats://nats:4222');
    expect(env.get('TRUST_PROXY')).toBe('private');
    expect(env.get('BACKUP_INTERVAL_HOURS')).toBe('0');
    const password = readFileSync(join(dir, POSTGRES_PASSWORD_FILE), 'utf8').trim();
    expect(password.length).toBeGreaterThanOrEqual(32);
    expect(env.get('DATABASE_URL')).toBe(`postgres://meshwhisper:${password}@postgres:5432/meshwhisper`);
    expect(mode(join(dir, POSTGRES_PASSWORD_FILE))).toBe(0o600);
    expect(mode(join(dir, '.env'))).toBe(0o600);
    expect(readFileSync(join(dir, '.gitignore'), 'utf8').split('\n')).toEqual(expect.arrayContaining(['.env', 'secrets/', POSTGRES_PASSWORD_FILE]));
    // The node's own schema accepts the generated settings.
    const config = loadConfig(Object.fromEntries(env));
    expect(config).toMatchObject({ store: 'postgres', natsUrl: 'nats://nats:4222', trustProxy: expect.anything() });

    const compose = parseYaml(join(dir, 'compose.yaml')) as { services: Record<string, Service>; volumes: Record<string, unknown>; secrets: Record<string, { file: string }> };
    const s = compose.services;
    expect(Object.keys(s).sort()).toEqual(['lb', 'nats', 'node1', 'node2', 'node3', 'postgres']);
    expect(s.postgres!.environment).toMatchObject({ POSTGRES_USER: 'meshwhisper', POSTGRES_DB: 'meshwhisper', POSTGRES_PASSWORD_FILE: '/run/secrets/postgres-password' });
    expect(compose.secrets['postgres-password']!.file).toBe(`./${POSTGRES_PASSWORD_FILE}`);
    expect(s.nats!.command).toEqual(expect.arrayContaining(['-js']));
    for (const n of ['node1', 'node2', 'node3']) {
      const node = s[n]!;
      expect(node.env_file).toBe('.env');
      expect(node.environment).toMatchObject({ DATA_DIR: '/data', HOST: '0.0.0.0', PORT: '8080' });
      expect(node.volumes).toContain('meshwhisper-data:/data'); // one shared volume: node key and blobs
      expect(node.ports).toBeUndefined(); // only the load balancer is published
      expect(node.depends_on).toMatchObject({ postgres: { condition: 'service_healthy' } });
    }
    expect(s.lb!.image).toMatch(/^haproxy:/);
    expect(s.lb!.ports).toEqual(['127.0.0.1:8080:8080']); // behind the host's TLS proxy
    expect(s.lb!.volumes).toEqual(['./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro']);
    expect(Object.keys(compose.volumes).sort()).toEqual(['meshwhisper-data', 'nats-data', 'postgres-data']);

    const cfg = readFileSync(join(dir, 'haproxy.cfg'), 'utf8');
    expect(cfg).toContain('timeout tunnel 1h');
    expect(cfg).toContain('option forwardfor');
    expect(cfg).not.toContain('del-header X-Forwarded-For'); // behind a TLS proxy its header is kept
    expect(execFileSync(HAPROXY, ['-c', '-f', join(dir, 'haproxy.cfg')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })).toMatch(/valid/i);
    // At the edge (plain http URL) HAProxy drops client-supplied X-Forwarded-For.
    const edge = join(root, 'edge');
    await runInit({ dir: edge, yes: true, cluster: true, url: 'http://localhost:9000' }, captureIo().io);
    expect(readFileSync(join(edge, 'haproxy.cfg'), 'utf8')).toContain('http-request del-header X-Forwarded-For');
    expect((parseYaml(join(edge, 'compose.yaml')) as { services: Record<string, Service> }).services.lb!.ports).toEqual(['9000:8080']);
  });

  it('the generated HAProxy configuration, run for real in front of three instances started from the generated .env, passes WebSockets and sends', async () => {
    const dir = join(root, 'd');
    await runInit({ dir, yes: true, cluster: true, url: 'http://localhost:8080' }, captureIo().io);
    const env = Object.fromEntries(parseEnv(readFileSync(join(dir, '.env'), 'utf8')));
    // Compose service names do not resolve here: the harness points the instances at the local services.
    // The schema too: the harness gives each test a fresh one (never the shared database's public).
    for (const k of ['DATABASE_URL', 'DATABASE_SCHEMA', 'NATS_URL', 'NATS_SUBJECT_PREFIX', 'DATA_DIR', 'HOST', 'PORT', 'RATE_LIMITS', 'METRICS_PORT', 'TRUST_PROXY']) delete env[k];
    const cluster = await startCluster(3, { env });
    const lbPort = await freePort();
    let cfg = readFileSync(join(dir, 'haproxy.cfg'), 'utf8').replace('bind :8080', `bind 127.0.0.1:${lbPort}`);
    cluster.instances.forEach((inst, i) => (cfg = cfg.replace(`server node${i + 1} node${i + 1}:8080`, `server node${i + 1} 127.0.0.1:${inst.port}`)));
    cfg = cfg.replace(/ resolvers docker init-addr last,libc,none/, '');
    writeFileSync(join(dir, 'haproxy.local.cfg'), cfg);
    const lb = spawn(HAPROXY, ['-db', '-f', join(dir, 'haproxy.local.cfg')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let lbErr = '';
    lb.stderr.on('data', (c: Buffer) => (lbErr += c.toString()));
    try {
      const url = `http://127.0.0.1:${lbPort}`;
      const deadline = Date.now() + 10_000;
      for (;;) {
        const ok = await fetch(`${url}/ready`).then((r) => r.ok, () => false);
        if (ok) break;
        if (Date.now() > deadline) throw new Error(`HAProxy did not come up: ${lbErr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const d = new TestDevice();
      expect((await d.register(cluster.instances[0]!.node)).statusCode).toBe(200);
      const ws = await WsClient.device(lbPort, d); // WebSocket upgrade + login through HAProxy
      try {
        await ws.nextKind('queueEmpty');
        for (let i = 0; i < 6; i++) {
          // leastconn spreads these sends over the instances; each reaches the one socket.
          const res = await fetch(`${url}/v1/send`, { method: 'POST', headers: { 'content-type': CONTENT_TYPE_PROTOBUF }, body: Buffer.from(encodeBody(SendRequestSchema, { mailboxId: d.mailbox, payload: Uint8Array.of(i), class: EnvelopeClass.DURABLE })) });
          expect(res.status).toBe(200);
          const f = await ws.nextKind('deliver');
          expect([...f.body.value.envelopes[0]!.payload]).toEqual([i]);
          ws.ack(f.body.value.envelopes.map((e) => e.id));
        }
      } finally {
        ws.terminate();
      }
    } finally {
      lb.kill('SIGKILL');
      await cluster.close();
    }
  });
});

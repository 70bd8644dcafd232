import { spawnSync } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import {
  METRICS_TOKEN_MIN_LENGTH,
  MetricsError,
  NodeMetrics,
  bearerMatches,
  metricsRoutePlugin,
  resolveMetricsExposure,
  startMetricsServer,
} from '../../src/metrics.js';

const TOKEN = 'a'.repeat(METRICS_TOKEN_MIN_LENGTH) + 'secret-part';

function promtoolPath(): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** A NodeMetrics with every metric exercised, so the exposition contains every family with samples. */
async function exercised(): Promise<NodeMetrics> {
  const m = new NodeMetrics();
  m.connectionOpened('device');
  m.connectionOpened('anonymous');
  m.connectionClosed('anonymous');
  m.envelopeAccepted('durable', 'token', 0.002);
  m.envelopeAccepted('ephemeral', 'first_contact');
  m.envelopeRejected('too_large');
  m.envelopesDeliveredCount('durable', 3);
  m.envelopesExpired.inc();
  m.envelopesEvicted.inc(2);
  m.deliveryLatency.observe(0.01);
  m.authFailed('replayed');
  m.rateLimitedBy('send-first-contact');
  m.pushSent.inc(0);
  m.backupFinished('success', 1.5, new Date(1_700_000_000_000));
  m.backupFinished('failure');
  m.setSources({ queue: () => Promise.resolve({ envelopes: 42, bytes: 42 * 1024 }), rateLimitKeys: () => 7 });
  const app = Fastify();
  await app.register(m.httpPlugin());
  app.get('/v1/keys/:mailbox', async () => ({ ok: true }));
  await app.inject('/v1/keys/c2VjcmV0LW1haWxib3gtaWQ');
  await app.inject('/v1/nothing-here/c2VjcmV0');
  await app.close();
  return m;
}

describe('metrics exposition', () => {
  it('uses a private registry, not the global one', async () => {
    const { register } = await import('prom-client');
    const before = (await register.getMetricsAsJSON()).length;
    const m = new NodeMetrics();
    expect(m.registry).not.toBe(register);
    expect((await register.getMetricsAsJSON()).length).toBe(before);
    expect((await m.render()).includes('meshwhisper_envelopes_accepted_total')).toBe(true);
  });

  it('per-message counters (kept as plain numbers, folded in when read) add up across reads, each label on its own', async () => {
    const m = new NodeMetrics();
    m.envelopeAccepted('durable', 'token');
    m.envelopeAccepted('ephemeral', 'first_contact');
    m.envelopesDeliveredCount('durable', 2);
    let text = await m.render();
    expect(text).toContain('meshwhisper_envelopes_accepted_total{class="durable",lane="token"} 1');
    expect(text).toContain('meshwhisper_envelopes_accepted_total{class="ephemeral",lane="first_contact"} 1');
    expect(text).toContain('meshwhisper_envelopes_delivered_total{class="durable"} 2');
    for (let i = 0; i < 5; i++) m.envelopeAccepted('durable', 'token');
    m.envelopesDeliveredCount('durable', 3);
    m.envelopesDeliveredCount('ephemeral');
    text = await m.render();
    expect(text).toContain('meshwhisper_envelopes_accepted_total{class="durable",lane="token"} 6');
    expect(text).toContain('meshwhisper_envelopes_accepted_total{class="ephemeral",lane="first_contact"} 1');
    expect(text).toContain('meshwhisper_envelopes_delivered_total{class="durable"} 5');
    expect(text).toContain('meshwhisper_envelopes_delivered_total{class="ephemeral"} 1');
    // A read without new counts changes none of them (nothing folded twice).
    const again = await m.render();
    for (const line of text.split('\n').filter((l) => l.startsWith('meshwhisper_envelopes_'))) expect(again).toContain(line);
  });

  it('renders every family with the expected values', async () => {
    const text = await (await exercised()).render();
    expect(text).toContain('meshwhisper_envelopes_accepted_total{class="durable",lane="token"} 1');
    expect(text).toContain('meshwhisper_envelopes_delivered_total{class="durable"} 3');
    expect(text).toContain('meshwhisper_queue_envelopes 42');
    expect(text).toContain('meshwhisper_queue_bytes 43008');
    expect(text).toContain('meshwhisper_rate_limit_tracked_keys 7');
    expect(text).toContain('meshwhisper_connections_open{kind="anonymous"} 0');
    expect(text).toContain('meshwhisper_backup_last_success_timestamp_seconds 1700000000');
    expect(text).toContain('meshwhisper_push_sent_total 0');
    expect(text).toMatch(/meshwhisper_http_request_duration_seconds_count\{method="GET",route="\/v1\/keys\/:mailbox",status="2xx"\} 1/);
    expect(text).toMatch(/route="unmatched",status="4xx"/);
    expect(text).toContain('process_cpu_seconds_total');
  });

  it('no label carries a per-user value: label names are from a fixed set and raw URLs never appear', async () => {
    const m = await exercised();
    // A caller passing raw values by mistake is clamped to `other`, not turned into a series.
    m.authFailed('mailbox-0123456789abcdef' as never);
    m.envelopeRejected('c2VjcmV0' as never);
    m.rateLimitedBy('4:203.0.113.7');
    const allowed = new Set(['kind', 'class', 'lane', 'reason', 'bucket', 'method', 'route', 'status', 'result', 'le', 'quantile',
      // prom-client default metrics
      'type', 'space', 'version', 'major', 'minor', 'patch', 'kind']);
    for (const metric of await m.registry.getMetricsAsJSON()) {
      for (const v of metric.values) {
        for (const name of Object.keys(v.labels)) expect(allowed.has(name), `${metric.name} label ${name}`).toBe(true);
      }
    }
    const text = await m.render();
    expect(text).not.toMatch(/mailbox-0123|c2VjcmV0|203\.0\.113/);
    expect(text).toContain('meshwhisper_auth_failures_total{reason="other"} 1');
    expect(text).toContain('meshwhisper_rate_limited_total{bucket="other"} 1');
  });

  it('passes `promtool check metrics`', async (ctx) => {
    const promtool = promtoolPath();
    if (promtool === undefined) {
      // .ci/run installs it and sets MW_REQUIRE_PROMTOOL=1, so CI cannot pass by skipping.
      if (process.env.MW_REQUIRE_PROMTOOL === '1') throw new Error('promtool is required (MW_REQUIRE_PROMTOOL=1) but not installed: apt-get install -y prometheus');
      console.warn('SKIPPED: promtool not found (apt-get install -y prometheus provides it)');
      ctx.skip();
      return;
    }
    const text = await (await exercised()).render();
    const r = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`.trim()).toBe('');
    expect(r.status).toBe(0);
  });

  it('promtool really rejects a bad exposition (the check above can fail)', (ctx) => {
    const promtool = promtoolPath();
    if (promtool === undefined) {
      ctx.skip();
      return;
    }
    const bad = '# HELP requests Requests.\n# TYPE requests counter\nrequests 1\n';
    const r = spawnSync(promtool, ['check', 'metrics'], { input: bad, encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`).toMatch(/_total/);
  });
});

describe('exposure settings', () => {
  it('defaults to a loopback-only separate listener and nothing on the main listener', () => {
    const e = resolveMetricsExposure({});
    expect(e.listener).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(e.onMainListener).toBe(false);
    expect(e.token).toBeUndefined();
    expect(e.warnings).toEqual([]);
  });

  it('off, custom host with a warning, token enables the main-listener route', () => {
    expect(resolveMetricsExposure({ METRICS_PORT: 'off' }).listener).toBeUndefined();
    const wide = resolveMetricsExposure({ METRICS_HOST: '0.0.0.0', METRICS_PORT: '9100' });
    expect(wide.listener).toEqual({ host: '0.0.0.0', port: 9100 });
    expect(wide.warnings.length).toBe(1);
    const tok = resolveMetricsExposure({ METRICS_PORT: 'off', METRICS_TOKEN: TOKEN });
    expect(tok.onMainListener).toBe(true);
    expect(() => resolveMetricsExposure({ METRICS_TOKEN: 'short' })).toThrow(MetricsError);
    expect(() => resolveMetricsExposure({ METRICS_PORT: '70000' })).toThrow(/METRICS_PORT/);
    expect(() => resolveMetricsExposure({ METRICS_PORT: '9x' })).toThrow(/METRICS_PORT/);
  });

  it('bearer comparison', () => {
    expect(bearerMatches(`Bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(bearerMatches(`bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(bearerMatches(`Bearer ${TOKEN}x`, TOKEN)).toBe(false);
    expect(bearerMatches(undefined, TOKEN)).toBe(false);
    expect(bearerMatches('Bearer ', TOKEN)).toBe(false);
    expect(bearerMatches(TOKEN, TOKEN)).toBe(false);
  });

  it('main listener: /metrics requires the token and never leaks it', async () => {
    const m = new NodeMetrics({ defaultMetrics: false });
    const app = Fastify();
    await app.register(metricsRoutePlugin(m, TOKEN));
    const denied = await app.inject('/metrics');
    expect(denied.statusCode).toBe(401);
    expect(denied.json()).toEqual({ error: { code: 'MW_METRICS_UNAUTHORIZED', message: expect.any(String) } });
    expect(denied.body).not.toContain('secret-part');
    const ok = await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['content-type']).toContain('text/plain');
    expect(ok.body).toContain('meshwhisper_envelopes_accepted_total');
    await app.close();
    expect(() => metricsRoutePlugin(m, 'short')).toThrow(MetricsError);
  });

  it('separate listener over a real socket, with and without a token', async () => {
    const m = new NodeMetrics({ defaultMetrics: false });
    const get = (port: number, path: string, auth?: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, path, headers: auth ? { authorization: auth } : {} }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString('utf8')));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end();
      });
    {
      await using s = await startMetricsServer(m, { host: '127.0.0.1', port: 0 });
      expect(s.address.address).toBe('127.0.0.1');
      const r = await get(s.address.port, '/metrics');
      expect(r.status).toBe(200);
      expect(r.body).toContain('meshwhisper_queue_envelopes');
      expect((await get(s.address.port, '/other')).status).toBe(404);
    }
    {
      // A request Node's parser refuses: the error shape, as on the main listener.
      await using s = await startMetricsServer(m, { host: '127.0.0.1', port: 0 });
      const raw = await new Promise<string>((resolve, reject) => {
        const c = connect(s.address.port, '127.0.0.1', () => c.write('GARBAGE\r\n\r\n'));
        let buf = '';
        c.on('data', (d: Buffer) => (buf += d.toString('latin1')));
        c.on('close', () => resolve(buf));
        c.on('error', reject);
      });
      expect(raw).toMatch(/^HTTP\/1\.1 400 /);
      expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))).toEqual({ error: { code: 'MW_PROTO_MALFORMED', message: expect.any(String) } });
    }
    await using t = await startMetricsServer(m, { host: '127.0.0.1', port: 0, token: TOKEN });
    expect((await get(t.address.port, '/metrics')).status).toBe(401);
    expect((await get(t.address.port, '/metrics', `Bearer ${TOKEN}`)).status).toBe(200);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { parseCorsOrigins, upgradeOriginAllowed } from '../src/cors.js';
import type { TestNode } from './helpers.js';
import { startTestNode } from './helpers.js';

function tryOpen(port: number, path: string, headers: Record<string, string>): Promise<string> {
  return new Promise<string>((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers });
    ws.once('open', () => {
      ws.close();
      resolve('open');
    });
    ws.once('unexpected-response', (_req, res) => resolve(String(res.statusCode)));
    ws.once('error', () => resolve('error'));
  });
}

describe('CORS for browser apps', () => {
  let t: TestNode;
  let port: number;
  beforeAll(async () => {
    t = await startTestNode({ CORS_ORIGINS: 'https://app.example.com' });
    port = (await t.node.listen()).port;
  });
  afterAll(() => t.close());

  it('answers a preflight from an allowed origin and exposes Retry-After', async () => {
    const res = await t.node.app.inject({
      method: 'OPTIONS',
      url: '/v1/keys',
      headers: { origin: 'https://app.example.com', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'mw-auth, content-type' },
    });
    expect(res.statusCode).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example.com');
    expect(String(res.headers['access-control-allow-headers'])).toContain('mw-auth');
    const get = await t.node.app.inject({ method: 'GET', url: '/health', headers: { origin: 'https://app.example.com' } });
    expect(get.headers['access-control-allow-origin']).toBe('https://app.example.com');
    expect(get.headers['access-control-expose-headers']).toBe('retry-after, mw-archive-version');
  });

  it('gives other origins no CORS headers (the browser then blocks the page)', async () => {
    const res = await t.node.app.inject({ method: 'OPTIONS', url: '/v1/keys', headers: { origin: 'https://evil.example', 'access-control-request-method': 'PUT' } });
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('refuses WebSocket upgrades from origins not on the list; native clients (no Origin) are unaffected', async () => {
    expect(await tryOpen(port, '/v1/device', { origin: 'https://evil.example' })).toBe('403');
    expect(await tryOpen(port, '/v1/device', { origin: 'https://app.example.com' })).toBe('open');
    expect(await tryOpen(port, '/v1/device', {})).toBe('open');
  });

  it('same-origin check on upgrades compares the Origin with the Host header (scheme-independent, default ports folded)', () => {
    const none = new Set<string>();
    expect(upgradeOriginAllowed(none, undefined, 'node.example')).toBe(true);
    expect(upgradeOriginAllowed(none, 'https://node.example', 'node.example')).toBe(true);
    expect(upgradeOriginAllowed(none, 'https://node.example', 'node.example:443')).toBe(true);
    expect(upgradeOriginAllowed(none, 'http://NODE.example:8080', 'node.example:8080')).toBe(true);
    expect(upgradeOriginAllowed(none, 'https://node.example', 'node.example:8080')).toBe(false);
    expect(upgradeOriginAllowed(none, 'https://evil.example', 'node.example')).toBe(false);
    expect(upgradeOriginAllowed(none, 'null', 'node.example')).toBe(false);
    expect(upgradeOriginAllowed(none, 'https://node.example', undefined)).toBe(false);
    expect(upgradeOriginAllowed(none, 'not a url', 'node.example')).toBe(false);
    expect(upgradeOriginAllowed('*', 'https://evil.example', 'node.example')).toBe(true);
  });

  it('parses the setting strictly', () => {
    expect(parseCorsOrigins('')).toEqual(new Set());
    expect(parseCorsOrigins('*')).toBe('*');
    expect([...(parseCorsOrigins('https://a.example, http://localhost:5173') as Set<string>)]).toEqual(['https://a.example', 'http://localhost:5173']);
    expect(() => parseCorsOrigins('https://a.example/path')).toThrow(RangeError);
    expect(() => parseCorsOrigins('not a url')).toThrow(RangeError);
  });
});

describe('WebSocket Origin with CORS_ORIGINS empty (the default)', () => {
  let t: TestNode;
  let port: number;
  beforeAll(async () => {
    t = await startTestNode();
    port = (await t.node.listen()).port;
  });
  afterAll(() => t.close());

  it('attack: a page on another origin cannot make its visitors open sockets (403); same-origin pages and native clients can', async () => {
    for (const path of ['/v1/device', '/v1/anonymous']) {
      expect(await tryOpen(port, path, { origin: 'https://evil.example' })).toBe('403');
      expect(await tryOpen(port, path, { origin: 'null' })).toBe('403');
      expect(await tryOpen(port, path, { origin: `http://127.0.0.1:${port}` })).toBe('open');
      expect(await tryOpen(port, path, {})).toBe('open');
    }
  });
});

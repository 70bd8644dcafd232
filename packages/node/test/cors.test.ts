import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { parseCorsOrigins } from '../src/cors.js';
import type { TestNode } from './helpers.js';
import { startTestNode } from './helpers.js';

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
    expect(get.headers['access-control-expose-headers']).toBe('retry-after');
  });

  it('gives other origins no CORS headers (the browser then blocks the page)', async () => {
    const res = await t.node.app.inject({ method: 'OPTIONS', url: '/v1/keys', headers: { origin: 'https://evil.example', 'access-control-request-method': 'PUT' } });
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('refuses WebSocket upgrades from origins not on the list; native clients (no Origin) are unaffected', async () => {
    const tryOpen = (headers: Record<string, string>) =>
      new Promise<string>((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/device`, { headers });
        ws.once('open', () => {
          ws.close();
          resolve('open');
        });
        ws.once('unexpected-response', (_req, res) => resolve(String(res.statusCode)));
        ws.once('error', () => resolve('error'));
      });
    expect(await tryOpen({ origin: 'https://evil.example' })).toBe('403');
    expect(await tryOpen({ origin: 'https://app.example.com' })).toBe('open');
    expect(await tryOpen({})).toBe('open');
  });

  it('parses the setting strictly', () => {
    expect(parseCorsOrigins('')).toEqual(new Set());
    expect(parseCorsOrigins('*')).toBe('*');
    expect([...(parseCorsOrigins('https://a.example, http://localhost:5173') as Set<string>)]).toEqual(['https://a.example', 'http://localhost:5173']);
    expect(() => parseCorsOrigins('https://a.example/path')).toThrow(RangeError);
    expect(() => parseCorsOrigins('not a url')).toThrow(RangeError);
  });
});

// The node's static serving of a built web app (routes/web-app.ts, WEB_APP): exact files only, a
// strict CSP on each, gzip, ETag revalidation, immutable hashed assets, the API never shadowed.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeConfigError, loadConfig } from '../src/config.js';
import { PRUDENCE_DIST, WEB_APP_CSP } from '../src/routes/web-app.js';
import { startTestNode } from './helpers.js';
import type { TestNode } from './helpers.js';

const app = mkdtempSync(join(tmpdir(), 'mw-web-app-'));
const INDEX = `<!doctype html><title>test app</title>${'<p>padding</p>'.repeat(100)}`;
const SCRIPT = `console.log(${JSON.stringify('x'.repeat(2000))});`;
mkdirSync(join(app, 'assets'));
mkdirSync(join(app, 'v1'));
writeFileSync(join(app, 'index.html'), INDEX);
writeFileSync(join(app, 'assets', 'index-abc123.js'), SCRIPT);
writeFileSync(join(app, 'sw.js'), 'self.addEventListener("fetch", () => {});');
writeFileSync(join(app, 'manifest.webmanifest'), '{"name":"t"}');
writeFileSync(join(app, 'v1', 'push'), 'must never shadow the API');

let t: TestNode;
beforeAll(async () => {
  t = await startTestNode({ WEB_APP: app });
});
afterAll(async () => {
  await t.close();
  rmSync(app, { recursive: true, force: true });
});

describe('WEB_APP: a built app served at /', () => {
  it('GET / is index.html with the strict CSP and the other security headers', async () => {
    const res = await t.node.app.inject({ method: 'GET', url: '/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.body).toBe(INDEX);
    expect(res.headers['content-security-policy']).toBe(WEB_APP_CSP);
    for (const d of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"]) expect(WEB_APP_CSP).toContain(d);
    expect(WEB_APP_CSP).not.toMatch(/unsafe-inline|unsafe-eval|\*/);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.headers['cache-control']).toBe('no-cache');
  });

  it('hashed assets are immutable; gzip when accepted; ETag revalidates to 304; HEAD works', async () => {
    const plain = await t.node.app.inject({ method: 'GET', url: '/assets/index-abc123.js' });
    expect(plain.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(plain.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(plain.body).toBe(SCRIPT);
    const gz = await t.node.app.inject({ method: 'GET', url: '/assets/index-abc123.js', headers: { 'accept-encoding': 'gzip, br' } });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gz.rawPayload).toString()).toBe(SCRIPT);
    expect(gz.rawPayload.length).toBeLessThan(SCRIPT.length);
    const etag = plain.headers['etag'] as string;
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{22}"$/);
    const again = await t.node.app.inject({ method: 'GET', url: '/assets/index-abc123.js', headers: { 'if-none-match': etag } });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe('');
    const head = await t.node.app.inject({ method: 'HEAD', url: '/sw.js' });
    expect(head.statusCode).toBe(200);
    const manifest = await t.node.app.inject({ method: 'GET', url: '/manifest.webmanifest' });
    expect(manifest.headers['content-type']).toBe('application/manifest+json; charset=utf-8');
  });

  it('only exact files: no traversal, no directory, no fallback; the API keeps its routes', async () => {
    for (const url of ['/assets/', '/assets', '/../package.json', '/assets/../index.html.bak', '/%2e%2e/%2e%2e/etc/passwd', '/nope.js']) {
      const res = await t.node.app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(404);
      expect((res.json() as { error: { code: string } }).error.code).toBe('MW_NOT_FOUND');
    }
    const api = await t.node.app.inject({ method: 'GET', url: '/v1/push' });
    expect(api.body).not.toContain('must never shadow');
    const health = await t.node.app.inject({ method: 'GET', url: '/health' });
    expect(health.statusCode).toBe(200);
    expect(health.headers['content-security-policy']).toBeUndefined();
  });
});

describe('WEB_APP settings', () => {
  it('defaults to the Prudence build of this checkout; off and a directory without index.html are understood', () => {
    expect(loadConfig({}).webApp).toEqual({ dir: PRUDENCE_DIST, isDefault: true });
    expect(PRUDENCE_DIST.replace(/\\/g, '/')).toMatch(/apps\/prudence\/dist\/?$/);
    expect(loadConfig({ WEB_APP: 'off' }).webApp).toEqual({ dir: '', isDefault: false });
    expect(() => loadConfig({ WEB_APP: join(app, 'assets') })).toThrow(NodeConfigError);
    expect(() => loadConfig({ WEB_APP: join(app, 'assets') })).toThrow(/WEB_APP: no index.html/);
  });

  it('WEB_APP=off serves nothing at /', async () => {
    const off = await startTestNode({ WEB_APP: 'off' });
    try {
      const res = await off.node.app.inject({ method: 'GET', url: '/' });
      expect(res.statusCode).toBe(404);
      expect(res.headers['content-security-policy']).toBeUndefined();
    } finally {
      await off.close();
    }
  });
});

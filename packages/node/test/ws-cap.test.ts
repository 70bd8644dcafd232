// Attack: one address holding an unbounded number of idle WebSockets (opened slowly enough to pass
// the upgrade rate). WS_MAX_CONNECTIONS_PER_ADDRESS caps open sockets per address.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { TestNode } from './helpers.js';
import { generousLimits, startTestNode } from './helpers.js';

let t: TestNode;
let port: number;
beforeAll(async () => {
  t = await startTestNode({ WS_MAX_CONNECTIONS_PER_ADDRESS: '3', RATE_LIMITS: generousLimits() });
  port = (await t.node.listen()).port;
});
afterAll(async () => t.close());

type Outcome = { ws: WebSocket } | { status: number; retryAfter: string | undefined; code: string };

function tryOpen(path: string): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`);
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], code: (JSON.parse(body) as { error: { code: string } }).error.code }));
    });
    ws.once('error', reject);
  });
}

const closed = (ws: WebSocket) => new Promise<void>((r) => (ws.once('close', () => r()), ws.close()));

describe('open WebSockets per address (WS_MAX_CONNECTIONS_PER_ADDRESS)', () => {
  it('past the cap an upgrade gets 429 MW_RATE_LIMITED with Retry-After; closing one frees a slot', async () => {
    const open = [await tryOpen('/v1/device'), await tryOpen('/v1/anonymous'), await tryOpen('/v1/anonymous')];
    for (const o of open) expect('ws' in o).toBe(true);
    const refused = await tryOpen('/v1/device');
    expect(refused).toMatchObject({ status: 429, retryAfter: '30', code: 'MW_RATE_LIMITED' });
    await closed((open[0] as { ws: WebSocket }).ws);
    await new Promise((r) => setTimeout(r, 50)); // the node sees the close
    const again = await tryOpen('/v1/device');
    expect('ws' in again).toBe(true);
    for (const o of [again, open[1]!, open[2]!]) await closed((o as { ws: WebSocket }).ws);
  });

  it('0 means unlimited, and the default lets a small office share one address', async () => {
    const { loadConfig } = await import('../src/config.js');
    expect(loadConfig({ WS_MAX_CONNECTIONS_PER_ADDRESS: '0' }).wsMaxConnectionsPerAddress).toBe(0);
    expect(loadConfig({}).wsMaxConnectionsPerAddress).toBe(256);
    expect(() => loadConfig({ WS_MAX_CONNECTIONS_PER_ADDRESS: '-1' })).toThrow();
  });
});

// Errors raised by the HTTP layers below the routes (Node's HTTP parser, fastify's router and body
// parsers) reach clients in the documented `{ error: { code, message } }` shape with a registry
// code, and never echo the request path. Raw sockets: inject() cannot send most of these requests.
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALL_ERROR_CODES, ErrorCode } from '@meshwhisper/protocol';
import { startTestNode } from './helpers.js';
import type { TestNode } from './helpers.js';

interface RawReply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Writes `request` as-is and reads the first reply (the server closes, or the body is complete). */
function rawHttp(port: number, request: string): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(request));
    let buf = '';
    const done = (): void => {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return reject(new Error(`no HTTP reply: ${JSON.stringify(buf.slice(0, 200))}`));
      const [statusLine = '', ...lines] = buf.slice(0, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: buf.slice(end + 4) });
      s.destroy();
    };
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      const len = /\r\ncontent-length:\s*(\d+)/i.exec(buf.slice(0, end));
      if (end >= 0 && len && buf.length - end - 4 >= Number(len[1])) done();
    });
    s.on('end', done);
    s.on('error', reject);
  });
}

function expectShape(r: RawReply, status: number, code: ErrorCode): void {
  expect(r.status).toBe(status);
  expect(r.headers['content-type']).toMatch(/^application\/json/);
  const body = JSON.parse(r.body) as { error: { code: string; message: string } };
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message']);
  expect(body.error.code).toBe(code);
  expect(ALL_ERROR_CODES).toContain(body.error.code);
}

describe('errors from the HTTP framework (raw sockets)', () => {
  let t: TestNode;
  let port: number;
  beforeAll(async () => {
    t = await startTestNode();
    port = (await t.node.listen()).port;
  });
  afterAll(() => t.close());

  it('bad %-encoding in the path → 400 MW_PROTO_MALFORMED, and the path is not echoed', async () => {
    const r = await rawHttp(port, 'GET /v1/media/%zz-secret-capability HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expectShape(r, 400, ErrorCode.MALFORMED);
    expect(r.body).not.toContain('secret-capability');
    expect(r.body).not.toContain('%zz');
    const r2 = await rawHttp(port, 'GET /v1/usernames/default/%E0%A4%A HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expectShape(r2, 400, ErrorCode.MALFORMED);
  });

  it('a path parameter over the router limit → 414 MW_PROTO_TOO_LARGE, not echoed', async () => {
    const long = `secret${'a'.repeat(300)}`;
    const r = await rawHttp(port, `GET /v1/media/${long} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expectShape(r, 414, ErrorCode.TOO_LARGE);
    expect(r.body).not.toContain('secret');
  });

  it('request headers (or a request line) over the parser limit → 431 MW_PROTO_TOO_LARGE', async () => {
    expectShape(await rawHttp(port, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`), 431, ErrorCode.TOO_LARGE);
    const r = await rawHttp(port, `GET /secret${'b'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expectShape(r, 431, ErrorCode.TOO_LARGE);
    expect(r.body).not.toContain('secret');
  });

  it('Content-Length: -1 and other unparsable requests → 400 MW_PROTO_MALFORMED', async () => {
    expectShape(await rawHttp(port, 'POST /v1/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.meshwhisper.v1+proto\r\nContent-Length: -1\r\n\r\n'), 400, ErrorCode.MALFORMED);
    expectShape(await rawHttp(port, 'POST /v1/send HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab'), 400, ErrorCode.MALFORMED);
    expectShape(await rawHttp(port, 'GARBAGE\r\n\r\n'), 400, ErrorCode.MALFORMED);
  });

  it('a JSON (or text) content type → 415 MW_PROTO_UNSUPPORTED_MEDIA_TYPE, whether or not the body parses', async () => {
    for (const [type, body] of [
      ['application/json', 'not json'],
      ['application/json', '{}'],
      ['text/plain', 'hello'],
    ] as const) {
      const r = await rawHttp(port, `POST /v1/send HTTP/1.1\r\nHost: x\r\nContent-Type: ${type}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
      expectShape(r, 415, ErrorCode.UNSUPPORTED_MEDIA_TYPE);
    }
  });

  it('WebSocket handshakes the ws library refuses → the error shape, not its plain-text reply', async () => {
    const up = 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
    const post = await rawHttp(port, `POST /v1/device HTTP/1.1\r\nHost: x\r\n${up}Content-Length: 0\r\n\r\n`);
    expectShape(post, 405, ErrorCode.MALFORMED);
    expect(post.headers['allow']).toBe('GET');
    expectShape(await rawHttp(port, 'GET /v1/device HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n'), 400, ErrorCode.MALFORMED);
    const version = await rawHttp(port, 'GET /v1/anonymous HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 99\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    expectShape(version, 400, ErrorCode.MALFORMED);
    expect(version.headers['sec-websocket-version']).toBe('13');
    expectShape(await rawHttp(port, 'GET /v1/device HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'), 400, ErrorCode.MALFORMED);
    expectShape(await rawHttp(port, `GET /v1/device HTTP/1.1\r\nHost: x\r\n${up}Sec-WebSocket-Protocol: a,,b\r\n\r\n`), 400, ErrorCode.MALFORMED);
  });

  it('the node still serves after all of that', async () => {
    const r = await rawHttp(port, 'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(r.status).toBe(200);
  });
});

describe('a request that reaches a node shutting down', () => {
  it('gets 503 MW_UNAVAILABLE in the error shape (not fastify\'s own 503 body), and the connection closes', async () => {
    const t = await startTestNode({ SHUTDOWN_GRACE_SECONDS: '30' });
    const port = (await t.node.listen()).port;
    // A request whose headers are still arriving when shutdown starts: its connection is not idle,
    // so it is not cut; it is routed once the headers are complete.
    const s: Socket = connect(port, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    let buf = '';
    s.on('data', (d: Buffer) => (buf += d.toString('latin1')));
    const ended = new Promise((r) => s.once('close', r));
    s.write('GET /health HTTP/1.1\r\nHost: x\r\n');
    const open = (): Promise<number> => new Promise((resolve) => t.node.app.server.getConnections((_e, n) => resolve(n)));
    await expect.poll(open, { timeout: 10_000 }).toBeGreaterThan(0);
    const closing = t.close();
    // The listener stops taking connections once fastify began closing.
    await expect
      .poll(
        () =>
          new Promise<boolean>((resolve) => {
            const probe = connect(port, '127.0.0.1');
            probe.once('connect', () => (probe.destroy(), resolve(false)));
            probe.once('error', () => resolve(true));
          }),
        { timeout: 20_000 },
      )
      .toBe(true);
    s.write('Accept: */*\r\n\r\n');
    await ended;
    await closing;
    const end = buf.indexOf('\r\n\r\n');
    expect(buf.slice(0, buf.indexOf('\r\n'))).toMatch(/^HTTP\/1\.1 503 /);
    expect(buf.slice(0, end)).toMatch(/\r\nconnection: close/i);
    const body = JSON.parse(buf.slice(end + 4)) as { error: { code: string; message: string } };
    expect(Object.keys(body)).toEqual(['error']);
    expect(body.error.code).toBe(ErrorCode.UNAVAILABLE);
  }, 60_000);
});

// A reused keep-alive connection that the server (or a proxy in front of it) closes just as the next
// request goes out: Node's fetch fails that request ("other side closed") although the server never
// answered it, and, unlike a browser, does not send it again. The SDK sends a GET once more on a new
// connection; a POST it does not repeat (it may have been processed). Over a real socket: this server
// drops every connection's second request without an answer.
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createContext } from '@meshwhisper/crypto';
import { CONTENT_TYPE_PROTOBUF, ChallengeSchema, encodeBody } from '@meshwhisper/protocol';
import { NodeApi } from '../../src/client/node-api.js';
import { SdkError, SdkErrorCode } from '../../src/client/errors.js';

/** A server that drops every connection's second request; `seen` lists what it received ("METHOD path #n-on-its-connection"). */
async function start(): Promise<{ url: string; seen: string[] }> {
  const seen: string[] = [];
  const perSocket = new WeakMap<Socket, number>();
  const server: Server = createServer((req, res) => {
    const n = (perSocket.get(req.socket) ?? 0) + 1;
    perSocket.set(req.socket, n);
    seen.push(`${req.method} ${req.url} #${n}`);
    // The connection closes under its second request: no answer at all.
    if (n === 2) return void req.socket.destroy();
    if (req.method === 'GET' && req.url === '/v1/auth/challenge') {
      res.writeHead(200, { 'content-type': CONTENT_TYPE_PROTOBUF });
      res.end(encodeBody(ChallengeSchema, { challenge: new Uint8Array(32).fill(n) }));
      return;
    }
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  // It promises a long idle time, so the client reuses its connection.
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  // A new port for each test: the client's pool holds no connection to it yet.
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, seen };
}
const cleanup: (() => Promise<void>)[] = [];
/** Node's fetch puts a connection back in its pool a moment after the response ends: then it is reused. */
const pooled = (): Promise<void> => new Promise((r) => setTimeout(r, 50));
afterEach(async () => {
  for (const f of cleanup.splice(0)) await f();
});

describe('a connection that breaks under a request', () => {
  it("Node's fetch alone fails the request that went out on the closing connection", async () => {
    const { url, seen } = await start();
    await (await fetch(`${url}/v1/auth/challenge`)).arrayBuffer();
    await pooled();
    const second = await fetch(`${url}/v1/auth/challenge`).then(
      () => 'answered',
      (e: Error) => (e.cause as { code?: string } | undefined)?.code ?? e.message,
    );
    expect(second).toBe('UND_ERR_SOCKET');
    expect(seen).toEqual(['GET /v1/auth/challenge #1', 'GET /v1/auth/challenge #2']);
  });

  it('the SDK sends a GET once more on a new connection, and it is answered', async () => {
    const { url, seen } = await start();
    const api = new NodeApi(createContext(), url, globalThis.fetch.bind(globalThis));
    expect(await api.challenge()).toEqual(new Uint8Array(32).fill(1));
    await pooled();
    expect(await api.challenge()).toEqual(new Uint8Array(32).fill(1)); // the first request of a new connection
    expect(seen).toEqual(['GET /v1/auth/challenge #1', 'GET /v1/auth/challenge #2', 'GET /v1/auth/challenge #1']);
  });

  it('a POST is not sent twice: the caller gets MW_SDK_UNREACHABLE', async () => {
    const { url, seen } = await start();
    const api = new NodeApi(createContext(), url, globalThis.fetch.bind(globalThis));
    await api.callEmpty('POST', '/v1/thing', { body: { schema: ChallengeSchema, value: { challenge: new Uint8Array(1) } } });
    await pooled();
    const e = await api.callEmpty('POST', '/v1/thing', { body: { schema: ChallengeSchema, value: { challenge: new Uint8Array(1) } } }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SdkError);
    expect((e as SdkError).code).toBe(SdkErrorCode.UNREACHABLE);
    expect(seen).toEqual(['POST /v1/thing #1', 'POST /v1/thing #2']);
  });
});

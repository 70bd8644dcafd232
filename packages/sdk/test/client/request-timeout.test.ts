// A node (or a path to it) that takes a request and never answers it — or stops half-way through
// the answer — must fail the request with MW_SDK_UNREACHABLE after `requestTimeoutMs`, as a broken
// connection does, instead of holding its caller (an outbox flush, a woken service worker) until
// the platform gives up, if ever. Over real sockets: these servers accept and then go silent.
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createContext } from '@meshwhisper/crypto';
import { CONTENT_TYPE_PROTOBUF, ChallengeSchema, encodeBody } from '@meshwhisper/protocol';
import { HTTP_REQUEST_TIMEOUT_MS, MeshWhisper, memoryStorage } from '../../src/index.js';
import { NodeApi } from '../../src/client/node-api.js';
import { SdkError, SdkErrorCode } from '../../src/client/errors.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0)) await f();
});

/** `silent`: reads each request and never answers; `stalls`: sends the headers and half the body, then nothing; `answers`: a whole challenge at once. */
async function start(mode: 'silent' | 'stalls' | 'answers'): Promise<{ url: string; requests: () => number }> {
  let requests = 0;
  const server: Server = createServer((req, res) => {
    requests++;
    req.resume();
    if (mode === 'silent') return;
    const body = encodeBody(ChallengeSchema, { challenge: new Uint8Array(32).fill(7) });
    res.writeHead(200, { 'content-type': CONTENT_TYPE_PROTOBUF, 'content-length': String(body.length) });
    if (mode === 'answers') return void res.end(body);
    res.write(body.subarray(0, body.length >> 1));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, requests: () => requests };
}

async function failure(p: Promise<unknown>): Promise<SdkError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(SdkError);
  return e as SdkError;
}

describe('a node that stops answering', () => {
  it('no answer at all: the request fails with MW_SDK_UNREACHABLE after requestTimeoutMs, saying so', async () => {
    const { url, requests } = await start('silent');
    const api = new NodeApi(createContext(), url, fetch, 300);
    const t0 = Date.now();
    const e = await failure(api.challenge());
    const took = Date.now() - t0;
    expect(e.code).toBe(SdkErrorCode.UNREACHABLE);
    expect(e.message).toBe('GET /v1/auth/challenge: no answer from the node within 0.3 s');
    expect(requests()).toBe(1); // it did reach the server: this is the silence, not a refused connection
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(5_000);
  });

  it('an answer that stops half-way through its body fails the same way', async () => {
    const { url } = await start('stalls');
    const api = new NodeApi(createContext(), url, fetch, 300);
    const e = await failure(api.challenge());
    expect(e.code).toBe(SdkErrorCode.UNREACHABLE);
    expect(e.message).toContain('no answer from the node within 0.3 s');
  });

  it('an answered request stops its timer: nothing is aborted after the timeout has passed', async () => {
    const { url } = await start('answers');
    const signals: AbortSignal[] = [];
    const watching: typeof fetch = (input, init) => {
      if (init?.signal) signals.push(init.signal);
      return fetch(input, init);
    };
    const api = new NodeApi(createContext(), url, watching, 200);
    for (let i = 0; i < 5; i++) expect((await api.challenge()).length).toBe(32);
    await new Promise((r) => setTimeout(r, 500));
    expect(signals).toHaveLength(5);
    expect(signals.filter((s) => s.aborted)).toHaveLength(0);
  });

  it('MeshWhisper.create against a silent node rejects with MW_SDK_UNREACHABLE instead of hanging', async () => {
    const { url } = await start('silent');
    const e = await failure(MeshWhisper.create({ node: url, namespace: 'timeout', storage: await memoryStorage(), connect: false, requestTimeoutMs: 300 }));
    expect(e.code).toBe(SdkErrorCode.UNREACHABLE);
  });

  it('the default is HTTP_REQUEST_TIMEOUT_MS (30 s); a value that is not a whole number of ms in range is refused', async () => {
    expect(HTTP_REQUEST_TIMEOUT_MS).toBe(30_000);
    expect(new NodeApi(createContext(), 'http://127.0.0.1:9', fetch).requestTimeoutMs).toBe(HTTP_REQUEST_TIMEOUT_MS);
    for (const bad of [0, -1, 1.5, Number.NaN, Infinity, 2 ** 31]) {
      const e = await failure(MeshWhisper.create({ node: 'http://127.0.0.1:9', namespace: 'timeout', storage: await memoryStorage(), connect: false, requestTimeoutMs: bad }));
      expect(e.code, String(bad)).toBe(SdkErrorCode.INVALID_ARGUMENT);
    }
  });
});

// A WebSocket that does not finish its handshake (hello; on /v1/device also authenticate) within
// WS_HANDSHAKE_TIMEOUT_SECONDS is closed: an idle unauthenticated socket holds a slot of the
// per-address cap and memory, and must not do so forever.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEVICE_SOCKET_PATH } from '@meshwhisper/protocol';
import { ANONYMOUS_SOCKET_PATH } from '../src/node.js';
import { CloseCode } from '../src/socket/connection.js';
import { TestDevice, generousLimits, startTestNode } from './helpers.js';
import type { TestNode } from './helpers.js';
import { WsClient } from './ws-client.js';

describe('WebSocket handshake timeout (WS_HANDSHAKE_TIMEOUT_SECONDS=1)', () => {
  let t: TestNode;
  let port: number;
  const clients: WsClient[] = [];
  beforeAll(async () => {
    t = await startTestNode({ RATE_LIMITS: generousLimits(), WS_HANDSHAKE_TIMEOUT_SECONDS: '1' });
    port = (await t.node.listen()).port;
  });
  afterAll(async () => {
    for (const c of clients) c.terminate();
    await t.close();
  });
  const connect = async (path: string): Promise<WsClient> => {
    const c = await WsClient.connect(port, path);
    clients.push(c);
    return c;
  };

  it('attack: a socket that never sends its first frame is closed (both endpoints)', async () => {
    for (const path of [DEVICE_SOCKET_PATH, ANONYMOUS_SOCKET_PATH]) {
      // Started before connecting: the node's timer starts at the upgrade, which comes later, so
      // the elapsed time can only be longer than the timeout (a start taken after connect() resolved
      // could be late by however long the loaded machine took to run the callback).
      const started = performance.now();
      const c = await connect(path);
      const closed = await c.waitClosed(10_000);
      expect(closed.code).toBe(CloseCode.HANDSHAKE_TIMEOUT);
      expect(closed.reason).toBe('handshake timeout');
      expect(performance.now() - started).toBeGreaterThanOrEqual(950);
    }
  });

  it('attack: a device socket that says hello but never authenticates is closed', async () => {
    const c = await connect(DEVICE_SOCKET_PATH);
    c.send({ body: { case: 'clientHello', value: { versions: [2] } } });
    await c.nextKind('serverHello');
    expect((await c.waitClosed(10_000)).code).toBe(CloseCode.HANDSHAKE_TIMEOUT);
  });

  it('a handshake completed in time keeps the socket open past the timeout', async () => {
    const d = new TestDevice();
    expect((await d.register(t.node)).statusCode).toBe(200);
    const device = await WsClient.device(port, d);
    clients.push(device);
    const anon = await connect(ANONYMOUS_SOCKET_PATH);
    anon.send({ body: { case: 'clientHello', value: { versions: [2] } } });
    await anon.nextKind('serverHello');
    await new Promise((r) => setTimeout(r, 1600));
    expect(device.closed).toBeUndefined();
    expect(anon.closed).toBeUndefined();
  });
});

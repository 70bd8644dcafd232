/**
 * A same-origin reverse proxy for browser tests: serves `files` and forwards every other request,
 * and every WebSocket upgrade, to the node at 127.0.0.1:`nodePort` — so the page (and its service
 * worker) and the node share one origin. The node sends no CORS headers yet (see
 * browser-e2e.test.ts, whose proxy this mirrors); drop it once the node can allow browser origins.
 */
import type { IncomingMessage, Server } from 'node:http';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { ownConnectionHeaders } from '../../../../node/test/cluster/balancer.js';

export interface SameOriginProxy {
  readonly url: string;
  close(): Promise<void>;
}

export async function sameOriginProxy(nodePort: number, files: Record<string, [string, string]>): Promise<SameOriginProxy> {
  const tunnels = new Set<Socket | Duplex>();
  const track = (s: Socket | Duplex): void => {
    tunnels.add(s);
    s.once('close', () => tunnels.delete(s));
  };
  const server: Server = createServer((req, res) => {
    const f = req.method === 'GET' ? files[req.url ?? ''] : undefined;
    if (f) return void res.writeHead(200, { 'content-type': f[0], 'cache-control': 'no-store' }).end(f[1]);
    if (req.url === '/favicon.ico') return void res.writeHead(204).end();
    const up = httpRequest({ host: '127.0.0.1', port: nodePort, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, ownConnectionHeaders(r.headers));
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    track(socket);
    const up = netConnect(nodePort, '127.0.0.1', () => {
      const lines = [`${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/${req.httpVersion}`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length) up.write(head);
      socket.pipe(up).pipe(socket);
    });
    track(up);
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
    up.on('close', () => socket.destroy());
    socket.on('close', () => up.destroy());
  });
  const port = await new Promise<number>((r) => server.listen(0, '127.0.0.1', () => r((server.address() as AddressInfo).port)));
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      for (const s of tunnels) s.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

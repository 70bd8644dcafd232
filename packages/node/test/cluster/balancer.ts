// A load balancer for cluster tests, on a real loopback listener: every HTTP request and every
// WebSocket upgrade goes to the next live instance in turn (round robin per request, like HAProxy in
// http mode), so one client's consecutive requests reach different instances. `down(i)` takes an
// instance out of the rotation (a failed health check); connections already tunnelled stay as they are.
import { request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import { connect as tcpConnect } from 'node:net';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * An upstream response's headers for a test proxy's own client: without the upstream's connection
 * terms (`Connection`, `Keep-Alive`), which describe the proxy's connection to the upstream, not the
 * client's to the proxy (HAProxy and nginx answer with their own). Forwarding the node's
 * `Keep-Alive: timeout=72` made clients keep idle connections that the proxy's Node server closes
 * after 5 s; a request sent on one just as it closed failed with "other side closed" (a CI run of
 * the cluster archive test).
 */
export function ownConnectionHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const { connection: _connection, 'keep-alive': _keepAlive, ...rest } = headers;
  return rest;
}

export interface Routed {
  readonly method: string;
  readonly path: string;
  /** Index of the instance (in `ports`) that got it. */
  readonly instance: number;
}

export class RoundRobinBalancer {
  readonly #ports: number[];
  readonly #down = new Set<number>();
  readonly #server: Server;
  readonly #open = new Set<Socket | Duplex>();
  readonly #tunnels = new Map<number, number>();
  #next = 0;
  #port = 0;
  /** HTTP requests answered 502 because their instance failed under them. */
  gatewayErrors = 0;
  /** Every request and upgrade routed so far, in order. */
  readonly routed: Routed[] = [];

  private constructor(ports: number[]) {
    this.#ports = ports;
    this.#server = createServer((req, res) => this.#http(req, res));
    this.#server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(req, socket, head));
    this.#server.on('connection', (s: Socket) => {
      this.#open.add(s);
      s.once('close', () => this.#open.delete(s));
    });
  }

  static async start(ports: number[]): Promise<RoundRobinBalancer> {
    const b = new RoundRobinBalancer(ports);
    await new Promise<void>((resolve) => b.#server.listen(0, '127.0.0.1', resolve));
    b.#port = (b.#server.address() as { port: number }).port;
    return b;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** WebSocket tunnels to instance `i` open now. */
  openTunnels(i: number): number {
    return this.#tunnels.get(i) ?? 0;
  }

  /** Takes instance `i` out of the rotation (it stays out). */
  down(i: number): void {
    this.#down.add(i);
  }

  #pick(req: IncomingMessage): number {
    for (let tries = 0; tries < this.#ports.length; tries++) {
      const i = this.#next++ % this.#ports.length;
      if (!this.#down.has(i)) {
        this.routed.push({ method: req.method ?? '', path: (req.url ?? '').split('?')[0]!, instance: i });
        return i;
      }
    }
    return -1;
  }

  #http(req: IncomingMessage, res: ServerResponse): void {
    const i = this.#pick(req);
    if (i < 0) {
      res.writeHead(503).end();
      return;
    }
    const up = httpRequest({ host: '127.0.0.1', port: this.#ports[i], method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, ownConnectionHeaders(r.headers));
      r.pipe(res);
    });
    up.on('error', () => {
      this.gatewayErrors++;
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    res.on('close', () => up.destroy());
    req.pipe(up);
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const i = this.#pick(req);
    if (i < 0) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    const up = tcpConnect(this.#ports[i]!, '127.0.0.1');
    this.#open.add(up);
    this.#tunnels.set(i, (this.#tunnels.get(i) ?? 0) + 1);
    up.once('close', () => {
      this.#open.delete(up);
      this.#tunnels.set(i, (this.#tunnels.get(i) ?? 1) - 1);
    });
    up.once('connect', () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let k = 0; k < req.rawHeaders.length; k += 2) lines.push(`${req.rawHeaders[k]}: ${req.rawHeaders[k + 1]}`);
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    const end = (): void => {
      up.destroy();
      socket.destroy();
    };
    up.once('error', end);
    up.once('close', end);
    socket.once('error', end);
    socket.once('close', end);
  }

  async close(): Promise<void> {
    for (const s of this.#open) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

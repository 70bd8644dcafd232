/**
 * What a WebSocket heartbeat costs the event loop (packages/node/src/socket/heartbeat.ts): N real
 * loopback WebSockets (ws, as the node uses it), then the time one turn takes to ping all N — what
 * the node did every 30 s before — against one slice of them (what it does every 100 ms now:
 * N ÷ 300 with the default interval). Both ends live in this process, so N is bounded by the
 * open-file limit (2 descriptors per connection).
 *
 *   cd bench/node && node --import tsx ./heartbeat.ts 2000 9000
 */
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { HEARTBEAT_TICK_MS } from '../../packages/node/src/socket/heartbeat.js';

const SLICES = 30_000 / HEARTBEAT_TICK_MS; // the default WS_PING_INTERVAL_SECONDS = 30
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

async function measure(n: number): Promise<void> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise((r) => wss.once('listening', r));
  const port = (wss.address() as AddressInfo).port;
  const server: WebSocket[] = [];
  wss.on('connection', (ws) => server.push(ws));
  const clients: WebSocket[] = [];
  for (let i = 0; i < n; i += 200) {
    await Promise.all(
      Array.from({ length: Math.min(200, n - i) }, () => {
        const c = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
        clients.push(c);
        return new Promise((resolve, reject) => {
          c.once('open', resolve);
          c.once('error', reject);
        });
      }),
    );
  }
  while (server.length < n) await sleep(10);
  const all: number[] = [];
  for (let k = 0; k < 5; k++) {
    await sleep(300); // the previous round's pongs are read
    const t0 = performance.now();
    for (const ws of server) ws.ping();
    all.push(performance.now() - t0);
  }
  const slice: number[] = [];
  for (let k = 0; k < 30; k++) {
    await sleep(20);
    const t0 = performance.now();
    for (let i = k; i < n; i += SLICES) server[i]!.ping();
    slice.push(performance.now() - t0);
  }
  console.log(
    `${n} connections: all pinged in one turn ${all.map((x) => x.toFixed(1)).join(', ')} ms (${((median(all) * 1000) / n).toFixed(1)} µs per ping); ` +
      `one slice (${Math.ceil(n / SLICES)} sockets) median ${median(slice).toFixed(2)} ms, max ${Math.max(...slice).toFixed(2)} ms`,
  );
  for (const c of clients) c.terminate();
  await new Promise((r) => wss.close(r));
}

const sizes = process.argv.slice(2).map(Number);
for (const n of sizes.length ? sizes : [2000]) await measure(n);

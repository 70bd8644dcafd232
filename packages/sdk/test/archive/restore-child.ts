/**
 * A restore in its own process, for restore-crash.test.ts (bundled with esbuild, run with node):
 *   <node url> <db> <recovery key> [block]   restore into the SQLite file <db>; with `block`
 *                                            ("GET /v1/accounts", "PUT /v1/device-list", "PUT /v1/keys"),
 *                                            the first request starting with it prints {"blocked"} and
 *                                            never completes (the parent then SIGKILLs the process).
 * Without `block`: prints {"restored": device index, "history": [texts]} and exits.
 */
import { createRequire } from 'node:module';
import type { SqliteDriver } from '../../src/storage/sqlite.js';
import { openSqliteStorage } from '../../src/storage/sqlite.js';
import { MeshWhisper } from '../../src/client/client.js';
import type { WebSocketConstructor } from '../../src/client/connection.js';

const [url, path, recoveryKey, block] = process.argv.slice(2);
const fromRepo = createRequire(`${process.env['MW_REPO']}/package.json`);
const driver = fromRepo('better-sqlite3') as SqliteDriver;
const WS = fromRepo('ws') as WebSocketConstructor;
const say = (o: unknown): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

const blockingFetch: typeof fetch = (input, init) => {
  const u = new URL(String(input instanceof Request ? input.url : input));
  const request = `${init?.method ?? 'GET'} ${u.pathname}`;
  if (block && request.startsWith(block)) {
    say({ blocked: request });
    return new Promise<Response>(() => undefined);
  }
  return fetch(input, init);
};

const r = await MeshWhisper.restoreFromArchive({ node: url!, namespace: 'test', storage: await openSqliteStorage({ path: path!, driver }), WebSocket: WS, fetch: blockingFetch, recoveryKey: recoveryKey!, connect: false });
const peers = await r.client.conversations();
const history = peers.length ? (await r.client.history(peers[0]!)).map((m) => m.text) : [];
say({ restored: r.deviceIndex, history });
await r.client.close();

/**
 * A client in its own process, for crash tests (crash.test.ts bundles this with esbuild and runs
 * it with node; the parent kills it with SIGKILL at a moment of its choosing):
 *   recv <node url> <db> [crash text]          print {"ready":mailbox hex}, then {"got":text} per message;
 *                                              on the message `crash text`, SIGKILL itself at once
 *                                              (inside the event: later envelopes of the same
 *                                              Deliver frame unprocessed, the frame unacknowledged)
 *   send <node url> <db> <mailbox hex> <count> send "m<i>" for i from (outgoing messages already in
 *                                              the history) to count-1, print {"sent":i} after each
 *   fanout <node url> <db> <account hex> <count>  like send, to every device of an account (batched fan-out)
 *   scan <node url> <db>                       print {"ready":account hex}; talk: send "hi carol" to the
 *                                              account named by the first stdin line, then accept the
 *                                              link offer (hex) of each further stdin line, print
 *                                              {"linked":device index}; print {"got":text} per message
 * A restart runs the same command over the same SQLite file.
 */
import { createRequire } from 'node:module';
import { fromHex, toHex } from '@meshwhisper/crypto';
import type { SqliteDriver } from '../../src/storage/sqlite.js';
import { openSqliteStorage } from '../../src/storage/sqlite.js';
import { MeshWhisper } from '../../src/client/client.js';
import type { WebSocketConstructor } from '../../src/client/connection.js';

const [mode, url, path, ...rest] = process.argv.slice(2);
// The bundle runs from a temporary directory: resolve native and optional packages from the repo.
const fromRepo = createRequire(`${process.env['MW_REPO']}/package.json`);
const driver = fromRepo('better-sqlite3') as SqliteDriver;
const WS = fromRepo('ws') as WebSocketConstructor;
const say = (o: unknown): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

const client = await MeshWhisper.create({ node: url!, namespace: 'test', storage: await openSqliteStorage({ path: path!, driver }), WebSocket: WS });
if (mode === 'recv') {
  const crashAt = rest[0];
  client.on('message', (m) => {
    say({ got: m.text }); // stdout to a pipe is synchronous on Linux: the line is out before the kill
    if (m.text === crashAt) process.kill(process.pid, 'SIGKILL');
  });
  client.on('undecryptable', (u) => say({ undecryptable: u.code, message: u.message }));
  client.on('connection', (state) => say({ connection: state }));
  say({ ready: toHex(client.mailboxId) });
  setInterval(() => say({ status: client.connectionState }), 2000);
} else if (mode === 'scan') {
  client.on('message', (m) => say({ got: m.text }));
  say({ ready: toHex(client.accountKey) });
  const { createInterface } = await import('node:readline');
  let first = true;
  for await (const line of createInterface({ input: process.stdin })) {
    if (first) {
      first = false;
      if (!(await client.contacts()).length) await client.sendText({ accountKey: fromHex(line) }, 'hi carol');
      say({ talked: true });
      continue;
    }
    const r = await client.acceptLinkOffer(fromHex(line), { history: true });
    say({ linked: r.deviceIndex });
  }
} else {
  const to = mode === 'fanout' ? { accountKey: fromHex(rest[0]!) } : fromHex(rest[0]!);
  const count = Number(rest[1]);
  // Where to resume: everything this device already wrote is in its history (committed with the
  // ratchet step and the outbox entry, so a message is either fully queued or not at all).
  const peers = await client.conversations();
  const already = peers.length ? (await client.history(peers[0]!)).filter((e) => e.outgoing).length : 0;
  for (let i = already; i < count; i++) {
    await client.sendText(to, `m${i}`);
    say({ sent: i });
  }
  await client.close();
  say({ done: true });
}

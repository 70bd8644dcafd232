// The primary's sends to a worker process that dies under them (kill -9, out of memory, a stop):
// with a plain send() Node reports the failed write (EPIPE) as an 'error' event of the process —
// in the primary nobody listened, so it was an uncaught exception that took the primary and every
// worker down. sendToWorker() hands the failure to its callback instead. Real child processes.
import { afterAll, describe, expect, it } from 'vitest';
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sendToWorker } from '../../src/workers/primary.js';
import type { IpcMessage } from '../../src/workers/wire.js';

const dir = mkdtempSync(join(tmpdir(), 'mw-send-to-worker-'));
const script = join(dir, 'child.mjs');
writeFileSync(script, "process.on('message', () => {});\nprocess.send('ready');\nsetInterval(() => {}, 1000);\n");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const message: IpcMessage = { mw: 'ev', ev: Array.from({ length: 200 }, (_, i) => ['d', `${'x'.repeat(64)}${i}`] as const) };

/**
 * A child killed with SIGKILL, then one `send` to it before this process has noticed (its event
 * loop is held for 200 ms, so the channel still reads as connected): the write meets the closed pipe.
 */
async function sendToDeadChild(send: (child: ChildProcess) => void): Promise<void> {
  const child = fork(script, [], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
  await new Promise((resolve) => child.once('message', resolve));
  child.kill('SIGKILL');
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
  expect(child.connected).toBe(true); // not seen yet: the race the primary can lose
  send(child);
  await new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(undefined) : child.once('exit', resolve)));
  await new Promise((resolve) => setTimeout(resolve, 20)); // an 'error' event comes on a later tick
}

describe("the primary's sends to a worker that dies", () => {
  it("without a callback the failed write is an 'error' event of the process (what crashed the primary)", async () => {
    const events: Error[] = [];
    await sendToDeadChild((child) => {
      child.on('error', (e) => events.push(e)); // caught here, for the test
      child.send(message);
    });
    expect(events.length).toBe(1);
    expect((events[0] as { code?: string }).code).toMatch(/^(EPIPE|ECONNRESET|ERR_IPC_CHANNEL_CLOSED)$/);
  }, 20_000);

  it("sendToWorker hands it to its callback: no 'error' event", async () => {
    const events: Error[] = [];
    let failed = 0;
    await sendToDeadChild((child) => {
      child.on('error', (e) => events.push(e));
      sendToWorker(child, message, () => failed++);
    });
    expect(failed).toBe(1);
    expect(events).toEqual([]);
  }, 20_000);
});

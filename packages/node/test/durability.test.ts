// Durability under kill -9 (issue 3): a client sends 10,000 envelopes over the anonymous
// WebSocket while the node process is SIGKILLed at seeded points and restarted on the same
// DATA_DIR. Every envelope the node acknowledged must be delivered after the restarts, and each
// exactly once after client-side dedup by message id. Seed: MW_DURABILITY_SEED (printed).
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { EnvelopeClass, decodeFrame, encodeFrame } from '@meshwhisper/protocol';
import { ANONYMOUS_SOCKET_PATH } from '../src/node.js';
import { buildNodeDist } from './build-dist.js';
import { TestDevice, generousLimits, registerOverHttp, xorshift32 } from './helpers.js';
import { WsClient } from './ws-client.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const bin = join(root, 'packages/node/dist/bin.js');
const TOTAL = Number(process.env.MW_DURABILITY_MESSAGES ?? 10_000);
const KILLS = 3;
const SEED = Number(process.env.MW_DURABILITY_SEED ?? Date.now() % 2 ** 31);

/** Uniform in [0, 1), reproducible from `seed`. */
function prng(seed: number): () => number {
  const next = xorshift32(seed);
  return () => next() / 2 ** 32;
}

let dataDir: string;
let child: ChildProcess | undefined;

async function startChild(): Promise<number> {
  const p = spawn(process.execPath, [bin], {
    env: {
      ...process.env,
      DATA_DIR: dataDir,
      PORT: '0',
      HOST: '127.0.0.1',
      METRICS_PORT: 'off',
      LOG_LEVEL: 'info',
      RATE_LIMITS: generousLimits(),
      FIRST_CONTACT_MAX_MESSAGES: String(TOTAL * 2),
      MAILBOX_MAX_MESSAGES: String(TOTAL * 2),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  child = p;
  const lines = createInterface({ input: p.stdout! });
  return new Promise<number>((resolve, reject) => {
    p.once('exit', (code) => reject(new Error(`node exited early (${code})`)));
    lines.on('line', (line) => {
      try {
        const j = JSON.parse(line) as { msg?: string; listen?: string };
        if (j.msg === 'MeshWhisper node listening' && j.listen) resolve(Number(new URL(j.listen).port));
      } catch {
        /* not JSON */
      }
    });
  });
}

async function killChild(): Promise<void> {
  const p = child;
  // Killed already (by the test, a moment ago): 'exit' has fired, and would not again.
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await exited;
}

beforeAll(async () => {
  // The child runs the built node (dist/), like `npm start` (one build at a time across test files).
  await buildNodeDist();
  dataDir = mkdtempSync(join(tmpdir(), 'mw-durability-'));
}, 180_000);

afterAll(async () => {
  await killChild();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('durability (kill -9)', () => {
  it(`every acknowledged envelope of ${TOTAL} survives ${KILLS} SIGKILLs and is delivered exactly once after dedup`, async () => {
    console.log(`durability seed: ${SEED} (rerun with MW_DURABILITY_SEED=${SEED})`);
    const rnd = prng(SEED);
    const killPoints = Array.from({ length: KILLS }, () => Math.floor(rnd() * TOTAL * 0.9) + 1).sort((a, b) => a - b);
    console.log(`kill after ${killPoints.join(', ')} acknowledgements`);

    let port = await startChild();
    const recipient = new TestDevice();
    await registerOverHttp(`http://127.0.0.1:${port}`, recipient);

    const acked = new Set<number>();
    const toSend: number[] = Array.from({ length: TOTAL }, (_, i) => i);
    let resent = 0;
    let killIndex = 0;
    const WINDOW = 128;

    while (acked.size < TOTAL) {
      // One connection's life: pipeline sends until all are acked or the node dies.
      await new Promise<void>((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}${ANONYMOUS_SOCKET_PATH}`);
        const pending = new Map<number, number>();
        let nextRid = 1;
        let dead = false;
        const pump = (): void => {
          while (!dead && pending.size < WINDOW && toSend.length > 0) {
            const idx = toSend.shift()!;
            const rid = nextRid++;
            pending.set(rid, idx);
            ws.send(encodeFrame({ requestId: rid, body: { case: 'send', value: { mailboxId: recipient.mailbox, payload: new TextEncoder().encode(`m-${idx}`), class: EnvelopeClass.DURABLE } } }));
          }
          if (acked.size === TOTAL) ws.close();
        };
        ws.on('open', () => ws.send(encodeFrame({ requestId: 0, body: { case: 'clientHello', value: { versions: [2] } } })));
        ws.on('message', (data: Buffer) => {
          const d = decodeFrame(new Uint8Array(data));
          if (!d.ok) throw new Error(d.error.message);
          const f = d.value;
          if (f.body.case === 'serverHello') return pump();
          const idx = pending.get(f.requestId);
          if (idx === undefined) return;
          pending.delete(f.requestId);
          if (f.body.case === 'sendResult') acked.add(idx);
          else toSend.unshift(idx); // refused (should not happen here): try again
          if (killIndex < killPoints.length && acked.size >= killPoints[killIndex]!) {
            killIndex++;
            dead = true;
            void killChild(); // mid-stream: requests in flight are lost or committed-but-unacked
            return;
          }
          pump();
        });
        const finish = (): void => {
          // Whatever was in flight has an unknown fate: the client resends it (at-least-once).
          for (const idx of pending.values()) {
            toSend.unshift(idx);
            resent++;
          }
          pending.clear();
          resolve();
        };
        ws.on('close', finish);
        ws.on('error', () => undefined);
      });
      if (acked.size < TOTAL) {
        await killChild();
        port = await startChild();
      }
    }
    expect(killIndex).toBe(KILLS);

    // One more SIGKILL after the last acknowledgement, then drain.
    await killChild();
    port = await startChild();
    const c = await WsClient.device(port, recipient);
    const seen = new Map<string, number>();
    let deliveries = 0;
    while (seen.size < TOTAL) {
      const f = await c.nextKind('deliver', 20_000);
      for (const e of f.body.value.envelopes) {
        const id = new TextDecoder().decode(e.payload);
        seen.set(id, (seen.get(id) ?? 0) + 1);
        deliveries++;
      }
      c.ack(f.body.value.envelopes.map((e) => e.id));
    }
    c.close();
    for (const i of acked) expect(seen.has(`m-${i}`), `acknowledged m-${i} was lost`).toBe(true);
    expect(seen.size).toBe(TOTAL);
    // Duplicates can only come from resent in-flight requests whose first copy had committed.
    expect(deliveries - TOTAL).toBeLessThanOrEqual(resent);
    console.log(`delivered ${deliveries} envelopes for ${TOTAL} messages (${deliveries - TOTAL} duplicates from ${resent} resends); all acknowledged delivered`);
  }, 300_000);
});

/**
 * Restart mid-conversation with a real process exit (SIGKILL, no chance to clean up), over the
 * same SQLite file: nothing lost, nothing duplicated — on the receiving side (killed while mail is
 * arriving: some processed but not yet acknowledged to the node) and on the sending side (killed
 * while sending: some sealed and queued but not yet accepted by the node).
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromHex, toHex } from '@meshwhisper/crypto';
import { MeshWhisper, memoryStorage } from '../../src/index.js';
import type { E2eNode } from './test-node.js';
import { startE2eNode } from './test-node.js';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mw-sdk-crash-'));
const bundle = join(dir, 'crash-child.mjs');
let t: E2eNode;

beforeAll(async () => {
  t = await startE2eNode();
  await build({
    entryPoints: [fileURLToPath(new URL('./crash-child.ts', import.meta.url))],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['better-sqlite3', 'ws'],
    alias: {
      '@meshwhisper/crypto': join(repo, 'packages/crypto/src/index.ts'),
      '@meshwhisper/protocol': join(repo, 'packages/protocol/src/index.ts'),
    },
    logLevel: 'error',
    // CommonJS dependencies (qrcode) require Node built-ins: give the ESM bundle a require().
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
});
afterAll(async () => {
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Child {
  proc: ChildProcess;
  lines: Record<string, unknown>[];
  /** Resolves when a line satisfies `pred`. */
  until(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

function run(args: string[]): Child {
  const proc = spawn(process.execPath, [bundle, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, MW_REPO: repo } });
  const lines: Record<string, unknown>[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
      buf = buf.slice(nl + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (!w.pred(line)) continue;
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  // 'close', not 'exit': every line the child wrote has been read by then.
  const exited = new Promise<number | null>((r) => proc.once('close', (code) => r(code)));
  return {
    proc,
    lines,
    exited,
    until(pred, timeoutMs = 20_000) {
      const hit = lines.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`child: no matching line within ${timeoutMs} ms (got ${lines.length} lines, last: ${JSON.stringify(lines.slice(-3))}); node log tail: ${t.logs.slice(-8).join('')}`)), timeoutMs);
        waiters.push({ pred, resolve: (l) => (clearTimeout(timer), resolve(l)) });
        void exited.then((code) => reject(new Error(`child exited (${code}) before a matching line`)));
      });
    },
  };
}

const kill = async (c: Child) => {
  c.proc.kill('SIGKILL');
  await c.exited;
};

describe('crash: a client process killed mid-conversation, restarted over the same SQLite file', () => {
  it('receiving side: every message is shown exactly once across the crash, and the history holds each once', async () => {
    const db = join(dir, 'receiver.db');
    const alice = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    // The first run kills itself (SIGKILL) the moment it has shown m30: mid-batch, unacknowledged.
    let bob = run(['recv', t.url, db, 'm30']);
    const mailbox = fromHex((await bob.until((l) => typeof l['ready'] === 'string'))['ready'] as string);
    const N = 120;
    const shown: string[] = [];
    for (let i = 0; i < N; i++) await alice.sendText(mailbox, `m${i}`);
    await bob.exited;
    shown.push(...bob.lines.filter((l) => 'got' in l).map((l) => l['got'] as string));
    expect(shown.at(-1)).toBe('m30');
    bob = run(['recv', t.url, db]);
    await bob.until((l) => l['got'] === `m${N - 1}`, 45_000);
    await new Promise((r) => setTimeout(r, 300)); // anything redelivered would show by now
    await kill(bob);
    shown.push(...bob.lines.filter((l) => 'got' in l).map((l) => l['got'] as string));
    expect(shown.length).toBe(N);
    expect(new Set(shown).size).toBe(N);
    // The history, read by a fresh client over the same file: each message once, in order.
    const { openSqliteStorage } = await import('../../src/index.js');
    const reader = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await openSqliteStorage({ path: db }), connect: false });
    expect((await reader.history(alice.accountKey)).map((e) => e.text)).toEqual(Array.from({ length: N }, (_, i) => `m${i}`));
    await Promise.all([reader.close(), alice.close()]);
  }, 90_000);

  it('sending side: killed while sending, the restart sends what was queued (same bytes) and goes on; each arrives exactly once', async () => {
    const db = join(dir, 'sender.db');
    const bob = await MeshWhisper.create({ node: t.url, namespace: 'test', storage: await memoryStorage() });
    const got: string[] = [];
    bob.on('message', (m) => got.push(m.text!));
    const undecryptable: string[] = [];
    bob.on('undecryptable', (u) => undecryptable.push(u.code));
    const N = 100;
    let alice = run(['send', t.url, db, toHex(bob.mailboxId), String(N)]);
    await alice.until((l) => l['sent'] === 25);
    await kill(alice);
    alice = run(['send', t.url, db, toHex(bob.mailboxId), String(N)]);
    await alice.until((l) => l['done'] === true, 60_000);
    await alice.exited;
    for (let i = 0; i < 100 && got.length < N; i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 300));
    await bob.idle();
    expect(undecryptable).toEqual([]);
    expect(got.length).toBe(N);
    expect([...got].sort()).toEqual(Array.from({ length: N }, (_, i) => `m${i}`).sort());
    await bob.close();
  }, 90_000);
});

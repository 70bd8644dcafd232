// "Nothing is acknowledged before it is on disk, fsynced" (docs/architecture.md), checked from
// outside the process rather than read off a pragma: the built node runs with an LD_PRELOAD shim
// (compiled here with the machine's C compiler) that wraps libc's fsync and fdatasync — the calls
// SQLite (inside better-sqlite3) and libuv make — logs each call's start and end on the wall
// clock with the file it synced, and holds every return for SLOW_MS more, as a slow disk would.
// Then every answer that says "stored" (a send's sendResult, an ack's ok, the ok to a write on the
// store's main connection such as new delivery tokens) must arrive after a
// sync of the database's WAL that began after the request was sent and ended before the answer —
// and so at least SLOW_MS after the request. An answer given before the sync would arrive early.
// A request that needs no durable write (GET /health) is answered without the delay, so the shim
// slows syncs only.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvelopeClass } from '@meshwhisper/protocol';
import { ANONYMOUS_SOCKET_PATH, DATABASE_FILE } from '../src/node.js';
import { buildNodeDist } from './build-dist.js';
import { TestDevice, registerOverHttp } from './helpers.js';
import { startWorkersNode } from './workers/harness.js';
import type { WorkersNode } from './workers/harness.js';
import { WsClient } from './ws-client.js';

const SLOW_MS = 300;

const SHIM_C = `
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Appends "<call> <start ns> <end ns> <path>" to $MW_SYNC_LOG (one write(2) per line, O_APPEND). */
static void note(const char *call, int fd, long long start, long long end) {
  const char *log = getenv("MW_SYNC_LOG");
  if (!log) return;
  char link[64], path[512], line[700];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  path[n > 0 ? n : 0] = 0;
  int len = snprintf(line, sizeof line, "%s %lld %lld %s\\n", call, start, end, path);
  int out = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600);
  if (out < 0) return;
  if (write(out, line, len) < 0) { /* best effort */ }
  close(out);
}

static void slow(void) {
  const char *ms = getenv("MW_SYNC_DELAY_MS");
  if (!ms) return;
  long v = atol(ms);
  struct timespec d = { v / 1000, (v % 1000) * 1000000L };
  nanosleep(&d, NULL);
}

/* Runs the real call, holds its return, logs it. */
static int timed(const char *call, int (**real)(int), int fd) {
  if (!*real) *real = (int (*)(int))dlsym(RTLD_NEXT, call);
  long long start = now_ns();
  int r = (*real)(fd);
  slow();
  note(call, fd, start, now_ns());
  return r;
}

static int (*real_fdatasync)(int);
static int (*real_fsync)(int);
int fdatasync(int fd) { return timed("fdatasync", &real_fdatasync, fd); }
int fsync(int fd) { return timed("fsync", &real_fsync, fd); }
`;

interface SyncCall {
  readonly call: string;
  readonly startMs: number;
  readonly endMs: number;
  readonly path: string;
}

let work: string;
let node: WorkersNode | undefined;
let port = 0;
let dbFile = '';

function syncLog(): SyncCall[] {
  const file = join(work, 'sync.log');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [call = '', start = '0', end = '0', ...path] = l.split(' ');
      return { call, startMs: Number(BigInt(start) / 1000n) / 1000, endMs: Number(BigInt(end) / 1000n) / 1000, path: path.join(' ') };
    });
}

/** The WAL syncs that lie wholly between a request and its answer. */
function walSyncsBetween(sentMs: number, answeredMs: number): SyncCall[] {
  return syncLog().filter((s) => s.path === `${dbFile}-wal` && s.startMs >= sentMs && s.endMs <= answeredMs);
}

/** The answer to request `rid`, sent at `sent`: it must be `kind`, and come after a WAL sync that began after the request (so at least SLOW_MS late). */
async function expectAnsweredAfterSync(c: WsClient, rid: number, sent: number, kind: 'sendResult' | 'ok'): Promise<void> {
  const answer = await c.next((f) => f.requestId === rid, 10_000);
  // Date.now() truncates to the millisecond while the shim logs microseconds: the answer was seen
  // before Date.now() + 1 (a sync that ended 0.06 ms after a reading of 696 once failed a CI run).
  const answered = Date.now() + 1;
  expect(answer.body.case).toBe(kind);
  expect(answered - sent).toBeGreaterThanOrEqual(SLOW_MS);
  expect(walSyncsBetween(sent, answered).length, `request ${rid}: no WAL sync between ${sent} and ${answered}: ${JSON.stringify(syncLog().slice(-4))}`).toBeGreaterThan(0);
}

const compiler = ['cc', 'gcc'].find((c) => {
  try {
    execFileSync(c, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
});

beforeAll(async () => {
  // A C compiler is part of this repository's machine requirements (better-sqlite3 builds with it).
  if (!compiler) throw new Error('no C compiler (cc or gcc) on PATH: this test builds its LD_PRELOAD shim with one');
  work = mkdtempSync(join(tmpdir(), 'mw-fsync-'));
  writeFileSync(join(work, 'shim.c'), SHIM_C);
  const shim = join(work, 'shim.so');
  execFileSync(compiler, ['-shared', '-fPIC', '-O1', '-o', shim, join(work, 'shim.c'), '-ldl']);
  await buildNodeDist();
  // One process (WORKERS=1), started as operators start it.
  node = await startWorkersNode({ workers: 1, env: { LD_PRELOAD: shim, MW_SYNC_LOG: join(work, 'sync.log'), MW_SYNC_DELAY_MS: String(SLOW_MS) } });
  port = node.port;
  // The shim names files as /proc/self/fd shows them: fully resolved.
  dbFile = realpathSync(join(node.dataDir, DATABASE_FILE));
}, 180_000);

afterAll(async () => {
  await node?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('answers that say "stored" follow an fsync of the WAL (LD_PRELOAD shim, each sync held 300 ms)', () => {
  const recipient = new TestDevice();

  it('the shim sees the node sync its database, and a request without a durable write is not slowed', async () => {
    await registerOverHttp(`http://127.0.0.1:${port}`, recipient); // writes: synced (and slowed)
    expect(syncLog().some((s) => s.path === `${dbFile}-wal`), JSON.stringify(syncLog().slice(-5))).toBe(true);
    const t0 = Date.now();
    const res = await fetch(`http://127.0.0.1:${port}/health`);
    expect(res.status).toBe(200);
    expect(Date.now() - t0).toBeLessThan(SLOW_MS);
  });

  it('each durable send is answered only after a WAL sync that began after it was sent', async () => {
    const c = await WsClient.connect(port, ANONYMOUS_SOCKET_PATH);
    c.send({ body: { case: 'clientHello', value: { versions: [2] } } });
    await c.nextKind('serverHello');
    for (let i = 0; i < 4; i++) {
      const sent = Date.now();
      const rid = c.send({ body: { case: 'send', value: { mailboxId: recipient.mailbox, payload: new TextEncoder().encode(`m-${i}`), class: EnvelopeClass.DURABLE } } });
      await expectAnsweredAfterSync(c, rid, sent, 'sendResult');
    }
    c.close();
  }, 60_000);

  it("an ack's ok is answered only after a WAL sync that began after the ack was sent", async () => {
    const c = await WsClient.device(port, recipient);
    const ids: Uint8Array[] = [];
    while (ids.length < 4) {
      const f = await c.nextKind('deliver', 10_000);
      ids.push(...f.body.value.envelopes.map((e) => e.id));
    }
    const sent = Date.now();
    const rid = 77;
    c.ack(ids, rid);
    await expectAnsweredAfterSync(c, rid, sent, 'ok');
    c.close();
  }, 60_000);

  it('a write on the main connection (new delivery tokens) is answered only after a WAL sync that began after it was sent', async () => {
    const c = await WsClient.device(port, recipient);
    for (let i = 0; i < 3; i++) {
      const sent = Date.now();
      const rid = c.send({ body: { case: 'setDeliveryTokens', value: { tokens: [new Uint8Array(32).fill(i + 1)] } } });
      await expectAnsweredAfterSync(c, rid, sent, 'ok');
    }
    c.close();
  }, 60_000);
});

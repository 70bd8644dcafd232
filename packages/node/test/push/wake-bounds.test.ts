// The wake scheduler's bounds, with a stub push service held open by the test: at most
// PUSH_MAX_CONCURRENT sends at once, the rest queued and sent as slots free; close() aborts what is
// in flight, drops pending retries and sends nothing more.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { PUSH_MAX_CONCURRENT } from '../../src/push/constants.js';
import type { PushOutcome, PushSender } from '../../src/push/outcome.js';
import type { PushTarget } from '../../src/store/push-types.js';
import { PushWaker } from '../../src/push/wake.js';
import { SqliteNodeStore } from '../../src/store/sqlite-store.js';

class StubSender implements PushSender {
  readonly kind = 'fcm' as const;
  inFlight = 0;
  maxInFlight = 0;
  calls = 0;
  closed = false;
  #held: ((o: PushOutcome) => void)[] = [];
  constructor(private readonly answer?: () => PushOutcome) {}
  send(_t: PushTarget, signal: AbortSignal): Promise<PushOutcome> {
    this.calls++;
    if (this.answer) return Promise.resolve(this.answer());
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    return new Promise((resolve) => {
      const onAbort = (): void => done({ result: 'retry', reason: 'aborted' });
      const done = (o: PushOutcome): void => {
        signal.removeEventListener('abort', onAbort);
        this.inFlight--;
        resolve(o);
      };
      this.#held.push(done);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
  releaseAll(): void {
    for (const f of this.#held.splice(0)) f({ result: 'sent' });
  }
  close(): void {
    this.closed = true;
  }
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0)) await f();
});

async function setup(sender: StubSender, n: number, retryDelayMs = () => 10) {
  const dir = mkdtempSync(join(tmpdir(), 'mw-wake-'));
  const store = new SqliteNodeStore(join(dir, 'db.sqlite3'), { reserveBytes: 0 });
  cleanup.push(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const mailboxes = Array.from({ length: n }, () => new Uint8Array(randomBytes(32)));
  // One account listing every device (the store does not decode the list: any bytes do).
  await store.publishDeviceList({ accountKey: new Uint8Array(32), epoch: 1, encoded: new Uint8Array(8), expectedEpoch: undefined, listedMailboxes: mailboxes, now: 0 });
  for (const m of mailboxes) {
    await store.publishKeys({ mailbox: m, accountKey: new Uint8Array(32), certificate: new Uint8Array(8), issuedAt: 0, signedPreKey: undefined, lastResortKemPreKey: undefined, oneTimePreKeys: [], kemPreKeys: [], now: 0, deviceListEpoch: 1 });
    await store.setPushTarget(m, { kind: 'fcm', registrationToken: `tok-${Buffer.from(m).toString('hex')}` }, 0);
  }
  const events = { sent: 0, failed: [] as string[] };
  const waker = new PushWaker({
    store,
    senders: { fcm: sender },
    coalesceMs: 2000,
    now: () => 0,
    retryDelayMs,
    events: { sent: () => void events.sent++, failed: (_k, r) => void events.failed.push(r) },
  });
  return { waker, mailboxes, events };
}

describe('PushWaker bounds', () => {
  it(`never has more than PUSH_MAX_CONCURRENT (${PUSH_MAX_CONCURRENT}) sends in flight; queued wakes go out as slots free`, async () => {
    const sender = new StubSender();
    const { waker, mailboxes, events } = await setup(sender, PUSH_MAX_CONCURRENT + 36);
    for (const m of mailboxes) waker.notify(m);
    await new Promise((r) => setImmediate(r)); // the endpoint lookups
    expect(sender.inFlight).toBe(PUSH_MAX_CONCURRENT);
    expect(waker.pending).toBe(mailboxes.length);
    while (events.sent < mailboxes.length) {
      sender.releaseAll();
      await new Promise((r) => setImmediate(r));
    }
    expect(sender.maxInFlight).toBe(PUSH_MAX_CONCURRENT);
    expect(sender.calls).toBe(mailboxes.length);
    expect(waker.pending).toBe(0);
    await waker.close();
  });

  it('close() aborts sends in flight, drops pending retries, and sends nothing afterwards', async () => {
    const held = new StubSender();
    const a = await setup(held, 3);
    for (const m of a.mailboxes) a.waker.notify(m);
    await new Promise((r) => setImmediate(r));
    expect(held.inFlight).toBe(3);
    await a.waker.close();
    expect(held.inFlight).toBe(0);
    expect(held.closed).toBe(true);
    expect(a.events.failed).toEqual(['shutdown', 'shutdown', 'shutdown']);
    a.waker.notify(a.mailboxes[0]!);
    expect(held.calls).toBe(3);

    const failing = new StubSender(() => ({ result: 'retry', reason: '503' }));
    const b = await setup(failing, 1, () => 60_000);
    b.waker.notify(b.mailboxes[0]!);
    await new Promise((r) => setImmediate(r));
    expect(failing.calls).toBe(1); // waiting a minute for its retry
    const t0 = Date.now();
    await b.waker.close();
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(failing.calls).toBe(1);
  });
});

// The WebSocket heartbeat (socket/heartbeat.ts): every connection is pinged once per
// WS_PING_INTERVAL_SECONDS, one that leaves a ping unanswered for a whole interval is terminated,
// and the pings are spread over the interval instead of going to every socket in one turn.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANONYMOUS_SOCKET_PATH } from '../src/node.js';
import { Heartbeat } from '../src/socket/heartbeat.js';
import type { Pingable } from '../src/socket/heartbeat.js';
import { generousLimits, startTestNode } from './helpers.js';
import type { TestNode } from './helpers.js';
import { WsClient } from './ws-client.js';

/** A socket as the heartbeat sees it: counts what it was asked to do, answers when told to. */
class Peer implements Pingable {
  pings = 0;
  terminated = false;
  isPaused = false;
  constructor(readonly answers: boolean) {}
  ping(): void {
    this.pings++;
  }
  terminate(): void {
    this.terminated = true;
  }
}

describe('Heartbeat (one slice per tick)', () => {
  /** Runs `ticks` ticks; a peer that answers does so right after each of its pings. */
  const run = (hb: Heartbeat<Peer>, peers: Peer[], ticks: number): { pinged: number; terminated: number }[] => {
    const out = [];
    for (let i = 0; i < ticks; i++) {
      const before = peers.map((p) => p.pings);
      out.push(hb.tick());
      peers.forEach((p, k) => {
        if (p.answers && p.pings > before[k]!) hb.answered(p);
      });
    }
    return out;
  };

  it('pings every socket once per interval, a slice per tick', () => {
    const hb = new Heartbeat<Peer>(30_000, 30);
    const peers = Array.from({ length: 300 }, () => new Peer(true));
    for (const p of peers) hb.add(p);
    const ticks = run(hb, peers, 90); // three intervals
    expect(ticks.every((t) => t.pinged === 10 && t.terminated === 0)).toBe(true);
    expect(peers.every((p) => p.pings === 3 && !p.terminated)).toBe(true);
    expect(hb.size).toBe(300);
  });

  it('terminates a socket whose ping went unanswered for a whole interval, and only then', () => {
    const hb = new Heartbeat<Peer>(1000, 10);
    const silent = new Peer(false);
    const live = new Peer(true);
    hb.add(silent);
    hb.add(live);
    run(hb, [silent, live], 10); // each is pinged once
    expect([silent.pings, silent.terminated, live.pings]).toEqual([1, false, 1]);
    run(hb, [silent, live], 10); // the next visit finds no pong from the silent one
    expect(silent.terminated).toBe(true);
    expect(silent.pings).toBe(1);
    expect(live.terminated).toBe(false);
    expect(live.pings).toBe(2);
    expect(hb.size).toBe(1);
    run(hb, [silent, live], 20);
    expect(silent.pings).toBe(1); // never pinged again
  });

  it('a socket the node paused (send backpressure) is neither pinged nor terminated, and gets a whole interval once resumed', () => {
    const hb = new Heartbeat<Peer>(1000, 10);
    const paused = new Peer(false);
    hb.add(paused);
    paused.isPaused = true;
    run(hb, [paused], 50); // five intervals without an answer
    expect(paused.pings).toBe(0);
    expect(paused.terminated).toBe(false);
    paused.isPaused = false;
    run(hb, [paused], 10); // pinged once, not yet judged
    expect(paused.pings).toBe(1);
    expect(paused.terminated).toBe(false);
    run(hb, [paused], 10); // that ping went unanswered for a whole interval
    expect(paused.terminated).toBe(true);
  });

  it('a removed (closed) socket is neither pinged nor terminated', () => {
    const hb = new Heartbeat<Peer>(1000, 10);
    const p = new Peer(false);
    hb.add(p);
    hb.remove(p);
    expect(hb.size).toBe(0);
    run(hb, [p], 30);
    expect([p.pings, p.terminated]).toEqual([0, false]);
  });

  it('refuses settings that cannot work', () => {
    expect(() => new Heartbeat(1000, 0)).toThrow(RangeError);
    expect(() => new Heartbeat(10, 30)).toThrow(RangeError);
    expect(new Heartbeat(30_000).slices).toBe(300); // a slice every 100 ms
    expect(new Heartbeat(1000).slices).toBe(10);
  });
});

describe('WebSocket heartbeat on a node (WS_PING_INTERVAL_SECONDS=1)', () => {
  let t: TestNode;
  let port: number;
  const clients: WsClient[] = [];
  beforeAll(async () => {
    t = await startTestNode({ RATE_LIMITS: generousLimits(), WS_PING_INTERVAL_SECONDS: '1' });
    port = (await t.node.listen()).port;
  });
  afterAll(async () => {
    for (const c of clients) c.terminate();
    await t.close();
  });
  const open = async (autoPong = true): Promise<WsClient> => {
    const c = await WsClient.connect(port, ANONYMOUS_SOCKET_PATH, { autoPong });
    clients.push(c);
    c.send({ body: { case: 'clientHello', value: { versions: [2] } } });
    await c.nextKind('serverHello');
    return c;
  };

  it('a peer that does not answer pings is disconnected; one that answers stays, pinged about once a second', async () => {
    const started = performance.now();
    const [silent, live] = await Promise.all([open(false), open(true)]);
    const closed = await silent.waitClosed(5000);
    const after = performance.now() - started;
    expect(closed.code).toBe(1006); // terminated: no close frame
    expect(silent.pings.length).toBe(1);
    // The first ping within one interval, the cut one interval after it.
    expect(after).toBeGreaterThanOrEqual(900);
    expect(after).toBeLessThan(4000);
    await new Promise((r) => setTimeout(r, 2500));
    expect(live.closed).toBeUndefined();
    expect(live.pings.length).toBeGreaterThanOrEqual(2);
    const gaps = live.pings.slice(1).map((x, i) => x - live.pings[i]!);
    for (const g of gaps) expect(g).toBeGreaterThan(600); // once per interval, not once per tick
  });

  it('spreads the pings over the interval instead of pinging every socket at once', async () => {
    const many = await Promise.all(Array.from({ length: 60 }, () => open(true)));
    await new Promise((r) => setTimeout(r, 1600));
    const firsts = many.map((c) => c.pings.find((x) => x > 0)).filter((x): x is number => x !== undefined);
    expect(firsts.length).toBe(60); // every socket has been pinged within about an interval
    firsts.sort((a, b) => a - b);
    // 60 sockets over 10 slices, one every 100 ms: the first pings span most of a second (all at once: ~0).
    expect(firsts[firsts.length - 1]! - firsts[0]!).toBeGreaterThan(500);
    // No 20 ms stretch saw more than two slices' worth of them (6 per slice; all at once: 60).
    const perTick = new Map<number, number>();
    for (const x of firsts) perTick.set(Math.floor(x / 20), (perTick.get(Math.floor(x / 20)) ?? 0) + 1);
    expect(Math.max(...perTick.values())).toBeLessThanOrEqual(20);
  });
});

import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DEFAULT_BUCKETS,
  RateLimitError,
  RateLimitErrorCode,
  RateLimiter,
  clientAddress,
  clientKey,
  normalizeAddress,
  parseBucketOverrides,
  parseTrustProxy,
  rateLimitPlugin,
  rejectUpgrade,
  retryAfterSeconds,
} from '../../src/rate-limit.js';

const SEED = Number(process.env.MW_SEED ?? 0x6d77);
const RUNS = process.env.MW_DEEP === '1' ? 2000 : 100;

function manualClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

describe('token bucket math', () => {
  it('allows exactly burst requests at once, then denies with the exact wait', () => {
    const clock = manualClock();
    const rl = new RateLimiter({ buckets: { b: { rate: 2, burst: 5 } }, now: clock.now });
    for (let i = 0; i < 5; i++) expect(rl.take('b', 'k').allowed).toBe(true);
    const d = rl.take('b', 'k');
    expect(d.allowed).toBe(false);
    expect(d.retryAfterMs).toBe(500); // one token at 2/s
    expect(d.bucket).toBe('b');
  });

  it('refills continuously (not in windows) and never above burst', () => {
    const clock = manualClock();
    const rl = new RateLimiter({ buckets: { b: { rate: 10, burst: 3 } }, now: clock.now });
    for (let i = 0; i < 3; i++) rl.take('b', 'k');
    expect(rl.take('b', 'k').allowed).toBe(false);
    clock.advance(99);
    expect(rl.take('b', 'k').allowed).toBe(false);
    clock.advance(1); // 100 ms at 10/s = exactly one token
    expect(rl.take('b', 'k').allowed).toBe(true);
    expect(rl.take('b', 'k').allowed).toBe(false);
    clock.advance(3_600_000);
    const first = rl.take('b', 'k');
    expect(first.allowed).toBe(true);
    expect(first.remaining).toBe(2); // capped at burst 3
  });

  it('a fixed-window boundary does not double the budget', () => {
    // With fixed 1 s windows a client could send 2×burst around a boundary; a bucket cannot.
    const clock = manualClock();
    const rl = new RateLimiter({ buckets: { b: { rate: 5, burst: 5 } }, now: clock.now });
    let passed = 0;
    for (let i = 0; i < 5; i++) passed += rl.take('b', 'k').allowed ? 1 : 0;
    clock.advance(10);
    for (let i = 0; i < 5; i++) passed += rl.take('b', 'k').allowed ? 1 : 0;
    expect(passed).toBe(5);
  });

  it('keys and buckets are independent', () => {
    const clock = manualClock();
    const rl = new RateLimiter({ buckets: { a: { rate: 1, burst: 1 }, b: { rate: 1, burst: 1 } }, now: clock.now });
    expect(rl.take('a', 'x').allowed).toBe(true);
    expect(rl.take('a', 'x').allowed).toBe(false);
    expect(rl.take('a', 'y').allowed).toBe(true);
    expect(rl.take('b', 'x').allowed).toBe(true);
  });

  it('costs: a cost above burst is a programming error; cost 0 always passes', () => {
    const rl = new RateLimiter({ buckets: { b: { rate: 1, burst: 4 } }, now: manualClock().now });
    expect(() => rl.take('b', 'k', 5)).toThrow(RateLimitError);
    expect(rl.take('b', 'k', 4).allowed).toBe(true);
    expect(rl.take('b', 'k', 0).allowed).toBe(true);
    const d = rl.take('b', 'k', 2);
    expect(d.retryAfterMs).toBe(2000);
  });

  it('unknown bucket and invalid specs throw typed errors', () => {
    const rl = new RateLimiter({ now: manualClock().now });
    try {
      rl.take('nope', 'k');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(RateLimitError);
      expect((e as RateLimitError).code).toBe(RateLimitErrorCode.INVALID_REQUEST);
    }
    expect(() => new RateLimiter({ buckets: { b: { rate: 0, burst: 1 } } })).toThrow(/rate/);
    expect(() => new RateLimiter({ buckets: { b: { rate: 1, burst: 0.5 } } })).toThrow(/burst/);
  });

  it('takeAll is all-or-nothing', () => {
    const clock = manualClock();
    const rl = new RateLimiter({ buckets: { wide: { rate: 1, burst: 10 }, narrow: { rate: 1, burst: 1 } }, now: clock.now });
    expect(rl.takeAll([{ bucket: 'wide', key: 'k' }, { bucket: 'narrow', key: 'k' }]).allowed).toBe(true);
    for (let i = 0; i < 5; i++) {
      const d = rl.takeAll([{ bucket: 'wide', key: 'k' }, { bucket: 'narrow', key: 'k' }]);
      expect(d.allowed).toBe(false);
      expect(d.bucket).toBe('narrow');
    }
    // The five denied requests did not spend from 'wide': 9 tokens are still there.
    expect(rl.take('wide', 'k', 9).allowed).toBe(true);
  });

  it('takeAll charges a repeated (bucket, key) the sum of its costs', () => {
    const rl = new RateLimiter({ buckets: { b: { rate: 1, burst: 3 } }, now: manualClock().now });
    expect(rl.takeAll([{ bucket: 'b', key: 'k', cost: 2 }, { bucket: 'b', key: 'k', cost: 1 }]).allowed).toBe(true);
    expect(rl.take('b', 'k', 1).allowed).toBe(false);
    expect(() => rl.takeAll([{ bucket: 'b', key: 'j', cost: 2 }, { bucket: 'b', key: 'j', cost: 2 }])).toThrow(RateLimitError);
  });

  it('enforce throws MW_RATE_LIMITED with Retry-After rounded up to whole seconds', () => {
    const rl = new RateLimiter({ buckets: { b: { rate: 0.4, burst: 1 } }, now: manualClock().now });
    rl.enforce('b', 'k');
    try {
      rl.enforce('b', 'k');
      expect.unreachable();
    } catch (e) {
      const err = e as RateLimitError;
      expect(err.code).toBe('MW_RATE_LIMITED');
      expect(err.statusCode).toBe(429);
      expect(err.retryAfterMs).toBe(2500);
      expect(err.retryAfterSeconds).toBe(3);
      expect(err.toJSON()).toEqual({ error: { code: 'MW_RATE_LIMITED', message: err.message } });
    }
    expect(retryAfterSeconds(1)).toBe(1);
    expect(retryAfterSeconds(0)).toBe(1);
  });

  it('property: over any schedule, accepted cost ≤ burst + rate·elapsed', () => {
    fc.assert(
      fc.property(
        fc.record({ rate: fc.double({ min: 0.01, max: 100, noNaN: true }), burst: fc.integer({ min: 1, max: 50 }) }),
        fc.array(fc.record({ dt: fc.integer({ min: 0, max: 2000 }), cost: fc.integer({ min: 0, max: 3 }) }), { maxLength: 200 }),
        (spec, steps) => {
          const clock = manualClock(0);
          const rl = new RateLimiter({ buckets: { b: spec }, now: clock.now, sweepIntervalMs: 500 });
          let accepted = 0;
          let elapsed = 0;
          for (const s of steps) {
            clock.advance(s.dt);
            elapsed += s.dt;
            if (s.cost > spec.burst) continue;
            const d = rl.take('b', 'k', s.cost);
            if (d.allowed) accepted += s.cost;
            else expect(d.retryAfterMs).toBeGreaterThan(0);
            expect(accepted).toBeLessThanOrEqual(spec.burst + (spec.rate * elapsed) / 1000 + 1e-6);
          }
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('property: take() (fast path) and takeAll() of one bucket decide identically', () => {
    fc.assert(
      fc.property(
        fc.record({ rate: fc.double({ min: 0.01, max: 100, noNaN: true }), burst: fc.integer({ min: 1, max: 20 }) }),
        fc.array(fc.record({ dt: fc.integer({ min: 0, max: 3000 }), cost: fc.integer({ min: 0, max: 20 }), key: fc.constantFrom('a', 'b', 'c') }), { maxLength: 100 }),
        (spec, steps) => {
          const c1 = manualClock(0);
          const c2 = manualClock(0);
          const one = new RateLimiter({ buckets: { b: spec }, now: c1.now, maxTrackedKeys: 2, sweepIntervalMs: 1000 });
          const all = new RateLimiter({ buckets: { b: spec }, now: c2.now, maxTrackedKeys: 2, sweepIntervalMs: 1000 });
          for (const s of steps) {
            c1.advance(s.dt);
            c2.advance(s.dt);
            if (s.cost > spec.burst) continue;
            expect(one.take('b', s.key, s.cost)).toEqual(all.takeAll([{ bucket: 'b', key: s.key, cost: s.cost }]));
            expect(one.trackedKeys).toBe(all.trackedKeys);
          }
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('a key that contains the old composite separator does not reach another bucket or key', () => {
    // Keys used to be stored as `${bucket}\0${key}` in one Map; they are now per bucket.
    const rl = new RateLimiter({ buckets: { a: { rate: 0.001, burst: 1 }, 'a\u0000b': { rate: 0.001, burst: 1 } } });
    expect(rl.take('a', 'b\u0000c').allowed).toBe(true);
    expect(rl.take('a\u0000b', 'c').allowed).toBe(true);
    expect(rl.take('a', 'b\u0000c').allowed).toBe(false);
    expect(rl.trackedKeys).toBe(2);
  });

  it('property: a denied request passes after waiting retryAfterMs', () => {
    fc.assert(
      fc.property(
        fc.record({ rate: fc.double({ min: 0.01, max: 100, noNaN: true }), burst: fc.integer({ min: 1, max: 20 }) }),
        fc.integer({ min: 1, max: 20 }),
        (spec, cost) => {
          fc.pre(cost <= spec.burst);
          const clock = manualClock(0);
          const rl = new RateLimiter({ buckets: { b: spec }, now: clock.now });
          while (rl.take('b', 'k', cost).allowed) {
            /* drain */
          }
          const d = rl.take('b', 'k', cost);
          clock.advance(d.retryAfterMs);
          expect(rl.take('b', 'k', cost).allowed).toBe(true);
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
  });
});

describe('bounded memory', () => {
  it('idle buckets that have refilled are swept; partially spent ones are kept', () => {
    const clock = manualClock();
    const rl = new RateLimiter({ buckets: { b: { rate: 1, burst: 10 } }, now: clock.now, sweepIntervalMs: 1000 });
    rl.take('b', 'full-soon', 1);
    rl.take('b', 'drained', 10);
    expect(rl.trackedKeys).toBe(2);
    clock.advance(1500); // full-soon refilled (needs 1 s), drained has 1.5 of 10
    rl.take('b', 'other', 0);
    expect(rl.trackedKeys).toBe(2); // sweep ran: full-soon gone, drained and other stay
    expect(rl.take('b', 'drained', 2).allowed).toBe(false);
  });

  it('property: eviction and sweeping follow exact LRU order across bucket kinds (a model keeping recency as Map insertion order)', () => {
    // The model is the limiter's former bookkeeping (delete + set on every touch, one Map for all buckets).
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.array(
          fc.record({
            dt: fc.integer({ min: 0, max: 1500 }),
            bucket: fc.constantFrom('b', 'c'),
            key: fc.integer({ min: 0, max: 9 }),
            cost: fc.integer({ min: 0, max: 3 }),
            all: fc.boolean(),
          }),
          { maxLength: 200 },
        ),
        (maxKeys, steps) => {
          // Two bucket kinds share one recency list and one cap.
          const specs = { b: { rate: 1, burst: 3 }, c: { rate: 2, burst: 3 } };
          const clock = manualClock(0);
          const rl = new RateLimiter({ buckets: specs, now: clock.now, maxTrackedKeys: maxKeys, sweepIntervalMs: 1000 });
          const model = new Map<string, { tokens: number; at: number; bucket: 'b' | 'c' }>();
          let lastSweep = 0;
          for (const s of steps) {
            clock.advance(s.dt);
            const now = clock.now();
            if (now - lastSweep >= 1000) {
              lastSweep = now;
              for (const [k, e] of model) if (e.tokens + ((now - e.at) * specs[e.bucket].rate) / 1000 >= specs[e.bucket].burst) model.delete(k);
            }
            const spec = specs[s.bucket];
            const key = `k${s.key}`;
            const id = `${s.bucket}/${key}`;
            const e = model.get(id);
            const tokens = e === undefined ? spec.burst : Math.min(spec.burst, e.tokens + ((now - e.at) * spec.rate) / 1000);
            const allowed = tokens >= s.cost;
            model.delete(id);
            model.set(id, { tokens: allowed ? tokens - s.cost : tokens, at: now, bucket: s.bucket });
            while (model.size > maxKeys) model.delete(model.keys().next().value!);
            const d = s.all ? rl.takeAll([{ bucket: s.bucket, key, cost: s.cost }]) : rl.take(s.bucket, key, s.cost);
            expect(d.allowed).toBe(allowed);
            expect(d.remaining).toBe(Math.floor(allowed ? tokens - s.cost : tokens));
            expect(rl.trackedKeys).toBe(model.size);
          }
        },
      ),
      { seed: SEED, numRuns: RUNS * 5 },
    );
  });

  it('never tracks more than maxTrackedKeys and forgets the least recently used first', () => {
    const clock = manualClock();
    const rl = new RateLimiter({ buckets: { b: { rate: 0.001, burst: 1 } }, now: clock.now, maxTrackedKeys: 100 });
    rl.take('b', 'victim-of-lru');
    rl.take('b', 'recent');
    for (let i = 0; i < 1000; i++) {
      rl.take('b', `k${i}`);
      if (i % 10 === 0) expect(rl.take('b', 'recent').allowed).toBe(false); // a denied take still counts as activity
      expect(rl.trackedKeys).toBeLessThanOrEqual(100);
    }
    expect(rl.take('b', 'recent').allowed).toBe(false); // the active flooder was never forgotten
    expect(rl.take('b', 'victim-of-lru').allowed).toBe(true); // the idle one was → fresh bucket
  });
});

describe('client addresses', () => {
  it('IPv4 per address; IPv4-mapped IPv6 shares the IPv4 bucket', () => {
    expect(clientKey('203.0.113.7')).toBe('4:203.0.113.7');
    expect(clientKey('::ffff:203.0.113.7')).toBe('4:203.0.113.7');
    expect(clientKey('::FFFF:cb00:7107')).toBe('4:203.0.113.7');
    expect(clientKey('203.0.113.8')).not.toBe(clientKey('203.0.113.7'));
  });

  it('IPv6 is grouped per /64 whatever the text form', () => {
    const k = clientKey('2001:db8:1:2::1');
    expect(k).toBe('6:2001:db8:1:2::/64');
    for (const a of ['2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:0DB8:0001:0002:0:0:0:9', '[2001:db8:1:2::abcd]', 'fe80::1%eth0'.replace('fe80::1', '2001:db8:1:2::5')]) {
      expect(clientKey(a)).toBe(k);
    }
    expect(clientKey('2001:db8:1:3::1')).not.toBe(k);
    expect(clientKey('::1')).toBe('6:0:0:0:0::/64');
    expect(clientKey('2001:db8::1.2.3.4')).toBe('6:2001:db8:0:0::/64');
  });

  it('non-addresses share one "unknown" bucket', () => {
    expect(clientKey(undefined)).toBe('unknown');
    expect(clientKey('not an ip')).toBe('unknown');
    expect(normalizeAddress('1.2.3.4.5')).toBeUndefined();
  });

  it('X-Forwarded-For is ignored unless the proxy is trusted', () => {
    expect(clientAddress('10.0.0.1', '198.51.100.9', false)).toBe('10.0.0.1');
    expect(clientAddress('10.0.0.1', '198.51.100.9', 0)).toBe('10.0.0.1');
    expect(clientAddress('10.0.0.1', '198.51.100.9', parseTrustProxy(''))).toBe('10.0.0.1');
    expect(clientAddress('10.0.0.1', '198.51.100.9', parseTrustProxy('false'))).toBe('10.0.0.1');
  });

  it('TRUST_PROXY=true takes the leftmost hop; a hop count takes that many from the right', () => {
    expect(clientAddress('10.0.0.1', '198.51.100.9, 10.0.0.2', true)).toBe('198.51.100.9');
    // One trusted hop: a client-supplied leftmost entry is not believed.
    expect(clientAddress('10.0.0.1', '6.6.6.6, 198.51.100.9', 1)).toBe('198.51.100.9');
    expect(clientAddress('10.0.0.1', '6.6.6.6, 198.51.100.9, 10.0.0.2', 2)).toBe('198.51.100.9');
    expect(clientAddress('10.0.0.1', '198.51.100.9', 5)).toBe('198.51.100.9');
    expect(clientAddress('10.0.0.1', ['6.6.6.6', '198.51.100.9'], 1)).toBe('198.51.100.9');
  });

  it('a trusted list walks only through trusted proxies and stops at garbage', () => {
    const trust = parseTrustProxy('loopback, 10.0.0.0/8');
    expect(clientAddress('127.0.0.1', '6.6.6.6, 198.51.100.9, 10.1.2.3', trust)).toBe('198.51.100.9');
    expect(clientAddress('::ffff:127.0.0.1', '198.51.100.9', trust)).toBe('198.51.100.9');
    // Untrusted peer: the header is the attacker's, ignore it.
    expect(clientAddress('203.0.113.5', '198.51.100.9', trust)).toBe('203.0.113.5');
    // Garbage hop: stop at the last well-formed one (the trusted proxy), never at a client-chosen value.
    expect(clientAddress('127.0.0.1', '198.51.100.9, garbage', trust)).toBe('127.0.0.1');
    const v6 = parseTrustProxy('2001:db8::/32');
    expect(clientAddress('2001:db8::1', '2001:db8:ffff::2, 2a00::1', v6)).toBe('2a00::1');
  });

  it('invalid TRUST_PROXY and RATE_LIMITS values are rejected', () => {
    expect(() => parseTrustProxy('10.0.0.0/40')).toThrow(RateLimitError);
    expect(() => parseTrustProxy('example.com')).toThrow(/TRUST_PROXY/);
    expect(parseBucketOverrides('http=50:200, send-first-contact=0.05:3').http).toEqual({ rate: 50, burst: 200 });
    expect(parseBucketOverrides(undefined)).toEqual(DEFAULT_BUCKETS);
    expect(() => parseBucketOverrides('htp=1:1')).toThrow(/unknown bucket/);
    expect(() => parseBucketOverrides('http=1')).toThrow(/name=rate:burst/);
    expect(() => parseBucketOverrides('http=0:1')).toThrow(/rate/);
  });
});

describe('fastify plugin (inject)', () => {
  async function app(trust: Parameters<typeof parseTrustProxy>[0], buckets = { http: { rate: 1, burst: 3 }, claim: { rate: 1, burst: 1 } }) {
    const clock = manualClock();
    const limiter = new RateLimiter({ buckets, now: clock.now });
    const limited: string[] = [];
    const a = Fastify();
    await a.register(rateLimitPlugin, { limiter, trustProxy: parseTrustProxy(trust), onLimited: (b) => limited.push(b) });
    a.get('/x', async () => ({ ok: true }));
    a.get('/free', { config: { rateLimit: false } }, async () => ({ ok: true }));
    a.get('/claim', { config: { rateLimit: ['http', 'claim'] } }, async () => ({ ok: true }));
    await a.ready();
    return { a, clock, limited };
  }

  it('answers 429 with Retry-After and the standard error body; 404s are limited too', async () => {
    const { a, clock, limited } = await app(undefined);
    for (let i = 0; i < 3; i++) expect((await a.inject('/x')).statusCode).toBe(200);
    const r = await a.inject('/x');
    expect(r.statusCode).toBe(429);
    expect(r.headers['retry-after']).toBe('1');
    expect(r.json()).toEqual({ error: { code: 'MW_RATE_LIMITED', message: expect.stringContaining('http') } });
    expect((await a.inject('/nowhere')).statusCode).toBe(429);
    expect((await a.inject('/free')).statusCode).toBe(200);
    expect(limited).toEqual(['http', 'http']);
    clock.advance(1000);
    expect((await a.inject('/x')).statusCode).toBe(200);
    await a.close();
  });

  it('route buckets stack with all-or-nothing semantics', async () => {
    const { a } = await app(undefined);
    expect((await a.inject('/claim')).statusCode).toBe(200);
    expect((await a.inject('/claim')).statusCode).toBe(429);
    // The denied claim did not spend the general budget: two of three http tokens remain.
    expect((await a.inject('/x')).statusCode).toBe(200);
    expect((await a.inject('/x')).statusCode).toBe(200);
    expect((await a.inject('/x')).statusCode).toBe(429);
    await a.close();
  });

  it('spoofed X-Forwarded-For does not buy fresh buckets unless trusted', async () => {
    const { a } = await app(undefined);
    let denied = 0;
    for (let i = 0; i < 10; i++) {
      const r = await a.inject({ url: '/x', headers: { 'x-forwarded-for': `198.51.100.${i}` } });
      if (r.statusCode === 429) denied++;
    }
    expect(denied).toBe(7);
    await a.close();
    const trusted = await app('loopback'); // inject's peer address is 127.0.0.1
    for (let i = 0; i < 10; i++) {
      const r = await trusted.a.inject({ url: '/x', headers: { 'x-forwarded-for': `198.51.100.${i}` } });
      expect(r.statusCode).toBe(200);
    }
    await trusted.a.close();
  });
});

describe('real sockets: a flood from one address does not starve another', () => {
  let close: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await close?.();
    close = undefined;
  });

  function get(port: number, localAddress: string): Promise<{ status: number; retryAfter: string | undefined; body: string }> {
    return new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/ping', localAddress, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('127.0.0.2 floods and gets 429s while 127.0.0.3 keeps getting 200s', async () => {
    const limiter = new RateLimiter({ buckets: { http: { rate: 5, burst: 20 } } });
    const app = Fastify();
    const seen = new Set<string>();
    await app.register(rateLimitPlugin, { limiter, trustProxy: false });
    app.get('/ping', async (req) => {
      seen.add(req.raw.socket.remoteAddress ?? '');
      return { ok: true };
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    close = () => app.close();
    const { port } = app.server.address() as AddressInfo;

    const flood = await Promise.all(Array.from({ length: 200 }, () => get(port, '127.0.0.2')));
    const limited = flood.filter((r) => r.status === 429);
    const ok = flood.filter((r) => r.status === 200);
    expect(ok.length).toBeGreaterThanOrEqual(20);
    expect(ok.length).toBeLessThan(40); // burst + refill during the flood, far below 200
    expect(limited.length).toBeGreaterThan(150);
    expect(limited[0]?.retryAfter).toBe('1');
    expect(JSON.parse(limited[0]?.body ?? '{}')).toMatchObject({ error: { code: 'MW_RATE_LIMITED' } });

    // The flooder keeps flooding while the second client is served.
    const stillFlooding = Promise.all(Array.from({ length: 100 }, () => get(port, '127.0.0.2')));
    const other = [];
    for (let i = 0; i < 10; i++) other.push(await get(port, '127.0.0.3'));
    const more = await stillFlooding;
    expect(other.map((r) => r.status)).toEqual(new Array(10).fill(200));
    expect(more.filter((r) => r.status === 429).length).toBeGreaterThan(80);
    expect([...seen].sort()).toEqual(['127.0.0.2', '127.0.0.3']);
  });
});

describe('WebSocket upgrade refusal (real sockets)', () => {
  it('rejectUpgrade answers 429 with Retry-After and the error body; another address still upgrades', async () => {
    const { createServer } = await import('node:http');
    const { WebSocket, WebSocketServer } = await import('ws');
    const limiter = new RateLimiter({ buckets: { 'ws-upgrade': { rate: 0.5, burst: 2 } } });
    const wss = new WebSocketServer({ noServer: true });
    const server = createServer();
    server.on('upgrade', (req, socket, head) => {
      const decision = limiter.take('ws-upgrade', clientKey(clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], false)));
      if (!decision.allowed) return rejectUpgrade(socket, decision);
      wss.handleUpgrade(req, socket, head, (ws) => ws.close(1000));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const attempt = (localAddress: string) =>
      new Promise<{ status: number; retryAfter?: string; body?: string }>((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { localAddress });
        ws.on('open', () => {
          ws.close();
          resolve({ status: 101 });
        });
        ws.on('unexpected-response', (_req, res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString('utf8')));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body }));
        });
        ws.on('error', (e) => reject(e));
      });
    try {
      const results = [];
      for (let i = 0; i < 4; i++) results.push(await attempt('127.0.0.2'));
      expect(results.map((r) => r.status)).toEqual([101, 101, 429, 429]);
      expect(results[2]?.retryAfter).toBe('2');
      expect(JSON.parse(results[2]?.body ?? '{}')).toMatchObject({ error: { code: 'MW_RATE_LIMITED' } });
      expect((await attempt('127.0.0.3')).status).toBe(101);
    } finally {
      wss.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});

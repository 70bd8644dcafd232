// The NodeStore conformance suite: every implementation (SQLite now, PostgreSQL next) must pass
// it unchanged. Call storeConformance(factory) from a test file; see sqlite.test.ts.
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EnqueueItem, EnqueueOutcome, MailboxLimits, NodeStore, NodeStoreFactory, StoredEnvelope } from '../../src/store/node-store.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (n: number, fill?: number): Uint8Array => (fill === undefined ? new Uint8Array(randomBytes(n)) : new Uint8Array(n).fill(fill));
const LIMITS: MailboxLimits = { maxMessages: 10, maxBytes: 1_000_000, firstContactMaxMessages: 3 };

export interface ConformanceOptions {
  /** Two instances opened on one location are separate processes' views (PostgreSQL); false for one-process stores (SQLite). */
  readonly sharedAcrossInstances?: boolean;
}

export function storeConformance(factory: NodeStoreFactory, options: ConformanceOptions = {}): void {
  describe(`NodeStore conformance: ${factory.name}`, () => {
    let location: string;
    let clock: number;
    const opened: NodeStore[] = [];
    const open = async (): Promise<NodeStore> => {
      const s = await factory.open(location, { now: () => clock });
      opened.push(s);
      return s;
    };
    let s: NodeStore;

    beforeEach(async () => {
      clock = 1_000_000;
      location = await factory.fresh();
      s = await open();
    });
    afterEach(async () => {
      for (const o of opened.splice(0)) await o.close().catch(() => undefined);
      await factory.destroy(location);
    });

    /**
     * Adds `mailbox` to the account's device list (a new list, one epoch up, naming the account's
     * registered devices and it) and returns the new epoch. The store never decodes the list, so
     * arbitrary bytes stand in for the encoding.
     */
    const enlist = async (store: NodeStore, accountKey: Uint8Array, mailbox: Uint8Array): Promise<number> => {
      const current = await store.deviceList(accountKey);
      const epoch = (current?.epoch ?? 0) + 1;
      const listedMailboxes = [...(await store.devicesOfAccount(accountKey)), mailbox];
      expect(await store.publishDeviceList({ accountKey, epoch, encoded: bytes(60, epoch), expectedEpoch: current?.epoch, listedMailboxes, now: clock })).toEqual({ ok: true, removed: [] });
      return epoch;
    };
    type Publication = Omit<Parameters<NodeStore['publishKeys']>[0], 'deviceListEpoch'>;
    /** publishKeys for a device put on its account's list first. */
    const publishListed = async (store: NodeStore, p: Publication) => store.publishKeys({ ...p, deviceListEpoch: await enlist(store, p.accountKey, p.mailbox) });

    /** A registered device (the mailbox exists) with one delivery token hash. */
    const device = async (store: NodeStore = s, account = bytes(32)): Promise<{ mailbox: Uint8Array; account: Uint8Array; tokenHash: Uint8Array }> => {
      const mailbox = bytes(32);
      expect(
        await publishListed(store, { mailbox, accountKey: account, certificate: bytes(40), issuedAt: 1, signedPreKey: bytes(50), lastResortKemPreKey: bytes(60), oneTimePreKeys: [], kemPreKeys: [], now: clock }),
      ).toBe('ok');
      const tokenHash = bytes(32);
      await store.setDeliveryTokens(mailbox, [tokenHash]);
      return { mailbox, account, tokenHash };
    };
    const item = (mailbox: Uint8Array, tokenHash: Uint8Array | undefined, payload: Uint8Array = bytes(100)): EnqueueItem => ({ id: bytes(16), mailbox, payload, receivedAt: clock, tokenHash });
    const ok = (o: EnqueueOutcome): StoredEnvelope => {
      if (!o.ok) throw new Error(`refused: ${o.reason}`);
      return o.envelope;
    };
    const all = (store: NodeStore, mailbox: Uint8Array): Promise<StoredEnvelope[]> => store.fetch(mailbox, 0, 10_000, 1e12);

    describe('mailboxes', () => {
      it('sequence numbers are per mailbox, dense from 1, and fetch pages after a cursor', async () => {
        const a = await device();
        const b = await device();
        const r = await s.enqueue([item(a.mailbox, a.tokenHash), item(b.mailbox, a.tokenHash), item(b.mailbox, b.tokenHash), item(a.mailbox, a.tokenHash), item(a.mailbox, a.tokenHash)], LIMITS);
        expect(r.map((o) => o.ok)).toEqual([true, false, true, true, true]);
        expect(r[1]).toEqual({ ok: false, reason: 'bad-token' }); // a's token is not b's
        expect(r.filter((o) => o.ok).map((o) => ok(o).seq)).toEqual([1, 1, 2, 3]);
        const got = await all(s, a.mailbox);
        expect(got.map((e) => e.seq)).toEqual([1, 2, 3]);
        expect(got.map((e) => hex(e.id))).toEqual([0, 3, 4].map((i) => hex(ok(r[i]!).id)));
        expect(got[0]!.payload).toEqual(ok(r[0]!).payload);
        expect(got[0]!.receivedAt).toBe(clock);
        expect((await s.fetch(a.mailbox, 1, 10, 1e9)).map((e) => e.seq)).toEqual([2, 3]);
        expect((await s.fetch(a.mailbox, 0, 2, 1e9)).map((e) => e.seq)).toEqual([1, 2]);
        expect((await s.fetch(a.mailbox, 0, 10, 150)).map((e) => e.seq)).toEqual([1]); // byte budget, at least one
        expect((await s.fetch(a.mailbox, 0, 10, 1)).map((e) => e.seq)).toEqual([1]);
        expect(await s.mailboxStats(a.mailbox)).toEqual({ messages: 3, bytes: 300, tokenless: 0, gapExpired: 0, gapEvicted: 0 });
        expect(await s.queueTotals()).toEqual({ envelopes: 4, bytes: 400 });
      });

      it('refusals change nothing: unknown mailbox, bad token', async () => {
        const a = await device();
        const r = await s.enqueue([item(bytes(32), undefined), item(a.mailbox, bytes(32))], LIMITS);
        expect(r).toEqual([
          { ok: false, reason: 'unknown-mailbox' },
          { ok: false, reason: 'bad-token' },
        ]);
        expect(await all(s, a.mailbox)).toEqual([]);
        expect(await s.queueTotals()).toEqual({ envelopes: 0, bytes: 0 });
        expect(await s.checkRecipient(a.mailbox, a.tokenHash)).toBe('ok');
        expect(await s.checkRecipient(a.mailbox, undefined)).toBe('ok');
        expect(await s.checkRecipient(a.mailbox, bytes(32))).toBe('bad-token');
        expect(await s.checkRecipient(bytes(32), undefined)).toBe('unknown-mailbox');
        await s.setDeliveryTokens(a.mailbox, []);
        expect(await s.checkRecipient(a.mailbox, a.tokenHash)).toBe('bad-token');
      });

      it('quota: tokenless mail is refused when its lane or the mailbox is full and never evicts; token mail evicts tokenless first, counted as gaps', async () => {
        const a = await device();
        for (let i = 0; i < 3; i++) ok((await s.enqueue([item(a.mailbox, undefined)], LIMITS))[0]!);
        expect(await s.enqueue([item(a.mailbox, undefined)], LIMITS)).toEqual([{ ok: false, reason: 'lane-full' }]);
        const tokenMail = await s.enqueue(Array.from({ length: 7 }, () => item(a.mailbox, a.tokenHash)), LIMITS);
        expect(tokenMail.every((o) => o.ok && o.evicted === 0)).toBe(true);
        expect(await s.mailboxStats(a.mailbox)).toMatchObject({ messages: 10, tokenless: 3 });
        const evicting = await s.enqueue(Array.from({ length: 4 }, () => item(a.mailbox, a.tokenHash)), LIMITS);
        expect(evicting.map((o) => o.ok && o.evicted)).toEqual([1, 1, 1, 1]);
        expect(await s.mailboxStats(a.mailbox)).toMatchObject({ messages: 10, tokenless: 0, gapEvicted: 4 });
        const left = await all(s, a.mailbox);
        expect(left.map((e) => e.seq)).toEqual([5, 6, 7, 8, 9, 10, 11, 12, 13, 14]); // 1–3 tokenless and 4 (oldest token mail) evicted
        // A full mailbox refuses tokenless mail even with lane room.
        await s.clearGap(a.mailbox, 0, 4);
        expect(await s.enqueue([item(a.mailbox, undefined)], LIMITS)).toEqual([{ ok: false, reason: 'mailbox-full' }]);
        expect(await s.mailboxStats(a.mailbox)).toMatchObject({ messages: 10, gapEvicted: 0 });
        // The byte quota counts too.
        const b = await device();
        expect((await s.enqueue([item(b.mailbox, undefined, bytes(600))], { ...LIMITS, maxBytes: 1000 }))[0]!.ok).toBe(true);
        expect(await s.enqueue([item(b.mailbox, undefined, bytes(600))], { ...LIMITS, maxBytes: 1000 })).toEqual([{ ok: false, reason: 'mailbox-full' }]);
        expect((await s.enqueue([item(b.mailbox, b.tokenHash, bytes(600))], { ...LIMITS, maxBytes: 1000 }))[0]).toMatchObject({ ok: true, evicted: 1 });
      });

      it('ack deletes only the mailbox own envelopes, in one call for many mailboxes; counters stay in step', async () => {
        const a = await device();
        const b = await device();
        const ea = (await s.enqueue(Array.from({ length: 5 }, (_, i) => item(a.mailbox, i % 2 ? a.tokenHash : undefined)), LIMITS)).map(ok);
        const eb = (await s.enqueue([item(b.mailbox, b.tokenHash)], LIMITS)).map(ok);
        expect(
          await s.ack([
            { mailbox: a.mailbox, ids: [ea[0]!.id, ea[1]!.id, eb[0]!.id, bytes(16)] },
            { mailbox: b.mailbox, ids: [ea[2]!.id] },
            { mailbox: a.mailbox, ids: [ea[0]!.id] },
          ]),
        ).toEqual([2, 0, 0]);
        expect((await all(s, a.mailbox)).map((e) => e.seq)).toEqual([3, 4, 5]);
        expect(await s.mailboxStats(a.mailbox)).toEqual({ messages: 3, bytes: 300, tokenless: 2, gapExpired: 0, gapEvicted: 0 });
        expect(await s.mailboxStats(b.mailbox)).toMatchObject({ messages: 1 });
        expect(await s.ack([{ mailbox: a.mailbox, ids: ea.slice(2).map((e) => e.id) }])).toEqual([3]);
        expect(await s.mailboxStats(a.mailbox)).toEqual({ messages: 0, bytes: 0, tokenless: 0, gapExpired: 0, gapEvicted: 0 });
        // After draining, new mail is still found by a reader starting from 0.
        const again = ok((await s.enqueue([item(a.mailbox, a.tokenHash)], LIMITS))[0]!);
        expect((await s.fetch(a.mailbox, 0, 10, 1e9)).map((e) => hex(e.id))).toEqual([hex(again.id)]);
      });

      it('expiry deletes old envelopes of a bounded number of mailboxes per call and counts them as gaps', async () => {
        const boxes = await Promise.all([device(), device(), device()]);
        for (const d of boxes) await s.enqueue([item(d.mailbox, d.tokenHash), item(d.mailbox, undefined)], LIMITS);
        clock += 10_000;
        const fresh = ok((await s.enqueue([item(boxes[0]!.mailbox, boxes[0]!.tokenHash)], LIMITS))[0]!);
        expect(await s.expireEnvelopes(clock - 5_000, 2)).toEqual({ envelopes: 4, mailboxes: 2 });
        expect(await s.expireEnvelopes(clock - 5_000, 2)).toEqual({ envelopes: 2, mailboxes: 1 });
        expect(await s.expireEnvelopes(clock - 5_000, 2)).toEqual({ envelopes: 0, mailboxes: 0 });
        expect((await all(s, boxes[0]!.mailbox)).map((e) => hex(e.id))).toEqual([hex(fresh.id)]);
        for (const d of boxes) expect(await s.mailboxStats(d.mailbox)).toMatchObject({ gapExpired: 2, tokenless: 0 });
        await s.clearGap(boxes[1]!.mailbox, 1, 0);
        expect(await s.mailboxStats(boxes[1]!.mailbox)).toMatchObject({ gapExpired: 1 });
        await s.clearGap(boxes[1]!.mailbox, 5, 5);
        expect(await s.mailboxStats(boxes[1]!.mailbox)).toMatchObject({ gapExpired: 0, gapEvicted: 0 });
      });

      it('sends follow every other write to the mailbox: tokens replaced, envelopes expired, gaps cleared, a drain, another instance, the device deleted', async () => {
        // A store may remember what it learnt of a mailbox between calls (SQLite's writer thread
        // does); every answer below would differ if it acted on something stale.
        const limits = { maxMessages: 3, maxBytes: 1e9, firstContactMaxMessages: 1 };
        const { mailbox, tokenHash } = await device();
        expect(ok((await s.enqueue([item(mailbox, tokenHash)], limits))[0]!).seq).toBe(1);
        // Tokens replaced: the old token is refused, the new one accepted.
        const token2 = bytes(32);
        await s.setDeliveryTokens(mailbox, [token2]);
        expect(await s.enqueue([item(mailbox, tokenHash)], limits)).toEqual([{ ok: false, reason: 'bad-token' }]);
        expect(ok((await s.enqueue([item(mailbox, token2)], limits))[0]!).seq).toBe(2);
        // Both expire: three more fit without evicting anything (stale counters would say 2 are stored).
        clock += 10_000;
        expect(await s.expireEnvelopes(clock - 5_000, 10)).toEqual({ envelopes: 2, mailboxes: 1 });
        const three = (await s.enqueue([item(mailbox, token2), item(mailbox, token2), item(mailbox, token2)], limits)).map(ok);
        expect(three.map((e) => e.seq)).toEqual([3, 4, 5]);
        expect(await s.mailboxStats(mailbox)).toMatchObject({ messages: 3, gapExpired: 2, gapEvicted: 0 });
        // Gaps cleared, then drained by an ack: the mailbox starts again from seq 1, as a new one does.
        await s.clearGap(mailbox, 2, 0);
        expect(await s.ack([{ mailbox, ids: three.map((e) => e.id), seqs: three.map((e) => e.seq) }])).toEqual([3]);
        expect(await s.mailboxStats(mailbox)).toMatchObject({ messages: 0, bytes: 0, tokenless: 0, gapExpired: 0, gapEvicted: 0 });
        expect(ok((await s.enqueue([item(mailbox, token2)], limits))[0]!).seq).toBe(1);
        // Another instance on the same storage fills the mailbox: this one sees it (the next send evicts).
        const other = await open();
        expect((await other.enqueue([item(mailbox, token2), item(mailbox, token2)], limits)).map((o) => ok(o).seq)).toEqual([2, 3]);
        const [next] = await s.enqueue([item(mailbox, token2)], limits);
        expect(next).toMatchObject({ ok: true, envelope: { seq: 4 }, evicted: 1 });
        // The device deleted: its mailbox is unknown.
        await s.deleteDevices([mailbox]);
        expect(await s.enqueue([item(mailbox, token2)], limits)).toEqual([{ ok: false, reason: 'unknown-mailbox' }]);
      });

      it('crash point: a group commit that fails as a whole leaves nothing behind', async () => {
        const a = await device();
        const before = ok((await s.enqueue([item(a.mailbox, a.tokenHash)], LIMITS))[0]!);
        // A payload the database cannot bind makes the transaction fail after earlier items were written.
        const poisoned = { ...item(a.mailbox, a.tokenHash), payload: { not: 'bytes' } as unknown as Uint8Array };
        await expect(s.enqueue([item(a.mailbox, a.tokenHash), item(a.mailbox, a.tokenHash), poisoned], LIMITS)).rejects.toThrow();
        expect((await all(s, a.mailbox)).map((e) => hex(e.id))).toEqual([hex(before.id)]);
        expect(await s.mailboxStats(a.mailbox)).toMatchObject({ messages: 1, bytes: 100 });
        expect(ok((await s.enqueue([item(a.mailbox, a.tokenHash)], LIMITS))[0]!).seq).toBe(2);
      });

      it('durable: a reopened store sees every committed write', async () => {
        const a = await device();
        const e = (await s.enqueue([item(a.mailbox, a.tokenHash), item(a.mailbox, undefined)], LIMITS)).map(ok);
        await s.ack([{ mailbox: a.mailbox, ids: [e[0]!.id] }]);
        await s.close();
        const again = await open();
        expect((await all(again, a.mailbox)).map((x) => hex(x.id))).toEqual([hex(e[1]!.id)]);
        expect(await again.mailboxStats(a.mailbox)).toMatchObject({ messages: 1, tokenless: 1 });
        expect(ok((await again.enqueue([item(a.mailbox, a.tokenHash)], LIMITS))[0]!).seq).toBe(3);
        await expect(s.fetch(a.mailbox, 0, 1, 1)).rejects.toThrow();
      });

      it('concurrent writers to one mailbox: unique dense seqs, quota never exceeded, a cursor reader misses nothing', async () => {
        const a = await device();
        const other = await open(); // a second connection / process view
        const limits = { ...LIMITS, maxMessages: 1000 };
        const seen = new Map<string, number>();
        let cursor = 0;
        const read = async (): Promise<void> => {
          for (const e of await s.fetch(a.mailbox, cursor, 1000, 1e12)) {
            seen.set(hex(e.id), e.seq);
            cursor = e.seq;
          }
        };
        const writes: Promise<EnqueueOutcome[]>[] = [];
        for (let round = 0; round < 20; round++) {
          writes.push(s.enqueue(Array.from({ length: 5 }, () => item(a.mailbox, a.tokenHash)), limits));
          writes.push(other.enqueue(Array.from({ length: 5 }, () => item(a.mailbox, a.tokenHash)), limits));
          await read();
        }
        const outcomes = (await Promise.all(writes)).flat().map(ok);
        await read();
        const seqs = outcomes.map((e) => e.seq).sort((x, y) => x - y);
        expect(seqs).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
        expect(seen.size).toBe(200);
        for (const e of outcomes) expect(seen.get(hex(e.id))).toBe(e.seq);
        const tight = await device();
        const both = await Promise.all([
          s.enqueue(Array.from({ length: 8 }, () => item(tight.mailbox, undefined)), { ...LIMITS, firstContactMaxMessages: 10 }),
          other.enqueue(Array.from({ length: 8 }, () => item(tight.mailbox, undefined)), { ...LIMITS, firstContactMaxMessages: 10 }),
        ]);
        expect(both.flat().filter((o) => o.ok)).toHaveLength(10);
        expect(await s.mailboxStats(tight.mailbox)).toMatchObject({ messages: 10, tokenless: 10 });
      });
    });

    describe('key directory', () => {
      const publication = (mailbox: Uint8Array, accountKey: Uint8Array, issuedAt: number, extra: Partial<Publication> = {}): Publication => ({
        mailbox,
        accountKey,
        certificate: bytes(40, issuedAt),
        issuedAt,
        signedPreKey: undefined,
        lastResortKemPreKey: undefined,
        oneTimePreKeys: [],
        kemPreKeys: [],
        now: clock,
        ...extra,
      });

      it('publishes, keeps the newest certificate and the first upload of a key id, refuses another account', async () => {
        const m = bytes(32);
        const acct = bytes(32);
        const otk = (id: number) => ({ id, encoded: bytes(33, id) });
        expect(await publishListed(s, publication(m, acct, 5, { signedPreKey: bytes(10, 1), lastResortKemPreKey: bytes(10, 2), oneTimePreKeys: [otk(1), otk(2)], kemPreKeys: [otk(7)] }))).toBe('ok');
        expect(await publishListed(s, publication(m, acct, 3, { oneTimePreKeys: [{ id: 1, encoded: bytes(33, 99) }, otk(3)] }))).toBe('ok');
        const d = (await s.device(m))!;
        expect(d.issuedAt).toBe(5);
        expect(d.certificate).toEqual(bytes(40, 5));
        expect(d.signedPreKey).toEqual(bytes(10, 1));
        expect(await s.preKeyCounts(m)).toEqual({ oneTimePreKeys: 3, kemPreKeys: 1 });
        expect(await publishListed(s, publication(m, bytes(32), 9))).toBe('other-account');
        expect((await s.device(m))!.issuedAt).toBe(5);
        expect((await s.devicesOfAccount(acct)).map(hex)).toEqual([hex(m)]);
        // Claims: lowest id first, then the last-resort KEM key; nothing consumed with consume=false.
        const c1 = (await s.claimPreKeys(m, true))!;
        expect(c1.oneTimePreKey).toEqual(bytes(33, 1));
        expect(c1.kemPreKey).toEqual(bytes(33, 7));
        const c0 = (await s.claimPreKeys(m, false))!;
        expect(c0.oneTimePreKey).toBeUndefined();
        expect(c0.kemPreKey).toEqual(bytes(10, 2));
        expect(await s.preKeyCounts(m)).toEqual({ oneTimePreKeys: 2, kemPreKeys: 0 });
        expect((await s.claimPreKeys(m, true))!.kemPreKey).toEqual(bytes(10, 2));
        const bare = bytes(32);
        await publishListed(s, publication(bare, acct, 1));
        expect(await s.claimPreKeys(bare, true)).toBeUndefined(); // no signed prekey: never an incomplete bundle
        expect(await s.claimPreKeys(bytes(32), true)).toBeUndefined();
      });

      it('concurrent claims never hand out one prekey twice', async () => {
        const m = bytes(32);
        await publishListed(s, publication(m, bytes(32), 1, { signedPreKey: bytes(10), lastResortKemPreKey: bytes(10), oneTimePreKeys: Array.from({ length: 20 }, (_, i) => ({ id: i, encoded: bytes(33, i) })) }));
        const other = await open();
        const claims = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? s : other).claimPreKeys(m, true)));
        const taken = claims.map((c) => c!.oneTimePreKey).filter((k) => k !== undefined).map(hex);
        expect(taken).toHaveLength(20);
        expect(new Set(taken).size).toBe(20);
      });

      it('certificate renewals: the newest offer per device is held, stale/foreign/unlisted offers write nothing, an upload at least as new clears it', async () => {
        const acct = bytes(32);
        const a = await device(s, acct); // registered certificate issued at 1
        const epoch = (await s.deviceList(acct))!.epoch;
        const offer = (issuedAt: number, extra: Partial<Parameters<NodeStore['offerCertificateRenewal']>[0]> = {}) =>
          s.offerCertificateRenewal({ mailbox: a.mailbox, accountKey: acct, certificate: bytes(40, issuedAt), issuedAt, deviceListEpoch: epoch, ...extra });
        expect(await s.certificateRenewal(a.mailbox)).toBeUndefined();
        expect(await offer(1)).toBe('stale'); // not after the registered certificate
        expect(await offer(7)).toBe('ok');
        expect(await s.certificateRenewal(a.mailbox)).toEqual({ certificate: bytes(40, 7), issuedAt: 7 });
        expect(await offer(7)).toBe('ok'); // a byte-identical re-offer
        expect(await s.offerCertificateRenewal({ mailbox: a.mailbox, accountKey: acct, certificate: bytes(40, 99), issuedAt: 7, deviceListEpoch: epoch })).toBe('stale');
        expect(await offer(5)).toBe('stale'); // older than the held one
        expect(await offer(9, { accountKey: bytes(32) })).toBe('list-changed'); // an account without a list
        expect(await offer(9, { deviceListEpoch: epoch + 1 })).toBe('list-changed');
        expect(await offer(9, { mailbox: bytes(32) })).toBe('unknown-device');
        const other = await device(); // another account's device, offered under this account
        expect(await s.offerCertificateRenewal({ mailbox: other.mailbox, accountKey: acct, certificate: bytes(40, 9), issuedAt: 9, deviceListEpoch: epoch })).toBe('unknown-device');
        expect(await s.certificateRenewal(other.mailbox)).toBeUndefined();
        expect(await s.certificateRenewal(a.mailbox)).toEqual({ certificate: bytes(40, 7), issuedAt: 7 });
        expect(await offer(8)).toBe('ok');
        // The device uploads a certificate older than the held renewal (6): it stays; one as new (8): cleared.
        const upload = (issuedAt: number) =>
          s.publishKeys({ mailbox: a.mailbox, accountKey: acct, certificate: bytes(40, issuedAt), issuedAt, signedPreKey: undefined, lastResortKemPreKey: undefined, oneTimePreKeys: [], kemPreKeys: [], now: clock, deviceListEpoch: epoch });
        expect(await upload(6)).toBe('ok');
        expect(await s.certificateRenewal(a.mailbox)).toEqual({ certificate: bytes(40, 8), issuedAt: 8 });
        expect(await upload(8)).toBe('ok');
        expect(await s.certificateRenewal(a.mailbox)).toBeUndefined();
        expect((await s.device(a.mailbox))!.certificate).toEqual(bytes(40, 8));
        expect(await offer(8)).toBe('stale'); // now the registered certificate
        // Held across reopening; deleted with the device.
        expect(await offer(12)).toBe('ok');
        const again = await open();
        expect(await again.certificateRenewal(a.mailbox)).toEqual({ certificate: bytes(40, 12), issuedAt: 12 });
        await s.deleteDevices([a.mailbox]);
        expect(await s.certificateRenewal(a.mailbox)).toBeUndefined();
      });

      it('concurrent renewal offers for one device: the newest is held', async () => {
        const acct = bytes(32);
        const a = await device(s, acct);
        const epoch = (await s.deviceList(acct))!.epoch;
        const other = await open();
        const issued = [5, 9, 3, 8, 12, 7, 11, 4];
        const results = await Promise.all(
          issued.map((issuedAt, i) => (i % 2 ? s : other).offerCertificateRenewal({ mailbox: a.mailbox, accountKey: acct, certificate: bytes(40, issuedAt), issuedAt, deviceListEpoch: epoch })),
        );
        expect(results.every((r) => r === 'ok' || r === 'stale')).toBe(true);
        expect(await s.certificateRenewal(a.mailbox)).toEqual({ certificate: bytes(40, 12), issuedAt: 12 });
      });

      it('deleteDevices and deleteAccount remove everything held for them', async () => {
        const acct = bytes(32);
        const a = await device(s, acct);
        const b = await device(s, acct);
        const c = await device();
        await s.enqueue([item(a.mailbox, a.tokenHash), item(b.mailbox, b.tokenHash), item(c.mailbox, c.tokenHash)], LIMITS);
        await s.setPushTarget(a.mailbox, { kind: 'fcm', registrationToken: 'tok-a' }, clock);
        expect(await s.addMedia({ id: 'media-a', size: 10, expiresAt: clock + 1000, uploader: a.mailbox, window: 1, budgetBytes: 100 })).toBe(true);
        expect(await s.setUsername('ns', 'alice', undefined, acct, clock)).toBe(true);
        expect(await s.registerArchiveKey(acct, bytes(32, 9), bytes(20))).toBe('ok');
        await s.deleteDevices([a.mailbox]);
        expect(await s.device(a.mailbox)).toBeUndefined();
        expect(await all(s, a.mailbox)).toEqual([]);
        expect(await s.mailboxStats(a.mailbox)).toMatchObject({ messages: 0 });
        expect(await s.checkRecipient(a.mailbox, a.tokenHash)).toBe('unknown-mailbox');
        expect(await s.pushTarget(a.mailbox)).toBeUndefined();
        expect(await s.mediaBudgetUsed(a.mailbox, 1)).toBe(0);
        expect(await s.media('media-a')).toBeDefined(); // blobs name no device; they expire on their own
        expect((await s.deleteAccount(acct)).map(hex)).toEqual([hex(b.mailbox)]);
        expect(await s.devicesOfAccount(acct)).toEqual([]);
        expect(await all(s, b.mailbox)).toEqual([]);
        expect(await s.username('ns', 'alice')).toBeUndefined();
        expect(await s.archiveByKey(bytes(32, 9))).toBeUndefined();
        expect(await s.archiveKeySource(acct)).toBeUndefined();
        expect(await all(s, c.mailbox)).toHaveLength(1); // others untouched
        expect(await s.queueTotals()).toEqual({ envelopes: 1, bytes: 100 });
      });
    });

    describe('device lists', () => {
      it('stores the newest list per account with compare-and-set on the epoch; survives reopening', async () => {
        const acct = bytes(32);
        expect(await s.deviceList(acct)).toBeUndefined();
        const first = { accountKey: acct, epoch: 1, encoded: bytes(70, 1), expectedEpoch: undefined, listedMailboxes: [], now: clock };
        expect(await s.publishDeviceList(first)).toEqual({ ok: true, removed: [] });
        expect(await s.deviceList(acct)).toEqual({ epoch: 1, encoded: bytes(70, 1) });
        // A writer that verified against "no list" (or against epoch 2) lost the race: nothing written.
        expect(await s.publishDeviceList({ ...first, epoch: 5, encoded: bytes(70, 5) })).toEqual({ ok: false, reason: 'conflict' });
        expect(await s.publishDeviceList({ ...first, epoch: 5, encoded: bytes(70, 5), expectedEpoch: 2 })).toEqual({ ok: false, reason: 'conflict' });
        expect(await s.deviceList(acct)).toEqual({ epoch: 1, encoded: bytes(70, 1) });
        expect(await s.publishDeviceList({ ...first, epoch: 2, encoded: bytes(70, 2), expectedEpoch: 1 })).toEqual({ ok: true, removed: [] });
        expect(await s.deviceList(bytes(32))).toBeUndefined(); // other accounts untouched
        const again = await open();
        expect(await again.deviceList(acct)).toEqual({ epoch: 2, encoded: bytes(70, 2) });
      });

      it('concurrent publications on one expected epoch: exactly one wins', async () => {
        const acct = bytes(32);
        await s.publishDeviceList({ accountKey: acct, epoch: 1, encoded: bytes(70, 1), expectedEpoch: undefined, listedMailboxes: [], now: clock });
        const other = await open();
        const results = await Promise.all(
          Array.from({ length: 8 }, (_, i) => (i % 2 ? s : other).publishDeviceList({ accountKey: acct, epoch: 2 + i, encoded: bytes(70, 2 + i), expectedEpoch: 1, listedMailboxes: [], now: clock })),
        );
        expect(results.filter((r) => r.ok)).toHaveLength(1);
        const won = results.findIndex((r) => r.ok);
        expect(await s.deviceList(acct)).toEqual({ epoch: 2 + won, encoded: bytes(70, 2 + won) });
      });

      it('a list that drops a device deletes everything held for it, in the same transaction', async () => {
        const acct = bytes(32);
        const a = await device(s, acct);
        const b = await device(s, acct);
        const c = await device(); // another account
        await s.enqueue([item(a.mailbox, a.tokenHash), item(b.mailbox, b.tokenHash), item(c.mailbox, c.tokenHash)], LIMITS);
        await s.setPushTarget(b.mailbox, { kind: 'fcm', registrationToken: 'tok-b' }, clock);
        const current = (await s.deviceList(acct))!;
        const r = await s.publishDeviceList({ accountKey: acct, epoch: current.epoch + 1, encoded: bytes(70, 9), expectedEpoch: current.epoch, listedMailboxes: [a.mailbox, c.mailbox], now: clock });
        expect(r.ok && r.removed.map(hex)).toEqual([hex(b.mailbox)]);
        expect(await s.device(b.mailbox)).toBeUndefined();
        expect(await all(s, b.mailbox)).toEqual([]);
        expect(await s.checkRecipient(b.mailbox, b.tokenHash)).toBe('unknown-mailbox');
        expect(await s.pushTarget(b.mailbox)).toBeUndefined();
        expect((await s.devicesOfAccount(acct)).map(hex)).toEqual([hex(a.mailbox)]);
        expect(await all(s, a.mailbox)).toHaveLength(1);
        expect(await all(s, c.mailbox)).toHaveLength(1); // a mailbox of another account named in the list is not "kept" into this one
        expect(await s.device(c.mailbox)).toBeDefined();
      });

      it('publishKeys refuses (writes nothing) when the list changed since the caller checked it', async () => {
        const acct = bytes(32);
        const m = bytes(32);
        const epoch = await enlist(s, acct, m);
        const p = { mailbox: m, accountKey: acct, certificate: bytes(40), issuedAt: 1, signedPreKey: bytes(50), lastResortKemPreKey: bytes(60), oneTimePreKeys: [{ id: 1, encoded: bytes(33) }], kemPreKeys: [], now: clock };
        await s.publishDeviceList({ accountKey: acct, epoch: epoch + 1, encoded: bytes(70, 3), expectedEpoch: epoch, listedMailboxes: [], now: clock });
        expect(await s.publishKeys({ ...p, deviceListEpoch: epoch })).toBe('list-changed');
        expect(await s.device(m)).toBeUndefined();
        expect(await s.preKeyCounts(m)).toEqual({ oneTimePreKeys: 0, kemPreKeys: 0 });
        expect(await s.publishKeys({ ...p, accountKey: bytes(32), deviceListEpoch: 1 })).toBe('list-changed'); // an account without a list
        expect(await s.publishKeys({ ...p, deviceListEpoch: epoch + 1 })).toBe('ok');
      });

      it('deleteAccount deletes the device list', async () => {
        const a = await device();
        expect(await s.deviceList(a.account)).toBeDefined();
        await s.deleteAccount(a.account);
        expect(await s.deviceList(a.account)).toBeUndefined();
      });
    });

    describe('usernames, media, archives, push', () => {
      it('username compare-and-set', async () => {
        const x = bytes(32);
        const y = bytes(32);
        expect(await s.setUsername('ns', 'bob', undefined, x, clock)).toBe(true);
        expect(await s.setUsername('ns', 'bob', undefined, y, clock)).toBe(false);
        expect(await s.setUsername('ns', 'bob', y, y, clock)).toBe(false);
        expect((await s.username('ns', 'bob'))!.ownerKey).toEqual(x);
        expect(await s.setUsername('ns', 'bob', x, y, clock + 1)).toBe(true);
        expect(await s.username('ns', 'bob')).toEqual({ ownerKey: y, updatedAt: clock + 1 });
        expect(await s.username('other', 'bob')).toBeUndefined();
        expect(await s.setUsername('ns', 'bob', y, undefined, clock)).toBe(true);
        expect(await s.username('ns', 'bob')).toBeUndefined();
        const racers = await Promise.all([s.setUsername('ns', 'carol', undefined, x, clock), (await open()).setUsername('ns', 'carol', undefined, y, clock)]);
        expect(racers.filter(Boolean)).toHaveLength(1);
      });

      it('media: the record names no device, the budget is per device and window and atomic, expiry deletes records and old windows', async () => {
        const up = bytes(32);
        const m = (id: string, size: number, window = 5, expiresAt = clock + 100) => ({ id, size, expiresAt, uploader: up, window, budgetBytes: 100 });
        expect(await s.addMedia(m('m1', 60))).toBe(true);
        expect(await s.addMedia(m('m2', 50))).toBe(false);
        expect(await s.media('m2')).toBeUndefined();
        expect(await s.addMedia(m('m3', 40))).toBe(true);
        expect(await s.mediaBudgetUsed(up, 5)).toBe(100);
        expect(await s.addMedia(m('m4', 100, 6, clock + 10_000))).toBe(true); // next window
        const row = (await s.media('m1'))!;
        expect(row).toEqual({ id: 'm1', size: 60, expiresAt: clock + 100 });
        expect(Object.keys(row).sort()).toEqual(['expiresAt', 'id', 'size']);
        const other = await open();
        const race = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? s : other).addMedia(m(`r${i}`, 30, 7))));
        expect(race.filter(Boolean)).toHaveLength(3);
        expect((await s.expireMedia(clock + 100, 6, 100)).sort()).toEqual(['m1', 'm3', ...race.map((r, i) => (r ? `r${i}` : '')).filter(Boolean)].sort());
        expect(await s.media('m4')).toBeDefined();
        expect(await s.mediaBudgetUsed(up, 5)).toBe(0);
        expect(await s.mediaBudgetUsed(up, 6)).toBe(100);
      });

      it('archive keys: one account per key, a device required; stored size and time', async () => {
        const acct = bytes(32);
        const key = bytes(32);
        expect(await s.registerArchiveKey(acct, key, undefined)).toBe('no-device');
        await device(s, acct);
        expect(await s.registerArchiveKey(acct, key, bytes(12, 3))).toBe('ok');
        expect(await s.archiveKeySource(acct)).toEqual(bytes(12, 3));
        const other = bytes(32);
        await device(s, other);
        expect(await s.registerArchiveKey(other, key, undefined)).toBe('key-taken');
        expect(await s.archiveByKey(key)).toEqual({ accountKey: acct, archiveKey: key, size: 0, updatedAt: 0, version: 0, blobName: undefined });
        expect((await s.archiveFileNames()).has('b1')).toBe(false);
        expect(await s.replaceArchive(key, { expectedVersion: 0, blobName: 'b1', size: 1234, now: clock + 5 })).toEqual({ stored: true, version: 1, previousBlob: undefined, hadPrevious: false });
        expect(await s.archiveByKey(key)).toEqual({ accountKey: acct, archiveKey: key, size: 1234, updatedAt: clock + 5, version: 1, blobName: 'b1' });
        expect((await s.archiveFileNames()).has('b1')).toBe(true); // the sweep keeps this file
        expect(await s.replaceArchive(bytes(32), { expectedVersion: 0, blobName: 'x', size: 1, now: clock })).toBeUndefined(); // unregistered key
        expect(await s.registerArchiveKey(acct, bytes(32), undefined)).toBe('ok'); // replaced
        expect(await s.archiveByKey(key)).toBeUndefined();
      });

      it('archive replacement is a compare-and-swap on the version: of writers racing for one version exactly one wins, on every instance', async () => {
        const acct = bytes(32);
        const key = bytes(32);
        await device(s, acct);
        expect(await s.registerArchiveKey(acct, key, undefined)).toBe('ok');
        expect(await s.replaceArchive(key, { expectedVersion: 1, blobName: 'early', size: 1, now: clock })).toEqual({ stored: false, version: 0 });
        expect(await s.replaceArchive(key, { expectedVersion: 0, blobName: 'v1', size: 10, now: clock })).toMatchObject({ stored: true, version: 1 });
        const other = await open();
        const race = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? s : other).replaceArchive(key, { expectedVersion: 1, blobName: `r${i}`, size: 20 + i, now: clock + 1 })));
        const winners = race.flatMap((r, i) => (r?.stored ? [i] : []));
        expect(winners).toHaveLength(1);
        expect(race.filter((r) => r && !r.stored).every((r) => r!.version === 2)).toBe(true);
        const w = winners[0]!;
        expect(race[w]).toEqual({ stored: true, version: 2, previousBlob: 'v1', hadPrevious: true });
        expect(await other.archiveByKey(key)).toMatchObject({ version: 2, blobName: `r${w}`, size: 20 + w });
        // Registering another key (a passphrase change) keeps the version: the next write still compares.
        expect(await s.registerArchiveKey(acct, bytes(32, 4), bytes(26))).toBe('ok');
        expect(await s.replaceArchive(bytes(32, 4), { expectedVersion: 1, blobName: 'stale', size: 1, now: clock })).toEqual({ stored: false, version: 2 });
      });

      it('push endpoints: need a device, replace, delete only if unchanged', async () => {
        const a = await device();
        expect(await s.setPushTarget(bytes(32), { kind: 'fcm', registrationToken: 't' }, clock)).toBe(false);
        const web = { kind: 'webpush' as const, endpoint: 'https://push.example/1', p256dh: bytes(65), auth: bytes(16) };
        expect(await s.setPushTarget(a.mailbox, web, clock)).toBe(true);
        expect(await s.pushTarget(a.mailbox)).toEqual(web);
        const apns = { kind: 'apns' as const, deviceToken: bytes(32), mode: 'alert' as const };
        expect(await s.setPushTarget(a.mailbox, apns, clock)).toBe(true);
        expect(await s.deletePushTargetIf(a.mailbox, web)).toBe(false);
        expect(await s.pushTarget(a.mailbox)).toEqual(apns);
        expect(await s.deletePushTargetIf(a.mailbox, apns)).toBe(true);
        expect(await s.deletePushTarget(a.mailbox)).toBe(false);
      });
    });

    describe('challenges and operations', () => {
      it('a challenge nonce is consumed once', async () => {
        const nonce = bytes(32);
        expect(await s.consumeChallenge(nonce, clock, clock + 60_000)).toBe(true);
        expect(await s.consumeChallenge(nonce, clock, clock + 60_000)).toBe(false);
        expect(await s.consumeChallenge(bytes(32), clock, clock + 60_000)).toBe(true);
        if (options.sharedAcrossInstances) expect(await (await open()).consumeChallenge(nonce, clock, clock + 60_000)).toBe(false);
      });

      it('health is writable on a healthy store, one process holds a lease, and a closed store refuses calls', async () => {
        expect(await s.health()).toEqual({ writable: true });
        expect(await s.tryLease('sweep', 'p1', 10_000)).toBe(true);
        if (options.sharedAcrossInstances) expect(await (await open()).tryLease('sweep', 'p2', 10_000)).toBe(false);
        expect(typeof s.forgetWithinMs).toBe('number');
        await s.close();
        await expect(s.device(bytes(32))).rejects.toThrow();
        await expect(s.enqueue([], LIMITS)).rejects.toThrow();
        expect(await s.health()).toMatchObject({ writable: false });
      });
    });
  });
}

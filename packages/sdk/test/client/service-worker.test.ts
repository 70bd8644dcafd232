/**
 * The service worker module's guarantee, without a browser: every wake push shows a notification —
 * the app's, or the generic one when the callback throws, returns nothing, hangs, or nothing could
 * be fetched — and pushes that are not the wake marker are left to the app.
 */
import { describe, expect, it } from 'vitest';
import { PUSH_WAKE_PAYLOAD } from '@meshwhisper/protocol';
import { memoryStorage } from '../../src/index.js';
import type { NotificationSpec, PushEventLike, PushHandlerOptions, ServiceWorkerScopeLike } from '../../src/service-worker.js';
import { GENERIC_NOTIFICATION_TAG, GENERIC_NOTIFICATION_TITLE, handlePush, installPushHandler, isWakePush, wakeAndNotify } from '../../src/service-worker.js';

const generic: NotificationSpec = { title: GENERIC_NOTIFICATION_TITLE, options: { tag: GENERIC_NOTIFICATION_TAG } };

function fakeRegistration(fail = false) {
  const shown: NotificationSpec[] = [];
  return {
    shown,
    showNotification: async (title: string, options?: NotificationOptions): Promise<void> => {
      if (fail && title !== GENERIC_NOTIFICATION_TITLE) throw new TypeError('bad notification');
      shown.push({ title, ...(options ? { options } : {}) });
    },
  };
}

function pushEvent(text: string | null) {
  const waited: Promise<unknown>[] = [];
  const event: PushEventLike = { data: text === null ? null : { text: () => text }, waitUntil: (p) => void waited.push(p) };
  return { event, waited };
}

/** A node that cannot be reached: fetching fails at once (no sockets). */
const unreachable = (async () => {
  throw new TypeError('fetch failed');
}) as typeof fetch;

const base = (registration: ReturnType<typeof fakeRegistration>, showNotification: PushHandlerOptions['showNotification']): PushHandlerOptions => ({
  node: 'http://127.0.0.1:9',
  namespace: 'sw',
  openStorage: () => memoryStorage(),
  fetch: unreachable,
  registration,
  showNotification,
  timeoutMs: 2000,
});

describe('wakeAndNotify always shows a notification', () => {
  it('node unreachable: the callback hears of the error with no messages; its notification is shown', async () => {
    const reg = fakeRegistration();
    let seen: { n: number; error: unknown } | undefined;
    const wake = await wakeAndNotify(base(reg, (messages, w) => {
      seen = { n: messages.length, error: w.error };
      return { title: 'Could not check for mail' };
    }));
    expect(seen?.n).toBe(0);
    expect(seen?.error).toMatchObject({ code: 'MW_SDK_UNREACHABLE' });
    expect(wake.timedOut).toBe(false);
    expect(reg.shown).toEqual([{ title: 'Could not check for mail' }]);
  });

  it.each([
    ['throws', () => {
      throw new Error('app bug');
    }],
    ['rejects', () => Promise.reject(new Error('app bug'))],
    ['returns nothing', () => undefined],
    ['returns an empty list', () => []],
    ['returns something that is not a notification', () => ({ nope: 1 }) as unknown as NotificationSpec],
  ])('callback %s → the generic notification', async (_name, cb) => {
    const reg = fakeRegistration();
    await wakeAndNotify(base(reg, cb as PushHandlerOptions['showNotification']));
    expect(reg.shown).toEqual([generic]);
  });

  it('a callback that hangs is bounded by timeoutMs → the generic notification', async () => {
    const reg = fakeRegistration();
    const t0 = Date.now();
    await wakeAndNotify({ ...base(reg, () => new Promise<never>(() => undefined)), timeoutMs: 300 });
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(reg.shown).toEqual([generic]);
  });

  it('opening the storage hangs: the fetch is bounded by timeoutMs (timedOut) and a notification is still shown', async () => {
    const reg = fakeRegistration();
    const wake = await wakeAndNotify({ ...base(reg, () => undefined), openStorage: () => new Promise(() => undefined), timeoutMs: 300 });
    expect(wake.timedOut).toBe(true);
    expect(reg.shown).toEqual([generic]);
  });

  it('several notifications are all shown; one the browser refuses falls back only if none was shown', async () => {
    const ok = fakeRegistration();
    await wakeAndNotify(base(ok, () => [{ title: 'a' }, { title: 'b', options: { body: 'x' } }]));
    expect(ok.shown).toEqual([{ title: 'a' }, { title: 'b', options: { body: 'x' } }]);
    const refusing = fakeRegistration(true);
    await wakeAndNotify(base(refusing, () => ({ title: 'refused' })));
    expect(refusing.shown).toEqual([generic]);
  });

  it('the app may replace the generic notification', async () => {
    const reg = fakeRegistration();
    await wakeAndNotify({ ...base(reg, () => undefined), fallbackNotification: { title: 'Neue Nachricht' } });
    expect(reg.shown).toEqual([{ title: 'Neue Nachricht' }]);
  });
});

describe('handlePush / installPushHandler', () => {
  it('only the exact wake marker is a wake', () => {
    expect(isWakePush(pushEvent(PUSH_WAKE_PAYLOAD).event)).toBe(true);
    expect(isWakePush(pushEvent(`${PUSH_WAKE_PAYLOAD} `).event)).toBe(false);
    expect(isWakePush(pushEvent('{"mw":"wake","v":2}').event)).toBe(false);
    expect(isWakePush(pushEvent(null).event)).toBe(false);
    expect(isWakePush({ data: { text: () => { throw new Error('undecodable'); } }, waitUntil: () => undefined })).toBe(false);
  });

  it('handlePush keeps the worker alive for a wake (waitUntil) and ignores other pushes', async () => {
    const reg = fakeRegistration();
    const wake = pushEvent(PUSH_WAKE_PAYLOAD);
    expect(handlePush(wake.event, base(reg, () => ({ title: 'hi' })))).toBe(true);
    expect(wake.waited).toHaveLength(1);
    await wake.waited[0];
    expect(reg.shown).toEqual([{ title: 'hi' }]);
    const other = pushEvent('{"app":"promo"}');
    expect(handlePush(other.event, base(reg, () => ({ title: 'hi' })))).toBe(false);
    expect(other.waited).toHaveLength(0);
  });

  it('installPushHandler: wakes are handled with self.registration; other pushes go to onOtherPush, else the generic notification', async () => {
    const reg = fakeRegistration();
    let listener: ((e: PushEventLike) => void) | undefined;
    const scope: ServiceWorkerScopeLike = { registration: reg, addEventListener: (_t, l) => void (listener = l) };
    const { registration: _omit, ...opts } = base(reg, () => ({ title: 'from the app' }));
    installPushHandler(scope, opts);
    const wake = pushEvent(PUSH_WAKE_PAYLOAD);
    listener!(wake.event);
    await Promise.all(wake.waited);
    expect(reg.shown).toEqual([{ title: 'from the app' }]);

    const other = pushEvent('something else');
    listener!(other.event);
    await Promise.all(other.waited);
    expect(reg.shown.at(-1)).toEqual(generic);

    const others: PushEventLike[] = [];
    let listener2: ((e: PushEventLike) => void) | undefined;
    installPushHandler({ registration: reg, addEventListener: (_t, l) => void (listener2 = l) }, { ...opts, onOtherPush: (e) => void others.push(e) });
    const third = pushEvent('app push');
    listener2!(third.event);
    expect(others).toEqual([third.event]);
    expect(third.waited).toHaveLength(0);
  });
});

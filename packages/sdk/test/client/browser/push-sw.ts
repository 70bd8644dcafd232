/**
 * The service worker of sw-browser.test.ts, built from `@meshwhisper/sdk/service-worker` exactly
 * as an app would: on a wake push it opens the page's IndexedDB storage, fetches and decrypts, and
 * the app's callback (below) reports what it got to the page and returns the notification. The
 * callback throws when a message says "make the callback throw", to show the generic fallback.
 */
import { openIndexedDbStorage } from '../../../src/index.js';
import type { ServiceWorkerScopeLike } from '../../../src/service-worker.js';
import { installPushHandler } from '../../../src/service-worker.js';

export const SW_DB = 'sw-e2e-device';

export interface SwReport {
  readonly texts: string[];
  readonly from: string[];
  readonly undecryptable: number;
  readonly error?: string;
  readonly timedOut: boolean;
}

interface SwGlobal extends ServiceWorkerScopeLike {
  readonly location: Location;
  readonly clients: { matchAll(o: { includeUncontrolled: boolean; type: 'window' }): Promise<{ postMessage(m: unknown): void }[]> };
  skipWaiting(): Promise<void>;
  addEventListener(type: string, listener: (event: never) => void): void;
}
const sw = self as unknown as SwGlobal;

sw.addEventListener('install', () => void sw.skipWaiting());

/** What became of each showNotification call (a diagnostic for the test: "never shown" vs "shown, then gone"). */
export interface SwShownRecord {
  /** 'shown': a showNotification call ended; 'closed': the browser fired notificationclose (closed without a click). */
  readonly kind: 'shown' | 'closed';
  readonly title: string;
  readonly tag?: string | undefined;
  readonly body?: string | undefined;
  readonly ok: boolean;
  readonly error?: string;
  /** ms from the worker's start to the call's end. */
  readonly at: number;
}
const registration = (sw as unknown as { registration: { showNotification(title: string, options?: NotificationOptions): Promise<void> } }).registration;
const showNotification = registration.showNotification.bind(registration);
registration.showNotification = async (title, options) => {
  const post = async (r: Omit<SwShownRecord, 'kind' | 'at'>): Promise<void> => {
    for (const c of await sw.clients.matchAll({ includeUncontrolled: true, type: 'window' })) c.postMessage({ kind: 'shown', at: Math.round(performance.now()), ...r });
  };
  try {
    await showNotification(title, options);
  } catch (e) {
    await post({ title, ok: false, error: String(e) });
    throw e;
  }
  await post({ title, tag: options?.tag, body: options?.body, ok: true });
};
// A notification that leaves getNotifications() without anyone closing it: did the browser close it?
sw.addEventListener('notificationclose', (event: { notification: { title: string; tag: string } }) => {
  void sw.clients.matchAll({ includeUncontrolled: true, type: 'window' }).then((cs) => {
    for (const c of cs) c.postMessage({ kind: 'closed', at: Math.round(performance.now()), title: event.notification.title, tag: event.notification.tag, ok: true } satisfies SwShownRecord);
  });
});

installPushHandler(sw, {
  node: sw.location.origin,
  namespace: 'sw-e2e',
  openStorage: () => openIndexedDbStorage({ name: SW_DB }),
  timeoutMs: 15_000,
  async showNotification(messages, wake) {
    const report: SwReport = {
      texts: messages.map((m) => m.text ?? ''),
      from: messages.map((m) => m.from),
      undecryptable: wake.undecryptable.length,
      ...(wake.error !== undefined ? { error: String(wake.error) } : {}),
      timedOut: wake.timedOut,
    };
    for (const c of await sw.clients.matchAll({ includeUncontrolled: true, type: 'window' })) c.postMessage(report);
    if (messages.some((m) => m.text === 'make the callback throw')) throw new Error('app bug');
    // requireInteraction: the notification stays until the user acts on it, as a messenger's should.
    // Without it headless Chromium drops a notification from getNotifications() on its own once its
    // popup times out (~25 s after showing it here, with no notificationclose event), which a slow
    // machine could reach before the test looks.
    return { title: `${messages.length} new message${messages.length === 1 ? '' : 's'}`, options: { body: report.texts.join('\n'), tag: 'sw-e2e', requireInteraction: true } };
  },
});

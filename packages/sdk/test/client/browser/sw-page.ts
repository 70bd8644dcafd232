/**
 * The page of sw-browser.test.ts: a MeshWhisper client (IndexedDB storage) that registers this
 * device's Web Push endpoint and then goes away, and the service worker built from
 * `@meshwhisper/sdk/service-worker` (push-sw.ts), whose reports arrive here by postMessage.
 */
import { MeshWhisper, openIndexedDbStorage } from '../../../src/index.js';
import type { SwReport, SwShownRecord } from './push-sw.js';

export interface SwPageApi {
  /** Creates (or opens) the device in IndexedDB `db`, registers `subscription` as its push endpoint, and closes it: offline. */
  registerDevice(db: string, subscription: unknown): Promise<{ mailboxId: string; address: string }>;
  /** Registers /push-sw.js and waits until it is active. */
  registerServiceWorker(): Promise<string>;
  /** Waits until `count` reports from the worker have arrived (or `ms` passed) and hands them over. */
  reports(count: number, ms: number): Promise<SwReport[]>;
  /** The notifications the worker shows (registration.getNotifications()). */
  notifications(): Promise<{ title: string; body: string; tag: string }[]>;
  /** Every showNotification call of the worker so far and how it ended (for failure messages). */
  shownLog(): Promise<SwShownRecord[]>;
}

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const reports: SwReport[] = [];
const shown: SwShownRecord[] = [];
navigator.serviceWorker.addEventListener('message', (e: MessageEvent<SwReport | SwShownRecord>) => {
  if ('kind' in e.data) shown.push(e.data);
  else reports.push(e.data as SwReport);
});
navigator.serviceWorker.startMessages();

const api: SwPageApi = {
  async registerDevice(db, subscription) {
    const client = await MeshWhisper.create({ node: location.origin, namespace: 'sw-e2e', storage: await openIndexedDbStorage({ name: db }), connect: false });
    try {
      const info = await client.pushInfo();
      if (!info.vapidPublicKey) throw new Error('the node has no VAPID key');
      await client.registerPush({ kind: 'webpush', subscription: subscription as { endpoint: string; keys: { p256dh: string; auth: string } } });
      return { mailboxId: hex(client.mailboxId), address: client.address };
    } finally {
      await client.close();
    }
  },
  async registerServiceWorker() {
    const reg = await navigator.serviceWorker.register('/push-sw.js', { scope: '/' });
    await navigator.serviceWorker.ready;
    while (!reg.active || reg.active.state !== 'activated') await sleep(20);
    return reg.scope;
  },
  async reports(count, ms) {
    const end = Date.now() + ms;
    while (reports.length < count && Date.now() < end) await sleep(20);
    return reports.splice(0, reports.length);
  },
  async shownLog() {
    return shown.slice();
  },
  async notifications() {
    const reg = await navigator.serviceWorker.ready;
    return (await reg.getNotifications()).map((n) => ({ title: n.title, body: n.body, tag: n.tag }));
  },
};

(window as unknown as { __mwPush: SwPageApi }).__mwPush = api;
document.title = 'ready';

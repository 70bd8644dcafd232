/**
 * Web Push for Prudence: subscribe the service worker's registration with the node's VAPID key and
 * register it with the node (docs/api-push.md). The node then rings this device when mail arrives
 * while Prudence is closed; the worker (sw.ts) fetches and decrypts it and shows a notification.
 */
import type { Messenger } from './messenger.js';

/** What the settings screen says about notifications. */
export async function pushState(m: Messenger): Promise<string> {
  if (!('serviceWorker' in navigator) || !('PushManager' in globalThis)) return 'This browser has no Web Push.';
  const info = await m.client.pushInfo().catch(() => undefined);
  if (!info?.vapidPublicKey) return 'This node has no Web Push configured (VAPID_* settings): Prudence is notified only while open.';
  if (Notification.permission === 'denied') return 'Notifications are blocked for this site in the browser settings.';
  const reg = await navigator.serviceWorker.ready;
  return (await reg.pushManager.getSubscription()) ? 'On: the node wakes this device when a message arrives.' : 'Off.';
}

export async function enablePush(m: Messenger): Promise<void> {
  const info = await m.client.pushInfo();
  if (!info.vapidPublicKey) throw new Error('This node has no Web Push configured (VAPID_* settings).');
  if ((await Notification.requestPermission()) !== 'granted') throw new Error('Notifications were not allowed.');
  const reg = await navigator.serviceWorker.ready;
  const subscription = (await reg.pushManager.getSubscription()) ?? (await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: info.vapidPublicKey as BufferSource }));
  await m.client.registerPush({ kind: 'webpush', subscription });
}

/**
 * Prudence's service worker: the offline app shell and the push wake.
 *
 * - Install caches every file of the build (the list is written into this file at build time by
 *   vite.config.ts), so the app opens without the network; activate drops older caches.
 * - Fetch: the app's own files come from the cache (navigations fall back to the cached `/`);
 *   the node's API (/v1/…) and anything else go to the network untouched, never cached.
 * - Push: the SDK's handler (`@meshwhisper/sdk/service-worker`) wakes the device, fetches and
 *   decrypts the backlog into the shared IndexedDB storage (history included), and Prudence says
 *   what to show: the sender's name and text, never more than the lock screen needs.
 */
import { installPushHandler } from '@meshwhisper/sdk/service-worker';
import type { PushWakeResult } from '@meshwhisper/sdk/service-worker';
import type { IncomingMessage } from '@meshwhisper/sdk';
import { openIndexedDbStorage } from '@meshwhisper/sdk';
import { DB_NAME, NAMESPACE, NAMES_TABLE, PROFILE_MIME } from './lib/constants.js';
import { fromUtf8, toHex } from './lib/util.js';

/** Replaced at build time by the list of every emitted file (vite.config.ts, prudence-precache). */
const PRECACHE = '__PRUDENCE_PRECACHE__' as unknown as string[];
/** One cache per build: its name changes whenever a file does. */
const CACHE = `prudence-${hash(PRECACHE.join('\n'))}`;

// The parts of the service worker scope used here (the WebWorker lib clashes with DOM in one program).
interface ExtendableEvent extends Event {
  waitUntil(p: Promise<unknown>): void;
}
interface FetchEvent extends ExtendableEvent {
  readonly request: Request;
  respondWith(r: Promise<Response>): void;
}
interface WindowClientLike {
  postMessage(message: unknown): void;
  focus(): Promise<unknown>;
  navigate(url: string): Promise<unknown>;
}
interface Scope {
  readonly registration: ServiceWorkerRegistration;
  readonly clients: { matchAll(o: { type: 'window'; includeUncontrolled: boolean }): Promise<WindowClientLike[]>; claim(): Promise<void>; openWindow(url: string): Promise<unknown> };
  skipWaiting(): Promise<void>;
  addEventListener(type: string, listener: (event: never) => void): void;
}
const sw = self as unknown as Scope;

function hash(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(36);
}

sw.addEventListener('install', (event: ExtendableEvent) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll(PRECACHE);
    await sw.skipWaiting();
  })());
});

sw.addEventListener('activate', (event: ExtendableEvent) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name.startsWith('prudence-') && name !== CACHE) await caches.delete(name);
    await sw.clients.claim();
  })());
});

sw.addEventListener('fetch', (event: FetchEvent) => {
  const { request } = event;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== location.origin) return;
  if (request.mode === 'navigate') {
    // Network first for the page (a new build shows at once when online), the cached shell offline.
    event.respondWith(fetch(request).catch(async () => (await caches.match('/', { cacheName: CACHE })) ?? Response.error()));
    return;
  }
  if (!PRECACHE.includes(url.pathname)) return; // the API and anything else: network, uncached
  event.respondWith((async () => (await caches.match(request, { cacheName: CACHE })) ?? fetch(request))());
});

sw.addEventListener('notificationclick', (event: ExtendableEvent & { notification: Notification }) => {
  event.notification.close();
  const peer = (event.notification.data as { peer?: string } | null)?.peer;
  const target = peer ? `/#/chat/${peer}` : '/';
  event.waitUntil((async () => {
    const [open] = await sw.clients.matchAll({ type: 'window', includeUncontrolled: true });
    if (open) {
      await open.navigate(target).catch(() => undefined);
      await open.focus();
    } else await sw.clients.openWindow(target);
  })());
});

/** The names Prudence knows (for the notification's title); once per wake. */
async function knownNames(): Promise<Map<string, string>> {
  const storage = await openIndexedDbStorage({ name: DB_NAME });
  try {
    return new Map((await storage.listItems(NAMES_TABLE)).map(({ key, value }) => [key, fromUtf8.decode(value)]));
  } finally {
    await storage.close();
  }
}

installPushHandler(sw as never, {
  node: location.origin,
  namespace: NAMESPACE,
  openStorage: () => openIndexedDbStorage({ name: DB_NAME }),
  async showNotification(messages: IncomingMessage[], wake: PushWakeResult) {
    // One line per wake, so that a wake without its notification can be told apart from a push that
    // never reached the worker (DevTools, the e2e test's trace): counts and an error code, never
    // content. A warning because the project's lint keeps the console to warnings and errors.
    const code = (wake.error as { code?: unknown } | undefined)?.code;
    console.warn(`prudence: wake: ${messages.length} message(s), ${wake.undecryptable.length} undecryptable${wake.timedOut ? ', timed out' : ''}${wake.error === undefined ? '' : `, failed (${typeof code === 'string' ? code : 'error'})`}`);
    // The messages are already in the history (the SDK stored them with the ratchet step): open
    // pages only need to re-read it.
    for (const c of await sw.clients.matchAll({ type: 'window', includeUncontrolled: true })) c.postMessage({ type: 'prudence:wake', count: messages.length });
    const known = await knownNames().catch(() => new Map<string, string>());
    const shown = messages.filter((m) => !m.outgoing && m.binary?.mimeType !== PROFILE_MIME);
    if (shown.length === 0) return undefined; // the SDK shows its generic notification
    const last = shown.at(-1)!;
    const peer = toHex(last.sender.accountKey);
    const from = known.get(peer) ?? 'a new contact';
    const body = last.text ?? (last.file ? `sent ${last.file.name}` : 'sent a message');
    return {
      title: shown.length === 1 ? `Prudence: ${from}` : `Prudence: ${shown.length} new messages`,
      options: { body: shown.length === 1 ? body : `${from}: ${body}`, tag: 'prudence', data: { peer }, icon: '/icons/icon-192.png' },
    };
  },
});

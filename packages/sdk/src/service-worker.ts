/**
 * `@meshwhisper/sdk/service-worker`: the push wake in a PWA's service worker (docs/api-push.md).
 *
 * The node's push carries only the fixed wake marker (docs/push.md). On a wake the worker opens the
 * storage it shares with the page (IndexedDB; Web Locks serialise writers), connects as this
 * device, waits until the backlog is delivered (`synced`) or the timeout, closes, and hands the
 * decrypted messages to the app, which says what to show. A notification is ALWAYS shown —
 * browsers require one per push — a generic one when the app's callback fails or returns nothing,
 * or when nothing could be fetched.
 *
 * Messages handed to the callback have been acknowledged to the node: the page will not receive
 * them again. Store them (e.g. in the app's own IndexedDB) in the callback if the page shows history.
 */
import type { CryptoContext } from '@meshwhisper/crypto';
import { PUSH_WAKE_PAYLOAD } from '@meshwhisper/protocol';
import type { IncomingMessage, UndecryptableMessage } from './client/types.js';
import { MeshWhisper } from './client/client.js';
import type { WebSocketConstructor } from './client/connection.js';
import { GENERIC_NOTIFICATION_TAG, GENERIC_NOTIFICATION_TITLE, SW_CLOSE_GRACE_MS, SW_PUSH_TIMEOUT_MS } from './constants.js';
import type { ProtocolStorage } from './storage/types.js';

export { GENERIC_NOTIFICATION_TAG, GENERIC_NOTIFICATION_TITLE, SW_CLOSE_GRACE_MS, SW_PUSH_TIMEOUT_MS } from './constants.js';
export { PUSH_WAKE_PAYLOAD } from '@meshwhisper/protocol';

/** The parts of a service worker PushEvent used here (structural: no WebWorker lib needed). */
export interface PushEventLike {
  readonly data: { text(): string } | null;
  waitUntil(promise: Promise<unknown>): void;
}

/** The parts of a ServiceWorkerRegistration used here. */
export interface NotifyingRegistration {
  showNotification(title: string, options?: NotificationOptions): Promise<void>;
}

/** The parts of a ServiceWorkerGlobalScope used by installPushHandler. */
export interface ServiceWorkerScopeLike {
  readonly registration: NotifyingRegistration;
  addEventListener(type: 'push', listener: (event: PushEventLike) => void): void;
}

/** One notification to show: `registration.showNotification(title, options)`. */
export interface NotificationSpec {
  readonly title: string;
  readonly options?: NotificationOptions;
}

/** What the worker got while it was awake. */
export interface PushWakeResult {
  /** Decrypted messages delivered meanwhile (text and binary), in arrival order. */
  readonly messages: IncomingMessage[];
  /** Envelopes that could not be opened (already acknowledged; see the client's `undecryptable` event). */
  readonly undecryptable: UndecryptableMessage[];
  /** Why fetching failed (storage, node unreachable, …); undefined when it ran to `synced` or the timeout. */
  readonly error?: unknown;
  /** The timeout hit before the backlog was delivered: `messages` may be partial. */
  readonly timedOut: boolean;
}

export type ShowNotificationCallback = (
  messages: IncomingMessage[],
  wake: PushWakeResult,
) => NotificationSpec | readonly NotificationSpec[] | undefined | void | Promise<NotificationSpec | readonly NotificationSpec[] | undefined | void>;

export interface PushHandlerOptions {
  /** The node's base URL (the same as the page's client). */
  readonly node: string;
  readonly namespace: string;
  /** Opens the storage the page uses, e.g. `() => openIndexedDbStorage({ name: 'myapp' })`. The worker closes it. */
  readonly openStorage: () => Promise<ProtocolStorage>;
  /**
   * Decides what to show for the messages fetched (possibly none). Return the notification(s); do
   * not call registration.showNotification yourself. Throwing, returning nothing or an empty list,
   * or taking longer than `timeoutMs`, shows the generic notification instead.
   */
  readonly showNotification: ShowNotificationCallback;
  /** Longest time spent connecting and fetching, and the bound on the callback (default SW_PUSH_TIMEOUT_MS). */
  readonly timeoutMs?: number;
  /** The generic notification (default: "New message", tag GENERIC_NOTIFICATION_TAG). */
  readonly fallbackNotification?: NotificationSpec;
  /** Where notifications are shown (default: the worker's `self.registration`). */
  readonly registration?: NotifyingRegistration;
  readonly crypto?: CryptoContext;
  readonly fetch?: typeof fetch;
  readonly WebSocket?: WebSocketConstructor;
}

export interface InstallPushHandlerOptions extends PushHandlerOptions {
  /**
   * Called for a push that is not a MeshWhisper wake (the app's own pushes); it must show its own
   * notification. Without it such a push shows the generic notification.
   */
  readonly onOtherPush?: (event: PushEventLike) => void;
}

/** True when the push carries exactly the node's wake marker (docs/push.md: compare exactly). */
export function isWakePush(event: PushEventLike): boolean {
  try {
    return event.data?.text() === PUSH_WAKE_PAYLOAD;
  } catch {
    return false;
  }
}

const DEFAULT_FALLBACK: NotificationSpec = { title: GENERIC_NOTIFICATION_TITLE, options: { tag: GENERIC_NOTIFICATION_TAG } };

function timeoutAfter(ms: number): { promise: Promise<'timeout'>; cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

/**
 * Connects as this device, collects what the node delivers until `synced` (or `timeoutMs`), and
 * closes. Never throws: a failure is reported in `error`. Usable outside a service worker (tests,
 * a native wrapper's background task).
 */
export async function fetchWhileWoken(options: Omit<PushHandlerOptions, 'showNotification' | 'registration' | 'fallbackNotification'>): Promise<PushWakeResult> {
  const messages: IncomingMessage[] = [];
  const undecryptable: UndecryptableMessage[] = [];
  let client: MeshWhisper | undefined;
  let stopped = false;
  const stop = async (): Promise<void> => {
    stopped = true;
    await client?.close().catch(() => undefined);
  };
  const work = (async (): Promise<void> => {
    const storage = await options.openStorage();
    let c: MeshWhisper;
    try {
      c = await MeshWhisper.create({
        node: options.node,
        namespace: options.namespace,
        storage,
        connect: false,
        ...(options.crypto ? { crypto: options.crypto } : {}),
        ...(options.fetch ? { fetch: options.fetch } : {}),
        ...(options.WebSocket ? { WebSocket: options.WebSocket } : {}),
      });
    } catch (e) {
      await storage.close().catch(() => undefined);
      throw e;
    }
    client = c;
    // Timed out while creating: never connect (nothing would collect what arrives).
    if (stopped) return void (await c.close().catch(() => undefined));
    c.on('message', (m) => messages.push(m));
    c.on('undecryptable', (u) => undecryptable.push(u));
    const synced = new Promise<void>((resolve) => c.on('synced', () => resolve()));
    c.connect();
    await synced;
    // `synced` can come before the last batch has been decrypted: wait for it.
    await c.idle();
  })();
  const limit = timeoutAfter(options.timeoutMs ?? SW_PUSH_TIMEOUT_MS);
  let error: unknown;
  let timedOut = false;
  try {
    timedOut = (await Promise.race([work.then(() => 'done' as const), limit.promise])) === 'timeout';
  } catch (e) {
    error = e;
  } finally {
    limit.cancel();
    work.catch(() => undefined); // after a timeout it may still fail; nobody waits for it
    // Closing before reading `messages`: every message emitted (hence acknowledged) is in the list.
    // Bounded too: closing waits for what is in flight (an outbox request with no answer, a storage
    // transaction), and a close that never ends must not keep the notification from showing. A
    // message emitted after the grace is stored (the history has it) but not in this notification.
    const grace = timeoutAfter(SW_CLOSE_GRACE_MS);
    await Promise.race([stop(), grace.promise]);
    grace.cancel();
  }
  return { messages: messages.slice(), undecryptable: undecryptable.slice(), ...(error !== undefined ? { error } : {}), timedOut };
}

function asSpecs(value: unknown): NotificationSpec[] {
  const list = Array.isArray(value) ? (value as unknown[]) : value === undefined || value === null ? [] : [value];
  return list.filter((s): s is NotificationSpec => typeof s === 'object' && s !== null && typeof (s as NotificationSpec).title === 'string');
}

/** Fetches (fetchWhileWoken), asks the app what to show, and shows it — or the generic notification. Never throws. */
export async function wakeAndNotify(options: PushHandlerOptions): Promise<PushWakeResult> {
  const registration = options.registration ?? (globalThis as { registration?: NotifyingRegistration }).registration;
  const fallback = options.fallbackNotification ?? DEFAULT_FALLBACK;
  const wake = await fetchWhileWoken(options);
  let specs: NotificationSpec[] = [];
  const limit = timeoutAfter(options.timeoutMs ?? SW_PUSH_TIMEOUT_MS);
  try {
    const answer = await Promise.race([Promise.resolve().then(() => options.showNotification(wake.messages.slice(), wake)), limit.promise]);
    if (answer !== 'timeout') specs = asSpecs(answer);
  } catch {
    // The app's callback failed: the generic notification below.
  } finally {
    limit.cancel();
  }
  let shown = 0;
  for (const s of specs) {
    try {
      await registration?.showNotification(s.title, s.options);
      shown++;
    } catch {
      // e.g. an invalid option: fall back below if nothing was shown.
    }
  }
  if (shown === 0) await registration?.showNotification(fallback.title, fallback.options).catch(() => undefined);
  return wake;
}

/**
 * For the worker's `push` event: if the push is a MeshWhisper wake, keeps the worker alive
 * (event.waitUntil) while it fetches and notifies, and returns true. Returns false, doing nothing,
 * for any other push (the app shows its own notification for those).
 */
export function handlePush(event: PushEventLike, options: PushHandlerOptions): boolean {
  if (!isWakePush(event)) return false;
  event.waitUntil(wakeAndNotify(options));
  return true;
}

/** `self.addEventListener('push', …)` with handlePush; a push that is not a wake goes to `onOtherPush` or shows the generic notification. */
export function installPushHandler(scope: ServiceWorkerScopeLike, options: InstallPushHandlerOptions): void {
  scope.addEventListener('push', (event) => {
    const opts = options.registration ? options : { ...options, registration: scope.registration };
    if (handlePush(event, opts)) return;
    if (options.onOtherPush) return options.onOtherPush(event);
    const fallback = options.fallbackNotification ?? DEFAULT_FALLBACK;
    event.waitUntil(scope.registration.showNotification(fallback.title, fallback.options).catch(() => undefined));
  });
}

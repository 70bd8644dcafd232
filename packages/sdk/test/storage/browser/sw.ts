/**
 * The service worker half of entry.ts's shared-database check: on request, adds `n` to the
 * counter in database `db` through its own IndexedDbStorage, one transaction per increment.
 */
import { openIndexedDbStorage } from '../../../src/index.js'; // the whole SDK entry point must bundle for browsers

const sw = self as unknown as {
  addEventListener(type: 'message', l: (e: MessageEvent<{ db: string; n: number }> & { waitUntil(p: Promise<unknown>): void }) => void): void;
  addEventListener(type: 'install' | 'activate', l: (e: Event & { waitUntil(p: Promise<unknown>): void }) => void): void;
  skipWaiting(): Promise<void>;
  clients: { claim(): Promise<void> };
};
const u32 = (n: number): Uint8Array => Uint8Array.of(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
const fromU32 = (b: Uint8Array | undefined): number => (b ? ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0 : 0);

sw.addEventListener('install', (e) => e.waitUntil(sw.skipWaiting()));
sw.addEventListener('activate', (e) => e.waitUntil(sw.clients.claim()));
sw.addEventListener('message', (e) => {
  const port = e.ports[0]!;
  e.waitUntil(
    (async () => {
    const s = await openIndexedDbStorage({ name: e.data.db });
    try {
      for (let i = 0; i < e.data.n; i++) {
        await s.transaction(async (tx) => {
          const v = fromU32(await tx.loadSession('counter:1'));
          await new Promise((r) => setTimeout(r, 1));
          await tx.storeSession('counter:1', u32(v + 1));
        });
      }
      port.postMessage({ ok: true });
    } catch (err) {
      port.postMessage({ ok: false, error: String(err) });
    } finally {
      await s.close();
    }
  })(),
  );
});

/**
 * Runs in a real browser page (bundled by groups-browser.test.ts): one MeshWhisper client with
 * IndexedDB storage and the browser's WebSocket, a member of a group. Node drives it through
 * window.__mwGroups (page.evaluate); bytes cross as hex.
 */
import { MeshWhisper, openIndexedDbStorage } from '../../../src/index.js';

export interface GroupPageApi {
  start(db: string): Promise<{ accountKey: string; mailboxId: string }>;
  /** Waits until the page holds the group (joined), or `ms` passed; returns its name, or null. */
  joined(groupHex: string, ms: number): Promise<string | null>;
  /** Waits until the group's history has `count` texts, or `ms` passed; returns them (oldest first). */
  texts(groupHex: string, count: number, ms: number): Promise<string[]>;
  send(groupHex: string, text: string): Promise<string>;
  info(groupHex: string): Promise<{ name: string; members: number; digest: string; isMember: boolean } | null>;
  /** Waits (on groupChange events) until the group's digest is `digest`, or `ms` passed. */
  converged(groupHex: string, digest: string, ms: number): Promise<boolean>;
  close(): Promise<void>;
}

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const unhex = (s: string): Uint8Array => Uint8Array.from(s.match(/../g) ?? [], (x) => parseInt(x, 16));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let client: MeshWhisper | undefined;
const need = (): MeshWhisper => {
  if (!client) throw new Error('client not started');
  return client;
};

const api: GroupPageApi = {
  async start(db) {
    const storage = await openIndexedDbStorage({ name: db });
    client = await MeshWhisper.create({ node: location.origin, namespace: 'groups-browser', storage, receiptDelay: { minDelayMs: 0, maxDelayMs: 50 } });
    return { accountKey: hex(client.accountKey), mailboxId: hex(client.mailboxId) };
  },
  async joined(g, ms) {
    const end = Date.now() + ms;
    for (;;) {
      const info = await need().groups.info(unhex(g));
      if (info) return info.name;
      if (Date.now() > end) return null;
      await need()
        .once('groupChange', () => true, Math.max(50, end - Date.now()))
        .catch(() => undefined);
    }
  },
  async texts(g, count, ms) {
    const end = Date.now() + ms;
    for (;;) {
      const h = (await need().history({ kind: 'group', groupId: unhex(g) })).map((m) => m.text ?? '');
      if (h.length >= count || Date.now() > end) return h;
      await Promise.race([need().once('message', () => true, Math.max(50, end - Date.now())).catch(() => undefined), sleep(500)]);
    }
  },
  async send(g, text) {
    return (await need().sendText({ kind: 'group', groupId: unhex(g) }, text)).id;
  },
  async info(g) {
    const i = await need().groups.info(unhex(g));
    return i ? { name: i.name, members: i.members.length, digest: i.digest, isMember: i.isMember } : null;
  },
  async converged(g, digest, ms) {
    const end = Date.now() + ms;
    for (;;) {
      if ((await need().groups.info(unhex(g)))?.digest === digest) return true;
      if (Date.now() > end) return false;
      await need()
        .once('groupChange', () => true, Math.max(50, end - Date.now()))
        .catch(() => undefined);
    }
  },
  async close() {
    await client?.close();
    client = undefined;
  },
};

(window as unknown as { __mwGroups: GroupPageApi }).__mwGroups = api;
document.title = 'ready';

/**
 * Runs in a real browser page (bundled by browser-link.test.ts): the NEW device of a link — it
 * shows a link offer (IndexedDB storage, the browser's own fetch and WebSocket, the node at the
 * page's origin), and once a Node device of the account scanned it, it is that account's device.
 */
import type { LinkOfferHandle } from '../../../src/index.js';
import { MeshWhisper, openIndexedDbStorage } from '../../../src/index.js';

export interface LinkPageMessage {
  readonly id: string;
  readonly text?: string;
  readonly outgoing: boolean;
}

export interface LinkPageApi {
  /** Opens the offer; returns its payload (hex) and the QR SVG's length. */
  offer(db: string): Promise<{ payload: string; svgLength: number }>;
  /** Waits for the link to complete; the linked client's account, mailbox and copied history. */
  linked(peerHex: string): Promise<{ accountKey: string; mailboxId: string; deviceIndex: number; history: string[] }>;
  messages(count: number, ms: number): Promise<LinkPageMessage[]>;
  sendText(toAccountHex: string, text: string): Promise<string>;
}

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const unhex = (s: string): Uint8Array => Uint8Array.from(s.match(/../g) ?? [], (x) => parseInt(x, 16));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let offer: LinkOfferHandle<MeshWhisper> | undefined;
let client: MeshWhisper | undefined;
const inbox: LinkPageMessage[] = [];

const api: LinkPageApi = {
  async offer(db) {
    const storage = await openIndexedDbStorage({ name: db });
    offer = await MeshWhisper.createLinkOffer({ node: location.origin, namespace: 'test', storage, deviceName: 'browser', receiptDelay: { minDelayMs: 0, maxDelayMs: 0 } });
    return { payload: hex(offer.payload), svgLength: offer.qrSvg().length };
  },
  async linked(peerHex) {
    if (!offer) throw new Error('no offer');
    const r = await offer.completed;
    client = r.client;
    client.on('message', (m) => inbox.push({ id: m.id, outgoing: m.outgoing, ...(m.text !== undefined ? { text: m.text } : {}) }));
    const history = (await client.history(unhex(peerHex))).map((m) => m.text ?? '');
    return { accountKey: hex(r.accountKey), mailboxId: hex(client.mailboxId), deviceIndex: r.deviceIndex, history };
  },
  async messages(count, ms) {
    const end = Date.now() + ms;
    while (inbox.length < count && Date.now() < end) await sleep(20);
    return inbox.splice(0, inbox.length);
  },
  async sendText(to, text) {
    if (!client) throw new Error('not linked');
    return (await client.sendText({ accountKey: unhex(to) }, text)).id;
  },
};
(window as unknown as { __mwLink: LinkPageApi }).__mwLink = api;
document.title = 'ready';

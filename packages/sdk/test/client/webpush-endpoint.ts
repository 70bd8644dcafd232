/**
 * A local Web Push service for SDK tests: an HTTPS endpoint (throw-away certificate made with
 * openssl by the node tests' makeTls, trusted by the node only through its TEST push `ca` option), subscriptions whose private
 * key the test keeps, and RFC 8291 decryption of what the node sends (our own implementation).
 */
import { createECDH, randomBytes } from 'node:crypto';
import type { ECDH } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { decryptAes128gcm, makeTls } from '../../../node/test/push/fixtures.js';

export interface Wake {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface PushEndpoint {
  readonly url: string;
  /** PEM certificate of the endpoint: the node's TEST push `ca`. */
  readonly cert: string;
  /** Requests received so far (the test may clear it). */
  readonly wakes: Wake[];
  /** Called on each request after it was recorded. */
  onWake: (w: Wake) => void;
  waitForWakes(n: number, ms?: number): Promise<void>;
  close(): Promise<void>;
}

export const b64url = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
export const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** An HTTPS/1.1 push endpoint on 127.0.0.1 answering 201 Created (RFC 8030 §5). */
export async function startPushEndpoint(): Promise<PushEndpoint> {
  const tls = makeTls();
  const wakes: Wake[] = [];
  const state = { onWake: (_w: Wake): void => undefined };
  const server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const w = { path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) };
      wakes.push(w);
      res.writeHead(201).end();
      state.onWake(w);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return Object.assign(state, {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    cert: tls.cert,
    wakes,
    async waitForWakes(n: number, ms = 10_000) {
      const deadline = Date.now() + ms;
      while (wakes.length < n) {
        if (Date.now() > deadline) throw new Error(`timeout: ${wakes.length} of ${n} wakes arrived`);
        await settle(20);
      }
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  });
}

export interface TestSubscription {
  readonly ecdh: ECDH;
  readonly auth: Buffer;
  /** What PushSubscription.toJSON() returns. */
  readonly json: { endpoint: string; expirationTime: null; keys: { p256dh: string; auth: string } };
}

/** A browser-like subscription at `endpoint`: the test keeps the private key to decrypt what the node sends. */
export function subscription(endpoint: string): TestSubscription {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const auth = randomBytes(16);
  return { ecdh, auth, json: { endpoint, expirationTime: null, keys: { p256dh: b64url(ecdh.getPublicKey()), auth: b64url(auth) } } };
}

/** RFC 8291 §3.4 with RFC 8188: the plaintext of a one-record aes128gcm body (the node tests' decoder). */
export function decryptWebPush(body: Buffer, sub: TestSubscription): string {
  return decryptAes128gcm(body, sub.ecdh, sub.auth).toString('utf8');
}

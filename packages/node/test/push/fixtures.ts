// Push test fixtures: a throw-away TLS certificate (openssl), local push-service servers that speak
// HTTPS/1.1 (Web Push, FCM) and HTTP/2 (APNs), a node wired to them, and device helpers.
import { execFileSync } from 'node:child_process';
import { createDecipheriv, hkdfSync } from 'node:crypto';
import type { ECDH } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createSecureServer } from 'node:http2';
import type { IncomingHttpHeaders, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import { createServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { CryptoContext } from '@meshwhisper/crypto';
import { createContext } from '@meshwhisper/crypto';
import { AUTH_HEADER, EnvelopeClass, PushRegistrationSchema, SendRequestSchema, encodeBody } from '@meshwhisper/protocol';
import { loadConfig } from '../../src/config.js';
import { createNode } from '../../src/node.js';
import type { MeshWhisperNode } from '../../src/node.js';
import type { PushTestOptions } from '../../src/push/setup.js';
import { TestDevice, generousLimits, proto } from '../helpers.js';

export interface TlsMaterial {
  readonly key: string;
  readonly cert: string;
}

/** A self-signed certificate for 127.0.0.1/localhost, made with openssl; it is also the CA the node trusts. */
export function makeTls(): TlsMaterial {
  const dir = mkdtempSync(join(tmpdir(), 'mw-push-tls-'));
  try {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
      { stdio: 'ignore' },
    );
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * RFC 8291 §3.4 + RFC 8188 §2: decrypts a single-record aes128gcm Web Push message body with the
 * user agent's private key `ua` and authentication secret `authSecret`. Returns the plaintext
 * without padding and delimiter; throws on any deviation. Shared with the SDK's push tests.
 */
export function decryptAes128gcm(body: Buffer, ua: ECDH, authSecret: Buffer): Buffer {
  // RFC 8188 §2.1 header: salt (16) ‖ rs (uint32) ‖ idlen (1) ‖ keyid (idlen) — keyid = as_public.
  const salt = body.subarray(0, 16);
  const rs = body.readUInt32BE(16);
  const idlen = body[20]!;
  const asPublic = body.subarray(21, 21 + idlen);
  const record = body.subarray(21 + idlen);
  if (idlen !== 65) throw new Error(`keyid is ${idlen} bytes, not an uncompressed P-256 key (65)`);
  if (record.length > rs) throw new Error(`record of ${record.length} bytes exceeds rs ${rs}`);
  // RFC 8291 §3.3–3.4.
  const ecdhSecret = ua.computeSecret(asPublic);
  const keyInfo = Buffer.concat([Buffer.from('WebPush: info\0'), ua.getPublicKey(), asPublic]);
  const ikm = Buffer.from(hkdfSync('sha256', ecdhSecret, authSecret, keyInfo, 32));
  const cek = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
  const nonce = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
  // One record (the last): sequence number 0, so the nonce is used as is.
  const decipher = createDecipheriv('aes-128-gcm', cek, nonce);
  decipher.setAuthTag(record.subarray(record.length - 16));
  const padded = Buffer.concat([decipher.update(record.subarray(0, record.length - 16)), decipher.final()]);
  // RFC 8188 §2: data ‖ delimiter (0x02 for the last record) ‖ zero padding.
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end--;
  if (padded[end] !== 0x02) throw new Error('not the last record (delimiter 0x02 missing)');
  return padded.subarray(0, end);
}

export interface Captured {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface Reply {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly body?: string;
}

/** Requests received so far, and a way to wait for the n-th. */
export class Recorder {
  readonly requests: Captured[] = [];
  #waiters: (() => void)[] = [];
  add(c: Captured): void {
    this.requests.push(c);
    for (const w of this.#waiters.splice(0)) w();
  }
  async waitFor(n: number, timeoutMs = 5000): Promise<Captured[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.requests.length < n) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout: ${this.requests.length} of ${n} requests arrived`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.requests.slice(0, n);
  }
}

export interface LocalServer {
  readonly url: string;
  readonly recorder: Recorder;
  /** Decides the reply to each request (default 201 for HTTPS/1.1, 200 for HTTP/2); may hold it back. */
  respond: (c: Captured) => Reply | Promise<Reply>;
  close(): Promise<void>;
}

/** A local HTTPS/1.1 server (Web Push endpoint, Google token and FCM send endpoints). */
export async function httpsServer(tls: TlsMaterial, respond: LocalServer['respond'] = () => ({ status: 201 })): Promise<LocalServer> {
  const recorder = new Recorder();
  const state: LocalServer = {
    url: '',
    recorder,
    respond,
    close: async () => undefined,
  };
  const server = createServer({ key: tls.key, cert: tls.cert }, (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const c: Captured = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) };
      recorder.add(c);
      void Promise.resolve(state.respond(c)).then((r) => {
        res.writeHead(r.status, r.headers ?? {});
        res.end(r.body ?? '');
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(state, {
    url: `https://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

/** A local HTTP/2 TLS server (the APNs provider API). */
export async function http2Server(tls: TlsMaterial, respond: LocalServer['respond'] = () => ({ status: 200 })): Promise<LocalServer> {
  const recorder = new Recorder();
  const state: LocalServer = { url: '', recorder, respond, close: async () => undefined };
  const server = createSecureServer({ key: tls.key, cert: tls.cert });
  const sessions = new Set<ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const c: Captured = { method: String(headers[':method']), path: String(headers[':path']), headers, body: Buffer.concat(chunks) };
      recorder.add(c);
      void Promise.resolve(state.respond(c)).then((r) => {
        stream.respond({ ':status': r.status, ...(r.headers ?? {}) });
        stream.end(r.body ?? '');
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(state, {
    url: `https://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  });
}

/** A clock tests can move (ms). */
export function manualClock(start = Date.now()): { ctx: CryptoContext; advance(ms: number): void; now(): number } {
  let t = start;
  return { ctx: createContext({ now: () => t }), advance: (ms) => void (t += ms), now: () => t };
}

export interface PushNode {
  readonly node: MeshWhisperNode;
  readonly logs: string[];
  close(): Promise<void>;
}

/** A node on a fresh DATA_DIR with push settings from `env`, trusting `tls`, metrics on, retries fast. */
export async function startPushNode(env: Record<string, string>, options: { tls?: TlsMaterial; ctx?: CryptoContext; push?: PushTestOptions } = {}): Promise<PushNode> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mw-push-node-'));
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info', METRICS_PORT: 'off', BACKUP_INTERVAL_HOURS: '0', RATE_LIMITS: generousLimits(), ...env });
  const logs: string[] = [];
  const logStream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(chunk.toString());
      cb();
    },
  });
  let node: MeshWhisperNode;
  try {
    node = await createNode(config, {
      logStream,
      ...(options.ctx ? { ctx: options.ctx } : {}),
      push: { ...(options.tls ? { ca: options.tls.cert } : {}), retryDelayMs: () => 20, ...options.push },
    });
  } catch (e) {
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  await node.app.ready();
  return {
    node,
    logs,
    async close() {
      await node.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A registered device (keys uploaded) with the given push registration. */
export async function deviceWithPush(node: MeshWhisperNode, registration: MessageInitShape<typeof PushRegistrationSchema>): Promise<TestDevice> {
  const d = new TestDevice();
  const reg = await d.register(node);
  if (reg.statusCode !== 200) throw new Error(`register: ${reg.statusCode} ${reg.body}`);
  const res = await putPush(node, d, registration);
  if (res.statusCode !== 204) throw new Error(`PUT /v1/push: ${res.statusCode} ${res.body}`);
  return d;
}

export async function putPush(node: MeshWhisperNode, d: TestDevice, registration: MessageInitShape<typeof PushRegistrationSchema>) {
  const body = encodeBody(PushRegistrationSchema, registration);
  return node.app.inject({ method: 'PUT', url: '/v1/push', headers: { ...proto, [AUTH_HEADER]: await d.authHeader(node, 'PUT', '/v1/push', body) }, payload: Buffer.from(body) });
}

export async function sendTo(node: MeshWhisperNode, mailbox: Uint8Array, cls: EnvelopeClass = EnvelopeClass.DURABLE, payload = Uint8Array.of(1, 2, 3)) {
  return node.app.inject({ method: 'POST', url: '/v1/send', headers: proto, payload: Buffer.from(encodeBody(SendRequestSchema, { mailboxId: mailbox, payload, class: cls })) });
}

/** Writes `text` to a fresh temporary file; returns its path and a remover. */
export function tempFile(name: string, text: string): { path: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'mw-push-file-'));
  const path = join(dir, name);
  writeFileSync(path, text, { mode: 0o600 });
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Resolves after `ms` (real time): used to show that nothing more arrives. */
export const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Network probes for `doctor`: DNS, TCP, TLS, HTTP and the WebSocket upgrade. Each one has a hard
 * deadline, reads at most MAX_PROBE_BODY_BYTES, and reports failures as data (a code), never by
 * throwing, so one broken layer does not hide the others.
 */
import { createHash, randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import http from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import https from 'node:https';
import { isIP, connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { PeerCertificate } from 'node:tls';
import { MAX_PROBE_BODY_BYTES } from '../constants.js';

/** A failed probe: an errno-style code (ECONNREFUSED, ETIMEDOUT, ENOTFOUND, EPROTO, …) and the message. */
export interface ProbeError {
  readonly code: string;
  readonly message: string;
}

function probeError(e: unknown): ProbeError {
  const err = e as NodeJS.ErrnoException;
  return { code: err.code ?? 'EUNKNOWN', message: err.message ?? String(e) };
}

const timeoutError = (what: string, ms: number): NodeJS.ErrnoException => Object.assign(new Error(`${what} timed out after ${ms} ms`), { code: 'ETIMEDOUT' });

function deadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    work,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(timeoutError(what, ms)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || h.startsWith('127.') || h.endsWith('.localhost');
}

export type DnsResult = { ok: true; addresses: string[]; literal: boolean } | { ok: false; error: ProbeError };

export async function resolveHost(host: string, timeoutMs: number): Promise<DnsResult> {
  const h = host.replace(/^\[|\]$/g, '');
  if (isIP(h) !== 0) return { ok: true, addresses: [h], literal: true };
  try {
    const all = await deadline(lookup(h, { all: true }), timeoutMs, `DNS lookup of ${h}`);
    return { ok: true, addresses: all.map((a) => a.address), literal: false };
  } catch (e) {
    return { ok: false, error: probeError(e) };
  }
}

export async function tcpConnect(host: string, port: number, timeoutMs: number): Promise<{ ok: true } | { ok: false; error: ProbeError }> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: host.replace(/^\[|\]$/g, ''), port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ ok: false, error: probeError(timeoutError(`TCP connect to ${host}:${port}`, timeoutMs)) });
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok: true });
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      resolve({ ok: false, error: probeError(e) });
    });
  });
}

export interface CertificateInfo {
  readonly subject: string;
  readonly issuer: string;
  readonly validFrom: Date;
  readonly validTo: Date;
  readonly altNames: string;
  readonly selfSigned: boolean;
}

export type TlsResult =
  | { ok: true; authorized: boolean; authorizationError: string | undefined; protocol: string | null; certificate: CertificateInfo | undefined }
  | { ok: false; error: ProbeError };

function certificateInfo(cert: PeerCertificate): CertificateInfo | undefined {
  if (!cert || !cert.valid_to) return undefined;
  const name = (o: unknown): string =>
    o && typeof o === 'object'
      ? Object.entries(o as Record<string, unknown>)
          .map(([k, v]) => `${k}=${String(v)}`)
          .join(', ')
      : '';
  return {
    subject: name(cert.subject),
    issuer: name(cert.issuer),
    validFrom: new Date(cert.valid_from),
    validTo: new Date(cert.valid_to),
    altNames: cert.subjectaltname ?? '',
    selfSigned: name(cert.subject) === name(cert.issuer),
  };
}

/** TLS handshake without rejecting: returns the verdict (chain + host name) and the leaf certificate. */
export async function tlsInspect(host: string, port: number, timeoutMs: number, ca?: readonly string[]): Promise<TlsResult> {
  const h = host.replace(/^\[|\]$/g, '');
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: h, port, servername: isIP(h) === 0 ? h : undefined, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], ...(ca ? { ca: [...ca] } : {}) });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ ok: false, error: probeError(timeoutError(`TLS handshake with ${host}:${port}`, timeoutMs)) });
    }, timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const err = socket.authorizationError as unknown;
      const authorizationError = err === null || err === undefined ? undefined : typeof err === 'string' ? err : ((err as NodeJS.ErrnoException).code ?? String(err));
      resolve({ ok: true, authorized: socket.authorized, authorizationError, protocol: socket.getProtocol(), certificate: certificateInfo(socket.getPeerCertificate()) });
      socket.destroy();
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      resolve({ ok: false, error: probeError(e) });
    });
  });
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** Clock readings (injected clock) just before sending and after the headers arrived. */
  readonly sentAt: number;
  readonly receivedAt: number;
}

export interface HttpProbeOptions {
  readonly timeoutMs: number;
  /** Skip certificate verification (the TLS check already reported it). */
  readonly insecure?: boolean;
  /** Trusted CA certificates (PEM) instead of Node's default set. */
  readonly ca?: readonly string[];
  readonly headers?: Record<string, string>;
  readonly now?: () => number;
}

function requester(url: URL): typeof https.request {
  return url.protocol === 'https:' ? https.request : (http.request as typeof https.request);
}

function readCapped(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      if (size < MAX_PROBE_BODY_BYTES) chunks.push(c.subarray(0, MAX_PROBE_BODY_BYTES - size));
      size += c.length;
      if (size >= MAX_PROBE_BODY_BYTES) res.destroy();
    });
    res.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.once('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.once('error', reject);
  });
}

export async function httpGet(url: URL, options: HttpProbeOptions): Promise<{ ok: true; response: HttpResponse } | { ok: false; error: ProbeError }> {
  const now = options.now ?? Date.now;
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: { ok: true; response: HttpResponse } | { ok: false; error: ProbeError }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const sentAt = now();
    const req = requester(url)(url, { method: 'GET', agent: false, headers: { accept: 'application/json, text/plain;q=0.9, */*;q=0.1', 'user-agent': 'meshwhisper-doctor', ...options.headers }, rejectUnauthorized: !options.insecure, ...(options.ca ? { ca: [...options.ca] } : {}) });
    const timer = setTimeout(() => {
      req.destroy(timeoutError(`GET ${url.pathname}`, options.timeoutMs));
    }, options.timeoutMs);
    req.once('response', (res) => {
      const receivedAt = now();
      readCapped(res).then(
        (body) => finish({ ok: true, response: { status: res.statusCode ?? 0, headers: res.headers, body, sentAt, receivedAt } }),
        (e: unknown) => finish({ ok: false, error: probeError(e) }),
      );
    });
    req.once('error', (e) => finish({ ok: false, error: probeError(e) }));
    req.end();
  });
}

export type UpgradeResult =
  | { ok: true; kind: 'upgraded'; acceptValid: boolean }
  | { ok: true; kind: 'response'; response: HttpResponse }
  | { ok: false; error: ProbeError };

/**
 * Sends a WebSocket opening handshake (RFC 6455 §4.1) and reports what came back: 101 with a
 * correct Sec-WebSocket-Accept, or the plain HTTP response a proxy produced instead. The socket is
 * closed right after the handshake; nothing is sent over it.
 */
export async function wsUpgrade(url: URL, options: HttpProbeOptions): Promise<UpgradeResult> {
  const now = options.now ?? Date.now;
  const key = randomBytes(16).toString('base64');
  const expected = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: UpgradeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const sentAt = now();
    const req = requester(url)(url, {
      method: 'GET',
      agent: false,
      rejectUnauthorized: !options.insecure,
      ...(options.ca ? { ca: [...options.ca] } : {}),
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': key, 'sec-websocket-version': '13', 'user-agent': 'meshwhisper-doctor', ...options.headers },
    });
    const timer = setTimeout(() => req.destroy(timeoutError('WebSocket upgrade', options.timeoutMs)), options.timeoutMs);
    req.once('upgrade', (res, socket) => {
      socket.destroy();
      finish({ ok: true, kind: 'upgraded', acceptValid: res.headers['sec-websocket-accept'] === expected });
    });
    req.once('response', (res) => {
      const receivedAt = now();
      readCapped(res).then(
        (body) => finish({ ok: true, kind: 'response', response: { status: res.statusCode ?? 0, headers: res.headers, body, sentAt, receivedAt } }),
        (e: unknown) => finish({ ok: false, error: probeError(e) }),
      );
    });
    req.once('error', (e) => finish({ ok: false, error: probeError(e) }));
    req.end();
  });
}

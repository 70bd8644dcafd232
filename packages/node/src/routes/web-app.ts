/**
 * Serves a built web app (by default Prudence, apps/prudence/dist) at `/` (docs/self-hosting.md
 * `WEB_APP`, docs/prudence.md).
 *
 * Invariants:
 * - Only files found under the app directory at startup are served, each at its exact path: no
 *   path from a request ever reaches the file system (no traversal, no directory listing).
 * - Every response carries a strict Content-Security-Policy: scripts, styles, workers and
 *   connections to this origin only; images and media also from blob:/data: (decrypted
 *   attachments, thumbnails, QR codes); nothing inline, no eval, no framing, no plugins.
 * - The API (/v1/…, /health, /ready, /metrics) keeps its routes: a file that would shadow one is
 *   skipped.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ErrorCode, httpErrorBody } from '@meshwhisper/protocol';

/** `WEB_APP=prudence`: the Prudence build of this checkout (packages/node/{src,dist}/routes → repo root). */
export const PRUDENCE_DIST = fileURLToPath(new URL('../../../../apps/prudence/dist/', import.meta.url));

/** The policy sent with every file of the web app. `connect-src 'self'` covers ws:/wss: to this host (CSP 3). */
export const WEB_APP_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob: data:",
  "media-src 'self' blob:",
  "connect-src 'self'",
  "worker-src 'self'",
  "manifest-src 'self'",
  "font-src 'self'",
  "form-action 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ');

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': WEB_APP_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  // The QR scanner asks for the camera; nothing else is needed.
  'permissions-policy': 'camera=(self), microphone=(), geolocation=(), payment=(), usb=()',
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.txt': 'text/plain; charset=utf-8',
  '.woff2': 'font/woff2',
};
const COMPRESSIBLE = new Set(['.html', '.js', '.mjs', '.css', '.json', '.webmanifest', '.svg', '.txt']);
/** Paths the node's API owns. */
const RESERVED = /^\/(v1\/|health$|ready$|metrics$)/;

interface ServedFile {
  readonly body: Buffer;
  readonly gzip?: Buffer;
  readonly type: string;
  readonly etag: string;
  readonly immutable: boolean;
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walk(p));
    else if (entry.isFile()) out.push(p);
  }
  return out;
}

/** Reads the app directory into memory (a built app is a few hundred KiB). Undefined when it has no index.html. */
export function loadWebApp(dir: string): Map<string, ServedFile> | undefined {
  if (!existsSync(join(dir, 'index.html')) || !statSync(dir).isDirectory()) return undefined;
  const files = new Map<string, ServedFile>();
  for (const path of walk(dir)) {
    const urlPath = '/' + relative(dir, path).split(sep).join('/');
    if (RESERVED.test(urlPath)) continue;
    const ext = /\.[a-z0-9]+$/i.exec(urlPath)?.[0]?.toLowerCase() ?? '';
    const body = readFileSync(path);
    const gzip = COMPRESSIBLE.has(ext) && body.length > 512 ? gzipSync(body, { level: 9 }) : undefined;
    files.set(urlPath, {
      body,
      ...(gzip && gzip.length < body.length ? { gzip } : {}),
      type: TYPES[ext] ?? 'application/octet-stream',
      etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
      // Vite names bundled assets by content hash: they never change under the same URL.
      immutable: urlPath.startsWith('/assets/'),
    });
  }
  return files;
}

function serve(file: ServedFile, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  reply.headers(SECURITY_HEADERS);
  reply.header('cache-control', file.immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
  reply.header('etag', file.etag);
  reply.header('vary', 'accept-encoding');
  if (request.headers['if-none-match'] === file.etag) return reply.code(304).send();
  reply.type(file.type);
  const acceptsGzip = /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''));
  if (file.gzip && acceptsGzip) {
    reply.header('content-encoding', 'gzip');
    return reply.send(file.gzip);
  }
  return reply.send(file.body);
}

export interface WebAppOptions {
  /** The directory to serve; `''` serves nothing. */
  readonly dir: string;
  /** Whether a missing build is the operator's default (log a hint) rather than a configured path. */
  readonly isDefault: boolean;
}

/** The fastify plugin: GET (and fastify's HEAD) for every file of the app, `/` → index.html. */
export function webAppRoutes(options: WebAppOptions): (app: FastifyInstance) => Promise<void> {
  return async (app) => {
    if (options.dir === '') return;
    const files = loadWebApp(options.dir);
    if (!files) {
      const hint = options.isDefault ? 'Prudence is not built: run `npm run build` (or `npm start`), or set WEB_APP=off' : `WEB_APP: no index.html in ${options.dir}`;
      app.log.warn(hint);
      app.get('/', (_request, reply) => reply.code(404).send(httpErrorBody(ErrorCode.NOT_FOUND, hint)));
      return;
    }
    const index = files.get('/index.html')!;
    app.get('/', (request, reply) => serve(index, request, reply));
    for (const [path, file] of files) {
      app.get(path, (request, reply) => serve(file, request, reply));
    }
    app.log.info({ webApp: options.dir, files: files.size }, 'serving the web app at /');
  };
}

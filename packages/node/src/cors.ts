/**
 * Cross-origin access for browser apps (docs/self-hosting.md `CORS_ORIGINS`). A web app served
 * from another origin than the node must be allowed explicitly: every authenticated SDK request
 * carries the `mw-auth` header and a protobuf body, so the browser sends a preflight first.
 *
 * Authentication is a signed single-use challenge, never a cookie, so CORS here protects no
 * ambient credential; the allow-list only decides which web apps may use this node from a browser.
 * WebSocket upgrades are not subject to CORS in browsers, so the same list is checked on the
 * upgrade's Origin header by upgradeOriginAllowed (native clients send none and are not affected),
 * or any web page could make its visitors' browsers open sockets to this node.
 */
import type { FastifyInstance } from 'fastify';

/** Preflight answers may be cached this long (seconds): a day, well within browsers' caps. */
const PREFLIGHT_MAX_AGE_S = 86_400;

export function parseCorsOrigins(raw: string): ReadonlySet<string> | '*' {
  const parts = raw.split(',').map((s) => s.trim()).filter(Boolean);
  if (parts.length === 1 && parts[0] === '*') return '*';
  const out = new Set<string>();
  for (const p of parts) {
    let u: URL;
    try {
      u = new URL(p);
    } catch {
      throw new RangeError(`"${p}" is not an origin like https://app.example.com`);
    }
    if ((u.protocol !== 'https:' && u.protocol !== 'http:') || u.pathname !== '/' || u.search || u.hash || u.username) {
      throw new RangeError(`"${p}" is not an origin (scheme://host[:port] only)`);
    }
    out.add(u.origin);
  }
  return out;
}

export function originAllowed(allowed: ReadonlySet<string> | '*', origin: string | undefined): boolean {
  if (origin === undefined) return true; // not a browser cross-origin request
  return allowed === '*' || allowed.has(origin);
}

/**
 * The Origin rule of WebSocket upgrades (docs/self-hosting.md `CORS_ORIGINS`): no Origin (a native
 * client), an origin on the list (or `*`), or a same-origin page — the Origin names the host the
 * browser connected to, i.e. the Host header. The scheme is not compared: a TLS-terminating proxy
 * forwards https pages' upgrades over plain http. Anything else (including the opaque `null`
 * origin of sandboxed frames and files) is refused.
 */
export function upgradeOriginAllowed(allowed: ReadonlySet<string> | '*', origin: string | undefined, host: string | undefined): boolean {
  if (originAllowed(allowed, origin)) return true;
  if (origin === undefined || host === undefined || host === '') return false;
  try {
    const o = new URL(origin);
    if (o.protocol !== 'https:' && o.protocol !== 'http:') return false;
    // Parsed with the origin's scheme so that an explicit default port (Host: x:443) folds away.
    return new URL(`${o.protocol}//${host}`).host === o.host;
  } catch {
    return false;
  }
}

/** Registers the CORS hooks on the app: headers for allowed origins, 204 answers to preflights. */
export function registerCors(app: FastifyInstance, allowed: ReadonlySet<string> | '*'): void {
  if (allowed !== '*' && allowed.size === 0) return;
  app.addHook('onRequest', async (request, reply) => {
    const origin = request.headers.origin;
    if (origin === undefined || !originAllowed(allowed, origin)) return;
    reply.header('access-control-allow-origin', allowed === '*' ? '*' : origin);
    reply.header('vary', 'Origin');
    reply.header('access-control-expose-headers', 'retry-after, mw-archive-version');
    if (request.method === 'OPTIONS' && request.headers['access-control-request-method']) {
      reply.header('access-control-allow-methods', 'GET, PUT, POST, DELETE');
      reply.header('access-control-allow-headers', 'mw-auth, mw-link-token, mw-archive-version, content-type');
      reply.header('access-control-max-age', String(PREFLIGHT_MAX_AGE_S));
      await reply.code(204).send();
    }
  });
}

/**
 * `meshwhisper init [dir]`: scaffolds a deployment of one node — compose.yaml, the node's .env
 * (generated from the node's CONFIG_SCHEMA, with fresh VAPID keys), placeholders and
 * instructions for APNs/FCM, a .gitignore for the secrets, and a short README.
 *
 * All-or-nothing: every file is planned first; if any exists and --force was not given, nothing
 * is written. Each file is written to a temporary name (with its final mode) and renamed.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { CONFIG_SCHEMA } from '@meshwhisper/node';
import { SECRET_DIR_MODE, SECRET_FILE_MODE } from './constants.js';
import { normalizeTarget } from './doctor/doctor.js';
import { isLoopback } from './doctor/probe.js';
import { renderEnvFile } from './env-template.js';
import { CliError, CliErrorCode } from './errors.js';
import { withProgress } from './io.js';
import type { CliIo } from './io.js';
import { PUSH_SERVICES, SECRETS_DIR } from './push-settings.js';
import type { PushService } from './push-settings.js';
import { browserApp } from './scaffold/browser-app.js';
import { locateCheckout, packSdk } from './scaffold/checkout.js';
import type { Checkout, VendoredPackage } from './scaffold/checkout.js';
import { nodeApp } from './scaffold/node-app.js';
import { generateVapidKeys } from './vapid.js';
import { CLI_VERSION } from './version.js';

/** One file `init` writes. */
export interface GeneratedFile {
  /** Path relative to the target folder, '/'-separated. */
  readonly path: string;
  readonly content: string | Uint8Array;
  readonly mode: number;
  /** Holds a secret: listed in the generated .gitignore. */
  readonly secret: boolean;
}

/** What an app scaffold gets to know about the deployment it connects to. */
export interface ScaffoldContext {
  readonly dir: string;
  /** Public URL of the node (https://… or http://localhost:…). */
  readonly url: string;
  readonly namespace: string;
  readonly push: readonly PushService[];
  /** The MeshWhisper checkout this CLI runs from: the README runs its launchers by absolute path. */
  readonly checkout: Checkout;
  /** With an app: the SDK packed from that checkout (app/vendor/*.tgz). */
  readonly vendor: readonly VendoredPackage[];
}

/**
 * An SDK skeleton app for `init --app NAME`: files that connect to the scaffolded node and send a
 * first message. Its files join the same plan as the deployment files (same overwrite rule, same
 * .gitignore for `secret` files), under a sub-folder of its choosing (`app/`).
 */
export interface AppScaffold {
  readonly name: string;
  readonly description: string;
  files(context: ScaffoldContext): readonly GeneratedFile[];
  /** The generated README's "First message" section. */
  readme?(context: ScaffoldContext): readonly string[];
  /** Extra .gitignore entries: folders the app creates at run time (its private keys, node_modules). */
  ignore?(context: ScaffoldContext): readonly string[];
}
/** The skeleton apps `init --app` offers (docs/cli.md): `node` and `browser`. */
export const APP_SCAFFOLDS: ReadonlyMap<string, AppScaffold> = new Map([nodeApp, browserApp].map((a) => [a.name, a]));
/** `--app none` (and the prompt's default): no skeleton app. */
export const NO_APP = 'none';

export interface InitOptions {
  readonly dir: string;
  /** Accept defaults without asking. */
  readonly yes?: boolean;
  /** Username namespace: `name` (signed policy) or `name:signed|last-writer-wins`. */
  readonly namespace?: string;
  /** Public URL clients will use. */
  readonly url?: string;
  readonly push?: readonly PushService[];
  /** VAPID_SUBJECT: a mailto: address or https: URL push services can reach the operator at. */
  readonly contact?: string;
  readonly force?: boolean;
  /** SDK skeleton app variant (see APP_SCAFFOLDS), or `none`. */
  readonly app?: string;
  /** A cluster: PostgreSQL, NATS (JetStream), three node instances and HAProxy (docs/scale-out.md). */
  readonly cluster?: boolean;
  readonly now?: () => Date;
}

export interface InitResult {
  readonly dir: string;
  readonly files: readonly { path: string; mode: number; overwritten: boolean }[];
  readonly url: string;
  readonly namespace: string;
  readonly push: readonly PushService[];
  /** The skeleton app written (`node`, `browser`), if any. */
  readonly app: string | undefined;
  readonly cluster: boolean;
}

/** Node instances `init --cluster` writes (node1 … nodeN behind the load balancer). */
export const CLUSTER_INSTANCES = 3;
/** The PostgreSQL password file `init --cluster` writes (a secret; also inside DATABASE_URL in .env). */
export const POSTGRES_PASSWORD_FILE = `${SECRETS_DIR}/postgres-password`;

export const DEFAULT_URL = 'http://localhost:8080';
export const DEFAULT_PUSH: readonly PushService[] = ['webpush'];

export function parsePushList(raw: string): PushService[] {
  const list = raw
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  if (list.length === 1 && list[0] === 'none') return [];
  for (const s of list) {
    if (!(PUSH_SERVICES as readonly string[]).includes(s)) throw new CliError(CliErrorCode.INVALID_VALUE, `--push: unknown service ${JSON.stringify(s)} (use webpush, apns, fcm or none)`);
  }
  return [...new Set(list)] as PushService[];
}

/** `name` or `name:policy` → the USERNAME_NAMESPACES value, validated by the node's own parser. */
export function namespaceSetting(raw: string): string {
  const value = raw.includes(':') ? raw.trim() : `${raw.trim()}:signed`;
  try {
    CONFIG_SCHEMA.usernameNamespaces.parse(value, {});
  } catch (e) {
    throw new CliError(CliErrorCode.INVALID_VALUE, `--namespace: ${(e as Error).message} (lowercase letters, digits, _ . -; at most 64 characters)`);
  }
  return value;
}

async function ask(io: CliIo, question: string, fallback: string): Promise<string> {
  if (!io.ask) return fallback;
  const answer = (await io.ask(`${question} [${fallback}]: `)).trim();
  return answer === '' ? fallback : answer;
}

function composeFile(ctx: ScaffoldContext, portPublished: string, mountSecrets: boolean, date: string): string {
  return `# MeshWhisper node, generated by \`meshwhisper init\` (@meshwhisper/cli ${CLI_VERSION}) on ${date}.
#   docker compose up -d            start; the node creates its key in the data volume at first start
#   docker compose logs -f          follow the log (JSON lines)
#   meshwhisper doctor ${ctx.url} --env .env
# Settings live in .env (every node setting, with its default); edit there, then \`docker compose up -d\`.
services:
  meshwhisper:
    # No image is published: build one from the MeshWhisper checkout
    #   docker build -t meshwhisper-node:${CLI_VERSION} ${ctx.checkout.root ?? '/path/to/meshwhisper'}
    # or point MESHWHISPER_IMAGE at your registry.
    image: \${MESHWHISPER_IMAGE:-meshwhisper-node:${CLI_VERSION}}
    init: true # forwards SIGTERM (graceful shutdown) and reaps zombies
    restart: unless-stopped
    env_file: .env
    environment:
      # Inside the container: data on the volume below, listen on all container interfaces.
      # These override DATA_DIR and HOST from .env, which apply when the node runs without Docker.
      DATA_DIR: /data
      HOST: 0.0.0.0
    ports:
      - "${portPublished}"
    volumes:
      - meshwhisper-data:/data
${mountSecrets ? `      - ./${SECRETS_DIR}:/app/${SECRETS_DIR}:ro # APNs/FCM credential files, read-only\n` : ''}    healthcheck:
      test: ["CMD", "node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
      interval: 30s
      timeout: 5s
      start_period: 20s
      retries: 3
    # Longer than SHUTDOWN_GRACE_SECONDS (default 10): in-flight sends finish and are acknowledged.
    stop_grace_period: 30s

volumes:
  meshwhisper-data: {}
`;
}

/**
 * `init --cluster`: PostgreSQL (state), NATS with JetStream (live delivery between instances),
 * CLUSTER_INSTANCES node instances sharing the data volume (node key, media and archive blobs)
 * and HAProxy in front, which passes WebSocket upgrades and adds X-Forwarded-For (the nodes run
 * with TRUST_PROXY=private: they believe the proxy on the compose network, nobody else).
 */
function clusterComposeFile(ctx: ScaffoldContext, portPublished: string, mountSecrets: boolean, date: string): string {
  const nodes = Array.from({ length: CLUSTER_INSTANCES }, (_, i) => `node${i + 1}`);
  return `# MeshWhisper cluster, generated by \`meshwhisper init --cluster\` (@meshwhisper/cli ${CLI_VERSION}) on ${date}.
# PostgreSQL holds the state, NATS (JetStream on) carries live delivery between the ${CLUSTER_INSTANCES} node
# instances, HAProxy spreads clients over them. docs/scale-out.md explains each part and its failures.
#   docker compose up -d
#   docker compose ps               every service healthy
#   meshwhisper doctor ${ctx.url} --env .env
# Settings live in .env (every node setting); STORE, DATABASE_URL and NATS_URL are set there.
# One Docker host: the instances share the meshwhisper-data volume. Across hosts, that volume must be
# a shared file system (NFS and the like) — docs/scale-out.md §Blobs.
x-node: &node
  # No image is published: build one from the MeshWhisper checkout
  #   docker build -t meshwhisper-node:${CLI_VERSION} ${ctx.checkout.root ?? '/path/to/meshwhisper'}
  image: \${MESHWHISPER_IMAGE:-meshwhisper-node:${CLI_VERSION}}
  init: true
  restart: unless-stopped
  env_file: .env
  environment:
    DATA_DIR: /data
    HOST: 0.0.0.0
    PORT: "8080"
  volumes:
    - meshwhisper-data:/data
${mountSecrets ? `    - ./${SECRETS_DIR}:/app/${SECRETS_DIR}:ro\n` : ''}  depends_on:
    postgres:
      condition: service_healthy
    nats:
      condition: service_started
  healthcheck:
    test: ["CMD", "node", "-e", "fetch('http://127.0.0.1:8080/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
    interval: 15s
    timeout: 5s
    start_period: 30s
    retries: 3
  stop_grace_period: 30s

services:
  postgres:
    image: postgres:15
    restart: unless-stopped
    environment:
      POSTGRES_USER: meshwhisper
      POSTGRES_DB: meshwhisper
      POSTGRES_PASSWORD_FILE: /run/secrets/postgres-password
    secrets:
      - postgres-password
    volumes:
      - postgres-data:/var/lib/postgresql/data
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "meshwhisper", "-d", "meshwhisper"]
      interval: 5s
      timeout: 5s
      retries: 10

  nats:
    image: nats:2.10
    restart: unless-stopped
    command: ["-js", "-sd", "/data", "-m", "8222"]
    volumes:
      - nats-data:/data

${nodes.map((n) => `  ${n}:\n    <<: *node\n`).join('\n')}
  lb:
    image: haproxy:2.6
    restart: unless-stopped
    volumes:
      - ./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro
    ulimits:
      nofile: { soft: 262144, hard: 262144 }
    ports:
      - "${portPublished}"
    depends_on:
${nodes.map((n) => `      - ${n}`).join('\n')}

secrets:
  postgres-password:
    file: ./${POSTGRES_PASSWORD_FILE}

volumes:
  meshwhisper-data: {}
  postgres-data: {}
  nats-data: {}
`;
}

/** HAProxy in front of the instances. `edge`: clients connect to it directly (no TLS proxy before it). */
export function haproxyConfig(edge: boolean): string {
  const nodes = Array.from({ length: CLUSTER_INSTANCES }, (_, i) => `node${i + 1}`);
  return `# HAProxy for a MeshWhisper cluster, generated by \`meshwhisper init --cluster\`.
# No request log: URLs carry media ids (capabilities) and client addresses are personal data.
global
    # maxconn follows the file-descriptor limit (compose.yaml raises it: two per client connection).

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    # A WebSocket (/v1/device, /v1/anonymous) is a tunnel once upgraded: long-lived; the node pings every 30 s.
    timeout tunnel 1h
    timeout http-request 10s

# Docker's embedded DNS: instances are found again after a restart with a new address.
resolvers docker
    nameserver dns 127.0.0.11:53
    hold valid 10s

frontend meshwhisper
    bind :8080
${edge ? '    # The edge: an X-Forwarded-For from a client is a lie; the nodes (TRUST_PROXY=private) see ours only.\n    http-request del-header X-Forwarded-For\n' : '    # Behind your TLS proxy on this host: keep its X-Forwarded-For and append the hop.\n'}    option forwardfor
    default_backend nodes

backend nodes
    # Least connections: WebSockets are long-lived, so round robin would pile them onto old instances.
    balance leastconn
    option httpchk GET /ready
    http-check expect status 200
    default-server check inter 5s fall 2 rise 2 resolvers docker init-addr last,libc,none
${nodes.map((n) => `    server ${n} ${n}:8080`).join('\n')}
`;
}

function readmeFile(ctx: ScaffoldContext, behindProxy: boolean, firstMessage: readonly string[], cluster = false): string {
  const push = ctx.push.length === 0 ? 'none' : ctx.push.join(', ');
  return `# MeshWhisper deployment

Generated by \`meshwhisper init\`. Public URL: ${ctx.url} · username namespace: \`${ctx.namespace}\` · push: ${push}.

| file | what |
|---|---|
| \`.env\` | every node setting with its description and default (mode 0600: holds the VAPID private key) |
${
  cluster
    ? `| \`compose.yaml\` | PostgreSQL, NATS (JetStream), ${CLUSTER_INSTANCES} node instances sharing the \`meshwhisper-data\` volume, HAProxy in front |
| \`haproxy.cfg\` | the load balancer: WebSocket upgrades, least connections, health checks on /ready |
| \`${POSTGRES_PASSWORD_FILE}\` | the PostgreSQL password (mode 0600; also inside DATABASE_URL in .env) |`
    : '| `compose.yaml` | one node container, data in the `meshwhisper-data` volume |'
}
| \`.gitignore\` | keeps \`.env\`, \`${SECRETS_DIR}/\` and \`data/\` out of git |
${firstMessage.length > 0 ? '| `app/` | a skeleton app that sends a first end-to-end encrypted message (below) |\n' : ''}
## Tools

The commands below run \`meshwhisper\` (the CLI) and the node from the MeshWhisper checkout at
\`${ctx.checkout.root ?? dirname(dirname(dirname(ctx.checkout.cliBin)))}\` (built there with \`npm ci && npm run build\`). Nothing comes from the npm
registry: the \`@meshwhisper\` names there belong to another project. Put the CLI on your PATH once
(\`~/.local/bin\` is on the PATH of most Linux shells once it exists; else add it to your profile):

\`\`\`sh
mkdir -p ~/.local/bin
ln -sf ${shellQuote(ctx.checkout.cliBin)} ~/.local/bin/meshwhisper
ln -sf ${shellQuote(ctx.checkout.nodeBin)} ~/.local/bin/meshwhisper-node
\`\`\`

## Start

With Docker (the image is built from the checkout; see also the comment in compose.yaml):

\`\`\`sh
docker build -t meshwhisper-node:${CLI_VERSION} ${ctx.checkout.root ? shellQuote(ctx.checkout.root) : '/path/to/meshwhisper'}
docker compose up -d
meshwhisper doctor ${ctx.url} --env .env
\`\`\`

Without Docker, from this folder (settings from .env, data in \`./data\`):

\`\`\`sh
node --env-file=.env ${shellQuote(ctx.checkout.nodeBin)}
\`\`\`

The node creates its Ed25519 key in its data directory at first start (\`DATA_DIR/node-key\`); back it up.
${
  behindProxy
    ? `
## TLS

${ctx.url} is served through a TLS-terminating proxy on this host; the container is published on
127.0.0.1 only. The proxy must pass WebSocket upgrades (\`/v1/device\`, \`/v1/anonymous\`) — Caddy does
by default (\`reverse_proxy 127.0.0.1:8080\`); nginx needs \`proxy_http_version 1.1\` and the
\`Upgrade\`/\`Connection\` headers. Set \`TRUST_PROXY=private\` in .env so rate limits see client addresses.
`
    : ''
}
${
  cluster
    ? `## Cluster

Clients reach HAProxy, which spreads them over the ${CLUSTER_INSTANCES} instances; any instance serves any client.
Read docs/scale-out.md in the MeshWhisper checkout before going to production: what each part holds,
what happens when one fails, and how to grow.

- Back up PostgreSQL with its own tools, e.g. \`docker compose exec postgres pg_dump -U meshwhisper -Fc meshwhisper > meshwhisper.dump\`,
  and the \`meshwhisper-data\` volume (node key, media, archives). The node's scheduled SQLite backups are off (\`BACKUP_INTERVAL_HOURS=0\`).
- Metrics are per instance (each node's own listener); rate limits are per instance (docs/scale-out.md §Rate limits).
- Coming from a single SQLite node: stop it, then \`meshwhisper-node migrate-to-postgres\` with this .env's DATABASE_URL
  (reachable from where you run it) on its DATA_DIR, and mount that DATA_DIR as \`meshwhisper-data\`.

`
    : ''
}## Push

${ctx.push.includes('webpush') ? '- Web Push: VAPID keys and `VAPID_SUBJECT` are set in .env; make `VAPID_SUBJECT` a contact that reaches you (push services write to it when something is wrong).\n' : ''}${ctx.push.includes('apns') ? `- APNs: put your .p8 key at \`${SECRETS_DIR}/apns-key.p8\` (chmod 600) and fill in the APNS_* lines of .env (\`APNS_URL=https://api.sandbox.push.apple.com\` for development builds).\n` : ''}${ctx.push.includes('fcm') ? `- FCM: put the service-account JSON at \`${SECRETS_DIR}/fcm-service-account.json\` (chmod 600) and set FCM_SERVICE_ACCOUNT_FILE.\n` : ''}${ctx.push.length === 0 ? '- No push service selected; the push settings are at the end of .env.\n' : ''}
\`meshwhisper doctor --env .env\` checks the credentials offline.

## Operate

- \`meshwhisper doctor ${ctx.url} --env .env [--data-dir DIR]\` — what is broken and how to fix it
- \`meshwhisper backup --env .env\` / \`meshwhisper restore FILE --env .env --force\` — online backup, restore (stop the node first)

## First message

${
  firstMessage.length > 0
    ? firstMessage.join('\n')
    : `No skeleton app was generated here. \`meshwhisper init --app node\` (two clients in one Node.js script) or
\`--app browser\` (one page, IndexedDB storage) writes one into \`app/\` that sends a first end-to-end encrypted
message through the node; run it in a new folder with \`--url ${ctx.url}\` and \`--namespace ${ctx.namespace}\`
(in this folder it would need \`--force\`, which also replaces .env and its VAPID keys).`
}
`;
}

/** A path as one POSIX shell word (quoted only when it needs to be). */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function gitignoreFile(secretPaths: readonly string[], extra: readonly string[]): string {
  return `# Generated by \`meshwhisper init\`: secrets and node data never belong in git.
${[...new Set(['.env', `${SECRETS_DIR}/`, 'data/', ...secretPaths, ...extra])].join('\n')}
`;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function writeAtomic(path: string, content: string | Uint8Array, mode: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temp = join(dirname(path), `.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(temp, 'wx', mode);
  try {
    await fh.writeFile(content);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await chmod(temp, mode); // umask may have narrowed or (never) widened it
    await rename(temp, path);
  } catch (e) {
    await rm(temp, { force: true });
    throw e;
  }
}

/** A mailto: address or an https: URL (RFC 8292 §2.1), as the node's VAPID_SUBJECT parser wants it. */
export function contactSetting(raw: string): string {
  const v = raw.trim();
  const value = /^[^@\s:]+@[^@\s]+$/.test(v) ? `mailto:${v}` : v;
  if (!/^mailto:[^@\s]+@[^@\s]+$/.test(value) && !/^https:\/\/\S+$/.test(value)) throw new CliError(CliErrorCode.INVALID_VALUE, '--contact must be an e-mail address, mailto:… or an https: URL');
  return value;
}

/** Collects the answers: flags first, then prompts (TTY without --yes), then defaults. */
async function settle(options: InitOptions, io: CliIo): Promise<{ url: string; namespace: string; push: readonly PushService[]; contact: string | undefined; app: string }> {
  const interactive = options.yes !== true && io.stdinIsTTY === true && io.ask !== undefined;
  const url = options.url ?? (interactive ? await ask(io, 'Public URL of the node (clients connect here)', DEFAULT_URL) : DEFAULT_URL);
  const namespace = options.namespace ?? (interactive ? await ask(io, 'Username namespace', 'default') : 'default');
  const push = options.push ?? (interactive ? parsePushList(await ask(io, 'Push services (webpush, apns, fcm, none)', DEFAULT_PUSH.join(','))) : [...DEFAULT_PUSH]);
  let contact = options.contact;
  if (contact === undefined && interactive && push.includes('webpush')) contact = await ask(io, 'Contact for push services (e-mail or https: URL)', defaultContact(url));
  const app = options.app ?? (interactive ? await ask(io, `Skeleton app that sends a first message (${[...APP_SCAFFOLDS.keys(), NO_APP].join(', ')})`, NO_APP) : NO_APP);
  return { url, namespace, push, contact, app: checkApp(app) };
}

/**
 * The public URL must be written out: `init` bakes it into the app and the README, so a bare word
 * (`--url notaurl`) is refused rather than guessed into https://notaurl.
 */
export function initUrl(raw: string): URL {
  const v = raw.trim();
  if (!/^(https?|wss?):\/\/[^/?#\s]/i.test(v)) throw new CliError(CliErrorCode.INVALID_VALUE, `--url must be an absolute http:// or https:// URL such as https://chat.example.com or http://localhost:8080, not ${JSON.stringify(raw)}`);
  const url = normalizeTarget(v);
  if (/[?#]/.test(v)) throw new CliError(CliErrorCode.INVALID_VALUE, `--url must not have a query or fragment: ${JSON.stringify(raw)}`);
  return url;
}

/** admin@ the URL's host: a valid VAPID_SUBJECT the README asks the operator to replace. */
function defaultContact(url: string): string {
  let host = 'localhost';
  try {
    host = normalizeTarget(url).hostname.replace(/^\[|\]$/g, '') || host;
  } catch {
    // the URL is reported invalid later
  }
  return `mailto:admin@${isLoopback(host) ? 'localhost' : host}`;
}

/** `node`, `browser` or `none` (case-insensitive), else MW_CLI_INVALID_VALUE. */
function checkApp(raw: string): string {
  const name = raw.trim().toLowerCase();
  if (name !== NO_APP && !APP_SCAFFOLDS.has(name)) throw new CliError(CliErrorCode.INVALID_VALUE, `--app: unknown skeleton app ${JSON.stringify(raw)} (use ${[...APP_SCAFFOLDS.keys(), NO_APP].join(', ')})`);
  return name;
}

export async function runInit(options: InitOptions, io: CliIo): Promise<InitResult> {
  const dir = resolve(options.dir);
  if (options.app !== undefined) checkApp(options.app); // before any question is asked
  const answers = await settle(options, io);
  const scaffold = APP_SCAFFOLDS.get(answers.app);
  const target = initUrl(answers.url);
  const url = target.href.replace(/\/$/, '');
  const namespaces = namespaceSetting(answers.namespace);
  const namespace = namespaces.split(':')[0] ?? 'default';
  const push = answers.push;
  const date = (options.now ?? (() => new Date()))().toISOString();
  const checkout = locateCheckout();
  const ctx: ScaffoldContext = { dir, url, namespace, push, checkout, vendor: scaffold ? await withProgress(io, 'packing the SDK from this checkout (npm pack)', packSdk()) : [] };

  const values: Record<string, string> = { USERNAME_NAMESPACES: namespaces };
  if (push.includes('webpush')) {
    // The node turns Web Push on only with all three VAPID_* set (and refuses two of three).
    const keys = generateVapidKeys();
    values.VAPID_PUBLIC_KEY = keys.publicKey;
    values.VAPID_PRIVATE_KEY = keys.privateKey;
    values.VAPID_SUBJECT = contactSetting(answers.contact ?? defaultContact(url));
  }
  const behindProxy = target.protocol === 'https:' && !isLoopback(target.hostname);
  if (behindProxy) values.TRUST_PROXY = 'private';
  const cluster = options.cluster === true;
  const postgresPassword = randomBytes(24).toString('base64url');
  if (cluster) {
    values.STORE = 'postgres';
    values.DATABASE_URL = `postgres://meshwhisper:${postgresPassword}@postgres:5432/meshwhisper`;
    values.NATS_URL = 'nats://nats:4222';
    // The nodes see HAProxy's address (compose network): believe its X-Forwarded-For.
    values.TRUST_PROXY = 'private';
    // Scheduled backups are SQLite's; a cluster backs up with pg_dump (README).
    values.BACKUP_INTERVAL_HOURS = '0';
  }
  // A local URL with a port (http://localhost:9000) is the node itself: it must listen there.
  if (!behindProxy && isLoopback(target.hostname) && target.port !== '') values.PORT = target.port;
  const port = values.PORT ?? CONFIG_SCHEMA.port.default;
  const portPublished = cluster
    ? behindProxy
      ? `127.0.0.1:${port}:8080`
      : `${port}:8080`
    : behindProxy
      ? `127.0.0.1:\${PORT:-${port}}:\${PORT:-${port}}`
      : `\${PORT:-${port}}:\${PORT:-${port}}`;
  if (cluster) delete values.PORT; // inside the containers the nodes listen on 8080; the host port is HAProxy's
  const mountSecrets = push.includes('apns') || push.includes('fcm');

  const appFiles = scaffold?.files(ctx) ?? [];
  const files: GeneratedFile[] = [
    {
      path: '.env',
      content: renderEnvFile({ values, push, header: [`MeshWhisper node settings, generated by \`meshwhisper init\` (@meshwhisper/cli ${CLI_VERSION}) on ${date} for ${url}.`] }),
      mode: SECRET_FILE_MODE,
      secret: true,
    },
    { path: 'compose.yaml', content: cluster ? clusterComposeFile(ctx, portPublished, mountSecrets, date) : composeFile(ctx, portPublished, mountSecrets, date), mode: 0o644, secret: false },
    { path: 'README.md', content: readmeFile(ctx, behindProxy, scaffold?.readme?.(ctx) ?? [], cluster), mode: 0o644, secret: false },
    ...(cluster
      ? [
          { path: 'haproxy.cfg', content: haproxyConfig(!behindProxy), mode: 0o644, secret: false },
          { path: POSTGRES_PASSWORD_FILE, content: `${postgresPassword}\n`, mode: SECRET_FILE_MODE, secret: true },
        ]
      : []),
    ...appFiles,
  ];
  files.push({ path: '.gitignore', content: gitignoreFile(files.filter((f) => f.secret).map((f) => f.path), scaffold?.ignore?.(ctx) ?? []), mode: 0o644, secret: false });

  const present: string[] = [];
  for (const f of files) if (await exists(join(dir, f.path))) present.push(f.path);
  if (present.length > 0 && options.force !== true) {
    throw new CliError(CliErrorCode.WOULD_OVERWRITE, `${dir} already has ${present.join(', ')}; nothing was written (use --force to overwrite)`);
  }
  await mkdir(dir, { recursive: true });
  if (mountSecrets || cluster) {
    await mkdir(join(dir, SECRETS_DIR), { recursive: true, mode: SECRET_DIR_MODE });
    await chmod(join(dir, SECRETS_DIR), SECRET_DIR_MODE);
  }
  for (const f of files) await writeAtomic(join(dir, f.path), f.content, f.mode);
  return { dir, url, namespace, push, app: scaffold?.name, cluster, files: files.map((f) => ({ path: f.path, mode: f.mode, overwritten: present.includes(f.path) })) };
}

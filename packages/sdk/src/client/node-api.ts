/**
 * HTTP calls to a MeshWhisper node (docs/spec/node-protocol.md §5): protobuf bodies, DeviceAuth in
 * the `mw-auth` header over a fresh challenge, JSON errors mapped to SdkError.
 */
import type { CryptoContext, LocalIdentity } from '@meshwhisper/crypto';
import { encodeDeviceCertificate } from '@meshwhisper/crypto';
import type { DescMessage, MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import { AUTH_HEADER, CONTENT_TYPE_PROTOBUF, ChallengeSchema, decodeBody, encodeBody, encodeDeviceAuthHeader, requestDigest, signDeviceAuth } from '@meshwhisper/protocol';
import { SdkError, SdkErrorCode } from './errors.js';
import { HTTP_REQUEST_TIMEOUT_MS } from '../constants.js';

/** Retries of a request the node refused with 429/503, and the longest wait honoured. */
const RETRIES = 3;
const MAX_RETRY_WAIT_MS = 10_000;
/** The longest delay a timer takes (2^31 − 1 ms, ~24.8 days). */
const MAX_TIMER_MS = 2_147_483_647;

/** What a connection that broke under a request looks like in Node's fetch (undici), by `cause.code`. */
const BROKEN_CONNECTION = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

/**
 * Sends `attempt()`; a GET or HEAD whose connection broke under it (the server or a proxy closed a
 * reused keep-alive connection just as the request went out: "other side closed") is sent once more
 * at once, with fresh headers (`attempt` builds them; a challenge is single-use). Browsers retry that
 * case themselves; Node's fetch does not. Other failures, and other methods, are left as they are.
 */
export async function retryBrokenConnection(method: string, attempt: () => Promise<Response>): Promise<Response> {
  try {
    return await attempt();
  } catch (e) {
    if ((method !== 'GET' && method !== 'HEAD') || !brokenConnection(e)) throw e;
    return attempt();
  }
}

function brokenConnection(e: unknown): boolean {
  // SdkError(UNREACHABLE) ← TypeError('fetch failed') ← the socket error with its code.
  for (let c: unknown = e, depth = 0; c instanceof Error && depth < 4; c = c.cause, depth++) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'string' && BROKEN_CONNECTION.has(code)) return true;
  }
  return false;
}

export class NodeApi {
  /**
   * Each response's request timer, cleared once its body has been read (a timer left to fire holds
   * its request's state for the whole timeout: ~1.2 KB each at Node 20, measured).
   */
  readonly #timers = new WeakMap<Response, ReturnType<typeof setTimeout>>();

  constructor(
    private readonly ctx: CryptoContext,
    readonly baseUrl: string,
    /** Also used directly for streamed media bodies (client/media.ts). */
    readonly fetchImpl: typeof fetch,
    /** How long one request may wait for the node's whole answer (HTTP_REQUEST_TIMEOUT_MS by default). */
    readonly requestTimeoutMs: number = HTTP_REQUEST_TIMEOUT_MS,
  ) {
    if (!Number.isInteger(requestTimeoutMs) || requestTimeoutMs < 1 || requestTimeoutMs > MAX_TIMER_MS) {
      throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `requestTimeoutMs must be an integer number of milliseconds in [1, ${MAX_TIMER_MS}]`);
    }
  }

  /**
   * One request; a 429 or 503 is retried (at most RETRIES times) after the Retry-After the node
   * sends, capped at MAX_RETRY_WAIT_MS. `makeHeaders` runs per attempt (a DeviceAuth is single use).
   */
  private async raw(method: string, path: string, request: { body: Uint8Array | undefined; makeHeaders: () => Promise<Record<string, string>> }): Promise<Response> {
    const { body, makeHeaders } = request;
    for (let attempt = 0; ; attempt++) {
      const res = await retryBrokenConnection(method, async () => this.once(method, path, { body, headers: await makeHeaders() }));
      if ((res.status !== 429 && res.status !== 503) || attempt >= RETRIES) return this.check(method, path, res);
      const after = Number(res.headers.get('retry-after'));
      await res.body?.cancel();
      this.#answered(res);
      await new Promise((r) => setTimeout(r, Math.min(MAX_RETRY_WAIT_MS, Number.isFinite(after) && after > 0 ? after * 1000 : 500 * 2 ** attempt)));
    }
  }

  private async once(method: string, path: string, request: { body: Uint8Array | undefined; headers: Record<string, string> }): Promise<Response> {
    const { body, headers } = request;
    // Covers the answer's body too (until #answered): a node, or a path to it, that stops answering
    // mid-way fails the request instead of holding its caller — the outbox, a woken service worker.
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new DOMException(`no answer within ${this.requestTimeoutMs} ms`, 'TimeoutError')), this.requestTimeoutMs);
    (timer as { unref?: () => void }).unref?.();
    let res: Response;
    try {
      res = await this.fetchImpl(new URL(path, this.baseUrl), {
        method,
        headers: { ...(body ? { 'content-type': CONTENT_TYPE_PROTOBUF } : {}), ...headers },
        ...(body ? { body: body as BodyInit } : {}),
        signal: abort.signal,
      });
    } catch (cause) {
      clearTimeout(timer);
      throw this.#unreachable(method, path, cause);
    }
    this.#timers.set(res, timer);
    return res;
  }

  /** The response's body has been read or dropped: its request timer is cleared. */
  #answered(res: Response): void {
    clearTimeout(this.#timers.get(res));
    this.#timers.delete(res);
  }

  /** MW_SDK_UNREACHABLE for a request that failed on the way or got no (whole) answer in time. */
  #unreachable(method: string, path: string, cause: unknown): SdkError {
    const timedOut = (cause as { name?: unknown } | null)?.name === 'TimeoutError';
    const why = timedOut ? `no answer from the node within ${this.requestTimeoutMs / 1000} s` : 'node unreachable';
    return new SdkError(SdkErrorCode.UNREACHABLE, `${method} ${path}: ${why}`, undefined, { cause });
  }

  /** Maps a non-2xx reply to SdkError NODE_ERROR with the node's MW_… code. */
  async check(method: string, path: string, res: Response): Promise<Response> {
    if (!res.ok) {
      let code: string | undefined;
      let message = `${method} ${path}: HTTP ${res.status}`;
      try {
        const j = (await res.json()) as { error?: { code?: string; message?: string } };
        code = j.error?.code;
        if (j.error?.message) message = `${method} ${path}: ${j.error.message}`;
      } catch {
        /* not JSON */
      } finally {
        this.#answered(res);
      }
      throw new SdkError(SdkErrorCode.NODE_ERROR, message, code ?? `HTTP_${res.status}`);
    }
    return res;
  }

  /** One protobuf request/reply; `auth` signs it as this device (DeviceAuth over a fresh challenge). */
  async call<Req extends DescMessage, Res extends DescMessage>(
    method: string,
    path: string,
    options: {
      readonly body?: { readonly schema: Req; readonly value: MessageInitShape<Req> };
      readonly reply: Res;
      readonly auth?: LocalIdentity | undefined;
      /** Extra request headers (e.g. a link-channel token). */
      readonly headers?: Readonly<Record<string, string>>;
    },
  ): Promise<MessageShape<Res>> {
    const { auth, headers = {} } = options;
    const body = options.body ? encodeBody(options.body.schema, options.body.value) : undefined;
    const res = await this.raw(method, path, {
      body,
      makeHeaders: async (): Promise<Record<string, string>> => ({ ...headers, ...(auth ? { [AUTH_HEADER]: await this.authHeader(auth, { method, path, body }) } : {}) }),
    });
    let bytes: ArrayBuffer;
    try {
      bytes = await res.arrayBuffer();
    } catch (cause) {
      throw this.#unreachable(method, path, cause);
    } finally {
      this.#answered(res);
    }
    const d = decodeBody(options.reply, new Uint8Array(bytes));
    if (!d.ok) throw new SdkError(SdkErrorCode.PROTOCOL, `${method} ${path}: ${d.error.message}`);
    return d.value;
  }

  /** An unauthenticated request whose success reply has no body (204). */
  async callEmpty<Req extends DescMessage>(
    method: string,
    path: string,
    options: { readonly body?: { readonly schema: Req; readonly value: MessageInitShape<Req> }; readonly headers?: Readonly<Record<string, string>> } = {},
  ): Promise<void> {
    const body = options.body ? encodeBody(options.body.schema, options.body.value) : undefined;
    const res = await this.raw(method, path, { body, makeHeaders: async () => ({ ...(options.headers ?? {}) }) });
    await res.body?.cancel();
    this.#answered(res);
  }

  /** A request without a protobuf reply (e.g. 204): the checked response (its timer runs on: the caller reads the body). */
  async rawCall<Req extends DescMessage>(method: string, path: string, auth: LocalIdentity | undefined, body?: { readonly schema: Req; readonly value: MessageInitShape<Req> }): Promise<Response> {
    const bytes = body ? encodeBody(body.schema, body.value) : undefined;
    return this.raw(method, path, { body: bytes, makeHeaders: async (): Promise<Record<string, string>> => (auth ? { [AUTH_HEADER]: await this.authHeader(auth, { method, path, body: bytes }) } : {}) });
  }

  async challenge(): Promise<Uint8Array> {
    return (await this.call('GET', '/v1/auth/challenge', { reply: ChallengeSchema })).challenge;
  }

  async authHeader(identity: LocalIdentity, request: { readonly method: string; readonly path: string; readonly body?: Uint8Array | undefined }): Promise<string> {
    const { method, path, body } = request;
    const challenge = await this.challenge();
    const auth = signDeviceAuth(this.ctx, identity.device, encodeDeviceCertificate(identity.certificate), challenge, requestDigest(this.ctx, method, path, body));
    return encodeDeviceAuthHeader(auth);
  }
}

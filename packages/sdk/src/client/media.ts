/**
 * Encrypted attachments (docs/spec/media.md, docs/spec/node-protocol.md §8): a file is encrypted
 * once under a fresh media key with the crypto core's chunked AEAD and streamed to the node's blob
 * store; the key and the ciphertext digest travel only inside the end-to-end encrypted `File`
 * content. Downloading streams the blob back through the decryptor, which authenticates every
 * chunk, the final-chunk flag and the digest. Neither direction holds the whole file in memory.
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { CryptoContext, LocalIdentity } from '@meshwhisper/crypto';
import { CryptoError, MEDIA_CHUNK_SIZE, MEDIA_DIGEST_LENGTH, MEDIA_KEY_LENGTH, MediaDecryptor, MediaEncryptor, concatBytes, generateMediaKey, mediaCiphertextLength } from '@meshwhisper/crypto';
import type { File as FileContent } from '@meshwhisper/protocol';
import { AUTH_HEADER, CONTENT_TYPE_OCTETS, FileSchema, MediaUploadedSchema, create, decodeBody } from '@meshwhisper/protocol';
import { MAX_THUMBNAIL_BYTES } from '../constants.js';
import { SdkError, SdkErrorCode } from './errors.js';
import type { NodeApi } from './node-api.js';

/** What sendFile accepts: bytes in memory, a web stream, or any async iterable (Node streams are). */
export type FileSource = Uint8Array | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

export interface SendFileOptions {
  readonly mimeType: string;
  /** File name shown to the recipient (display only). */
  readonly name: string;
  /** Plaintext size in bytes: required for a stream or iterable (the upload's Content-Length depends on it). */
  readonly size?: number;
  /** A small preview sent inline in the message (at most MAX_THUMBNAIL_BYTES). */
  readonly thumbnail?: { readonly data: Uint8Array; readonly mimeType: string };
  /**
   * How the ciphertext is uploaded. 'stream' (default on Node): a streamed request body, memory
   * stays at a few chunks. 'buffered' (default elsewhere): the ciphertext is collected into a Blob
   * first — browsers stream request bodies only over HTTP/2 (Chromium refuses a streamed upload over
   * HTTP/1.1), and the browser may keep a large Blob on disk rather than in memory.
   */
  readonly upload?: 'stream' | 'buffered';
}

const onNode = (): boolean => typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';

/** Node blob ids: 128 random bits in base64url (docs/spec/node-protocol.md §8). */
const BLOB_ID_PATTERN = /^[A-Za-z0-9_-]{22}$/;
/** Slices a Uint8Array source is fed to the encryptor in, so no second full-size copy is made. */
const SLICE = 64 * 1024;

const secrets = new WeakMap<FileAttachment, { readonly key: Uint8Array; readonly digest: Uint8Array }>();

/**
 * A received (or sent) attachment: what to show, plus the means to download it. The media key and
 * digest are kept out of the object's own properties, so logging or serialising a message never
 * reveals them; pass the object to `client.downloadFile()`.
 */
export class FileAttachment {
  private constructor(
    /** The node's blob id. */
    readonly id: string,
    /** Plaintext size in bytes. */
    readonly size: number,
    readonly mimeType: string,
    readonly name: string,
    readonly thumbnail: { readonly mimeType: string; readonly data: Uint8Array } | undefined,
  ) {}

  /** @internal Validates a `File` content body from a peer. */
  static fromContent(f: FileContent): FileAttachment {
    if (!BLOB_ID_PATTERN.test(f.blobId)) throw new SdkError(SdkErrorCode.PROTOCOL, 'file: malformed blob id');
    if (f.key.length !== MEDIA_KEY_LENGTH) throw new SdkError(SdkErrorCode.PROTOCOL, `file: key must be ${MEDIA_KEY_LENGTH} bytes`);
    if (f.digest.length !== MEDIA_DIGEST_LENGTH) throw new SdkError(SdkErrorCode.PROTOCOL, `file: digest must be ${MEDIA_DIGEST_LENGTH} bytes`);
    if (f.size > BigInt(Number.MAX_SAFE_INTEGER)) throw new SdkError(SdkErrorCode.PROTOCOL, 'file: size out of range');
    const thumbnail = f.thumbnail.length > 0 ? { mimeType: f.thumbnailMimeType, data: f.thumbnail } : undefined;
    const file = new FileAttachment(f.blobId, Number(f.size), f.mimeType, f.fileName, thumbnail);
    secrets.set(file, { key: f.key.slice(), digest: f.digest.slice() });
    return file;
  }

  toJSON(): Record<string, unknown> {
    return { id: this.id, size: this.size, mimeType: this.mimeType, name: this.name, thumbnail: this.thumbnail && { mimeType: this.thumbnail.mimeType, bytes: this.thumbnail.data.length } };
  }
}

function secretsOf(file: FileAttachment): { key: Uint8Array; digest: Uint8Array } {
  const s = file instanceof FileAttachment ? secrets.get(file) : undefined;
  if (!s) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'downloadFile: pass the `file` of a received message');
  return s;
}

async function* fromSource(source: FileSource): AsyncGenerator<Uint8Array, void, undefined> {
  if (source instanceof Uint8Array) {
    for (let off = 0; off < source.length; off += SLICE) yield source.subarray(off, off + SLICE);
  } else if (typeof ReadableStream !== 'undefined' && source instanceof ReadableStream) {
    const reader = source.getReader();
    let done = false;
    try {
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        yield r.value;
      }
      done = true;
    } finally {
      if (done) reader.releaseLock();
      else await reader.cancel().catch(() => undefined); // the upload stopped early: release the source
    }
  } else {
    yield* source;
  }
}

function sourceSize(source: FileSource, size: number | undefined): number {
  if (source instanceof Uint8Array) {
    if (size !== undefined && size !== source.length) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `sendFile: size ${size} does not match the ${source.length} bytes given`);
    return source.length;
  }
  const isStream = typeof ReadableStream !== 'undefined' && source instanceof ReadableStream;
  if (!isStream && !(source && typeof (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] === 'function')) {
    throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'sendFile: source must be a Uint8Array, a ReadableStream or an async iterable of Uint8Array');
  }
  if (size === undefined || !Number.isSafeInteger(size) || size < 0) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'sendFile: options.size (plaintext bytes) is required for a stream source');
  return size;
}

function checkOptions(options: SendFileOptions): void {
  if (!options || typeof options.mimeType !== 'string' || typeof options.name !== 'string') {
    throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'sendFile: options.mimeType and options.name are required');
  }
  if (options.upload !== undefined && options.upload !== 'stream' && options.upload !== 'buffered') {
    throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, "sendFile: options.upload must be 'stream' or 'buffered'");
  }
  const t = options.thumbnail;
  if (t !== undefined) {
    if (!(t.data instanceof Uint8Array) || typeof t.mimeType !== 'string') throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'sendFile: thumbnail must be { data: Uint8Array, mimeType }');
    if (t.data.length > MAX_THUMBNAIL_BYTES) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `sendFile: thumbnail of ${t.data.length} bytes exceeds ${MAX_THUMBNAIL_BYTES}`);
  }
}

/**
 * Encrypts `source` under a fresh key while streaming it to POST /v1/media, then returns the `File`
 * content body to send. The body is pulled on demand, so memory stays at a few chunks.
 */
export async function uploadFile(
  node: { readonly ctx: CryptoContext; readonly api: NodeApi; readonly identity: LocalIdentity },
  source: FileSource,
  options: SendFileOptions,
): Promise<{ body: MessageInitShape<typeof FileSchema>; file: FileAttachment }> {
  const { ctx, api, identity } = node;
  checkOptions(options);
  const size = sourceSize(source, options.size);
  const key = generateMediaKey(ctx);
  const enc = MediaEncryptor.create(ctx, key);
  const length = mediaCiphertextLength(size, enc.chunkSize);
  const input = fromSource(source);
  let plaintextBytes = 0;
  let failure: unknown;
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          for (;;) {
            const r = await input.next();
            if (r.done) {
              if (plaintextBytes !== size) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `sendFile: the source gave ${plaintextBytes} bytes, options.size says ${size}`);
              const last = enc.final();
              if (last.length > 0) controller.enqueue(last);
              controller.close();
              return;
            }
            if (!(r.value instanceof Uint8Array)) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, 'sendFile: the source yielded something other than a Uint8Array');
            plaintextBytes += r.value.length;
            if (plaintextBytes > size) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `sendFile: the source gave more than options.size (${size}) bytes`);
            const out = enc.update(r.value);
            if (out.length > 0) {
              controller.enqueue(out);
              return;
            }
          }
        } catch (e) {
          failure = e;
          controller.error(e);
          await input.return(undefined).catch(() => undefined);
        }
      },
      async cancel() {
        await input.return(undefined).catch(() => undefined);
      },
    },
    { highWaterMark: 0 },
  );

  const path = '/v1/media';
  // A streamed body is not part of the request digest (32 zero bytes): the node cannot hash what it
  // has not read yet; the blob is bound to the message by the digest inside the E2E content instead.
  const buffered = (options.upload ?? (onNode() ? 'stream' : 'buffered')) === 'buffered';
  let res: Response;
  try {
    // Buffered: encrypt everything into a Blob first (the same checks run; a failure rejects here).
    const payload = buffered ? await new Response(body).blob() : body;
    const auth = await api.authHeader(identity, { method: 'POST', path });
    res = await api.fetchImpl(new URL(path, api.baseUrl), {
      method: 'POST',
      headers: { 'content-type': CONTENT_TYPE_OCTETS, 'content-length': String(length), [AUTH_HEADER]: auth },
      body: payload,
      ...(buffered ? {} : { duplex: 'half' }),
    } as RequestInit);
  } catch (cause) {
    key.fill(0);
    if (failure instanceof SdkError) throw failure;
    if (failure !== undefined) throw new SdkError(SdkErrorCode.INVALID_ARGUMENT, `sendFile: ${failure instanceof Error ? failure.message : String(failure)}`, undefined, { cause: failure });
    throw new SdkError(SdkErrorCode.UNREACHABLE, `POST ${path}: node unreachable`, undefined, { cause });
  }
  try {
    await api.check('POST', path, res);
    if (failure instanceof SdkError) throw failure;
    const d = decodeBody(MediaUploadedSchema, new Uint8Array(await res.arrayBuffer()));
    if (!d.ok) throw new SdkError(SdkErrorCode.PROTOCOL, `POST ${path}: ${d.error.message}`);
    if (!BLOB_ID_PATTERN.test(d.value.id) || d.value.size !== BigInt(length)) throw new SdkError(SdkErrorCode.PROTOCOL, `POST ${path}: the node acknowledged a different blob`);
    const content = create(FileSchema, {
      blobId: d.value.id,
      key,
      digest: enc.digest,
      size: BigInt(size),
      mimeType: options.mimeType,
      fileName: options.name,
      chunkSize: enc.chunkSize,
      ...(options.thumbnail ? { thumbnail: options.thumbnail.data, thumbnailMimeType: options.thumbnail.mimeType } : {}),
    });
    const file = FileAttachment.fromContent(content); // copies the key: `content.key` is wiped once sent
    return { body: content, file };
  } catch (e) {
    key.fill(0);
    throw e;
  }
}

function corrupt(e: unknown): SdkError {
  if (e instanceof SdkError) return e;
  if (e instanceof CryptoError) return new SdkError(SdkErrorCode.MEDIA_CORRUPT, `downloadFile: ${e.message}`, undefined, { cause: e });
  return new SdkError(SdkErrorCode.PROTOCOL, `downloadFile: ${e instanceof Error ? e.message : String(e)}`, undefined, { cause: e });
}

/**
 * GET /v1/media/{id}, returned as a stream of verified plaintext. Chunks are authenticated one by
 * one as they arrive, but the FILE is valid only once the stream closes normally: the last chunk,
 * the digest and the size are checked at the end, and a failure errors the stream with
 * MW_SDK_MEDIA_CORRUPT. On any error, discard everything read.
 */
export async function downloadFile(ctx: CryptoContext, api: NodeApi, file: FileAttachment): Promise<ReadableStream<Uint8Array>> {
  const { key, digest } = secretsOf(file);
  const dec = MediaDecryptor.create(ctx, key, { expectedDigest: digest });
  const path = `/v1/media/${file.id}`;
  let res: Response;
  try {
    res = await api.fetchImpl(new URL(path, api.baseUrl), { method: 'GET' });
  } catch (cause) {
    throw new SdkError(SdkErrorCode.UNREACHABLE, `GET ${path}: node unreachable`, undefined, { cause });
  }
  await api.check('GET', path, res);
  if (!res.body) throw new SdkError(SdkErrorCode.PROTOCOL, `GET ${path}: empty reply`);
  const reader = res.body.getReader();
  let produced = 0;
  const emit = (controller: ReadableStreamDefaultController<Uint8Array>, pt: Uint8Array): boolean => {
    produced += pt.length;
    if (produced > file.size) throw new SdkError(SdkErrorCode.MEDIA_CORRUPT, `downloadFile: the blob holds more than the ${file.size} bytes the message announced`);
    if (pt.length === 0) return false;
    // One verified piece per media chunk at most: a body that arrived in one network read (a fast
    // link, a small file) still reaches the app as bounded pieces, never as one large buffer.
    for (let off = 0; off < pt.length; off += MEDIA_CHUNK_SIZE) controller.enqueue(pt.subarray(off, off + MEDIA_CHUNK_SIZE));
    return true;
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          for (;;) {
            let r: ReadableStreamReadResult<Uint8Array>;
            try {
              r = await reader.read();
            } catch (cause) {
              throw new SdkError(SdkErrorCode.UNREACHABLE, `GET ${path}: connection lost`, undefined, { cause });
            }
            if (r.done) {
              // The body is complete: let go of it now rather than when the app drops this stream.
              reader.releaseLock();
              const last = dec.final();
              if (produced + last.length !== file.size) throw new SdkError(SdkErrorCode.MEDIA_CORRUPT, `downloadFile: got ${produced + last.length} bytes, the message announced ${file.size}`);
              emit(controller, last);
              controller.close();
              return;
            }
            if (emit(controller, dec.update(r.value))) return;
          }
        } catch (e) {
          controller.error(corrupt(e));
          await reader.cancel().catch(() => undefined);
        }
      },
      async cancel(reason) {
        await reader.cancel(reason).catch(() => undefined);
      },
    },
    { highWaterMark: 0 },
  );
}

/** Reads a whole download into memory (for files known to be small). */
export async function downloadFileBytes(ctx: CryptoContext, api: NodeApi, file: FileAttachment): Promise<Uint8Array> {
  const reader = (await downloadFile(ctx, api, file)).getReader();
  const parts: Uint8Array[] = [];
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    parts.push(r.value);
  }
  return concatBytes(...parts);
}

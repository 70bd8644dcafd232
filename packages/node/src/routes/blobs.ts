/**
 * Media blobs and the account archive (docs/spec/node-protocol.md §Media, §Archive). Bodies are
 * streamed to a temporary file and counted on the way, never buffered; a blob becomes visible
 * only after it was fsynced and renamed into place.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { CryptoError, decodeArchiveKeySource, fromHex, toHex } from '@meshwhisper/crypto';
import {
  ARCHIVE_VERSION_HEADER,
  ArchiveKeySourceRecordSchema,
  ArchiveStoredSchema,
  CONTENT_TYPE_OCTETS,
  ErrorCode,
  MEDIA_ID_BYTES,
  MediaUploadedSchema,
  ProtocolError,
  RegisterArchiveKeySchema,
  decodeBody,
  toBase64Url,
} from '@meshwhisper/protocol';
import type { NodeServices } from '../services.js';
import { decodeOrThrow, protoBody, requireArchiveKey, requireDevice, sendProto } from './common.js';

const MEDIA_ID_PATTERN = /^[A-Za-z0-9_-]{22}$/;

/** Streams the request body into a new temporary file of at most `maxBytes`; fsyncs it. */
async function receiveBody(svc: NodeServices, request: FastifyRequest, maxBytes: number): Promise<{ file: string; size: number }> {
  if (!(request.headers['content-type'] ?? '').startsWith(CONTENT_TYPE_OCTETS)) {
    throw new ProtocolError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, `blob uploads must be ${CONTENT_TYPE_OCTETS}`);
  }
  const declared = Number(request.headers['content-length']);
  if (request.headers['content-length'] === undefined || !Number.isSafeInteger(declared) || declared < 0) {
    throw new ProtocolError(ErrorCode.BAD_REQUEST, 'a Content-Length header is required for blob uploads');
  }
  if (declared > maxBytes) throw new ProtocolError(ErrorCode.TOO_LARGE, `blob of ${declared} bytes exceeds the limit of ${maxBytes}`);
  const file = join(svc.tmpDir, toHex(randomBytes(16)));
  let size = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      if (size > maxBytes) cb(new ProtocolError(ErrorCode.TOO_LARGE, `blob exceeds the limit of ${maxBytes} bytes`));
      else cb(null, chunk);
    },
  });
  try {
    await pipeline(request.raw, counter, createWriteStream(file, { flags: 'wx', mode: 0o600 }));
    if (size !== declared) throw new ProtocolError(ErrorCode.BAD_REQUEST, 'body length does not match Content-Length');
    const fh = await open(file, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    return { file, size };
  } catch (e) {
    await rm(file, { force: true });
    if (e instanceof ProtocolError) throw e;
    throw new ProtocolError(ErrorCode.BAD_REQUEST, 'upload was interrupted');
  }
}

async function streamFile(reply: FastifyReply, file: string): Promise<FastifyReply> {
  const opened = await openBlob(file);
  if (!opened) throw new ProtocolError(ErrorCode.NOT_FOUND, 'no such blob');
  return sendOpened(reply, opened);
}

/** Opens a blob file (undefined if it does not exist). Once open, a concurrent unlink no longer matters. */
async function openBlob(file: string): Promise<{ fd: FileHandle; size: number } | undefined> {
  let fd;
  try {
    fd = await open(file, 'r');
  } catch {
    return undefined;
  }
  try {
    return { fd, size: (await fd.stat()).size };
  } catch (e) {
    await fd.close();
    throw e;
  }
}

function sendOpened(reply: FastifyReply, opened: { fd: FileHandle; size: number }): FastifyReply {
  return reply
    .type(CONTENT_TYPE_OCTETS)
    .header('content-length', String(opened.size))
    .header('cache-control', 'no-store')
    .send(opened.fd.createReadStream({ autoClose: true }));
}

/** The expected-version header of PUT /v1/archive (required: there is no unconditional replacement). */
function expectedArchiveVersion(request: FastifyRequest): number {
  const raw = request.headers[ARCHIVE_VERSION_HEADER];
  const v = typeof raw === 'string' && /^[0-9]{1,15}$/.test(raw) ? Number(raw) : undefined;
  if (v === undefined) throw new ProtocolError(ErrorCode.BAD_REQUEST, `PUT /v1/archive needs an ${ARCHIVE_VERSION_HEADER} header: the version it replaces (0 when none is stored)`);
  return v;
}

function archiveConflict(reply: FastifyReply, version: number): ProtocolError {
  reply.header(ARCHIVE_VERSION_HEADER, String(version));
  return new ProtocolError(ErrorCode.CONFLICT, `the archive is at version ${version}, not the one this upload replaces: fetch it, merge, and upload again`);
}

export function blobRoutes(svc: NodeServices) {
  const { ctx, store, config } = svc;
  /** The file of an archive version; a blob stored before versions is named after the account. */
  const archiveFile = (accountKey: Uint8Array, blobName: string | undefined) => join(svc.archiveDir, blobName ?? toHex(accountKey));

  return async (app: FastifyInstance): Promise<void> => {
    // Blob bodies are left unread for the handler to stream (this parser is scoped to this plugin).
    app.addContentTypeParser(CONTENT_TYPE_OCTETS, (_request, _payload, done) => done(null, undefined));

    app.post('/v1/media', { config: { rateLimit: ['http', 'blob-upload'] } }, async (request, reply) => {
      const device = await requireDevice(svc, request);
      const declared = Number(request.headers['content-length'] ?? 0);
      if (declared > config.mediaMaxBytes) throw new ProtocolError(ErrorCode.TOO_LARGE, `blob of ${declared} bytes exceeds the limit of ${config.mediaMaxBytes}`);
      const window = mediaBudgetWindow(ctx.now(), config.mediaTtlMs);
      if ((await store.mediaBudgetUsed(device.mailbox, window)) + declared > config.mediaQuotaBytes) {
        throw new ProtocolError(ErrorCode.QUOTA_EXCEEDED, 'media upload budget of this device is used up for now; retry after the current window (MEDIA_TTL) ends');
      }
      const { file, size } = await receiveBody(svc, request, config.mediaMaxBytes);
      const id = toBase64Url(ctx.random(MEDIA_ID_BYTES));
      const now = ctx.now();
      const expiresAt = now + config.mediaTtlMs;
      try {
        await rename(file, join(svc.mediaDir, id));
        if (!(await store.addMedia({ id, size, expiresAt, uploader: device.mailbox, window, budgetBytes: config.mediaQuotaBytes }))) {
          throw new ProtocolError(ErrorCode.QUOTA_EXCEEDED, 'media upload budget of this device is used up for now');
        }
      } catch (e) {
        await rm(join(svc.mediaDir, id), { force: true });
        await rm(file, { force: true });
        throw e;
      }
      return sendProto(reply, MediaUploadedSchema, { id, size: BigInt(size), expiresAt: BigInt(expiresAt) }, 201);
    });

    app.get<{ Params: { id: string } }>('/v1/media/:id', { config: { rateLimit: ['http', 'blob-download'] } }, async (request, reply) => {
      const { id } = request.params;
      const row = MEDIA_ID_PATTERN.test(id) ? await store.media(id) : undefined;
      if (!row || row.expiresAt <= ctx.now()) throw new ProtocolError(ErrorCode.NOT_FOUND, 'no such blob');
      return streamFile(reply, join(svc.mediaDir, id));
    });

    app.put('/v1/archive/key', { config: { rateLimit: ['http', 'archive'] } }, async (request, reply) => {
      const body = protoBody(request);
      const device = await requireDevice(svc, request, body);
      const reg = decodeOrThrow(
        decodeBody(RegisterArchiveKeySchema, body, (m) => {
          if (m.archiveKey.length !== 32) return 'archiveKey must be 32 bytes';
          if (m.keySource.length === 0) return undefined;
          try {
            decodeArchiveKeySource(m.keySource);
            return undefined;
          } catch (e) {
            return `keySource is not a valid key-source record (${e instanceof CryptoError ? e.code : 'invalid'})`;
          }
        }),
      );
      const account = device.certificate.accountKey;
      const registered = await store.registerArchiveKey(account, reg.archiveKey, reg.keySource.length > 0 ? reg.keySource : undefined);
      if (registered === 'key-taken') throw new ProtocolError(ErrorCode.CONFLICT, 'archive key is registered to another account');
      if (registered === 'no-device') throw new ProtocolError(ErrorCode.FORBIDDEN, 'register the device (PUT /v1/keys) first');
      return reply.code(204).send();
    });

    // Public bootstrap data: a fresh device knows the account key (e.g. from a username lookup)
    // and needs the KDF salt before it can derive the archive key. Never reveals archive_key,
    // which would let anyone test passphrase guesses offline.
    app.get<{ Params: { account: string } }>('/v1/archive/source/:account', { config: { rateLimit: ['http', 'archive'] } }, async (request, reply) => {
      const hex = request.params.account;
      const source = /^[0-9a-f]{64}$/.test(hex) ? await store.archiveKeySource(fromHex(hex)) : undefined;
      if (!source) throw new ProtocolError(ErrorCode.NOT_FOUND, 'no archive key-source record for this account');
      return sendProto(reply, ArchiveKeySourceRecordSchema, { keySource: source });
    });

    // Compare-and-swap (docs/spec/node-protocol.md §9): each version is a file of its own, made
    // visible by the store's version check; the loser of a race deletes its file, the winner the
    // replaced one. A crash between the rename and the check leaves an unreferenced file, removed
    // with the account or by the orphan sweep (removeOrphanFiles).
    app.put('/v1/archive', { config: { rateLimit: ['http', 'archive'] } }, async (request, reply) => {
      const archiveKey = await requireArchiveKey(svc, request);
      const expected = expectedArchiveVersion(request);
      const row = await store.archiveByKey(archiveKey);
      if (!row) throw new ProtocolError(ErrorCode.FORBIDDEN, 'archive key is not registered');
      if (row.version !== expected) throw archiveConflict(reply, row.version);
      const { file, size } = await receiveBody(svc, request, config.archiveMaxBytes);
      const blobName = `${toHex(row.accountKey)}.${toHex(randomBytes(8))}`;
      const target = join(svc.archiveDir, blobName);
      let replaced;
      try {
        await rename(file, target);
        replaced = await store.replaceArchive(archiveKey, { expectedVersion: expected, blobName, size, now: ctx.now() });
      } catch (e) {
        await rm(file, { force: true });
        await rm(target, { force: true });
        throw e;
      }
      if (!replaced?.stored) await rm(target, { force: true });
      if (!replaced) throw new ProtocolError(ErrorCode.FORBIDDEN, 'archive key is not registered');
      if (!replaced.stored) throw archiveConflict(reply, replaced.version);
      if (replaced.hadPrevious) await rm(archiveFile(row.accountKey, replaced.previousBlob), { force: true });
      const stored = await store.archiveByKey(archiveKey);
      reply.header(ARCHIVE_VERSION_HEADER, String(replaced.version));
      return sendProto(reply, ArchiveStoredSchema, { size: BigInt(size), updatedAt: BigInt(stored?.updatedAt ?? 0), version: BigInt(replaced.version) });
    });

    app.get('/v1/archive', { config: { rateLimit: ['http', 'archive'] } }, async (request, reply) => {
      const archiveKey = await requireArchiveKey(svc, request);
      // A replacement may delete the file between reading the row and opening it: read the row again.
      for (let attempt = 0; attempt < 5; attempt++) {
        const row = await store.archiveByKey(archiveKey);
        if (!row) throw new ProtocolError(ErrorCode.FORBIDDEN, 'archive key is not registered');
        if (row.updatedAt === 0) throw new ProtocolError(ErrorCode.NOT_FOUND, 'no archive stored yet');
        const opened = await openBlob(archiveFile(row.accountKey, row.blobName));
        if (opened) return sendOpened(reply.header(ARCHIVE_VERSION_HEADER, String(row.version)), opened);
      }
      throw new ProtocolError(ErrorCode.UNAVAILABLE, 'the archive is being replaced: retry');
    });
  };
}

/**
 * The media budget window of `now`: a device may upload MEDIA_QUOTA_BYTES per window of
 * MEDIA_TTL, so at most twice that is stored for it at once (this window's and the last one's
 * uploads). The budget row says how much a device uploaded in a window, never which blob.
 */
export function mediaBudgetWindow(now: number, mediaTtlMs: number): number {
  return Math.floor(now / Math.max(1, mediaTtlMs));
}

/** Deletes the files of media blobs (rows are deleted by the caller's transaction). */
export async function removeMediaFiles(svc: NodeServices, ids: readonly string[]): Promise<void> {
  for (const id of ids) if (MEDIA_ID_PATTERN.test(id)) await rm(join(svc.mediaDir, id), { force: true });
}

/**
 * Removes media and archive files that no record names and that are older than `olderThanMs`
 * (file time): what a crash between writing a file and committing its record left behind (the
 * record is written second, so such a file was never acknowledged to anyone). Younger files may
 * belong to an upload between its rename and its commit — in this process or, in a cluster, in
 * another instance — and are left for a later sweep. Returns how many files were removed.
 */
export async function removeOrphanFiles(svc: NodeServices, olderThanMs: number): Promise<{ media: number; archives: number }> {
  const removed = { media: 0, archives: 0 };
  const old = async (file: string): Promise<boolean> => ((await stat(file).catch(() => undefined))?.mtimeMs ?? Infinity) < olderThanMs;
  for (const name of await readdir(svc.mediaDir)) {
    const file = join(svc.mediaDir, name);
    if (!(await old(file))) continue;
    if (MEDIA_ID_PATTERN.test(name) && (await svc.store.media(name))) continue;
    await rm(file, { force: true });
    removed.media++;
  }
  const stored = await svc.store.archiveFileNames();
  for (const name of await readdir(svc.archiveDir)) {
    const file = join(svc.archiveDir, name);
    if (stored.has(name) || !(await old(file))) continue;
    // Read again: a replacement may have committed this file since the set was read.
    if ((await svc.store.archiveFileNames()).has(name)) continue;
    await rm(file, { force: true });
    removed.archives++;
  }
  return removed;
}

/** Removes every archive file of an account: each version's, a pre-version one, and any a crash left unreferenced. */
export async function removeArchiveFile(svc: NodeServices, accountKey: Uint8Array): Promise<void> {
  const hex = toHex(accountKey);
  for (const name of await readdir(svc.archiveDir)) {
    if (name === hex || name.startsWith(`${hex}.`)) await rm(join(svc.archiveDir, name), { force: true });
  }
}

/**
 * Streaming media encryption (docs/spec/media.md): a file is encrypted once, under a random per-file
 * key, as a header followed by AES-256-GCM chunks, in the STREAM construction of Hoang, Reyhanitabar,
 * Rogaway and Vizár ("Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", 2015):
 * each chunk's nonce carries its index and a final-chunk flag, so truncation, reordering, duplication,
 * extension and splicing all fail authentication. Memory is O(chunk size) in both directions.
 *
 *   header  = u8 version(=2) ‖ u32be chunkSize ‖ noncePrefix[7] ‖ commitment[32]     (44 bytes)
 *   K       = HKDF-SHA256(ikm = fileKey, salt = "", info = "MeshWhisper_MediaChunkKey_v2", 32)
 *   commitment = HKDF-SHA256(ikm = fileKey, salt = "", info = "MeshWhisper_MediaCommitment_v2", 32)
 *   P       = file ‖ 0x80 ‖ 0x00…   padded to mediaPaddedLength(file length + 1)  (size buckets)
 *   nonce_i = noncePrefix ‖ u32be(i) ‖ u8(final ? 1 : 0)
 *   chunk_i = AES-256-GCM(K, nonce_i, P_i, aad = header)                              (len + 16)
 *
 * Key commitment: AES-GCM does not commit to its key, so without the commitment a sender could craft
 * one blob (one digest) that opens to two different files under two keys — say, one file for one
 * recipient and another for a second. The header carries a commitment to the key (a second HKDF
 * output), is covered by the digest and is the AAD of every chunk; a decryptor refuses a key whose
 * commitment differs before opening anything. Two keys opening one blob would need an HKDF-SHA-256
 * collision on the commitment.
 *
 * Padding: the ciphertext length reveals only the size BUCKET of the file, not its exact size. The
 * buckets grow geometrically by 5 % (like Signal's attachment padding), so the overhead is below 5 %
 * (at most 256 bytes for files under 256 bytes). The padding is the ISO/IEC 7816-4 form used for
 * envelopes (0x80 then zeros) and is inside the AEAD; the decryptor releases file bytes only.
 *
 * Every chunk but the last holds exactly chunkSize bytes of P; the last holds 1..chunkSize bytes
 * (P is never empty). The SHA-256 of the whole ciphertext (header included) is computed while
 * streaming; it travels in the message next to the key and is checked on download.
 *
 * Isomorphic: no node: imports. Streams use the web-standard TransformStream.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { _Redacted } from './_secret.js';
import { concatBytes, copyBytes, equalBytes, utf8, wipe } from './bytes.js';
import {
  AES_GCM_NONCE_LENGTH,
  AES_GCM_TAG_LENGTH,
  MEDIA_CHUNK_SIZE,
  MEDIA_KEY_LENGTH,
  MEDIA_MAX_CHUNKS,
  MEDIA_MAX_CHUNK_SIZE,
  MEDIA_MIN_PADDED_LENGTH,
  MEDIA_NONCE_PREFIX_LENGTH,
  MEDIA_VERSION,
} from './constants.js';
import type { CryptoContext } from './context.js';
import { CryptoError, CryptoErrorCode, assertBytes } from './errors.js';

/** HKDF info for the chunk key (docs/spec/media.md §Key schedule). */
export const MEDIA_CHUNK_KEY_INFO = 'MeshWhisper_MediaChunkKey_v2';
/** HKDF info for the key commitment carried in the header (docs/spec/media.md §Key commitment). */
export const MEDIA_COMMITMENT_INFO = 'MeshWhisper_MediaCommitment_v2';
const COMMITMENT_LENGTH = 32;
/** version(1) ‖ chunkSize(4) ‖ noncePrefix(7) ‖ commitment(32). */
export const MEDIA_HEADER_LENGTH = 1 + 4 + MEDIA_NONCE_PREFIX_LENGTH + COMMITMENT_LENGTH;
const PADDING_MARKER = 0x80;

/**
 * The padded plaintext length for `n` bytes (marker included: call with fileLength + 1): the
 * smallest bucket ≥ n in the series b_0 = MEDIA_MIN_PADDED_LENGTH, b_{k+1} = b_k + ⌊b_k / 20⌋.
 * Integer arithmetic only, so every implementation gets the same buckets; each step is ≤ 5 %.
 */
export function mediaPaddedLength(n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`mediaPaddedLength: bad length ${n}`);
  let b = MEDIA_MIN_PADDED_LENGTH;
  while (b < n) b += Math.floor(b / 20);
  return b;
}
/** SHA-256 of the ciphertext. */
export const MEDIA_DIGEST_LENGTH = 32;

type Sha256Hasher = ReturnType<typeof sha256.create>;

/** A fresh random 32-byte media key. One per file; never reused for a second file. */
export function generateMediaKey(ctx: CryptoContext): Uint8Array {
  return ctx.random(MEDIA_KEY_LENGTH);
}

/** Exact ciphertext length for a file of `plaintextLength` bytes, padding included (for Content-Length, quotas). */
export function mediaCiphertextLength(plaintextLength: number, chunkSize: number = MEDIA_CHUNK_SIZE): number {
  if (!Number.isSafeInteger(plaintextLength) || plaintextLength < 0) throw new RangeError(`mediaCiphertextLength: bad length ${plaintextLength}`);
  checkChunkSize(chunkSize, 'mediaCiphertextLength');
  const padded = mediaPaddedLength(plaintextLength + 1);
  return MEDIA_HEADER_LENGTH + padded + Math.ceil(padded / chunkSize) * AES_GCM_TAG_LENGTH;
}

function keyCommitment(ctx: CryptoContext, fileKey: Uint8Array): Uint8Array {
  return ctx.backend.hkdfSha256(fileKey, new Uint8Array(0), utf8(MEDIA_COMMITMENT_INFO), COMMITMENT_LENGTH);
}

function checkChunkSize(chunkSize: number, op: string): void {
  if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > MEDIA_MAX_CHUNK_SIZE) {
    throw new RangeError(`${op}: chunkSize must be 1..${MEDIA_MAX_CHUNK_SIZE}, got ${chunkSize}`);
  }
}

function chunkKey(ctx: CryptoContext, fileKey: Uint8Array): Uint8Array {
  return ctx.backend.hkdfSha256(fileKey, new Uint8Array(0), utf8(MEDIA_CHUNK_KEY_INFO), 32);
}

function chunkNonce(prefix: Uint8Array, index: number, final: boolean): Uint8Array {
  const n = new Uint8Array(AES_GCM_NONCE_LENGTH);
  n.set(prefix, 0);
  new DataView(n.buffer).setUint32(MEDIA_NONCE_PREFIX_LENGTH, index, false);
  n[AES_GCM_NONCE_LENGTH - 1] = final ? 1 : 0;
  return n;
}

type StreamState = 'open' | 'finished' | 'failed';

export interface MediaEncryptorOptions {
  /** Plaintext bytes per chunk, 1..MEDIA_MAX_CHUNK_SIZE. Default MEDIA_CHUNK_SIZE. */
  readonly chunkSize?: number;
}

/**
 * Push-style encryptor. `update(bytes)` returns the ciphertext that is ready (possibly empty: the
 * last full chunk is held back until more data or `final()` says whether it is the last);
 * `final()` returns the rest. After `final()`, `digest` is the SHA-256 of all returned bytes.
 */
export class MediaEncryptor extends _Redacted {
  readonly #key: Uint8Array;
  readonly #header: Uint8Array;
  readonly #prefix: Uint8Array;
  readonly #buf: Uint8Array;
  readonly #hasher: Sha256Hasher = sha256.create();
  #bufLen = 0;
  #index = 0;
  #headerSent = false;
  #state: StreamState = 'open';
  #digest: Uint8Array | undefined;
  #ciphertextLength = 0;
  readonly #ctx: CryptoContext;
  readonly chunkSize: number;

  #fileLength = 0;

  private constructor(ctx: CryptoContext, key: Uint8Array, commitment: Uint8Array, chunkSize: number, prefix: Uint8Array) {
    super();
    this.#ctx = ctx;
    this.#key = key;
    this.chunkSize = chunkSize;
    this.#prefix = prefix;
    this.#header = new Uint8Array(MEDIA_HEADER_LENGTH);
    this.#header[0] = MEDIA_VERSION;
    new DataView(this.#header.buffer).setUint32(1, chunkSize, false);
    this.#header.set(prefix, 5);
    this.#header.set(commitment, 5 + MEDIA_NONCE_PREFIX_LENGTH);
    this.#buf = new Uint8Array(chunkSize);
  }

  /** `fileKey` is the 32-byte media key (not retained: only the derived chunk key is). The nonce prefix comes from ctx.random. */
  static create(ctx: CryptoContext, fileKey: Uint8Array, options: MediaEncryptorOptions = {}): MediaEncryptor {
    assertBytes(fileKey, 'MediaEncryptor.create', 'fileKey', MEDIA_KEY_LENGTH);
    const chunkSize = options.chunkSize ?? MEDIA_CHUNK_SIZE;
    checkChunkSize(chunkSize, 'MediaEncryptor.create');
    const prefix = ctx.random(MEDIA_NONCE_PREFIX_LENGTH);
    return new MediaEncryptor(ctx, chunkKey(ctx, fileKey), keyCommitment(ctx, fileKey), chunkSize, copyBytes(prefix));
  }

  #sealChunk(parts: Uint8Array[], final: boolean): void {
    if (this.#index > MEDIA_MAX_CHUNKS - 1) {
      this.#fail();
      throw new CryptoError(CryptoErrorCode.LIMIT_EXCEEDED, 'MediaEncryptor', `more than ${MEDIA_MAX_CHUNKS} chunks`);
    }
    const ct = this.#ctx.backend.aes256GcmEncrypt(this.#key, chunkNonce(this.#prefix, this.#index, final), this.#buf.subarray(0, this.#bufLen), this.#header);
    parts.push(ct);
    this.#index++;
    this.#bufLen = 0;
  }

  #emit(parts: Uint8Array[]): Uint8Array {
    const out = parts.length === 1 ? parts[0]! : concatBytes(...parts);
    this.#hasher.update(out);
    this.#ciphertextLength += out.length;
    return out;
  }

  #checkOpen(op: string): void {
    if (this.#state !== 'open') {
      throw new CryptoError(CryptoErrorCode.INVALID_ARGUMENT, op, this.#state === 'finished' ? 'encryptor already finished' : 'encryptor failed earlier');
    }
  }

  #fail(): void {
    this.#state = 'failed';
    wipe(this.#key, this.#buf);
  }

  update(bytes: Uint8Array): Uint8Array {
    const op = 'MediaEncryptor.update';
    assertBytes(bytes, op, 'bytes');
    this.#checkOpen(op);
    const parts: Uint8Array[] = [];
    if (!this.#headerSent) {
      parts.push(this.#header.slice());
      this.#headerSent = true;
    }
    this.#absorb(bytes, parts);
    this.#fileLength += bytes.length;
    return this.#emit(parts);
  }

  #absorb(bytes: Uint8Array, parts: Uint8Array[]): void {
    let off = 0;
    while (off < bytes.length) {
      // A full buffer is sealed as non-final only now that we know more plaintext follows it.
      if (this.#bufLen === this.chunkSize) this.#sealChunk(parts, false);
      const n = Math.min(bytes.length - off, this.chunkSize - this.#bufLen);
      this.#buf.set(bytes.subarray(off, off + n), this.#bufLen);
      this.#bufLen += n;
      off += n;
    }
  }

  /**
   * Ends the stream: appends the padding (0x80 then zeros up to the size bucket) and seals the
   * final chunk. Yields the remaining ciphertext piece by piece (at most one chunk each), so that
   * padding a large file never needs more than one chunk of memory; `final()` concatenates them.
   */
  *finalParts(): Generator<Uint8Array, void, undefined> {
    this.#checkOpen('MediaEncryptor.final');
    const parts: Uint8Array[] = [];
    if (!this.#headerSent) {
      parts.push(this.#header.slice());
      this.#headerSent = true;
    }
    let padding = mediaPaddedLength(this.#fileLength + 1) - this.#fileLength;
    this.#absorb(Uint8Array.of(PADDING_MARKER), parts);
    padding--;
    const zeros = new Uint8Array(Math.min(padding, this.chunkSize));
    while (padding > 0) {
      const n = Math.min(padding, zeros.length);
      this.#absorb(zeros.subarray(0, n), parts);
      padding -= n;
      if (parts.length > 0) {
        yield this.#emit(parts.splice(0));
      }
    }
    this.#sealChunk(parts, true);
    const out = this.#emit(parts);
    this.#digest = this.#hasher.digest();
    this.#state = 'finished';
    wipe(this.#key, this.#buf);
    yield out;
  }

  final(): Uint8Array {
    return concatBytes(...this.finalParts());
  }

  /** SHA-256 of the whole ciphertext; available once `final()` has returned. */
  get digest(): Uint8Array {
    if (!this.#digest) throw new CryptoError(CryptoErrorCode.INVALID_ARGUMENT, 'MediaEncryptor.digest', 'digest is known only after final()');
    return copyBytes(this.#digest);
  }

  /** Ciphertext bytes returned so far. */
  get ciphertextLength(): number {
    return this.#ciphertextLength;
  }

  protected describe(): Record<string, unknown> {
    return { state: this.#state, chunkSize: this.chunkSize, chunks: this.#index };
  }
}

export interface MediaDecryptorOptions {
  /**
   * The SHA-256 ciphertext digest from the message. Receivers MUST pass it (docs/spec/media.md); it
   * is checked in `final()`, which then throws MEDIA_CORRUPT on mismatch.
   */
  readonly expectedDigest?: Uint8Array;
}

/**
 * Push-style decryptor. `update(bytes)` returns plaintext of chunks that have been authenticated
 * (the last chunk is held back until `final()`, since only then is it known to be the last).
 * `final()` authenticates the final chunk, checks the digest and returns the rest; it throws
 * MEDIA_CORRUPT if the stream ended before its final chunk. Plaintext returned by `update()` is
 * authentic chunk by chunk, but the FILE is valid only once `final()` returns: on any error, discard
 * everything. Any failure is permanent: later calls throw again.
 */
export class MediaDecryptor extends _Redacted {
  readonly #ctx: CryptoContext;
  readonly #fileKey: Uint8Array;
  readonly #expectedDigest: Uint8Array | undefined;
  readonly #hasher: Sha256Hasher = sha256.create();
  readonly #header = new Uint8Array(MEDIA_HEADER_LENGTH);
  #headerLen = 0;
  #key: Uint8Array | undefined;
  #prefix: Uint8Array | undefined;
  #buf: Uint8Array | undefined;
  #bufLen = 0;
  #index = 0;
  #chunkSize = 0;
  #state: StreamState = 'open';
  #digest: Uint8Array | undefined;
  /** Padding candidate held back: a 0x80 seen last among non-zero bytes, and the zeros after it. */
  #heldMarker = false;
  #heldZeros = 0;
  /** File bytes released so far (padded bytes = this + held). */
  #released = 0;

  private constructor(ctx: CryptoContext, fileKey: Uint8Array, expectedDigest: Uint8Array | undefined) {
    super();
    this.#ctx = ctx;
    this.#fileKey = fileKey;
    this.#expectedDigest = expectedDigest;
  }

  static create(ctx: CryptoContext, fileKey: Uint8Array, options: MediaDecryptorOptions = {}): MediaDecryptor {
    assertBytes(fileKey, 'MediaDecryptor.create', 'fileKey', MEDIA_KEY_LENGTH);
    if (options.expectedDigest !== undefined) assertBytes(options.expectedDigest, 'MediaDecryptor.create', 'expectedDigest', MEDIA_DIGEST_LENGTH);
    return new MediaDecryptor(ctx, copyBytes(fileKey), options.expectedDigest && copyBytes(options.expectedDigest));
  }

  #corrupt(op: string, message: string, code: CryptoErrorCode = CryptoErrorCode.MEDIA_CORRUPT): never {
    this.#state = 'failed';
    wipe(this.#fileKey, this.#key, this.#buf);
    throw new CryptoError(code, op, message);
  }

  #checkOpen(op: string): void {
    if (this.#state === 'failed') throw new CryptoError(CryptoErrorCode.MEDIA_CORRUPT, op, 'stream failed earlier');
    if (this.#state === 'finished') throw new CryptoError(CryptoErrorCode.INVALID_ARGUMENT, op, 'decryptor already finished');
  }

  #parseHeader(op: string): void {
    const h = this.#header;
    if (h[0] !== MEDIA_VERSION) this.#corrupt(op, `unsupported media version ${h[0]}`, CryptoErrorCode.UNSUPPORTED_VERSION);
    const chunkSize = new DataView(h.buffer).getUint32(1, false);
    // Checked before allocating: the header is not yet authenticated (MEDIA_MAX_CHUNK_SIZE).
    if (chunkSize < 1 || chunkSize > MEDIA_MAX_CHUNK_SIZE) this.#corrupt(op, `chunk size ${chunkSize} out of range`);
    this.#chunkSize = chunkSize;
    this.#prefix = h.slice(5, 5 + MEDIA_NONCE_PREFIX_LENGTH);
    // Key commitment: a key that is not the one the file was made for is refused before any chunk
    // is opened (AES-GCM alone would let a crafted blob open under two keys to two files).
    const commitment = keyCommitment(this.#ctx, this.#fileKey);
    const ok = equalBytes(commitment, h.subarray(5 + MEDIA_NONCE_PREFIX_LENGTH));
    wipe(commitment);
    if (!ok) this.#corrupt(op, 'the key does not match the file (key commitment)');
    this.#key = chunkKey(this.#ctx, this.#fileKey);
    this.#buf = new Uint8Array(chunkSize + AES_GCM_TAG_LENGTH);
  }

  #openChunk(op: string, final: boolean): Uint8Array {
    if (this.#index > MEDIA_MAX_CHUNKS - 1) this.#corrupt(op, `more than ${MEDIA_MAX_CHUNKS} chunks`);
    const ct = this.#buf!.subarray(0, this.#bufLen);
    let pt: Uint8Array;
    try {
      pt = this.#ctx.backend.aes256GcmDecrypt(this.#key!, chunkNonce(this.#prefix!, this.#index, final), ct, this.#header);
    } catch (e) {
      if (e instanceof CryptoError && e.code === CryptoErrorCode.BAD_MAC) {
        // Same error for every cause: a wrong index (reorder, duplicate, splice), a wrong final flag
        // (truncation at a chunk boundary, extension past the end) or flipped bits look alike.
        this.#corrupt(op, `chunk ${this.#index} failed authentication${final ? ' as the final chunk' : ''}`);
      }
      throw e;
    }
    this.#index++;
    this.#bufLen = 0;
    return this.#unpad(pt);
  }

  /**
   * Releases file bytes, holding back a possible padding suffix (0x80 then zeros) as a flag and a
   * count: memory stays O(chunk). A held suffix followed by a non-zero byte was data after all.
   */
  #unpad(pt: Uint8Array): Uint8Array {
    let last = pt.length - 1;
    while (last >= 0 && pt[last] === 0) last--;
    if (last < 0) {
      // All zeros: padding if a marker is held, otherwise file data (padding starts with 0x80).
      if (this.#heldMarker) {
        this.#heldZeros += pt.length;
        return new Uint8Array(0);
      }
      this.#released += pt.length;
      return pt;
    }
    const parts: Uint8Array[] = [];
    if (this.#heldMarker) {
      const held = new Uint8Array(1 + this.#heldZeros);
      held[0] = PADDING_MARKER;
      parts.push(held);
      this.#heldMarker = false;
      this.#heldZeros = 0;
    }
    if (pt[last] === PADDING_MARKER) {
      parts.push(pt.subarray(0, last));
      this.#heldMarker = true;
      this.#heldZeros = pt.length - last - 1;
    } else {
      parts.push(pt);
    }
    const out = parts.length === 1 ? parts[0]!.slice() : concatBytes(...parts);
    this.#released += out.length;
    return out;
  }

  update(bytes: Uint8Array): Uint8Array {
    const op = 'MediaDecryptor.update';
    assertBytes(bytes, op, 'bytes');
    this.#checkOpen(op);
    this.#hasher.update(bytes);
    const parts: Uint8Array[] = [];
    let off = 0;
    if (this.#headerLen < MEDIA_HEADER_LENGTH) {
      const n = Math.min(bytes.length, MEDIA_HEADER_LENGTH - this.#headerLen);
      this.#header.set(bytes.subarray(0, n), this.#headerLen);
      this.#headerLen += n;
      off = n;
      if (this.#headerLen === MEDIA_HEADER_LENGTH) this.#parseHeader(op);
    }
    const buf = this.#buf;
    if (buf) {
      while (off < bytes.length) {
        // A full buffer is opened as non-final only once a further byte proves it is not the last.
        if (this.#bufLen === buf.length) parts.push(this.#openChunk(op, false));
        const n = Math.min(bytes.length - off, buf.length - this.#bufLen);
        buf.set(bytes.subarray(off, off + n), this.#bufLen);
        this.#bufLen += n;
        off += n;
      }
    }
    return parts.length === 1 ? parts[0]! : concatBytes(...parts);
  }

  final(): Uint8Array {
    const op = 'MediaDecryptor.final';
    this.#checkOpen(op);
    if (this.#headerLen < MEDIA_HEADER_LENGTH) this.#corrupt(op, 'stream ended inside the header');
    if (this.#bufLen < AES_GCM_TAG_LENGTH) this.#corrupt(op, 'stream ended before its final chunk');
    if (this.#bufLen === AES_GCM_TAG_LENGTH) this.#corrupt(op, 'empty final chunk (the padded plaintext is never empty)');
    const pt = this.#openChunk(op, true);
    // Canonical padding: a marker, and exactly the bucket's length.
    if (!this.#heldMarker) this.#corrupt(op, 'missing padding');
    if (this.#released + 1 + this.#heldZeros !== mediaPaddedLength(this.#released + 1)) this.#corrupt(op, 'padding does not fill the size bucket');
    const digest = this.#hasher.digest();
    if (this.#expectedDigest && !equalBytes(digest, this.#expectedDigest)) {
      wipe(pt);
      this.#corrupt(op, 'ciphertext digest does not match the message');
    }
    this.#digest = digest;
    this.#state = 'finished';
    wipe(this.#fileKey, this.#key, this.#buf);
    return pt;
  }

  /** SHA-256 of the whole ciphertext; available once `final()` has returned. */
  get digest(): Uint8Array {
    if (!this.#digest) throw new CryptoError(CryptoErrorCode.INVALID_ARGUMENT, 'MediaDecryptor.digest', 'digest is known only after final()');
    return copyBytes(this.#digest);
  }

  protected describe(): Record<string, unknown> {
    return { state: this.#state, chunkSize: this.#chunkSize, chunks: this.#index };
  }
}

// ── One-shot, async-iterable and web-stream helpers ──────────────────────────────────────────

/** Encrypts a whole buffer. For files that fit in memory; otherwise stream. */
export function encryptMedia(
  ctx: CryptoContext,
  fileKey: Uint8Array,
  plaintext: Uint8Array,
  options?: MediaEncryptorOptions,
): { ciphertext: Uint8Array; digest: Uint8Array } {
  assertBytes(plaintext, 'encryptMedia', 'plaintext');
  const e = MediaEncryptor.create(ctx, fileKey, options);
  const ciphertext = concatBytes(e.update(plaintext), e.final());
  return { ciphertext, digest: e.digest };
}

/** Decrypts and verifies a whole buffer (all chunks, the final flag and, if given, the digest). */
export function decryptMedia(ctx: CryptoContext, fileKey: Uint8Array, ciphertext: Uint8Array, options?: MediaDecryptorOptions): Uint8Array {
  assertBytes(ciphertext, 'decryptMedia', 'ciphertext');
  const d = MediaDecryptor.create(ctx, fileKey, options);
  return concatBytes(d.update(ciphertext), d.final());
}

type ByteSource = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

type Streamer = { update(b: Uint8Array): Uint8Array; final(): Uint8Array; finalParts?(): Iterable<Uint8Array> };

/** The end of a stream, piece by piece where the streamer offers it (the encryptor's padding). */
function finish(s: Streamer): Iterable<Uint8Array> {
  return s.finalParts ? s.finalParts() : [s.final()];
}

async function* pipeThrough(s: Streamer, source: ByteSource): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const piece of source) {
    const out = s.update(piece);
    if (out.length > 0) yield out;
  }
  for (const last of finish(s)) if (last.length > 0) yield last;
}

/**
 * Yields the ciphertext of `source`. Read `encryptor.digest` after the iteration completes.
 *   const enc = MediaEncryptor.create(ctx, key);
 *   for await (const c of encryptMediaIterable(enc, file)) upload(c);
 *   send({ key, digest: enc.digest, size: enc.ciphertextLength });
 */
export function encryptMediaIterable(encryptor: MediaEncryptor, source: ByteSource): AsyncGenerator<Uint8Array, void, undefined> {
  return pipeThrough(encryptor, source);
}

/** Yields verified plaintext of `source`; throws MEDIA_CORRUPT (possibly at the very end) on tampering. */
export function decryptMediaIterable(decryptor: MediaDecryptor, source: ByteSource): AsyncGenerator<Uint8Array, void, undefined> {
  return pipeThrough(decryptor, source);
}

function transform(s: Streamer): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      const out = s.update(chunk);
      if (out.length > 0) controller.enqueue(out);
    },
    flush(controller) {
      for (const last of finish(s)) if (last.length > 0) controller.enqueue(last);
    },
  });
}

/** A web TransformStream: plaintext in, ciphertext out (`readable.pipeThrough(mediaEncryptTransform(enc))`). */
export function mediaEncryptTransform(encryptor: MediaEncryptor): TransformStream<Uint8Array, Uint8Array> {
  return transform(encryptor);
}

/** A web TransformStream: ciphertext in, verified plaintext out; errors the stream with MEDIA_CORRUPT. */
export function mediaDecryptTransform(decryptor: MediaDecryptor): TransformStream<Uint8Array, Uint8Array> {
  return transform(decryptor);
}

/**
 * An independent implementation of docs/spec/media.md, written from the spec alone: it imports
 * nothing from src/media.ts. The vector test checks the real implementation against it, and tamper
 * tests use it to build streams the real encryptor refuses to build (e.g. an empty final chunk).
 */
import { gcm } from '@noble/ciphers/aes.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';

const te = new TextEncoder();
export const SPEC_HEADER_LENGTH = 44;

export function specChunkKey(fileKey: Uint8Array): Uint8Array {
  return hkdf(sha256, fileKey, new Uint8Array(0), te.encode('MeshWhisper_MediaChunkKey_v2'), 32);
}

export function specCommitment(fileKey: Uint8Array): Uint8Array {
  return hkdf(sha256, fileKey, new Uint8Array(0), te.encode('MeshWhisper_MediaCommitment_v2'), 32);
}

/** b_0 = 256, b_{k+1} = b_k + floor(b_k / 20): the smallest bucket ≥ n. */
export function specPaddedLength(n: number): number {
  let b = 256;
  while (b < n) b += Math.floor(b / 20);
  return b;
}

/** file ‖ 0x80 ‖ 0x00… to specPaddedLength(file.length + 1). */
export function specPad(file: Uint8Array): Uint8Array {
  const out = new Uint8Array(specPaddedLength(file.length + 1));
  out.set(file);
  out[file.length] = 0x80;
  return out;
}

export function specHeader(chunkSize: number, prefix: Uint8Array, commitment: Uint8Array, version = 2): Uint8Array {
  const h = new Uint8Array(SPEC_HEADER_LENGTH);
  h[0] = version;
  new DataView(h.buffer).setUint32(1, chunkSize);
  h.set(prefix.subarray(0, 7), 5);
  h.set(commitment, 12);
  return h;
}

export function specNonce(prefix: Uint8Array, index: number, final: boolean): Uint8Array {
  const n = new Uint8Array(12);
  n.set(prefix.subarray(0, 7));
  new DataView(n.buffer).setUint32(7, index);
  n[11] = final ? 1 : 0;
  return n;
}

/** Seals explicit chunks (each with its own final flag) — no canonical-form rules enforced. */
export function specSeal(fileKey: Uint8Array, header: Uint8Array, chunks: { pt: Uint8Array; index: number; final: boolean }[]): Uint8Array[] {
  const k = specChunkKey(fileKey);
  const prefix = header.subarray(5, 12);
  return chunks.map((c) => gcm(k, specNonce(prefix, c.index, c.final), header).encrypt(c.pt));
}

/** Splits a padded plaintext into chunk descriptors of `chunkSize` (the last one final). */
export function specChunks(padded: Uint8Array, chunkSize: number): { pt: Uint8Array; index: number; final: boolean }[] {
  const out = [];
  for (let off = 0, i = 0; off < padded.length; off += chunkSize, i++) {
    out.push({ pt: padded.subarray(off, off + chunkSize), index: i, final: off + chunkSize >= padded.length });
  }
  return out;
}

/** Decrypts a whole stream per the spec; returns the file or throws. */
export function specDecrypt(fileKey: Uint8Array, ct: Uint8Array): Uint8Array {
  if (ct.length < SPEC_HEADER_LENGTH + 16) throw new Error('short');
  const header = ct.subarray(0, SPEC_HEADER_LENGTH);
  if (header[0] !== 2) throw new Error('version');
  const commitment = specCommitment(fileKey);
  if (!header.subarray(12).every((b, i) => b === commitment[i])) throw new Error('commitment');
  const chunkSize = new DataView(header.buffer, header.byteOffset).getUint32(1);
  const k = specChunkKey(fileKey);
  const prefix = header.subarray(5, 12);
  const body = ct.subarray(SPEC_HEADER_LENGTH);
  const out: Uint8Array[] = [];
  let off = 0;
  let i = 0;
  for (;;) {
    const rest = body.length - off;
    const final = rest <= chunkSize + 16;
    const c = body.subarray(off, off + Math.min(rest, chunkSize + 16));
    out.push(gcm(k, specNonce(prefix, i, final), header).decrypt(c));
    off += c.length;
    i++;
    if (final) break;
  }
  const all = new Uint8Array(out.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of out) {
    all.set(p, o);
    o += p.length;
  }
  let last = all.length - 1;
  while (last >= 0 && all[last] === 0) last--;
  if (last < 0 || all[last] !== 0x80) throw new Error('padding');
  if (all.length !== specPaddedLength(last + 1)) throw new Error('padding length');
  return all.slice(0, last);
}

/**
 * An independent implementation of docs/spec/media.md, written from the spec alone: it imports
 * nothing from src/media.ts. The vector test checks the real implementation against it, and tamper
 * tests use it to build streams the real encryptor refuses to build (e.g. an empty final chunk).
 */
import { gcm } from '@noble/ciphers/aes.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';

const te = new TextEncoder();

export function specChunkKey(fileKey: Uint8Array): Uint8Array {
  return hkdf(sha256, fileKey, new Uint8Array(0), te.encode('MeshWhisper_MediaChunkKey_v1'), 32);
}

export function specHeader(chunkSize: number, prefix: Uint8Array, version = 1): Uint8Array {
  const h = new Uint8Array(12);
  h[0] = version;
  new DataView(h.buffer).setUint32(1, chunkSize);
  h.set(prefix, 5);
  return h;
}

export function specNonce(prefix: Uint8Array, index: number, final: boolean): Uint8Array {
  const n = new Uint8Array(12);
  n.set(prefix);
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

/** Decrypts a whole stream per the spec; returns plaintext or throws. */
export function specDecrypt(fileKey: Uint8Array, ct: Uint8Array): Uint8Array {
  if (ct.length < 12 + 16) throw new Error('short');
  const header = ct.subarray(0, 12);
  if (header[0] !== 1) throw new Error('version');
  const chunkSize = new DataView(header.buffer, header.byteOffset).getUint32(1);
  const k = specChunkKey(fileKey);
  const prefix = header.subarray(5, 12);
  const body = ct.subarray(12);
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
  return all;
}

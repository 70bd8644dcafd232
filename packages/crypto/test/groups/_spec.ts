/**
 * An independent implementation of docs/spec/groups.md §G2 (sender-key chain, group message), written
 * from the spec text alone: it imports nothing from src/. The vector test checks the real code
 * against it, and the forgery tests use it to build messages the real encryptor never builds
 * (a member signing with its own key while claiming another member's device).
 */
import { gcm } from '@noble/ciphers/aes.js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';

const te = new TextEncoder();

const cat = (...p: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(p.reduce((n, x) => n + x.length, 0));
  let o = 0;
  for (const x of p) {
    out.set(x, o);
    o += x.length;
  }
  return out;
};
const u32 = (n: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
};

/** CK → (MK = HMAC(CK, 0x01), CK' = HMAC(CK, 0x02)). */
export function specChainStep(ck: Uint8Array): { mk: Uint8Array; next: Uint8Array } {
  return { mk: hmac(sha256, ck, Uint8Array.of(1)), next: hmac(sha256, ck, Uint8Array.of(2)) };
}

/** The message key at `iteration`, given the chain key at `from`. */
export function specMessageKey(ck: Uint8Array, from: number, iteration: number): Uint8Array {
  let c = ck;
  for (let i = from; i < iteration; i++) c = specChainStep(c).next;
  return specChainStep(c).mk;
}

/** Smallest bucket 2048·2^k ≥ n + 1 + 169 + 260, minus 169 + 260. */
export function specPaddedLength(n: number): number {
  let b = 2048;
  while (b < n + 1 + 169 + 260) b *= 2;
  return b - 169 - 260;
}

export function specDistribution(
  groupId: Uint8Array,
  keyId: number,
  iteration: number,
  chainKey: Uint8Array,
  signingPublicKey: Uint8Array,
  previous: { keyId: number; end: number } | null,
): Uint8Array {
  const prev = previous ? cat(Uint8Array.of(1), u32(previous.keyId), u32(previous.end)) : new Uint8Array(9);
  return cat(Uint8Array.of(1), groupId, u32(keyId), u32(iteration), chainKey, signingPublicKey, prev);
}

/** label-length ‖ label ‖ body (docs/spec/02-keys.md signatures). */
export function specSigned(label: string, body: Uint8Array): Uint8Array {
  const l = te.encode(label);
  return cat(Uint8Array.of(l.length), l, body);
}

export function specGroupMessage(p: {
  groupId: Uint8Array;
  sender: Uint8Array;
  keyId: number;
  iteration: number;
  salt: Uint8Array;
  mk: Uint8Array;
  plaintext: Uint8Array;
  signingSeed: Uint8Array;
}): Uint8Array {
  const header = cat(Uint8Array.of(1), p.groupId, p.sender, u32(p.keyId), u32(p.iteration), p.salt);
  const okm = hkdf(sha256, p.mk, p.salt, te.encode('MeshWhisper_GroupMessage_v1'), 44);
  const padded = new Uint8Array(specPaddedLength(p.plaintext.length));
  padded.set(p.plaintext);
  padded[p.plaintext.length] = 0x80;
  const ct = gcm(okm.slice(0, 32), okm.slice(32), header).encrypt(padded);
  const sig = ed25519.sign(specSigned('MeshWhisper_GroupMessageSig_v1', cat(header, ct)), p.signingSeed);
  return cat(header, ct, sig);
}

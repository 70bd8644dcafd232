/**
 * The node key (Ed25519): generated at first start, kept in DATA_DIR/node-key (mode 0600).
 * Authentication challenges carry its public key, so a proof made for one node is useless at
 * another; federation will reuse it. The seed never leaves this object except to be signed with.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import type { CryptoContext } from '@meshwhisper/crypto';
import { toHex } from '@meshwhisper/crypto';

export const NODE_KEY_FILE = 'node-key';
const FILE_MAGIC = 'meshwhisper-node-key-v1\n';

export class NodeKey {
  readonly #seed: Uint8Array;
  readonly publicKey: Uint8Array;
  constructor(ctx: CryptoContext, seed: Uint8Array) {
    if (seed.length !== 32) throw new RangeError('NodeKey: seed must be 32 bytes');
    this.#seed = Uint8Array.from(seed);
    this.publicKey = ctx.backend.ed25519PublicKey(this.#seed);
  }
  sign(ctx: CryptoContext, message: Uint8Array): Uint8Array {
    return ctx.backend.ed25519Sign(this.#seed, message);
  }
  /** A 32-byte secret for `label`, derived from the seed (HMAC-SHA-256); e.g. the challenge tag key. */
  deriveSecret(ctx: CryptoContext, label: string): Uint8Array {
    return ctx.backend.hmacSha256(this.#seed, new TextEncoder().encode(label));
  }
  toJSON(): { publicKey: string } {
    return { publicKey: toHex(this.publicKey) };
  }
  toString(): string {
    return `NodeKey(${toHex(this.publicKey)})`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

/** Loads DATA_DIR/node-key, creating it (exclusively, 0600) at first start. */
export function loadOrCreateNodeKey(ctx: CryptoContext, dataDir: string): { key: NodeKey; created: boolean } {
  const file = join(dataDir, NODE_KEY_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    const seed = randomBytes(32);
    // 'wx': never overwrite a key another process created meanwhile.
    writeFileSync(file, `${FILE_MAGIC}${seed.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
    chmodSync(file, 0o600);
    const key = new NodeKey(ctx, seed);
    seed.fill(0);
    return { key, created: true };
  }
  if (!text.startsWith(FILE_MAGIC)) throw new Error(`${file} is not a MeshWhisper node key`);
  const hex = text.slice(FILE_MAGIC.length).trim();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`${file} is corrupt`);
  const seed = Buffer.from(hex, 'hex');
  const key = new NodeKey(ctx, seed);
  seed.fill(0);
  return { key, created: false };
}

/**
 * The node key (Ed25519): generated at first start, kept in DATA_DIR/node-key (mode 0600).
 * Authentication challenges carry its public key, so a proof made for one node is useless at
 * another; federation will reuse it. The seed never leaves this object except to be signed with.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, linkSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
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
    // Written whole under a temporary name, then linked into place: link() never overwrites, so
    // when several instances of a cluster start at once on a shared DATA_DIR exactly one key wins
    // and nobody reads a half-written file; the losers load the winner's key.
    const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    const fd = openSync(tmp, 'wx', 0o600);
    let won = false;
    try {
      try {
        writeSync(fd, `${FILE_MAGIC}${seed.toString('hex')}\n`);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      chmodSync(tmp, 0o600);
      try {
        linkSync(tmp, file);
        won = true;
      } catch (le) {
        if ((le as NodeJS.ErrnoException).code !== 'EEXIST') throw le;
      }
    } finally {
      rmSync(tmp, { force: true });
    }
    if (!won) {
      seed.fill(0);
      return { key: loadOrCreateNodeKey(ctx, dataDir).key, created: false };
    }
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

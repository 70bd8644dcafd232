/**
 * Mailbox authentication (docs/spec/node-protocol.md §Authentication): single-use challenges
 * bound to the node key, and verification of DeviceAuth / ArchiveAuth proofs.
 *
 * Challenges are stateless: the 32-byte nonce is 16 random bytes and a 16-byte HMAC-SHA-256 tag
 * over (node key, random part, issuedAt) under a secret derived from the node key. Any process
 * holding the node key can check a challenge another process issued; nothing is stored at issue.
 * Single use is kept by the store (`NodeStore.consumeChallenge`), shared by every process.
 *
 * Order of checks: the challenge must name this node (else WRONG_NODE), be fresh (else STALE)
 * and carry a valid tag (else REPLAYED: "never issued by this node"); then the certificate and the
 * signature must verify (else INVALID), and the account's device list must name the device (else
 * DEVICE_NOT_LISTED); only then is the challenge consumed (else REPLAYED), so a forged proof cannot
 * burn a victim's challenge, and a valid proof works exactly once.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { CryptoContext, DeviceCertificate } from '@meshwhisper/crypto';
import { CryptoError, decodeDeviceCertificate, equalBytes, mailboxIdOf, verifyArchiveAccessSignature, verifyDeviceCertificate } from '@meshwhisper/crypto';
import type { ArchiveAuth, DeviceAuth } from '@meshwhisper/protocol';
import {
  AuthLabel,
  CHALLENGE_FUTURE_SKEW_MS,
  CHALLENGE_NONCE_LENGTH,
  CHALLENGE_TTL_MS,
  ErrorCode,
  ProtocolError,
  authBody,
  authSignedBytes,
  buildChallenge,
  parseChallenge,
} from '@meshwhisper/protocol';
import { requireListed } from './device-authority.js';
import type { NodeKey } from './node-key.js';
import type { NodeStore } from './store/node-store.js';

/** Random bytes at the start of a nonce; the rest is the tag. */
const NONCE_RANDOM_LENGTH = 16;

/** A challenge that passed the stateless checks: redeem it once the proof verified. */
export interface CheckedChallenge {
  readonly nonce: Uint8Array;
  readonly issuedAt: number;
}

export class ChallengeIssuer {
  readonly #secret: Buffer;
  constructor(
    private readonly ctx: CryptoContext,
    private readonly nodeKey: NodeKey,
    private readonly store: Pick<NodeStore, 'consumeChallenge'>,
  ) {
    this.#secret = Buffer.from(nodeKey.deriveSecret(ctx, 'meshwhisper challenge tag v1'));
  }

  #tag(random: Uint8Array, issuedAt: number): Buffer {
    const at = Buffer.alloc(8);
    at.writeBigUInt64BE(BigInt(issuedAt));
    return createHmac('sha256', this.#secret).update(this.nodeKey.publicKey).update(random).update(at).digest().subarray(0, CHALLENGE_NONCE_LENGTH - NONCE_RANDOM_LENGTH);
  }

  issue(): Uint8Array {
    const random = this.ctx.random(NONCE_RANDOM_LENGTH);
    const issuedAt = this.ctx.now();
    const nonce = new Uint8Array(CHALLENGE_NONCE_LENGTH);
    nonce.set(random);
    nonce.set(this.#tag(random, issuedAt), NONCE_RANDOM_LENGTH);
    return buildChallenge(this.nodeKey.publicKey, nonce, issuedAt);
  }

  /** Throws ProtocolError unless `challenge` is this node's, fresh and genuinely issued. Does not consume. */
  check(challenge: Uint8Array): CheckedChallenge {
    const p = parseChallenge(challenge);
    if (!p) throw new ProtocolError(ErrorCode.AUTH_INVALID, 'challenge has the wrong length');
    if (!equalBytes(p.nodeKey, this.nodeKey.publicKey)) throw new ProtocolError(ErrorCode.AUTH_WRONG_NODE, 'challenge was issued by another node');
    const now = this.ctx.now();
    if (p.issuedAt > now + CHALLENGE_FUTURE_SKEW_MS || now - p.issuedAt > CHALLENGE_TTL_MS) throw new ProtocolError(ErrorCode.AUTH_STALE, 'challenge expired; request a new one');
    const tag = this.#tag(p.nonce.subarray(0, NONCE_RANDOM_LENGTH), p.issuedAt);
    if (!timingSafeEqual(tag, p.nonce.subarray(NONCE_RANDOM_LENGTH))) throw new ProtocolError(ErrorCode.AUTH_REPLAYED, 'challenge already used or never issued');
    return { nonce: p.nonce, issuedAt: p.issuedAt };
  }

  /** Marks the challenge used (after its proof verified); REPLAYED if it was used before. */
  async consume(c: CheckedChallenge): Promise<void> {
    if (!(await this.store.consumeChallenge(c.nonce, c.issuedAt, c.issuedAt + CHALLENGE_TTL_MS + CHALLENGE_FUTURE_SKEW_MS))) {
      throw new ProtocolError(ErrorCode.AUTH_REPLAYED, 'challenge already used or never issued');
    }
  }
}

export interface AuthenticatedDevice {
  readonly mailbox: Uint8Array;
  readonly certificate: DeviceCertificate;
  readonly encodedCertificate: Uint8Array;
  /** The epoch of the account's device list that names this device (checked during authentication). */
  readonly deviceListEpoch: number;
}

/**
 * Verifies a DeviceAuth for a request with the given digest, and that the account's current device
 * list names the device (MW_DEVICE_NOT_LISTED otherwise: device-authority.ts); consumes the
 * challenge on success.
 */
export async function verifyDeviceAuth(ctx: CryptoContext, issuer: ChallengeIssuer, store: Pick<NodeStore, 'deviceList'>, auth: DeviceAuth, digest: Uint8Array): Promise<AuthenticatedDevice> {
  const key = issuer.check(auth.challenge);
  let certificate: DeviceCertificate;
  try {
    certificate = decodeDeviceCertificate(auth.certificate);
    verifyDeviceCertificate(ctx, certificate);
  } catch (e) {
    if (e instanceof CryptoError) throw new ProtocolError(ErrorCode.AUTH_INVALID, `device certificate rejected (${e.code})`);
    throw e;
  }
  if (!ctx.backend.ed25519Verify(certificate.deviceSigningKey, authSignedBytes(AuthLabel.Device, auth.challenge, digest), auth.signature)) {
    throw new ProtocolError(ErrorCode.AUTH_INVALID, 'signature does not verify with the certified device key');
  }
  const deviceListEpoch = await requireListed(store, certificate);
  await issuer.consume(key);
  return { mailbox: mailboxIdOf(ctx, certificate.deviceSigningKey), certificate, encodedCertificate: auth.certificate, deviceListEpoch };
}

/** Verifies an ArchiveAuth; returns the archive-access public key. Consumes the challenge on success. */
export async function verifyArchiveAuth(ctx: CryptoContext, issuer: ChallengeIssuer, auth: ArchiveAuth, digest: Uint8Array): Promise<Uint8Array> {
  const key = issuer.check(auth.challenge);
  if (auth.archiveKey.length !== 32 || auth.signature.length !== 64) throw new ProtocolError(ErrorCode.AUTH_INVALID, 'archive key or signature has the wrong length');
  if (!verifyArchiveAccessSignature(ctx, auth.archiveKey, authBody(auth.challenge, digest), auth.signature)) throw new ProtocolError(ErrorCode.AUTH_INVALID, 'signature does not verify with the archive key');
  await issuer.consume(key);
  return auth.archiveKey;
}

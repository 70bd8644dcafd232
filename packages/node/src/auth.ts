/**
 * Mailbox authentication (docs/spec/node-protocol.md §Authentication): single-use challenges
 * bound to the node key, and verification of DeviceAuth / ArchiveAuth proofs.
 *
 * Order of checks: the challenge must name this node (else WRONG_NODE), be fresh (else STALE)
 * and be outstanding (else REPLAYED); then the certificate and the signature must verify (else
 * INVALID); only then is the challenge consumed, so a forged proof cannot burn a victim's
 * challenge, and a valid proof works exactly once.
 */
import type { CryptoContext, DeviceCertificate } from '@meshwhisper/crypto';
import { CryptoError, decodeDeviceCertificate, equalBytes, mailboxIdOf, toHex, verifyArchiveAccessSignature, verifyDeviceCertificate } from '@meshwhisper/crypto';
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
import type { NodeKey } from './node-key.js';

/** Outstanding challenges kept at most; beyond it the oldest are forgotten (they then fail as REPLAYED). */
export const MAX_OUTSTANDING_CHALLENGES = 100_000;

export class ChallengeIssuer {
  /** nonce hex → issuedAt; Map order is issue order, so the first entry is the oldest. */
  readonly #outstanding = new Map<string, number>();
  constructor(
    private readonly ctx: CryptoContext,
    private readonly nodeKey: NodeKey,
    private readonly maxOutstanding = MAX_OUTSTANDING_CHALLENGES,
  ) {}

  issue(): Uint8Array {
    const nonce = this.ctx.random(CHALLENGE_NONCE_LENGTH);
    const issuedAt = this.ctx.now();
    this.#outstanding.set(toHex(nonce), issuedAt);
    while (this.#outstanding.size > this.maxOutstanding) {
      const oldest = this.#outstanding.keys().next();
      if (oldest.done) break;
      this.#outstanding.delete(oldest.value);
    }
    return buildChallenge(this.nodeKey.publicKey, nonce, issuedAt);
  }

  /** Throws ProtocolError unless `challenge` is this node's, fresh and outstanding. Does not consume. */
  check(challenge: Uint8Array): string {
    const p = parseChallenge(challenge);
    if (!p) throw new ProtocolError(ErrorCode.AUTH_INVALID, 'challenge has the wrong length');
    if (!equalBytes(p.nodeKey, this.nodeKey.publicKey)) throw new ProtocolError(ErrorCode.AUTH_WRONG_NODE, 'challenge was issued by another node');
    const now = this.ctx.now();
    if (p.issuedAt > now + CHALLENGE_FUTURE_SKEW_MS || now - p.issuedAt > CHALLENGE_TTL_MS) throw new ProtocolError(ErrorCode.AUTH_STALE, 'challenge expired; request a new one');
    const key = toHex(p.nonce);
    if (this.#outstanding.get(key) !== p.issuedAt) throw new ProtocolError(ErrorCode.AUTH_REPLAYED, 'challenge already used or never issued');
    return key;
  }

  consume(key: string): void {
    this.#outstanding.delete(key);
  }

  /** Forgets expired challenges. */
  sweep(): void {
    const cutoff = this.ctx.now() - CHALLENGE_TTL_MS;
    for (const [k, at] of this.#outstanding) {
      if (at >= cutoff) break; // issue order ≈ time order
      this.#outstanding.delete(k);
    }
  }

  get outstanding(): number {
    return this.#outstanding.size;
  }
}

export interface AuthenticatedDevice {
  readonly mailbox: Uint8Array;
  readonly certificate: DeviceCertificate;
  readonly encodedCertificate: Uint8Array;
}

/** Verifies a DeviceAuth for a request with the given digest; consumes the challenge on success. */
export function verifyDeviceAuth(ctx: CryptoContext, issuer: ChallengeIssuer, auth: DeviceAuth, digest: Uint8Array): AuthenticatedDevice {
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
  issuer.consume(key);
  return { mailbox: mailboxIdOf(ctx, certificate.deviceSigningKey), certificate, encodedCertificate: auth.certificate };
}

/** Verifies an ArchiveAuth; returns the archive-access public key. Consumes the challenge on success. */
export function verifyArchiveAuth(ctx: CryptoContext, issuer: ChallengeIssuer, auth: ArchiveAuth, digest: Uint8Array): Uint8Array {
  const key = issuer.check(auth.challenge);
  if (auth.archiveKey.length !== 32 || auth.signature.length !== 64) throw new ProtocolError(ErrorCode.AUTH_INVALID, 'archive key or signature has the wrong length');
  if (!verifyArchiveAccessSignature(ctx, auth.archiveKey, authBody(auth.challenge, digest), auth.signature)) throw new ProtocolError(ErrorCode.AUTH_INVALID, 'signature does not verify with the archive key');
  issuer.consume(key);
  return auth.archiveKey;
}

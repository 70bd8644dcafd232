/**
 * VAPID keys (RFC 8292): an ECDSA P-256 key pair. The formats are the ones every Web Push
 * library and the browser's PushManager.subscribe({ applicationServerKey }) use: the public key
 * as base64url of the 65-byte uncompressed point (0x04 ‖ X ‖ Y), the private key as base64url of
 * the 32-byte scalar.
 */
import { createECDH, createPublicKey, generateKeyPairSync, timingSafeEqual } from 'node:crypto';

export interface VapidKeys {
  readonly publicKey: string;
  /** Secret: print it only into the .env file or the operator's terminal. */
  readonly privateKey: string;
}

const B64URL = /^[A-Za-z0-9_-]+$/;

/** A fresh key pair from node:crypto's CSPRNG. */
export function generateVapidKeys(): VapidKeys {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const jwk = privateKey.export({ format: 'jwk' });
  if (!jwk.d || !jwk.x || !jwk.y) throw new Error('generateVapidKeys: node:crypto returned an incomplete JWK');
  const x = Buffer.from(jwk.x, 'base64url');
  const y = Buffer.from(jwk.y, 'base64url');
  return { publicKey: Buffer.concat([Buffer.from([4]), x, y]).toString('base64url'), privateKey: jwk.d };
}

/** Problems with a VAPID pair, as fixable sentences; empty when the pair is valid and matches. */
export function vapidProblems(publicKey: string, privateKey: string): string[] {
  const problems: string[] = [];
  let pub: Buffer | undefined;
  if (!B64URL.test(publicKey)) problems.push('VAPID_PUBLIC_KEY is not base64url (A–Z a–z 0–9 - _, no padding)');
  else {
    pub = Buffer.from(publicKey, 'base64url');
    if (pub.length !== 65 || pub[0] !== 4) {
      problems.push(`VAPID_PUBLIC_KEY must decode to a 65-byte uncompressed P-256 point starting with 0x04, got ${pub.length} bytes`);
      pub = undefined;
    } else {
      try {
        createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: pub.subarray(1, 33).toString('base64url'), y: pub.subarray(33).toString('base64url') }, format: 'jwk' });
      } catch {
        problems.push('VAPID_PUBLIC_KEY is not a point on the P-256 curve');
        pub = undefined;
      }
    }
  }
  if (!B64URL.test(privateKey)) {
    problems.push('VAPID_PRIVATE_KEY is not base64url');
    return problems;
  }
  const d = Buffer.from(privateKey, 'base64url');
  if (d.length !== 32) {
    problems.push(`VAPID_PRIVATE_KEY must decode to 32 bytes, got ${d.length}`);
    return problems;
  }
  let derived: Buffer;
  try {
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(d);
    derived = ecdh.getPublicKey();
  } catch {
    problems.push('VAPID_PRIVATE_KEY is not a valid P-256 private scalar');
    return problems;
  } finally {
    d.fill(0);
  }
  if (pub && !timingSafeEqual(pub, derived)) problems.push('VAPID_PUBLIC_KEY does not belong to VAPID_PRIVATE_KEY (keys from different pairs)');
  return problems;
}

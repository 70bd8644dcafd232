/**
 * The one small, synchronous interface every protocol module uses for primitives. Two backends
 * implement it: `nobleBackend` (pure JS, everywhere) and `nodeBackend` (node:crypto for X25519,
 * Ed25519 and AES-256-GCM, noble for the rest). They are byte-identical on every input — valid,
 * invalid and edge case — which the test suite checks with official vectors, Wycheproof and
 * property tests. Guards: wrong types throw TypeError, wrong lengths RangeError; cryptographic
 * failures (bad point, bad tag) return `false`/throw CryptoError as documented per method.
 */
export interface X25519KeyPair {
  readonly secretKey: Uint8Array; // 32 bytes
  readonly publicKey: Uint8Array; // 32 bytes
}
export interface Ed25519KeyPair {
  readonly secretKey: Uint8Array; // 32-byte seed (RFC 8032)
  readonly publicKey: Uint8Array; // 32 bytes
}
export interface KemKeyPair {
  readonly secretKey: Uint8Array; // ML-KEM-768 decapsulation key, 2400 bytes
  readonly publicKey: Uint8Array; // ML-KEM-768 encapsulation key, 1184 bytes
}

export interface CryptoBackend {
  readonly name: string;
  /** CSPRNG. */
  randomBytes(n: number): Uint8Array;
  sha256(msg: Uint8Array): Uint8Array;
  sha512(msg: Uint8Array): Uint8Array;
  hmacSha256(key: Uint8Array, msg: Uint8Array): Uint8Array;
  /** RFC 5869 HKDF with SHA-256. */
  hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array;

  /** RFC 7748: public key of a 32-byte secret (clamped internally). */
  x25519PublicKey(secretKey: Uint8Array): Uint8Array;
  /**
   * RFC 7748 X25519. Throws CryptoError(LOW_ORDER_POINT) when the result is all zero (RFC 7748
   * §6.1 check), so a low-order or small-subgroup public key can never yield a shared secret.
   * Non-canonical u-coordinates are accepted and reduced, as RFC 7748 §5 requires.
   */
  x25519(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array;

  /** RFC 8032 Ed25519 public key from a 32-byte seed. */
  ed25519PublicKey(seed: Uint8Array): Uint8Array;
  ed25519Sign(seed: Uint8Array, msg: Uint8Array): Uint8Array;
  /**
   * Strict RFC 8032 verification (cofactorless, S < L, canonical A and R encodings rejected where
   * non-canonical). Returns false for any invalid input of the right types; never throws on bad
   * key or signature bytes.
   */
  ed25519Verify(publicKey: Uint8Array, msg: Uint8Array, signature: Uint8Array): boolean;

  /** FIPS 203 ML-KEM-768 KeyGen from a 64-byte seed (d ‖ z). */
  mlKem768KeyGen(seed: Uint8Array): KemKeyPair;
  /** FIPS 203 Encaps with explicit 32-byte randomness m. Throws CryptoError(INVALID_KEY) for a bad key. */
  mlKem768Encapsulate(publicKey: Uint8Array, m: Uint8Array): { ciphertext: Uint8Array; sharedSecret: Uint8Array };
  /** FIPS 203 Decaps (implicit rejection: a bad ciphertext yields a pseudo-random secret). */
  mlKem768Decapsulate(ciphertext: Uint8Array, secretKey: Uint8Array): Uint8Array;

  /** AES-256-GCM with a 12-byte nonce and 16-byte tag appended. */
  aes256GcmEncrypt(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  /** Returns the plaintext, or throws CryptoError(BAD_MAC). */
  aes256GcmDecrypt(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Uint8Array;
}

/** A function that returns `n` random bytes. Injected everywhere randomness is used. */
export type Rng = (n: number) => Uint8Array;

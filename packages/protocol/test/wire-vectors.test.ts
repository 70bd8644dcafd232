/**
 * Wire messages published in test-vectors/: the protobuf bodies whose exact bytes the spec fixes
 * (docs/spec/node-protocol.md). The vector is produced by the crypto package's generator (which
 * writes the protobuf by hand from the field table); here the generated schema must encode the
 * same fields to exactly those bytes and decode them back.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '@meshwhisper/crypto';
import { AccountDeletionRequestSchema, create, decodeBody, encodeBody, fromBinary, toBinary } from '../src/index.js';

const vectors = JSON.parse(readFileSync(fileURLToPath(new URL('../../../test-vectors/device-authority.json', import.meta.url)), 'utf8')) as {
  keys: { accountPublicKey: string };
  accountDeletion: { epoch: number; challenge: string; signature: string; request: string };
};

describe('test-vectors/device-authority.json: AccountDeletionRequest (DELETE /v1/account)', () => {
  const d = vectors.accountDeletion;
  const fields = { accountKey: fromHex(vectors.keys.accountPublicKey), epoch: BigInt(d.epoch), challenge: fromHex(d.challenge), signature: fromHex(d.signature) };

  it('encodes to exactly the published bytes, and decodes them back', () => {
    expect(toHex(toBinary(AccountDeletionRequestSchema, create(AccountDeletionRequestSchema, fields)))).toBe(d.request);
    expect(toHex(encodeBody(AccountDeletionRequestSchema, fields))).toBe(d.request);
    const back = fromBinary(AccountDeletionRequestSchema, fromHex(d.request));
    expect([toHex(back.accountKey), back.epoch, toHex(back.challenge), toHex(back.signature)]).toEqual([vectors.keys.accountPublicKey, BigInt(d.epoch), d.challenge, d.signature]);
  });

  it('a truncated body does not decode', () => {
    const r = decodeBody(AccountDeletionRequestSchema, fromHex(d.request).subarray(0, 40));
    expect(r.ok).toBe(false);
  });
});

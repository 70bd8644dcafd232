// A username transfer needs the receiving account's signed consent (docs/spec/node-protocol.md §7):
// nobody can be handed a name they did not ask for (an offensive name, or one that makes them look
// like someone else).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AccountKeyPair, toHex } from '@meshwhisper/crypto';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type {
  UsernameTransferConsentSchema} from '@meshwhisper/protocol';
import {
  ErrorCode,
  MAX_USERNAME_CONSENT_MS,
  SignedUsernameOperationSchema,
  UsernameAction,
  UsernameRecordSchema,
  encodeBody,
  fromBinary,
  signUsernameOperation,
  signUsernameTransferConsent,
} from '@meshwhisper/protocol';
import { TestDevice, ctx, generousLimits, proto, startTestNode } from './helpers.js';
import type { TestNode } from './helpers.js';

let t: TestNode;
beforeAll(async () => {
  t = await startTestNode({ RATE_LIMITS: generousLimits(), USERNAME_NAMESPACES: 'default:signed,open:last-writer-wins' });
});
afterAll(() => t.close());

const errorCode = (res: { json(): unknown }): string => (res.json() as { error: { code: string } }).error.code;

async function post(signer: AccountKeyPair, action: UsernameAction, username: string, extra: { newOwnerKey?: Uint8Array; transferConsent?: Uint8Array; namespace?: string } = {}) {
  const signed = signUsernameOperation(ctx, signer, {
    namespace: extra.namespace ?? 'default',
    username,
    action,
    signerKey: signer.publicKey,
    newOwnerKey: extra.newOwnerKey ?? new Uint8Array(0),
    challenge: await TestDevice.challenge(t.node),
    transferConsent: extra.transferConsent ?? new Uint8Array(0),
  });
  return t.node.app.inject({ method: 'POST', url: '/v1/usernames', headers: proto, payload: Buffer.from(encodeBody(SignedUsernameOperationSchema, signed)) });
}

const ownerOf = async (name: string, ns = 'default'): Promise<string> => toHex(fromBinary(UsernameRecordSchema, (await t.node.app.inject(`/v1/usernames/${ns}/${name}`)).rawPayload).ownerKey);

/** A consent by `by` to receive `username` from `from`, valid for an hour unless overridden. */
function consent(by: AccountKeyPair, from: AccountKeyPair, username: string, extra: Partial<MessageInitShape<typeof UsernameTransferConsentSchema>> = {}): Uint8Array {
  return signUsernameTransferConsent(ctx, by, {
    namespace: 'default',
    username,
    previousOwnerKey: from.publicKey,
    newOwnerKey: by.publicKey,
    expiresAtMs: BigInt(Date.now() + 3600_000),
    ...extra,
  });
}

async function twoAccounts(name: string, namespace = 'default'): Promise<{ alice: AccountKeyPair; bob: AccountKeyPair }> {
  const a = new TestDevice();
  const b = new TestDevice();
  expect((await a.register(t.node)).statusCode).toBe(200);
  expect((await b.register(t.node)).statusCode).toBe(200);
  expect((await post(a.account, UsernameAction.CLAIM, name, { namespace })).statusCode).toBe(200);
  return { alice: a.account, bob: b.account };
}

describe('username transfer consent', () => {
  it('attack: a transfer without the receiver’s consent is refused and the name stays put', async () => {
    const { alice, bob } = await twoAccounts('offensive-name');
    const r = await post(alice, UsernameAction.TRANSFER, 'offensive-name', { newOwnerKey: bob.publicKey });
    expect(r.statusCode).toBe(400);
    expect(errorCode(r)).toBe(ErrorCode.BAD_REQUEST);
    expect(await ownerOf('offensive-name')).toBe(toHex(alice.publicKey));
  });

  it('with the receiver’s signed consent the transfer goes through', async () => {
    const { alice, bob } = await twoAccounts('gift');
    const r = await post(alice, UsernameAction.TRANSFER, 'gift', { newOwnerKey: bob.publicKey, transferConsent: consent(bob, alice, 'gift') });
    expect(r.statusCode).toBe(200);
    expect(await ownerOf('gift')).toBe(toHex(bob.publicKey));
  });

  it('attack: a consent signed by someone else, for another name, namespace, giver or receiver, or expired, is refused', async () => {
    const { alice, bob } = await twoAccounts('contested');
    const mallory = AccountKeyPair.generate(ctx);
    const cases: [string, Uint8Array, ErrorCode][] = [
      // Mallory signs a consent that claims to be Bob's.
      ['forged', signUsernameTransferConsent(ctx, mallory, { namespace: 'default', username: 'contested', previousOwnerKey: alice.publicKey, newOwnerKey: bob.publicKey, expiresAtMs: BigInt(Date.now() + 60_000) }), ErrorCode.BAD_SIGNATURE],
      ['other name', consent(bob, alice, 'something-else'), ErrorCode.BAD_REQUEST],
      ['other namespace', consent(bob, alice, 'contested', { namespace: 'open' }), ErrorCode.BAD_REQUEST],
      ['other giver', consent(bob, mallory, 'contested'), ErrorCode.BAD_REQUEST],
      ['other receiver (signed by that other key, so it does not verify as bob)', consent(mallory, alice, 'contested'), ErrorCode.BAD_SIGNATURE],
      ['expired', consent(bob, alice, 'contested', { expiresAtMs: BigInt(Date.now() - 1000) }), ErrorCode.FORBIDDEN],
      ['too long', consent(bob, alice, 'contested', { expiresAtMs: BigInt(Date.now() + MAX_USERNAME_CONSENT_MS + 3600_000) }), ErrorCode.BAD_REQUEST],
      ['garbage', Uint8Array.of(0xff, 0xff, 0xff), ErrorCode.MALFORMED],
    ];
    for (const [what, c, code] of cases) {
      const r = await post(alice, UsernameAction.TRANSFER, 'contested', { newOwnerKey: bob.publicKey, transferConsent: c });
      expect(errorCode(r), what).toBe(code);
    }
    expect(await ownerOf('contested')).toBe(toHex(alice.publicKey));
  });

  it('a consent is refused on claims and releases (it only belongs to a transfer)', async () => {
    const { alice, bob } = await twoAccounts('plain');
    expect(errorCode(await post(alice, UsernameAction.RELEASE, 'plain', { transferConsent: consent(bob, alice, 'plain') }))).toBe(ErrorCode.BAD_REQUEST);
    expect(await ownerOf('plain')).toBe(toHex(alice.publicKey));
  });
});

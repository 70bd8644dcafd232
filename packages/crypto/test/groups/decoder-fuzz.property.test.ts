/**
 * Fuzzed decoders for every group encoding (wire and storage): random bytes and single-byte
 * mutations of valid encodings either decode or fail with a CryptoError carrying a stable code —
 * never another exception, never a hang. A mutated group message never decrypts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CryptoError } from '../../src/errors.js';
import { GroupPolicy, createGroup, decodeGroupOperation, deserializeGroupLog, proposeGroupOperation, serializeGroupLog } from '../../src/group-state.js';
import {
  decodeSenderKeyDistribution,
  decryptGroupMessage,
  deserializeOwnSenderKey,
  deserializeSenderKeyRecord,
  encodeSenderKeyDistribution,
  encryptGroupMessage,
  generateSenderKey,
  processSenderKeyDistribution,
  readGroupMessageHeader,
  serializeOwnSenderKey,
  serializeSenderKeyRecord,
} from '../../src/sender-key.js';
import { testContext, text } from '../_fixtures.js';
import { entry, person } from './_group.js';

const DEEP = process.env['MW_DEEP'] === '1';
const RUNS = DEEP ? 2000 : 150;
const ctx = testContext('group-decoder-fuzz');

const groupId = ctx.random(32);
const sender = ctx.random(32);
let own = generateSenderKey(ctx, { groupId, senderDevice: sender });
const distribution = encodeSenderKeyDistribution(own);
const record = processSenderKeyDistribution(ctx, { groupId, sender, distribution });
const enc = encryptGroupMessage(ctx, own, text('fuzz me'));
own = enc.key;
const message = enc.message;
const alice = person(ctx, 'alice');
const bob = person(ctx, 'bob');
const created = createGroup(ctx, { signer: alice.devices[0]!, account: alice.account, name: 'fuzz', policy: GroupPolicy.Admins, members: [entry(bob)] });
const renamed = proposeGroupOperation(ctx, created.log, { signer: alice.devices[0]!, account: alice.account, body: { type: 'rename', name: 'fuzzed' } });

const decoders: Record<string, { valid: Uint8Array; run: (b: Uint8Array) => unknown }> = {
  decodeSenderKeyDistribution: { valid: distribution, run: (b) => decodeSenderKeyDistribution(b) },
  readGroupMessageHeader: { valid: message, run: (b) => readGroupMessageHeader(b) },
  decryptGroupMessage: { valid: message, run: (b) => decryptGroupMessage(ctx, record, b) },
  decodeGroupOperation: { valid: renamed.operation, run: (b) => decodeGroupOperation(ctx, b) },
  deserializeGroupLog: { valid: serializeGroupLog(renamed.log), run: (b) => deserializeGroupLog(ctx, b) },
  deserializeSenderKeyRecord: { valid: serializeSenderKeyRecord(record), run: (b) => deserializeSenderKeyRecord(b) },
  deserializeOwnSenderKey: { valid: serializeOwnSenderKey(own), run: (b) => deserializeOwnSenderKey(ctx, b) },
};

function outcome(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (e instanceof CryptoError) return e.code;
    throw e;
  }
}

describe('group decoders under fuzzing', () => {
  for (const [name, d] of Object.entries(decoders)) {
    it(`${name}: random bytes and mutations fail only with CryptoError codes`, () => {
      expect(outcome(() => d.run(d.valid))).toBe('ok');
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 600 }), (b) => void outcome(() => d.run(b))),
        { seed: 0x9f, numRuns: RUNS },
      );
      fc.assert(
        fc.property(fc.nat(d.valid.length - 1), fc.integer({ min: 1, max: 255 }), fc.boolean(), (i, x, cut) => {
          const m = d.valid.slice(0, cut ? i : d.valid.length);
          if (!cut) m[i]! ^= x;
          const r = outcome(() => d.run(m));
          // A changed message never decrypts; a changed operation never verifies.
          if (name === 'decryptGroupMessage' || name === 'decodeGroupOperation') expect(r).not.toBe('ok');
        }),
        { seed: 0xa0, numRuns: RUNS },
      );
    });
  }
});

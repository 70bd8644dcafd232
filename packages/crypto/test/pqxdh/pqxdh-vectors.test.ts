/**
 * Published PQXDH vectors (test-vectors/pqxdh.json): every secret input is listed explicitly (no
 * RNG algorithm needs re-implementing), and every intermediate value is recorded. Regenerate with
 * MW_WRITE_VECTORS=1 — only on a deliberate, documented protocol change.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../../src/bytes.js';
import { createContext } from '../../src/context.js';
import { AccountKeyPair, DeviceKeyPair, encodeDeviceCertificate, issueDeviceCertificate } from '../../src/keys.js';
import { encodePqxdhHeader, pqxdhInitiate, pqxdhRespond } from '../../src/pqxdh.js';
import { KemPreKeyPair, X25519PreKeyPair, encodePreKeyBundle, publicOneTimePreKey, signKemPreKey, signSignedPreKey } from '../../src/prekeys.js';
import type { CryptoBackend } from '../../src/primitives/index.js';
import { createNodeBackend, nobleBackend } from '../../src/primitives/index.js';
import * as nodeCrypto from 'node:crypto';

const FILE = new URL('../../../../test-vectors/pqxdh.json', import.meta.url);

/** An RNG that hands out exactly the listed values, in order, and fails loudly on anything else. */
function scripted(values: string[]): (n: number) => Uint8Array {
  const queue = [...values];
  return (n) => {
    const v = queue.shift();
    if (v === undefined || v.length !== n * 2) throw new Error(`scripted RNG: unexpected request for ${n} bytes`);
    return fromHex(v);
  };
}

interface Inputs {
  time: number;
  aliceAccountSeed: string;
  aliceSigningSeed: string;
  aliceDhSecret: string;
  bobAccountSeed: string;
  bobSigningSeed: string;
  bobDhSecret: string;
  signedPreKey: { id: number; secret: string };
  oneTimePreKey?: { id: number; secret: string };
  kemPreKey: { id: number; lastResort: boolean; keygenSeed: string };
  ephemeralSecret: string;
  kemEncapsRandomness: string;
}

function run(backend: CryptoBackend, inputs: Inputs) {
  const ctxFixed = createContext({ backend, now: () => inputs.time, random: () => { throw new Error('no randomness here'); } });
  const aliceAccount = AccountKeyPair.fromSeed(ctxFixed, fromHex(inputs.aliceAccountSeed));
  const alice = DeviceKeyPair.fromSecrets(ctxFixed, fromHex(inputs.aliceSigningSeed), fromHex(inputs.aliceDhSecret));
  const bobAccount = AccountKeyPair.fromSeed(ctxFixed, fromHex(inputs.bobAccountSeed));
  const bob = DeviceKeyPair.fromSecrets(ctxFixed, fromHex(inputs.bobSigningSeed), fromHex(inputs.bobDhSecret));
  const aliceCert = issueDeviceCertificate(ctxFixed, aliceAccount, alice);
  const bobCert = issueDeviceCertificate(ctxFixed, bobAccount, bob);
  const spkSecret = fromHex(inputs.signedPreKey.secret);
  const spk = new X25519PreKeyPair(inputs.signedPreKey.id, spkSecret, backend.x25519PublicKey(spkSecret), inputs.time);
  const opk = inputs.oneTimePreKey
    ? new X25519PreKeyPair(inputs.oneTimePreKey.id, fromHex(inputs.oneTimePreKey.secret), backend.x25519PublicKey(fromHex(inputs.oneTimePreKey.secret)), inputs.time)
    : undefined;
  const kemPair = KemPreKeyPair.generate(
    createContext({ backend, now: () => inputs.time, random: scripted([inputs.kemPreKey.keygenSeed]) }),
    inputs.kemPreKey.id,
    inputs.kemPreKey.lastResort,
  );
  const bundle = {
    certificate: bobCert,
    signedPreKey: signSignedPreKey(ctxFixed, bob, spk),
    ...(opk ? { oneTimePreKey: publicOneTimePreKey(opk) } : {}),
    kemPreKey: signKemPreKey(ctxFixed, bob, kemPair),
  };
  const trace: Record<string, string> = {};
  const ctxA = createContext({ backend, now: () => inputs.time, random: scripted([inputs.ephemeralSecret, inputs.kemEncapsRandomness]) });
  const initiated = pqxdhInitiate(ctxA, { certificate: aliceCert, device: alice }, bundle, { trace: (k, v) => (trace[k] = toHex(v)) });
  const responded = pqxdhRespond(ctxFixed, { certificate: bobCert, device: bob }, initiated.header, {
    signedPreKey: spk,
    kemPreKey: kemPair,
    ...(opk ? { oneTimePreKey: opk } : {}),
  });
  return {
    aliceCertificate: toHex(encodeDeviceCertificate(aliceCert)),
    bobBundle: toHex(encodePreKeyBundle(bundle)),
    intermediates: trace,
    initialHeader: toHex(encodePqxdhHeader(initiated.header)),
    sharedSecret: toHex(initiated.sharedSecret),
    responderSharedSecret: toHex(responded.sharedSecret),
    associatedData: toHex(initiated.associatedData),
  };
}

function freshInputs(withOneTime: boolean, salt: number): Inputs {
  const h = (label: string, n = 32): string => toHex(nodeCrypto.createHash('sha512').update(`pqxdh-vector-${salt}-${label}`).digest().subarray(0, n));
  return {
    time: 1_760_000_000_000,
    aliceAccountSeed: h('alice-account'),
    aliceSigningSeed: h('alice-signing'),
    aliceDhSecret: h('alice-dh'),
    bobAccountSeed: h('bob-account'),
    bobSigningSeed: h('bob-signing'),
    bobDhSecret: h('bob-dh'),
    signedPreKey: { id: 7, secret: h('spk') },
    ...(withOneTime ? { oneTimePreKey: { id: 42, secret: h('opk') } } : {}),
    kemPreKey: { id: 9, lastResort: !withOneTime, keygenSeed: h('kem', 64) },
    ephemeralSecret: h('ephemeral'),
    kemEncapsRandomness: h('encaps-m'),
  };
}

const backends: [string, CryptoBackend][] = [
  ['noble', nobleBackend],
  ['node', createNodeBackend(nodeCrypto)],
];

if (process.env['MW_WRITE_VECTORS'] === '1') {
  const cases = [
    { name: 'with one-time X25519 prekey and one-time KEM prekey', inputs: freshInputs(true, 1) },
    { name: 'without one-time X25519 prekey, last-resort KEM prekey', inputs: freshInputs(false, 2) },
  ].map((c) => ({ ...c, expected: run(nobleBackend, c.inputs) }));
  writeFileSync(
    FILE,
    JSON.stringify(
      {
        description: 'MeshWhisper PQXDH (docs/protocol.md §4). All values hex. intermediates: dh1..dh4, kemSharedSecret, ikm (0xFF*32 ‖ DHs ‖ SS), transcriptHash, associatedData, sharedSecret.',
        version: 2,
        cases,
      },
      null,
      2,
    ) + '\n',
  );
}

describe('PQXDH published vectors', () => {
  const doc = JSON.parse(readFileSync(FILE, 'utf8')) as { cases: { name: string; inputs: Inputs; expected: ReturnType<typeof run> }[] };
  it('has both cases', () => {
    expect(doc.cases.length).toBe(2);
    expect(doc.cases.some((c) => c.inputs.oneTimePreKey === undefined)).toBe(true);
  });
  for (const [bname, backend] of backends) {
    for (const c of doc.cases) {
      it(`${c.name} (${bname})`, () => {
        const got = run(backend, c.inputs);
        expect(got).toEqual(c.expected);
        expect(got.responderSharedSecret).toBe(got.sharedSecret);
        expect('dh4' in got.intermediates).toBe(c.inputs.oneTimePreKey !== undefined);
      });
    }
  }
});

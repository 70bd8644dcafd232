/**
 * Group crypto costs (issue 14 benchmark, crypto-core part): for groups of 10, 100 and 1,000
 * single-device members, the sender's CPU for one 1 KiB message with sender keys (one group
 * encryption + one sealed envelope per recipient) against N pairwise Double Ratchet sends (each
 * sealed too); the receiver's cost per message; the cost of a removal (every remaining device
 * rotates and sends its new key to every other one over its pairwise session); and the cost of
 * recomputing group state. Figures are process CPU time (user + system), the one to read on a
 * shared machine. The removal total for large groups is per-device cost × devices (stated).
 *
 *   cd bench/groups && npm install && npm run bench        (QUICK=1: 10 and 100 only)
 */
import { loadavg } from 'node:os';
import {
  AccountKeyPair,
  DeviceKeyPair,
  GroupPolicy,
  createContext,
  createGroup,
  decryptGroupMessage,
  encodeSenderKeyDistribution,
  encryptGroupMessage,
  generateSenderKey,
  initRatchetAsInitiator,
  initRatchetAsResponder,
  issueDeviceCertificate,
  openEnvelope,
  processSenderKeyDistribution,
  proposeGroupOperation,
  ratchetDecrypt,
  ratchetEncrypt,
  receiveGroupOperation,
  rotateSenderKey,
  sealEnvelope,
} from '../../packages/crypto/src/index.js';
import type { GroupLog, RatchetState } from '../../packages/crypto/src/index.js';

const QUICK = process.env['QUICK'] === '1';
const SIZES = QUICK ? [10, 100] : [10, 100, 1000];
const ctx = createContext();
const msg = new Uint8Array(1024).fill(0x61);

function cpu<T>(f: () => T): { ms: number; value: T } {
  const a = process.cpuUsage();
  const value = f();
  const b = process.cpuUsage(a);
  return { ms: (b.user + b.system) / 1000, value };
}

function pair(): { alice: RatchetState; bob: RatchetState } {
  const sharedSecret = ctx.random(32);
  const associatedData = ctx.random(64);
  const secretKey = ctx.random(32);
  const kp = { secretKey, publicKey: ctx.backend.x25519PublicKey(secretKey) };
  return {
    alice: initRatchetAsInitiator(ctx, { sharedSecret, associatedData, remoteRatchetKey: kp.publicKey }),
    bob: initRatchetAsResponder(ctx, { sharedSecret, associatedData, ownRatchetKeyPair: kp }),
  };
}

const account = AccountKeyPair.generate(ctx);
const device = DeviceKeyPair.generate(ctx);
const sender = { certificate: issueDeviceCertificate(ctx, account, device), device };
const groupId = ctx.random(32);
const rows: string[] = [];

for (const n of SIZES) {
  const recipients = Array.from({ length: n - 1 }, () => DeviceKeyPair.generate(ctx));
  const sessions = recipients.map(() => pair());
  let own = generateSenderKey(ctx, { groupId, senderDevice: device.signingPublicKey });
  const record = processSenderKeyDistribution(ctx, { groupId, sender: device.signingPublicKey, distribution: encodeSenderKeyDistribution(own) });
  // Warm up both paths.
  for (let i = 0; i < 20; i++) own = encryptGroupMessage(ctx, own, msg).key;

  const group = cpu(() => {
    const r = encryptGroupMessage(ctx, own, msg);
    own = r.key;
    return recipients.map((rcp) => sealEnvelope(ctx, { sender, recipientDhKey: rcp.dhPublicKey, contentType: 1, content: r.message }));
  });
  const pairwise = cpu(() =>
    sessions.map((s, i) => {
      const r = ratchetEncrypt(ctx, s.alice, msg);
      s.alice = r.state;
      return sealEnvelope(ctx, { sender, recipientDhKey: recipients[i]!.dhPublicKey, contentType: 1, content: r.message });
    }),
  );
  const bytes = group.value.reduce((a, e) => a + e.length, 0);
  const bytesPairwise = pairwise.value.reduce((a, e) => a + e.length, 0);

  // Receiver, per message (one recipient; the same work on every one).
  const R = 50;
  const rcp = recipients[0]!;
  const groupMsgs = Array.from({ length: R }, () => {
    const r = encryptGroupMessage(ctx, own, msg);
    own = r.key;
    return sealEnvelope(ctx, { sender, recipientDhKey: rcp.dhPublicKey, contentType: 1, content: r.message });
  });
  const pw = pair();
  const pwMsgs = Array.from({ length: R }, () => {
    const r = ratchetEncrypt(ctx, pw.alice, msg);
    pw.alice = r.state;
    return sealEnvelope(ctx, { sender, recipientDhKey: rcp.dhPublicKey, contentType: 1, content: r.message });
  });
  let rec = record;
  const recvGroup = cpu(() => {
    for (const e of groupMsgs) rec = decryptGroupMessage(ctx, rec, openEnvelope(ctx, rcp, e).content).record;
  }).ms / R;
  let bob = pw.bob;
  const recvPairwise = cpu(() => {
    for (const e of pwMsgs) bob = ratchetDecrypt(ctx, bob, openEnvelope(ctx, rcp, e).content).state;
  }).ms / R;

  // Removal: one remaining device rotates and sends its distribution to the n − 2 others.
  const rekeyOne = cpu(() => {
    own = rotateSenderKey(ctx, own);
    const d = encodeSenderKeyDistribution(own);
    return sessions.slice(0, n - 2).map((s, i) => {
      const r = ratchetEncrypt(ctx, s.alice, d);
      s.alice = r.state;
      return sealEnvelope(ctx, { sender, recipientDhKey: recipients[i]!.dhPublicKey, contentType: 1, content: r.message });
    });
  }).ms;

  // Group state: a group of n members, 40 operations, then the cost of receiving one more.
  const admin = { account: AccountKeyPair.generate(ctx).publicKey, device: DeviceKeyPair.generate(ctx) };
  const members = Array.from({ length: n - 1 }, () => ({ account: AccountKeyPair.generate(ctx).publicKey, devices: [DeviceKeyPair.generate(ctx).signingPublicKey] }));
  let log: GroupLog = createGroup(ctx, { signer: admin.device, account: admin.account, name: 'bench', policy: GroupPolicy.Admins, members }).log;
  for (let i = 0; i < 40; i++) {
    const target = members[i / 2];
    const body = i % 2 || !target || i / 2 >= members.length - 1 ? ({ type: 'rename', name: `n${i}` } as const) : ({ type: 'kick', account: target.account } as const);
    log = proposeGroupOperation(ctx, log, { signer: admin.device, account: admin.account, body }).log;
  }
  const next = proposeGroupOperation(ctx, log, { signer: admin.device, account: admin.account, body: { type: 'rename', name: 'last' } }).operation;
  const recvOp = cpu(() => receiveGroupOperation(ctx, log, next)).ms;

  rows.push(
    `| ${n} | ${group.ms.toFixed(1)} | ${pairwise.ms.toFixed(1)} | ${(bytes / 1024).toFixed(0)} / ${(bytesPairwise / 1024).toFixed(0)} | ${recvGroup.toFixed(3)} | ${recvPairwise.toFixed(3)} | ${rekeyOne.toFixed(1)} | ${((rekeyOne * (n - 1)) / 1000).toFixed(2)} | ${recvOp.toFixed(1)} |`,
  );
  console.error(rows.at(-1));
}

console.log(`\nnode ${process.version}, ${ctx.backend.name} backend, load average ${loadavg().map((x) => x.toFixed(1)).join(' / ')}\n`);
console.log('| members | send, sender keys (ms CPU) | send, N pairwise (ms CPU) | KiB on the wire (group / pairwise) | receive, group (ms) | receive, pairwise (ms) | removal: one device rekeys (ms) | removal: all devices (s, = one × (N−1)) | state: receive 1 op after 41 (ms) |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) console.log(r);

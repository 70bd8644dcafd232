import { toHex } from '../../src/bytes.js';
import type { CryptoContext } from '../../src/context.js';
import { CryptoError } from '../../src/errors.js';
import type { GroupLog, GroupOpBody, GroupState } from '../../src/group-state.js';
import { proposeGroupOperation, receiveGroupOperation } from '../../src/group-state.js';
import { AccountKeyPair, DeviceKeyPair } from '../../src/keys.js';

/** A person: an account key and one or more devices. */
export interface Person {
  readonly name: string;
  readonly account: Uint8Array;
  readonly devices: DeviceKeyPair[];
}

export function person(ctx: CryptoContext, name: string, deviceCount = 1): Person {
  return { name, account: AccountKeyPair.generate(ctx).publicKey, devices: Array.from({ length: deviceCount }, () => DeviceKeyPair.generate(ctx)) };
}

export const entry = (p: Person): { account: Uint8Array; devices: Uint8Array[] } => ({ account: p.account, devices: p.devices.map((d) => d.signingPublicKey) });

export function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof CryptoError) return e.code;
    throw e;
  }
  return 'ok';
}

/** Proposes `body` as device `i` of `p`; returns the new log and the operation bytes. */
export function act(ctx: CryptoContext, log: GroupLog, p: Person, body: GroupOpBody, i = 0): { log: GroupLog; operation: Uint8Array } {
  const r = proposeGroupOperation(ctx, log, { signer: p.devices[i]!, account: p.account, body });
  return { log: r.log, operation: r.operation };
}

export function deliver(ctx: CryptoContext, log: GroupLog, ...ops: Uint8Array[]): GroupLog {
  for (const o of ops) log = receiveGroupOperation(ctx, log, o).log;
  return log;
}

/** A readable summary: name, policy, and members as names with * for admins. */
export function summary(state: GroupState, people: Person[]): string {
  const nameOf = new Map(people.map((p) => [toHex(p.account), p.name]));
  const ms = state.members.map((m) => `${nameOf.get(toHex(m.account)) ?? '?'}${m.admin ? '*' : ''}`).sort();
  return `${state.name} [${state.policy === 1 ? 'admins' : 'admin-less'}] ${ms.join(' ')}`;
}

/**
 * An independent implementation of docs/spec/groups.md §G2 (sender-key chain, group message), written
 * from the spec text alone: it imports nothing from src/. The vector test checks the real code
 * against it, and the forgery tests use it to build messages the real encryptor never builds
 * (a member signing with its own key while claiming another member's device).
 */
import { gcm } from '@noble/ciphers/aes.js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';

const te = new TextEncoder();

const cat = (...p: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(p.reduce((n, x) => n + x.length, 0));
  let o = 0;
  for (const x of p) {
    out.set(x, o);
    o += x.length;
  }
  return out;
};
const u32 = (n: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
};

/** CK → (MK = HMAC(CK, 0x01), CK' = HMAC(CK, 0x02)). */
export function specChainStep(ck: Uint8Array): { mk: Uint8Array; next: Uint8Array } {
  return { mk: hmac(sha256, ck, Uint8Array.of(1)), next: hmac(sha256, ck, Uint8Array.of(2)) };
}

/** The message key at `iteration`, given the chain key at `from`. */
export function specMessageKey(ck: Uint8Array, from: number, iteration: number): Uint8Array {
  let c = ck;
  for (let i = from; i < iteration; i++) c = specChainStep(c).next;
  return specChainStep(c).mk;
}

/** Smallest bucket 2048·2^k ≥ n + 1 + 169 + 260, minus 169 + 260. */
export function specPaddedLength(n: number): number {
  let b = 2048;
  while (b < n + 1 + 169 + 260) b *= 2;
  return b - 169 - 260;
}

export function specDistribution(
  groupId: Uint8Array,
  keyId: number,
  iteration: number,
  chainKey: Uint8Array,
  signingPublicKey: Uint8Array,
  previous: { keyId: number; end: number } | null,
): Uint8Array {
  const prev = previous ? cat(Uint8Array.of(1), u32(previous.keyId), u32(previous.end)) : new Uint8Array(9);
  return cat(Uint8Array.of(1), groupId, u32(keyId), u32(iteration), chainKey, signingPublicKey, prev);
}

/** label-length ‖ label ‖ body (docs/spec/02-keys.md signatures). */
export function specSigned(label: string, body: Uint8Array): Uint8Array {
  const l = te.encode(label);
  return cat(Uint8Array.of(l.length), l, body);
}

export function specGroupMessage(p: {
  groupId: Uint8Array;
  sender: Uint8Array;
  keyId: number;
  iteration: number;
  salt: Uint8Array;
  mk: Uint8Array;
  plaintext: Uint8Array;
  signingSeed: Uint8Array;
}): Uint8Array {
  const header = cat(Uint8Array.of(1), p.groupId, p.sender, u32(p.keyId), u32(p.iteration), p.salt);
  const okm = hkdf(sha256, p.mk, p.salt, te.encode('MeshWhisper_GroupMessage_v1'), 44);
  const padded = new Uint8Array(specPaddedLength(p.plaintext.length));
  padded.set(p.plaintext);
  padded[p.plaintext.length] = 0x80;
  const ct = gcm(okm.slice(0, 32), okm.slice(32), header).encrypt(padded);
  const sig = ed25519.sign(specSigned('MeshWhisper_GroupMessageSig_v1', cat(header, ct)), p.signingSeed);
  return cat(header, ct, sig);
}

// ── Control operations and the fold (docs/spec/groups.md §G4), from the text alone ─────────────

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const cmp = (a: Uint8Array, b: Uint8Array): number => {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
};
const u16 = (n: number): Uint8Array => Uint8Array.of(n >> 8, n & 0xff);
const u64 = (n: number): Uint8Array => cat(u32(Math.floor(n / 2 ** 32)), u32(n >>> 0));

export type SpecBody =
  | { type: 'create'; policy: 1 | 2; name: string; members: { account: Uint8Array; devices: Uint8Array[] }[] }
  | { type: 'add'; account: Uint8Array; devices: Uint8Array[] }
  | { type: 'kick' | 'promote' | 'transferAdmin'; account: Uint8Array }
  | { type: 'leave' | 'makeAdminLess' }
  | { type: 'rename'; name: string }
  | { type: 'setDevices'; devices: Uint8Array[] };

const devs = (d: Uint8Array[]): Uint8Array => cat(Uint8Array.of(d.length), ...[...d].sort(cmp));
const nm = (s: string): Uint8Array => {
  const b = te.encode(s);
  return cat(u16(b.length), b);
};

/** Encodes and signs an operation (§G4.1); returns the bytes and the id. */
export function specOperation(p: {
  groupId: Uint8Array;
  account: Uint8Array;
  deviceSeed: Uint8Array;
  time: number;
  parents: Uint8Array[];
  body: SpecBody;
}): { encoded: Uint8Array; id: Uint8Array } {
  const b = p.body;
  let body: Uint8Array;
  switch (b.type) {
    case 'create': {
      const ms = [...b.members].sort((x, y) => cmp(x.account, y.account));
      body = cat(Uint8Array.of(1, b.policy), nm(b.name), u16(ms.length), ...ms.map((m) => cat(m.account, devs(m.devices))));
      break;
    }
    case 'add':
      body = cat(Uint8Array.of(2), b.account, devs(b.devices));
      break;
    case 'kick':
      body = cat(Uint8Array.of(3), b.account);
      break;
    case 'leave':
      body = Uint8Array.of(4);
      break;
    case 'rename':
      body = cat(Uint8Array.of(5), nm(b.name));
      break;
    case 'promote':
      body = cat(Uint8Array.of(6), b.account);
      break;
    case 'transferAdmin':
      body = cat(Uint8Array.of(7), b.account);
      break;
    case 'makeAdminLess':
      body = Uint8Array.of(8);
      break;
    case 'setDevices':
      body = cat(Uint8Array.of(9), devs(b.devices));
      break;
  }
  const parents = [...p.parents].sort(cmp);
  const unsigned = cat(Uint8Array.of(1), p.groupId, p.account, ed25519.getPublicKey(p.deviceSeed), u64(p.time), Uint8Array.of(parents.length), ...parents, body);
  const encoded = cat(unsigned, ed25519.sign(specSigned('MeshWhisper_GroupOp_v1', unsigned), p.deviceSeed));
  return { encoded, id: sha256(encoded) };
}

interface SOp {
  id: Uint8Array;
  hexId: string;
  account: Uint8Array;
  device: Uint8Array;
  parents: string[];
  type: number;
  body: Uint8Array;
}

function specDecode(e: Uint8Array): SOp {
  let o = 1 + 32;
  const account = e.slice(o, (o += 32));
  const device = e.slice(o, (o += 32));
  o += 8;
  const np = e[o++]!;
  const parents: string[] = [];
  for (let i = 0; i < np; i++) parents.push(hex(e.slice(o, (o += 32))));
  const id = sha256(e);
  return { id, hexId: hex(id), account, device, parents, type: e[o]!, body: e.slice(o + 1, e.length - 64) };
}

function readDevs(b: Uint8Array, o: number): { devices: string[]; next: number } {
  const n = b[o]!;
  const devices: string[] = [];
  for (let i = 0; i < n; i++) devices.push(hex(b.slice(o + 1 + 32 * i, o + 33 + 32 * i)));
  return { devices, next: o + 1 + 32 * n };
}
const readNm = (b: Uint8Array, o: number): { name: string; next: number } => {
  const n = (b[o]! << 8) | b[o + 1]!;
  return { name: new TextDecoder().decode(b.slice(o + 2, o + 2 + n)), next: o + 2 + n };
};

export interface SpecState {
  name: string;
  policy: number;
  members: { account: string; devices: string[]; admin: boolean }[];
  applied: string[];
  digest: string;
}

/** The state of §G4.4 for a set of encoded operations (the root first), with the digest of §G4.6. */
export function specGroupState(groupId: Uint8Array, encoded: Uint8Array[]): SpecState {
  const ops = encoded.map(specDecode);
  const byId = new Map(ops.map((o) => [o.hexId, o]));
  const root = ops[0]!;
  const ancMemo = new Map<string, Set<string>>();
  const anc = (o: SOp): Set<string> => {
    let a = ancMemo.get(o.hexId);
    if (!a) {
      a = new Set();
      for (const p of o.parents) {
        a.add(p);
        for (const x of anc(byId.get(p)!)) a.add(x);
      }
      ancMemo.set(o.hexId, a);
    }
    return a;
  };
  const depthMemo = new Map<string, number>();
  const depth = (o: SOp): number => {
    let d = depthMemo.get(o.hexId);
    if (d === undefined) {
      d = o.parents.length === 0 ? 0 : 1 + Math.max(...o.parents.map((p) => depth(byId.get(p)!)));
      depthMemo.set(o.hexId, d);
    }
    return d;
  };
  const concurrent = (a: SOp, b: SOp): boolean => a !== b && !anc(a).has(b.hexId) && !anc(b).has(a.hexId);
  const removesAuthor = (r: SOp, o: SOp): boolean => {
    if (r.type === 3) return hex(r.body.slice(0, 32)) === hex(o.account);
    if (r.type === 4) return hex(r.account) === hex(o.account);
    if (r.type === 9) return hex(r.account) === hex(o.account) && !readDevs(r.body, 0).devices.includes(hex(o.device));
    return false;
  };
  const effMemo = new Map<string, boolean>();
  const effective = (r: SOp): boolean => {
    let e = effMemo.get(r.hexId);
    if (e === undefined) {
      const set = [...anc(r)].map((x) => byId.get(x)!);
      set.push(r);
      e = fold(set).applied.includes(r.hexId);
      effMemo.set(r.hexId, e);
    }
    return e;
  };
  type M = { account: string; devices: string[]; admin: boolean; joined: [number, number] };
  function fold(set: SOp[]): { name: string; policy: number; members: Map<string, M>; applied: string[] } {
    const order = [...set].sort((a, b) => depth(a) - depth(b) || cmp(a.id, b.id));
    const st = { name: '', policy: 1, members: new Map<string, M>(), applied: [] as string[] };
    const taken = (devices: string[], except?: M): boolean => [...st.members.values()].some((m) => m !== except && m.devices.some((d) => devices.includes(d)));
    order.forEach((o, pos) => {
      let ok = false;
      if (o.type === 1) {
        if (o === root) {
          st.policy = o.body[0]!;
          const n1 = readNm(o.body, 1);
          st.name = n1.name;
          let off = n1.next + 2;
          const count = (o.body[n1.next]! << 8) | o.body[n1.next + 1]!;
          for (let i = 0; i < count; i++) {
            const account = hex(o.body.slice(off, off + 32));
            const d = readDevs(o.body, off + 32);
            st.members.set(account, { account, devices: d.devices, admin: false, joined: [pos, i] });
            off = d.next;
          }
          const me = st.members.get(hex(o.account));
          ok = !!me && me.devices.includes(hex(o.device));
          if (ok && st.policy === 1) me!.admin = true;
          if (!ok) st.members.clear();
        }
      } else {
        const me = st.members.get(hex(o.account));
        const suppressed = o.type !== 4 && set.some((r) => [3, 4, 9].includes(r.type) && concurrent(r, o) && removesAuthor(r, o) && effective(r));
        if (me && me.devices.includes(hex(o.device)) && !suppressed) {
          const admins = st.policy === 1;
          const manager = admins ? me.admin : true;
          const target = o.body.length >= 32 ? st.members.get(hex(o.body.slice(0, 32))) : undefined;
          switch (o.type) {
            case 2: {
              const account = hex(o.body.slice(0, 32));
              const d = readDevs(o.body, 32).devices;
              ok = manager && !st.members.has(account) && st.members.size < 1000 && !taken(d);
              if (ok) st.members.set(account, { account, devices: d, admin: false, joined: [pos, 0] });
              break;
            }
            case 3:
              ok = admins && me.admin && !!target && target !== me;
              if (ok) st.members.delete(target!.account);
              break;
            case 4:
              ok = true;
              st.members.delete(me.account);
              break;
            case 5:
              ok = manager;
              if (ok) st.name = readNm(o.body, 0).name;
              break;
            case 6:
            case 7:
              ok = admins && me.admin && !!target && !target.admin;
              if (ok) {
                target!.admin = true;
                if (o.type === 7) me.admin = false;
              }
              break;
            case 8:
              ok = admins && me.admin;
              if (ok) {
                st.policy = 2;
                for (const m of st.members.values()) m.admin = false;
              }
              break;
            case 9: {
              const d = readDevs(o.body, 0).devices;
              ok = !taken(d, me);
              if (ok) me.devices = d;
              break;
            }
          }
        }
      }
      if (ok) st.applied.push(o.hexId);
      // Successor rule (§G4.5).
      const ms = [...st.members.values()];
      if (st.policy === 1 && ms.length > 0 && !ms.some((m) => m.admin)) {
        ms.sort((a, b) => a.joined[0] - b.joined[0] || a.joined[1] - b.joined[1])[0]!.admin = true;
      }
    });
    return st;
  }
  const st = fold(ops);
  const members = [...st.members.values()].sort((a, b) => (a.account < b.account ? -1 : 1)).map((m) => ({ account: m.account, devices: [...m.devices].sort(), admin: m.admin }));
  const fromHex = (h: string): Uint8Array => Uint8Array.from(h.match(/../g)!.map((x) => parseInt(x, 16)));
  const body = cat(
    groupId,
    Uint8Array.of(st.policy),
    nm(st.name),
    u16(members.length),
    ...members.map((m) => cat(fromHex(m.account), Uint8Array.of(m.admin ? 1 : 0, m.devices.length), ...m.devices.map(fromHex))),
  );
  return { name: st.name, policy: st.policy, members, applied: st.applied, digest: hex(sha256(specSigned('MeshWhisper_GroupState_v1', body))) };
}

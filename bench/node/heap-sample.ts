/**
 * Where a running node's JavaScript allocations come from, and which of them outlive the young
 * generation (are promoted, and so end up in a major GC). Attaches to a node started with
 * `--inspect=127.0.0.1:<port>` (e.g. `NODE_FLAGS=--inspect=127.0.0.1:9333 RSS_GC=0 npm run bench`),
 * samples with the DevTools protocol's `HeapProfiler.startSampling` for SECONDS, and prints the
 * allocation sites (six frames of stack) by sampled bytes:
 *
 *   node --import tsx ./heap-sample.ts 9333 4 promoted   # objects that survived every scavenge they met
 *   node --import tsx ./heap-sample.ts 9333 3 all        # everything allocated
 *
 * `promoted` drops the samples of objects a minor GC collected (`includeObjectsCollectedByMinorGC:
 * false`) and keeps those a major GC collected: what is left survived the young generation — plus
 * what is still young and alive when sampling stops (at most a young generation's worth). JS heap
 * objects only: the bytes of an ArrayBuffer's backing store are outside V8's heap and not counted.
 * A benchmark aid: the inspector slows the node while it samples.
 */
import WebSocket from 'ws';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children: ProfileNode[];
}
interface SamplingProfile {
  readonly head: ProfileNode;
  readonly samples: { readonly size: number; readonly nodeId: number }[];
}

const [port = '9333', secondsArg = '3', mode = 'promoted'] = process.argv.slice(2);
if (mode !== 'promoted' && mode !== 'all') throw new Error(`mode is promoted or all, not ${mode}`);
const seconds = Number(secondsArg);

const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
if (!targets[0]) throw new Error(`no inspector target on port ${port}`);
const ws = new WebSocket(targets[0].webSocketDebuggerUrl, { maxPayload: 1 << 30 });
await new Promise<void>((resolve, reject) => {
  ws.once('open', () => resolve());
  ws.once('error', reject);
});
let nextId = 0;
const pending = new Map<number, (m: { result?: unknown; error?: { message: string } }) => void>();
ws.on('message', (d) => {
  const m = JSON.parse(String(d)) as { id?: number; result?: unknown; error?: { message: string } };
  if (m.id !== undefined) pending.get(m.id)?.(m);
});
const call = async (method: string, params: object = {}): Promise<unknown> => {
  const id = ++nextId;
  const m = await new Promise<{ result?: unknown; error?: { message: string } }>((resolve) => {
    pending.set(id, resolve);
    ws.send(JSON.stringify({ id, method, params }));
  });
  pending.delete(id);
  if (m.error) throw new Error(`${method}: ${m.error.message}`);
  return m.result;
};

await call('HeapProfiler.enable');
await call('HeapProfiler.startSampling', {
  samplingInterval: 2048,
  includeObjectsCollectedByMajorGC: true,
  includeObjectsCollectedByMinorGC: mode === 'all',
});
await new Promise((r) => setTimeout(r, seconds * 1000));
const { profile } = (await call('HeapProfiler.stopSampling')) as { profile: SamplingProfile };
ws.close();

const parent = new Map<number, ProfileNode>();
const byId = new Map<number, ProfileNode>();
const walk = (n: ProfileNode, p: ProfileNode | undefined): void => {
  byId.set(n.id, n);
  if (p) parent.set(n.id, p);
  for (const c of n.children) walk(c, n);
};
walk(profile.head, undefined);

const bySite = new Map<string, number>();
let total = 0;
for (const s of profile.samples) {
  total += s.size;
  const stack: string[] = [];
  for (let n = byId.get(s.nodeId); n && stack.length < 6; n = parent.get(n.id)) {
    const f = n.callFrame;
    stack.push(`${f.functionName || '(anonymous)'}@${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`);
  }
  const key = stack.join(' < ');
  bySite.set(key, (bySite.get(key) ?? 0) + s.size);
}
console.log(`${mode}: ${(total / 1024 / 1024).toFixed(1)} MiB sampled in ${seconds} s (${((total / seconds / 1024 / 1024)).toFixed(1)} MiB/s)`);
for (const [site, bytes] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
  console.log(`${(bytes / 1024).toFixed(0).padStart(8)} KiB  ${((bytes / total) * 100).toFixed(1).padStart(5)} %  ${site}`);
}

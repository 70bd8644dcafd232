/**
 * A device connection's in-flight bookkeeping, the way the node uses it at 10,000 msgs/s: each
 * connection has a few envelopes in flight at a time (delivered, then acked and deleted). The
 * open-addressing table (packages/node/src/socket/in-flight.ts) against the Map keyed by a latin1
 * string of the id that it replaced. Per delivered message: one insert, one lookup (the ack), one
 * delete (the ack's commit). Reports ns per message and what the heap kept: the young-generation
 * bytes that scavenges copied or promoted (V8 --trace-gc-nvp would say the same; here from
 * v8.getHeapStatistics before and after, with a full GC on either side).
 *
 *   cd bench/node && node --expose-gc --import tsx ./in-flight.ts [messages=2000000] [connections=1000]
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { InFlightTable } from '../../packages/node/src/socket/in-flight.js';

const MESSAGES = Number(process.argv[2] ?? 2_000_000);
const CONNECTIONS = Number(process.argv[3] ?? 1000);
/** Envelopes in flight per connection before the oldest is acked (as at 10,000/s: one to a few). */
const DEPTH = 3;

const idKey = (id: Uint8Array): string =>
  String.fromCharCode(id[0]!, id[1]!, id[2]!, id[3]!, id[4]!, id[5]!, id[6]!, id[7]!, id[8]!, id[9]!, id[10]!, id[11]!, id[12]!, id[13]!, id[14]!, id[15]!);

interface Book {
  add(id: Uint8Array, seq: number): void;
  get(id: Uint8Array): number | undefined;
  delete(id: Uint8Array): void;
}
const mapBook = (): Book => {
  const m = new Map<string, number>();
  return {
    add: (id, seq) => void m.set(idKey(id), seq),
    get: (id) => m.get(idKey(id)),
    delete: (id) => void m.delete(idKey(id)),
  };
};
const tableBook = (): Book => {
  const t = new InFlightTable();
  return { add: (id, seq) => void t.add(id, seq), get: (id) => t.get(id), delete: (id) => void t.delete(id) };
};

const oldSpace = (): number => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!.space_used_size;
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

// Ids cut from one block, as the node's IdSource does.
const block = new Uint8Array(randomBytes(16 * 65_536));
const ids = Array.from({ length: 65_536 }, (_, i) => block.subarray(i * 16, i * 16 + 16));

function run(name: string, make: () => Book): void {
  const books = Array.from({ length: CONNECTIONS }, make);
  const queues = Array.from({ length: CONNECTIONS }, () => [] as Uint8Array[]);
  gc!();
  const before = oldSpace();
  const t0 = performance.now();
  let sink = 0;
  for (let n = 0; n < MESSAGES; n++) {
    const c = n % CONNECTIONS;
    const book = books[c]!;
    const q = queues[c]!;
    const id = ids[n & 65_535]!;
    book.add(id, n + 1);
    q.push(id);
    if (q.length > DEPTH) {
      const acked = q.shift()!;
      sink += book.get(acked) ?? 0;
      book.delete(acked);
    }
  }
  const ms = performance.now() - t0;
  const grown = oldSpace() - before;
  gc!();
  console.log(`${name.padEnd(28)} ${((ms * 1e6) / MESSAGES).toFixed(0).padStart(4)} ns per message; old space grew ${(grown / 1e6).toFixed(1)} MB over ${MESSAGES.toLocaleString('en-US')} messages (checksum ${sink % 1000})`);
}

for (let round = 0; round < 3; round++) {
  run('Map<latin1 string, number>', mapBook);
  run('InFlightTable', tableBook);
}

// The SQLite writer thread of SqliteNodeStore (sqlite-store.ts): the hot-path writes — durable
// sends (enqueue) and acknowledgements (ack) — and the WAL checkpoints run here, on their own
// connection to the same database file, so that statement execution and every fsync happen off
// the node's event loop (the second core).
//
// Group commit: requests that arrived while the previous transaction was committing are applied
// together in ONE IMMEDIATE transaction (one fsync, WAL + synchronous=FULL), and every request is
// answered only after that transaction committed. If the combined transaction fails, each request
// is retried alone, so one bad request cannot fail its neighbours; on a full disk the reserve file
// is released so that acks (deletions) still commit while sends are refused.
//
// Plain JavaScript on purpose: a worker thread must be loadable by plain Node from src/ (vitest,
// tsx) and from dist/ (tsc copies it: allowJs). The byte layout of requests is in writer-wire.ts.
// The quota logic mirrors the contract in node-store.ts (EnqueueItem / MailboxLimits).
import { appendFileSync, closeSync, fsyncSync, openSync, readSync, readlinkSync, rmSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setImmediate, setInterval, setTimeout } from 'node:timers';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const { file, reserveFile, forgetWithinMs, walCycleFrames, schemaVersion, mainWaits, mainYieldMaxMs, yieldNotice, nice } = workerData;

// ── scheduling: the event loop first (STORE_WRITER_NICE) ──
// Linux schedules each thread as a task with its own nice value. This thread's work is batched and
// waits for fsync anyway, while the event loop's delays are every message's latency: so when
// more threads are runnable than there are cores, the event loop (and whatever else runs at the
// process's priority) should get the core first. Raising one's own nice value needs no privilege.
// Returns the thread's nice value now, or undefined where threads cannot be told apart
// (no /proc/thread-self: not Linux) or the call failed.
function lowerPriority(by) {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid) || tid <= 0) return undefined;
    if (by > 0) setPriority(tid, Math.min(19, getPriority(tid) + by));
    return getPriority(tid);
  } catch {
    return undefined;
  }
}
const niceNow = lowerPriority(nice);

// ── latency tracing (bench/node TRACE=1; latency-trace.ts): durations only, one line a second ──
const traceFile = process.env.MW_LATENCY_TRACE;
const LOG_G = Math.log(1.02);
let traceStages = new Map();
function traceStage(name, ms) {
  let h = traceStages.get(name);
  if (!h) traceStages.set(name, (h = { n: 0, max: 0, b: {} }));
  const k = Math.max(0, Math.floor(Math.log(Math.max(1, ms * 1000)) / LOG_G));
  h.b[k] = (h.b[k] ?? 0) + 1;
  h.n++;
  if (ms > h.max) h.max = ms;
}
if (traceFile) {
  setInterval(() => {
    // busyWaits: BEGIN IMMEDIATE attempts that found another process's writer holding the lock (WORKERS > 1).
    const line = { t: Date.now(), src: 'writer', stages: Object.fromEntries(traceStages), busyWaits };
    traceStages = new Map();
    try {
      appendFileSync(traceFile, `${JSON.stringify(line)}\n`);
    } catch {
      /* best effort */
    }
  }, 1000).unref();
}

const db = new Database(file, { fileMustExist: true });
db.pragma('busy_timeout = 5000');
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.pragma('secure_delete = ON');
db.pragma('foreign_keys = ON');
// Same WAL cycle as every other writing connection (db.ts WAL_CYCLE_FRAMES; forgetting below relies on it).
db.pragma(`wal_autocheckpoint = ${walCycleFrames}`);
db.pragma(`journal_size_limit = ${32 + walCycleFrames * (db.pragma('page_size', { simple: true }) + 24)}`);
db.pragma('temp_store = MEMORY'); // statement journals and RETURNING tables never touch /var/tmp (db.ts)
if (db.pragma('user_version', { simple: true }) !== schemaVersion) throw new Error('writer: database schema differs from the main connection');

const st = {
  token: db.prepare('SELECT 1 AS one FROM delivery_tokens WHERE mailbox = ? AND token_hash = ?'),
  // The first envelope of a group for a mailbox: does the device exist, its counters, and is the
  // token valid — one statement instead of three (the token: an empty hash for tokenless mail).
  lookup: db.prepare(
    `SELECT s.messages, s.bytes, s.tokenless, s.next_seq,
       EXISTS (SELECT 1 FROM delivery_tokens t WHERE t.mailbox = d.mailbox AND t.token_hash = ?) AS tok
     FROM devices d LEFT JOIN mailbox_stats s ON s.mailbox = d.mailbox WHERE d.mailbox = ?`,
  ).raw(),
  // A slot another connection filled since this thread last looked is skipped (no change), not an error.
  insert: db.prepare(
    'INSERT INTO messages (slot, mailbox, seq, received_at, with_token, id, payload) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (slot) DO NOTHING',
  ),
  upsertStats: db.prepare(
    `INSERT INTO mailbox_stats (mailbox, messages, bytes, tokenless, next_seq) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (mailbox) DO UPDATE SET messages = messages + excluded.messages, bytes = bytes + excluded.bytes,
       tokenless = tokenless + excluded.tokenless, next_seq = max(next_seq, excluded.next_seq)`,
  ),
  // Acks: the counters go down in one statement; a drained mailbox keeps no row (mailbox.ts).
  ackStats: db.prepare('UPDATE mailbox_stats SET messages = messages - ?, bytes = bytes - ?, tokenless = tokenless - ? WHERE mailbox = ? RETURNING messages, gap_expired, gap_evicted').raw(),
  deleteStats: db.prepare('DELETE FROM mailbox_stats WHERE mailbox = ?'),
  // Eviction victims: the oldest first-contact envelope (partial index), else the oldest of all.
  oldestTokenless: db.prepare('SELECT seq, slot, length(payload) AS size FROM messages WHERE mailbox = ? AND with_token = 0 ORDER BY seq LIMIT 1'),
  oldest: db.prepare('SELECT seq, slot, length(payload) AS size FROM messages WHERE mailbox = ? ORDER BY seq LIMIT 1'),
  deleteSlot: db.prepare('DELETE FROM messages WHERE slot = ?'),
  // By (mailbox, seq) when the connection knows the seq (the id must match), else by id: a scan of
  // the mailbox, as no index on the random ids exists (migration 7).
  deleteAckSeq: db.prepare('DELETE FROM messages WHERE mailbox = ? AND seq = ? AND id = ? RETURNING slot, length(payload) AS size, with_token').raw(),
  deleteAck: db.prepare('DELETE FROM messages WHERE mailbox = ? AND id = ? RETURNING slot, length(payload) AS size, with_token').raw(),
  // An ack of envelopes with consecutive seqs (a Deliver frame's worth, a drain): one statement that
  // deletes exactly the rows deleteAckSeq would, one by one — seq lo + k only if it holds the k-th
  // acked id (the ids, 16 bytes each, concatenated in one blob). No row is returned but what the
  // counters and the slot bitmap need: no id Buffer per row, no savepoint to undo a mismatch.
  deleteRange: db.prepare('DELETE FROM messages WHERE mailbox = ? AND seq BETWEEN ? AND ? AND id = substr(?, (seq - ?) * 16 + 1, 16) RETURNING slot, length(payload) AS size, with_token').raw(),
  gapAdd: db.prepare(
    `INSERT INTO mailbox_stats (mailbox, gap_expired, gap_evicted) VALUES (?, 0, ?)
     ON CONFLICT (mailbox) DO UPDATE SET gap_evicted = gap_evicted + excluded.gap_evicted`,
  ),
  slots: db.prepare('SELECT slot FROM messages ORDER BY slot').pluck(),
};

// ── storage slots (migration 9): where a new envelope's row goes ──
// A bitmap of the slots in use, as far as this thread knows; a new envelope takes the lowest free
// slot, so envelopes written together share pages and the pages freed by acks are filled again
// first. Slots freed by other connections (expiry, deletions on the main connection, another
// process's writer) are learnt at the next resync; a slot filled by another writer makes the
// INSERT change nothing (ON CONFLICT DO NOTHING): it is marked used and the next one tried. A
// transaction that rolls back leaves the bitmap pessimistic (slots marked used stay unused until
// the next resync) or optimistic (a freed slot still holds its row: the INSERT skips it) — never wrong.
const slots = {
  bits: new Uint32Array(1024),
  /** No free slot below this one. */
  low: 1,
  mark(slot) {
    const w = slot >>> 5;
    if (w >= this.bits.length) {
      let n = this.bits.length * 2;
      while (n <= w) n *= 2;
      const b = new Uint32Array(n);
      b.set(this.bits);
      this.bits = b;
    }
    this.bits[w] |= 1 << (slot & 31);
  },
  free(slot) {
    if (!Number.isSafeInteger(slot) || slot < 1 || slot >>> 5 >= this.bits.length) return;
    this.bits[slot >>> 5] &= ~(1 << (slot & 31));
    if (slot < this.low) this.low = slot;
  },
  /** The lowest free slot (slot 0 is never used), marked used. */
  take() {
    let w = this.low >>> 5;
    const bits = this.bits;
    while (w < bits.length && bits[w] === 0xffffffff) w++;
    let slot = w * 32;
    if (w < bits.length) {
      const inv = ~bits[w];
      slot += 31 - Math.clz32(inv & -inv);
    }
    this.mark(slot);
    this.low = slot + 1;
    return slot;
  },
  /** Rebuilds the bitmap from the table (outside any transaction). */
  resync() {
    const bits = new Uint32Array(Math.max(1024, this.bits.length));
    this.bits = bits;
    this.mark(0);
    for (const slot of st.slots.iterate()) this.mark(slot);
    this.low = 1;
  },
};
slots.resync();
let lastResync = performance.now();
/** Deletions on the main connection (expiry, device deletion) freed slots this thread does not know of. */
const RESYNC_MIN_INTERVAL_MS = 60_000;
let resyncWanted = false;

const NO_TOKEN = new Uint8Array(0);
const UNKNOWN_MAILBOX = -1;
const BAD_TOKEN = -2;
const LANE_FULL = -3;
const MAILBOX_FULL = -4;

const isFull = (e) => e?.code === 'SQLITE_FULL' || e?.code === 'ENOSPC';
const keyOf = (b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');

/** Parses an enqueue group (writer-wire.ts) into views of the transferred buffer. */
function readEnqueue(buf) {
  const u8 = new Uint8Array(buf);
  const dv = new DataView(buf);
  const n = dv.getUint32(0, true);
  const items = new Array(n);
  let o = 4;
  const take16 = () => {
    const len = dv.getUint16(o, true);
    const v = u8.subarray(o + 2, o + 2 + len);
    o += 2 + len;
    return v;
  };
  for (let i = 0; i < n; i++) {
    const mailbox = take16();
    const id = take16();
    const th = take16();
    const receivedAt = dv.getFloat64(o, true);
    const plen = dv.getUint32(o + 8, true);
    const payload = u8.subarray(o + 12, o + 12 + plen);
    o += 12 + plen;
    items[i] = { mailbox, id, tokenHash: th.length === 0 ? undefined : th, receivedAt, payload };
  }
  return items;
}

function readAcks(buf) {
  const u8 = new Uint8Array(buf);
  const dv = new DataView(buf);
  const n = dv.getUint32(0, true);
  const out = new Array(n);
  let o = 4;
  for (let i = 0; i < n; i++) {
    const ml = dv.getUint16(o, true);
    const mailbox = u8.subarray(o + 2, o + 2 + ml);
    o += 2 + ml;
    const k = dv.getUint32(o, true);
    o += 4;
    const ids = new Array(k);
    const seqs = new Array(k);
    for (let j = 0; j < k; j++) {
      const il = dv.getUint16(o, true);
      ids[j] = u8.subarray(o + 2, o + 2 + il);
      o += 2 + il;
      seqs[j] = dv.getFloat64(o, true);
      o += 8;
    }
    out[i] = { mailbox, ids, seqs };
  }
  return out;
}

/**
 * One envelope within the mailbox quota. Tokenless (first-contact) mail never displaces anything;
 * token mail evicts the oldest tokenless envelopes first, then the oldest, counted as gaps.
 * `s` is the mailbox's running counters within this transaction (updated in place); they are
 * written once per mailbox and transaction (flushStats), not once per envelope.
 */
function insertOne(e, s, limits, out, k) {
  const size = e.payload.length;
  const withToken = e.tokenHash !== undefined;
  if (!withToken) {
    if (s.tokenless >= limits.firstContactMaxMessages) return (out[k] = LANE_FULL);
    if (s.messages + 1 > limits.maxMessages || s.bytes + size > limits.maxBytes) return (out[k] = MAILBOX_FULL);
  }
  let evicted = 0;
  while (s.messages + 1 > limits.maxMessages || s.bytes + size > limits.maxBytes) {
    const oldestTokenless = st.oldestTokenless.get(e.mailbox);
    const victim = oldestTokenless ?? st.oldest.get(e.mailbox);
    if (!victim) break;
    st.deleteSlot.run(victim.slot);
    slots.free(victim.slot);
    s.messages--;
    s.bytes -= victim.size;
    evicted++;
    if (oldestTokenless !== undefined) s.tokenless--;
  }
  const seq = s.next_seq;
  for (;;) {
    const slot = slots.take();
    if (st.insert.run(slot, e.mailbox, seq, e.receivedAt, withToken ? 1 : 0, e.id, e.payload).changes === 1) break;
  }
  s.evicted += evicted;
  s.messages++;
  s.bytes += size;
  if (!withToken) s.tokenless++;
  s.next_seq = seq + 1;
  out[k] = seq;
  out[k + 1] = evicted;
  return seq;
}

/** Applies one enqueue group inside the current transaction: Float64Array of (seq | refusal, evicted) pairs. */
function applyEnqueue(items, limits, known) {
  const out = new Float64Array(items.length * 2);
  for (let i = 0; i < items.length; i++) {
    const it = items[i];
    const key = keyOf(it.mailbox);
    let m = known.get(key);
    if (m === undefined) {
      const r = st.lookup.get(it.tokenHash ?? NO_TOKEN, it.mailbox);
      if (r === undefined) m = null;
      else {
        // r: [messages, bytes, tokenless, next_seq, tok] (raw rows: no per-row object with named properties)
        const s = r[3] !== null ? { messages: r[0], bytes: r[1], tokenless: r[2], next_seq: r[3] } : { messages: 0, bytes: 0, tokenless: 0, next_seq: 1 };
        m = { mailbox: it.mailbox, tokens: new Map(), start: { ...s }, s: { ...s, evicted: 0 } };
        if (it.tokenHash !== undefined) m.tokens.set(keyOf(it.tokenHash), r[4] === 1);
      }
      known.set(key, m);
    }
    if (m === null) {
      out[2 * i] = UNKNOWN_MAILBOX;
      continue;
    }
    if (it.tokenHash !== undefined) {
      const tk = keyOf(it.tokenHash);
      let good = m.tokens.get(tk);
      if (good === undefined) m.tokens.set(tk, (good = st.token.get(it.mailbox, it.tokenHash) !== undefined));
      if (!good) {
        out[2 * i] = BAD_TOKEN;
        continue;
      }
    }
    insertOne(it, m.s, limits, out, 2 * i);
  }
  return out;
}

/** Writes each touched mailbox's counters once: the deltas of this transaction, the next seq, the evictions. */
function flushStats(known) {
  for (const m of known.values()) {
    if (m === null || m.s.next_seq === m.start.next_seq) continue;
    const { s, start } = m;
    st.upsertStats.run(m.mailbox, s.messages - start.messages, s.bytes - start.bytes, s.tokenless - start.tokenless, s.next_seq);
    if (s.evicted > 0) st.gapAdd.run(m.mailbox, s.evicted);
  }
}

/** Acks of at least this many envelopes with consecutive seqs and 16-byte ids (every id the node assigns) are deleted by one range statement. */
const RANGE_MIN = 4;
/** The ids of a range ack, concatenated (the statement's 4th parameter); undefined if the ack does not qualify. */
function rangeIds(ids, seqs) {
  if (ids.length < RANGE_MIN || !(seqs[0] > 0)) return undefined;
  for (let j = 0; j < ids.length; j++) if (ids[j].length !== 16 || seqs[j] !== seqs[0] + j) return undefined;
  const blob = Buffer.allocUnsafe(ids.length * 16);
  for (let j = 0; j < ids.length; j++) blob.set(ids[j], j * 16);
  return blob;
}

function applyAcks(requests) {
  const counts = new Array(requests.length);
  for (let i = 0; i < requests.length; i++) {
    const { mailbox, ids, seqs } = requests[i];
    let n = 0;
    let bytes = 0;
    let tokenless = 0;
    const blob = rangeIds(ids, seqs);
    if (blob !== undefined) {
      for (const r of st.deleteRange.all(mailbox, seqs[0], seqs[0] + ids.length - 1, blob, seqs[0])) {
        slots.free(r[0]); // [slot, size, with_token]
        n++;
        bytes += r[1];
        if (r[2] === 0) tokenless++;
      }
    } else {
      for (let j = 0; j < ids.length; j++) {
        const r = seqs[j] > 0 ? st.deleteAckSeq.get(mailbox, seqs[j], ids[j]) : st.deleteAck.get(mailbox, ids[j]);
        if (!r) continue;
        slots.free(r[0]); // [slot, size, with_token]
        n++;
        bytes += r[1];
        if (r[2] === 0) tokenless++;
      }
    }
    if (n > 0) {
      const r = st.ackStats.get(n, bytes, tokenless, mailbox);
      if (r !== undefined && r[0] <= 0 && r[1] <= 0 && r[2] <= 0) st.deleteStats.run(mailbox); // [messages, gap_expired, gap_evicted]
    }
    counts[i] = n;
  }
  return counts;
}

// ── forgetting: deleted data leaves the WAL within forgetWithinMs ──
// A deleted row's earlier page images stay in WAL frames until those frames are overwritten or
// the file is cut. Cutting it (checkpoint TRUNCATE) stalls this thread for the backfill, the
// ftruncate and their fsyncs (5–20 ms under load, every second: the p99 of a busy node). Under
// load the WAL is overwritten anyway: every WAL_CYCLE_FRAMES frames an automatic checkpoint lets
// the next commit restart the log from its first frame (a new cycle; its salt-1 in the WAL header
// is the previous one's plus one, whichever connection restarts it), and journal_size_limit cuts
// the file back to WAL_CYCLE_FRAMES frames at that restart. So once salt-1 has moved on by two
// since a deletion committed, one whole cycle — at least WAL_CYCLE_FRAMES frames from the start
// of the file — was written after it, the tail beyond was cut, and no frame older than the
// deletion is left. A deletion that has not seen that by its deadline gets the TRUNCATE, as before.
// (Explicit checkpoints elsewhere are TRUNCATEs: a file cut to zero is trivially clean.)
const WAL_HEADER = Buffer.alloc(32);
// The WAL file stays while this connection is open (SQLite deletes it with the last connection;
// TRUNCATE keeps the file), so one descriptor serves every read: one pread per deletion commit.
// SQLite takes no locks on -wal (its locks are on the database and -shm), so this descriptor
// cannot release one of SQLite's POSIX locks when it is closed. (A writer thread that dies leaks it: one
// descriptor per restart of the thread.)
let walFd;
/** salt-1 of the WAL file's current cycle, or undefined when the file is empty or unreadable. */
function walSalt() {
  try {
    walFd ??= openSync(`${file}-wal`, 'r');
    if (readSync(walFd, WAL_HEADER, 0, 32, 0) < 32) return undefined;
    const magic = WAL_HEADER.readUInt32BE(0);
    if (magic !== 0x377f0682 && magic !== 0x377f0683) return undefined;
    return WAL_HEADER.readUInt32BE(16);
  } catch {
    closeWalFd(); // opened again at the next read
    return undefined;
  }
}
/**
 * Makes every commit so far durable: fsync of the WAL file (SqliteWriter.sync). The main connection
 * commits with synchronous=NORMAL — its COMMIT writes its frames but does not fsync — and its
 * caller is answered only after this (sqlite-store.ts #tx). Frames that a checkpoint has copied to the
 * database file meanwhile are durable there: a checkpoint fsyncs the WAL before and the database after.
 */
function syncWal() {
  // A failed fsync is not retried (a second one can succeed after the data was lost): the error
  // goes to the callers.
  walFd ??= openSync(`${file}-wal`, 'r');
  fsyncSync(walFd);
}
function closeWalFd() {
  if (walFd === undefined) return;
  try {
    closeSync(walFd);
  } catch {
    /* already closed */
  }
  walFd = undefined;
}
/** Deletions not yet known to be gone from the WAL: one entry per cycle (salt), oldest first. */
let forgets = [];
/** Deletion deadlines met by a TRUNCATE / found already overwritten. */
const forgetStats = { truncates: 0, overwritten: 0 };
let checkpointTimer;
let closed = false;
/** A deletion committed (or the main connection reports one): it must be gone by now + forgetWithinMs. */
function deletionCommitted() {
  if (closed) return;
  const salt = walSalt();
  const last = forgets[forgets.length - 1];
  if (last && last.salt === salt && salt !== undefined) return; // same cycle: the earlier deadline binds
  forgets.push({ salt, deadline: performance.now() + forgetWithinMs });
  armForgetTimer();
}
function armForgetTimer() {
  if (checkpointTimer || closed || forgets.length === 0) return;
  checkpointTimer = setTimeout(() => {
    checkpointTimer = undefined;
    forgetDue();
  }, Math.max(0, forgets[0].deadline - performance.now()));
}
function forgetDue() {
  if (closed) return;
  const now = walSalt();
  // Overwritten: a whole cycle began and ended after the deletion (or the file is empty).
  const before = forgets.length;
  forgets = forgets.filter((f) => now !== undefined && (f.salt === undefined || ((now - f.salt) >>> 0) < 2));
  forgetStats.overwritten += before - forgets.length;
  if (forgets.length > 0 && forgets[0].deadline <= performance.now()) checkpoint();
  armForgetTimer();
}
function checkpoint() {
  if (closed) return;
  try {
    // Waits for readers (their snapshots end within milliseconds); writes use their own wait (immediate).
    db.pragma('busy_timeout = 5000');
    const t0 = traceFile ? performance.now() : 0;
    const r = db.pragma('wal_checkpoint(TRUNCATE)');
    if (traceFile) traceStage('writer.checkpointTruncate', performance.now() - t0);
    if (r[0]?.busy) retryCheckpoint(); // a reader held it (backup): try again
    else {
      forgets = [];
      forgetStats.truncates++;
    }
  } catch {
    retryCheckpoint();
  } finally {
    db.pragma('busy_timeout = 0');
  }
}
function retryCheckpoint() {
  if (forgets.length === 0) forgets.push({ salt: undefined, deadline: 0 });
  for (const f of forgets) f.deadline = Math.min(f.deadline, performance.now() + forgetWithinMs);
}

function releaseReserve() {
  try {
    rmSync(reserveFile);
    return true;
  } catch {
    return false;
  }
}

// ── the group-commit loop ──
let queue = [];
let scheduled = false;

const errorOf = (e) => ({ code: typeof e?.code === 'string' ? e.code : undefined, message: e instanceof Error ? e.message : String(e) });

/**
 * Runs `fn` in one IMMEDIATE transaction (one wrapper, made once). Several processes may share the
 * database (WORKERS > 1): BEGIN IMMEDIATE then waits for the write lock. SQLite's own busy handler
 * sleeps 1, 2, 5, 10… ms between attempts, far longer than another writer's commit holds the lock
 * (about a millisecond); this loop retries every BUSY_SPIN_MS instead (the thread is the writer's:
 * the event loop does not wait), for at most BUSY_WAIT_MS. A transaction that met BUSY was rolled
 * back whole, and `fn` is re-run from the start.
 */
const tx = db.transaction((fn) => fn());
const BUSY_SPIN_MS = 0.1;
const BUSY_WAIT_MS = 10_000;
const spin = new Int32Array(new SharedArrayBuffer(4));
const isBusy = (e) => typeof e?.code === 'string' && e.code.startsWith('SQLITE_BUSY');
db.pragma('busy_timeout = 0');
let busyWaits = 0;
function immediate(fn) {
  // A main-connection write waits for the lock (SqliteWriter.lockWanted): say so, and hold back
  // until it is done (mainDone) or MAIN_YIELD_MAX_MS passed — it then takes the lock first.
  if (mainWaits !== undefined && Atomics.load(mainWaits, 0) === 1) {
    parentPort.postMessage({ n: yieldNotice, ok: true });
    Atomics.wait(mainWaits, 0, 1, mainYieldMaxMs);
  }
  let waited = 0;
  for (;;) {
    try {
      return tx.immediate(fn);
    } catch (e) {
      if (!isBusy(e) || waited >= BUSY_WAIT_MS) throw e;
      busyWaits++;
      const ms = Math.min(1, BUSY_SPIN_MS * 2 ** Math.min(4, Math.floor(waited / 5)));
      Atomics.wait(spin, 0, 0, ms);
      waited += ms;
    }
  }
}

function runGroup() {
  scheduled = false;
  const group = queue;
  queue = [];
  const acks = [];
  const sends = [];
  const syncs = [];
  let closeReq;
  for (const q of group) {
    if (q.t === 'a') acks.push(q);
    else if (q.t === 'e') sends.push(q);
    else if (q.t === 'y') syncs.push(q);
    else if (q.t === 'c') {
      deletionCommitted();
      resyncWanted = true;
    }
    else if (q.t === 'close') closeReq = q;
    else if (q.t === 's') parentPort.postMessage({ n: q.n, ok: true, forget: { ...forgetStats } });
  }
  if (resyncWanted && performance.now() - lastResync >= RESYNC_MIN_INTERVAL_MS) {
    resyncWanted = false;
    lastResync = performance.now();
    slots.resync();
  }
  if (acks.length + sends.length > 0) commit(acks, sends, group);
  if (syncs.length > 0) {
    // One fsync for every main-connection commit that asked before this group began. (A commit of
    // this group fsynced the WAL too, but it may have written nothing; one more sync is cheap and
    // main-connection writes are rare.)
    let error;
    try {
      syncWal();
    } catch (e) {
      error = errorOf(e);
    }
    for (const q of syncs) parentPort.postMessage(error ? { n: q.n, ok: false, error } : { n: q.n, ok: true });
  }
  if (closeReq) {
    closed = true;
    clearTimeout(checkpointTimer);
    try {
      db.pragma('busy_timeout = 5000');
      db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      /* the main connection checkpoints again on close */
    }
    closeWalFd();
    db.close();
    parentPort.postMessage({ n: closeReq.n, ok: true });
    parentPort.close();
  }
}

function commit(acks, sends, group) {
  const ackItems = acks.map((q) => readAcks(q.buf));
  const sendItems = sends.map((q) => readEnqueue(q.buf));
  let ackResults;
  let sendResults;
  const t0 = traceFile ? performance.now() : 0;
  if (traceFile) for (const q of group) traceStage('writer.queueWait', t0 - q.arrived);
  try {
    immediate(() => {
      ackResults = ackItems.map(applyAcks);
      const known = new Map();
      sendResults = sendItems.map((items, i) => applyEnqueue(items, sends[i].limits, known));
      flushStats(known);
    });
  } catch (e) {
    if (acks.length + sends.length === 1 && !isFull(e)) {
      const q = acks[0] ?? sends[0];
      parentPort.postMessage({ n: q.n, ok: false, error: errorOf(e) });
      return;
    }
    return commitOneByOne(acks, ackItems, sends, sendItems, isFull(e));
  }
  if (traceFile) {
    traceStage('writer.commit', performance.now() - t0);
    traceStage(sends.length > 0 ? 'writer.commitWithSends' : 'writer.commitAcksOnly', performance.now() - t0);
  }
  if (acks.some((_, i) => ackResults[i].some((c) => c > 0)) || sendResults.some((r) => r.some((x, j) => j % 2 === 1 && x > 0))) deletionCommitted();
  const posted = traceFile ? performance.timeOrigin + performance.now() : undefined;
  acks.forEach((q, i) => parentPort.postMessage({ n: q.n, ok: true, counts: ackResults[i], posted }));
  sends.forEach((q, i) => parentPort.postMessage({ n: q.n, ok: true, res: sendResults[i], posted }, [sendResults[i].buffer]));
}

/**
 * The combined transaction failed. Acks first: on a full disk release the reserve (and truncate
 * the WAL) so that deletions can commit; then each send alone, so a bad one fails only itself.
 */
function commitOneByOne(acks, ackItems, sends, sendItems, full) {
  let freed = false;
  if (full && acks.length > 0) {
    freed = releaseReserve();
    checkpoint();
  }
  acks.forEach((q, i) => {
    try {
      const counts = immediate(() => applyAcks(ackItems[i]));
      if (counts.some((c) => c > 0)) deletionCommitted();
      parentPort.postMessage({ n: q.n, ok: true, counts, full: full || undefined, freed: freed || undefined });
    } catch (e) {
      parentPort.postMessage({ n: q.n, ok: false, error: errorOf(e) });
    }
  });
  sends.forEach((q, i) => {
    if (full) {
      parentPort.postMessage({ n: q.n, ok: false, error: { code: 'SQLITE_FULL', message: 'database or disk is full' } });
      return;
    }
    try {
      const res = immediate(() => {
        const known = new Map();
        const r = applyEnqueue(sendItems[i], q.limits, known);
        flushStats(known);
        return r;
      });
      parentPort.postMessage({ n: q.n, ok: true, res }, [res.buffer]);
    } catch (e) {
      parentPort.postMessage({ n: q.n, ok: false, error: errorOf(e) });
    }
  });
}

parentPort.on('message', (q) => {
  if (traceFile) {
    q.arrived = performance.now();
    if (q.sent !== undefined) traceStage('writer.requestHandoff', performance.timeOrigin + q.arrived - q.sent);
  }
  queue.push(q);
  if (!scheduled) {
    scheduled = true;
    // After the messages already waiting on the port: they join this group.
    setImmediate(runGroup);
  }
});
parentPort.postMessage({ n: 0, ok: true, ready: true, nice: niceNow });

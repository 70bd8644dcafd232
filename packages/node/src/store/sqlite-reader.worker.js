// The SQLite reader thread of SqliteNodeStore (sqlite-store.ts, SqliteReader in sqlite-reader.ts):
// the delivery pump's reads of stored envelopes (fetch) run here, on their own connection, so that
// a device draining its queue does not hold the node's event loop — reading ~1,000 rows of 1 KiB
// and making a Buffer of each id and payload took ~5 µs per envelope there (bench/node's drain:
// over half of the event loop's busy time). A connection in WAL mode reads the latest committed
// state at the start of each statement: a fetch sees every commit that completed before it was
// asked for, whichever connection made it.
//
// Plain JavaScript for the same reason as the writer thread (sqlite-writer.worker.js). Reply layout
// (one transferred ArrayBuffer per fetch, read by SqliteReader.fetch):
//   u32 count, then per envelope: f64 seq, f64 receivedAt, u16 |id|, u32 |payload|, id, payload
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const { file, schemaVersion } = workerData;

const db = new Database(file, { fileMustExist: true });
db.pragma('busy_timeout = 5000');
db.pragma('query_only = ON'); // this connection never writes
if (db.pragma('user_version', { simple: true }) !== schemaVersion) throw new Error('reader: database schema differs from the main connection');

// Raw rows, iterated: the byte bound stops the read (envelopes of up to 256 KiB: `limit` rows could be hundreds of MB).
const batch = db.prepare('SELECT seq, id, payload, received_at FROM messages WHERE mailbox = ? AND seq > ? ORDER BY seq LIMIT ?').raw();

const HEAD = 8 + 8 + 2 + 4;

/** Up to `limit` envelopes after `afterSeq`, oldest first, stopping before `maxBytes` of payload (at least one): SqliteMailbox.fetch's contract. */
function fetch(mailbox, afterSeq, limit, maxBytes) {
  const rows = [];
  let bytes = 0;
  let size = 4;
  for (const r of batch.iterate(mailbox, afterSeq, limit)) {
    const payload = r[2];
    if (rows.length > 0 && bytes + payload.length > maxBytes) break;
    bytes += payload.length;
    size += HEAD + r[1].length + payload.length;
    rows.push(r);
  }
  const buf = new ArrayBuffer(size);
  const u8 = new Uint8Array(buf);
  const dv = new DataView(buf);
  dv.setUint32(0, rows.length, true);
  let o = 4;
  for (const [seq, id, payload, receivedAt] of rows) {
    dv.setFloat64(o, seq, true);
    dv.setFloat64(o + 8, receivedAt, true);
    dv.setUint16(o + 16, id.length, true);
    dv.setUint32(o + 18, payload.length, true);
    o += HEAD;
    u8.set(id, o);
    o += id.length;
    u8.set(payload, o);
    o += payload.length;
  }
  return buf;
}

parentPort.on('message', (m) => {
  if (m.t === 'crash') throw new Error('reader: crash for a test');
  if (m.t === 'close') {
    db.close();
    parentPort.postMessage({ n: m.n, ok: true });
    return;
  }
  try {
    const buf = fetch(m.mailbox, m.afterSeq, m.limit, m.maxBytes);
    parentPort.postMessage({ n: m.n, ok: true, buf }, [buf]);
  } catch (e) {
    parentPort.postMessage({ n: m.n, ok: false, error: { code: e?.code, message: String(e?.message ?? e) } });
  }
});
parentPort.postMessage({ n: 0, ok: true });

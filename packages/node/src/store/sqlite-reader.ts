/**
 * The main-thread side of SqliteNodeStore's reader thread (sqlite-reader.worker.js): `fetch` of
 * stored envelopes runs on the thread's own connection, off the event loop, and comes back as one
 * transferred buffer; the envelopes returned are views into it (no copy per envelope here). The
 * thread keeps the process alive only while a call is outstanding. If it dies, every call rejects
 * with code READER_DEAD and the store reads on its main connection instead (as before the thread).
 */
import { StoreThread } from './store-thread.js';
import type { ThreadReply } from './store-thread.js';
import type { StoredEnvelope } from './node-store.js';

interface Reply extends ThreadReply {
  readonly buf?: ArrayBuffer;
}

export class SqliteReader extends StoreThread<Reply> {
  constructor(options: { readonly file: string; readonly schemaVersion: number; readonly onDead?: (e: Error) => void }) {
    super({
      // src/ (vitest, tsx) and dist/ both hold the worker as plain JavaScript (allowJs copies it).
      script: new URL('./sqlite-reader.worker.js', import.meta.url),
      workerData: { file: options.file, schemaVersion: options.schemaVersion },
      name: 'store reader',
      deadCode: 'READER_DEAD',
      onDead: options.onDead,
    });
  }

  /** Up to `limit` envelopes after `afterSeq`, oldest first, stopping before `maxBytes` of payload (at least one). */
  async fetch(mailbox: Uint8Array, afterSeq: number, limit: number, maxBytes: number): Promise<StoredEnvelope[]> {
    const buf = (await this.call({ t: 'f', mailbox, afterSeq, limit, maxBytes })).buf!;
    const u8 = new Uint8Array(buf);
    const dv = new DataView(buf);
    const n = dv.getUint32(0, true);
    const out = new Array<StoredEnvelope>(n);
    let o = 4;
    for (let i = 0; i < n; i++) {
      const seq = dv.getFloat64(o, true);
      const receivedAt = dv.getFloat64(o + 8, true);
      const idLength = dv.getUint16(o + 16, true);
      const payloadLength = dv.getUint32(o + 18, true);
      o += 22;
      const id = u8.subarray(o, o + idLength);
      o += idLength;
      out[i] = { seq, id, payload: u8.subarray(o, o + payloadLength), receivedAt };
      o += payloadLength;
    }
    return out;
  }

  /** TEST ONLY: the thread's own code throws outside any call (a stand-in for a bug in it). */
  crashForTest(): void {
    this.post({ t: 'crash' });
  }
}

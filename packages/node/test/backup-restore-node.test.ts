// Issue 3: "Backup under write load, restore into a fresh node, PRAGMA integrity_check ok, no
// acknowledged message missing." A real node takes sends while an online backup runs; the backup
// is restored into a fresh data directory, a new node starts on it, and the recipient drains it.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { CONTENT_TYPE_PROTOBUF, EnvelopeClass, SendRequestSchema, encodeBody } from '@meshwhisper/protocol';
import { backupDatabase, restoreDatabase } from '../src/backup.js';
import { NODE_KEY_FILE } from '../src/node-key.js';
import { DATABASE_FILE } from '../src/node.js';
import { TestDevice, generousLimits, sqliteOf, startTestNode } from './helpers.js';
import type { TestNode } from './helpers.js';
import { WsClient } from './ws-client.js';

const work = mkdtempSync(join(tmpdir(), 'mw-backup-node-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function send(t: TestNode, mailbox: Uint8Array, payload: Uint8Array): Promise<boolean> {
  const res = await t.node.app.inject({
    method: 'POST',
    url: '/v1/send',
    headers: { 'content-type': CONTENT_TYPE_PROTOBUF },
    payload: Buffer.from(encodeBody(SendRequestSchema, { mailboxId: mailbox, payload, class: EnvelopeClass.DURABLE })),
  });
  return res.statusCode === 200;
}

describe('hot backup of a live node, restored into a fresh node', () => {
  it('keeps every message acknowledged before the backup started; integrity_check ok', async () => {
    const dataDir = join(work, 'live');
    // All sends here are tokenless (first-contact lane), whose per-mailbox cap is raised for the load.
    const t = await startTestNode({ RATE_LIMITS: generousLimits(), FIRST_CONTACT_MAX_MESSAGES: '100000' }, {}, { dataDir });
    const bob = new TestDevice();
    await bob.register(t.node);

    const acked: number[] = [];
    let n = 0;
    // Each payload starts with its index (u32) so the recipient can tell exactly which arrived.
    const payloadFor = (i: number) => {
      const p = new Uint8Array(2048).fill(0x5a);
      new DataView(p.buffer).setUint32(0, i);
      return p;
    };
    // Load before the backup…
    for (; n < 400; n++) if (await send(t, bob.mailbox, payloadFor(n))) acked.push(n);
    const ackedBeforeBackup = acked.length;
    // …and during it: a writer that keeps sending while the online backup copies pages.
    let writing = true;
    const writer = (async () => {
      while (writing && n < 5000) {
        const i = n++;
        if (await send(t, bob.mailbox, payloadFor(i))) acked.push(i);
      }
    })();
    const backup = await backupDatabase(sqliteOf(t.node), { dir: join(work, 'backups') });
    writing = false;
    await writer;
    expect(ackedBeforeBackup).toBe(400);
    expect(n).toBeGreaterThan(400); // the writer really ran during the backup
    await t.close();

    // Restore into a fresh data directory (with the node key, as docs/backup-restore.md says).
    const freshDir = join(work, 'fresh');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(freshDir, { recursive: true });
    copyFileSync(join(dataDir, NODE_KEY_FILE), join(freshDir, NODE_KEY_FILE));
    await restoreDatabase({ backupFile: backup.path, databasePath: join(freshDir, DATABASE_FILE) });
    const check = new Database(join(freshDir, DATABASE_FILE), { readonly: true });
    expect(check.pragma('integrity_check', { simple: true })).toBe('ok');
    check.close();

    const fresh = await startTestNode({ RATE_LIMITS: generousLimits() }, {}, { dataDir: freshDir });
    try {
      const c = await WsClient.device((await fresh.node.listen()).port, bob);
      const got = new Set<number>();
      for (;;) {
        const f = await c.next((x) => x.body.case === 'deliver' || x.body.case === 'queueEmpty', 20_000);
        if (f.body.case === 'queueEmpty') break;
        if (f.body.case !== 'deliver') continue;
        for (const e of f.body.value.envelopes) got.add(new DataView(e.payload.buffer, e.payload.byteOffset, 4).getUint32(0));
        c.ack(f.body.value.envelopes.map((e) => e.id));
      }
      // Everything acknowledged before the backup began is there.
      for (const a of acked.slice(0, ackedBeforeBackup)) expect(got.has(a), `message ${a}`).toBe(true);
      // Nothing appears that was never acknowledged to a sender.
      for (const g of got) expect(acked.includes(g)).toBe(true);
      c.close();
    } finally {
      await fresh.close();
    }
  }, 120_000);
});

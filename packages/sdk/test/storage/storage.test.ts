/**
 * The conformance suite (conformance.ts) against the memory and SQLite adapters. The IndexedDB
 * adapter runs the same suite in headless Chromium: indexeddb-browser.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, it } from 'vitest';
import { memoryStorage } from '../../src/storage/memory.js';
import { SqliteStorage, openSqliteStorage } from '../../src/storage/sqlite.js';
import type { StorageFactory } from './conformance.js';
import { conformanceCases } from './conformance.js';

const dir = mkdtempSync(join(tmpdir(), 'mw-sdk-storage-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const factories: StorageFactory[] = [
  { name: 'memory', create: () => memoryStorage() },
  {
    name: 'sqlite',
    create: (label) => openSqliteStorage({ path: join(dir, `${label}.db`) }),
    async reopen(s) {
      if (!(s instanceof SqliteStorage)) throw new TypeError('not a SqliteStorage');
      await s.close();
      return openSqliteStorage({ path: s.path });
    },
  },
];

for (const f of factories) {
  describe(`ProtocolStorage conformance: ${f.name}`, () => {
    for (const c of conformanceCases) {
      const skip = c.needs !== undefined && !f[c.needs];
      it.skipIf(skip)(c.name, () => c.run(f));
    }
  });
}

/**
 * A second process for sqlite.test.ts (bundled with esbuild, run with node):
 *   probe <db>  — try to open the storage; print {"opened":true} or {"code":…}; exit.
 *   hold <db>   — open it, commit session "child:1", then start a transaction that writes
 *                 "child:2" and never ends; print {"holding":true} and wait to be killed.
 */
import { createRequire } from 'node:module';
import type { SqliteDriver } from '../../src/storage/sqlite.js';
import { openSqliteStorage } from '../../src/storage/sqlite.js';

const [mode, path, repo] = process.argv.slice(2);
const driver = createRequire(`${repo}/package.json`)('better-sqlite3') as SqliteDriver;
const say = (o: unknown): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

try {
  const s = await openSqliteStorage({ path: path!, driver });
  if (mode === 'probe') {
    say({ opened: true });
    await s.close();
  } else {
    await s.storeSession('child:1', Uint8Array.of(1));
    void s.transaction(async (tx) => {
      await tx.storeSession('child:2', Uint8Array.of(2));
      say({ holding: true });
      await new Promise(() => undefined);
    });
    // Keep the storage reachable: otherwise nothing references it (the transaction's promise never
    // settles), the garbage collector finalises better-sqlite3's Database — closing the connection
    // and releasing the lock — and the "holding" process would hold nothing.
    setInterval(() => void s.kind, 1000);
  }
} catch (e) {
  say({ code: (e as { code?: string }).code, message: (e as Error).message });
}

// Issue 12 §2: "nothing outside the store touches the database". Read off the node's sources: no
// module outside src/store/ opens SQLite or PostgreSQL or reaches for a store's database handle —
// but two operator tools that never read or write the node's data through the node (OPS_TOOLS).
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const src = fileURLToPath(new URL('../src/', import.meta.url));
const OPS_TOOLS = new Map([
  // backup / restore / verify of database *files* by path (the running node's scheduled backup goes
  // through SqliteNodeStore.hotBackup, which hands the store's own connection to it)
  ['backup.ts', 'file-level backup tool'],
  // `meshwhisper doctor`: connects to a cluster's PostgreSQL for its version, role and replication lag
  ['cluster-probe.ts', 'doctor probe'],
]);

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return /\.(ts|js)$/.test(e.name) ? [p] : [];
  });
}

describe('the store boundary', () => {
  const outside = sources(src).filter((p) => !relative(src, p).startsWith('store/'));

  it('finds the sources it checks', () => {
    expect(outside.map((p) => relative(src, p))).toEqual(expect.arrayContaining(['node.ts', 'bin.ts', 'push/setup.ts']));
  });

  it('no module outside src/store/ imports a SQLite or PostgreSQL driver (but the operator tools)', () => {
    const offenders = outside
      .filter((p) => !OPS_TOOLS.has(relative(src, p)))
      .filter((p) => /from ['"](better-sqlite3|pg)['"]|require\(['"](better-sqlite3|pg)['"]\)/.test(readFileSync(p, 'utf8')));
    expect(offenders.map((p) => relative(src, p))).toEqual([]);
  });

  it("no module outside src/store/ uses a store's database handle", () => {
    const offenders = outside.filter((p) => /\.database\b(?!\s*:)/.test(readFileSync(p, 'utf8').replace(/\/\/.*$|\/\*[\s\S]*?\*\//gm, '')));
    expect(offenders.map((p) => relative(src, p))).toEqual([]);
  });
});

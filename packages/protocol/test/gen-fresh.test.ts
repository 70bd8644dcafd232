// The committed src/gen/*_pb.ts must be exactly what `buf generate` produces from proto/.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const pkg = fileURLToPath(new URL('..', import.meta.url));

function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

describe('generated code', () => {
  it('src/gen matches a fresh `buf generate` of proto/', () => {
    const out = mkdtempSync(join(tmpdir(), 'mw-gen-'));
    try {
      const template = join(out, 'buf.gen.yaml');
      writeFileSync(template, readFileSync(join(pkg, 'buf.gen.yaml'), 'utf8').replace('out: src/gen', `out: ${join(out, 'gen')}`));
      execFileSync('npx', ['buf', 'generate', '--template', template], { cwd: pkg, stdio: 'pipe' });
      const fresh = join(out, 'gen');
      const committed = join(pkg, 'src/gen');
      expect(listFiles(committed)).toEqual(listFiles(fresh));
      for (const f of listFiles(fresh)) {
        expect(readFileSync(join(committed, f), 'utf8'), `${f} is stale: run npm run gen -w @meshwhisper/protocol`).toBe(readFileSync(join(fresh, f), 'utf8'));
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});

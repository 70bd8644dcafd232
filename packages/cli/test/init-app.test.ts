// `init --app node|browser`: the skeleton app files, their place in the overwrite rule and the
// .gitignore, that no dependency can resolve to the public registry's @meshwhisper scope, and that
// the generated code is valid: the Node script passes `node --check`, the browser page's main.js
// bundles with esbuild against the SDK (every import must exist). The browser app in Chromium:
// browser-skeleton.test.ts; the Node app end to end: init-first-message.test.ts.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { APP_SCAFFOLDS, runInit } from '../src/init.js';
import { captureIo, cli, removeDir, tempDir } from './helpers.js';
import { buildDist, repoRoot } from './build-dist.js';

/** The package.json inside an npm tarball (ustar: 512-byte headers, name at 0, size in octal at 124). */
function tarballPackageJson(tgz: Uint8Array): { name: string; dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> } {
  const tar = gunzipSync(tgz);
  for (let off = 0; off + 512 <= tar.length; ) {
    const name = tar.subarray(off, off + 100).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(tar.subarray(off + 124, off + 136).toString('utf8').replace(/\0.*$/s, '').trim() || '0', 8);
    if (name === 'package/package.json') return JSON.parse(tar.subarray(off + 512, off + 512 + size).toString('utf8')) as never;
    if (name === '') break;
    off += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error('no package/package.json in the tarball');
}

beforeAll(async () => {
  // init --app packs the SDK from dist/.
  await buildDist(['packages/sdk']);
}, 300_000);

const mode = (p: string): number => statSync(p).mode & 0o777;
const read = (dir: string, path: string): string => readFileSync(join(dir, path), 'utf8');
const src = (pkg: string): string => join(repoRoot, `packages/${pkg}/src/index.ts`);

/** Bundles the generated main.js as its `npm run build` would, with the SDK from this repository's sources. */
async function bundleMain(appDir: string, write: boolean): Promise<string> {
  const out = await build({
    entryPoints: [join(appDir, 'main.js')],
    bundle: true,
    write,
    outfile: join(appDir, 'dist/main.js'),
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    alias: { '@meshwhisper/sdk': src('sdk'), '@meshwhisper/crypto': src('crypto'), '@meshwhisper/protocol': src('protocol') },
    logLevel: 'silent',
  });
  return write ? readFileSync(join(appDir, 'dist/main.js'), 'utf8') : out.outputFiles![0]!.text;
}

describe('init --app', () => {
  let root: string;
  let dir: string;
  beforeEach(() => {
    root = tempDir();
    dir = join(root, 'deploy');
  });
  afterEach(() => removeDir(root));

  it('registers node and browser', () => {
    expect([...APP_SCAFFOLDS.keys()]).toEqual(['node', 'browser']);
  });

  it('node: app/package.json and app/index.mjs with the URL and namespace baked in; .gitignore keeps its keys out', async () => {
    const r = await cli('init', dir, '--yes', '--app', 'node', '--namespace', 'acme', '--url', 'https://chat.example.com');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('created  app/index.mjs');
    expect(r.out).toContain('cd app && npm install && node index.mjs');
    const pkg = JSON.parse(read(dir, 'app/package.json')) as { type: string; private: boolean; dependencies: Record<string, string> };
    expect(pkg).toMatchObject({ type: 'module', private: true });
    expect(Object.keys(pkg.dependencies).sort()).toEqual(['@meshwhisper/crypto', '@meshwhisper/protocol', '@meshwhisper/sdk']);
    const index = read(dir, 'app/index.mjs');
    expect(index).toContain(`process.env.MESHWHISPER_NODE_URL || "https://chat.example.com"`);
    expect(index).toContain(`process.env.MESHWHISPER_NAMESPACE || "acme"`);
    expect(index).toContain("from '@meshwhisper/sdk'");
    execFileSync(process.execPath, ['--check', join(dir, 'app/index.mjs')]); // throws on a syntax error
    expect(mode(join(dir, 'app/index.mjs'))).toBe(0o644);
    expect(read(dir, '.gitignore').split('\n')).toEqual(expect.arrayContaining(['.env', 'app/.data/', 'app/node_modules/']));
    const readme = read(dir, 'README.md');
    expect(readme).toContain('## First message');
    expect(readme).toContain('node index.mjs');
    expect(readme).toContain('| `app/` |');
  });

  it('browser: index.html loads dist/main.js; main.js bundles against the SDK; serve.mjs and package.json agree', async () => {
    await runInit({ dir, yes: true, app: 'browser', namespace: 'web' }, captureIo().io);
    const appDir = join(dir, 'app');
    const pkg = JSON.parse(read(dir, 'app/package.json')) as { scripts: Record<string, string>; dependencies: Record<string, string>; devDependencies: Record<string, string> };
    expect(pkg.scripts.build).toContain('--outfile=dist/main.js');
    expect(pkg.scripts.start).toBe('node serve.mjs');
    expect(Object.keys(pkg.devDependencies)).toEqual(['esbuild']);
    expect(read(dir, 'app/index.html')).toContain('<link rel="icon" href="data:," />');
    expect(read(dir, 'app/index.html')).toContain('<script type="module" src="./dist/main.js"></script>');
    const main = read(dir, 'app/main.js');
    expect(main).toContain('const NAMESPACE = "web";');
    expect(main).toContain('openIndexedDbStorage');
    // esbuild fails on a syntax error and on an import the SDK does not export.
    const bundled = await bundleMain(appDir, false);
    expect(bundled.length).toBeGreaterThan(10_000);
    expect(bundled).not.toMatch(/from ["']@meshwhisper\/sdk["']/);
    execFileSync(process.execPath, ['--check', join(appDir, 'serve.mjs')]);
    expect(read(dir, '.gitignore').split('\n')).toEqual(expect.arrayContaining(['app/node_modules/', 'app/dist/']));
    const readme = read(dir, 'README.md');
    expect(readme).toContain('npm run build        # esbuild main.js --bundle');
    expect(readme).toContain('CORS');
  });

  for (const app of ['node', 'browser']) {
    it(`${app}: no dependency can resolve to the registry's @meshwhisper scope (vendor/ tarballs, overrides)`, async () => {
      await runInit({ dir, yes: true, app }, captureIo().io);
      const pkg = JSON.parse(read(dir, 'app/package.json')) as { dependencies: Record<string, string>; devDependencies?: Record<string, string>; overrides: Record<string, string> };
      const ours = (deps: Record<string, string> | undefined): [string, string][] => Object.entries(deps ?? {}).filter(([n]) => n.startsWith('@meshwhisper/'));
      expect(ours(pkg.devDependencies)).toEqual([]);
      const tarballs = new Map<string, string>();
      for (const [name, spec] of ours(pkg.dependencies)) {
        expect(spec, name).toMatch(/^file:vendor\/meshwhisper-[a-z]+-[0-9.]+\.tgz$/);
        tarballs.set(name, spec.slice('file:'.length));
      }
      // Every @meshwhisper dependency inside every tarball is pinned to one of those tarballs.
      for (const [name, file] of tarballs) {
        const inner = tarballPackageJson(readFileSync(join(dir, 'app', file)));
        expect(inner.name).toBe(name);
        for (const [dep] of [...ours(inner.dependencies), ...ours(inner.optionalDependencies)]) {
          expect(tarballs.has(dep), `${name} → ${dep}`).toBe(true);
          expect(pkg.overrides[dep], `${name} → ${dep}`).toBe(`$${dep}`);
        }
      }
      expect(tarballs.get('@meshwhisper/sdk')).toBeDefined();
      const readme = read(dir, 'README.md');
      expect(readme).toContain('the\n`@meshwhisper` scope there belongs to another project');
      expect(readme).not.toMatch(/npx|npm root -g|ln -s \/path\/to/);
    });
  }

  it('no app: README says how to get one; --app none is accepted', async () => {
    expect((await cli('init', dir, '--yes', '--app', 'none')).code).toBe(0);
    expect(existsSync(join(dir, 'app'))).toBe(false);
    expect(read(dir, 'README.md')).toMatch(/## First message\n\nNo skeleton app was generated here\. `meshwhisper init --app node`/);
  });

  it('app files follow the overwrite rule: refused without --force (nothing written), replaced with it', async () => {
    expect((await cli('init', dir, '--yes', '--app', 'node')).code).toBe(0);
    removeDir(join(dir, 'compose.yaml'));
    for (const f of ['.env', 'README.md', '.gitignore']) removeDir(join(dir, f));
    writeFileSync(join(dir, 'app/index.mjs'), '// my changes\n');
    const again = await cli('init', dir, '--yes', '--app', 'node');
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/MW_CLI_WOULD_OVERWRITE: .*already has app\/package\.json, app\/index\.mjs, app\/vendor\/meshwhisper-crypto-[0-9.]+\.tgz, .*; nothing was written/);
    expect(existsSync(join(dir, '.env'))).toBe(false);
    expect(read(dir, 'app/index.mjs')).toBe('// my changes\n');
    const forced = await cli('init', dir, '--yes', '--app', 'node', '--force');
    expect(forced.code, forced.err).toBe(0);
    expect(forced.out).toContain('overwrote  app/index.mjs');
    expect(read(dir, 'app/index.mjs')).toContain('MeshWhisper.create');
  });

  it('interactive: the last question picks the app', async () => {
    const answers = ['http://localhost:9000', 'team', 'none', 'Browser'];
    const questions: string[] = [];
    const c = captureIo({ stdinIsTTY: true, ask: async (q) => (questions.push(q), answers.shift() ?? '') });
    const r = await runInit({ dir }, c.io);
    expect(questions).toHaveLength(4); // no contact question without Web Push
    expect(questions[3]).toContain('[none]');
    expect(r.app).toBe('browser');
    expect(existsSync(join(dir, 'app/main.js'))).toBe(true);
    // A wrong answer is a usage error, as the flag would be.
    const bad = captureIo({ stdinIsTTY: true, ask: async (q) => (q.startsWith('Skeleton') ? 'cobol' : '') });
    await expect(runInit({ dir: join(root, 'bad') }, bad.io)).rejects.toThrow(/unknown skeleton app "cobol"/);
  });
});

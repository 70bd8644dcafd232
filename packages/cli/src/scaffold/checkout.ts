/**
 * Where this CLI's MeshWhisper code lives, and the SDK as tarballs packed from it.
 *
 * The `@meshwhisper` scope on the public npm registry belongs to another project: nothing `init`
 * writes may make npm fetch `@meshwhisper/*` from there (docs/architecture.md §Package names). A
 * skeleton app therefore depends on `file:vendor/….tgz` tarballs that `npm pack` makes from the
 * packages next to this CLI (a built checkout), and the generated README runs the CLI and the
 * node from that checkout by absolute path.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CliError, CliErrorCode } from '../errors.js';

/** The SDK and what it depends on from this repository, in dependency order. */
export const SDK_PACKAGES = ['@meshwhisper/crypto', '@meshwhisper/protocol', '@meshwhisper/sdk'] as const;

/** One package packed into the app's vendor/ folder. */
export interface VendoredPackage {
  /** `@meshwhisper/sdk` */
  readonly name: string;
  /** `meshwhisper-sdk-0.1.0.tgz` (npm pack's name) */
  readonly file: string;
  readonly bytes: Uint8Array;
}

/** The MeshWhisper code this CLI runs from. */
export interface Checkout {
  /** The repository root (it has the Dockerfile), when the CLI runs from a checkout. */
  readonly root: string | undefined;
  /** Launchers, absolute: what the generated README runs. */
  readonly cliBin: string;
  readonly nodeBin: string;
}

const require = createRequire(import.meta.url);

/** The folder of an installed package: walk up from its resolved entry to its package.json. */
export function packageDir(name: string): string {
  let entry: string;
  try {
    entry = require.resolve(name);
  } catch {
    throw new CliError(CliErrorCode.NOT_FOUND, `${name} is not next to this CLI: run meshwhisper from a built MeshWhisper checkout (npm ci && npm run build)`);
  }
  for (let dir = dirname(entry); dir !== dirname(dir); dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === name) return dir;
  }
  throw new CliError(CliErrorCode.NOT_FOUND, `cannot find the package folder of ${name} (from ${entry})`);
}

export function locateCheckout(): Checkout {
  // src/scaffold/ (tests) and dist/scaffold/ (the binary) both sit two levels below the package.
  const cliDir = resolve(fileURLToPath(new URL('../../', import.meta.url)));
  const nodeDir = packageDir('@meshwhisper/node');
  const root = resolve(nodeDir, '../..');
  return {
    root: existsSync(join(root, 'Dockerfile')) && existsSync(join(root, 'packages/sdk/package.json')) ? root : undefined,
    cliBin: join(cliDir, 'bin/meshwhisper.js'),
    nodeBin: join(nodeDir, 'bin/meshwhisper-node.js'),
  };
}

/**
 * `npm pack` of the SDK and its MeshWhisper dependencies (their `dist/` must be built). npm's
 * tarballs carry fixed file times, so packing the same build twice gives the same bytes.
 */
export async function packSdk(): Promise<VendoredPackage[]> {
  const dirs = SDK_PACKAGES.map((name) => {
    const dir = packageDir(name);
    if (!existsSync(join(dir, 'dist/index.js'))) throw new CliError(CliErrorCode.NOT_FOUND, `${name} is not built (${join(dir, 'dist')} is missing): run \`npm run build\` in the MeshWhisper checkout first`);
    return dir;
  });
  // One pack per build in a long-lived process (a library user, the tests): keyed by the newest file.
  const key = dirs.map((d) => `${d}@${newestMtime(d)}`).join('|');
  const cached = packCache.get(key);
  if (cached) return cached;
  const packed = await npmPack(dirs);
  packCache.set(key, packed);
  return packed;
}

const packCache = new Map<string, VendoredPackage[]>();

/** The newest modification time of package.json and everything under dist/ and src/. */
function newestMtime(dir: string): number {
  let newest = statSync(join(dir, 'package.json')).mtimeMs;
  for (const sub of ['dist', 'src']) {
    if (!existsSync(join(dir, sub))) continue;
    for (const entry of readdirSync(join(dir, sub), { recursive: true, withFileTypes: true })) {
      if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
    }
  }
  return newest;
}

async function npmPack(dirs: readonly string[]): Promise<VendoredPackage[]> {
  const dest = await mkdtemp(join(tmpdir(), 'meshwhisper-pack-'));
  try {
    const stdout = await new Promise<string>((res, rej) => {
      execFile('npm', ['pack', ...dirs, '--pack-destination', dest, '--json', '--ignore-scripts', '--loglevel=error'], { maxBuffer: 64 * 1024 * 1024 }, (e, out, err) => {
        if (e) rej(new CliError(CliErrorCode.INTERNAL, `npm pack of the SDK failed (is npm on the PATH?): ${String(err || e.message).trim().split('\n')[0]}`));
        else res(out);
      });
    });
    const packed = JSON.parse(stdout) as { name: string; filename: string }[];
    return await Promise.all(
      SDK_PACKAGES.map(async (name) => {
        const p = packed.find((x) => x.name === name);
        if (!p) throw new CliError(CliErrorCode.INTERNAL, `npm pack did not pack ${name}`);
        return { name, file: p.filename, bytes: new Uint8Array(await readFile(join(dest, p.filename))) };
      }),
    );
  } finally {
    await rm(dest, { recursive: true, force: true });
  }
}

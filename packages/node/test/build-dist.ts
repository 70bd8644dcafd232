// Builds packages (packages/node and the packages it references, or others) into dist/ for tests that run the built
// binary, as operators do. Test files run in parallel processes: two concurrent `tsc -b` would
// rewrite the same dist/ files while another file's child process is loading them. So a build
// takes a lock (a directory: mkdir is atomic), and a build that waited finds everything up to
// date and writes nothing.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
/** The built binary, `meshwhisper-node`. */
export const nodeBin = join(repoRoot, 'packages/node/dist/bin.js');

const LOCK = join(tmpdir(), `mw-node-build-${createHash('sha256').update(repoRoot).digest('hex').slice(0, 12)}.lock`);
/** Longer than any build: a lock this old was left by a killed run. */
const STALE_MS = 5 * 60_000;

function tryLock(): boolean {
  try {
    mkdirSync(LOCK);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    const st = statSync(LOCK, { throwIfNoEntry: false });
    if (st !== undefined && Date.now() - st.mtimeMs > STALE_MS) rmSync(LOCK, { recursive: true, force: true });
    return false;
  }
}

/** `npx tsc -b <packages>` (e.g. 'packages/node'), one build at a time across test processes. */
export async function buildDist(packages: readonly string[]): Promise<void> {
  const deadline = Date.now() + STALE_MS;
  while (!tryLock()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for another test's build (lock ${LOCK})`);
    await new Promise((r) => setTimeout(r, 200));
  }
  try {
    await new Promise<void>((resolve, reject) => {
      execFile('npx', ['tsc', '-b', ...packages], { cwd: repoRoot }, (e, stdout, stderr) => (e ? reject(new Error(`tsc -b ${packages.join(' ')} failed:\n${stdout}${stderr}`)) : resolve()));
    });
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

/** `npx tsc -b packages/node`, one build at a time across test processes. */
export const buildNodeDist = (): Promise<void> => buildDist(['packages/node']);

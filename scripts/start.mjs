#!/usr/bin/env node
// `npm start`: builds what is missing or stale, saying what it does and how long it took, then runs
// the node, which serves Prudence at / (WEB_APP, docs/prudence.md). Steps:
//   1. the TypeScript packages (tsc -b: incremental; the first build takes ~20 s on a small machine);
//   2. Prudence (vite build; only when apps/prudence/dist is older than its sources or the SDK's);
//   3. the node (packages/node/dist/bin.js), in this process.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const say = (text) => process.stderr.write(`${text}\n`);

function run(step, label, command, args) {
  say(`[${step}/3] ${label}…`);
  const started = Date.now();
  const r = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    say(`npm start: ${label} failed (exit ${r.status ?? r.signal}); fix the error above and run npm start again.`);
    process.exit(1);
  }
  say(`      done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

/** Newest modification time of the files under these paths. */
function newest(paths) {
  let t = 0;
  const walk = (p) => {
    if (!existsSync(p)) return;
    const s = statSync(p);
    if (s.isDirectory()) for (const e of readdirSync(p)) walk(join(p, e));
    else t = Math.max(t, s.mtimeMs);
  };
  paths.forEach((p) => walk(join(root, p)));
  return t;
}

const packages = ['crypto', 'protocol', 'node', 'sdk', 'cli'].map((p) => `packages/${p}`);
const fresh = !existsSync(join(root, 'packages/node/dist/bin.js'));
run(1, fresh ? 'Compiling the TypeScript packages for the first time (tsc -b: about 20 s on an idle machine, longer on a busy one)' : 'Compiling the TypeScript packages (tsc -b, incremental)', process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-b', ...packages]);

const appIndex = join(root, 'apps/prudence/dist/index.html');
const appSources = ['apps/prudence/src', 'apps/prudence/public', 'apps/prudence/index.html', 'apps/prudence/vite.config.ts', 'packages/sdk/src', 'packages/crypto/src', 'packages/protocol/src'];
if (process.env.WEB_APP !== undefined && process.env.WEB_APP.trim() !== 'prudence') {
  say('[2/3] Prudence: not needed (WEB_APP is set to something else)');
} else if (existsSync(appIndex) && statSync(appIndex).mtimeMs >= newest(appSources)) {
  say('[2/3] Prudence is up to date (apps/prudence/dist)');
} else {
  run(2, 'Building Prudence, the web app the node serves at / (vite build, a few seconds)', process.execPath, [join(root, 'node_modules/vite/bin/vite.js'), 'build', '--config', 'apps/prudence/vite.config.ts']);
}

const port = process.env.PORT ?? '8080';
say(`[3/3] Starting the node: open http://localhost:${port}/ in two browser profiles (say a normal and a private window: each is one person) to chat. Ctrl-C stops it.`);
await import(pathToFileURL(join(root, 'packages/node/dist/bin.js')).href);

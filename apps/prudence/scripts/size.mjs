#!/usr/bin/env node
// Prudence's bundle as the node sends it (gzip level 9, routes/web-app.ts): every file of a build,
// what the first load fetches (index.html, its CSS and the JS it imports, the manifest and icon),
// and what only a QR scan loads. `node apps/prudence/scripts/size.mjs [dist]` (default apps/prudence/dist;
// build it first with `npm run build`). Numbers go to docs/benchmarks.md.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const dist = process.argv[2] ?? fileURLToPath(new URL('../dist', import.meta.url));
const files = [];
const walk = (d) => {
  for (const e of readdirSync(d)) {
    const p = join(d, e);
    if (statSync(p).isDirectory()) walk(p);
    else files.push(p);
  }
};
walk(dist);
const rows = files.map((p) => {
  const body = readFileSync(p);
  return { path: '/' + relative(dist, p).split('\\').join('/'), raw: body.length, gz: gzipSync(body, { level: 9 }).length, text: body.toString('latin1') };
});
const index = rows.find((r) => r.path === '/index.html');
// The first load: index.html, what it links (CSS, entry JS, manifest, icon), and the entry's static imports.
const first = new Set(['/index.html']);
for (const m of index.text.matchAll(/(?:href|src)="([^"]+)"/g)) first.add(m[1]);
const entry = rows.find((r) => first.has(r.path) && r.path.endsWith('.js'));
for (const m of entry.text.matchAll(/from"\.\/([^"]+)"|import"\.\/([^"]+)"/g)) first.add(`/assets/${m[1] ?? m[2]}`);
const kb = (n) => (n / 1024).toFixed(1).padStart(7);
console.log('file                                   raw KiB  gzip KiB  first load');
for (const r of rows.sort((a, b) => b.gz - a.gz)) console.log(`${r.path.padEnd(38)} ${kb(r.raw)}  ${kb(r.gz)}   ${first.has(r.path) ? 'yes' : ''}`);
const firstGz = rows.filter((r) => first.has(r.path)).reduce((n, r) => n + r.gz, 0);
const allGz = rows.reduce((n, r) => n + r.gz, 0);
console.log(`\nfirst load: ${kb(firstGz)} KiB gzip in ${rows.filter((r) => first.has(r.path)).length} files; whole build (what the service worker caches): ${kb(allGz)} KiB`);
for (const [name, kbit] of [['1.6 Mbit/s ("slow 4G")', 1600], ['400 kbit/s ("3G")', 400]]) console.log(`transfer time of the first load at ${name}: ${((firstGz * 8) / (kbit * 1000)).toFixed(2)} s (bytes only; add the round trips)`);

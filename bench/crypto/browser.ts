/**
 * The browser half of the crypto benchmark: headless Chromium (/usr/bin/chromium, driven by
 * playwright-core from the repository root) runs ./browser-entry.ts, bundled from the package
 * sources with esbuild, on a page served from 127.0.0.1 (Web Crypto needs a secure context; an
 * http://127.0.0.1 origin is one).
 *   cd bench/crypto && node --import tsx ./browser.ts          (QUICK=1 for a short run)
 * Prints the primitive timings (noble vs Web Crypto) and the session figures with the noble backend.
 */
import { build } from 'esbuild';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const QUICK = process.env['QUICK'] === '1';
const bundle = await build({ entryPoints: [fileURLToPath(new URL('./browser-entry.ts', import.meta.url))], bundle: true, write: false, platform: 'browser', format: 'iife', target: 'es2022', logLevel: 'error' });
const server = createServer((_req, res) => res.end('<!doctype html><title>bench</title>'));
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.addScriptTag({ content: bundle.outputFiles[0]!.text });
  const r = (await page.evaluate(`runBench(${QUICK})`)) as {
    userAgent: string;
    primitives: { op: string; noble_us: number; webcrypto_us: number | null; note?: string }[];
    sessions: { setupMs: number; oneWay: number; pingPong: number };
  };
  console.log(`\n${r.userAgent}\n`);
  console.log('| operation (per call, µs) | noble (sync) | Web Crypto (async, awaited) | Web Crypto / noble | note |');
  console.log('|---|---:|---:|---:|---|');
  for (const p of r.primitives) {
    const ratio = p.webcrypto_us === null ? '—' : `${(p.webcrypto_us / p.noble_us).toFixed(2)}×`;
    console.log(`| ${p.op} | ${p.noble_us.toFixed(1)} | ${p.webcrypto_us === null ? '—' : p.webcrypto_us.toFixed(1)} | ${ratio} | ${p.note ?? ''} |`);
  }
  const s = r.sessions;
  console.log(`\nMeshWhisper in Chromium, noble backend: setup ${s.setupMs.toFixed(2)} ms, one-way ${Math.round(s.oneWay)} msgs/s, ping-pong ${Math.round(s.pingPong)} msgs/s`);
} finally {
  await browser.close();
  server.close();
}

/**
 * Prudence's build: the page (index.html → hashed assets) and the service worker (sw.js at the
 * root, so its scope is the whole app) in one Vite build. The SDK, crypto and protocol are taken
 * from this checkout's TypeScript sources, so the build needs nothing but `npm ci`.
 */
import { fileURLToPath } from 'node:url';
import type { Plugin } from 'vite';
import { defineConfig } from 'vite';

const pkg = (path: string): string => fileURLToPath(new URL(`../../packages/${path}`, import.meta.url));

/** Writes the list of every emitted file into sw.js, so the worker can cache the app shell at install. */
function precacheList(): Plugin {
  return {
    name: 'prudence-precache',
    enforce: 'post',
    generateBundle(_options, bundle) {
      const files = Object.keys(bundle).filter((f) => f !== 'sw.js' && !f.endsWith('.map'));
      const list = ['/', ...files.map((f) => `/${f}`)].sort();
      const sw = bundle['sw.js'];
      if (!sw || sw.type !== 'chunk') throw new Error('prudence-precache: sw.js was not built');
      const token = /(["'`])__PRUDENCE_PRECACHE__\1/;
      if (!token.test(sw.code)) throw new Error('prudence-precache: the placeholder is missing from sw.js');
      sw.code = sw.code.replace(token, JSON.stringify(list));
    },
  };
}

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  resolve: {
    alias: [
      { find: /^@meshwhisper\/crypto$/, replacement: pkg('crypto/src/index.ts') },
      { find: /^@meshwhisper\/protocol$/, replacement: pkg('protocol/src/index.ts') },
      { find: /^@meshwhisper\/sdk\/service-worker$/, replacement: pkg('sdk/src/service-worker.ts') },
      { find: /^@meshwhisper\/sdk$/, replacement: pkg('sdk/src/index.ts') },
    ],
  },
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    target: 'es2022',
    outDir: 'dist',
    emptyOutDir: true,
    // Everything is a file under 'self': no data: URLs in scripts or styles (strict CSP).
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: true,
    rolldownOptions: {
      input: {
        index: fileURLToPath(new URL('index.html', import.meta.url)),
        sw: fileURLToPath(new URL('src/sw.ts', import.meta.url)),
      },
      output: {
        entryFileNames: (chunk) => (chunk.name === 'sw' ? 'sw.js' : 'assets/[name]-[hash].js'),
        // The chunk the page and the worker share holds the SDK: name it so (docs/benchmarks.md measures it).
        chunkFileNames: (chunk) => (chunk.moduleIds.some((id) => /[\\/]packages[\\/]sdk[\\/]/.test(id)) ? 'assets/sdk-[hash].js' : 'assets/[name]-[hash].js'),
      },
    },
  },
  plugins: [precacheList()],
});

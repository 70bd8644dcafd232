import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (pkg: string): string => fileURLToPath(new URL(`./packages/${pkg}/src/index.ts`, import.meta.url));

// Tests run against the TypeScript sources of every workspace package, so `npm test` needs no
// prior build. `npm run build` type-checks and emits dist/ for `npm start` and publishing.
export default defineConfig({
  resolve: {
    alias: [
      { find: /^@meshwhisper\/crypto\/testing$/, replacement: src('crypto').replace(/index\.ts$/, 'testing.ts') },
      { find: /^@meshwhisper\/crypto$/, replacement: src('crypto') },
      { find: /^@meshwhisper\/protocol$/, replacement: src('protocol') },
      { find: /^@meshwhisper\/sdk\/service-worker$/, replacement: src('sdk').replace(/index\.ts$/, 'service-worker.ts') },
      { find: /^@meshwhisper\/sdk$/, replacement: src('sdk') },
      { find: /^@meshwhisper\/node$/, replacement: src('node') },
      { find: /^@meshwhisper\/cli$/, replacement: src('cli') },
    ],
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'apps/*/test/**/*.test.ts', 'test-vectors/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The JSON report feeds scripts/test-summary.mjs, which prints CI's closing line.
    reporters: ['default', ['json', { outputFile: '.vitest-results.json' }]],
  },
});

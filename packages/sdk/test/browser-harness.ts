/**
 * Shared by the real-browser tests (IndexedDB conformance, SDK ↔ browser end to end, service
 * worker push): where Chromium is, whether the test may skip without it, and bundling test entries
 * from the package sources.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Page } from 'playwright-core';

/** The Debian package's binary (driven by playwright-core). */
export const CHROMIUM = '/usr/bin/chromium';
export const hasChromium = existsSync(CHROMIUM);
/** .ci/run installs chromium and sets MW_REQUIRE_CHROMIUM=1: there a missing browser is a failure, not a skip. */
export const chromiumRequired = process.env['MW_REQUIRE_CHROMIUM'] === '1';
/** Whether a browser test file should skip (and say so, loudly, once). */
export function skipWithoutChromium(what: string): boolean {
  const skip = !hasChromium && !chromiumRequired;
  if (skip) {
    console.warn(
      `\n${'!'.repeat(100)}\n!!! SKIPPING ${what}: ${CHROMIUM} is missing.\n` +
        `!!! Install it (apt-get install -y chromium); .ci/run does so and sets MW_REQUIRE_CHROMIUM=1.\n${'!'.repeat(100)}\n`,
    );
  }
  return skip;
}
/** Throws the standard message when Chromium is required but missing (call in beforeAll). */
export function requireChromium(): void {
  if (!hasChromium) throw new Error(`MW_REQUIRE_CHROMIUM=1 but ${CHROMIUM} is missing: apt-get install -y chromium`);
}

const repo = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * Bundles a test entry (a file URL) for the browser from the package sources, as vitest uses them:
 * a stale dist/ must not be what the browser runs.
 */
export async function bundleForBrowser(entry: URL, format: 'esm' | 'iife' = 'esm'): Promise<string> {
  const out = await build({
    entryPoints: [fileURLToPath(entry)],
    bundle: true,
    write: false,
    platform: 'browser',
    format,
    target: 'es2022',
    alias: {
      '@meshwhisper/crypto': join(repo, 'packages/crypto/src/index.ts'),
      '@meshwhisper/protocol': join(repo, 'packages/protocol/src/index.ts'),
    },
    logLevel: 'error',
  });
  return out.outputFiles[0]!.text;
}

/**
 * A caller for a test page that exposes its API object as `window[globalName]`: `call(fn, arg)` runs
 * `fn(api, arg)` in the page. page.evaluate serialises `fn`'s source, so `fn` cannot close over
 * anything in the test; pass what it needs as `arg`.
 */
export function pageApiCaller<Api>(page: () => Page | undefined, globalName: string) {
  return <R, A>(fn: (api: Api, arg: A) => Promise<R> | R, arg: A): Promise<R> =>
    page()!.evaluate(
      ([src, g, a]) => (new Function('api', 'a', `return (${src})(api, a)`) as (api: unknown, a: unknown) => Promise<R>)((window as unknown as Record<string, unknown>)[g], a),
      [fn.toString(), globalName, arg] as const,
    ) as Promise<R>;
}

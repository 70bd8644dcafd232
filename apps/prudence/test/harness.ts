/**
 * Prudence's end-to-end harness: builds the app from this checkout's sources with Vite, starts a
 * real node serving it (WEB_APP), and drives headless Chromium (Debian's /usr/bin/chromium through
 * playwright-core), one browser context per person — each its own profile, IndexedDB and service
 * worker. Helpers wait on what the UI shows, never on fixed sleeps.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import { expect } from 'vitest';
import { qrMatrix } from '@meshwhisper/sdk';
import { CHROMIUM } from '../../../packages/sdk/test/browser-harness.js';
import type { E2eNode } from '../../../packages/sdk/test/client/test-node.js';
import { startE2eNode } from '../../../packages/sdk/test/client/test-node.js';

export { hasChromium, requireChromium, skipWithoutChromium } from '../../../packages/sdk/test/browser-harness.js';

const appRoot = fileURLToPath(new URL('..', import.meta.url));
const repo = fileURLToPath(new URL('../../..', import.meta.url));
/** A phone: every test runs at this size. */
export const PHONE = { width: 360, height: 740 };

/** Builds Prudence into `outDir` (not apps/prudence/dist: a test must not leave a build behind or use a stale one). */
export async function buildPrudence(outDir: string): Promise<void> {
  const { build } = await import('vite');
  await build({ configFile: join(appRoot, 'vite.config.ts'), logLevel: 'error', build: { outDir, emptyOutDir: true } });
}

/** A node serving the build at /, with usernames in Prudence's namespace. */
export function startPrudenceNode(webApp: string, env: Record<string, string> = {}): Promise<E2eNode> {
  return startE2eNode({ LOG_LEVEL: 'warn', USERNAME_NAMESPACES: 'default:signed', WEB_APP: webApp, ...env });
}

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

export function launchChromium(): Promise<Browser> {
  // launch() gives the browser a fresh temporary user-data-dir, removed at close.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/**
 * A browser whose camera is a file: Chromium's fake capture device plays `videoFile` (a Y4M file,
 * looped) to getUserMedia, and the permission prompt is answered yes. The file is read when a page
 * opens the camera, so a test may write it after launch (writeQrY4m).
 */
export function launchCameraChromium(videoFile: string): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-video-capture=${videoFile}`],
  });
}

/**
 * Writes one 960×720 video frame (Y4M, 4:2:0) showing `bytes` as a QR code — the SDK's own matrix
 * for them (qrMatrix), drawn black on white with a 4-module quiet zone, 5 px per module.
 */
export function writeQrY4m(path: string, bytes: Uint8Array): void {
  const { size, modules } = qrMatrix(bytes);
  const width = 960;
  const height = 720;
  const scale = Math.floor(Math.min(width, height) / (size + 8));
  if (scale < 2) throw new Error(`writeQrY4m: a ${size}-module code does not fit in ${width}×${height}`);
  const luma = Buffer.alloc(width * height, 235);
  const left = Math.floor((width - size * scale) / 2);
  const top = Math.floor((height - size * scale) / 2);
  for (let row = 0; row < size; row++) {
    for (let col = 0; col < size; col++) {
      if (!modules[row * size + col]) continue;
      for (let y = 0; y < scale; y++) luma.fill(16, (top + row * scale + y) * width + left + col * scale, (top + row * scale + y) * width + left + (col + 1) * scale);
    }
  }
  const chroma = Buffer.alloc((width / 2) * (height / 2) * 2, 128);
  writeFileSync(path, Buffer.concat([Buffer.from(`YUV4MPEG2 W${width} H${height} F10:1 Ip A1:1 C420jpeg\n`), Buffer.from('FRAME\n'), luma, chroma]));
}

/**
 * A browser with an ordinary (not off-the-record) profile in `userDataDir`: what Chromium requires
 * before it offers to install a web app (the contexts of launchChromium() are off the record).
 */
export function launchProfile(userDataDir: string): Promise<BrowserContext> {
  return chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: PHONE, serviceWorkers: 'allow' });
}

export interface Person {
  readonly name: string;
  readonly context: BrowserContext;
  page: Page;
  /** Console errors, page errors and CSP violations seen in this person's pages. */
  readonly problems: string[];
}

function watch(person: { problems: string[] }, page: Page): void {
  page.on('pageerror', (e) => person.problems.push(`pageerror: ${String(e)}`));
  page.on('console', (msg) => {
    // The browser logs failed requests as errors too; a 4xx the app handles (e.g. a lookup of an unknown username) is not a problem.
    // So is a socket the app retries while the browser is offline (the offline step).
    if (msg.type() === 'error' && !/Failed to load resource|WebSocket connection to .* failed: .*ERR_INTERNET_DISCONNECTED/.test(msg.text())) person.problems.push(`console: ${msg.text()}`);
  });
}

export async function newPerson(browser: Browser, url: string, name: string): Promise<Person> {
  const context = await browser.newContext({ viewport: PHONE, deviceScaleFactor: 1, acceptDownloads: true, serviceWorkers: 'allow' });
  await context.grantPermissions(['notifications', 'clipboard-read', 'clipboard-write'], { origin: url });
  const person: Person = { name, context, page: await context.newPage(), problems: [] };
  watch(person, person.page);
  await person.page.goto(url);
  return person;
}

/** Opens a new page for a person (after the old one was closed), at `hash`. */
export async function reopen(p: Person, url: string, hash = ''): Promise<void> {
  p.page = await p.context.newPage();
  watch(p, p.page);
  await p.page.goto(`${url}/${hash}`);
  await expect.poll(() => p.page.getByTestId('me').count(), { timeout: 30_000 }).toBe(1);
}

export async function register(p: Person): Promise<void> {
  await p.page.getByLabel('Choose a username').fill(p.name);
  await p.page.getByRole('button', { name: 'Create account' }).click();
  await p.page.getByTestId('me').filter({ hasText: p.name }).waitFor({ timeout: 30_000 });
}

/** Goes to a screen by its hash route, as a link would. */
export async function go(p: Person, hash: string): Promise<void> {
  await p.page.evaluate((h) => void (location.hash = h), hash);
}

/**
 * Types `text` into the message composer as a person would: only once no dialog is open. A modal
 * dialog makes the page behind it inert, and it closes in an effect after the click that closes it:
 * text typed in between goes nowhere (and an edit's effect would overwrite it with the old text).
 */
export async function compose(p: Person, text: string, timeout = 30_000): Promise<void> {
  await p.page.locator('dialog[open]').first().waitFor({ state: 'hidden', timeout });
  const box = p.page.getByRole('textbox', { name: 'Message' });
  await box.fill(text, { timeout });
  expect(await box.inputValue()).toBe(text);
}

/** The text of the messages shown in the open conversation. */
export function texts(p: Person): Promise<string[]> {
  return p.page.locator('.messages .text').allTextContents();
}

export async function waitForText(p: Person, text: string, timeout = 30_000): Promise<void> {
  await p.page.locator('.messages .text', { hasText: text }).first().waitFor({ timeout });
}

/** The delivery state Prudence shows for the outgoing message with this text. */
export function stateOf(p: Person, text: string): Promise<string | null> {
  return p.page.locator('.message.outgoing', { has: p.page.locator('.text', { hasText: text }) }).first().getAttribute('data-state');
}

const AXE = readFileSync(join(repo, 'node_modules/axe-core/axe.min.js'), 'utf8');

/** axe-core on the current screen: the serious and critical violations (ids and the elements). */
export async function axeViolations(page: Page): Promise<string[]> {
  // Evaluated through the DevTools protocol, which the page's strict CSP does not govern.
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(ctx: unknown, o: unknown): Promise<{ violations: { id: string; impact: string; nodes: { target: string[] }[] }[] }> } }).axe;
    return axe.run(document, { resultTypes: ['violations'] });
  });
  return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

/**
 * Every visible control on the screen can be reached with Tab, and has an accessible name; the
 * page does not scroll sideways at phone width.
 */
export async function checkKeyboardAndWidth(page: Page): Promise<void> {
  const controls = await page.evaluate(() => {
    const visible = (el: Element): boolean => {
      const r = el.getBoundingClientRect();
      const s = getComputedStyle(el);
      // A modal dialog open: only its controls take focus (the browser makes the rest inert).
      const modal = document.querySelector('dialog[open]');
      if (modal && !modal.contains(el)) return false;
      return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none' && !el.closest('[inert]') && !(el.closest('dialog') && !el.closest('dialog[open]'));
    };
    const all = [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')].filter((el) => !(el as HTMLButtonElement).disabled);
    return all.map((el, i) => {
      (el as HTMLElement).dataset['kbd'] = String(i);
      const radio = el instanceof HTMLInputElement && el.type === 'radio' ? el.name : undefined;
      return { i, visible: visible(el), tag: el.tagName.toLowerCase(), tabIndex: (el as HTMLElement).tabIndex, radio, html: el.outerHTML.slice(0, 120) };
    });
  });
  const wanted = controls.filter((c) => c.visible && c.tabIndex >= 0);
  const reached = new Set<string>();
  await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
  // Focus starts where it was; Tab wraps around the page: go round until all were reached (or twice round).
  const stops = wanted.length - wanted.filter((c) => c.radio !== undefined).length + new Set(wanted.filter((c) => c.radio !== undefined).map((c) => c.radio)).size;
  for (let i = 0; i < 2 * wanted.length + 10 && reached.size < stops; i++) {
    await page.keyboard.press('Tab');
    const k = await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset['kbd']);
    if (k !== undefined) reached.add(k);
  }
  // A radio group is one Tab stop (arrow keys move inside it): reaching one of its radios reaches the group.
  const radioGroups = new Set(wanted.filter((c) => c.radio !== undefined && reached.has(String(c.i))).map((c) => c.radio));
  const missed = wanted.filter((c) => !reached.has(String(c.i)) && !(c.radio !== undefined && radioGroups.has(c.radio))).map((c) => c.html);
  expect(missed, 'controls not reachable with Tab').toEqual([]);
  const unnamed = await page.evaluate(() =>
    [...document.querySelectorAll('[data-kbd]')]
      .filter((el) => {
        const e = el as HTMLElement;
        const labelled = e.getAttribute('aria-label') || e.getAttribute('aria-labelledby') || (e as HTMLInputElement).labels?.length || e.textContent?.trim() || e.getAttribute('title');
        return !labelled && e.getAttribute('type') !== 'hidden';
      })
      .map((el) => el.outerHTML.slice(0, 120)),
  );
  expect(unnamed, 'controls without a name').toEqual([]);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow, 'sideways scrolling at phone width').toBeLessThanOrEqual(0);
}

/** Screenshots go to docs/prudence/ when PRUDENCE_SCREENSHOTS=1 (then committed), else to the test's temp dir. */
export function screenshotDir(tmp: string): string {
  const dir = process.env['PRUDENCE_SCREENSHOTS'] === '1' ? join(repo, 'docs/prudence') : join(tmp, 'screenshots');
  mkdirSync(dir, { recursive: true });
  return dir;
}

export async function screenshot(page: Page, dir: string, name: string): Promise<void> {
  // No focus ring left over from the keyboard walk; lists from the top, conversations at the end.
  await page.evaluate(() => {
    (document.activeElement as HTMLElement | null)?.blur();
    if (!document.querySelector('.messages')) window.scrollTo(0, 0);
  });
  writeFileSync(join(dir, `${name}.png`), await page.screenshot({ animations: 'disabled' }));
}

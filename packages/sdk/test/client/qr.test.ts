/**
 * QR codes are checked with a real, independent decoder (jsQR): what qrMatrix()/qrSvg() draw is
 * rasterised and scanned, and the scan must give back the exact input. The browser build is
 * checked by bundling these modules with esbuild for the browser and running the bundle in a bare
 * JavaScript realm (no Buffer, process or require).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runInNewContext } from 'node:vm';
import { build } from 'esbuild';
import jsqr from 'jsqr';
import { describe, expect, it } from 'vitest';
import { AccountKeyPair, computeSafetyNumber, createContext, verifyScannedSafetyNumber } from '@meshwhisper/crypto';
import type { ContactCard } from '../../src/client/contact-card.js';
import { decodeContactCard, encodeContactCard } from '../../src/client/contact-card.js';
import { SdkError, SdkErrorCode } from '../../src/client/errors.js';
import type { QrErrorCorrection, QrMatrix } from '../../src/client/qr.js';
import { qrMatrix, qrSvg } from '../../src/client/qr.js';

// jsqr is CommonJS with `exports.default = jsQR`: under NodeNext the default import is the whole
// module object, whose `default` is the function (at run time too, in Node and in vitest).
const jsQR = jsqr.default;

const SCALE = 4;
const QUIET = 4;

/** RGBA pixels of a module grid: `SCALE` px per module, `quiet` light modules around it. */
function rasterise(size: number, dark: (row: number, col: number) => boolean, quiet = QUIET): { pixels: Uint8ClampedArray; width: number } {
  const width = (size + 2 * quiet) * SCALE;
  const pixels = new Uint8ClampedArray(width * width * 4).fill(255);
  for (let row = 0; row < size; row++) {
    for (let col = 0; col < size; col++) {
      if (!dark(row, col)) continue;
      for (let y = 0; y < SCALE; y++) {
        for (let x = 0; x < SCALE; x++) {
          const p = (((row + quiet) * SCALE + y) * width + (col + quiet) * SCALE + x) * 4;
          pixels[p] = pixels[p + 1] = pixels[p + 2] = 0;
        }
      }
    }
  }
  return { pixels, width };
}

function scan(m: QrMatrix): { data: string; bytes: Uint8Array } {
  const { pixels, width } = rasterise(m.size, (r, c) => m.modules[r * m.size + c]!);
  const found = jsQR(pixels, width, width, { inversionAttempts: 'dontInvert' });
  if (found === null) throw new Error('jsQR found no QR code');
  return { data: found.data, bytes: Uint8Array.from(found.binaryData) };
}

/** Parses qrSvg() output back into its geometry; throws if anything is not what qrSvg writes. */
function parseSvg(svg: string): { total: number; px: number; light: string; dark: string; runs: [number, number, number][] } {
  const m = /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" viewBox="0 0 (\d+) (\d+)" width="(\d+)" height="(\d+)" shape-rendering="crispEdges"><rect width="(\d+)" height="(\d+)" fill="([^"]*)"\/><path fill="([^"]*)" d="([^"]*)"\/><\/svg>$/.exec(svg);
  if (!m) throw new Error('unexpected SVG structure');
  const [, vw, vh, w, h, rw, rh, light, dark, d] = m as unknown as string[];
  expect(vw).toBe(vh);
  expect(w).toBe(h);
  expect(rw).toBe(vw);
  expect(rh).toBe(vh);
  const runs: [number, number, number][] = [];
  const re = /M(\d+) (\d+)h(\d+)v1h-(\d+)z/gy;
  let consumed = 0;
  for (let r = re.exec(d!); r !== null; r = re.exec(d!)) {
    expect(r[4]).toBe(r[3]);
    runs.push([Number(r[1]), Number(r[2]), Number(r[3])]);
    consumed = re.lastIndex;
  }
  expect(consumed).toBe(d!.length);
  return { total: Number(vw), px: Number(w), light: light!, dark: dark!, runs };
}

/** The SVG's dark area as a grid over the whole viewBox. */
function svgGrid(svg: string): { total: number; grid: boolean[] } {
  const { total, runs } = parseSvg(svg);
  const grid = new Array<boolean>(total * total).fill(false);
  for (const [x, y, len] of runs) {
    for (let i = 0; i < len; i++) {
      expect(grid[y * total + x + i]).toBe(false); // runs never overlap
      grid[y * total + x + i] = true;
    }
  }
  return { total, grid };
}

function sdkCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof SdkError) return e.code;
    throw e;
  }
  throw new Error('expected an SdkError');
}

function sampleCard(): ContactCard {
  return {
    node: 'https://chat.example.com',
    namespace: 'example.chat',
    accountKey: new Uint8Array(randomBytes(32)),
    mailboxIds: [0, 1, 2].map(() => new Uint8Array(randomBytes(32))),
    username: 'alice',
  };
}

describe('qrMatrix, scanned by jsQR', () => {
  it('a contact card (3 mailbox ids) scans back to the same text and card', () => {
    const card = sampleCard();
    const text = encodeContactCard(card);
    const m = qrMatrix(text);
    expect(m.modules).toHaveLength(m.size * m.size);
    expect((m.size - 17) % 4).toBe(0); // a QR size: 21, 25, …, 177
    const scanned = scan(m);
    expect(scanned.data).toBe(text);
    expect(decodeContactCard(scanned.data)).toEqual(card);
  });

  it('a safety-number payload (bytes) scans back byte for byte and verifies on the other side', () => {
    const ctx = createContext();
    const alice = AccountKeyPair.generate(ctx).publicKey;
    const bob = AccountKeyPair.generate(ctx).publicKey;
    const mallory = AccountKeyPair.generate(ctx).publicKey;
    const aliceView = computeSafetyNumber(ctx, { accountKey: alice }, { accountKey: bob });
    const bobView = computeSafetyNumber(ctx, { accountKey: bob }, { accountKey: alice });
    const bobFooled = computeSafetyNumber(ctx, { accountKey: bob }, { accountKey: mallory });

    const scanned = scan(qrMatrix(aliceView.scannable)).bytes; // Bob scans Alice's screen
    expect(scanned).toEqual(aliceView.scannable);
    expect(verifyScannedSafetyNumber(bobView, scanned)).toEqual({ status: 'match' });
    expect(verifyScannedSafetyNumber(bobFooled, scanned)).toEqual({ status: 'mismatch' });
  });

  it('bytes that are not valid UTF-8 go through unchanged (one byte-mode segment)', () => {
    const data = Uint8Array.from({ length: 256 }, (_, i) => 255 - i);
    expect(scan(qrMatrix(data)).bytes).toEqual(data);
  });

  it('non-ASCII text is encoded as UTF-8', () => {
    const text = 'héllo ✓ 12345 ABC';
    const s = scan(qrMatrix(text));
    expect(s.data).toBe(text);
    expect(s.bytes).toEqual(new TextEncoder().encode(text));
  });

  it.each<QrErrorCorrection>(['L', 'M', 'Q', 'H'])('error correction %s scans; higher levels need bigger symbols', (level) => {
    const text = encodeContactCard(sampleCard());
    const m = qrMatrix(text, { errorCorrection: level });
    expect(scan(m).data).toBe(text);
    if (level !== 'L') expect(m.size).toBeGreaterThan(qrMatrix(text, { errorCorrection: 'L' }).size);
  });

  it('defaults to level M', () => {
    const text = encodeContactCard(sampleCard());
    expect(qrMatrix(text)).toEqual(qrMatrix(text, { errorCorrection: 'M' }));
  });

  it('level H survives damage that level L does not', () => {
    const text = 'mwc1:' + 'x'.repeat(60);
    const damage = (m: QrMatrix): QrMatrix => {
      // Invert a 10×10 block in the middle of the symbol (away from finder and format patterns).
      const modules = m.modules.slice();
      const start = Math.floor(m.size / 2) - 5;
      for (let r = start; r < start + 10; r++) for (let c = start; c < start + 10; c++) modules[r * m.size + c] = !modules[r * m.size + c];
      return { size: m.size, modules };
    };
    expect(scan(damage(qrMatrix(text, { errorCorrection: 'H' }))).data).toBe(text);
    expect(() => scan(damage(qrMatrix(text, { errorCorrection: 'L' })))).toThrow(/no QR code/);
  });

  it('refuses empty data, unknown levels, wrong types and data too large for any QR version', () => {
    expect(sdkCode(() => qrMatrix(''))).toBe(SdkErrorCode.INVALID_ARGUMENT);
    expect(sdkCode(() => qrMatrix(new Uint8Array(0)))).toBe(SdkErrorCode.INVALID_ARGUMENT);
    expect(sdkCode(() => qrMatrix('x', { errorCorrection: 'X' as QrErrorCorrection }))).toBe(SdkErrorCode.INVALID_ARGUMENT);
    expect(sdkCode(() => qrMatrix(42 as unknown as string))).toBe(SdkErrorCode.INVALID_ARGUMENT);
    expect(sdkCode(() => qrMatrix(new Uint8Array(3000)))).toBe(SdkErrorCode.INVALID_ARGUMENT);
    expect(qrMatrix(new Uint8Array(2331)).size).toBe(177); // the version-40 byte capacity at level M
  });
});

describe('qrSvg', () => {
  it('is an SVG document whose drawn modules are exactly the matrix, inside the quiet zone', () => {
    const text = encodeContactCard(sampleCard());
    const m = qrMatrix(text);
    const svg = qrSvg(text);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain(`viewBox="0 0 ${m.size + 8} ${m.size + 8}"`);
    const { total, grid } = svgGrid(svg);
    expect(total).toBe(m.size + 2 * 4);
    for (let r = 0; r < total; r++) {
      for (let c = 0; c < total; c++) {
        const inside = r >= 4 && c >= 4 && r < 4 + m.size && c < 4 + m.size;
        const expected = inside ? m.modules[(r - 4) * m.size + (c - 4)]! : false;
        if (grid[r * total + c] !== expected) throw new Error(`module (${r}, ${c}) differs`);
      }
    }
    expect(parseSvg(svg)).toMatchObject({ px: total * 4, light: '#ffffff', dark: '#000000' });
  });

  it('the rasterised SVG scans back to the input (bytes too)', () => {
    const ctx = createContext();
    const sn = computeSafetyNumber(ctx, { accountKey: AccountKeyPair.generate(ctx).publicKey }, { accountKey: AccountKeyPair.generate(ctx).publicKey });
    const svg = qrSvg(sn.scannable, { margin: 2, errorCorrection: 'Q' });
    const { total, grid } = svgGrid(svg);
    const { pixels, width } = rasterise(total, (r, c) => grid[r * total + c]!, 2);
    const found = jsQR(pixels, width, width, { inversionAttempts: 'dontInvert' });
    expect(found).not.toBeNull();
    expect(Uint8Array.from(found!.binaryData)).toEqual(sn.scannable);
  });

  it('honours margin, moduleSize and colours', () => {
    const m = qrMatrix('hello');
    const svg = qrSvg('hello', { margin: 0, moduleSize: 10, dark: 'rgb(10 20 30)', light: 'transparent' });
    const p = parseSvg(svg);
    expect(p).toMatchObject({ total: m.size, px: m.size * 10, dark: 'rgb(10 20 30)', light: 'transparent' });
  });

  it('refuses colours that could break out of the attribute, and bad sizes', () => {
    for (const dark of ['"/><script>alert(1)</script>', "red' onload='x", 'a&b', '', 'x'.repeat(65)]) {
      expect(sdkCode(() => qrSvg('hello', { dark }))).toBe(SdkErrorCode.INVALID_ARGUMENT);
      expect(sdkCode(() => qrSvg('hello', { light: dark }))).toBe(SdkErrorCode.INVALID_ARGUMENT);
    }
    for (const margin of [-1, 1.5, 65, Number.NaN]) expect(sdkCode(() => qrSvg('hello', { margin }))).toBe(SdkErrorCode.INVALID_ARGUMENT);
    for (const moduleSize of [0, 2.5, 257]) expect(sdkCode(() => qrSvg('hello', { moduleSize }))).toBe(SdkErrorCode.INVALID_ARGUMENT);
  });
});

describe('browser build', () => {
  it('bundles for the browser without Node code and runs in a realm without Buffer, process or require', async () => {
    const repo = fileURLToPath(new URL('../../../../', import.meta.url));
    const src = join(repo, 'packages/sdk/src/client');
    const out = await build({
      stdin: {
        contents: `export { qrMatrix, qrSvg } from './qr.ts'; export { encodeContactCard, decodeContactCard } from './contact-card.ts';`,
        resolveDir: src,
        loader: 'ts',
      },
      bundle: true,
      write: false,
      metafile: true,
      platform: 'browser',
      format: 'iife',
      globalName: 'mwQr',
      target: 'es2022',
      alias: {
        '@meshwhisper/crypto': join(repo, 'packages/crypto/src/index.ts'),
        '@meshwhisper/protocol': join(repo, 'packages/protocol/src/index.ts'),
      },
      logLevel: 'silent',
    });
    const inputs = Object.keys(out.metafile.inputs);
    expect(inputs.some((p) => p.includes('node_modules/qrcode/lib/browser.js'))).toBe(true);
    expect(inputs.filter((p) => /qrcode\/lib\/(server|renderer\/png)\.js|pngjs|yargs/.test(p))).toEqual([]);

    const card = sampleCard();
    const text = encodeContactCard(card);
    // Only what browsers have; the outer Uint8Array so that instanceof checks on `card` hold.
    const realm: { result?: { bare: boolean; text: string; card: unknown; matrix: QrMatrix; svg: string } } & Record<string, unknown> = {
      TextEncoder,
      TextDecoder,
      URL,
      atob,
      btoa,
      Uint8Array,
      card,
      text,
    };
    runInNewContext(
      `${out.outputFiles[0]!.text}
      result = {
        bare: typeof Buffer === 'undefined' && typeof process === 'undefined' && typeof require === 'undefined',
        text: mwQr.encodeContactCard(card),
        card: mwQr.decodeContactCard(text),
        matrix: mwQr.qrMatrix(text),
        svg: mwQr.qrSvg(card.accountKey, { errorCorrection: 'H' }),
      };`,
      realm,
    );
    const r = realm.result!;
    expect(r.bare).toBe(true);
    expect(r.text).toBe(text);
    expect(r.card).toEqual(card);
    expect(r.matrix).toEqual(qrMatrix(text));
    expect(r.svg).toBe(qrSvg(card.accountKey, { errorCorrection: 'H' }));
  });
});

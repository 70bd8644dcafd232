/**
 * QR codes for contact cards and safety numbers (docs/api.md §Contacts, §Safety numbers), for Node
 * and browsers alike: the symbol comes from the `qrcode` package's encoder (its browser build has
 * no Node dependencies), and the SVG is drawn here from the module matrix, so nothing needs a
 * canvas, Buffer or the DOM.
 *
 * Text is encoded as UTF-8 (qrcode picks numeric / alphanumeric / byte segments to keep the symbol
 * small; any standard reader gets the same text back); bytes (a safety number's scannable payload)
 * go in one byte-mode segment, which a reader returns unchanged as raw bytes.
 */
import QRCode from 'qrcode';
import { SdkError, SdkErrorCode } from './errors.js';

/** QR error-correction level: L ≈ 7 %, M ≈ 15 %, Q ≈ 25 %, H ≈ 30 % of the symbol recoverable. */
export type QrErrorCorrection = 'L' | 'M' | 'Q' | 'H';

export interface QrOptions {
  /** Error-correction level (default 'M'). */
  errorCorrection?: QrErrorCorrection;
}

/** A QR symbol: `size`×`size` modules, row-major (`modules[row * size + col]`), true = dark. */
export interface QrMatrix {
  size: number;
  modules: boolean[];
}

export interface QrSvgOptions extends QrOptions {
  /** Quiet zone around the symbol, in modules (default 4, the minimum the QR standard asks for). */
  margin?: number;
  /** Rendered size of one module in px: sets the SVG's width/height (default 4). */
  moduleSize?: number;
  /** Colour of dark modules, any CSS colour (default "#000000"). */
  dark?: string;
  /** Colour of the background and quiet zone, any CSS colour (default "#ffffff"). */
  light?: string;
}

/** Default quiet zone (modules) and module size (px) of qrSvg(). */
export const QR_DEFAULT_MARGIN = 4;
export const QR_DEFAULT_MODULE_SIZE = 4;

const EC_LEVELS: readonly string[] = ['L', 'M', 'Q', 'H'];
/** What a colour may look like: "#1a2b3c", "black", "rgb(0 0 0 / 50%)", "currentColor"… but no quotes or markup. */
const COLOR_PATTERN = /^[#a-zA-Z0-9(),.%/ +-]{1,64}$/;

function argError(message: string, cause?: unknown): SdkError {
  return new SdkError(SdkErrorCode.INVALID_ARGUMENT, message, undefined, cause === undefined ? undefined : { cause });
}

/**
 * The QR symbol for `data`: a string (UTF-8) or bytes (one byte-mode segment). Throws
 * INVALID_ARGUMENT for empty data, a bad option, or data too large for any QR version (about 2.3 KB
 * of bytes at level M).
 */
export function qrMatrix(data: string | Uint8Array, options: QrOptions = {}): QrMatrix {
  const level = options.errorCorrection ?? 'M';
  if (!EC_LEVELS.includes(level)) throw argError(`qrMatrix: errorCorrection must be one of ${EC_LEVELS.join(', ')}`);
  let input: string | QRCode.QRCodeSegment[];
  if (typeof data === 'string') {
    if (data.length === 0) throw argError('qrMatrix: data must not be empty');
    input = data;
  } else if (data instanceof Uint8Array) {
    if (data.length === 0) throw argError('qrMatrix: data must not be empty');
    input = [{ mode: 'byte', data: data.slice() }];
  } else {
    throw argError('qrMatrix: data must be a string or a Uint8Array');
  }
  let symbol: QRCode.QRCode;
  try {
    symbol = QRCode.create(input, { errorCorrectionLevel: level });
  } catch (e) {
    throw argError(`qrMatrix: cannot encode the data as a QR code (${e instanceof Error ? e.message : String(e)})`, e);
  }
  const { size, data: bits } = symbol.modules;
  const modules = new Array<boolean>(size * size);
  for (let i = 0; i < modules.length; i++) modules[i] = bits[i] === 1;
  return { size, modules };
}

function checkCount(value: number, name: string, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw argError(`qrSvg: ${name} must be an integer in ${min}..${max}`);
  return value;
}

function checkColor(value: string, name: string): string {
  if (typeof value !== 'string' || !COLOR_PATTERN.test(value)) throw argError(`qrSvg: ${name} must be a CSS colour`);
  return value;
}

/**
 * A standalone SVG document (no XML prolog, so it can also be inlined in HTML) showing the QR
 * symbol for `data`. Coordinates are in modules (viewBox includes the quiet zone); width and height
 * are `moduleSize` px per module. Dark modules are one <path> of horizontal runs.
 */
export function qrSvg(data: string | Uint8Array, options: QrSvgOptions = {}): string {
  const margin = checkCount(options.margin ?? QR_DEFAULT_MARGIN, 'margin', 0, 64);
  const moduleSize = checkCount(options.moduleSize ?? QR_DEFAULT_MODULE_SIZE, 'moduleSize', 1, 256);
  const dark = checkColor(options.dark ?? '#000000', 'dark');
  const light = checkColor(options.light ?? '#ffffff', 'light');
  const { size, modules } = qrMatrix(data, options.errorCorrection === undefined ? {} : { errorCorrection: options.errorCorrection });
  const total = size + 2 * margin;
  let d = '';
  for (let row = 0; row < size; row++) {
    let col = 0;
    while (col < size) {
      if (!modules[row * size + col]) {
        col++;
        continue;
      }
      const start = col;
      while (col < size && modules[row * size + col]) col++;
      const run = col - start;
      d += `M${start + margin} ${row + margin}h${run}v1h-${run}z`;
    }
  }
  const px = total * moduleSize;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${total} ${total}" width="${px}" height="${px}" shape-rendering="crispEdges">` +
    `<rect width="${total}" height="${total}" fill="${light}"/>` +
    `<path fill="${dark}" d="${d}"/>` +
    `</svg>`
  );
}

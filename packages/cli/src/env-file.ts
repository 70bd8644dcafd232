/**
 * The node's `.env` file: the subset of dotenv syntax that `node --env-file`, Docker Compose's
 * `env_file` and a POSIX shell's `set -a; . ./.env` all read the same way. What we write stays
 * inside that subset: comments on their own lines only, values double-quoted when they contain
 * anything but [A-Za-z0-9_.,:/@+=-], no `$` (Compose would interpolate it).
 */
import { readFile } from 'node:fs/promises';
import { CliError, CliErrorCode } from './errors.js';

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PLAIN_VALUE = /^[A-Za-z0-9_.,:/@+=-]*$/;

/** Parses .env text into name → value. Unknown syntax is an error naming the line (never the value). */
export function parseEnv(text: string, source = '.env'): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? '').trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([^=\s]+)\s*=\s*(.*)$/.exec(line);
    if (!m || !NAME.test(m[1] ?? '')) throw new CliError(CliErrorCode.INVALID_VALUE, `${source}:${i + 1}: not a NAME=value line`);
    const raw = m[2] ?? '';
    let value: string;
    const q = raw[0];
    if (q === '"' || q === "'") {
      const end = raw.indexOf(q, 1);
      if (end < 0) throw new CliError(CliErrorCode.INVALID_VALUE, `${source}:${i + 1}: unterminated quote`);
      value = raw.slice(1, end);
      if (q === '"') value = value.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    } else {
      // Unquoted: an inline comment starts at whitespace followed by '#'.
      value = raw.replace(/\s+#.*$/, '').trim();
    }
    out.set(m[1] ?? '', value);
  }
  return out;
}

/** Reads and parses a .env file; CliError NOT_FOUND if it does not exist. */
export async function readEnvFile(path: string): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new CliError(CliErrorCode.NOT_FOUND, `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  return parseEnv(text, path);
}

/** One `NAME=value` line, quoting the value when needed. */
export function envLine(name: string, value: string): string {
  if (!NAME.test(name)) throw new CliError(CliErrorCode.INVALID_VALUE, `${JSON.stringify(name)} is not a valid variable name`);
  if (/[\n\r$"\\`]/.test(value)) throw new CliError(CliErrorCode.INVALID_VALUE, `${name}: value contains a newline, quote, backslash or $, which .env readers disagree on`);
  return PLAIN_VALUE.test(value) ? `${name}=${value}` : `${name}="${value}"`;
}

/** Wraps text into `# ` comment lines of at most `width` characters. */
export function commentLines(text: string, width = 96): string[] {
  const out: string[] = [];
  for (const paragraph of text.split('\n')) {
    let line = '';
    for (const word of paragraph.split(/\s+/).filter(Boolean)) {
      if (line !== '' && line.length + 1 + word.length > width - 2) {
        out.push(`# ${line}`);
        line = word;
      } else {
        line = line === '' ? word : `${line} ${word}`;
      }
    }
    out.push(line === '' ? '#' : `# ${line}`);
  }
  return out;
}

/** Where a command writes, injected so tests capture it; and the progress indicator. */
import { PROGRESS_AFTER_MS } from './constants.js';

export interface CliIo {
  /** One line to stdout (results, reports). */
  readonly out: (line: string) => void;
  /** One line to stderr (errors, warnings, progress). */
  readonly err: (line: string) => void;
  /** Raw write to stderr for a spinner redrawn in place (TTY only). */
  readonly errRaw?: (text: string) => void;
  /** True when stderr is a terminal (spinner) rather than a file or pipe (one line per step). */
  readonly errIsTTY?: boolean;
  /** True when stdin is a terminal: `init` may ask questions. */
  readonly stdinIsTTY?: boolean;
  /** Asks one question and returns the answer (TTY only). */
  readonly ask?: (question: string) => Promise<string>;
  /** Working directory for relative paths and the default ./.env (default process.cwd()). */
  readonly cwd?: string;
  /** Environment the node's settings may come from (default process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/**
 * Runs `work`; if it is still running after PROGRESS_AFTER_MS, shows `label` on stderr: a spinner
 * on a terminal, a single "label …" line otherwise (logs stay readable). Never writes to stdout,
 * so `--json` output stays machine-readable.
 */
export async function withProgress<T>(io: CliIo, label: string, work: Promise<T>, afterMs = PROGRESS_AFTER_MS): Promise<T> {
  let spinner: NodeJS.Timeout | undefined;
  let shown = false;
  let frame = 0;
  const start = setTimeout(() => {
    shown = true;
    if (io.errIsTTY && io.errRaw) {
      const draw = (): void => io.errRaw?.(`\r${FRAMES[frame++ % FRAMES.length]} ${label}`);
      draw();
      spinner = setInterval(draw, 100);
    } else {
      io.err(`… ${label}`);
    }
  }, afterMs);
  try {
    return await work;
  } finally {
    clearTimeout(start);
    if (spinner) clearInterval(spinner);
    if (shown && io.errIsTTY && io.errRaw) io.errRaw(`\r${' '.repeat(label.length + 2)}\r`);
  }
}

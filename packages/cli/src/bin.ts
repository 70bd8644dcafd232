#!/usr/bin/env node
/** The `meshwhisper` binary: wires the process's streams and TTY into runCli (cli.ts). */
import { createInterface } from 'node:readline';
import type { Interface } from 'node:readline';
import { runCli } from './cli.js';
import type { CliIo } from './io.js';

// One line iterator for all questions: it buffers lines typed (or pasted) ahead of a question,
// and at end of input every further question takes its default.
let rl: Interface | undefined;
let lines: AsyncIterator<string> | undefined;
async function ask(question: string): Promise<string> {
  rl ??= createInterface({ input: process.stdin, terminal: false });
  lines ??= rl[Symbol.asyncIterator]();
  process.stderr.write(question);
  const next = await lines.next();
  if (next.done) {
    process.stderr.write('\n');
    return '';
  }
  return next.value;
}

const io: CliIo = {
  out: (line) => void process.stdout.write(`${line}\n`),
  err: (line) => void process.stderr.write(`${line}\n`),
  errRaw: (text) => void process.stderr.write(text),
  errIsTTY: process.stderr.isTTY === true,
  stdinIsTTY: process.stdin.isTTY === true,
  ask,
};

runCli(process.argv.slice(2), io)
  .then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`meshwhisper: MW_CLI_INTERNAL: unexpected error: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  )
  .finally(() => rl?.close());

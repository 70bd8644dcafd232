/** Errors of the CLI: one type, stable codes (docs/cli.md §Exit codes and errors). */

export const CliErrorCode = {
  /** Unknown command or option, missing or malformed argument. Exit code 2. */
  USAGE: 'MW_CLI_USAGE',
  /** `init` would overwrite existing files and --force was not given. Exit code 1. */
  WOULD_OVERWRITE: 'MW_CLI_WOULD_OVERWRITE',
  /** A value (namespace, URL, push list, .env line) is not acceptable. Exit code 2. */
  INVALID_VALUE: 'MW_CLI_INVALID_VALUE',
  /** A file the command needs (e.g. the node's .env) cannot be read. Exit code 1. */
  NOT_FOUND: 'MW_CLI_NOT_FOUND',
  /** A bug or an unexpected failure (the message says what failed). Exit code 1. */
  INTERNAL: 'MW_CLI_INTERNAL',
  /** A feature that is not available in this version. Exit code 2. */
  UNSUPPORTED: 'MW_CLI_UNSUPPORTED',
} as const;
export type CliErrorCode = (typeof CliErrorCode)[keyof typeof CliErrorCode];

export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    readonly code: CliErrorCode,
    message: string,
  ) {
    super(message);
  }
  /** Process exit code for this error. */
  get exitCode(): number {
    return this.code === CliErrorCode.USAGE || this.code === CliErrorCode.INVALID_VALUE || this.code === CliErrorCode.UNSUPPORTED ? 2 : 1;
  }
  toJSON(): { error: { code: CliErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

/**
 * The CLI's own failures, next to the library's TraceError: a UsageError is the user's command
 * line (exit 2), a CliError anything else the command itself can explain (exit 1). Both carry a
 * message that names the cause and the fix, printed as one line.
 */
export class UsageError extends Error {
  /** The subcommand whose --help to point at, if any. */
  readonly command: string | undefined

  constructor(message: string, command?: string) {
    super(message)
    this.name = 'UsageError'
    this.command = command
  }
}

export class CliError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'CliError'
  }
}

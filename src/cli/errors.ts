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

/**
 * A library message in the command's words: the API names it mentions become the commands and
 * options that do the same, and root is not told to run as root.
 */
export function inCommandWords(message: string, root = process.geteuid?.() === 0): string {
  let words = message
    .replace(/listProbes\('?([^')]+)'?\)/g, '`usdtrace probes $1`')
    .replace(/inspect\(pid\)\.capabilities says/g, '`usdtrace ps` says')
    .replace(/use \{ entries: false \} to trace returns without it/g, '`usdtrace calls` without -L counts returns without it')
    .replace(/\{ pid \} \/ \{ pids(: \[\.\.\.\])? \}/g, 'PIDs')
    .replace(/\{ binary(: path)? \}/g, '--binary')
    .replace(/, or sampleStacks\(\) \/ stackProfile\(\) \/ dumpStacks\(\)/g, '')
  if (root) {
    words = words.replace(
      /permission denied; run as root, or grant .*$/,
      'permission denied, though this is root: something above root forbids it (kernel lockdown, a seccomp or LSM policy, a container without CAP_BPF and CAP_PERFMON); `usdtrace doctor` checks',
    )
  }
  return words
}

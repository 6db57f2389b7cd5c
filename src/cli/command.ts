import type { OptionSpecs, ParsedArgs } from './args.js'
import type { Run } from './run.js'

/** One subcommand: its options, its --help, and what it does. */
export interface Command {
  name: string
  /** one line for `usdtrace --help` */
  summary: string
  /** the whole --help text: usage, options, examples */
  help: string
  options: OptionSpecs
  run(run: Run, args: ParsedArgs): Promise<void>
}

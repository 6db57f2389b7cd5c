/**
 * `usdtrace doctor`: whether this machine can trace, one requirement per line (the addon, the
 * kernel, BTF, uprobes, privileges), each failed one with what it needs and the fix.
 */
import { doctor as checkMachine, formatDoctor } from '../index.js'
import type { ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { UsageError } from './errors.js'
import type { Run } from './run.js'

const NAME = 'doctor'

const HELP = `usdtrace doctor

Checks what usdtrace needs, without loading anything into the kernel: the native addon, the
kernel version, BTF, uprobes, and the privileges of this process. Each failed check says what is
needed and how to fix it. The exit status is 0 when every check passes, 1 otherwise.

Options:
      --json             one JSON object per check (see docs/cli.md for the schema)
      --debug            stack traces on errors

Examples:
  usdtrace doctor
  sudo usdtrace doctor`

export const doctor: Command = {
  name: NAME,
  summary: 'check that this machine and user can trace',
  help: HELP,
  options: {},
  run: runDoctor,
}

async function runDoctor(run: Run, args: ParsedArgs): Promise<void> {
  if (args.positionals.length > 0) throw new UsageError(`doctor takes no arguments, got ${args.positionals.join(' ')}`, NAME)
  const checks = checkMachine()
  if (run.json) for (const check of checks) run.out.json({ type: 'check', ...check })
  else {
    const paint = run.out.painter
    for (const line of formatDoctor(checks).split('\n')) {
      run.out.line(line.replace(/^(ok|FAIL)\b/, (word) => paint.paint(word === 'ok' ? 'green' : 'red', word)))
    }
  }
  const failed = checks.filter((check) => !check.ok).length
  if (failed > 0) {
    run.status.note(`${failed} of ${checks.length} checks failed`)
    run.stop('failed')
  }
}

#!/usr/bin/env node
/**
 * The `usdtrace` command: finds the subcommand, parses its options, runs it, and turns whatever
 * ends it into one line on stderr and an exit code (see EXIT in run.ts and docs/cli.md).
 */
import { readFileSync, realpathSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { TraceError } from '../index.js'
import { parse, type ParsedArgs } from './args.js'
import { calls } from './calls.js'
import type { Command } from './command.js'
import { CliError, UsageError, inCommandWords } from './errors.js'
import { flame } from './flame.js'
import { flow } from './flow.js'
import { Status } from './output.js'
import { probes } from './probes.js'
import { ps } from './ps.js'
import { record } from './record.js'
import { EXIT, Run } from './run.js'
import { ProgramExited } from './spawn.js'
import { syscalls } from './syscalls.js'
import { usdt } from './usdt.js'
import { gc } from './gc.js'
import { stat } from './stat.js'
import { doctor } from './doctor.js'
import { dump } from './dump.js'
import { top } from './top.js'
import { libcalls } from './libcalls.js'
import { agent } from './agent.js'

const COMMANDS: Command[] = [ps, probes, calls, flow, record, flame, top, dump, gc, stat, syscalls, libcalls, usdt, doctor, agent]

/** `usdtrace -- CMD` and `usdtrace --spawn CMD` without a subcommand. */
const DEFAULT_COMMAND = calls

/** The package's version, from the package.json two levels above this script (dist/cli/main.js). */
function version(): string {
  // From the script's real path rather than import.meta, so that a CommonJS build of src/ works too.
  const script = realpathSync(process.argv[1]!)
  const pkg = JSON.parse(readFileSync(join(dirname(script), '..', '..', 'package.json'), 'utf8')) as { version: string }
  return pkg.version
}

function topHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length))
  return `usdtrace ${version()}: trace running Python processes through their USDT probes, or sample their stacks

Usage:
  usdtrace COMMAND [options]
  usdtrace [COMMAND] [options] -- CMD [ARGS...]   start a Python program and trace it from its first call

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Every command takes --help (its options and examples), --json (NDJSON on stdout) and --debug.
Without a command, \`usdtrace -- CMD\` runs \`usdtrace ${DEFAULT_COMMAND.name} -- CMD\`.
Tracing needs root, or CAP_BPF and CAP_PERFMON.

Exit status: 0 done or the target exited (with -- CMD: the program's own status), 1 error,
2 usage error, 130 interrupted (SIGINT), 143 terminated (SIGTERM), 129 hung up (SIGHUP),
141 the output was closed (e.g. | head).

Examples:
  usdtrace ps
  usdtrace calls 4242 -L
  usdtrace flow 4242 -M handle_
  usdtrace flame 4242 -o app.svg -d 10
  usdtrace top 4242                       # sampled: any CPython 3.10+, probes or not
  usdtrace dump 4242
  usdtrace -- python3.11 app.py`
}

function findCommand(argv: string[]): { command: Command | undefined; rest: string[] } {
  const [first, ...rest] = argv
  if (first === undefined) return { command: undefined, rest: [] }
  const named = COMMANDS.find((c) => c.name === first)
  if (named) return { command: named, rest }
  // Options before `--` (or --spawn) without a command: the default command.
  if (first.startsWith('-') && (argv.includes('--') || argv.some((a) => a === '--spawn' || a.startsWith('--spawn=')))) {
    return { command: DEFAULT_COMMAND, rest: argv }
  }
  throw new UsageError(`unknown command '${first}'; the commands are ${COMMANDS.map((c) => c.name).join(', ')}`)
}

async function main(argv: string[]): Promise<number> {
  const status = new Status()
  const debug = argv.includes('--debug')
  let run: Run | undefined
  try {
    if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') {
      process.stdout.write(`${topHelp()}\n`)
      return argv.length === 0 ? EXIT.usage : EXIT.ok
    }
    if (argv[0] === '--version' || argv[0] === '-V') {
      process.stdout.write(`${version()}\n`)
      return EXIT.ok
    }
    if (argv[0] === 'help') {
      const command = argv[1] === undefined ? undefined : COMMANDS.find((c) => c.name === argv[1])
      if (argv[1] !== undefined && !command) throw new UsageError(`unknown command '${argv[1]}'`)
      process.stdout.write(`${command ? command.help : topHelp()}\n`)
      return EXIT.ok
    }
    const { command, rest } = findCommand(argv)
    if (!command) throw new UsageError('give a command')
    const args: ParsedArgs = parse(command.name, rest, command.options)
    if (args.values.help === true) {
      process.stdout.write(`${command.help}\n`)
      return EXIT.ok
    }
    if (args.command !== undefined && !('spawn' in command.options)) {
      throw new UsageError(`${command.name} cannot start a program: nothing may follow --`, command.name)
    }
    run = new Run({ json: args.values.json === true })
    await command.run(run, args)
    run.out.flush()
    return run.exitCode()
  } catch (error) {
    run?.stop('finished')
    run?.out.flush()
    return report(run?.status ?? status, error, debug)
  } finally {
    run?.dispose()
  }
}

/** One line naming the cause and the fix; the stack only with --debug. */
function report(status: Status, error: unknown, debug: boolean): number {
  // The program said why itself, as python does (`can't open file ...`): its status is ours.
  if (error instanceof ProgramExited) return error.status
  if (error instanceof UsageError) {
    status.error(error.message)
    status.raw(`Try 'usdtrace ${error.command ? `${error.command} ` : ''}--help'.`)
    return EXIT.usage
  }
  if (error instanceof TraceError) status.error(debug ? `${inCommandWords(error.message)} [${error.code}]` : inCommandWords(error.message))
  else if (error instanceof CliError) status.error(error.message)
  else status.error(`internal error: ${error instanceof Error ? error.message : String(error)}${debug ? '' : ' (--debug shows where)'}`)
  if (debug && error instanceof Error) status.raw(causeChain(error))
  return EXIT.error
}

function causeChain(error: Error): string {
  const parts = [error.stack ?? String(error)]
  for (let cause = error.cause; cause !== undefined; cause = cause instanceof Error ? cause.cause : undefined) {
    parts.push(`caused by: ${cause instanceof Error ? (cause.stack ?? cause.message) : String(cause)}`)
  }
  return parts.join('\n')
}

void main(process.argv.slice(2)).then((status) => process.exit(status))

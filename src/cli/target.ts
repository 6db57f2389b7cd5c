/**
 * The process a tracing subcommand follows: a PID from the command line, or a program it starts
 * itself (`-- CMD ARGS...` or `--spawn 'CMD ARGS'`), held until the trace is attached.
 */
import { readFile } from 'node:fs/promises'
import { inspect, type Inspection } from '../index.js'
import type { OptionSpecs, ParsedArgs } from './args.js'
import { pid as parsePid, text } from './args.js'
import { UsageError } from './errors.js'
import type { Run } from './run.js'
import { spawnHeld, splitCommandLine, type SpawnedProgram } from './spawn.js'

/** Options of every subcommand that can start its target. */
export const SPAWN_OPTIONS = {
  spawn: { type: 'string' },
} as const satisfies OptionSpecs

export interface Target {
  pid: number
  /** e.g. "1234 (python 3.11.2: python3.11 app.py)" */
  description: string
  inspection: Inspection | undefined
  /** the program this command started, if it did */
  spawned: SpawnedProgram | undefined
  /** Call once the trace is attached: lets a spawned program run. */
  attached(): void
  /** Call when the trace ended without attaching (or at exit): kills a spawned program never let go. */
  abandon(): Promise<void>
}

/** The target named by `PID`, `-- CMD...` or `--spawn CMD`. */
export async function resolveTarget(command: string, run: Run, args: ParsedArgs): Promise<Target> {
  const spawnLine = text(args.values, 'spawn')
  const spawnArgv = args.command ?? (spawnLine !== undefined ? splitCommandLine(spawnLine) : undefined)
  if (spawnArgv !== undefined) {
    if (args.positionals.length > 0) {
      throw new UsageError(`give either a PID or a command to start, not both (got ${args.positionals[0]} and ${spawnArgv.join(' ')})`, command)
    }
    run.status.progress(`starting ${spawnArgv.join(' ')}...`)
    // Into a pipe or a file, the program's lines pass through usdtrace's output whole, instead of
    // landing in the middle of its lines; a terminal is left to the program as it is.
    const spawned = await spawnHeld(spawnArgv, run.out.isTTY ? undefined : (line) => run.out.line(line))
    run.onStop(() => void spawned.abandon())
    const inspection = await inspect(spawned.pid).catch(() => undefined)
    return {
      pid: spawned.pid,
      description: `${spawned.pid} (${versionOf(inspection)}${spawned.description})`,
      inspection,
      spawned,
      attached: () => spawned.release(),
      abandon: () => spawned.abandon(),
    }
  }
  if (args.positionals.length === 0) {
    throw new UsageError('give the PID of a Python process (`usdtrace ps` lists them) or a command to start after --', command)
  }
  if (args.positionals.length > 1) throw new UsageError(`one PID only, got ${args.positionals.join(' ')}`, command)
  const pid = parsePid(command, args.positionals[0]!)
  const inspection = await inspect(pid).catch(() => undefined)
  const commandLine = await readFile(`/proc/${pid}/cmdline`, 'utf8').then(
    (raw) => raw.split('\0').filter(Boolean).join(' '),
    () => '',
  )
  return {
    pid,
    description: `${pid} (${versionOf(inspection)}${shorten(commandLine, 60)})`.replace(' ()', ''),
    inspection,
    spawned: undefined,
    attached: () => {},
    abandon: async () => {},
  }
}

/** What the status line says when tracing entries slows this target down (CPython 3.11). */
export function entriesCost(target: Target): string | undefined {
  return target.inspection?.capabilities.calls.mode === 'line-semaphore'
    ? "CPython 3.11: entries need the line probe's semaphore, which slows the target while traced"
    : undefined
}

function versionOf(inspection: Inspection | undefined): string {
  const v = inspection?.version
  if (!v) return ''
  return `python ${v.major}.${v.minor}${v.micro !== undefined ? `.${v.micro}` : ''}: `
}

function shorten(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`
}

/** Waits for a spawned program's exit and records its status as the run's exit code. */
export async function settleProgram(run: Run, target: Target): Promise<void> {
  if (!target.spawned) return
  if (run.reason === 'target-exited') {
    run.programExitCode = await target.spawned.exited
    await target.spawned.relayed
  } else await target.abandon()
}

/**
 * The processes a tracing subcommand follows: PIDs, every process of a program (--binary), those
 * whose name or command line matches (--name), or a program it starts itself (`-- CMD ARGS...`
 * or `--spawn 'CMD ARGS'`), held until the trace is attached. Where it can, it also finds the
 * processes that join later (follow.ts): the started program's children, new --name matches,
 * the replacement of a process that exited (a restarted worker).
 */
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { inspect, type Inspection, type TargetOptions } from '../index.js'
import type { OptionSpecs, ParsedArgs } from './args.js'
import { pid as parsePid, text, flag } from './args.js'
import { CliError, UsageError } from './errors.js'
import { Follower, type FollowRules } from './follow.js'
import { readProcesses } from './procfs.js'
import { count, type Run } from './run.js'
import { spawnHeld, splitCommandLine, type SpawnedProgram } from './spawn.js'

/** What works on a CPython without probes: the commands that read its stacks. */
export const SAMPLING_INSTEAD = 'its stacks can be sampled instead: `usdtrace top`, `usdtrace dump`, `usdtrace record --sample`'

/** Options of every tracing subcommand: the processes besides PIDs. */
export const TARGET_OPTIONS = {
  binary: { type: 'string' },
  name: { type: 'string' },
} as const satisfies OptionSpecs

/** Options of every subcommand that can start its target. */
export const SPAWN_OPTIONS = {
  spawn: { type: 'string' },
  'keep-running': { type: 'boolean' },
} as const satisfies OptionSpecs

/** The --help lines of TARGET_OPTIONS, and of SPAWN_OPTIONS for the commands that take them. */
export const TARGET_HELP = `      --binary PATH      every process running PATH (e.g. /usr/bin/python3.11), now and later
      --name PATTERN     the processes whose name or command line matches PATTERN (a regular
                         expression, like pgrep -f), and those that match later`
export const SPAWN_HELP = `      --spawn 'CMD ARGS' start CMD (a python program) and trace it, and the children it forks,
                         from its first call
      --keep-running     when the trace ends first (-d, Ctrl-C), leave the started program
                         running instead of stopping it`

/** Which processes a subcommand can trace: CPython ones with probes, CPython ones whose stacks can be read (probes or not), or any program. */
export type ProcessKind = 'python' | 'stacks' | 'any'

export interface Targets {
  /** What the library traces first: the processes known now, or every process of a binary. */
  initial: TargetOptions
  /** For messages, e.g. "1234 (python 3.11.2: app.py)", "3 processes: 12, 13, 14 (gunicorn ...)". */
  description: string
  /** Several processes (or a binary, or those joining later): rows say which process they are from. */
  several: boolean
  /** The first process's, when it is a CPython. */
  inspection: Inspection | undefined
  /** The program this command started, if it did. */
  spawned: SpawnedProgram | undefined
  /** Finds the processes that join later, if any can. */
  follower: Follower | undefined
  /** Call once the first trace is attached: lets a started program run. */
  attached(): void
  /**
   * Call at the end, however it came: a started program is stopped if it still runs (unless
   * --keep-running), said so, and its exit status taken when it ended by itself.
   */
  settle(run: Run): Promise<void>
}

/** The targets the command line names: PIDs, --binary, --name, or a program to start. */
export async function resolveTargets(command: string, run: Run, args: ParsedArgs, kind: ProcessKind, fallback?: () => Promise<PidTargets>): Promise<Targets> {
  const { values, positionals } = args
  const spawnLine = text(values, 'spawn')
  const spawnArgv = args.command ?? (spawnLine !== undefined ? splitCommandLine(spawnLine) : undefined)
  const binary = text(values, 'binary')
  const name = text(values, 'name')
  const named = [positionals.length > 0 && 'PIDs', binary !== undefined && '--binary', name !== undefined && '--name', spawnArgv !== undefined && 'a command to start']
  const given = named.filter((what): what is string => what !== false)
  if (given.length > 1) throw new UsageError(`give one of PIDs, --binary, --name or a command to start, not ${given.join(' and ')}`, command)
  if (given.length === 0 && fallback) return pidTargets(await fallback(), kind)
  if (given.length === 0) {
    throw new UsageError(
      `give the PIDs of ${kind !== 'any' ? 'Python processes (`usdtrace ps` lists them)' : 'processes (`usdtrace ps -a` lists them)'}, --binary PATH, --name PATTERN${'spawn' in values || args.command ? ' or a command to start after --' : ''}`,
      command,
    )
  }
  if (spawnArgv !== undefined) return spawnTargets(run, args, spawnArgv)
  if (binary !== undefined) {
    return { ...fixed(), initial: { binary }, description: `every process of ${binary}`, several: true }
  }
  const pids = name !== undefined ? await matching(command, run, name, kind) : positionals.map((p) => parsePid(command, p))
  return pidTargets({ pids, rules: { replacements: true, ...(name !== undefined && { pattern: nameMatcher(command, name) }) } }, kind)
}

/** Processes by pid, and the rules by which others join them. */
export interface PidTargets {
  pids: number[]
  rules: FollowRules
}

async function pidTargets({ pids, rules }: PidTargets, kind: ProcessKind): Promise<Targets> {
  const unique = [...new Set(pids)]
  const inspection = kind !== 'any' ? await inspect(unique[0]!).catch(() => undefined) : undefined
  const follower = new Follower(rules, unique)
  await follower.remember()
  return {
    ...fixed(),
    initial: { pids: unique },
    description: await describe(unique, inspection),
    several: unique.length > 1 || rules.pattern !== undefined,
    inspection,
    follower,
  }
}

/** What a Targets does when it started nothing. */
function fixed(): Omit<Targets, 'initial' | 'description' | 'several'> {
  return { inspection: undefined, spawned: undefined, follower: undefined, attached: () => {}, settle: async () => {} }
}

async function spawnTargets(run: Run, args: ParsedArgs, argv: string[]): Promise<Targets> {
  // No progress line: python's own error, if it cannot start the program, would land on it.
  // Into a pipe or a file, the program's lines pass through usdtrace's output whole, instead of
  // landing in the middle of its lines; a terminal is left to the program as it is.
  const spawned = await spawnHeld(argv, run.out.isTTY ? undefined : (line) => run.out.line(line))
  const keepRunning = flag(args.values, 'keep-running')
  const follower = new Follower({ descendantsOf: spawned.pid, replacements: false }, [spawned.pid])
  forwardSignals(run, spawned)
  run.onRepeatedSignal(() => spawned.hurry())
  const inspection = await inspect(spawned.pid).catch(() => undefined)
  let settled: Promise<void> | undefined
  return {
    initial: { pids: [spawned.pid] },
    description: `${spawned.pid} (${versionOf(inspection)}${spawned.description})`,
    several: true,
    inspection,
    spawned,
    follower,
    attached: () => spawned.release(),
    settle: (run) => (settled ??= settleProgram(run, spawned, follower, keepRunning)),
  }
}

/** Ends what a started program left: see Targets.settle. */
async function settleProgram(run: Run, spawned: SpawnedProgram, follower: Follower, keepRunning: boolean): Promise<void> {
      if (!spawned.released) return spawned.abandon()
      if (spawned.running) {
        if (keepRunning) {
          run.status.note(`left ${spawned.description} (pid ${spawned.pid}) running (--keep-running)`)
          return
        }
        const how = await spawned.stop(() => follower.alive())
        run.status.note(`stopped ${spawned.description} (pid ${spawned.pid}), which it started, with ${how}; --keep-running leaves it running`)
        return
      }
      if (run.reason === 'target-exited') run.programExitCode = await spawned.exited
      await spawned.relayed
}

/**
 * Ctrl-C, SIGTERM and SIGHUP to usdtrace reach the program it started. A Ctrl-C typed at the
 * terminal already reached it (the terminal signals its whole foreground process group), so
 * SIGINT is passed on only when usdtrace is not in the terminal's foreground group.
 */
function forwardSignals(run: Run, spawned: SpawnedProgram): void {
  const signals = { interrupted: 'SIGINT', terminated: 'SIGTERM', hangup: 'SIGHUP' } as const
  run.onStop((reason) => {
    const signal = signals[reason as keyof typeof signals]
    if (signal === undefined || !spawned.released || !spawned.running) return
    if (signal === 'SIGINT' && inForegroundGroup()) return
    spawned.signal(signal)
  })
}

/** Whether this process is in its terminal's foreground process group (/proc/self/stat: pgrp, tpgid). */
function inForegroundGroup(): boolean {
  const stat = readFileSync('/proc/self/stat', 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // state ppid pgrp session tty_nr tpgid
  return Number(fields[5]) > 0 && fields[2] === fields[5]
}

/** Processes whose name or command line matches PATTERN, of the kind the command traces. */
async function matching(command: string, run: Run, pattern: string, kind: ProcessKind): Promise<number[]> {
  const matches = nameMatcher(command, pattern)
  const excluded = await ancestry(process.pid)
  const found = [...(await readProcesses()).values()].filter((p) => !p.kernelThread && !excluded.has(p.pid) && matches(p.comm, p.argv))
  const pids: number[] = []
  const left: string[] = []
  for (const p of found) {
    if (kind === 'any') pids.push(p.pid)
    else {
      const inspection = await inspect(p.pid).catch(() => undefined)
      if (inspection && (kind === 'stacks' ? inspection.capabilities.stacks.available : inspection.probes.length > 0)) pids.push(p.pid)
      else left.push(`${p.pid} (${p.comm}${inspection ? (kind === 'stacks' ? ': its stacks cannot be read' : `: a CPython without probes; ${SAMPLING_INSTEAD}`) : ''})`)
    }
  }
  const wanted = { python: 'a CPython with probes', stacks: 'a CPython whose stacks can be read', any: 'a process' }[kind]
  if (left.length > 0) run.status.note(`--name ${pattern}: left out ${left.join(', ')}: not ${wanted}`)
  if (pids.length === 0) throw new CliError(`no process matches --name ${pattern} that is ${wanted}; \`usdtrace ps${kind === 'any' ? ' -a' : ''}\` lists them`)
  return pids.sort((a, b) => a - b)
}

/** --name's test: PATTERN against the name (comm) or the whole command line, as pgrep -f. */
export function nameMatcher(command: string, pattern: string): (comm: string, argv: string[]) => boolean {
  let regex: RegExp
  try {
    regex = new RegExp(pattern)
  } catch (error) {
    throw new UsageError(`--name '${pattern}' is not a regular expression: ${(error as Error).message}`, command)
  }
  return (comm, argv) => regex.test(comm) || regex.test(argv.join(' '))
}

/** This process and its ancestors: a --name PATTERN on usdtrace's own command line matches them too. */
async function ancestry(pid: number): Promise<Set<number>> {
  const table = await readProcesses()
  const chain = new Set<number>()
  for (let p = pid; p > 0 && !chain.has(p); p = table.get(p)?.ppid ?? 0) chain.add(p)
  return chain
}

/** For messages: "1234 (python 3.11.2: app.py)", or several pids with the first one's command. */
export async function describe(pids: number[], inspection: Inspection | undefined): Promise<string> {
  const first = `${versionOf(inspection)}${shorten(await commandLine(pids[0]!), 60)}`.replace(/: $/, '')
  if (pids.length === 1) return `${pids[0]} (${first})`.replace(' ()', '')
  const shown = pids.length <= 6 ? pids.join(', ') : `${pids.slice(0, 5).join(', ')}, ...`
  return `${count(pids.length, 'process', 'processes')}: ${shown} (${first}${pids.length > 1 ? ', ...' : ''})`
}

export async function commandLine(pid: number): Promise<string> {
  const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
  return raw.split('\0').filter(Boolean).join(' ')
}

function versionOf(inspection: Inspection | undefined): string {
  const v = inspection?.version
  if (!v) return ''
  return `python ${v.major}.${v.minor}${v.micro !== undefined ? `.${v.micro}` : ''}: `
}

function shorten(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`
}

/**
 * What the agent calls a process in every metric, span and profile: its pid, executable, a
 * service name (from its command line, or from the first rule whose pattern matches it) and its
 * container (from its cgroup). Read once per process from /proc and kept until it exits.
 */
import { readFileSync } from 'node:fs'
import { readFile, readlink } from 'node:fs/promises'
import { basename } from 'node:path'
import { CliError } from '../cli/errors.js'

export interface ProcessLabels {
  pid: string
  /** /proc/PID/exe as the process names it (inside its container for a container's process) */
  executable: string
  service: string
  /** the container id (12 hex digits) or name from its cgroup; '' outside containers */
  container: string
}

/** A rule of the --rules file: a process whose command line matches `match` is called `service`. */
export interface ServiceRule {
  match: RegExp
  service: string
}

/**
 * The rules in a JSON file: `[{ "match": "regular expression", "service": "name" }, ...]`,
 * tried in order against the command line (arguments joined by spaces).
 */
export function readRules(path: string): ServiceRule[] {
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'))
  } catch (error) {
    throw new CliError(`cannot read the rules in ${path}: ${(error as Error).message}; see docs/agent.md for the format`)
  }
  if (!Array.isArray(parsed)) throw new CliError(`${path} must hold a JSON array of { "match": REGEX, "service": NAME } rules`)
  return parsed.map((rule: unknown, i) => {
    const { match, service } = (rule ?? {}) as { match?: unknown; service?: unknown }
    if (typeof match !== 'string' || typeof service !== 'string' || service === '') {
      throw new CliError(`${path}: rule ${i + 1} needs "match" (a regular expression) and "service" (a name), got ${JSON.stringify(rule)}`)
    }
    try {
      return { match: new RegExp(match), service }
    } catch (error) {
      throw new CliError(`${path}: rule ${i + 1}'s match is not a regular expression: ${(error as Error).message}`)
    }
  })
}

const INTERPRETER = /^(python[\d.]*|pypy[\d.]*)$/
/** Options of python that take a value, so the next argument is not the program. */
const OPTIONS_WITH_VALUE = new Set(['-W', '-X', '-Q'])

/**
 * The service a command line runs: the module of `python -m MODULE`, else the program's file
 * name without its extension (`python3.11 /srv/orders/app.py` → `app`, `gunicorn ...` →
 * `gunicorn`), else the executable's name.
 */
export function serviceFromCommandLine(argv: string[], executable: string): string {
  const [first, ...rest] = argv
  if (first === undefined) return basename(executable)
  if (!INTERPRETER.test(basename(first))) return withoutExtension(basename(first))
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!
    if (arg === '-m' || arg === '-c') return arg === '-m' && rest[i + 1] ? rest[i + 1]! : basename(first)
    if (arg.startsWith('-m') && arg.length > 2) return arg.slice(2)
    if (OPTIONS_WITH_VALUE.has(arg)) {
      i++
      continue
    }
    if (!arg.startsWith('-')) return withoutExtension(basename(arg))
  }
  return basename(first)
}

function withoutExtension(name: string): string {
  return name.replace(/\.(py|pyz|pyc)$/, '') || name
}

/**
 * The container of a process from its /proc/PID/cgroup: the 64-hex-digit id that Docker,
 * containerd, CRI-O and Podman put in the cgroup path, shortened to 12 as `docker ps` shows it;
 * '' when there is none.
 */
export function containerFromCgroup(cgroup: string): string {
  const id = /(?:^|[/:-])([0-9a-f]{64})(?:\.scope)?(?:$|\/)/m.exec(cgroup)
  return id ? id[1]!.slice(0, 12) : ''
}

/** Labels by pid, read when a process is first met; a pid reused by a new process is read again. */
export class ProcessLabeller {
  #rules: ServiceRule[]
  #known = new Map<number, { startTicks: string; labels: ProcessLabels; argv: string[] }>()

  constructor(rules: ServiceRule[]) {
    this.#rules = rules
  }

  /** New rules (SIGHUP): every known process is named again. */
  setRules(rules: ServiceRule[]): void {
    this.#rules = rules
    for (const known of this.#known.values()) known.labels.service = this.#service(known.argv, known.labels.executable)
  }

  /** The labels of a running process; undefined once it has gone. */
  async labels(pid: number): Promise<ProcessLabels | undefined> {
    const startTicks = await processStart(pid)
    if (startTicks === undefined) return undefined
    const known = this.#known.get(pid)
    if (known && known.startTicks === startTicks) return known.labels
    const [cmdline, cgroup, exe] = await Promise.all([
      readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''),
      readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => ''),
      readlink(`/proc/${pid}/exe`).catch(() => ''),
    ])
    const argv = cmdline.split('\0').filter(Boolean)
    const executable = exe.replace(/ \(deleted\)$/, '')
    const labels = { pid: String(pid), executable, service: this.#service(argv, executable), container: containerFromCgroup(cgroup) }
    this.#known.set(pid, { startTicks, labels, argv })
    return labels
  }

  /**
   * Labels for a process that exited before it could be read (the kernel reported its counts
   * after it was gone): its pid and the executable it ran, named after it. It counts as exited.
   */
  vanished(pid: number, executable: string): ProcessLabels {
    const labels = { pid: String(pid), executable, service: serviceFromCommandLine([], executable), container: '' }
    this.#known.set(pid, { startTicks: VANISHED, labels, argv: [] })
    return labels
  }

  /** The labels already read for a pid, without looking at /proc again. */
  cached(pid: number): ProcessLabels | undefined {
    return this.#known.get(pid)?.labels
  }

  forget(pid: number): void {
    this.#known.delete(pid)
  }

  /** The pids read so far whose process has exited (or whose pid now names another process). */
  async exited(): Promise<number[]> {
    const gone: number[] = []
    for (const [pid, known] of this.#known) if ((await processStart(pid)) !== known.startTicks) gone.push(pid)
    return gone
  }

  get size(): number {
    return this.#known.size
  }

  #service(argv: string[], executable: string): string {
    const line = argv.join(' ')
    return this.#rules.find((rule) => rule.match.test(line))?.service ?? serviceFromCommandLine(argv, executable)
  }
}

/** The start time of a process that was gone when first met: no running process has it. */
const VANISHED = 'vanished'

/** Field 22 of /proc/PID/stat, the start time: with the pid, it names one process for good. */
async function processStart(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

import { TraceError } from '../errors.js'
import { inspect, inspectBinary, requireProbes, type CapabilityName, type Inspection, type TraceSubject } from './inspect.js'
import { isProgram } from './elf.js'
import { executablePath } from './probes.js'

/**
 * Which processes a trace follows: one pid, several, or every process of a python executable or
 * libpython, including those started after the trace (e.g. gunicorn workers).
 */
export interface TargetOptions {
  /** One process. */
  pid?: number
  /** Several processes; the trace ends once all have exited. */
  pids?: number[]
  /** A python executable or libpython path: every process running it, now and later. */
  binary?: string
}

export interface ResolvedTargets {
  /** One per process (pid -1 for a whole binary), each able to give `capability`. */
  targets: Inspection[]
  /** The stream ends once all of these have exited; none for a binary. */
  exitPids: number[]
}

/**
 * Inspects each target and checks it can give `capability` (without one: that it has python
 * probes); throws the TraceError that says why not.
 */
export async function resolveTargets(options: TargetOptions, capability?: CapabilityName): Promise<ResolvedTargets> {
  const given = [options.pid !== undefined, options.pids !== undefined, options.binary !== undefined].filter(Boolean)
  if (given.length !== 1) {
    throw new TraceError('INVALID_ARGUMENT', 'name exactly one target: { pid }, { pids: [...] } or { binary: path }')
  }
  if (options.binary !== undefined) {
    if (typeof options.binary !== 'string' || options.binary === '') {
      throw new TraceError('INVALID_ARGUMENT', `binary must be a path, got ${String(options.binary)}`)
    }
    const target = inspectBinary(options.binary)
    requireProbes(target, capability)
    return { targets: [target], exitPids: [] }
  }
  const unique = requestedPids(options)
  const targets = await Promise.all(unique.map((pid) => inspect(pid)))
  for (const target of targets) requireProbes(target, capability)
  return { targets, exitPids: unique }
}

/**
 * The processes, of any kind, a syscall trace follows: those `{ pid }` or `{ pids }` name, each
 * checked to be a running user-space process we may read, or with `{ binary }` every process
 * whose executable is that program (a pid -1 target), now and later.
 */
export async function resolveProcesses(options: TargetOptions, what: string): Promise<{ targets: TraceSubject[]; exitPids: number[] }> {
  const binary = binaryTarget(options)
  if (binary !== undefined) {
    if (!isProgram(binary)) {
      throw new TraceError(
        'INVALID_ARGUMENT',
        `${what} with { binary } follows the processes whose executable is that file, and ${binary} is a shared ` +
          'library; pass the program that loads it (e.g. the python executable), or { pid } / { pids: [...] }',
      )
    }
    return { targets: [{ pid: -1, interpreterObject: binary }], exitPids: [] }
  }
  const pids = requestedPids(options)
  const executables = await Promise.all(pids.map((pid) => executablePath(pid)))
  return { targets: pids.map((pid, i) => ({ pid, interpreterObject: executables[i]! })), exitPids: pids }
}

/**
 * The file a trace of any program follows when given `{ binary }` (every process running or
 * mapping it, now and later), checked to be the only target named; undefined for pids.
 */
export function binaryTarget(options: TargetOptions): string | undefined {
  if (options.binary === undefined) return undefined
  if (options.pid !== undefined || options.pids !== undefined) {
    throw new TraceError('INVALID_ARGUMENT', 'name exactly one target: { pid }, { pids: [...] } or { binary: path }')
  }
  if (typeof options.binary !== 'string' || options.binary === '') {
    throw new TraceError('INVALID_ARGUMENT', `binary must be a path, got ${String(options.binary)}`)
  }
  return options.binary
}

/** The distinct pids of `{ pid }` or `{ pids }`, each a positive integer. */
function requestedPids(options: TargetOptions): number[] {
  const given = [options.pid !== undefined, options.pids !== undefined].filter(Boolean)
  if (given.length !== 1) throw new TraceError('INVALID_ARGUMENT', 'name exactly one target: { pid } or { pids: [...] }')
  const pids = options.pids ?? [options.pid]
  if (!Array.isArray(pids) || pids.length === 0) throw new TraceError('INVALID_ARGUMENT', 'pids must name at least one process')
  for (const pid of pids) {
    if (!Number.isInteger(pid) || pid! <= 0) {
      throw new TraceError('INVALID_ARGUMENT', `a pid must be a positive integer, got ${String(pid)}`)
    }
  }
  return [...new Set(pids as number[])]
}

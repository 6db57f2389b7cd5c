import { attachPythonProbe, explainNativeError, openAttached } from '../kernel/attach.js'
import type { BpfSession } from '../kernel/binding.js'
import { readFunctionSymbols } from '../process/elf.js'
import { TraceError } from '../errors.js'
import { subjectOf, type Capability, type Inspection } from '../process/inspect.js'
import { PYTHON_STATS } from '../kernel/abi.js'
import { TARGET_OPTIONS, checkOptions, withPid } from '../options.js'
import { resolveTargets, type TargetOptions } from '../process/targets.js'
import { summaryWithoutBatches } from './aggregate.js'
import { Trace, sumDropped, type OpenedSession } from './trace.js'

/** What stats() counts per process, each per interval. */
export type StatsColumn = 'calls' | 'gcRuns' | 'gcCollected' | 'imports' | 'threads' | 'exceptions'

/** One process's counts over one interval; a column the process's CPython cannot give is absent. */
export type ProcessStats = {
  /** The process. */
  pid: number
} & Partial<Record<StatsColumn, number>>

/** One interval's counts of every traced process. */
export interface StatsSnapshot {
  /** When the counters were read: CLOCK_MONOTONIC, comparable with process.hrtime.bigint(). */
  timestampNs: bigint
  /** Since the previous snapshot (the first: since the probes were attached). */
  intervalNs: bigint
  /** The last snapshot, taken once every traced process has exited. */
  final: boolean
  /**
   * Each traced pid, and with `{ binary }` each process that counted anything in this interval,
   * in pid order.
   */
  processes: ProcessStats[]
  /** The columns some traced process cannot give, and why: they are absent from its row, not 0. */
  unavailable: Partial<Record<StatsColumn, string>>
  /** Counts lost in this interval because the per-process map was full (see maxProcesses). */
  dropped: number
}

export interface StatsOptions extends TargetOptions {
  /** Aborting detaches every probe; a pending or later `next()` rejects with an AbortError. */
  signal?: AbortSignal
  /** How often a snapshot is taken, in ms (default 1000). */
  intervalMs?: number
  /** Processes the kernel keeps counters for at once (default 1024); more are counted in `dropped`. */
  maxProcesses?: number
}

const OPTIONS = [...TARGET_OPTIONS, 'signal', 'intervalMs', 'maxProcesses']
const DEFAULT_INTERVAL_MS = 1000
const DEFAULT_MAX_PROCESSES = 1024

/** Every Python thread starts here (threading.Thread.start → _thread.start_new_thread → this). */
const THREAD_START_FUNCTION = 'PyThread_start_new_thread'

/** The map fields that stats.bpf.c counts, by column. */
const COUNTED = {
  calls: 'calls',
  gcRuns: 'gc_runs',
  gcCollected: 'gc_collected',
  imports: 'imports',
  threads: 'threads',
} as const satisfies Partial<Record<StatsColumn, keyof typeof PYTHON_STATS.fields>>

type CountedColumn = keyof typeof COUNTED
const COUNTED_COLUMNS = Object.keys(COUNTED) as CountedColumn[]

const NO_EXCEPTION_SOURCE =
  'CPython has no probe for raised exceptions, and no audit event either (sys.excepthook sees only uncaught ones)'

/** How one process gives each column: where to attach, or why it can't. */
interface ColumnSources {
  threadStartOffset: bigint | undefined
  unavailable: Partial<Record<StatsColumn, string>>
}

function columnSources(target: Inspection): ColumnSources {
  const probes = new Set(target.probes.map((probe) => probe.name))
  const unavailable: Partial<Record<StatsColumn, string>> = { exceptions: NO_EXCEPTION_SOURCE }
  // The capability's reason, where it explains more than a missing probe (a version that lacks it).
  const lacking = (probe: string, capability: Capability) => {
    const why = capability.available || capability.reason.startsWith('probe ') ? '' : `: ${capability.reason}`
    return `probe python:${probe} not found in ${target.probeObject}${why}`
  }
  const caps = target.capabilities
  if (!probes.has('function__return')) unavailable.calls = lacking('function__return', caps.calls)
  if (!probes.has('gc__done')) unavailable.gcRuns = unavailable.gcCollected = lacking('gc__done', caps.gc)
  if (!probes.has('import__find__load__start')) {
    unavailable.imports = lacking('import__find__load__start', caps.imports)
  }
  const threadStartOffset = readFunctionSymbols(target.interpreterObject).find(
    (symbol) => symbol.name === THREAD_START_FUNCTION,
  )?.fileOffset
  if (threadStartOffset === undefined) {
    unavailable.threads = `${target.interpreterObject} exports no ${THREAD_START_FUNCTION} function to count thread starts at`
  }
  return { threadStartOffset, unavailable }
}

/**
 * pythonstat's view, counted in the kernel: per process and per interval, the function calls
 * (returns), garbage collections and the objects they found, module loads and threads started.
 * Nothing crosses to user space per event; a snapshot is read every `intervalMs`, and a last one
 * when every traced process has exited. On CPython 3.11 calls are counted at function__return
 * alone, so the line semaphore stays down and the target runs without the tracing slowdown.
 */
export function stats(pid: number, options?: StatsOptions): Trace<StatsSnapshot>
export function stats(options: StatsOptions): Trace<StatsSnapshot>
export function stats(pidOrOptions: number | StatsOptions, maybeOptions?: StatsOptions): Trace<StatsSnapshot> {
  const options = withPid(pidOrOptions, maybeOptions)
  return new Trace(() => openStatsSession(options), null, options, summaryWithoutBatches('stats', 'traceCalls(…).batches() for one row per call'))
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new TraceError('INVALID_ARGUMENT', `stats: ${name} must be a positive integer, got ${String(value)}`)
  }
  return value
}

async function openStatsSession(options: StatsOptions): Promise<OpenedSession<StatsSnapshot>> {
  checkOptions('stats', options, OPTIONS)
  const intervalMs = positiveInteger('intervalMs', options.intervalMs, DEFAULT_INTERVAL_MS)
  const maxProcesses = positiveInteger('maxProcesses', options.maxProcesses, DEFAULT_MAX_PROCESSES)
  const { targets, exitPids } = await resolveTargets(options)
  const sources = new Map(targets.map((target) => [target, columnSources(target)]))
  const session = await openAttached(
    { object: 'stats', maxEntries: { stats: maxProcesses } },
    targets,
    (session) => {
      for (const [target, { threadStartOffset, unavailable }] of sources) {
        if (!unavailable.calls) attachPythonProbe(session, target, 'count_call', 'function__return')
        if (!unavailable.gcRuns) attachPythonProbe(session, target, 'count_gc', 'gc__done')
        if (!unavailable.imports) attachPythonProbe(session, target, 'count_import', 'import__find__load__start')
        if (threadStartOffset !== undefined) attachThreadCounter(session, target, threadStartOffset)
      }
    },
  )
  const sampler = new StatsSampler(session, sources)
  return { session, exitPids, sampler: { intervalMs, read: async (final) => sampler.sample(final) } }
}

function attachThreadCounter(session: BpfSession<'stats'>, target: Inspection, offset: bigint): void {
  try {
    session.attachUprobes('count_thread', target.pid, target.interpreterObject, [{ fileOffset: offset, refCtrOffset: 0n, cookie: 0n }], false)
  } catch (error) {
    throw explainNativeError(error, target, `attaching to ${THREAD_START_FUNCTION}`)
  }
}

type Counts = Record<CountedColumn, bigint>

/** Reads the cumulative per-process counters and turns them into per-interval snapshots. */
class StatsSampler {
  #session: BpfSession<'stats'>
  /** Per traced pid, or for a whole binary (pid -1) the columns every process of it lacks. */
  #unavailableByPid: Map<number, Partial<Record<StatsColumn, string>>>
  #unavailable: Partial<Record<StatsColumn, string>>
  #previous = new Map<number, Counts>()
  #previousDropped = 0n
  #previousNs = process.hrtime.bigint()

  constructor(session: BpfSession<'stats'>, sources: Map<Inspection, ColumnSources>) {
    this.#session = session
    this.#unavailableByPid = new Map([...sources].map(([target, source]) => [target.pid, source.unavailable]))
    this.#unavailable = mergeReasons([...sources].map(([target, source]) => [target, source.unavailable]))
  }

  sample(final: boolean): StatsSnapshot {
    const now = process.hrtime.bigint()
    const current = readCounts(this.#session)
    const dropped = sumDropped(this.#session.counters())
    const pids = new Set([...this.#unavailableByPid.keys()].filter((pid) => pid > 0))
    const processes: ProcessStats[] = []
    for (const [pid, counts] of current) {
      const before = this.#previous.get(pid)
      if (before && COUNTED_COLUMNS.every((column) => counts[column] === before[column])) continue
      pids.add(pid)
    }
    for (const pid of [...pids].sort((a, b) => a - b)) {
      const counts = current.get(pid)
      const before = this.#previous.get(pid)
      const lacking = this.#unavailableByPid.get(pid) ?? this.#unavailableByPid.get(-1) ?? {}
      const row: ProcessStats = { pid }
      for (const column of COUNTED_COLUMNS) {
        if (!lacking[column]) row[column] = Number((counts?.[column] ?? 0n) - (before?.[column] ?? 0n))
      }
      processes.push(row)
    }
    const snapshot: StatsSnapshot = {
      timestampNs: now,
      intervalNs: now - this.#previousNs,
      final,
      processes,
      unavailable: this.#unavailable,
      dropped: Number(dropped - this.#previousDropped),
    }
    this.#previous = current
    this.#previousDropped = dropped
    this.#previousNs = now
    return snapshot
  }
}

/** Each process's counters, summed over the CPUs of the per-CPU map. */
function readCounts(session: BpfSession<'stats'>): Map<number, Counts> {
  const dump = session.dumpMap('stats', false)
  const slot = Math.ceil(PYTHON_STATS.size / 8) * 8
  const cpus = dump.valueSize / slot
  const counts = new Map<number, Counts>()
  for (let i = 0; i < dump.count; i++) {
    const pid = dump.keys.readUInt32LE(i * dump.keySize)
    const sum = Object.fromEntries(COUNTED_COLUMNS.map((column) => [column, 0n])) as Counts
    for (let cpu = 0; cpu < cpus; cpu++) {
      const at = i * dump.valueSize + cpu * slot
      for (const column of COUNTED_COLUMNS) {
        sum[column] += dump.values.readBigUInt64LE(at + PYTHON_STATS.fields[COUNTED[column]])
      }
    }
    counts.set(pid, sum)
  }
  return counts
}

/** One reason per column; where targets differ, each names its process. */
function mergeReasons(
  perTarget: [Inspection, Partial<Record<StatsColumn, string>>][],
): Partial<Record<StatsColumn, string>> {
  const merged: Partial<Record<StatsColumn, string>> = {}
  const columns = new Set(perTarget.flatMap(([, reasons]) => Object.keys(reasons) as StatsColumn[]))
  for (const column of columns) {
    const reasons = new Set(perTarget.map(([, r]) => r[column]).filter((r): r is string => r !== undefined))
    const lacking = perTarget.filter(([, r]) => r[column] !== undefined)
    merged[column] =
      reasons.size === 1 && lacking.length === perTarget.length
        ? [...reasons][0]!
        : lacking.map(([target, r]) => `${subjectOf(target)}: ${r[column]}`).join('; ')
  }
  return merged
}

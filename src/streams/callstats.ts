import { attachCodeDeallocHooks, attachPythonProbe, attachThreadExit, fixedPythonSpecs, openAttached, raiseLineSemaphore } from '../kernel/attach.js'
import type { BpfSession, MapDump } from '../kernel/binding.js'
import { TraceError } from '../errors.js'
import { FUNCTION_NAMES, FUNCTION_STATS, USDTRACE_HISTOGRAM_BUCKETS, LATENCY_STATS } from '../kernel/abi.js'
import { syscallNumbers, syscallTable, type SyscallTable } from './syscall-table.js'
import { isProgram } from '../process/elf.js'
import { codeDeallocHooks } from '../cpython/layout.js'
import { attachSyscallTracepoints, syscallFilterConstants } from './syscalls.js'
import { resolveTargets, type TargetOptions } from '../process/targets.js'
import { AggregateHalves, summaryWithoutBatches } from './aggregate.js'
import { Trace, sumDropped, type OpenedSession, type Sampler } from './trace.js'

/** Calls and, for the timed ones, their time; the times are undefined when no call was timed. */
export interface LatencySummary {
  /** Calls counted in the interval. */
  calls: number
  /** Calls with a known duration: those whose start was traced (every call of a syscall). */
  timedCalls: number
  /** inclusive */
  totalNs?: bigint
  /** The shortest timed call; only with timed calls. */
  minNs?: bigint
  /** The longest timed call; only with timed calls. */
  maxNs?: bigint
  /** histogram[k]: timed calls that took [2^k, 2^(k+1)) ns (k = 0 also 0 ns); cut after the last non-zero bucket */
  histogram?: number[]
}

export interface FunctionStats extends LatencySummary {
  /** The function's source file, as the interpreter reports it. */
  file: string
  /** The function's name. */
  func: string
  /** exclusive: total minus the time spent in the traced functions it called */
  selfNs?: bigint
  /** the file or function name was longer than 512 bytes and was cut to that */
  truncated: boolean
}

export interface SyscallStats extends LatencySummary {
  /** e.g. 'openat' */
  name: string
  /** The syscall number on this architecture. */
  nr: number
}

/** One interval's statistics. */
export interface CallStatsSnapshot {
  /** The interval covered: CLOCK_MONOTONIC, comparable with process.hrtime.bigint(). */
  startNs: bigint
  /** Where the interval ends, on the same clock. */
  endNs: bigint
  /** By total time (by calls without latency), the `top` first. */
  functions: FunctionStats[]
  /** With the `syscalls` option: the same per syscall. */
  syscalls?: SyscallStats[]
  /** Calls in this interval that were not counted or not timed because a kernel map was full. */
  dropped: number
  /** The snapshot taken once every traced process has exited. */
  final: boolean
}

export interface CallStatsOptions extends TargetOptions {
  /** Aborting detaches every probe; a pending or later `next()` rejects with an AbortError. */
  signal?: AbortSignal
  /** A snapshot every this many milliseconds (default 1000; Infinity: only the final one). */
  intervalMs?: number
  /** Keep only this many functions (and syscalls) per snapshot. */
  top?: number
  /**
   * Time the calls (default): total, self, min, max and histogram, which takes the entry probe
   * too. `false` counts returns only: on CPython 3.11 the target then runs at native speed.
   */
  latency?: boolean
  /** Also sum syscalls: `true` for all, or the names of those wanted. Needs `{ pid }` or `{ pids }`. */
  syscalls?: boolean | string[]
  /** Distinct functions the kernel can hold (default 16384); calls of more are counted in `dropped`. */
  maxFunctions?: number
}

/** What `callStats` returns: an async iterator of snapshots. */
export type CallStats = Trace<CallStatsSnapshot>

const DEFAULT_INTERVAL_MS = 1000
const DEFAULT_MAX_FUNCTIONS = 16384

/**
 * Per-function call statistics of running CPython processes, summed in the kernel and read as a
 * snapshot per interval, plus one when every traced process has exited. Like a trace, it
 * attaches at once (`await stats.ready`), and `break`, `close()` or the signal detach it.
 */
export function callStats(pid: number, options?: CallStatsOptions): CallStats
export function callStats(options: CallStatsOptions): CallStats
export function callStats(pidOrOptions: number | CallStatsOptions, maybeOptions: CallStatsOptions = {}): CallStats {
  const options = typeof pidOrOptions === 'number' ? { ...maybeOptions, pid: pidOrOptions } : pidOrOptions
  return new Trace(() => openCallStats(options), null, options, summaryWithoutBatches('callStats', 'traceCalls(…).batches() for one row per call'))
}

interface Settings {
  intervalMs: number
  top: number
  latency: boolean
  maxFunctions: number
}

function checkOptions(options: CallStatsOptions): Settings {
  const intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS
  if (typeof intervalMs !== 'number' || !(intervalMs > 0)) {
    throw new TraceError('INVALID_ARGUMENT', `intervalMs must be a positive number of milliseconds (or Infinity), got ${String(intervalMs)}`)
  }
  const top = options.top ?? Infinity
  if (top !== Infinity && (!Number.isInteger(top) || top <= 0)) {
    throw new TraceError('INVALID_ARGUMENT', `top must be a positive integer, got ${String(top)}`)
  }
  const maxFunctions = options.maxFunctions ?? DEFAULT_MAX_FUNCTIONS
  if (!Number.isInteger(maxFunctions) || maxFunctions <= 0 || maxFunctions > 2 ** 24) {
    throw new TraceError('INVALID_ARGUMENT', `maxFunctions must be an integer from 1 to ${2 ** 24}, got ${String(maxFunctions)}`)
  }
  return { intervalMs, top, latency: options.latency ?? true, maxFunctions }
}

async function openCallStats(options: CallStatsOptions): Promise<OpenedSession<CallStatsSnapshot>> {
  const settings = checkOptions(options)
  const syscalls = options.syscalls ?? false
  let table: SyscallTable | undefined
  let wanted: number[] | undefined
  if (syscalls !== false) {
    if (options.binary !== undefined && !isProgram(options.binary)) {
      throw new TraceError(
        'INVALID_ARGUMENT',
        `callStats with syscalls and { binary } follows the processes whose executable is that file, and ` +
          `${options.binary} is a shared library; pass the python executable, { pid } / { pids }, or leave syscalls out`,
      )
    }
    table = syscallTable()
    wanted = syscalls === true ? undefined : syscallNumbers(table, syscalls)
  }
  const { targets, exitPids } = await resolveTargets(options, 'calls')
  const functionSlots = settings.maxFunctions
  const hooks = codeDeallocHooks(targets)
  const session = await openAttached(
    {
      object: 'callstats',
      maxEntries: {
        function_stats_even: functionSlots,
        function_stats_odd: functionSlots,
        function_names: functionSlots,
        traced_tgids: targets.length,
      },
      constants: {
        ...syscallFilterConstants(targets, wanted),
        ...hooks?.constants,
        ...fixedPythonSpecs(targets, { on_function_return: 'function__return' }),
        // Its probes fire only in its threads (the link's pid filter), so BPF need not ask whose call it is.
        only_tgid: targets.length === 1 && targets[0]!.pid > 0 ? targets[0]!.pid : 0,
        latency: settings.latency ? 1 : 0,
      },
    },
    targets,
    (session) => {
      if (hooks) attachCodeDeallocHooks(session, hooks, 'forget_code')
      for (const target of targets) {
        attachPythonProbe(session, target, 'on_function_return', 'function__return')
        if (!settings.latency) continue
        attachPythonProbe(session, target, 'on_function_entry', 'function__entry')
        if (target.capabilities.calls.mode === 'line-semaphore') raiseLineSemaphore(session, target, 'hold_semaphore')
      }
      if (table) attachSyscallTracepoints(session, targets, table, wanted)
      if (table || settings.latency) attachThreadExit(session, targets[0]!)
    },
  )
  return { session, exitPids, sampler: new CallStatsSampler(session, settings, table) }
}

/**
 * Reads a snapshot by switching the kernel to the other half of its maps, waiting until no
 * program still writes into the finished half, then taking (reading and emptying) that half
 * (bpf/aggregate.bpf.h).
 */
class CallStatsSampler implements Sampler<CallStatsSnapshot> {
  readonly intervalMs: number
  #session: BpfSession<'callstats'>
  #settings: Settings
  #table: SyscallTable | undefined
  #halves: AggregateHalves<'function_stats' | 'syscall_stats'>
  #startNs = process.hrtime.bigint()
  #dropped = 0n
  /** Function names by id, taken from the kernel the first time an id is met. */
  #names = new Map<number, { file: string; func: string; truncated: boolean }>()

  constructor(session: BpfSession<'callstats'>, settings: Settings, table: SyscallTable | undefined) {
    this.#session = session
    this.#settings = settings
    this.#table = table
    this.#halves = new AggregateHalves<'function_stats' | 'syscall_stats'>(session, 'callStats')
    this.intervalMs = settings.intervalMs
  }

  async read(final: boolean): Promise<CallStatsSnapshot> {
    const endNs = process.hrtime.bigint()
    const [functionDump, syscallDump] = await this.#halves.take(this.#table ? ['function_stats', 'syscall_stats'] : ['function_stats'])
    const functions = this.#functions(functionDump!)
    const syscalls = this.#table && this.#syscalls(this.#table, syscallDump!)
    const dropped = sumDropped(this.#session.counters())
    const snapshot: CallStatsSnapshot = {
      startNs: this.#startNs,
      endNs,
      functions: this.#rank(functions),
      ...(syscalls && { syscalls: this.#rank(syscalls) }),
      dropped: Number(dropped - this.#dropped),
      final,
    }
    this.#startNs = endNs
    this.#dropped = dropped
    return snapshot
  }

  /** One row per (file, function): entries that name the same function (several processes, code objects) are summed. */
  #functions(dump: MapDump): FunctionStats[] {
    const view = new DataView(dump.values.buffer, dump.values.byteOffset, dump.values.byteLength)
    const rows = new Map<string, FunctionStats>()
    for (let i = 0; i < dump.count; i++) {
      const at = i * dump.valueSize
      const id = view.getUint32(at + FUNCTION_STATS.fields.name_id, true)
      const names = this.#names.get(id) ?? this.#fetchNames(id)
      const stats = at + FUNCTION_STATS.fields.stats
      const summary = decodeLatency(view, stats)
      const self = summary.timedCalls > 0 ? { selfNs: view.getBigUint64(stats + LATENCY_STATS.fields.self_ns, true) } : {}
      const row: FunctionStats = { ...names, ...summary, ...self }
      const name = `${names.file}\0${names.func}`
      const same = rows.get(name)
      rows.set(name, same ? sumFunctionStats(same, row) : row)
    }
    return [...rows.values()]
  }

  /** Takes every name the kernel holds into the cache: an id's names are stored before anything is counted under it. */
  #fetchNames(wanted: number): { file: string; func: string; truncated: boolean } {
    const dump = this.#session.dumpMap('function_names', true)
    const { fields } = FUNCTION_NAMES
    for (let i = 0; i < dump.count; i++) {
      const at = i * dump.valueSize
      const fileLen = dump.values.readUInt16LE(at + fields.file_len)
      const funcLen = dump.values.readUInt16LE(at + fields.func_len)
      const names = at + fields.names
      this.#names.set(dump.keys.readUInt32LE(i * 4), {
        file: dump.values.toString('utf8', names, names + fileLen),
        func: dump.values.toString('utf8', names + fileLen, names + fileLen + funcLen),
        truncated: dump.values.readUInt8(at + fields.truncated) !== 0,
      })
    }
    const names = this.#names.get(wanted)
    if (!names) throw new Error(`usdtrace: the kernel counted under names ${wanted} but holds none for it`)
    return names
  }

  #syscalls(table: SyscallTable, dump: MapDump): SyscallStats[] {
    const view = new DataView(dump.values.buffer, dump.values.byteOffset, dump.values.byteLength)
    const rows: SyscallStats[] = []
    for (let i = 0; i < dump.count; i++) {
      const nr = dump.keys.readUInt32LE(i * 4)
      rows.push({ name: table.nameOf(nr), nr, ...decodeLatency(view, i * dump.valueSize) })
    }
    return rows
  }

  #rank<T extends LatencySummary>(rows: T[]): T[] {
    rows.sort((a, b) => {
      const byTime = (b.totalNs ?? 0n) - (a.totalNs ?? 0n)
      return byTime !== 0n ? (byTime > 0n ? 1 : -1) : b.calls - a.calls
    })
    return rows.length > this.#settings.top ? rows.slice(0, this.#settings.top) : rows
  }
}

function sumFunctionStats(a: FunctionStats, b: FunctionStats): FunctionStats {
  const sum: FunctionStats = { ...a, calls: a.calls + b.calls, timedCalls: a.timedCalls + b.timedCalls }
  if (b.timedCalls === 0) return sum
  if (a.timedCalls === 0) return { ...b, calls: sum.calls, timedCalls: sum.timedCalls }
  const histogram = Array.from({ length: Math.max(a.histogram!.length, b.histogram!.length) }, (_, k) => (a.histogram![k] ?? 0) + (b.histogram![k] ?? 0))
  return {
    ...sum,
    totalNs: a.totalNs! + b.totalNs!,
    selfNs: a.selfNs! + b.selfNs!,
    minNs: a.minNs! < b.minNs! ? a.minNs : b.minNs,
    maxNs: a.maxNs! > b.maxNs! ? a.maxNs : b.maxNs,
    histogram,
  }
}

function decodeLatency(view: DataView, at: number): LatencySummary {
  const { fields } = LATENCY_STATS
  const calls = Number(view.getBigUint64(at + fields.calls, true))
  const timedCalls = Number(view.getBigUint64(at + fields.timed_calls, true))
  if (timedCalls === 0) return { calls, timedCalls }
  const histogram: number[] = []
  for (let k = 0; k < USDTRACE_HISTOGRAM_BUCKETS; k++) histogram.push(Number(view.getBigUint64(at + fields.histogram + 8 * k, true)))
  while (histogram.at(-1) === 0) histogram.pop()
  return {
    calls,
    timedCalls,
    totalNs: view.getBigUint64(at + fields.total_ns, true),
    minNs: view.getBigUint64(at + fields.min_ns, true),
    maxNs: view.getBigUint64(at + fields.max_ns, true),
    histogram,
  }
}

/**
 * The agent's Prometheus metrics, on prom-client: per process the pythonstat counts, GC pauses,
 * syscalls and stack samples; per function the top N by calls (the rest summed as one `(other)` series, so a
 * program with 50,000 functions adds N + 1 series); and the agent's own health. Per-process
 * state lives here and is rendered at each scrape, so a process that exits is forgotten by
 * deleting one entry.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { FunctionStats, ProcessStats, StatsColumn } from '../index.js'
import type { ProbeStatus } from '../cli/runtimes.js'
import { Log2Histogram } from './histogram.js'
import type { ProcessLabels } from './labels.js'

const PROCESS_LABELS = ['pid', 'executable', 'service', 'container'] as const
type ProcessLabel = (typeof PROCESS_LABELS)[number]

/** The stats() columns the agent counts, by metric: the names and units Prometheus expects. */
const STATS_COUNTERS = {
  calls: ['usdtrace_python_calls_total', 'Python function calls (returns) of the process'],
  gcRuns: ['usdtrace_python_gc_collections_total', 'Garbage collections the process ran'],
  gcCollected: ['usdtrace_python_gc_collected_objects_total', 'Unreachable objects its garbage collections found'],
  imports: ['usdtrace_python_imports_total', 'Modules the process loaded'],
  threads: ['usdtrace_python_threads_started_total', 'Threads the process started'],
} as const satisfies Partial<Record<StatsColumn, readonly [string, string]>>
type CountedColumn = keyof typeof STATS_COUNTERS

/** Where a top-N function table puts every function it does not show. */
export const OTHER_FUNCTIONS = '(other)'

interface ProcessState {
  labels: ProcessLabels
  probes: ProbeStatus
  counts: Partial<Record<CountedColumn, number>>
  syscalls: Map<string, number>
  /** on-CPU stack samples taken of it */
  samples: number
  /** a sample (on or off CPU) was taken of it */
  sampled: boolean
}

interface FunctionTotal {
  func: string
  file: string
  calls: number
}

export class AgentMetrics {
  readonly registry = new Registry()
  readonly gcPauses: Log2Histogram<ProcessLabel | 'generation'>
  readonly functionDurations: Log2Histogram<'function' | 'file'>
  readonly lost: Counter<'source'>
  readonly dropped: Counter<'source'>
  readonly mapFill: Gauge<'map'>
  readonly spans: Counter<'outcome'>
  readonly exports: Counter<'exporter' | 'outcome'>
  readonly samplesTaken: Counter<'kind'>
  readonly samplesLost: Counter

  readonly #processes = new Map<number, ProcessState>()
  readonly #functions = new Map<string, FunctionTotal>()
  readonly #topFunctions: number
  readonly #maxFunctions: number
  #otherCalls = 0

  /** `topFunctions` are shown; `maxFunctions` are remembered before the least called is folded into `(other)`. */
  constructor(options: { topFunctions: number; maxFunctions: number }) {
    this.#topFunctions = options.topFunctions
    this.#maxFunctions = Math.max(options.maxFunctions, options.topFunctions)
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry, prefix: 'usdtrace_agent_' })
    const processes = this.#processes
    for (const [column, [name, help]] of Object.entries(STATS_COUNTERS) as [CountedColumn, readonly [string, string]][]) {
      new Counter({
        name,
        help,
        labelNames: PROCESS_LABELS,
        registers,
        collect() {
          this.reset()
          for (const state of processes.values()) {
            const value = state.counts[column]
            if (value !== undefined) this.inc(state.labels, value)
          }
        },
      })
    }
    new Counter({
      name: 'usdtrace_syscalls_total',
      help: 'System calls of the process, by name',
      labelNames: [...PROCESS_LABELS, 'syscall'],
      registers,
      collect() {
        this.reset()
        for (const state of processes.values()) for (const [syscall, n] of state.syscalls) this.inc({ ...state.labels, syscall }, n)
      },
    })
    new Gauge({
      name: 'usdtrace_process_info',
      help: 'A process the agent follows (1), with what its probes give: native, line-semaphore, unavailable or no-probes',
      labelNames: [...PROCESS_LABELS, 'probes'],
      registers,
      collect() {
        this.reset()
        for (const state of processes.values()) this.set({ ...state.labels, probes: state.probes }, 1)
      },
    })
    new Gauge({
      name: 'usdtrace_agent_processes',
      help: 'Processes the agent follows now, by what their probes give',
      labelNames: ['probes'],
      registers,
      collect() {
        this.reset()
        for (const state of processes.values()) this.inc({ probes: state.probes })
      },
    })
    new Counter({
      name: 'usdtrace_python_samples_total',
      help: 'Stack samples taken of the process while it ran Python code on a CPU (--sample-hz a second of CPU time)',
      labelNames: PROCESS_LABELS,
      registers,
      collect() {
        this.reset()
        for (const state of processes.values()) if (state.sampled) this.inc(state.labels, state.samples)
      },
    })
    new Gauge({
      name: 'usdtrace_agent_sampled_processes',
      help: 'Processes followed now whose stacks were sampled at least once',
      registers,
      collect() {
        let sampled = 0
        for (const state of processes.values()) if (state.sampled) sampled++
        this.set(sampled)
      },
    })
    this.gcPauses = new Log2Histogram({
      name: 'usdtrace_python_gc_pause_seconds',
      help: 'Garbage collection pauses of the process, by generation',
      labelNames: [...PROCESS_LABELS, 'generation'],
      registers,
    })
    const metrics = this
    new Counter({
      name: 'usdtrace_python_function_calls_total',
      help: `Calls of the most called Python functions, summed over the processes followed; the rest as function="${OTHER_FUNCTIONS}"`,
      labelNames: ['function', 'file'],
      registers,
      collect() {
        this.reset()
        const { shown, otherCalls } = metrics.#top()
        for (const total of shown) this.inc({ function: total.func, file: total.file }, total.calls)
        if (otherCalls > 0) this.inc({ function: OTHER_FUNCTIONS, file: '' }, otherCalls)
      },
    })
    this.functionDurations = new Log2Histogram({
      name: 'usdtrace_python_function_duration_seconds',
      help: 'How long calls of the most called Python functions took (with --latency), summed over the processes followed',
      labelNames: ['function', 'file'],
      registers,
    })
    this.functionDurations.showOnly(() => {
      const shown = new Set(this.#top().shown.map((total) => `${total.file}\0${total.func}`))
      return (labels) => shown.has(`${labels.file}\0${labels.function}`)
    })
    this.lost = new Counter({ name: 'usdtrace_agent_lost_events_total', help: 'Events the kernel could not deliver to the agent, by stream', labelNames: ['source'], registers })
    this.dropped = new Counter({ name: 'usdtrace_agent_dropped_total', help: 'Counts the kernel could not keep because a map was full, by stream', labelNames: ['source'], registers })
    this.mapFill = new Gauge({ name: 'usdtrace_agent_bpf_map_fill_ratio', help: 'How full the fullest BPF map of each kind was in the last interval (1: full)', labelNames: ['map'], registers })
    this.spans = new Counter({ name: 'usdtrace_agent_spans_total', help: 'Slow-call spans, by outcome: exported, or dropped (queue full, export failed)', labelNames: ['outcome'], registers })
    this.samplesTaken = new Counter({
      name: 'usdtrace_agent_samples_total',
      help: 'Stack samples taken, by kind: on_cpu (a running thread), off_cpu (a wait, with --off-cpu)',
      labelNames: ['kind'],
      registers,
    })
    this.samplesLost = new Counter({
      name: 'usdtrace_agent_samples_lost_total',
      help: 'Stack samples that reached no profile: a kernel map or ring was full, or a process profile held too many stacks',
      registers,
    })
    this.exports = new Counter({ name: 'usdtrace_agent_exports_total', help: 'Batches sent to an exporter endpoint, by exporter (otlp, pprof) and outcome (ok, failed)', labelNames: ['exporter', 'outcome'], registers })
  }

  /** A process the agent follows from now on (again: its labels and probes are brought up to date). */
  follow(labels: ProcessLabels, probes: ProbeStatus): void {
    const state = this.#processes.get(Number(labels.pid))
    if (state) {
      state.labels = labels
      state.probes = probes
    } else {
      this.#processes.set(Number(labels.pid), { labels, probes, counts: {}, syscalls: new Map(), samples: 0, sampled: false })
    }
  }

  /** Every series of a process that exited. */
  forget(pid: number): void {
    this.#processes.delete(pid)
    const label = String(pid)
    this.gcPauses.removeWhere((labels) => labels.pid === label)
  }

  isFollowed(pid: number): boolean {
    return this.#processes.has(pid)
  }

  get followed(): number[] {
    return [...this.#processes.keys()]
  }

  /** One interval of stats() for a followed process. */
  addStats(row: ProcessStats): void {
    const state = this.#processes.get(row.pid)
    if (!state) return
    for (const column of Object.keys(STATS_COUNTERS) as CountedColumn[]) {
      const value = row[column]
      if (value !== undefined) state.counts[column] = (state.counts[column] ?? 0) + value
    }
  }

  addSyscall(pid: number, name: string): void {
    const syscalls = this.#processes.get(pid)?.syscalls
    if (syscalls) syscalls.set(name, (syscalls.get(name) ?? 0) + 1)
  }

  /** One process's stack of a profile snapshot: `samples` on CPU, or waits when not `onCpu`. */
  addSamples(pid: number, onCpu: boolean, samples: number): void {
    this.samplesTaken.inc({ kind: onCpu ? 'on_cpu' : 'off_cpu' }, samples)
    const state = this.#processes.get(pid)
    if (!state) return
    state.sampled = true
    if (onCpu) state.samples += samples
  }

  addGCPause(pid: number, generation: number, durationNs: bigint): void {
    const state = this.#processes.get(pid)
    if (state) this.gcPauses.observeNs({ ...state.labels, generation }, Number(durationNs))
  }

  /** One interval of callStats(): calls (and times) per function. */
  addFunctions(rows: FunctionStats[]): void {
    for (const row of rows) {
      const key = `${row.file}\0${row.func}`
      let total = this.#functions.get(key)
      if (!total) {
        if (this.#functions.size >= this.#maxFunctions) this.#foldLeastCalled()
        total = { func: row.func, file: row.file, calls: 0 }
        this.#functions.set(key, total)
      }
      total.calls += row.calls
      if (row.histogram) this.functionDurations.addBuckets({ function: row.func, file: row.file }, row.histogram, Number(row.totalNs ?? 0n))
    }
  }

  /** Keeps memory bounded: the least called function's calls go to `(other)`, its times with them. */
  #foldLeastCalled(): void {
    let least: [string, FunctionTotal] | undefined
    for (const entry of this.#functions) if (!least || entry[1].calls < least[1].calls) least = entry
    if (!least) return
    this.#functions.delete(least[0])
    this.#otherCalls += least[1].calls
    this.functionDurations.removeWhere((labels) => labels.function === least[1].func && labels.file === least[1].file)
  }

  /** The functions shown (most calls first) and the calls of all the others. */
  #top(): { shown: FunctionTotal[]; otherCalls: number } {
    const ranked = [...this.#functions.values()].sort((a, b) => b.calls - a.calls)
    const shown = ranked.slice(0, this.#topFunctions)
    let otherCalls = this.#otherCalls
    for (const total of ranked.slice(this.#topFunctions)) otherCalls += total.calls
    return { shown, otherCalls }
  }
}

/**
 * `usdtrace agent`: follows the Python processes of a host (every one, those of one interpreter
 * file, or a list of pids) with the library's streams, one set per interpreter file: stats and
 * traceGC per process, callStats per function, traceSyscalls per executable, and with spans or
 * profiles asked for, traceCalls; with sampling, stackProfile per interpreter file, probes or
 * not. What they yield goes to the metrics, the span sender and the profile pusher. Processes
 * that start later are followed through the `{ binary }` attachments (and, on the whole host, a
 * rescan finds new interpreter files); those that exit are forgotten after a linger, so
 * Prometheus reads their last counts.
 */
import { TraceError, callStats, stackProfile, stats, traceCalls, traceGC, traceSyscalls, type CallEvent, type TargetOptions, type Trace } from '../index.js'
import { isProgram } from '../process/elf.js'
import { inspectBinary } from '../process/inspect.js'
import { CliError } from '../cli/errors.js'
import type { ProbeStatus } from '../cli/runtimes.js'
import { attachFile, findPythons, type FoundPython } from './discovery.js'
import { ProcessLabeller, type ProcessLabels, type ServiceRule } from './labels.js'
import { AgentMetrics } from './metrics.js'
import { CallTimeProfiles, ProfilePusher, type ProfileSource } from './profiles.js'
import { SampledProfiles } from './samples.js'
import { SlowCallTrees, SpanSender } from './spans.js'

/** Which processes the agent follows. */
export type AgentTargets = { host: true } | { binary: string } | { pids: number[] }

export interface AgentOptions {
  targets: AgentTargets
  /** how often the kernel's counts are read */
  intervalMs: number
  /** how often the host is scanned for new interpreter files and exited processes */
  rescanMs: number
  /** how long an exited process's series stay, so the last counts are scraped */
  lingerMs: number
  topFunctions: number
  /** time every call (entries: the line semaphore on CPython 3.11) for the function latency histograms */
  latency: boolean
  syscalls: boolean
  /** OTLP/HTTP traces endpoint, for calls of at least slowNs */
  otlpUrl: string | undefined
  slowNs: bigint
  /** pprof push endpoint, every profileIntervalMs */
  pprofUrl: string | undefined
  /** push call-time profiles too (they need every call streamed, with entries) */
  callProfiles: boolean
  profileIntervalMs: number
  /** stack samples a second of each CPU, for every followed Python (probes or not); 0: no sampling */
  sampleHz: number
  /** sample waits too (off-CPU time) */
  offCpu: boolean
  rules: ServiceRule[]
  /** one line for the operator (stderr) */
  log(line: string): void
}

const MAX_TRACKED_FUNCTIONS = 4096
const MAX_FUNCTIONS_IN_KERNEL = 16384
const MAX_PROCESSES_IN_KERNEL = 4096
const MAX_STACKS_IN_KERNEL = 16384
/** A slow call whose caller is still running after this goes out as the root of its own trace. */
const SPAN_WAIT_NS = 10_000_000_000n

/** The attachments made for one interpreter file (or one list of pids). */
interface Group {
  description: string
  traces: Trace<unknown>[]
}

export class Agent {
  readonly metrics: AgentMetrics
  readonly #options: AgentOptions
  readonly #labeller: ProcessLabeller
  readonly #groups = new Map<string, Group | Promise<Group | undefined>>()
  readonly #failed = new Set<string>()
  readonly #exitedAt = new Map<number, number>()
  /** What each attached interpreter file's probes give, by device:inode. */
  readonly #interpreterProbes = new Map<string, ProbeStatus>()
  readonly #sources = new Map<Trace<unknown>, string>()
  readonly #lostSeen = new Map<Trace<unknown>, number>()
  readonly #trees: SlowCallTrees | undefined
  readonly #spans: SpanSender | undefined
  readonly #profiles: CallTimeProfiles | undefined
  readonly #samples: SampledProfiles | undefined
  readonly #pusher: ProfilePusher | undefined
  #timer: NodeJS.Timeout | undefined
  #lastScan = performance.now()
  #stopping = false
  #reportedProbeless = new Set<number>()

  constructor(options: AgentOptions) {
    this.#options = options
    this.#labeller = new ProcessLabeller(options.rules)
    this.metrics = new AgentMetrics({ topFunctions: options.topFunctions, maxFunctions: MAX_TRACKED_FUNCTIONS })
    if (options.otlpUrl !== undefined) {
      const spans = (this.#spans = new SpanSender(options.otlpUrl, this.metrics))
      this.#trees = new SlowCallTrees({
        thresholdNs: options.slowNs,
        maxWaitNs: SPAN_WAIT_NS,
        onTree: (root) => {
          const labels = this.#labeller.cached(root.pid)
          if (labels) spans.send(root, labels)
        },
      })
    }
    if (options.pprofUrl !== undefined) {
      const sources: ProfileSource[] = []
      if (options.callProfiles) {
        this.#profiles = new CallTimeProfiles((calls) => this.metrics.dropped.inc({ source: 'profiles' }, calls))
        sources.push(this.#profiles)
      }
      if (options.sampleHz > 0) {
        this.#samples = new SampledProfiles({ hz: options.sampleHz, offCpu: options.offCpu, onLost: (samples) => this.metrics.samplesLost.inc(samples) })
        sources.push(this.#samples)
      }
      this.#pusher = new ProfilePusher(options.pprofUrl, sources, (pid) => this.#labeller.cached(pid), this.metrics, options.profileIntervalMs)
    }
  }

  /** Attaches to what the targets name; rejects with the error that kept a named target from being followed. */
  async start(): Promise<void> {
    const { targets } = this.#options
    if ('pids' in targets) await this.#startPids(targets.pids)
    else if ('binary' in targets) await this.#startBinary(targets.binary)
    else await this.#scanHost()
    this.#timer = setInterval(() => void this.#tick(), Math.min(this.#options.rescanMs, this.#options.lingerMs, 1000))
  }

  /** New service rules (SIGHUP): every process is named again. */
  reload(rules: ServiceRule[]): void {
    // The metrics hold the labeller's own label objects: renamed there, renamed everywhere.
    this.#labeller.setRules(rules)
  }

  /** Detaches everything; the last spans and profiles are sent first. */
  async stop(): Promise<void> {
    this.#stopping = true
    clearInterval(this.#timer)
    const groups = await Promise.all(this.#groups.values())
    await Promise.all(groups.flatMap((group) => group?.traces ?? []).map((trace) => trace.close()))
    await this.#pusher?.stop()
    await this.#spans?.shutdown()
  }

  /** Descriptions of what is attached now. */
  async attached(): Promise<string[]> {
    return (await Promise.all(this.#groups.values())).flatMap((group) => (group ? [group.description] : []))
  }

  async #startPids(pids: number[]): Promise<void> {
    const wanted = new Set(pids)
    const found = await findPythons((pid) => wanted.has(pid))
    const missing = pids.filter((pid) => !found.some((p) => p.pid === pid))
    if (missing.length > 0) {
      throw new CliError(`no Python process with pid ${missing.join(', ')} (it exited, or is not Python); \`usdtrace ps\` lists them`)
    }
    for (const p of found) await this.#follow(p.pid, p.probes)
    const withProbes = found.filter((p) => p.interpreter).map((p) => p.pid)
    this.#reportProbeless(found)
    const started: Promise<Group | undefined>[] = []
    if (withProbes.length > 0) started.push(this.#group(`pids ${withProbes.join(',')}`, `processes ${withProbes.join(', ')}`, { pids: withProbes }, true))
    if (this.#options.syscalls) started.push(this.#syscallGroup(`syscalls ${pids.join(',')}`, `syscalls of ${pids.join(', ')}`, { pids }, true, 'no-probes'))
    // Not fatal: a process whose stacks cannot be read (an unsupported build) still has its metrics.
    if (this.#sampling) started.push(this.#samplingGroup(`samples ${pids.join(',')}`, `stacks of ${pids.join(', ')}`, { pids }, false, 'no-probes'))
    await Promise.all(started)
  }

  async #startBinary(path: string): Promise<void> {
    const file = await attachFile(path)
    if (!file) throw new CliError(`${path} does not exist; give the python executable or libpython the processes run`)
    const inspection = inspectBinary(path)
    const { calls } = inspection.capabilities
    const probed = inspection.probes.length > 0
    this.#interpreterProbes.set(file.key, !probed ? 'no-probes' : calls.available ? calls.mode : 'unavailable')
    const started: Promise<Group | undefined>[] = []
    // A build without probes is still sampled; without sampling, its missing probes are the error.
    if (probed || !this.#sampling) started.push(this.#group(file.key, `processes of ${path}`, { binary: path }, true))
    if (this.#sampling) started.push(this.#samplingGroup(`samples ${file.key}`, `stacks of ${path}`, { binary: path }, true, this.#interpreterProbes.get(file.key)!))
    if (this.#options.syscalls && isProgram(path)) {
      started.push(this.#syscallGroup(`syscalls ${file.key}`, `syscalls of ${path}`, { binary: path }, true, this.#interpreterProbes.get(file.key)!))
    }
    await Promise.all(started)
    for (const p of await findPythons()) if (p.interpreter?.key === file.key) await this.#follow(p.pid, p.probes)
  }

  /** Every Python process now: its labels, and the attachments for its interpreter and executable. */
  async #scanHost(): Promise<void> {
    const found = await findPythons()
    this.#reportProbeless(found)
    const started: Promise<unknown>[] = []
    for (const p of found) {
      await this.#follow(p.pid, p.probes)
      if (p.interpreter) {
        this.#interpreterProbes.set(p.interpreter.key, p.probes)
        started.push(this.#group(p.interpreter.key, `processes of ${p.interpreter.path}`, { binary: p.interpreter.path }, false))
      }
      if (this.#options.syscalls && p.executable) {
        const probes = this.#interpreterProbes.get(p.executable.key) ?? 'no-probes'
        started.push(this.#syscallGroup(`syscalls ${p.executable.key}`, `syscalls of ${p.executable.path}`, { binary: p.executable.path }, false, probes))
      }
      if (this.#sampling && p.runtime) {
        started.push(this.#samplingGroup(`samples ${p.runtime.key}`, `stacks of ${p.runtime.path}`, { binary: p.runtime.path }, false, p.probes))
      }
    }
    await Promise.all(started)
  }

  #reportProbeless(found: FoundPython[]): void {
    const probeless = found.filter((p) => !p.interpreter && !this.#reportedProbeless.has(p.pid))
    for (const p of probeless) this.#reportedProbeless.add(p.pid)
    if (probeless.length > 0) {
      this.#options.log(
        `${probeless.length} Python process${probeless.length === 1 ? '' : 'es'} without probes (${probeless.map((p) => p.pid).join(', ')}): ` +
          `${probelessGives(this.#options.syscalls, this.#sampling)}; a probe-enabled CPython gives calls, GC and imports`,
      )
    }
  }

  /** The labels of a process the agent follows from now on; undefined if it is gone. */
  async #follow(pid: number, probes: ProbeStatus): Promise<ProcessLabels | undefined> {
    const labels = await this.#labeller.labels(pid)
    if (!labels) return undefined
    this.metrics.follow(labels, probes)
    this.#exitedAt.delete(pid)
    return labels
  }

  /**
   * Follows a pid the kernel reported, the first time it does. A process that already exited
   * (a short one, read after it ended) is still counted, under the executable the group names.
   */
  async #met(pid: number, probes: ProbeStatus, executable: string): Promise<void> {
    if (this.metrics.isFollowed(pid)) return
    if (await this.#follow(pid, probes)) return
    this.metrics.follow(this.#labeller.vanished(pid, executable), probes)
  }

  /** The python attachments for one interpreter file (or pid list), once; `fatal`: a failure is the agent's. */
  #group(key: string, description: string, target: TargetOptions, fatal: boolean): Promise<Group | undefined> {
    const existing = this.#groups.get(key)
    if (existing || this.#failed.has(key)) return Promise.resolve(existing)
    const probes = this.#interpreterProbes.get(key) ?? 'native'
    const executable = target.binary ?? ''
    const { intervalMs, latency } = this.#options
    const traces: Trace<unknown>[] = []
    const counts = stats({ ...target, intervalMs, maxProcesses: MAX_PROCESSES_IN_KERNEL })
    traces.push(counts)
    // The kernel keeps a slot per process it ever counted: at most MAX_PROCESSES_IN_KERNEL pids here.
    const counted = new Set<number>()
    this.#consume(counts, 'stats', async (snapshot) => {
      for (const row of snapshot.processes) {
        await this.#met(row.pid, probes, executable)
        this.metrics.addStats(row)
        counted.add(row.pid)
      }
      if (snapshot.dropped > 0) this.metrics.dropped.inc({ source: 'stats' }, snapshot.dropped)
      this.metrics.mapFill.set({ map: 'stats' }, counted.size / MAX_PROCESSES_IN_KERNEL)
    })
    const gc = traceGC(target)
    traces.push(gc)
    this.#consume(gc, 'gc', async (event) => {
      await this.#met(event.pid, probes, executable)
      this.metrics.addGCPause(event.pid, event.generation, event.durationNs)
    })
    const functions = callStats({ ...target, intervalMs, latency, maxFunctions: MAX_FUNCTIONS_IN_KERNEL })
    traces.push(functions)
    this.#consume(functions, 'functions', async (snapshot) => {
      this.metrics.addFunctions(snapshot.functions)
      if (snapshot.dropped > 0) this.metrics.dropped.inc({ source: 'functions' }, snapshot.dropped)
      this.metrics.mapFill.set({ map: 'functions' }, snapshot.functions.length / MAX_FUNCTIONS_IN_KERNEL)
    })
    if (this.#trees || this.#profiles) {
      const calls = traceCalls(target)
      traces.push(calls)
      this.#consume(calls, 'calls', (event: CallEvent) => {
        this.#trees?.add(event)
        this.#profiles?.add(event)
      })
    }
    return this.#attach(key, description, traces, fatal)
  }

  /** `probes`: what the python probes of this executable's processes give ('no-probes' for none). */
  #syscallGroup(key: string, description: string, target: TargetOptions, fatal: boolean, probes: ProbeStatus): Promise<Group | undefined> {
    const existing = this.#groups.get(key)
    if (existing || this.#failed.has(key)) return Promise.resolve(existing)
    const syscalls = traceSyscalls(target)
    const executable = target.binary ?? ''
    this.#consume(syscalls, 'syscalls', async (event) => {
      await this.#met(event.pid, probes, executable)
      this.metrics.addSyscall(event.pid, event.name)
    })
    return this.#attach(key, description, [syscalls], fatal)
  }

  /**
   * Stack samples summed in the kernel per interval, for the metrics and the sampled profiles.
   * `probes`: what the python probes of these processes give, for those first met here.
   */
  #samplingGroup(key: string, description: string, target: TargetOptions, fatal: boolean, probes: ProbeStatus): Promise<Group | undefined> {
    const existing = this.#groups.get(key)
    if (existing || this.#failed.has(key)) return Promise.resolve(existing)
    const { sampleHz: hz, offCpu, intervalMs } = this.#options
    const profile = stackProfile({ ...target, hz, offCpu, intervalMs, maxStacks: MAX_STACKS_IN_KERNEL })
    const executable = target.binary ?? ''
    this.#consume(profile, 'samples', async (snapshot) => {
      for (const stack of snapshot.stacks) {
        await this.#met(stack.pid, probes, executable)
        this.metrics.addSamples(stack.pid, stack.onCpu, stack.samples)
      }
      this.#samples?.add(snapshot)
      if (snapshot.dropped > 0) this.metrics.samplesLost.inc(snapshot.dropped)
      this.metrics.mapFill.set({ map: 'stacks' }, snapshot.stacks.length / MAX_STACKS_IN_KERNEL)
    })
    return this.#attach(key, description, [profile], fatal)
  }

  get #sampling(): boolean {
    return this.#options.sampleHz > 0
  }

  /** Waits for every trace of a group to attach; one that cannot takes the group down with it. */
  #attach(key: string, description: string, traces: Trace<unknown>[], fatal: boolean): Promise<Group | undefined> {
    const attached = Promise.all(traces.map((trace) => trace.ready)).then(
      () => {
        const group = { description, traces }
        this.#groups.set(key, group)
        this.#options.log(`following ${description}`)
        return group
      },
      async (error: unknown) => {
        this.#groups.delete(key)
        this.#failed.add(key)
        await Promise.all(traces.map((trace) => trace.close()))
        if (fatal) throw error
        this.#options.log(`cannot follow ${description}: ${error instanceof Error ? error.message : String(error)}`)
        return undefined
      },
    )
    this.#groups.set(key, attached)
    return attached
  }

  /** Hands each item of a trace to `onItem`, in order; logs how the trace ended unless the agent ended it. */
  #consume<T>(trace: Trace<T>, source: string, onItem: (item: T) => void | Promise<void>): void {
    this.#lostSeen.set(trace as Trace<unknown>, 0)
    void (async () => {
      try {
        await trace.ready
        for await (const item of trace) await onItem(item)
      } catch (error) {
        if (!this.#stopping && !(error instanceof TraceError && error.code === 'NO_SUCH_PROCESS')) {
          this.#options.log(`${source} stream ended: ${error instanceof Error ? error.message : String(error)}`)
        }
      } finally {
        this.#countLost(trace as Trace<unknown>, source)
        this.#lostSeen.delete(trace as Trace<unknown>)
      }
    })()
    this.#sources.set(trace as Trace<unknown>, source)
  }

  #countLost(trace: Trace<unknown>, source: string): void {
    const lost = trace.lost
    const delta = lost - (this.#lostSeen.get(trace) ?? 0)
    if (delta > 0) this.metrics.lost.inc({ source }, delta)
    this.#lostSeen.set(trace, lost)
  }

  /** Lost counts, slow calls waiting too long, exited processes, and on the whole host, new ones. */
  async #tick(): Promise<void> {
    for (const [trace, source] of this.#sources) {
      if (this.#lostSeen.has(trace)) this.#countLost(trace, source)
      else this.#sources.delete(trace)
    }
    this.#trees?.expire(process.hrtime.bigint())
    const now = performance.now()
    for (const pid of await this.#labeller.exited()) if (!this.#exitedAt.has(pid)) this.#exitedAt.set(pid, now)
    for (const [pid, at] of this.#exitedAt) {
      if (now - at < this.#options.lingerMs) continue
      this.#exitedAt.delete(pid)
      this.#reportedProbeless.delete(pid)
      this.#trees?.forgetProcess(pid)
      this.#profiles?.forgetProcess(pid)
      this.#samples?.forgetProcess(pid)
      this.#spans?.forgetProcess(pid)
      this.metrics.forget(pid)
      this.#labeller.forget(pid)
    }
    if ('host' in this.#options.targets && !this.#stopping && now - this.#lastScan >= this.#options.rescanMs) {
      this.#lastScan = now
      await this.#scanHost()
    }
  }
}

/** What the agent has of a Python without probes. */
function probelessGives(syscalls: boolean, sampling: boolean): string {
  if (syscalls && sampling) return 'sampled stacks and syscalls only'
  if (sampling) return 'sampled stacks only'
  return syscalls ? 'syscalls only' : 'listed in usdtrace_process_info only'
}

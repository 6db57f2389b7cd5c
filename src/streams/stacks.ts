/**
 * Python stacks of running CPython processes, probes or not: every thread's stack now
 * (dumpStacks), samples as threads run and wait (sampleStacks), and profiles summed in the
 * kernel (stackProfile). BPF walks the frames (bpf/python_stack.bpf.h, bpf/stacks.bpf.c); here a
 * frame's code id becomes its names and its offset a line.
 */
import { readFileSync } from 'node:fs'
import { openAttached, explainNativeError } from '../kernel/attach.js'
import { requireKernelVersion } from '../kernel/doctor.js'
import type { BpfSession, MapDump } from '../kernel/binding.js'
import { SAMPLE_ON_CPU, SAMPLE_TRUNCATED, SAMPLE_UNREADABLE, STACK_COUNTS, STACK_KEY } from '../kernel/abi.js'
import { TraceError } from '../errors.js'
import { threadNames } from '../cpython/threads.js'
import { resolveTargets, type TargetOptions } from '../process/targets.js'
import { STREAM_OPTIONS, TARGET_OPTIONS, checkOptions, withPid } from '../options.js'
import { AggregateHalves, summaryWithoutBatches } from './aggregate.js'
import { PythonStacks, type StackDecoder } from './python-stacks.js'
import { sampleBatchReader, type SampleBatch } from './sample-batch.js'
import { maxIdsOf, type IdTableOptions } from './id-table.js'
import { Trace, ringBufferSettings, sumDropped, type OpenedSession, type Sampler, type StreamOptions } from './trace.js'

/** One frame of a Python stack. */
export interface StackFrame {
  /** The code's file (co_filename). */
  file: string
  /** The function's qualified name (co_qualname; co_name on 3.10, which has no other). */
  func: string
  /** The line the frame is at, as its f_lineno says; 0 where CPython has none. */
  line: number
}

/** A thread's stack in a dump. */
export interface ThreadStack {
  /** The process. */
  pid: number
  /** The kernel thread id; the main thread's is the pid. */
  tid: number
  /** The `threading` name where the interpreter has one, else the kernel's name of the thread. */
  name: string
  /** Innermost first, as far as the stack was read. */
  frames: StackFrame[]
  /** The thread was running on a CPU as it was read. */
  onCpu: boolean
  /** The stack was deeper than 127 frames (or a frame could not be read): the outermost are missing. */
  truncated: boolean
}

/** One sample of a thread's stack. */
export interface StackSample {
  /** The process. */
  pid: number
  /** The kernel thread id. */
  tid: number
  /** The CPU it ran on (off CPU: the one it came back on). */
  cpu: number
  /** CLOCK_MONOTONIC: when it was taken (off CPU: when the thread came back). */
  timestampNs: bigint
  /** Taken while the thread ran; false: as it waited (offCpu), for offCpuNs. */
  onCpu: boolean
  /** Off CPU: how long the thread waited with this stack. */
  offCpuNs?: bigint
  /** Innermost first. */
  frames: StackFrame[]
  /** The stack was deeper than 127 frames (or a frame could not be read): the outermost are missing. */
  truncated: boolean
}

/** A distinct stack of one process in a profile, with what was summed under it. */
export interface ProfiledStack {
  /** The process. */
  pid: number
  /** Sampled on CPU; false: waits (offCpu). */
  onCpu: boolean
  /** Innermost first. */
  frames: StackFrame[]
  /** Samples (on CPU) or waits (off CPU) with this stack. */
  samples: number
  /** Off CPU: the time waited with this stack in all. */
  offCpuNs: bigint
  /** The stack was cut (deeper than 127 frames, or a frame could not be read). */
  truncated: boolean
}

/** One interval of a profile. */
export interface StackProfileSnapshot {
  /** The interval covered: CLOCK_MONOTONIC, comparable with process.hrtime.bigint(). */
  startNs: bigint
  /** Where the interval ends, on the same clock. */
  endNs: bigint
  /** Every distinct stack of the interval, most samples first. */
  stacks: ProfiledStack[]
  /** Samples in this interval lost: a kernel map was full, the ring had no room for a name. */
  dropped: number
  /** The snapshot taken once every traced process has exited. */
  final: boolean
}

/** What sampleStacks takes: the targets, the stream's options, what to sample, and the cap on its batches' stack ids. */
export interface SampleStacksOptions extends StreamOptions, TargetOptions, IdTableOptions {
  /** Samples per second of each CPU (default 99). */
  hz?: number
  /** Also take a thread's stack as it blocks, delivered with how long it waited (default false). */
  offCpu?: boolean
}

/** What stackProfile takes: sampleStacks' options but `maxIds` (it has no batches), and the snapshot interval. */
export interface StackProfileOptions extends Omit<SampleStacksOptions, 'maxIds'> {
  /** A snapshot every this many ms (default 1000). */
  intervalMs?: number
  /** Distinct stacks one interval can hold (default 16384); samples of more are counted in `dropped`. */
  maxStacks?: number
}

/** What dumpStacks takes: which processes. */
export type DumpStacksOptions = TargetOptions

const DEFAULT_HZ = 99
// perf's own limit on this machine is kernel.perf_event_max_sample_rate; this keeps a typo (99999) out.
const MAX_HZ = 10_000
const DEFAULT_INTERVAL_MS = 1000
const DEFAULT_MAX_STACKS = 16384
// Threads one trace keeps a parked (off-CPU) stack for at once.
const PARKED_THREADS = 16384
const SAMPLING_OPTIONS = [...TARGET_OPTIONS, ...STREAM_OPTIONS, 'hz', 'offCpu']
const SAMPLE_OPTIONS = [...SAMPLING_OPTIONS, 'maxIds']
const PROFILE_OPTIONS = [...SAMPLING_OPTIONS, 'intervalMs', 'maxStacks']

/**
 * Every thread's Python stack in the processes named, now: what each thread's own
 * `sys._current_frames()` entry would say, frame by frame, innermost first. Read in the kernel,
 * without stopping or signalling the process.
 */
export async function dumpStacks(pid: number): Promise<ThreadStack[]>
export async function dumpStacks(options: DumpStacksOptions): Promise<ThreadStack[]>
export async function dumpStacks(pidOrOptions: number | DumpStacksOptions): Promise<ThreadStack[]> {
  const options = withPid(pidOrOptions, undefined)
  checkOptions('dumpStacks', options, TARGET_OPTIONS)
  if (options.binary !== undefined) throw new TraceError('INVALID_ARGUMENT', 'dumpStacks reads processes that run now: name them with { pid } or { pids }')
  const opened = await openStackSession(options, { mode: 'dump' })
  try {
    const records = await opened.session.runIterator('dump_threads')
    const threads: ThreadStack[] = []
    const view = new DataView(records.buffer, records.byteOffset, records.byteLength)
    // Each process's `threading` names, read once, right after its stacks.
    const { located, readings, decoder } = opened.stacks
    const names = new Map(located.map((runtime, i) => [runtime.pid, threadNames(readings[i]!, runtime)]))
    for (let at = 0; at < records.length; at += 4 + view.getUint32(at, true)) {
      const sample = decoder.decode(view, records, at + 4)
      if (!sample) continue
      const name = names.get(sample.pid)?.get(sample.tid) ?? kernelThreadName(sample.pid, sample.tid)
      threads.push({ pid: sample.pid, tid: sample.tid, name, frames: sample.frames, onCpu: sample.onCpu, truncated: sample.truncated })
    }
    return threads.sort((a, b) => a.pid - b.pid || a.tid - b.tid)
  } catch (error) {
    throw explainNativeError(error, opened.stacks.targets[0]!, 'reading the stacks')
  } finally {
    await opened.session.close()
  }
}

/** What `sampleStacks` returns: an async iterator of samples, or of `SampleBatch`es through `batches()`. */
export type StackSampleTrace = Trace<StackSample, SampleBatch>

/**
 * Samples the Python stacks of running CPython processes (any from 3.10 on, probes or not): on
 * CPU `hz` times a second on every CPU, and with `offCpu` each time a thread blocks, delivered
 * when it runs again with how long it waited. Costs the same whatever the program's call rate.
 */
export function sampleStacks(pid: number, options?: SampleStacksOptions): StackSampleTrace
export function sampleStacks(options: SampleStacksOptions): StackSampleTrace
export function sampleStacks(pidOrOptions: number | SampleStacksOptions, maybeOptions?: SampleStacksOptions): StackSampleTrace {
  const options = withPid(pidOrOptions, maybeOptions)
  let decoder: StackDecoder | undefined
  return new Trace(
    async () => {
      checkOptions('sampleStacks', options, SAMPLE_OPTIONS)
      maxIdsOf('sampleStacks', options)
      const opened = await openStackSession(options, { mode: 'sample' })
      decoder = opened.stacks.decoder
      return opened
    },
    (view, bytes, offset) => decoder!.decode(view, bytes, offset),
    options,
    () => sampleBatchReader(() => decoder!, maxIdsOf('sampleStacks', options)),
  )
}

/**
 * Profiles of the Python stacks of running CPython processes: sampled as sampleStacks does, but
 * summed in the kernel per distinct stack, and read every `intervalMs`, so an hour costs the
 * memory of a minute.
 */
export function stackProfile(pid: number, options?: StackProfileOptions): Trace<StackProfileSnapshot>
export function stackProfile(options: StackProfileOptions): Trace<StackProfileSnapshot>
export function stackProfile(pidOrOptions: number | StackProfileOptions, maybeOptions?: StackProfileOptions): Trace<StackProfileSnapshot> {
  const options = withPid(pidOrOptions, maybeOptions)
  let decoder: StackDecoder | undefined
  return new Trace<StackProfileSnapshot>(
    async () => {
      checkOptions('stackProfile', options, PROFILE_OPTIONS)
      const intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS
      if (!(intervalMs > 0) || !Number.isFinite(intervalMs)) {
        throw new TraceError('INVALID_ARGUMENT', `stackProfile: intervalMs must be a positive number of milliseconds, got ${String(options.intervalMs)}`)
      }
      const maxStacks = positiveInteger('stackProfile', 'maxStacks', options.maxStacks, DEFAULT_MAX_STACKS)
      const opened = await openStackSession(options, { mode: 'profile', maxStacks })
      decoder = opened.stacks.decoder
      return { ...opened, sampler: new ProfileSampler(opened.session, decoder, intervalMs) }
    },
    (view, bytes, offset) => {
      decoder!.decode(view, bytes, offset)
      return undefined
    },
    options,
    summaryWithoutBatches('stackProfile', 'sampleStacks(…).batches() for one row per sample'),
  )
}

function positiveInteger(fn: string, name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value <= 0) throw new TraceError('INVALID_ARGUMENT', `${fn}: ${name} must be a positive integer, got ${String(value)}`)
  return value
}

interface StackSession extends OpenedSession<never> {
  session: BpfSession<'stacks'>
  stacks: PythonStacks
}

type StackMode = { mode: 'dump' } | { mode: 'sample' } | { mode: 'profile'; maxStacks: number }

async function openStackSession(options: SampleStacksOptions, how: StackMode): Promise<StackSession> {
  const sampling = how.mode !== 'dump'
  const hz = sampling ? positiveInteger('sampleStacks', 'hz', options.hz, DEFAULT_HZ) : 0
  if (hz > MAX_HZ) throw new TraceError('INVALID_ARGUMENT', `hz must be at most ${MAX_HZ} samples a second, got ${hz}`)
  // bpf_loop (5.17) walks the frames; a dump reads another task's memory (bpf_copy_from_user_task, 5.18).
  requireKernelVersion(5, 18, 'reading Python stacks')
  const { targets, exitPids } = await resolveTargets(options, 'stacks')
  const stacks = await PythonStacks.prepare(targets, options.binary, how.mode === 'profile')
  // A dump writes to its iterator's output, not to the ring: the ring is the smallest there is.
  const ring = ringBufferSettings(sampling ? options : { ringBufferBytes: 4096 })
  const maxStacks = how.mode === 'profile' ? how.maxStacks : 1
  const tracing = ['forget_thread', 'forget_image', ...(options.offCpu ? ['on_switch' as const] : [])] as const
  const session = await openAttached(
    {
      object: 'stacks',
      maxEntries: {
        ...ring.maxEntries,
        ...stacks.maxEntries,
        parked_stacks: PARKED_THREADS,
        stack_counts_even: maxStacks,
        stack_counts_odd: maxStacks,
      },
      constants: { ...ring.constants, ...stacks.constants, aggregate: how.mode === 'profile' ? 1 : 0 },
      programs: sampling ? ['sample_on_cpu', 'forget_code', ...tracing] : ['dump_threads'],
    },
    targets,
    (session) => {
      stacks.install(session, sampling)
      if (!sampling) return
      for (const program of tracing) {
        try {
          session.attachTracing(program)
        } catch (error) {
          throw explainNativeError(error, targets[0]!, `attaching ${program}`)
        }
      }
      try {
        session.attachPerfEvents('sample_on_cpu', hz)
      } catch (error) {
        throw explainNativeError(error, targets[0]!, `opening a ${hz} Hz CPU clock on every CPU`)
      }
    },
  )
  return { session, exitPids, stacks }
}

/** The kernel's name of a thread (/proc/PID/task/TID/comm), or '' when it is gone. */
function kernelThreadName(pid: number, tid: number): string {
  try {
    return readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()
  } catch {
    return ''
  }
}

/** Reads a profile's half of the kernel sums each interval, its stacks named by the decoder. */
class ProfileSampler implements Sampler<StackProfileSnapshot> {
  readonly intervalMs: number
  #session: StackSession['session']
  #decoder: StackDecoder
  #halves: AggregateHalves<'stack_counts'>
  #startNs = process.hrtime.bigint()
  #dropped = 0n

  constructor(session: StackSession['session'], decoder: StackDecoder, intervalMs: number) {
    this.#session = session
    this.#decoder = decoder
    this.#halves = new AggregateHalves(session, 'stackProfile')
    this.intervalMs = intervalMs
  }

  async read(final: boolean): Promise<StackProfileSnapshot> {
    const endNs = process.hrtime.bigint()
    const [dump] = await this.#halves.take(['stack_counts'])
    const stacks = this.#stacks(dump!)
    this.#decoder.sweep()
    const dropped = sumDropped(this.#session.counters())
    const snapshot = { startNs: this.#startNs, endNs, stacks, dropped: Number(dropped - this.#dropped), final }
    this.#startNs = endNs
    this.#dropped = dropped
    return snapshot
  }

  /** The interval's stacks; kernel entries that differ only in offsets on the same lines are one stack here. */
  #stacks(dump: MapDump): ProfiledStack[] {
    const keys = new DataView(dump.keys.buffer, dump.keys.byteOffset, dump.keys.byteLength)
    const values = new DataView(dump.values.buffer, dump.values.byteOffset, dump.values.byteLength)
    const stacks = new Map<string, ProfiledStack>()
    for (let i = 0; i < dump.count; i++) {
      const key = i * dump.keySize
      const value = i * dump.valueSize
      const flags = keys.getUint8(key + STACK_KEY.fields.flags)
      const stack: ProfiledStack = {
        pid: keys.getUint32(key + STACK_KEY.fields.pid, true),
        onCpu: (flags & SAMPLE_ON_CPU) !== 0,
        frames: this.#decoder.frames(keys, key + STACK_KEY.fields.frames, keys.getUint16(key + STACK_KEY.fields.depth, true)),
        samples: Number(values.getBigUint64(value + STACK_COUNTS.fields.samples, true)),
        offCpuNs: values.getBigUint64(value + STACK_COUNTS.fields.off_cpu_ns, true),
        truncated: (flags & (SAMPLE_TRUNCATED | SAMPLE_UNREADABLE)) !== 0,
      }
      const name = [stack.pid, stack.onCpu, stack.truncated, ...stack.frames.map((f) => `${f.file}\0${f.func}\0${f.line}`)].join('\n')
      const same = stacks.get(name)
      if (same) {
        same.samples += stack.samples
        same.offCpuNs += stack.offCpuNs
      } else {
        stacks.set(name, stack)
      }
    }
    return [...stacks.values()].sort((a, b) => b.samples - a.samples)
  }
}

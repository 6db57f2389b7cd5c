import { attachPythonProbe, attachThreadExit, openAttached } from '../kernel/attach.js'
import { GC_EVENT } from '../kernel/abi.js'
import { STREAM_OPTIONS, TARGET_OPTIONS, checkOptions, nonNegativeInteger, withPid } from '../options.js'
import { resolveTargets, type TargetOptions } from '../process/targets.js'
import { Trace, ringBufferSettings, type OpenedSession, type StreamOptions } from './trace.js'
import { eventStacks, noBatchesWithStacks, stackSessionSettings, withEventStacks, type PythonStacks, type StackOption } from './python-stacks.js'
import type { StackFrame } from './stacks.js'
import { columnsOf, type BatchReader, type Columns } from './batch.js'

/** One garbage collection of a CPython process. */
export interface GCEvent {
  /** The traced process. */
  pid: number
  /** The kernel thread id; the main thread's is the pid. */
  tid: number
  /** The generation collected: 0, 1 or 2 (gc.collect(generation)). */
  generation: number
  /**
   * The gc__done probe's argument: the unreachable objects the collection found, i.e. what
   * gc.collect() returns (freed objects plus uncollectable ones, which CPython ≥ 3.4 rarely has).
   */
  collected: number
  /** CLOCK_MONOTONIC, comparable with process.hrtime.bigint() */
  startNs: bigint
  /** From gc__start to gc__done. */
  durationNs: bigint
  /** With `stack: true`: the Python stack of the thread at the event, innermost first (none when it ran no Python). */
  stack?: StackFrame[]
}

export interface TraceGCOptions extends StreamOptions, TargetOptions, StackOption {
  /** Collections shorter than this are left out in the kernel (default 0: all). */
  minDurationNs?: number | bigint
}

const OPTIONS = [...TARGET_OPTIONS, ...STREAM_OPTIONS, 'minDurationNs', 'stack']

const gc = columnsOf(GC_EVENT)

/** The columns of a `GCBatch`, from a gc_event's fields. */
const GC_COLUMNS = {
  pid: gc.copy('u32', 'pid'),
  tid: gc.copy('u32', 'tid'),
  generation: gc.copy('i32', 'generation'),
  // Signed, as the probe's Py_ssize_t.
  collected: gc.copy('f64', 'collected', { signed: true }),
  startNs: gc.copy('i64', 'start_ns'),
  durationNs: gc.copy('f64', 'duration_ns'),
}

/**
 * Garbage collections in columns, from `trace.batches()`: row `i` of every column is one
 * collection, the fields of a `GCEvent`, for `i` below `length` (each column's own length). The
 * next batch of the trace overwrites the columns: copy what you keep. See docs/batches.md.
 */
export class GCBatch {
  /** Rows in this batch. */
  readonly length: number
  /** The traced process. */
  readonly pid: Uint32Array
  /** The kernel thread id; the main thread's is the pid. */
  readonly tid: Uint32Array
  /** The generation collected: 0, 1 or 2. */
  readonly generation: Int32Array
  /** The unreachable objects the collection found, as `GCEvent.collected`: what gc.collect() returns. */
  readonly collected: Float64Array
  /** When the collection began: CLOCK_MONOTONIC, exact, as `GCEvent.startNs`. */
  readonly startNs: BigInt64Array
  /** From gc__start to gc__done, as a double (exact below 2^53 ns). */
  readonly durationNs: Float64Array

  /** @internal Batches come from `trace.batches()`. */
  constructor(columns: Columns<typeof GC_COLUMNS>, length: number) {
    this.length = length
    this.pid = columns.pid
    this.tid = columns.tid
    this.generation = columns.generation
    this.collected = columns.collected
    this.startNs = columns.startNs
    this.durationNs = columns.durationNs
  }
}

/** What `traceGC` returns: an async iterator of collections, or of `GCBatch`es through `batches()`. */
export type GCTrace = Trace<GCEvent, GCBatch>

/**
 * Streams the garbage collections of running CPython processes (python:gc__start/gc__done).
 * A collection already under way when the trace attaches is not reported.
 */
export function traceGC(pid: number, options?: TraceGCOptions): GCTrace
export function traceGC(options: TraceGCOptions): GCTrace
export function traceGC(pidOrOptions: number | TraceGCOptions, maybeOptions?: TraceGCOptions): GCTrace {
  const options = withPid(pidOrOptions, maybeOptions)
  let stacks: PythonStacks | undefined
  return new Trace(
    async () => {
      checkOptions('traceGC', options, OPTIONS)
      stacks = await eventStacks('traceGC', options)
      return openGCSession(options, stacks)
    },
    withEventStacks(decodeGC, () => stacks, (event) => event.startNs),
    options,
    () => {
      if (options.stack) {
        throw noBatchesWithStacks('traceGC')
      }
      return GC_BATCH_READER
    },
  )
}

async function openGCSession(options: TraceGCOptions, stacks: PythonStacks | undefined): Promise<OpenedSession<GCEvent>> {
  const minDurationNs = nonNegativeInteger('traceGC', 'minDurationNs', options.minDurationNs, 0n)
  const ring = ringBufferSettings(options)
  const { targets, exitPids } = await resolveTargets(options, 'gc')
  const python = stackSessionSettings(stacks)
  const session = await openAttached(
    {
      object: 'gc',
      maxEntries: { ...ring.maxEntries, ...python.maxEntries },
      constants: { ...ring.constants, ...python.constants, min_duration_ns: minDurationNs },
    },
    targets,
    (session) => {
      stacks?.install(session)
      attachThreadExit(session, targets[0]!)
      for (const target of targets) {
        attachPythonProbe(session, target, 'on_gc_start', 'gc__start')
        attachPythonProbe(session, target, 'on_gc_done', 'gc__done')
      }
    },
  )
  return { session, exitPids }
}

const { fields } = GC_EVENT

function decodeGC(view: DataView, _bytes: Buffer, offset: number): GCEvent {
  return {
    pid: view.getUint32(offset + fields.pid, true),
    tid: view.getUint32(offset + fields.tid, true),
    generation: view.getInt32(offset + fields.generation, true),
    collected: Number(view.getBigInt64(offset + fields.collected, true)),
    startNs: view.getBigUint64(offset + fields.start_ns, true),
    durationNs: view.getBigUint64(offset + fields.duration_ns, true),
  }
}

/** Reads a trace's collections as `GCBatch`es: one row per record, every record a collection. Keeps no state: one for every trace. */
const GC_BATCH_READER: BatchReader<typeof GC_COLUMNS, GCBatch> = {
  layout: { minSize: GC_EVENT.size, columns: GC_COLUMNS },
  batch: (columns, length) => new GCBatch(columns, length),
}

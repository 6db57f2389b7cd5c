import { attachPythonProbe, attachThreadExit, openAttached } from '../kernel/attach.js'
import { GC_EVENT } from '../kernel/abi.js'
import { STREAM_OPTIONS, TARGET_OPTIONS, checkOptions, nonNegativeInteger, withPid } from '../options.js'
import { resolveTargets, type TargetOptions } from '../process/targets.js'
import { Trace, ringBufferSettings, type OpenedSession, type StreamOptions } from './trace.js'
import { eventStacks, stackSessionSettings, withEventStacks, type PythonStacks, type StackOption } from './python-stacks.js'
import type { StackFrame } from './stacks.js'

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

/**
 * Streams the garbage collections of running CPython processes (python:gc__start/gc__done).
 * A collection already under way when the trace attaches is not reported.
 */
export function traceGC(pid: number, options?: TraceGCOptions): Trace<GCEvent>
export function traceGC(options: TraceGCOptions): Trace<GCEvent>
export function traceGC(pidOrOptions: number | TraceGCOptions, maybeOptions?: TraceGCOptions): Trace<GCEvent> {
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

/**
 * Call events and stack samples as newline-delimited JSON, one object per line, for jq and friends. Times are
 * nanoseconds since `startNs` as plain JSON numbers (exact for 104 days).
 */
import type { CallEvent } from '../streams/calls.js'
import type { StackFrame, StackSample } from '../streams/stacks.js'

/** A CallEvent as plain JSON: what each line of `usdtrace flow --json` and `record --format ndjson` holds. */
export interface CallRecord {
  /** always 'call' */
  type: 'call'
  /** as CallEvent.kind */
  kind: 'entry' | 'return'
  /** process id */
  pid: number
  /** kernel thread id */
  tid: number
  /** ns since the start of the trace */
  ns: number
  /** as the probe reported it */
  file: string
  /** as the probe reported it */
  func: string
  /** an entry's first line of the function, a return's current line */
  line: number
  /** per-thread nesting of traced frames, 0 = outermost */
  depth: number
  /** ns, on returns whose entry was traced; null otherwise */
  durationNs: number | null
  /** a name was cut to 512 bytes */
  truncated: boolean
  /** the CPU the probe fired on */
  cpu: number
}

/** The JSON form of a call event, its time counted from `startNs` (CLOCK_MONOTONIC). */
export function callRecord(event: CallEvent, startNs: bigint): CallRecord {
  return {
    type: 'call',
    kind: event.kind,
    pid: event.pid,
    tid: event.tid,
    ns: Number(event.timestampNs - startNs),
    file: event.file,
    func: event.func,
    line: event.line,
    depth: event.depth,
    durationNs: event.durationNs === undefined ? null : Number(event.durationNs),
    truncated: event.truncated,
    cpu: event.cpu,
  }
}

/** One call event as a line of NDJSON, without the newline. */
export function ndjsonLine(event: CallEvent, startNs: bigint): string {
  return JSON.stringify(callRecord(event, startNs))
}

/** A StackSample as plain JSON: what each line of `usdtrace record --sample --format ndjson` holds. */
export interface SampleRecord {
  /** always 'sample' */
  type: 'sample'
  /** process id */
  pid: number
  /** kernel thread id */
  tid: number
  /** ns since the start of the recording (off CPU: when the thread came back) */
  ns: number
  /** the CPU it ran on (off CPU: the one it came back on) */
  cpu: number
  /** taken while the thread ran; false: a wait */
  onCpu: boolean
  /** off CPU: how long the thread waited; null on CPU */
  offCpuNs: number | null
  /** innermost first */
  frames: StackFrame[]
  /** the outermost frames are missing */
  truncated: boolean
}

/** The JSON form of a sample, its time counted from `startNs` (CLOCK_MONOTONIC). */
export function sampleRecord(sample: StackSample, startNs: bigint): SampleRecord {
  return {
    type: 'sample',
    pid: sample.pid,
    tid: sample.tid,
    ns: Number(sample.timestampNs - startNs),
    cpu: sample.cpu,
    onCpu: sample.onCpu,
    offCpuNs: sample.offCpuNs === undefined ? null : Number(sample.offCpuNs),
    frames: sample.frames.map(({ file, func, line }) => ({ file, func, line })),
    truncated: sample.truncated,
  }
}

/**
 * The Chrome trace-event JSON format (ui.perfetto.dev and chrome://tracing open it): a 'B'
 * (begin) and an 'E' (end) duration event per call on its process and thread, with metadata
 * events naming both. Timestamps are microseconds with nanosecond fractions.
 */
import type { CallTimeline } from './timeline.js'

/** One trace event: the beginning or end of a call, or a metadata record naming a process or thread. */
export interface ChromeTraceEvent {
  /** the function, or `process_name` / `thread_name` for metadata */
  name: string
  /** phase: 'B' begin, 'E' end, 'M' metadata */
  ph: 'B' | 'E' | 'M'
  /** process id */
  pid: number
  /** thread id */
  tid: number
  /** microseconds since the timeline's start (fractions carry the nanoseconds); absent on metadata */
  ts?: number
  /** category: 'python' */
  cat?: string
  /** a begin's file and line; a metadata record's name */
  args?: Record<string, string | number>
}

/** A trace file in the JSON object form: JSON.stringify it and open it in ui.perfetto.dev. */
export interface ChromeTrace {
  /** metadata, then per thread its calls' begin and end events in time order */
  traceEvents: ChromeTraceEvent[]
  /** how viewers should show times */
  displayTimeUnit: 'ns'
}

/** How chromeTrace() names things. */
export interface ChromeTraceOptions {
  /** Process names by pid for the metadata (default "pid N"). */
  processNames?: ReadonlyMap<number, string>
}

/** The timeline as Chrome trace events: a B and an E per call, per thread. */
export function chromeTrace(timeline: CallTimeline, options: ChromeTraceOptions = {}): ChromeTrace {
  const traceEvents: ChromeTraceEvent[] = []
  const named = new Set<number>()
  for (const thread of timeline.threads) {
    const { pid, tid } = thread
    if (!named.has(pid)) {
      named.add(pid)
      const name = options.processNames?.get(pid) ?? `pid ${pid}`
      traceEvents.push({ name: 'process_name', ph: 'M', pid, tid: pid, args: { name } })
    }
    traceEvents.push({ name: 'thread_name', ph: 'M', pid, tid, args: { name: tid === pid ? 'main' : `tid ${tid}` } })
    for (let i = 0; i < thread.ops.length; i++) {
      const op = thread.ops[i]!
      const ts = thread.times[i]! / 1000
      if (op >= 0) {
        const frame = timeline.frames[op]!
        traceEvents.push({ name: frame.func, cat: 'python', ph: 'B', ts, pid, tid, args: { file: frame.file, line: frame.line } })
      } else {
        traceEvents.push({ name: timeline.frames[~op]!.func, cat: 'python', ph: 'E', ts, pid, tid })
      }
    }
  }
  return { traceEvents, displayTimeUnit: 'ns' }
}

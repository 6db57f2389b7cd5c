/**
 * The Chrome trace-event JSON format (ui.perfetto.dev and chrome://tracing open it): a 'B'
 * (begin) and an 'E' (end) duration event per call on its process and thread, with metadata
 * events naming both. Timestamps are microseconds with nanosecond fractions.
 */
import type { CallTimeline } from './timeline.js'

export interface ChromeTraceEvent {
  name: string
  ph: 'B' | 'E' | 'M'
  pid: number
  tid: number
  ts?: number
  cat?: string
  args?: Record<string, string | number>
}

export interface ChromeTrace {
  traceEvents: ChromeTraceEvent[]
  displayTimeUnit: 'ns'
}

export interface ChromeTraceOptions {
  /** Process names by pid for the metadata (default "pid N"). */
  processNames?: ReadonlyMap<number, string>
}

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

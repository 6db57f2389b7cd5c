/**
 * Call events as newline-delimited JSON, one object per line, for jq and friends. Times are
 * nanoseconds since `startNs` as plain JSON numbers (exact for 104 days).
 */
import type { CallEvent } from '../calls.js'

export interface CallRecord {
  type: 'call'
  kind: 'entry' | 'return'
  pid: number
  tid: number
  /** ns since the start of the trace */
  ns: number
  file: string
  func: string
  line: number
  depth: number
  /** ns, on returns whose entry was traced; null otherwise */
  durationNs: number | null
  truncated: boolean
}

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
  }
}

/** One call event as a line of NDJSON, without the newline. */
export function ndjsonLine(event: CallEvent, startNs: bigint): string {
  return JSON.stringify(callRecord(event, startNs))
}

/**
 * Call events formatted for people: a flow (one line per entry or return, indented by depth, like
 * bcc's pythonflow) and a summary table (calls, inclusive and exclusive time per function, like
 * bcc's pythoncalls -L). Pure: no I/O, no clocks; per event they allocate only the line they
 * return (flow) or nothing at all once a function and a thread have been seen (summary).
 */
import type { CallEvent } from '../streams/calls.js'

const UNITS = [
  { scale: 1e3, name: 'µs' },
  { scale: 1e6, name: 'ms' },
  { scale: 1e9, name: 's' },
] as const

/**
 * A duration in nanoseconds in human units with three significant digits: `812 ns`, `12.3 µs`,
 * `4.56 ms`, `1.20 s` (seconds keep every integer digit: `3600 s`).
 */
export function formatDuration(ns: bigint | number): string {
  const value = Number(ns)
  if (!Number.isFinite(value)) return String(ns)
  if (value < 0) return `-${formatDuration(-value)}`
  if (Math.round(value) < 1000) return `${Math.round(value)} ns`
  for (let i = 0; i < UNITS.length; i++) {
    const unit = UNITS[i]!
    const scaled = value / unit.scale
    // Round first, so 999.96 µs becomes 1.00 ms rather than 1000 µs.
    const rounded = Number(scaled.toPrecision(3))
    if (rounded >= 1000 && i < UNITS.length - 1) continue
    const decimals = rounded >= 100 ? 0 : rounded >= 10 ? 1 : 2
    return `${(rounded >= 1000 ? Math.round(scaled) : rounded).toFixed(decimals)} ${unit.name}`
  }
  /* c8 ignore next */
  throw new Error('unreachable')
}

/** Milliseconds with three decimals (microsecond resolution). */
export function formatMilliseconds(ns: bigint | number): string {
  return (Number(ns) / 1e6).toFixed(3)
}

const PACKAGES = /\/(?:site|dist)-packages\/(.+)$/
const STDLIB = /\/lib(?:64)?\/python\d+\.\d+[a-z]*\/(.+)$/

/**
 * A source path as people want to read it: relative to `cwd` when inside it, from the package
 * root for installed and standard-library modules (`json/decoder.py`), else the file's basename.
 * Names that are not absolute paths (`<frozen importlib._bootstrap>`, `<string>`) stay as they are.
 */
export function shortenPath(file: string, cwd: string): string {
  if (!file.startsWith('/')) return file
  const root = cwd.endsWith('/') ? cwd : `${cwd}/`
  if (root !== '/' && file.startsWith(root)) return file.slice(root.length)
  const lib = PACKAGES.exec(file) ?? STDLIB.exec(file)
  if (lib) return lib[1]!
  return file.slice(file.lastIndexOf('/') + 1)
}

/** Remembers each file's short form: a trace names the same few files millions of times. */
class PathCache {
  readonly #cwd: string
  readonly #full: boolean
  readonly #short = new Map<string, string>()

  constructor(cwd: string, full: boolean) {
    this.#cwd = cwd
    this.#full = full
  }

  get(file: string): string {
    if (this.#full) return file
    let short = this.#short.get(file)
    if (short === undefined) {
      short = shortenPath(file, this.#cwd)
      this.#short.set(file, short)
    }
    return short
  }
}

/** Options of both formatters. */
export interface ReportOptions {
  /** Paths inside this directory are shown relative to it (default: process.cwd()). */
  cwd?: string
  /** Show file names as the interpreter reports them, unshortened. */
  fullPaths?: boolean
}

/** Options of `FlowFormatter`. */
export interface FlowOptions extends ReportOptions {
  /**
   * CLOCK_MONOTONIC time that the TIME column counts from, e.g. `process.hrtime.bigint()` once
   * `trace.ready` resolved (default: the first formatted event's timestamp).
   */
  startNs?: bigint
  /** Spaces per nesting level (default 2). */
  indent?: number
}

const CPU_WIDTH = 3
const TIME_WIDTH = 10
const TID_WIDTH = 7
const DURATION_WIDTH = 9
const NO_DURATION = ' '.repeat(DURATION_WIDTH)

/**
 * One line per event: time since the start in ms, thread id, the duration of returns, then the
 * call itself indented by its depth:
 *
 *     TIME(ms)     TID  DURATION  CALL
 *        0.412  401822            -> handle_batch  examples/app.py:92
 *        0.431  401822              -> parse_orders  examples/app.py:49
 *        0.470  401822   39.0 µs    <- parse_orders
 */
export class FlowFormatter {
  #startNs: bigint | undefined
  readonly #paths: PathCache
  readonly #indent: number
  readonly #indents: string[] = ['']

  constructor(options: FlowOptions = {}) {
    this.#startNs = options.startNs
    this.#paths = new PathCache(options.cwd ?? process.cwd(), options.fullPaths ?? false)
    this.#indent = options.indent ?? 2
  }

  /** What the TIME column counts from; undefined until set or until the first event. */
  get startNs(): bigint | undefined {
    return this.#startNs
  }

  /** The column titles, aligned with format()'s lines. */
  header(): string {
    return `${'CPU'.padStart(CPU_WIDTH)} ${'TIME(ms)'.padStart(TIME_WIDTH)} ${'TID'.padStart(TID_WIDTH)} ${'DURATION'.padStart(DURATION_WIDTH)}  CALL`
  }

  /** Where the CALL column starts in header() and every line, for tools that parse the flow. */
  get callColumn(): number {
    return CPU_WIDTH + 1 + TIME_WIDTH + 1 + TID_WIDTH + 1 + DURATION_WIDTH + 2
  }

  /** One line, without a newline. */
  format(event: CallEvent): string {
    this.#startNs ??= event.timestampNs
    const time = formatMilliseconds(event.timestampNs - this.#startNs).padStart(TIME_WIDTH)
    const columns = `${String(event.cpu).padStart(CPU_WIDTH)} ${time} ${String(event.tid).padStart(TID_WIDTH)}`
    const func = event.truncated ? `${event.func}…` : event.func
    if (event.kind === 'entry') {
      const source = `${this.#paths.get(event.file)}:${event.line}`
      return `${columns} ${NO_DURATION}  ${this.#indentFor(event.depth)}-> ${func}  ${source}`
    }
    const duration = event.durationNs === undefined ? '' : formatDuration(event.durationNs)
    return `${columns} ${duration.padStart(DURATION_WIDTH)}  ${this.#indentFor(event.depth)}<- ${func}`
  }

  #indentFor(depth: number): string {
    let indent = this.#indents[depth]
    if (indent === undefined) {
      indent = ' '.repeat(depth * this.#indent)
      this.#indents[depth] = indent
    }
    return indent
  }
}

/** One function's numbers in a `CallSummary`. Times are in nanoseconds. */
export interface SummaryRow {
  /** The function's source file, as the interpreter reports it. */
  file: string
  /** The function's name. */
  func: string
  /** Returns seen: calls that completed while traced (including those whose entry was not traced). */
  calls: number
  /** Of those, the ones whose entry was traced too, so their duration is known. */
  timedCalls: number
  /** Inclusive time; a call nested in a call to the same function (recursion) is not counted again. */
  totalNs: bigint
  /** Exclusive time: inclusive time minus the inclusive time of the traced calls it made. */
  selfNs: bigint
  /** Mean inclusive duration of one timed call; undefined without timed calls. */
  meanNs: bigint | undefined
}

/** Options of `CallSummary`. */
export interface SummaryOptions extends ReportOptions {
  /** Longest FUNCTION and FILE cells; longer names are cut with an ellipsis (default 40). */
  maxNameWidth?: number
}

interface Row {
  file: string
  func: string
  calls: number
  timedCalls: number
  totalNs: number
  selfNs: number
  sumNs: number
}

interface ThreadState {
  /**
   * childrenNs[d]: inclusive time of the frames at depth d that returned since the last frame at
   * depth d - 1 did (or since a frame at depth d - 1 was entered): the time its children took.
   */
  childrenNs: number[]
  /** The function of the frame entered last at each depth: the current call stack. */
  stack: (Row | undefined)[]
  /** Frames entered and not yet returned. */
  open: number
}

/**
 * Calls, inclusive, exclusive and mean time per (file, function), from a stream of call events.
 * Self time comes from each thread's depths: a frame's children are the frames one level deeper
 * that returned while it ran. Times are exact integers as long as they stay under 2^53 ns
 * (104 days).
 */
export class CallSummary {
  readonly #rows = new Map<string, Map<string, Row>>()
  readonly #threads = new Map<number, ThreadState>()
  readonly #paths: PathCache
  readonly #maxNameWidth: number
  #untimed = 0

  constructor(options: SummaryOptions = {}) {
    this.#paths = new PathCache(options.cwd ?? process.cwd(), options.fullPaths ?? false)
    this.#maxNameWidth = Math.max(8, options.maxNameWidth ?? 40)
  }

  /** Counts one event; give it every event of the trace, in order. */
  add(event: CallEvent): void {
    const row = this.#row(event.file, event.func)
    const thread = this.#thread(event.tid)
    const depth = event.depth
    if (event.kind === 'entry') {
      thread.stack[depth] = row
      thread.childrenNs[depth + 1] = 0
      thread.open = depth + 1
      return
    }
    thread.open = depth
    row.calls++
    const children = thread.childrenNs[depth + 1] ?? 0
    thread.childrenNs[depth + 1] = 0
    if (event.durationNs === undefined) {
      this.#untimed++
      return
    }
    const duration = Number(event.durationNs)
    row.timedCalls++
    row.sumNs += duration
    row.selfNs += duration - children
    thread.childrenNs[depth] = (thread.childrenNs[depth] ?? 0) + duration
    if (!isActiveBelow(thread.stack, depth, row)) row.totalNs += duration
  }

  /** Returns whose entry was not traced (frames that began before tracing, or `entries: false`). */
  get untimedCalls(): number {
    return this.#untimed
  }

  /** Traced entries whose return has not arrived (yet), over all threads. */
  get openCalls(): number {
    let open = 0
    for (const thread of this.#threads.values()) open += thread.open
    return open
  }

  /** Every function with at least one completed call, by total time, then calls, descending. */
  rows(): SummaryRow[] {
    const rows: SummaryRow[] = []
    for (const byFunc of this.#rows.values()) {
      for (const row of byFunc.values()) {
        if (row.calls === 0) continue
        rows.push({
          file: row.file,
          func: row.func,
          calls: row.calls,
          timedCalls: row.timedCalls,
          totalNs: BigInt(row.totalNs),
          selfNs: BigInt(row.selfNs),
          meanNs: row.timedCalls > 0 ? BigInt(Math.round(row.sumNs / row.timedCalls)) : undefined,
        })
      }
    }
    return rows.sort(
      (a, b) =>
        compareDesc(a.totalNs, b.totalNs) ||
        b.calls - a.calls ||
        (a.func < b.func ? -1 : a.func > b.func ? 1 : 0) ||
        (a.file < b.file ? -1 : a.file > b.file ? 1 : 0),
    )
  }

  /** The top rows as an aligned table with a footer, lines joined by newlines (no trailing one). */
  format(top = 20): string {
    const all = this.rows()
    const shown = all.slice(0, Math.max(0, top))
    const cells = shown.map((row) => [
      cut(row.func, this.#maxNameWidth, 'end'),
      cut(this.#paths.get(row.file), this.#maxNameWidth, 'start'),
      String(row.calls),
      row.timedCalls > 0 ? formatDuration(row.totalNs) : '-',
      row.timedCalls > 0 ? formatDuration(row.selfNs) : '-',
      row.meanNs !== undefined ? formatDuration(row.meanNs) : '-',
    ])
    const titles = ['FUNCTION', 'FILE', 'CALLS', 'TOTAL', 'SELF', 'MEAN']
    const widths = titles.map((title, i) => Math.max(title.length, ...cells.map((c) => c[i]!.length)))
    const line = (c: string[]) =>
      c
        .map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
        .join('  ')
        .trimEnd()
    const lines = [line(titles), ...cells.map(line)]
    if (all.length === 0) lines.push('(no completed calls)')
    lines.push('')
    lines.push(`${shown.length} of ${all.length} function${all.length === 1 ? '' : 's'}, by total time`)
    lines.push('TOTAL: inclusive, recursive calls counted once; SELF: exclusive; MEAN: inclusive per call')
    if (this.#untimed > 0) {
      lines.push(
        `${this.#untimed} return${this.#untimed === 1 ? '' : 's'} without a traced entry ` +
          '(begun before tracing, or entries: false): counted as calls, without time',
      )
    }
    const open = this.openCalls
    if (open > 0) lines.push(`${open} call${open === 1 ? ' was' : 's were'} still running at the last event: not counted`)
    return lines.join('\n')
  }

  #row(file: string, func: string): Row {
    let byFunc = this.#rows.get(file)
    if (byFunc === undefined) {
      byFunc = new Map()
      this.#rows.set(file, byFunc)
    }
    let row = byFunc.get(func)
    if (row === undefined) {
      row = { file, func, calls: 0, timedCalls: 0, totalNs: 0, selfNs: 0, sumNs: 0 }
      byFunc.set(func, row)
    }
    return row
  }

  #thread(tid: number): ThreadState {
    let thread = this.#threads.get(tid)
    if (thread === undefined) {
      thread = { childrenNs: [], stack: [], open: 0 }
      this.#threads.set(tid, thread)
    }
    return thread
  }
}

/** Whether a frame of `row` is active below `depth` on this stack: then `depth` is a recursive call. */
function isActiveBelow(stack: (Row | undefined)[], depth: number, row: Row): boolean {
  for (let d = Math.min(depth, stack.length) - 1; d >= 0; d--) if (stack[d] === row) return true
  return false
}

function compareDesc(a: bigint, b: bigint): number {
  return a < b ? 1 : a > b ? -1 : 0
}

function cut(text: string, width: number, side: 'start' | 'end'): string {
  if (text.length <= width) return text
  return side === 'end' ? `${text.slice(0, width - 1)}…` : `…${text.slice(text.length - width + 1)}`
}

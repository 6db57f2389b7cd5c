/**
 * `usdtrace flow PID...`: bcc's pythonflow. Every call and return, per thread, indented by depth,
 * with the time since the start, the thread and the duration of each return; -M, -C,
 * --max-depth and --min-duration choose what is printed, and say what they saw when they
 * matched nothing.
 */
import { isAbsolute, resolve } from 'node:path'
import { FlowFormatter, formatDuration, ndjsonLine, type CallEvent } from '../index.js'
import { duration, flag, integer, seconds, text, type ParsedArgs } from './args.js'
import { callStreamSummary, streamCalls } from './callstream.js'
import type { Command } from './command.js'
import { COSTS } from './costs.js'
import type { Run } from './run.js'
import { SPAWN_HELP, SPAWN_OPTIONS, TARGET_HELP, TARGET_OPTIONS } from './target.js'

const NAME = 'flow'

const HELP = `usdtrace flow PID... [options]
usdtrace flow --binary PATH | --name PATTERN [options]
usdtrace flow [options] -- CMD [ARGS...]

Prints every Python function entry (->) and return (<-) of processes as it happens (bcc's
pythonflow): the CPU, TIME(ms) since the start, TID, the DURATION of each return, and the
call indented by its depth among the calls shown on its thread; with several processes, the
PID first.

Cost: ${COSTS.callsLatency}.
-M, -C, --max-depth and --min-duration choose what is printed, not what is traced: ${COSTS.filters}.

Options:
  -M, --method PREFIX    only functions whose name starts with PREFIX
  -C, --module FILE      only functions of FILE, written as you would: a path (absolute: a
                         prefix, like bcc's -C), a basename or a path's end (app.py, pkg/views.py)
                         or a directory (json/)
      --max-depth N      only calls less than N levels deep among those shown
      --min-duration T   only calls that took at least T (e.g. 5ms, 200us), with their callers
                         (a caller takes at least as long as what it calls)
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m, 1h)
      --full-paths       file names as the interpreter reports them
${TARGET_HELP}
${SPAWN_HELP}
      --json             one JSON object per event (see docs/cli.md for the schema)
      --debug            stack traces on errors

When a filter matches nothing, the final lines say what the trace saw instead.

Examples:
  usdtrace flow 4242                       # everything, until Ctrl-C
  usdtrace flow 4242 -M handle_ -d 5       # only handle_* functions, for 5 seconds
  usdtrace flow 4242 -C json/ --max-depth 3
  usdtrace flow --name gunicorn --min-duration 20ms    # the slow requests of every worker
  usdtrace flow -- python3.11 app.py | less -R`

export const flow: Command = {
  name: NAME,
  summary: 'print every Python call and return, indented (pythonflow)',
  help: HELP,
  options: {
    method: { type: 'string', short: 'M' },
    module: { type: 'string', short: 'C' },
    'max-depth': { type: 'string' },
    'min-duration': { type: 'string' },
    duration: { type: 'string', short: 'd' },
    'full-paths': { type: 'boolean' },
    ...TARGET_OPTIONS,
    ...SPAWN_OPTIONS,
  },
  run: runFlow,
}

const PID_WIDTH = 7

async function runFlow(run: Run, args: ParsedArgs): Promise<void> {
  const { values } = args
  const method = text(values, 'method')
  const module = text(values, 'module')
  const maxDepth = values['max-depth'] === undefined ? Infinity : integer(NAME, values, 'max-depth', 0, 1)
  const minDurationNs = duration(NAME, values, 'min-duration')
  const fullPaths = flag(values, 'full-paths')
  run.stopAfter(seconds(NAME, values, 'duration'))

  const matchesFile = module === undefined ? () => true : fileMatcher(module, process.cwd())
  const seen = new Seen()
  const slow = minDurationNs === undefined ? undefined : new SlowCalls(minDurationNs)
  // Times count from the first event traced, shown or not, in the text and the JSON alike.
  let startNs: bigint | undefined
  let formatter = new FlowFormatter({ fullPaths })
  let withPid = false
  const paint = run.out.painter
  const shownDepths = new ShownDepths()
  let shown = 0

  const print = (event: CallEvent) => {
    shown++
    if (run.json) return run.out.line(ndjsonLine(event, startNs!))
    const line = formatter.format(event)
    const pid = withPid ? `${String(event.pid).padStart(PID_WIDTH)} ` : ''
    if (!paint.enabled) return run.out.line(pid + line)
    const column = formatter.callColumn
    const arrow = event.kind === 'entry' ? paint.paint('green', '->') : paint.paint('yellow', '<-')
    const call = line.slice(column).replace(/^( *)(->|<-)/, (_, indent: string) => indent + arrow)
    run.out.line(paint.paint('dim', pid + line.slice(0, column)) + call)
  }

  const result = await streamCalls(
    NAME,
    run,
    args,
    {
      attached: (targets) => {
        withPid = targets.several
        if (!run.json) run.out.line(run.out.paint('bold', `${withPid ? `${'PID'.padStart(PID_WIDTH)} ` : ''}${formatter.header()}`))
      },
    },
    (event) => {
      if (startNs === undefined) {
        startNs = event.timestampNs
        formatter = new FlowFormatter({ fullPaths, startNs })
      }
      if ((method !== undefined && !event.func.startsWith(method)) || !matchesFile(event.file)) {
        seen.add(event, false)
        return
      }
      const depth = shownDepths.place(event, maxDepth)
      seen.add(event, depth !== undefined)
      if (depth === undefined) return
      const placed = depth === event.depth ? event : { ...event, depth }
      if (slow) for (const call of slow.take(placed)) print(call)
      else print(placed)
    },
  )
  const filtered = result.events - shown
  callStreamSummary(run, result, filtered > 0 ? [`${shown.toLocaleString('en-US')} shown`] : [])
  if (shown === 0 && result.events > 0 && run.reason !== 'output-closed') {
    for (const hint of seen.hints({ method, module, maxDepth, slow })) run.status.note(hint)
  }
}

/** -C as users write files: an absolute path is a prefix; else a path's end, a directory, or relative to here. */
export function fileMatcher(spec: string, cwd: string): (file: string) => boolean {
  const cache = new Map<string, boolean>()
  const here = resolve(cwd, spec)
  const directory = spec.endsWith('/')
  const test = (file: string) => {
    if (file === spec || file.startsWith(here) || (isAbsolute(spec) && file.startsWith(spec))) return true
    if (isAbsolute(spec)) return false
    return directory ? file.includes(`/${spec}`) || file.startsWith(spec) : file.endsWith(`/${spec}`)
  }
  return (file) => {
    let matched = cache.get(file)
    if (matched === undefined) cache.set(file, (matched = test(file)))
    return matched
  }
}

/** Depth among the calls shown: hidden frames between two shown ones do not count. */
class ShownDepths {
  /** per thread, the kernel depths of the shown frames still open */
  readonly #open = new Map<number, number[]>()

  /** The depth to show `event` at, or undefined when --max-depth hides it. */
  place(event: CallEvent, maxDepth: number): number | undefined {
    let stack = this.#open.get(event.tid)
    if (stack === undefined) this.#open.set(event.tid, (stack = []))
    // Frames whose return was never seen (an exception unwinding through C) close here.
    while (stack.length > 0 && stack[stack.length - 1]! > event.depth) stack.pop()
    if (event.kind === 'entry') {
      if (stack[stack.length - 1] === event.depth) stack.pop()
      if (stack.length >= maxDepth) return undefined
      stack.push(event.depth)
      return stack.length - 1
    }
    if (stack[stack.length - 1] === event.depth) stack.pop()
    return stack.length < maxDepth ? stack.length : undefined
  }
}

/**
 * --min-duration: each entry waits until its return says how long it took; a slow call prints
 * with the entries of the callers not printed yet, a fast one (with its fast callees) not at all.
 */
class SlowCalls {
  readonly minNs: bigint
  /** the longest call seen, for the hint when none was slow enough */
  longest: CallEvent | undefined
  readonly #pending = new Map<number, { entry: CallEvent; printed: boolean }[]>()

  constructor(minNs: bigint) {
    this.minNs = minNs
  }

  /** The events to print now, in order. */
  take(event: CallEvent): CallEvent[] {
    let stack = this.#pending.get(event.tid)
    if (stack === undefined) this.#pending.set(event.tid, (stack = []))
    if (event.kind === 'entry') {
      stack.push({ entry: event, printed: false })
      return []
    }
    if (event.durationNs !== undefined && (this.longest?.durationNs ?? -1n) < event.durationNs) this.longest = event
    let at = stack.length - 1
    while (at >= 0 && stack[at]!.entry.depth !== event.depth) at--
    const frames = at < 0 ? [] : stack.splice(at)
    const slow = event.durationNs !== undefined && event.durationNs >= this.minNs
    if (!slow) return frames[0]?.printed ? [event] : []
    const out: CallEvent[] = []
    for (const frame of [...stack, ...frames.slice(0, 1)]) {
      if (frame.printed) continue
      frame.printed = true
      out.push(frame.entry)
    }
    out.push(event)
    return out
  }
}

/** What the trace saw, for the hints when the filters matched nothing. */
class Seen {
  calls = 0
  readonly #files = new Map<string, number>()
  readonly #funcs = new Map<string, number>()
  #deepest = 0

  add(event: CallEvent, shown: boolean): void {
    if (event.kind !== 'entry') return
    this.calls++
    this.#deepest = Math.max(this.#deepest, event.depth)
    if (shown || this.#files.size > 10_000) return
    this.#files.set(event.file, (this.#files.get(event.file) ?? 0) + 1)
    this.#funcs.set(event.func, (this.#funcs.get(event.func) ?? 0) + 1)
  }

  hints(filters: { method?: string; module?: string; maxDepth: number; slow: SlowCalls | undefined }): string[] {
    const top = (counts: Map<string, number>) =>
      [...counts]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 5)
        .map(([name, calls]) => `${name} (${calls.toLocaleString('en-US')})`)
        .join(', ')
    const hints: string[] = []
    if (filters.method !== undefined) hints.push(`-M ${filters.method} matched none of the ${this.calls.toLocaleString('en-US')} calls seen; the functions called most: ${top(this.#funcs)}`)
    if (filters.module !== undefined) hints.push(`-C ${filters.module} matched none of the ${this.calls.toLocaleString('en-US')} calls seen; their files: ${top(this.#files)}`)
    if (filters.slow) {
      const longest = filters.slow.longest
      hints.push(`--min-duration ${formatDuration(filters.slow.minNs)}: no call took that long; the longest: ${longest ? `${longest.func} (${formatDuration(longest.durationNs!)})` : 'none was timed'}`)
    }
    if (hints.length === 0 && this.calls === 0) hints.push('no call entry was seen: the traced frames returned only (they began before the trace)')
    return hints
  }
}

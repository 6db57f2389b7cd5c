/**
 * Call events, or sampled stacks, turned into what every recording format needs: for each
 * thread, a balanced sequence of frame opens and closes with times relative to the start, frames
 * interned once. Each exporter in this directory is a pure function of a CallTimeline.
 */
import type { CallEvent } from '../streams/calls.js'
import type { StackSample } from '../streams/stacks.js'
import { shortenPath } from './report.js'

/** One Python function (with calls: as its entry reported it), or one line of one (with samples). */
export interface TimelineFrame {
  /** the function's name */
  func: string
  /** its file, as the interpreter reported it */
  file: string
  /** calls: the function's first line; samples: the line the frame was at */
  line: number
}

/** One thread's calls as a balanced sequence of frame opens and closes. */
export interface ThreadTimeline {
  /** process id */
  pid: number
  /** kernel thread id */
  tid: number
  /** An open of frame `i` is stored as `i`, its close as `~i` (negative): one number per operation. */
  ops: number[]
  /** Nanoseconds since the timeline's start, one per operation, never decreasing. */
  times: number[]
}

interface OpenThread {
  timeline: ThreadTimeline
  stack: number[]
  /** With samples: where the last sample ended, up to which its frames ran. */
  sampledTo?: number
}

/**
 * Feed it every call event of a trace in order (`add`), then `end()` it. Returns whose entry was
 * not traced carry no frame and are only counted; frames still open at the end are closed at the
 * last event's time and counted too, so every open has its close.
 */
export class CallTimeline {
  /** Every function seen, once; ThreadTimeline.ops refer to them by index. */
  readonly frames: TimelineFrame[] = []
  /** Each thread's calls, in the order the threads were first seen. */
  readonly threads: ThreadTimeline[] = []
  /** CLOCK_MONOTONIC ns that time 0 stands for: the first event's, unless given. */
  startNs: bigint | undefined
  /** The last event's time, in ns since the start. */
  endNs = 0
  /** Returns without a traced entry (frames older than the trace, or `entries: false`). */
  untimedReturns = 0
  /** Frames still running at the end, closed there. */
  unfinishedCalls = 0
  /** Frames closed early because a later event showed their return was lost. */
  repairedCalls = 0

  readonly #frameIds = new Map<string, number>()
  readonly #open = new Map<number, OpenThread>()
  #ended = false

  constructor(startNs?: bigint) {
    this.startNs = startNs
  }

  /** The complete timeline of `events` (ended). */
  static from(events: Iterable<CallEvent>, startNs?: bigint): CallTimeline {
    const timeline = new CallTimeline(startNs)
    for (const event of events) timeline.add(event)
    return timeline.end()
  }

  /** Adds the next event (in order per thread). */
  add(event: CallEvent): void {
    if (this.#ended) throw new Error('CallTimeline: add() after end()')
    this.startNs ??= event.timestampNs
    const at = Math.max(0, Number(event.timestampNs - this.startNs))
    if (at > this.endNs) this.endNs = at
    const thread = this.#thread(event)
    if (event.kind === 'entry') {
      this.repairedCalls += closeDownTo(thread, event.depth, at)
      const frame = this.#intern(event)
      thread.stack.push(frame)
      thread.timeline.ops.push(frame)
      thread.timeline.times.push(at)
    } else if (event.durationNs === undefined || thread.stack.length <= event.depth) {
      this.untimedReturns++
    } else {
      this.repairedCalls += closeDownTo(thread, event.depth + 1, at)
      closeDownTo(thread, event.depth, at)
    }
  }

  /**
   * Adds a sampled stack (in order per thread): it stands for the time from `periodNs` before
   * the sample (on CPU) or for its wait (off CPU) up to it. Frames shared with the thread's
   * previous sample stay open when the two touch; a gap between them closes every frame.
   */
  addSample(sample: StackSample, periodNs: number): void {
    if (this.#ended) throw new Error('CallTimeline: addSample() after end()')
    const spanNs = sample.onCpu ? BigInt(Math.round(periodNs)) : sample.offCpuNs!
    this.startNs ??= sample.timestampNs - spanNs
    const end = Math.max(0, Number(sample.timestampNs - this.startNs))
    const start = Math.max(0, end - Number(spanNs))
    if (end > this.endNs) this.endNs = end
    const thread = this.#thread(sample)
    const previousEnd = thread.sampledTo ?? thread.timeline.times.at(-1) ?? 0
    // A sample a little late still touches the previous one; one more than a period apart does not.
    const gap = start > previousEnd + periodNs
    if (gap) closeDownTo(thread, 0, previousEnd)
    const at = gap ? start : Math.max(previousEnd, thread.timeline.times.at(-1) ?? 0)
    const frames = sample.frames.map((frame) => this.#intern(frame)).reverse()
    let shared = 0
    while (shared < thread.stack.length && shared < frames.length && thread.stack[shared] === frames[shared]) shared++
    closeDownTo(thread, shared, at)
    for (const frame of frames.slice(shared)) {
      thread.stack.push(frame)
      thread.timeline.ops.push(frame)
      thread.timeline.times.push(at)
    }
    // The sample's end is where its frames are known to have still been running.
    thread.sampledTo = end
  }

  /** Closes every frame still open at the last event's time; the timeline is complete after this. */
  end(): this {
    if (this.#ended) return this
    this.#ended = true
    for (const thread of this.#open.values()) {
      if (thread.sampledTo !== undefined) closeDownTo(thread, 0, thread.sampledTo)
      else this.unfinishedCalls += closeDownTo(thread, 0, this.endNs)
    }
    this.#open.clear()
    return this
  }

  /** Opens (calls) recorded: each has exactly one close. */
  get calls(): number {
    let calls = 0
    for (const thread of this.threads) for (const op of thread.ops) if (op >= 0) calls++
    return calls
  }

  #thread(event: Pick<CallEvent, 'pid' | 'tid'>): OpenThread {
    let thread = this.#open.get(event.tid)
    if (thread === undefined || thread.timeline.pid !== event.pid) {
      // A thread id reused by another process: the old thread is gone, its frames with it.
      if (thread) this.unfinishedCalls += closeDownTo(thread, 0, thread.timeline.times.at(-1) ?? 0)
      const timeline: ThreadTimeline = { pid: event.pid, tid: event.tid, ops: [], times: [] }
      this.threads.push(timeline)
      thread = { timeline, stack: [] }
      this.#open.set(event.tid, thread)
    }
    return thread
  }

  #intern(frame: TimelineFrame): number {
    const key = `${frame.line}\0${frame.func}\0${frame.file}`
    let id = this.#frameIds.get(key)
    if (id === undefined) {
      id = this.frames.length
      this.frames.push({ func: frame.func, file: frame.file, line: frame.line })
      this.#frameIds.set(key, id)
    }
    return id
  }
}

/** Closes the thread's frames above `depth` at `at`; returns how many it closed. */
function closeDownTo(thread: OpenThread, depth: number, at: number): number {
  let closed = 0
  while (thread.stack.length > depth) {
    thread.timeline.ops.push(~thread.stack.pop()!)
    thread.timeline.times.push(at)
    closed++
  }
  return closed
}

/** How frames are named in folded stacks and flame graphs. */
export interface FrameLabelOptions {
  /** Paths inside this directory are shown relative to it (default: process.cwd()). */
  cwd?: string
  /** Keep file names as the interpreter reported them. */
  fullPaths?: boolean
}

/** `func (file:line)` with the file shortened like the flow's, one label per frame of the timeline. */
export function frameLabels(timeline: CallTimeline, options: FrameLabelOptions = {}): string[] {
  const cwd = options.cwd ?? process.cwd()
  return timeline.frames.map((frame) => {
    const file = options.fullPaths ? frame.file : shortenPath(frame.file, cwd)
    return `${frame.func} (${file}:${frame.line})`
  })
}

/**
 * Several library traces run as one: the processes named at the start share one (`{ pids }` or
 * `{ binary }`), and each process that joins later (a forked child, a restarted worker, a new
 * --name match) gets its own, attached as soon as it is found. Every trace's items go to one
 * callback; the run ends when every trace has ended and no process is left to wait for.
 */
import { TraceError, type TargetOptions } from '../index.js'
import type { Joined } from './follow.js'
import { attach, count, type EndReason, type Run } from './run.js'
import type { Targets } from './target.js'

/** A library trace, as every traceX() and summary returns it. */
export interface LibraryTrace<T> extends AsyncIterable<T> {
  readonly ready: Promise<void>
  readonly lost: number
  close(): Promise<void>
}

export interface TraceSetOptions<T> {
  /** Opens the library trace of these processes. */
  open(target: TargetOptions): LibraryTrace<T>
  /** What is traced, for the status lines: e.g. "calls", "garbage collections". */
  what: string
  /** Added to the "tracing ..." line. */
  notes?: (string | undefined)[]
  /**
   * A summary's last reading: for these end reasons each trace hands over one more item, read
   * after the end, before it closes (default: every trace closes at once).
   */
  readsOnceMore?: (reason: EndReason) => boolean
  /** Called once the first trace is attached, before its first item. */
  attached?: () => void
}

/** What a TraceSet saw, for the final line. */
export interface TraceSetResult {
  /** items lost in the kernel, over every trace */
  lost: number
  /** processes traced, those that joined included (0 for a binary: not counted) */
  processes: number
}

/**
 * Attaches to the targets (a progress line meanwhile, then "tracing ..."), lets a started
 * program go, and hands every item to `onItem` (with the index of its trace: 0 is the first)
 * until the run stops or every traced process has exited. Rejects with the first trace's
 * TraceError if it cannot attach; a process that joins later and cannot be traced gets a note.
 */
export async function traceAll<T>(run: Run, targets: Targets, options: TraceSetOptions<T>, onItem: (item: T, trace: number) => void): Promise<TraceSetResult> {
  const traces: LibraryTrace<T>[] = []
  const pumps: Promise<void>[] = []
  /** Pumps and joins begun so far: the end waits until a look at every one begun finds no new one. */
  let begun = 0
  const readsOnceMore = options.readsOnceMore ?? (() => false)
  let processes = targets.initial.pids?.length ?? 0

  const pump = async (trace: LibraryTrace<T>, index: number) => {
    for await (const item of trace) {
      onItem(item, index)
      if (run.reason !== undefined) break
    }
  }
  const closeOnStop = (trace: LibraryTrace<T>) =>
    run.onStop((reason) => {
      if (!readsOnceMore(reason)) void trace.close()
    })

  const first = options.open(targets.initial)
  traces.push(first)
  const notes = (options.notes ?? []).filter((note): note is string => note !== undefined)
  await attach(run, first, `${options.what} in ${targets.description}${notes.map((note) => `; ${note}`).join('')}`, (reason) => !readsOnceMore(reason))
  options.attached?.()
  targets.attached()
  pumps.push(pump(first, 0))
  begun++

  const joining = new Set<Promise<void>>()
  const join = (joined: Joined) => {
    if (run.reason !== undefined) return
    const trace = options.open({ pid: joined.pid })
    const index = traces.push(trace) - 1
    const unsubscribe = run.onStop(() => void trace.close())
    const attached = trace.ready.then(
      () => {
        unsubscribe()
        closeOnStop(trace)
        processes++
        run.status.note(`+ ${joined.pid} (${joined.command}) ${joined.why}: traced from ${Math.round(joined.ageMs)} ms after it started`)
        pumps.push(pump(trace, index))
        begun++
      },
      (error: unknown) => {
        unsubscribe()
        // A child that exited at once, or is not a Python (a shell, a tool it runs), is no news.
        const code = error instanceof TraceError ? error.code : undefined
        if (code === 'NO_SUCH_PROCESS' || (joined.why !== 'matches --name' && (code === 'NOT_PYTHON' || code === 'NO_PROBES'))) return
        run.status.note(`${joined.pid} (${joined.command}) ${joined.why}, not traced: ${error instanceof Error ? error.message : String(error)}`)
      },
    )
    joining.add(attached)
    begun++
    void attached.finally(() => joining.delete(attached))
  }
  const follower = targets.follower
  follower?.start(join)
  try {
    // Until every trace has ended, those of processes still joining included, and one more look finds none.
    for (;;) {
      const seen = begun
      await Promise.all([...pumps, ...joining])
      if (begun !== seen) continue
      if (run.reason !== undefined || follower === undefined) break
      for (const joined of await follower.scan()) join(joined)
      if (begun === seen) break
    }
  } finally {
    follower?.stop()
    await Promise.all(traces.map((trace) => trace.close()))
  }
  if (run.reason === undefined) run.stop('target-exited')
  return { lost: traces.reduce((sum, trace) => sum + trace.lost, 0), processes }
}

/** The final line's words for the processes, when there were several. */
export function processesTraced(targets: Targets, result: TraceSetResult): string[] {
  return targets.several && result.processes > 0 ? [`${count(result.processes, 'process', 'processes')} traced`] : []
}

/**
 * Which trace's readings mark a summary's intervals: the first one still running, so that the
 * tables go on when the first processes exited and others (that joined later) still run.
 */
export class IntervalClock {
  readonly #running = new Set<number>()

  /** Whether this reading of `trace` is a tick of the clock. */
  tick(trace: number, final: boolean): boolean {
    this.#running.add(trace)
    const clock = Math.min(...this.#running)
    if (final) this.#running.delete(trace)
    return trace === clock
  }
}

/**
 * One invocation's lifecycle: what ends it (the target's exit, a duration, Ctrl-C, SIGTERM,
 * SIGHUP, a closed output pipe), the exit code that says which, and the status lines around a
 * trace (progress while attaching, a final line with what was seen and lost).
 */
import { formatDuration } from '../index.js'
import { Output, Status } from './output.js'

export type EndReason = 'finished' | 'failed' | 'target-exited' | 'duration' | 'interrupted' | 'terminated' | 'hangup' | 'output-closed'

/** Exit codes, as documented in docs/cli.md and `usdtrace --help`. */
export const EXIT = {
  ok: 0,
  error: 1,
  usage: 2,
  hangup: 129,
  interrupted: 130,
  outputClosed: 141,
  terminated: 143,
} as const

const EXIT_BY_REASON: Record<EndReason, number> = {
  finished: EXIT.ok,
  failed: EXIT.error,
  'target-exited': EXIT.ok,
  duration: EXIT.ok,
  interrupted: EXIT.interrupted,
  terminated: EXIT.terminated,
  hangup: EXIT.hangup,
  'output-closed': EXIT.outputClosed,
}

const REASON_TEXT: Record<EndReason, string> = {
  finished: 'done',
  failed: 'failed',
  'target-exited': 'the target exited',
  duration: 'the duration elapsed',
  interrupted: 'interrupted (SIGINT)',
  terminated: 'terminated (SIGTERM)',
  hangup: 'hung up (SIGHUP)',
  'output-closed': 'the output was closed',
}

const SIGNAL_REASONS = { SIGINT: 'interrupted', SIGTERM: 'terminated', SIGHUP: 'hangup' } as const

export interface RunOptions {
  /** NDJSON on stdout instead of tables */
  json: boolean
}

export class Run {
  readonly out = new Output()
  readonly status = new Status(() => this.out.flush())
  readonly json: boolean
  readonly startedAt = process.hrtime.bigint()
  /** Set by a command that spawned its target: the exit code then is the program's. */
  programExitCode: number | undefined

  #reason: EndReason | undefined
  #stoppers = new Set<(reason: EndReason) => void>()
  #repeatListeners = new Set<(signal: NodeJS.Signals) => void>()
  #timers: (() => void)[] = []
  #duration: number | undefined
  #tracingSince: bigint | undefined
  #stoppedAt: bigint | undefined
  #signalHandlers: [NodeJS.Signals, () => void][] = []
  #toldStopping = false

  constructor(options: RunOptions) {
    this.json = options.json
    this.out.onClosed(() => this.stop('output-closed'))
    for (const [signal, reason] of Object.entries(SIGNAL_REASONS) as [NodeJS.Signals, EndReason][]) {
      const handler = () => {
        if (this.#reason === undefined) return this.stop(reason)
        // Later signals (a second Ctrl-C; `timeout -s INT` signals the process, then its group)
        // must not cut short the writing of what was collected: the first one already ends it.
        if (!this.#toldStopping) {
          this.#toldStopping = true
          this.status.note(`${signal}: already stopping; finishing what was collected first (SIGKILL ends at once, losing it)`)
        }
        for (const listener of this.#repeatListeners) listener(signal)
      }
      process.on(signal, handler)
      this.#signalHandlers.push([signal, handler])
    }
  }

  get reason(): EndReason | undefined {
    return this.#reason
  }

  /** Ends the run: the first reason wins, and every registered stopper runs once. */
  stop(reason: EndReason): void {
    if (this.#reason !== undefined) return
    this.#reason = reason
    this.#stoppedAt = process.hrtime.bigint()
    for (const stopper of this.#stoppers) stopper(reason)
    this.#stoppers.clear()
  }

  /** Runs `stopper` when the run stops (at once if it already has); returns an unsubscribe. */
  onStop(stopper: (reason: EndReason) => void): () => void {
    if (this.#reason !== undefined) {
      stopper(this.#reason)
      return () => {}
    }
    this.#stoppers.add(stopper)
    return () => this.#stoppers.delete(stopper)
  }

  /** Runs `listener` at each signal that arrives after the run stopped (e.g. to hurry a program's end). */
  onRepeatedSignal(listener: (signal: NodeJS.Signals) => void): void {
    this.#repeatListeners.add(listener)
  }

  /** Stops the run with 'duration' `seconds` after tracing began (attach() says when), if given. */
  stopAfter(seconds: number | undefined): void {
    this.#duration = seconds
    if (this.#tracingSince !== undefined) this.#startDuration()
  }

  /** Tracing has begun: -d and the final line's time count from now. */
  tracing(): void {
    this.#tracingSince = process.hrtime.bigint()
    this.#startDuration()
  }

  #startDuration(): void {
    const seconds = this.#duration
    if (seconds !== undefined) this.#timers.push(afterMs(seconds * 1000, () => this.stop('duration')))
    this.#duration = undefined
  }

  /** Resolves after `ms`, or as soon as the run stops. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const cancel = afterMs(ms, () => {
        unsubscribe()
        resolve()
      })
      const unsubscribe = this.onStop(() => {
        cancel()
        resolve()
      })
    })
  }

  exitCode(): number {
    const reason = this.#reason ?? 'finished'
    if (reason === 'target-exited' && this.programExitCode !== undefined) return this.programExitCode
    return EXIT_BY_REASON[reason]
  }

  /** How long it traced (or ran, before tracing began), until it stopped: for the final line. */
  elapsed(): string {
    return formatDuration((this.#stoppedAt ?? process.hrtime.bigint()) - (this.#tracingSince ?? this.startedAt))
  }

  /** The final status line: what was seen, what was lost, and why it ended. */
  summary(parts: string[]): void {
    this.status.note(`${parts.join(', ')}; ended: ${REASON_TEXT[this.#reason ?? 'finished']}`)
  }

  dispose(): void {
    for (const cancel of this.#timers) cancel()
    for (const [signal, handler] of this.#signalHandlers) process.off(signal, handler)
  }
}

/** Node's timers wait at most 2^31-1 ms (24.8 days) and fire at once beyond it. */
const LONGEST_TIMER_MS = 2 ** 31 - 1

/** Runs `callback` after `ms`, however long (longer waits are chained); returns a cancel. */
export function afterMs(ms: number, callback: () => void): () => void {
  let timer: NodeJS.Timeout
  const wait = (left: number) => {
    timer = setTimeout(() => (left > LONGEST_TIMER_MS ? wait(left - LONGEST_TIMER_MS) : callback()), Math.min(left, LONGEST_TIMER_MS))
  }
  wait(ms)
  return () => clearTimeout(timer)
}

/** A trace as the CLI needs it: anything with `ready` and `close()` (every library trace). */
export interface Attachable {
  readonly ready: Promise<void>
  close(): Promise<void>
  readonly lost: number
}

/**
 * Waits until `trace` is attached, with a progress line meanwhile; closes it when the run stops
 * (a summary that wants one last reading before it closes says for which reasons it closes at
 * once). Rejects with the trace's TraceError if it cannot attach.
 */
export async function attach(run: Run, trace: Attachable, what: string, closesAtOnce: (reason: EndReason) => boolean = () => true): Promise<void> {
  let attached = false
  run.onStop((reason) => {
    if (!attached || closesAtOnce(reason)) void trace.close()
  })
  run.status.progress(`attaching to ${what}...`)
  try {
    await trace.ready
    attached = true
  } finally {
    run.status.clear()
  }
  run.tracing()
  if (run.reason === undefined) run.status.note(`tracing ${what}; Ctrl-C to stop`)
}

export function count(n: number, noun: string, plural = `${noun}s`): string {
  return `${n.toLocaleString('en-US')} ${n === 1 ? noun : plural}`
}

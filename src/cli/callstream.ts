/**
 * The loop the call-based subcommands share: start or find the targets, trace their calls,
 * attach with a status line, let a started program go, hand each event to the subcommand until
 * the run stops or every target has exited, and end with a line saying what was seen and lost.
 */
import { traceCalls, type CallEvent } from '../index.js'
import type { ParsedArgs } from './args.js'
import { count, type Run } from './run.js'
import { COSTS } from './costs.js'
import { resolveTargets, type Targets } from './target.js'
import { processesTraced, traceAll, type TraceSetResult } from './traces.js'

export interface CallStreamOptions {
  /** added to the "tracing ..." status line */
  note?: string
  /** called once attached, before the first event */
  attached?: (targets: Targets) => void
}

export interface CallStreamResult extends TraceSetResult {
  targets: Targets
  events: number
}

export async function streamCalls(command: string, run: Run, args: ParsedArgs, options: CallStreamOptions, onEvent: (event: CallEvent) => void): Promise<CallStreamResult> {
  const targets = await resolveTargets(command, run, args, 'python')
  let events = 0
  try {
    const bootstrap = targets.spawned?.bootstrapFile
    const result = await traceAll(
      run,
      targets,
      { open: (target) => traceCalls(target), what: 'calls', notes: [options.note, COSTS.callsLatency], attached: () => options.attached?.(targets) },
      (event) => {
        if (event.file === bootstrap) return
        events++
        onEvent(event)
      },
    )
    return { ...result, targets, events }
  } finally {
    await targets.settle(run)
  }
}

/** The final line's parts for a call trace. */
export function callStreamSummary(run: Run, result: CallStreamResult, extra: string[] = []): void {
  run.summary([`${count(result.events, 'event')} in ${run.elapsed()}`, `${count(result.lost, 'event')} lost`, ...processesTraced(result.targets, result), ...extra])
}

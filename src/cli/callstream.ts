/**
 * The loop the call-based subcommands share: start or find the target, trace its calls, attach
 * with a status line, let a spawned program go, hand each event to the subcommand until the run
 * stops or the target exits, and end with a line saying what was seen and lost.
 */
import { traceCalls, type CallEvent } from '../index.js'
import type { ParsedArgs } from './args.js'
import { attach, count, type Run } from './run.js'
import { entriesCost, resolveTarget, settleProgram, type Target } from './target.js'

export interface CallStreamOptions {
  /** added to the "tracing ..." status line */
  note?: string
  /** kernel-side filters passed to traceCalls */
  functionPrefix?: string
  filePrefix?: string
}

export interface CallStreamResult {
  target: Target
  events: number
  lost: number
}

export async function streamCalls(
  command: string,
  run: Run,
  args: ParsedArgs,
  options: CallStreamOptions,
  onEvent: (event: CallEvent) => void,
  onAttached: (target: Target) => void = () => {},
): Promise<CallStreamResult> {
  const target = await resolveTarget(command, run, args)
  let events = 0
  try {
    const trace = traceCalls(target.pid, { functionPrefix: options.functionPrefix, filePrefix: options.filePrefix })
    const notes = [options.note, entriesCost(target)].filter(Boolean)
    await attach(run, trace, `calls in ${target.description}${notes.map((note) => `; ${note}`).join('')}`)
    onAttached(target)
    target.attached()
    const bootstrap = target.spawned?.bootstrapFile
    for await (const event of trace) {
      if (event.file === bootstrap) continue
      events++
      onEvent(event)
    }
    if (run.reason === undefined) run.stop('target-exited')
    await trace.close()
    await settleProgram(run, target)
    return { target, events, lost: trace.lost }
  } finally {
    await target.abandon()
  }
}

/** The final line's parts for a call trace. */
export function callStreamSummary(run: Run, result: CallStreamResult, extra: string[] = []): void {
  run.summary([`${count(result.events, 'event')} in ${run.elapsed()}`, `${count(result.lost, 'event')} lost`, ...extra])
}

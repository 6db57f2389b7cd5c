/**
 * `usdtrace gc PID`: bcc's pythongc. One line per garbage collection: when it started, how long
 * it took, the generation and the objects it found unreachable.
 */
import { traceGC, type GCEvent } from '../index.js'
import { flag, seconds, text, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { UsageError } from './errors.js'
import { attach, count, type Run } from './run.js'
import { SPAWN_OPTIONS, resolveTarget, settleProgram } from './target.js'

const NAME = 'gc'

const HELP = `usdtrace gc PID [options]
usdtrace gc [options] -- CMD [ARGS...]

Prints each garbage collection of a Python process as it ends (bcc's pythongc): START (seconds
since the trace began), TIME it took (µs, or ms with -m), the thread, and the generation
collected with the number of unreachable objects it found (what gc.collect() returns). Works on
every CPython with probes, 3.12-3.14 included.

Options:
  -m, --milliseconds     TIME in milliseconds
  -M, --minimum MIN      only collections that took at least MIN (µs, or ms with -m); the
                         filter runs in the kernel
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m)
      --spawn 'CMD ARGS' start CMD (a python program) and trace it from its start
      --json             one JSON object per collection (see the README for the schema)
      --debug            stack traces on errors

Examples:
  usdtrace gc 4242
  usdtrace gc 4242 -m -M 5          # collections of 5 ms or more
  usdtrace gc -- python3.11 batch.py`

export const gc: Command = {
  name: NAME,
  summary: 'print each garbage collection: generation, objects, duration (pythongc)',
  help: HELP,
  options: {
    milliseconds: { type: 'boolean', short: 'm' },
    minimum: { type: 'string', short: 'M' },
    duration: { type: 'string', short: 'd' },
    ...SPAWN_OPTIONS,
  },
  run: runGc,
}

async function runGc(run: Run, args: ParsedArgs): Promise<void> {
  const { values } = args
  const unit = flag(values, 'milliseconds') ? { name: 'ms', ns: 1e6, decimals: 3 } : { name: 'us', ns: 1e3, decimals: 2 }
  const minimum = text(values, 'minimum')
  if (minimum !== undefined && !/^\d+(\.\d+)?$/.test(minimum)) {
    throw new UsageError(`-M takes a duration in ${unit.name === 'ms' ? 'milliseconds' : 'microseconds'}, got '${minimum}'`, NAME)
  }
  const minDurationNs = minimum === undefined ? 0n : BigInt(Math.round(Number(minimum) * unit.ns))
  run.stopAfter(seconds(NAME, values, 'duration'))

  const target = await resolveTarget(NAME, run, args)
  try {
    const trace = traceGC(target.pid, { minDurationNs })
    await attach(run, trace, `garbage collections in ${target.description}`)
    target.attached()
    const startNs = process.hrtime.bigint()
    if (!run.json) run.out.line(run.out.paint('bold', `${'START(s)'.padStart(10)} ${`TIME(${unit.name})`.padStart(10)} ${'TID'.padStart(7)}  DESCRIPTION`))
    let collections = 0
    for await (const event of trace) {
      collections++
      if (run.json) run.out.json(jsonEvent(event, startNs))
      else {
        const start = (Number(event.startNs - startNs) / 1e9).toFixed(3).padStart(10)
        const time = (Number(event.durationNs) / unit.ns).toFixed(unit.decimals).padStart(10)
        const objects = `${event.collected} object${event.collected === 1 ? '' : 's'}`
        run.out.line(`${run.out.paint('dim', `${start} ${time} ${String(event.tid).padStart(7)}`)}  gen ${event.generation} GC collected ${objects}`)
      }
    }
    if (run.reason === undefined) run.stop('target-exited')
    await trace.close()
    await settleProgram(run, target)
    run.summary([`${count(collections, 'collection')} in ${run.elapsed()}`, `${count(trace.lost, 'event')} lost`])
  } finally {
    await target.abandon()
  }
}

function jsonEvent(event: GCEvent, startNs: bigint) {
  return {
    type: 'gc',
    pid: event.pid,
    tid: event.tid,
    ns: Number(event.startNs - startNs),
    generation: event.generation,
    collected: event.collected,
    durationNs: Number(event.durationNs),
  }
}

/**
 * `usdtrace gc PID...`: bcc's pythongc. One line per garbage collection: when it started, how long
 * it took, the generation and the objects it found unreachable.
 */
import { traceGC, type GCEvent } from '../index.js'
import { flag, seconds, text, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { COSTS } from './costs.js'
import { UsageError } from './errors.js'
import { count, type Run } from './run.js'
import { SPAWN_HELP, SPAWN_OPTIONS, TARGET_HELP, TARGET_OPTIONS, resolveTargets } from './target.js'
import { processesTraced, traceAll } from './traces.js'
import { STACKS_HELP, STACKS_OPTION, jsonStack, printStack } from './stack-lines.js'

const NAME = 'gc'

const HELP = `usdtrace gc PID... [options]
usdtrace gc --binary PATH | --name PATTERN [options]
usdtrace gc [options] -- CMD [ARGS...]

Prints each garbage collection of Python processes as it ends (bcc's pythongc): START (seconds
since the trace began), TIME it took (µs, or ms with -m), the process (with several) and
thread, and the generation collected with the number of unreachable objects it found (what
gc.collect() returns). Works on every CPython with probes, 3.12-3.14 included.

Cost: ${COSTS.gc}.

Options:
  -m, --milliseconds     TIME in milliseconds
  -M, --minimum MIN      only collections that took at least MIN (µs, or ms with -m); the
                         filter runs in the kernel
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m, 1h)
${STACKS_HELP}
${TARGET_HELP}
${SPAWN_HELP}
      --json             one JSON object per collection (see docs/cli.md for the schema)
      --debug            stack traces on errors

Examples:
  usdtrace gc 4242
  usdtrace gc 4242 -m -M 5          # collections of 5 ms or more
  usdtrace gc -- python3.11 batch.py
  usdtrace gc 4242 --stacks         # which code collects (gc.collect() callers, allocation sites)`

export const gc: Command = {
  name: NAME,
  summary: 'print each garbage collection: generation, objects, duration (pythongc)',
  help: HELP,
  options: {
    milliseconds: { type: 'boolean', short: 'm' },
    minimum: { type: 'string', short: 'M' },
    duration: { type: 'string', short: 'd' },
    ...STACKS_OPTION,
    ...TARGET_OPTIONS,
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

  const targets = await resolveTargets(NAME, run, args, 'python')
  try {
    let startNs: bigint | undefined
    const pid = targets.several ? (p: number | string) => ` ${String(p).padStart(7)}` : () => ''
    let collections = 0
    const result = await traceAll(
      run,
      targets,
      {
        open: (target) => traceGC({ ...target, minDurationNs, ...(flag(values, 'stacks') && { stack: true }) }),
        what: 'garbage collections',
        attached: () => {
          startNs = process.hrtime.bigint()
          if (!run.json) run.out.line(run.out.paint('bold', `${'START(s)'.padStart(10)} ${`TIME(${unit.name})`.padStart(10)}${pid('PID')} ${'TID'.padStart(7)}  DESCRIPTION`))
        },
      },
      (event) => {
        collections++
        if (run.json) return run.out.json(jsonEvent(event, startNs!))
        const start = (Number(event.startNs - startNs!) / 1e9).toFixed(3).padStart(10)
        const time = (Number(event.durationNs) / unit.ns).toFixed(unit.decimals).padStart(10)
        const objects = `${event.collected} object${event.collected === 1 ? '' : 's'}`
        run.out.line(`${run.out.paint('dim', `${start} ${time}${pid(event.pid)} ${String(event.tid).padStart(7)}`)}  gen ${event.generation} GC collected ${objects}`)
        printStack(run, event.stack, 11)
      },
    )
    await targets.settle(run)
    run.summary([`${count(collections, 'collection')} in ${run.elapsed()}`, `${count(result.lost, 'event')} lost`, ...processesTraced(targets, result)])
  } finally {
    await targets.settle(run)
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
    stack: jsonStack(event.stack),
  }
}

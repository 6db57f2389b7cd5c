/**
 * `usdtrace top PID` (py-spy top): the functions where a Python process spends its time, by their
 * own and total share of the sampled stacks, a table per interval, summed in the kernel. Any
 * CPython from 3.10, with or without USDT probes.
 */
import { formatDuration, shortenPath, stackProfile, type ProfiledStack, type StackProfileSnapshot } from '../index.js'
import { flag, integer, seconds, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { COSTS } from './costs.js'
import { count, type Run } from './run.js'
import { HZ_HELP, OFF_CPU_HELP, OFF_CPU_OPTION, periodNs, sampling, type Sampling } from './samplestream.js'
import { cut, formatTable, type Column } from './table.js'
import { SPAWN_HELP, SPAWN_OPTIONS, TARGET_HELP, TARGET_OPTIONS, resolveTargets } from './target.js'
import { IntervalClock, processesTraced, traceAll } from './traces.js'

const NAME = 'top'

/** The kernel's sums are read at least this often: a table of any interval is a sum of readings, and -d or Ctrl-C waits for one at most. */
const LONGEST_READING_SECONDS = 1

const HELP = `usdtrace top PID... [options]
usdtrace top --binary PATH | --name PATTERN [options]
usdtrace top [options] -- CMD [ARGS...]

Where the time goes, like py-spy top: the stacks of the process's threads are sampled, and a
table every interval lists the functions by their OWN share of the samples (the function itself
was running) and their TOTAL share (it was anywhere on the stack: itself or what it called),
with the time each stands for. On a terminal the table refreshes in place; into a pipe or a
file, one table per interval follows another. Any CPython from 3.10, with or without USDT
probes (pyenv, docker python images). With several processes (--binary, --name), a function's
time is summed over them.

Without --off-cpu only time on a CPU is counted; with it, also where threads wait (a lock, I/O,
a sleep), for as long as they waited, so that shares are of wall time.

Cost: ${COSTS.sampling}.

Options:
  -i, --interval SECS    seconds per table (default 1)
  -n, --count N          stop after N tables
  -d, --duration SECS    stop after SECS
  -r, --rows N           functions per table (default 20; on a terminal, as many as fit)
  -C, --noclear          do not clear the screen between tables (on a terminal)
${HZ_HELP}
${OFF_CPU_HELP}
      --full-paths       file names as the interpreter reports them
${TARGET_HELP}
${SPAWN_HELP}
      --json             one JSON object per table (see docs/cli.md for the schema)
      --debug            stack traces on errors

Examples:
  usdtrace top 4242
  usdtrace top 4242 --off-cpu            # where it waits, too
  usdtrace top --binary /usr/local/bin/python3.12 -i 5 -n 3 | less`

export const top: Command = {
  name: NAME,
  summary: 'where the time goes, function by function, from sampled stacks (py-spy top)',
  help: HELP,
  options: {
    interval: { type: 'string', short: 'i' },
    count: { type: 'string', short: 'n' },
    duration: { type: 'string', short: 'd' },
    rows: { type: 'string', short: 'r' },
    noclear: { type: 'boolean', short: 'C' },
    hz: { type: 'string' },
    ...OFF_CPU_OPTION,
    'full-paths': { type: 'boolean' },
    ...TARGET_OPTIONS,
    ...SPAWN_OPTIONS,
  },
  run: runTop,
}

interface FunctionTime {
  func: string
  file: string
  ownNs: number
  totalNs: number
}

/** One interval's stacks, summed per function: as the innermost frame (own) and anywhere on the stack (total). */
class Table {
  readonly functions = new Map<string, FunctionTime>()
  totalNs = 0
  samples = 0
  waitedNs = 0
  dropped = 0
  seconds = 0
  readings = 0

  constructor(readonly periodNs: number) {}

  add(snapshot: StackProfileSnapshot, tick: boolean, bootstrap: string | undefined): void {
    if (tick) {
      this.seconds += Number(snapshot.endNs - snapshot.startNs) / 1e9
      this.readings++
    }
    this.dropped += snapshot.dropped
    for (const stack of snapshot.stacks) this.#addStack(stack, bootstrap)
  }

  #addStack(stack: ProfiledStack, bootstrap: string | undefined): void {
    const ns = stack.onCpu ? stack.samples * this.periodNs : Number(stack.offCpuNs)
    this.totalNs += ns
    this.samples += stack.samples
    if (!stack.onCpu) this.waitedNs += ns
    const frames = bootstrap === undefined ? stack.frames : stack.frames.filter((frame) => frame.file !== bootstrap)
    const seen = new Set<string>()
    frames.forEach((frame, i) => {
      const key = `${frame.func}\0${frame.file}`
      let row = this.functions.get(key)
      if (!row) this.functions.set(key, (row = { func: frame.func, file: frame.file, ownNs: 0, totalNs: 0 }))
      if (i === 0) row.ownNs += ns
      // A recursive function is on the stack once, whatever its depth.
      if (!seen.has(key)) row.totalNs += ns
      seen.add(key)
    })
  }

  /** Most own time first; then most total time. */
  rows(): FunctionTime[] {
    return [...this.functions.values()].sort((a, b) => b.ownNs - a.ownNs || b.totalNs - a.totalNs || a.func.localeCompare(b.func))
  }
}

async function runTop(run: Run, args: ParsedArgs): Promise<void> {
  const { values } = args
  const intervalSeconds = seconds(NAME, values, 'interval') ?? 1
  const tables = values.count === undefined ? Infinity : integer(NAME, values, 'count', 1)
  const clear = run.out.isTTY && !run.json && !flag(values, 'noclear')
  const rows = values.rows === undefined && run.out.isTTY ? Math.max(5, (process.stdout.rows ?? 25) - 5) : integer(NAME, values, 'rows', 20)
  const fullPaths = flag(values, 'full-paths')
  const settings = sampling(NAME, args)
  // Readings at a whole fraction of the interval, so that each table covers exactly one interval.
  const perTable = Math.ceil(intervalSeconds / LONGEST_READING_SECONDS)
  run.stopAfter(seconds(NAME, values, 'duration'))
  const targets = await resolveTargets(NAME, run, args, 'stacks')
  try {
    const bootstrap = targets.spawned?.bootstrapFile
    let table = new Table(periodNs(settings))
    let shown = 0
    const show = (current: Table) => {
      print(run, current, settings, { clear, rows, fullPaths })
      if (++shown >= tables && run.reason === undefined) run.stop('finished')
    }
    const clock = new IntervalClock()
    const result = await traceAll(
      run,
      targets,
      {
        open: (target) => stackProfile({ ...target, ...settings, intervalMs: (intervalSeconds / perTable) * 1000 }),
        what: 'stacks',
        notes: [`${settings.hz} Hz${settings.offCpu ? ', on and off CPU' : ''}`, COSTS.sampling],
        // Ctrl-C, SIGTERM and -d take one last reading: only a closed output (or -n) closes at once.
        readsOnceMore: (reason) => reason !== 'output-closed' && reason !== 'finished',
      },
      (snapshot, trace) => {
        const tick = clock.tick(trace, snapshot.final)
        table.add(snapshot, tick, bootstrap)
        if (tick && table.readings === perTable && shown < tables) {
          show(table)
          table = new Table(periodNs(settings))
        }
      },
    )
    // The last, shorter interval of a run that -d or Ctrl-C ended.
    if (table.readings > 0 && shown < tables && run.reason !== 'output-closed') show(table)
    run.summary([`${count(shown, 'table')} in ${run.elapsed()}`, `${count(result.lost, 'sample')} lost`, ...processesTraced(targets, result)])
  } finally {
    await targets.settle(run)
  }
}

function print(run: Run, table: Table, settings: Sampling, options: { clear: boolean; rows: number; fullPaths: boolean }): void {
  const share = (ns: number) => (table.totalNs > 0 ? (100 * ns) / table.totalNs : 0)
  const functions = table.rows()
  if (run.json) {
    run.out.json({
      type: 'top',
      seconds: table.seconds,
      samples: table.samples,
      totalNs: Math.round(table.totalNs),
      offCpuNs: settings.offCpu ? Math.round(table.waitedNs) : null,
      dropped: table.dropped,
      functions: functions.map((f) => ({ func: f.func, file: f.file, ownNs: Math.round(f.ownNs), totalNs: Math.round(f.totalNs), ownPercent: share(f.ownNs), totalPercent: share(f.totalNs) })),
    })
    return
  }
  const waited = settings.offCpu ? `, ${formatDuration(BigInt(Math.round(table.waitedNs)))} of it waiting` : ''
  const dropped = table.dropped > 0 ? `, ${count(table.dropped, 'sample')} dropped` : ''
  run.out.line(`${options.clear ? '\x1b[H\x1b[2J' : ''}${new Date().toTimeString().slice(0, 8)}  ${count(table.samples, 'sample')}, ${formatDuration(BigInt(Math.round(table.totalNs)))} sampled${waited}${dropped}`)
  if (functions.length === 0) {
    run.out.line(run.out.paint('dim', settings.offCpu ? 'no Python stack was sampled' : 'no Python code ran on a CPU (--off-cpu shows where it waits)'))
    run.out.line()
    return
  }
  const columns: Column[] = [
    { title: 'OWN%', align: 'right' },
    { title: 'TOTAL%', align: 'right' },
    { title: 'OWN', align: 'right' },
    { title: 'TOTAL', align: 'right' },
    { title: 'FUNCTION', align: 'left' },
  ]
  const cwd = process.cwd()
  const time = (ns: number) => (ns > 0 ? formatDuration(BigInt(Math.round(ns))) : '-')
  const cells = functions.slice(0, options.rows).map((f) => [
    share(f.ownNs).toFixed(1),
    share(f.totalNs).toFixed(1),
    time(f.ownNs),
    time(f.totalNs),
    cut(`${f.func} (${options.fullPaths ? f.file : shortenPath(f.file, cwd)})`, 120),
  ])
  const [header, ...lines] = formatTable(columns, cells)
  run.out.line(run.out.paint('bold', header!))
  for (const line of lines) run.out.line(line)
  if (functions.length > options.rows) run.out.line(run.out.paint('dim', `... ${count(functions.length - options.rows, 'more function')}`))
  run.out.line()
}

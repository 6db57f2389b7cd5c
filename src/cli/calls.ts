/**
 * `usdtrace calls PID...`: bcc's pythoncalls. The functions called most, or with -L the ones that
 * took the most time (inclusive, self, percentiles), and with -S the syscalls, per interval or
 * for the whole trace; --histogram draws one function's times as bcc's funclatency does.
 * Counted in the kernel (callStats): nothing crosses to user space per call.
 */
import { callStats, shortenPath, type CallStatsSnapshot, type FunctionStats, type LatencySummary, type SyscallStats } from '../index.js'
import { flag, integer, seconds, text, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { COSTS } from './costs.js'
import { count, type Run } from './run.js'
import { cut, formatTable, type Column } from './table.js'
import { SPAWN_HELP, SPAWN_OPTIONS, TARGET_HELP, TARGET_OPTIONS, resolveTargets } from './target.js'
import { IntervalClock, processesTraced, traceAll } from './traces.js'

const NAME = 'calls'

/** How often the kernel's sums are read; an end (Ctrl-C, -d) waits for the next reading, so nothing is missed. */
const READ_EVERY_SECONDS = 0.2

const HELP = `usdtrace calls PID... [options]
usdtrace calls --binary PATH | --name PATTERN [options]
usdtrace calls [options] -- CMD [ARGS...]

Counts the Python function calls of running processes (bcc's pythoncalls), or with -L the time
they took: TOTAL is inclusive (summed over calls: a recursive function's inner calls count
again), SELF exclusive (minus the traced functions it called), MEAN per call, P50 and P99 read
from the kernel's power-of-two histograms (the top of the bucket the percentile falls in: at
most 2x above it, never above MAX), MAX the longest call. Several processes are summed. The
sums are kept in the kernel, so a busy process can be watched for long. The table is printed
when the targets exit, at Ctrl-C, after -d, and every -i.

Cost: ${COSTS.callsCount}.
With -L: ${COSTS.callsLatency}.

Options:
  -L, --latency          time per function (TOTAL, SELF, MEAN, P50, P99, MAX in µs) instead of
                         counts only
      --histogram FUNC   with the table, the distribution of FUNC's times, like bcc's
                         funclatency (implies -L)
  -S, --syscalls         also count (and with -L time) the processes' system calls
  -m, --milliseconds     times in milliseconds
  -T, --top N            the N first functions (and syscalls) (default 20)
  -i, --interval SECS    print (and restart) the tables every SECS
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m, 1h)
      --full-paths       file names as the interpreter reports them
${TARGET_HELP}
${SPAWN_HELP}
      --json             one JSON object per table (see docs/cli.md for the schema)
      --debug            stack traces on errors

Examples:
  usdtrace calls 4242                      # Ctrl-C prints the most called functions
  usdtrace calls 4242 -L -m -T 10 -d 30    # the 10 slowest functions over 30 s, in ms
  usdtrace calls --name gunicorn -S -i 5   # every worker's functions and syscalls every 5 s
  usdtrace calls 4242 --histogram handle -d 10
  usdtrace calls -L -- python3.11 app.py   # start app.py and time everything it calls`

export const calls: Command = {
  name: NAME,
  summary: 'count or time Python function calls and syscalls, in the kernel (pythoncalls)',
  help: HELP,
  options: {
    latency: { type: 'boolean', short: 'L' },
    histogram: { type: 'string' },
    syscalls: { type: 'boolean', short: 'S' },
    milliseconds: { type: 'boolean', short: 'm' },
    top: { type: 'string', short: 'T' },
    interval: { type: 'string', short: 'i' },
    duration: { type: 'string', short: 'd' },
    'full-paths': { type: 'boolean' },
    ...TARGET_OPTIONS,
    ...SPAWN_OPTIONS,
  },
  run: runCalls,
}

interface Unit {
  name: string
  ns: number
  decimals: number
}

interface Settings {
  latency: boolean
  /** the function whose histogram to draw */
  histogram: string | undefined
  /** processes summed: said under the table */
  summed: number
  unit: Unit
  top: number
  fullPaths: boolean
  interval: number | undefined
}

async function runCalls(run: Run, args: ParsedArgs): Promise<void> {
  const { values } = args
  const histogram = text(values, 'histogram')
  const settings: Settings = {
    latency: flag(values, 'latency') || histogram !== undefined,
    histogram,
    summed: 0,
    unit: flag(values, 'milliseconds') ? { name: 'ms', ns: 1e6, decimals: 3 } : { name: 'us', ns: 1e3, decimals: 2 },
    top: integer(NAME, values, 'top', 20),
    fullPaths: flag(values, 'full-paths'),
    interval: seconds(NAME, values, 'interval'),
  }
  const duration = seconds(NAME, values, 'duration')
  const syscalls = flag(values, 'syscalls')
  // Readings at a whole fraction of the interval, so that each table covers exactly one interval.
  const readEvery = settings.interval === undefined ? READ_EVERY_SECONDS : settings.interval / Math.ceil(settings.interval / READ_EVERY_SECONDS)
  const readingsPerTable = settings.interval === undefined ? Infinity : Math.round(settings.interval / readEvery)

  const targets = await resolveTargets(NAME, run, args, 'python')
  settings.summed = targets.initial.pids?.length ?? Infinity
  try {
    // Ctrl-C, SIGTERM and -d take one last reading before closing: only a closed output closes at once.
    run.stopAfter(duration)
    const bootstrap = targets.spawned?.bootstrapFile
    let table = new Aggregate()
    let readings = 0
    let dropped = 0
    const clock = new IntervalClock()
    const result = await traceAll(
      run,
      targets,
      {
        open: (target) => callStats({ ...target, latency: settings.latency, syscalls, intervalMs: readEvery * 1000 }),
        what: 'calls',
        notes: [settings.latency ? COSTS.callsLatency : COSTS.callsCount],
        readsOnceMore: (reason) => reason !== 'output-closed',
      },
      (snapshot, trace) => {
        table.add(snapshot, bootstrap)
        dropped += snapshot.dropped
        // One trace's readings mark the intervals; those of the others fall in with them.
        if (clock.tick(trace, snapshot.final) && run.reason === undefined && ++readings % readingsPerTable === 0) {
          print(run, table, settings, syscalls)
          table = new Aggregate()
        }
      },
    )
    if (result.processes > 0) settings.summed = result.processes
    if (run.reason !== 'output-closed' && (table.readings > 0 || readings === 0)) print(run, table, settings, syscalls)
    const lost = dropped > 0 ? `${count(dropped, 'call')} not counted (the kernel's function table was full)` : '0 calls lost'
    await targets.settle(run)
    run.summary([`traced for ${run.elapsed()}`, lost, ...processesTraced(targets, result)])
  } finally {
    await targets.settle(run)
  }
}

interface Row extends LatencySummary {
  name: string
  file: string
  selfNs?: bigint
}

/** The sum of consecutive snapshots: per function and per syscall, counts and times added up. */
class Aggregate {
  readonly functions = new Map<string, Row>()
  readonly syscalls = new Map<string, Row>()
  startNs: bigint | undefined
  endNs: bigint | undefined
  readings = 0

  add(snapshot: CallStatsSnapshot, bootstrap: string | undefined): void {
    this.readings++
    this.startNs ??= snapshot.startNs
    this.endNs = snapshot.endNs
    for (const f of snapshot.functions) if (f.file !== bootstrap) merge(this.functions, `${f.file}\0${f.func}`, f.func, f.file, f)
    for (const s of snapshot.syscalls ?? []) merge(this.syscalls, s.name, s.name, '', s)
  }
}

function merge(rows: Map<string, Row>, key: string, name: string, file: string, stats: FunctionStats | SyscallStats): void {
  const row = rows.get(key)
  const selfNs = 'selfNs' in stats ? stats.selfNs : undefined
  if (!row) {
    rows.set(key, { name, file, calls: stats.calls, timedCalls: stats.timedCalls, totalNs: stats.totalNs, selfNs, minNs: stats.minNs, maxNs: stats.maxNs, histogram: stats.histogram && [...stats.histogram] })
    return
  }
  if (stats.histogram) {
    const sum = (row.histogram ??= [])
    stats.histogram.forEach((n, k) => (sum[k] = (sum[k] ?? 0) + n))
  }
  row.calls += stats.calls
  row.timedCalls += stats.timedCalls
  row.totalNs = add(row.totalNs, stats.totalNs)
  row.selfNs = add(row.selfNs, selfNs)
  row.minNs = row.minNs === undefined || (stats.minNs !== undefined && stats.minNs < row.minNs) ? stats.minNs : row.minNs
  row.maxNs = row.maxNs === undefined || (stats.maxNs !== undefined && stats.maxNs > row.maxNs) ? stats.maxNs : row.maxNs
}

function add(a: bigint | undefined, b: bigint | undefined): bigint | undefined {
  return a === undefined ? b : b === undefined ? a : a + b
}

function ranked(rows: Iterable<Row>, latency: boolean): Row[] {
  return [...rows].sort((a, b) => {
    if (latency) {
      const byTime = (b.totalNs ?? 0n) - (a.totalNs ?? 0n)
      if (byTime !== 0n) return byTime > 0n ? 1 : -1
    }
    return b.calls - a.calls || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  })
}

function print(run: Run, aggregate: Aggregate, settings: Settings, syscalls: boolean): void {
  const functions = ranked(aggregate.functions.values(), settings.latency)
  const calls = ranked(aggregate.syscalls.values(), settings.latency)
  if (run.json) {
    run.out.json({
      type: 'calls',
      seconds: aggregate.endNs !== undefined && aggregate.startNs !== undefined ? Number(aggregate.endNs - aggregate.startNs) / 1e9 : 0,
      functions: functions.slice(0, settings.top).map((row) => jsonRow(row, { func: row.name, file: row.file })),
      totalFunctions: functions.length,
      ...(syscalls && { syscalls: calls.slice(0, settings.top).map((row) => jsonRow(row, { name: row.name })), totalSyscalls: calls.length }),
    })
    return
  }
  if (settings.interval !== undefined) run.out.line(run.out.paint('bold', `[${new Date().toTimeString().slice(0, 8)}]`))
  const cwd = process.cwd()
  const order = settings.latency ? 'total time' : 'calls'
  const functionTable = table(run, [{ title: 'FUNCTION', align: 'left' }, { title: 'FILE', align: 'left' }], functions.slice(0, settings.top), settings, (row) => [
    cut(row.name, 40),
    cut(settings.fullPaths ? row.file : shortenPath(row.file, cwd), 48, 'start'),
  ])
  for (const line of functionTable) run.out.line(line)
  const summed = settings.summed === Infinity ? ', summed over its processes' : settings.summed > 1 ? `, summed over ${count(settings.summed, 'process', 'processes')}` : ''
  run.out.line(run.out.paint('dim', `${Math.min(settings.top, functions.length)} of ${count(functions.length, 'function')}, by ${order}${summed}`))
  if (settings.histogram !== undefined) {
    const chosen = functions.filter((row) => row.name === settings.histogram)
    if (chosen.length === 0) run.out.line(run.out.paint('dim', `--histogram ${settings.histogram}: no call of a function of that name`))
    for (const row of chosen) {
      run.out.line()
      run.out.line(run.out.paint('bold', `${row.name} (${settings.fullPaths ? row.file : shortenPath(row.file, cwd)}): ${count(row.timedCalls, 'timed call')}`))
      for (const line of histogramLines(row)) run.out.line(line)
    }
  }
  if (syscalls) {
    run.out.line()
    for (const line of table(run, [{ title: 'SYSCALL', align: 'left' }], calls.slice(0, settings.top), settings, (row) => [row.name])) run.out.line(line)
    run.out.line(run.out.paint('dim', `${Math.min(settings.top, calls.length)} of ${count(calls.length, 'syscall')}, by ${order}`))
  }
  run.out.line()
}

function table(run: Run, names: Column[], rows: Row[], settings: Settings, nameCells: (row: Row) => string[]): string[] {
  const { unit, latency } = settings
  const withSelf = names[0]!.title === 'FUNCTION'
  const columns: Column[] = [...names, { title: 'CALLS', align: 'right' }]
  if (latency) {
    columns.push({ title: `TOTAL(${unit.name})`, align: 'right' })
    if (withSelf) columns.push({ title: `SELF(${unit.name})`, align: 'right' })
    for (const title of ['MEAN', 'P50', 'P99', 'MAX']) columns.push({ title: `${title}(${unit.name})`, align: 'right' })
  }
  const time = (ns: bigint | undefined, row: Row) => (ns === undefined || row.timedCalls === 0 ? '-' : (Number(ns) / unit.ns).toFixed(unit.decimals))
  const cells = rows.map((row) => {
    const line = [...nameCells(row), String(row.calls)]
    if (latency) {
      line.push(time(row.totalNs, row))
      if (withSelf) line.push(time(row.selfNs, row))
      line.push(time(row.timedCalls > 0 && row.totalNs !== undefined ? row.totalNs / BigInt(row.timedCalls) : undefined, row))
      line.push(time(percentile(row, 0.5), row), time(percentile(row, 0.99), row), time(row.maxNs, row))
    }
    return line
  })
  const [header, ...lines] = formatTable(columns, cells)
  return [run.out.paint('bold', header!), ...lines]
}

/**
 * The `p` quantile of a row's timed calls from its log2 histogram (bucket k: [2^k, 2^(k+1)) ns):
 * the top of the bucket it falls in, so at most 2x above the true value, and never above the
 * longest call.
 */
export function percentile(row: LatencySummary, p: number): bigint | undefined {
  const histogram = row.histogram
  if (!histogram || row.timedCalls === 0) return undefined
  const rank = Math.ceil(p * histogram.reduce((a, b) => a + b, 0))
  let seen = 0
  for (let k = 0; k < histogram.length; k++) {
    seen += histogram[k]!
    if (seen >= rank) {
      const top = 1n << BigInt(k + 1)
      return row.maxNs !== undefined && row.maxNs < top ? row.maxNs : top
    }
  }
  return row.maxNs
}

/** One function's histogram as bcc's funclatency draws it: a line per power-of-two bucket, in ns. */
function histogramLines(row: Row): string[] {
  const histogram = row.histogram ?? []
  const first = histogram.findIndex((n) => n > 0)
  if (first < 0) return ['(no timed calls)']
  const most = Math.max(...histogram)
  const range = (k: number) => `${k === 0 ? 0 : 2 ** k} -> ${2 ** (k + 1) - 1}`
  const width = range(histogram.length - 1).length + 4
  const lines = [`${'nsecs'.padStart(width)}${' '.repeat(10)}: count    distribution`]
  for (let k = first; k < histogram.length; k++) {
    const n = histogram[k]!
    lines.push(`${range(k).padStart(width)}${' '.repeat(10)}: ${String(n).padEnd(8)} |${'*'.repeat(Math.round((40 * n) / most)).padEnd(40)}|`)
  }
  return lines
}

function jsonRow(row: Row, names: Record<string, string>) {
  const ns = (value: bigint | undefined) => (value === undefined || row.timedCalls === 0 ? null : Number(value))
  return {
    ...names,
    calls: row.calls,
    timedCalls: row.timedCalls,
    totalNs: ns(row.totalNs),
    ...(row.file !== '' && { selfNs: ns(row.selfNs) }),
    meanNs: row.timedCalls > 0 && row.totalNs !== undefined ? Number(row.totalNs) / row.timedCalls : null,
    minNs: ns(row.minNs),
    maxNs: ns(row.maxNs),
    p50Ns: ns(percentile(row, 0.5)),
    p99Ns: ns(percentile(row, 0.99)),
    histogram: row.timedCalls > 0 ? (row.histogram ?? []) : null,
  }
}

/**
 * `usdtrace calls PID`: bcc's pythoncalls. The functions called most, or with -L the ones that
 * took the most time (inclusive and self), and with -S the syscalls, per interval or for the
 * whole trace. Counted in the kernel (callStats): nothing crosses to user space per call.
 */
import { callStats, shortenPath, type CallStatsSnapshot, type FunctionStats, type LatencySummary, type SyscallStats } from '../index.js'
import { flag, integer, seconds, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { attach, count, type Run } from './run.js'
import { cut, formatTable, type Column } from './table.js'
import { SPAWN_OPTIONS, entriesCost, resolveTarget, settleProgram } from './target.js'

const NAME = 'calls'

/** How often the kernel's sums are read; an end (Ctrl-C, -d) waits for the next reading, so nothing is missed. */
const READ_EVERY_SECONDS = 0.2

const HELP = `usdtrace calls PID [options]
usdtrace calls [options] -- CMD [ARGS...]

Counts the Python function calls of a running process (bcc's pythoncalls), or with -L the time
they took: TOTAL is inclusive (summed over calls: a recursive function's inner calls count
again), SELF exclusive (minus the traced functions it called), MEAN per call. The sums are kept
in the kernel, so a busy process can be watched for long. The table is printed when the target
exits, at Ctrl-C, after -d, and every -i.

Options:
  -L, --latency          time per function (TOTAL, SELF, MEAN in µs) instead of counts only;
                         on CPython 3.11 this raises the line semaphore (slower while traced)
  -S, --syscalls         also count (and with -L time) the process's system calls
  -m, --milliseconds     times in milliseconds
  -T, --top N            the N first functions (and syscalls) (default 20)
  -i, --interval SECS    print (and restart) the tables every SECS
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m)
      --full-paths       file names as the interpreter reports them
      --spawn 'CMD ARGS' start CMD (a python program) and trace it from its first call
      --json             one JSON object per table (see the README for the schema)
      --debug            stack traces on errors

Examples:
  usdtrace calls 4242                      # Ctrl-C prints the most called functions
  usdtrace calls 4242 -L -m -T 10 -d 30    # the 10 slowest functions over 30 s, in ms
  usdtrace calls 4242 -S -i 5              # functions and syscalls every 5 seconds
  usdtrace calls -L -- python3.11 app.py   # start app.py and time everything it calls`

export const calls: Command = {
  name: NAME,
  summary: 'count or time Python function calls and syscalls, in the kernel (pythoncalls)',
  help: HELP,
  options: {
    latency: { type: 'boolean', short: 'L' },
    syscalls: { type: 'boolean', short: 'S' },
    milliseconds: { type: 'boolean', short: 'm' },
    top: { type: 'string', short: 'T' },
    interval: { type: 'string', short: 'i' },
    duration: { type: 'string', short: 'd' },
    'full-paths': { type: 'boolean' },
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
  unit: Unit
  top: number
  fullPaths: boolean
  interval: number | undefined
}

async function runCalls(run: Run, args: ParsedArgs): Promise<void> {
  const { values } = args
  const settings: Settings = {
    latency: flag(values, 'latency'),
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

  const target = await resolveTarget(NAME, run, args)
  try {
    const stats = callStats(target.pid, { latency: settings.latency, syscalls, intervalMs: readEvery * 1000 })
    const note = settings.latency ? entriesCost(target) : 'counting returns only (no slowdown; -L for times)'
    // Ctrl-C, SIGTERM and -d take one last reading before closing: only a closed output closes at once.
    run.stopAfter(duration)
    await attach(run, stats, `calls in ${target.description}${note ? `; ${note}` : ''}`, (reason) => reason === 'output-closed')
    target.attached()
    const bootstrap = target.spawned?.bootstrapFile
    let table = new Aggregate()
    let readings = 0
    let dropped = 0
    for await (const snapshot of stats) {
      table.add(snapshot, bootstrap)
      dropped += snapshot.dropped
      if (snapshot.final && run.reason === undefined) run.stop('target-exited')
      if (run.reason !== undefined) break
      if (++readings % readingsPerTable === 0) {
        print(run, table, settings, syscalls)
        table = new Aggregate()
      }
    }
    await stats.close()
    if (run.reason !== 'output-closed' && (table.readings > 0 || readings === 0)) print(run, table, settings, syscalls)
    await settleProgram(run, target)
    const lost = dropped > 0 ? `${count(dropped, 'call')} not counted (the kernel's function table was full)` : '0 calls lost'
    run.summary([`traced for ${run.elapsed()}`, lost])
  } finally {
    await target.abandon()
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
    rows.set(key, { name, file, calls: stats.calls, timedCalls: stats.timedCalls, totalNs: stats.totalNs, selfNs, minNs: stats.minNs, maxNs: stats.maxNs })
    return
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
  run.out.line(run.out.paint('dim', `${Math.min(settings.top, functions.length)} of ${count(functions.length, 'function')}, by ${order}`))
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
    columns.push({ title: `MEAN(${unit.name})`, align: 'right' })
  }
  const time = (ns: bigint | undefined, row: Row) => (ns === undefined || row.timedCalls === 0 ? '-' : (Number(ns) / unit.ns).toFixed(unit.decimals))
  const cells = rows.map((row) => {
    const line = [...nameCells(row), String(row.calls)]
    if (latency) {
      line.push(time(row.totalNs, row))
      if (withSelf) line.push(time(row.selfNs, row))
      line.push(time(row.timedCalls > 0 && row.totalNs !== undefined ? row.totalNs / BigInt(row.timedCalls) : undefined, row))
    }
    return line
  })
  const [header, ...lines] = formatTable(columns, cells)
  return [run.out.paint('bold', header!), ...lines]
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
  }
}

/**
 * `usdtrace stat [PID...]`: bcc's pythonstat. A table per interval with each Python process's
 * calls, garbage collections, objects they found, module loads and threads started, per second,
 * counted in the kernel. Processes that exit leave the table; those that join (a restarted
 * worker, a new match) enter it.
 */
import { readFileSync } from 'node:fs'
import { stats, type StatsColumn, type StatsSnapshot } from '../index.js'
import { flag, integer, seconds, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { COSTS } from './costs.js'
import { readProcesses } from './procfs.js'
import { count, type Run } from './run.js'
import { RuntimeDetector } from './runtimes.js'
import { cut, formatTable, type Column } from './table.js'
import { UsageError } from './errors.js'
import { SAMPLING_INSTEAD, TARGET_HELP, TARGET_OPTIONS, commandLine, resolveTargets, type PidTargets } from './target.js'
import { IntervalClock, traceAll } from './traces.js'

const NAME = 'stat'

const HELP = `usdtrace stat [PID...] [options]
usdtrace stat --binary PATH | --name PATTERN [options]

A table every interval (bcc's pythonstat): for each Python process, the function calls, garbage
collections, objects those collections found unreachable (what gc.collect() returns: not
allocations, which CPython has no probe for), module loads and threads started, per second,
counted in the kernel. Without PIDs it takes every Python process with probes running now
(named python3, python3.X, or using libpython) and new ones named python*. A process that
exits leaves the table after its last interval, and one that replaces it (a new child of the
same parent with the same command line, as a restarted worker is) enters it. A column a
process's CPython cannot give (calls on 3.12-3.14) shows "-" and a note says why. It ends when
every process has exited.

Cost: calls are counted at function__return alone (CPython 3.11 keeps its fast path), yet
${COSTS.callsCount}.

Options:
  -i, --interval SECS    seconds per table (default 1)
  -n, --count N          stop after N tables
  -C, --noclear          do not clear the screen between tables (on a terminal)
  -d, --duration SECS    stop after SECS
${TARGET_HELP}
      --json             one JSON object per table (see docs/cli.md for the schema)
      --debug            stack traces on errors

Examples:
  usdtrace stat
  usdtrace stat 4242 4243 -i 5
  usdtrace stat --name gunicorn      # every worker, restarted ones too
  usdtrace stat -n 3 --json`

export const stat: Command = {
  name: NAME,
  summary: 'per-second calls, GCs, imports and threads of Python processes (pythonstat)',
  help: HELP,
  options: {
    interval: { type: 'string', short: 'i' },
    count: { type: 'string', short: 'n' },
    noclear: { type: 'boolean', short: 'C' },
    duration: { type: 'string', short: 'd' },
    ...TARGET_OPTIONS,
  },
  run: runStat,
}

const COLUMNS: [StatsColumn, string][] = [
  ['calls', 'CALLS/s'],
  ['gcRuns', 'GC/s'],
  ['gcCollected', 'COLLECTED/s'],
  ['imports', 'IMPORTS/s'],
  ['threads', 'THREADS/s'],
]

/** The kernel's counters are read at least this often: a table of any interval is a sum of readings. */
const LONGEST_READING_SECONDS = 1

/** One table's worth of readings: per process, the counts summed. */
class Table {
  seconds = 0
  readings = 0
  dropped = 0
  final = false
  readonly rows = new Map<number, Partial<Record<StatsColumn, number>>>()
  readonly unavailable: StatsSnapshot['unavailable'] = {}

  add(snapshot: StatsSnapshot, first: boolean): void {
    if (first) {
      this.seconds += Number(snapshot.intervalNs) / 1e9
      this.readings++
    }
    this.dropped += snapshot.dropped
    this.final ||= snapshot.final
    Object.assign(this.unavailable, snapshot.unavailable)
    for (const { pid, ...counts } of snapshot.processes) {
      const row = this.rows.get(pid) ?? {}
      for (const [column, value] of Object.entries(counts) as [StatsColumn, number][]) row[column] = (row[column] ?? 0) + value
      this.rows.set(pid, row)
    }
  }
}

async function runStat(run: Run, args: ParsedArgs): Promise<void> {
  const { values } = args
  const intervalSeconds = seconds(NAME, values, 'interval') ?? 1
  const tables = values.count === undefined ? Infinity : integer(NAME, values, 'count', 1)
  const clear = run.out.isTTY && !run.json && !flag(values, 'noclear')
  run.stopAfter(seconds(NAME, values, 'duration'))
  // Readings at a whole fraction of the interval, so that each table covers exactly one interval.
  const perTable = Math.ceil(intervalSeconds / LONGEST_READING_SECONDS)
  const targets = await resolveTargets(NAME, run, args, 'python', () => everyPython(run))
  const commands = new Map<number, string>()
  const notes = new Set<string>()
  let table = new Table()
  let shown = 0
  const show = async (current: Table) => {
    for (const pid of current.rows.keys()) if (!commands.has(pid)) commands.set(pid, await commandLine(pid))
    print(run, current, commands, clear)
    // Only the columns shown: the library also reports what no CPython can give (exceptions).
    const shownColumns = new Set<string>(COLUMNS.map(([column]) => column))
    for (const [column, why] of Object.entries(current.unavailable)) if (shownColumns.has(column)) notes.add(`${column}: ${why}`)
    if (++shown >= tables && run.reason === undefined) run.stop('finished')
  }
  let printing = Promise.resolve()
  const clock = new IntervalClock()
  const result = await traceAll(
    run,
    targets,
    { open: (target) => stats({ ...target, intervalMs: (intervalSeconds / perTable) * 1000 }), what: 'counts' },
    (snapshot, trace) => {
      const tick = clock.tick(trace, snapshot.final)
      table.add(snapshot, tick)
      if (tick && table.readings === perTable) {
        const full = table
        table = new Table()
        printing = printing.then(() => show(full))
      }
    },
  )
  await printing
  if (table.readings > 0 && run.reason !== 'output-closed' && shown < tables) await show(table)
  for (const note of notes) run.status.note(`unavailable ${note}`)
  run.summary([`${count(shown, 'table')} in ${run.elapsed()}`, `${count(result.lost, 'count')} lost`])
}

/** Python processes with probes, found as `usdtrace ps` finds them; new ones named python* join. */
async function everyPython(run: Run): Promise<PidTargets> {
  const detector = new RuntimeDetector()
  const found: number[] = []
  let probeless = 0
  for (const p of (await readProcesses()).values()) {
    if (p.kernelThread || p.pid === process.pid) continue
    const runtime = await detector.detect(p.pid)
    if (runtime?.name !== 'python') continue
    if (runtime.calls === 'no-probes') probeless++
    else found.push(p.pid)
  }
  if (probeless > 0) run.status.note(`${count(probeless, 'Python process', 'Python processes')} without probes left out (built without --with-dtrace); ${SAMPLING_INSTEAD}`)
  if (found.length === 0) throw new UsageError('no Python process with probes is running: give PIDs (`usdtrace ps` lists them)', NAME)
  return { pids: found.sort((a, b) => a - b), rules: { replacements: true, pattern: (comm) => /^python\d/.test(comm), patternWhy: 'is a new Python process' } }
}

/** Whether a process still runs (an exited one leaves the table once its last counts are shown). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

function print(run: Run, table: Table, commands: Map<number, string>, clear: boolean): void {
  const seconds = table.seconds
  // A process that exited stays for the interval it counted in, then leaves.
  const rows = [...table.rows]
    .filter(([pid, counts]) => running(pid) || Object.values(counts).some((n) => n > 0))
    .sort((a, b) => a[0] - b[0])
  if (run.json) {
    run.out.json({
      type: 'stat',
      seconds,
      final: table.final,
      processes: rows.map(([pid, counts]) => ({ pid, ...counts, command: commands.get(pid) ?? null })),
      unavailable: table.unavailable,
      dropped: table.dropped,
    })
    return
  }
  // Like top: the cursor home and the screen cleared before each table.
  run.out.line(`${clear ? '\x1b[H\x1b[2J' : ''}${new Date().toTimeString().slice(0, 8)} loadavg: ${loadAverage()}`)
  const columns: Column[] = [{ title: 'PID', align: 'right' }, ...COLUMNS.map(([, title]) => ({ title, align: 'right' as const })), { title: 'COMMAND', align: 'left' }]
  const cells = rows.map(([pid, row]) => [
    String(pid),
    ...COLUMNS.map(([column]) => (row[column] === undefined ? '-' : (row[column]! / seconds).toFixed(1))),
    cut(commands.get(pid) ?? '', 60),
  ])
  const [header, ...lines] = formatTable(columns, cells)
  run.out.line(run.out.paint('bold', header!))
  for (const line of lines) run.out.line(line)
  run.out.line()
}

function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').trim()
  } catch {
    return '-'
  }
}

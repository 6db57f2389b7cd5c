/**
 * `usdtrace stat [PID...]`: bcc's pythonstat. A table per interval with each Python process's
 * calls, garbage collections, objects they found, module loads and threads started, per second,
 * counted in the kernel.
 */
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { TraceError, stats, type StatsColumn, type StatsSnapshot } from '../index.js'
import { flag, integer, pid as parsePid, seconds, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { UsageError } from './errors.js'
import { readProcesses } from './procfs.js'
import { attach, count, type Run } from './run.js'
import { RuntimeDetector } from './runtimes.js'
import { cut, formatTable, type Column } from './table.js'

const NAME = 'stat'

const HELP = `usdtrace stat [PID...] [options]

A table every interval (bcc's pythonstat): for each Python process, the function calls, garbage
collections, objects they found unreachable, module loads and threads started, per second,
counted in the kernel. Without PIDs it takes every Python process with probes running now
(named python3, python3.X, or using libpython). A column a process's CPython cannot give (calls
on 3.12-3.14) shows "-" and a note says why. It ends when every process has exited.

Options:
  -i, --interval SECS    seconds per table (default 1)
  -n, --count N          stop after N tables
  -C, --noclear          do not clear the screen between tables (on a terminal)
  -d, --duration SECS    stop after SECS
      --json             one JSON object per table (see the README for the schema)
      --debug            stack traces on errors

Examples:
  usdtrace stat
  usdtrace stat 4242 4243 -i 5
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
  },
  run: runStat,
}

const COLUMNS: [StatsColumn, string][] = [
  ['calls', 'CALLS/s'],
  ['gcRuns', 'GC/s'],
  ['gcCollected', 'OBJECTS/s'],
  ['imports', 'IMPORTS/s'],
  ['threads', 'THREADS/s'],
]

async function runStat(run: Run, args: ParsedArgs): Promise<void> {
  const { values, positionals } = args
  const intervalSeconds = seconds(NAME, values, 'interval') ?? 1
  const tables = values.count === undefined ? Infinity : integer(NAME, values, 'count', 1)
  const clear = run.out.isTTY && !run.json && !flag(values, 'noclear')
  run.stopAfter(seconds(NAME, values, 'duration'))
  const given = positionals.map((p) => parsePid(NAME, p))
  let pids: number[] = []
  let trace: ReturnType<typeof stats> | undefined
  // A process found by the scan may exit before the probes are on it: then scan again.
  for (let attempt = 1; trace === undefined; attempt++) {
    pids = given.length > 0 ? given : await pythonProcesses(run, attempt === 1)
    if (pids.length === 0) throw new UsageError('no Python process with probes is running: give PIDs (`usdtrace ps` lists them)', NAME)
    const attempted = stats({ pids, intervalMs: intervalSeconds * 1000 })
    try {
      await attach(run, attempted, count(pids.length, 'process', 'processes'))
      trace = attempted
    } catch (error) {
      await attempted.close()
      if (given.length > 0 || attempt === 3 || !(error instanceof TraceError && error.code === 'NO_SUCH_PROCESS')) throw error
    }
  }
  const commands = new Map(await Promise.all(pids.map(async (pid) => [pid, await commandLine(pid)] as const)))
  let shown = 0
  const notes = new Set<string>()
  for await (const snapshot of trace) {
    if (snapshot.processes.length > 0 || !snapshot.final) {
      print(run, snapshot, commands, clear)
      shown++
    }
    // Only the columns shown: the library also reports what no CPython can give (exceptions).
    const shownColumns = new Set<string>(COLUMNS.map(([column]) => column))
    for (const [column, why] of Object.entries(snapshot.unavailable)) if (shownColumns.has(column)) notes.add(`${column}: ${why}`)
    if (snapshot.final && run.reason === undefined) run.stop('target-exited')
    if (shown >= tables && run.reason === undefined) run.stop('finished')
    if (run.reason !== undefined) break
  }
  await trace.close()
  for (const note of notes) run.status.note(`unavailable ${note}`)
  run.summary([`${count(shown, 'table')} in ${run.elapsed()}`, `${count(trace.lost, 'count')} lost`])
}

/** Python processes with probes, found as `usdtrace ps` finds them. */
async function pythonProcesses(run: Run, report: boolean): Promise<number[]> {
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
  if (probeless > 0 && report) run.status.note(`${count(probeless, 'Python process', 'Python processes')} without probes left out (built without --with-dtrace)`)
  return found.sort((a, b) => a - b)
}

async function commandLine(pid: number): Promise<string> {
  const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
  return raw.split('\0').filter(Boolean).join(' ')
}

function print(run: Run, snapshot: StatsSnapshot, commands: Map<number, string>, clear: boolean): void {
  const seconds = Number(snapshot.intervalNs) / 1e9
  if (run.json) {
    run.out.json({
      type: 'stat',
      seconds,
      final: snapshot.final,
      processes: snapshot.processes.map((row) => ({ ...row, command: commands.get(row.pid) ?? null })),
      unavailable: snapshot.unavailable,
      dropped: snapshot.dropped,
    })
    return
  }
  // Like top: the cursor home and the screen cleared before each table.
  run.out.line(`${clear ? '\x1b[H\x1b[2J' : ''}${new Date().toTimeString().slice(0, 8)} loadavg: ${loadAverage()}`)
  const columns: Column[] = [{ title: 'PID', align: 'right' }, ...COLUMNS.map(([, title]) => ({ title, align: 'right' as const })), { title: 'COMMAND', align: 'left' }]
  const rows = snapshot.processes.map((row) => [
    String(row.pid),
    ...COLUMNS.map(([column]) => (row[column] === undefined ? '-' : (row[column]! / seconds).toFixed(1))),
    cut(commands.get(row.pid) ?? '', 60),
  ])
  const [header, ...lines] = formatTable(columns, rows)
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

/**
 * `usdtrace calls PID`: bcc's pythoncalls. The functions called most, or with -L the ones that
 * took the most time (inclusive and self), per interval or for the whole trace.
 */
import { CallSummary, shortenPath, type SummaryRow } from '../index.js'
import { flag, integer, seconds, type ParsedArgs } from './args.js'
import { callStreamSummary, streamCalls } from './callstream.js'
import type { Command } from './command.js'
import type { Run } from './run.js'
import { formatTable, cut, type Column } from './table.js'
import { SPAWN_OPTIONS } from './target.js'

const NAME = 'calls'

const HELP = `usdtrace calls PID [options]
usdtrace calls [options] -- CMD [ARGS...]

Counts the Python function calls of a running process (bcc's pythoncalls), or with -L the time
they took: TOTAL is inclusive (recursive calls counted once), SELF exclusive, MEAN per call.
Prints the table when the target exits, at Ctrl-C, after -d, and every -i.

Options:
  -L, --latency          time per function (TOTAL, SELF, MEAN in µs) instead of counts only;
                         on CPython 3.11 this raises the line semaphore (slower while traced)
  -m, --milliseconds     times in milliseconds
  -T, --top N            the N first functions (default 20)
  -i, --interval SECS    print (and restart) the table every SECS
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m)
      --full-paths       file names as the interpreter reports them
      --spawn 'CMD ARGS' start CMD (a python program) and trace it from its first call
      --json             one JSON object per table (see the README for the schema)
      --debug            stack traces on errors

Examples:
  usdtrace calls 4242                      # Ctrl-C prints the most called functions
  usdtrace calls 4242 -L -m -T 10 -d 30    # the 10 slowest functions over 30 s, in ms
  usdtrace calls 4242 -i 5                 # a table every 5 seconds
  usdtrace calls -L -- python3.11 app.py   # start app.py and time everything it calls`

export const calls: Command = {
  name: NAME,
  summary: 'count or time Python function calls (pythoncalls)',
  help: HELP,
  options: {
    latency: { type: 'boolean', short: 'L' },
    milliseconds: { type: 'boolean', short: 'm' },
    top: { type: 'string', short: 'T' },
    interval: { type: 'string', short: 'i' },
    duration: { type: 'string', short: 'd' },
    'full-paths': { type: 'boolean' },
    ...SPAWN_OPTIONS,
  },
  run: runCalls,
}

async function runCalls(run: Run, args: ParsedArgs): Promise<void> {
  const { values } = args
  const latency = flag(values, 'latency')
  const unit = flag(values, 'milliseconds') ? { name: 'ms', ns: 1e6, decimals: 3 } : { name: 'us', ns: 1e3, decimals: 2 }
  const top = integer(NAME, values, 'top', 20)
  const interval = seconds(NAME, values, 'interval')
  const fullPaths = flag(values, 'full-paths')
  run.stopAfter(seconds(NAME, values, 'duration'))

  let summary = new CallSummary()
  let intervalStart = process.hrtime.bigint()
  const print = () => {
    const now = process.hrtime.bigint()
    const rows = summary.rows()
    if (!latency) rows.sort((a, b) => b.calls - a.calls || (a.func < b.func ? -1 : a.func > b.func ? 1 : 0))
    if (run.json) {
      run.out.json({
        type: 'calls',
        seconds: Number(now - intervalStart) / 1e9,
        functions: rows.slice(0, top).map((row) => jsonRow(row, latency)),
        shown: Math.min(top, rows.length),
        total: rows.length,
      })
    } else {
      if (interval !== undefined) run.out.line(run.out.paint('bold', `[${new Date().toTimeString().slice(0, 8)}]`))
      for (const line of table(run, rows.slice(0, top), latency, unit, fullPaths)) run.out.line(line)
      run.out.line(run.out.paint('dim', `${Math.min(top, rows.length)} of ${rows.length} functions, by ${latency ? 'total time' : 'calls'}`))
      run.out.line()
    }
    summary = new CallSummary()
    intervalStart = now
  }
  const result = await streamCalls(
    NAME,
    run,
    args,
    { entries: latency, note: latency ? undefined : 'counting returns only (no slowdown; -L for times)' },
    (event) => summary.add(event),
    () => {
      intervalStart = process.hrtime.bigint()
      if (interval !== undefined) run.every(interval, print)
    },
  )
  if (run.reason !== 'output-closed') print()
  callStreamSummary(run, result)
}

function table(
  run: Run,
  rows: SummaryRow[],
  latency: boolean,
  unit: { name: string; ns: number; decimals: number },
  fullPaths: boolean,
): string[] {
  const cwd = process.cwd()
  const columns: Column[] = [
    { title: 'FUNCTION', align: 'left' },
    { title: 'FILE', align: 'left' },
    { title: 'CALLS', align: 'right' },
  ]
  if (latency) {
    columns.push(
      { title: `TOTAL(${unit.name})`, align: 'right' },
      { title: `SELF(${unit.name})`, align: 'right' },
      { title: `MEAN(${unit.name})`, align: 'right' },
    )
  }
  const time = (ns: bigint | undefined, timed: number) => (ns === undefined || timed === 0 ? '-' : (Number(ns) / unit.ns).toFixed(unit.decimals))
  const cells = rows.map((row) => {
    const cellsOfRow = [cut(row.func, 40), cut(fullPaths ? row.file : shortenPath(row.file, cwd), 48, 'start'), String(row.calls)]
    if (latency) cellsOfRow.push(time(row.totalNs, row.timedCalls), time(row.selfNs, row.timedCalls), time(row.meanNs, row.timedCalls))
    return cellsOfRow
  })
  const [header, ...lines] = formatTable(columns, cells)
  return [run.out.paint('bold', header!), ...lines]
}

function jsonRow(row: SummaryRow, latency: boolean) {
  return {
    func: row.func,
    file: row.file,
    calls: row.calls,
    totalNs: latency && row.timedCalls > 0 ? Number(row.totalNs) : null,
    selfNs: latency && row.timedCalls > 0 ? Number(row.selfNs) : null,
    meanNs: latency && row.meanNs !== undefined ? Number(row.meanNs) : null,
  }
}

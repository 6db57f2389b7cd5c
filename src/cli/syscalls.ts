/**
 * `usdtrace syscalls PID...`: the strace view. Every system call of processes as it returns, with
 * its arguments decoded, its result or error, and how long it took; with -c, strace -c's table.
 */
import { formatDuration, formatMilliseconds, traceSyscalls, type SyscallEvent } from '../index.js'
import { flag, seconds, text, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { UsageError } from './errors.js'
import { count, type Run } from './run.js'
import { formatCall, formatResult } from './syscall-format.js'
import { TARGET_HELP, TARGET_OPTIONS, resolveTargets } from './target.js'
import { processesTraced, traceAll } from './traces.js'
import { STACKS_HELP, STACKS_OPTION, jsonStack, printStack } from './stack-lines.js'

const NAME = 'syscalls'

const HELP = `usdtrace syscalls PID... [options]
usdtrace syscalls --binary PATH | --name PATTERN [options]

Prints the system calls of running processes (any program, not only Python) the way strace
does: the call with its arguments decoded, its result or error (= -1 ENOENT), and how long it
took, with the time since the start, the process (with several) and the thread. Calls already
in progress when the trace attaches are not shown; exit and exit_group are shown as they begin
(= ?). With -c, strace -c's summary instead: time, calls and errors per syscall.

Cost: the kernel runs a small program at every syscall of the machine to keep those of the
traced processes, and each of theirs is sent to usdtrace (-e keeps the others in the kernel).

Options:
  -e, --trace NAMES      only these syscalls, comma-separated (openat,read,connect); the
                         filter runs in the kernel
  -Z, --failed           only calls that failed
  -c, --summary          a table at the end (strace -c): % time, seconds, usecs/call, calls,
                         errors per syscall, by time
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m, 1h)
${STACKS_HELP}
${TARGET_HELP}
      --json             one JSON object per syscall, or with -c one per row (see docs/cli.md)
      --debug            stack traces on errors

Examples:
  usdtrace syscalls 4242
  usdtrace syscalls 4242 -e openat,newfstatat -Z     # the files it fails to find
  usdtrace syscalls --name gunicorn -c -d 10          # where every worker's kernel time goes
  usdtrace syscalls 4242 -e connect,sendto,recvfrom -d 10
  usdtrace syscalls 4242 -e openat -Z --stacks        # which Python code looks for missing files`

export const syscalls: Command = {
  name: NAME,
  summary: 'print the system calls of a process, decoded (strace)',
  help: HELP,
  options: {
    trace: { type: 'string', short: 'e' },
    failed: { type: 'boolean', short: 'Z' },
    summary: { type: 'boolean', short: 'c' },
    duration: { type: 'string', short: 'd' },
    ...STACKS_OPTION,
    ...TARGET_OPTIONS,
  },
  run: runSyscalls,
}

const TIME_WIDTH = 10
const TID_WIDTH = 7
const DURATION_WIDTH = 9

async function runSyscalls(run: Run, args: ParsedArgs): Promise<void> {
  const { values } = args
  const names = text(values, 'trace')
    ?.split(',')
    .map((name) => name.trim())
    .filter(Boolean)
  if (names !== undefined && names.length === 0) throw new UsageError('-e takes syscall names separated by commas, e.g. -e openat,read', NAME)
  const failedOnly = flag(values, 'failed')
  const stack = flag(values, 'stacks')
  const summary = flag(values, 'summary') ? new Summary() : undefined
  run.stopAfter(seconds(NAME, values, 'duration'))

  const targets = await resolveTargets(NAME, run, args, 'any')
  const pidColumn = targets.several ? (pid: number | string) => `${String(pid).padStart(TID_WIDTH)} ` : () => ''
  let startNs: bigint | undefined
  let events = 0
  let failed = 0
  const result = await traceAll(
    run,
    targets,
    {
      open: (target) => traceSyscalls({ ...target, ...(names && { names }), ...(stack && { stack }) }),
      what: `syscalls${names ? ` (${names.join(', ')})` : ''}`,
      attached: () => {
        if (run.json || summary) return
        run.out.line(run.out.paint('bold', `${'TIME(ms)'.padStart(TIME_WIDTH)} ${pidColumn('PID')}${'TID'.padStart(TID_WIDTH)} ${'DURATION'.padStart(DURATION_WIDTH)}  SYSCALL`))
      },
    },
    (event) => {
      events++
      if (event.errno !== undefined) failed++
      else if (failedOnly) return
      if (summary) return summary.add(event)
      startNs ??= event.timestampNs
      if (run.json) run.out.json(jsonEvent(event, startNs))
      else {
        run.out.line(line(run, event, startNs, pidColumn(event.pid)))
        printStack(run, event.stack, TIME_WIDTH + 1)
      }
    },
  )
  if (summary && run.reason !== 'output-closed') summary.print(run)
  run.summary([`${count(events, 'syscall')} (${failed.toLocaleString('en-US')} failed) in ${run.elapsed()}`, `${count(result.lost, 'event')} lost`, ...processesTraced(targets, result)])
}

/** strace -c: per syscall, the time spent in it, its calls and its errors. */
class Summary {
  readonly #rows = new Map<string, { ns: bigint; calls: number; errors: number }>()

  add(event: SyscallEvent): void {
    let row = this.#rows.get(event.name)
    if (row === undefined) this.#rows.set(event.name, (row = { ns: 0n, calls: 0, errors: 0 }))
    row.calls++
    row.ns += event.durationNs ?? 0n
    if (event.errno !== undefined) row.errors++
  }

  print(run: Run): void {
    const rows = [...this.#rows].sort((a, b) => (b[1].ns > a[1].ns ? 1 : b[1].ns < a[1].ns ? -1 : b[1].calls - a[1].calls))
    const total = rows.reduce((sum, [, row]) => ({ ns: sum.ns + row.ns, calls: sum.calls + row.calls, errors: sum.errors + row.errors }), { ns: 0n, calls: 0, errors: 0 })
    if (run.json) {
      for (const [name, row] of rows) run.out.json({ type: 'syscall-summary', name, calls: row.calls, errors: row.errors, totalNs: Number(row.ns) })
      return
    }
    const share = (ns: bigint) => (total.ns > 0n ? (100 * Number(ns)) / Number(total.ns) : 0).toFixed(2)
    const cells = (name: string, row: { ns: bigint; calls: number; errors: number }, perCall: boolean) =>
      `${share(row.ns).padStart(6)} ${(Number(row.ns) / 1e9).toFixed(6).padStart(11)} ${(perCall ? Math.round(Number(row.ns) / 1e3 / row.calls).toString() : '').padStart(11)} ${String(row.calls).padStart(9)} ${(row.errors > 0 ? String(row.errors) : '').padStart(9)} ${name}`
    const rule = '------ ----------- ----------- --------- --------- ----------------'
    run.out.line(run.out.paint('bold', '% time     seconds  usecs/call     calls    errors syscall'))
    run.out.line(rule)
    for (const [name, row] of rows) run.out.line(cells(name, row, true))
    run.out.line(rule)
    run.out.line(cells('total', total, false))
  }
}

function line(run: Run, event: SyscallEvent, startNs: bigint, pid: string): string {
  const time = formatMilliseconds(event.timestampNs - startNs).padStart(TIME_WIDTH)
  const tid = `${pid}${String(event.tid).padStart(TID_WIDTH)}`
  const duration = (event.durationNs === undefined ? '' : formatDuration(event.durationNs)).padStart(DURATION_WIDTH)
  const result = formatResult(event)
  const shown = event.errno !== undefined ? run.out.paint('red', result) : result
  return `${run.out.paint('dim', `${time} ${tid} ${duration}`)}  ${formatCall(event)} ${shown}`
}

function jsonEvent(event: SyscallEvent, startNs: bigint) {
  return {
    type: 'syscall',
    pid: event.pid,
    tid: event.tid,
    ns: Number(event.timestampNs - startNs),
    name: event.name,
    nr: event.nr,
    call: formatCall(event),
    args: event.args.map((arg) => `0x${arg.toString(16)}`),
    ret: event.ret === undefined ? null : event.ret.toString(),
    errno: event.errno ?? null,
    durationNs: event.durationNs === undefined ? null : Number(event.durationNs),
    path: event.path ?? null,
    stack: jsonStack(event.stack),
  }
}

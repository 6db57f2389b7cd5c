/**
 * `usdtrace syscalls PID`: the strace view. Every system call of a process as it returns, with
 * its arguments decoded, its result or error, and how long it took.
 */
import { formatDuration, formatMilliseconds, traceSyscalls, type SyscallEvent } from '../index.js'
import { flag, pid as parsePid, seconds, text, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { UsageError } from './errors.js'
import { attach, count, type Run } from './run.js'
import { formatCall, formatResult } from './syscall-format.js'

const NAME = 'syscalls'

const HELP = `usdtrace syscalls PID [options]

Prints the system calls of a running process (any program, not only Python) the way strace
does: the call with its arguments decoded, its result or error (= -1 ENOENT), and how long it
took, with the time since the start and the thread. Calls already in progress when the trace
attaches are not shown; exit and exit_group are shown as they begin (= ?).

Options:
  -e, --trace NAMES      only these syscalls, comma-separated (openat,read,connect); the
                         filter runs in the kernel
  -Z, --failed           only calls that failed
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m)
      --json             one JSON object per syscall (see the README for the schema)
      --debug            stack traces on errors

Examples:
  usdtrace syscalls 4242
  usdtrace syscalls 4242 -e openat,newfstatat -Z     # the files it fails to find
  usdtrace syscalls 4242 -e connect,sendto,recvfrom -d 10`

export const syscalls: Command = {
  name: NAME,
  summary: 'print the system calls of a process, decoded (strace)',
  help: HELP,
  options: {
    trace: { type: 'string', short: 'e' },
    failed: { type: 'boolean', short: 'Z' },
    duration: { type: 'string', short: 'd' },
  },
  run: runSyscalls,
}

const TIME_WIDTH = 10
const TID_WIDTH = 7
const DURATION_WIDTH = 9

async function runSyscalls(run: Run, args: ParsedArgs): Promise<void> {
  const { values, positionals } = args
  if (positionals.length !== 1) throw new UsageError('give the PID of the process to trace (`usdtrace ps -a` lists them)', NAME)
  const pid = parsePid(NAME, positionals[0]!)
  const names = text(values, 'trace')
    ?.split(',')
    .map((name) => name.trim())
    .filter(Boolean)
  if (names !== undefined && names.length === 0) throw new UsageError('-e takes syscall names separated by commas, e.g. -e openat,read', NAME)
  const failedOnly = flag(values, 'failed')

  const trace = traceSyscalls(pid, names === undefined ? {} : { names })
  await attach(run, trace, `syscalls of ${pid}${names ? ` (${names.join(', ')})` : ''}`)
  run.stopAfter(seconds(NAME, values, 'duration'))
  if (!run.json) {
    run.out.line(run.out.paint('bold', `${'TIME(ms)'.padStart(TIME_WIDTH)} ${'TID'.padStart(TID_WIDTH)} ${'DURATION'.padStart(DURATION_WIDTH)}  SYSCALL`))
  }
  let startNs: bigint | undefined
  let events = 0
  let failed = 0
  for await (const event of trace) {
    events++
    if (event.errno !== undefined) failed++
    else if (failedOnly) continue
    startNs ??= event.timestampNs
    if (run.json) run.out.json(jsonEvent(event, startNs))
    else run.out.line(line(run, event, startNs))
  }
  if (run.reason === undefined) run.stop('target-exited')
  await trace.close()
  run.summary([`${count(events, 'syscall')} (${failed.toLocaleString('en-US')} failed) in ${run.elapsed()}`, `${count(trace.lost, 'event')} lost`])
}

function line(run: Run, event: SyscallEvent, startNs: bigint): string {
  const time = formatMilliseconds(event.timestampNs - startNs).padStart(TIME_WIDTH)
  const tid = String(event.tid).padStart(TID_WIDTH)
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
  }
}

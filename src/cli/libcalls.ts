/**
 * `usdtrace libcalls PID -e SYMBOLS`: the ltrace view. Calls into a shared library's functions,
 * each as it returns, with its first arguments, return value and duration, indented by depth.
 */
import { formatDuration, formatMilliseconds, traceLibraryCalls, type LibraryCallEvent } from '../index.js'
import { integer, pid as parsePid, seconds, text, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { UsageError } from './errors.js'
import { attach, count, type Run } from './run.js'

const NAME = 'libcalls'

const HELP = `usdtrace libcalls PID -e SYMBOLS [options]

Prints the calls a process makes into a shared library's functions (ltrace), each as it
returns: the function, its first arguments (integer registers: small values in decimal, others
in hex), its return value, how long it took, indented by the traced calls around it.

Options:
  -e, --symbols NAMES    the functions, comma-separated, with * and ? globs ('pthread_mutex_*',
                         write,read); required: a probe on every function of a library would
                         slow the process down and take minutes to attach
  -l, --library LIB      the library: a name matched against the process's mapped files ('libc',
                         'libssl.so.3') or a path (default libc)
      --args N           how many arguments to show (default 3, at most 6)
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m)
      --json             one JSON object per call (see the README for the schema)
      --debug            stack traces on errors

Examples:
  usdtrace libcalls 4242 -e 'pthread_mutex_*'
  usdtrace libcalls 4242 -l libssl -e 'SSL_read,SSL_write' -d 10
  usdtrace libcalls 4242 -e malloc,free --args 1`

export const libcalls: Command = {
  name: NAME,
  summary: 'print calls into shared-library functions (ltrace)',
  help: HELP,
  options: {
    symbols: { type: 'string', short: 'e' },
    library: { type: 'string', short: 'l' },
    args: { type: 'string' },
    duration: { type: 'string', short: 'd' },
  },
  run: runLibcalls,
}

async function runLibcalls(run: Run, args: ParsedArgs): Promise<void> {
  const { values, positionals } = args
  if (positionals.length !== 1) throw new UsageError('give the PID of the process to trace (`usdtrace ps -a` lists them)', NAME)
  const pid = parsePid(NAME, positionals[0]!)
  const symbols = text(values, 'symbols')
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  if (!symbols || symbols.length === 0) {
    throw new UsageError("say which functions to trace with -e, e.g. -e 'pthread_mutex_*' or -e write,read", NAME)
  }
  const library = text(values, 'library') ?? 'libc'
  const shown = integer(NAME, values, 'args', 3, 0)
  if (shown > 6) throw new UsageError(`--args takes at most 6 (the integer argument registers), got ${shown}`, NAME)

  const trace = traceLibraryCalls(pid, { library, symbols })
  await attach(run, trace, `${symbols.join(', ')} of ${library} in process ${pid}`)
  run.stopAfter(seconds(NAME, values, 'duration'))
  if (!run.json) run.out.line(run.out.paint('bold', `${'TIME(ms)'.padStart(10)} ${'TID'.padStart(7)} ${'DURATION'.padStart(9)}  CALL`))
  let startNs: bigint | undefined
  let calls = 0
  for await (const event of trace) {
    calls++
    startNs ??= event.timestampNs
    if (run.json) run.out.json(jsonCall(event, startNs))
    else {
      const head = `${formatMilliseconds(event.timestampNs - startNs).padStart(10)} ${String(event.tid).padStart(7)} ${formatDuration(event.durationNs).padStart(9)}`
      const call = `${'  '.repeat(event.depth)}${event.symbol}(${event.args.slice(0, shown).map(integerText).join(', ')}) = ${event.returnValue}`
      run.out.line(`${run.out.paint('dim', head)}  ${call}`)
    }
  }
  if (run.reason === undefined) run.stop('target-exited')
  await trace.close()
  run.summary([`${count(calls, 'call')} in ${run.elapsed()}`, `${count(trace.lost, 'call')} lost`])
}

/** A register as a person reads it: small and negative numbers in decimal, addresses and flags in hex. */
function integerText(value: bigint): string {
  const signed = BigInt.asIntN(64, value)
  if (signed >= -4096n && signed <= 65535n) return signed.toString()
  return `0x${value.toString(16)}`
}

function jsonCall(event: LibraryCallEvent, startNs: bigint) {
  return {
    type: 'libcall',
    pid: event.pid,
    tid: event.tid,
    ns: Number(event.timestampNs - startNs),
    library: event.library,
    symbol: event.symbol,
    args: event.args.map((arg) => `0x${arg.toString(16)}`),
    returnValue: event.returnValue.toString(),
    durationNs: Number(event.durationNs),
    depth: event.depth,
  }
}

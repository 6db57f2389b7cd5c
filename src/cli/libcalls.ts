/**
 * `usdtrace libcalls PID... -e SYMBOLS`: the ltrace view. Calls into a shared library's
 * functions with their first arguments, return value and duration, indented by depth; a call
 * and the calls made inside it are printed together, in the order they began, once it returned.
 */
import { formatDuration, formatMilliseconds, traceLibraryCalls, type LibraryCallEvent } from '../index.js'
import { flag, integer, seconds, text, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { UsageError } from './errors.js'
import { count, type Run } from './run.js'
import { TARGET_OPTIONS, resolveTargets } from './target.js'
import { processesTraced, traceAll } from './traces.js'
import { STACKS_HELP, STACKS_OPTION, jsonStack, printStack } from './stack-lines.js'

const NAME = 'libcalls'

const HELP = `usdtrace libcalls PID... -e SYMBOLS [options]
usdtrace libcalls --name PATTERN -e SYMBOLS [options]
usdtrace libcalls --binary LIBRARY -e SYMBOLS [options]

Prints the calls processes make into a shared library's functions (ltrace): the function, its
first arguments (integer registers: small values in decimal, others in hex), its return value
(the same way; none for functions known to return nothing, such as free), how long it took,
indented by the traced calls around it. A call is printed once it returned, with the traced
calls made inside it under it, in the order they began.

Cost: every traced call traps into the kernel twice (entry and return uprobes); choose -e
narrowly around hot functions (malloc, free).

Options:
  -e, --symbols NAMES    the functions, comma-separated, with * and ? globs ('pthread_mutex_*',
                         write,read); required: a probe on every function of a library would
                         slow the process down and take minutes to attach
  -l, --library LIB      the library: a name matched against the process's mapped files ('libc',
                         'libssl.so.3') or a path (default libc)
      --args N           how many arguments to show (default 3, at most 6)
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m, 1h)
${STACKS_HELP}
      --binary LIBRARY   the library (or program) itself, in every process that maps it, now
                         and later (-l is then left out)
      --name PATTERN     the processes whose name or command line matches PATTERN (a regular
                         expression, like pgrep -f), and those that match later
      --json             one JSON object per call (see docs/cli.md for the schema)
      --debug            stack traces on errors

Examples:
  usdtrace libcalls 4242 -e 'pthread_mutex_*'
  usdtrace libcalls 4242 -l libssl -e 'SSL_read,SSL_write' -d 10
  usdtrace libcalls 4242 -e malloc,free --args 1
  usdtrace libcalls 4242 -l libssl -e SSL_write --stacks   # which Python code writes`

export const libcalls: Command = {
  name: NAME,
  summary: 'print calls into shared-library functions (ltrace)',
  help: HELP,
  options: {
    symbols: { type: 'string', short: 'e' },
    library: { type: 'string', short: 'l' },
    args: { type: 'string' },
    duration: { type: 'string', short: 'd' },
    ...STACKS_OPTION,
    ...TARGET_OPTIONS,
  },
  run: runLibcalls,
}

async function runLibcalls(run: Run, args: ParsedArgs): Promise<void> {
  const { values } = args
  const symbols = text(values, 'symbols')
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  if (!symbols || symbols.length === 0) {
    throw new UsageError("say which functions to trace with -e, e.g. -e 'pthread_mutex_*' or -e write,read", NAME)
  }
  const binary = text(values, 'binary')
  if (binary !== undefined && text(values, 'library') !== undefined) {
    throw new UsageError('--binary names the library itself: leave -l out (or give PIDs or --name with -l)', NAME)
  }
  const library = binary ?? text(values, 'library') ?? 'libc'
  const shown = integer(NAME, values, 'args', 3, 0)
  if (shown > 6) throw new UsageError(`--args takes at most 6 (the integer argument registers), got ${shown}`, NAME)
  run.stopAfter(seconds(NAME, values, 'duration'))

  const stack = flag(values, 'stacks')
  const targets = await resolveTargets(NAME, run, args, 'any')
  const pidColumn = targets.several ? (pid: number | string) => `${String(pid).padStart(7)} ` : () => ''
  let startNs: bigint | undefined
  let calls = 0
  const nests = new Nests()
  const print = (event: LibraryCallEvent) => {
    startNs ??= event.timestampNs
    if (run.json) return run.out.json(jsonCall(event, startNs))
    const head = `${formatMilliseconds(event.timestampNs - startNs).padStart(10)} ${pidColumn(event.pid)}${String(event.tid).padStart(7)} ${formatDuration(event.durationNs).padStart(9)}`
    const result = RETURNS_NOTHING.has(event.symbol) ? '' : ` = ${integerText(event.returnValue)}`
    const call = `${'  '.repeat(event.depth)}${event.symbol}(${event.args.slice(0, shown).map(integerText).join(', ')})${result}`
    run.out.line(`${run.out.paint('dim', head)}  ${call}`)
    printStack(run, event.stack, 11)
  }
  const result = await traceAll(
    run,
    targets,
    {
      open: (target) => traceLibraryCalls({ ...(binary !== undefined ? { binary } : { ...target, library }), symbols, ...(stack && { stack }) }),
      what: `${symbols.join(', ')} of ${library}`,
      attached: () => {
        if (!run.json) run.out.line(run.out.paint('bold', `${'TIME(ms)'.padStart(10)} ${pidColumn('PID')}${'TID'.padStart(7)} ${'DURATION'.padStart(9)}  CALL`))
      },
    },
    (event) => {
      calls++
      for (const call of nests.add(event)) print(call)
    },
  )
  // Outer calls still running at the end: their inner calls are all that is known.
  if (run.reason !== 'output-closed') for (const call of nests.rest()) print(call)
  run.summary([`${count(calls, 'call')} in ${run.elapsed()}`, `${count(result.lost, 'call')} lost`, ...processesTraced(targets, result)])
}

/**
 * A call arrives when it returns, after the calls made inside it: each thread's nest is held
 * until its outermost call returns, then given out in the order the calls began.
 */
class Nests {
  readonly #held = new Map<number, LibraryCallEvent[]>()

  add(event: LibraryCallEvent): LibraryCallEvent[] {
    const held = this.#held.get(event.tid)
    if (event.depth > 0) {
      if (held) held.push(event)
      else this.#held.set(event.tid, [event])
      return []
    }
    if (!held) return [event]
    this.#held.delete(event.tid)
    return byStart([...held, event])
  }

  rest(): LibraryCallEvent[] {
    const rest = [...this.#held.values()].flat()
    this.#held.clear()
    return byStart(rest)
  }
}

function byStart(calls: LibraryCallEvent[]): LibraryCallEvent[] {
  return calls.sort((a, b) => (a.timestampNs < b.timestampNs ? -1 : a.timestampNs > b.timestampNs ? 1 : a.depth - b.depth))
}

/** Functions of the C library and its neighbours declared to return nothing (void): no return value to show. */
const RETURNS_NOTHING = new Set([
  'free', 'cfree', 'exit', '_exit', '_Exit', 'abort', 'perror', 'rewind', 'clearerr', 'setbuf', 'setbuffer', 'setlinebuf',
  'srand', 'srandom', 'srand48', 'qsort', 'qsort_r', 'syslog', 'vsyslog', 'openlog', 'closelog', 'freeaddrinfo',
  'freeifaddrs', 'longjmp', 'siglongjmp', '_longjmp', 'flockfile', 'funlockfile', 'freelocale', 'endpwent', 'setpwent',
  'endgrent', 'setgrent', 'pthread_exit', 'pthread_testcancel', 'pthread_cleanup_push', 'pthread_cleanup_pop',
  'globfree', 'regfree', 'tdestroy', 'swab', 'psignal', 'herror', 'err', 'errx', 'warn', 'warnx', 'verr', 'verrx',
  'vwarn', 'vwarnx', '__stack_chk_fail', '__assert_fail', 'explicit_bzero', 'bzero', 'sync', 'endservent', 'endhostent',
])

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
    returnValue: RETURNS_NOTHING.has(event.symbol) ? null : event.returnValue.toString(),
    durationNs: Number(event.durationNs),
    depth: event.depth,
    stack: jsonStack(event.stack),
  }
}

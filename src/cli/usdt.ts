/**
 * `usdtrace usdt PID...|PATH provider:name`: any USDT probe, one line per hit with its arguments
 * decoded by the given types (by default by their sizes in the probe's notes), like a bpftrace
 * one-liner.
 */
import { formatMilliseconds, listProbes, traceUsdt, type UsdtArgType, type UsdtEvent } from '../index.js'
import { seconds, text, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { UsageError } from './errors.js'
import { probeArguments } from './probes.js'
import { count, type Run } from './run.js'
import { TARGET_HELP, TARGET_OPTIONS, resolveTargets } from './target.js'
import { processesTraced, traceAll } from './traces.js'

const NAME = 'usdt'
const TYPES: readonly UsdtArgType[] = ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'u64', 'i64', 'ptr', 'str']

const HELP = `usdtrace usdt PID... PROVIDER:NAME [options]
usdtrace usdt PATH PROVIDER:NAME [options]
usdtrace usdt --name PATTERN PROVIDER:NAME [options]

Prints every hit of one USDT probe with its arguments, like the bpftrace one-liner
  bpftrace -e 'usdt:PATH:PROVIDER:NAME { printf("%s\\n", str(arg0)); }'
With PIDs: those processes (the probe is looked for in every file each has mapped), until they
exit. With a PATH (an executable or library, or --binary PATH): every process running or
mapping it, now and later, until Ctrl-C. \`usdtrace probes PID|PATH\` lists the probes and their
arguments. Each hit costs its process a uprobe trap into the kernel. CPython 3.11 fires
python:function__entry only while its line probe's semaphore is raised, so tracing that probe
raises it, which slows every call of the traced processes several times.

Options:
  -a, --args TYPES       how to decode the first arguments, comma-separated, from u8 i8 u16 i16
                         u32 i32 u64 i64 ptr str (a NUL-terminated string the argument points
                         to); default: integers of the sizes the probe declares
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m, 1h)
${TARGET_HELP}
      --json             one JSON object per hit (see docs/cli.md for the schema)
      --debug            stack traces on errors

Examples:
  usdtrace usdt /usr/lib/postgresql/15/bin/postgres postgresql:query__start --args str
  usdtrace usdt 4242 python:gc__start
  usdtrace usdt 4242 libstdcxx:throw --args ptr,ptr`

export const usdt: Command = {
  name: NAME,
  summary: 'print the hits of any USDT probe with typed arguments (bpftrace one-liner)',
  help: HELP,
  options: {
    args: { type: 'string', short: 'a' },
    duration: { type: 'string', short: 'd' },
    ...TARGET_OPTIONS,
  },
  run: runUsdt,
}

async function runUsdt(run: Run, args: ParsedArgs): Promise<void> {
  const probe = args.positionals.at(-1)
  const subjects = args.positionals.slice(0, -1)
  if (probe === undefined || !probe.includes(':')) {
    throw new UsageError('give PIDs (or a PATH, --binary or --name) and one probe as PROVIDER:NAME (`usdtrace probes PID|PATH` lists them)', NAME)
  }
  const colon = probe.indexOf(':')
  if (colon <= 0 || colon === probe.length - 1) throw new UsageError(`'${probe}' is not PROVIDER:NAME, e.g. python:gc__start`, NAME)
  const provider = probe.slice(0, colon)
  const name = probe.slice(colon + 1)
  // A PATH is --binary in other words.
  const path = subjects.length === 1 && !/^\d+$/.test(subjects[0]!) ? subjects[0] : undefined
  const targets = await resolveTargets(NAME, run, path === undefined ? { ...args, positionals: subjects } : { ...args, positionals: [], values: { ...args.values, binary: path } }, 'any')
  const where = targets.initial.binary ?? targets.initial.pids![0]!
  const types = argumentTypes(text(args.values, 'args')) ?? (await declaredTypes(where, provider, name))
  run.stopAfter(seconds(NAME, args.values, 'duration'))
  let startNs: bigint | undefined
  let hits = 0
  const result = await traceAll(
    run,
    targets,
    {
      open: (target) => traceUsdt({ ...target, provider, name, args: types }),
      what: `${probe}${types.length > 0 ? ` (${types.join(', ')})` : ''}`,
      attached: () => {
        if (!run.json) run.out.line(run.out.paint('bold', `${'TIME(ms)'.padStart(10)} ${'PID'.padStart(7)} ${'TID'.padStart(7)}  ${'PROBE'.padEnd(probe.length)}  ARGUMENTS`))
      },
    },
    (event) => {
      hits++
      startNs ??= event.timestampNs
      if (run.json) return run.out.json(jsonHit(event, startNs))
      const head = `${formatMilliseconds(event.timestampNs - startNs).padStart(10)} ${String(event.pid).padStart(7)} ${String(event.tid).padStart(7)}`
      run.out.line(`${run.out.paint('dim', head)}  ${event.provider}:${event.name}  ${event.args.map(formatArgument).join(' ')}${event.truncated ? ' (cut)' : ''}`)
    },
  )
  run.summary([`${count(hits, 'hit')} in ${run.elapsed()}`, `${count(result.lost, 'event')} lost`, ...processesTraced(targets, result)])
}

function argumentTypes(value: string | undefined): UsdtArgType[] | undefined {
  if (value === undefined) return undefined
  const types = value.split(',').map((type) => type.trim())
  for (const type of types) {
    if (!(TYPES as readonly string[]).includes(type)) throw new UsageError(`--args: '${type}' is not one of ${TYPES.join(', ')}`, NAME)
  }
  return types as UsdtArgType[]
}

/** The probe's arguments as integers of their declared sizes; none if the probe is not found (traceUsdt then says so). */
async function declaredTypes(subject: number | string, provider: string, name: string): Promise<UsdtArgType[]> {
  const probe = (await listProbes(subject)).find((p) => p.provider === provider && p.name === name)
  return probe ? probeArguments(probe).map((a) => a.type as UsdtArgType) : []
}

function formatArgument(value: number | bigint | string): string {
  return typeof value === 'string' ? JSON.stringify(value) : value.toString()
}

function jsonHit(event: UsdtEvent, startNs: bigint) {
  return {
    type: 'usdt',
    pid: event.pid,
    tid: event.tid,
    ns: Number(event.timestampNs - startNs),
    provider: event.provider,
    name: event.name,
    args: event.args.map((value) => (typeof value === 'bigint' ? value.toString() : value)),
    truncated: event.truncated,
  }
}

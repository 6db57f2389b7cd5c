/**
 * `usdtrace usdt PID|PATH provider:name`: any USDT probe, one line per hit with its arguments
 * decoded by the given types (by default by their sizes in the probe's notes), like a bpftrace
 * one-liner.
 */
import { formatMilliseconds, listProbes, traceUsdt, type TraceUsdtOptions, type UsdtArgType, type UsdtEvent } from '../index.js'
import { pid as parsePid, seconds, text, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { UsageError } from './errors.js'
import { probeArguments } from './probes.js'
import { attach, count, type Run } from './run.js'

const NAME = 'usdt'
const TYPES: readonly UsdtArgType[] = ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'u64', 'i64', 'ptr', 'str']

const HELP = `usdtrace usdt PID|PATH PROVIDER:NAME [options]

Prints every hit of one USDT probe with its arguments, like the bpftrace one-liner
  bpftrace -e 'usdt:PATH:PROVIDER:NAME { printf("%s\\n", str(arg0)); }'
With a PID: that process (the probe is looked for in every file it has mapped), until it exits.
With a PATH (an executable or library): every process running or mapping it, now and later,
until Ctrl-C. \`usdtrace probes PID|PATH\` lists the probes and their arguments.

Options:
  -a, --args TYPES       how to decode the first arguments, comma-separated, from u8 i8 u16 i16
                         u32 i32 u64 i64 ptr str (a NUL-terminated string the argument points
                         to); default: integers of the sizes the probe declares
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m)
      --json             one JSON object per hit (see the README for the schema)
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
  },
  run: runUsdt,
}

async function runUsdt(run: Run, args: ParsedArgs): Promise<void> {
  const [subject, probe, ...rest] = args.positionals
  if (subject === undefined || probe === undefined || rest.length > 0) {
    throw new UsageError('give a PID or PATH and one probe as PROVIDER:NAME (`usdtrace probes PID|PATH` lists them)', NAME)
  }
  const colon = probe.indexOf(':')
  if (colon <= 0 || colon === probe.length - 1) throw new UsageError(`'${probe}' is not PROVIDER:NAME, e.g. python:gc__start`, NAME)
  const provider = probe.slice(0, colon)
  const name = probe.slice(colon + 1)
  const target: Pick<TraceUsdtOptions, 'pid' | 'path'> = /^\d+$/.test(subject) ? { pid: parsePid(NAME, subject) } : { path: subject }
  const types = argumentTypes(text(args.values, 'args')) ?? (await declaredTypes(target.pid ?? target.path!, provider, name))

  const trace = traceUsdt({ ...target, provider, name, args: types })
  const where = target.pid !== undefined ? `process ${target.pid}` : `every process of ${target.path}`
  await attach(run, trace, `${probe} in ${where}${types.length > 0 ? ` (${types.join(', ')})` : ''}`)
  run.stopAfter(seconds(NAME, args.values, 'duration'))
  if (!run.json) run.out.line(run.out.paint('bold', `${'TIME(ms)'.padStart(10)} ${'PID'.padStart(7)} ${'TID'.padStart(7)}  ${'PROBE'.padEnd(probe.length)}  ARGUMENTS`))
  let startNs: bigint | undefined
  let hits = 0
  for await (const event of trace) {
    hits++
    startNs ??= event.timestampNs
    if (run.json) run.out.json(jsonHit(event, startNs))
    else {
      const head = `${formatMilliseconds(event.timestampNs - startNs).padStart(10)} ${String(event.pid).padStart(7)} ${String(event.tid).padStart(7)}`
      run.out.line(`${run.out.paint('dim', head)}  ${event.provider}:${event.name}  ${event.args.map(formatArgument).join(' ')}${event.truncated ? ' (cut)' : ''}`)
    }
  }
  if (run.reason === undefined) run.stop('target-exited')
  await trace.close()
  run.summary([`${count(hits, 'hit')} in ${run.elapsed()}`, `${count(trace.lost, 'event')} lost`])
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

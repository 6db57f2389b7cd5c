/**
 * `usdtrace agent`: the long-running agent for a host (src/agent/). Its options, checked before
 * anything is attached (a bad one, an address it cannot listen on or an exporter endpoint it
 * cannot reach is one line and exit 1 or 2); then it runs until SIGTERM or Ctrl-C, and reloads
 * its rules on SIGHUP as daemons do.
 */
import { Agent, type AgentTargets } from '../agent/agent.js'
import { readRules } from '../agent/labels.js'
import { metricsUrl, parseListenAddress, serveMetrics } from '../agent/server.js'
import { flag, integer, pid as parsePid, seconds, text, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { CliError, UsageError } from './errors.js'
import type { Run } from './run.js'

const NAME = 'agent'
const DEFAULT_LISTEN = '127.0.0.1:9464'
const DEFAULT_SAMPLE_HZ = 99
// stackProfile's own ceiling: a typo (99999) is an error here, before anything is attached.
const MAX_SAMPLE_HZ = 10_000

const HELP = `usdtrace agent [options]

Follows the Python processes of this host, those started later included, and exposes what they
do for the engines a team already runs: Prometheus metrics on --listen, slow calls as
OpenTelemetry traces (--otlp-endpoint), sampled and call-time profiles as pprof
(--pprof-endpoint, Pyroscope's /ingest). Runs until SIGTERM or Ctrl-C; SIGHUP reloads --rules.
The reference is docs/agent.md; a systemd unit ships in the package
(systemd/usdtrace-agent.service).

Which processes (default: every Python process, rescanned every --rescan):
      --binary PATH       those running this python executable or libpython, now and later
      --pid PIDS          these processes (comma-separated, or the option repeated)

Options:
      --listen ADDR       where to serve /metrics (default ${DEFAULT_LISTEN}; 0.0.0.0:9464 for every
                          interface; port 0 picks one). The endpoint is read-only
  -i, --interval SECS     how often the kernel's counts are read (default 5)
      --top N             functions with a series of their own (default 20; the rest: function="(other)")
      --latency           time every call for usdtrace_python_function_duration_seconds; on CPython
                          3.11 this raises the line semaphore, which slows the processes followed
      --no-syscalls       do not count syscalls (they are streamed from the kernel per call)
      --otlp-endpoint URL send calls slower than --slow as spans, OTLP/HTTP protobuf
                          (e.g. http://127.0.0.1:4318/v1/traces); traces every call with entries
      --slow MS           the span threshold in milliseconds (default 100)
      --pprof-endpoint URL  push pprofs per process every --profile-interval (Pyroscope: .../ingest):
                          sampled stacks of every Python (probes or not), and call-time profiles
                          of those with probes (which trace every call with entries)
      --profile-interval SECS  (default 15)
      --sample-hz N       stack samples a second of each CPU (default ${DEFAULT_SAMPLE_HZ} with
                          --pprof-endpoint, else 0: none); without an endpoint, for the metrics alone
      --off-cpu           sample waits too: profiles gain wall time (CPU time and time waited)
      --no-call-profiles  push the sampled profiles alone, without the call stream's cost
      --rules FILE        service names: [{ "match": REGEX, "service": NAME }, ...] tried on the command line
      --rescan SECS       how often to look for new interpreters and exited processes (default 10)
      --linger SECS       how long an exited process's series stay, to be scraped (default 60)
      --debug             stack traces on errors

Examples:
  usdtrace agent
  usdtrace agent --binary /usr/bin/python3.11 --listen 0.0.0.0:9464
  usdtrace agent --pid 4242,4243 --otlp-endpoint http://127.0.0.1:4318/v1/traces --slow 50
  usdtrace agent --pprof-endpoint http://127.0.0.1:4040/ingest --off-cpu`

export const agent: Command = {
  name: NAME,
  summary: 'follow every Python process: Prometheus metrics, OpenTelemetry spans, pprof pushes',
  help: HELP,
  options: {
    binary: { type: 'string' },
    pid: { type: 'string', multiple: true },
    listen: { type: 'string' },
    interval: { type: 'string', short: 'i' },
    top: { type: 'string' },
    latency: { type: 'boolean' },
    'no-syscalls': { type: 'boolean' },
    'otlp-endpoint': { type: 'string' },
    slow: { type: 'string' },
    'pprof-endpoint': { type: 'string' },
    'profile-interval': { type: 'string' },
    'sample-hz': { type: 'string' },
    'off-cpu': { type: 'boolean' },
    'no-call-profiles': { type: 'boolean' },
    rules: { type: 'string' },
    rescan: { type: 'string' },
    linger: { type: 'string' },
  },
  run: runAgent,
}

function targetsOf(args: ParsedArgs): AgentTargets {
  const binary = text(args.values, 'binary')
  const pids = ((args.values.pid as string[] | undefined) ?? []).flatMap((list) => list.split(',')).filter(Boolean)
  if (args.positionals.length > 0) throw new UsageError(`name processes with --pid or --binary, not '${args.positionals[0]}'`, NAME)
  if (binary !== undefined && pids.length > 0) throw new UsageError('give --binary or --pid, not both', NAME)
  if (binary !== undefined) return { binary }
  if (pids.length > 0) return { pids: [...new Set(pids.map((p) => parsePid(NAME, p)))] }
  return { host: true }
}

/** An exporter endpoint: an http(s) URL that answers (any HTTP status does; no answer is the error). */
async function endpoint(args: ParsedArgs, option: string, example: string): Promise<string | undefined> {
  const value = text(args.values, option)
  if (value === undefined) return undefined
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new UsageError(`--${option} takes a URL such as ${example}, got '${value}'`, NAME)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--${option} takes an http or https URL such as ${example}, got '${value}'`, NAME)
  try {
    const response = await fetch(url, { method: 'POST', body: new Uint8Array(0), signal: AbortSignal.timeout(5000) })
    await response.arrayBuffer()
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name
    throw new CliError(`cannot reach --${option} ${value} (${cause}); start the receiver or correct the URL, e.g. ${example}`)
  }
  return value
}

/** --slow MS as nanoseconds. */
function slowNs(args: ParsedArgs): bigint {
  const value = text(args.values, 'slow')
  if (value === undefined) return 100_000_000n
  if (!/^\d+(\.\d+)?$/.test(value) || !(Number(value) > 0)) throw new UsageError(`--slow takes milliseconds (e.g. 100, 2.5), got '${value}'`, NAME)
  return BigInt(Math.round(Number(value) * 1e6))
}

/** --sample-hz: what it says, else the default when profiles are pushed; 0 turns sampling off. */
function sampleHz(args: ParsedArgs, pushing: boolean): number {
  const hz = integer(NAME, args.values, 'sample-hz', pushing ? DEFAULT_SAMPLE_HZ : 0, 0)
  if (hz > MAX_SAMPLE_HZ) throw new UsageError(`--sample-hz takes at most ${MAX_SAMPLE_HZ} samples a second, got ${hz}`, NAME)
  if (hz === 0 && flag(args.values, 'off-cpu')) throw new UsageError('--off-cpu samples waits: give --pprof-endpoint or --sample-hz N too', NAME)
  return hz
}

async function runAgent(run: Run, args: ParsedArgs): Promise<void> {
  const { values } = args
  const targets = targetsOf(args)
  const listenText = text(values, 'listen') ?? DEFAULT_LISTEN
  const listen = parseListenAddress(listenText)
  if (!listen) throw new UsageError(`--listen takes HOST:PORT (e.g. ${DEFAULT_LISTEN}, [::1]:9464), got '${listenText}'`, NAME)
  const rulesFile = text(values, 'rules')
  const pushing = text(values, 'pprof-endpoint') !== undefined
  const hz = sampleHz(args, pushing)
  const callProfiles = !flag(values, 'no-call-profiles')
  if (pushing && hz === 0 && !callProfiles) throw new UsageError('--sample-hz 0 and --no-call-profiles leave --pprof-endpoint nothing to push', NAME)
  const instance = new Agent({
    targets,
    intervalMs: (seconds(NAME, values, 'interval') ?? 5) * 1000,
    rescanMs: (seconds(NAME, values, 'rescan') ?? 10) * 1000,
    lingerMs: (seconds(NAME, values, 'linger') ?? 60) * 1000,
    topFunctions: integer(NAME, values, 'top', 20),
    latency: flag(values, 'latency'),
    syscalls: !flag(values, 'no-syscalls'),
    otlpUrl: await endpoint(args, 'otlp-endpoint', 'http://127.0.0.1:4318/v1/traces'),
    slowNs: slowNs(args),
    pprofUrl: await endpoint(args, 'pprof-endpoint', 'http://127.0.0.1:4040/ingest'),
    profileIntervalMs: (seconds(NAME, values, 'profile-interval') ?? 15) * 1000,
    callProfiles,
    sampleHz: hz,
    offCpu: flag(values, 'off-cpu'),
    rules: rulesFile === undefined ? [] : readRules(rulesFile),
    log: (line) => run.status.note(line),
  })
  // Listening first: an address that cannot be had fails before anything is attached.
  const server = await serveMetrics(instance.metrics.registry, listen)
  // A hangup reloads the rules instead of ending the agent, as daemons do (systemd's ExecReload).
  for (const handler of process.listeners('SIGHUP')) process.off('SIGHUP', handler)
  const reload = () => {
    if (rulesFile === undefined) return run.status.note('SIGHUP: no --rules to reload')
    try {
      instance.reload(readRules(rulesFile))
      run.status.note(`reloaded the rules in ${rulesFile}`)
    } catch (error) {
      run.status.note(`kept the rules in force: ${(error as Error).message}`)
    }
  }
  process.on('SIGHUP', reload)
  try {
    run.status.progress('attaching...')
    await instance.start()
    run.tracing()
    if (instance.metrics.followed.length === 0 && 'host' in targets) run.status.note('no Python process yet; rescanning every --rescan')
    run.status.note(`serving ${metricsUrl(server)} (read-only); SIGHUP reloads --rules, SIGTERM or Ctrl-C stops`)
    await new Promise<void>((resolve) => run.onStop(() => resolve()))
  } finally {
    process.off('SIGHUP', reload)
    await instance.stop()
    await new Promise((resolve) => server.close(resolve))
  }
  run.summary([`followed ${instance.metrics.followed.length} processes at the end`, `ran ${run.elapsed()}`, 'every probe detached'])
}

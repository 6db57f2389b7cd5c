/**
 * `usdtrace record PID -o FILE`: a recording of every call to open in speedscope, Perfetto
 * (Chrome trace-event JSON), flame graph tools (folded stacks), jq (NDJSON) or go tool pprof.
 */
import { CallTimeline, callTimeProfile, chromeTrace, foldedStacks, ndjsonLine, pprofProfile, speedscopeFile } from '../index.js'
import { choice, flag, seconds, text, type ParsedArgs } from './args.js'
import { callStreamSummary, streamCalls } from './callstream.js'
import type { Command } from './command.js'
import { COSTS } from './costs.js'
import { UsageError } from './errors.js'
import { count, type Run } from './run.js'
import { SPAWN_HELP, SPAWN_OPTIONS, TARGET_HELP, TARGET_OPTIONS } from './target.js'
import { OutputFile } from './write.js'

const NAME = 'record'
const FORMATS = ['speedscope', 'perfetto', 'folded', 'ndjson', 'pprof'] as const
type Format = (typeof FORMATS)[number]

const HELP = `usdtrace record PID... -o FILE [options]
usdtrace record --binary PATH | --name PATTERN -o FILE [options]
usdtrace record -o FILE [options] -- CMD [ARGS...]

Records every Python call of a process until it exits, Ctrl-C or -d, and writes it as:
  speedscope  speedscope's file format: one timeline per thread (https://www.speedscope.app)
  perfetto    Chrome trace-event JSON, B/E pairs per thread (https://ui.perfetto.dev, chrome://tracing)
  folded      folded stacks, "outer;inner;leaf weight" (flamegraph.pl, inferno, speedscope)
  ndjson      one JSON object per call event (jq; schema in docs/cli.md)
  pprof       gzipped profile.proto: calls and self time per stack (go tool pprof, Pyroscope, Parca)
Calls still running at the end are closed there.

Cost: ${COSTS.callsLatency}.

Options:
  -o, --output FILE      where to write ("-" for stdout); required
  -f, --format FORMAT    speedscope, perfetto, folded, ndjson or pprof (default: from FILE's extension:
                         .speedscope.json, .json, .folded/.txt, .ndjson/.jsonl, .pb.gz/.pprof; else speedscope)
      --weight WEIGHT    folded: a path's own time in ns ("time", default) or its calls ("calls")
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m)
      --full-paths       folded: file names as the interpreter reports them
${TARGET_HELP}
${SPAWN_HELP}
      --json             report the written file as one JSON object
      --debug            stack traces on errors

Examples:
  usdtrace record 4242 -o app.speedscope.json -d 10
  usdtrace record 4242 -o trace.json --format perfetto     # open in ui.perfetto.dev
  usdtrace record 4242 -o app.folded -d 30 && flamegraph.pl app.folded > app.svg
  usdtrace record -o run.ndjson -- python3.11 job.py
  usdtrace record 4242 -o app.pb.gz -d 10 && go tool pprof -top app.pb.gz`

export const record: Command = {
  name: NAME,
  summary: 'record calls for speedscope, Perfetto, folded stacks, NDJSON or pprof',
  help: HELP,
  options: {
    output: { type: 'string', short: 'o' },
    format: { type: 'string', short: 'f' },
    weight: { type: 'string' },
    duration: { type: 'string', short: 'd' },
    'full-paths': { type: 'boolean' },
    ...TARGET_OPTIONS,
    ...SPAWN_OPTIONS,
  },
  run: runRecord,
}

/** Perfetto's name of each process: the description of the targets for the first, its pid for the others. */
function processNames(timeline: CallTimeline, description: string): Map<number, string> {
  const pids = [...new Set(timeline.threads.map((thread) => thread.pid))]
  return new Map(pids.map((pid, i) => [pid, i === 0 && pids.length === 1 ? `usdtrace ${description}` : `usdtrace ${pid}`]))
}

export function formatFromName(file: string): Format {
  if (/\.speedscope\.json$/i.test(file)) return 'speedscope'
  if (/\.json$/i.test(file)) return 'perfetto'
  if (/\.(folded|txt|collapsed)$/i.test(file)) return 'folded'
  if (/\.(ndjson|jsonl)$/i.test(file)) return 'ndjson'
  if (/\.(pb\.gz|pprof)$/i.test(file)) return 'pprof'
  return 'speedscope'
}

async function runRecord(run: Run, args: ParsedArgs): Promise<void> {
  const { values } = args
  const file = text(values, 'output')
  if (file === undefined) throw new UsageError('say where to write the recording with -o FILE', NAME)
  const format = choice(NAME, values, 'format', FORMATS, formatFromName(file))
  const weight = choice(NAME, values, 'weight', ['time', 'calls'] as const, 'time')
  const fullPaths = flag(values, 'full-paths')
  run.stopAfter(seconds(NAME, values, 'duration'))

  const output = new OutputFile(run, file)
  const timeline = new CallTimeline()
  let startNs: bigint | undefined
  const result = await streamCalls(NAME, run, args, { note: `recording ${format} to ${output.name}` }, (event) => {
    if (format !== 'ndjson') return timeline.add(event)
    startNs ??= event.timestampNs
    output.write(`${ndjsonLine(event, startNs)}\n`)
  }).catch((error: unknown) => {
    output.discard()
    throw error
  })
  timeline.end()
  let written: string
  if (format === 'ndjson') {
    written = count(result.events, 'event')
  } else {
    const name = `usdtrace ${result.targets.description}`
    output.write(
      format === 'pprof'
        ? pprofProfile(callTimeProfile(timeline))
        : format === 'speedscope'
        ? `${JSON.stringify(speedscopeFile(timeline, { name, exporter: 'usdtrace' }))}\n`
        : format === 'perfetto'
          ? `${JSON.stringify(chromeTrace(timeline, { processNames: processNames(timeline, result.targets.description) }))}\n`
          : foldedStacks(timeline, { weight, fullPaths }),
    )
    written = `${count(timeline.calls, 'call')} on ${count(timeline.threads.length, 'thread')}`
  }
  await output.close()
  if (run.json && file !== '-') {
    run.out.json({ type: 'recording', file, format, calls: timeline.calls, threads: timeline.threads.length, events: result.events, lost: result.lost })
  }
  const notes = [`wrote ${output.name} (${format}: ${written})`]
  if (timeline.unfinishedCalls > 0) notes.push(`${count(timeline.unfinishedCalls, 'call')} still running, closed at the end`)
  callStreamSummary(run, result, notes)
}

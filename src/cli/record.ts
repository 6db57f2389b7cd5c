/**
 * `usdtrace record PID -o FILE`: a recording of every call (or, with --sample, of sampled stacks)
 * to open in speedscope, Perfetto (Chrome trace-event JSON), flame graph tools (folded stacks), jq
 * (NDJSON) or go tool pprof.
 */
import { CallTimeline, callTimeProfile, chromeTrace, foldedStacks, ndjsonLine, pprofProfile, sampleRecord, speedscopeFile, type WeightedProfile } from '../index.js'
import { choice, flag, seconds, text, type ParsedArgs } from './args.js'
import { callStreamSummary, streamCalls } from './callstream.js'
import type { Command } from './command.js'
import { COSTS } from './costs.js'
import { UsageError } from './errors.js'
import { count, type Run } from './run.js'
import { SPAWN_HELP, SPAWN_OPTIONS, TARGET_HELP, TARGET_OPTIONS } from './target.js'
import { OutputFile } from './write.js'
import { HZ_HELP, OFF_CPU_HELP, OFF_CPU_OPTION, SAMPLE_OPTIONS, periodNs, sampleStreamSummary, samplingOptions, streamSamples, type Sampling } from './samplestream.js'

const NAME = 'record'
const FORMATS = ['speedscope', 'perfetto', 'folded', 'ndjson', 'pprof'] as const
type Format = (typeof FORMATS)[number]

const HELP = `usdtrace record PID... -o FILE [options]
usdtrace record --binary PATH | --name PATTERN -o FILE [options]
usdtrace record -o FILE [options] -- CMD [ARGS...]

Records every Python call of a process (with --sample: its sampled stacks) until it exits,
Ctrl-C or -d, and writes it as:
  speedscope  speedscope's file format: one timeline per thread (https://www.speedscope.app)
  perfetto    Chrome trace-event JSON, B/E pairs per thread (https://ui.perfetto.dev, chrome://tracing)
  folded      folded stacks, "outer;inner;leaf weight" (flamegraph.pl, inferno, speedscope)
  ndjson      one JSON object per call event (jq; schema in docs/cli.md)
  pprof       gzipped profile.proto: calls and self time per stack (go tool pprof, Pyroscope, Parca)
Calls still running at the end are closed there.

With --sample, the stacks of the process's threads are sampled instead of every call traced:
any CPython from 3.10, with or without USDT probes (pyenv, docker python images). A sample
stands for 1/HZ s of CPU (with --off-cpu a wait, for as long as it lasted); the formats show
time per stack and line, not calls (pprof: cpu, or wall with --off-cpu, nanoseconds; ndjson:
one "sample" object per sample).

Cost: ${COSTS.callsLatency}.
With --sample: ${COSTS.sampling}.

Options:
  -o, --output FILE      where to write ("-" for stdout); required
  -f, --format FORMAT    speedscope, perfetto, folded, ndjson or pprof (default: from FILE's extension:
                         .speedscope.json, .json, .folded/.txt, .ndjson/.jsonl, .pb.gz/.pprof; else speedscope)
      --weight WEIGHT    folded: a path's own time in ns ("time", default) or its calls ("calls";
                         not with --sample)
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m)
      --full-paths       folded: file names as the interpreter reports them
      --sample           sample stacks instead of tracing calls (any CPython 3.10+, probes or not)
${HZ_HELP}
${OFF_CPU_HELP}
${TARGET_HELP}
${SPAWN_HELP}
      --json             report the written file as one JSON object
      --debug            stack traces on errors

Examples:
  usdtrace record 4242 -o app.speedscope.json -d 10
  usdtrace record 4242 -o trace.json --format perfetto     # open in ui.perfetto.dev
  usdtrace record 4242 -o app.folded -d 30 && flamegraph.pl app.folded > app.svg
  usdtrace record -o run.ndjson -- python3.11 job.py
  usdtrace record 4242 -o app.pb.gz -d 10 && go tool pprof -top app.pb.gz
  usdtrace record 4242 --sample --off-cpu -d 30 -o app.speedscope.json   # pyenv, docker python too`

export const record: Command = {
  name: NAME,
  summary: 'record calls (or sampled stacks) for speedscope, Perfetto, folded, NDJSON or pprof',
  help: HELP,
  options: {
    output: { type: 'string', short: 'o' },
    format: { type: 'string', short: 'f' },
    weight: { type: 'string' },
    duration: { type: 'string', short: 'd' },
    'full-paths': { type: 'boolean' },
    ...SAMPLE_OPTIONS,
    ...OFF_CPU_OPTION,
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
  const sampled = samplingOptions(NAME, args)
  run.stopAfter(seconds(NAME, values, 'duration'))

  const output = new OutputFile(run, file)
  const timeline = new CallTimeline()
  let startNs: bigint | undefined
  const note = `recording ${format} to ${output.name}`
  const discard = (error: unknown) => {
    output.discard()
    throw error
  }
  if (sampled) {
    const result = await streamSamples(NAME, run, args, sampled, note, (sample) => {
      if (format !== 'ndjson') return timeline.addSample(sample, periodNs(sampled))
      startNs ??= sample.timestampNs
      output.write(`${JSON.stringify(sampleRecord(sample, startNs))}\n`)
    }).catch(discard)
    timeline.end()
    if (format !== 'ndjson') writeTimeline(output, format, timeline, result.targets.description, { weight, fullPaths, sampled })
    await output.close()
    if (run.json && file !== '-') run.out.json({ type: 'recording', file, format, samples: result.samples, threads: timeline.threads.length, lost: result.lost })
    sampleStreamSummary(run, result, [`wrote ${output.name} (${format}: ${count(result.samples, 'sample')}${format === 'ndjson' ? '' : ` on ${count(timeline.threads.length, 'thread')}`})`])
    return
  }
  const result = await streamCalls(NAME, run, args, { note }, (event) => {
    if (format !== 'ndjson') return timeline.add(event)
    startNs ??= event.timestampNs
    output.write(`${ndjsonLine(event, startNs)}\n`)
  }).catch(discard)
  timeline.end()
  let written: string
  if (format === 'ndjson') {
    written = count(result.events, 'event')
  } else {
    writeTimeline(output, format, timeline, result.targets.description, { weight, fullPaths, sampled })
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

/** A timeline in one of the formats drawn from it (every one but ndjson). */
function writeTimeline(
  output: OutputFile,
  format: Exclude<Format, 'ndjson'>,
  timeline: CallTimeline,
  description: string,
  options: { weight: 'time' | 'calls'; fullPaths: boolean; sampled: Sampling | undefined },
): void {
  const name = `usdtrace ${description}`
  output.write(
    format === 'pprof'
      ? pprofProfile(options.sampled ? sampledProfile(timeline, options.sampled) : callTimeProfile(timeline))
      : format === 'speedscope'
        ? `${JSON.stringify(speedscopeFile(timeline, { name, exporter: 'usdtrace' }))}\n`
        : format === 'perfetto'
          ? `${JSON.stringify(chromeTrace(timeline, { processNames: processNames(timeline, description) }))}\n`
          : foldedStacks(timeline, { weight: options.weight, fullPaths: options.fullPaths }),
  )
}

/**
 * A sampled timeline as pprof: the time sampled under each stack, cpu (or wall, with waits) in
 * nanoseconds, and no call counts, which samples cannot know.
 */
function sampledProfile(timeline: CallTimeline, settings: Sampling): WeightedProfile {
  const profile = callTimeProfile(timeline)
  const type = { type: settings.offCpu ? 'wall' : 'cpu', unit: 'nanoseconds' }
  return {
    ...profile,
    sampleTypes: [type],
    stacks: profile.stacks.map(({ frames, values }) => ({ frames, values: [values[1]!] })),
    period: { type, value: Math.round(periodNs(settings)) },
  }
}

/**
 * `usdtrace flame PID -o out.svg`: record calls (or sample stacks), then draw them as a
 * self-contained SVG flame graph.
 */
import { CallTimeline, flameGraphSvg } from '../index.js'
import { choice, flag, integer, seconds, text, type ParsedArgs } from './args.js'
import { callStreamSummary, streamCalls } from './callstream.js'
import type { Command } from './command.js'
import { COSTS } from './costs.js'
import { UsageError } from './errors.js'
import { count, type Run } from './run.js'
import { SPAWN_HELP, SPAWN_OPTIONS, TARGET_HELP, TARGET_OPTIONS } from './target.js'
import { OutputFile } from './write.js'
import { HZ_HELP, SAMPLE_OPTIONS, periodNs, sampleStreamSummary, samplingOptions, streamSamples } from './samplestream.js'

const NAME = 'flame'

const HELP = `usdtrace flame PID... -o FILE.svg [options]
usdtrace flame --binary PATH | --name PATTERN -o FILE.svg [options]
usdtrace flame -o FILE.svg [options] -- CMD [ARGS...]

Records every Python call of a process until it exits, Ctrl-C or -d, and draws a flame graph:
one box per call path, as wide as the time spent in it (or its number of calls), callers
below callees. The SVG needs nothing else: open it in a browser; hover a box for its
function, time, share and calls.

With --sample, the stacks of the process's threads are sampled instead of every call traced
(any CPython from 3.10, with or without USDT probes), on CPU and, as a call's time includes
its waits, where threads wait (off CPU: blocked on a lock, I/O, a sleep). --no-idle leaves the
waits out: only time on a CPU. Boxes are then lines of functions; their time is sampled.
--no-idle applies to sampled graphs only: a traced call's time cannot be split into running
and waiting.

Cost: ${COSTS.callsLatency}.
With --sample: ${COSTS.sampling}.

Options:
  -o, --output FILE      where to write the SVG ("-" for stdout); required
      --weight WEIGHT    box width: inclusive time ("time", default) or calls ("calls";
                         not with --sample)
      --title TEXT       the graph's title (default: the traced process)
      --width PIXELS     image width (default 1200)
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m)
      --full-paths       file names as the interpreter reports them
      --sample           sample stacks instead of tracing calls (any CPython 3.10+, probes or not)
${HZ_HELP}
      --no-idle          with --sample: only time on CPU, leaving out where threads wait
${TARGET_HELP}
${SPAWN_HELP}
      --json             report the written file as one JSON object
      --debug            stack traces on errors

Examples:
  usdtrace flame 4242 -o app.svg -d 10
  usdtrace flame 4242 -o calls.svg --weight calls
  usdtrace flame -o job.svg -- python3.11 job.py
  usdtrace flame 4242 --sample --no-idle -o cpu.svg -d 30   # pyenv, docker python too`

export const flame: Command = {
  name: NAME,
  summary: 'draw a flame graph of the calls (or sampled stacks) as an SVG',
  help: HELP,
  options: {
    output: { type: 'string', short: 'o' },
    weight: { type: 'string' },
    title: { type: 'string' },
    width: { type: 'string' },
    duration: { type: 'string', short: 'd' },
    'full-paths': { type: 'boolean' },
    ...SAMPLE_OPTIONS,
    'no-idle': { type: 'boolean' },
    ...TARGET_OPTIONS,
    ...SPAWN_OPTIONS,
  },
  run: runFlame,
}

async function runFlame(run: Run, args: ParsedArgs): Promise<void> {
  const { values } = args
  const file = text(values, 'output')
  if (file === undefined) throw new UsageError('say where to write the flame graph with -o FILE.svg', NAME)
  const weight = choice(NAME, values, 'weight', ['time', 'calls'] as const, 'time')
  const width = integer(NAME, values, 'width', 1200, 200)
  const fullPaths = flag(values, 'full-paths')
  const sampled = samplingOptions(NAME, args, !flag(values, 'no-idle'))
  run.stopAfter(seconds(NAME, values, 'duration'))

  const output = new OutputFile(run, file)
  const timeline = new CallTimeline()
  const note = `flame graph to ${output.name}`
  const discard = (error: unknown) => {
    output.discard()
    throw error
  }
  if (sampled) {
    const result = await streamSamples(NAME, run, args, sampled, note, (sample) => timeline.addSample(sample, periodNs(sampled))).catch(discard)
    timeline.end()
    const title = text(values, 'title') ?? `usdtrace flame --sample ${result.targets.description}${sampled.offCpu ? '' : ' (on CPU)'}`
    output.write(flameGraphSvg(timeline, { title, weight, width, fullPaths, sampled: true }))
    await output.close()
    if (run.json && file !== '-') run.out.json({ type: 'flamegraph', file, weight, samples: result.samples, threads: timeline.threads.length, lost: result.lost })
    sampleStreamSummary(run, result, [`wrote ${output.name} (${count(result.samples, 'sample')})`])
    return
  }
  const result = await streamCalls(NAME, run, args, { note }, (event) => timeline.add(event)).catch(discard)
  timeline.end()
  const title = text(values, 'title') ?? `usdtrace flame ${result.targets.description}`
  output.write(flameGraphSvg(timeline, { title, weight, width, fullPaths }))
  await output.close()
  if (run.json && file !== '-') {
    run.out.json({ type: 'flamegraph', file, weight, calls: timeline.calls, threads: timeline.threads.length, events: result.events, lost: result.lost })
  }
  callStreamSummary(run, result, [`wrote ${output.name} (${count(timeline.calls, 'call')})`])
}

/** `usdtrace flame PID -o out.svg`: record calls, then draw them as a self-contained SVG flame graph. */
import { CallTimeline, flameGraphSvg } from '../index.js'
import { choice, flag, integer, seconds, text, type ParsedArgs } from './args.js'
import { callStreamSummary, streamCalls } from './callstream.js'
import type { Command } from './command.js'
import { COSTS } from './costs.js'
import { UsageError } from './errors.js'
import { count, type Run } from './run.js'
import { SPAWN_HELP, SPAWN_OPTIONS, TARGET_HELP, TARGET_OPTIONS } from './target.js'
import { OutputFile } from './write.js'

const NAME = 'flame'

const HELP = `usdtrace flame PID... -o FILE.svg [options]
usdtrace flame --binary PATH | --name PATTERN -o FILE.svg [options]
usdtrace flame -o FILE.svg [options] -- CMD [ARGS...]

Records every Python call of a process until it exits, Ctrl-C or -d, and draws a flame graph:
one box per call path, as wide as the time spent in it (or its number of calls), callers
below callees. The SVG needs nothing else: open it in a browser; hover a box for its
function, time, share and calls.

Cost: ${COSTS.callsLatency}.

Options:
  -o, --output FILE      where to write the SVG ("-" for stdout); required
      --weight WEIGHT    box width: inclusive time ("time", default) or calls ("calls")
      --title TEXT       the graph's title (default: the traced process)
      --width PIXELS     image width (default 1200)
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m)
      --full-paths       file names as the interpreter reports them
${TARGET_HELP}
${SPAWN_HELP}
      --json             report the written file as one JSON object
      --debug            stack traces on errors

Examples:
  usdtrace flame 4242 -o app.svg -d 10
  usdtrace flame 4242 -o calls.svg --weight calls
  usdtrace flame -o job.svg -- python3.11 job.py`

export const flame: Command = {
  name: NAME,
  summary: 'draw a flame graph of the calls as an SVG',
  help: HELP,
  options: {
    output: { type: 'string', short: 'o' },
    weight: { type: 'string' },
    title: { type: 'string' },
    width: { type: 'string' },
    duration: { type: 'string', short: 'd' },
    'full-paths': { type: 'boolean' },
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
  run.stopAfter(seconds(NAME, values, 'duration'))

  const output = new OutputFile(run, file)
  const timeline = new CallTimeline()
  const result = await streamCalls(NAME, run, args, { note: `flame graph to ${output.name}` }, (event) => timeline.add(event)).catch(
    (error: unknown) => {
      output.discard()
      throw error
    },
  )
  timeline.end()
  const title = text(values, 'title') ?? `usdtrace flame ${result.targets.description}`
  output.write(flameGraphSvg(timeline, { title, weight, width, fullPaths }))
  await output.close()
  if (run.json && file !== '-') {
    run.out.json({ type: 'flamegraph', file, weight, calls: timeline.calls, threads: timeline.threads.length, events: result.events, lost: result.lost })
  }
  callStreamSummary(run, result, [`wrote ${output.name} (${count(timeline.calls, 'call')})`])
}

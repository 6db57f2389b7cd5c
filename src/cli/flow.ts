/**
 * `usdtrace flow PID`: bcc's pythonflow. Every call and return, per thread, indented by depth,
 * with the time since the start, the thread and the duration of each return.
 */
import { FlowFormatter, ndjsonLine } from '../index.js'
import { flag, integer, seconds, text, type ParsedArgs } from './args.js'
import { callStreamSummary, streamCalls } from './callstream.js'
import type { Command } from './command.js'
import type { Run } from './run.js'
import { SPAWN_OPTIONS } from './target.js'

const NAME = 'flow'

const HELP = `usdtrace flow PID [options]
usdtrace flow [options] -- CMD [ARGS...]

Prints every Python function entry (->) and return (<-) of a process as it happens (bcc's
pythonflow): the CPU, TIME(ms) since the start, TID, the DURATION of each return, and the
call indented by its depth on its thread. On CPython 3.11 entries need the line semaphore,
which slows the target while traced.

Options:
  -M, --method PREFIX    only functions whose name starts with PREFIX (filtered in the kernel)
  -C, --module PREFIX    only functions in files whose full path starts with PREFIX (in the kernel)
      --max-depth N      only calls less than N levels deep (0 = outermost traced frame)
  -d, --duration SECS    stop after SECS (e.g. 10, 1.5, 500ms, 2m)
      --full-paths       file names as the interpreter reports them
      --spawn 'CMD ARGS' start CMD (a python program) and trace it from its first call
      --json             one JSON object per event (see the README for the schema)
      --debug            stack traces on errors

Examples:
  usdtrace flow 4242                       # everything, until Ctrl-C
  usdtrace flow 4242 -M handle_ -d 5       # only handle_* functions, for 5 seconds
  usdtrace flow 4242 -C /usr/lib/python3.11/json/ --max-depth 3
  usdtrace flow -- python3.11 app.py | less -R`

export const flow: Command = {
  name: NAME,
  summary: 'print every Python call and return, indented (pythonflow)',
  help: HELP,
  options: {
    method: { type: 'string', short: 'M' },
    module: { type: 'string', short: 'C' },
    'max-depth': { type: 'string' },
    duration: { type: 'string', short: 'd' },
    'full-paths': { type: 'boolean' },
    ...SPAWN_OPTIONS,
  },
  run: runFlow,
}

async function runFlow(run: Run, args: ParsedArgs): Promise<void> {
  const { values } = args
  const method = text(values, 'method')
  const module = text(values, 'module')
  const maxDepth = values['max-depth'] === undefined ? Infinity : integer(NAME, values, 'max-depth', 0, 1)
  const fullPaths = flag(values, 'full-paths')
  run.stopAfter(seconds(NAME, values, 'duration'))

  // Times count from the first event traced, shown or not, in the text and the JSON alike.
  let startNs: bigint | undefined
  let formatter = new FlowFormatter({ fullPaths })
  const column = formatter.callColumn
  const paint = run.out.painter
  let shown = 0
  const result = await streamCalls(
    NAME,
    run,
    args,
    { functionPrefix: method, filePrefix: module },
    (event) => {
      if (startNs === undefined) {
        startNs = event.timestampNs
        formatter = new FlowFormatter({ fullPaths, startNs })
      }
      if (event.depth >= maxDepth) return
      shown++
      if (run.json) {
        run.out.line(ndjsonLine(event, startNs))
        return
      }
      const line = formatter.format(event)
      if (!paint.enabled) run.out.line(line)
      else {
        const arrow = event.kind === 'entry' ? paint.paint('green', '->') : paint.paint('yellow', '<-')
        const call = line.slice(column).replace(/^( *)(->|<-)/, (_, indent: string) => indent + arrow)
        run.out.line(paint.paint('dim', line.slice(0, column)) + call)
      }
    },
    () => {
      if (!run.json) run.out.line(run.out.paint('bold', formatter.header()))
    },
  )
  const filtered = result.events - shown
  callStreamSummary(run, result, filtered > 0 ? [`${filtered.toLocaleString('en-US')} filtered out`] : [])
}

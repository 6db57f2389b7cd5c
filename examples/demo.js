// `make demo`: start a real Python program, ask what it can trace, trace its calls for a few
// seconds, and show the flow and a summary. Needs root (or CAP_BPF + CAP_PERFMON).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { CallSummary, FlowFormatter, TraceError, formatDuration, inspect, traceCalls } from '../dist/index.js'

const PYTHON = '/usr/bin/python3.11'
const APP = fileURLToPath(new URL('app.py', import.meta.url))
const TRACE_MS = 3000
const FLOW_LINES = 60
const TOP = 15

/** Words of `text` in lines of at most `width` columns, every line after the first indented. */
function wrap(text, indent, width = 100) {
  const lines = ['']
  for (const word of text.split(' ')) {
    const last = lines.length - 1
    if (lines[last] && indent + lines[last].length + 1 + word.length > width) lines.push(word)
    else lines[last] = lines[last] ? `${lines[last]} ${word}` : word
  }
  return lines.join(`\n${' '.repeat(indent)}`)
}

function heading(title) {
  console.log(`\n${title}\n${'─'.repeat(title.length)}`)
}

/** Starts the app and resolves once it has printed its first line (it is running main()). */
async function startApp() {
  const app = spawn(PYTHON, [APP, '60'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines = createInterface({ input: app.stdout })
  const [first] = await Promise.race([
    once(lines, 'line'),
    once(app, 'exit').then(([code, signal]) => {
      throw new Error(`${PYTHON} ${APP} exited (${code ?? signal}) before it was up`)
    }),
    once(app, 'error').then(([error]) => {
      throw error
    }),
  ])
  lines.on('line', () => {}) // keep draining its stdout
  return { app, banner: first }
}

async function stopApp(app) {
  if (app.exitCode !== null || app.signalCode !== null) return
  const exited = once(app, 'exit')
  process.kill(app.pid, 'SIGKILL')
  await exited
}

async function demo(app, banner) {
  const pid = app.pid
  console.log(`usdtrace demo: ${PYTHON} examples/app.py, a small order service`)
  console.log(`app says: ${banner}`)

  heading(`inspect(${pid})`)
  const target = await inspect(pid)
  const { calls } = target.capabilities
  const v = target.version
  console.log(`  version        ${v ? `${v.major}.${v.minor}${v.micro !== undefined ? `.${v.micro}` : ''}` : 'unknown'}`)
  console.log(`  probe object   ${target.probeObject ?? '(none: no python USDT probes)'}`)
  const names = [...new Set(target.probes.map((p) => p.name))].join(', ')
  console.log(`  probes         ${wrap(`${target.probes.length}: ${names}`, 17)}`)
  console.log(`  calls          ${calls.mode}`)
  if (calls.mode === 'line-semaphore') console.log(`  cost           ${wrap(calls.cost, 17)}`)
  if (!calls.available) console.log(`  reason         ${wrap(calls.reason, 17)}`)
  for (const name of ['gc', 'imports', 'audit']) {
    const cap = target.capabilities[name]
    console.log(`  ${name.padEnd(15)}${cap.available ? cap.mode : wrap(`unavailable: ${cap.reason}`, 17)}`)
  }

  const trace = traceCalls(pid)
  await trace.ready
  const startNs = process.hrtime.bigint()
  let endNs
  let closed
  const timer = setTimeout(() => {
    endNs = process.hrtime.bigint()
    closed = trace.close()
  }, TRACE_MS)

  heading(`traceCalls(${pid}) for ${TRACE_MS / 1000} s: the flow`)
  const flow = new FlowFormatter()
  const summary = new CallSummary()
  console.log(flow.header())
  let events = 0
  for await (const event of trace) {
    if (events < FLOW_LINES) console.log(flow.format(event))
    summary.add(event)
    events++
  }
  // The loop also ends early if the app exits; otherwise wait until every probe is detached.
  clearTimeout(timer)
  endNs ??= process.hrtime.bigint()
  await closed
  if (events > FLOW_LINES) console.log(`... ${events - FLOW_LINES} more events`)

  heading(`summary: top ${TOP} functions`)
  console.log(summary.format(TOP))

  heading('totals')
  const elapsedNs = endNs - startNs
  const perSecond = Math.round(events / (Number(elapsedNs) / 1e9))
  console.log(`  ${events} events in ${formatDuration(elapsedNs)} (${perSecond}/s), ${trace.lost} lost`)
}

const { app, banner } = await startApp()
let status = 0
try {
  await demo(app, banner)
} catch (error) {
  if (!(error instanceof TraceError)) throw error
  console.error(`error [${error.code}]: ${error.message}`)
  status = 1
} finally {
  await stopApp(app)
}
process.exit(status)

// `usdtrace record` and `usdtrace flame` on fib(n), each output read back by a real reader of its
// format: speedscope's schema (ajv) and its own importer, the Chrome trace-event pairing that
// Perfetto relies on, folded stacks line by line, NDJSON, and the SVG through an XML parser. The
// call counts must survive exactly, down to the calls at each depth of the recursion.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import Ajv from 'ajv'
import { XMLParser } from 'fast-xml-parser'
import t, { type Test } from 'tap'
import { loadSpeedscopeImporter, speedscopeSchema } from './fixtures/speedscope.js'
import { tmpDir } from './programs/tools.js'
import { WORKLOADS, fibonacci, startWorkload } from './targets.js'
import { runCli } from './cli.js'

const N = 12
const fibCalls = 2 * fibonacci(N + 1) - 1
const SHORT = 'test/targets/workloads.py'
const source = readFileSync(WORKLOADS, 'utf8').split('\n')
const defLine = (func: string) => source.findIndex((line) => line.startsWith(`def ${func}(`)) + 1
const FIB = `fib (${SHORT}:${defLine('fib')})`
const RUN_FIB = `run_fib (${SHORT}:${defLine('run_fib')})`

/** Calls of fib(N) at each recursion depth (0 = the outermost), by walking the recursion here. */
function callsPerDepth(): number[] {
  const perDepth: number[] = []
  const walk = (k: number, depth: number) => {
    perDepth[depth] = (perDepth[depth] ?? 0) + 1
    if (k >= 2) {
      walk(k - 1, depth + 1)
      walk(k - 2, depth + 1)
    }
  }
  walk(N, 0)
  return perDepth
}

/** Runs `usdtrace ARGS` against fib(N) until the workload exits; returns the output path. */
async function recordFib(t: Test, args: (file: string) => string[], file: string): Promise<string> {
  const path = join(tmpDir(t, 'record'), file)
  const target = await startWorkload(t, ['fib', String(N)])
  const cli = runCli(t, [...args(path).slice(0, 1), String(target.pid), ...args(path).slice(1)])
  await cli.waitFor(/tracing calls in/)
  target.go()
  t.equal(await cli.exited, 0, 'exit status 0: the target exited')
  t.match(cli.text, new RegExp(`wrote ${path.replace(/[.]/g, '\\.')}`), 'the final line names the file')
  return path
}

t.test('speedscope: valid by its schema, read by its importer, every call there', async (t) => {
  const path = await recordFib(t, (file) => ['record', '-o', file], 'fib.speedscope.json')
  const file = JSON.parse(readFileSync(path, 'utf8'))
  const validate = new Ajv({ allErrors: true, strict: false }).compile(speedscopeSchema)
  t.ok(validate(file), `speedscope's schema accepts it ${JSON.stringify(validate.errors)}`)

  const group = loadSpeedscopeImporter()(file)
  t.equal(group.profiles.length, 1, 'one thread, one profile')
  const opened = new Map<string, number>()
  const depths: number[] = []
  let depth = 0
  let fibDepth = -1
  group.profiles[0]!.forEachCall(
    (node) => {
      const key = `${node.frame.name} ${node.frame.file}:${node.frame.line}`
      opened.set(key, (opened.get(key) ?? 0) + 1)
      if (node.frame.name === 'fib') {
        if (fibDepth < 0) fibDepth = depth
        depths[depth - fibDepth] = (depths[depth - fibDepth] ?? 0) + 1
      }
      depth++
    },
    () => depth--,
  )
  t.equal(opened.get(`fib ${WORKLOADS}:${defLine('fib')}`), fibCalls, `speedscope sees ${fibCalls} calls of fib`)
  t.equal(opened.get(`run_fib ${WORKLOADS}:${defLine('run_fib')}`), 1, 'and one of run_fib')
  t.same(depths, callsPerDepth(), 'the calls at each depth of the recursion')
})

t.test('perfetto: Chrome trace events, every B closed by its E', async (t) => {
  const path = await recordFib(t, (file) => ['record', '-o', file, '--format', 'perfetto'], 'fib.json')
  const trace = JSON.parse(readFileSync(path, 'utf8'))
  t.equal(trace.displayTimeUnit, 'ns')
  const stacks = new Map<string, { name: string; ts: number }[]>()
  let unmatched = 0
  let begins = 0
  for (const event of trace.traceEvents) {
    if (event.ph === 'M') continue
    const stack = stacks.get(`${event.pid}/${event.tid}`) ?? []
    stacks.set(`${event.pid}/${event.tid}`, stack)
    if (event.ph === 'B') {
      stack.push(event)
      if (event.name === 'fib' && event.args.file === WORKLOADS) begins++
    } else if (event.ph === 'E') {
      const begin = stack.pop()
      if (!begin || begin.name !== event.name || event.ts < begin.ts) unmatched++
    } else unmatched++
  }
  t.equal(unmatched, 0, 'every E closes the innermost open B of its thread, never before it')
  t.ok([...stacks.values()].every((stack) => stack.length === 0), 'no B left open')
  t.equal(begins, fibCalls, 'one B per call of fib')
  t.ok(trace.traceEvents.some((e: { ph: string; name: string }) => e.ph === 'M' && e.name === 'thread_name'), 'threads are named')
})

t.test('folded --weight calls: the calls of every stack', async (t) => {
  const path = await recordFib(t, (file) => ['record', '-o', file, '--weight', 'calls'], 'fib.folded')
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n')
  const perDepth: number[] = []
  let total = 0
  let malformed = 0
  let fromRunFib = 0
  for (const line of lines) {
    const m = /^(.+) (\d+)$/.exec(line)
    if (!m) {
      malformed++
      continue
    }
    const frames = m[1]!.split(';')
    if (frames.at(-1) !== FIB) continue
    if (frames[0] === RUN_FIB && frames.slice(1).every((frame) => frame === FIB)) fromRunFib++
    const depth = frames.filter((frame) => frame === FIB).length - 1
    perDepth[depth] = (perDepth[depth] ?? 0) + Number(m[2])
    total += Number(m[2])
  }
  t.equal(malformed, 0, 'every line is "frame;frame;... count"')
  t.equal(fromRunFib, callsPerDepth().length, 'one stack per depth, each run_fib then fib only')
  t.equal(total, fibCalls, 'every call of fib')
  t.same(perDepth, callsPerDepth(), 'at each depth')
})

t.test('ndjson: one call event per line', async (t) => {
  const path = await recordFib(t, (file) => ['record', '-o', file], 'fib.ndjson')
  const events = readFileSync(path, 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line))
  const fib = events.filter((e) => e.func === 'fib' && e.file === WORKLOADS)
  t.equal(fib.filter((e) => e.kind === 'entry').length, fibCalls, 'entries')
  t.equal(fib.filter((e) => e.kind === 'return').length, fibCalls, 'returns')
})

t.test('flame: an SVG that parses and names the functions, with their calls', async (t) => {
  // Boxes as wide as their calls: every path of the recursion is wide enough to be drawn.
  const path = await recordFib(t, (file) => ['flame', '-o', file, '--weight', 'calls'], 'fib.svg')
  const svg = new XMLParser({ ignoreAttributes: false, isArray: (name) => name === 'g' }).parse(readFileSync(path, 'utf8'))
  t.equal(svg.svg['@_xmlns'], 'http://www.w3.org/2000/svg', 'an SVG document')
  const boxes = (svg.svg.g as { title: string; rect: Record<string, string> }[]).map((g) => ({ title: String(g.title), rect: g.rect }))
  const calls = (label: string) =>
    boxes.filter((b) => b.title.startsWith(`${label}: `)).reduce((sum, b) => sum + Number(/: (\d+) calls?,/.exec(b.title)![1]), 0)
  t.equal(calls(RUN_FIB), 1, 'run_fib has its box')
  t.equal(calls(FIB), fibCalls, `the fib boxes add up to ${fibCalls} calls`)
  t.ok(boxes.every((b) => Number(b.rect['@_width']) > 0 && Number(b.rect['@_height']) > 0), 'every box has a size')
})

// Which Python code made this syscall, library call, collection or audited open: with
// `stack: true` each event carries the stack its thread had, on every CPython here, probes or not
// (the probe-based streams, gc and audit, on the Python that has probes). The expected function
// and line are found in the target's source, at the line marked for that event.
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import t, { type Test } from 'tap'
import { traceAudit, traceGC, traceLibraryCalls, traceSyscalls, type StackFrame } from '../src/index.js'
import { DEBIAN_PYTHON, STACK_PYTHONS } from './fixtures/processes.js'
import { STACKS_TARGET, startStacksTarget } from './fixtures/stacks.js'
import { runCliPiped } from './cli.js'

const SOURCE = readFileSync(STACKS_TARGET, 'utf8').split('\n')
const MISSING = '/nonexistent/usdtrace-event-stacks'

/** Where the target makes an event: the function around the marked line, and the line. */
function markedFrame(event: string): StackFrame {
  const line = SOURCE.findIndex((text) => text.endsWith(`# event: ${event}`)) + 1
  const func = /^def (\w+)/.exec(SOURCE.slice(0, line).reverse().find((text) => text.startsWith('def '))!)![1]!
  return { file: STACKS_TARGET, func, line }
}

/** Starts the target, opens the trace, makes the events once, and collects what matches until the target is done. */
async function eventsOf<T>(t: Test, python: string, open: (pid: number) => AsyncIterable<T> & { ready: Promise<void>; close(): Promise<void> }, wanted: (event: T) => boolean) {
  const { child, pid } = await startStacksTarget(t, python, ['events', MISSING])
  const trace = open(pid)
  await trace.ready
  const done = new Promise<void>((resolve) => child.stdout!.on('data', (d: Buffer) => /done/.test(String(d)) && resolve()))
  child.stdin!.write('go\n')
  const found: T[] = []
  const collecting = (async () => {
    for await (const event of trace) if (wanted(event)) found.push(event)
  })()
  await done
  child.stdin!.end()
  await once(child, 'exit')
  await collecting
  return found
}

for (const python of STACK_PYTHONS) {
  t.test(`${python}: a syscall carries the stack that made it`, async (t) => {
    const events = await eventsOf(t, python, (pid) => traceSyscalls({ pid, stack: true }), (e) => e.path === MISSING)
    t.ok(events.length >= 1, `${events.length} stat of the missing path`)
    const stat = events.find((e) => e.errno === 'ENOENT' && /stat/.test(e.name))!
    t.same(stat.stack?.[0], markedFrame('syscall'), `${stat.name} was made by make_syscall(), at its os.stat line`)
    t.equal(stat.stack?.[1]?.func, 'run_events', 'called from run_events()')
  })

  t.test(`${python}: a library call carries the stack that made it`, async (t) => {
    const events = await eventsOf(t, python, (pid) => traceLibraryCalls({ pid, library: 'libc', symbols: 'getpid', stack: true }), (e) => e.stack !== undefined)
    t.ok(events.some((e) => e.stack![0]!.func === 'call_library'), 'a getpid() call from call_library()')
    t.same(events.find((e) => e.stack![0]!.func === 'call_library')!.stack![0], markedFrame('library call'), 'at its os.getpid line')
  })
}

t.test('a collection and an audited open carry the stacks that made them', async (t) => {
  const collections = await eventsOf(t, DEBIAN_PYTHON, (pid) => traceGC({ pid, stack: true }), () => true)
  // The interpreter collects once more as it exits, with no Python frame left: that one has no stack.
  const asked = collections.filter((c) => c.stack?.[1]?.func === 'run_events')
  t.equal(asked.length, 1, 'one collection made from run_events()')
  t.same(asked[0]?.stack?.[0], markedFrame('gc'), 'by gc.collect() in collect_garbage()')
  const opens = await eventsOf(t, DEBIAN_PYTHON, (pid) => traceAudit({ pid, events: ['open'], stack: true }), (e) => e.summary?.includes(MISSING) ?? false)
  t.same(opens[0]?.stack?.[0], markedFrame('audit'), 'the open of the missing path: open_missing()')
})

t.test('without `stack`, events carry none; a process that is not Python cannot give one', async (t) => {
  const events = await eventsOf(t, DEBIAN_PYTHON, (pid) => traceSyscalls({ pid }), (e) => e.path === MISSING)
  t.ok(events.length > 0 && events.every((e) => e.stack === undefined), 'no stack asked, none given')
  const trace = traceSyscalls({ pid: process.pid, stack: true })
  await t.rejects(trace.ready, { code: 'NOT_PYTHON' }, 'node has no Python stack')
})

t.test('usdtrace syscalls --stacks prints, and gives in JSON, the Python stack under each call', async (t) => {
  const { child, pid } = await startStacksTarget(t, STACK_PYTHONS[2]!, ['events', MISSING])
  const expected = markedFrame('syscall')
  for (const json of [false, true]) {
    const run = runCliPiped(t, ['syscalls', String(pid), '-e', 'newfstatat', '--stacks', ...(json ? ['--json'] : [])])
    await run.stderrMatch(/tracing/)
    child.stdin!.write('go\n')
    await run.stdoutMatch(json ? /"stack":\[\{/ : /make_syscall \(/)
    process.kill(run.pid, 'SIGINT')
    const { stdout } = await run.done
    if (json) {
      const missing = stdout.trim().split('\n').map((line) => JSON.parse(line)).find((event) => event.path === MISSING)
      t.same(missing.stack[0], expected, 'the JSON event names make_syscall() and its line')
    } else {
      const lines = stdout.split('\n')
      const at = lines.findIndex((line) => line.includes(MISSING))
      t.match(lines[at + 1], new RegExp(`^\\s+make_syscall \\(.*stacks\\.py:${expected.line}\\)$`), 'the line under the call names make_syscall() and its line')
      t.match(lines[at + 2], /^\s+run_events \(/, 'then its caller')
    }
  }
})

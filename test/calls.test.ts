// traceCalls against real python3.11 processes: exact counts, nesting, durations, threads,
// generators, coroutines, exceptions and long names; the counts and nesting read both ways, as
// events and as batches (test/fixtures/readers.ts).
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { inspect, traceCalls, type CallEvent } from '../src/index.js'
import { fixedPythonSpecs } from '../src/kernel/attach.js'
import { DEBIAN_PYTHON } from './fixtures/processes.js'
import { tmpDir } from './fixtures/package.js'
import { eachReader, type CallRow } from './fixtures/readers.js'
import { WORKLOADS, collect, fibonacci, startWorkload, traceUniqueFunctions } from './targets.js'

/** Replays each thread's rows on a stack of its own: every check the nesting implies. */
function checkNesting(t: Test, rows: CallRow[]): void {
  const stacks = new Map<number, CallRow[]>()
  const lastTimestamp = new Map<number, bigint>()
  let problems = 0
  const expect = (ok: boolean, message: string, row: CallRow) => {
    if (!ok && problems++ < 5) t.fail(message, { row })
  }
  for (const row of rows) {
    const stack = stacks.get(row.tid) ?? []
    stacks.set(row.tid, stack)
    expect(row.timestampNs >= (lastTimestamp.get(row.tid) ?? 0n), 'timestamps never go backwards', row)
    lastTimestamp.set(row.tid, row.timestampNs)
    if (row.kind === 'entry') {
      expect(row.depth === stack.length, 'an entry sits one deeper than its caller', row)
      expect(row.durationNs === undefined, 'an entry has no duration', row)
      stack.push(row)
      continue
    }
    const entry = stack.pop()
    if (!entry) {
      // A frame entered before the probes were attached: no entry, so no duration.
      expect(row.depth === 0 && row.durationNs === undefined, 'an unmatched return has no duration', row)
      continue
    }
    expect(entry.func === row.func && entry.file === row.file, 'a return matches its entry', row)
    expect(entry.functionId === row.functionId, "a return has its entry's function id (batches)", row)
    expect(row.depth === stack.length, 'a return has its entry\'s depth', row)
    expect(row.durationNs === row.timestampNs - entry.timestampNs, 'duration is return minus entry', row)
    expect(row.durationNs! > 0n, 'durations are positive', row)
  }
  t.equal(problems, 0, `nesting holds across ${rows.length} rows`)
}

function ours<E extends CallEvent>(events: E[], func: string): { entries: E[]; returns: E[] } {
  const mine = events.filter((e) => e.file === WORKLOADS && e.func === func)
  return { entries: mine.filter((e) => e.kind === 'entry'), returns: mine.filter((e) => e.kind === 'return') }
}

t.test('fib(n) makes 2·F(n+1)−1 calls, each entry with its return', (t) =>
  eachReader(t, async (t, reader) => {
    const n = 18
    const target = await startWorkload(t, ['fib', String(n)])
    const trace = traceCalls(target.pid)
    await trace.ready
    target.go()
    const { rows, reads } = await reader.calls(trace)
    const fib = ours(rows, 'fib')
    t.equal(fib.entries.length, 2 * fibonacci(n + 1) - 1, 'entries')
    t.equal(fib.returns.length, 2 * fibonacci(n + 1) - 1, 'returns')
    t.equal(trace.lost, 0, 'nothing lost')
    t.ok(reads > 1, `read in more than one step (${reads})`)
    t.ok(rows.every((e) => e.pid === target.pid), 'every row names the target pid')
    t.ok(rows.every((e) => e.tid === target.pid), 'one thread: tid is the pid')
    checkNesting(t, rows)

    const outer = fib.returns.at(-1)!
    const [run] = ours(rows, 'run_fib').returns
    t.equal(outer.depth, run!.depth + 1, 'the outermost fib sits right under run_fib')
    t.ok(run!.durationNs! >= outer.durationNs!, "a parent's duration covers its child's")
    const defLine = readFileSync(WORKLOADS, 'utf8').split('\n').indexOf('def fib(n):') + 1
    t.equal(fib.entries[0]!.line, defLine, 'entry line is the def line')
  }),
)

t.test('threads trace independently', (t) =>
  eachReader(t, async (t, reader) => {
    const threads = 4
    const n = 14
    const target = await startWorkload(t, ['threads', String(threads), String(n)])
    const trace = traceCalls({ pid: target.pid })
    await trace.ready
    target.go()
    const { rows } = await reader.calls(trace)
    const byThread = new Map<number, number>()
    for (const e of ours(rows, 'fib').entries) byThread.set(e.tid, (byThread.get(e.tid) ?? 0) + 1)
    t.equal(byThread.size, threads, 'one tid per worker')
    t.notOk(byThread.has(target.pid), 'the main thread calls no fib')
    for (const [tid, calls] of byThread) t.equal(calls, 2 * fibonacci(n + 1) - 1, `thread ${tid} fib calls`)
    checkNesting(t, rows)
  }),
)

t.test('generators, coroutines and exceptions pair up', (t) =>
  eachReader(t, async (t, reader) => {
    const target = await startWorkload(t, ['generators'])
    const trace = traceCalls(target.pid)
    await trace.ready
    target.go()
    const { rows } = await reader.calls(trace)
    checkNesting(t, rows)
    const countdown = ours(rows, 'countdown')
    t.equal(countdown.entries.length, 4, 'a generator of 3 values is resumed 4 times')
    t.equal(countdown.returns.length, 4, 'and leaves 4 times (3 yields, 1 return)')
    const tick = ours(rows, 'tick')
    t.ok(tick.entries.length >= 3, 'a coroutine awaiting twice is resumed at least 3 times')
    t.equal(tick.returns.length, tick.entries.length, 'every resume of the coroutine returns')
    for (const func of ['fail', 'catch']) {
      const calls = ours(rows, func)
      t.equal(calls.entries.length, 1, `${func} entered once`)
      t.equal(calls.returns.length, 1, `${func} left once, by exception or return`)
    }
  }),
)

t.test('names up to 512 bytes arrive whole; longer ones are cut and marked', async (t) => {
  const cases = [
    { func: 300, path: 600, funcSeen: 300, pathSeen: 512, truncated: true },
    { func: 512, path: 512, funcSeen: 512, pathSeen: 512, truncated: false },
    { func: 513, path: 100, funcSeen: 512, pathSeen: 100, truncated: true },
  ]
  for (const c of cases) {
    const target = await startWorkload(t, ['names', String(c.func), String(c.path)])
    const trace = traceCalls(target.pid)
    await trace.ready
    target.go()
    const events = await collect(trace)
    const made = events.filter((e) => e.func.startsWith('fff'))
    t.equal(made.length, 2, `func ${c.func} / path ${c.path}: entry and return`)
    for (const e of made) {
      t.equal(e.func, 'f'.repeat(c.funcSeen), 'function name')
      t.equal(e.file, ('/' + 'p'.repeat(c.path - 1)).slice(0, c.pathSeen), 'file name')
      t.equal(e.truncated, c.truncated, 'truncated flag')
    }
  }
})

t.test('entries: false traces returns only, without depth or durations', async (t) => {
  const n = 10
  const target = await startWorkload(t, ['fib', String(n)])
  const trace = traceCalls(target.pid, { entries: false })
  await trace.ready
  target.go()
  const events = await collect(trace)
  t.equal(events.filter((e) => e.kind === 'entry').length, 0, 'no entries')
  t.equal(ours(events, 'fib').returns.length, 2 * fibonacci(n + 1) - 1, 'every fib return')
  t.ok(events.every((e) => e.depth === 0 && e.durationNs === undefined), 'depth 0, no durations')
})

t.test('thousands of functions made and freed in turn each arrive under their own name', async (t) => {
  const count = 3000
  const { trace, reused: whenReused } = await traceUniqueFunctions(t, count)
  const seen = new Map<string, number>()
  for (const e of await collect(trace)) if (e.func.startsWith('unique_')) seen.set(e.func, (seen.get(e.func) ?? 0) + 1)
  const reused = await whenReused
  t.ok(reused > count / 2, `name strings took earlier ones' addresses ${reused} times`)
  const expected = Array.from({ length: count }, (_, i) => `unique_${i}`)
  t.same([...seen.keys()].sort(), expected.sort(), 'every name, none mixed up')
  t.ok([...seen.values()].every((n) => n === 2), 'each with one entry and one return')
})

t.test('where the targets spell a probe\'s arguments differently, each site is read through its own spec', async (t) => {
  // A copy whose call probes name the line's register unsigned ("4@%eax" for "-4@%eax"): read
  // the same for every real line, but no longer one spec for every site the program attaches to.
  const spelled = '8@%rbp 8@%r12 -4@%eax'
  const image = readFileSync(DEBIAN_PYTHON)
  const at: number[] = []
  for (let i = image.indexOf(spelled); i >= 0; i = image.indexOf(spelled, i + 1)) at.push(i)
  t.equal(at.length, 2, 'function__entry and function__return spell their arguments alike in python3.11')
  for (const index of at) image.write(spelled.replace('-4@', ' 4@'), index, 'latin1')
  const respelled = join(tmpDir(t, 'respelled'), 'python3.11')
  writeFileSync(respelled, image, { mode: 0o755 })

  const n = 12
  const targets = [await startWorkload(t, ['fib', String(n)]), await startWorkload(t, ['fib', String(n)], respelled)]
  const inspections = await Promise.all(targets.map((target) => inspect(target.pid)))
  t.ok(fixedPythonSpecs([inspections[0]!], { on_call_return: 'function__return' }).on_call_return_spec, 'either alone: its spec fixed before load')
  t.same(fixedPythonSpecs(inspections, { on_call_return: 'function__return' }), {}, 'both: none fixed, the cookie says')
  const trace = traceCalls({ pids: targets.map((target) => target.pid) })
  await trace.ready
  for (const target of targets) target.go()
  const events = await collect(trace)
  const defLine = readFileSync(WORKLOADS, 'utf8').split('\n').indexOf('def fib(n):') + 1
  for (const target of targets) {
    const fib = ours(events.filter((e) => e.pid === target.pid), 'fib')
    t.equal(fib.entries.length, 2 * fibonacci(n + 1) - 1, `entries of ${target.pid}`)
    t.equal(fib.returns.length, 2 * fibonacci(n + 1) - 1, `returns of ${target.pid}`)
    t.ok(fib.entries.every((e) => e.line === defLine), `every entry of ${target.pid} on the def line`)
  }
})

t.test('functionPrefix and filePrefix filter in the kernel; what passes keeps its true depth', async (t) => {
  const n = 10
  const unfiltered = await startWorkload(t, ['fib', String(n)])
  const all = traceCalls(unfiltered.pid)
  await all.ready
  unfiltered.go()
  const reference = ours(await collect(all), 'fib')

  const target = await startWorkload(t, ['fib', String(n)])
  const trace = traceCalls(target.pid, { functionPrefix: 'fi', filePrefix: WORKLOADS.slice(0, 20) })
  await trace.ready
  target.go()
  const events = await collect(trace)
  t.ok(events.length > 0 && events.every((e) => e.func.startsWith('fi') && e.file.startsWith(WORKLOADS.slice(0, 20))), 'only matching calls arrive')
  const fib = ours(events, 'fib')
  t.equal(fib.entries.length, 2 * fibonacci(n + 1) - 1, 'every fib entry')
  t.equal(fib.returns.length, 2 * fibonacci(n + 1) - 1, 'every fib return')
  t.same(
    fib.entries.map((e) => e.depth),
    reference.entries.map((e) => e.depth),
    'depths as in an unfiltered trace: the calls filtered out still count',
  )

  const elsewhere = await startWorkload(t, ['fib', String(n)])
  const none = traceCalls(elsewhere.pid, { filePrefix: '/nonexistent/' })
  await none.ready
  elsewhere.go()
  t.same(await collect(none), [], 'a file prefix nothing has lets nothing through')
})

t.test('each event names the CPU its probe fired on', async (t) => {
  const target = await startWorkload(t, ['threads', '4', '12'])
  const trace = traceCalls(target.pid)
  await trace.ready
  target.go()
  const cpus = new Set((await collect(trace)).map((e) => e.cpu))
  const online = readFileSync('/sys/devices/system/cpu/online', 'utf8').trim()
  const highest = Math.max(...online.split(',').map((range) => Number(range.split('-').at(-1))))
  t.ok([...cpus].every((cpu) => Number.isInteger(cpu) && cpu >= 0 && cpu <= highest), `CPUs ${[...cpus].join(', ')} are online CPUs (${online})`)
})

t.test('bad prefixes are INVALID_ARGUMENT', async (t) => {
  const target = await startWorkload(t, ['fib', '1'])
  await t.rejects(traceCalls(target.pid, { functionPrefix: 'x'.repeat(257) }).ready, { code: 'INVALID_ARGUMENT', message: /functionPrefix.*256 bytes/ })
  await t.rejects(traceCalls(target.pid, { filePrefix: 42 as never }).ready, { code: 'INVALID_ARGUMENT', message: /filePrefix/ })
})

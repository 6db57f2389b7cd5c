// trace.batches({ columns }) against real processes: the chosen columns hold what the targets
// did (fib(n)'s calls, leaf()'s returns through CPython's own probe, processes a { binary }
// trace finds), the others are undefined, and bad choices are TraceErrors that say so.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { CallKind, sampleStacks, traceCalls, traceUsdt } from '../src/index.js'
import { PYENV, STACK_PYTHONS } from './fixtures/processes.js'
import { startStacksTarget } from './fixtures/stacks.js'
import { WORKLOADS, collect, fibonacci, startWorkload } from './targets.js'

/** A CallBatch's columns, as docs/batches.md lists them. */
const CALL_COLUMNS = ['kind', 'pid', 'tid', 'timestampNs', 'durationNs', 'line', 'depth', 'functionId', 'cpu']

/** The columns of `batch` among `names` that it has (an array, not undefined). */
function present(batch: object, names: readonly string[]): string[] {
  return names.filter((name) => (batch as Record<string, unknown>)[name] !== undefined)
}

t.test("calls with columns ['kind', 'functionId', 'durationNs']: fib(n)'s calls, and no other column", async (t) => {
  // fib(20) makes 2·F(21)−1 calls: 43,782 rows, more than two deliveries of 16,384 hold.
  const n = 20
  const calls = 2 * fibonacci(n + 1) - 1
  const target = await startWorkload(t, ['fib', String(n)])
  const trace = traceCalls(target.pid)
  await trace.ready
  target.go()
  const chosen = ['kind', 'functionId', 'durationNs'] as const
  const returns = new Map<string, number>()
  const entries = new Map<string, number>()
  const wrongColumns = new Set<string>()
  let batches = 0
  let fibDurations = true
  for await (const batch of trace.batches({ columns: chosen })) {
    batches++
    for (const name of present(batch, CALL_COLUMNS)) if (!chosen.includes(name as (typeof chosen)[number])) wrongColumns.add(name)
    for (const name of chosen) if (batch[name].length !== batch.length) wrongColumns.add(name)
    for (let i = 0; i < batch.length; i++) {
      const { func } = batch.function(batch.functionId[i]!)
      const returned = batch.kind[i] === CallKind.return
      const counts = returned ? returns : entries
      counts.set(func, (counts.get(func) ?? 0) + 1)
      if (func === 'fib') fibDurations &&= Number.isNaN(batch.durationNs[i]!) !== returned
    }
  }
  t.same([...wrongColumns], [], "every batch has the chosen columns, each the batch's length, and none other")
  t.ok(batches >= Math.ceil((2 * calls) / 16_384), `the rows came in ${batches} batches`)
  t.equal(entries.get('fib'), calls, `2·F(${n + 1})−1 = ${calls} entries of fib`)
  t.equal(returns.get('fib'), calls, `and as many returns`)
  t.equal(returns.get('run_fib'), 1, 'run_fib returned once')
  t.ok(fibDurations, 'every return of fib has its duration, no entry has one')
  t.equal(trace.lost, 0, 'nothing lost')
})

t.test('calls with columns []: the batches\' lengths alone count the rows', async (t) => {
  // Only returns, and only of functions named leaf…, filtered in the kernel: one row per leaf() call.
  const count = 50_000
  const target = await startWorkload(t, ['calls', String(count)])
  const trace = traceCalls(target.pid, { entries: false, functionPrefix: 'leaf' })
  await trace.ready
  target.go()
  let rows = 0
  let columns = 0
  for await (const batch of trace.batches({ columns: [] })) {
    rows += batch.length
    columns += present(batch, CALL_COLUMNS).length
  }
  t.equal(rows, count, `${count} rows, one per leaf() call`)
  t.equal(columns, 0, 'and no column in any batch')
  t.equal(trace.lost, 0, 'nothing lost')
})

t.test("usdt with columns ['arg1', 'arg2'] of (file, function, line): the file strings are stepped over, never named", async (t) => {
  const count = 25
  const target = await startWorkload(t, ['calls', String(count)])
  const trace = traceUsdt({ pid: target.pid, provider: 'python', name: 'function__return', args: ['str', 'str', 'i32'] })
  await trace.ready
  target.go()
  // leaf() is `def leaf():` then `return 1`: it returns from the line after its def.
  const leafReturnLine = readFileSync(WORKLOADS, 'utf8').split('\n').indexOf('def leaf():') + 2
  const returns = new Map<string, number[]>()
  let last
  let columnsRight = true
  for await (const batch of trace.batches({ columns: ['arg1', 'arg2'] })) {
    last = batch
    columnsRight &&= present(batch, ['pid', 'tid', 'timestampNs', 'truncated']).length === 0
    columnsRight &&= batch.args.length === 3 && batch.args[0] === undefined
    columnsRight &&= batch.args[1] instanceof Uint32Array && batch.args[2] instanceof Float64Array
    const [, func, line] = batch.args as [undefined, Uint32Array, Float64Array]
    for (let i = 0; i < batch.length; i++) {
      const name = batch.string(func[i]!)
      returns.set(name, [...(returns.get(name) ?? []), line[i]!])
    }
  }
  t.ok(columnsRight, 'args[1] and args[2] in every batch; args[0], pid, tid, timestampNs and truncated undefined')
  t.same(returns.get('leaf'), Array(count).fill(leafReturnLine), `${count} returns of leaf, each from its return line`)
  t.equal(returns.get('run_calls')?.length, 1, 'run_calls returned once')
  const named = Array.from({ length: last!.stringCount }, (_, id) => last!.string(id))
  t.notOk(named.includes(WORKLOADS), 'the unchosen file argument was never given an id')
})

t.test("sampleStacks({ binary }) with columns ['pid']: processes started after the trace are still followed, and sampled", async (t) => {
  // Without stackId no sample goes to the side, but the records asking about new processes do:
  // a process is only sampled once user space has described it.
  const python = STACK_PYTHONS[2]!
  const trace = sampleStacks({ binary: `${PYENV}/3.12.1/lib/libpython3.12.so.1.0`, hz: 199 })
  await trace.ready
  const { report } = await startStacksTarget(t, python, ['fork', '2'])
  const children = report.children as number[]
  t.teardown(() => children.forEach((child) => void process.kill(child, 'SIGKILL')))
  const seen = new Set<number>()
  let columnsRight = true
  const deadline = setTimeout(() => void trace.close(), 20_000)
  for await (const batch of trace.batches({ columns: ['pid'] })) {
    columnsRight &&= batch.pid.length === batch.length && present(batch, ['tid', 'cpu', 'timestampNs', 'onCpu', 'offCpuNs', 'truncated', 'stackId']).length === 0
    for (const pid of batch.pid) if (children.includes(pid)) seen.add(pid)
    if (seen.size === children.length) break
  }
  clearTimeout(deadline)
  t.same([...seen].sort(), [...children].sort(), 'both forked children, started after the trace, have rows')
  t.ok(columnsRight, 'every batch has pid alone')
})

t.test('bad columns are TraceErrors naming the cause and the columns there are; the first batches() call chooses', async (t) => {
  const target = await startWorkload(t, ['lines'])
  const trace = traceCalls(target.pid)
  const listsEvery = (names: readonly string[]) => (error: Error) => names.every((name) => error.message.includes(name))
  t.throws(() => trace.batches({ columns: ['kind', 'bogus' as 'kind'] }), { name: 'TraceError', code: 'INVALID_ARGUMENT', message: /"bogus" is not a column/ })
  t.ok(listsEvery(CALL_COLUMNS)(caught(() => trace.batches({ columns: ['bogus' as 'kind'] }))), 'an unknown name: the message lists every column')
  t.throws(() => trace.batches({ columns: 'kind' as unknown as ['kind'] }), { name: 'TraceError', code: 'INVALID_ARGUMENT', message: /array of column names/ })
  t.throws(() => trace.batches('kind' as never), { name: 'TraceError', code: 'INVALID_ARGUMENT', message: /\{ columns/ })

  // None of that chose for the trace: this does, a name given twice counted once.
  const batches = trace.batches({ columns: ['kind', 'durationNs', 'kind'] })
  t.equal(trace.batches(), batches, 'batches() again, without options: the same iterator')
  t.equal(trace.batches({ columns: ['durationNs', 'kind'] }), batches, 'the same columns in another order: the same iterator')
  t.throws(() => trace.batches({ columns: ['kind'] }), {
    name: 'TraceError',
    code: 'INVALID_ARGUMENT',
    message: /chosen by its first batches\(\) call \(kind, durationNs\), not kind/,
  })
  t.throws(() => trace.batches({ columns: [] }), { code: 'INVALID_ARGUMENT', message: /\(kind, durationNs\), not none/ }, 'no columns is a choice of its own too')
  await t.rejects(trace.next(), { name: 'TraceError', code: 'ALREADY_CONSUMED' }, 'next() after batches({ columns })')
  await trace.ready
  target.stdin!.write('\n')
  const { value: batch } = await batches.next()
  t.same(present(batch!, CALL_COLUMNS), ['kind', 'durationNs'], 'the batch has kind and durationNs alone')
  t.ok(batch!.length > 0 && batch!.kind.length === batch!.length, `with its ${batch!.length} rows`)
  await trace.close()

  const asEvents = traceCalls(target.pid)
  const pending = asEvents.next()
  t.throws(() => asEvents.batches({ columns: ['kind'] }), { name: 'TraceError', code: 'ALREADY_CONSUMED' }, 'batches({ columns }) on an events trace')
  await asEvents.close()
  await pending

  const usdt = traceUsdt({ pid: target.pid, provider: 'python', name: 'function__return', args: ['str', 'str', 'i32'] })
  t.ok(listsEvery(['pid', 'tid', 'timestampNs', 'truncated', 'arg0', 'arg1', 'arg2'])(caught(() => usdt.batches({ columns: ['arg3'] }))), 'usdt: an argument not declared, and the columns there are')
  await usdt.close()
  t.same(await collect(usdt), [], 'the batches() that failed chose nothing: the trace reads as events (closed, so none)')
})

/** The error `f` throws. */
function caught(f: () => unknown): Error {
  try {
    f()
  } catch (error) {
    return error as Error
  }
  throw new Error('expected a throw')
}

// What only trace.batches() has, against real python3.11 processes: typed-array columns,
// function ids right across code-object reuse, one way of reading a trace, a bounded backlog.
// What both ways share (exact counts, nesting, ending, release) is tested once over both
// readers (test/fixtures/readers.ts) in the calls, lifecycle, syscalls and libcalls tests.
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { CallKind, TraceError, stats, traceCalls, traceLibraryCalls, traceSyscalls, type CallBatch } from '../src/index.js'
import { startWorkload, traceUniqueFunctions } from './targets.js'
import { eventually } from './fixtures/agent.js'
import { CALL_EVENT } from '../src/kernel/abi.js'

/** Each column's element type, as docs/batches.md lists it. */
const CALL_COLUMNS = {
  kind: Uint8Array,
  pid: Uint32Array,
  tid: Uint32Array,
  timestampNs: BigInt64Array,
  durationNs: Float64Array,
  line: Int32Array,
  depth: Uint16Array,
  functionId: Uint32Array,
  cpu: Uint32Array,
} as const

t.test("every column is the typed array docs/batches.md names, with the batch's length", async (t) => {
  // fib(20) makes 2 * fib(21) - 1 calls, an entry and a return each: more rows than two
  // deliveries hold (16,384 each, docs/batches.md), so the trace must come in at least three.
  const n = 20
  const rows = 2 * (2 * fibonacci(n + 1) - 1)
  const target = await startWorkload(t, ['fib', String(n)])
  const trace = traceCalls(target.pid)
  await trace.ready
  target.go()
  const wrong = new Set<string>()
  let batches = 0
  for await (const batch of trace.batches()) {
    batches++
    for (const [column, type] of Object.entries(CALL_COLUMNS)) {
      const values = batch[column as keyof typeof CALL_COLUMNS]
      if (!(values instanceof type) || values.length !== batch.length) wrong.add(column)
    }
  }
  t.ok(batches >= Math.ceil(rows / 16_384), `as many batches as ${rows} rows need (${batches})`)
  t.same([...wrong], [], "every column of every batch: its type, and the batch's length")
})

t.test("a batch's columns hold its rows until the next batch is asked for, while the trace fills the deliveries after it", async (t) => {
  const calls = 200_000
  const target = await startWorkload(t, ['calls', String(calls)])
  const trace = traceCalls(target.pid, { entries: false, ringBufferBytes: 64 << 20 })
  const batches = trace.batches()
  await trace.ready
  target.go()
  const held = (await batches.next()).value as CallBatch
  const copies = Object.fromEntries(Object.keys(CALL_COLUMNS).map((column) => [column, held[column as keyof typeof CALL_COLUMNS].slice()]))
  // docs/batches.md: 4 deliveries wait unread, and the batch handed out is kept besides.
  const kept = 1 + 4
  await eventually('the deliveries after the held batch', async () => (trace.deliveries >= kept ? true : undefined), 10_000)
  // Some flush intervals more, for a drain past the bound to show.
  await sleep(50)
  t.equal(trace.deliveries, kept, `the addon filled ${kept - 1} deliveries more while the batch was held, and stopped`)
  const changed = Object.keys(CALL_COLUMNS).filter((column) => !equalArrays(held[column as keyof typeof CALL_COLUMNS], copies[column]!))
  t.same(changed, [], `the held batch's ${held.length} rows are as they were handed out, in every column`)

  let leaves = held.functionId.filter((id) => held.function(id).func === 'leaf').length
  let previous = held.timestampNs[held.length - 1]!
  let ordered = true
  for await (const batch of batches) {
    for (let i = 0; i < batch.length; i++) {
      if (batch.function(batch.functionId[i]!).func === 'leaf') leaves++
      ordered &&= batch.timestampNs[i]! >= previous
      previous = batch.timestampNs[i]!
    }
  }
  t.equal(leaves, calls, 'the held rows and the later ones are every leaf return')
  t.ok(ordered, 'the later batches go on where the held one stopped')
  t.equal(trace.lost, 0, 'nothing lost while the batch was held')
})

/** Whether two typed arrays hold the same values. */
function equalArrays(a: ArrayLike<number | bigint>, b: ArrayLike<number | bigint>): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false
  return true
}

t.test('thousands of functions made and freed in turn: each id names its own function', async (t) => {
  const count = 3000
  const { trace, reused: whenReused } = await traceUniqueFunctions(t, count)
  const rowsById = new Map<number, number>()
  let last: CallBatch | undefined
  for await (const batch of trace.batches()) {
    last = batch
    for (const id of batch.functionId) rowsById.set(id, (rowsById.get(id) ?? 0) + 1)
  }
  const named = new Map<string, number>()
  for (const [id, rows] of rowsById) {
    const { func } = last!.function(id)
    if (!func.startsWith('unique_')) continue
    t.notOk(named.has(func), `${func} has one id`)
    named.set(func, rows)
  }
  const reused = await whenReused
  t.ok(reused > count / 2, `name strings took earlier ones' addresses ${reused} times`)
  t.same([...named.keys()].sort(), Array.from({ length: count }, (_, i) => `unique_${i}`).sort(), 'every function under its own id')
  t.ok([...named.values()].every((rows) => rows === 2), 'each id with one entry and one return')
  t.ok(last!.functionCount >= count, 'functionCount counts every id handed out')
})

t.test('one name made anew at many code objects keeps one id for the life of the trace', async (t) => {
  const count = 2000
  const distinct = 7
  const target = await startWorkload(t, ['recreate', String(count), String(distinct)])
  const trace = traceCalls(target.pid)
  await trace.ready
  target.go()
  const counts = new Map<number, number>()
  let last: CallBatch | undefined
  for await (const batch of trace.batches()) {
    last = batch
    for (let i = 0; i < batch.length; i++) {
      if (batch.kind[i] === CallKind.return) counts.set(batch.functionId[i]!, (counts.get(batch.functionId[i]!) ?? 0) + 1)
    }
  }
  const again = [...counts].filter(([id]) => last!.function(id).func.startsWith('again_'))
  t.equal(again.length, distinct, `one id per name (${distinct})`)
  for (const [id, returns] of again) {
    const k = Number(last!.function(id).func.slice('again_'.length))
    // Calls i with i % distinct === k, for i below count.
    t.equal(returns, Math.ceil((count - k) / distinct), `again_${k}: every return under its one id`)
  }
  t.throws(() => last!.function(last!.functionCount), TraceError, 'an id never handed out is a TraceError')
})

t.test('a trace is read one way: events after batches, or batches after events, is a TraceError', async (t) => {
  const target = await startWorkload(t, ['lines'])
  const asBatches = traceCalls(target.pid)
  asBatches.batches()
  await t.rejects(asBatches.next(), { name: 'TraceError', code: 'ALREADY_CONSUMED' }, 'next() on a batches trace')
  t.equal(asBatches.batches(), asBatches.batches(), 'batches() again is the same iterator')
  await asBatches.close()

  const asEvents = traceCalls(target.pid)
  const pending = asEvents.next()
  t.throws(() => asEvents.batches(), { name: 'TraceError', code: 'ALREADY_CONSUMED' }, 'batches() on an events trace')
  await asEvents.close()
  t.same(await pending, { done: true, value: undefined }, 'the events trace ends on close')

  const summaries = stats(target.pid)
  t.throws(() => summaries.batches(), { name: 'TraceError', code: 'INVALID_ARGUMENT' }, 'a stream without batches says so')
  await summaries.close()

  const stacked = traceSyscalls(target.pid, { stack: true })
  t.throws(() => stacked.batches(), { name: 'TraceError', code: 'INVALID_ARGUMENT', message: /stack/ }, 'syscalls with stack: true have no batches, and say why')
  await stacked.close()
  const stackedLibrary = traceLibraryCalls(target.pid, { library: 'libc', symbols: ['write'], stack: true })
  t.throws(() => stackedLibrary.batches(), { name: 'TraceError', code: 'INVALID_ARGUMENT', message: /stack/ }, 'library calls with stack: true have none either')
  await stackedLibrary.close()
})

t.test('the raw deliveries made before batches() was called come many to a batch, every call in order', async (t) => {
  const calls = 100_000
  const target = await startWorkload(t, ['calls', String(calls)])
  const exited = once(target, 'exit')
  const trace = traceCalls(target.pid, { entries: false, ringBufferBytes: 64 << 20 })
  await trace.ready
  target.go()
  await exited
  // docs/batches.md: before batches(), records come in the events' 64 KiB batches, 16 at most.
  await eventually('the raw deliveries', async () => (trace.deliveries >= 16 ? true : undefined), 10_000)
  t.equal(trace.deliveries, 16, 'the trace holds the 16 raw deliveries the bound allows')
  // A raw record is a 4-byte length and a call_event (test/abi.test.ts checks its size against
  // bpf/usdtrace.h): at most this many calls fit one raw batch.
  const rawRows = Math.floor((64 << 10) / (4 + CALL_EVENT.size))
  const lengths: number[] = []
  let leaves = 0
  let previous = 0n
  let ordered = true
  for await (const batch of trace.batches()) {
    lengths.push(batch.length)
    for (let i = 0; i < batch.length; i++) {
      if (batch.function(batch.functionId[i]!).func === 'leaf') leaves++
      ordered &&= batch.timestampNs[i]! >= previous
      previous = batch.timestampNs[i]!
    }
  }
  t.ok(lengths[0]! > rawRows, `the first batch (${lengths[0]} rows) holds more than one raw batch could (${rawRows})`)
  t.ok(lengths.every((length) => length <= 16_384), 'none holds more than a delivery (16,384 rows, docs/batches.md)')
  t.equal(leaves, calls, 'every leaf return, those delivered raw and those after')
  t.ok(ordered, 'in the order they happened')
  t.equal(trace.lost, 0, 'nothing lost')
})

t.test('a slow batch consumer loses nothing silently: rows taken and lost account for every call', async (t) => {
  const calls = 100_000
  const target = await startWorkload(t, ['calls', String(calls)])
  const trace = traceCalls(target.pid, { entries: false, ringBufferBytes: 1 << 16 })
  await trace.ready
  target.go()
  let leaves = 0
  let leafId = -1
  for await (const batch of trace.batches()) {
    for (let i = 0; i < batch.length; i++) {
      if (leafId < 0 && batch.function(batch.functionId[i]!).func === 'leaf') leafId = batch.functionId[i]!
      if (batch.functionId[i] === leafId) leaves++
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.ok(trace.lost > 0, `a 64 KiB ring behind a consumer that sleeps per batch drops (${trace.lost} lost)`)
  t.ok(leaves <= calls, `never more leaf returns (${leaves}) than calls`)
  t.ok(leaves + trace.lost >= calls, `taken (${leaves}) and lost (${trace.lost}) account for all ${calls} calls`)
})

function fibonacci(n: number): number {
  return n < 2 ? n : fibonacci(n - 1) + fibonacci(n - 2)
}

// trace.batches() against real python3.11 processes: the same exact counts as the event tests,
// read from typed-array columns; function ids right across code-object reuse; and the same
// ending, abort and release behaviour as events.
import { once } from 'node:events'
import { readdirSync, readlinkSync } from 'node:fs'
import { setImmediate as nextTurn } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { CallKind, TraceError, stats, traceCalls, traceLibraryCalls, traceSyscalls, type CallBatch } from '../src/index.js'
import { readSemaphores } from './semaphores.js'
import { WORKLOADS, fibonacci, startWorkload } from './targets.js'
import { watchEventLoop } from './fixtures/event-loop.js'

/** A batch's rows, copied: the next batch overwrites its columns. */
type Copied = Pick<CallBatch, 'length' | 'kind' | 'pid' | 'tid' | 'timestampNs' | 'durationNs' | 'depth' | 'functionId' | 'function' | 'functionCount'>

/** Every batch until the trace ends (the target exits), each copied as it arrives. */
async function collectBatches(batches: AsyncIterable<CallBatch>): Promise<Copied[]> {
  const all: Copied[] = []
  for await (const batch of batches) {
    all.push({
      length: batch.length,
      kind: batch.kind.slice(),
      pid: batch.pid.slice(),
      tid: batch.tid.slice(),
      timestampNs: batch.timestampNs.slice(),
      durationNs: batch.durationNs.slice(),
      depth: batch.depth.slice(),
      functionId: batch.functionId.slice(),
      function: (id) => batch.function(id),
      functionCount: batch.functionCount,
    })
  }
  return all
}

/** Entries and returns per function name of the workloads file, counted from the columns. */
function countCalls(batches: Copied[]): Map<string, { entries: number; returns: number }> {
  const counts = new Map<string, { entries: number; returns: number }>()
  for (const batch of batches) {
    for (let i = 0; i < batch.length; i++) {
      const names = batch.function(batch.functionId[i]!)
      if (names.file !== WORKLOADS) continue
      const count = counts.get(names.func) ?? { entries: 0, returns: 0 }
      counts.set(names.func, count)
      if (batch.kind[i] === CallKind.entry) count.entries++
      else count.returns++
    }
  }
  return counts
}

/** Replays each thread's rows on a stack of its own: depths nest, durations are return minus entry. */
function checkNesting(t: Test, batches: Copied[]): void {
  const stacks = new Map<number, { functionId: number; timestampNs: bigint }[]>()
  let problems = 0
  let rows = 0
  const expect = (ok: boolean, message: string) => {
    if (!ok && problems++ < 5) t.fail(message)
  }
  for (const batch of batches) {
    t.equal(batch.kind.length, batch.length, 'every column has the batch\'s length')
    for (let i = 0; i < batch.length; i++, rows++) {
      const stack = stacks.get(batch.tid[i]!) ?? []
      stacks.set(batch.tid[i]!, stack)
      if (batch.kind[i] === CallKind.entry) {
        expect(batch.depth[i] === stack.length, 'an entry sits one deeper than its caller')
        expect(Number.isNaN(batch.durationNs[i]), 'an entry has no duration')
        stack.push({ functionId: batch.functionId[i]!, timestampNs: batch.timestampNs[i]! })
        continue
      }
      const entry = stack.pop()
      if (!entry) {
        expect(batch.depth[i] === 0 && Number.isNaN(batch.durationNs[i]), 'an unmatched return has no duration')
        continue
      }
      expect(entry.functionId === batch.functionId[i], 'a return has its entry\'s function id')
      expect(batch.depth[i] === stack.length, 'a return has its entry\'s depth')
      expect(batch.durationNs[i] === Number(batch.timestampNs[i]! - entry.timestampNs), 'duration is return minus entry')
    }
  }
  t.equal(problems, 0, `nesting holds across ${rows} rows`)
}

t.test('fib(n) through batches: 2·F(n+1)−1 entries and returns, in columns', async (t) => {
  const n = 18
  const target = await startWorkload(t, ['fib', String(n)])
  const trace = traceCalls(target.pid)
  const batches = trace.batches()
  await trace.ready
  target.go()
  const all = await collectBatches(batches)
  const fib = countCalls(all).get('fib')
  t.same(fib, { entries: 2 * fibonacci(n + 1) - 1, returns: 2 * fibonacci(n + 1) - 1 }, 'every fib call, entry and return')
  t.equal(trace.lost, 0, 'nothing lost')
  t.ok(all.length > 1, `more than one batch (${all.length})`)
  t.ok(all.every((b) => b.pid.every((pid) => pid === target.pid) && b.tid.every((tid) => tid === target.pid)), 'pid and tid are the target\'s')
  checkNesting(t, all)
})

t.test('threads: each worker\'s fib calls, by tid', async (t) => {
  const threads = 4
  const n = 14
  const target = await startWorkload(t, ['threads', String(threads), String(n)])
  const trace = traceCalls(target.pid)
  await trace.ready
  target.go()
  const all = await collectBatches(trace.batches())
  const byThread = new Map<number, number>()
  for (const batch of all) {
    for (let i = 0; i < batch.length; i++) {
      const names = batch.function(batch.functionId[i]!)
      if (batch.kind[i] === CallKind.entry && names.func === 'fib' && names.file === WORKLOADS) {
        byThread.set(batch.tid[i]!, (byThread.get(batch.tid[i]!) ?? 0) + 1)
      }
    }
  }
  t.equal(byThread.size, threads, 'one tid per worker')
  t.notOk(byThread.has(target.pid), 'the main thread calls no fib')
  for (const [tid, calls] of byThread) t.equal(calls, 2 * fibonacci(n + 1) - 1, `thread ${tid} fib calls`)
  checkNesting(t, all)
})

t.test('generators, coroutines and exceptions through batches', async (t) => {
  const target = await startWorkload(t, ['generators'])
  const trace = traceCalls(target.pid)
  await trace.ready
  target.go()
  const all = await collectBatches(trace.batches())
  const counts = countCalls(all)
  t.same(counts.get('countdown'), { entries: 4, returns: 4 }, 'a generator of 3 values is resumed 4 times and leaves 4 times')
  const tick = counts.get('tick')!
  t.ok(tick.entries >= 3 && tick.returns === tick.entries, 'the coroutine is resumed at least 3 times, each returning')
  for (const func of ['fail', 'catch']) t.same(counts.get(func), { entries: 1, returns: 1 }, `${func}: once in, once out`)
  checkNesting(t, all)
})

t.test('thousands of functions made and freed in turn: each id names its own function', async (t) => {
  const count = 3000
  const target = await startWorkload(t, ['unique', String(count)])
  let output = ''
  target.stdout!.on('data', (chunk: Buffer) => (output += chunk))
  const trace = traceCalls(target.pid)
  await trace.ready
  target.go()
  const all = await collectBatches(trace.batches())
  const rowsById = new Map<number, number>()
  for (const batch of all) for (const id of batch.functionId) rowsById.set(id, (rowsById.get(id) ?? 0) + 1)
  const last = all.at(-1)!
  const named = new Map<string, number>()
  for (const [id, rows] of rowsById) {
    const { func } = last.function(id)
    if (!func.startsWith('unique_')) continue
    t.notOk(named.has(func), `${func} has one id`)
    named.set(func, rows)
  }
  const reused = Number(/^reused (\d+)$/m.exec(output)?.[1])
  t.ok(reused > count / 2, `name strings took earlier ones' addresses ${reused} times`)
  t.same([...named.keys()].sort(), Array.from({ length: count }, (_, i) => `unique_${i}`).sort(), 'every function under its own id')
  t.ok([...named.values()].every((rows) => rows === 2), 'each id with one entry and one return')
  t.ok(last.functionCount >= count, 'functionCount counts every id handed out')
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
})

t.test('the target exiting ends the batches after the last one; a consumer that waited gets everything', async (t) => {
  const calls = 200_000
  const target = await startWorkload(t, ['calls', String(calls)])
  const exited = once(target, 'exit')
  const trace = traceCalls(target.pid, { entries: false, ringBufferBytes: 64 << 20 })
  await trace.ready
  target.go()
  await exited
  let leaves = 0
  let previous = 0n
  let ordered = true
  let leafId = -1
  for await (const batch of trace.batches()) {
    for (let i = 0; i < batch.length; i++) {
      if (leafId < 0 && batch.function(batch.functionId[i]!).func === 'leaf') leafId = batch.functionId[i]!
      if (batch.functionId[i] !== leafId) continue
      leaves++
      ordered &&= batch.timestampNs[i]! >= previous
      previous = batch.timestampNs[i]!
    }
  }
  t.equal(leaves, calls, 'every leaf return, though most waited in the ring')
  t.ok(ordered, 'in the order they happened')
  t.equal(trace.lost, 0, 'nothing lost')
})

/** This process's fd table: each open fd and what it refers to. */
function fdTable(): Record<string, string> {
  const table: Record<string, string> = {}
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      table[fd] = readlinkSync(`/proc/self/fd/${fd}`)
    } catch {
      // the directory's own fd, closed by now
    }
  }
  return table
}

t.test('break, abort and close release every probe and fd, trace after trace', async (t) => {
  const cycles = 60
  const target = await startWorkload(t, ['lines'])
  target.go()
  const before = fdTable()
  for (let cycle = 0; cycle < cycles; cycle++) {
    if (cycle % 3 === 0) {
      const closed = traceCalls(target.pid)
      const batches = closed.batches()
      await closed.ready
      const pending = batches.next()
      await closed.close()
      t.same(await pending, { done: true, value: undefined }, 'close ends a pending read')
    } else if (cycle % 3 === 1) {
      const broken = traceCalls(target.pid)
      await broken.ready
      const timer = setInterval(() => target.stdin!.write('\n'), 1)
      for await (const batch of broken.batches()) {
        void batch
        break
      }
      clearInterval(timer)
    } else {
      const controller = new AbortController()
      const aborted = traceCalls(target.pid, { signal: controller.signal })
      await aborted.ready
      const pending = aborted.batches().next()
      controller.abort()
      await t.rejects(pending, { name: 'AbortError' }, 'a pending read rejects with AbortError')
      await aborted.close()
    }
  }
  await nextTurn()
  t.same(fdTable(), before, `the fd table after ${cycles} traces is the one before`)
  t.same(readSemaphores(target.pid), { entry: 0, return: 0, line: 0 }, 'every semaphore back to 0')
})

t.test('an abort during a for-await over batches throws AbortError; no batch after it', async (t) => {
  const target = await startWorkload(t, ['flood', '30'])
  const controller = new AbortController()
  const trace = traceCalls(target.pid, { signal: controller.signal })
  await trace.ready
  target.go()
  let seen = 0
  await t.rejects(
    (async () => {
      for await (const batch of trace.batches()) {
        void batch
        if (++seen === 10) controller.abort()
      }
    })(),
    { name: 'AbortError' },
  )
  t.equal(seen, 10, 'no batch after the abort')
  await trace.close()
  t.same(readSemaphores(target.pid), { entry: 0, return: 0, line: 0 }, 'semaphores back to 0 while the target runs on')
})

t.test('batches never starve the event loop: a timer keeps firing through a flood', async (t) => {
  const target = await startWorkload(t, ['flood', '3'])
  const trace = traceCalls(target.pid, { entries: false })
  await trace.ready
  const eventLoop = watchEventLoop()
  let output = ''
  target.stdout!.on('data', (chunk: Buffer) => (output += chunk))
  target.go()
  let leaves = 0
  let leafId = -1
  for await (const batch of trace.batches()) {
    for (let i = 0; i < batch.length; i++) {
      if (leafId < 0 && batch.function(batch.functionId[i]!).func === 'leaf') leafId = batch.functionId[i]!
      if (batch.functionId[i] === leafId) leaves++
    }
  }
  const reported = Number(output.trim())
  t.ok(leaves > 0 && leaves <= reported, `${leaves} leaf returns delivered, never more than the ${reported} made`)
  t.equal(leaves + trace.lost >= reported, true, `delivered (${leaves}) + lost (${trace.lost}) account for every call`)
  eventLoop.check(t)
})

t.test('syscalls through batches: N lseek and getppid calls, their return values, exit_group last', async (t) => {
  const n = 50
  const target = await startWorkload(t, ['syscalls', String(n), `/nonexistent/usdtrace-${process.pid}/missing.txt`])
  const trace = traceSyscalls(target.pid)
  await trace.ready
  target.go()
  const lseekReturns: bigint[] = []
  const getppidReturns: bigint[] = []
  let last: { name: string; returned: number; durationNs: number } | undefined
  let rows = 0
  let oneThread = true
  for await (const batch of trace.batches()) {
    for (let i = 0; i < batch.length; i++, rows++) {
      const name = batch.name(batch.nr[i]!)
      oneThread &&= batch.pid[i] === target.pid && batch.tid[i] === target.pid
      if (name === 'lseek') lseekReturns.push(batch.ret[i]!)
      if (name === 'getppid') getppidReturns.push(batch.ret[i]!)
      last = { name, returned: batch.returned[i]!, durationNs: batch.durationNs[i]! }
    }
  }
  t.same(lseekReturns, Array.from({ length: n }, (_, offset) => BigInt(offset)), 'every lseek, each returning its offset, in order')
  t.same(getppidReturns, Array.from({ length: n }, () => BigInt(process.pid)), 'every getppid, each returning the test runner, its parent')
  t.match(last, { name: 'exit_group', returned: 0 }, 'the last row is exit_group, which never returns')
  t.ok(Number.isNaN(last!.durationNs), 'and has no duration')
  t.ok(oneThread, `all ${rows} rows from the one process and thread`)
  t.equal(trace.lost, 0, 'nothing lost')
})

t.test('syscall batches per thread; with stack: true there are none, and it says why', async (t) => {
  const threads = 3
  const calls = 25
  const target = await startWorkload(t, ['syscall_threads', String(threads), String(calls)])
  let output = ''
  target.stdout!.on('data', (chunk: Buffer) => (output += chunk))
  const trace = traceSyscalls(target.pid, { names: ['getppid'] })
  await trace.ready
  target.go()
  const byTid = new Map<number, number>()
  for await (const batch of trace.batches()) for (const tid of batch.tid) byTid.set(tid, (byTid.get(tid) ?? 0) + 1)
  const nativeIds = output.replace(/^ready\n/, '').trim().split(' ').map(Number)
  t.same([...byTid.keys()].sort(), [...nativeIds].sort(), 'one tid per thread, its native id')
  for (const [tid, count] of byTid) t.equal(count, calls, `thread ${tid}: every call`)

  const other = await startWorkload(t, ['lines'])
  const stacked = traceSyscalls(other.pid, { stack: true })
  t.throws(() => stacked.batches(), { name: 'TraceError', code: 'INVALID_ARGUMENT', message: /stack/ }, 'stack: true has no batches')
  await stacked.close()
})

t.test('library calls through batches: every os.write is a write row; the bytes written add up', async (t) => {
  const writes = 20
  const failing = 3
  const target = await startWorkload(t, ['writes', String(writes), String(failing)])
  let output = ''
  target.stdout!.on('data', (chunk: Buffer) => (output += chunk))
  // The trace can end before the last of the output is read: wait for all of it.
  const outputRead = once(target.stdout!, 'end')
  const trace = traceLibraryCalls(target.pid, { library: 'libc', symbols: ['write'] })
  await trace.ready
  target.go()
  const symbols = new Set<string>()
  let written = 0n
  let failed = 0
  for await (const batch of trace.batches()) {
    for (let i = 0; i < batch.length; i++) {
      if (batch.tid[i] !== target.pid) continue
      symbols.add(batch.function(batch.functionId[i]!).symbol)
      if (batch.returnValue[i]! > 0n) written += batch.returnValue[i]!
      if (batch.returnValue[i] === -1n) failed++
      t.equal(batch.depth[i], 0, 'write calls no traced function')
    }
  }
  await outputRead
  // The workload prints the fd (its digits and a newline), then writes one byte per call.
  const fdLine = output.replace(/^ready\n/, '').split('\n')[0]!
  t.same([...symbols], ['write'], 'every row is a call of write')
  t.equal(written, BigInt(writes + `${fdLine}\n`.length), 'the bytes written: one per os.write, and the printed fd')
  t.equal(failed, failing, 'one row returning -1 per write to the closed fd')
  t.equal(trace.lost, 0, 'nothing lost')
})

t.test("library calls through batches: a glob's function ids name what it matched", async (t) => {
  const calls = 15
  const target = await startWorkload(t, ['getpid', String(calls)])
  const trace = traceLibraryCalls({ pid: target.pid, library: 'libc.so.6', symbols: 'getpid*' })
  await trace.ready
  target.go()
  let mine = 0
  let right = true
  for await (const batch of trace.batches()) {
    for (let i = 0; i < batch.length; i++) {
      if (batch.tid[i] !== target.pid) continue
      mine++
      right &&= batch.function(batch.functionId[i]!).symbol === 'getpid' && batch.returnValue[i] === BigInt(target.pid)
    }
  }
  t.equal(mine, calls, 'one row per os.getpid()')
  t.ok(right, 'each names getpid and returns the pid')
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

// How a trace ends and what it leaves behind: break, abort, close and the target's exit detach
// every probe (the target's semaphores drop to 0) and leave the fd table and the threads as they were, read as
// events or as batches (test/fixtures/readers.ts); traces can follow each other and run side by
// side; draining never starves the event loop.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { traceCalls } from '../src/index.js'
import { tmpDir } from './fixtures/package.js'
import { readSemaphores } from './semaphores.js'
import { WORKLOADS, collect, fibonacci, startWorkload } from './targets.js'
import { watchEventLoop } from './fixtures/event-loop.js'
import { abortPendingRead, eachReader } from './fixtures/readers.js'
import { eventually } from './fixtures/agent.js'
import { fdTable, threadCount } from './fixtures/processes.js'

const fibEntries = (events: { kind: string; func: string; file: string }[]) =>
  events.filter((e) => e.kind === 'entry' && e.func === 'fib' && e.file === WORKLOADS).length

t.test('break, abort and close detach every probe and leave the fd table and the threads as they were, trace after trace', (t) =>
  eachReader(t, async (t, reader) => {
    // 150 per reader: 300 traces in all, as many as the events alone had before (50 per way of ending, per reader).
    const cycles = 150
    const target = await startWorkload(t, ['lines'])
    target.go()
    t.same(readSemaphores(target.pid), { entry: 0, return: 0, line: 0 }, 'untraced: every semaphore is 0')
    // Taken before the first trace: anything the first one opened and kept would show.
    const before = fdTable()
    // libuv starts its whole thread pool (which detaches probes) on first use: started now, it is in the count.
    await readFile('/proc/self/stat')
    const threadsBefore = threadCount()

    const probe = traceCalls(target.pid)
    await probe.ready
    t.same(readSemaphores(target.pid), { entry: 1, return: 1, line: 1 }, 'traced: entry, return and line raised')
    t.equal(threadCount(), threadsBefore + 1, 'a trace runs one thread of its own, the one that fills its batches')
    await probe.close()

    for (let cycle = 0; cycle < cycles; cycle++) {
      if (cycle % 3 === 0) {
        const closed = traceCalls(target.pid)
        await closed.ready
        const pending = reader.iterator(closed).next()
        await closed.close()
        t.same(await pending, { done: true, value: undefined }, 'close ends a pending read')
      } else if (cycle % 3 === 1) {
        const broken = traceCalls(target.pid)
        await broken.ready
        // Lines until the first read: a batch may have been drained before the loop began.
        const timer = setInterval(() => target.stdin!.write('\n'), 1)
        await reader.calls(broken, { until: () => true })
        clearInterval(timer)
      } else {
        await abortPendingRead(t, reader, (signal) => traceCalls(target.pid, { signal }))
      }
    }
    await nextTurn()
    t.same(fdTable(), before, `the fd table after ${cycles + 1} traces is the one before the first`)
    t.equal(threadCount(), threadsBefore, `as many threads after ${cycles + 1} traces as before the first`)
    t.same(readSemaphores(target.pid), { entry: 0, return: 0, line: 0 }, 'every semaphore back to 0')
  }),
)

t.test('an aborted for-await loop throws AbortError, reads nothing after it and releases its probes', (t) =>
  eachReader(t, async (t, reader) => {
    const target = await startWorkload(t, ['flood', '30'])
    const controller = new AbortController()
    const trace = traceCalls(target.pid, { signal: controller.signal })
    await trace.ready
    target.go()
    // Mid-flood: after at least 10 reads (events, or batches) and 1000 rows.
    let readsAtAbort = 0
    let reads = 0
    const abortMidFlood = (rows: readonly unknown[], readsSoFar: number) => {
      reads = readsSoFar
      if (!controller.signal.aborted && reads >= 10 && rows.length >= 1000) {
        readsAtAbort = reads
        controller.abort()
      }
      return false
    }
    await t.rejects(reader.calls(trace, { until: abortMidFlood }), { name: 'AbortError' })
    t.ok(readsAtAbort > 0 && reads === readsAtAbort, `no read after the abort (${readsAtAbort} before it)`)
    await trace.close()
    t.same(readSemaphores(target.pid), { entry: 0, return: 0, line: 0 }, 'semaphores back to 0 while the target runs on')
  }),
)

t.test('an already aborted signal attaches nothing', async (t) => {
  const target = await startWorkload(t, ['lines'])
  const trace = traceCalls(target.pid, { signal: AbortSignal.abort() })
  await t.rejects(trace.ready, { name: 'AbortError' })
  t.same(readSemaphores(target.pid), { entry: 0, return: 0, line: 0 })
})

t.test('the target exiting ends the iterator after its last read', (t) =>
  eachReader(t, async (t, reader) => {
    const n = 8
    const target = await startWorkload(t, ['fib', String(n)])
    const trace = traceCalls(target.pid)
    await trace.ready
    target.go()
    const { rows } = await reader.calls(trace)
    t.equal(fibEntries(rows), 2 * fibonacci(n + 1) - 1, 'every call arrived before the end')
    t.ok(target.exitCode !== null || (await new Promise((r) => target.once('exit', r))) !== undefined, 'target exited')
    t.same(await reader.iterator(trace).next(), { done: true, value: undefined }, 'and stays ended')
  }),
)

t.test('a second trace after the first closed, and two at once, each see every call', async (t) => {
  const n = 10
  const expected = 2 * fibonacci(n + 1) - 1

  const target = await startWorkload(t, ['fib', String(n)])
  const first = traceCalls(target.pid)
  await first.ready
  await first.close()
  const second = traceCalls(target.pid)
  await second.ready
  target.go()
  t.equal(fibEntries(await collect(second)), expected, 'the trace after a closed one')

  const shared = await startWorkload(t, ['fib', String(n)])
  const left = traceCalls(shared.pid)
  const right = traceCalls(shared.pid)
  await Promise.all([left.ready, right.ready])
  shared.go()
  const [a, b] = await Promise.all([collect(left), collect(right)])
  t.equal(fibEntries(a), expected, 'the first of two concurrent traces')
  t.equal(fibEntries(b), expected, 'the second of two concurrent traces')
})

t.test('a flood is drained in batches without starving the event loop', (t) =>
  eachReader(t, async (t, reader) => {
    // Returns only: the target runs without the line semaphore, and calls all the faster.
    const target = await startWorkload(t, ['flood', '3'])
    const trace = traceCalls(target.pid, { entries: false })
    await trace.ready
    const eventLoop = watchEventLoop()
    let output = ''
    target.stdout!.on('data', (chunk: Buffer) => (output += chunk))
    const outputRead = once(target.stdout!, 'end')
    target.go()
    let leaves = 0
    await reader.calls(trace, {
      onRow: (e) => {
        if (e.func === 'leaf' && e.kind === 'return') leaves++
      },
    })
    await outputRead
    const reported = Number(output.trim())
    t.ok(leaves > 0, `${leaves} leaf returns delivered`)
    t.equal(leaves + trace.lost >= reported, true, `delivered (${leaves}) + lost (${trace.lost}) account for the ${reported} calls made`)
    t.ok(leaves <= reported, 'never more returns than calls')
    eventLoop.check(t)
    t.ok(leaves / trace.deliveries > 10, `calls arrive in batches (${trace.deliveries} deliveries for ${leaves} returns)`)
  }),
)

t.test('a consumer that takes nothing until the target has exited still gets every call, in order', (t) =>
  eachReader(t, async (t, reader) => {
    const calls = 200_000
    const target = await startWorkload(t, ['calls', String(calls)])
    const exited = once(target, 'exit')
    const trace = traceCalls(target.pid, { entries: false, ringBufferBytes: 64 << 20 })
    // Before the run: batches() called only after it would find raw deliveries, kept under the events' bound.
    reader.iterator(trace)
    await trace.ready
    target.go()
    await exited
    const { unreadDeliveries } = reader
    await eventually('the unread deliveries', async () => (trace.deliveries >= unreadDeliveries ? true : undefined), 10_000)
    // Some flush intervals more, for a drain past the bound to show.
    await sleep(50)
    t.equal(trace.deliveries, unreadDeliveries, `with nothing read, the addon stops at ${unreadDeliveries} deliveries and the ring holds the rest`)
    const leaves = (await reader.calls(trace)).rows.filter((e) => e.func === 'leaf')
    t.equal(leaves.length, calls, 'every leaf return, though most waited in the ring while the deliveries were unread')
    t.equal(trace.lost, 0, 'nothing lost')
    t.ok(leaves.every((e, i) => i === 0 || e.timestampNs >= leaves[i - 1]!.timestampNs), 'in the order they happened')
    t.ok(trace.deliveries > unreadDeliveries, `the rest came in further deliveries (${trace.deliveries} in all)`)
  }),
)

t.test('a process under a sampling profiler attaches: its signals wait until the programs are verified', async (t) => {
  // node --cpu-prof signals its main thread every 100 µs here, and the verifier stops with
  // EAGAIN whenever a signal is pending; the tracer is the built package, run without tap's hooks.
  const n = 10
  const target = await startWorkload(t, ['fib', String(n)])
  const script = `import { traceCalls } from ${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)}
    const trace = traceCalls(${target.pid}); await trace.ready; console.log('attached')
    let fib = 0; for await (const e of trace) if (e.func === 'fib' && e.kind === 'return') fib++
    console.log(fib)`
  const profiled = spawn(
    process.execPath,
    ['--cpu-prof', '--cpu-prof-interval', '100', '--cpu-prof-dir', tmpDir(t, 'profile'), '--input-type=module', '-e', script],
    { env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let output = ''
  let going = false
  profiled.stdout!.on('data', (chunk: Buffer) => {
    output += chunk
    if (!going && output.startsWith('attached\n')) {
      going = true
      target.go()
    }
  })
  profiled.stderr!.on('data', (chunk: Buffer) => (output += chunk))
  const [code] = await once(profiled, 'exit')
  t.equal(code, 0, `the traced run completes (${output.trim().split('\n').at(-1)})`)
  t.equal(output, `attached\n${2 * fibonacci(n + 1) - 1}\n`, 'every fib return arrives')
})

t.test('a ring too small for the flood loses events, and counts every one of them', async (t) => {
  const calls = 200_000
  const totalEvents = async (ringBufferBytes: number) => {
    const target = await startWorkload(t, ['calls', String(calls)])
    const trace = traceCalls(target.pid, { entries: false, ringBufferBytes })
    await trace.ready
    target.go()
    const events = await collect(trace)
    return { delivered: events.length, leaves: events.filter((e) => e.func === 'leaf').length, lost: trace.lost }
  }
  const roomy = await totalEvents(64 << 20)
  t.equal(roomy.lost, 0, 'a 64 MiB ring loses nothing')
  t.equal(roomy.leaves, calls, 'and delivers every leaf return')
  const tiny = await totalEvents(4096)
  t.ok(tiny.lost > 0, `a one-page ring overflows (${tiny.lost} lost)`)
  t.equal(tiny.delivered + tiny.lost, roomy.delivered, 'delivered + lost = every event the program made')
})

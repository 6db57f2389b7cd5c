// A service that starts a thread per request, traced for as long as it runs: 20,000 short-lived
// threads one after another, under every stream that keeps state per thread in the kernel. The
// last thread's work is reported (and timed) like the first's, nothing is lost, and the kernel
// holds the state of the threads alive and no more: its maps, counted with bpftool, and the
// memory they take are the same after 20,000 threads as after 10,000.
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t, { type Test } from 'tap'
import { callStats, traceCalls, traceGC, traceImports, traceLibraryCalls, traceSyscalls, type CallEvent } from '../src/index.js'
import { mapEntries, mapMemory } from './fixtures/maps.js'
import { startReady } from './fixtures/processes.js'
import { compile, tmpDir } from './programs/tools.js'
import { startWorkload, type Target } from './targets.js'

const THREADS = 20_000
// What the tracer's RSS may move by between two readings, each after a full collection: the
// allocator's and V8's own ups and downs. Anything kept per thread, 10,000 times, shows above it.
const RSS_SLACK = 16 << 20

setFlagsFromString('--expose-gc')
const collectGarbage = runInNewContext('gc') as () => void

interface Footprint {
  /** Entries of each map asked for, per map of that name the process holds (one per open trace). */
  entries: Record<string, number[]>
  kernelBytes: number
  rssBytes: number
}

function footprint(maps: string[]): Footprint {
  collectGarbage()
  return {
    entries: Object.fromEntries(maps.map((name) => [name, mapEntries(name)])),
    kernelBytes: mapMemory(),
    rssBytes: process.memoryUsage.rss(),
  }
}

/** Lets the target's threads run, taking the footprint when half of them and all of them are gone. */
async function churn(target: Target, maps: string[]): Promise<{ half: Footprint; done: Footprint }> {
  const lines = createInterface({ input: target.stdout! })[Symbol.asyncIterator]()
  const reach = async (said: string) => {
    const { value } = await lines.next()
    if (value !== said) throw new Error(`the target said ${String(value)}, not ${said}`)
    const seen = footprint(maps)
    target.stdin!.write('\n')
    return seen
  }
  target.go()
  const half = await reach('half')
  return { half, done: await reach('done') }
}

/** The events of the trace, until it ends, that are `wanted`: their number. */
async function count<T>(trace: AsyncIterable<T>, wanted: (event: T) => boolean): Promise<number> {
  let counted = 0
  for await (const event of trace) if (wanted(event)) counted++
  return counted
}

/** The checks every churn makes of what the kernel holds once all threads are gone. */
function checkFootprint(t: Test, { half, done }: { half: Footprint; done: Footprint }, expected: Record<string, number>): void {
  for (const [map, count] of Object.entries(expected)) t.same(done.entries[map], [count], `${map}: ${count} entries after ${THREADS} threads`)
  t.equal(done.kernelBytes, half.kernelBytes, `the kernel holds as much after ${THREADS} threads as after ${THREADS / 2} (${done.kernelBytes} bytes)`)
  const grown = done.rssBytes - half.rssBytes
  t.ok(grown < RSS_SLACK, `the tracer's RSS grew by ${(grown / 2 ** 20).toFixed(1)} MiB over the second ${THREADS / 2} threads`)
}

t.test('traceCalls: the last thread\'s calls are timed like the first\'s; one stack left, the main thread\'s', async (t) => {
  const target = await startWorkload(t, ['thread_churn', String(THREADS), 'request'])
  const trace = traceCalls(target.pid, { functionPrefix: 'serve_request' })
  await trace.ready
  const checked = (async () => {
    const entries = new Map<number, CallEvent>()
    const workerDepths = new Set<number>()
    let returns = 0
    let untimed = 0
    let mismatched = 0
    for await (const event of trace) {
      if (event.kind === 'entry') {
        entries.set(event.tid, event)
        continue
      }
      const entry = entries.get(event.tid)
      entries.delete(event.tid)
      returns++
      if (event.durationNs === undefined) untimed++
      else if (!entry || event.durationNs !== event.timestampNs - entry.timestampNs || event.depth !== entry.depth) mismatched++
      if (event.tid !== target.pid) workerDepths.add(event.depth)
    }
    return { returns, untimed, mismatched, workerDepths: workerDepths.size }
  })()
  const footprints = await churn(target, ['threads', 'frame_pages'])
  const seen = await checked
  t.equal(seen.returns, THREADS + 1, 'serve_request returned once per thread, and once in the main thread')
  t.equal(seen.untimed, 0, 'every return timed')
  t.equal(seen.mismatched, 0, 'each duration is its return minus its entry, at its entry\'s depth')
  t.equal(seen.workerDepths, 1, 'at the same depth in every thread')
  t.equal(trace.lost, 0, 'nothing lost')
  checkFootprint(t, footprints, { threads: 1, frame_pages: 0 })
})

t.test('callStats with latency and syscalls: every call counted and timed; one thread left', async (t) => {
  const target = await startWorkload(t, ['thread_churn', String(THREADS), 'request'])
  const stats = callStats(target.pid, { intervalMs: Infinity, syscalls: ['getppid'] })
  await stats.ready
  const snapshots = (async () => {
    const all = []
    for await (const snapshot of stats) all.push(snapshot)
    return all
  })()
  const footprints = await churn(target, ['threads', 'frame_pages', 'syscall_threads'])
  const [snapshot] = await snapshots
  const serve = snapshot!.functions.find((f) => f.func === 'serve_request')
  t.match(serve, { calls: THREADS + 1, timedCalls: THREADS + 1 }, 'serve_request: every call counted and timed')
  t.match(snapshot!.syscalls!.find((s) => s.name === 'getppid'), { calls: THREADS + 1, timedCalls: THREADS + 1 }, 'getppid: every call')
  t.equal(snapshot!.dropped, 0, 'nothing dropped')
  t.equal(stats.lost, 0, 'nothing lost')
  checkFootprint(t, footprints, { threads: 1, frame_pages: 0, syscall_threads: 1 })
})

t.test('traceSyscalls: every thread\'s getppid; one slot left, the main thread\'s', async (t) => {
  const target = await startWorkload(t, ['thread_churn', String(THREADS), 'request'])
  const trace = traceSyscalls(target.pid, { names: ['getppid'] })
  await trace.ready
  const counted = count(trace, (event) => event.name === 'getppid' && event.ret === BigInt(process.pid))
  const footprints = await churn(target, ['in_flight'])
  t.equal(await counted, THREADS + 1, 'getppid returned once per thread, and once in the main thread')
  t.equal(trace.lost, 0, 'nothing lost')
  checkFootprint(t, footprints, { in_flight: 1 })
})

t.test('traceImports: every thread\'s module load, timed; one stack left', async (t) => {
  const dir = tmpDir(t, 'churn-imports')
  writeFileSync(join(dir, 'churn_module.py'), 'VALUE = 1\n')
  const target = await startWorkload(t, ['thread_churn', String(THREADS), 'import', dir])
  const trace = traceImports(target.pid)
  await trace.ready
  const counted = (async () => {
    let loads = 0
    let untimed = 0
    for await (const event of trace) {
      if (event.module !== 'churn_module') continue
      loads++
      if (event.durationNs === undefined) untimed++
    }
    return { loads, untimed }
  })()
  const footprints = await churn(target, ['threads', 'frame_pages'])
  t.same(await counted, { loads: THREADS + 1, untimed: 0 }, 'one load per thread and one in the main thread, every one timed')
  t.equal(trace.lost, 0, 'nothing lost')
  checkFootprint(t, footprints, { threads: 1, frame_pages: 0 })
})

t.test('traceLibraryCalls: threads that end inside a traced call (pthread_exit) leave nothing behind', async (t) => {
  const program = compile('thread_exit.c', join(tmpDir(t, 'thread-exit'), 'thread_exit'), ['-pthread'])
  const child = await startReady(t, program, [String(THREADS)])
  const target = Object.assign(child, { go: () => void child.stdin!.write('\n') })
  const trace = traceLibraryCalls(target.pid, { library: 'libc', symbols: ['getppid', 'pthread_exit'] })
  await trace.ready
  const counted = count(trace, (event) => event.symbol === 'getppid' && event.returnValue === BigInt(process.pid))
  const footprints = await churn(target, ['threads'])
  t.equal(await counted, THREADS, 'every thread\'s getppid, though each thread before it ended inside pthread_exit')
  t.equal(trace.lost, 0, 'nothing lost')
  checkFootprint(t, footprints, { threads: 0 })
})

t.test('traceGC: processes that exit in the middle of a collection leave no slot', async (t) => {
  const survivor = await startWorkload(t, ['lines'])
  const dying = await Promise.all(Array.from({ length: 5 }, () => startWorkload(t, ['exit_in_gc'])))
  const trace = traceGC({ pids: [survivor.pid, ...dying.map((target) => target.pid)] })
  await trace.ready
  for (const target of dying) {
    const exited = once(target, 'exit')
    target.go()
    t.same(await exited, [0, null], `${target.pid} exited from a finalizer the collection ran`)
  }
  t.same(mapEntries('starts'), [0], 'no collection left open')
  survivor.stdin!.end()
  const dyingPids = new Set(dying.map((target) => target.pid))
  t.equal(await count(trace, (event) => dyingPids.has(event.pid)), 0, 'none of their collections finished')
  t.equal(trace.lost, 0, 'nothing lost')
})

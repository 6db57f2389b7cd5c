// The other streams that keep state per thread, under threads that come and go: traceImports'
// stack and traceSyscalls' syscall in flight with 20,000 threads one after another,
// traceLibraryCalls' pending calls with 20,000 threads that each end inside a traced call
// (pthread_exit), and traceGC's collection in progress with processes that exit in the middle of
// one. The last thread's work is reported like the first's, nothing is lost, and each state is
// freed as its thread exits (fixtures/churn.ts).
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { traceGC, traceImports, traceLibraryCalls, traceSyscalls } from '../src/index.js'
import { THREADS, checkFootprint, churn, count } from './fixtures/churn.js'
import { mapEntries } from './fixtures/maps.js'
import { startReady } from './fixtures/processes.js'
import { compile, tmpDir } from './programs/tools.js'
import { startWorkload } from './targets.js'

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

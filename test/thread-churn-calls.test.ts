// traceCalls and callStats under a service that starts a thread per request, 20,000 one after
// another: the last thread's calls are reported and timed like the first's, nothing is lost, and
// the kernel holds the stacks of the threads alive and no more, as much after 20,000 threads as
// after 10,000 (fixtures/churn.ts).
import t from 'tap'
import { callStats, traceCalls, type CallEvent } from '../src/index.js'
import { THREADS, checkFootprint, churn } from './fixtures/churn.js'
import { startWorkload } from './targets.js'

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

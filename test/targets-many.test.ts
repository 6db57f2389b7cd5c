// Tracing more than one process: a list of pids, every process of a binary (workers forked
// after the trace started included), and a process in another mount namespace.
import t from 'tap'
import { inspect, traceCalls, type CallEvent } from '../src/index.js'
import { CONTAINER_PYTHON, privatePython, startContainerPython } from './fixtures/processes.js'
import { collect, fibonacci, startWorkload } from './targets.js'

const fibEntriesByPid = (events: CallEvent[]) => {
  const counts = new Map<number, number>()
  for (const e of events) if (e.kind === 'entry' && e.func === 'fib') counts.set(e.pid, (counts.get(e.pid) ?? 0) + 1)
  return counts
}

t.test('{ pids } traces each process and ends when the last one exits', async (t) => {
  const [a, b] = [await startWorkload(t, ['fib', '9']), await startWorkload(t, ['fib', '11'])]
  const trace = traceCalls({ pids: [a.pid, b.pid] })
  await trace.ready
  a.go()
  b.go()
  const counts = fibEntriesByPid(await collect(trace))
  t.same(
    [...counts].sort(),
    [
      [a.pid, 2 * fibonacci(10) - 1],
      [b.pid, 2 * fibonacci(12) - 1],
    ].sort(),
    'exact counts, each under its own pid',
  )
})

t.test('{ binary } follows every process of the executable, forked workers included', async (t) => {
  const python = privatePython(t)

  const workers = 3
  const n = 10
  const parent = await startWorkload(t, ['fork', String(workers), String(n)], python)
  const trace = traceCalls({ binary: python })
  await trace.ready
  let output = ''
  parent.stdout!.on('data', (chunk: Buffer) => (output += chunk))
  parent.go()
  const parentExited = new Promise((resolve) => parent.once('exit', resolve))

  const events: CallEvent[] = []
  const expected = 2 * fibonacci(n + 1) - 1
  const complete = () => [...fibEntriesByPid(events).values()].filter((c) => c >= expected).length >= workers
  for await (const event of trace) {
    events.push(event)
    if (complete()) break
  }
  await parentExited
  const workerPids = output.trim().split('\n').map(Number)
  const counts = fibEntriesByPid(events)
  t.equal(workerPids.length, workers, 'the parent forked its workers')
  for (const pid of workerPids) t.equal(counts.get(pid), expected, `worker ${pid}: every fib call`)
  t.notOk(counts.has(parent.pid), 'the parent itself calls no fib')
  t.ok(workerPids.every((pid) => pid !== parent.pid), 'workers are new processes, started after the trace')
})

t.test('a python in another mount namespace is traced through /proc/PID/root', async (t) => {
  const code = [
    'import sys',
    'def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)',
    'print("ready", flush=True)',
    'sys.stdin.readline()',
    'fib(9)',
  ].join('\n')
  const child = await startContainerPython(t, code)
  const target = await inspect(child.pid)
  t.equal(target.probeObject, `/proc/${child.pid}/root${CONTAINER_PYTHON}`, 'the probes are reached through its root')
  const trace = traceCalls(child.pid)
  await trace.ready
  child.stdin!.write('\n')
  const counts = fibEntriesByPid(await collect(trace))
  t.equal(counts.get(child.pid), 2 * fibonacci(10) - 1, 'every fib call')
})


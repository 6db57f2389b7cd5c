// How probes are attached: all sites of a program in one uprobe_multi link on this kernel (6.6
// and later), one perf-event uprobe per site where the kernel predates them, which
// USDTRACE_UPROBE_MULTI=0 forces. Both trace every call, and both give the semaphores back.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import t from 'tap'
import { traceCalls } from '../src/index.js'
import { linkTypes } from './fixtures/links.js'
import { readSemaphores } from './semaphores.js'
import { WORKLOADS, fibonacci, startWorkload } from './targets.js'

const TRACE_CALLS = fileURLToPath(new URL('programs/trace-calls.ts', import.meta.url))
const N = 12
const FIB_CALLS = 2 * fibonacci(N + 1) - 1

t.test('on this kernel: one uprobe_multi link per program, every call traced', async (t) => {
  const target = await startWorkload(t, ['fib', String(N)])
  const before = linkTypes()
  const trace = traceCalls(target.pid)
  await trace.ready
  const added = linkTypes().filter((type) => type === 'uprobe_multi').length - before.filter((type) => type === 'uprobe_multi').length
  t.equal(added, 4, 'function__entry, function__return, the line semaphore holder and the code_dealloc hook: four links')
  t.same(readSemaphores(target.pid), { entry: 1, return: 1, line: 1 }, 'each semaphore raised once')
  await trace.close()
  t.same(readSemaphores(target.pid), { entry: 0, return: 0, line: 0 }, 'and lowered once closed')
  t.same(linkTypes(), before, 'no link left behind')
  target.go()
})

t.test('USDTRACE_UPROBE_MULTI=0: one perf-event uprobe per site, every call traced', async (t) => {
  const target = await startWorkload(t, ['fib', String(N)])
  const tracer = spawn(process.execPath, [...process.execArgv, TRACE_CALLS, String(target.pid)], {
    env: { ...process.env, USDTRACE_UPROBE_MULTI: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const exited = once(tracer, 'exit')
  t.teardown(() => {
    if (tracer.exitCode === null && tracer.signalCode === null) tracer.kill('SIGKILL')
  })
  const lines = createInterface({ input: tracer.stdout! })[Symbol.asyncIterator]()
  const { links } = JSON.parse((await lines.next()).value as string) as { links: string[] }
  // python3.11 has one site each of function__entry and function__return (readelf -n).
  t.same(
    [...links].sort(),
    ['perf', 'perf', 'perf', 'perf', 'raw_tracepoint'],
    'entry, return, the semaphore holder and the code_dealloc hook: a perf-event link each; sched_process_exit: a raw tracepoint',
  )
  t.same(readSemaphores(target.pid), { entry: 1, return: 1, line: 1 }, 'each semaphore raised once')
  target.go()
  const counts = JSON.parse((await lines.next()).value as string) as { entries: number; returns: number }
  t.same(counts, { entries: FIB_CALLS, returns: FIB_CALLS }, `fib(${N}): every entry and return of ${WORKLOADS}`)
  t.same(await exited, [0, null], 'the tracer exits cleanly')
})

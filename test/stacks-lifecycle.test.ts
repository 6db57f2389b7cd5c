// What the stack streams follow and leave behind: every fd given back (sampleStacks read as events
// and as batches, test/fixtures/readers.ts), { binary } over processes started later and processes
// that come and go, a container's python, bad targets.
import { once } from 'node:events'
import { readdirSync } from 'node:fs'
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { TraceError, dumpStacks, sampleStacks, stackProfile } from '../src/index.js'
import { PYENV, STACK_PYTHONS, deadPid, fdTable, privatePython, startContainerPython, startReady } from './fixtures/processes.js'
import { abortPendingRead, eachReader } from './fixtures/readers.js'
import { mapEntries } from './fixtures/maps.js'
import { startStacksTarget as start } from './fixtures/stacks.js'

t.test('sampleStacks: break, abort and close release every perf event, map and fd', (t) =>
  eachReader(t, async (t, reader) => {
    const cycles = 9
    const { pid } = await start(t, STACK_PYTHONS[2]!, ['busy', '0.01'])
    const warm = sampleStacks(pid)
    await warm.ready
    await warm.close()
    const before = fdTable()
    for (let cycle = 0; cycle < cycles; cycle++) {
      if (cycle % 3 === 0) {
        const closed = sampleStacks(pid, { offCpu: true })
        await closed.ready
        // One read (an event, or a batch) at most: pending when close() comes, unless one was there already.
        const pending = reader.samples(closed, { until: () => true })
        await closed.close()
        const { reads, rows } = await pending
        t.ok(reads === 0 || rows.length > 0, 'close ends a pending read (or it had a read already)')
      } else if (cycle % 3 === 1) {
        const broken = sampleStacks(pid, { hz: 499, offCpu: true })
        const { rows } = await reader.samples(broken, { until: () => true })
        t.ok(rows.length > 0, 'a read before the break')
      } else {
        await abortPendingRead(t, reader, (signal) => sampleStacks(pid, { signal }))
      }
    }
    await nextTurn()
    t.same(fdTable(), before, `the fd table after ${cycles} traces is the one before`)
  }),
)

t.test('abort and the end of a dump free everything stackProfile and dumpStacks hold', async (t) => {
  const { pid } = await start(t, STACK_PYTHONS[2]!, ['busy', '0.01'])
  const openFds = () => readdirSync('/proc/self/fd').length
  const first = sampleStacks(pid, { offCpu: true })
  await first.ready
  await first.close()
  const before = openFds()
  for (let cycle = 0; cycle < 5; cycle++) {
    const controller = new AbortController()
    const aborted = stackProfile(pid, { intervalMs: 10, signal: controller.signal })
    await aborted.ready
    const pending = aborted.next()
    controller.abort()
    await t.rejects(pending, { name: 'AbortError' })
    await aborted.close()
    await dumpStacks(pid)
  }
  await sleep(0)
  t.equal(openFds(), before, 'no fd left behind after 10 profiles and dumps')
})

t.test('{ binary } follows every process of a libpython, including those started later and their forks', async (t) => {
  const python = STACK_PYTHONS[2]!
  const libpython = `${PYENV}/3.12.1/lib/libpython3.12.so.1.0`
  const trace = sampleStacks({ binary: libpython, hz: 199 })
  await trace.ready
  const { report, pid } = await start(t, python, ['fork', '2'])
  const children = report.children as number[]
  t.teardown(() => children.forEach((child) => void process.kill(child, 'SIGKILL')))
  const wanted = new Set([...children])
  const seen = new Set<number>()
  const deadline = setTimeout(() => void trace.close(), 20_000)
  for await (const sample of trace) {
    if (wanted.has(sample.pid) && sample.frames[0]?.func === 'spin') seen.add(sample.pid)
    if (seen.size === wanted.size) break
  }
  clearTimeout(deadline)
  t.same([...seen].sort(), [...wanted].sort(), `the forked children of ${pid}, started after the trace, are sampled in spin()`)
})

t.test('{ binary } on a shared build\'s program reads the libpython it loads', async (t) => {
  const python = STACK_PYTHONS[3]!
  const trace = sampleStacks({ binary: python, hz: 199 })
  await trace.ready
  const { pid, report } = await start(t, python, ['busy', '0.05'])
  for await (const sample of trace) {
    if (sample.pid !== pid || sample.tid !== report.spinner) continue
    t.equal(sample.frames[0]?.func, 'spin', 'the spinner, sampled in spin()')
    break
  }
})

t.test('{ binary } over processes that come and go keeps its kernel maps flat', async (t) => {
  const python = privatePython(t)
  const trace = sampleStacks({ binary: python, hz: 999 })
  await trace.ready
  const sampledPids = new Set<number>()
  const consumed = (async () => {
    for await (const sample of trace) if (sample.frames[0]?.func.startsWith('f_')) sampledPids.add(sample.pid)
  })()
  const processes = 25
  const pids: number[] = []
  for (let i = 0; i < processes; i++) {
    const { child, pid } = await start(t, python, ['unique', '40', '2'])
    pids.push(pid)
    const exited = once(child, 'exit')
    child.stdin!.write('go\n')
    await exited
  }
  await sleep(100)
  const [known] = mapEntries('known_codes')
  const [described] = mapEntries('python_processe')
  await trace.close()
  await consumed
  t.ok(pids.filter((pid) => sampledPids.has(pid)).length >= processes * 0.8, `${sampledPids.size} of ${processes} processes sampled in their functions`)
  t.equal(trace.lost, 0, 'nothing lost')
  t.equal(described, 0, 'no process described once all exited')
  t.equal(known, 0, 'no code object remembered once all exited')
})

t.test('a thread the search cannot reach is counted lost, never given another thread\'s stack', async (t) => {
  // More threads than a sample's search visits (4096), all newer than the spinner.
  const { pid, report } = await start(t, STACK_PYTHONS[2]!, ['crowd', '4200'])
  const trace = sampleStacks({ pid, hz: 199 })
  await trace.ready
  const samples = []
  const closing = setTimeout(() => void trace.close(), 1500)
  for await (const sample of trace) samples.push(sample)
  clearTimeout(closing)
  t.equal(samples.filter((sample) => sample.tid === report.spinner).length, 0, 'the spinner is not sampled')
  t.ok(samples.every((sample) => sample.frames[0]?.func !== 'spin'), 'no sample of another thread shows its stack')
  t.ok(trace.lost > 0, `its samples are counted lost (${trace.lost})`)
  const [spinner] = (await dumpStacks(pid)).filter((thread) => thread.tid === report.spinner)
  t.equal(spinner?.frames[0]?.func, 'spin', 'a dump, which may search them all, finds it in spin()')
})

t.test('a python in a container has its stacks read through /proc/PID/root', async (t) => {
  const code = 'import sys\ndef waiting():\n    sys.stdin.read()\nprint("ready", flush=True)\nwaiting()'
  const child = await startContainerPython(t, `exec(${JSON.stringify(code)})`)
  const [main] = await dumpStacks(child.pid)
  t.same(
    main!.frames.map((frame) => frame.func),
    ['waiting', '<module>', '<module>'],
    'the container main thread is in waiting(), under the exec and the -c module',
  )
})

t.test('bad targets get typed errors', async (t) => {
  await t.rejects(dumpStacks(await deadPid()), { code: 'NO_SUCH_PROCESS' })
  const sleeper = await startReady(t, 'sh', ['-c', 'echo ready; exec sleep 600'])
  await t.rejects(dumpStacks(sleeper.pid), { code: 'NOT_PYTHON' })
  const old = await startReady(t, `${PYENV}/3.9.18/bin/python3.9`, ['-c', 'import sys; print("ready", flush=True); sys.stdin.read()'])
  const error = await dumpStacks(old.pid).catch((e: unknown) => e)
  t.type(error, TraceError)
  t.match(error, { code: 'UNSUPPORTED_PYTHON', message: /CPython 3\.9 predates 3\.10/ })
  const pypy = await startReady(t, '/usr/bin/pypy3', ['-c', 'import sys; print("ready", flush=True); sys.stdin.read()'])
  await t.rejects(dumpStacks(pypy.pid), { code: 'UNSUPPORTED_PYTHON', message: /runs PyPy \(.*pypy3.*\): usdtrace reads CPython/ })
  const { pid } = await start(t, STACK_PYTHONS[0]!, ['busy', '0.05'])
  for (const hz of [0, 1.5, 100_000]) {
    const trace = sampleStacks(pid, { hz })
    await t.rejects(trace.ready, { code: 'INVALID_ARGUMENT', message: /hz/ }, `hz ${hz}`)
  }
  await t.rejects(stackProfile(pid, { intervalMs: -1 }).ready, { code: 'INVALID_ARGUMENT', message: /intervalMs/ })
  await t.rejects(sampleStacks(pid, { hertz: 99 } as never).ready, { code: 'INVALID_ARGUMENT', message: /no option "hertz"/ })
  await t.rejects(dumpStacks({ binary: STACK_PYTHONS[0]! }), { code: 'INVALID_ARGUMENT', message: /pid/ })
})
